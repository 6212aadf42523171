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
