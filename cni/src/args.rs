//! `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`.
//!
//! Known keys are the Kubernetes conventions (`K8S_POD_NAMESPACE`,
//! `K8S_POD_NAME`, `K8S_POD_UID`, `K8S_POD_INFRA_CONTAINER_ID`) and
//! `IgnoreUnknown`. Any other key is an error (code 4) unless
//! `IgnoreUnknown` is `1` or `true`, as libcni's argument loader behaves.

use crate::error::CniError;

/// The parsed `CNI_ARGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// `K8S_POD_NAMESPACE`.
    pub pod_namespace: Option<String>,
    /// `K8S_POD_NAME`.
    pub pod_name: Option<String>,
    /// `K8S_POD_UID`.
    pub pod_uid: Option<String>,
    /// `K8S_POD_INFRA_CONTAINER_ID`.
    pub infra_container_id: Option<String>,
}

impl CniArgs {
    /// The keys weft reads.
    const KNOWN: [&str; 4] = [
        "K8S_POD_NAMESPACE",
        "K8S_POD_NAME",
        "K8S_POD_UID",
        "K8S_POD_INFRA_CONTAINER_ID",
    ];

    /// Parses `CNI_ARGS`; an empty string gives no arguments.
    pub fn parse(raw: &str) -> Result<CniArgs, CniError> {
        let mut args = CniArgs::default();
        let mut ignore_unknown = false;
        let mut unknown = Vec::new();
        for pair in raw.split(';').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').filter(|(k, _)| !k.is_empty()).ok_or_else(|| {
                CniError::invalid_env(
                    format!("CNI_ARGS has an invalid pair {pair:?}"),
                    "CNI_ARGS must be KEY=VALUE pairs separated by ';', e.g. K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
                )
            })?;
            let slot = match key {
                "K8S_POD_NAMESPACE" => &mut args.pod_namespace,
                "K8S_POD_NAME" => &mut args.pod_name,
                "K8S_POD_UID" => &mut args.pod_uid,
                "K8S_POD_INFRA_CONTAINER_ID" => &mut args.infra_container_id,
                "IgnoreUnknown" => {
                    ignore_unknown = parse_bool(value)?;
                    continue;
                }
                _ => {
                    unknown.push(key);
                    continue;
                }
            };
            *slot = Some(value.to_owned());
        }
        match unknown.first() {
            Some(key) if !ignore_unknown => Err(CniError::invalid_env(
                format!("CNI_ARGS has an unknown key {key:?}"),
                "weft knows K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID, K8S_POD_INFRA_CONTAINER_ID; \
                 add IgnoreUnknown=1 to CNI_ARGS to ignore other keys",
            )),
            _ => Ok(args),
        }
    }

    /// Parses `CNI_ARGS` keeping what it can use and skipping unknown keys
    /// and malformed pairs: for `DEL`, which must succeed where it can.
    pub fn parse_lenient(raw: &str) -> CniArgs {
        let known = raw
            .split(';')
            .filter_map(|pair| pair.split_once('='))
            .filter(|(key, _)| CniArgs::KNOWN.contains(key))
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(";");
        CniArgs::parse(&known).unwrap_or_default()
    }
}

fn parse_bool(value: &str) -> Result<bool, CniError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(CniError::invalid_env(
            format!("CNI_ARGS has IgnoreUnknown={value:?}, which is not a boolean"),
            "use IgnoreUnknown=1, IgnoreUnknown=true, IgnoreUnknown=0 or IgnoreUnknown=false",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_args() {
        let args = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;\
             K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1;EXTRA=x",
        )
        .unwrap();
        assert_eq!(
            args,
            CniArgs {
                pod_namespace: Some("default".into()),
                pod_name: Some("web-0".into()),
                pod_uid: Some("u-1".into()),
                infra_container_id: Some("abc".into()),
            }
        );
    }

    #[test]
    fn empty_and_trailing_separators() {
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
        assert_eq!(
            CniArgs::parse("K8S_POD_NAME=a;")
                .unwrap()
                .pod_name
                .as_deref(),
            Some("a")
        );
    }

    #[test]
    fn unknown_keys_need_ignore_unknown() {
        let err = CniArgs::parse("FOO=bar").unwrap_err();
        assert_eq!(err.code.0, 4);
        assert!(err.msg.contains("FOO") && err.details.contains("IgnoreUnknown=1"));
        assert!(CniArgs::parse("FOO=bar;IgnoreUnknown=true").is_ok());
        assert!(CniArgs::parse("IgnoreUnknown=0;FOO=bar").is_err());
    }

    #[test]
    fn rejects_malformed_pairs_and_booleans() {
        for bad in ["FOO", "=x", "A=1;B"] {
            let err = CniArgs::parse(bad).unwrap_err();
            assert_eq!(err.code.0, 4, "{bad}");
            assert!(err.msg.contains("invalid pair"), "{bad}: {}", err.msg);
        }
        let err = CniArgs::parse("IgnoreUnknown=yes").unwrap_err();
        assert!(err.msg.contains("IgnoreUnknown"));
    }

    #[test]
    fn values_may_contain_equals() {
        let args = CniArgs::parse("K8S_POD_NAME=a=b").unwrap();
        assert_eq!(args.pod_name.as_deref(), Some("a=b"));
    }
}
