//! The simulated world: nodes, a network with seeded faults, per-node clocks, and the event loop.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use std::sync::{Arc, Mutex};

use cohort_engine::group::{
    ClusterKey, Endpoint, Event, GroupConfig, MemberId, Order, SendError, Time,
};
use cohort_engine::node::{
    ClusterNode, Command, CommandError, MemberInfo, NodeAction, NodeEvent, NodeSetup,
};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use crate::checker::{Checker, MsgId as MsgIdOf, encode_payload};
use cohort_engine::duravip::{self, LocalConfig, Params};
use cohort_engine::replicate::Replicator;

/// The cluster group: DuraVIP, replication, member info and ARP reports ride it as typed channels,
/// exactly as in the daemon (the node machine composes them).
pub const CLUSTER_GROUP: &str = "ec_cluster";

pub const MS: u64 = 1_000_000;
pub const SEC: u64 = 1_000_000_000;
pub const GROUP: &str = "g";
/// A group members join and leave as the simulation runs.
pub const OTHER_GROUP: &str = "h";
/// One event-loop turn of a driver by default: sends queued within it share datagrams.
pub const TURN: u64 = 20_000;
/// The largest application message the simulation sends (many datagrams' worth).
pub const MAX_MESSAGE: usize = 256 * 1024;

/// The network's fault settings, changed by the scenario as it runs.
#[derive(Clone, Debug, Default)]
pub struct NetFaults {
    pub loss: f64,
    pub duplicate: f64,
    pub delay_min: u64,
    pub delay_jitter: u64,
    /// Partition side of each node; packets cross only between equal sides.
    pub sides: Option<Vec<u8>>,
    /// Nodes that receive nothing while their own datagrams still go out: a one-sided cut (a
    /// firewall dropping the node's inbound cluster port).
    pub deaf: Vec<usize>,
    /// With `deaf`: the dropped datagrams are still seen (and stamped) on arrival, as the XDP
    /// program sees them before a netfilter rule drops them.
    pub stamped_when_deaf: bool,
}

pub struct Node {
    pub idx: usize,
    /// The node machine the daemon runs; `None` while the node is down.
    pub cn: Option<ClusterNode>,
    pub incarnation: u64,
    /// Local clock: local = offset + global * (1 + drift).
    pub drift: f64,
    pub offset: u64,
    /// Stalls: while `stalled_until > now` nothing is processed.
    pub slow: bool,
    pub stalled_until: u64,
    pub next_stall: u64,
    pub kernel_stamps: bool,
    pub deferred: Vec<(u64, SocketAddr, Vec<u8>)>,
    pub timer_at: Option<u64>,
    pub stuck: bool,
    pub next_heartbeat: u64,
    pub next_send: u64,
    pub counter: u64,
    pub sends: bool,
    /// `leave_cluster` was called and the endpoint has not closed yet.
    pub leaving: bool,
    /// When the current event-loop turn ends and queued datagrams go out.
    pub flush_at: Option<u64>,
    /// Addresses this member holds (acquired and not released).
    pub held: std::collections::BTreeSet<IpAddr>,
}

impl Node {
    pub fn local(&self, global: u64) -> Time {
        Time::from_nanos(self.offset + (global as f64 * (1.0 + self.drift)) as u64)
    }
    pub fn global(&self, local: Time) -> u64 {
        let l = local.as_nanos().saturating_sub(self.offset) as f64;
        (l / (1.0 + self.drift)).ceil() as u64
    }
    pub fn member(&self) -> MemberId {
        MemberId::new(format!("n{}", self.idx), self.incarnation)
    }
    /// The group endpoint inside the node machine.
    pub fn ep(&self) -> Option<&Endpoint> {
        self.cn.as_ref().map(ClusterNode::endpoint)
    }
    /// The replicated objects of the node machine.
    pub fn replicator(&self) -> Option<&Arc<Mutex<Replicator>>> {
        self.cn.as_ref().map(ClusterNode::replicator)
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Ev {
    Packet {
        to: usize,
        from: usize,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
    },
    Wake {
        node: usize,
    },
    Flush {
        node: usize,
    },
    /// A datagram seen arriving (an XDP stamp) that never reaches the socket.
    Stamp {
        to: usize,
        from: usize,
    },
}

pub struct World {
    pub now: u64,
    pub rng: ChaCha8Rng,
    pub nodes: Vec<Node>,
    pub cfg: GroupConfig,
    pub key: Option<ClusterKey>,
    pub faults: NetFaults,
    queue: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    pub checker: Checker,
    pub send_interval: (u64, u64),
    pub agreed_share: f64,
    /// Share of application messages between 2,000 bytes and [`MAX_MESSAGE`] (as many again
    /// are between 20 and 2,000 bytes); 0 sends only 20-byte messages.
    pub large_share: f64,
    /// (global time, node, event) of every view installed: for measurements.
    pub view_log: Vec<(u64, usize, cohort_engine::group::View)>,
    /// Events processed: a storm of them is a liveness bug.
    pub steps: u64,
    /// Length of a driver's event-loop turn.
    pub turn: u64,
    /// DuraVIP configuration of each member (indexed by node), if the seed exercises it.
    pub duravip: Option<(Vec<LocalConfig>, Params)>,
    /// Ownership changes carried out (for reports).
    pub dv_actions: u64,
    /// The DuraVIP configuration is [`crate::duravip::config`]'s, so its exact expectations
    /// are checked too.
    pub dv_exact: bool,
    /// What this world exercised of the DuraVIP rules.
    pub dv_coverage: crate::duravip::Coverage,
    /// Who last released each address, to count hand-offs.
    released_by: std::collections::BTreeMap<IpAddr, usize>,
    /// Replication settings, if the seed replicates (see `replication.rs`).
    pub replication: Option<crate::replication::Settings>,
    /// Mutation check: every node machine ignores Cohort's own cluster-group messages.
    pub mutant: bool,
    /// Console requests the machine refused (see [`World::console`]).
    pub console_refused: u64,
}

pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1)),
        4809,
    )
}

/// The node whose address is `a` (the inverse of [`addr`]).
fn node_of(a: SocketAddr) -> Option<usize> {
    match a.ip() {
        IpAddr::V4(ip) => {
            let [_, _, hi, lo] = ip.octets();
            (usize::from(hi) * 250 + usize::from(lo)).checked_sub(1)
        }
        IpAddr::V6(_) => None,
    }
}

impl World {
    pub fn new(seed: u64, n: usize, cfg_base: GroupConfig, key: Option<ClusterKey>) -> World {
        let mut cfg = cfg_base;
        cfg.peers = (0..n).map(|i| (format!("n{i}"), addr(i))).collect();
        let rng = ChaCha8Rng::seed_from_u64(seed);
        let nodes = (0..n)
            .map(|idx| Node {
                idx,
                cn: None,
                incarnation: 0,
                drift: 0.0,
                offset: 0,
                slow: false,
                stalled_until: 0,
                next_stall: 0,
                kernel_stamps: false,
                deferred: Vec::new(),
                timer_at: None,
                stuck: false,
                next_heartbeat: 0,
                next_send: 0,
                counter: 0,
                sends: true,
                leaving: false,
                flush_at: None,
                held: std::collections::BTreeSet::new(),
            })
            .collect();
        World {
            now: 0,
            rng,
            nodes,
            cfg,
            key,
            faults: NetFaults {
                delay_min: 100_000,
                delay_jitter: 200_000,
                ..NetFaults::default()
            },
            queue: BinaryHeap::new(),
            seq: 0,
            checker: Checker::default(),
            send_interval: (30 * MS, 150 * MS),
            agreed_share: 0.5,
            large_share: 0.0,
            view_log: Vec::new(),
            steps: 0,
            turn: TURN,
            duravip: None,
            dv_actions: 0,
            dv_exact: false,
            dv_coverage: Default::default(),
            released_by: Default::default(),
            replication: None,
            mutant: false,
            console_refused: 0,
        }
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, ev)));
    }

    /// Starts (or restarts, with a new incarnation) node `i`: a node machine as the daemon
    /// composes it, joined to the test group and the cluster group.
    pub fn start(&mut self, i: usize) -> Result<(), String> {
        if let Some(ep) = self.nodes[i].ep() {
            let m = ep.me().clone();
            self.checker.forget(&m);
        }
        // Incarnations grow with (global) start time, as wall-clock nanoseconds would.
        let inc = self.now * 16 + i as u64 + 1;
        self.nodes[i].incarnation = inc;
        let now_local = self.nodes[i].local(self.now);
        let me = self.nodes[i].member();
        let (local, params) = match &self.duravip {
            Some((cfgs, params)) => (cfgs[i].clone(), params.clone()),
            None => (LocalConfig::default(), Params::default()),
        };
        let replicator = crate::replication::replicator(self, &me)?;
        let setup = NodeSetup {
            group: self.cfg.clone(),
            me: me.clone(),
            key: self.key.clone(),
            cluster_group: CLUSTER_GROUP.to_owned(),
            joins: vec![CLUSTER_GROUP.to_owned(), GROUP.to_owned()],
            duravip: local,
            duravip_params: params,
            info: MemberInfo {
                pid: cohort_engine::node::pid_of(inc),
                subcluster: "default".into(),
                node_type: "Momentum".into(),
                version: "sim".into(),
                eccluster_addr: "0.0.0.0:0".into(),
            },
            replicator: Arc::new(Mutex::new(replicator)),
            arp_ttl: std::time::Duration::from_secs(180),
            wall_epoch: std::time::Duration::ZERO,
        };
        let mut cn = ClusterNode::new(setup, now_local).map_err(|e| e.to_string())?;
        if self.mutant {
            cn.mutate_ignore_cluster_messages();
        }
        cn.heartbeat(now_local);
        let node = &mut self.nodes[i];
        node.held.clear();
        node.cn = Some(cn);
        node.deferred.clear();
        node.next_heartbeat = self.now + SEC / u64::from(self.cfg.heartbeats_per_sec.max(1));
        node.next_send = self.now
            + self
                .rng
                .random_range(self.send_interval.0..=self.send_interval.1);
        node.counter = 0;
        node.timer_at = None;
        node.leaving = false;
        self.after_call(i)
    }

    /// Kills node `i` (kill -9): its state is gone, its in-flight packets still arrive.
    pub fn crash(&mut self, i: usize) {
        if let Some(cn) = self.nodes[i].cn.take() {
            self.checker.forget(cn.endpoint().me());
        }
        // A dead process holds nothing: its addresses go with it.
        self.nodes[i].held.clear();
        self.nodes[i].deferred.clear();
        self.nodes[i].timer_at = None;
        self.nodes[i].flush_at = None;
    }

    pub fn leave(&mut self, i: usize) -> Result<(), String> {
        let now = self.now;
        let node = &mut self.nodes[i];
        let local = node.local(now);
        if let Some(cn) = node.cn.as_mut() {
            cn.handle_command(local, Command::LeaveCluster)
                .map_err(|e| format!("n{i} leave: {e}"))?;
            node.leaving = true;
        }
        self.after_call(i)
    }

    fn stalled(&self, i: usize) -> bool {
        self.nodes[i].stalled_until > self.now
    }

    /// After any call into node i's machine: carries out its actions (checking that no member
    /// acquires an address another member of its view holds), hands its events to the checker
    /// and arms its timer. Anything the machine refused on the cluster group fails the seed.
    /// SAFE delivery: a safe message node `i` delivers outside a flush is held, at that instant,
    /// by every other running member of its view still in that view (a member's holdings in a
    /// view never shrink, so "now" covers the moment of delivery).
    fn check_safe(&self, i: usize, events: &[Event]) -> Result<(), String> {
        let last_view_change = events
            .iter()
            .rposition(|e| matches!(e, Event::ViewChanged(_)));
        for (k, e) in events.iter().enumerate() {
            let Event::Message {
                order: Order::Safe,
                sender,
                view,
                seq,
                ..
            } = e
            else {
                continue;
            };
            if last_view_change.is_some_and(|v| k < v) {
                continue; // delivered by the flush: every survivor holds it by then
            }
            for (j, other) in self.nodes.iter().enumerate() {
                let Some(ep) = other.ep() else { continue };
                if j == i || ep.view().id != *view {
                    continue;
                }
                let held = ep.received_from(sender).unwrap_or(0);
                if held < *seq {
                    return Err(format!(
                        "SAFE: n{i} delivered {sender}'s item {seq} in {view:?} while n{j} holds only up to {held}"
                    ));
                }
            }
        }
        Ok(())
    }

    fn after_call(&mut self, i: usize) -> Result<(), String> {
        let now = self.now;
        let Some(cn) = self.nodes[i].cn.as_mut() else {
            return Ok(());
        };
        let mut actions = Vec::new();
        while let Some(a) = cn.poll_action() {
            actions.push(a);
        }
        let mut events = Vec::new();
        while let Some(e) = cn.poll_event() {
            match e {
                NodeEvent::Group(e) => events.push(e),
                NodeEvent::MemberInfo(..) => {}
                NodeEvent::Refused { from, why } => {
                    return Err(format!(
                        "t={:.3}s n{i} refused a cluster-group message from {from}: {why}",
                        now as f64 / SEC as f64
                    ));
                }
            }
        }
        let me = cn.endpoint().me().clone();
        let timeout = cn.poll_timeout();
        for a in actions {
            let NodeAction::Duravip { action: a, view } = a else {
                continue;
            };
            self.dv_actions += 1;
            match a {
                duravip::Action::Acquire { ip, .. } => {
                    for (j, other) in self.nodes.iter().enumerate() {
                        if j != i
                            && other.held.contains(&ip)
                            && other.ep().map(|ep| ep.view().id.as_u64()) == Some(view)
                        {
                            return Err(format!(
                                "t={:.3}s DuraVIP: n{i} acquires {ip} in view {view} while n{j} of that view holds it",
                                now as f64 / SEC as f64
                            ));
                        }
                    }
                    self.nodes[i].held.insert(ip);
                    self.dv_coverage.acquisitions += 1;
                    if let Some(&j) = self.released_by.get(&ip)
                        && j != i
                        && self.nodes[j].cn.is_some()
                    {
                        self.dv_coverage.handoffs += 1;
                    }
                }
                duravip::Action::Release { ip } => {
                    self.nodes[i].held.remove(&ip);
                    self.released_by.insert(ip, i);
                }
            }
        }
        // Small tables are checked after every call (10,240 addresses would make it slow).
        if let Some(d) = self.nodes[i].cn.as_ref().map(|c| c.duravip())
            && let Some(t) = d.table()
            && t.entries.len() <= 64
        {
            crate::duravip::sane(t, &d.candidates()).map_err(|e| {
                format!("t={:.3}s n{i}'s agreed table: {e}", now as f64 / SEC as f64)
            })?;
            if t.entries.values().any(|e| e.holders.len() > 1) {
                self.dv_coverage.merged_duplicates += 1;
            }
        }
        let left = events.iter().any(|e| matches!(e, Event::LeftCluster));
        for e in &events {
            if let Event::ViewChanged(v) = e {
                self.view_log.push((now, i, v.clone()));
            }
        }
        self.check_safe(i, &events)
            .map_err(|e| format!("t={:.3}s {e}", now as f64 / SEC as f64))?;
        self.checker
            .batch(&me, &events)
            .map_err(|e| format!("t={:.3}s {e}", now as f64 / SEC as f64))?;
        if left {
            // The process exits right after its last turn.
            self.flush(i)?;
            self.crash(i);
            return Ok(());
        }
        if self.nodes[i].flush_at.is_none() {
            self.nodes[i].flush_at = Some(now + self.turn);
            self.push(now + self.turn, Ev::Flush { node: i });
        }
        if let Some(t) = timeout {
            let g = self.nodes[i].global(t).max(now);
            if self.nodes[i].timer_at.is_none_or(|cur| cur != g) {
                self.nodes[i].timer_at = Some(g);
                self.push(g, Ev::Timer { node: i });
            }
        }
        Ok(())
    }

    /// End of an event-loop turn: everything the endpoint queued goes out, coalesced into
    /// datagrams, as a real driver flushes once per turn.
    fn flush(&mut self, i: usize) -> Result<(), String> {
        self.nodes[i].flush_at = None;
        let Some(cn) = self.nodes[i].cn.as_mut() else {
            return Ok(());
        };
        let mut tx = Vec::new();
        while let Some(t) = cn.poll_transmit() {
            tx.push(t);
        }
        for t in tx {
            let to = node_of(t.destination).ok_or("bad address")?;
            self.transmit(i, to, t.payload);
        }
        Ok(())
    }

    fn transmit(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        if to >= self.nodes.len() {
            return;
        }
        if let Some(sides) = &self.faults.sides
            && sides[from] != sides[to]
        {
            return;
        }
        if self.faults.deaf.contains(&to) {
            if self.faults.stamped_when_deaf {
                let at = self.now + self.faults.delay_min;
                self.push(at, Ev::Stamp { to, from });
            }
            return;
        }
        if self.rng.random_bool(self.faults.loss.clamp(0.0, 1.0)) {
            return;
        }
        let copies = if self.rng.random_bool(self.faults.duplicate.clamp(0.0, 1.0)) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.faults.delay_min + self.rng.random_range(0..=self.faults.delay_jitter);
            let at = self.now + delay;
            self.push(
                at,
                Ev::Packet {
                    to,
                    from,
                    bytes: bytes.clone(),
                },
            );
        }
    }

    /// Runs until global time `until`, calling `tick` every 10 ms of simulated time.
    pub fn run_until(&mut self, until: u64) -> Result<(), String> {
        loop {
            let next_app = self.next_app_time();
            let next_q = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let t = match (next_q, next_app) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => {
                    self.now = self.now.max(until);
                    return Ok(());
                }
            };
            if t > until {
                self.now = until;
                return Ok(());
            }
            self.now = t;
            self.steps += 1;
            if self.steps.is_multiple_of(5_000_000) {
                return Err(format!(
                    "event storm: {} steps by t={:.3}s (queue {}):{}",
                    self.steps,
                    t as f64 / SEC as f64,
                    self.queue.len(),
                    self.describe()
                ));
            }
            if next_app == Some(t) {
                self.app_step()?;
                continue;
            }
            let Some(Reverse((_, _, ev))) = self.queue.pop() else {
                continue;
            };
            match ev {
                Ev::Packet { to, from, bytes } => {
                    if self.nodes[to].cn.is_none() {
                        continue;
                    }
                    if self.stalled(to) {
                        self.nodes[to].deferred.push((self.now, addr(from), bytes));
                        continue;
                    }
                    let local = self.nodes[to].local(self.now);
                    if let Some(cn) = self.nodes[to].cn.as_mut() {
                        cn.handle_packet(local, addr(from), &bytes);
                    }
                    self.after_call(to)?;
                }
                Ev::Stamp { to, from } => {
                    if self.nodes[to].cn.is_none() || self.stalled(to) {
                        continue;
                    }
                    let local = self.nodes[to].local(self.now);
                    if let Some(cn) = self.nodes[to].cn.as_mut() {
                        cn.note_arrival(local, &format!("n{from}"), local);
                    }
                    self.after_call(to)?;
                }
                Ev::Timer { node } => {
                    if self.nodes[node].timer_at != Some(self.now) || self.nodes[node].cn.is_none()
                    {
                        continue;
                    }
                    if self.stalled(node) {
                        continue; // the wake event runs it
                    }
                    self.nodes[node].timer_at = None;
                    let local = self.nodes[node].local(self.now);
                    if let Some(cn) = self.nodes[node].cn.as_mut() {
                        cn.handle_timeout(local);
                    }
                    self.after_call(node)?;
                }
                Ev::Flush { node } => {
                    if self.stalled(node) {
                        // A stalled process sends nothing; its wake-up turn flushes.
                        self.nodes[node].flush_at = None;
                        continue;
                    }
                    self.flush(node)?;
                }
                Ev::Wake { node } => {
                    if self.stalled(node) || self.nodes[node].cn.is_none() {
                        continue;
                    }
                    let deferred = std::mem::take(&mut self.nodes[node].deferred);
                    let local_now = self.nodes[node].local(self.now);
                    for (at, from, bytes) in deferred {
                        let stamps = self.nodes[node].kernel_stamps;
                        let at_local = self.nodes[node].local(at);
                        if let Some(ep) = self.nodes[node].cn.as_mut() {
                            ep.handle_packet(local_now, from, &bytes);
                            if stamps {
                                let name = format!(
                                    "n{}",
                                    from.ip()
                                        .to_string()
                                        .rsplit('.')
                                        .next()
                                        .and_then(|x| x.parse::<usize>().ok())
                                        .unwrap_or(1)
                                        - 1
                                );
                                ep.note_arrival(local_now, &name, at_local);
                            }
                        }
                        self.after_call(node)?;
                    }
                    if let Some(cn) = self.nodes[node].cn.as_mut() {
                        cn.handle_timeout(local_now);
                    }
                    self.nodes[node].timer_at = None;
                    self.after_call(node)?;
                }
            }
        }
    }

    fn next_app_time(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter(|n| n.cn.is_some())
            .map(|n| {
                let mut t = n.next_heartbeat;
                if n.sends {
                    t = t.min(n.next_send);
                }
                if n.slow {
                    t = t.min(n.next_stall);
                }
                t
            })
            .min()
    }

    /// Heartbeats, application sends and stalls that fall due now.
    fn app_step(&mut self) -> Result<(), String> {
        let now = self.now;
        for i in 0..self.nodes.len() {
            if self.nodes[i].cn.is_none() {
                continue;
            }
            if self.nodes[i].slow && self.nodes[i].next_stall <= now {
                let len = self.rng.random_range(20 * MS..=300 * MS);
                self.nodes[i].stalled_until = now + len;
                self.nodes[i].next_stall = now + len + self.rng.random_range(100 * MS..=1000 * MS);
                self.push(now + len, Ev::Wake { node: i });
            }
            // A stalled process does its work late, when it runs again.
            if self.stalled(i) {
                let wake = self.nodes[i].stalled_until;
                let n = &mut self.nodes[i];
                n.next_heartbeat = n.next_heartbeat.max(wake);
                n.next_send = n.next_send.max(wake);
                continue;
            }
            if self.nodes[i].next_heartbeat <= now {
                self.nodes[i].next_heartbeat =
                    now + SEC / u64::from(self.cfg.heartbeats_per_sec.max(1));
                if !self.nodes[i].stuck {
                    let local = self.nodes[i].local(now);
                    if let Some(cn) = self.nodes[i].cn.as_mut() {
                        cn.heartbeat(local);
                    }
                }
            }
            if self.nodes[i].sends && self.nodes[i].next_send <= now {
                let gap = self
                    .rng
                    .random_range(self.send_interval.0..=self.send_interval.1);
                self.nodes[i].next_send = now + gap;
                // Now and then a member joins or leaves a second group.
                if self.rng.random_bool(0.05) {
                    let local = self.nodes[i].local(now);
                    if let Some(cn) = self.nodes[i].cn.as_mut() {
                        let ep = cn.endpoint();
                        let cmd = if ep.group_members(OTHER_GROUP).contains(ep.me()) {
                            Command::Leave(OTHER_GROUP.into())
                        } else {
                            Command::Join(OTHER_GROUP.into())
                        };
                        match cn.handle_command(local, cmd) {
                            Ok(())
                            | Err(CommandError::Transport(
                                SendError::WouldBlock { .. } | SendError::Closed,
                            )) => {}
                            Err(e) => return Err(format!("join/leave failed: {e}")),
                        }
                    }
                }
                // A third of the totally ordered messages are safe.
                let order = if !self.rng.random_bool(self.agreed_share) {
                    Order::Fifo
                } else if self.rng.random_bool(1.0 / 3.0) {
                    Order::Safe
                } else {
                    Order::Agreed
                };
                crate::replication::update(self, i)?;
                let len = self.message_len();
                let node = &mut self.nodes[i];
                let id = (node.idx as u32, node.incarnation, node.counter + 1);
                let local = node.local(now);
                if let Some(cn) = node.cn.as_mut() {
                    match cn.send(local, GROUP, encode_payload(id, len), order) {
                        Ok(()) => node.counter += 1,
                        Err((SendError::WouldBlock { .. } | SendError::Closed, _)) => {}
                        Err((e, _)) => return Err(format!("send failed: {e}")),
                    }
                }
                self.after_call(i)?;
            }
        }
        Ok(())
    }

    /// The size of the next application message: mostly small, now and then larger than a
    /// datagram, up to [`MAX_MESSAGE`].
    fn message_len(&mut self) -> usize {
        if self.large_share <= 0.0 {
            return 20;
        }
        match self.rng.random_range(0.0..1.0) {
            // Log-uniform: as many messages between 2 and 16 KB as between 32 and 256 KB.
            x if x < self.large_share => {
                let (lo, hi) = ((2_000f64).ln(), (MAX_MESSAGE as f64).ln());
                (self.rng.random_range(lo..=hi).exp() as usize).clamp(2_000, MAX_MESSAGE)
            }
            x if x < self.large_share * 3.0 => self.rng.random_range(20..2_000),
            _ => 20,
        }
    }

    /// Node `i` sends one application message of `len` bytes to the test group now.
    pub fn send_now(&mut self, i: usize, len: usize, order: Order) -> Result<MsgIdOf, String> {
        let node = &mut self.nodes[i];
        let id = (node.idx as u32, node.incarnation, node.counter + 1);
        let local = node.local(self.now);
        let cn = node.cn.as_mut().ok_or("node is down")?;
        cn.send(local, GROUP, encode_payload(id, len), order)
            .map_err(|(e, _)| e.to_string())?;
        node.counter += 1;
        self.after_call(i)?;
        Ok(id)
    }

    /// A console request on node `i` now.
    pub fn command(&mut self, i: usize, cmd: Command) -> Result<(), String> {
        let local = self.nodes[i].local(self.now);
        let cn = self.nodes[i].cn.as_mut().ok_or("node is down")?;
        cn.handle_command(local, cmd).map_err(|e| e.to_string())?;
        self.after_call(i)
    }

    /// An operator's console request on node `i` now: a refusal (no view yet, a pinned address,
    /// an unknown node, a hand-off under way) is what the console would print and is counted;
    /// what the request sets off is checked as everything else.
    pub fn console(&mut self, i: usize, cmd: Command) -> Result<(), String> {
        let local = self.nodes[i].local(self.now);
        let Some(cn) = self.nodes[i].cn.as_mut() else {
            return Ok(());
        };
        let is_move = matches!(cmd, Command::DuravipMove { .. });
        match cn.handle_command(local, cmd) {
            Err(_) => self.console_refused += 1,
            Ok(()) if is_move => self.dv_coverage.moves += 1,
            Ok(()) => {}
        }
        self.after_call(i)
    }

    /// Who owns `ip` in node `i`'s agreed DuraVIP table (the member's name), if anyone.
    pub fn owner_in_table(&self, i: usize, ip: IpAddr) -> Option<String> {
        let d = self.nodes[i].cn.as_ref()?.duravip();
        let (_, members) = d.view()?;
        let owner = d.table()?.entries.get(&ip)?.owner?;
        members.get(owner).map(|m| m.name.clone())
    }

    /// Live members (started, not crashed, not left).
    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].cn.is_some())
            .collect()
    }

    /// Live members that are not stuck: the members of the view once it converged.
    pub fn members(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].cn.is_some() && !self.nodes[i].stuck)
            .collect()
    }

    /// Whether every live, non-stuck node has installed one view made of exactly them, and no
    /// view change is under way.
    pub fn converged(&self) -> bool {
        let want: Vec<MemberId> = {
            let mut v: Vec<MemberId> = self
                .live()
                .into_iter()
                .filter(|i| !self.nodes[*i].stuck)
                .map(|i| self.nodes[i].member())
                .collect();
            v.sort();
            v
        };
        self.live()
            .into_iter()
            .filter(|i| !self.nodes[*i].stuck)
            .all(|i| {
                let ep = self.nodes[i].ep().expect("live");
                ep.view().members == want && !ep.is_changing_view()
            })
            && self
                .live()
                .into_iter()
                .filter(|i| !self.nodes[*i].stuck)
                .map(|i| self.nodes[i].ep().expect("live").view().id)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                <= 1
    }

    pub fn describe(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            match n.ep() {
                None => s.push_str(&format!("\n  n{}: down", n.idx)),
                Some(ep) => s.push_str(&format!(
                    "\n  n{} inc {} stuck {} slow {} changing {} health {}: view {:?} {:?}",
                    n.idx,
                    n.incarnation,
                    n.stuck,
                    n.slow,
                    ep.is_changing_view(),
                    ep.local_health(),
                    ep.view().id,
                    ep.view()
                        .members
                        .iter()
                        .map(|m| m.to_string())
                        .collect::<Vec<_>>()
                )),
            }
        }
        s
    }
}
