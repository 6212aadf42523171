#![no_main]

use std::sync::LazyLock;

/// One directory for the whole run, on tmpfs when there is one.
static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
    tempfile::Builder::new()
        .prefix("weft-fuzz-journal-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("a temp dir")
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weft_host::fuzz::journal(data, DIR.path());
});
