//! [`Endpoint`]: one member's group-protocol state machine, with no sockets, clock or threads.
//!
//! The driver calls [`Endpoint::handle_packet`] for each datagram, [`Endpoint::handle_timeout`]
//! when [`Endpoint::poll_timeout`] says, sends what [`Endpoint::poll_transmit`] returns and hands
//! what [`Endpoint::poll_event`] returns to the layer above. Given the same inputs it produces the
//! same outputs: the simulator relies on it.

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use tracing::{debug, info, trace};

use crate::group::auth::{ClusterKey, MAC_LEN, ReplayWindow};
use crate::group::config::GroupConfig;
use crate::group::delivery::{Delivered, Received, ViewStreams};
use crate::group::detector::{Detector, PeerHealth, Verdict};
use crate::group::fragment::Fragmenter;
use crate::group::groups::{GroupTable, valid_group_name};
use crate::group::heartbeat::HeartbeatMonitor;
use crate::group::member::{MAX_NAME_LEN, MemberId};
use crate::group::membership::{Coordination, FlushReport, Participation, Proposal};
use crate::group::time::Time;
use crate::group::view::{View, ViewId};
use crate::group::wire::{self, Item, Message, NO_ASK, Order, Packet, ProbeTiming, Repr};

/// Most items one NACK asks for, and one retransmission answers.
const NACK_BATCH: u64 = 256;
/// How many other members a suspect's indirect probe asks.
const INDIRECT_PROBES: usize = 3;
/// How many other members each member probes and watches. In a view of up to `WATCHED + 1`
/// members that is every other member; in a larger one, its `WATCHED` nearest neighbours on the
/// ring of the view's members (half before it, half after), so the probe traffic each member sends
/// and receives stays constant as the cluster grows. A watcher that finds a neighbour failed (or
/// stuck) reports it to every member ([`Message::Suspect`]); a failure report is verified by each
/// receiver with its own direct and indirect probe before it counts.
pub const WATCHED: usize = 16;
/// Probe rounds that still go to every member of a large view after this member's
/// acknowledgements changed (acknowledgements ride on probes). A lost one is recovered after
/// that by asking the members whose acknowledgements lag (see `send_probes`).
const FULL_ACK_ROUNDS: u8 = 1;

/// Whether member `me` of an `n`-member view watches member `j` (see [`WATCHED`]).
fn watches_in(n: usize, me: usize, j: usize) -> bool {
    if j == me || j >= n {
        return false;
    }
    if n <= WATCHED + 1 {
        return true;
    }
    let d = (j + n - me) % n;
    d.min(n - d) <= WATCHED / 2
}
/// Most data messages queued for one destination before the next piece of a large message enters
/// the stream. This is the interleaving bound: anything this member queues after a piece (the
/// leader's ordering entries, retransmissions) waits behind at most this many datagrams per
/// destination, and protocol messages (probes, acknowledgements, NACKs, view changes) wait behind
/// none, since they leave before data.
pub const FRAGMENT_BURST: usize = 32;
/// Bytes received since the last acknowledgement that make this member acknowledge at once,
/// as a share of `max_unstable_bytes` (1/8): a large message keeps its sender's window open.
const ACK_VOLUME_SHARE: usize = 8;

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub destination: SocketAddr,
    /// The datagram, at most `mtu` bytes.
    pub payload: Vec<u8>,
}

/// What the layer above learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A view was installed; every member of it installs the same one.
    ViewChanged(View),
    /// A named group's members changed. Joins and leaves come in agreed order: every member of
    /// the view sees the same sequence of them.
    GroupChanged {
        /// The group.
        group: String,
        /// Its members now, oldest first.
        members: Vec<MemberId>,
        /// What changed it.
        change: GroupChange,
    },
    /// A message for a group this member belongs to.
    Message {
        /// The group it was sent to.
        group: String,
        /// Who sent it.
        sender: MemberId,
        /// The order it was sent with.
        order: Order,
        /// Its bytes.
        payload: Vec<u8>,
        /// The view it is delivered in (the same on every member delivering it).
        view: ViewId,
        /// Its place in the sender's stream in that view (a large message's last piece's).
        seq: u64,
    },
    /// The graceful leave finished: the driver may stop.
    LeftCluster,
}

/// What changed a named group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// This member joined.
    Joined(MemberId),
    /// This member left the group.
    Left(MemberId),
    /// A new view: members that left the view are gone, newcomers bring their groups.
    View,
}

/// Why a send was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The flow-control window (`max_unstable_bytes` / `max_queue`) is full: retry after progress.
    #[error("would block: {unstable} unstable bytes of {limit}")]
    WouldBlock {
        /// Bytes sent but not yet held by every member, plus those queued.
        unstable: usize,
        /// `max_unstable_bytes`.
        limit: usize,
    },
    /// The payload is larger than `max_message_size`.
    #[error("payload of {len} bytes exceeds max_message_size ({max})")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// `max_message_size`.
        max: usize,
    },
    /// Group names are 1 to 64 bytes.
    #[error("invalid group name {0:?}")]
    GroupName(String),
    /// The member left the cluster.
    #[error("the member has left the cluster")]
    Closed,
}

/// Why an endpoint could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Node names are 1 to 64 bytes.
    #[error("node name {0:?} must be 1 to 64 bytes")]
    Name(String),
    /// The MTU leaves no room for a message.
    #[error("mtu {0} is below the minimum of 576")]
    Mtu(usize),
    /// `probe_interval` and `suspect_timeout` must be positive, the timeout above the interval.
    #[error("suspect_timeout ({suspect:?}) must exceed probe_interval ({probe:?}) > 0")]
    Timers {
        /// `probe_interval`.
        probe: Duration,
        /// `suspect_timeout`.
        suspect: Duration,
    },
    /// A reload cannot add a key to an unkeyed cluster or remove it (the datagram format changes
    /// for every peer at once); a keyring can be rotated.
    #[error(
        "cluster_key can be rotated within a keyring by a reload, not added or removed (restart)"
    )]
    KeyPresence,
}

/// What the endpoint counted. Every dropped datagram is counted under exactly one reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams handed to the driver.
    pub datagrams_sent: u64,
    /// Bytes in them.
    pub bytes_sent: u64,
    /// Messages in them.
    pub messages_sent: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Bytes in them.
    pub bytes_received: u64,
    /// Datagrams accepted (passed every check below).
    pub datagrams_accepted: u64,
    /// Dropped: the MAC was missing, unexpected or wrong.
    pub dropped_bad_mac: u64,
    /// Dropped: did not decode.
    pub dropped_undecodable: u64,
    /// Dropped: another cluster id.
    pub dropped_foreign_cluster: u64,
    /// Dropped: a sender not among the configured peers (or this node's own name).
    pub dropped_unknown_sender: u64,
    /// Dropped: an incarnation older than one already seen from that node.
    pub dropped_stale_incarnation: u64,
    /// Dropped: a packet number already seen or older than the replay window.
    pub dropped_replay: u64,
    /// Data items dropped because the receiver's queue for that sender was full.
    pub dropped_queue_full: u64,
    /// Items retransmitted on NACK.
    pub retransmissions: u64,
    /// NACKs sent.
    pub nacks_sent: u64,
    /// Views installed.
    pub views_installed: u64,
    /// Messages delivered to the layer above.
    pub messages_delivered: u64,
    /// Messages this member sent in pieces (counted once per view they were started in).
    pub messages_fragmented: u64,
    /// Pieces of large messages this member put in its stream.
    pub fragments_sent: u64,
    /// Messages received in pieces and put back together.
    pub messages_reassembled: u64,
    /// Large messages refused because they announced more than `max_message_size` bytes.
    pub reassembly_refused: u64,
    /// Large messages dropped because a piece did not continue them exactly.
    pub fragments_inconsistent: u64,
}

#[derive(Debug, Clone, Default)]
struct Known {
    incarnation: u64,
    replay: ReplayWindow,
    /// The last `Discover` from this incarnation: its leader, when it came, when the first came.
    discover: Option<(MemberId, Time, Time)>,
    /// Whether that `Discover` said its sender hears this node.
    hears_me: bool,
    /// When a datagram of this incarnation was last accepted from the socket.
    last_accepted: Option<Time>,
}

#[derive(Debug, Clone)]
struct Leaving {
    started: Time,
    acked: BTreeSet<MemberId>,
}

/// One encoded protocol message waiting for a datagram; a broadcast shares one encoding among
/// its destinations.
#[derive(Debug, Clone)]
struct Outgoing {
    view: ViewId,
    bytes: std::sync::Arc<Vec<u8>>,
}

/// What is queued for one destination: protocol messages leave before data.
#[derive(Debug, Clone, Default)]
struct DestQueue {
    control: VecDeque<Outgoing>,
    data: VecDeque<Outgoing>,
    /// The last packet number sent to this destination: numbered per destination, so each
    /// receiver's replay window sees a dense sequence.
    number: u64,
}

impl DestQueue {
    fn front(&self) -> Option<&Outgoing> {
        self.control.front().or_else(|| self.data.front())
    }
    fn pop_front(&mut self) -> Option<Outgoing> {
        self.control.pop_front().or_else(|| self.data.pop_front())
    }
    fn is_empty(&self) -> bool {
        self.control.is_empty() && self.data.is_empty()
    }
    fn push(&mut self, msg: &Message, out: Outgoing) {
        if matches!(msg, Message::Data { .. }) {
            self.data.push_back(out);
        } else {
            self.control.push_back(out);
        }
    }
}

/// One member's group-protocol state machine. See the module documentation of
/// [`group`](crate::group).
#[derive(Debug)]
pub struct Endpoint {
    cfg: GroupConfig,
    me: MemberId,
    key: Option<ClusterKey>,
    peers: BTreeMap<String, SocketAddr>,
    known: BTreeMap<String, Known>,
    view: View,
    my_index: usize,
    view_installed_at: Time,
    streams: ViewStreams,
    participation: Option<Participation>,
    coordination: Option<Coordination>,
    last_install: Option<(ViewId, Message, Vec<MemberId>)>,
    max_epoch: u64,
    highest_accepted: ViewId,
    detector: Detector,
    heartbeat: HeartbeatMonitor,
    groups: GroupTable,
    my_groups: BTreeSet<String>,
    /// This member's items not in its stream yet, in send order: during a view change, and behind
    /// a large message whose pieces are still going out.
    outq: VecDeque<Item>,
    outq_bytes: usize,
    /// The large message whose pieces are entering the stream.
    sending: Option<Fragmenter>,
    /// Bytes of data received since this member last acknowledged.
    unacked_bytes: usize,
    left: BTreeSet<MemberId>,
    /// Members removed because their heartbeat stopped: never followed or merged again.
    banned: BTreeSet<MemberId>,
    leaving: Option<Leaving>,
    closed: bool,
    outbox: BTreeMap<String, DestQueue>,
    outbox_cursor: Option<String>,
    /// Messages in `outbox`, every destination together.
    outbox_len: usize,
    loopback: VecDeque<Message>,
    events: VecDeque<Event>,
    deadline: Time,
    next_probe: Time,
    last_merge: Time,
    acks_due: bool,
    /// A safe item arrived: acknowledge at once, since its delivery waits for every member's.
    safe_acks_due: bool,
    last_acks: Time,
    indirect_rotor: usize,
    /// The view member the next probe asks to echo it (round-trip times, one member per probe).
    rtt_rotor: usize,
    /// In a large view: since when a neighbour this member watches has stood failed without a
    /// view change removing it (after a flush timeout this member proposes the change itself).
    own_failed_since: Option<Time>,
    /// In a large view: members their watchers reported stuck, and when last (a report stands
    /// for two probe intervals; watchers repeat it every interval while it holds).
    reported_stuck: BTreeMap<MemberId, Time>,
    /// The acknowledgements the last probe carried, and how many more probe rounds go to every
    /// member of a large view because they changed.
    last_probe_acks: Vec<u64>,
    full_probe_rounds: u8,
    /// The last proposal whose dropped members this member verified (large views).
    last_verified_proposal: Option<ViewId>,
    counters: Counters,
}

impl Endpoint {
    /// A member `me` started at `now`, alone in its first view until it finds its peers.
    /// `key` is the loaded `cluster_key` (see [`ClusterKey::load`]); `None` sends no MAC and
    /// accepts none.
    pub fn new(
        cfg: GroupConfig,
        me: MemberId,
        key: Option<ClusterKey>,
        now: Time,
    ) -> Result<Endpoint, EndpointError> {
        if me.name.is_empty() || me.name.len() > MAX_NAME_LEN {
            return Err(EndpointError::Name(me.name));
        }
        if cfg.mtu < 576 {
            return Err(EndpointError::Mtu(cfg.mtu));
        }
        if cfg.probe_interval.is_zero() || cfg.suspect_timeout <= cfg.probe_interval {
            return Err(EndpointError::Timers {
                probe: cfg.probe_interval,
                suspect: cfg.suspect_timeout,
            });
        }
        let peers: BTreeMap<String, SocketAddr> = cfg
            .peers
            .iter()
            .filter(|(n, _)| *n != me.name)
            .cloned()
            .collect();
        let view = View::new(
            ViewId {
                epoch: 0,
                coordinator: me.tag(),
            },
            vec![me.clone()],
        );
        let mut ep = Endpoint {
            detector: Detector::new(cfg.probe_interval, cfg.suspect_timeout),
            heartbeat: HeartbeatMonitor::new(
                cfg.heartbeat_timeout(),
                cfg.heartbeat_start_delay,
                now,
            ),
            streams: ViewStreams::new(1, 0, cfg.max_queue, cfg.max_message_size),
            highest_accepted: view.id,
            view,
            my_index: 0,
            view_installed_at: now,
            participation: None,
            coordination: None,
            last_install: None,
            max_epoch: 0,
            groups: GroupTable::default(),
            my_groups: BTreeSet::new(),
            outq: VecDeque::new(),
            outq_bytes: 0,
            sending: None,
            unacked_bytes: 0,
            left: BTreeSet::new(),
            banned: BTreeSet::new(),
            leaving: None,
            closed: false,
            outbox: BTreeMap::new(),
            outbox_cursor: None,
            outbox_len: 0,
            loopback: VecDeque::new(),
            events: VecDeque::new(),
            deadline: now,
            next_probe: now,
            last_merge: now,
            acks_due: false,
            safe_acks_due: false,
            last_acks: now,
            indirect_rotor: 0,
            rtt_rotor: 0,
            own_failed_since: None,
            reported_stuck: BTreeMap::new(),
            last_probe_acks: Vec::new(),
            full_probe_rounds: 0,
            last_verified_proposal: None,
            counters: Counters::default(),
            known: BTreeMap::new(),
            peers,
            key,
            me,
            cfg,
        };
        ep.events.push_back(Event::ViewChanged(ep.view.clone()));
        Ok(ep)
    }

    /// This member's identity.
    pub fn me(&self) -> &MemberId {
        &self.me
    }

    /// The installed view.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Whether a view change is under way (sends are queued until it ends).
    pub fn is_changing_view(&self) -> bool {
        self.participation.is_some()
    }

    /// When this member answered the proposal it is flushing for, if a view change is under way
    /// (a newer proposal it follows starts the count again). A coordinator drops members that stay
    /// silent for its flush timeout, so past the suspicion timeout the others may have installed a
    /// view without this member.
    pub fn changing_view_since(&self) -> Option<Time> {
        self.participation.as_ref().map(|p| p.started)
    }

    /// The members of a named group, oldest first.
    pub fn group_members(&self, group: &str) -> &[MemberId] {
        self.groups.members(group)
    }

    /// What was counted so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Every member this one watches (the view's others): when last heard, suspicion, and the
    /// round-trip times of the probes it echoed (each probe asks one member in turn to echo it).
    pub fn peer_health(&self) -> Vec<PeerHealth> {
        self.detector.peer_health()
    }

    /// The items of `m`'s stream in the current view this member holds without a gap (none when
    /// `m` is not in the view): the simulator checks safe delivery against it.
    pub fn received_from(&self, m: &MemberId) -> Option<u64> {
        let i = self.view.index_of(m)?;
        self.streams.received().get(i).copied()
    }

    /// Local health (0 = healthy; each point stretches timeouts by one more base timeout).
    pub fn local_health(&self) -> u32 {
        self.detector.health()
    }

    /// The next event for the layer above.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`Endpoint::handle_timeout`] next; `None` once the member has left.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        (!self.closed).then(|| {
            self.safe_ack_at()
                .map_or(self.deadline, |t| t.min(self.deadline))
        })
    }

    /// How soon after the last acknowledgement a safe item's is sent: at once in a view of up to
    /// three members (a safe message then costs each receiver one acknowledgement to two
    /// members), else 0.1 ms times the square of the members beyond three (at most a tick), so
    /// that a larger view's acknowledgement traffic stays bounded (0.1 ms with four members,
    /// 2.5 ms with eight; beyond about 25, one per member and tick).
    fn safe_ack_gap(&self) -> Duration {
        let others = u32::try_from(self.view.members.len().saturating_sub(3)).unwrap_or(u32::MAX);
        (Duration::from_micros(100) * others.saturating_mul(others)).min(self.tick_interval())
    }

    /// When the acknowledgement a safe item asks for is due, if one is.
    fn safe_ack_at(&self) -> Option<Time> {
        (self.safe_acks_due && self.participation.is_none())
            .then(|| self.last_acks + self.safe_ack_gap())
    }

    fn tick_interval(&self) -> Duration {
        self.cfg.probe_interval / 4
    }

    /// A configuration reload's keyring: datagrams are sent under its first key from now on and
    /// accepted under any of its keys. Adding a key to an unkeyed endpoint or removing it is
    /// refused ([`EndpointError::KeyPresence`]) and nothing changes.
    pub fn rekey(&mut self, key: Option<ClusterKey>) -> Result<(), EndpointError> {
        if key.is_some() != self.key.is_some() {
            return Err(EndpointError::KeyPresence);
        }
        self.key = key;
        Ok(())
    }

    /// The suspicion timeout in force, stretched by local health: how long a peer may be silent
    /// before it is suspected.
    pub fn suspect_timeout(&self) -> Duration {
        self.detector.suspect_timeout()
    }

    fn flush_timeout(&self) -> Duration {
        self.cfg.suspect_timeout * self.detector.stretch()
    }

    /// A configuration reload's timing: `probe_interval`, `suspect_timeout` and
    /// `heartbeats_per_sec` take effect at once (the next probe, suspicion and stuck check);
    /// views, streams and what was heard so far stay. Refused (nothing changes) when the timers
    /// are inconsistent.
    pub fn retune(
        &mut self,
        probe_interval: Duration,
        suspect_timeout: Duration,
        heartbeats_per_sec: u32,
    ) -> Result<(), EndpointError> {
        if probe_interval.is_zero() || suspect_timeout <= probe_interval {
            return Err(EndpointError::Timers {
                probe: probe_interval,
                suspect: suspect_timeout,
            });
        }
        self.cfg.probe_interval = probe_interval;
        self.cfg.suspect_timeout = suspect_timeout;
        self.cfg.heartbeats_per_sec = heartbeats_per_sec.max(1);
        self.detector.retune(probe_interval, suspect_timeout);
        self.heartbeat.retune(self.cfg.heartbeat_timeout());
        Ok(())
    }

    /// The cluster layer is alive: call `heartbeats_per_sec` times a second. A member whose
    /// counter stops while its transport keeps answering is removed as stuck.
    pub fn heartbeat(&mut self, now: Time) {
        self.heartbeat.beat(now);
    }

    /// A datagram from `peer` reached the host at `at` (a kernel timestamp, e.g. from the XDP fast
    /// path), though it is processed at `now`: arrival, not processing, proves the peer alive (for
    /// at most one suspicion timeout past the last datagram the socket delivered, see
    /// [`Detector::arrived`]), and a long gap between arrival and processing is local slowness.
    pub fn note_arrival(&mut self, now: Time, peer: &str, at: Time) {
        if let Some(k) = self.known.get(peer) {
            let m = MemberId::new(peer, k.incarnation);
            self.detector.arrived(&m, at);
            self.detector.backlog(at, now);
        }
    }

    // ---------------------------------------------------------------- sending

    /// Sends `payload` to `group` with the given order. It is delivered to every member of the
    /// group (this one included if it belongs) in the view it is sent in. During a view change it is
    /// queued and sent in the new view.
    pub fn send(&mut self, group: &str, payload: &[u8], order: Order) -> Result<(), SendError> {
        self.check_send(group, payload.len())?;
        self.submit(Item::App {
            group: group.to_owned(),
            order,
            payload: payload.to_vec(),
        })
        .map_err(|(e, _)| e)
    }

    /// [`Endpoint::send`] taking the payload by value, without a copy; when it is refused the
    /// payload comes back with the error (to send again after [`SendError::WouldBlock`]).
    pub fn send_owned(
        &mut self,
        group: &str,
        payload: Vec<u8>,
        order: Order,
    ) -> Result<(), (SendError, Vec<u8>)> {
        if let Err(e) = self.check_send(group, payload.len()) {
            return Err((e, payload));
        }
        self.submit(Item::App {
            group: group.to_owned(),
            order,
            payload,
        })
        .map_err(|(e, item)| match item {
            Item::App { payload, .. } => (e, payload),
            _ => (e, Vec::new()),
        })
    }

    /// Whether `send` would take a message of `len` bytes to `group` now.
    fn check_send(&self, group: &str, len: usize) -> Result<(), SendError> {
        if !valid_group_name(group) {
            return Err(SendError::GroupName(group.to_owned()));
        }
        if len > self.cfg.max_message_size || u32::try_from(len).is_err() {
            return Err(SendError::TooLarge {
                len,
                max: self.cfg.max_message_size,
            });
        }
        self.admit(len + group.len() + 16)
    }

    /// Joins a named group; the join is delivered to every member in agreed order.
    pub fn join(&mut self, group: &str) -> Result<(), SendError> {
        if !valid_group_name(group) {
            return Err(SendError::GroupName(group.to_owned()));
        }
        if self.my_groups.contains(group) {
            return Ok(());
        }
        self.submit(Item::Join(group.to_owned()))
            .map_err(|(e, _)| e)?;
        self.my_groups.insert(group.to_owned());
        Ok(())
    }

    /// Leaves a named group; the leave is delivered to every member in agreed order.
    pub fn leave(&mut self, group: &str) -> Result<(), SendError> {
        if !self.my_groups.contains(group) {
            return Ok(());
        }
        self.submit(Item::Leave(group.to_owned()))
            .map_err(|(e, _)| e)?;
        self.my_groups.remove(group);
        Ok(())
    }

    /// The largest payload for `group` that one datagram carries from this member.
    ///
    /// Sized for the longest configured node name, so that any member can relay the item during
    /// a view change within the MTU.
    pub fn max_datagram_payload(&self, group: &str) -> usize {
        let longest = self
            .peers
            .keys()
            .map(String::len)
            .chain([self.me.name.len()])
            .max()
            .unwrap_or(MAX_NAME_LEN);
        let overhead = wire::app_overhead_for(longest, self.key.is_some(), group.len());
        self.cfg.mtu.saturating_sub(overhead)
    }

    fn fragment_capacity(&self, group: &str) -> usize {
        self.max_datagram_payload(group)
            .saturating_sub(wire::FRAGMENT_EXTRA)
            .max(1)
    }

    /// Bytes this member sent or queued that some member may still lack: what flow control counts.
    pub fn unstable_bytes(&self) -> usize {
        self.streams.unstable_bytes() + self.queued_bytes()
    }

    fn queued_bytes(&self) -> usize {
        self.outq_bytes
            + self
                .sending
                .as_ref()
                .map_or(0, Fragmenter::remaining_weight)
    }

    /// Admits an item under flow control. A message larger than the whole window is admitted
    /// when nothing else is queued ahead of it; its pieces then enter the stream as the window
    /// allows.
    fn submit(&mut self, item: Item) -> Result<(), (SendError, Item)> {
        let w = item.weight();
        if let Err(e) = self.admit(w) {
            return Err((e, item));
        }
        self.outq_bytes += w;
        self.outq.push_back(item);
        // The window: what is unstable or queued stays within max_unstable_bytes, except that a
        // message larger than the window is taken when nothing else waits.
        debug_assert!(
            self.unstable_bytes() <= self.cfg.max_unstable_bytes + w,
            "flow-control window: {} bytes in flight, window {}",
            self.unstable_bytes(),
            self.cfg.max_unstable_bytes
        );
        if self.pump() {
            self.deliver();
        }
        Ok(())
    }

    /// Whether messages wait to enter the stream (a large message's pieces, or queued items).
    fn has_queued(&self) -> bool {
        self.sending.is_some() || !self.outq.is_empty()
    }

    /// Whether flow control takes an item of `weight` now.
    fn admit(&self, weight: usize) -> Result<(), SendError> {
        if self.closed || self.leaving.is_some() {
            return Err(SendError::Closed);
        }
        let unstable = self.unstable_bytes();
        let limit = self.cfg.max_unstable_bytes;
        let alone = self.outq.is_empty() && self.sending.is_none();
        let over = unstable + weight > limit && !(alone && weight > limit);
        if over || self.outq.len() >= self.cfg.max_queue {
            return Err(SendError::WouldBlock { unstable, limit });
        }
        Ok(())
    }

    /// The most data messages queued for any one destination.
    fn data_backlog(&self) -> usize {
        self.outbox
            .values()
            .map(|q| q.data.len())
            .max()
            .unwrap_or(0)
    }

    /// Moves queued items into the stream: whole items at once, a large message piece by piece
    /// while the window has room and no destination has [`FRAGMENT_BURST`] data messages waiting.
    /// Nothing moves during a view change. Returns whether anything entered the stream.
    fn pump(&mut self) -> bool {
        if self.participation.is_some() || self.closed {
            return false;
        }
        let mut pushed = false;
        loop {
            if self.sending.is_some() {
                if self.streams.unstable_bytes() >= self.cfg.max_unstable_bytes
                    || self.data_backlog() >= FRAGMENT_BURST
                {
                    return pushed;
                }
                match self.sending.as_mut().and_then(Fragmenter::next_fragment) {
                    Some(f) => {
                        self.counters.fragments_sent += 1;
                        self.push_item(Item::Fragment(f));
                        pushed = true;
                        // Done as soon as the last piece is in the stream: a view change from
                        // here on must not send the message again.
                        if self.sending.as_ref().is_some_and(Fragmenter::finished) {
                            self.sending = None;
                        }
                        continue;
                    }
                    None => self.sending = None,
                }
            }
            let Some(item) = self.outq.pop_front() else {
                return pushed;
            };
            self.outq_bytes = self.outq_bytes.saturating_sub(item.weight());
            match item {
                Item::App {
                    group,
                    order,
                    payload,
                } if payload.len() > self.max_datagram_payload(&group) => {
                    let cap = self.fragment_capacity(&group);
                    self.counters.messages_fragmented += 1;
                    self.sending = Some(Fragmenter::new(group, order, payload, cap));
                }
                item => {
                    self.push_item(item);
                    pushed = true;
                }
            }
        }
    }

    fn push_item(&mut self, item: Item) {
        let seq = self.streams.push_own(item.clone());
        let origin = u16::try_from(self.my_index).unwrap_or(u16::MAX);
        self.broadcast(Message::Data { origin, seq, item });
    }

    /// Leaves the cluster gracefully: the others install a view without this member at once.
    /// [`Event::LeftCluster`] follows when they acknowledged (or after the suspicion timeout).
    pub fn leave_cluster(&mut self, now: Time) {
        if self.closed || self.leaving.is_some() {
            return;
        }
        info!(member = %self.me, view = ?self.view.id, "leaving the cluster");
        self.leaving = Some(Leaving {
            started: now,
            acked: BTreeSet::new(),
        });
        self.broadcast(Message::Leave);
        self.check_left(now);
    }

    fn check_left(&mut self, now: Time) {
        let Some(l) = &self.leaving else { return };
        let all = self
            .view
            .members
            .iter()
            .filter(|m| **m != self.me)
            .all(|m| l.acked.contains(m));
        if all || now.since(l.started) >= self.cfg.suspect_timeout {
            self.closed = true;
            self.events.push_back(Event::LeftCluster);
        }
    }

    // ---------------------------------------------------------------- output

    fn send_to(&mut self, to: &MemberId, msg: Message) {
        if *to == self.me {
            self.loopback.push_back(msg);
            return;
        }
        self.send_to_name(&to.name.clone(), msg);
    }

    fn send_to_name(&mut self, name: &str, msg: Message) {
        if !self.peers.contains_key(name) {
            return;
        }
        let out = Outgoing {
            view: self.view.id,
            bytes: std::sync::Arc::new(self.encode(&msg)),
        };
        Self::queue_for(&mut self.outbox, &mut self.outbox_len, name, &msg, out);
    }

    /// `msg` encoded, in a buffer sized for one datagram.
    fn encode(&self, msg: &Message) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.cfg.mtu);
        msg.emit(&mut bytes);
        bytes
    }

    /// Queues `out` (the encoding of `msg`) for the member `name`.
    fn queue_for(
        outbox: &mut BTreeMap<String, DestQueue>,
        outbox_len: &mut usize,
        name: &str,
        msg: &Message,
        out: Outgoing,
    ) {
        *outbox_len += 1;
        match outbox.get_mut(name) {
            Some(q) => q.push(msg, out),
            None => {
                let mut q = DestQueue::default();
                q.push(msg, out);
                outbox.insert(name.to_owned(), q);
            }
        }
    }

    fn broadcast(&mut self, msg: Message) {
        self.multicast(msg, |_| true);
    }

    /// Sends `msg` to the view members whose index `to` accepts.
    fn multicast(&mut self, msg: Message, to: impl Fn(usize) -> bool) {
        let bytes = std::sync::Arc::new(self.encode(&msg));
        let (view, me, peers) = (&self.view, &self.me, &self.peers);
        let (outbox, outbox_len) = (&mut self.outbox, &mut self.outbox_len);
        for (j, m) in view.members.iter().enumerate() {
            if m == me || !peers.contains_key(&m.name) || !to(j) {
                continue;
            }
            let out = Outgoing {
                view: view.id,
                bytes: bytes.clone(),
            };
            Self::queue_for(outbox, outbox_len, &m.name, &msg, out);
        }
    }

    /// The next datagram to send: as many queued messages for one destination as fit in the MTU,
    /// protocol messages first. Pieces of a large message enter the stream here as the queues
    /// drain.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.has_queued() && self.pump() {
            self.deliver();
        }
        if self.outbox_len == 0 {
            return None;
        }
        // Destinations take turns: the first one after the last served that has something queued.
        // Queues stay in the map when empty (one per configured peer at most), so the steady
        // state allocates nothing here but the name.
        let name = {
            use core::ops::Bound::{Excluded, Included, Unbounded};
            let after = self.outbox_cursor.as_deref().unwrap_or("");
            fn waiting<'a>((k, q): (&'a String, &'a DestQueue)) -> Option<&'a String> {
                (!q.is_empty()).then_some(k)
            }
            self.outbox
                .range::<str, _>((Excluded(after), Unbounded))
                .find_map(waiting)
                .or_else(|| {
                    self.outbox
                        .range::<str, _>((Unbounded, Included(after)))
                        .find_map(waiting)
                })?
                .clone()
        };
        let addr = *self.peers.get(&name)?;
        let queue = self.outbox.get_mut(&name)?;
        let first_view = queue.front()?.view;
        queue.number += 1;
        let number = queue.number;
        let repr = Repr {
            cluster_id: self.cfg.cluster_id,
            sender: self.me.clone(),
            view: first_view,
            number,
            mac: self.key.as_ref().is_some_and(|k| !k.seals()),
            seal: self.key.as_ref().is_some_and(ClusterKey::seals),
        };
        let mut buf = Vec::with_capacity(self.cfg.mtu);
        repr.emit(&mut buf);
        let limit = self.cfg.mtu - if self.key.is_some() { MAC_LEN } else { 0 };
        let mut count = 0u64;
        while let Some(front) = queue.front() {
            if front.view != first_view || (count > 0 && buf.len() + front.bytes.len() > limit) {
                break;
            }
            let m = queue.pop_front().expect("front was just seen");
            self.outbox_len -= 1;
            buf.extend_from_slice(&m.bytes);
            count += 1;
        }
        match &self.key {
            Some(k) if k.seals() => {
                let header = repr.header_len();
                k.seal_to(
                    &mut buf,
                    header,
                    &self.me.name,
                    self.me.incarnation,
                    number,
                    &name,
                );
            }
            Some(k) => {
                let mac = k.mac_to(&buf, &name);
                buf.extend_from_slice(&mac);
            }
            None => {}
        }
        self.counters.datagrams_sent += 1;
        self.counters.messages_sent += count;
        self.counters.bytes_sent += buf.len() as u64;
        self.outbox_cursor = Some(name);
        Some(Transmit {
            destination: addr,
            payload: buf,
        })
    }

    // ---------------------------------------------------------------- input

    /// Handles one datagram received at `now` from `from`. Anything that fails to authenticate or
    /// decode is dropped and counted; nothing in it is acted upon.
    pub fn handle_packet(&mut self, now: Time, from: SocketAddr, bytes: &[u8]) {
        self.counters.datagrams_received += 1;
        self.counters.bytes_received += bytes.len() as u64;
        if self.closed {
            return;
        }
        let packet = match Packet::new_checked(bytes) {
            Ok(p) => p,
            Err(e) => {
                trace!(%from, error = %e, "undecodable datagram");
                self.counters.dropped_undecodable += 1;
                return;
            }
        };
        if packet.cluster_id() != self.cfg.cluster_id {
            self.counters.dropped_foreign_cluster += 1;
            return;
        }
        // Sealed: the messages in clear (header kept, flags cleared), once the tag checks.
        let opened: Vec<u8>;
        let packet = match (&self.key, packet.mac()) {
            (Some(k), None) if k.seals() && packet.is_sealed() => {
                let Some(mut plain) = k.open_to(
                    bytes,
                    packet.header_len(),
                    packet.sender_name(),
                    packet.incarnation(),
                    packet.number(),
                    &self.me.name,
                ) else {
                    trace!(%from, "bad seal");
                    self.counters.dropped_bad_mac += 1;
                    return;
                };
                plain[1] = 0;
                opened = plain;
                Packet::new_unchecked(&opened[..])
            }
            (Some(k), Some(tag))
                if !k.seals()
                    && !packet.is_sealed()
                    && k.verify_to(packet.authenticated(), &self.me.name, tag) =>
            {
                packet
            }
            (None, None) if !packet.is_sealed() => packet,
            _ => {
                trace!(%from, "bad MAC");
                self.counters.dropped_bad_mac += 1;
                return;
            }
        };
        let repr = match Repr::parse(&packet) {
            Ok(r) => r,
            Err(_) => {
                self.counters.dropped_undecodable += 1;
                return;
            }
        };
        let Repr {
            sender,
            view: hview,
            number,
            ..
        } = repr;
        if sender.name == self.me.name || !self.peers.contains_key(&sender.name) {
            self.counters.dropped_unknown_sender += 1;
            return;
        }
        // A lookup first: the entry API would allocate the name for every datagram.
        let known = match self.known.get_mut(&sender.name) {
            Some(k) => k,
            None => self.known.entry(sender.name.clone()).or_default(),
        };
        if sender.incarnation < known.incarnation {
            self.counters.dropped_stale_incarnation += 1;
            return;
        }
        if sender.incarnation > known.incarnation {
            let old = MemberId::new(sender.name.clone(), known.incarnation);
            *known = Known {
                incarnation: sender.incarnation,
                ..Known::default()
            };
            if self.view.contains(&old) {
                debug!(member = %self.me, %old, new = %sender, "peer restarted");
                self.detector.fail(&old);
            }
        }
        if self.key.is_some()
            && let Some(known) = self.known.get_mut(&sender.name)
            && !known.replay.accept(number)
        {
            self.counters.dropped_replay += 1;
            return;
        }
        let messages: Result<Vec<Message>, _> = packet.messages().collect();
        let Ok(messages) = messages else {
            self.counters.dropped_undecodable += 1;
            return;
        };
        self.counters.datagrams_accepted += 1;
        self.detector.heard(&sender, now);
        if let Some(k) = self.known.get_mut(&sender.name) {
            k.last_accepted = Some(now);
        }
        for m in messages {
            self.handle_message(now, &sender, hview, m);
        }
        self.progress(now);
    }

    fn member_index(&self, m: &MemberId) -> Option<usize> {
        self.view.index_of(m)
    }

    fn handle_message(&mut self, now: Time, from: &MemberId, hview: ViewId, msg: Message) {
        let same_view = hview == self.view.id && self.view.contains(from);
        match msg {
            Message::Data { origin, seq, item } => {
                if !same_view {
                    return;
                }
                let w = item.weight();
                let safe = item.is_safe();
                match self.streams.receive(usize::from(origin), seq, item) {
                    Received::New => {
                        self.acks_due = true;
                        self.safe_acks_due |= safe;
                        self.unacked_bytes += w;
                    }
                    Received::Full => self.counters.dropped_queue_full += 1,
                    Received::Duplicate | Received::UnknownOrigin => {}
                }
            }
            Message::Probe {
                reply,
                heartbeat,
                acks,
                timing,
            } => {
                self.heartbeat.observe(from, heartbeat, now);
                if same_view && let Some(j) = self.member_index(from) {
                    self.streams.on_acks(j, &acks);
                }
                // An echo of one of this member's own stamps: a round trip on this clock.
                if timing.echo != 0 && timing.echo <= now.as_nanos() {
                    self.detector
                        .rtt_sample(from, now.since(Time::from_nanos(timing.echo)));
                }
                let asked = same_view && usize::from(timing.ask) == self.my_index;
                if (reply || asked) && self.view.contains(from) {
                    let probe = self.probe(now, false, NO_ASK, timing.stamp);
                    self.send_to(&from.clone(), probe);
                }
            }
            Message::Nack {
                origin,
                from: lo,
                to,
            } => {
                if !same_view {
                    return;
                }
                let hi = to.min(lo.saturating_add(NACK_BATCH - 1));
                for seq in lo..=hi {
                    if let Some(item) = self.streams.get(usize::from(origin), seq).cloned() {
                        self.counters.retransmissions += 1;
                        self.send_to(from, Message::Data { origin, seq, item });
                    }
                }
            }
            Message::PingReq { target } => {
                let recent = self
                    .detector
                    .last_heard(&target)
                    .is_some_and(|t| now.since(t) < self.cfg.probe_interval * 2);
                if recent {
                    self.send_to(from, Message::Alive { target });
                }
            }
            Message::Alive { target } => self.detector.heard(&target, now),
            Message::Suspect { target, stuck } => {
                if !same_view || !self.view.contains(&target) {
                    return;
                }
                if target == self.me {
                    // Show the reporter this member lives, should it hear it after all.
                    let probe = self.probe(now, false, NO_ASK, 0);
                    self.send_to(from, probe);
                } else if self.detector.is_monitored(&target) {
                    // A watcher of its own: its evidence decides.
                } else if stuck {
                    // Only a watcher sees the counter; a report from anyone else is ignored.
                    let n = self.view.members.len();
                    let by_watcher = self
                        .view
                        .index_of(from)
                        .zip(self.view.index_of(&target))
                        .is_some_and(|(f, t)| watches_in(n, f, t));
                    if by_watcher {
                        self.reported_stuck.insert(target, now);
                    }
                } else if self.detector.suspect(&target, now, true) {
                    self.on_suspect(now, &target);
                }
            }
            Message::Discover { leader, hears_you } => {
                if let Some(k) = self.known.get_mut(&from.name) {
                    let first = match &k.discover {
                        Some((_, at, first)) if now.since(*at) < self.cfg.suspect_timeout => *first,
                        _ => now,
                    };
                    k.discover = Some((leader, now, first));
                    k.hears_me = hears_you;
                }
            }
            Message::Propose { proposal, members } => self.on_propose(now, from, proposal, members),
            Message::Flush {
                proposal,
                old_view,
                received,
                groups,
            } => self.on_flush(
                now,
                from,
                proposal,
                FlushReport {
                    old_view,
                    received,
                    groups,
                },
            ),
            Message::Cut { proposal, cuts } => {
                let Some(p) = self.participation.as_mut() else {
                    return;
                };
                if p.proposal.id != proposal || p.proposal.coordinator != *from || p.cut.is_some() {
                    return;
                }
                let Some(cut) = cuts.into_iter().find(|c| c.view == self.view.id) else {
                    return;
                };
                if cut.upto.len() != self.streams.len() {
                    return;
                }
                for (i, u) in cut.upto.iter().enumerate() {
                    self.streams.expect(i, *u);
                }
                p.cut = Some(cut);
                self.fetch_and_ready();
            }
            Message::Ready { proposal } => self.on_ready(from, proposal),
            Message::Install { proposal, groups } => self.on_install(now, from, proposal, groups),
            Message::Leave => {
                if self.view.contains(from) {
                    self.left.insert(from.clone());
                    self.detector.fail(from);
                }
                self.send_to(from, Message::LeaveAck);
            }
            Message::LeaveAck => {
                if let Some(l) = self.leaving.as_mut() {
                    l.acked.insert(from.clone());
                }
                self.check_left(now);
            }
        }
    }

    /// A probe sent at `now`, asking view member `ask` to echo it at once ([`NO_ASK`]: none),
    /// echoing `echo` (a stamp of the receiver's; 0: none).
    fn probe(&self, now: Time, reply: bool, ask: u16, echo: u64) -> Message {
        Message::Probe {
            reply,
            heartbeat: self.heartbeat.count(),
            acks: self.streams.received(),
            timing: ProbeTiming {
                stamp: now.as_nanos().max(1),
                ask,
                echo,
            },
        }
    }

    /// The view member the next periodic probe asks to echo it: each other member in turn, so
    /// every member's round-trip time is sampled once per `n - 1` probe intervals at the cost of
    /// one answer per interval, whatever the view's size.
    fn next_rtt_ask(&mut self) -> u16 {
        let n = self.view.members.len();
        if n < 2 {
            return NO_ASK;
        }
        for _ in 0..n {
            self.rtt_rotor = (self.rtt_rotor + 1) % n;
            if self.watches(self.rtt_rotor) {
                return u16::try_from(self.rtt_rotor).unwrap_or(NO_ASK);
            }
        }
        NO_ASK
    }

    /// Whether this member probes and watches view member `j` (see [`WATCHED`]).
    fn watches(&self, j: usize) -> bool {
        watches_in(self.view.members.len(), self.my_index, j)
    }

    /// Whether the view is larger than the probing neighbourhood.
    fn ring(&self) -> bool {
        self.view.members.len() > WATCHED + 1
    }

    // ---------------------------------------------------------------- view change

    fn on_propose(&mut self, now: Time, from: &MemberId, id: ViewId, members: Vec<MemberId>) {
        if self.closed || self.leaving.is_some() {
            return;
        }
        let proposal = Proposal {
            id,
            members: View::new(id, members).members,
            coordinator: from.clone(),
        };
        if proposal.members.binary_search(&self.me).is_err() {
            return;
        }
        self.verify_dropped(now, &proposal);
        if !self.acceptable(now, &proposal) {
            trace!(member = %self.me, view = ?self.view.id, proposal = ?id, coordinator = %from, "not following this coordinator");
            return;
        }
        self.max_epoch = self.max_epoch.max(id.epoch);
        if id <= self.highest_accepted {
            if let Some(p) = &self.participation
                && p.proposal.id == id
            {
                let flush = self.flush_report(id);
                self.send_to(from, flush);
            }
            return;
        }
        debug!(member = %self.me, view = ?self.view.id, proposal = ?id, coordinator = %from, "flushing");
        self.highest_accepted = id;
        if self
            .coordination
            .as_ref()
            .is_some_and(|c| c.proposal.id != id)
        {
            self.coordination = None;
        }
        self.participation = Some(Participation {
            proposal,
            started: now,
            cut: None,
            ready_sent: false,
        });
        let flush = self.flush_report(id);
        self.send_to(from, flush);
    }

    /// Whether `p` comes from a coordinator this member follows: a member of its view that drops
    /// no older member this member still considers healthy (the oldest healthy member coordinates),
    /// or, for a merge, a node older than this member's leader (the oldest leader merges). A member
    /// removed as stuck is never followed.
    fn acceptable(&self, now: Time, p: &Proposal) -> bool {
        let c = &p.coordinator;
        if self.banned.contains(c) {
            return false;
        }
        if *c == self.me {
            return true;
        }
        if self.view.contains(c) {
            let strict = self.strict_about(now, c);
            return self
                .view
                .members
                .iter()
                .filter(|m| (strict || *m < c) && p.members.binary_search(m).is_err())
                .all(|m| self.excluded(m, now));
        }
        let leader = self.view.leader();
        c < leader || (*leader != self.me && self.excluded(leader, now))
    }

    /// In a large view this member watches only its neighbours, so a proposal may drop members
    /// it has no evidence about. It checks them itself (a direct and an indirect probe) once per
    /// proposal: those [`Self::acceptable`] judges (the older ones, or every one for a proposer
    /// this member would not follow itself) decide whether it follows; the proposer resends the
    /// proposal until it does or a flush timeout passes.
    fn verify_dropped(&mut self, now: Time, p: &Proposal) {
        if !self.ring()
            || !self.view.contains(&p.coordinator)
            || self.last_verified_proposal == Some(p.id)
        {
            return;
        }
        self.last_verified_proposal = Some(p.id);
        let strict = self.strict_about(now, &p.coordinator);
        let dropped: Vec<MemberId> = self
            .view
            .members
            .iter()
            .filter(|m| (strict || **m < p.coordinator) && p.members.binary_search(m).is_err())
            .filter(|m| !self.excluded(m, now))
            .cloned()
            .collect();
        for m in dropped {
            // Checked even if shown alive lately: this proposal is new evidence.
            if self.detector.suspect(&m, now, false) {
                self.on_suspect(now, &m);
            }
        }
    }

    /// Whether a proposal of `c`, a member of this view, must show every member it drops
    /// excluded here, younger ones too: in a large view any member may propose (see
    /// `maybe_change`), and only the coordinator this member would follow itself is trusted
    /// about the younger members it drops.
    fn strict_about(&self, now: Time, c: &MemberId) -> bool {
        self.ring() && self.view.members.iter().find(|m| !self.excluded(m, now)) != Some(c)
    }

    fn flush_report(&self, proposal: ViewId) -> Message {
        Message::Flush {
            proposal,
            old_view: self.view.id,
            received: self.streams.received(),
            groups: self.my_groups.iter().cloned().collect(),
        }
    }

    fn on_flush(&mut self, _now: Time, from: &MemberId, proposal: ViewId, report: FlushReport) {
        let Some(c) = self.coordination.as_mut() else {
            return;
        };
        if c.proposal.id != proposal || c.installed {
            return;
        }
        if c.on_flush(from, report) {
            let cuts = c.cuts();
            c.cuts = Some(cuts.clone());
            let members = c.proposal.members.clone();
            for m in &members {
                self.send_to(
                    m,
                    Message::Cut {
                        proposal,
                        cuts: cuts.clone(),
                    },
                );
            }
        }
    }

    fn on_ready(&mut self, from: &MemberId, proposal: ViewId) {
        if let Some((id, install, members)) = &self.last_install
            && *id == proposal
            && members.contains(from)
        {
            let m = install.clone();
            self.send_to(from, m);
            return;
        }
        let Some(c) = self.coordination.as_mut() else {
            return;
        };
        if c.proposal.id != proposal || c.installed {
            return;
        }
        if c.on_ready(from) {
            c.installed = true;
            let install = Message::Install {
                proposal,
                groups: c.groups(),
            };
            let members = c.proposal.members.clone();
            self.last_install = Some((proposal, install.clone(), members.clone()));
            for m in &members {
                self.send_to(m, install.clone());
            }
        }
    }

    /// NACKs what this member lacks up to its old view's cut, from the holders; says ready once
    /// it holds everything.
    fn fetch_and_ready(&mut self) {
        let Some(p) = &self.participation else { return };
        let Some(cut) = &p.cut else { return };
        let coordinator = p.proposal.coordinator.clone();
        let proposal = p.proposal.id;
        if self.streams.holds(&cut.upto) {
            if let Some(p) = self.participation.as_mut() {
                p.ready_sent = true;
            }
            self.send_to(&coordinator, Message::Ready { proposal });
            return;
        }
        let received = self.streams.received();
        let mut nacks = Vec::new();
        for (i, (u, h)) in cut.upto.iter().zip(&cut.holders).enumerate() {
            if received[i] < *u
                && let Some(holder) = p.proposal.members.get(usize::from(*h))
            {
                let from = received[i] + 1;
                let to = (*u).min(from + NACK_BATCH - 1);
                nacks.push((holder.clone(), i, from, to));
            }
        }
        for (holder, i, from, to) in nacks {
            self.counters.nacks_sent += 1;
            let origin = u16::try_from(i).unwrap_or(u16::MAX);
            self.send_to(&holder, Message::Nack { origin, from, to });
        }
    }

    fn on_install(
        &mut self,
        now: Time,
        from: &MemberId,
        proposal: ViewId,
        groups: Vec<Vec<String>>,
    ) {
        let Some(p) = &self.participation else { return };
        if p.proposal.id != proposal || p.proposal.coordinator != *from {
            return;
        }
        let Some(cut) = &p.cut else { return };
        if !self.streams.holds(&cut.upto) || groups.len() != p.proposal.members.len() {
            return;
        }
        let p = self.participation.take().expect("checked just above");
        let cut = p.cut.expect("checked just above");
        // Deliver exactly up to the cut, in the old view.
        let delivered = self.streams.deliver_to_cut(&cut.upto);
        self.hand_up(delivered);
        self.install(now, p.proposal, &groups);
    }

    fn install(&mut self, now: Time, proposal: Proposal, groups: &[Vec<String>]) {
        let view = View {
            id: proposal.id,
            members: proposal.members,
        };
        let my_index = view
            .index_of(&self.me)
            .expect("a member only accepts proposals that include it");
        info!(member = %self.me, view = ?view.id, members = view.members.len(), "view installed");
        let table = GroupTable::from_members(&view.members, groups);
        let mut changed: BTreeSet<String> = BTreeSet::new();
        for g in table.names().chain(self.groups.names()) {
            if table.members(g) != self.groups.members(g) {
                changed.insert(g.to_owned());
            }
        }
        self.groups = table;
        self.collect_fragment_stats();
        self.streams = ViewStreams::new(
            view.members.len(),
            my_index,
            self.cfg.max_queue,
            self.cfg.max_message_size,
        );
        self.unacked_bytes = 0;
        self.my_index = my_index;
        self.view_installed_at = now;
        self.highest_accepted = self.highest_accepted.max(view.id);
        self.max_epoch = self.max_epoch.max(view.id.epoch);
        for m in &view.members {
            if *m != self.me {
                self.detector.watch(m, now);
                self.heartbeat.watch(m, now);
            }
        }
        let ring = view.members.len() > WATCHED + 1;
        for (j, m) in view.members.iter().enumerate() {
            if *m != self.me {
                self.detector
                    .monitor(m, watches_in(view.members.len(), my_index, j), now);
                // Every member of the new view answered its flush. In a small view this member
                // hears each of them every probe interval anyway; in a large one it may never
                // hear a non-neighbour again, so an old suspicion would stand for good.
                if ring {
                    self.detector.renew(m, now);
                }
            }
        }
        self.own_failed_since = None;
        self.reported_stuck.clear();
        self.full_probe_rounds = FULL_ACK_ROUNDS;
        let vm = view.members.clone();
        self.detector.retain(|m| vm.binary_search(m).is_ok());
        self.heartbeat.retain(|m| vm.binary_search(m).is_ok());
        self.left.retain(|m| vm.binary_search(m).is_ok());
        for m in &vm {
            if let Some(k) = self.known.get_mut(&m.name) {
                k.discover = None;
            }
        }
        // A banned member matters only while its incarnation is current (bounds the set).
        let known = &self.known;
        self.banned.retain(|m| {
            known
                .get(&m.name)
                .is_some_and(|k| k.incarnation == m.incarnation)
        });
        debug_assert!(
            view.members.windows(2).all(|w| w[0] < w[1]),
            "view members sorted (oldest first) and unique: {:?}",
            view.members
        );
        debug_assert!(view.id > self.view.id, "view ids grow");
        self.view = view;
        self.counters.views_installed += 1;
        self.events.push_back(Event::ViewChanged(self.view.clone()));
        for g in changed {
            self.events.push_back(Event::GroupChanged {
                members: self.groups.members(&g).to_vec(),
                group: g,
                change: GroupChange::View,
            });
        }
        if self
            .coordination
            .as_ref()
            .is_some_and(|c| c.proposal.id <= self.view.id)
        {
            self.coordination = None;
        }
        // What was queued during the change is sent in the new view.
        // A large message cut short by the change is sent again, whole, in the new view.
        debug_assert!(
            self.sending.as_ref().is_none_or(|f| !f.finished()),
            "a message whose last piece is in the stream is no longer being sent"
        );
        if let Some(f) = self.sending.as_mut()
            && f.started()
        {
            f.restart();
            self.counters.messages_fragmented += 1;
        }
        self.pump();
        // Probe at once so that acknowledgements and heartbeats start flowing in the new view.
        self.next_probe = now;
    }

    fn start_proposal(&mut self, now: Time, mut members: Vec<MemberId>) {
        members.push(self.me.clone());
        members.sort();
        members.dedup();
        self.max_epoch = self.max_epoch.max(self.highest_accepted.epoch) + 1;
        let id = ViewId {
            epoch: self.max_epoch,
            coordinator: self.me.tag(),
        };
        debug!(member = %self.me, view = ?self.view.id, proposal = ?id, n = members.len(), "proposing");
        let proposal = Proposal {
            id,
            members: members.clone(),
            coordinator: self.me.clone(),
        };
        self.coordination = Some(Coordination::new(proposal, now));
        for m in &members {
            self.send_to(
                m,
                Message::Propose {
                    proposal: id,
                    members: members.clone(),
                },
            );
        }
    }

    fn excluded(&self, m: &MemberId, now: Time) -> bool {
        if *m == self.me {
            return false;
        }
        let k = self.known.get(&m.name);
        let restarted = k.is_some_and(|k| k.incarnation > m.incarnation);
        let gone = k.is_some_and(|k| {
            k.incarnation == m.incarnation
                && k.discover.as_ref().is_some_and(|(_, at, _)| {
                    *at > self.view_installed_at + self.cfg.probe_interval
                })
        });
        restarted
            || gone
            || self.left.contains(m)
            || self.detector.is_failed(m)
            || self.is_stuck(m, now)
    }

    /// Whether `m`'s transport answers (heard from lately) while its heartbeat counter stands
    /// still. A silent member is the failure detector's business, not a stuck one.
    fn is_stuck(&self, m: &MemberId, now: Time) -> bool {
        // A report stands for two probe intervals, and throughout a view change (its watchers
        // stop repeating it while they flush).
        let stands = self.cfg.probe_interval * 2 * self.detector.stretch();
        let changing = self.participation.is_some() || self.coordination.is_some();
        self.reported_stuck
            .get(m)
            .is_some_and(|t| changing || now.since(*t) < stands)
            || self.seen_stuck(m, now)
    }

    /// [`Self::is_stuck`] on this member's own observation.
    fn seen_stuck(&self, m: &MemberId, now: Time) -> bool {
        let stretch = self.detector.stretch();
        self.heartbeat
            .stuck(m, now, stretch, self.cfg.probe_interval * 2 * stretch)
    }

    /// Nodes outside the view that this member should merge: heard from lately, announcing a leader
    /// no older than this member (the oldest leader merges the others).
    fn merge_candidates(&self, now: Time) -> Vec<MemberId> {
        let mut out = Vec::new();
        for (name, k) in &self.known {
            let Some((leader, at, first)) = &k.discover else {
                continue;
            };
            let m = MemberId::new(name.clone(), k.incarnation);
            let in_view = self.view.contains(&m);
            if in_view && !self.excluded(&m, now) {
                continue;
            }
            if now.since(*at) >= self.cfg.suspect_timeout
                || !k.hears_me
                || now.since(*first) < self.cfg.probe_interval
                || *leader < self.me
                || self.left.contains(&m)
                || self.banned.contains(&m)
            {
                continue;
            }
            out.push(m);
        }
        out
    }

    /// The coordinator's decisions: remove failed members, merge others, take over a stalled change.
    fn maybe_change(&mut self, now: Time) {
        // A node whose own process is stuck coordinates nothing: the others remove it.
        if self.closed || self.leaving.is_some() || self.heartbeat.self_stuck(now) {
            return;
        }
        if let Some(c) = &self.coordination
            && !c.installed
        {
            let members = c.proposal.members.clone();
            if members.iter().any(|m| self.excluded(m, now)) {
                let keep: Vec<MemberId> = members
                    .into_iter()
                    .filter(|m| !self.excluded(m, now))
                    .collect();
                self.coordination = None;
                self.start_proposal(now, keep);
            }
            return;
        }
        if let Some(p) = &self.participation {
            let coordinator_gone = self.excluded(&p.proposal.coordinator, now);
            let stalled = now.since(p.started) >= self.flush_timeout() * 2;
            if !(coordinator_gone || stalled) {
                return;
            }
            // Only members of this member's own view can be judged alive here; the others are
            // merged again later if they are.
            let alive: Vec<MemberId> = p
                .proposal
                .members
                .iter()
                .filter(|m| {
                    self.view.contains(m) && !self.excluded(m, now) && **m != p.proposal.coordinator
                })
                .cloned()
                .collect();
            let abandoned = now.since(p.started) >= self.flush_timeout() * 4;
            if alive.first() == Some(&self.me) || alive.is_empty() || abandoned {
                debug!(member = %self.me, "taking over a stalled view change");
                self.start_proposal(now, alive);
            }
            return;
        }
        let coordinator = self
            .view
            .members
            .iter()
            .find(|m| !self.excluded(m, now))
            .cloned();
        if coordinator.as_ref() != Some(&self.me) {
            // In a small view only the coordinator proposes removals, on its own evidence.
            if !self.ring() {
                return;
            }
            // In a large view the coordinator may not have heard this member's reports (this
            // member may hear no one): after a flush timeout it proposes the change itself, and
            // the flush drops whoever does not answer.
            let standing = self
                .view
                .members
                .iter()
                .enumerate()
                .any(|(j, m)| self.watches(j) && self.detector.is_failed(m));
            // Armed by this member's verdict, or here for a neighbour failed before the last
            // view change.
            let since = *self.own_failed_since.get_or_insert(now);
            if !standing {
                self.own_failed_since = None;
            } else if now.since(since) >= self.flush_timeout() {
                debug!(member = %self.me, view = ?self.view.id, "no view change followed this member's reports; proposing one");
                self.own_failed_since = Some(now);
                let keep = self.healthy_members(now);
                self.start_proposal(now, keep);
            }
            return;
        }
        let keep = self.healthy_members(now);
        let removals = keep.len() != self.view.members.len();
        let stuck: Vec<MemberId> = self
            .view
            .members
            .iter()
            .filter(|m| **m != self.me && self.is_stuck(m, now))
            .cloned()
            .collect();
        if !stuck.is_empty() {
            info!(member = %self.me, view = ?self.view.id, stuck = ?stuck, "removing stuck members");
        }
        self.banned.extend(stuck);
        let mut candidates = Vec::new();
        if !self.heartbeat.self_stuck(now) && now.since(self.last_merge) >= self.cfg.probe_interval
        {
            candidates = self.merge_candidates(now);
        }
        if !removals && candidates.is_empty() {
            return;
        }
        if !candidates.is_empty() {
            self.last_merge = now;
        }
        let mut members = keep;
        members.extend(candidates);
        self.start_proposal(now, members);
    }

    /// The view's members this member does not exclude, in view order.
    fn healthy_members(&self, now: Time) -> Vec<MemberId> {
        self.view
            .members
            .iter()
            .filter(|m| !self.excluded(m, now))
            .cloned()
            .collect()
    }

    fn coordinator_tick(&mut self, now: Time) {
        let Some(c) = &self.coordination else { return };
        if c.installed {
            return;
        }
        let silent = c.silent();
        let id = c.proposal.id;
        if now.since(c.started) >= self.flush_timeout() {
            let members: Vec<MemberId> = c
                .proposal
                .members
                .iter()
                .filter(|m| !silent.contains(m) && !self.excluded(m, now))
                .cloned()
                .collect();
            debug!(member = %self.me, proposal = ?id, silent = silent.len(), "view change stalled; proposing again");
            self.coordination = None;
            self.start_proposal(now, members);
            return;
        }
        let resend: Message = match &c.cuts {
            None => Message::Propose {
                proposal: id,
                members: c.proposal.members.clone(),
            },
            Some(cuts) => Message::Cut {
                proposal: id,
                cuts: cuts.clone(),
            },
        };
        for m in silent {
            self.send_to(&m, resend.clone());
        }
    }

    // ---------------------------------------------------------------- delivery

    fn deliver(&mut self) {
        if self.participation.is_some() {
            return;
        }
        let (delivered, new_own) = self.streams.deliver(self.my_index == 0);
        let origin = u16::try_from(self.my_index).unwrap_or(u16::MAX);
        for (seq, item) in new_own {
            self.broadcast(Message::Data { origin, seq, item });
        }
        self.hand_up(delivered);
        self.collect_fragment_stats();
    }

    fn collect_fragment_stats(&mut self) {
        let f = self.streams.take_fragment_stats();
        self.counters.messages_reassembled += f.reassembled;
        self.counters.reassembly_refused += f.refused;
        self.counters.fragments_inconsistent += f.inconsistent;
    }

    /// Acknowledges at once when much data arrived since the last acknowledgement, so that a
    /// sender of a large message gets its window back without waiting for a probe.
    fn ack_on_volume(&mut self, now: Time) {
        let threshold = (self.cfg.max_unstable_bytes / ACK_VOLUME_SHARE).max(1);
        let safe = self.safe_ack_at().is_some_and(|t| t <= now);
        if (safe || self.unacked_bytes >= threshold) && self.participation.is_none() {
            self.safe_acks_due = false;
            let probe = self.probe(now, false, NO_ASK, 0);
            self.broadcast(probe);
            self.unacked_bytes = 0;
            self.last_acks = now;
            self.acks_due = false;
        }
    }

    fn hand_up(&mut self, delivered: Vec<Delivered>) {
        for d in delivered {
            let sender = self.view.members[d.origin].clone();
            match d.item {
                Item::App {
                    group,
                    order,
                    payload,
                } => {
                    if self.groups.contains(&group, &self.me) {
                        self.counters.messages_delivered += 1;
                        self.events.push_back(Event::Message {
                            group,
                            sender,
                            order,
                            payload,
                            view: self.view.id,
                            seq: d.seq,
                        });
                    }
                }
                Item::Join(g) => {
                    if self.groups.join(&g, &sender) {
                        self.events.push_back(Event::GroupChanged {
                            members: self.groups.members(&g).to_vec(),
                            group: g,
                            change: GroupChange::Joined(sender),
                        });
                    }
                }
                Item::Leave(g) => {
                    if self.groups.leave(&g, &sender) {
                        self.events.push_back(Event::GroupChanged {
                            members: self.groups.members(&g).to_vec(),
                            group: g,
                            change: GroupChange::Left(sender),
                        });
                    }
                }
                // Pieces reach the layer above only as whole messages (see `ViewStreams::take`).
                Item::Sequence { .. } | Item::Fragment(_) => {}
            }
        }
    }

    fn progress(&mut self, now: Time) {
        for _ in 0..64 {
            while let Some(m) = self.loopback.pop_front() {
                let me = self.me.clone();
                let v = self.view.id;
                self.handle_message(now, &me, v, m);
            }
            self.deliver();
            self.ready_if_complete();
            self.maybe_change(now);
            if self.loopback.is_empty() {
                break;
            }
        }
        self.ack_on_volume(now);
        // Acknowledgements may have opened the window for a large message's next pieces.
        if self.has_queued() && self.pump() {
            self.deliver();
        }
    }

    /// Says ready as soon as this member holds its old view's cut (later repeats are on ticks).
    fn ready_if_complete(&mut self) {
        let Some(p) = &self.participation else { return };
        if p.ready_sent {
            return;
        }
        let Some(cut) = &p.cut else { return };
        if self.streams.holds(&cut.upto) {
            self.fetch_and_ready();
        }
    }

    // ---------------------------------------------------------------- timers

    /// Runs the timers due at `now`: probes, suspicion, retransmissions, view-change steps.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.closed {
            return;
        }
        // A safe item's acknowledgement may be what this call is for (see `safe_ack_at`); a call
        // before the deadline otherwise runs the tick early, as it always did.
        self.ack_on_volume(now);
        if now > self.deadline {
            self.detector.timer_fired(now, self.deadline);
        }
        if now >= self.next_probe {
            self.send_probes(now);
            self.next_probe = (self.next_probe + self.cfg.probe_interval).max(now);
            if self.next_probe <= now {
                self.next_probe = now + self.cfg.probe_interval;
            }
            self.last_acks = now;
            self.acks_due = false;
            self.safe_acks_due = false;
            self.unacked_bytes = 0;
        } else if self.acks_due && now.since(self.last_acks) >= self.cfg.probe_interval / 2 {
            // Acknowledgements free the senders' windows; between probes they go out at most
            // twice per probe interval, and only when new data arrived.
            let probe = self.probe(now, false, NO_ASK, 0);
            self.broadcast(probe);
            self.last_acks = now;
            self.acks_due = false;
            self.safe_acks_due = false;
            self.unacked_bytes = 0;
        }
        for v in self.detector.check(now) {
            match v {
                Verdict::Suspect(m) => self.on_suspect(now, &m),
                Verdict::Failed(m) => {
                    debug!(member = %self.me, view = ?self.view.id, failed = %m, "member failed");
                    if self.ring() && self.view.index_of(&m).is_some_and(|j| self.watches(j)) {
                        self.own_failed_since.get_or_insert(now);
                        self.broadcast(Message::Suspect {
                            target: m,
                            stuck: false,
                        });
                    }
                }
            }
        }
        if self.participation.is_none() {
            for (i, from, to) in self.streams.gaps(NACK_BATCH) {
                let target = self.view.members[i].clone();
                self.counters.nacks_sent += 1;
                let origin = u16::try_from(i).unwrap_or(u16::MAX);
                self.send_to(&target, Message::Nack { origin, from, to });
            }
        } else {
            self.fetch_and_ready();
        }
        self.coordinator_tick(now);
        if let Some(l) = &self.leaving {
            let missing: Vec<MemberId> = self
                .view
                .members
                .iter()
                .filter(|m| **m != self.me && !l.acked.contains(m))
                .cloned()
                .collect();
            for m in missing {
                self.send_to(&m, Message::Leave);
            }
            self.check_left(now);
        }
        self.progress(now);
        self.deadline = now + self.tick_interval();
    }

    fn send_probes(&mut self, now: Time) {
        let ask = self.next_rtt_ask();
        let probe = self.probe(now, false, ask, 0);
        if let Message::Probe { acks, .. } = &probe
            && *acks != self.last_probe_acks
        {
            self.last_probe_acks.clone_from(acks);
            self.full_probe_rounds = FULL_ACK_ROUNDS;
        }
        if self.ring() && self.full_probe_rounds == 0 {
            let (n, me) = (self.view.members.len(), self.my_index);
            self.multicast(probe, |j| watches_in(n, me, j));
            // Members whose acknowledgements lag what this member holds (one was lost, or an
            // item's announcement) are asked for them: answered probes carry both ways.
            let lagging: Vec<usize> = self
                .streams
                .lagging()
                .into_iter()
                .filter(|j| !watches_in(n, me, *j))
                .collect();
            if !lagging.is_empty() {
                let ask = self.probe(now, true, NO_ASK, 0);
                self.multicast(ask, |j| lagging.contains(&j));
            }
        } else {
            self.full_probe_rounds = self.full_probe_rounds.saturating_sub(1);
            self.broadcast(probe);
        }
        if self.ring() && self.participation.is_none() {
            // Reports stand while what they report does: a lost one is sent again.
            let reports: Vec<Message> = self
                .view
                .members
                .iter()
                .enumerate()
                .filter(|(j, _)| self.watches(*j))
                .filter_map(|(_, m)| {
                    let stuck = self.seen_stuck(m, now);
                    (stuck || self.detector.is_failed(m)).then(|| Message::Suspect {
                        target: m.clone(),
                        stuck,
                    })
                })
                .collect();
            for r in reports {
                self.broadcast(r);
            }
        }
        // A stuck node, or one in the middle of a view change, does not look for new members.
        if self.participation.is_some() || self.heartbeat.self_stuck(now) {
            return;
        }
        let leader = self.view.leader().clone();
        let outside: Vec<String> = self
            .peers
            .keys()
            .filter(|n| self.view.index_of_name(n).is_none())
            .cloned()
            .collect();
        for n in outside {
            let hears_you = self
                .known
                .get(&n)
                .and_then(|k| k.last_accepted)
                .is_some_and(|t| now.since(t) < self.cfg.suspect_timeout);
            self.send_to_name(
                &n,
                Message::Discover {
                    leader: leader.clone(),
                    hears_you,
                },
            );
        }
    }

    fn on_suspect(&mut self, now: Time, m: &MemberId) {
        debug!(member = %self.me, view = ?self.view.id, suspect = %m, "suspecting");
        let probe = self.probe(now, true, NO_ASK, 0);
        self.send_to(m, probe);
        // In a large view only the suspect's neighbours hear it regularly: ask them.
        let n = self.view.members.len();
        let target = self.view.index_of(m);
        let others: Vec<MemberId> = self
            .view
            .members
            .iter()
            .enumerate()
            .filter(|(j, o)| {
                **o != self.me && *o != m && target.is_none_or(|t| watches_in(n, t, *j))
            })
            .map(|(_, o)| o.clone())
            .collect();
        if others.is_empty() {
            return;
        }
        for k in 0..INDIRECT_PROBES.min(others.len()) {
            let o = others[(self.indirect_rotor + k) % others.len()].clone();
            self.send_to(&o, Message::PingReq { target: m.clone() });
        }
        self.indirect_rotor = self.indirect_rotor.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: usize) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i as u8 + 1], 4809))
    }

    fn config(n: usize) -> GroupConfig {
        GroupConfig {
            peers: (0..n).map(|i| (format!("n{i}"), addr(i))).collect(),
            ..GroupConfig::default()
        }
    }

    /// Runs `eps` over a lossless network for `steps` rounds of 10 ms, returning every datagram
    /// sent (by sender index) for tests that replay or corrupt them.
    fn run(eps: &mut [Endpoint], now: &mut Time, steps: usize) -> Vec<(usize, Vec<u8>)> {
        let mut sent = Vec::new();
        for _ in 0..steps {
            *now = *now + Duration::from_millis(10);
            for ep in eps.iter_mut() {
                if ep.poll_timeout().is_some_and(|t| t <= *now) {
                    ep.handle_timeout(*now);
                }
            }
            loop {
                let mut moved = false;
                for i in 0..eps.len() {
                    while let Some(t) = eps[i].poll_transmit() {
                        moved = true;
                        let to = usize::from(
                            t.destination
                                .ip()
                                .to_string()
                                .rsplit('.')
                                .next()
                                .and_then(|x| x.parse::<u8>().ok())
                                .expect("address"),
                        ) - 1;
                        sent.push((i, t.payload.clone()));
                        eps[to].handle_packet(*now, addr(i), &t.payload);
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        sent
    }

    fn cluster(n: usize, key: Option<ClusterKey>) -> (Vec<Endpoint>, Time) {
        cluster_with(config(n), key)
    }

    /// [`cluster`] with every member on `cfg` (its peers decide the size).
    fn cluster_with(cfg: GroupConfig, key: Option<ClusterKey>) -> (Vec<Endpoint>, Time) {
        let n = cfg.peers.len();
        let mut now = Time::from_nanos(1_000_000_000);
        let mut eps: Vec<Endpoint> = (0..n)
            .map(|i| {
                Endpoint::new(
                    cfg.clone(),
                    MemberId::new(format!("n{i}"), i as u64 + 1),
                    key.clone(),
                    now,
                )
                .expect("valid")
            })
            .collect();
        run(&mut eps, &mut now, 100);
        for ep in &eps {
            assert_eq!(ep.view().members.len(), n, "one view forms");
        }
        (eps, now)
    }

    #[test]
    fn each_member_watches_every_other_up_to_seventeen_then_sixteen_ring_neighbours() {
        for n in 1..=17 {
            for me in 0..n {
                assert_eq!((0..n).filter(|&j| watches_in(n, me, j)).count(), n - 1);
            }
        }
        for n in [18, 40, 64, 1000] {
            for me in [0, 1, n / 2, n - 1] {
                let w: Vec<usize> = (0..n).filter(|&j| watches_in(n, me, j)).collect();
                assert_eq!(w.len(), WATCHED, "n {n} me {me}: {w:?}");
                // Symmetric: whoever this member watches watches it.
                assert!(w.iter().all(|&j| watches_in(n, j, me)));
            }
        }
        assert!(watches_in(40, 0, 39) && watches_in(40, 0, 8) && !watches_in(40, 0, 9));
        assert!(!watches_in(40, 0, 40), "out of range");
    }

    #[test]
    fn forged_replayed_and_garbage_datagrams_are_dropped_and_counted() {
        let key = ClusterKey::from_material(b"the cluster's shared secret");
        let (mut eps, mut now) = cluster(2, Some(key));
        let sent = run(&mut eps, &mut now, 30);
        let (from, good) = sent
            .iter()
            .find(|(i, _)| *i == 0)
            .cloned()
            .expect("n0 sent");
        assert_eq!(from, 0);
        let before = eps[1].counters().clone();

        eps[1].handle_packet(now, addr(0), &good);
        assert_eq!(eps[1].counters().dropped_replay, before.dropped_replay + 1);

        let mut forged = good.clone();
        let last = forged.len() - 40;
        forged[last] ^= 1;
        eps[1].handle_packet(now, addr(0), &forged);
        assert_eq!(
            eps[1].counters().dropped_bad_mac,
            before.dropped_bad_mac + 1
        );

        eps[1].handle_packet(now, addr(0), b"not a datagram");
        assert_eq!(
            eps[1].counters().dropped_undecodable,
            before.dropped_undecodable + 1
        );

        let mut outsider =
            Endpoint::new(config(2), MemberId::new("n0", 99), None, now).expect("valid");
        outsider.handle_timeout(now);
        let t = outsider.poll_transmit().expect("a probe or discovery");
        eps[1].handle_packet(now, addr(0), &t.payload);
        assert_eq!(
            eps[1].counters().dropped_bad_mac,
            before.dropped_bad_mac + 2,
            "no MAC"
        );
        assert_eq!(
            eps[1].view().members.len(),
            2,
            "nothing forged was acted upon"
        );
    }

    #[test]
    fn every_member_measures_the_round_trip_to_every_other() {
        let (mut eps, mut now) = cluster(4, None);
        // 3 s at the default probe interval: each member asked every other one several times.
        run(&mut eps, &mut now, 300);
        for ep in &eps {
            let peers = ep.peer_health();
            assert_eq!(peers.len(), 3);
            for p in peers {
                assert!(p.rtt.samples >= 2, "{} -> {}: {:?}", ep.me, p.member, p.rtt);
                // This network delivers within the step: the round trip is on one clock reading.
                assert_eq!(p.rtt.last, Some(Duration::ZERO));
                assert!(!p.suspected && !p.failed);
            }
        }
    }

    #[test]
    fn safe_messages_share_the_agreed_order_on_every_member() {
        let (mut eps, mut now) = cluster(3, None);
        for ep in eps.iter_mut() {
            ep.join("g").expect("join");
        }
        run(&mut eps, &mut now, 10);
        for ep in eps.iter_mut() {
            while ep.poll_event().is_some() {}
        }
        for k in 0..30u8 {
            let (from, order) = match k % 3 {
                0 => (1, Order::Safe),
                1 => (2, Order::Agreed),
                _ => (0, Order::Safe),
            };
            eps[from].send("g", &[k], order).expect("room");
        }
        run(&mut eps, &mut now, 10);
        let orders: Vec<Vec<(u8, Order)>> = eps
            .iter_mut()
            .map(|ep| {
                std::iter::from_fn(|| ep.poll_event())
                    .filter_map(|e| match e {
                        Event::Message { payload, order, .. } => Some((payload[0], order)),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        assert_eq!(orders[0].len(), 30, "{:?}", orders[0]);
        assert_eq!(orders[0], orders[1]);
        assert_eq!(orders[0], orders[2]);
        assert_eq!(
            orders[0].iter().filter(|(_, o)| *o == Order::Safe).count(),
            20
        );
    }

    /// The three reloads of a key rotation, one member at a time: no datagram is refused and the
    /// view never changes; adding or removing the key is refused and changes nothing.
    #[test]
    fn a_keyring_rotates_without_a_view_change() {
        let old = ClusterKey::from_material(b"old key material, long");
        let new = ClusterKey::from_material(b"new key material, long");
        let (mut eps, mut now) = cluster(3, Some(old.clone()));
        let views: Vec<ViewId> = eps.iter().map(|e| e.view().id).collect();
        let steps = [
            ClusterKey::ring([old.clone(), new.clone()]),
            ClusterKey::ring([new.clone(), old.clone()]),
            Some(new.clone()),
        ];
        for step in steps {
            for i in 0..eps.len() {
                eps[i].rekey(step.clone()).expect("a keyring rotates");
                eps[0].send("g", b"x", Order::Agreed).ok();
                run(&mut eps, &mut now, 50);
            }
        }
        for e in &eps {
            assert_eq!(e.counters().dropped_bad_mac, 0);
        }
        assert_eq!(eps.iter().map(|e| e.view().id).collect::<Vec<_>>(), views);
        assert!(matches!(
            eps[0].rekey(None),
            Err(EndpointError::KeyPresence)
        ));
        assert_eq!(eps[0].view().id, views[0]);
        // Every member is on the new key alone: a datagram under the old key is dropped and
        // counted.
        let cfg = eps[1].cfg.clone();
        let mut stale = Endpoint::new(cfg, MemberId::new("n1", 99), Some(old), now).expect("valid");
        stale.handle_timeout(now + Duration::from_millis(500));
        let mut sent = 0;
        while let Some(t) = stale.poll_transmit() {
            if t.destination == addr(0) {
                eps[0].handle_packet(now, addr(1), &t.payload);
                sent += 1;
            }
        }
        assert!(sent > 0);
        assert_eq!(eps[0].counters().dropped_bad_mac, sent);
    }

    #[test]
    fn an_older_incarnation_is_dropped_once_a_newer_one_spoke() {
        let (mut eps, mut now) = cluster(2, None);
        let sent = run(&mut eps, &mut now, 10);
        let (_, old) = sent
            .iter()
            .find(|(i, _)| *i == 0)
            .cloned()
            .expect("n0 sent");
        // n0 restarts with a newer incarnation.
        eps[0] = Endpoint::new(config(2), MemberId::new("n0", 50), None, now).expect("valid");
        run(&mut eps, &mut now, 200);
        assert!(eps[1].view().contains(&MemberId::new("n0", 50)));
        assert!(!eps[1].view().contains(&MemberId::new("n0", 1)));
        let before = eps[1].counters().dropped_stale_incarnation;
        eps[1].handle_packet(now, addr(0), &old);
        assert_eq!(eps[1].counters().dropped_stale_incarnation, before + 1);
    }

    #[test]
    fn sends_are_bounded_and_delivered_in_order() {
        let (mut eps, mut now) = cluster(3, None);
        for ep in eps.iter_mut() {
            ep.join("g").expect("join");
        }
        run(&mut eps, &mut now, 5);
        let too_big = vec![0u8; GroupConfig::default().max_message_size + 1];
        assert!(matches!(
            eps[0].send("g", &too_big, Order::Fifo),
            Err(SendError::TooLarge { .. })
        ));
        assert!(matches!(
            eps[0].send("", b"x", Order::Fifo),
            Err(SendError::GroupName(_))
        ));
        for k in 0..10u8 {
            eps[1]
                .send(
                    "g",
                    &[k],
                    if k % 2 == 0 {
                        Order::Agreed
                    } else {
                        Order::Fifo
                    },
                )
                .expect("room");
        }
        while eps[2].poll_event().is_some() {}
        run(&mut eps, &mut now, 5);
        let got: Vec<u8> = std::iter::from_fn(|| eps[2].poll_event())
            .filter_map(|e| match e {
                Event::Message { payload, .. } => Some(payload[0]),
                _ => None,
            })
            .collect();
        assert_eq!(got, (0..10).collect::<Vec<u8>>());
    }

    fn delivered(ep: &mut Endpoint) -> Vec<(String, Vec<u8>)> {
        std::iter::from_fn(|| ep.poll_event())
            .filter_map(|e| match e {
                Event::Message {
                    sender, payload, ..
                } => Some((sender.name, payload)),
                _ => None,
            })
            .collect()
    }

    fn pattern(len: usize, salt: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
            .collect()
    }

    #[test]
    fn large_messages_arrive_whole_and_in_order_with_small_ones() {
        let mut cfg = config(3);
        // A window far below the message size: pieces enter the stream as acknowledgements come.
        cfg.max_unstable_bytes = 64 * 1024;
        let (mut eps, mut now) = cluster_with(cfg, None);
        for ep in eps.iter_mut() {
            ep.join("g").expect("join");
        }
        run(&mut eps, &mut now, 5);
        for ep in eps.iter_mut() {
            delivered(ep);
        }
        let big = pattern(1_000_000, 7);
        let mid = pattern(5_000, 9);
        eps[1].send("g", b"before", Order::Fifo).expect("room");
        eps[1]
            .send("g", &big, Order::Agreed)
            .expect("alone in the queue");
        assert!(
            matches!(
                eps[1].send("g", &pattern(100_000, 1), Order::Fifo),
                Err(SendError::WouldBlock { .. })
            ),
            "the window counts queued bytes"
        );
        eps[2].send("g", &mid, Order::Fifo).expect("room");
        let mut tries = 0;
        while eps[1].send("g", b"after", Order::Agreed).is_err() {
            tries += 1;
            assert!(
                tries < 100,
                "the window reopens as the pieces are acknowledged"
            );
            run(&mut eps, &mut now, 1);
        }
        run(&mut eps, &mut now, 300);
        for (i, ep) in eps.iter_mut().enumerate() {
            let got = delivered(ep);
            let from1: Vec<&Vec<u8>> = got
                .iter()
                .filter(|(s, _)| s == "n1")
                .map(|(_, p)| p)
                .collect();
            assert_eq!(from1.len(), 3, "n{i} delivers n1's three messages");
            assert_eq!(from1[0], b"before");
            assert!(*from1[1] == big, "n{i}: the large message arrives whole");
            assert_eq!(from1[2], b"after");
            assert!(got.iter().any(|(s, p)| s == "n2" && *p == mid));
        }
        assert!(eps[1].counters().fragments_sent >= 1_000_000 / 1400);
        assert!(eps[0].counters().messages_reassembled >= 2);
        assert_eq!(eps[1].unstable_bytes(), 0, "everything acknowledged");
    }

    #[test]
    fn a_large_message_of_the_leader_does_not_hold_up_the_agreed_order() {
        let mut cfg = config(3);
        cfg.max_unstable_bytes = 32 * 1024;
        let (mut eps, mut now) = cluster_with(cfg, None);
        for ep in eps.iter_mut() {
            ep.join("g").expect("join");
        }
        run(&mut eps, &mut now, 5);
        for ep in eps.iter_mut() {
            delivered(ep);
        }
        assert_eq!(eps[0].view().leader(), eps[0].me(), "n0 leads");
        let big = pattern(2_000_000, 3);
        eps[0].send("g", &big, Order::Agreed).expect("alone");
        eps[1].send("g", b"small", Order::Agreed).expect("room");
        run(&mut eps, &mut now, 400);
        let got = delivered(&mut eps[2]);
        let small_at = got.iter().position(|(_, p)| p == b"small");
        let big_at = got.iter().position(|(_, p)| *p == big);
        assert!(
            small_at.is_some() && big_at.is_some(),
            "both delivered: {}",
            got.len()
        );
        assert!(
            small_at < big_at,
            "n1's agreed message was ordered while the leader's large one was still going out"
        );
    }

    #[test]
    fn a_full_window_says_would_block() {
        let mut cfg = config(2);
        cfg.max_unstable_bytes = 1000;
        let now = Time::ZERO;
        let mut a = Endpoint::new(cfg.clone(), MemberId::new("n0", 1), None, now).expect("valid");
        let mut b = Endpoint::new(cfg, MemberId::new("n1", 2), None, now).expect("valid");
        let mut eps = [a, b];
        let mut t = now;
        run(&mut eps, &mut t, 100);
        [a, b] = eps;
        let mut blocked = false;
        for _ in 0..100 {
            if let Err(SendError::WouldBlock { .. }) = a.send("g", &[0; 100], Order::Fifo) {
                blocked = true;
                break;
            }
        }
        assert!(
            blocked,
            "a sender whose peer never acknowledges is held back"
        );
        let _ = b.poll_event();
    }

    #[test]
    fn graceful_leave_installs_the_new_view_at_once() {
        let (mut eps, now) = cluster(3, None);
        eps[2].leave_cluster(now);
        // One round trip of messages, no timer needed.
        let mut moved = true;
        while moved {
            moved = false;
            for i in 0..3 {
                while let Some(t) = eps[i].poll_transmit() {
                    moved = true;
                    let to = usize::from(
                        t.destination
                            .ip()
                            .to_string()
                            .rsplit('.')
                            .next()
                            .and_then(|x| x.parse::<u8>().ok())
                            .expect("address"),
                    ) - 1;
                    eps[to].handle_packet(now, addr(i), &t.payload);
                }
            }
        }
        assert_eq!(eps[0].view().members.len(), 2);
        assert_eq!(eps[1].view().members.len(), 2);
        assert!(std::iter::from_fn(|| eps[2].poll_event()).any(|e| e == Event::LeftCluster));
    }
}
