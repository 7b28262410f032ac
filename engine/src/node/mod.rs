//! The node machine: one sans-IO [`ClusterNode`] (in quinn-proto's shape) that owns the group
//! endpoint, the DuraVIP machine, the replicator, the shared ARP cache, what the members say about
//! themselves, and every queue between them. The daemon (`cohort::node::runtime`) is the I/O loop
//! around it; the group simulator drives the same machine.
//!
//! The contract for a driver, on one clock ([`Time`], monotonic, chosen by the driver):
//! - feed datagrams to [`ClusterNode::handle_packet`], requests to [`ClusterNode::handle_command`],
//!   the kernel's ARP table to [`ClusterNode::handle_arp_report`];
//! - call [`ClusterNode::handle_timeout`] at [`ClusterNode::poll_timeout`], and
//!   [`ClusterNode::heartbeat`] every [`ClusterNode::heartbeat_every`] from the loop itself (the
//!   heartbeat proves the driver's loop runs: a hung loop stops it, which is what Momentum's
//!   hung-node detection watches);
//! - after every call, carry out [`ClusterNode::poll_action`] (plumb, unplumb, targeted-ARP hosts)
//!   *before* sending what [`ClusterNode::poll_transmit`] gives: a DuraVIP RELEASED message is
//!   only handed to the transport in the call after the release it reports was polled;
//! - read [`ClusterNode::poll_event`] (views, application messages, member info).
//!
//! Cohort's own traffic rides the cluster group as typed [`channel::Channel`]s. Back-pressure
//! never drops a DuraVIP or replication message: what the transport's window refuses waits in
//! one ordered queue and is offered again on every call. The bound: DuraVIP messages are always
//! taken from the machine (a handful per view change, balancing round or request); replication
//! batches are taken from the replicator only while the queue holds less than
//! `max_unstable_bytes` (otherwise they keep merging in the replicator's batchers). ARP reports are
//! soft state: one refused is dropped and the next collection reports again.

pub mod channel;

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::duravip::arpcache::{self, Neighbour, SharedArpCache};
use crate::duravip::{self, DuravipMachine, LocalConfig, Params};
use crate::group::{
    ClusterKey, Endpoint, EndpointError, Event, GroupConfig, MemberId, Order, SendError, Time,
    Transmit, View,
};
use crate::replicate::{self, ObjectSettings, Replicator};
pub use channel::{Channel, ChannelError, MemberInfo};

/// Bits of an incarnation that hold the process id (Linux pids are below 2^22; the rest is a
/// millisecond clock): a member's name in replicated objects' views, Momentum's
/// `#ec1-<pid>#<node>`, is derived from it.
pub const PID_BITS: u32 = 22;

/// The process id within an incarnation.
pub fn pid_of(incarnation: u64) -> u32 {
    (incarnation & ((1 << PID_BITS) - 1)) as u32
}

/// A member's name in replicated objects' views: every member derives the same name from the
/// view alone.
pub fn replication_member(m: &MemberId) -> replicate::MemberId {
    replicate::MemberId::new(format!("#ec1-{}#{}", pid_of(m.incarnation), m.name))
}

/// The DuraVIP view of a group view (its id in 64 bits, order kept: `ViewId::as_u64`).
pub fn duravip_view(view: &View) -> duravip::View {
    duravip::View {
        id: view.id.as_u64(),
        members: view
            .members
            .iter()
            .map(|m| duravip::Member::new(m.name.clone(), m.incarnation))
            .collect(),
    }
}

/// How often replicated objects' zero counts are freed.
pub const COMPACT_INTERVAL: Duration = Duration::from_secs(10);

/// Everything a node is made of.
pub struct NodeSetup {
    pub group: GroupConfig,
    pub me: MemberId,
    pub key: Option<ClusterKey>,
    /// Where Cohort's own traffic travels (`cluster_group`).
    pub cluster_group: String,
    /// Groups joined at start (the cluster group among them).
    pub joins: Vec<String>,
    pub duravip: LocalConfig,
    pub duravip_params: Params,
    pub info: MemberInfo,
    /// The replicated objects (shared with the console, which reads them).
    pub replicator: Arc<Mutex<Replicator>>,
    /// How long a host stays in the shared ARP cache without a report.
    pub arp_ttl: Duration,
    /// The wall-clock time (since the Unix epoch) at `Time::ZERO`: replicated objects' TTLs and
    /// series windows are absolute.
    pub wall_epoch: Duration,
}

/// What a configuration reload changes in a running node machine: everything a reload may
/// change here (what it may not, such as the node's name, address, peers or groups, the driver
/// refuses before it builds one).
#[derive(Debug, Clone)]
pub struct Reconfig {
    pub duravip: LocalConfig,
    pub duravip_params: Params,
    /// One per `Replicate` scope.
    pub replicate: Vec<ObjectSettings>,
    /// How long a host stays in the shared ARP cache without a report.
    pub arp_ttl: Duration,
    pub probe_interval: Duration,
    pub suspect_timeout: Duration,
    pub heartbeats_per_sec: u32,
    /// The keyring (`cluster_key`): rotated in place.
    pub key: Option<ClusterKey>,
    /// Bindings' groups and the `cluster_outbound_throttle_*` stanzas.
    pub outbound: crate::replicate::Outbound,
}

/// The group only managers join: replication that Momentum sends to the eccmgr alone
/// (`eccmgr_metrics`, `replicate = manager`) travels on it, so the nodes never receive it.
pub const MANAGER_GROUP: &str = "ec_manager";

/// A request from the console or an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Join(String),
    Leave(String),
    /// `cluster duravip announce view`
    DuravipAnnounce,
    /// `cluster duravip release all`
    DuravipReleaseAll,
    /// `cluster duravip move <ip> to <node>`
    DuravipMove {
        ip: IpAddr,
        node: String,
    },
    /// `cluster duravip debug on|off`
    DuravipDebug(bool),
    /// Flush every replicated object's pending updates now.
    FlushReplication,
    /// Leave the cluster gracefully (replication flushed first).
    LeaveCluster,
}

/// Why a command was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Transport(#[from] SendError),
    #[error("DuraVIP: {0}")]
    Duravip(#[from] duravip::DuravipError),
}

/// Why a configuration reload was refused (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum ReconfigError {
    #[error(transparent)]
    Timing(#[from] EndpointError),
    #[error(transparent)]
    Replication(#[from] crate::replicate::ReplicateError),
}

/// Something for the driver to do to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAction {
    /// DuraVIP: plumb, announce and answer for an address (see [`duravip::Action`]), decided in
    /// the view `view` (`ViewId::as_u64`; a decision of an older view can be polled after the
    /// next view was installed, when both came in one call).
    Duravip { action: duravip::Action, view: u64 },
    /// The shared ARP cache changed: the hosts to target when announcing an address.
    ArpHosts(Vec<Neighbour>),
}

/// Something that happened, for the driver and the console.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// A group event the driver sees as the endpoint gave it: view changes, group membership
    /// changes, messages on groups other than the cluster group (applications, the console's
    /// control protocol), the end of a graceful leave. Cohort's own cluster-group traffic is
    /// consumed by the machine and never appears here.
    Group(Event),
    /// A member said who it is.
    MemberInfo(MemberId, MemberInfo),
    /// Something on the cluster group was refused (malformed, or refused by its domain).
    Refused { from: MemberId, why: String },
}

/// The machine's own timers, by name (the domains' timers are their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Replicated objects' zero counts are freed.
    Compact,
}

/// Counters of the node machine itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeCounters {
    /// Cluster-group messages the window refused at first (queued, sent later).
    pub deferred: u64,
    /// Most messages waiting in the queue at once.
    pub queue_high: u64,
    /// Cluster-group messages refused by the transport for good (too large, closed).
    pub refused_by_transport: u64,
    /// ARP reports dropped because the window was full (the next collection reports again).
    pub arp_reports_skipped: u64,
    /// Replication messages from a member no longer in the view (ignored: its contribution went
    /// with it).
    pub replication_stale: u64,
}

/// The node machine. See the module documentation.
pub struct ClusterNode {
    endpoint: Endpoint,
    group_cfg: GroupConfig,
    key: Option<ClusterKey>,
    cluster_group: String,
    joins: Vec<String>,
    duravip: DuravipMachine,
    duravip_setup: (LocalConfig, Params),
    replicator: Arc<Mutex<Replicator>>,
    arp: SharedArpCache,
    infos: BTreeMap<MemberId, MemberInfo>,
    info: MemberInfo,
    /// Cohort's own messages the window has not taken yet, in order.
    /// Cohort's own messages waiting for the window: payload, order, and whether they go to the
    /// managers only ([`MANAGER_GROUP`]) rather than the cluster group.
    queue: VecDeque<(Vec<u8>, Order, bool)>,
    queue_bytes: usize,
    actions: VecDeque<NodeAction>,
    events: VecDeque<NodeEvent>,
    timers: BTreeMap<Timer, Time>,
    heartbeat_every: Duration,
    wall_epoch: Duration,
    counters: NodeCounters,
    /// The DuraVIP actions polled since the last offer of its messages (see the contract).
    released: bool,
    /// Mutation for the simulator's self-check: cluster-group messages are dropped unread.
    ignore_channels: bool,
    /// The replicator may have messages to take: it was called since its outbox was last seen
    /// empty (only its own calls fill it), so the replicator is not locked on every datagram.
    replication_waiting: bool,
}

impl ClusterNode {
    /// A node at `now`, joined to its groups; nothing is sent until polled.
    pub fn new(setup: NodeSetup, now: Time) -> Result<ClusterNode, EndpointError> {
        let endpoint = Endpoint::new(
            setup.group.clone(),
            setup.me.clone(),
            setup.key.clone(),
            now,
        )?;
        let heartbeat_every = Duration::from_secs(1) / setup.group.heartbeats_per_sec.max(1);
        let mut node = ClusterNode {
            duravip: DuravipMachine::new(
                duravip::Member::new(setup.me.name.clone(), setup.me.incarnation),
                setup.duravip.clone(),
                setup.duravip_params.clone(),
            ),
            duravip_setup: (setup.duravip, setup.duravip_params),
            endpoint,
            group_cfg: setup.group,
            key: setup.key,
            cluster_group: setup.cluster_group,
            joins: setup.joins,
            replicator: setup.replicator,
            arp: SharedArpCache::new(setup.arp_ttl),
            infos: BTreeMap::from([(setup.me, setup.info.clone())]),
            info: setup.info,
            queue: VecDeque::new(),
            queue_bytes: 0,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            timers: BTreeMap::from([(Timer::Compact, now + COMPACT_INTERVAL)]),
            heartbeat_every,
            wall_epoch: setup.wall_epoch,
            counters: NodeCounters::default(),
            released: false,
            ignore_channels: false,
            replication_waiting: true,
        };
        node.join_groups();
        Ok(node)
    }

    fn join_groups(&mut self) {
        for g in self.joins.clone() {
            if let Err(e) = self.endpoint.join(&g) {
                tracing::warn!(group = %g, error = %e, "cannot join group");
            }
        }
    }

    /// The wall-clock time of `now` (replicated objects' clock).
    pub fn wall(&self, now: Time) -> Duration {
        self.wall_epoch + Duration::from_nanos(now.as_nanos())
    }

    // ------------------------------------------------------------------ input

    /// One datagram from the network.
    pub fn handle_packet(&mut self, now: Time, from: SocketAddr, bytes: &[u8]) {
        self.endpoint.handle_packet(now, from, bytes);
        self.process(now);
    }

    /// A peer's datagram arrived at `at` (kernel or XDP stamp), for the failure detector.
    pub fn note_arrival(&mut self, now: Time, peer: &str, at: Time) {
        self.endpoint.note_arrival(now, peer, at);
    }

    /// The driver's loop is alive: its heartbeat counter moves on (Momentum's hung-node
    /// detection watches it). Call it every [`ClusterNode::heartbeat_every`].
    pub fn heartbeat(&mut self, now: Time) {
        self.endpoint.heartbeat(now);
        self.process(now);
    }

    /// The heartbeat period (`heartbeats_per_sec`).
    pub fn heartbeat_every(&self) -> Duration {
        self.heartbeat_every
    }

    /// Runs every timer that is due.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
        }
        if self.duravip.poll_timeout().is_some_and(|t| t <= now) {
            self.duravip.handle_timeout(now);
        }
        let wall = self.wall(now);
        self.replication_waiting = true;
        if let Ok(mut r) = self.replicator.lock() {
            if r.poll_timeout().is_some_and(|t| t <= wall) {
                r.handle_timeout(wall);
            }
            if self.timers.get(&Timer::Compact).is_some_and(|t| *t <= now) {
                r.compact();
                self.timers.insert(Timer::Compact, now + COMPACT_INTERVAL);
            }
        }
        self.process(now);
    }

    /// When [`ClusterNode::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        let rep = self
            .replicator
            .lock()
            .ok()
            .and_then(|r| r.poll_timeout())
            .map(|w| Time::from_nanos(w.saturating_sub(self.wall_epoch).as_nanos() as u64));
        [
            self.endpoint.poll_timeout(),
            self.duravip.poll_timeout(),
            rep,
        ]
        .into_iter()
        .flatten()
        .chain(self.timers.values().copied())
        .min()
    }

    /// Sends an application message (any group but the cluster group). Refused by flow control,
    /// the payload comes back with the error, to send again later.
    pub fn send(
        &mut self,
        now: Time,
        group: &str,
        payload: Vec<u8>,
        order: Order,
    ) -> Result<(), (SendError, Vec<u8>)> {
        let r = self.endpoint.send_owned(group, payload, order);
        self.process(now);
        r
    }

    /// A console or application request.
    pub fn handle_command(&mut self, now: Time, cmd: Command) -> Result<(), CommandError> {
        let r = match cmd {
            Command::Join(g) => self.endpoint.join(&g).map_err(CommandError::from),
            Command::Leave(g) => self.endpoint.leave(&g).map_err(CommandError::from),
            Command::DuravipAnnounce => self.duravip.announce().map_err(CommandError::from),
            Command::DuravipReleaseAll => {
                self.duravip.release_all();
                Ok(())
            }
            Command::DuravipMove { ip, node } => self
                .duravip
                .request_move(ip, &node)
                .map_err(CommandError::from),
            Command::DuravipDebug(on) => {
                self.duravip.set_debug(on);
                Ok(())
            }
            Command::FlushReplication => {
                let wall = self.wall(now);
                self.replication_waiting = true;
                if let Ok(mut r) = self.replicator.lock() {
                    r.flush(wall);
                }
                Ok(())
            }
            Command::LeaveCluster => {
                let wall = self.wall(now);
                self.replication_waiting = true;
                if let Ok(mut r) = self.replicator.lock() {
                    r.flush(wall);
                }
                self.process(now);
                // What the window takes now goes before the goodbye.
                if self.actions.is_empty() {
                    self.offer_queue();
                }
                self.endpoint.leave_cluster(now);
                Ok(())
            }
        };
        self.process(now);
        r
    }

    /// This node's own view of its neighbours (the kernel's ARP table on its `Topology`
    /// interfaces): learned, and reported to the cluster.
    pub fn handle_arp_report(&mut self, now: Time, hosts: &[Neighbour]) {
        let at = Duration::from_nanos(now.as_nanos());
        self.arp.expire(at);
        self.arp.learn(at, hosts);
        self.arp_hosts_changed();
        for report in arpcache::encode_reports(hosts) {
            let msg = Channel::Arp(&report).emit();
            match self.endpoint.send(&self.cluster_group, &msg, Order::Fifo) {
                Ok(()) => {}
                Err(_) => {
                    self.counters.arp_reports_skipped += 1;
                    break;
                }
            }
        }
        self.process(now);
    }

    /// `cluster reset`: leaves the cluster (the goodbye datagrams are returned, to be sent at
    /// once) and comes back as the new incarnation `me`, with DuraVIP starting over. Queued
    /// messages of the old incarnation are dropped: they mean nothing in the new one's views.
    pub fn reset(&mut self, now: Time, me: MemberId) -> Result<Vec<Transmit>, EndpointError> {
        self.endpoint.leave_cluster(now);
        let mut goodbye = Vec::new();
        while let Some(t) = self.endpoint.poll_transmit() {
            goodbye.push(t);
        }
        self.endpoint = Endpoint::new(self.group_cfg.clone(), me.clone(), self.key.clone(), now)?;
        self.queue.clear();
        self.queue_bytes = 0;
        self.join_groups();
        // Release what we hold; renegotiate in the new view.
        self.duravip.shutdown();
        self.take_duravip();
        self.duravip = DuravipMachine::new(
            duravip::Member::new(me.name.clone(), me.incarnation),
            self.duravip_setup.0.clone(),
            self.duravip_setup.1.clone(),
        );
        self.infos = BTreeMap::from([(me, self.info.clone())]);
        self.process(now);
        Ok(goodbye)
    }

    /// Applies a configuration reload: the transport's timing, the replicated objects
    /// ([`Replicator::reconfigure`]: what it did is returned), DuraVIP's configuration and
    /// parameters (announced in agreed order, so every member re-elects at the same point) and
    /// the shared ARP cache's lifetime. Refused, with nothing changed, when the timing or the
    /// objects are inconsistent.
    pub fn reconfigure(
        &mut self,
        now: Time,
        r: Reconfig,
    ) -> Result<crate::replicate::Reconfigured, ReconfigError> {
        let old = (
            self.group_cfg.probe_interval,
            self.group_cfg.suspect_timeout,
            self.group_cfg.heartbeats_per_sec,
        );
        let old_key = self.key.clone();
        self.endpoint.rekey(r.key.clone())?;
        if let Err(e) =
            self.endpoint
                .retune(r.probe_interval, r.suspect_timeout, r.heartbeats_per_sec)
        {
            let _ = self.endpoint.rekey(old_key);
            return Err(e.into());
        }
        let wall = self.wall(now);
        let done = {
            // A poisoned lock: an application thread panicked while updating.
            let mut rep = self
                .replicator
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let done = rep.reconfigure(wall, r.replicate);
            if done.is_ok() {
                rep.set_outbound(r.outbound);
            }
            done
        };
        let done = match done {
            Ok(d) => d,
            Err(e) => {
                // Nothing changes on error: the timing and the keyring go back too.
                let _ = self.endpoint.retune(old.0, old.1, old.2);
                let _ = self.endpoint.rekey(old_key);
                return Err(e.into());
            }
        };
        self.replication_waiting = true;
        self.key = r.key;
        self.group_cfg.probe_interval = r.probe_interval;
        self.group_cfg.suspect_timeout = r.suspect_timeout;
        self.group_cfg.heartbeats_per_sec = r.heartbeats_per_sec.max(1);
        self.heartbeat_every = Duration::from_secs(1) / self.group_cfg.heartbeats_per_sec;
        self.duravip_setup = (r.duravip.clone(), r.duravip_params.clone());
        self.duravip.reload(now, r.duravip, r.duravip_params);
        self.arp.ttl = r.arp_ttl;
        self.process(now);
        Ok(done)
    }

    /// Releases every address this node holds (graceful stop): the actions follow.
    /// Has DuraVIP re-announce this node's state in the current view (see
    /// [`DuravipMachine::confirm`]); `false` without a view.
    pub fn confirm_duravip(&mut self, now: Time) -> bool {
        let ok = self.duravip.confirm().is_ok();
        self.process(now);
        ok
    }

    pub fn shutdown_duravip(&mut self) {
        self.duravip.shutdown();
        self.take_duravip();
    }

    // ----------------------------------------------------------------- output

    /// The next datagram for the network.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.released {
            // The releases were polled: their RELEASED messages may go.
            self.released = false;
            self.offer_queue();
        }
        self.endpoint.poll_transmit()
    }

    /// The next thing to do to the host (before sending anything polled after it).
    #[must_use]
    pub fn poll_action(&mut self) -> Option<NodeAction> {
        let a = self.actions.pop_front();
        if a.is_some() {
            self.released = true;
        }
        a
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    // ------------------------------------------------------------ inspection

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn duravip(&self) -> &DuravipMachine {
        &self.duravip
    }

    pub fn arp(&self) -> &SharedArpCache {
        &self.arp
    }

    pub fn replicator(&self) -> &Arc<Mutex<Replicator>> {
        &self.replicator
    }

    /// What each member of the view said about itself.
    pub fn infos(&self) -> &BTreeMap<MemberId, MemberInfo> {
        &self.infos
    }

    pub fn counters(&self) -> &NodeCounters {
        &self.counters
    }

    /// Cohort's own messages waiting for the window, and their bytes.
    pub fn queued(&self) -> (usize, usize) {
        (self.queue.len(), self.queue_bytes)
    }

    pub fn cluster_group(&self) -> &str {
        &self.cluster_group
    }

    // -------------------------------------------------------------- internals

    /// After every input: apply the endpoint's events, take the domains' messages, offer the
    /// queue to the window.
    fn process(&mut self, now: Time) {
        while let Some(ev) = self.endpoint.poll_event() {
            self.on_event(now, ev);
        }
        // duravip_quorum: a proposal this node has been flushing for twice the suspicion timeout
        // has likely been replaced by one without it (a coordinator drops members silent for its
        // flush timeout, one suspicion timeout when healthy); the view the others then install
        // gives this node's addresses away after `Params::takeover_delay`, so it releases them
        // now (a no-op without quorum).
        if let Some(since) = self.endpoint.changing_view_since()
            && now.since(since) >= self.group_cfg.suspect_timeout * 2
        {
            self.duravip.suspend();
        }
        self.take_duravip();
        self.take_replication();
        if self.actions.is_empty() {
            self.offer_queue();
        }
    }

    fn on_event(&mut self, now: Time, ev: Event) {
        match ev {
            Event::ViewChanged(view) => {
                tracing::info!(view = ?view.id, members = view.members.len(), "view installed");
                // What DuraVIP decided in the old view is taken with that view's id.
                self.take_duravip();
                if let Err(e) = self.duravip.handle_view(now, duravip_view(&view)) {
                    tracing::warn!(error = %e, "DuraVIP refused the view");
                }
                self.take_duravip();
                let rep: Vec<replicate::MemberId> =
                    view.members.iter().map(replication_member).collect();
                let wall = self.wall(now);
                self.replication_waiting = true;
                if let Ok(mut r) = self.replicator.lock() {
                    r.handle_view(wall, &rep);
                }
                // Queued replication batches still go out in the new view: the survivors need
                // them, and a joiner's copy is reset by the snapshot that follows them.
                self.infos.retain(|m, _| view.members.contains(m));
                // Tell the (possibly new) members who we are.
                let info = Channel::MemberInfo(self.info.clone()).emit();
                self.enqueue(info, Order::Fifo);
                self.events
                    .push_back(NodeEvent::Group(Event::ViewChanged(view)));
            }
            Event::Message {
                group,
                sender,
                payload,
                ..
            } if group == self.cluster_group || group == MANAGER_GROUP => {
                self.on_channel(now, sender, &payload)
            }
            ev => self.events.push_back(NodeEvent::Group(ev)),
        }
    }

    /// A broken machine for the simulator's mutation check: from now on it drops Cohort's own
    /// cluster-group messages unread (DuraVIP, replication, member info, ARP reports). The
    /// simulator's checks must catch it; the daemon never calls this.
    #[doc(hidden)]
    pub fn mutate_ignore_cluster_messages(&mut self) {
        self.ignore_channels = true;
    }

    fn on_channel(&mut self, now: Time, sender: MemberId, payload: &[u8]) {
        if self.ignore_channels {
            return;
        }
        let refused = |why: String| NodeEvent::Refused {
            from: sender.clone(),
            why,
        };
        match Channel::parse(payload) {
            Ok(Channel::Duravip(body)) => {
                let from = duravip::Member::new(sender.name.clone(), sender.incarnation);
                if let Err(e) = self.duravip.handle_message(now, &from, body) {
                    self.events.push_back(refused(format!("DuraVIP: {e}")));
                }
            }
            Ok(Channel::Replicate(body)) => {
                let from = replication_member(&sender);
                let wall = self.wall(now);
                let replicator = self.replicator.clone();
                let Ok(mut r) = replicator.lock() else {
                    return;
                };
                self.replication_waiting = true;
                match r.handle_message(wall, &from, body) {
                    Ok(()) => {}
                    // A member this view no longer has: its contribution went with it.
                    Err(replicate::ReplicateError::NotMember(_)) => {
                        self.counters.replication_stale += 1
                    }
                    Err(e) => self.events.push_back(refused(format!("replication: {e}"))),
                }
            }
            Ok(Channel::Arp(body)) => match arpcache::decode_report(body) {
                Ok(hosts) => {
                    let at = Duration::from_nanos(now.as_nanos());
                    self.arp.learn(at, &hosts);
                    self.arp.expire(at);
                    self.arp_hosts_changed();
                }
                Err(e) => self.events.push_back(refused(format!("ARP report: {e}"))),
            },
            Ok(Channel::MemberInfo(info)) => {
                if self.endpoint.view().members.contains(&sender) {
                    self.infos.insert(sender.clone(), info.clone());
                }
                self.events.push_back(NodeEvent::MemberInfo(sender, info));
            }
            Err(e) => self.events.push_back(refused(e.to_string())),
        }
    }

    /// Tells the driver the shared cache's hosts (one pending notice at most: the latest).
    fn arp_hosts_changed(&mut self) {
        let hosts = self.arp.hosts();
        if let Some(NodeAction::ArpHosts(h)) = self.actions.back_mut() {
            *h = hosts;
        } else {
            self.actions.push_back(NodeAction::ArpHosts(hosts));
        }
    }

    /// Takes DuraVIP's actions and messages: the actions first, for the driver; the messages
    /// queue behind them (offered once the actions were polled).
    fn take_duravip(&mut self) {
        let view = self.duravip.view().map_or(0, |(id, _)| id);
        while let Some(action) = self.duravip.poll_action() {
            self.actions.push_back(NodeAction::Duravip { action, view });
        }
        while let Some(bytes) = self.duravip.poll_transmit() {
            let msg = Channel::Duravip(&bytes).emit();
            self.enqueue(msg, Order::Agreed);
        }
    }

    /// Takes replication batches while the queue is below the window's size.
    fn take_replication(&mut self) {
        if !self.replication_waiting {
            return;
        }
        let replicator = self.replicator.clone();
        let Ok(mut r) = replicator.lock() else {
            return;
        };
        while self.queue_bytes < self.group_cfg.max_unstable_bytes {
            let Some(t) = r.poll_transmit() else {
                self.replication_waiting = false;
                break;
            };
            let to_manager = t.destination == crate::replicate::Destination::Manager;
            self.enqueue_to(
                Channel::Replicate(&t.payload).emit(),
                Order::Fifo,
                to_manager,
            );
        }
    }

    fn enqueue(&mut self, msg: Vec<u8>, order: Order) {
        self.enqueue_to(msg, order, false);
    }

    fn enqueue_to(&mut self, msg: Vec<u8>, order: Order, to_manager: bool) {
        self.queue_bytes += msg.len();
        self.queue.push_back((msg, order, to_manager));
        self.note_queue();
    }

    fn note_queue(&mut self) {
        self.counters.queue_high = self.counters.queue_high.max(self.queue.len() as u64);
    }

    /// Hands queued messages to the transport, in order, until its window says "would block".
    fn offer_queue(&mut self) {
        while let Some((msg, order, to_manager)) = self.queue.pop_front() {
            let len = msg.len();
            let group = if to_manager {
                MANAGER_GROUP
            } else {
                self.cluster_group.as_str()
            };
            match self.endpoint.send_owned(group, msg, order) {
                Ok(()) => self.queue_bytes -= len,
                Err((SendError::WouldBlock { .. }, msg)) => {
                    self.counters.deferred += 1;
                    self.queue.push_front((msg, order, to_manager));
                    break;
                }
                Err((e, _)) => {
                    self.queue_bytes -= len;
                    self.counters.refused_by_transport += 1;
                    tracing::error!(error = %e, "cluster message refused by the transport");
                }
            }
        }
        debug_assert_eq!(
            self.queue_bytes,
            self.queue.iter().map(|(m, _, _)| m.len()).sum::<usize>(),
            "queued bytes match the queue"
        );
    }
}
