//! Links: lookup, the veth pair request, and removal off the async runtime.
//!
//! Deleting a veth waits for RCU in the kernel (tens of milliseconds) inside
//! the `sendmsg` call of whoever asks. That must not stall a tokio worker, so
//! removals run on a short-lived thread in the link's namespace with a
//! blocking netlink socket, and the caller decides whether to wait
//! ([`LinkRemoval`]).

use std::sync::Arc;

use futures::TryStreamExt;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::sys::{Socket, protocols::NETLINK_ROUTE};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec};
use tokio::sync::oneshot;

use super::error::PlumbingError;
use super::netns::{self, Netns};
use super::nl;
use crate::mac::MacAddr;

/// What the plumbing needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkView {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// MAC address, if Ethernet.
    pub mac: Option<MacAddr>,
    /// MTU, if reported.
    pub mtu: Option<u32>,
    /// Administratively up.
    pub up: bool,
    /// Link kind is `veth`.
    pub veth: bool,
    /// Its alias (`IFLA_IFALIAS`), which marks Weft's host veths.
    pub alias: Option<String>,
}

impl LinkView {
    /// Extracts the fields from a link message; `None` without a name.
    pub(crate) fn from_message(msg: &LinkMessage) -> Option<Self> {
        let mut view = Self {
            index: msg.header.index,
            name: String::new(),
            mac: None,
            mtu: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            veth: false,
            alias: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => view.name.clone_from(name),
                LinkAttribute::Address(mac) => view.mac = MacAddr::from_slice(mac),
                LinkAttribute::Mtu(mtu) => view.mtu = Some(*mtu),
                LinkAttribute::IfAlias(alias) => view.alias = Some(alias.clone()),
                LinkAttribute::LinkInfo(infos) => {
                    view.veth = infos
                        .iter()
                        .any(|info| matches!(info, LinkInfo::Kind(InfoKind::Veth)));
                }
                _ => {}
            }
        }
        (!view.name.is_empty()).then_some(view)
    }
}

/// The link named `name`, or `None` if there is none.
pub(crate) async fn by_name(
    handle: &Handle,
    name: &str,
) -> Result<Option<LinkView>, rtnetlink::Error> {
    let mut stream = Box::pin(handle.link().get().match_name(name).execute());
    match stream.try_next().await {
        Ok(msg) => Ok(msg.as_ref().and_then(LinkView::from_message)),
        Err(err) if nl::errno(&err) == Some(libc::ENODEV) => Ok(None),
        Err(err) => Err(err),
    }
}

/// All links of the namespace `handle` is bound to.
pub(crate) async fn dump(handle: &Handle) -> Result<Vec<LinkView>, rtnetlink::Error> {
    let messages: Vec<LinkMessage> = handle.link().get().execute().try_collect().await?;
    Ok(messages.iter().filter_map(LinkView::from_message).collect())
}

/// One end of a veth pair to create.
#[derive(Debug, Clone)]
pub(crate) struct VethEnd<'a> {
    /// Interface name.
    pub name: &'a str,
    /// MAC address to give it.
    pub mac: MacAddr,
}

/// Creates a veth pair with `mtu` in one request on `handle`: `local` in the
/// handle's namespace, up, and `peer` directly in `peer_ns`, down. (The
/// kernel opens the peer before it links the pair, so asking for the peer up
/// here fails with `ENOTCONN`; bring it up with [`set_alias_up`].)
pub(crate) async fn create_veth(
    handle: &Handle,
    local: &VethEnd<'_>,
    peer: &VethEnd<'_>,
    peer_ns: &Netns,
    mtu: u32,
) -> Result<(), rtnetlink::Error> {
    let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
        .name(peer.name)
        .address(peer.mac.0.to_vec())
        .mtu(mtu)
        .setns_by_fd(peer_ns.raw_fd())
        .build();
    let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
        .name(local.name)
        .address(local.mac.0.to_vec())
        .mtu(mtu)
        .up()
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
        .build();
    nl::request_ack(
        handle,
        RouteNetlinkMessage::NewLink(msg),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
    .await
}

/// Gives link `index` its alias and brings it up (one request; the kernel
/// takes no alias when it creates a link).
pub(crate) async fn set_alias_up(
    handle: &Handle,
    index: u32,
    alias: &str,
) -> Result<(), rtnetlink::Error> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).alias(alias).up().build())
        .execute()
        .await
}

/// Sets the MTU of link `index` and brings it up.
pub(crate) async fn set_mtu_up(
    handle: &Handle,
    index: u32,
    mtu: u32,
) -> Result<(), rtnetlink::Error> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).mtu(mtu).up().build())
        .execute()
        .await
}

/// A link to remove, by index (safe against a new link reusing the name) or
/// by name.
#[derive(Debug, Clone)]
pub(crate) enum LinkRef {
    /// Interface index.
    Index(u32),
    /// Interface name.
    Name(String),
}

impl LinkRef {
    fn message(&self) -> LinkMessage {
        match self {
            Self::Index(index) => LinkUnspec::new_with_index(*index).build(),
            Self::Name(name) => LinkUnspec::new_with_name(name).build(),
        }
    }
}

impl std::fmt::Display for LinkRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Index(index) => write!(f, "link #{index}"),
            Self::Name(name) => write!(f, "link {name}"),
        }
    }
}

/// A link removal in progress on its own thread. Dropping it lets the
/// removal finish in the background; [`LinkRemoval::wait`] waits for it.
#[derive(Debug)]
#[must_use = "drop the removal to let it finish in the background, or wait for it"]
pub struct LinkRemoval(Option<oneshot::Receiver<Result<(), PlumbingError>>>);

impl LinkRemoval {
    /// Nothing to remove.
    pub(crate) fn nothing() -> Self {
        Self(None)
    }

    /// Whether a link is being removed.
    pub fn is_pending(&self) -> bool {
        self.0.is_some()
    }

    /// Waits until the link is gone. A link that was already gone is success.
    pub async fn wait(self) -> Result<(), PlumbingError> {
        match self.0 {
            Some(rx) => netns::join(rx).await,
            None => Ok(()),
        }
    }
}

/// Starts removing `link` in `ns` (deleting either end of a veth removes both).
pub(crate) fn spawn_remove(ns: &Arc<Netns>, link: LinkRef) -> Result<LinkRemoval, PlumbingError> {
    let context = format!("delete {link} in {}", ns.path().display());
    let rx = netns::spawn_in(ns, move || {
        delete_blocking(&link).map_err(|err| match err {
            BlockingError::Io(e) => PlumbingError::io(context, e),
            BlockingError::Netlink(e) => PlumbingError::netlink(context, e),
        })
    })?;
    Ok(LinkRemoval(Some(rx)))
}

/// Removes `link` in `ns` and waits for it.
pub(crate) async fn remove(ns: &Arc<Netns>, link: LinkRef) -> Result<(), PlumbingError> {
    spawn_remove(ns, link)?.wait().await
}

enum BlockingError {
    Io(std::io::Error),
    Netlink(rtnetlink::Error),
}

/// `RTM_DELLINK` over a blocking socket opened on the calling thread (which
/// is inside the link's namespace). A link already gone is success.
fn delete_blocking(link: &LinkRef) -> Result<(), BlockingError> {
    let socket = Socket::new(NETLINK_ROUTE).map_err(BlockingError::Io)?;
    let mut request = NetlinkMessage::from(RouteNetlinkMessage::DelLink(link.message()));
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    request.header.sequence_number = 1;
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    socket.send(&buf, 0).map_err(BlockingError::Io)?;
    let (answer, _) = socket.recv_from_full().map_err(BlockingError::Io)?;
    let answer = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&answer).map_err(|e| {
        BlockingError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e.to_string(),
        ))
    })?;
    match answer.payload {
        NetlinkPayload::Error(err) if err.code.is_some() => nl::absent_ok(
            Err(rtnetlink::Error::NetlinkError(err)),
            &[libc::ENODEV, libc::ENOENT],
        )
        .map(drop)
        .map_err(BlockingError::Netlink),
        _ => Ok(()),
    }
}
