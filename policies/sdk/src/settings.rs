//! Reading a policy's settings.
//!
//! The host passes the `settings` table of the policy's configuration as a
//! JSON document (`{}`, or an empty string, when none is given). Declare the
//! settings as a struct with `#[serde(rename_all = "kebab-case",
//! deny_unknown_fields)]`: a misspelt key then fails the load with a message
//! naming it, instead of being silently ignored.
//!
//! ```
//! use serde::Deserialize;
//! use weft_policy_sdk::settings::parse_settings;
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "kebab-case", deny_unknown_fields)]
//! struct Settings {
//!     #[serde(default = "one")]
//!     warm_eni_target: u32,
//! }
//! fn one() -> u32 { 1 }
//!
//! let s: Settings = parse_settings("").unwrap();
//! assert_eq!(s.warm_eni_target, 1);
//! let err = parse_settings::<Settings>(r#"{"warm-eni-targt": 2}"#).err().unwrap();
//! assert!(err.contains("warm-eni-targt"), "{err}");
//! ```

use serde::de::DeserializeOwned;

/// Parses settings JSON into `T`. An empty (or all-whitespace) string means
/// `{}`. Errors read `invalid settings: <what> at line L column C`, naming
/// the offending field as serde reports it.
pub fn parse_settings<T: DeserializeOwned>(settings: &str) -> Result<T, String> {
    let text = if settings.trim().is_empty() {
        "{}"
    } else {
        settings
    };
    serde_json::from_str(text).map_err(|e| format!("invalid settings: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "kebab-case", deny_unknown_fields)]
    struct Example {
        #[serde(default)]
        warm_ip_target: Option<u32>,
    }

    #[test]
    fn empty_means_defaults() {
        assert_eq!(
            parse_settings::<Example>("  ").unwrap(),
            Example {
                warm_ip_target: None
            }
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse_settings::<Example>(r#"{"warm-ip-target": "three"}"#).unwrap_err();
        assert!(err.starts_with("invalid settings:"), "{err}");
        assert!(err.contains("invalid type"), "{err}");
        let err = parse_settings::<Example>(r#"{"warm-ip-targte": 3}"#).unwrap_err();
        assert!(err.contains("warm-ip-targte"), "{err}");
    }
}
