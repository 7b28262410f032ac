//! What the loop shares with the console, control and application threads: the status the
//! console reads, the request queue, the delivery channels, the replicated objects.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cohort_engine::config::Config;
use cohort_engine::duravip;
use cohort_engine::group::{Counters, MemberId, Order, View};
use cohort_engine::replicate::{Objects, Replicator};
use cohort_engine::udp::{self, IoStats};

use super::identity::Identity;
use cohort_engine::node::MemberInfo;

/// Wall-clock time since the Unix epoch.
pub(crate) fn wall() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Everything the console shows, kept current by the loop.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    pub identity: Identity,
    pub me: MemberId,
    pub view: View,
    pub view_installed: Instant,
    pub groups: BTreeMap<String, Vec<MemberId>>,
    pub infos: BTreeMap<MemberId, MemberInfo>,
    pub counters: Counters,
    pub io: IoStats,
    pub started: Instant,
    pub config: Config,
    pub config_path: Option<PathBuf>,
    pub last_reload: Option<String>,
    /// DuraVIP ownership as `cluster duravip show` prints it (refreshed by the loop).
    pub duravip: Option<duravip::Status>,
    /// What the data plane did (None when this node manages no DuraVIP address).
    pub dataplane: Option<crate::dataplane::DataPlaneStats>,
    pub xdp: Option<crate::xdp::XdpStats>,
    /// The cluster-wide shared ARP cache as `cluster arp show` prints it.
    pub arp: cohort_engine::console::status::ArpTable,
    /// Peer arrivals stamped by the XDP program and given to the failure detector.
    pub xdp_arrivals_fed: u64,
    /// The failure detector's view of every other view member.
    pub peers: Vec<PeerStatus>,
    /// The failure detector's local health score (0 = healthy).
    pub local_health: u32,
}

/// One view member as this node's failure detector sees it.
#[derive(Clone, Debug)]
pub struct PeerStatus {
    pub member: MemberId,
    /// Time since it was last heard from.
    pub silent_for: Duration,
    pub suspected: bool,
    pub failed: bool,
    pub rtt: cohort_engine::group::detector::Rtt,
}

/// A request from a console thread, carried out by the loop.
#[derive(Debug)]
pub enum Request {
    /// `cluster reset`: leave and rejoin with a new incarnation.
    Reset,
    /// `config reload` (also SIGHUP).
    Reload,
    /// `shutdown` / SIGTERM: leave gracefully and stop.
    Shutdown,
    /// An application joins a group.
    Join(String),
    /// A `listen` client joins a group (left again by [`Request::ListenLeave`] unless an
    /// application or the node itself joined it too).
    ListenJoin(String),
    /// The last `listen` client of a group has gone.
    ListenLeave(String),
    /// An application sends to a group (kept queued while the transport says "would block").
    Send {
        group: String,
        payload: Vec<u8>,
        order: Order,
    },
    /// `cluster duravip announce view`
    DuravipAnnounce,
    /// `cluster duravip release all`
    DuravipReleaseAll,
    /// `cluster duravip move <ip> to <node>`; the node machine's verdict goes back on `reply`
    /// (`Err` with the reason it refused).
    DuravipMove {
        ip: std::net::IpAddr,
        node: String,
        reply: Option<std::sync::mpsc::Sender<Result<(), String>>>,
    },
    /// `cluster duravip debug on|off`
    DuravipDebug(bool),
}

/// A message delivered to the application.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub group: String,
    pub sender: MemberId,
    pub order: Order,
    pub payload: Vec<u8>,
}

/// Shared between the loop and console threads.
pub struct Shared {
    pub status: Mutex<NodeStatus>,
    pub requests: Mutex<VecDeque<Request>>,
    pub waker: udp::Waker,
    /// Where application messages go (groups other than Cohort's own traffic), if anyone listens.
    pub deliveries: Mutex<Option<std::sync::mpsc::SyncSender<Delivery>>>,
    /// The replicated objects' state machine (the console reads it; the loop drives it).
    pub replicator: Arc<Mutex<Replicator>>,
    /// The application handle of the replicated objects (see [`Shared::objects`]); a reload
    /// replaces it.
    pub objects: std::sync::RwLock<Arc<Objects>>,
    /// Where the manager's console traffic goes (commands on a node, answers on the manager):
    /// messages of the control protocol (`cohort_engine::console::control`) on any group but the
    /// cluster group. Never blocks the loop: when full, a message is dropped and logged.
    pub control: Mutex<Option<std::sync::mpsc::SyncSender<Delivery>>>,
    /// `cohortctl listen <group>` connections: every message of the group is copied to each
    /// (dropped for a listener that does not keep up; a closed one is removed).
    pub listeners: Mutex<Vec<(String, std::sync::mpsc::SyncSender<Delivery>)>>,
    /// Open `listen` connections per group; when a group's count falls to zero, the node leaves
    /// the group again unless something else joined it.
    pub listen_counts: Mutex<BTreeMap<String, usize>>,
    /// The node's cluster journals (`cluster://` destinations) and its log service's state.
    pub journals: Arc<crate::logsvc::Journals>,
    /// The keyring in force (`cluster_key`), which the log service reads at every handshake; a
    /// reload replaces it.
    pub cluster_key: Arc<std::sync::RwLock<Option<cohort_engine::group::ClusterKey>>>,
    /// `cluster jobs`: the manager's log pulls and the DuraVIP moves in progress.
    pub jobs: Arc<super::jobs::Jobs>,
    /// On a manager, the log pull's counters and shipping lags (set when the pull starts).
    pub pull_stats: std::sync::OnceLock<Arc<crate::logsvc::puller::PullStats>>,
}

impl Shared {
    /// The application handle of the replicated objects: increments, gauges, throttles, caches,
    /// series. After an update returns `Ok(true)` (`max_pending` reached), call `waker.wake()`.
    /// Take it again after a `config reload` to see objects it added.
    pub fn objects(&self) -> Arc<Objects> {
        match self.objects.read() {
            Ok(o) => Arc::clone(&o),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Subscribes to application deliveries; at most `bound` wait unread (then the loop blocks on
    /// the reader, so a reader must keep up).
    pub fn subscribe(&self, bound: usize) -> std::sync::mpsc::Receiver<Delivery> {
        let (tx, rx) = std::sync::mpsc::sync_channel(bound);
        if let Ok(mut d) = self.deliveries.lock() {
            *d = Some(tx);
        }
        rx
    }

    /// Stops handing deliveries to the channel of [`Shared::subscribe`]: they are dropped.
    pub fn unsubscribe(&self) {
        if let Ok(mut d) = self.deliveries.lock() {
            *d = None;
        }
    }

    /// Requests waiting for the loop (application sends included).
    pub fn backlog(&self) -> usize {
        self.requests.lock().map_or(0, |q| q.len())
    }

    /// Queues application sends and wakes the loop once.
    pub fn send_batch(&self, group: &str, payloads: Vec<Vec<u8>>, order: Order) {
        if let Ok(mut q) = self.requests.lock() {
            for payload in payloads {
                q.push_back(Request::Send {
                    group: group.to_owned(),
                    payload,
                    order,
                });
            }
        }
        let _ = self.waker.wake();
    }

    /// Appends one record to cluster log `log` (a logger key such as `mainlog`, or a name of the
    /// `logs` dictionary); the log service offers it to the manager at once.
    pub fn log_append(&self, log: &str, payload: &[u8]) -> Result<(), String> {
        self.journals.append(log, payload)
    }

    /// Queues a request and wakes the loop.
    pub fn request(&self, r: Request) {
        if let Ok(mut q) = self.requests.lock() {
            q.push_back(r);
        }
        let _ = self.waker.wake();
    }
}
