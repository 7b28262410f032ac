//! Cohort's own traffic on the cluster group, smoltcp style: a [`Channel`] is parsed from and
//! emitted to the bytes of one group message. The first byte names the channel; the rest is the
//! channel's own wire format (DuraVIP, replication and ARP-report payloads are parsed by their
//! domains; member info is a [`MemberInfo`] in the binary layout below).
//!
//! ```text
//! channel message = kind u8 | body
//!   kind 1 member info: ver u8 (1) | pid u32 | subcluster str | node_type str | version str
//!                       | eccluster_addr str           (str = len u8 | UTF-8 bytes)
//!   kind 2 DuraVIP (agreed)       | duravip::wire message
//!   kind 3 replication (FIFO)     | replicate::wire batch or snapshot
//!   kind 4 ARP cache report (FIFO)| duravip::arpcache report
//! ```
//! Integers are big-endian. Parsing never panics and never allocates more than the input.

use crate::group::Order;

/// Channel kinds (the first byte). The values are the ones Cohort has always used on the wire.
pub mod kind {
    pub const MEMBER_INFO: u8 = 1;
    pub const DURAVIP: u8 = 2;
    pub const REPLICATE: u8 = 3;
    pub const ARP: u8 = 4;
}

/// Version of the member-info layout.
pub const MEMBER_INFO_VERSION: u8 = 1;

/// What a member tells the others about itself, for `cluster membership`.
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

/// One message of Cohort's own traffic on the cluster group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Channel<'a> {
    MemberInfo(MemberInfo),
    Duravip(&'a [u8]),
    Replicate(&'a [u8]),
    Arp(&'a [u8]),
}

/// Why a channel message was refused: what was wrong and at which byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cluster-group message, byte {offset}: {what}")]
pub struct ChannelError {
    pub offset: usize,
    pub what: &'static str,
}

fn err(offset: usize, what: &'static str) -> ChannelError {
    ChannelError { offset, what }
}

impl<'a> Channel<'a> {
    /// Parses one cluster-group message.
    pub fn parse(bytes: &'a [u8]) -> Result<Channel<'a>, ChannelError> {
        let (&k, body) = bytes.split_first().ok_or(err(0, "empty message"))?;
        match k {
            kind::MEMBER_INFO => MemberInfo::parse(body)
                .map(Channel::MemberInfo)
                .map_err(|e| ChannelError {
                    offset: e.offset + 1,
                    what: e.what,
                }),
            kind::DURAVIP => Ok(Channel::Duravip(body)),
            kind::REPLICATE => Ok(Channel::Replicate(body)),
            kind::ARP => Ok(Channel::Arp(body)),
            _ => Err(err(0, "unknown channel kind")),
        }
    }

    /// The message's bytes.
    pub fn emit(&self) -> Vec<u8> {
        let (k, body): (u8, std::borrow::Cow<'_, [u8]>) = match self {
            Channel::MemberInfo(i) => (kind::MEMBER_INFO, i.emit().into()),
            Channel::Duravip(b) => (kind::DURAVIP, (*b).into()),
            Channel::Replicate(b) => (kind::REPLICATE, (*b).into()),
            Channel::Arp(b) => (kind::ARP, (*b).into()),
        };
        let mut out = Vec::with_capacity(body.len() + 1);
        out.push(k);
        out.extend_from_slice(&body);
        out
    }

    /// The order the channel travels in: DuraVIP agreed (every member applies the same stream),
    /// the others FIFO.
    pub fn order(&self) -> Order {
        match self {
            Channel::Duravip(_) => Order::Agreed,
            _ => Order::Fifo,
        }
    }
}

impl MemberInfo {
    /// Longest text field (the length is one byte).
    pub const MAX_FIELD: usize = 255;

    /// The binary layout (module documentation). Fields longer than [`MemberInfo::MAX_FIELD`]
    /// bytes are cut at a character boundary.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + 4 + self.subcluster.len() + 64);
        out.push(MEMBER_INFO_VERSION);
        out.extend_from_slice(&self.pid.to_be_bytes());
        for s in [
            &self.subcluster,
            &self.node_type,
            &self.version,
            &self.eccluster_addr,
        ] {
            let mut end = s.len().min(Self::MAX_FIELD);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            out.push(end as u8);
            out.extend_from_slice(&s.as_bytes()[..end]);
        }
        out
    }

    /// Parses the binary layout; trailing bytes are refused.
    pub fn parse(bytes: &[u8]) -> Result<MemberInfo, ChannelError> {
        let mut at = 0usize;
        let ver = *bytes.first().ok_or(err(0, "member info: no version"))?;
        if ver != MEMBER_INFO_VERSION {
            return Err(err(0, "member info: unknown version"));
        }
        at += 1;
        let pid = bytes
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or(err(at, "member info: pid cut short"))?;
        at += 4;
        let mut text = |what: &'static str| -> Result<String, ChannelError> {
            let len = usize::from(*bytes.get(at).ok_or(err(at, what))?);
            let body = bytes.get(at + 1..at + 1 + len).ok_or(err(at, what))?;
            let s = std::str::from_utf8(body).map_err(|_| err(at + 1, what))?;
            at += 1 + len;
            Ok(s.to_owned())
        };
        let info = MemberInfo {
            pid,
            subcluster: text("member info: subcluster")?,
            node_type: text("member info: node type")?,
            version: text("member info: version")?,
            eccluster_addr: text("member info: ECCluster address")?,
        };
        if at != bytes.len() {
            return Err(err(at, "member info: trailing bytes"));
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn info() -> MemberInfo {
        MemberInfo {
            pid: 0x0102_0304,
            subcluster: "sc".into(),
            node_type: "Momentum".into(),
            version: "C1".into(),
            eccluster_addr: "10.0.0.1:4802".into(),
        }
    }

    /// Golden bytes: a field swapped in both `emit` and `parse` fails here.
    #[test]
    fn member_info_golden_bytes() {
        let mut want = vec![kind::MEMBER_INFO, 1, 1, 2, 3, 4, 2, b's', b'c', 8];
        want.extend_from_slice(b"Momentum");
        want.extend_from_slice(&[2, b'C', b'1', 13]);
        want.extend_from_slice(b"10.0.0.1:4802");
        let bytes = Channel::MemberInfo(info()).emit();
        assert_eq!(bytes, want);
        assert_eq!(Channel::parse(&want), Ok(Channel::MemberInfo(info())));
    }

    #[test]
    fn payload_channels_golden_bytes() {
        for (k, c) in [
            (kind::DURAVIP, Channel::Duravip(b"dv")),
            (kind::REPLICATE, Channel::Replicate(b"dv")),
            (kind::ARP, Channel::Arp(b"dv")),
        ] {
            assert_eq!(c.emit(), vec![k, b'd', b'v']);
            assert_eq!(Channel::parse(&[k, b'd', b'v']), Ok(c));
        }
        assert_eq!(Channel::Duravip(b"").order(), Order::Agreed);
        assert_eq!(Channel::Arp(b"").order(), Order::Fifo);
    }

    #[test]
    fn refusals_name_the_byte() {
        assert_eq!(Channel::parse(&[]).unwrap_err().offset, 0);
        assert_eq!(
            Channel::parse(&[9]).unwrap_err().what,
            "unknown channel kind"
        );
        let mut b = Channel::MemberInfo(info()).emit();
        b.push(0);
        let e = Channel::parse(&b).unwrap_err();
        assert_eq!(
            (e.offset, e.what),
            (b.len() - 1, "member info: trailing bytes")
        );
        assert_eq!(
            Channel::parse(&[kind::MEMBER_INFO, 2]).unwrap_err().what,
            "member info: unknown version"
        );
        assert_eq!(
            Channel::parse(&[kind::MEMBER_INFO, 1, 0, 0])
                .unwrap_err()
                .offset,
            2
        );
    }

    #[test]
    fn long_fields_are_cut_at_a_character() {
        let mut i = info();
        i.subcluster = "é".repeat(200);
        let back = MemberInfo::parse(&i.emit()).expect("parses");
        assert_eq!(back.subcluster, "é".repeat(127));
    }

    proptest! {
        #[test]
        fn member_info_round_trips(pid in any::<u32>(), a in "\\PC{0,60}", b in "\\PC{0,60}",
                                   c in "\\PC{0,60}", d in "\\PC{0,60}") {
            let i = MemberInfo { pid, subcluster: a, node_type: b, version: c, eccluster_addr: d };
            let fits = [&i.subcluster, &i.node_type, &i.version, &i.eccluster_addr]
                .iter().all(|s| s.len() <= MemberInfo::MAX_FIELD);
            prop_assume!(fits);
            prop_assert_eq!(MemberInfo::parse(&i.emit()), Ok(i));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Channel::parse(&bytes);
        }
    }
}
