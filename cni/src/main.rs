//! `weft`: the CNI plugin executable. Everything but process wiring lives in
//! the library (`weft_cni::plugin`).

use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use weft_cni::CniError;
use weft_cni::client::Client;
use weft_cni::plugin::{self, Output};
use weft_cni::version::CniVersion;

fn main() -> ExitCode {
    let output = panic::catch_unwind(AssertUnwindSafe(|| {
        let stdin = plugin::read_stdin(std::io::stdin().lock());
        plugin::run(&|name| std::env::var_os(name), stdin, |conf| {
            Client::new(&conf.socket, conf.timeout)
        })
    }))
    .unwrap_or_else(|_| {
        Output::failure(
            CniError::internal(
                "weft crashed while handling the command",
                "this is a bug: please report it with the runtime's log of this call",
            ),
            CniVersion::LATEST,
        )
    });
    if let Some(text) = &output.stdout {
        let mut stdout = std::io::stdout().lock();
        // A runtime that closed our stdout can no longer read anything.
        let _ = stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.write_all(b"\n"))
            .and_then(|()| stdout.flush());
    }
    if output.error.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
