//! DuraVIP ownership: who owns which virtual IP address, decided identically by every member of an
//! agreed view (docs chapter 27; Wackamole's algorithm as the design reference).
//!
//! The module is sans-IO: [`DuravipMachine`] never touches a socket, a clock or an interface. The
//! daemon feeds it the agreed views and the messages the group transport delivers in agreed (total)
//! order, sends what [`DuravipMachine::poll_transmit`] returns to the cluster group in agreed order,
//! and carries out the [`Action`]s (plumb, unplumb) that [`DuravipMachine::poll_action`] returns.
//!
//! - [`announce`]: what a member is configured for (from `Binding` and `ESMTP_Listener` stanzas) and
//!   what it announces after every view change.
//! - [`wire`]: the versioned encoding of the messages exchanged in agreed order.
//! - [`ownership`]: the deterministic election and the balancing rounds.
//! - [`machine`]: the state machine that ties them to views, timers and agreed-order messages.
//! - [`arpcache`]: the cluster-wide shared ARP cache (`cluster arp show`, `arp_all_hosts = false`).
//! - [`status`]: what the console shows ([`Status`]), as plain data; the console renders it
//!   (`crate::console::duravip`: `cluster duravip show`, `show tables` as XML, JSON forms).
//!
//! Console commands map onto the machine like this (the console renders a [`Status`] with its
//! `Render` trait, `--json` included):
//!
//! | command | call |
//! | --- | --- |
//! | `cluster duravip show` | `render(&machine.status(now), json)` |
//! | `cluster duravip show tables` | `render(&DuravipTables(&machine.status(now)), json)` |
//! | `cluster duravip debug on\|off` | [`DuravipMachine::set_debug`] |
//! | `cluster duravip announce view` | [`DuravipMachine::announce`] |
//! | `cluster duravip release all` | [`DuravipMachine::release_all`] |
//! | `cluster duravip move <ip> to <node>` | [`DuravipMachine::request_move`] |
//!
//! The guarantee everything rests on: every member of a view applies the same messages in the
//! same order to the same inputs, so at any point of the agreed message stream all members hold the
//! same ownership table; and an address moves from a live holder to a new owner only through a
//! hand-off in which the new owner acquires after the old holder's release has been delivered.

pub mod announce;
pub mod arpcache;
pub mod machine;
pub mod ownership;
pub mod status;
pub mod wire;

use std::fmt;

pub use announce::{AddrConfig, Announcement, LocalConfig, Services};
pub use machine::{Action, DuravipMachine, Params};
pub use ownership::{Entry, Table};
pub use status::{Status, StatusEntry, StatusMember};
pub use wire::WireError;

/// The one clock type of the engine: the group transport's [`crate::group::Time`], nanoseconds
/// from an origin the driver chooses. The machine only subtracts and compares times.
pub use crate::group::Time;

/// A member of the group: its node name and the incarnation it chose at start-up. A restarted node
/// is a new member (new incarnation) and starts with no address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Member {
    pub name: String,
    pub incarnation: u64,
}

impl Member {
    pub fn new(name: impl Into<String>, incarnation: u64) -> Member {
        Member {
            name: name.into(),
            incarnation,
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{:x}", self.name, self.incarnation)
    }
}

/// An agreed view as the group protocol installs it: the same id and the same member order on every
/// member. Ids only grow; index 0 is the leader (the oldest member), which runs the balancing rounds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct View {
    pub id: u64,
    pub members: Vec<Member>,
}

/// Why the machine refused an input or a console request. Wire errors carry the peer and the offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DuravipError {
    #[error("view {id} does not grow past the installed view {current}")]
    ViewNotNewer { id: u64, current: u64 },
    #[error("view {id} does not contain this node {me} exactly once")]
    NotInView { id: u64, me: String },
    #[error("view {id} holds {count} members, more than the {max} the wire format can index")]
    ViewTooLarge { id: u64, count: usize, max: usize },
    #[error("no view is installed yet")]
    NoView,
    #[error("message from {from}: {source}")]
    Wire {
        from: String,
        #[source]
        source: WireError,
    },
    #[error("{ip} is not a DuraVIP address known to view {view}")]
    UnknownAddress { ip: std::net::IpAddr, view: u64 },
    #[error("{node} is not a member of view {view}")]
    UnknownNode { node: String, view: u64 },
    #[error("{node} is not configured for {ip}")]
    NotConfigured { node: String, ip: std::net::IpAddr },
    #[error("{ip} is BROKEN and not managed")]
    Broken { ip: std::net::IpAddr },
    #[error("{ip} is pinned to its preferred node {node}")]
    Pinned { ip: std::net::IpAddr, node: String },
    #[error("{ip} is being handed over; try again when its release is reported")]
    HandoffInProgress { ip: std::net::IpAddr },
    #[error("{ip} follows {leader}; move {leader} instead")]
    Follower {
        ip: std::net::IpAddr,
        leader: std::net::IpAddr,
    },
}
