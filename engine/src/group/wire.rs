//! The datagram format, written as smoltcp writes its `wire` module: a zero-copy [`Packet`] view
//! with checked accessors for the header, and plain [`Repr`]/[`Message`] values with `parse` and
//! `emit`.
//!
//! ```text
//! offset  size  field
//!      0     1  version (1)
//!      1     1  flags (bit 0: a MAC trails the datagram; bit 1: the datagram is sealed)
//!      2     4  cluster id
//!      6     8  sender incarnation
//!     14     8  sender's view id: epoch
//!     22     8  sender's view id: coordinator tag
//!     30     8  packet number (per sender incarnation and destination, from 1; the replay
//!               window's input)
//!     38     1  sender name length n (1..=64)
//!     39     n  sender name (UTF-8)
//!   39+n     …  messages, each: kind (1) | body length (2) | body
//!    end    32  MAC (only with flag bit 0): keyed BLAKE3 of every byte before it, then 0xff
//!               and the destination's node name (covered, not sent: see `ClusterKey::mac_to`)
//!    end    16  sealed (flag bit 1, `cluster_crypto = seal`): the messages are encrypted with
//!               ChaCha20-Poly1305 and this is its tag; the header, then 0xff and the
//!               destination's name, are the associated data (see `ClusterKey::seal_to`)
//! ```
//! All integers are big-endian. Every length is checked before it is used; a datagram that fails a
//! check is an error carrying the offset, never a panic.

use crate::group::auth::{MAC_LEN, SEAL_TAG_LEN};
use crate::group::member::{MAX_NAME_LEN, MemberId};
use crate::group::view::ViewId;

/// The only version this code speaks.
pub const VERSION: u8 = 1;
/// Flag bit: a MAC trails the datagram.
pub const FLAG_MAC: u8 = 0x01;
/// Flag bit: the messages are sealed and an AEAD tag trails the datagram.
pub const FLAG_SEAL: u8 = 0x02;
/// Header bytes before the sender name.
pub const HEADER_FIXED_LEN: usize = 39;
/// Bytes before each message body.
pub const MESSAGE_HEADER_LEN: usize = 3;
/// Longest group name.
pub const MAX_GROUP_LEN: usize = 64;

mod field {
    use core::ops::Range;
    pub const VERSION: usize = 0;
    pub const FLAGS: usize = 1;
    pub const CLUSTER: Range<usize> = 2..6;
    pub const INCARNATION: Range<usize> = 6..14;
    pub const EPOCH: Range<usize> = 14..22;
    pub const COORDINATOR: Range<usize> = 22..30;
    pub const NUMBER: Range<usize> = 30..38;
    pub const NAME_LEN: usize = 38;
    pub const NAME: usize = 39;
}

/// What is wrong with a datagram, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than the header (or the header plus MAC) it announces.
    #[error("datagram of {len} bytes is shorter than the {need} its header needs")]
    Truncated {
        /// Bytes received.
        len: usize,
        /// Bytes the header says there must be.
        need: usize,
    },
    /// A version this code does not speak.
    #[error("unsupported version {0} at offset 0")]
    Version(u8),
    /// A malformed field.
    #[error("bad {what} at offset {offset}")]
    Field {
        /// Which field.
        what: &'static str,
        /// Byte offset in the datagram.
        offset: usize,
    },
}

/// A read-only or writable view of a datagram's bytes.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without any check; accessors may panic on a short buffer. Prefer [`Packet::new_checked`].
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view whose header accessors are known not to panic.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the version, the name length and that header and MAC fit in the buffer.
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_FIXED_LEN {
            return Err(WireError::Truncated {
                len: b.len(),
                need: HEADER_FIXED_LEN,
            });
        }
        if b[field::VERSION] != VERSION {
            return Err(WireError::Version(b[field::VERSION]));
        }
        let n = usize::from(b[field::NAME_LEN]);
        if n == 0 || n > MAX_NAME_LEN {
            return Err(WireError::Field {
                what: "sender name length",
                offset: field::NAME_LEN,
            });
        }
        let need = HEADER_FIXED_LEN + n + self.trailer_len();
        if b.len() < need {
            return Err(WireError::Truncated { len: b.len(), need });
        }
        if core::str::from_utf8(&b[field::NAME..field::NAME + n]).is_err() {
            return Err(WireError::Field {
                what: "sender name (not UTF-8)",
                offset: field::NAME,
            });
        }
        Ok(())
    }

    /// The version field.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }
    /// The flags field.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    /// Whether a MAC trails the datagram.
    pub fn has_mac(&self) -> bool {
        self.flags() & FLAG_MAC != 0
    }
    /// Whether the messages are sealed (an AEAD tag trails the datagram).
    pub fn is_sealed(&self) -> bool {
        self.flags() & FLAG_SEAL != 0
    }
    /// Bytes of MAC and tag after the messages.
    pub fn trailer_len(&self) -> usize {
        (if self.has_mac() { MAC_LEN } else { 0 }) + if self.is_sealed() { SEAL_TAG_LEN } else { 0 }
    }
    /// The cluster id.
    pub fn cluster_id(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::CLUSTER];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    /// The sender's incarnation.
    pub fn incarnation(&self) -> u64 {
        be_u64(&self.buffer.as_ref()[field::INCARNATION])
    }
    /// The view the sender had installed when it sent this datagram.
    pub fn view_id(&self) -> ViewId {
        let b = self.buffer.as_ref();
        ViewId {
            epoch: be_u64(&b[field::EPOCH]),
            coordinator: be_u64(&b[field::COORDINATOR]),
        }
    }
    /// The packet number.
    pub fn number(&self) -> u64 {
        be_u64(&self.buffer.as_ref()[field::NUMBER])
    }
    /// Length of the header, name included.
    pub fn header_len(&self) -> usize {
        HEADER_FIXED_LEN + usize::from(self.buffer.as_ref()[field::NAME_LEN])
    }
    /// The sender's name (checked UTF-8 by [`Packet::check_len`]).
    pub fn sender_name(&self) -> &str {
        let b = self.buffer.as_ref();
        core::str::from_utf8(&b[field::NAME..self.header_len()]).unwrap_or("")
    }
    fn mac_start(&self) -> usize {
        self.buffer.as_ref().len() - self.trailer_len()
    }
    /// The bytes of the messages.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.mac_start()]
    }
    /// Every byte the MAC covers.
    pub fn authenticated(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.mac_start()]
    }
    /// The MAC, if the datagram carries one.
    pub fn mac(&self) -> Option<&[u8]> {
        self.has_mac()
            .then(|| &self.buffer.as_ref()[self.mac_start()..self.mac_start() + MAC_LEN])
    }
    /// The messages, each parsed on demand.
    pub fn messages(&self) -> Messages<'_> {
        Messages {
            buf: self.payload(),
            pos: 0,
            base: self.header_len(),
        }
    }
}

/// The header of a datagram as plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    /// Datagrams of other clusters are dropped.
    pub cluster_id: u32,
    /// The sending member.
    pub sender: MemberId,
    /// The view the sender has installed.
    pub view: ViewId,
    /// Packet number for the replay window.
    pub number: u64,
    /// Whether a MAC trails the datagram.
    pub mac: bool,
    /// Whether the messages are sealed.
    pub seal: bool,
}

impl Repr {
    /// Reads the header of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, WireError> {
        p.check_len()?;
        Ok(Repr {
            cluster_id: p.cluster_id(),
            sender: MemberId::new(p.sender_name(), p.incarnation()),
            view: p.view_id(),
            number: p.number(),
            mac: p.has_mac(),
            seal: p.is_sealed(),
        })
    }

    /// Bytes the header takes.
    pub fn header_len(&self) -> usize {
        HEADER_FIXED_LEN + self.sender.name.len()
    }

    /// Appends the header to `out`. The sender name must be 1..=64 bytes (checked when the endpoint
    /// is created).
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.push(if self.mac { FLAG_MAC } else { 0 } | if self.seal { FLAG_SEAL } else { 0 });
        out.extend_from_slice(&self.cluster_id.to_be_bytes());
        out.extend_from_slice(&self.sender.incarnation.to_be_bytes());
        out.extend_from_slice(&self.view.epoch.to_be_bytes());
        out.extend_from_slice(&self.view.coordinator.to_be_bytes());
        out.extend_from_slice(&self.number.to_be_bytes());
        let name = self.sender.name.as_bytes();
        out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(name);
    }
}

/// Iterates over the messages of a datagram: `(kind, body)` or an error with its offset.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message, WireError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let offset = self.base + self.pos;
        let rest = &self.buf[self.pos..];
        if rest.len() < MESSAGE_HEADER_LEN {
            self.pos = self.buf.len();
            return Some(Err(WireError::Field {
                what: "message header",
                offset,
            }));
        }
        let kind = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        if rest.len() < MESSAGE_HEADER_LEN + len {
            self.pos = self.buf.len();
            return Some(Err(WireError::Field {
                what: "message length",
                offset: offset + 1,
            }));
        }
        self.pos += MESSAGE_HEADER_LEN + len;
        let body = &rest[MESSAGE_HEADER_LEN..MESSAGE_HEADER_LEN + len];
        Some(Message::parse(kind, body, offset + MESSAGE_HEADER_LEN))
    }
}

/// The delivery order a message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Order {
    /// Per-sender FIFO: a receiver delivers one sender's messages in the order they were sent.
    Fifo,
    /// Agreed (total) order: every member delivers agreed messages in the same order; also FIFO.
    Agreed,
    /// Safe (Spread's SAFE_MESS): agreed, and delivered only once every member of the view holds
    /// the message; at a view change, after the flush, when every surviving member holds it.
    Safe,
}

/// One element of a sender's reliable stream within a view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A message of the layer above.
    App {
        /// Destination group.
        group: String,
        /// Requested order.
        order: Order,
        /// The bytes.
        payload: Vec<u8>,
    },
    /// Leader only: the next agreed message in the view is `origin`'s message `seq`.
    Sequence {
        /// Index of the origin in the view.
        origin: u16,
        /// Its sequence number.
        seq: u64,
    },
    /// The sender joins a named group (agreed order).
    Join(String),
    /// The sender leaves a named group (agreed order).
    Leave(String),
    /// One piece of an application message too large for one datagram (see
    /// [`fragment`](crate::group::fragment)).
    Fragment(Fragment),
}

/// One piece of a message of the layer above that does not fit in one datagram. The pieces of a
/// message take increasing places in the sender's stream, in order, with nothing between them but
/// the leader's [`Item::Sequence`] entries; the message is delivered at the place of its last piece.
///
/// Body after the item kind: `order u8 | group string | total u32 | count u32 | index u32 | bytes`.
/// A parsed fragment always has `2 <= count`, `index < count`, `1 <= bytes.len() <= total` and
/// `count <= total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// Destination group of the whole message.
    pub group: String,
    /// Order of the whole message.
    pub order: Order,
    /// Bytes of the whole message.
    pub total: u32,
    /// Pieces of the whole message.
    pub count: u32,
    /// This piece's place, from 0.
    pub index: u32,
    /// This piece's bytes (on the sender, a slice of the whole message's buffer: no copy).
    pub bytes: bytes::Bytes,
}

impl Fragment {
    /// Whether this is the message's last piece (where it is delivered and ordered).
    pub fn is_last(&self) -> bool {
        self.index + 1 == self.count
    }
}

impl Item {
    /// Whether the item waits for its place in the agreed order.
    pub fn is_agreed(&self) -> bool {
        matches!(
            self,
            Item::App {
                order: Order::Agreed | Order::Safe,
                ..
            } | Item::Join(_)
                | Item::Leave(_)
        ) || matches!(self, Item::Fragment(f) if f.order != Order::Fifo && f.is_last())
    }

    /// Whether this is a safe message (or its last piece): it also waits until every member of
    /// the view holds it.
    pub fn is_safe(&self) -> bool {
        matches!(
            self,
            Item::App {
                order: Order::Safe,
                ..
            }
        ) || matches!(self, Item::Fragment(f) if f.order == Order::Safe && f.is_last())
    }

    /// Bytes counted against the flow-control window.
    pub fn weight(&self) -> usize {
        match self {
            Item::App { group, payload, .. } => payload.len() + group.len() + 16,
            Item::Sequence { .. } => 16,
            Item::Join(g) | Item::Leave(g) => g.len() + 16,
            Item::Fragment(f) => f.bytes.len() + f.group.len() + 16,
        }
    }
}

/// One old view's flush cut, as fixed by the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldViewCut {
    /// The old view.
    pub view: ViewId,
    /// Per old-view member index: deliver that sender's messages up to this sequence number.
    pub upto: Vec<u64>,
    /// Per old-view member index: the index, in the proposed member list, of a member holding them.
    pub holders: Vec<u16>,
}

/// [`ProbeTiming::ask`] when no member is asked to echo.
pub const NO_ASK: u16 = u16::MAX;

/// The round-trip fields of a probe (flag bit 1; a probe without them decodes as the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeTiming {
    /// The sender's clock (nanoseconds) when it sent the probe.
    pub stamp: u64,
    /// View index of the member that should answer at once, echoing `stamp`.
    pub ask: u16,
    /// The `stamp` of the probe this one answers; 0 for none.
    pub echo: u64,
}

impl Default for ProbeTiming {
    fn default() -> Self {
        ProbeTiming {
            stamp: 0,
            ask: NO_ASK,
            echo: 0,
        }
    }
}

/// The messages a datagram carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A stream item of `origin` (an index in the header's view), possibly relayed.
    Data {
        /// Index of the original sender in the view.
        origin: u16,
        /// Its sequence number in that sender's stream, from 1.
        seq: u64,
        /// The item.
        item: Item,
    },
    /// Liveness and acknowledgements, sent every probe interval to every view member.
    Probe {
        /// The receiver should answer at once (a direct probe of a suspect).
        reply: bool,
        /// The sender's cluster-layer heartbeat counter.
        heartbeat: u64,
        /// Per view member index: the highest sequence received contiguously (own index: sent).
        /// Empty when the receiver is not in the sender's view.
        acks: Vec<u64>,
        /// Round-trip timing: the sender's clock when it sent this probe, the view index of the
        /// member asked to echo it at once ([`NO_ASK`] for none), and the `stamp` of the probe
        /// this one answers (0 when it answers none).
        timing: ProbeTiming,
    },
    /// Retransmit `origin`'s items `from..=to` of the header's view.
    Nack {
        /// Whose stream.
        origin: u16,
        /// First missing.
        from: u64,
        /// Last missing.
        to: u64,
    },
    /// SWIM indirect probe: "have you heard from `target` lately?"
    PingReq {
        /// The suspect.
        target: MemberId,
    },
    /// Answer to [`Message::PingReq`]: the sender heard from `target` recently.
    Alive {
        /// The suspect shown alive.
        target: MemberId,
    },
    /// In a view larger than the probing neighbourhood: "`target`, a member I watch, has failed"
    /// (or, with `stuck`, its heartbeat counter stands still while its transport answers). A
    /// failure report is verified by the receiver (a direct and indirect probe) before it counts.
    Suspect {
        /// The member reported.
        target: MemberId,
        /// Stuck rather than silent.
        stuck: bool,
    },
    /// Sent to configured peers outside the view: "I exist, this is my view's leader".
    Discover {
        /// Leader of the sender's view.
        leader: MemberId,
        /// Whether the sender heard the recipient lately: only a node that hears the merging
        /// coordinator is merged (a node whose inbound traffic is cut would only stall the flush).
        hears_you: bool,
    },
    /// A coordinator proposes a new view.
    Propose {
        /// The new view's id.
        proposal: ViewId,
        /// Its members.
        members: Vec<MemberId>,
    },
    /// A member's answer to a proposal: it stopped sending in its old view; this is what it holds.
    Flush {
        /// The proposal answered.
        proposal: ViewId,
        /// The member's current view.
        old_view: ViewId,
        /// Per old-view member index, the highest sequence received contiguously.
        received: Vec<u64>,
        /// The named groups the member wants to be in.
        groups: Vec<String>,
    },
    /// The coordinator fixes the cut of every old view.
    Cut {
        /// The proposal.
        proposal: ViewId,
        /// One entry per old view among the proposed members.
        cuts: Vec<OldViewCut>,
    },
    /// A member holds every message up to its old view's cut.
    Ready {
        /// The proposal.
        proposal: ViewId,
    },
    /// The coordinator installs the view.
    Install {
        /// The proposal that becomes the view.
        proposal: ViewId,
        /// Per member index of the proposal, its named groups.
        groups: Vec<Vec<String>>,
    },
    /// The sender leaves the cluster gracefully.
    Leave,
    /// Acknowledges a [`Message::Leave`].
    LeaveAck,
}

mod kind {
    pub const DATA: u8 = 1;
    pub const PROBE: u8 = 2;
    pub const NACK: u8 = 3;
    pub const PING_REQ: u8 = 4;
    pub const ALIVE: u8 = 5;
    pub const DISCOVER: u8 = 6;
    pub const PROPOSE: u8 = 7;
    pub const FLUSH: u8 = 8;
    pub const CUT: u8 = 9;
    pub const READY: u8 = 10;
    pub const INSTALL: u8 = 11;
    pub const LEAVE: u8 = 12;
    pub const LEAVE_ACK: u8 = 13;
    pub const SUSPECT: u8 = 14;
}

mod item_kind {
    pub const FIFO: u8 = 0;
    pub const AGREED: u8 = 1;
    pub const SEQUENCE: u8 = 2;
    pub const JOIN: u8 = 3;
    pub const LEAVE: u8 = 4;
    pub const FRAGMENT: u8 = 5;
    pub const SAFE: u8 = 6;
}

fn order_kind(order: Order) -> u8 {
    match order {
        Order::Fifo => item_kind::FIFO,
        Order::Agreed => item_kind::AGREED,
        Order::Safe => item_kind::SAFE,
    }
}

/// Longest list the wire carries (members, ack vectors, cuts).
pub const MAX_LIST: usize = 1024;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, what: &'static str) -> WireError {
        WireError::Field {
            what,
            offset: self.base + self.pos,
        }
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() - self.pos < n {
            return Err(self.err(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        Ok(be_u64(self.take(8, what)?))
    }
    fn string(&mut self, max: usize, what: &'static str) -> Result<String, WireError> {
        let n = usize::from(self.u8(what)?);
        if n > max {
            return Err(self.err(what));
        }
        let at = self.pos;
        let b = self.take(n, what)?;
        match core::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(WireError::Field {
                what,
                offset: self.base + at,
            }),
        }
    }
    fn member(&mut self) -> Result<MemberId, WireError> {
        let name = self.string(MAX_NAME_LEN, "member name")?;
        if name.is_empty() {
            return Err(self.err("member name"));
        }
        Ok(MemberId::new(name, self.u64("member incarnation")?))
    }
    fn view(&mut self) -> Result<ViewId, WireError> {
        Ok(ViewId {
            epoch: self.u64("view epoch")?,
            coordinator: self.u64("view coordinator")?,
        })
    }
    fn count(&mut self, what: &'static str) -> Result<usize, WireError> {
        let n = usize::from(self.u16(what)?);
        if n > MAX_LIST {
            return Err(self.err(what));
        }
        Ok(n)
    }
    fn u64s(&mut self, what: &'static str) -> Result<Vec<u64>, WireError> {
        let n = self.count(what)?;
        (0..n).map(|_| self.u64(what)).collect()
    }
    fn strings(&mut self, what: &'static str) -> Result<Vec<String>, WireError> {
        let n = self.count(what)?;
        (0..n).map(|_| self.string(MAX_GROUP_LEN, what)).collect()
    }
    fn fragment(&mut self) -> Result<Fragment, WireError> {
        let order = match self.u8("fragment order")? {
            item_kind::FIFO => Order::Fifo,
            item_kind::AGREED => Order::Agreed,
            item_kind::SAFE => Order::Safe,
            _ => {
                self.pos -= 1;
                return Err(self.err("fragment order"));
            }
        };
        let group = self.string(MAX_GROUP_LEN, "group name")?;
        let total = self.u32("fragment total")?;
        let count = self.u32("fragment count")?;
        if count < 2 || count > total {
            self.pos -= 4;
            return Err(self.err("fragment count"));
        }
        let index = self.u32("fragment index")?;
        if index >= count {
            self.pos -= 4;
            return Err(self.err("fragment index"));
        }
        let bytes = self.rest();
        if bytes.is_empty() || bytes.len() > total as usize {
            return Err(self.err("fragment bytes"));
        }
        Ok(Fragment {
            group,
            order,
            total,
            count,
            index,
            bytes: bytes::Bytes::copy_from_slice(bytes),
        })
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
    fn end(&self) -> Result<(), WireError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn string(&mut self, s: &str) {
        // Lengths were validated when the string entered the endpoint.
        let b = &s.as_bytes()[..s.len().min(255)];
        self.u8(b.len() as u8);
        self.0.extend_from_slice(b);
    }
    fn member(&mut self, m: &MemberId) {
        self.string(&m.name);
        self.u64(m.incarnation);
    }
    fn view(&mut self, v: ViewId) {
        self.u64(v.epoch);
        self.u64(v.coordinator);
    }
    fn count(&mut self, n: usize) {
        self.u16(u16::try_from(n.min(MAX_LIST)).unwrap_or(u16::MAX));
    }
    fn u64s(&mut self, v: &[u64]) {
        self.count(v.len());
        for x in v.iter().take(MAX_LIST) {
            self.u64(*x);
        }
    }
    fn strings(&mut self, v: &[String]) {
        self.count(v.len());
        for s in v.iter().take(MAX_LIST) {
            self.string(s);
        }
    }
}

impl Message {
    /// Parses one message body of `kind`; `offset` locates the body in the datagram for errors.
    pub fn parse(kind: u8, body: &[u8], offset: usize) -> Result<Message, WireError> {
        let mut r = Reader {
            buf: body,
            pos: 0,
            base: offset,
        };
        let m = match kind {
            kind::DATA => {
                let origin = r.u16("data origin")?;
                let seq = r.u64("data sequence")?;
                if seq == 0 {
                    return Err(r.err("data sequence"));
                }
                let item = match r.u8("item kind")? {
                    k @ (item_kind::FIFO | item_kind::AGREED | item_kind::SAFE) => {
                        let group = r.string(MAX_GROUP_LEN, "group name")?;
                        Item::App {
                            group,
                            order: match k {
                                item_kind::FIFO => Order::Fifo,
                                item_kind::AGREED => Order::Agreed,
                                _ => Order::Safe,
                            },
                            payload: r.rest().to_vec(),
                        }
                    }
                    item_kind::SEQUENCE => Item::Sequence {
                        origin: r.u16("sequence origin")?,
                        seq: r.u64("sequence number")?,
                    },
                    item_kind::JOIN => Item::Join(r.string(MAX_GROUP_LEN, "group name")?),
                    item_kind::LEAVE => Item::Leave(r.string(MAX_GROUP_LEN, "group name")?),
                    item_kind::FRAGMENT => Item::Fragment(r.fragment()?),
                    _ => {
                        return Err(WireError::Field {
                            what: "item kind",
                            offset: offset + 10,
                        });
                    }
                };
                Message::Data { origin, seq, item }
            }
            kind::PROBE => {
                let flags = r.u8("probe flags")?;
                if flags & !3 != 0 {
                    return Err(r.err("probe flags"));
                }
                let heartbeat = r.u64("heartbeat")?;
                let acks = r.u64s("ack vector")?;
                let timing = if flags & 2 != 0 {
                    ProbeTiming {
                        stamp: r.u64("probe stamp")?,
                        ask: r.u16("probe ask")?,
                        echo: r.u64("probe echo")?,
                    }
                } else {
                    ProbeTiming::default()
                };
                Message::Probe {
                    reply: flags & 1 != 0,
                    heartbeat,
                    acks,
                    timing,
                }
            }
            kind::NACK => {
                let origin = r.u16("nack origin")?;
                let from = r.u64("nack from")?;
                let to = r.u64("nack to")?;
                if from == 0 || to < from {
                    return Err(r.err("nack range"));
                }
                Message::Nack { origin, from, to }
            }
            kind::PING_REQ => Message::PingReq {
                target: r.member()?,
            },
            kind::ALIVE => Message::Alive {
                target: r.member()?,
            },
            kind::SUSPECT => Message::Suspect {
                target: r.member()?,
                stuck: r.u8("suspect flags")? & 1 != 0,
            },
            kind::DISCOVER => Message::Discover {
                leader: r.member()?,
                hears_you: r.u8("discover flags")? & 1 != 0,
            },
            kind::PROPOSE => {
                let proposal = r.view()?;
                let n = r.count("member count")?;
                let members = (0..n).map(|_| r.member()).collect::<Result<Vec<_>, _>>()?;
                if members.is_empty() {
                    return Err(r.err("member count"));
                }
                Message::Propose { proposal, members }
            }
            kind::FLUSH => Message::Flush {
                proposal: r.view()?,
                old_view: r.view()?,
                received: r.u64s("received vector")?,
                groups: r.strings("group list")?,
            },
            kind::CUT => {
                let proposal = r.view()?;
                let n = r.count("cut count")?;
                let mut cuts = Vec::with_capacity(n);
                for _ in 0..n {
                    let view = r.view()?;
                    let upto = r.u64s("cut vector")?;
                    let h = r.count("holder count")?;
                    let holders = (0..h)
                        .map(|_| r.u16("holder"))
                        .collect::<Result<Vec<_>, _>>()?;
                    if holders.len() != upto.len() {
                        return Err(r.err("holder count"));
                    }
                    cuts.push(OldViewCut {
                        view,
                        upto,
                        holders,
                    });
                }
                Message::Cut { proposal, cuts }
            }
            kind::READY => Message::Ready {
                proposal: r.view()?,
            },
            kind::INSTALL => {
                let proposal = r.view()?;
                let n = r.count("group table")?;
                let groups = (0..n)
                    .map(|_| r.strings("group list"))
                    .collect::<Result<Vec<_>, _>>()?;
                Message::Install { proposal, groups }
            }
            kind::LEAVE => Message::Leave,
            kind::LEAVE_ACK => Message::LeaveAck,
            _ => {
                return Err(WireError::Field {
                    what: "message kind",
                    offset: offset - MESSAGE_HEADER_LEN,
                });
            }
        };
        r.end()?;
        Ok(m)
    }

    /// Appends kind, length and body to `out`. Returns the bytes written.
    pub fn emit(&self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.extend_from_slice(&[0, 0, 0]);
        let mut w = Writer(out);
        let k = match self {
            Message::Data { origin, seq, item } => {
                w.u16(*origin);
                w.u64(*seq);
                match item {
                    Item::App {
                        group,
                        order,
                        payload,
                    } => {
                        w.u8(order_kind(*order));
                        w.string(group);
                        w.0.extend_from_slice(payload);
                    }
                    Item::Sequence { origin, seq } => {
                        w.u8(item_kind::SEQUENCE);
                        w.u16(*origin);
                        w.u64(*seq);
                    }
                    Item::Join(g) => {
                        w.u8(item_kind::JOIN);
                        w.string(g);
                    }
                    Item::Leave(g) => {
                        w.u8(item_kind::LEAVE);
                        w.string(g);
                    }
                    Item::Fragment(f) => {
                        w.u8(item_kind::FRAGMENT);
                        w.u8(order_kind(f.order));
                        w.string(&f.group);
                        w.u32(f.total);
                        w.u32(f.count);
                        w.u32(f.index);
                        w.0.extend_from_slice(&f.bytes);
                    }
                }
                kind::DATA
            }
            Message::Probe {
                reply,
                heartbeat,
                acks,
                timing,
            } => {
                let timed = *timing != ProbeTiming::default();
                w.u8(u8::from(*reply) | (u8::from(timed) << 1));
                w.u64(*heartbeat);
                w.u64s(acks);
                if timed {
                    w.u64(timing.stamp);
                    w.u16(timing.ask);
                    w.u64(timing.echo);
                }
                kind::PROBE
            }
            Message::Nack { origin, from, to } => {
                w.u16(*origin);
                w.u64(*from);
                w.u64(*to);
                kind::NACK
            }
            Message::PingReq { target } => {
                w.member(target);
                kind::PING_REQ
            }
            Message::Alive { target } => {
                w.member(target);
                kind::ALIVE
            }
            Message::Suspect { target, stuck } => {
                w.member(target);
                w.u8(u8::from(*stuck));
                kind::SUSPECT
            }
            Message::Discover { leader, hears_you } => {
                w.member(leader);
                w.u8(u8::from(*hears_you));
                kind::DISCOVER
            }
            Message::Propose { proposal, members } => {
                w.view(*proposal);
                w.count(members.len());
                for m in members.iter().take(MAX_LIST) {
                    w.member(m);
                }
                kind::PROPOSE
            }
            Message::Flush {
                proposal,
                old_view,
                received,
                groups,
            } => {
                w.view(*proposal);
                w.view(*old_view);
                w.u64s(received);
                w.strings(groups);
                kind::FLUSH
            }
            Message::Cut { proposal, cuts } => {
                w.view(*proposal);
                w.count(cuts.len());
                for c in cuts.iter().take(MAX_LIST) {
                    w.view(c.view);
                    w.u64s(&c.upto);
                    w.count(c.holders.len());
                    for h in c.holders.iter().take(MAX_LIST) {
                        w.u16(*h);
                    }
                }
                kind::CUT
            }
            Message::Ready { proposal } => {
                w.view(*proposal);
                kind::READY
            }
            Message::Install { proposal, groups } => {
                w.view(*proposal);
                w.count(groups.len());
                for g in groups.iter().take(MAX_LIST) {
                    w.strings(g);
                }
                kind::INSTALL
            }
            Message::Leave => kind::LEAVE,
            Message::LeaveAck => kind::LEAVE_ACK,
        };
        let len = out.len() - start - MESSAGE_HEADER_LEN;
        out[start] = k;
        let len16 = u16::try_from(len).unwrap_or(u16::MAX);
        out[start + 1..start + 3].copy_from_slice(&len16.to_be_bytes());
        out.len() - start
    }

    /// Bytes this message takes on the wire.
    pub fn wire_len(&self) -> usize {
        let mut v = Vec::new();
        self.emit(&mut v)
    }
}

/// Bytes of a datagram around an app payload: the most a header, a data message and a MAC take,
/// so that any payload up to `mtu - app_overhead(group)` fits in one datagram.
pub fn app_overhead(group_len: usize) -> usize {
    app_overhead_for(MAX_NAME_LEN, true, group_len)
}

/// Bytes of a datagram around an app payload for a sender whose name is `name_len` bytes, with
/// or without a MAC: a header, one data message and the item's group name.
pub fn app_overhead_for(name_len: usize, mac: bool, group_len: usize) -> usize {
    HEADER_FIXED_LEN
        + name_len
        + if mac { MAC_LEN } else { 0 }
        + MESSAGE_HEADER_LEN
        + 2
        + 8
        + 1
        + 1
        + group_len
}

/// Bytes a [`Fragment`] adds to an app item: order, total, count and index.
pub const FRAGMENT_EXTRA: usize = 1 + 4 + 4 + 4;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> Repr {
        Repr {
            cluster_id: 7,
            sender: MemberId::new("node-a", 42),
            view: ViewId {
                epoch: 3,
                coordinator: 9,
            },
            number: 5,
            mac: false,
            seal: false,
        }
    }

    fn sample_messages() -> Vec<Message> {
        let m = MemberId::new("b", 1);
        vec![
            Message::Data {
                origin: 2,
                seq: 9,
                item: Item::App {
                    group: "ec_cluster".into(),
                    order: Order::Agreed,
                    payload: b"hi".to_vec(),
                },
            },
            Message::Data {
                origin: 0,
                seq: 1,
                item: Item::Sequence { origin: 2, seq: 9 },
            },
            Message::Data {
                origin: 1,
                seq: 3,
                item: Item::Join("ec_console".into()),
            },
            Message::Probe {
                reply: true,
                heartbeat: 4,
                acks: vec![1, 2, 3],
                timing: ProbeTiming::default(),
            },
            Message::Probe {
                reply: false,
                heartbeat: 5,
                acks: vec![4],
                timing: ProbeTiming {
                    stamp: 7,
                    ask: 2,
                    echo: 6,
                },
            },
            Message::Nack {
                origin: 1,
                from: 2,
                to: 5,
            },
            Message::PingReq { target: m.clone() },
            Message::Alive { target: m.clone() },
            Message::Suspect {
                target: m.clone(),
                stuck: true,
            },
            Message::Discover {
                leader: m.clone(),
                hears_you: true,
            },
            Message::Propose {
                proposal: ViewId {
                    epoch: 4,
                    coordinator: 1,
                },
                members: vec![m.clone(), MemberId::new("c", 2)],
            },
            Message::Flush {
                proposal: ViewId::default(),
                old_view: ViewId::default(),
                received: vec![3, 4],
                groups: vec!["g".into()],
            },
            Message::Cut {
                proposal: ViewId::default(),
                cuts: vec![OldViewCut {
                    view: ViewId::default(),
                    upto: vec![1, 2],
                    holders: vec![0, 1],
                }],
            },
            Message::Ready {
                proposal: ViewId::default(),
            },
            Message::Install {
                proposal: ViewId::default(),
                groups: vec![vec!["a".into()], vec![]],
            },
            Message::Data {
                origin: 1,
                seq: 4,
                item: Item::Fragment(Fragment {
                    group: "g".into(),
                    order: Order::Fifo,
                    total: 5000,
                    count: 4,
                    index: 3,
                    bytes: vec![9; 1250].into(),
                }),
            },
            Message::Leave,
            Message::LeaveAck,
        ]
    }

    /// A data message carrying the second of three pieces of a 10-byte agreed message to "ab".
    static FRAGMENT_BYTES: [u8; 34] = [
        0x01, 0x00, 0x1f, // kind DATA, body length 31
        0x00, 0x02, // origin 2
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, // seq 7
        0x05, // item kind FRAGMENT
        0x01, // agreed
        0x02, b'a', b'b', // group "ab"
        0x00, 0x00, 0x00, 0x0a, // total 10
        0x00, 0x00, 0x00, 0x03, // count 3
        0x00, 0x00, 0x00, 0x01, // index 1
        b'x', b'y', b'z', b'w', // bytes
    ];

    fn fragment_repr() -> Message {
        Message::Data {
            origin: 2,
            seq: 7,
            item: Item::Fragment(Fragment {
                group: "ab".into(),
                order: Order::Agreed,
                total: 10,
                count: 3,
                index: 1,
                bytes: b"xyzw".to_vec().into(),
            }),
        }
    }

    #[test]
    fn fragment_golden_bytes() {
        let m = Message::parse(FRAGMENT_BYTES[0], &FRAGMENT_BYTES[3..], 3).expect("parse");
        assert_eq!(m, fragment_repr());
        let mut out = Vec::new();
        fragment_repr().emit(&mut out);
        assert_eq!(out, FRAGMENT_BYTES);
    }

    #[test]
    fn inconsistent_fragment_headers_are_refused_with_their_offset() {
        let cases: [(usize, u8, &str); 5] = [
            (14, 7, "fragment order"),
            (25, 1, "fragment count"), // count 1: a whole message is not a fragment
            (25, 20, "fragment count"), // count above total
            (29, 3, "fragment index"), // index == count
            (21, 2, "fragment bytes"), // total 2 < 4 bytes carried (count 3 > total first)
        ];
        for (at, value, what) in cases {
            let mut b = FRAGMENT_BYTES;
            b[at] = value;
            let err = Message::parse(b[0], &b[3..], 3).expect_err(what);
            let WireError::Field { what: w, .. } = err else {
                panic!("{what}: {err:?}");
            };
            if at == 21 {
                assert_eq!(w, "fragment count", "count 3 above total 2 is caught first");
            } else {
                assert_eq!(w, what);
            }
        }
        let empty = &FRAGMENT_BYTES[..30];
        let mut b = empty.to_vec();
        b[2] = 27;
        assert!(Message::parse(b[0], &b[3..], 3).is_err(), "no bytes");
    }

    #[test]
    fn datagram_round_trips() {
        let mut buf = Vec::new();
        header().emit(&mut buf);
        let msgs = sample_messages();
        for m in &msgs {
            m.emit(&mut buf);
        }
        let p = Packet::new_checked(&buf[..]).expect("valid");
        assert_eq!(Repr::parse(&p).expect("header"), header());
        let parsed: Vec<Message> = p.messages().collect::<Result<_, _>>().expect("messages");
        assert_eq!(parsed, msgs);
    }

    #[test]
    fn errors_carry_offsets() {
        let mut buf = Vec::new();
        header().emit(&mut buf);
        let body_at = buf.len();
        buf.extend_from_slice(&[kind::NACK, 0, 2, 0, 0]);
        let p = Packet::new_checked(&buf[..]).expect("header is fine");
        let err = p.messages().next().expect("one").expect_err("short nack");
        assert_eq!(
            err,
            WireError::Field {
                what: "nack from",
                offset: body_at + 5
            }
        );
        assert_eq!(
            Packet::new_checked(&[2u8; 50][..]).expect_err("version"),
            WireError::Version(2)
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&p);
                for m in p.messages() {
                    let _ = m;
                }
            }
            // Also with a valid header in front, so the message parsers see the random bytes.
            let mut buf = Vec::new();
            header().emit(&mut buf);
            buf.extend_from_slice(&bytes);
            let p = Packet::new_checked(&buf[..]).expect("valid header");
            for m in p.messages() {
                let _ = m;
            }
        }

        #[test]
        fn fragments_round_trip_or_are_refused(order in 0u8..3, group in "[a-z_]{0,64}",
                                              total in any::<u32>(), count in any::<u32>(), index in any::<u32>(),
                                              bytes in proptest::collection::vec(any::<u8>(), 0..1300)) {
            let m = Message::Data { origin: 1, seq: 1, item: Item::Fragment(Fragment {
                group, order: [Order::Fifo, Order::Agreed, Order::Safe][usize::from(order)], total, count, index,
                bytes: bytes.clone().into() }) };
            let mut buf = Vec::new();
            m.emit(&mut buf);
            let valid = count >= 2 && count <= total && index < count && !bytes.is_empty()
                && bytes.len() <= total as usize;
            match Message::parse(buf[0], &buf[3..], 3) {
                Ok(p) => { prop_assert!(valid); prop_assert_eq!(p, m); }
                Err(_) => prop_assert!(!valid),
            }
        }

        #[test]
        fn data_round_trips(origin in any::<u16>(), seq in 1u64.., agreed in any::<bool>(), order in 0u8..3,
                            group in "[a-z_]{0,64}", payload in proptest::collection::vec(any::<u8>(), 0..300),
                            acks in proptest::collection::vec(any::<u64>(), 0..20),
                            stamp in any::<u64>(), ask in any::<u16>(), echo in any::<u64>()) {
            let msgs = vec![
                Message::Data { origin, seq, item: Item::App {
                    group, order: [Order::Fifo, Order::Agreed, Order::Safe][usize::from(order)], payload } },
                Message::Probe { reply: agreed, heartbeat: seq, acks,
                    timing: ProbeTiming { stamp, ask, echo } },
            ];
            let mut buf = Vec::new();
            header().emit(&mut buf);
            for m in &msgs { m.emit(&mut buf); }
            let p = Packet::new_checked(&buf[..]).expect("valid");
            let parsed: Vec<Message> = p.messages().collect::<Result<_, _>>().expect("parse");
            prop_assert_eq!(parsed, msgs);
        }
    }
}
