//! The simulated world: nodes, a network with seeded faults, per-node clocks, and the event loop.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use cohort_engine::group::{
    ClusterKey, Endpoint, Event, GroupConfig, MemberId, Order, SendError, Time,
};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use crate::checker::{Checker, MsgId as MsgIdOf, encode_payload};
use cohort_engine::duravip::{self, DuravipMachine, LocalConfig, Params};

/// The group DuraVIP ownership messages travel on (agreed order), as in the daemon.
pub const DV_GROUP: &str = "ec_cluster";

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
}

pub struct Node {
    pub idx: usize,
    pub ep: Option<Endpoint>,
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
    /// DuraVIP ownership running on this member's views and agreed messages.
    pub dv: Option<DuravipMachine>,
    /// Addresses this member holds (acquired and not released).
    pub held: std::collections::BTreeSet<IpAddr>,
    /// DuraVIP payloads the transport could not take yet.
    pub dv_pending: Vec<Vec<u8>>,
    /// Replicated objects (see `replication.rs`), when the seed replicates.
    pub rep: Option<crate::replication::NodeRep>,
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
    /// Replication settings, if the seed replicates (see `replication.rs`).
    pub replication: Option<crate::replication::Settings>,
}

pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1)),
        4809,
    )
}

impl World {
    pub fn new(seed: u64, n: usize, cfg_base: GroupConfig, key: Option<ClusterKey>) -> World {
        let mut cfg = cfg_base;
        cfg.peers = (0..n).map(|i| (format!("n{i}"), addr(i))).collect();
        let rng = ChaCha8Rng::seed_from_u64(seed);
        let nodes = (0..n)
            .map(|idx| Node {
                idx,
                ep: None,
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
                dv: None,
                held: std::collections::BTreeSet::new(),
                dv_pending: Vec::new(),
                rep: None,
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
            replication: None,
        }
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, ev)));
    }

    /// Starts (or restarts, with a new incarnation) node `i`.
    pub fn start(&mut self, i: usize) -> Result<(), String> {
        if let Some(ep) = &self.nodes[i].ep {
            let m = ep.me().clone();
            self.checker.forget(&m);
        }
        // Incarnations grow with (global) start time, as wall-clock nanoseconds would.
        let inc = self.now * 16 + i as u64 + 1;
        let node = &mut self.nodes[i];
        node.incarnation = inc;
        let now_local = node.local(self.now);
        let me = node.member();
        let mut ep = Endpoint::new(self.cfg.clone(), me, self.key.clone(), now_local)
            .map_err(|e| e.to_string())?;
        ep.heartbeat(now_local);
        ep.join(GROUP).map_err(|e| e.to_string())?;
        if let Some((local_cfgs, params)) = &self.duravip {
            ep.join(DV_GROUP).map_err(|e| e.to_string())?;
            node.dv = Some(DuravipMachine::new(
                duravip::Member::new(node.member().name, inc),
                local_cfgs[i].clone(),
                params.clone(),
            ));
        }
        node.held.clear();
        node.dv_pending.clear();
        node.ep = Some(ep);
        node.deferred.clear();
        node.next_heartbeat = self.now + SEC / u64::from(self.cfg.heartbeats_per_sec.max(1));
        node.next_send = self.now
            + self
                .rng
                .random_range(self.send_interval.0..=self.send_interval.1);
        node.counter = 0;
        node.timer_at = None;
        node.leaving = false;
        crate::replication::start(self, i)?;
        self.after_call(i)
    }

    /// Kills node `i` (kill -9): its state is gone, its in-flight packets still arrive.
    pub fn crash(&mut self, i: usize) {
        if let Some(ep) = self.nodes[i].ep.take() {
            self.checker.forget(ep.me());
        }
        // A dead process holds nothing: its addresses go with it.
        self.nodes[i].dv = None;
        self.nodes[i].held.clear();
        self.nodes[i].dv_pending.clear();
        self.nodes[i].rep = None;
        self.nodes[i].deferred.clear();
        self.nodes[i].timer_at = None;
        self.nodes[i].flush_at = None;
    }

    pub fn leave(&mut self, i: usize) -> Result<(), String> {
        let now = self.now;
        let node = &mut self.nodes[i];
        let local = node.local(now);
        if let Some(ep) = node.ep.as_mut() {
            ep.leave_cluster(local);
            node.leaving = true;
        }
        self.after_call(i)
    }

    fn stalled(&self, i: usize) -> bool {
        self.nodes[i].stalled_until > self.now
    }

    /// Drains node i's transmits and events after any call into its endpoint.
    fn after_call(&mut self, i: usize) -> Result<(), String> {
        let now = self.now;
        let Some(ep) = self.nodes[i].ep.as_mut() else {
            return Ok(());
        };
        let mut events = Vec::new();
        while let Some(e) = ep.poll_event() {
            events.push(e);
        }
        let me = ep.me().clone();
        let left = events.iter().any(|e| matches!(e, Event::LeftCluster));
        crate::replication::drive(self, i, &events)?;
        events.retain(|e| !crate::replication::is_replication(e));
        let (dv_events, events): (Vec<Event>, Vec<Event>) = events
            .into_iter()
            .partition(|e| matches!(e, Event::Message { group, .. } if group == DV_GROUP));
        let views: Vec<cohort_engine::group::View> = events
            .iter()
            .filter_map(|e| {
                if let Event::ViewChanged(v) = e {
                    Some(v.clone())
                } else {
                    None
                }
            })
            .collect();
        self.drive_duravip(i, &views, dv_events)?;
        let dv_timeout = self.nodes[i]
            .dv
            .as_ref()
            .and_then(|d| d.poll_timeout())
            .map(|t| cohort_engine::group::Time::from_nanos(t.0));
        let Some(ep) = self.nodes[i].ep.as_ref() else {
            return Ok(());
        };
        let rep_timeout = crate::replication::timeout(self, i).map(Time::from_nanos);
        let timeout = [ep.poll_timeout(), dv_timeout, rep_timeout]
            .into_iter()
            .flatten()
            .min();
        for e in &events {
            if let Event::ViewChanged(v) = e {
                self.view_log.push((now, i, v.clone()));
            }
        }
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

    /// Feeds node `i`'s DuraVIP machine with its new views and ownership messages, runs its timers,
    /// carries out its actions, and sends its messages in agreed order. Checks that no member
    /// acquires an address another member of the same view holds.
    fn drive_duravip(
        &mut self,
        i: usize,
        views: &[cohort_engine::group::View],
        msgs: Vec<Event>,
    ) -> Result<(), String> {
        if self.nodes[i].dv.is_none() {
            return Ok(());
        }
        let local = self.nodes[i].local(self.now);
        let t = duravip::Time(local.as_nanos());
        {
            let dv = self.nodes[i].dv.as_mut().expect("checked above");
            for v in views {
                let view = duravip::View {
                    id: v.id.as_u64(),
                    members: v
                        .members
                        .iter()
                        .map(|m| duravip::Member::new(m.name.clone(), m.incarnation))
                        .collect(),
                };
                dv.handle_view(t, view)
                    .map_err(|e| format!("n{i} DuraVIP view: {e}"))?;
            }
            for e in msgs {
                if let Event::Message {
                    sender, payload, ..
                } = e
                {
                    let from = duravip::Member::new(sender.name.clone(), sender.incarnation);
                    dv.handle_message(t, &from, &payload)
                        .map_err(|e| format!("n{i} DuraVIP message: {e}"))?;
                }
            }
            if dv.poll_timeout().is_some_and(|d| d <= t) {
                dv.handle_timeout(t);
            }
        }
        let my_view = self.nodes[i].ep.as_ref().map(|ep| ep.view().id);
        while let Some(a) = self.nodes[i].dv.as_mut().and_then(|d| d.poll_action()) {
            self.dv_actions += 1;
            match a {
                duravip::Action::Acquire { ip, .. } => {
                    for (j, other) in self.nodes.iter().enumerate() {
                        if j != i
                            && other.held.contains(&ip)
                            && other.ep.as_ref().map(|ep| ep.view().id) == my_view
                        {
                            return Err(format!(
                                "t={:.3}s DuraVIP: n{i} acquires {ip} while n{j} of the same view holds it",
                                self.now as f64 / SEC as f64
                            ));
                        }
                    }
                    self.nodes[i].held.insert(ip);
                }
                duravip::Action::Release { ip } => {
                    self.nodes[i].held.remove(&ip);
                }
            }
        }
        let node = &mut self.nodes[i];
        let (Some(dv), Some(ep)) = (node.dv.as_mut(), node.ep.as_mut()) else {
            return Ok(());
        };
        while let Some(b) = dv.poll_transmit() {
            node.dv_pending.push(b);
        }
        while !node.dv_pending.is_empty() {
            match ep.send(DV_GROUP, &node.dv_pending[0], Order::Agreed) {
                Ok(()) => {
                    node.dv_pending.remove(0);
                }
                Err(SendError::WouldBlock { .. }) => break,
                Err(SendError::Closed) => {
                    node.dv_pending.clear();
                }
                Err(e) => return Err(format!("n{i} DuraVIP send: {e}")),
            }
        }
        Ok(())
    }

    /// End of an event-loop turn: everything the endpoint queued goes out, coalesced into
    /// datagrams, as a real driver flushes once per turn.
    fn flush(&mut self, i: usize) -> Result<(), String> {
        self.nodes[i].flush_at = None;
        let Some(ep) = self.nodes[i].ep.as_mut() else {
            return Ok(());
        };
        let mut tx = Vec::new();
        while let Some(t) = ep.poll_transmit() {
            tx.push(t);
        }
        for t in tx {
            let to = (t
                .destination
                .ip()
                .to_string()
                .rsplit('.')
                .next()
                .and_then(|x| x.parse::<usize>().ok()))
            .map(|x| x - 1)
            .ok_or("bad address")?;
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
                    if self.nodes[to].ep.is_none() {
                        continue;
                    }
                    if self.stalled(to) {
                        self.nodes[to].deferred.push((self.now, addr(from), bytes));
                        continue;
                    }
                    let local = self.nodes[to].local(self.now);
                    if let Some(ep) = self.nodes[to].ep.as_mut() {
                        ep.handle_packet(local, addr(from), &bytes);
                    }
                    self.after_call(to)?;
                }
                Ev::Timer { node } => {
                    if self.nodes[node].timer_at != Some(self.now) || self.nodes[node].ep.is_none()
                    {
                        continue;
                    }
                    if self.stalled(node) {
                        continue; // the wake event runs it
                    }
                    self.nodes[node].timer_at = None;
                    let local = self.nodes[node].local(self.now);
                    if let Some(ep) = self.nodes[node].ep.as_mut() {
                        ep.handle_timeout(local);
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
                    if self.stalled(node) || self.nodes[node].ep.is_none() {
                        continue;
                    }
                    let deferred = std::mem::take(&mut self.nodes[node].deferred);
                    let local_now = self.nodes[node].local(self.now);
                    for (at, from, bytes) in deferred {
                        let stamps = self.nodes[node].kernel_stamps;
                        let at_local = self.nodes[node].local(at);
                        if let Some(ep) = self.nodes[node].ep.as_mut() {
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
                    if let Some(ep) = self.nodes[node].ep.as_mut() {
                        ep.handle_timeout(local_now);
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
            .filter(|n| n.ep.is_some())
            .flat_map(|n| {
                let mut v = vec![n.next_heartbeat];
                if n.sends {
                    v.push(n.next_send);
                }
                if n.slow {
                    v.push(n.next_stall);
                }
                v
            })
            .min()
    }

    /// Heartbeats, application sends and stalls that fall due now.
    fn app_step(&mut self) -> Result<(), String> {
        let now = self.now;
        for i in 0..self.nodes.len() {
            if self.nodes[i].ep.is_none() {
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
                    if let Some(ep) = self.nodes[i].ep.as_mut() {
                        ep.heartbeat(local);
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
                    let node = &mut self.nodes[i];
                    if let Some(ep) = node.ep.as_mut() {
                        let r = if ep.group_members(OTHER_GROUP).contains(ep.me()) {
                            ep.leave(OTHER_GROUP)
                        } else {
                            ep.join(OTHER_GROUP)
                        };
                        match r {
                            Ok(()) | Err(SendError::WouldBlock { .. } | SendError::Closed) => {}
                            Err(e) => return Err(format!("join/leave failed: {e}")),
                        }
                    }
                }
                let order = if self.rng.random_bool(self.agreed_share) {
                    Order::Agreed
                } else {
                    Order::Fifo
                };
                crate::replication::update(self, i)?;
                let len = self.message_len();
                let node = &mut self.nodes[i];
                let id = (node.idx as u32, node.incarnation, node.counter + 1);
                if let Some(ep) = node.ep.as_mut() {
                    match ep.send(GROUP, &encode_payload(id, len), order) {
                        Ok(()) => node.counter += 1,
                        Err(SendError::WouldBlock { .. } | SendError::Closed) => {}
                        Err(e) => return Err(format!("send failed: {e}")),
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
        let ep = node.ep.as_mut().ok_or("node is down")?;
        ep.send(GROUP, &encode_payload(id, len), order)
            .map_err(|e| e.to_string())?;
        node.counter += 1;
        self.after_call(i)?;
        Ok(id)
    }

    /// Live members (started, not crashed, not left).
    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].ep.is_some())
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
                let ep = self.nodes[i].ep.as_ref().expect("live");
                ep.view().members == want && !ep.is_changing_view()
            })
            && self
                .live()
                .into_iter()
                .filter(|i| !self.nodes[*i].stuck)
                .map(|i| self.nodes[i].ep.as_ref().expect("live").view().id)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                <= 1
    }

    pub fn describe(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            match &n.ep {
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
