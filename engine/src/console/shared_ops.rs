//! Applications' operations on replicated objects over the console: the same operations as the
//! Rust API ([`crate::replicate::Objects`]) for programs in other processes, one request each.
//!
//! ```text
//! cluster shared cidr incr|decr <object> <net> [<n>]        counts in a CIDR tree
//! cluster shared cidr count <object> <net> [local]          one netblock's count
//! cluster shared gauge incr|decr <object> <key> [<n>]       a gauge table's key
//! cluster shared gauge get <object> <key> [local]
//! cluster shared throttle create <object> <key> <rate>      N or N/SECONDS, cluster-wide
//! cluster shared throttle inc <object> <key> [<n>]
//! cluster shared throttle check <object> <key>              "true" when over budget
//! cluster shared cache set <object> <key> <value> [<ttl>]
//! cluster shared cache get <object> <key>
//! cluster shared series add <object> <series> <item> [<n>]  item: an address, a block or a word
//! cluster shared series count <object> <series> <item> [local]
//! ```
//!
//! Counts read the global view (the sum over the live members) unless `local` asks for this
//! node's own contribution. The forms are rows of the grammar's table ([`super::grammar`]).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// One operation on a replicated object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SharedOp {
    /// `cidr incr` (positive `delta`) or `cidr decr` (negative).
    CidrAdd {
        object: String,
        net: IpNet,
        delta: i64,
    },
    /// `cidr count`: connections inside `net`.
    CidrCount {
        object: String,
        net: IpNet,
        local: bool,
    },
    /// `gauge incr` / `gauge decr`.
    GaugeAdd {
        object: String,
        key: String,
        delta: i64,
    },
    /// `gauge get`.
    GaugeGet {
        object: String,
        key: String,
        local: bool,
    },
    /// `throttle create`: `limit` events per `period` seconds, cluster-wide.
    ThrottleCreate {
        object: String,
        name: String,
        limit: u64,
        period: u64,
    },
    /// `throttle inc`: counts `n` events.
    ThrottleInc {
        object: String,
        name: String,
        n: i64,
    },
    /// `throttle check`: whether the throttle is over budget.
    ThrottleCheck { object: String, name: String },
    /// `cache set`: `ttl` seconds to live, 0 = never expires.
    CacheSet {
        object: String,
        key: String,
        value: String,
        ttl: u32,
    },
    /// `cache get`.
    CacheGet { object: String, key: String },
    /// `series add`: `n` events of `series` for `item` now.
    SeriesAdd {
        object: String,
        series: String,
        item: String,
        n: i64,
    },
    /// `series count`: events of `series` for `item` over the object's first monitor's span.
    SeriesCount {
        object: String,
        series: String,
        item: String,
        local: bool,
    },
}

/// A netblock, or an address as its host prefix.
pub fn parse_net(word: &str) -> Option<IpNet> {
    if word.contains('/') {
        word.parse::<IpNet>().ok()
    } else {
        word.parse::<IpAddr>().ok().map(IpNet::from)
    }
}

/// A non-negative amount that fits an `i64`.
pub fn parse_amount(word: &str) -> Option<i64> {
    word.parse::<u64>().ok().and_then(|n| i64::try_from(n).ok())
}

/// A throttle rate `N` or `N/SECONDS`: (limit, period).
pub fn parse_rate(word: &str) -> Option<(u64, u64)> {
    crate::replicate::throttle::ThrottleSpec::parse(word, None)
        .ok()
        .map(|s| (s.limit, s.period))
}

/// ` <n>` unless it is the default 1.
fn amount(n: i64) -> String {
    if n == 1 {
        String::new()
    } else {
        format!(" {n}")
    }
}

fn local(on: bool) -> &'static str {
    if on { " local" } else { "" }
}

/// `incr` with ` <n>`, or `decr` with ` <-n>`.
fn incr_decr(delta: i64) -> (&'static str, String) {
    if delta < 0 {
        ("decr", amount(delta.saturating_neg()))
    } else {
        ("incr", amount(delta))
    }
}

/// The canonical text after `cluster shared `; it parses back to the same operation.
impl fmt::Display for SharedOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SharedOp as S;
        match self {
            S::CidrAdd { object, net, delta } => {
                let (verb, n) = incr_decr(*delta);
                write!(f, "cidr {verb} {object} {net}{n}")
            }
            S::CidrCount {
                object,
                net,
                local: l,
            } => {
                write!(f, "cidr count {object} {net}{}", local(*l))
            }
            S::GaugeAdd { object, key, delta } => {
                let (verb, n) = incr_decr(*delta);
                write!(f, "gauge {verb} {object} {key}{n}")
            }
            S::GaugeGet {
                object,
                key,
                local: l,
            } => {
                write!(f, "gauge get {object} {key}{}", local(*l))
            }
            S::ThrottleCreate {
                object,
                name,
                limit,
                period,
            } => write!(f, "throttle create {object} {name} {limit}/{period}"),
            S::ThrottleInc { object, name, n } => {
                write!(f, "throttle inc {object} {name}{}", amount(*n))
            }
            S::ThrottleCheck { object, name } => write!(f, "throttle check {object} {name}"),
            S::CacheSet {
                object,
                key,
                value,
                ttl,
            } => {
                write!(f, "cache set {object} {key} {value}")?;
                if *ttl != 0 {
                    write!(f, " {ttl}")?;
                }
                Ok(())
            }
            S::CacheGet { object, key } => write!(f, "cache get {object} {key}"),
            S::SeriesAdd {
                object,
                series,
                item,
                n,
            } => write!(f, "series add {object} {series} {item}{}", amount(*n)),
            S::SeriesCount {
                object,
                series,
                item,
                local: l,
            } => write!(f, "series count {object} {series} {item}{}", local(*l)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::{ClusterCommand, Command, ParseError, grammar::parse};

    fn op(line: &str) -> SharedOp {
        match parse(line) {
            Ok(Command::Cluster(ClusterCommand::SharedOp(op))) => op,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn operations_parse_with_their_defaults() {
        assert_eq!(
            op("cluster shared cidr incr inbound_cidr 10.1.2.3"),
            SharedOp::CidrAdd {
                object: "inbound_cidr".into(),
                net: "10.1.2.3/32".parse().unwrap(),
                delta: 1
            }
        );
        assert_eq!(
            op("cluster shared cidr decr inbound_cidr 2001:db8::/32 5"),
            SharedOp::CidrAdd {
                object: "inbound_cidr".into(),
                net: "2001:db8::/32".parse().unwrap(),
                delta: -5
            }
        );
        assert_eq!(
            op("cluster shared cidr count inbound_cidr 10.0.0.0/8 LOCAL"),
            SharedOp::CidrCount {
                object: "inbound_cidr".into(),
                net: "10.0.0.0/8".parse().unwrap(),
                local: true
            }
        );
        assert_eq!(
            op("cluster shared gauge decr outbound_domains Example.COM"),
            SharedOp::GaugeAdd {
                object: "outbound_domains".into(),
                key: "Example.COM".into(),
                delta: -1
            }
        );
        assert_eq!(
            op("cluster shared throttle create shared_named_throttles t1 100"),
            SharedOp::ThrottleCreate {
                object: "shared_named_throttles".into(),
                name: "t1".into(),
                limit: 100,
                period: 1
            }
        );
        assert_eq!(
            op("cluster shared cache set c k v 2M"),
            SharedOp::CacheSet {
                object: "c".into(),
                key: "k".into(),
                value: "v".into(),
                ttl: 120
            }
        );
        assert_eq!(
            op("cluster shared series add metrics connect 10.0.0.1 3"),
            SharedOp::SeriesAdd {
                object: "metrics".into(),
                series: "connect".into(),
                item: "10.0.0.1".into(),
                n: 3
            }
        );
        // A key that looks like a keyword elsewhere is still a key.
        assert_eq!(
            op("cluster shared gauge get outbound_domains local"),
            SharedOp::GaugeGet {
                object: "outbound_domains".into(),
                key: "local".into(),
                local: false
            }
        );
        // Canonical text round-trips.
        for line in [
            "cluster shared cidr decr o 10.0.0.0/24 7",
            "cluster shared cidr incr o ::1/128",
            "cluster shared throttle create o t 10/60",
            "cluster shared cache set o k v 30",
            "cluster shared series count o s x local",
        ] {
            assert_eq!(parse(line).map(|c| c.to_string()).as_deref(), Ok(line));
        }
    }

    #[test]
    fn bad_values_are_located() {
        let e = parse("cluster shared cidr incr inbound_cidr 10.0.0.300").unwrap_err();
        assert!(
            matches!(
                &e,
                ParseError::BadArgument {
                    col: 39,
                    placeholder: "<net>",
                    ..
                }
            ),
            "{e}"
        );
        let e = parse("cluster shared cidr incr inbound_cidr 10.0.0.0/33").unwrap_err();
        assert!(matches!(&e, ParseError::BadArgument { col: 39, .. }), "{e}");
        let e = parse("cluster shared gauge incr o k -3").unwrap_err();
        assert!(
            matches!(
                &e,
                ParseError::BadArgument {
                    col: 31,
                    placeholder: "<n>",
                    ..
                }
            ),
            "{e}"
        );
        let e = parse("cluster shared gauge incr o k 9223372036854775808").unwrap_err();
        assert!(matches!(&e, ParseError::BadArgument { col: 31, .. }), "{e}");
        let e = parse("cluster shared throttle create o t 10/0").unwrap_err();
        assert!(
            matches!(
                &e,
                ParseError::BadArgument {
                    col: 36,
                    placeholder: "<rate>",
                    ..
                }
            ),
            "{e}"
        );
        let e = parse("cluster shared cache set o k v 5X").unwrap_err();
        assert!(
            matches!(
                &e,
                ParseError::BadArgument {
                    col: 32,
                    placeholder: "<ttl>",
                    ..
                }
            ),
            "{e}"
        );
        let e = parse("cluster shared cidr count o 10.0.0.0/8 global").unwrap_err();
        assert!(
            matches!(&e, ParseError::UnexpectedWord { col: 40, .. }),
            "{e}"
        );
        let e = parse("cluster shared cidr incr o").unwrap_err();
        assert!(matches!(&e, ParseError::MissingWord { .. }), "{e}");
    }
}
