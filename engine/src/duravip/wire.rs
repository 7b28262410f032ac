//! The DuraVIP messages exchanged in agreed order on the cluster group, smoltcp style: a checked
//! [`Packet`] view of the fixed header and a plain [`Repr`] with `parse` and `emit`.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! 0      1      2                              10
//! +------+------+------------------------------+----------------------
//! | ver  | kind | view id (u64)                | body (depends on kind)
//! +------+------+------------------------------+----------------------
//! ```
//!
//! - `ver` is [`VERSION`]; any other version is refused (a mixed-version cluster must not agree on
//!   ownership by accident).
//! - kind 1 STATE: `flags u8` (bit 0: mature, bit 1: withdrawn by `release all`), `count u16`, `count` × address, `held u16`, `held` × ip.
//!   An address is `ip`, `services u8`, `flags u8` (bit 0: preference present, bit 1: follows
//!   present), `bindings u16`, `bindings` × string, then the preference string and the followed ip
//!   when their flags are set. Addresses and held ips are strictly ascending.
//! - kind 2 MATURE: empty body.
//! - kind 3 BALANCE: `count u16`, `count` × (`ip`, `from u16`, `to u16`) with view indices.
//! - kind 4 MOVE: `ip`, node name string.
//! - kind 5 is reserved (an earlier draft's RELEASE_ALL; `release all` is now a STATE flag).
//! - kind 6 RELEASED: `count u16`, `count` × ip, strictly ascending.
//! - An ip is `family u8` (4 or 6) then 4 or 16 bytes; a string is `len u8` then UTF-8 bytes, never
//!   empty. Trailing bytes are an error.
//!
//! Parsing never panics and never allocates more than the input justifies: counts are bounded by
//! [`MAX_ADDRESSES`] and by the bytes that remain.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::announce::{AddrConfig, Announcement, Services};

/// The wire version this code speaks.
pub const VERSION: u8 = 1;
/// Bytes before the body.
pub const HEADER_LEN: usize = 10;
/// Most addresses one message may carry: Momentum's documented maximum of IP aliases (10,240) with
/// room for follower listener addresses.
pub const MAX_ADDRESSES: usize = 16_384;
/// Most binding names one address may carry.
pub const MAX_BINDINGS: usize = 256;

/// What was wrong with a message and where (byte offset from the start of the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at offset {offset}")]
pub struct WireError {
    pub offset: usize,
    pub what: WireErrorKind,
}

/// The kinds of malformed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireErrorKind {
    #[error("truncated message")]
    Truncated,
    #[error("unsupported version")]
    Version,
    #[error("unknown message kind")]
    Kind,
    #[error("bad address family")]
    Family,
    #[error("bad flag or boolean value")]
    Flags,
    #[error("string is empty or not UTF-8")]
    Text,
    #[error("count exceeds its limit")]
    Count,
    #[error("entries not strictly ascending")]
    Order,
    #[error("trailing bytes")]
    Trailing,
    #[error("value does not fit the wire format")]
    TooLarge,
}

fn err(offset: usize, what: WireErrorKind) -> WireError {
    WireError { offset, what }
}

/// A read-only or writable view of a message's fixed header.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks; accessors may panic on a short buffer. Use
    /// [`Packet::new_checked`] for anything received.
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after checking that the header is complete and the version is [`VERSION`],
    /// so the accessors cannot panic.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Packet { buffer };
        let b = p.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(err(b.len(), WireErrorKind::Truncated));
        }
        if b[0] != VERSION {
            return Err(err(0, WireErrorKind::Version));
        }
        Ok(p)
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    pub fn view_id(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.buffer.as_ref()[2..10]);
        u64::from_be_bytes(b)
    }

    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_version(&mut self, v: u8) {
        self.buffer.as_mut()[0] = v;
    }

    pub fn set_kind(&mut self, k: u8) {
        self.buffer.as_mut()[1] = k;
    }

    pub fn set_view_id(&mut self, id: u64) {
        self.buffer.as_mut()[2..10].copy_from_slice(&id.to_be_bytes());
    }

    pub fn body_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// One ownership change the leader's balancing round asks for: `ip` from the member at view index
/// `from` to the member at view index `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BalanceMove {
    pub ip: IpAddr,
    pub from: u16,
    pub to: u16,
}

/// The messages, all scoped to one view: a receiver ignores a message whose view id is not the one
/// it has installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// After every view change, every `view_broadcast_interval`, on `cluster duravip announce
    /// view` and after a configuration reload: the sender's announcement.
    State(Announcement),
    /// The leader's word that the view has been stable for `view_mature_time`.
    Mature,
    /// The leader's balancing round.
    Balance(Vec<BalanceMove>),
    /// `cluster duravip move <ip> to <node>`.
    Move { ip: IpAddr, to: String },
    /// The sender has unplumbed these addresses; their new owners may now acquire them.
    Released(Vec<IpAddr>),
}

impl Message {
    fn kind(&self) -> u8 {
        match self {
            Message::State(_) => 1,
            Message::Mature => 2,
            Message::Balance(_) => 3,
            Message::Move { .. } => 4,
            Message::Released(_) => 6,
        }
    }
}

/// A whole message: the view it belongs to and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    pub view_id: u64,
    pub message: Message,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(err(self.pos, WireErrorKind::Truncated))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A count, bounded by `max` and by the bytes left (each entry takes at least `min_entry`).
    fn count(&mut self, max: usize, min_entry: usize) -> Result<usize, WireError> {
        let at = self.pos;
        let n = usize::from(self.u16()?);
        let left = self.buf.len() - self.pos;
        if n > max || n.saturating_mul(min_entry) > left {
            return Err(err(at, WireErrorKind::Count));
        }
        Ok(n)
    }

    fn ip(&mut self) -> Result<IpAddr, WireError> {
        let at = self.pos;
        match self.u8()? {
            4 => {
                let b = self.take(4)?;
                Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
            }
            6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(self.take(16)?);
                Ok(IpAddr::V6(Ipv6Addr::from(a)))
            }
            _ => Err(err(at, WireErrorKind::Family)),
        }
    }

    fn string(&mut self) -> Result<String, WireError> {
        let at = self.pos;
        let n = usize::from(self.u8()?);
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) if !s.is_empty() => Ok(s.to_owned()),
            _ => Err(err(at, WireErrorKind::Text)),
        }
    }

    fn ascending_ips(&mut self) -> Result<Vec<IpAddr>, WireError> {
        let n = self.count(MAX_ADDRESSES, 5)?;
        let mut v: Vec<IpAddr> = Vec::with_capacity(n);
        for _ in 0..n {
            let at = self.pos;
            let ip = self.ip()?;
            if v.last().is_some_and(|l| *l >= ip) {
                return Err(err(at, WireErrorKind::Order));
            }
            v.push(ip);
        }
        Ok(v)
    }

    fn addr(&mut self) -> Result<AddrConfig, WireError> {
        let ip = self.ip()?;
        let at = self.pos;
        let services = Services::from_bits(self.u8()?).ok_or(err(at, WireErrorKind::Flags))?;
        let at = self.pos;
        let flags = self.u8()?;
        if flags & !3 != 0 {
            return Err(err(at, WireErrorKind::Flags));
        }
        let n = self.count(MAX_BINDINGS, 2)?;
        let mut bindings = BTreeSet::new();
        for _ in 0..n {
            let at = self.pos;
            if !bindings.insert(self.string()?) {
                return Err(err(at, WireErrorKind::Order));
            }
        }
        let preference = if flags & 1 != 0 {
            Some(self.string()?)
        } else {
            None
        };
        let follows = if flags & 2 != 0 {
            Some(self.ip()?)
        } else {
            None
        };
        Ok(AddrConfig {
            ip,
            bindings,
            services,
            preference,
            follows,
        })
    }
}

struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn u16(&mut self, n: usize) -> Result<(), WireError> {
        let v = u16::try_from(n).map_err(|_| err(self.out.len(), WireErrorKind::TooLarge))?;
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    fn ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => {
                self.out.push(4);
                self.out.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                self.out.push(6);
                self.out.extend_from_slice(&a.octets());
            }
        }
    }

    fn string(&mut self, s: &str) -> Result<(), WireError> {
        let n = u8::try_from(s.len())
            .ok()
            .filter(|&n| n > 0)
            .ok_or(err(self.out.len(), WireErrorKind::Text))?;
        self.out.push(n);
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn ips(&mut self, ips: &[IpAddr]) -> Result<(), WireError> {
        if ips.len() > MAX_ADDRESSES {
            return Err(err(self.out.len(), WireErrorKind::Count));
        }
        if ips.windows(2).any(|w| w[0] >= w[1]) {
            return Err(err(self.out.len(), WireErrorKind::Order));
        }
        self.u16(ips.len())?;
        for ip in ips {
            self.ip(*ip);
        }
        Ok(())
    }
}

impl Repr {
    /// Parses a checked packet. Refuses unknown kinds, out-of-range values, non-canonical order
    /// and trailing bytes; never panics.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, WireError> {
        let mut r = Reader {
            buf: packet.buffer.as_ref(),
            pos: HEADER_LEN,
        };
        let message = match packet.kind() {
            1 => {
                let at = r.pos;
                let flags = r.u8()?;
                if flags & !3 != 0 {
                    return Err(err(at, WireErrorKind::Flags));
                }
                let n = r.count(MAX_ADDRESSES, 9)?;
                let mut addresses: Vec<AddrConfig> = Vec::with_capacity(n);
                for _ in 0..n {
                    let at = r.pos;
                    let a = r.addr()?;
                    if addresses.last().is_some_and(|l| l.ip >= a.ip) {
                        return Err(err(at, WireErrorKind::Order));
                    }
                    addresses.push(a);
                }
                let held = r.ascending_ips()?;
                Message::State(Announcement {
                    mature: flags & 1 != 0,
                    withdrawn: flags & 2 != 0,
                    addresses,
                    held,
                })
            }
            2 => Message::Mature,
            3 => {
                let n = r.count(MAX_ADDRESSES, 9)?;
                let mut moves = Vec::with_capacity(n);
                for _ in 0..n {
                    let ip = r.ip()?;
                    let from = r.u16()?;
                    let to = r.u16()?;
                    moves.push(BalanceMove { ip, from, to });
                }
                Message::Balance(moves)
            }
            4 => {
                let ip = r.ip()?;
                let to = r.string()?;
                Message::Move { ip, to }
            }
            6 => Message::Released(r.ascending_ips()?),
            _ => return Err(err(1, WireErrorKind::Kind)),
        };
        if r.pos != r.buf.len() {
            return Err(err(r.pos, WireErrorKind::Trailing));
        }
        Ok(Repr {
            view_id: packet.view_id(),
            message,
        })
    }

    /// Parses a whole message from bytes.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Repr, WireError> {
        Repr::parse(&Packet::new_checked(bytes)?)
    }

    /// Encodes the message. Fails only when a value does not fit the format (a string longer than
    /// 255 bytes or empty, more than [`MAX_ADDRESSES`] entries, entries out of order), which the
    /// machine prevents for what it sends.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut w = Writer {
            out: vec![0u8; HEADER_LEN],
        };
        {
            let mut p = Packet::new_unchecked(&mut w.out[..]);
            p.set_version(VERSION);
            p.set_kind(self.message.kind());
            p.set_view_id(self.view_id);
        }
        match &self.message {
            Message::State(a) => {
                w.out
                    .push(u8::from(a.mature) | (u8::from(a.withdrawn) << 1));
                if a.addresses.len() > MAX_ADDRESSES
                    || a.addresses.windows(2).any(|p| p[0].ip >= p[1].ip)
                {
                    return Err(err(w.out.len(), WireErrorKind::Order));
                }
                w.u16(a.addresses.len())?;
                for ac in &a.addresses {
                    w.ip(ac.ip);
                    w.out.push(ac.services.bits());
                    let flags =
                        u8::from(ac.preference.is_some()) | (u8::from(ac.follows.is_some()) << 1);
                    w.out.push(flags);
                    if ac.bindings.len() > MAX_BINDINGS {
                        return Err(err(w.out.len(), WireErrorKind::Count));
                    }
                    w.u16(ac.bindings.len())?;
                    for b in &ac.bindings {
                        w.string(b)?;
                    }
                    if let Some(p) = &ac.preference {
                        w.string(p)?;
                    }
                    if let Some(f) = ac.follows {
                        w.ip(f);
                    }
                }
                w.ips(&a.held)?;
            }
            Message::Mature => {}
            Message::Balance(moves) => {
                if moves.len() > MAX_ADDRESSES {
                    return Err(err(w.out.len(), WireErrorKind::Count));
                }
                w.u16(moves.len())?;
                for m in moves {
                    w.ip(m.ip);
                    w.out.extend_from_slice(&m.from.to_be_bytes());
                    w.out.extend_from_slice(&m.to.to_be_bytes());
                }
            }
            Message::Move { ip, to } => {
                w.ip(*ip);
                w.string(to)?;
            }
            Message::Released(ips) => w.ips(ips)?,
        }
        Ok(w.out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip_strategy() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        ]
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z0-9-]{1,20}"
    }

    fn addr_strategy() -> impl Strategy<Value = AddrConfig> {
        (
            ip_strategy(),
            proptest::collection::btree_set(name(), 0..4),
            1u8..4,
            proptest::option::of(name()),
            proptest::option::of(ip_strategy()),
        )
            .prop_map(|(ip, bindings, s, preference, follows)| AddrConfig {
                ip,
                bindings,
                services: Services::from_bits(s).expect("1..4 are valid bits"),
                preference,
                follows,
            })
    }

    pub(crate) fn message_strategy() -> impl Strategy<Value = Message> {
        prop_oneof![
            (
                any::<bool>(),
                any::<bool>(),
                proptest::collection::vec(addr_strategy(), 0..8),
                proptest::collection::btree_set(ip_strategy(), 0..8)
            )
                .prop_map(|(mature, withdrawn, mut addresses, held)| {
                    addresses.sort_by_key(|a| a.ip);
                    addresses.dedup_by_key(|a| a.ip);
                    Message::State(Announcement {
                        mature,
                        withdrawn,
                        addresses,
                        held: held.into_iter().collect(),
                    })
                }),
            Just(Message::Mature),
            proptest::collection::vec(
                (ip_strategy(), any::<u16>(), any::<u16>())
                    .prop_map(|(ip, from, to)| BalanceMove { ip, from, to }),
                0..8
            )
            .prop_map(Message::Balance),
            (ip_strategy(), name()).prop_map(|(ip, to)| Message::Move { ip, to }),
            proptest::collection::btree_set(ip_strategy(), 0..8)
                .prop_map(|s| Message::Released(s.into_iter().collect())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Repr::parse_bytes(&bytes);
        }

        #[test]
        fn random_bodies_after_a_valid_header_never_panic(
            kind in 0u8..8,
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut bytes = vec![VERSION, kind, 0, 0, 0, 0, 0, 0, 0, 9];
            bytes.extend_from_slice(&body);
            let _ = Repr::parse_bytes(&bytes);
        }

        #[test]
        fn round_trip(view_id in any::<u64>(), message in message_strategy()) {
            let repr = Repr { view_id, message };
            let bytes = repr.to_bytes().expect("generated values fit the format");
            prop_assert_eq!(Repr::parse_bytes(&bytes).expect("own output parses"), repr.clone());
            // Every strict prefix is refused, never misread.
            for cut in 0..bytes.len() {
                prop_assert!(Repr::parse_bytes(&bytes[..cut]).is_err());
            }
        }
    }

    /// Golden bytes, written by hand from the layout in the module documentation: a field swapped
    /// in both `emit` and `parse` still round-trips, but fails here.
    #[test]
    fn golden_bytes() {
        let ip = |s: &str| -> IpAddr { s.parse().expect("ip") };
        let header = |kind: u8| vec![1, kind, 0, 0, 0, 0, 0, 0, 0, 7];
        let cases: Vec<(Message, Vec<u8>)> = vec![
            (Message::Mature, vec![]),
            (
                Message::Balance(vec![BalanceMove {
                    ip: ip("10.0.0.1"),
                    from: 2,
                    to: 0x0103,
                }]),
                vec![0, 1, 4, 10, 0, 0, 1, 0, 2, 1, 3],
            ),
            (
                Message::Move {
                    ip: ip("::1"),
                    to: "n1".into(),
                },
                [&[6u8][..], &[0; 15], &[1, 2, b'n', b'1']].concat(),
            ),
            (
                Message::Released(vec![ip("10.0.0.1"), ip("10.0.0.2")]),
                vec![0, 2, 4, 10, 0, 0, 1, 4, 10, 0, 0, 2],
            ),
            (
                Message::State(Announcement {
                    mature: true,
                    withdrawn: true,
                    addresses: vec![
                        AddrConfig {
                            ip: ip("10.0.0.1"),
                            bindings: ["b".to_string()].into(),
                            services: Services::MULTIVIP,
                            preference: Some("n2".into()),
                            follows: None,
                        },
                        AddrConfig {
                            ip: ip("10.0.1.1"),
                            bindings: Default::default(),
                            services: Services::SMTP,
                            preference: None,
                            follows: Some(ip("10.0.0.1")),
                        },
                    ],
                    held: vec![ip("10.0.0.1")],
                }),
                vec![
                    0b11, // flags: mature, withdrawn
                    0, 2, // two addresses
                    4, 10, 0, 0, 1,    // ip
                    1,    // services: multivip
                    0b01, // flags: preference
                    0, 1, 1, b'b', // one binding "b"
                    2, b'n', b'2', // preference "n2"
                    4, 10, 0, 1, 1,    // ip
                    2,    // services: smtp
                    0b10, // flags: follows
                    0, 0, // no binding
                    4, 10, 0, 0, 1, // follows 10.0.0.1
                    0, 1, 4, 10, 0, 0, 1, // one held address
                ],
            ),
        ];
        for (message, body) in cases {
            let kind = message.kind();
            let repr = Repr {
                view_id: 7,
                message,
            };
            let want = [header(kind), body].concat();
            assert_eq!(repr.to_bytes().expect("fits"), want, "{repr:?}");
            assert_eq!(Repr::parse_bytes(&want).expect("parses"), repr);
        }
    }

    #[test]
    fn header_fields_and_errors_carry_offsets() {
        let repr = Repr {
            view_id: 0x0102_0304_0506_0708,
            message: Message::Move {
                ip: "10.0.0.1".parse().expect("ip"),
                to: "n1".into(),
            },
        };
        let mut bytes = repr.to_bytes().expect("fits");
        let p = Packet::new_checked(&bytes[..]).expect("complete header");
        assert_eq!(
            (p.version(), p.kind(), p.view_id()),
            (1, 4, 0x0102030405060708)
        );
        bytes.push(0);
        assert_eq!(
            Repr::parse_bytes(&bytes),
            Err(WireError {
                offset: bytes.len() - 1,
                what: WireErrorKind::Trailing
            })
        );
        bytes[0] = 2;
        assert_eq!(
            Repr::parse_bytes(&bytes).map_err(|e| e.what),
            Err(WireErrorKind::Version)
        );
        // A count larger than the remaining bytes is refused before allocating.
        let bogus = [VERSION, 6, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
        assert_eq!(
            Repr::parse_bytes(&bogus),
            Err(WireError {
                offset: 10,
                what: WireErrorKind::Count
            })
        );
        // Unordered released list.
        let unordered = Repr {
            view_id: 1,
            message: Message::Released(vec![
                "10.0.0.2".parse().expect("ip"),
                "10.0.0.1".parse().expect("ip"),
            ]),
        };
        assert_eq!(
            unordered.to_bytes().map_err(|e| e.what),
            Err(WireErrorKind::Order)
        );
    }
}
