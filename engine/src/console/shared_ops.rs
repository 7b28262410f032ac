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
//! cluster shared throttle tarpit <object> <key>             seconds to delay, 0 within budget
//! cluster shared outbound check|tarpit|which <object> <binding> <domain>
//!                                                           OBTM/OBTC: the configured throttle
//! cluster shared outbound inc <object> <binding> <domain> [<n>]
//! cluster shared outbound open|close <binding> <domain> <address>
//!                                                           outbound_cidr/_domains/_binding_domains
//! cluster shared gauge_cache init <cache> <max> <ttl> [replicate]
//! cluster shared gauge_cache add|sub <cache> <key> <n>       ec_gauge_cache_inc / _dec
//! cluster shared gauge_cache show|delete <cache> <key>
//! cluster shared gauge_cache list
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
    /// `throttle tarpit`: how long to delay the event, zero when within budget.
    ThrottleTarpit { object: String, name: String },
    /// `outbound check|tarpit|which`: the `cluster_outbound_throttle_*` stanza that applies to a
    /// message (`OBTM`) or connection (`OBTC`) on `binding` to `domain`: over budget, how long
    /// to delay, or the throttle's name.
    OutboundAsk {
        what: OutboundQuestion,
        object: String,
        binding: String,
        domain: String,
    },
    /// `outbound inc`: counts `n` messages (connections) against the applicable throttle.
    OutboundInc {
        object: String,
        binding: String,
        domain: String,
        n: i64,
    },
    /// `outbound open|close`: an outbound connection on `binding` to `domain` at `address`
    /// (`delta` 1 or -1), counted in the outbound objects that count that binding.
    OutboundConnection {
        binding: String,
        domain: String,
        address: IpAddr,
        delta: i64,
    },
    /// `gauge_cache init`: at most `max` entries, each dropped `ttl` seconds after its last
    /// change (0: never), replicated when `replicate`.
    GaugeCacheInit {
        cache: String,
        max: u64,
        ttl: u32,
        replicate: bool,
    },
    /// `gauge_cache add` (positive `delta`) or `gauge_cache sub` (negative).
    GaugeCacheAdd {
        cache: String,
        key: String,
        delta: i64,
    },
    /// `gauge_cache show`: the entry's value (0 when absent).
    GaugeCacheShow { cache: String, key: String },
    /// `gauge_cache delete`: forgets the entry on this node.
    GaugeCacheDelete { cache: String, key: String },
    /// `gauge_cache list`: the caches defined on this node.
    GaugeCacheList,
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

/// What `cluster shared outbound` asks of the applicable throttle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboundQuestion {
    /// `check`: over budget (`true` / `false`; `false` when no throttle applies).
    Check,
    /// `tarpit`: seconds to delay (0 within budget or when none applies).
    Tarpit,
    /// `which`: the throttle's name, or `none`.
    Which,
}

impl OutboundQuestion {
    fn word(self) -> &'static str {
        match self {
            OutboundQuestion::Check => "check",
            OutboundQuestion::Tarpit => "tarpit",
            OutboundQuestion::Which => "which",
        }
    }
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
            S::ThrottleTarpit { object, name } => write!(f, "throttle tarpit {object} {name}"),
            S::OutboundAsk {
                what,
                object,
                binding,
                domain,
            } => write!(f, "outbound {} {object} {binding} {domain}", what.word()),
            S::OutboundInc {
                object,
                binding,
                domain,
                n,
            } => write!(f, "outbound inc {object} {binding} {domain}{}", amount(*n)),
            S::OutboundConnection {
                binding,
                domain,
                address,
                delta,
            } => {
                let verb = if *delta < 0 { "close" } else { "open" };
                write!(f, "outbound {verb} {binding} {domain} {address}")
            }
            S::GaugeCacheInit {
                cache,
                max,
                ttl,
                replicate,
            } => {
                let r = if *replicate { " replicate" } else { "" };
                write!(f, "gauge_cache init {cache} {max} {ttl}{r}")
            }
            S::GaugeCacheAdd { cache, key, delta } => {
                let verb = if *delta < 0 { "sub" } else { "add" };
                write!(
                    f,
                    "gauge_cache {verb} {cache} {key} {}",
                    delta.unsigned_abs()
                )
            }
            S::GaugeCacheShow { cache, key } => write!(f, "gauge_cache show {cache} {key}"),
            S::GaugeCacheDelete { cache, key } => write!(f, "gauge_cache delete {cache} {key}"),
            S::GaugeCacheList => f.write_str("gauge_cache list"),
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

/// An update an application sends at a high rate (`cluster shared cidr|gauge incr|decr`),
/// borrowing the request's words. [`parse_update`] reads these lines without the grammar's
/// table walk, so that a pipelined stream of updates costs little more than the updates; every
/// other line goes through [`super::grammar::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedUpdate<'a> {
    /// `cluster shared cidr incr|decr <object> <net> [<n>]`
    Cidr {
        object: &'a str,
        net: IpNet,
        delta: i64,
    },
    /// `cluster shared gauge incr|decr <object> <key> [<n>]`
    Gauge {
        object: &'a str,
        key: &'a str,
        delta: i64,
    },
}

impl SharedUpdate<'_> {
    /// The same operation as the grammar builds it.
    pub fn to_op(&self) -> SharedOp {
        match *self {
            SharedUpdate::Cidr { object, net, delta } => SharedOp::CidrAdd {
                object: object.to_owned(),
                net,
                delta,
            },
            SharedUpdate::Gauge { object, key, delta } => SharedOp::GaugeAdd {
                object: object.to_owned(),
                key: key.to_owned(),
                delta,
            },
        }
    }
}

/// The words of a line, split as `str::split_whitespace` splits them; an ASCII line (every
/// application's update) is split byte by byte, without decoding characters.
enum Words<'a> {
    Ascii(&'a str),
    Unicode(std::str::SplitWhitespace<'a>),
}

impl<'a> Words<'a> {
    fn new(line: &'a str) -> Words<'a> {
        if line.is_ascii() {
            Words::Ascii(line)
        } else {
            Words::Unicode(line.split_whitespace())
        }
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            Words::Unicode(w) => w.next(),
            Words::Ascii(rest) => {
                // The ASCII characters for which `char::is_whitespace` holds.
                let space = |b: &u8| matches!(b, b' ' | b'\t'..=b'\r');
                let bytes = rest.as_bytes();
                let start = bytes.iter().position(|b| !space(b))?;
                let len = bytes[start..]
                    .iter()
                    .position(space)
                    .unwrap_or(bytes.len() - start);
                let word = &rest[start..start + len];
                *rest = &rest[start + len..];
                Some(word)
            }
        }
    }
}

/// Whether `tok` is keyword `k` (keywords are lower case), in any case; an inline byte loop,
/// since every request's every word is compared with the grammar's keywords. Here rather than
/// in the grammar, which builds on this module (no import cycle).
pub(crate) fn keyword_is(k: &str, tok: &str) -> bool {
    k.len() == tok.len()
        && k.bytes()
            .zip(tok.bytes())
            .all(|(a, b)| a == b.to_ascii_lowercase())
}

/// Reads `line` as one of the update forms of [`SharedUpdate`], exactly as the grammar would
/// (keywords in any case, the same word splitting and the same checks of `<net>` and `<n>`).
/// `None` for any other line, including a malformed update: the caller then parses it with
/// the grammar, which reports the error with its column.
pub fn parse_update(line: &str) -> Option<SharedUpdate<'_>> {
    let mut words = Words::new(line);
    let mut keyword = |k: &str| words.next().is_some_and(|w| keyword_is(k, w));
    if !(keyword("cluster") && keyword("shared")) {
        return None;
    }
    let kind = words.next()?;
    let cidr = if keyword_is("cidr", kind) {
        true
    } else if keyword_is("gauge", kind) {
        false
    } else {
        return None;
    };
    let verb = words.next()?;
    let sign = if keyword_is("incr", verb) {
        1
    } else if keyword_is("decr", verb) {
        -1
    } else {
        return None;
    };
    let object = words.next()?;
    let target = words.next()?;
    let delta = match words.next() {
        None => 1,
        Some(n) => parse_amount(n)?,
    };
    if words.next().is_some() {
        return None;
    }
    let delta = sign * delta;
    Some(if cidr {
        SharedUpdate::Cidr {
            object,
            net: parse_net(target)?,
            delta,
        }
    } else {
        SharedUpdate::Gauge {
            object,
            key: target,
            delta,
        }
    })
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
    fn tarpit_parses_and_prints_back() {
        let line = "cluster shared throttle tarpit shared_named_throttles per-customer";
        let got = op(line);
        assert_eq!(
            got,
            SharedOp::ThrottleTarpit {
                object: "shared_named_throttles".into(),
                name: "per-customer".into()
            }
        );
        assert_eq!(format!("cluster shared {got}"), line);
    }

    #[test]
    fn gauge_cache_operations_parse_and_print_back() {
        for line in [
            "cluster shared gauge_cache init senders 1000 300",
            "cluster shared gauge_cache init senders 1000 0 replicate",
            "cluster shared gauge_cache add senders alice@example.com 2",
            "cluster shared gauge_cache sub senders alice@example.com 1",
            "cluster shared gauge_cache show senders bob",
            "cluster shared gauge_cache delete senders bob",
            "cluster shared gauge_cache list",
        ] {
            assert_eq!(format!("cluster shared {}", op(line)), line);
        }
        assert_eq!(
            op("cluster shared gauge_cache init s 10 5M replicate"),
            SharedOp::GaugeCacheInit {
                cache: "s".into(),
                max: 10,
                ttl: 300,
                replicate: true
            }
        );
        assert!(parse("cluster shared gauge_cache add s k").is_err());
    }

    #[test]
    fn outbound_operations_parse_and_print_back() {
        for line in [
            "cluster shared outbound check OBTM b1 aol.com",
            "cluster shared outbound tarpit OBTC b1 aol.com",
            "cluster shared outbound which OBTM b1 aol.com",
            "cluster shared outbound inc OBTM b1 aol.com",
            "cluster shared outbound inc OBTM b1 aol.com 3",
            "cluster shared outbound open b1 aol.com 192.0.2.7",
            "cluster shared outbound close b1 aol.com 2001:db8::7",
        ] {
            assert_eq!(format!("cluster shared {}", op(line)), line);
        }
        assert_eq!(
            op("cluster shared outbound close b1 aol.com 192.0.2.7"),
            SharedOp::OutboundConnection {
                binding: "b1".into(),
                domain: "aol.com".into(),
                address: "192.0.2.7".parse().unwrap(),
                delta: -1
            }
        );
        assert!(parse("cluster shared outbound open b1 aol.com not-an-address").is_err());
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

    #[test]
    fn updates_read_without_the_grammar() {
        assert_eq!(
            parse_update("CLUSTER shared Cidr incr inbound_cidr 10.1.2.3"),
            Some(SharedUpdate::Cidr {
                object: "inbound_cidr",
                net: "10.1.2.3/32".parse().unwrap(),
                delta: 1
            })
        );
        assert_eq!(
            parse_update("  cluster shared gauge decr outbound_domains example.com 7 "),
            Some(SharedUpdate::Gauge {
                object: "outbound_domains",
                key: "example.com",
                delta: -7
            })
        );
        for other in [
            "cluster shared cidr count inbound_cidr 10.0.0.0/8",
            "cluster shared cidr incr inbound_cidr 10.0.0.1 -1",
            "cluster shared cidr incr inbound_cidr 300.0.0.1",
            "cluster shared gauge incr o k 1 2",
            "cluster shared gauge incr o",
            "cluster info",
        ] {
            assert_eq!(parse_update(other), None, "{other}");
        }
    }

    proptest::proptest! {
        /// Lines split into the same words as `split_whitespace` splits them.
        #[test]
        fn words_split_as_split_whitespace_does(line in "[\\x00-\\x7f\u{a0}\u{2003}]{0,40}") {
            let ours: Vec<&str> = Words::new(&line).collect();
            let std: Vec<&str> = line.split_whitespace().collect();
            proptest::prop_assert_eq!(ours, std);
        }

        /// The fast reading agrees with the grammar on every line: what it reads, the grammar
        /// reads the same way, and every update the grammar reads, it reads too.
        #[test]
        fn updates_read_as_the_grammar_reads_them(
            words in proptest::collection::vec(
                proptest::sample::select(vec![
                    "cluster", "CLUSTER", "shared", "Shared", "cidr", "gauge", "incr", "DECR",
                    "count", "get", "inbound_cidr", "o", "10.0.0.1", "10.0.0.0/8", "::1",
                    "2001:db8::/33", "10.0.0.1/33", "0", "7", "-3", "18446744073709551615",
                    "9223372036854775807", "local", "\u{a0}", "k\u{e9}y",
                ]),
                0..9,
            ),
            sep in proptest::sample::select(vec![" ", "  ", "\t", "\u{2003}", "\u{b}", "\u{c}\r\n"]),
        ) {
            let line = words.join(sep);
            let grammar = parse(&line);
            match parse_update(&line) {
                Some(u) => proptest::prop_assert_eq!(
                    grammar,
                    Ok(Command::Cluster(ClusterCommand::SharedOp(u.to_op())))
                ),
                None => proptest::prop_assert!(
                    !matches!(
                        grammar,
                        Ok(Command::Cluster(ClusterCommand::SharedOp(
                            SharedOp::CidrAdd { .. } | SharedOp::GaugeAdd { .. }
                        )))
                    ),
                    "the grammar reads an update from {:?}", line
                ),
            }
        }
    }
}
