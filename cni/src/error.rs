//! The CNI error object and the error codes `weft` and `weftd` use.
//!
//! Errors are printed on stdout as the spec's error object
//! `{"cniVersion", "code", "msg", "details"}` with a non-zero exit status.
//! The same `{code, msg, details}` body is what `weftd` answers on its API
//! ([`crate::api::ApiError`]), so an agent error reaches the runtime with its
//! code unchanged.

use crate::version::CniVersion;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A CNI error code. Codes below 100 are the spec's; 100 and up are Weft's.
///
/// | code | meaning |
/// | --- | --- |
/// | 1 | incompatible CNI version |
/// | 2 | unsupported field in the network configuration |
/// | 3 | container unknown or does not exist |
/// | 4 | invalid or missing `CNI_*` environment variable (including `CNI_ARGS`) |
/// | 5 | I/O failure |
/// | 6 | failed to decode content (malformed JSON) |
/// | 7 | invalid network configuration |
/// | 11 | try again later (agent unreachable or busy, address pool empty) |
/// | 50 | `STATUS`: the plugin cannot serve `ADD` now |
/// | 100 | internal error in `weft` or `weftd`: a bug, please report it |
/// | 101 | `weftd` answered something `weft` cannot understand (version skew) |
/// | 102 | `CHECK` found the pod's networking differs from what `ADD` set up |
/// | 103 | `weftd` could not set up or remove the pod's network links |
/// | 104 | `weftd` could not get an address from EC2 for a reason retrying will not fix |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// 1: the configuration's `cniVersion` is not supported, or the command
    /// does not exist in that version.
    pub const INCOMPATIBLE_VERSION: ErrorCode = ErrorCode(1);
    /// 2: a configuration field `weft` does not support.
    pub const UNSUPPORTED_FIELD: ErrorCode = ErrorCode(2);
    /// 3: the container is unknown or does not exist.
    pub const UNKNOWN_CONTAINER: ErrorCode = ErrorCode(3);
    /// 4: a `CNI_*` environment variable is missing or invalid.
    pub const INVALID_ENV: ErrorCode = ErrorCode(4);
    /// 5: an I/O failure.
    pub const IO: ErrorCode = ErrorCode(5);
    /// 6: content could not be decoded.
    pub const DECODE: ErrorCode = ErrorCode(6);
    /// 7: the network configuration is invalid.
    pub const INVALID_NETCONF: ErrorCode = ErrorCode(7);
    /// 11: a transient condition; the runtime should retry later.
    pub const TRY_AGAIN_LATER: ErrorCode = ErrorCode(11);
    /// 50: (`STATUS`) the plugin cannot serve `ADD` requests.
    pub const NOT_AVAILABLE: ErrorCode = ErrorCode(50);
    /// 100: a bug in `weft` or `weftd`.
    pub const INTERNAL: ErrorCode = ErrorCode(100);
    /// 101: `weftd` answered something this `weft` cannot understand.
    pub const AGENT_PROTOCOL: ErrorCode = ErrorCode(101);
    /// 102: `CHECK` found differences.
    pub const CHECK_FAILED: ErrorCode = ErrorCode(102);
    /// 103: the agent failed to plumb (or unplumb) the pod's links.
    pub const PLUMBING: ErrorCode = ErrorCode(103);
    /// 104: the agent cannot obtain an address for a non-transient reason.
    pub const NO_ADDRESS: ErrorCode = ErrorCode(104);
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A CNI error: a code, a short message, and details saying what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{msg} (CNI error {code}): {details}")]
pub struct CniError {
    /// The error code.
    pub code: ErrorCode,
    /// A short message naming what is wrong.
    pub msg: String,
    /// What to check or fix.
    #[serde(default)]
    pub details: String,
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident => $code:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(msg: impl Into<String>, details: impl Into<String>) -> CniError {
                CniError::new(ErrorCode::$code, msg, details)
            }
        )*
    };
}

impl CniError {
    /// An error with any code.
    pub fn new(code: ErrorCode, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    constructors! {
        /// Code 1.
        incompatible_version => INCOMPATIBLE_VERSION;
        /// Code 2.
        unsupported_field => UNSUPPORTED_FIELD;
        /// Code 3.
        unknown_container => UNKNOWN_CONTAINER;
        /// Code 4.
        invalid_env => INVALID_ENV;
        /// Code 5.
        io => IO;
        /// Code 6.
        decode => DECODE;
        /// Code 7.
        invalid_netconf => INVALID_NETCONF;
        /// Code 11.
        try_again_later => TRY_AGAIN_LATER;
        /// Code 50.
        not_available => NOT_AVAILABLE;
        /// Code 100.
        internal => INTERNAL;
        /// Code 101.
        agent_protocol => AGENT_PROTOCOL;
        /// Code 102.
        check_failed => CHECK_FAILED;
        /// Code 103.
        plumbing => PLUMBING;
        /// Code 104.
        no_address => NO_ADDRESS;
    }

    /// The spec's error object, in the given version, as one line of JSON.
    pub fn to_json(&self, version: CniVersion) -> String {
        #[derive(Serialize)]
        struct Output<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: CniVersion,
            code: ErrorCode,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        let out = Output {
            cni_version: version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        };
        // Serializing strings and integers into a String cannot fail.
        serde_json::to_string(&out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_spec_error_object() {
        let err = CniError::invalid_env("CNI_IFNAME is not set", "the runtime must set it");
        let json: serde_json::Value =
            serde_json::from_str(&err.to_json(CniVersion::V1_0_0)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "cniVersion": "1.0.0",
                "code": 4,
                "msg": "CNI_IFNAME is not set",
                "details": "the runtime must set it"
            })
        );
    }

    #[test]
    fn constructors_set_their_codes() {
        let cases = [
            (CniError::incompatible_version("", ""), 1),
            (CniError::unsupported_field("", ""), 2),
            (CniError::unknown_container("", ""), 3),
            (CniError::invalid_env("", ""), 4),
            (CniError::io("", ""), 5),
            (CniError::decode("", ""), 6),
            (CniError::invalid_netconf("", ""), 7),
            (CniError::try_again_later("", ""), 11),
            (CniError::not_available("", ""), 50),
            (CniError::internal("", ""), 100),
            (CniError::agent_protocol("", ""), 101),
            (CniError::check_failed("", ""), 102),
            (CniError::plumbing("", ""), 103),
            (CniError::no_address("", ""), 104),
        ];
        for (err, code) in cases {
            assert_eq!(err.code, ErrorCode(code));
        }
    }

    #[test]
    fn body_round_trips_and_tolerates_missing_details() {
        let err: CniError = serde_json::from_str(r#"{"code":11,"msg":"pool empty"}"#).unwrap();
        assert_eq!(err.code, ErrorCode::TRY_AGAIN_LATER);
        assert_eq!(err.details, "");
        let back: CniError = serde_json::from_str(&serde_json::to_string(&err).unwrap()).unwrap();
        assert_eq!(back, err);
    }
}
