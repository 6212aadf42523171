//! Logging from a policy.
//!
//! On Wasm each call goes to the `weft:policy/log` import: the host forwards
//! the message to its own log, tagged with the policy's name, rate-limited
//! and truncated to 4 KiB. Natively (the test harness, or the host running a
//! default policy in-process) messages are recorded in a thread-local buffer
//! that [`take`] drains, so tests can assert what a policy logged.
//!
//! ```
//! use weft_policy_sdk::log::{self, Level};
//!
//! log::warn("warm-ip-target is larger than an ENI; using one ENI's worth");
//! let records = log::take();
//! assert_eq!(records[0].level, Level::Warn);
//! ```

use serde::{Deserialize, Serialize};

/// Severity of a log message (WIT enum `log.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation worth noting.
    Info,
    /// Something odd the operator may want to look at.
    Warn,
    /// Something failed.
    Error,
}

/// One message a policy logged, as recorded natively.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Its severity.
    pub level: Level,
    /// Its text.
    pub message: String,
}

/// Emits one message at `level`.
pub fn log(level: Level, message: &str) {
    sink::emit(level, message);
}

/// Emits a message at [`Level::Trace`].
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Emits a message at [`Level::Debug`].
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Emits a message at [`Level::Info`].
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Emits a message at [`Level::Warn`].
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Emits a message at [`Level::Error`].
pub fn error(message: &str) {
    log(Level::Error, message);
}

/// Drains and returns the messages this thread logged so far (native only;
/// on Wasm messages go to the host and this is always empty).
pub fn take() -> Vec<Record> {
    sink::take()
}

#[cfg(not(target_arch = "wasm32"))]
mod sink {
    use super::{Level, Record};
    use std::cell::RefCell;
    use std::collections::VecDeque;

    /// Most messages kept per thread; older ones are dropped first, so a
    /// long-running host thread that never drains cannot grow without bound.
    const CAPACITY: usize = 1024;

    thread_local! {
        static RECORDS: RefCell<VecDeque<Record>> = const { RefCell::new(VecDeque::new()) };
    }

    pub(super) fn emit(level: Level, message: &str) {
        RECORDS.with(|records| {
            let mut records = records.borrow_mut();
            if records.len() == CAPACITY {
                records.pop_front();
            }
            records.push_back(Record {
                level,
                message: message.to_owned(),
            });
        });
    }

    pub(super) fn take() -> Vec<Record> {
        RECORDS.with(|records| records.borrow_mut().drain(..).collect())
    }
}

#[cfg(all(
    target_arch = "wasm32",
    any(
        feature = "pool-sizing",
        feature = "subnet-selection",
        feature = "security-groups"
    )
))]
mod sink {
    use super::{Level, Record};
    use crate::__guest::bindings::weft::policy::log as wit;

    pub(super) fn emit(level: Level, message: &str) {
        let level = match level {
            Level::Trace => wit::Level::Trace,
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        };
        wit::log(level, message);
    }

    pub(super) fn take() -> Vec<Record> {
        Vec::new()
    }
}

#[cfg(all(
    target_arch = "wasm32",
    not(any(
        feature = "pool-sizing",
        feature = "subnet-selection",
        feature = "security-groups"
    ))
))]
mod sink {
    compile_error!(
        "weft-policy-sdk: compiling to Wasm needs one world feature: `pool-sizing`, \
         `subnet-selection` or `security-groups`"
    );

    pub(super) fn emit(_level: super::Level, _message: &str) {}

    pub(super) fn take() -> Vec<super::Record> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_drained_in_order() {
        let _ = take();
        info("first");
        error("second");
        let records = take();
        assert_eq!(
            records,
            vec![
                Record {
                    level: Level::Info,
                    message: "first".into()
                },
                Record {
                    level: Level::Error,
                    message: "second".into()
                },
            ]
        );
        assert!(take().is_empty());
    }

    #[test]
    fn buffer_is_bounded() {
        let _ = take();
        for i in 0..1100 {
            debug(&i.to_string());
        }
        let records = take();
        assert_eq!(records.len(), 1024);
        assert_eq!(records[0].message, "76");
    }
}
