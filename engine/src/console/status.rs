//! The data the console shows, as plain structs with no behaviour: the daemon fills them from its
//! live state and [`super::render`] turns them into the documented text shapes or JSON.
//!
//! Every struct derives `Serialize`; its JSON form (the `--json` output) is exactly its fields, so
//! the JSON carries the same data as the text and nothing else.

use std::fmt;
use std::net::SocketAddr;

use serde::{Serialize, Serializer};

/// Cohort's version string, `Cohort <version>`, printed by `version` and announced as a member's
/// `Version:` in `cluster membership`.
pub fn version_string() -> String {
    format!("Cohort {}", env!("CARGO_PKG_VERSION"))
}

/// `cluster info` (and the manager's `info`): the daemon's identity on the group transport and the
/// groups it uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterInfo {
    /// Port of the group transport (Momentum printed Spread's daemon port, 4803).
    pub daemon_port: u16,
    /// Private name of the main (`m:`) connection, e.g. `#ec0-22787#labrat-1`.
    pub m_private_name: String,
    /// Private name of the shared-object (`s:`) connection, e.g. `#ec1-22787#labrat-1`.
    pub s_private_name: String,
    /// The `control_group` option (console commands from the manager).
    pub control_group: String,
    /// The `cluster_group` option (membership, DuraVIP).
    pub cluster_group: String,
    /// Node name of the leader of the cluster group; `None` while not connected.
    pub leader: Option<String>,
    /// The `log_group` option; `None` prints `none` as Momentum does.
    pub logger_group: Option<String>,
}

/// What kind of process a member is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeType {
    /// A cluster node (`cohortd`). Printed `Momentum`, the word Momentum's own console used for an
    /// MTA node, so that scripts written against Momentum's `cluster membership` keep working.
    Node,
    /// The cluster manager (`cohortd --manager`, Momentum's eccmgr). Printed `Manager`.
    Manager,
}

impl NodeType {
    /// The word printed in `Node Type:` (and in JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::Node => "Momentum",
            NodeType::Manager => "Manager",
        }
    }
}

impl fmt::Display for NodeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for NodeType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One member of the current view, as `cluster membership` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Private name on the group transport, e.g. `#ec0-20768#pono`.
    pub private_name: String,
    /// Node name; `None` (printed `(Null)`) for the manager.
    pub node_name: Option<String>,
    /// Subcluster; `None` (printed `(Null)`) for the manager.
    pub subcluster: Option<String>,
    pub node_type: NodeType,
    /// The member's version string (see [`version_string`]).
    pub version: String,
    /// The member's cluster service address (`ECCluster_Listener`); `None` prints `0.0.0.0:0`.
    pub address: Option<SocketAddr>,
    /// Groups the member has joined, in join order.
    pub groups: Vec<String>,
}

/// `cluster membership` (and the manager's `show cluster membership`): the members of the view in
/// view order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Membership {
    pub members: Vec<Member>,
}

/// `cluster nodename`: the local node's name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeName {
    pub nodename: String,
}

/// `cluster nodeaddr`: the local cluster protocol service address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct NodeAddr {
    pub address: SocketAddr,
}

/// `version`: the version string of the process that answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Version {
    pub version: String,
}

impl Version {
    /// This build's version (see [`version_string`]).
    pub fn current() -> Self {
        Version {
            version: version_string(),
        }
    }
}

pub use crate::duravip::arpcache::{ArpEntry, ArpTable, MacAddr};

/// A subscriber of a journal and its checkpoint (log segment number and offset in it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Subscriber {
    pub name: String,
    pub segment: u32,
    pub offset: u32,
}

/// One journal of the `logs` dictionary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogInfo {
    /// The log's name (the key in `logs`).
    pub name: String,
    /// Bytes of the journal's segment files on disk.
    pub on_disk: u64,
    pub subscribers: Vec<Subscriber>,
}

/// One job of `cluster jobs`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobInfo {
    /// What `cluster abort` takes.
    pub id: u64,
    /// `log pull` or `duravip move`.
    pub kind: String,
    /// What it does, and how far it got.
    pub what: String,
    /// Seconds since it started.
    pub running_secs: f64,
    /// An abort was asked for and the job has not stopped yet.
    pub aborting: bool,
}

/// `cluster jobs` (Cohort extension): the jobs `cluster abort <id>` can stop.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Jobs {
    pub jobs: Vec<JobInfo>,
}

/// `cluster show logs`: every published journal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Logs {
    pub logs: Vec<LogInfo>,
}

/// `cluster counters` (a Cohort extension): what the group transport has sent, received and
/// dropped, so an operator can see forged or replayed traffic being refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Datagrams whose MAC did not verify under the cluster key.
    pub dropped_bad_mac: u64,
    /// Datagrams that did not decode as any Cohort datagram.
    pub dropped_undecodable: u64,
    /// Datagrams from an earlier incarnation of a peer.
    pub dropped_stale_incarnation: u64,
    /// Datagrams already seen (replayed).
    pub dropped_replay: u64,
    /// Further counters of the transport, printed after the ones above in this order.
    pub extra: Vec<(String, u64)>,
}

pub use crate::replicate::report::{
    CacheRow, CidrRow, GaugeRow, SharedList, SharedObject, SharedRows, SharedShow,
};

pub use crate::duravip::{Status as DuravipStatus, StatusEntry, StatusMember};

/// A short result of a command that changes something (`config reload`, `cluster reset`, ...):
/// one or more lines of text for people, `{"message": ...}` in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    pub message: String,
}

/// One line of `help` / `cluster help`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HelpEntry {
    /// The command form, e.g. `cluster abort <id>`.
    pub usage: String,
    pub summary: String,
}

/// `help` and `cluster help`: the commands a process accepts, from the grammar's own table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Help {
    pub commands: Vec<HelpEntry>,
}
