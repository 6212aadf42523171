//! The cloud's view of an ENI as the datastore takes it in. Pure.

use crate::cloud::{self, TAG_CREATED_AT};
use crate::ipam::{self, Correction, SgSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Tag holding the journal operation id of the create that made an ENI, so
/// that a restart finds an ENI whose create answer was lost.
pub const TAG_OPERATION: &str = "weft.io/operation";

/// The datastore record of an attached ENI. The attach time is the
/// creation-time tag Weft writes (attach follows create at once), or `now`
/// for an ENI seen attached for the first time without it: such an ENI is
/// not given back before the minimum age has passed again. The primary ENI
/// is the instance's (`primary_eni_id`), not any ENI at device index 0: each
/// network card has a device 0.
pub(super) fn to_ipam(eni: &cloud::Eni, primary_eni_id: &str, now: SystemTime) -> ipam::Eni {
    let device_index = eni.device_index().unwrap_or_default();
    let attached_at = eni
        .tags
        .get(TAG_CREATED_AT)
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(now, |secs| UNIX_EPOCH + Duration::from_secs(secs));
    ipam::Eni {
        id: eni.id.clone(),
        device_index,
        subnet_id: eni.subnet_id.clone(),
        mac: eni.mac.to_string(),
        primary: eni.id == primary_eni_id,
        primary_ip: eni.primary_ip,
        security_groups: SgSet::new(eni.security_groups.iter().cloned()),
        ips: eni.secondary_ips.clone(),
        prefixes: eni.prefixes.clone(),
        attached_at,
    }
}

/// Logs corrections the datastore made to match the cloud or the
/// checkpoint (`when` says at which point); returns whether an assignment
/// was dropped, so that the checkpoint must be rewritten.
pub(super) fn log_corrections(corrections: &[Correction], when: &str) -> bool {
    let mut dropped = false;
    for correction in corrections {
        match correction {
            Correction::AssignmentDropped { .. } => {
                dropped = true;
                tracing::warn!(%correction, "{when} correction");
            }
            Correction::Ignored { .. } | Correction::Quarantined { .. } => {
                tracing::warn!(%correction, "{when} correction");
            }
            _ => tracing::info!(%correction, "{when} correction"),
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{Attachment, EniStatus, MacAddr};
    use std::net::Ipv4Addr;

    #[test]
    fn converts_attachment_groups_and_creation_time() {
        let now = SystemTime::now();
        let mut eni = cloud::Eni {
            id: "eni-1".into(),
            subnet_id: "subnet-1".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            primary_ip: Ipv4Addr::new(10, 0, 0, 5),
            secondary_ips: vec![Ipv4Addr::new(10, 0, 0, 6)],
            prefixes: vec!["10.0.0.16/28".parse().unwrap()],
            security_groups: vec!["sg-b".into(), "sg-a".into()],
            tags: [(TAG_CREATED_AT.to_owned(), "1800000000".to_owned())].into(),
            description: String::new(),
            status: EniStatus::InUse,
            attachment: Some(Attachment {
                id: "eni-attach-1".into(),
                instance_id: "i-1".into(),
                device_index: 2,
                network_card_index: 0,
                delete_on_termination: true,
            }),
            interface_type: Default::default(),
        };
        let got = to_ipam(&eni, "eni-0", now);
        assert_eq!(got.device_index, 2);
        assert!(!got.primary);
        assert_eq!(got.mac, "02:00:00:00:00:01");
        assert_eq!(got.security_groups, SgSet::new(["sg-a", "sg-b"]));
        assert_eq!(
            got.attached_at,
            UNIX_EPOCH + Duration::from_secs(1_800_000_000)
        );
        eni.tags.clear();
        eni.attachment.as_mut().unwrap().device_index = 0;
        let got = to_ipam(&eni, "eni-1", now);
        assert!(got.primary);
        assert_eq!(got.attached_at, now);
    }
}
