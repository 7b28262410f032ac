//! [`GroupConfig`]: the options of `msgc_server { }` and `cluster { }` that the transport consumes.

use core::time::Duration;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The group transport's settings. `Default` gives the documented defaults.
///
/// The config parser fills it from `msgc_server { peers = [ name = "addr" ... ] port = ... }` and
/// from `cluster { heartbeats_per_sec heartbeat_start_delay }`; the option names are the field names.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupConfig {
    /// `port`: the UDP port every member listens on (Momentum's msgc port). Default 4809.
    pub port: u16,
    /// `peers`: every node that may be a member, by node name, with its address (port included).
    /// Nodes not listed here are never heard: their datagrams are dropped and counted.
    pub peers: Vec<(String, SocketAddr)>,
    /// `probe_interval`: how often each member proves it is alive to every other member, and how
    /// often a node looks for configured peers outside its view. Default 0.2 s.
    pub probe_interval: Duration,
    /// `suspect_timeout`: silence after which a member is suspected; it is removed one further
    /// `probe_interval` later unless it or another member shows it alive. Default 0.6 s.
    pub suspect_timeout: Duration,
    /// `cluster_key`: files whose contents key the MAC on every datagram (a keyring: the first
    /// signs, any verifies). Empty: no MAC.
    pub cluster_key: Vec<PathBuf>,
    /// `mtu`: the most UDP payload bytes in one datagram. Default 1400.
    pub mtu: usize,
    /// `max_unstable_bytes`: payload bytes a sender may have sent but not yet known received by
    /// every member; past it, `send` says "would block". Default 4 MiB.
    pub max_unstable_bytes: usize,
    /// `max_message_size` (Cohort extension): the largest message `send` takes, in bytes. Larger
    /// than a datagram, a message is cut into pieces and put back together by the group layer.
    /// Default 16 MiB.
    pub max_message_size: usize,
    /// `max_queue`: messages a receiver buffers per sender ahead of delivery; more is dropped and
    /// recovered by retransmission later. Default 65536.
    pub max_queue: usize,
    /// `heartbeats_per_sec` (cluster scope): how often the cluster layer calls
    /// [`Endpoint::heartbeat`](crate::group::Endpoint::heartbeat). Default 1.
    pub heartbeats_per_sec: u32,
    /// `heartbeat_start_delay` (cluster scope): heartbeats are only checked once a member has been
    /// in the view this long. Default 15 s.
    pub heartbeat_start_delay: Duration,
    /// `cluster_id` (Cohort extension): datagrams of another cluster id are dropped. Default 0.
    pub cluster_id: u32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            port: 4809,
            peers: Vec::new(),
            probe_interval: Duration::from_millis(200),
            suspect_timeout: Duration::from_millis(600),
            cluster_key: Vec::new(),
            mtu: 1400,
            max_unstable_bytes: 4_194_304,
            max_message_size: 16 << 20,
            max_queue: 65_536,
            heartbeats_per_sec: 1,
            heartbeat_start_delay: Duration::from_secs(15),
            cluster_id: 0,
        }
    }
}

impl GroupConfig {
    /// How long a member's heartbeat counter may stand still before it is declared stuck:
    /// three heartbeat periods.
    pub fn heartbeat_timeout(&self) -> Duration {
        let per_sec = self.heartbeats_per_sec.max(1);
        Duration::from_secs(3) / per_sec
    }
}
