//! The event loop of a node: the I/O around the node machine (`cohort_engine::node::ClusterNode`).
//! The UDP driver feeds it datagrams; what it wants sent goes out in one batch per turn; its
//! actions reach the data plane (netlink, XDP, ARP) before anything polled after them is sent; its
//! events update the status the console reads and reach applications. Signals and console requests
//! wake the loop through the driver's waker.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cohort_engine::config::Config;
use cohort_engine::duravip;
use cohort_engine::group::{Event, Time};
use cohort_engine::node::{ClusterNode, Command, NodeAction, NodeEvent};
use cohort_engine::udp::{self, DatagramIo, Driver, Outgoing};

use super::setup;
use super::signals::SignalFlags;

mod host;
mod reconfig;

use host::start_dataplane;

pub use super::priority::{set_thread_nice, spawn_daemon_thread};
pub use super::setup::{group_config, groups_to_join};
pub(crate) use super::shared::wall;
pub use super::shared::{Delivery, NodeStatus, Request, Shared};
pub use cohort_engine::node::{MemberInfo, replication_member};

/// Least time between two reads of the XDP program's arrival stamps.
const XDP_STAMP_PERIOD: Duration = Duration::from_millis(10);

/// Requests (application sends, console actions) the loop takes from its queue per turn.
const REQUESTS_PER_TURN: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Plan(#[from] setup::PlanError),
    #[error("cannot start the group transport: {0}")]
    Endpoint(String),
    #[error("cannot open UDP {addr}: {why}")]
    Socket { addr: SocketAddr, why: String },
    #[error("I/O error in the event loop: {0}")]
    Io(#[from] std::io::Error),
}

/// The monotonic clock the protocol runs on: nanoseconds since the loop started.
struct Clock(Instant);

impl Clock {
    fn now(&self) -> Time {
        Time::from_nanos(self.0.elapsed().as_nanos() as u64)
    }
}

/// A running node: the I/O around the node machine.
pub struct Node {
    pub shared: Arc<Shared>,
    node: ClusterNode,
    io: Box<dyn DatagramIo>,
    clock: Clock,
    signals: SignalFlags,
    peers_by_addr: BTreeMap<SocketAddr, String>,
    /// Groups joined only for `listen` clients, left when the last of them goes.
    listen_only: std::collections::BTreeSet<String>,
    joins: Vec<String>,
    /// `control_group`: with `ec_sc_*` and private groups, where the manager's commands travel.
    control_group: String,
    dataplane: Option<crate::dataplane::DataPlane>,
    owned: std::collections::BTreeSet<std::net::IpAddr>,
    duravip_dirty: bool,
    last_status: Instant,
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
    /// The XDP lease lapsed: (DuraVIP view id, elections run, when) at the lapse; the lease is
    /// re-armed once an election after it confirms what this node holds.
    lapse: Option<(Option<u64>, u64, Time)>,
    /// Running as the manager.
    manager: bool,
    /// systemd's notification socket (READY after the first view, WATCHDOG from this loop).
    notifier: crate::notify::Notifier,
}

impl Node {
    /// Binds the transport and creates the endpoint; nothing is sent until [`Node::run`].
    pub fn start(
        cfg: Config,
        config_path: Option<PathBuf>,
        driver: Driver,
        manager: bool,
    ) -> Result<Node, RunError> {
        let plan = setup::plan(&cfg, manager)?;
        let id = plan.identity.clone();
        let io = udp::open(driver, id.addr).map_err(|e| RunError::Socket {
            addr: id.addr,
            why: e.to_string(),
        })?;
        let clock = Clock(Instant::now());
        let wall_epoch = wall();
        let me = plan.me();
        let waker = io.waker();
        let signals = SignalFlags::install(&waker)?;
        let peers_by_addr = plan
            .group
            .peers
            .iter()
            .map(|(n, a)| (*a, n.clone()))
            .collect();
        let replicator = plan.replicator()?;
        let objects = replicator.objects().clone();
        let replicator = Arc::new(Mutex::new(replicator));
        // The data plane needs CAP_NET_ADMIN. Without DuraVIP addresses it still attaches XDP to
        // the transport's interface for the arrival stamps (unless `xdp = off`).
        let stamps = cfg.cluster.xdp != cohort_engine::config::XdpMode::Off
            && crate::dataplane::interface_of(id.addr.ip()).is_some();
        let dataplane = if !manager && (!plan.vip_addrs.is_empty() || stamps) {
            start_dataplane(&cfg, id.addr.ip(), &id.nodename)
        } else {
            None
        };
        let t0 = clock.now();
        let node = ClusterNode::new(
            plan.node_setup(&cfg.cluster.cluster_group, replicator.clone(), wall_epoch),
            t0,
        )
        .map_err(|e| RunError::Endpoint(e.to_string()))?;
        let status = NodeStatus {
            identity: id,
            me,
            view: node.endpoint().view().clone(),
            view_installed: Instant::now(),
            groups: BTreeMap::new(),
            infos: node.infos().clone(),
            counters: node.endpoint().counters().clone(),
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
            peers: Vec::new(),
            local_health: 0,
        };
        Ok(Node {
            shared: Arc::new(Shared {
                status: Mutex::new(status),
                requests: Mutex::new(VecDeque::new()),
                waker,
                deliveries: Mutex::new(None),
                control: Mutex::new(None),
                listeners: Mutex::new(Vec::new()),
                listen_counts: Mutex::new(BTreeMap::new()),
                objects: std::sync::RwLock::new(objects),
                replicator,
                journals: Arc::new(if manager {
                    crate::logsvc::Journals::none()
                } else {
                    crate::logsvc::Journals::start(&cfg)
                }),
                cluster_key: Arc::new(std::sync::RwLock::new(plan.key.clone())),
                pull_stats: std::sync::OnceLock::new(),
                jobs: Arc::default(),
            }),
            node,
            io,
            clock,
            signals,
            peers_by_addr,
            listen_only: std::collections::BTreeSet::new(),
            joins: plan.joins.clone(),
            control_group: cfg.cluster.control_group.clone(),
            dataplane,
            owned: std::collections::BTreeSet::new(),
            duravip_dirty: true,
            last_status: Instant::now(),
            arp_every: plan.arp_every,
            next_arp: t0,
            arp_scope: plan.arp_scope.clone(),
            vip_addrs: plan.vip_addrs.clone(),
            xdp_peers: plan.xdp_peers.clone(),
            manager,
            notifier: crate::notify::Notifier::from_env(),
            xdp_seen: BTreeMap::new(),
            next_xdp_read: t0,
            xdp_arrivals_fed: 0,
            lapse: None,
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
        let mut leaving: Option<Time> = None;
        let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        let mut next_heartbeat = self.clock.now();
        loop {
            let now = self.clock.now();
            if self.signals.take_reload() {
                self.shared.request(Request::Reload);
            }
            if self.signals.terminate_requested() && leaving.is_none() {
                tracing::info!("leaving the cluster");
                self.notifier.send("STOPPING=1");
                self.command(now, Command::LeaveCluster);
                leaving = Some(now);
            }
            self.take_requests(now, &mut leaving);
            // Only a turning loop tells systemd it is alive.
            self.notifier.tick(Instant::now());
            // Arrivals the XDP program stamped count before the detector looks for silence.
            self.feed_xdp_stamps(now);
            if self.arp_every.is_some() && now >= self.next_arp {
                self.collect_arp(now);
            }
            if self.node.poll_timeout().is_some_and(|t| t <= now) {
                self.node.handle_timeout(now);
            }
            // The loop's own liveness, which Momentum's hung-node detection watches.
            if now >= next_heartbeat {
                self.node.heartbeat(now);
                next_heartbeat = now + self.node.heartbeat_every();
            }
            if let Some(dp) = &mut self.dataplane
                && dp.next_deadline() <= Instant::now()
            {
                dp.tick(Instant::now());
            }
            self.fence_lapsed_lease(now);
            let done = self.drain_node();
            while let Some(t) = self.node.poll_transmit() {
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
                    dp.hooks.drain(Duration::from_secs(2));
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
                    dp.hooks.drain(Duration::from_secs(2));
                }
                return Ok(());
            }
            self.publish();
            let dp_deadline = self.dataplane.as_ref().map(|d| {
                let left = d.next_deadline().saturating_duration_since(Instant::now());
                now + left
            });
            let arp_deadline = self.arp_every.map(|_| self.next_arp);
            let watchdog = self
                .notifier
                .next_deadline()
                .map(|d| now + d.saturating_duration_since(Instant::now()));
            let deadline = [
                self.node.poll_timeout(),
                Some(next_heartbeat),
                arp_deadline,
                dp_deadline,
                watchdog,
            ]
            .into_iter()
            .flatten()
            .min();
            let wait = deadline
                .map_or(Duration::from_millis(100), |d| d.since(now))
                .min(Duration::from_millis(100));
            let (node, clock, peers) = (&mut self.node, &self.clock, &self.peers_by_addr);
            self.io.recv(Some(wait), &mut |r| {
                let now = clock.now();
                if let (Some(k), Some(name)) = (r.kernel_ns, peers.get(&r.from)) {
                    // The kernel stamped arrival on the realtime clock; place it on ours.
                    let real_now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64);
                    let age = Duration::from_nanos(real_now.saturating_sub(k));
                    let at = Time::from_nanos(now.as_nanos().saturating_sub(age.as_nanos() as u64));
                    node.note_arrival(now, name, at);
                }
                node.handle_packet(now, r.from, r.data);
            })?;
        }
    }

    /// Carries out a command on the node machine; a refusal is logged.
    fn command(&mut self, now: Time, cmd: Command) {
        let what = format!("{cmd:?}");
        if let Err(e) = self.node.handle_command(now, cmd) {
            tracing::warn!(command = %what, error = %e, "request refused");
        }
        self.duravip_dirty = true;
    }

    /// Takes requests one at a time, in order, until an application send would block: it and
    /// everything behind it stay queued (in order) for the next turn, untouched. At most
    /// REQUESTS_PER_TURN per turn, so that a busy producer never keeps the loop from its
    /// sockets and timers.
    fn take_requests(&mut self, now: Time, leaving: &mut Option<Time>) {
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
                    self.command(now, Command::Join(g));
                }
                Request::ListenJoin(g) => {
                    let ep = self.node.endpoint();
                    let joined = ep.group_members(&g).contains(ep.me());
                    if !self.joins.contains(&g) && !joined {
                        self.listen_only.insert(g.clone());
                    }
                    self.command(now, Command::Join(g));
                }
                Request::ListenLeave(g) => {
                    let still_listened = self
                        .shared
                        .listen_counts
                        .lock()
                        .map_or(true, |c| c.get(&g).is_some_and(|n| *n > 0));
                    if !still_listened && self.listen_only.remove(&g) {
                        self.command(now, Command::Leave(g));
                    }
                }
                Request::Send {
                    group,
                    payload,
                    order,
                } => match self.node.send(now, &group, payload, order) {
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
                Request::DuravipAnnounce => self.command(now, Command::DuravipAnnounce),
                Request::DuravipReleaseAll => self.command(now, Command::DuravipReleaseAll),
                Request::DuravipMove { ip, node, reply } => {
                    let r = self
                        .node
                        .handle_command(now, Command::DuravipMove { ip, node })
                        .map_err(|e| e.to_string());
                    self.duravip_dirty = true;
                    if let Some(tx) = reply {
                        let _ = tx.send(r);
                    }
                }
                Request::DuravipDebug(on) => self.command(now, Command::DuravipDebug(on)),
                Request::Shutdown if leaving.is_none() => {
                    self.command(now, Command::LeaveCluster);
                    *leaving = Some(now);
                }
                Request::Shutdown => {}
                Request::Reload => self.reload(now),
                Request::Reset => {
                    if let Err(e) = self.reset(now) {
                        tracing::error!(error = %e, "cluster reset failed");
                    }
                }
            }
        }
    }

    /// Carries out the node machine's actions (data plane first), then applies its events;
    /// returns true when the graceful leave has finished.
    fn drain_node(&mut self) -> bool {
        let mut changed = false;
        while let Some(a) = self.node.poll_action() {
            match a {
                NodeAction::Duravip {
                    action: duravip::Action::Acquire { ip, .. },
                    ..
                } => changed |= self.owned.insert(ip),
                NodeAction::Duravip {
                    action: duravip::Action::Release { ip },
                    ..
                } => changed |= self.owned.remove(&ip),
                NodeAction::ArpHosts(hosts) => {
                    if let Some(dp) = &mut self.dataplane {
                        dp.set_hosts(hosts.iter().map(|h| (h.ip, h.mac)).collect());
                    }
                }
            }
            self.duravip_dirty = true;
        }
        if changed && let Some(dp) = &mut self.dataplane {
            dp.set_owned(&self.owned, Instant::now());
        }
        let mut done = false;
        while let Some(ev) = self.node.poll_event() {
            done |= self.on_event(ev);
        }
        done
    }

    /// Applies one event; returns true when the graceful leave has finished.
    fn on_event(&mut self, ev: NodeEvent) -> bool {
        match ev {
            NodeEvent::Group(Event::ViewChanged(view)) => {
                self.duravip_dirty = true;
                self.notifier.ready(&format!(
                    "in view {} with {} member(s)",
                    view.id.as_u64(),
                    view.members.len()
                ));
                if let Ok(mut s) = self.shared.status.lock() {
                    s.infos = self.node.infos().clone();
                    s.view = view;
                    s.view_installed = Instant::now();
                }
            }
            NodeEvent::Group(Event::GroupChanged { group, members, .. }) => {
                if let Ok(mut s) = self.shared.status.lock() {
                    s.groups.insert(group, members);
                }
            }
            NodeEvent::MemberInfo(..) => {
                if let Ok(mut s) = self.shared.status.lock() {
                    s.infos = self.node.infos().clone();
                }
            }
            NodeEvent::Refused { from, why } => {
                tracing::warn!(from = %from.name, error = %why, "cluster message refused");
            }
            NodeEvent::Group(Event::Message {
                group,
                sender,
                payload,
                order,
                ..
            }) => {
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
                let tx = self.shared.deliveries.lock().ok().and_then(|t| t.clone());
                if let Some(tx) = tx {
                    let _ = tx.send(d);
                }
            }
            NodeEvent::Group(Event::LeftCluster) => return true,
        }
        false
    }
}
