//! The sans-IO DuraVIP state machine of one node.
//!
//! # How the daemon drives it
//! - [`DuravipMachine::handle_view`] for every agreed view of the cluster group;
//!   [`DuravipMachine::handle_message`] for every message delivered in agreed order on that group,
//!   **the node's own messages included**; [`DuravipMachine::handle_timeout`] when
//!   [`DuravipMachine::poll_timeout`] is due.
//! - After each call: drain [`DuravipMachine::poll_action`] and carry the actions out in order,
//!   **then** drain [`DuravipMachine::poll_transmit`] and send each payload to the cluster group in
//!   agreed order. The order matters: a RELEASED message tells the new owner it may plumb the
//!   address, so the unplumb it reports must have happened before it is sent.
//!
//! # Phases of a view
//! 1. *Gather*: on a view, every member announces its state (STATE). Until every member's STATE of
//!    this view is delivered, nothing changes hands: members keep what they hold.
//! 2. *Run*: when the last STATE is delivered, every member runs the same election
//!    ([`super::ownership::elect`]) at the same point of the agreed stream and gets the same table.
//!    Later STATEs (announcements, configuration reloads), MATURE, BALANCE, MOVE, RELEASE_ALL and
//!    RELEASED messages change the table at the same stream point on every member.
//!
//! # Why there are never two owners in one view
//! The table has one owner per address by construction and is identical on all members at each
//! stream point. Physically, an address goes from a live holder to a new owner through a hand-off:
//! the old holder unplumbs as soon as it sees it lost the address and then sends RELEASED; the new
//! owner plumbs only when the table has no other holder left, i.e. after that RELEASED is delivered.
//! So no member of a view plumbs an address another member of the view still holds. The one
//! exception is inherited, not created: when two partitions merge, both sides may hold an address
//! when the merged view starts; the election picks one owner and the other releases.
//!
//! # Maturity
//! A view is mature once it has been stable for `view_mature_time`: its leader then sends MATURE,
//! and from its delivery every member of the view is mature. Only mature members are given
//! addresses, and balancing runs only in mature views. So a cold cluster assigns nothing until its
//! first view matures, a new node gets addresses only once the view it joined matures, while the
//! addresses of a crashed node move at once to the (already mature) survivors.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use super::announce::{Announcement, LocalConfig};
use super::ownership::{Contender, Table, balance, elect};
use super::status::{Status, StatusEntry, StatusMember};
use super::wire::{Message, Repr};
use super::{DuravipError, Member, Time, View};
use crate::config::Cluster;

/// Payloads waiting to be sent. The machine queues at most a few per call; a daemon that drains
/// after every call never comes close. Beyond this, new payloads are dropped and counted.
pub const MAX_TRANSMIT_QUEUE: usize = 64;
/// Pending actions: at most one per address (an acquire and a release of one address cancel out
/// while neither has been carried out), so the queue is bounded by the addresses known.
pub const MAX_ACTION_QUEUE: usize = 2 * super::wire::MAX_ADDRESSES;

fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.map_or(0.0, |d| d.as_secs_f64()))
}

/// The cluster options DuraVIP uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Params {
    /// `view_mature_time`: how long a view must be stable before it is mature.
    #[serde(serialize_with = "crate::config::model::secs")]
    pub mature_time: Duration,
    /// `view_balance_interval`: time between the leader's balancing rounds.
    #[serde(serialize_with = "crate::config::model::secs")]
    pub balance_interval: Duration,
    /// `view_broadcast_interval`: time between re-announcements; `None` for never (0).
    #[serde(serialize_with = "opt_secs")]
    pub broadcast_interval: Option<Duration>,
    /// `duravip_balance_set_size`: most moves per balancing round (at least 1).
    pub balance_set_size: usize,
    /// `duravip_quorum = majority` (Cohort extension): in a view of fewer members than this, the
    /// node is fenced: it releases every address and claims none. `None`: never fenced.
    pub quorum: Option<usize>,
    /// With `duravip_quorum`: how long a new owner waits before plumbing an address that a member
    /// which left the view held (`2 x suspect_timeout + probe_interval`). That member may be alive
    /// (dropped from a view change as silent, cut off); by then it has installed a view of its own
    /// (fenced) or has released on its view change lasting `2 x suspect_timeout`
    /// ([`DuravipMachine::suspend`]). Zero without a quorum: at once.
    #[serde(serialize_with = "crate::config::model::secs")]
    pub takeover_delay: Duration,
}

impl Params {
    /// The options of a `cluster { }` scope (typed and bounded by the loader).
    pub fn from_cluster(c: &Cluster) -> Params {
        let broadcast = c.view_broadcast_interval;
        Params {
            mature_time: c.view_mature_time,
            balance_interval: c.view_balance_interval.max(Duration::from_millis(1)),
            broadcast_interval: (!broadcast.is_zero()).then_some(broadcast),
            // One BALANCE message carries at most MAX_ADDRESSES moves.
            balance_set_size: usize::try_from(c.duravip_balance_set_size)
                .unwrap_or(usize::MAX)
                .clamp(1, super::wire::MAX_ADDRESSES),
            quorum: None,
            takeover_delay: Duration::ZERO,
        }
    }

    /// [`Params::from_cluster`] with the quorum of `duravip_quorum` over the configured peers
    /// (`msgc_server { peers }`, this node included; a node without peers is never fenced).
    pub fn from_config(cfg: &crate::config::Config) -> Params {
        let quorum = cfg
            .cluster
            .duravip_quorum
            .threshold(cfg.msgc_server.peers.len().max(1));
        let m = &cfg.msgc_server;
        Params {
            quorum,
            takeover_delay: if quorum.is_some() {
                m.suspect_timeout * 2 + m.probe_interval
            } else {
                Duration::ZERO
            },
            ..Params::from_cluster(&cfg.cluster)
        }
    }
}

impl Default for Params {
    fn default() -> Self {
        Params::from_cluster(&Cluster::default())
    }
}

/// What the daemon must do on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Action {
    /// Plumb `ip` (with the `Topology` prefix length as `network`, on `interface`), announce it
    /// with gratuitous ARP, start answering for it. `network`/`interface` are `None` when no
    /// `Topology` block covers the address.
    Acquire {
        ip: IpAddr,
        network: Option<IpNet>,
        interface: Option<String>,
    },
    /// Stop answering for `ip` and unplumb it.
    Release { ip: IpAddr },
}

impl Action {
    pub fn ip(&self) -> IpAddr {
        match self {
            Action::Acquire { ip, .. } | Action::Release { ip } => *ip,
        }
    }
}

/// Counters for the console and for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Messages that failed to parse.
    pub malformed: u64,
    /// Messages of another view, from a non-member, or arriving before any view.
    pub stale: u64,
    /// Moves of BALANCE and MOVE messages refused by the table's rules.
    pub refused_moves: u64,
    /// Payloads dropped because the transmit queue was full.
    pub transmit_overflow: u64,
    /// Elections run.
    pub elections: u64,
}

#[derive(Clone, Debug)]
struct ViewState {
    id: u64,
    members: Vec<Member>,
    me: usize,
    installed: Time,
    mature: bool,
    mature_sent: bool,
    announcements: Vec<Option<Announcement>>,
    table: Option<Table>,
    next_balance: Option<Time>,
    next_broadcast: Option<Time>,
}

/// The DuraVIP state machine of one node (module docs for the contract).
#[derive(Debug)]
pub struct DuravipMachine {
    me: Member,
    config: LocalConfig,
    params: Params,
    mature: bool,
    withdrawn: bool,
    /// The view holds no quorum (`Params::quorum`): announced as withdrawn, holds nothing.
    fenced: bool,
    debug: bool,
    held: BTreeSet<IpAddr>,
    /// `Params::takeover_delay`: addresses a member that left the view held, and until when
    /// this node does not plumb them.
    hold: BTreeMap<IpAddr, Time>,
    /// Addresses in `held` whose acquire waits for `hold` (never plumbed so far).
    deferred: BTreeSet<IpAddr>,
    view: Option<ViewState>,
    actions: VecDeque<Action>,
    /// The addresses with an action in `actions` (at most one each).
    pending: BTreeSet<IpAddr>,
    transmits: VecDeque<(u64, Vec<u8>)>,
    config_since: BTreeMap<IpAddr, (u64, Time)>,
    stats: Stats,
}

impl DuravipMachine {
    /// A node that holds nothing and has seen no view. The daemon unplumbs stale DuraVIP addresses
    /// at start-up, so a new machine starts empty.
    pub fn new(me: Member, config: LocalConfig, params: Params) -> DuravipMachine {
        DuravipMachine {
            me,
            config,
            params,
            mature: false,
            withdrawn: false,
            fenced: false,
            debug: false,
            held: BTreeSet::new(),
            hold: BTreeMap::new(),
            deferred: BTreeSet::new(),
            view: None,
            actions: VecDeque::new(),
            pending: BTreeSet::new(),
            transmits: VecDeque::new(),
            config_since: BTreeMap::new(),
            stats: Stats::default(),
        }
    }

    /// Installs an agreed view and announces this node's state in it.
    pub fn handle_view(&mut self, now: Time, view: View) -> Result<(), DuravipError> {
        if let Some(v) = &self.view
            && view.id <= v.id
        {
            return Err(crate::duravip::DuravipError::ViewNotNewer {
                id: view.id,
                current: v.id,
            });
        }
        if view.members.len() > usize::from(u16::MAX) + 1 {
            return Err(DuravipError::ViewTooLarge {
                id: view.id,
                count: view.members.len(),
                max: usize::from(u16::MAX) + 1,
            });
        }
        let mut mine = view
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| **m == self.me);
        let (Some((me, _)), None) = (mine.next(), mine.next()) else {
            return Err(crate::duravip::DuravipError::NotInView {
                id: view.id,
                me: self.me.to_string(),
            });
        };
        let n = view.members.len();
        tracing::debug!(node = %self.me.name, view = view.id, members = n, "duravip view installed");
        self.hold_departed(now, &view.members);
        self.view = Some(ViewState {
            id: view.id,
            members: view.members,
            me,
            installed: now,
            mature: false,
            mature_sent: false,
            announcements: vec![None; n],
            table: None,
            next_balance: None,
            next_broadcast: self.params.broadcast_interval.map(|d| now + d),
        });
        // Payloads of older views would be ignored by every receiver.
        self.transmits.retain(|(v, _)| *v == view.id);
        self.fence();
        self.send_state();
        Ok(())
    }

    /// Applies the quorum to the installed view: a member of a view below it releases every
    /// address at once (the daemon stops answering ARP for it, then unplumbs it) and announces
    /// itself withdrawn, so no member of such a view claims anything; a view at or above it
    /// lifts the fence and the election places addresses as usual.
    fn fence(&mut self) {
        let Some(v) = &self.view else { return };
        let fenced = self.params.quorum.is_some_and(|q| v.members.len() < q);
        if fenced && !self.fenced {
            tracing::warn!(
                node = %self.me.name,
                view = v.id,
                members = v.members.len(),
                quorum = self.params.quorum.unwrap_or(0),
                released = self.held.len(),
                "duravip fenced: the view holds no majority of the configured peers"
            );
        } else if !fenced && self.fenced {
            tracing::info!(node = %self.me.name, view = v.id, "duravip fence lifted: the view holds a majority");
        }
        self.fenced = fenced;
        if fenced {
            self.release_held();
        }
    }

    /// `duravip_quorum`: this node's view change has lasted so long (`2 x suspect_timeout`, see
    /// [`crate::node::ClusterNode`]) that the others may have installed a view without it. It
    /// releases every address at once and claims none until its next view, whose size decides
    /// the fence again. Nothing without a quorum.
    pub fn suspend(&mut self) {
        if self.params.quorum.is_none() || self.fenced {
            return;
        }
        tracing::warn!(
            node = %self.me.name,
            released = self.held.len(),
            "duravip fenced: the view change outlasted twice the suspicion timeout"
        );
        self.fenced = true;
        self.release_held();
    }

    /// Releases everything held (what was never plumbed needs no action).
    fn release_held(&mut self) {
        for ip in std::mem::take(&mut self.held) {
            if !self.deferred.remove(&ip) {
                self.push_action(Action::Release { ip });
            }
        }
    }

    /// With a takeover delay: what the members of the old view that are not in `members` held
    /// (or were given) is plumbed here no sooner than `now + takeover_delay`.
    fn hold_departed(&mut self, now: Time, members: &[Member]) {
        let Some(old) = &self.view else { return };
        if self.params.takeover_delay.is_zero() {
            return;
        }
        let until = now + self.params.takeover_delay;
        let mut ips: Vec<IpAddr> = Vec::new();
        for (i, m) in old.members.iter().enumerate() {
            if members.contains(m) {
                continue;
            }
            match &old.table {
                Some(t) => ips.extend(
                    t.entries
                        .iter()
                        .filter(|(_, e)| e.holders.contains(&i) || e.owner == Some(i))
                        .map(|(ip, _)| *ip),
                ),
                None => ips.extend(
                    old.announcements[i]
                        .iter()
                        .flat_map(|a| a.held.iter().copied()),
                ),
            }
        }
        for ip in ips {
            let t = self.hold.entry(ip).or_insert(until);
            *t = (*t).max(until);
        }
    }

    /// Plumbs the deferred addresses whose hold has passed and whose hand-off is complete in the
    /// current table (after a merge the departed member may be back and still hold one: it is
    /// plumbed here once its RELEASED is delivered, by [`Self::reconcile`]).
    fn plumb_deferred(&mut self, now: Time) {
        self.hold.retain(|_, t| *t > now);
        let Some(v) = &self.view else { return };
        let Some(t) = &v.table else { return };
        let due: Vec<IpAddr> = self
            .deferred
            .iter()
            .copied()
            .filter(|ip| !self.hold.contains_key(ip))
            .filter(|ip| {
                t.entries
                    .get(ip)
                    .is_some_and(|e| e.owner == Some(v.me) && e.settled())
            })
            .collect();
        for ip in due {
            self.deferred.remove(&ip);
            if self.held.contains(&ip) && !self.fenced {
                self.push_acquire(ip);
            }
        }
    }

    /// Whether the quorum fences this node (`duravip_quorum = majority` and a minority view).
    pub fn fenced(&self) -> bool {
        self.fenced
    }

    /// Applies one message delivered in agreed order. Malformed messages are refused with an
    /// error naming the sender (and counted); messages of another view or from a non-member are
    /// ignored (and counted).
    pub fn handle_message(
        &mut self,
        now: Time,
        from: &Member,
        bytes: &[u8],
    ) -> Result<(), DuravipError> {
        let repr = match Repr::parse_bytes(bytes) {
            Ok(r) => r,
            Err(source) => {
                self.stats.malformed += 1;
                return Err(DuravipError::Wire {
                    from: from.to_string(),
                    source,
                });
            }
        };
        let Some(v) = self.view.as_mut() else {
            self.stats.stale += 1;
            return Ok(());
        };
        let sender = v.members.iter().position(|m| m == from);
        let (true, Some(idx)) = (repr.view_id == v.id, sender) else {
            self.stats.stale += 1;
            return Ok(());
        };
        let span = tracing::debug_span!("duravip", node = %self.me.name, view = v.id);
        let _g = span.enter();
        match repr.message {
            Message::State(ann) => {
                v.announcements[idx] = Some(ann);
                self.elect(now);
            }
            Message::Mature => {
                if !v.mature {
                    v.mature = true;
                    self.mature = true;
                    if v.me == 0 {
                        v.next_balance = Some(now + self.params.balance_interval);
                    }
                    if v.table.is_some() {
                        self.elect(now);
                    }
                }
            }
            Message::Balance(moves) => {
                let n = v.members.len();
                if let (0, true, Some(t)) = (idx, v.mature, v.table.as_mut()) {
                    let valid: Vec<(IpAddr, Option<usize>, usize)> = moves
                        .iter()
                        .filter(|m| usize::from(m.from) < n && usize::from(m.to) < n)
                        .map(|m| (m.ip, Some(usize::from(m.from)), usize::from(m.to)))
                        .collect();
                    let refused = moves.len() - valid.len() + t.apply_moves(&valid);
                    self.stats.refused_moves += u64::try_from(refused).unwrap_or(u64::MAX);
                    self.reconcile(now);
                } else {
                    self.stats.refused_moves += 1;
                }
            }
            Message::Move { ip, to } => {
                let target = v.members.iter().position(|m| m.name == to);
                let applied = match (v.table.as_mut(), target) {
                    (Some(t), Some(to)) => t.apply_moves(&[(ip, None, to)]) == 0,
                    _ => false,
                };
                if applied {
                    tracing::info!(%ip, %to, "duravip move applied");
                    self.reconcile(now);
                } else {
                    self.stats.refused_moves += 1;
                }
            }
            Message::Released(ips) => {
                if let Some(t) = v.table.as_mut() {
                    t.released(idx, &ips);
                    self.reconcile(now);
                }
            }
        }
        Ok(())
    }

    /// Runs the timers that are due: the leader's MATURE and balancing rounds, re-announcements.
    pub fn handle_timeout(&mut self, now: Time) {
        self.plumb_deferred(now);
        let Some(v) = self.view.as_mut() else {
            return;
        };
        if v.me == 0 && !v.mature && !v.mature_sent && now >= v.installed + self.params.mature_time
        {
            v.mature_sent = true;
            let id = v.id;
            self.transmit(id, Message::Mature);
        }
        let Some(v) = self.view.as_mut() else {
            return;
        };
        if let Some(at) = v.next_balance
            && now >= at
        {
            v.next_balance = Some(now + self.params.balance_interval);
            if let Some(t) = &v.table {
                let candidates = candidates(v);
                let moves = balance(t, &candidates, self.params.balance_set_size);
                if !moves.is_empty() {
                    tracing::debug!(moves = moves.len(), view = v.id, "duravip balancing round");
                    let id = v.id;
                    self.transmit(id, Message::Balance(moves));
                }
            }
        }
        let Some(v) = self.view.as_mut() else {
            return;
        };
        if let (Some(at), Some(d)) = (v.next_broadcast, self.params.broadcast_interval)
            && now >= at
        {
            v.next_broadcast = Some(now + d);
            self.send_state();
        }
    }

    /// When [`DuravipMachine::handle_timeout`] should next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        let deferred = self
            .deferred
            .iter()
            .filter_map(|ip| self.hold.get(ip))
            .min()
            .copied();
        let Some(v) = self.view.as_ref() else {
            return deferred;
        };
        let mature = (v.me == 0 && !v.mature && !v.mature_sent)
            .then(|| v.installed + self.params.mature_time);
        [mature, v.next_balance, v.next_broadcast, deferred]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next payload to send to the cluster group in agreed order.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front().map(|(_, b)| b)
    }

    /// The next action to carry out (before sending the payloads queued with it).
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        let a = self.actions.pop_front()?;
        self.pending.remove(&a.ip());
        Some(a)
    }

    /// `cluster duravip announce view`: re-announce this node's state in the current view, which
    /// also ends a `release all`. Every member re-runs the election at the same point of the
    /// agreed stream (the documented cure for the `config reload` race).
    pub fn announce(&mut self) -> Result<(), DuravipError> {
        self.withdrawn = false;
        if self.view.is_none() {
            return Err(DuravipError::NoView);
        }
        self.send_state();
        Ok(())
    }

    /// Re-announces this node's state in the current view without ending a `release all`, so
    /// every member re-runs the election at that point: the daemon asks for it when its XDP lease
    /// lapsed (its loop stalled), and re-arms the lease once an election confirms what it holds.
    pub fn confirm(&mut self) -> Result<(), DuravipError> {
        if self.view.is_none() {
            return Err(DuravipError::NoView);
        }
        self.send_state();
        Ok(())
    }

    /// A configuration reload: use `config` and `params` from now on and announce the
    /// configuration, so that every member re-runs the election with it at the same point of
    /// the agreed stream. New intervals take effect from `now` (the next balancing round and
    /// re-announcement are rescheduled; maturity keeps counting from the view's installation).
    pub fn reload(&mut self, now: Time, config: LocalConfig, params: Params) {
        self.config = config;
        if let Some(v) = self.view.as_mut() {
            if params.balance_interval != self.params.balance_interval && v.next_balance.is_some() {
                v.next_balance = Some(now + params.balance_interval);
            }
            if params.broadcast_interval != self.params.broadcast_interval {
                v.next_broadcast = params.broadcast_interval.map(|d| now + d);
            }
        }
        self.params = params;
        self.fence();
        if self.view.is_some() {
            self.send_state();
        }
    }

    /// The parameters in force.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// `cluster duravip release all`: this node announces (in agreed order) that it takes no
    /// address, so every member re-runs the election without it and it releases everything it
    /// holds. It stays out, across view changes, until `cluster duravip announce view`.
    pub fn release_all(&mut self) {
        self.withdrawn = true;
        self.send_state();
    }

    /// Whether `release all` keeps this node out of the election.
    pub fn withdrawn(&self) -> bool {
        self.withdrawn
    }

    /// `cluster duravip move <ip> to <node>`: checked against this node's table, then sent in
    /// agreed order so that the old and the new owner apply it at the same point (where it is
    /// checked again, since the table may have changed meanwhile). BROKEN, follower and pinned
    /// (preferred) addresses, addresses being handed over, and nodes not configured for the
    /// address are refused.
    pub fn request_move(&mut self, ip: IpAddr, node: &str) -> Result<(), DuravipError> {
        let v = self.view.as_ref().ok_or(DuravipError::NoView)?;
        let t = v.table.as_ref().ok_or(DuravipError::NoView)?;
        let e = t
            .entries
            .get(&ip)
            .ok_or(DuravipError::UnknownAddress { ip, view: v.id })?;
        if e.broken.is_some() {
            return Err(DuravipError::Broken { ip });
        }
        if let Some(leader) = e.follows {
            return Err(DuravipError::Follower { ip, leader });
        }
        let to =
            v.members
                .iter()
                .position(|m| m.name == node)
                .ok_or(DuravipError::UnknownNode {
                    node: node.to_owned(),
                    view: v.id,
                })?;
        if !e.is_participant(to) {
            return Err(DuravipError::NotConfigured {
                node: node.to_owned(),
                ip,
            });
        }
        if e.owner == Some(to) {
            return Ok(());
        }
        if e.pinned() {
            return Err(DuravipError::Pinned {
                ip,
                node: e.preference.clone().unwrap_or_default(),
            });
        }
        if !e.settled() {
            return Err(DuravipError::HandoffInProgress { ip });
        }
        let id = v.id;
        self.transmit(
            id,
            Message::Move {
                ip,
                to: node.to_owned(),
            },
        );
        Ok(())
    }

    /// Leaving the cluster (SIGTERM): release everything; the peers take over on the next view.
    pub fn shutdown(&mut self) {
        self.release_held();
        self.hold.clear();
        self.deferred.clear();
        self.view = None;
        self.transmits.clear();
    }

    /// `cluster duravip debug on|off`: log every election and hand-off at info level.
    pub fn set_debug(&mut self, on: bool) {
        self.debug = on;
    }

    pub fn debug(&self) -> bool {
        self.debug
    }

    pub fn me(&self) -> &Member {
        &self.me
    }

    /// The addresses this node holds (as far as the actions it was given say).
    pub fn held(&self) -> &BTreeSet<IpAddr> {
        &self.held
    }

    /// The agreed table of the current view, once every member has announced.
    pub fn table(&self) -> Option<&Table> {
        self.view.as_ref().and_then(|v| v.table.as_ref())
    }

    /// The installed view's id and members.
    pub fn view(&self) -> Option<(u64, &[Member])> {
        self.view.as_ref().map(|v| (v.id, &v.members[..]))
    }

    /// Whether the installed view has matured.
    pub fn view_mature(&self) -> bool {
        self.view.as_ref().is_some_and(|v| v.mature)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether each member of the view may be given addresses (the election's view of them).
    pub fn candidates(&self) -> Vec<bool> {
        self.view.as_ref().map(candidates).unwrap_or_default()
    }

    /// Everything the console shows, at `now`.
    pub fn status(&self, now: Time) -> Status {
        let Some(v) = &self.view else {
            return Status {
                node: self.me.name.clone(),
                view_id: None,
                leader: None,
                phase: "none",
                view_mature: false,
                node_mature: self.mature,
                node_withdrawn: self.withdrawn,
                fenced: self.fenced,
                view_stable_secs: 0,
                debug: self.debug,
                params: self.params.clone(),
                entries: Vec::new(),
            };
        };
        let stable = |ip: &IpAddr| {
            self.config_since
                .get(ip)
                .map_or(0, |(_, since)| now.since(*since).as_secs())
        };
        let entries = match &v.table {
            Some(t) => t
                .entries
                .iter()
                .map(|(ip, e)| StatusEntry {
                    ip: *ip,
                    bindings: e.bindings.iter().cloned().collect(),
                    services: e.services,
                    owned: e.owner.is_some(),
                    safe: e.safe,
                    conflict: e.conflict,
                    broken: e.broken,
                    preference: e.preference.clone(),
                    follows: e.follows,
                    owner: e.owner.map(|o| v.members[o].name.clone()),
                    handoff: !e.settled(),
                    configuration_stable_secs: stable(ip),
                    members: e
                        .participants
                        .iter()
                        .map(|p| StatusMember {
                            name: v.members[p.index].name.clone(),
                            incarnation: v.members[p.index].incarnation,
                            index: p.index,
                            services: p.services,
                            owner: e.owner == Some(p.index),
                            holds: e.holders.contains(&p.index),
                            candidate: p.candidate,
                            this_node: p.index == v.me,
                        })
                        .collect(),
                })
                .collect(),
            // Gathering: only this node's own addresses are known.
            None => self
                .config
                .addresses
                .iter()
                .map(|a| {
                    let mine = self.held.contains(&a.ip);
                    StatusEntry {
                        ip: a.ip,
                        bindings: a.bindings.iter().cloned().collect(),
                        services: a.services,
                        owned: mine,
                        safe: true,
                        conflict: false,
                        broken: None,
                        preference: a.preference.clone(),
                        follows: a.follows,
                        owner: mine.then(|| self.me.name.clone()),
                        handoff: false,
                        configuration_stable_secs: stable(&a.ip),
                        members: vec![StatusMember {
                            name: self.me.name.clone(),
                            incarnation: self.me.incarnation,
                            index: v.me,
                            services: a.services,
                            owner: mine,
                            holds: mine,
                            candidate: self.mature,
                            this_node: true,
                        }],
                    }
                })
                .collect(),
        };
        Status {
            node: self.me.name.clone(),
            view_id: Some(v.id),
            leader: v.members.first().map(|m| m.name.clone()),
            phase: if v.table.is_some() { "run" } else { "gather" },
            view_mature: v.mature,
            node_mature: self.mature,
            node_withdrawn: self.withdrawn,
            fenced: self.fenced,
            view_stable_secs: now.since(v.installed).as_secs(),
            debug: self.debug,
            params: self.params.clone(),
            entries,
        }
    }

    fn announcement(&self) -> Announcement {
        Announcement {
            mature: self.mature,
            withdrawn: self.withdrawn || self.fenced,
            addresses: self.config.addresses.clone(),
            held: self.held.iter().copied().collect(),
        }
    }

    fn send_state(&mut self) {
        if let Some(id) = self.view.as_ref().map(|v| v.id) {
            let a = self.announcement();
            self.transmit(id, Message::State(a));
        }
    }

    fn transmit(&mut self, view_id: u64, message: Message) {
        let repr = Repr { view_id, message };
        match repr.to_bytes() {
            Ok(bytes) if self.transmits.len() < MAX_TRANSMIT_QUEUE => {
                self.transmits.push_back((view_id, bytes));
            }
            Ok(_) => {
                self.stats.transmit_overflow += 1;
                tracing::warn!(node = %self.me.name, "duravip transmit queue full; payload dropped");
            }
            Err(e) => {
                tracing::error!(node = %self.me.name, error = %e, "duravip message does not fit the wire format; not sent")
            }
        }
    }

    fn push_acquire(&mut self, ip: IpAddr) {
        let action = Action::Acquire {
            ip,
            network: self.config.network(ip),
            interface: self.config.placement.get(&ip).map(|p| p.interface.clone()),
        };
        self.push_action(action);
    }

    fn push_action(&mut self, action: Action) {
        let ip = action.ip();
        // An acquire and a release of one address that were not carried out yet cancel out.
        if self.pending.remove(&ip) {
            if let Some(k) = self.actions.iter().position(|a| a.ip() == ip) {
                self.actions.remove(k);
            }
            return;
        }
        if self.actions.len() >= MAX_ACTION_QUEUE {
            tracing::error!(node = %self.me.name, %ip, "duravip action queue full; action dropped");
            return;
        }
        self.pending.insert(ip);
        self.actions.push_back(action);
    }

    /// Runs the election when the view has every announcement (first time) or re-runs it on the
    /// current table (later), then reconciles this node's holdings with the result.
    fn elect(&mut self, now: Time) {
        let Some(v) = self.view.as_mut() else {
            return;
        };
        let current = match &v.table {
            Some(t) => t.current(),
            None => {
                if v.announcements.iter().any(Option::is_none) {
                    return;
                }
                let mut cur: BTreeMap<IpAddr, super::ownership::Current> = BTreeMap::new();
                for (i, a) in v.announcements.iter().enumerate() {
                    for ip in a.iter().flat_map(|a| &a.held) {
                        cur.entry(*ip).or_default().holders.insert(i);
                    }
                }
                cur
            }
        };
        let cand = candidates(v);
        let contenders: Vec<Contender<'_>> = v
            .members
            .iter()
            .zip(&v.announcements)
            .zip(&cand)
            .map(|((m, a), c)| Contender {
                name: &m.name,
                candidate: *c,
                addresses: a.as_ref().map_or(&[][..], |a| &a.addresses[..]),
            })
            .collect();
        let table = elect(&contenders, &current);
        self.stats.elections += 1;
        if self.debug {
            let owned = table.entries.values().filter(|e| e.owner.is_some()).count();
            tracing::info!(
                view = v.id,
                addresses = table.entries.len(),
                owned,
                "duravip election"
            );
        }
        // Configuration stability: when what the participants announce for an address changed.
        for (ip, e) in &table.entries {
            let mut h = DefaultHasher::new();
            for p in &e.participants {
                v.members[p.index].name.hash(&mut h);
                // Announced addresses are strictly ascending (the wire format enforces it).
                if let Some(a) = v.announcements[p.index].as_ref().and_then(|a| {
                    a.addresses
                        .binary_search_by_key(ip, |a| a.ip)
                        .ok()
                        .map(|k| &a.addresses[k])
                }) {
                    a.hash(&mut h);
                }
            }
            let sig = h.finish();
            match self.config_since.get(ip) {
                Some((s, _)) if *s == sig => {}
                _ => {
                    self.config_since.insert(*ip, (sig, now));
                }
            }
        }
        self.config_since
            .retain(|ip, _| table.entries.contains_key(ip));
        if v.mature && v.me == 0 && v.next_balance.is_none() {
            v.next_balance = Some(now + self.params.balance_interval);
        }
        v.table = Some(table);
        self.reconcile(now);
    }

    /// Completes the hand-offs the table allows, then makes this node's holdings match its
    /// table: acquire what it owns and holds in the table, release (and report released) what it
    /// holds but does not own.
    fn reconcile(&mut self, now: Time) {
        let Some(v) = self.view.as_mut() else {
            return;
        };
        let Some(t) = v.table.as_mut() else {
            return;
        };
        t.settle();
        let me = v.me;
        let id = v.id;
        let mut acquire = Vec::new();
        for (ip, e) in &t.entries {
            // Only once the hand-off is complete in the table: this node is the one holder left.
            // Being listed among several holders is not enough: after a merge a node that
            // released locally stays listed until its RELEASED is delivered, and another holder
            // may still have the address plumbed (seed 5 of the DuraVIP harness: a withdrawal
            // right after a merge made the new owner plumb while the old one still held it).
            if e.owner == Some(me) && e.settled() && !self.held.contains(ip) && !self.fenced {
                // The single-holder invariant at the place it can break: in this view's agreed
                // table, this node is the only holder of what it acquires.
                debug_assert!(
                    e.holders.iter().all(|&h| h == me),
                    "{ip}: acquired while the table lists holders {:?}",
                    e.holders
                );
                acquire.push(*ip);
            }
        }
        let release: Vec<IpAddr> = self
            .held
            .iter()
            .copied()
            .filter(|ip| t.owner(*ip) != Some(me))
            .collect();
        let debug = self.debug;
        for ip in &release {
            self.held.remove(ip);
            if debug {
                tracing::info!(node = %self.me.name, view = id, %ip, "duravip release");
            }
            // A deferred address was never plumbed: only its RELEASED is due.
            if !self.deferred.remove(ip) {
                self.push_action(Action::Release { ip: *ip });
            }
        }
        for ip in acquire {
            self.held.insert(ip);
            if self.hold.get(&ip).is_some_and(|t| *t > now) {
                // Held in the table (nobody else may take it), plumbed once the member that
                // left with it has surely released it.
                tracing::info!(node = %self.me.name, view = id, %ip, "duravip acquire deferred: a member that left the view held it");
                self.deferred.insert(ip);
                continue;
            }
            if debug {
                tracing::info!(node = %self.me.name, view = id, %ip, "duravip acquire");
            }
            self.push_acquire(ip);
        }
        if !release.is_empty() {
            self.transmit(id, Message::Released(release));
        }
        self.plumb_deferred(now);
    }
}

fn candidates(v: &ViewState) -> Vec<bool> {
    v.announcements
        .iter()
        .map(|a| {
            a.as_ref()
                .is_some_and(|a| !a.withdrawn && (v.mature || a.mature))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_views_and_messages_are_refused() {
        let params = Params {
            mature_time: Duration::from_secs(5),
            balance_interval: Duration::from_secs(10),
            broadcast_interval: None,
            balance_set_size: 1,
            quorum: None,
            takeover_delay: Duration::ZERO,
        };
        let me = Member::new("a", 1);
        let mut m = DuravipMachine::new(me.clone(), LocalConfig::default(), params);
        let other = View {
            id: 3,
            members: vec![Member::new("b", 2)],
        };
        assert!(matches!(
            m.handle_view(Time::from_nanos(0), other),
            Err(crate::duravip::DuravipError::NotInView { .. })
        ));
        let v = View {
            id: 3,
            members: vec![me.clone()],
        };
        m.handle_view(Time::from_nanos(0), v.clone())
            .expect("installs");
        assert_eq!(
            m.handle_view(Time::from_nanos(0), v),
            Err(crate::duravip::DuravipError::ViewNotNewer { id: 3, current: 3 })
        );
        let err = m
            .handle_message(Time::from_nanos(0), &me, &[1, 2, 3])
            .expect_err("malformed");
        assert!(
            err.to_string()
                .starts_with("message from a#1: truncated message at offset"),
            "{err}"
        );
        assert_eq!(m.stats().malformed, 1);
        // A message of another view is ignored, not applied.
        let stale = super::super::wire::Repr {
            view_id: 2,
            message: super::super::wire::Message::Mature,
        }
        .to_bytes()
        .expect("fits");
        m.handle_message(Time::from_nanos(0), &me, &stale)
            .expect("ignored");
        assert_eq!(m.stats().stale, 1);
        assert!(!m.view_mature());
    }

    #[test]
    fn params_follow_the_cluster_options() {
        let p = Params::from_cluster(&Cluster::default());
        assert_eq!(p.mature_time, Duration::from_secs(5));
        assert_eq!(p.balance_interval, Duration::from_secs(10));
        assert_eq!(p.broadcast_interval, None, "0 means never");
        assert_eq!(p.balance_set_size, 1);
        let c = Cluster {
            view_mature_time: Duration::from_millis(500),
            view_broadcast_interval: Duration::from_secs(30),
            duravip_balance_set_size: 64,
            view_balance_interval: Duration::ZERO,
            ..Cluster::default()
        };
        let p = Params::from_cluster(&c);
        assert_eq!(p.mature_time, Duration::from_millis(500));
        assert_eq!(p.broadcast_interval, Some(Duration::from_secs(30)));
        assert_eq!(p.balance_set_size, 64);
        assert_eq!(
            p.balance_interval,
            Duration::from_millis(1),
            "never a zero interval"
        );
    }

    #[test]
    fn single_node_matures_acquires_and_releases_on_shutdown() {
        use crate::duravip::announce::{AddrConfig, Services};
        let me = Member::new("solo", 9);
        let ip: IpAddr = "10.1.1.1".parse().expect("ip");
        let config = LocalConfig {
            addresses: vec![AddrConfig {
                ip,
                bindings: ["b".to_owned()].into(),
                services: Services::MULTIVIP,
                preference: None,
                follows: None,
            }],
            placement: [(
                ip,
                crate::duravip::announce::Placement {
                    interface: "eth1".into(),
                    cidrmask: 32,
                },
            )]
            .into(),
        };
        let mut m = DuravipMachine::new(me.clone(), config, Params::default());
        assert_eq!(m.poll_timeout(), None);
        m.handle_view(
            Time::from_secs(1),
            View {
                id: 1,
                members: vec![me.clone()],
            },
        )
        .expect("view");
        let state = m.poll_transmit().expect("STATE after the view");
        assert_eq!(m.poll_transmit(), None);
        m.handle_message(Time::from_secs(1), &me, &state)
            .expect("own STATE");
        assert_eq!(m.poll_action(), None, "immature: nothing yet");
        assert_eq!(m.poll_timeout(), Some(Time::from_secs(6)));
        m.handle_timeout(Time::from_secs(6));
        let mature = m.poll_transmit().expect("MATURE");
        m.handle_message(Time::from_secs(6), &me, &mature)
            .expect("MATURE");
        assert_eq!(
            m.poll_action(),
            Some(Action::Acquire {
                ip,
                network: Some("10.1.1.1/32".parse().expect("net")),
                interface: Some("eth1".into()),
            })
        );
        assert_eq!(
            m.poll_timeout(),
            Some(Time::from_secs(16)),
            "leader's balancing round"
        );
        m.request_move(ip, "solo")
            .expect("already there: nothing to do");
        assert_eq!(
            m.poll_transmit(),
            None,
            "no message for a move to the owner"
        );
        assert!(matches!(
            m.request_move(ip, "other"),
            Err(DuravipError::UnknownNode { .. })
        ));
        m.shutdown();
        assert_eq!(m.poll_action(), Some(Action::Release { ip }));
        assert!(m.held().is_empty());
    }

    /// `duravip_quorum`: an address held by a member that left the view (crashed, or alive but
    /// left out of a view change) is the new owner's in the table at once, plumbed only after
    /// the takeover delay; a suspended node releases what it holds.
    #[test]
    fn a_departed_members_address_is_plumbed_after_the_takeover_delay() {
        use crate::duravip::announce::{AddrConfig, Services};
        let (a, b) = (Member::new("a", 1), Member::new("b", 2));
        let ip: IpAddr = "10.1.1.1".parse().expect("ip");
        let addr = AddrConfig {
            ip,
            bindings: ["b".to_owned()].into(),
            services: Services::MULTIVIP,
            preference: None,
            follows: None,
        };
        let config = LocalConfig {
            addresses: vec![addr.clone()],
            placement: BTreeMap::new(),
        };
        let params = Params {
            quorum: Some(1),
            takeover_delay: Duration::from_secs(2),
            ..Params::default()
        };
        let mut m = DuravipMachine::new(a.clone(), config, params);
        let state = |view_id: u64, held: Vec<IpAddr>| {
            Repr {
                view_id,
                message: Message::State(Announcement {
                    mature: true,
                    withdrawn: false,
                    addresses: vec![addr.clone()],
                    held,
                }),
            }
            .to_bytes()
            .expect("fits")
        };
        let t = Time::from_secs;
        m.handle_view(
            t(1),
            View {
                id: 1,
                members: vec![a.clone(), b.clone()],
            },
        )
        .expect("view");
        while m.poll_transmit().is_some() {}
        m.handle_message(t(1), &a, &state(1, vec![])).expect("a");
        m.handle_message(t(1), &b, &state(1, vec![ip])).expect("b");
        assert_eq!(m.poll_action(), None, "b holds it and keeps it");
        m.handle_view(
            t(2),
            View {
                id: 2,
                members: vec![a.clone()],
            },
        )
        .expect("view");
        while m.poll_transmit().is_some() {}
        m.handle_message(t(2), &a, &state(2, vec![])).expect("a");
        assert!(m.held().contains(&ip), "a owns it in the table at once");
        assert_eq!(m.poll_action(), None, "but does not plumb it yet");
        assert_eq!(m.poll_timeout(), Some(t(4)));
        m.handle_timeout(t(4));
        assert!(matches!(m.poll_action(), Some(Action::Acquire { ip: got, .. }) if got == ip));
        m.suspend();
        assert!(m.fenced());
        assert_eq!(m.poll_action(), Some(Action::Release { ip }));
        assert!(m.held().is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Whatever members of the view send (well-formed but arbitrary messages, or garbage),
        /// the machine neither panics nor breaks its table's invariants, and what it holds is
        /// what its table gives it.
        #[test]
        fn arbitrary_messages_never_break_the_machine(
            msgs in proptest::collection::vec(
                (0usize..3, crate::duravip::wire::tests::message_strategy(), proptest::prelude::any::<bool>()),
                0..40,
            ),
            garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            use crate::duravip::announce::{AddrConfig, Services};
            let members: Vec<Member> = (0..3).map(|i| Member::new(format!("n{i}"), i)).collect();
            let addresses: Vec<AddrConfig> = (1..=4u8)
                .map(|i| AddrConfig {
                    ip: IpAddr::from([10, 0, 0, i]),
                    bindings: [format!("b{i}")].into(),
                    services: Services::MULTIVIP,
                    preference: None,
                    follows: None,
                })
                .collect();
            let config = LocalConfig { addresses, placement: BTreeMap::new() };
            let mut m = DuravipMachine::new(members[1].clone(), config, Params::default());
            m.handle_view(Time::from_nanos(0), View { id: 7, members: members.clone() }).expect("view");
            let _ = m.handle_message(Time::from_nanos(1), &members[0], &garbage);
            for (k, (from, message, this_view)) in msgs.into_iter().enumerate() {
                let view_id = if this_view { 7 } else { 6 };
                let Ok(bytes) = (Repr { view_id, message }).to_bytes() else { continue };
                let now = Time::from_nanos(2 + k as u64);
                m.handle_message(now, &members[from], &bytes).expect("well-formed");
                m.handle_timeout(now);
                while m.poll_action().is_some() {}
                while m.poll_transmit().is_some() {}
                if let Some(t) = m.table() {
                    for (ip, e) in &t.entries {
                        proptest::prop_assert!(e.broken.is_none() || e.owner.is_none());
                        if let Some(o) = e.owner {
                            proptest::prop_assert!(e.is_participant(o));
                        }
                        let mine = e.owner == Some(1) && e.holders.contains(&1);
                        proptest::prop_assert_eq!(m.held().contains(ip), mine, "{}", ip);
                    }
                }
            }
        }
    }
}
