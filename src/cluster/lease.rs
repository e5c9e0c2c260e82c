//! Node leases, as pure decisions: which nodes' leases are over, and whether this node may
//! still serve. The driver in [`super`] reads the rows and carries the decisions out.
//!
//! A node renews its row every third of the lease. A node whose `lease_until` has passed is
//! dead to the others: the first node whose takeover deletes its row owns its interactions.
//! A node that cannot renew stops serving once its own lease has run out, before another
//! node may take its interactions (the fence in the store refuses its late writes anyway).

use std::time::Duration;

use crate::chat::store::NodeRecord;

/// How often a node renews its lease and looks for dead nodes: a third of the lease, so two
/// renewals may fail before the lease runs out.
pub fn renew_every(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(100))
}

/// The nodes other than `me` whose lease ended before `now` (unix ms): theirs to take over.
pub fn expired<'a>(now: u64, me: &str, nodes: &'a [NodeRecord]) -> Vec<&'a str> {
    nodes
        .iter()
        .filter(|n| n.node != me && n.lease_until < now)
        .map(|n| n.node.as_str())
        .collect()
}

/// What a node does after a renewal attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The lease is extended: go on serving.
    Renewed,
    /// The renewal failed but the last lease still runs: go on, try again.
    Holding,
    /// The lease ran out without renewal, or the row is gone (another node declared this one
    /// dead): stop serving everything, then register afresh.
    Lost,
}

/// The node's standing after a renewal at `now` whose outcome is `renewed` (`None`: the
/// store did not answer), the last lease having run until `held_until`.
pub fn standing(now: u64, held_until: u64, renewed: Option<bool>) -> Standing {
    match renewed {
        Some(true) => Standing::Renewed,
        Some(false) => Standing::Lost,
        None if now < held_until => Standing::Holding,
        None => Standing::Lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, lease_until: u64) -> NodeRecord {
        NodeRecord {
            node: name.into(),
            http_url: format!("http://{name}"),
            sip_uri: format!("sip:{name}"),
            lease_until,
        }
    }

    #[test]
    fn only_other_nodes_past_their_lease_are_expired() {
        let nodes = [
            node("a", 900),
            node("b", 1000),
            node("c", 1001),
            node("me", 10),
        ];
        assert_eq!(expired(1000, "me", &nodes), vec!["a"]);
        assert_eq!(expired(1002, "me", &nodes), vec!["a", "b", "c"]);
        assert!(expired(0, "me", &nodes).is_empty());
    }

    #[test]
    fn a_node_that_cannot_renew_stops_when_its_lease_ends() {
        assert_eq!(standing(100, 200, Some(true)), Standing::Renewed);
        assert_eq!(standing(100, 200, None), Standing::Holding);
        assert_eq!(standing(200, 200, None), Standing::Lost);
        // Declared dead by another node: its interactions are gone even if the clock says not.
        assert_eq!(standing(100, 200, Some(false)), Standing::Lost);
    }

    #[test]
    fn renewals_come_three_times_a_lease() {
        assert_eq!(renew_every(Duration::from_secs(9)), Duration::from_secs(3));
        assert_eq!(renew_every(Duration::ZERO), Duration::from_millis(100));
    }
}
