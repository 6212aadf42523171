//! Small helpers over rtnetlink: acknowledged requests with explicit flags
//! and classification of kernel error codes.

use futures::StreamExt;
use rtnetlink::Handle;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;

/// The positive errno of a netlink error answer, if `err` is one.
pub(crate) fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|code| -code.get()),
        _ => None,
    }
}

/// `Ok(true)` if the request succeeded, `Ok(false)` if it failed with one of
/// `absent` (the object was not there), the error otherwise.
pub(crate) fn absent_ok(
    result: Result<(), rtnetlink::Error>,
    absent: &[i32],
) -> Result<bool, rtnetlink::Error> {
    match result {
        Ok(()) => Ok(true),
        Err(err) if errno(&err).is_some_and(|code| absent.contains(&code)) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Sends `message` with `flags` (which must include `NLM_F_ACK`) and waits
/// for the kernel's acknowledgement.
pub(crate) async fn request_ack(
    handle: &Handle,
    message: RouteNetlinkMessage,
    flags: u16,
) -> Result<(), rtnetlink::Error> {
    let mut request = NetlinkMessage::from(message);
    request.header.flags = flags;
    let mut responses = handle.clone().request(request)?;
    while let Some(response) = responses.next().await {
        if let NetlinkPayload::Error(err) = response.payload
            && err.code.is_some()
        {
            return Err(rtnetlink::Error::NetlinkError(err));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroI32;

    use rtnetlink::packet_core::ErrorMessage;

    use super::*;

    fn nl_error(code: i32) -> rtnetlink::Error {
        let mut msg = ErrorMessage::default();
        msg.code = NonZeroI32::new(-code);
        rtnetlink::Error::NetlinkError(msg)
    }

    #[test]
    fn errno_is_positive() {
        assert_eq!(errno(&nl_error(libc::EEXIST)), Some(libc::EEXIST));
        assert_eq!(errno(&rtnetlink::Error::RequestFailed), None);
    }

    #[test]
    fn absent_ok_classifies() {
        assert!(absent_ok(Ok(()), &[libc::ENOENT]).unwrap());
        assert!(!absent_ok(Err(nl_error(libc::ENOENT)), &[libc::ENOENT]).unwrap());
        assert!(absent_ok(Err(nl_error(libc::EPERM)), &[libc::ENOENT]).is_err());
    }
}
