//! Errors of the plumbing layer.

use std::io;
use std::path::PathBuf;

use crate::mac::MacAddr;

/// Everything that can go wrong while wiring pods and ENIs. Each message
/// names the object and the operation, so a log line is actionable.
#[derive(Debug, thiserror::Error)]
pub enum PlumbingError {
    /// A network namespace could not be opened or entered.
    #[error(
        "network namespace {path}: {source} (does the path exist and is it a network namespace?)"
    )]
    Netns {
        /// The namespace path (for example `CNI_NETNS`).
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Too many earlier opens of namespace paths still hang: this one was
    /// not tried.
    #[error(
        "network namespace {path} not opened: {stuck} earlier opens of network namespaces are \
         still hanging (a hung mount under the runtime's netns directory?); fix the mount or \
         the paths the runtime passes as CNI_NETNS, then retry"
    )]
    NetnsOpenersBusy {
        /// The namespace path (for example `CNI_NETNS`).
        path: PathBuf,
        /// How many opens hang.
        stuck: usize,
    },
    /// A netlink request failed.
    #[error("{context}: {source}")]
    Netlink {
        /// What was being done, with the objects involved.
        context: String,
        /// The underlying error.
        source: rtnetlink::Error,
    },
    /// A system call other than netlink failed (sysctl write, thread spawn).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// No interface carries the MAC address of an ENI that should be attached.
    #[error(
        "no interface with MAC address {mac} in the node's network namespace: \
         is the ENI attached and has the kernel created its interface yet?"
    )]
    EniLinkNotFound {
        /// The ENI's MAC address.
        mac: MacAddr,
    },
    /// `nft` refused Weft's rules (or is missing).
    #[error("{command} failed: {stderr}")]
    Nft {
        /// The `nft` command line.
        command: String,
        /// What `nft` printed.
        stderr: String,
    },
    /// The caller passed values the plumbing cannot act on.
    #[error("invalid plumbing input: {0}")]
    InvalidInput(String),
    /// Several steps of a teardown failed; every other step was still
    /// carried out.
    #[error("{} steps failed: {}", .0.len(), list(.0))]
    Several(Vec<PlumbingError>),
}

fn list(errors: &[PlumbingError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The failures of a teardown that goes on past each one (what can be
/// removed is removed), reported together at the end.
#[derive(Debug, Default)]
pub(crate) struct Failures(Vec<PlumbingError>);

impl Failures {
    /// Keeps `result`'s error, if any, and returns its value.
    pub(crate) fn keep<T>(&mut self, result: Result<T, PlumbingError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    /// `Ok` when nothing failed, else the one failure or all of them.
    pub(crate) fn finish(mut self) -> Result<(), PlumbingError> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(self.0.remove(0)),
            _ => Err(PlumbingError::Several(self.0)),
        }
    }
}

impl PlumbingError {
    /// A [`PlumbingError::Netlink`] with its context.
    pub(crate) fn netlink(context: impl Into<String>, source: rtnetlink::Error) -> Self {
        Self::Netlink {
            context: context.into(),
            source,
        }
    }

    /// A [`PlumbingError::Io`] with its context.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(what: &str) -> Result<(), PlumbingError> {
        Err(PlumbingError::InvalidInput(what.into()))
    }

    #[test]
    fn a_teardown_reports_every_failure_and_keeps_every_value() {
        let mut failures = Failures::default();
        assert_eq!(failures.keep(Ok::<_, PlumbingError>(7)), Some(7));
        assert!(Failures::default().finish().is_ok());

        failures.keep(failed("rule"));
        let one = std::mem::take(&mut failures).finish().expect_err("one");
        assert_eq!(one.to_string(), "invalid plumbing input: rule");

        failures.keep(failed("rule"));
        failures.keep(Ok(()));
        failures.keep(failed("veth"));
        let both = failures.finish().expect_err("two");
        assert_eq!(
            both.to_string(),
            "2 steps failed: invalid plumbing input: rule; invalid plumbing input: veth"
        );
    }
}
