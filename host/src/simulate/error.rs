//! Errors of `weftd simulate`.

use thiserror::Error;

/// Why a simulation could not run.
#[derive(Debug, Error)]
pub enum SimulateError {
    /// A trace line is malformed.
    #[error("trace line {line}: {detail}")]
    Trace {
        /// 1-based line number.
        line: usize,
        /// What is wrong and how to fix it.
        detail: String,
    },
    /// A command-line argument is wrong.
    #[error("{0}")]
    Usage(String),
    /// Reading or writing a file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The simulated node could not be set up or its pool failed.
    #[error("simulated node for policy {policy}: {source}")]
    Node {
        /// The policy being simulated.
        policy: String,
        /// The cause.
        #[source]
        source: Box<crate::Error>,
    },
}
