//! The event loop of a node: the UDP driver feeds the sans-IO group endpoint; what the endpoint
//! wants sent goes out in one batch per turn; what it delivers updates the status the console
//! reads. Signals and console requests wake the loop through the driver's waker.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cohort_engine::config::{self, Config};
use cohort_engine::duravip::arpcache::{self, SharedArpCache};
use cohort_engine::duravip::{self, DuravipMachine, LocalConfig, Params};
use cohort_engine::group::{
    ClusterKey, Counters, Endpoint, Event, GroupConfig, MemberId, Order, Time, View,
};
use cohort_engine::replicate::{self, ObjectSettings, Objects, Replicator};
use cohort_engine::udp::{self, DatagramIo, Driver, IoStats, Outgoing};

use super::identity::{self, Identity};
use super::signals::SignalFlags;

/// What a member tells the others about itself, so that `cluster membership` can show it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberInfo {
    pub pid: u32,
    pub subcluster: String,
    /// `Momentum` for a node, `Manager` for the manager (the docs' words).
    pub node_type: String,
    pub version: String,
    /// The member's ECCluster_Listener address, `0.0.0.0:0` if it has none.
    pub eccluster_addr: String,
}

/// Tag byte of Cohort's own messages on the cluster group.
const MSG_MEMBER_INFO: u8 = 1;
/// DuraVIP ownership messages (agreed order).
const MSG_DURAVIP: u8 = 2;
/// Replication batches and snapshots (FIFO).
const MSG_REPLICATE: u8 = 3;
/// Reports of this node's ARP cache for the shared ARP cache (FIFO).
const MSG_ARP: u8 = 4;
/// Least time between two reads of the XDP program's arrival stamps.
const XDP_STAMP_PERIOD: Duration = Duration::from_millis(10);

/// A member's name in replicated objects' views, Momentum's `#ec1-<pid>#<node>`: the pid is part
/// of the incarnation, so every member derives the same name from the view alone.
pub fn replication_member(m: &MemberId) -> replicate::MemberId {
    replicate::MemberId::new(format!(
        "#ec1-{}#{}",
        identity::pid_of(m.incarnation),
        m.name
    ))
}

/// Wall-clock time, the clock of replicated objects (TTLs and series windows are absolute).
pub(crate) fn wall() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// The DuraVIP view of a group view (its id in 64 bits, order kept: `ViewId::as_u64`).
fn duravip_view(view: &View) -> duravip::View {
    duravip::View {
        id: view.id.as_u64(),
        members: view
            .members
            .iter()
            .map(|m| duravip::Member::new(m.name.clone(), m.incarnation))
            .collect(),
    }
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
    /// `cluster duravip move <ip> to <node>`
    DuravipMove { ip: std::net::IpAddr, node: String },
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

/// Requests (application sends, console actions) the loop takes from its queue per turn.
const REQUESTS_PER_TURN: usize = 4096;

/// Shared between the loop and console threads.
pub struct Shared {
    pub status: Mutex<NodeStatus>,
    pub requests: Mutex<VecDeque<Request>>,
    pub waker: udp::Waker,
    /// Where application messages go (groups other than Cohort's own traffic), if anyone listens.
    pub deliveries: Mutex<Option<std::sync::mpsc::SyncSender<Delivery>>>,
    /// The replicated objects' state machine (the console reads it; the loop drives it).
    pub replicator: Mutex<Replicator>,
    /// The application handle of the replicated objects: increments, gauges, throttles, caches,
    /// series. After an update returns `Ok(true)` (`max_pending` reached), call `waker.wake()`.
    pub objects: Arc<Objects>,
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
}

impl Shared {
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

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error("cannot read the cluster key: {0}")]
    Key(String),
    #[error("cannot start the group transport: {0}")]
    Endpoint(String),
    #[error("cannot open UDP {addr}: {why}")]
    Socket { addr: SocketAddr, why: String },
    #[error("I/O error in the event loop: {0}")]
    Io(#[from] std::io::Error),
}

/// The transport settings of a configuration, with every peer resolved.
pub fn group_config(cfg: &Config) -> Result<GroupConfig, identity::IdentityError> {
    let m = &cfg.msgc_server;
    let peers = m
        .peers
        .iter()
        .map(|p| identity::resolve_peer(&p.name, &p.address, m.port).map(|a| (p.name.clone(), a)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(GroupConfig {
        port: m.port,
        peers,
        probe_interval: Duration::from_secs_f64(m.probe_interval),
        suspect_timeout: Duration::from_secs_f64(m.suspect_timeout),
        cluster_key: m.cluster_key.clone(),
        mtu: m.mtu as usize,
        max_unstable_bytes: m.max_unstable_bytes as usize,
        max_queue: m.max_queue as usize,
        max_message_size: usize::try_from(m.max_message_size).unwrap_or(usize::MAX),
        heartbeats_per_sec: cfg.cluster.heartbeats_per_sec,
        heartbeat_start_delay: Duration::from_secs_f64(cfg.cluster.heartbeat_start_delay),
        cluster_id: m.cluster_id,
    })
}

/// This node's `MemberInfo`.
fn my_info(cfg: &Config, id: &Identity, manager: bool) -> MemberInfo {
    let ecc = cfg
        .eccluster_listener
        .listens
        .iter()
        .find_map(|l| match &l.addr {
            config::ListenAddr::Inet {
                host: Some(h),
                port,
            } => Some(SocketAddr::new(*h, *port)),
            config::ListenAddr::Inet { host: None, port } => {
                Some(SocketAddr::new(id.addr.ip(), *port))
            }
            config::ListenAddr::Unix(_) => None,
        })
        .map_or_else(|| "0.0.0.0:0".to_owned(), |a| a.to_string());
    MemberInfo {
        pid: id.pid,
        subcluster: id.subcluster.clone(),
        node_type: if manager { "Manager" } else { "Momentum" }.to_owned(),
        version: format!("Cohort {}", env!("CARGO_PKG_VERSION")),
        eccluster_addr: if manager { "0.0.0.0:0".to_owned() } else { ecc },
    }
}

/// The groups a node joins: the cluster and control groups and its subcluster's group; a manager
/// joins the cluster group (as in the documented `cluster membership` sample) and its private
/// reply group.
pub fn groups_to_join(cfg: &Config, id: &Identity, manager: bool) -> Vec<String> {
    if manager {
        // The manager's private reply group (hidden from `cluster membership`, like Spread's
        // private groups) receives the nodes' answers to its console commands.
        return vec![
            cfg.cluster.cluster_group.clone(),
            super::control::reply_group(&id.nodename),
        ];
    }
    vec![
        cfg.cluster.control_group.clone(),
        format!("ec_sc_{}", id.subcluster),
        cfg.cluster.cluster_group.clone(),
    ]
}

/// The monotonic clock the protocol runs on: nanoseconds since the loop started.
struct Clock(Instant);

impl Clock {
    fn now(&self) -> Time {
        Time::from_nanos(self.0.elapsed().as_nanos() as u64)
    }
}

/// A running node.
pub struct Node {
    pub shared: Arc<Shared>,
    endpoint: Endpoint,
    io: Box<dyn DatagramIo>,
    clock: Clock,
    signals: SignalFlags,
    peers_by_addr: BTreeMap<SocketAddr, String>,
    info: MemberInfo,
    joins: Vec<String>,
    /// Groups joined only for `listen` clients, left when the last of them goes.
    listen_only: std::collections::BTreeSet<String>,
    cluster_group: String,
    /// `control_group`: with `ec_sc_*` and private groups, where the manager's commands travel.
    control_group: String,
    duravip: DuravipMachine,
    dataplane: Option<crate::dataplane::DataPlane>,
    owned: std::collections::BTreeSet<std::net::IpAddr>,
    duravip_dirty: bool,
    last_status: Instant,
    /// Replication payloads the transport could not take yet (flow control), oldest first.
    rep_pending: VecDeque<Vec<u8>>,
    /// DuraVIP and member-info messages flow control has not taken yet, in order. Never dropped:
    /// DuraVIP's safety rests on every member applying the same agreed stream. The queue holds
    /// only what the window refused and drains as acknowledgements return.
    ctl_pending: VecDeque<(Vec<u8>, Order)>,
    /// The cluster-wide shared ARP cache.
    arp: SharedArpCache,
    /// `arp_cache_interval`; `None` when this node does not collect.
    arp_every: Option<Duration>,
    next_arp: Time,
    /// Where this node collects ARP entries: (interface, network) of every `Topology` block.
    arp_scope: Vec<(String, ipnet::IpNet)>,
    /// Configured DuraVIP addresses: never hosts of the cache.
    vip_addrs: std::collections::BTreeSet<std::net::IpAddr>,
    /// Peer name by IPv4 address (addresses shared by several peers are left out), for the XDP
    /// program's arrival stamps.
    xdp_peers: BTreeMap<std::net::Ipv4Addr, String>,
    /// Packet count of each peer at the last read of the stamps.
    xdp_seen: BTreeMap<std::net::Ipv4Addr, u64>,
    next_xdp_read: Time,
    xdp_arrivals_fed: u64,
    /// When the replicated objects' zero counts were last freed (`Replicator::compact`).
    last_compact: Instant,
}

/// How often the replicated objects' zero counts are freed.
const COMPACT_INTERVAL: Duration = Duration::from_secs(10);

impl Node {
    /// Binds the transport and creates the endpoint; nothing is sent until [`Node::run`].
    pub fn start(
        cfg: Config,
        config_path: Option<PathBuf>,
        driver: Driver,
        manager: bool,
    ) -> Result<Node, RunError> {
        let id = identity::resolve(&cfg)?;
        let gcfg = group_config(&cfg)?;
        let key = match &gcfg.cluster_key {
            Some(p) => Some(
                ClusterKey::load(p).map_err(|e| RunError::Key(format!("{}: {e}", p.display())))?,
            ),
            None => None,
        };
        let io = udp::open(driver, id.addr).map_err(|e| RunError::Socket {
            addr: id.addr,
            why: e.to_string(),
        })?;
        let clock = Clock(Instant::now());
        let me = MemberId::new(id.nodename.clone(), id.incarnation);
        let endpoint = Endpoint::new(gcfg.clone(), me.clone(), key, clock.now())
            .map_err(|e| RunError::Endpoint(e.to_string()))?;
        let waker = io.waker();
        let signals = SignalFlags::install(&waker)?;
        let peers_by_addr = gcfg.peers.iter().map(|(n, a)| (*a, n.clone())).collect();
        let info = my_info(&cfg, &id, manager);
        let dv = DuravipMachine::new(
            duravip::Member::new(id.nodename.clone(), id.incarnation),
            if manager {
                LocalConfig::default()
            } else {
                LocalConfig::from_config(&cfg)
            },
            Params::from_cluster(&cfg.cluster),
        );
        // The data plane needs CAP_NET_ADMIN; without DuraVIP addresses there is nothing to do.
        let settings: Vec<ObjectSettings> = cfg
            .cluster
            .replicate
            .iter()
            .filter_map(|r| match ObjectSettings::from_config(r) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(object = %r.name, error = %e, "replicated object not started");
                    None
                }
            })
            .collect();
        // Leave room in each transport message for its framing and our tag byte.
        let rep_mtu = (cfg.msgc_server.mtu as usize).saturating_sub(256).max(512);
        let replicator = Replicator::new(replication_member(&me), settings, rep_mtu, manager)
            .map_err(|e| RunError::Endpoint(format!("replication: {e}")))?;
        let dataplane = if !manager && !crate::dataplane::placements(&cfg).is_empty() {
            match crate::dataplane::DataPlane::start(&cfg, vec![id.addr.ip()], Instant::now()) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::error!(error = %e, "DuraVIP data plane unavailable: addresses will not be plumbed");
                    None
                }
            }
        } else {
            None
        };
        let joins = groups_to_join(&cfg, &id, manager);
        // Only nodes with Topology interfaces have hosts of interest to collect.
        let arp_every =
            (!manager && !cfg.cluster.topology.is_empty() && cfg.cluster.arp_cache_interval > 0.0)
                .then(|| Duration::from_secs_f64(cfg.cluster.arp_cache_interval.min(1e6)));
        // A host stays while some node reported it within three collection intervals.
        let arp_ttl = arp_every.map_or(Duration::from_secs(180), |d| 3 * d);
        let arp_scope: Vec<(String, ipnet::IpNet)> = cfg
            .cluster
            .topology
            .iter()
            .map(|t| (t.interface.clone(), t.network))
            .collect();
        let vip_addrs = crate::dataplane::placements(&cfg)
            .into_iter()
            .map(|p| p.ip)
            .collect();
        let mut xdp_peers: BTreeMap<std::net::Ipv4Addr, String> = BTreeMap::new();
        let mut shared_ip: std::collections::BTreeSet<std::net::Ipv4Addr> = Default::default();
        for (name, a) in &gcfg.peers {
            if let std::net::IpAddr::V4(v4) = a.ip()
                && xdp_peers.insert(v4, name.clone()).is_some()
            {
                shared_ip.insert(v4);
            }
        }
        xdp_peers.retain(|ip, _| !shared_ip.contains(ip));
        let status = NodeStatus {
            identity: id,
            me: me.clone(),
            view: endpoint.view().clone(),
            view_installed: Instant::now(),
            groups: BTreeMap::new(),
            infos: BTreeMap::from([(me, info.clone())]),
            counters: endpoint.counters().clone(),
            io: io.stats(),
            started: Instant::now(),
            config: cfg.clone(),
            config_path,
            last_reload: None,
            duravip: None,
            dataplane: None,
            xdp: None,
            arp: Default::default(),
            xdp_arrivals_fed: 0,
        };
        let t0 = clock.now();
        Ok(Node {
            shared: Arc::new(Shared {
                status: Mutex::new(status),
                requests: Mutex::new(VecDeque::new()),
                waker,
                deliveries: Mutex::new(None),
                control: Mutex::new(None),
                listeners: Mutex::new(Vec::new()),
                listen_counts: Mutex::new(BTreeMap::new()),
                objects: replicator.objects().clone(),
                replicator: Mutex::new(replicator),
                journals: Arc::new(if manager {
                    crate::logsvc::Journals::none()
                } else {
                    crate::logsvc::Journals::start(&cfg)
                }),
            }),
            endpoint,
            io,
            clock,
            signals,
            peers_by_addr,
            info,
            joins,
            listen_only: std::collections::BTreeSet::new(),
            cluster_group: cfg.cluster.cluster_group.clone(),
            control_group: cfg.cluster.control_group.clone(),
            duravip: dv,
            dataplane,
            owned: std::collections::BTreeSet::new(),
            duravip_dirty: true,
            last_status: Instant::now(),
            rep_pending: VecDeque::new(),
            ctl_pending: VecDeque::new(),
            arp: SharedArpCache::new(arp_ttl),
            arp_every,
            next_arp: t0,
            arp_scope,
            vip_addrs,
            xdp_peers,
            xdp_seen: BTreeMap::new(),
            next_xdp_read: t0,
            xdp_arrivals_fed: 0,
            last_compact: Instant::now(),
        })
    }

    /// Runs until a graceful leave completes (SIGTERM, SIGINT, `shutdown`).
    pub fn run(mut self) -> Result<(), RunError> {
        let nice = self
            .shared
            .status
            .lock()
            .map_or(0, |s| s.config.msgc_server.loop_nice);
        set_thread_nice(nice);
        for g in self.joins.clone() {
            if let Err(e) = self.endpoint.join(&g) {
                tracing::warn!(group = %g, error = %e, "cannot join group");
            }
        }
        let hb_period = Duration::from_secs(1)
            / self
                .shared
                .status
                .lock()
                .map_or(1, |s| s.config.cluster.heartbeats_per_sec.max(1));
        let mut next_heartbeat = self.clock.now();
        let mut leaving: Option<Time> = None;
        let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        loop {
            let now = self.clock.now();
            if self.signals.take_reload() {
                self.shared.request(Request::Reload);
            }
            if self.signals.terminate_requested() && leaving.is_none() {
                tracing::info!("leaving the cluster");
                self.flush_replication();
                self.endpoint.leave_cluster(now);
                leaving = Some(now);
            }
            // Requests one at a time, in order, until an application send would block: it and
            // everything behind it stay queued (in order) for the next turn, untouched. At most
            // REQUESTS_PER_TURN per turn, so that a busy producer never keeps the loop from its
            // sockets and timers.
            for _ in 0..REQUESTS_PER_TURN {
                let Some(r) = self
                    .shared
                    .requests
                    .lock()
                    .ok()
                    .and_then(|mut q| q.pop_front())
                else {
                    break;
                };
                match r {
                    Request::Join(g) => {
                        // An application's join is for good, even if a listener asked first.
                        self.listen_only.remove(&g);
                        if let Err(e) = self.endpoint.join(&g) {
                            tracing::warn!(group = %g, error = %e, "cannot join group");
                        }
                    }
                    Request::ListenJoin(g) => {
                        let joined = self.endpoint.group_members(&g).contains(self.endpoint.me());
                        if !self.joins.contains(&g) && !joined {
                            self.listen_only.insert(g.clone());
                        }
                        if let Err(e) = self.endpoint.join(&g) {
                            tracing::warn!(group = %g, error = %e, "cannot join group");
                        }
                    }
                    Request::ListenLeave(g) => {
                        let still_listened = self
                            .shared
                            .listen_counts
                            .lock()
                            .map_or(true, |c| c.get(&g).is_some_and(|n| *n > 0));
                        if !still_listened
                            && self.listen_only.remove(&g)
                            && let Err(e) = self.endpoint.leave(&g)
                        {
                            tracing::debug!(group = %g, error = %e, "leaving a listened group");
                        }
                    }
                    Request::Send {
                        group,
                        payload,
                        order,
                    } => match self.endpoint.send_owned(&group, payload, order) {
                        Ok(()) => {}
                        Err((cohort_engine::group::SendError::WouldBlock { .. }, payload)) => {
                            if let Ok(mut q) = self.shared.requests.lock() {
                                q.push_front(Request::Send {
                                    group,
                                    payload,
                                    order,
                                });
                            }
                            break;
                        }
                        Err((e, _)) => tracing::warn!(group = %group, error = %e, "send refused"),
                    },
                    Request::DuravipAnnounce => {
                        if let Err(e) = self.duravip.announce() {
                            tracing::warn!(error = %e, "cannot announce the DuraVIP view");
                        }
                        self.duravip_dirty = true;
                    }
                    Request::DuravipReleaseAll => {
                        self.duravip.release_all();
                        self.duravip_dirty = true;
                    }
                    Request::DuravipMove { ip, node } => {
                        if let Err(e) = self.duravip.request_move(ip, &node) {
                            tracing::warn!(%ip, %node, error = %e, "DuraVIP move refused");
                        }
                        self.duravip_dirty = true;
                    }
                    Request::DuravipDebug(on) => self.duravip.set_debug(on),
                    Request::Shutdown if leaving.is_none() => {
                        self.flush_replication();
                        self.endpoint.leave_cluster(now);
                        leaving = Some(now);
                    }
                    Request::Shutdown => {}
                    Request::Reload => self.reload(),
                    Request::Reset => {
                        if let Err(e) = self.reset(now) {
                            tracing::error!(error = %e, "cluster reset failed");
                        }
                    }
                }
            }
            // Arrivals the XDP program stamped count before the detector looks for silence.
            self.feed_xdp_stamps(now);
            if let Some(t) = self.endpoint.poll_timeout()
                && t <= now
            {
                self.endpoint.handle_timeout(now);
            }
            if self.arp_every.is_some() && now >= self.next_arp {
                self.collect_arp(now);
            }
            let dv_now = duravip::Time(now.as_nanos());
            if self.duravip.poll_timeout().is_some_and(|t| t <= dv_now) {
                self.duravip.handle_timeout(dv_now);
                self.duravip_dirty = true;
            }
            if let Some(dp) = &mut self.dataplane
                && dp.next_deadline() <= Instant::now()
            {
                dp.tick(Instant::now());
            }
            if now >= next_heartbeat {
                self.endpoint.heartbeat(now);
                next_heartbeat = now + hb_period;
            }
            let mut done = false;
            while let Some(ev) = self.endpoint.poll_event() {
                if self.on_event(ev) {
                    done = true;
                }
            }
            self.drive_duravip();
            self.drive_replication();
            while let Some(t) = self.endpoint.poll_transmit() {
                out.push((t.destination, t.payload));
            }
            if !out.is_empty() {
                let batch: Vec<Outgoing<'_>> = out
                    .iter()
                    .map(|(to, d)| Outgoing { to: *to, data: d })
                    .collect();
                self.io.send_batch(&batch)?;
                out.clear();
            }
            if done {
                tracing::info!("left the cluster");
                if let Some(dp) = &mut self.dataplane {
                    dp.release_all();
                }
                return Ok(());
            }
            // A leave that cannot finish (no peer answers) still ends promptly.
            if let Some(t) = leaving
                && now.since(t) > Duration::from_secs(2)
            {
                tracing::warn!("leave not acknowledged within 2 s; stopping anyway");
                if let Some(dp) = &mut self.dataplane {
                    dp.release_all();
                }
                return Ok(());
            }
            self.publish();
            let dv_deadline = self.duravip.poll_timeout().map(|t| Time::from_nanos(t.0));
            let rep_deadline = self
                .shared
                .replicator
                .lock()
                .ok()
                .and_then(|r| r.poll_timeout())
                .map(|t| {
                    let w = wall();
                    now + t.saturating_sub(w)
                });
            let dp_deadline = self.dataplane.as_ref().map(|d| {
                let left = d.next_deadline().saturating_duration_since(Instant::now());
                now + left
            });
            let arp_deadline = self.arp_every.map(|_| self.next_arp);
            let deadline = [
                self.endpoint.poll_timeout(),
                Some(next_heartbeat),
                arp_deadline,
                dv_deadline,
                dp_deadline,
                rep_deadline,
            ]
            .into_iter()
            .flatten()
            .min();
            let wait = deadline
                .map_or(Duration::from_millis(100), |d| d.since(now))
                .min(Duration::from_millis(100));
            let (endpoint, clock, peers) = (&mut self.endpoint, &self.clock, &self.peers_by_addr);
            self.io.recv(Some(wait), &mut |r| {
                let now = clock.now();
                if let (Some(k), Some(name)) = (r.kernel_ns, peers.get(&r.from)) {
                    // The kernel stamped arrival on the realtime clock; place it on ours.
                    let real_now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64);
                    let age = Duration::from_nanos(real_now.saturating_sub(k));
                    let at = Time::from_nanos(now.as_nanos().saturating_sub(age.as_nanos() as u64));
                    endpoint.note_arrival(now, name, at);
                }
                endpoint.handle_packet(now, r.from, r.data);
            })?;
        }
    }

    /// `cluster reset`: leave the cluster and come back at once as a new incarnation, which forces
    /// a fresh view and a new DuraVIP negotiation (Momentum restarted Spread for this).
    fn reset(&mut self, now: Time) -> Result<(), RunError> {
        let (cfg, mut id) = {
            let s = self
                .shared
                .status
                .lock()
                .map_err(|_| RunError::Endpoint("status poisoned".into()))?;
            (s.config.clone(), s.identity.clone())
        };
        let gcfg = group_config(&cfg)?;
        let key = match &gcfg.cluster_key {
            Some(p) => Some(
                ClusterKey::load(p).map_err(|e| RunError::Key(format!("{}: {e}", p.display())))?,
            ),
            None => None,
        };
        // Say goodbye first, so peers install the smaller view at once instead of suspecting us.
        self.endpoint.leave_cluster(now);
        while let Some(t) = self.endpoint.poll_transmit() {
            let _ = self.io.send_batch(&[Outgoing {
                to: t.destination,
                data: &t.payload,
            }]);
        }
        id.incarnation = identity::fresh_incarnation();
        let me = MemberId::new(id.nodename.clone(), id.incarnation);
        self.endpoint = Endpoint::new(gcfg, me.clone(), key, now)
            .map_err(|e| RunError::Endpoint(e.to_string()))?;
        // Messages queued for the old incarnation's views mean nothing to the new one.
        self.ctl_pending.clear();
        for g in self.joins.clone() {
            if let Err(e) = self.endpoint.join(&g) {
                tracing::warn!(group = %g, error = %e, "cannot join group");
            }
        }
        // DuraVIP starts over too: release what we hold, renegotiate in the new view.
        self.duravip.shutdown();
        self.drive_duravip();
        self.duravip = DuravipMachine::new(
            duravip::Member::new(id.nodename.clone(), id.incarnation),
            LocalConfig::from_config(&cfg),
            Params::from_cluster(&cfg.cluster),
        );
        if let Ok(mut s) = self.shared.status.lock() {
            s.identity = id;
            s.me = me.clone();
            s.view = self.endpoint.view().clone();
            s.infos = BTreeMap::from([(me, self.info.clone())]);
            s.groups.clear();
        }
        tracing::info!("cluster reset: rejoining as a new incarnation");
        Ok(())
    }

    /// Applies one event; returns true when the graceful leave has finished.
    fn on_event(&mut self, ev: Event) -> bool {
        match ev {
            Event::ViewChanged(view) => {
                tracing::info!(view = ?view.id, members = view.members.len(), "view installed");
                let dv_now = duravip::Time(self.clock.now().as_nanos());
                if let Err(e) = self.duravip.handle_view(dv_now, duravip_view(&view)) {
                    tracing::warn!(error = %e, "DuraVIP refused the view");
                }
                self.duravip_dirty = true;
                let rep_members: Vec<replicate::MemberId> =
                    view.members.iter().map(replication_member).collect();
                if let Ok(mut r) = self.shared.replicator.lock() {
                    r.handle_view(wall(), &rep_members);
                }
                // Batches still waiting for the transport go out in the new view: the survivors
                // need them (nothing else carries those updates to them), and a joiner's copy is
                // reset by the snapshot that follows them.
                if let Ok(mut s) = self.shared.status.lock() {
                    s.infos.retain(|m, _| view.members.contains(m));
                    s.view = view;
                    s.view_installed = Instant::now();
                }
                // Tell the (possibly new) members who we are.
                let mut msg = vec![MSG_MEMBER_INFO];
                msg.extend(serde_json::to_vec(&self.info).unwrap_or_default());
                self.send_control(msg, Order::Fifo);
                false
            }
            Event::GroupChanged { group, members, .. } => {
                if let Ok(mut s) = self.shared.status.lock() {
                    s.groups.insert(group, members);
                }
                false
            }
            Event::Message {
                group,
                sender,
                payload,
                order,
                ..
            } => {
                if group != self.cluster_group {
                    let d = Delivery {
                        group,
                        sender,
                        order,
                        payload,
                    };
                    super::control::tap(&self.shared, &d);
                    if cohort_engine::console::control::is_control(&d.payload)
                        && super::control::is_control_group(&d.group, &self.control_group)
                    {
                        super::control::route(&self.shared, d);
                        return false;
                    }
                    let Delivery {
                        group,
                        sender,
                        order,
                        payload,
                    } = d;
                    let tx = self.shared.deliveries.lock().ok().and_then(|d| d.clone());
                    if let Some(tx) = tx {
                        let _ = tx.send(Delivery {
                            group,
                            sender,
                            order,
                            payload,
                        });
                    }
                    return false;
                }
                if payload.first() == Some(&MSG_REPLICATE) {
                    let from = replication_member(&sender);
                    if let Ok(mut r) = self.shared.replicator.lock()
                        && let Err(e) = r.handle_message(wall(), &from, &payload[1..])
                    {
                        tracing::warn!(from = %sender.name, error = %e, "replication message refused");
                    }
                    return false;
                }
                if payload.first() == Some(&MSG_ARP) {
                    match arpcache::decode_report(&payload[1..]) {
                        Ok(hosts) => {
                            let now = Duration::from_nanos(self.clock.now().as_nanos());
                            self.arp.learn(now, &hosts);
                            self.arp.expire(now);
                            self.sync_arp_hosts();
                        }
                        Err(e) => {
                            tracing::warn!(from = %sender.name, error = %e, "ARP cache report refused")
                        }
                    }
                    return false;
                }
                if payload.first() == Some(&MSG_DURAVIP) {
                    let dv_now = duravip::Time(self.clock.now().as_nanos());
                    let from = duravip::Member::new(sender.name.clone(), sender.incarnation);
                    if let Err(e) = self.duravip.handle_message(dv_now, &from, &payload[1..]) {
                        tracing::warn!(from = %sender.name, error = %e, "DuraVIP message refused");
                    }
                    self.duravip_dirty = true;
                    return false;
                }
                if group == self.cluster_group && payload.first() == Some(&MSG_MEMBER_INFO) {
                    match serde_json::from_slice::<MemberInfo>(&payload[1..]) {
                        Ok(info) => {
                            if let Ok(mut s) = self.shared.status.lock() {
                                s.infos.insert(sender, info);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(from = %sender.name, error = %e, "undecodable member info")
                        }
                    }
                }
                false
            }
            Event::LeftCluster => true,
        }
    }

    /// Flushes every replicated object's pending updates (before a graceful leave).
    fn flush_replication(&mut self) {
        if let Ok(mut r) = self.shared.replicator.lock() {
            r.flush(wall());
        }
        self.drive_replication();
    }

    /// Runs the replicator's timers and hands its batches to the transport (FIFO on the cluster
    /// group), keeping what flow control refuses for the next turn.
    fn drive_replication(&mut self) {
        if let Ok(mut r) = self.shared.replicator.lock() {
            let w = wall();
            if r.poll_timeout().is_some_and(|t| t <= w) {
                r.handle_timeout(w);
            }
            if self.last_compact.elapsed() >= COMPACT_INTERVAL {
                r.compact();
                self.last_compact = Instant::now();
            }
            while let Some(t) = r.poll_transmit() {
                let mut msg = Vec::with_capacity(t.payload.len() + 1);
                msg.push(MSG_REPLICATE);
                msg.extend_from_slice(&t.payload);
                self.rep_pending.push_back(msg);
            }
        }
        while let Some(msg) = self.rep_pending.front() {
            match self.endpoint.send(&self.cluster_group, msg, Order::Fifo) {
                Ok(()) => {
                    self.rep_pending.pop_front();
                }
                Err(cohort_engine::group::SendError::WouldBlock { .. }) => break,
                Err(e) => {
                    tracing::error!(error = %e, "replication batch refused by the transport");
                    self.rep_pending.pop_front();
                }
            }
        }
    }

    /// Collects this node's ARP entries on the `Topology` interfaces (the kernel's neighbour
    /// table), adds them to the shared cache and reports them to the cluster (FIFO).
    fn collect_arp(&mut self, now: Time) {
        if let Some(every) = self.arp_every {
            self.next_arp = now + every;
        }
        let at = Duration::from_nanos(now.as_nanos());
        self.arp.expire(at);
        let text = match std::fs::read_to_string("/proc/net/arp") {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read /proc/net/arp; the shared ARP cache gets nothing from this node");
                return;
            }
        };
        let (scope, vips) = (&self.arp_scope, &self.vip_addrs);
        let keep = |dev: &str, ip: std::net::Ipv4Addr| {
            let ip = std::net::IpAddr::V4(ip);
            !vips.contains(&ip) && scope.iter().any(|(i, n)| i == dev && n.contains(&ip))
        };
        let hosts = match arpcache::parse_proc_net_arp(&text, keep) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot parse the kernel's ARP table");
                return;
            }
        };
        self.arp.learn(at, &hosts);
        self.sync_arp_hosts();
        for report in arpcache::encode_reports(&hosts) {
            let mut msg = Vec::with_capacity(report.len() + 1);
            msg.push(MSG_ARP);
            msg.extend_from_slice(&report);
            // A report refused by flow control is simply sent again next interval.
            if let Err(e) = self.endpoint.send(&self.cluster_group, &msg, Order::Fifo) {
                tracing::debug!(error = %e, "ARP cache report not sent");
                break;
            }
        }
    }

    /// Gives the data plane the shared cache's hosts for targeted ARP.
    fn sync_arp_hosts(&mut self) {
        if let Some(dp) = &mut self.dataplane {
            dp.set_hosts(self.arp.hosts().iter().map(|h| (h.ip, h.mac)).collect());
        }
    }

    /// Gives the failure detector the transport arrivals the XDP program stamped since the last
    /// read (at most every [`XDP_STAMP_PERIOD`]): each peer whose packet count moved was heard at
    /// its stamp, placed on the loop's clock. The kernel's `SO_TIMESTAMPNS` stamps are used too.
    fn feed_xdp_stamps(&mut self, now: Time) {
        if now < self.next_xdp_read || self.xdp_peers.is_empty() {
            return;
        }
        let Some(dp) = self.dataplane.as_mut().filter(|d| d.xdp_attached()) else {
            return;
        };
        self.next_xdp_read = now + XDP_STAMP_PERIOD;
        let arrivals = dp.peer_arrivals();
        let mono = crate::xdp::monotonic_ns();
        for (ip, p) in arrivals {
            let Some(name) = self.xdp_peers.get(&ip) else {
                continue;
            };
            let seen = self.xdp_seen.entry(ip).or_insert(0);
            if *seen == p.packets {
                continue;
            }
            *seen = p.packets;
            let age = mono.saturating_sub(p.last_ns);
            let at = Time::from_nanos(now.as_nanos().saturating_sub(age));
            self.endpoint.note_arrival(now, name, at);
            self.xdp_arrivals_fed += 1;
        }
    }

    /// Carries out DuraVIP's actions (data plane first), then sends its messages in agreed order:
    /// a release is unplumbed before the message saying so leaves.
    fn drive_duravip(&mut self) {
        let mut changed = false;
        while let Some(a) = self.duravip.poll_action() {
            match a {
                duravip::Action::Acquire { ip, .. } => changed |= self.owned.insert(ip),
                duravip::Action::Release { ip } => changed |= self.owned.remove(&ip),
            }
        }
        if changed && let Some(dp) = &mut self.dataplane {
            dp.set_owned(&self.owned, Instant::now());
        }
        while let Some(bytes) = self.duravip.poll_transmit() {
            let mut msg = Vec::with_capacity(bytes.len() + 1);
            msg.push(MSG_DURAVIP);
            msg.extend_from_slice(&bytes);
            self.ctl_pending.push_back((msg, Order::Agreed));
        }
        self.flush_control();
    }

    /// Queues a message for the cluster group behind any the transport has not taken yet.
    fn send_control(&mut self, msg: Vec<u8>, order: Order) {
        self.ctl_pending.push_back((msg, order));
        self.flush_control();
    }

    /// Hands queued DuraVIP and member-info messages to the transport until flow control says
    /// "would block"; the rest waits for the next turn.
    fn flush_control(&mut self) {
        while let Some((msg, order)) = self.ctl_pending.front() {
            match self.endpoint.send(&self.cluster_group, msg, *order) {
                Ok(()) => {
                    self.ctl_pending.pop_front();
                }
                Err(cohort_engine::group::SendError::WouldBlock { .. }) => break,
                Err(e) => {
                    tracing::error!(error = %e, "cluster message refused by the transport");
                    self.ctl_pending.pop_front();
                }
            }
        }
    }

    fn publish(&mut self) {
        let refresh =
            self.duravip_dirty || self.last_status.elapsed() >= Duration::from_millis(500);
        let dv = refresh.then(|| {
            self.duravip
                .status(duravip::Time(self.clock.now().as_nanos()))
        });
        if refresh {
            self.duravip_dirty = false;
            self.last_status = Instant::now();
        }
        if let Ok(mut s) = self.shared.status.lock() {
            s.counters = self.endpoint.counters().clone();
            s.io = self.io.stats();
            if refresh {
                s.arp = self
                    .arp
                    .table(Duration::from_nanos(self.clock.now().as_nanos()));
            }
            if let Some(dv) = dv {
                s.duravip = Some(dv);
                s.dataplane = self.dataplane.as_ref().map(|d| d.stats.clone());
                // Taken before the program's counters, so it never exceeds the packets stamped.
                s.xdp_arrivals_fed = self.xdp_arrivals_fed;
                s.xdp = self.dataplane.as_ref().map(|d| d.xdp_stats());
            }
        }
    }

    /// Re-reads the configuration file; reports what would need a restart.
    fn reload(&mut self) {
        let Ok(mut s) = self.shared.status.lock() else {
            return;
        };
        let Some(path) = s.config_path.clone() else {
            s.last_reload = Some("running on the embedded configuration: nothing to reload".into());
            return;
        };
        match config::load_file(&path) {
            Err(e) => {
                tracing::error!(error = %e, "config reload failed; keeping the running configuration");
                s.last_reload = Some(format!("reload failed, running configuration kept: {e}"));
            }
            Ok(loaded) => {
                let new = loaded.config;
                let mut restart = Vec::new();
                if new.msgc_server != s.config.msgc_server {
                    restart.push("msgc_server");
                }
                if new.cluster.nodename != s.config.cluster.nodename
                    || new.cluster.nodeaddr != s.config.cluster.nodeaddr
                {
                    restart.push("nodename/nodeaddr");
                }
                if new.cluster.cluster_group != s.config.cluster.cluster_group
                    || new.cluster.control_group != s.config.cluster.control_group
                    || new.cluster.subcluster != s.config.cluster.subcluster
                {
                    restart.push("groups");
                }
                if new.control_listener != s.config.control_listener {
                    restart.push("Control_Listener");
                }
                let msg = if restart.is_empty() {
                    "configuration reloaded".to_owned()
                } else {
                    format!(
                        "configuration reloaded; changes to {} take effect after a restart",
                        restart.join(", ")
                    )
                };
                tracing::info!("{msg}");
                s.config = new;
                s.last_reload = Some(msg);
            }
        }
    }
}

/// The nice value the process started with, once [`set_thread_nice`] has changed the calling
/// thread's (`i32::MIN` before).
static BASE_NICE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(i32::MIN);

fn own_tid() -> libc::id_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as libc::id_t }
}

/// The calling thread's nice value.
fn thread_nice() -> std::io::Result<i32> {
    // SAFETY: errno is thread-local; getpriority has no memory-safety preconditions. -1 is a
    // valid nice value, so errno tells an error apart.
    unsafe {
        *libc::__errno_location() = 0;
        let p = libc::getpriority(libc::PRIO_PROCESS, own_tid());
        if p == -1 && *libc::__errno_location() != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(p)
    }
}

/// Gives the calling thread (the event loop) nice value `nice` (`msgc_server { loop_nice }`):
/// the loop carries the failure detector and every node's replication, so under CPU load it
/// should not wait behind application threads (corosync runs its loop at real-time priority for
/// the same reason). A negative value needs CAP_SYS_NICE: `cohortd` calls this on its main
/// thread, which later runs the loop, before it drops its capabilities, and every thread it
/// starts afterwards goes back to the process's own value ([`default_thread_nice`]). Without
/// the privilege it says so once and runs as it is. Setting the value a thread already has
/// always succeeds.
pub fn set_thread_nice(nice: i32) {
    if nice == 0 {
        return;
    }
    if let Ok(before) = thread_nice() {
        if before == nice {
            return;
        }
        let _ = BASE_NICE.compare_exchange(
            i32::MIN,
            before,
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
        );
    }
    // SAFETY: setpriority has no memory-safety preconditions.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, own_tid(), nice) };
    if r == 0 {
        tracing::info!(nice, "event loop priority set");
    } else {
        let e = std::io::Error::last_os_error();
        tracing::warn!(nice, error = %e, "cannot set the event loop's priority (loop_nice); it runs at the default");
    }
}

/// Starts a daemon thread named `name` (the console, the control worker, the log service) at
/// the process's own priority: a thread inherits its creator's nice value, and the threads
/// `cohortd` starts come from the event loop's thread, raised by [`set_thread_nice`].
pub fn spawn_daemon_thread<T: Send + 'static>(
    name: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new().name(name).spawn(move || {
        default_thread_nice();
        f()
    })
}

/// Puts the calling thread back to the nice value the process started with, when
/// [`set_thread_nice`] raised the thread that started it (a daemon thread other than the loop:
/// the console, the control worker, the log service). Raising a nice value needs no privilege.
fn default_thread_nice() {
    let base = BASE_NICE.load(std::sync::atomic::Ordering::SeqCst);
    if base == i32::MIN || thread_nice().is_ok_and(|n| n == base) {
        return;
    }
    // SAFETY: setpriority has no memory-safety preconditions.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, own_tid(), base) } != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(error = %e, "cannot put a daemon thread back to the default priority");
    }
}
