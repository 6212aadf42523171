//! Node identity from the instance metadata service (IMDSv2).

use crate::cloud::error::CloudError;
use crate::cloud::types::{MacAddr, NodeIdentity};
use aws_config::imds;

fn imds_error(path: &str, error: impl std::fmt::Display) -> CloudError {
    CloudError::Fatal {
        api: "IMDS".into(),
        detail: format!(
            "reading {path} from the instance metadata service failed: {error}; outside EC2 (or \
             with IMDS disabled or a hop limit of 1 in a container), set the node identity in \
             the configuration"
        ),
    }
}

async fn get(client: &imds::Client, path: &str) -> Result<String, CloudError> {
    let value = client
        .get(format!("/latest/meta-data/{path}"))
        .await
        .map_err(|e| imds_error(path, e))?;
    Ok(String::from(value).trim().to_owned())
}

/// Reads this instance's identity from IMDS.
pub(super) async fn from_imds(client: &imds::Client) -> Result<NodeIdentity, CloudError> {
    let mac_text = get(client, "mac").await?;
    let mac: MacAddr = mac_text.parse().map_err(|e| imds_error("mac", e))?;
    let eni = |field: &str| format!("network/interfaces/macs/{mac_text}/{field}");
    let security_groups = get(client, &eni("security-group-ids"))
        .await?
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    Ok(NodeIdentity {
        instance_id: get(client, "instance-id").await?,
        instance_type: get(client, "instance-type").await?,
        availability_zone: get(client, "placement/availability-zone").await?,
        vpc_id: get(client, &eni("vpc-id")).await?,
        primary_eni_id: get(client, &eni("interface-id")).await?,
        subnet_id: get(client, &eni("subnet-id")).await?,
        security_groups,
        mac,
    })
}

/// Whether IMDS already shows the ENI with MAC `mac` and its primary address: on EC2 the
/// metadata of a new ENI lags its attachment, as its device does ("Instance metadata
/// categories", `network/interfaces/macs/mac/local-ipv4s`,
/// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-metadata.html).
pub(super) async fn eni_listed(
    client: &imds::Client,
    mac: MacAddr,
    primary_ip: std::net::Ipv4Addr,
) -> bool {
    let path = format!("network/interfaces/macs/{mac}/local-ipv4s");
    match get(client, &path).await {
        Ok(ips) => ips
            .split_whitespace()
            .any(|ip| ip == primary_ip.to_string()),
        Err(_) => false,
    }
}
