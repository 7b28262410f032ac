//! What a node knows about DuraVIP, as plain data for the console ([`Status`]): the view, the
//! phase and, per address, its flags, owner and the members configured for it. The console
//! renders it (`cluster duravip show` in the documented shape, `show tables` as XML, JSON for
//! `--json`) in `crate::console::duravip`; nothing here knows the console.

use std::net::IpAddr;

use serde::Serialize;

use super::announce::Services;
use super::ownership::Broken;

/// Everything the console shows about DuraVIP on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    pub node: String,
    /// The installed view, if any.
    pub view_id: Option<u64>,
    /// The view's leader (index 0), which sends MATURE and the balancing rounds.
    pub leader: Option<String>,
    /// `none` (no view), `gather` (waiting for every member's announcement; only this node's own
    /// addresses are shown) or `run` (the agreed table).
    pub phase: &'static str,
    pub view_mature: bool,
    pub node_mature: bool,
    /// This node ran `release all` and takes no address until `announce view`.
    pub node_withdrawn: bool,
    /// `duravip_quorum = majority` and the view holds no majority: this node holds nothing.
    pub fenced: bool,
    /// Seconds since this node installed the view.
    pub view_stable_secs: u64,
    pub debug: bool,
    /// The timing in force on this node (`view_mature_time`, `view_balance_interval`,
    /// `view_broadcast_interval`, `duravip_balance_set_size`; JSON only).
    pub params: super::Params,
    pub entries: Vec<StatusEntry>,
}

/// One address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusEntry {
    pub ip: IpAddr,
    pub bindings: Vec<String>,
    pub services: Services,
    pub owned: bool,
    pub safe: bool,
    pub conflict: bool,
    pub broken: Option<Broken>,
    pub preference: Option<String>,
    pub follows: Option<IpAddr>,
    pub owner: Option<String>,
    /// A hand-off is under way: a former holder has not reported its release yet.
    pub handoff: bool,
    /// Seconds since what the members announce for this address last changed (as seen here).
    pub configuration_stable_secs: u64,
    pub members: Vec<StatusMember>,
}

/// A member configured for an address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusMember {
    pub name: String,
    pub incarnation: u64,
    pub index: usize,
    pub services: Services,
    pub owner: bool,
    pub holds: bool,
    pub candidate: bool,
    pub this_node: bool,
}

impl StatusEntry {
    /// The words inside the parentheses, in order.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut f = vec![
            if self.owned { "owned" } else { "unowned" },
            if self.safe { "safe" } else { "UNSAFE" },
        ];
        if self.conflict {
            f.push("in conflict");
        }
        if self.broken.is_some() {
            f.push("BROKEN");
        }
        f
    }
}
