//! Mapping of EC2 and SDK failures to [`CloudError`].

use crate::cloud::action::Ec2Action;
use crate::cloud::error::{CloudError, LimitKind};
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use std::time::Duration;

/// Classifies a failed SDK call.
pub(super) fn from_sdk<E>(
    api: Ec2Action,
    timeout: Duration,
    error: SdkError<E, HttpResponse>,
) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let name = api.name().to_owned();
    match &error {
        SdkError::TimeoutError(_) => CloudError::Timeout {
            api: name,
            after: timeout,
        },
        SdkError::DispatchFailure(failure) if failure.is_timeout() => CloudError::Timeout {
            api: name,
            after: timeout,
        },
        SdkError::DispatchFailure(failure) if failure.is_user() => CloudError::Fatal {
            api: name,
            detail: format!("{}", aws_sdk_ec2::error::DisplayErrorContext(&error)),
        },
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => CloudError::Transient {
            api: name,
            detail: format!("{}", aws_sdk_ec2::error::DisplayErrorContext(&error)),
        },
        SdkError::ServiceError(service) => from_code(
            api,
            error.code(),
            error.message().unwrap_or_default(),
            service.raw().status().as_u16(),
        ),
        _ => CloudError::Fatal {
            api: name,
            detail: format!("{}", aws_sdk_ec2::error::DisplayErrorContext(&error)),
        },
    }
}

/// Classifies an EC2 error answer by its code and HTTP status.
pub(super) fn from_code(
    api: Ec2Action,
    code: Option<&str>,
    message: &str,
    status: u16,
) -> CloudError {
    let name = api.name().to_owned();
    let detail = match code {
        Some(code) => format!("{code}: {message}"),
        None => format!("HTTP {status}: {message}"),
    };
    match code.unwrap_or_default() {
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" => {
            CloudError::Throttled { api: name }
        }
        "AttachmentLimitExceeded" => CloudError::LimitExceeded {
            api: name,
            what: LimitKind::Enis,
            detail,
        },
        "PrivateIpAddressLimitExceeded" => CloudError::LimitExceeded {
            api: name,
            what: LimitKind::IpsPerEni,
            detail,
        },
        code @ ("NetworkInterfaceLimitExceeded" | "ResourceLimitExceeded") => {
            CloudError::LimitExceeded {
                api: name,
                what: LimitKind::Other(code.to_owned()),
                detail,
            }
        }
        "InsufficientFreeAddressesInSubnet" => CloudError::InsufficientAddresses {
            api: name,
            subnet: String::new(),
            detail,
        },
        "InsufficientCidrBlocks" => CloudError::InsufficientCidrBlocks {
            api: name,
            subnet: String::new(),
            detail,
        },
        code if code.ends_with(".NotFound") => CloudError::NotFound {
            api: name,
            what: code.trim_end_matches(".NotFound").to_owned(),
            detail,
        },
        "InternalError" | "InternalFailure" | "ServiceUnavailable" | "Unavailable" => {
            CloudError::Transient { api: name, detail }
        }
        "UnauthorizedOperation" | "AuthFailure" => CloudError::Fatal {
            api: name,
            detail: format!(
                "{detail}; grant the node role the EC2 permissions listed in deploy/ (e.g. \
                 ec2:{api})"
            ),
        },
        _ if status >= 500 => CloudError::Transient { api: name, detail },
        _ => CloudError::Fatal { api: name, detail },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(code: Option<&str>, status: u16) -> CloudError {
        from_code(Ec2Action::AssignPrivateIpAddresses, code, "msg", status)
    }

    #[test]
    fn ec2_codes_map_to_actionable_kinds() {
        assert!(matches!(
            classify(Some("RequestLimitExceeded"), 503),
            CloudError::Throttled { .. }
        ));
        assert!(matches!(
            classify(Some("AttachmentLimitExceeded"), 400),
            CloudError::LimitExceeded {
                what: LimitKind::Enis,
                ..
            }
        ));
        assert!(matches!(
            classify(Some("PrivateIpAddressLimitExceeded"), 400),
            CloudError::LimitExceeded {
                what: LimitKind::IpsPerEni,
                ..
            }
        ));
        assert!(matches!(
            classify(Some("InsufficientCidrBlocks"), 400),
            CloudError::InsufficientCidrBlocks { .. }
        ));
        assert!(matches!(
            classify(Some("InsufficientFreeAddressesInSubnet"), 400),
            CloudError::InsufficientAddresses { .. }
        ));
        assert!(matches!(
            classify(Some("InvalidNetworkInterfaceID.NotFound"), 400),
            CloudError::NotFound { .. }
        ));
        let denied = classify(Some("UnauthorizedOperation"), 403);
        assert!(!denied.is_retryable());
        assert!(denied.to_string().contains("ec2:AssignPrivateIpAddresses"));
    }

    #[test]
    fn unknown_server_errors_are_transient_and_client_errors_fatal() {
        assert!(classify(None, 500).is_retryable());
        assert!(classify(Some("InternalError"), 500).is_retryable());
        assert!(!classify(Some("InvalidParameterValue"), 400).is_retryable());
    }
}
