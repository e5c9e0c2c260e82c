//! Who owns an interaction, for a call that names it.
//!
//! A call that names an interaction (`X-Interaction-Id`, RFC 7433 `User-to-User`) joins it
//! only on the node that owns it. Before the SIP driver hands such a call to the application
//! it asks [`Owners`]; an interaction owned by another live node gets a redirect there
//! (`SipCore::redirect_incoming`), everything else goes on as on one node. A node alone
//! (no shared store) asks nobody: everything it knows is its own.
//!
//! [`StoreOwners`] reads ownership from the shared store (the `nodes` and `interactions`
//! tables of a cluster): the owner counts while its lease runs, and this node never redirects
//! to itself.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use rsipstack::sip::Uri;

use crate::bridge::InteractionId;
use crate::chat::store::Store;

/// Answers where a call for an interaction belongs.
pub(crate) trait Owners: Send + Sync + 'static {
    /// The SIP address of the live node that owns `id`, when that is another node; `None`
    /// when this node owns it, nobody does, or the answer cannot be had (the call then goes
    /// on here, as on one node, and the application decides).
    fn owner_sip<'a>(&'a self, id: &'a InteractionId) -> BoxFuture<'a, Option<Uri>>;
}

/// Ownership as the shared store records it.
pub(crate) struct StoreOwners {
    store: Store,
    /// This node's SIP address: an owner found there is this node.
    me: SocketAddr,
}

impl StoreOwners {
    pub(crate) fn new(store: Store, me: SocketAddr) -> StoreOwners {
        StoreOwners { store, me }
    }
}

impl Owners for StoreOwners {
    fn owner_sip<'a>(&'a self, id: &'a InteractionId) -> BoxFuture<'a, Option<Uri>> {
        Box::pin(async move {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let found = match self.store.owner_sip(id, now).await {
                Ok(found) => found?,
                Err(e) => {
                    // No cluster tables (one node on PostgreSQL), or the store is down: the
                    // call is served here as on one node.
                    tracing::debug!(interaction = %id, "owner not known: {e}");
                    return None;
                }
            };
            let owner = match Uri::try_from(found.as_str()) {
                Ok(owner) => owner,
                Err(e) => {
                    tracing::warn!(interaction = %id, sip_uri = %found, "owner's SIP address unreadable: {e}");
                    return None;
                }
            };
            (!is_me(&owner, self.me)).then_some(owner)
        })
    }
}

/// Whether `uri` names the node listening at `me` (same IP and port; 5060 when it names none).
fn is_me(uri: &Uri, me: SocketAddr) -> bool {
    let port = uri.host_with_port.port.as_ref().map_or(5060, |p| p.value());
    let host = uri.host_with_port.host.to_string();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    port == me.port() && host.parse::<std::net::IpAddr>().ok() == Some(me.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_at_our_address_is_us() {
        let me: SocketAddr = "127.0.0.3:5070".parse().unwrap();
        let uri = |s: &str| Uri::try_from(s).unwrap();
        assert!(is_me(&uri("sip:127.0.0.3:5070"), me));
        assert!(is_me(&uri("sip:tandem@127.0.0.3:5070"), me));
        assert!(!is_me(&uri("sip:127.0.0.2:5070"), me));
        assert!(!is_me(&uri("sip:127.0.0.3"), me));
        let default: SocketAddr = "127.0.0.3:5060".parse().unwrap();
        assert!(is_me(&uri("sip:127.0.0.3"), default));
    }
}
