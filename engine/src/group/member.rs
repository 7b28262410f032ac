//! A member's identity: node name plus an incarnation that is fresh at every start.

use core::cmp::Ordering;
use core::fmt;

/// Longest node name the wire format carries.
pub const MAX_NAME_LEN: usize = 64;

/// One run of one node. A restarted node is a new member: its old incarnation's datagrams are
/// dropped and it joins the view again.
///
/// Members are ordered by age: a smaller incarnation is older, ties broken by name. The driver gives
/// each start an incarnation that grows across restarts of a node (e.g. wall-clock nanoseconds at
/// start), so the first member of a view in this order, its leader, is its oldest member.
// The incarnation first: the derived equality compares it before the name (incarnations differ
// far more often than names, and cost no string comparison).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MemberId {
    /// Fresh at every start; grows across restarts of the same node.
    pub incarnation: u64,
    /// The node name, as in `msgc_server { peers }`.
    pub name: String,
}

impl MemberId {
    /// A member identity.
    pub fn new(name: impl Into<String>, incarnation: u64) -> MemberId {
        MemberId {
            name: name.into(),
            incarnation,
        }
    }

    /// Momentum's private name for this member's connection `ec0`: `#ec0-<pid>#<node>`.
    pub fn private_name(&self, pid: u32) -> String {
        format!("#ec0-{pid}#{}", self.name)
    }

    /// A stable 64-bit tag (FNV-1a of name and incarnation) used to make view ids unique per
    /// coordinator without carrying the whole identity in every datagram.
    pub fn tag(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.name.bytes().chain(self.incarnation.to_be_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }
}

impl Ord for MemberId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.incarnation
            .cmp(&other.incarnation)
            .then_with(|| self.name.cmp(&other.name))
    }
}

impl PartialOrd for MemberId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:x}", self.name, self.incarnation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_name_has_momentums_shape() {
        assert_eq!(
            MemberId::new("pono", 7).private_name(20768),
            "#ec0-20768#pono"
        );
    }

    #[test]
    fn older_incarnation_sorts_first() {
        let a = MemberId::new("zeta", 1);
        let b = MemberId::new("alpha", 2);
        assert!(a < b);
        assert!(MemberId::new("a", 2) < b);
        assert_ne!(a.tag(), b.tag());
    }
}
