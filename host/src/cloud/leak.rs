//! Which ENIs count as leaked: the pure filter of the leaked-ENI collector.
//!
//! An ENI is leaked when it is `available` (attached to nothing), carries this cluster's Weft
//! tag, and its creation time tag says it is older than the minimum age (5 minutes by default:
//! younger ENIs may be between create and attach on some node). An ENI without Weft's tags is
//! never touched.

use super::types::{Eni, EniStatus, TAG_CLUSTER, TAG_CREATED_AT};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default minimum age of a leaked ENI.
pub(crate) const DEFAULT_MIN_AGE: Duration = Duration::from_secs(5 * 60);

/// The value of the creation-time tag for `time`.
pub fn created_at_tag(time: SystemTime) -> String {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        .to_string()
}

/// Whether `eni` is a leaked ENI of `cluster` at `now`.
pub(crate) fn is_leaked(eni: &Eni, cluster: &str, now: SystemTime, min_age: Duration) -> bool {
    if eni.status != EniStatus::Available || eni.attachment.is_some() {
        return false;
    }
    if eni.tags.get(TAG_CLUSTER).map(String::as_str) != Some(cluster) {
        return false;
    }
    let Some(created) = eni
        .tags
        .get(TAG_CREATED_AT)
        .and_then(|v| v.parse::<u64>().ok())
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
    else {
        return false;
    };
    now.duration_since(created).is_ok_and(|age| age >= min_age)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::types::{Attachment, MacAddr};
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    fn eni(tags: &[(&str, &str)], status: EniStatus) -> Eni {
        Eni {
            id: "eni-1".into(),
            subnet_id: "subnet-1".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            primary_ip: Ipv4Addr::new(10, 0, 0, 10),
            secondary_ips: vec![],
            prefixes: vec![],
            security_groups: vec![],
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            description: String::new(),
            status,
            attachment: None,
            interface_type: Default::default(),
        }
    }

    const T0: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn an_old_available_eni_of_this_cluster_is_leaked() {
        let e = eni(
            &[(TAG_CLUSTER, "prod"), (TAG_CREATED_AT, &T0.to_string())],
            EniStatus::Available,
        );
        assert!(is_leaked(&e, "prod", at(T0 + 300), DEFAULT_MIN_AGE));
        assert!(!is_leaked(&e, "prod", at(T0 + 299), DEFAULT_MIN_AGE));
        assert!(is_leaked(&e, "prod", at(T0), Duration::ZERO));
    }

    #[test]
    fn foreign_untagged_attached_or_undated_enis_are_never_leaked() {
        let now = at(T0 + 3600);
        let created = T0.to_string();
        let other_cluster = eni(
            &[(TAG_CLUSTER, "dev"), (TAG_CREATED_AT, &created)],
            EniStatus::Available,
        );
        assert!(!is_leaked(&other_cluster, "prod", now, DEFAULT_MIN_AGE));
        let untagged = eni(&[(TAG_CREATED_AT, &created)], EniStatus::Available);
        assert!(!is_leaked(&untagged, "prod", now, DEFAULT_MIN_AGE));
        let undated = eni(&[(TAG_CLUSTER, "prod")], EniStatus::Available);
        assert!(!is_leaked(&undated, "prod", now, DEFAULT_MIN_AGE));
        let garbled = eni(
            &[(TAG_CLUSTER, "prod"), (TAG_CREATED_AT, "yesterday")],
            EniStatus::Available,
        );
        assert!(!is_leaked(&garbled, "prod", now, DEFAULT_MIN_AGE));
        let in_use = eni(
            &[(TAG_CLUSTER, "prod"), (TAG_CREATED_AT, &created)],
            EniStatus::InUse,
        );
        assert!(!is_leaked(&in_use, "prod", now, DEFAULT_MIN_AGE));
        let mut attaching = eni(
            &[(TAG_CLUSTER, "prod"), (TAG_CREATED_AT, &created)],
            EniStatus::Available,
        );
        attaching.attachment = Some(Attachment {
            id: "eni-attach-1".into(),
            instance_id: "i-1".into(),
            device_index: 1,
            network_card_index: 0,
            delete_on_termination: true,
        });
        assert!(!is_leaked(&attaching, "prod", now, DEFAULT_MIN_AGE));
    }

    #[test]
    fn a_creation_time_in_the_future_is_not_old() {
        let e = eni(
            &[
                (TAG_CLUSTER, "prod"),
                (TAG_CREATED_AT, &(T0 + 60).to_string()),
            ],
            EniStatus::Available,
        );
        assert!(!is_leaked(&e, "prod", at(T0), Duration::ZERO));
    }

    #[test]
    fn created_at_tag_round_trips() {
        assert_eq!(created_at_tag(at(T0)), T0.to_string());
    }
}
