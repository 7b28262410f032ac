//! Who a contribution belongs to.

use std::fmt;

/// A cluster member's identity, opaque to replication.
///
/// Cohort uses Momentum's private name, such as `#ec1-12137#relay-0-1`: one per incarnation, so
/// a restarted node is a new member whose contribution starts empty. The group protocol supplies
/// the string; replication only compares, orders and prints it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(String);

impl MemberId {
    /// Wraps the transport's member name.
    pub fn new(name: impl Into<String>) -> MemberId {
        MemberId(name.into())
    }

    /// The full private name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The node name: the part after the last `#` (`relay-0-1` for `#ec1-12137#relay-0-1`).
    pub fn node_name(&self) -> &str {
        self.0.rsplit('#').next().unwrap_or(&self.0)
    }

    /// Whether the console argument `name` designates this member (full name or node name).
    pub fn matches(&self, name: &str) -> bool {
        self.0 == name || self.node_name() == name
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_name_is_the_last_part() {
        let m = MemberId::new("#ec1-12137#relay-0-1");
        assert_eq!(m.node_name(), "relay-0-1");
        assert!(m.matches("relay-0-1") && m.matches("#ec1-12137#relay-0-1"));
        assert!(!m.matches("relay-0-2"));
        assert_eq!(MemberId::new("plain").node_name(), "plain");
    }
}
