//! The log of pools and agents run inside a test process, written to the
//! test's captured output: libtest shows it only for a test that fails, so
//! a red CI run carries the pool's own account of what happened.

use std::sync::Once;

/// Installs the log subscriber once per test binary. `RUST_LOG` chooses
/// what is kept (default: Weft's info lines).
pub fn capture() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("weft_host=info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}
