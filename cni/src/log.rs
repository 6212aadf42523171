//! Minimal leveled logging to stderr, which the runtime (containerd, CRI-O)
//! collects into its own log. Chosen by the `log-level` netconf field.

use std::fmt;
use std::io::Write;

/// How much `weft` writes to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Nothing.
    Off,
    /// Failures only (the default).
    Error,
    /// One line per command with its outcome and duration.
    Info,
    /// Also the requests sent to `weftd`.
    Debug,
}

impl LogLevel {
    /// Parses `off`, `error`, `info` or `debug`.
    pub fn parse(s: &str) -> Option<LogLevel> {
        match s {
            "off" => Some(LogLevel::Off),
            "error" => Some(LogLevel::Error),
            "info" => Some(LogLevel::Info),
            "debug" => Some(LogLevel::Debug),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

/// Writes lines at or above a level to stderr.
#[derive(Debug, Clone, Copy)]
pub struct Logger {
    level: LogLevel,
}

impl Logger {
    /// A logger writing messages of `level` and more severe.
    pub fn new(level: LogLevel) -> Logger {
        Logger { level }
    }

    /// Writes one line if `level` is enabled. Write failures are ignored:
    /// logging must never turn a success into a failure.
    pub fn log(&self, level: LogLevel, args: fmt::Arguments<'_>) {
        if level != LogLevel::Off && level <= self.level {
            let line = format!("weft[{}] {}: {args}\n", std::process::id(), level.as_str());
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_levels_and_orders_them() {
        for s in ["off", "error", "info", "debug"] {
            assert_eq!(LogLevel::parse(s).map(LogLevel::as_str), Some(s));
        }
        assert_eq!(LogLevel::parse("trace"), None);
        assert!(LogLevel::Error < LogLevel::Info && LogLevel::Info < LogLevel::Debug);
    }
}
