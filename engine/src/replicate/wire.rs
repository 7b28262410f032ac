//! Wire format of replication messages: update batches and snapshots.
//!
//! A message travels as one transport message (the group transport delivers it reliably and in
//! FIFO order per sender). Layout, all integers big-endian or LEB128 varints:
//!
//! ```text
//! message  := magic "CR" | version u8 (= 1) | flags u8 | sections u16 | [stamp u64] | section*
//!             flags bit 0 STAMPED: `stamp` is present, the wall-clock time (microseconds since
//!             the Unix epoch) of the oldest update in the message, for receivers' replication
//!             lag; other bits must be zero
//! section  := name_len u8 | name (UTF-8, 1..=255) | flags u8 | updates u16 | update*
//!             flags bit 0 RESET: drop the sender's contribution to this object first (the first
//!             section of a snapshot); bit 1 REQUEST: the sender (re)created this object (a
//!             configuration reload) and asks every member for its contribution to it; other bits
//!             must be zero
//! update   := key op
//! key      := 1 len u8 addr[4]   (IPv4 prefix, len <= 32)
//!           | 2 len u8 addr[16]  (IPv6 prefix, len <= 128)
//!           | 3 text              (string key)
//!           | 4 text window:varint item   (series window; item is a key of type 1, 2 or 3)
//! text     := len varint (<= 65535) | UTF-8 bytes
//! op       := 1 delta:zigzag-varint                       (add)
//!           | 2 version:varint ttl:varint len:varint value (cache set, value <= 65535 bytes)
//!           | 3 version:varint ttl:varint len:varint value writer:text
//!                                                    (cache set relayed for another writer)
//! ```
//!
//! Parsing never panics and never trusts a length: every error names the byte offset where the
//! message stopped making sense.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::update::{Key, Op, SeriesItem, Update};

/// The two magic bytes that open every replication message.
pub const MAGIC: [u8; 2] = *b"CR";
/// The only version this code emits and accepts.
pub const VERSION: u8 = 1;
/// Bytes of the fixed header (an unstamped message's sections start here).
pub const HEADER_LEN: usize = 6;
/// Bytes of the optional stamp after the fixed header.
pub const STAMP_LEN: usize = 8;
/// Header flag: the stamp follows the fixed header.
pub const HEADER_STAMPED: u8 = 1;
/// Largest string key or cache value.
pub const MAX_TEXT: usize = 65_535;
/// Section flag: the receiver drops the sender's contribution before applying the section.
pub const FLAG_RESET: u8 = 1;
/// Section flag: the sender asks every member for a snapshot of its contribution to the object.
pub const FLAG_REQUEST: u8 = 2;

/// Why a message was rejected, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ended inside a field.
    #[error("truncated at byte {offset}: {what} needs more bytes")]
    Truncated {
        /// Offset of the field that did not fit.
        offset: usize,
        /// The field.
        what: &'static str,
    },
    /// A field held a value this version does not allow.
    #[error("malformed at byte {offset}: {what}")]
    Malformed {
        /// Offset of the field.
        offset: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// The message is from another protocol version.
    #[error("unsupported replication version {version} at byte 2")]
    Version {
        /// The version byte found.
        version: u8,
    },
    /// The output buffer is smaller than [`Message::buffer_len`].
    #[error("output buffer of {have} bytes, message needs {need}")]
    BufferTooSmall {
        /// Bytes available.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
}

/// Zero-copy view of a replication message with checked header accessors.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking anything.
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps `buffer` after checking the header: length, magic and version.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Packet { buffer };
        packet.check()?;
        Ok(packet)
    }

    fn check(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated {
                offset: data.len(),
                what: "header",
            });
        }
        if data[0..2] != MAGIC {
            return Err(WireError::Malformed {
                offset: 0,
                what: "magic is not \"CR\"",
            });
        }
        if data[2] != VERSION {
            return Err(WireError::Version { version: data[2] });
        }
        if data[3] & !HEADER_STAMPED != 0 {
            return Err(WireError::Malformed {
                offset: 3,
                what: "unknown header flag",
            });
        }
        if data[3] & HEADER_STAMPED != 0 && data.len() < HEADER_LEN + STAMP_LEN {
            return Err(WireError::Truncated {
                offset: data.len(),
                what: "stamp",
            });
        }
        Ok(())
    }

    /// The stamp: wall-clock microseconds of the oldest update in the message, if present.
    pub fn stamp(&self) -> Option<u64> {
        let d = self.buffer.as_ref();
        (d[3] & HEADER_STAMPED != 0).then(|| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[HEADER_LEN..HEADER_LEN + STAMP_LEN]);
            u64::from_be_bytes(b)
        })
    }

    fn sections_at(&self) -> usize {
        HEADER_LEN
            + if self.buffer.as_ref()[3] & HEADER_STAMPED != 0 {
                STAMP_LEN
            } else {
                0
            }
    }

    /// Protocol version byte.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[2]
    }

    /// Number of sections announced by the header.
    pub fn section_count(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[4], d[5]])
    }

    /// The bytes after the header (and the stamp).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.sections_at()..]
    }

    /// The whole buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_header(&mut self, flags: u8, sections: u16) {
        let d = self.buffer.as_mut();
        d[0..2].copy_from_slice(&MAGIC);
        d[2] = VERSION;
        d[3] = flags;
        d[4..6].copy_from_slice(&sections.to_be_bytes());
    }
}

/// Updates of one object inside a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The `Replicate` scope name.
    pub object: String,
    /// Drop the sender's contribution to `object` before applying `updates`.
    pub reset: bool,
    /// Ask every member for its contribution to `object` (the sender just created it).
    pub request: bool,
    /// The updates, applied in order.
    pub updates: Vec<Update>,
}

/// A parsed replication message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// Wall-clock microseconds since the Unix epoch of the oldest update in the message (the
    /// STAMPED header flag); receivers measure replication lag against it.
    pub stamp: Option<u64>,
    /// Sections in order.
    pub sections: Vec<Section>,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(WireError::Truncated {
                offset: self.pos,
                what,
            });
        };
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, WireError> {
        let start = self.pos;
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8(what)?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(WireError::Malformed {
                    offset: start,
                    what: "varint overflows 64 bits",
                });
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::Malformed {
            offset: start,
            what: "varint longer than 10 bytes",
        })
    }

    fn text(&mut self, what: &'static str) -> Result<String, WireError> {
        let at = self.pos;
        let len = self.varint(what)?;
        if len > MAX_TEXT as u64 {
            return Err(WireError::Malformed {
                offset: at,
                what: "text longer than 65535 bytes",
            });
        }
        let at = self.pos;
        let bytes = self.take(len as usize, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::Malformed {
            offset: at,
            what: "text is not UTF-8",
        })
    }

    fn plain_key(&mut self, tag: u8, tag_at: usize) -> Result<SeriesItem, WireError> {
        match tag {
            1 => {
                let at = self.pos;
                let len = self.u8("IPv4 prefix length")?;
                let b = self.take(4, "IPv4 address")?;
                let addr = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
                let net = Ipv4Net::new(addr, len).map_err(|_| WireError::Malformed {
                    offset: at,
                    what: "IPv4 prefix length above 32",
                })?;
                Ok(SeriesItem::Net(IpNet::V4(net.trunc())))
            }
            2 => {
                let at = self.pos;
                let len = self.u8("IPv6 prefix length")?;
                let b = self.take(16, "IPv6 address")?;
                let mut octets = [0u8; 16];
                octets.copy_from_slice(b);
                let net = Ipv6Net::new(Ipv6Addr::from(octets), len).map_err(|_| {
                    WireError::Malformed {
                        offset: at,
                        what: "IPv6 prefix length above 128",
                    }
                })?;
                Ok(SeriesItem::Net(IpNet::V6(net.trunc())))
            }
            3 => Ok(SeriesItem::Text(self.text("text key")?)),
            _ => Err(WireError::Malformed {
                offset: tag_at,
                what: "unknown key type",
            }),
        }
    }

    fn key(&mut self) -> Result<Key, WireError> {
        let at = self.pos;
        let tag = self.u8("key type")?;
        if tag == 4 {
            let series = self.text("series name")?;
            let window = self.varint("series window")?;
            let item_at = self.pos;
            let item_tag = self.u8("series item type")?;
            let item = self.plain_key(item_tag, item_at)?;
            return Ok(Key::Series {
                series,
                window,
                item,
            });
        }
        Ok(match self.plain_key(tag, at)? {
            SeriesItem::Net(net) => Key::Net(net),
            SeriesItem::Text(text) => Key::Text(text),
        })
    }

    fn op(&mut self) -> Result<Op, WireError> {
        let at = self.pos;
        match self.u8("operation type")? {
            1 => {
                let z = self.varint("delta")?;
                Ok(Op::Add(((z >> 1) as i64) ^ -((z & 1) as i64)))
            }
            tag @ (2 | 3) => {
                let version = self.varint("cache version")?;
                let ttl_at = self.pos;
                let ttl =
                    u32::try_from(self.varint("cache ttl")?).map_err(|_| WireError::Malformed {
                        offset: ttl_at,
                        what: "ttl above 2^32 seconds",
                    })?;
                let len_at = self.pos;
                let len = self.varint("cache value length")?;
                if len > MAX_TEXT as u64 {
                    return Err(WireError::Malformed {
                        offset: len_at,
                        what: "cache value longer than 65535 bytes",
                    });
                }
                let value = self.take(len as usize, "cache value")?.to_vec();
                let writer = if tag == 3 {
                    Some(self.text("cache writer")?)
                } else {
                    None
                };
                Ok(Op::Set {
                    version,
                    ttl,
                    value,
                    writer,
                })
            }
            _ => Err(WireError::Malformed {
                offset: at,
                what: "unknown operation type",
            }),
        }
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn item_len(item: &SeriesItem) -> usize {
    match item {
        SeriesItem::Net(IpNet::V4(_)) => 1 + 1 + 4,
        SeriesItem::Net(IpNet::V6(_)) => 1 + 1 + 16,
        SeriesItem::Text(t) => 1 + varint_len(t.len() as u64) + t.len(),
    }
}

fn put_item(out: &mut Vec<u8>, item: &SeriesItem) {
    match item {
        SeriesItem::Net(IpNet::V4(n)) => {
            out.extend_from_slice(&[1, n.prefix_len()]);
            out.extend_from_slice(&n.network().octets());
        }
        SeriesItem::Net(IpNet::V6(n)) => {
            out.extend_from_slice(&[2, n.prefix_len()]);
            out.extend_from_slice(&n.network().octets());
        }
        SeriesItem::Text(t) => {
            out.push(3);
            put_text(out, t);
        }
    }
}

fn put_text(out: &mut Vec<u8>, t: &str) {
    put_varint(out, t.len() as u64);
    out.extend_from_slice(t.as_bytes());
}

impl Update {
    /// Encoded size in bytes.
    pub fn buffer_len(&self) -> usize {
        let key = match &self.key {
            Key::Net(net) => item_len(&SeriesItem::Net(*net)),
            Key::Text(t) => item_len(&SeriesItem::Text(t.clone())),
            Key::Series {
                series,
                window,
                item,
            } => {
                1 + varint_len(series.len() as u64)
                    + series.len()
                    + varint_len(*window)
                    + item_len(item)
            }
        };
        let op = match &self.op {
            Op::Add(d) => 1 + varint_len(zigzag(*d)),
            Op::Set {
                version,
                ttl,
                value,
                writer,
            } => {
                1 + varint_len(*version)
                    + varint_len(u64::from(*ttl))
                    + varint_len(value.len() as u64)
                    + value.len()
                    + writer
                        .as_ref()
                        .map_or(0, |w| varint_len(w.len() as u64) + w.len())
            }
        };
        key + op
    }

    /// Whether every length fits the format (strings and values at most 65535 bytes).
    pub fn is_encodable(&self) -> bool {
        let key_ok = match &self.key {
            Key::Net(_) => true,
            Key::Text(t) => t.len() <= MAX_TEXT,
            Key::Series { series, item, .. } => {
                series.len() <= MAX_TEXT
                    && match item {
                        SeriesItem::Text(t) => t.len() <= MAX_TEXT,
                        SeriesItem::Net(_) => true,
                    }
            }
        };
        let op_ok = match &self.op {
            Op::Add(_) => true,
            Op::Set { value, writer, .. } => {
                value.len() <= MAX_TEXT && writer.as_ref().is_none_or(|w| w.len() <= MAX_TEXT)
            }
        };
        key_ok && op_ok
    }

    fn put(&self, out: &mut Vec<u8>) {
        match &self.key {
            Key::Net(net) => put_item(out, &SeriesItem::Net(*net)),
            Key::Text(t) => {
                out.push(3);
                put_text(out, t);
            }
            Key::Series {
                series,
                window,
                item,
            } => {
                out.push(4);
                put_text(out, series);
                put_varint(out, *window);
                put_item(out, item);
            }
        }
        match &self.op {
            Op::Add(d) => {
                out.push(1);
                put_varint(out, zigzag(*d));
            }
            Op::Set {
                version,
                ttl,
                value,
                writer,
            } => {
                out.push(if writer.is_some() { 3 } else { 2 });
                put_varint(out, *version);
                put_varint(out, u64::from(*ttl));
                put_varint(out, value.len() as u64);
                out.extend_from_slice(value);
                if let Some(w) = writer {
                    put_text(out, w);
                }
            }
        }
    }
}

/// Bytes of a section header for `object`.
pub fn section_header_len(object: &str) -> usize {
    1 + object.len() + 1 + 2
}

impl Message {
    /// Parses a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Message, WireError> {
        packet.check()?;
        let mut reader = Reader {
            data: packet.buffer.as_ref(),
            pos: packet.sections_at(),
        };
        let count = packet.section_count();
        let mut sections = Vec::new();
        for _ in 0..count {
            let name_at = reader.pos;
            let name_len = reader.u8("object name length")?;
            if name_len == 0 {
                return Err(WireError::Malformed {
                    offset: name_at,
                    what: "empty object name",
                });
            }
            let name = reader.take(usize::from(name_len), "object name")?;
            let object = String::from_utf8(name.to_vec()).map_err(|_| WireError::Malformed {
                offset: name_at + 1,
                what: "object name is not UTF-8",
            })?;
            let flags_at = reader.pos;
            let flags = reader.u8("section flags")?;
            if flags & !(FLAG_RESET | FLAG_REQUEST) != 0 {
                return Err(WireError::Malformed {
                    offset: flags_at,
                    what: "unknown section flag",
                });
            }
            let n = reader.u16("update count")?;
            // Each update is at least 3 bytes: bound the allocation by what the buffer can hold.
            let remaining = reader.data.len() - reader.pos;
            let mut updates = Vec::with_capacity(usize::from(n).min(remaining / 3));
            for _ in 0..n {
                let key = reader.key()?;
                let op = reader.op()?;
                updates.push(Update { key, op });
            }
            sections.push(Section {
                object,
                reset: flags & FLAG_RESET != 0,
                request: flags & FLAG_REQUEST != 0,
                updates,
            });
        }
        if reader.pos != reader.data.len() {
            return Err(WireError::Malformed {
                offset: reader.pos,
                what: "bytes after the last section",
            });
        }
        Ok(Message {
            stamp: packet.stamp(),
            sections,
        })
    }

    /// Parses raw bytes (header check included).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Message, WireError> {
        Message::parse(&Packet::new_checked(bytes)?)
    }

    /// Encoded size in bytes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + self.stamp.map_or(0, |_| STAMP_LEN)
            + self
                .sections
                .iter()
                .map(|s| {
                    section_header_len(&s.object)
                        + s.updates.iter().map(Update::buffer_len).sum::<usize>()
                })
                .sum::<usize>()
    }

    /// Whether this message can be emitted: at most 65535 sections of at most 65535 updates,
    /// object names of 1..=255 bytes, encodable updates.
    pub fn is_encodable(&self) -> bool {
        self.sections.len() <= usize::from(u16::MAX)
            && self.sections.iter().all(|s| {
                !s.object.is_empty()
                    && s.object.len() <= 255
                    && s.updates.len() <= usize::from(u16::MAX)
                    && s.updates.iter().all(Update::is_encodable)
            })
    }

    /// Writes the message into `packet`, which must hold [`Message::buffer_len`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
    ) -> Result<usize, WireError> {
        let bytes = self.to_bytes()?;
        let have = packet.buffer.as_ref().len();
        if have < bytes.len() {
            return Err(WireError::BufferTooSmall {
                have,
                need: bytes.len(),
            });
        }
        packet.buffer.as_mut()[..bytes.len()].copy_from_slice(&bytes);
        packet.set_header(self.flags(), self.sections.len() as u16);
        Ok(bytes.len())
    }

    fn flags(&self) -> u8 {
        if self.stamp.is_some() {
            HEADER_STAMPED
        } else {
            0
        }
    }

    /// The encoded message.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        if !self.is_encodable() {
            return Err(WireError::Malformed {
                offset: 0,
                what: "message exceeds the format's limits",
            });
        }
        let mut out = Vec::with_capacity(self.buffer_len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.flags());
        out.extend_from_slice(&(self.sections.len() as u16).to_be_bytes());
        if let Some(stamp) = self.stamp {
            out.extend_from_slice(&stamp.to_be_bytes());
        }
        for s in &self.sections {
            out.push(s.object.len() as u8);
            out.extend_from_slice(s.object.as_bytes());
            out.push(
                if s.reset { FLAG_RESET } else { 0 } | if s.request { FLAG_REQUEST } else { 0 },
            );
            out.extend_from_slice(&(s.updates.len() as u16).to_be_bytes());
            for u in &s.updates {
                u.put(&mut out);
            }
        }
        Ok(out)
    }
}

impl Message {
    /// A message with every kind of section flag and key (CIDR v4 and v6, text, series; add,
    /// set and relayed set): the golden test's message and the fuzzers' seed.
    #[doc(hidden)]
    pub fn example() -> Message {
        Message {
            stamp: None,
            sections: vec![
                Section {
                    object: "c".into(),
                    reset: true,
                    request: false,
                    updates: vec![
                        Update {
                            key: Key::Net("10.0.0.0/8".parse().expect("net")),
                            op: Op::Add(-2),
                        },
                        Update {
                            key: Key::Net("::/1".parse().expect("net")),
                            op: Op::Add(64),
                        },
                    ],
                },
                Section {
                    object: "g".into(),
                    reset: false,
                    request: true,
                    updates: vec![
                        Update {
                            key: Key::Text("ab".into()),
                            op: Op::Set {
                                version: 300,
                                ttl: 5,
                                value: b"v".to_vec(),
                                writer: None,
                            },
                        },
                        Update {
                            key: Key::Series {
                                series: "s".into(),
                                window: 1,
                                item: SeriesItem::Text("x".into()),
                            },
                            op: Op::Set {
                                version: 1,
                                ttl: 0,
                                value: Vec::new(),
                                writer: Some("w".into()),
                            },
                        },
                    ],
                },
            ],
        }
    }
}

/// Packs sections of updates into messages of at most `mtu` bytes each.
///
/// Consecutive updates of one object share a section header. An update too large for an empty
/// message of `mtu` bytes is sent alone in a message of its own (the transport fragments it).
#[derive(Debug)]
pub struct Packer {
    mtu: usize,
    done: Vec<Vec<u8>>,
    current: Message,
    current_len: usize,
    current_updates: usize,
    /// The stamp of the object being packed (see [`Packer::stamp`]).
    object_stamp: Option<u64>,
    object: String,
    updates: usize,
    /// Per object: updates pushed and the bytes their sections and updates take.
    tallies: Vec<Tally>,
}

/// What one object put into a [`Packer`]: updates and encoded bytes (section headers and
/// updates; the message header is shared and counted nowhere).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub object: String,
    pub updates: u64,
    pub bytes: u64,
}

impl Packer {
    /// A packer for messages of at most `mtu` bytes.
    pub fn new(mtu: usize) -> Self {
        Packer {
            mtu,
            done: Vec::new(),
            current: Message::default(),
            current_len: HEADER_LEN + STAMP_LEN,
            current_updates: 0,
            object_stamp: None,
            object: String::new(),
            updates: 0,
            tallies: Vec::new(),
        }
    }

    fn tally(&mut self, bytes: usize, updates: u64) {
        let at = match self.tallies.iter().rposition(|t| t.object == self.object) {
            Some(at) => at,
            None => {
                self.tallies.push(Tally {
                    object: self.object.clone(),
                    ..Tally::default()
                });
                self.tallies.len() - 1
            }
        };
        self.tallies[at].bytes += bytes as u64;
        self.tallies[at].updates += updates;
    }

    /// Per object, what was pushed so far.
    pub fn tallies(&self) -> &[Tally] {
        &self.tallies
    }

    /// The sections begun from now on hold updates made since `oldest` (wall-clock time since
    /// the Unix epoch): each message carries the oldest stamp of its sections. Room for the stamp
    /// is kept in every message, so stamping never changes how updates are split.
    pub fn stamp(&mut self, oldest: std::time::Duration) {
        self.object_stamp = Some(u64::try_from(oldest.as_micros()).unwrap_or(u64::MAX));
    }

    /// Starts a section for `object`; `reset` marks the first section of a snapshot. Object
    /// names longer than 255 bytes are not encodable and are rejected by the caller's settings.
    pub fn begin(&mut self, object: &str, reset: bool) {
        object.clone_into(&mut self.object);
        self.open_section(reset);
    }

    fn open_section(&mut self, reset: bool) {
        let need = section_header_len(&self.object);
        if self.current_len + need > self.mtu && self.current_updates > 0 {
            self.flush();
        }
        self.current.sections.push(Section {
            object: self.object.clone(),
            reset,
            request: false,
            updates: Vec::new(),
        });
        if let Some(at) = self.object_stamp {
            self.current.stamp = Some(self.current.stamp.map_or(at, |s| s.min(at)));
        }
        self.current_len += need;
        self.tally(need, 0);
    }

    /// Adds an empty section for `object` asking every member for its contribution to it.
    pub fn request(&mut self, object: &str) {
        object.clone_into(&mut self.object);
        self.open_section(false);
        if let Some(s) = self.current.sections.last_mut() {
            s.request = true;
        }
    }

    /// Appends `update` to the current section (see [`Packer::begin`]), continuing the section
    /// in a new message when this one is full.
    pub fn push(&mut self, update: Update) {
        if self.current.sections.is_empty() {
            self.open_section(false);
        }
        let need = update.buffer_len();
        let section_full = self
            .current
            .sections
            .last()
            .is_none_or(|s| s.updates.len() == usize::from(u16::MAX));
        if section_full || (self.current_len + need > self.mtu && self.current_updates > 0) {
            self.flush();
            // A continuation never resets: the reset travelled with the first part.
            self.open_section(false);
        }
        self.current_len += need;
        self.current_updates += 1;
        self.updates += 1;
        self.tally(need, 1);
        if let Some(section) = self.current.sections.last_mut() {
            section.updates.push(update);
        }
    }

    fn flush(&mut self) {
        let message = std::mem::take(&mut self.current);
        self.current_len = HEADER_LEN + STAMP_LEN;
        self.current_updates = 0;
        let (sections, empty): (Vec<Section>, Vec<Section>) = message
            .sections
            .into_iter()
            .partition(|s| !s.updates.is_empty() || s.reset || s.request);
        // A section opened just before its first update moved to the next message is not sent:
        // its header leaves its object's tally.
        for dropped in empty {
            if let Some(t) = self.tallies.iter_mut().find(|t| t.object == dropped.object) {
                t.bytes -= section_header_len(&dropped.object) as u64;
            }
        }
        if sections.is_empty() {
            return;
        }
        // Counts were bounded on the way in; an unencodable name is dropped with its updates.
        let stamp = message.stamp;
        if let Ok(bytes) = (Message { stamp, sections }).to_bytes() {
            self.done.push(bytes);
        }
    }

    /// Number of updates pushed so far.
    pub fn updates(&self) -> usize {
        self.updates
    }

    /// The encoded messages, in order.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        self.flush();
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Golden bytes, written by hand from the grammar in the module documentation: a field
    /// swapped in both `emit` and `parse` still round-trips, but fails here.
    #[test]
    fn golden_bytes() {
        let message = Message::example();
        let want: Vec<u8> = [
            &b"CR"[..],
            &[1, 0, 0, 2],          // version 1, reserved, two sections
            &[1, b'c', FLAG_RESET], // section "c", RESET
            &[0, 2],                // two updates
            &[1, 8, 10, 0, 0, 0],   // IPv4 10.0.0.0/8
            &[1, 3],                // add, zigzag(-2) = 3
            &[2, 1],                // IPv6 ::/1
            &[0; 16],
            &[1, 0x80, 0x01],               // add, zigzag(64) = 128 as a varint
            &[1, b'g', FLAG_REQUEST, 0, 2], // section "g", REQUEST, two updates
            &[3, 2, b'a', b'b'],            // text key "ab"
            &[2, 0xac, 0x02, 5, 1, b'v'],   // set: version 300, ttl 5, value "v"
            &[4, 1, b's', 1, 3, 1, b'x'],   // series "s", window 1, item text "x"
            &[3, 1, 0, 0, 1, b'w'], // relayed set: version 1, ttl 0, empty value, writer "w"
        ]
        .concat();
        assert_eq!(message.to_bytes().expect("fits"), want);
        assert_eq!(Message::parse_bytes(&want).expect("parses"), message);
    }

    fn arb_net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (any::<u32>(), 0u8..=32)
                .prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())),
            (any::<u128>(), 0u8..=128)
                .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc())),
        ]
    }

    fn arb_key() -> impl Strategy<Value = Key> {
        prop_oneof![
            arb_net().prop_map(Key::Net),
            "[a-z.@]{0,20}".prop_map(Key::Text),
            ("[a-z]{1,8}", any::<u64>(), arb_net()).prop_map(|(series, window, n)| Key::Series {
                series,
                window,
                item: SeriesItem::Net(n)
            }),
            ("[a-z]{1,8}", any::<u64>(), "[a-z]{0,8}").prop_map(|(series, window, t)| {
                Key::Series {
                    series,
                    window,
                    item: SeriesItem::Text(t),
                }
            }),
        ]
    }

    fn arb_update() -> impl Strategy<Value = Update> {
        let op = prop_oneof![
            any::<i64>().prop_map(Op::Add),
            (
                any::<u64>(),
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 0..40),
                proptest::option::of("#[a-z0-9#-]{0,12}")
            )
                .prop_map(|(version, ttl, value, writer)| Op::Set {
                    version,
                    ttl,
                    value,
                    writer
                }),
        ];
        (arb_key(), op).prop_map(|(key, op)| Update { key, op })
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        proptest::collection::vec(
            (
                "[a-z_]{1,20}",
                any::<bool>(),
                any::<bool>(),
                proptest::collection::vec(arb_update(), 0..12),
            )
                .prop_map(|(object, reset, request, updates)| Section {
                    object,
                    reset,
                    request,
                    updates,
                }),
            0..5,
        )
        .prop_flat_map(|sections| {
            proptest::option::of(any::<u64>()).prop_map(move |stamp| Message {
                stamp,
                sections: sections.clone(),
            })
        })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Message::parse_bytes(&bytes);
            let mut with_header = b"CR\x01\x00".to_vec();
            with_header.extend_from_slice(&bytes);
            let _ = Message::parse_bytes(&with_header);
        }

        #[test]
        fn round_trips(message in arb_message()) {
            let bytes = message.to_bytes().unwrap();
            prop_assert_eq!(bytes.len(), message.buffer_len());
            prop_assert_eq!(Message::parse_bytes(&bytes).unwrap(), message.clone());
            let mut buf = vec![0u8; bytes.len()];
            let mut packet = Packet::new_unchecked(&mut buf[..]);
            prop_assert_eq!(message.emit(&mut packet).unwrap(), bytes.len());
            prop_assert_eq!(&buf, &bytes);
        }

        #[test]
        fn corrupted_messages_never_panic(message in arb_message(), at in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = message.to_bytes().unwrap();
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = byte;
            }
            let _ = Message::parse_bytes(&bytes);
            bytes.truncate(at % (bytes.len() + 1));
            let _ = Message::parse_bytes(&bytes);
        }

        #[test]
        fn packer_respects_the_mtu_and_keeps_order(updates in proptest::collection::vec(arb_update(), 0..200), mtu in 120usize..1500) {
            let mut packer = Packer::new(mtu);
            packer.begin("inbound_cidr", true);
            for u in &updates {
                packer.push(u.clone());
            }
            let messages = packer.finish();
            let mut seen = Vec::new();
            let mut first = true;
            for bytes in &messages {
                let m = Message::parse_bytes(bytes).unwrap();
                let single = m.sections.iter().map(|s| s.updates.len()).sum::<usize>() == 1;
                prop_assert!(bytes.len() <= mtu || single);
                for s in m.sections {
                    prop_assert_eq!(s.reset, first);
                    first = false;
                    seen.extend(s.updates);
                }
            }
            prop_assert_eq!(seen, updates);
        }

        /// The per-object tallies add up to the messages: every byte is the message header, a
        /// section header or an update, and each object's updates are counted once.
        #[test]
        fn packer_tallies_account_for_every_byte(
            a in proptest::collection::vec(arb_update(), 1..100),
            b in proptest::collection::vec(arb_update(), 1..100),
            mtu in 200usize..1500,
            stamped in any::<bool>(),
        ) {
            let mut packer = Packer::new(mtu);
            if stamped {
                packer.stamp(std::time::Duration::from_secs(1_800_000_000));
            }
            packer.begin("inbound_cidr", false);
            for u in &a {
                packer.push(u.clone());
            }
            packer.begin("outbound_domains", false);
            for u in &b {
                packer.push(u.clone());
            }
            let tallies = packer.tallies().to_vec();
            let messages = packer.finish();
            prop_assert_eq!(tallies.len(), 2);
            prop_assert_eq!(tallies[0].updates, a.len() as u64);
            prop_assert_eq!(tallies[1].updates, b.len() as u64);
            let wire: usize = messages.iter().map(Vec::len).sum();
            let counted: u64 = tallies.iter().map(|t| t.bytes).sum();
            let header = HEADER_LEN + if stamped { STAMP_LEN } else { 0 };
            prop_assert_eq!(counted + (header * messages.len()) as u64, wire as u64);
            for m in &messages {
                let parsed = Message::parse_bytes(m).expect("parses");
                prop_assert_eq!(parsed.stamp, stamped.then_some(1_800_000_000_000_000));
            }
        }
    }

    #[test]
    fn a_stamp_follows_the_header_and_is_checked() {
        let message = Message {
            stamp: Some(0x0102_0304_0506_0708),
            ..Message::example()
        };
        let bytes = message.to_bytes().unwrap();
        assert_eq!(&bytes[..HEADER_LEN], &[b'C', b'R', 1, HEADER_STAMPED, 0, 2]);
        assert_eq!(
            &bytes[HEADER_LEN..HEADER_LEN + 8],
            &[1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(
            &bytes[HEADER_LEN + 8..],
            &Message::example().to_bytes().unwrap()[HEADER_LEN..]
        );
        assert_eq!(Message::parse_bytes(&bytes), Ok(message));
        assert_eq!(
            Message::parse_bytes(&bytes[..HEADER_LEN + 7]),
            Err(WireError::Truncated {
                offset: HEADER_LEN + 7,
                what: "stamp"
            })
        );
        let mut unknown = bytes.clone();
        unknown[3] = 2;
        assert_eq!(
            Message::parse_bytes(&unknown),
            Err(WireError::Malformed {
                offset: 3,
                what: "unknown header flag"
            })
        );
    }

    #[test]
    fn errors_carry_the_offset() {
        let message = Message {
            stamp: None,
            sections: vec![Section {
                object: "inbound_cidr".into(),
                reset: false,
                request: false,
                updates: vec![Update {
                    key: Key::Net("10.0.0.1/32".parse().unwrap()),
                    op: Op::Add(3),
                }],
            }],
        };
        let mut bytes = message.to_bytes().unwrap();
        // The prefix length byte of the IPv4 key: header, name, flags, count, key tag.
        let len_at = HEADER_LEN + 1 + 12 + 1 + 2 + 1;
        bytes[len_at] = 33;
        assert_eq!(
            Message::parse_bytes(&bytes),
            Err(WireError::Malformed {
                offset: len_at,
                what: "IPv4 prefix length above 32"
            })
        );
        bytes.truncate(len_at + 2);
        assert_eq!(
            Message::parse_bytes(&bytes),
            Err(WireError::Truncated {
                offset: len_at + 1,
                what: "IPv4 address"
            })
        );
        assert_eq!(
            Message::parse_bytes(b"CR\x02\x00\x00\x00"),
            Err(WireError::Version { version: 2 })
        );
    }

    #[test]
    fn a_cidr_update_is_eight_bytes() {
        let u = Update {
            key: Key::Net("10.1.2.3/32".parse().unwrap()),
            op: Op::Add(1),
        };
        assert_eq!(u.buffer_len(), 8);
    }
}
