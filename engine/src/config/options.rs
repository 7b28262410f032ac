//! One table per scope of every option Cohort reads: name, type, default, bound, one line of
//! documentation, whether a reload applies it, and how its value prints. The table drives the
//! printer of the effective configuration ([`super::render()`]), the "did you mean" suggestions
//! of the loader, the reload (which refuses a change to an option a reload cannot apply, naming
//! it), the loader (each option's `set` reads and bounds its value) and the configuration
//! reference (`cohortd --config-reference`, pasted into `docs/configuration.md` and `cohort.conf(5)`; a test keeps them equal). Each option's `set`
//! checks the bound its `bound` column states (tests load every option at its bounds).

use std::net::IpAddr;
use std::time::Duration;

use super::error::ConfigError;
use super::model::{
    Binding, Cluster, ClusterCrypto, Destination, InboundAudit, Listener, LogOutput, Logger,
    ManagerLogs, MsgcServer, Quorum, Replicate, ReplicateKind, ReplicateParam, Security, Topology,
    UdpDriver, XdpMode,
};
use super::syntax::{Value, quote};
use super::values::{
    boolean, choice, integer, ip, logs_dict, nonempty, octal_mode, parse_journal, path_from, peers,
    positive_seconds, seconds, seconds_in, string, strings, u32_in,
};

/// Whether `config reload` (or SIGHUP) applies a changed value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    /// Applied to the running node.
    Applies,
    /// Read at start-up only: a reload that changes it is refused, naming the option, and the
    /// running configuration stays.
    Restart,
}

/// How an option's value prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shown {
    /// Unset (an option with no default); not printed.
    Absent,
    /// `key = text`, `text` as written (already quoted where it is a string).
    Value(String),
    /// `key = [ "k" = "v" ... ]`.
    Pairs(Vec<(String, String)>),
}

/// One option of one scope.
pub struct Opt<T: 'static> {
    pub name: &'static str,
    /// The value's type as the reference prints it: `seconds`, `integer`, `boolean`, `string`,
    /// `address`, `path`, `list`, `choice`.
    pub kind: &'static str,
    /// The default, as configuration text would write it (`-` for none).
    pub default: &'static str,
    /// The accepted values (`-` for any).
    pub bound: &'static str,
    pub reload: Reload,
    /// Cohort's addition to Momentum's options (documented as such).
    pub extension: bool,
    pub doc: &'static str,
    pub get: fn(&T) -> Shown,
    /// Reads the option's value into its scope, with the bound checked and the location of a
    /// refusal: what the loader calls (`config::load`) for this option.
    pub set: Setter<T>,
}

/// How an option's value is read: `(scope, key as written, value)`.
pub type Setter<T> = fn(&mut T, &str, &Value) -> Result<(), ConfigError>;

fn s(v: &str) -> Shown {
    Shown::Value(quote(v))
}

fn n(v: impl std::fmt::Display) -> Shown {
    Shown::Value(v.to_string())
}

fn secs(d: Duration) -> Shown {
    n(d.as_secs_f64())
}

fn opt_path(p: Option<&std::path::PathBuf>) -> Shown {
    p.map_or(Shown::Absent, |p| s(&p.to_string_lossy()))
}

fn opt_s(v: Option<&str>) -> Shown {
    v.map_or(Shown::Absent, s)
}

macro_rules! opt {
    ($name:literal, $kind:literal, $default:literal, $bound:literal, $reload:ident, $ext:literal,
     $doc:literal, $get:expr, $set:expr) => {
        Opt {
            name: $name,
            kind: $kind,
            default: $default,
            bound: $bound,
            reload: Reload::$reload,
            extension: $ext,
            doc: $doc,
            get: $get,
            set: $set,
        }
    };
}

/// `cluster { }`, in the order the printer writes them.
pub const CLUSTER: &[Opt<Cluster>] = &[
    opt!(
        "cluster_group",
        "string",
        "\"ec_cluster\"",
        "non-empty",
        Restart,
        false,
        "Group on which DuraVIP ownership and replication travel.",
        |c| s(&c.cluster_group),
        |c, k, v| {
            c.cluster_group = nonempty(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "control_group",
        "string",
        "\"ec_console\"",
        "non-empty",
        Restart,
        false,
        "Group on which nodes answer the manager's console commands.",
        |c| s(&c.control_group),
        |c, k, v| {
            c.control_group = nonempty(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "log_group",
        "string",
        "-",
        "non-empty",
        Applies,
        false,
        "Group on which paniclog lines are broadcast (`cohortctl listen`); none by default.",
        |c| opt_s(c.log_group.as_deref()),
        |c, k, v| {
            c.log_group = Some(nonempty(k, v)?);
            Ok(())
        }
    ),
    opt!(
        "nodename",
        "string",
        "-",
        "no spaces or '#'",
        Restart,
        false,
        "This node's name; else EC_NODE_NAME, else the host name.",
        |c| opt_s(c.nodename.as_deref()),
        |c, k, v| {
            let n = nonempty(k, v)?;
            if n.contains(char::is_whitespace) || n.contains('#') {
                return Err(ConfigError::new(
                    v.loc(),
                    format!("nodename '{n}' must not contain spaces or '#'"),
                ));
            }
            c.nodename = Some(n);
            Ok(())
        }
    ),
    opt!(
        "nodeaddr",
        "address",
        "-",
        "not 127.0.0.1",
        Restart,
        false,
        "This node's cluster address; else its `peers` entry, else its name resolved.",
        |c| c.nodeaddr.map_or(Shown::Absent, |a| s(&a.to_string())),
        |c, k, v| {
            let a = ip(k, v)?;
            if a == IpAddr::from([127, 0, 0, 1]) {
                return Err(ConfigError::new(
                    v.loc(),
                    "nodeaddr must be routable via the cluster network and must not be 127.0.0.1",
                ));
            }
            c.nodeaddr = Some(a);
            Ok(())
        }
    ),
    opt!(
        "subcluster",
        "string",
        "-",
        "one lower-case word",
        Restart,
        false,
        "Subcluster name (the `ec_sc_<name>` group); else EC_SUB_CLUSTER, else `default`.",
        |c| opt_s(c.subcluster.as_deref()),
        |c, k, v| {
            let s = nonempty(k, v)?;
            if s.chars().any(|ch| {
                !ch.is_ascii_lowercase() && !ch.is_ascii_digit() && ch != '_' && ch != '-'
            }) {
                return Err(ConfigError::new(
                    v.loc(),
                    format!("subcluster '{s}' must be a single lower-case word"),
                ));
            }
            c.subcluster = Some(s);
            Ok(())
        }
    ),
    opt!(
        "logs",
        "list",
        "the five journals",
        "name = absolute path",
        Applies,
        false,
        "Journals served to the manager's log pulls: name = path.",
        |c| Shown::Pairs(
            c.logs
                .iter()
                .map(|(k, p)| (k.clone(), p.to_string_lossy().into_owned()))
                .collect()
        ),
        |c, k, v| {
            c.logs = logs_dict(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "log_active_interval",
        "seconds",
        "1",
        "0..=86400",
        Applies,
        false,
        "Pause between batches while a log pull has records to send.",
        |c| secs(c.log_active_interval),
        |c, k, v| {
            c.log_active_interval = seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "log_idle_interval",
        "seconds",
        "10",
        "0..=86400",
        Applies,
        false,
        "Pause before looking again when a log pull has nothing to send.",
        |c| secs(c.log_idle_interval),
        |c, k, v| {
            c.log_idle_interval = seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "heartbeat_start_delay",
        "seconds",
        "15",
        "0..=86400",
        Restart,
        false,
        "Time after start-up before stuck members are detected by heartbeat.",
        |c| secs(c.heartbeat_start_delay),
        |c, k, v| {
            c.heartbeat_start_delay = seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "heartbeats_per_sec",
        "integer",
        "1",
        "1..=1000",
        Applies,
        false,
        "Heartbeats per second; a member silent for three periods is stuck.",
        |c| n(c.heartbeats_per_sec),
        |c, k, v| {
            c.heartbeats_per_sec = u32_in(k, v, 1, 1000)?;
            Ok(())
        }
    ),
    opt!(
        "if_check_interval",
        "seconds",
        "30",
        "0 < s <= 86400",
        Applies,
        false,
        "Time between checks that owned DuraVIPs are still plumbed.",
        |c| secs(c.if_check_interval),
        |c, k, v| {
            c.if_check_interval = positive_seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "if_down_limit",
        "seconds",
        "4",
        "0..=86400",
        Applies,
        false,
        "Time an owned address may be missing before it is plumbed again.",
        |c| secs(c.if_down_limit),
        |c, k, v| {
            c.if_down_limit = seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "arp_all_hosts",
        "boolean",
        "true",
        "-",
        Applies,
        false,
        "Broadcast gratuitous ARP (true) or target the shared ARP cache's hosts (false).",
        |c| n(c.arp_all_hosts),
        |c, k, v| {
            c.arp_all_hosts = boolean(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "arp_cache_interval",
        "seconds",
        "60",
        "0..=86400",
        Applies,
        true,
        "Time between collections of this node's ARP cache for the shared cache; 0 = never.",
        |c| secs(c.arp_cache_interval),
        |c, k, v| {
            c.arp_cache_interval = seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "duravip_quorum",
        "choice",
        "\"none\"",
        "none, majority",
        Applies,
        true,
        "majority: a member whose view holds no majority of the peers releases its DuraVIPs and claims none (none: Momentum's behaviour).",
        |c| s(c.duravip_quorum.name()),
        |c, k, v| {
            c.duravip_quorum = choice(
                k,
                v,
                &[("none", Quorum::None), ("majority", Quorum::Majority)],
            )?;
            Ok(())
        }
    ),
    opt!(
        "console_key",
        "path",
        "-",
        "a readable key file; relative to the file",
        Restart,
        true,
        "Key a TCP console connection must prove (challenge-response) before any command; else the cluster key.",
        |c| opt_path(c.console_key.as_ref()),
        |c, k, v| {
            c.console_key = Some(path_from(k, v)?);
            Ok(())
        }
    ),
    opt!(
        "duravip_notify",
        "path",
        "-",
        "an executable; relative to the file",
        Applies,
        true,
        "Run on every DuraVIP acquire and release as `PROGRAM EVENT ADDRESS INTERFACE`, without blocking the loop.",
        |c| opt_path(c.duravip_notify.as_ref()),
        |c, k, v| {
            c.duravip_notify = Some(path_from(k, v)?);
            Ok(())
        }
    ),
    opt!(
        "duravip_notify_timeout",
        "seconds",
        "10",
        "0 < s <= 86400",
        Applies,
        true,
        "Seconds a duravip_notify program may run before it is killed.",
        |c| secs(c.duravip_notify_timeout),
        |c, k, v| {
            c.duravip_notify_timeout = positive_seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "duravip_balance_set_size",
        "integer",
        "1",
        "1..=1000000",
        Applies,
        false,
        "DuraVIPs moved per balancing round.",
        |c| n(c.duravip_balance_set_size),
        |c, k, v| {
            c.duravip_balance_set_size = u32_in(k, v, 1, 1_000_000)?;
            Ok(())
        }
    ),
    opt!(
        "view_mature_time",
        "seconds",
        "5",
        "0..=86400",
        Applies,
        false,
        "Time a view must stay unchanged before DuraVIPs are assigned in it.",
        |c| secs(c.view_mature_time),
        |c, k, v| {
            c.view_mature_time = seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "view_balance_interval",
        "seconds",
        "10",
        "0 < s <= 86400",
        Applies,
        false,
        "Time between DuraVIP balancing rounds.",
        |c| secs(c.view_balance_interval),
        |c, k, v| {
            c.view_balance_interval = positive_seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "view_broadcast_interval",
        "seconds",
        "0",
        "0..=86400",
        Applies,
        false,
        "Time between speculative DuraVIP announcements; 0 = never.",
        |c| secs(c.view_broadcast_interval),
        |c, k, v| {
            c.view_broadcast_interval = seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "unconditional_rebind",
        "boolean",
        "true",
        "-",
        Applies,
        false,
        "MTA behaviour on message moves; kept for fidelity, no effect in Cohort.",
        |c| n(c.unconditional_rebind),
        |c, k, v| {
            c.unconditional_rebind = boolean(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "debug_level",
        "string",
        "\"error\"",
        "non-empty",
        Applies,
        false,
        "Generic module option; kept, no effect in Cohort (use RUST_LOG).",
        |c| s(&c.debug_level),
        |c, k, v| {
            c.debug_level = nonempty(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "enabled",
        "boolean",
        "true",
        "-",
        Restart,
        false,
        "false: cohortd runs no cluster service and says so.",
        |c| n(c.enabled),
        |c, k, v| {
            c.enabled = boolean(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "tcp_buffer_size",
        "integer",
        "32768",
        "1..=4294967295",
        Applies,
        false,
        "MTA outbound TCP buffer size; kept, no effect in Cohort.",
        |c| n(c.tcp_buffer_size),
        |c, k, v| {
            c.tcp_buffer_size = u32_in(k, v, 1, u32::MAX)?;
            Ok(())
        }
    ),
    opt!(
        "garp_count",
        "integer",
        "3",
        "0..=100",
        Applies,
        true,
        "Gratuitous ARP frames sent when an address is acquired.",
        |c| n(c.garp_count),
        |c, k, v| {
            c.garp_count = u32_in(k, v, 0, 100)?;
            Ok(())
        }
    ),
    opt!(
        "garp_interval",
        "seconds",
        "0.1",
        "0..=86400",
        Applies,
        true,
        "Time between those frames.",
        |c| secs(c.garp_interval),
        |c, k, v| {
            c.garp_interval = seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "garp_refresh",
        "seconds",
        "0",
        "0..=86400",
        Applies,
        true,
        "Time between repeated announcements of owned addresses; 0 = never.",
        |c| secs(c.garp_refresh),
        |c, k, v| {
            c.garp_refresh = seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "xdp",
        "choice",
        "\"auto\"",
        "auto, native, generic, off",
        Restart,
        true,
        "How the XDP fast path attaches.",
        |c| s(c.xdp.name()),
        |c, k, v| {
            c.xdp = choice(
                k,
                v,
                &[
                    ("auto", XdpMode::Auto),
                    ("native", XdpMode::Native),
                    ("generic", XdpMode::Generic),
                    ("off", XdpMode::Off),
                ],
            )?;
            Ok(())
        }
    ),
    opt!(
        "xdp_lease",
        "seconds",
        "3",
        "0 < s <= 86400",
        Applies,
        true,
        "Time the XDP program keeps answering for an address without a renewal.",
        |c| secs(c.xdp_lease),
        |c, k, v| {
            c.xdp_lease = positive_seconds(k, v)?;
            Ok(())
        }
    ),
];

/// `msgc_server { }`, in the order the printer writes them.
pub const MSGC_SERVER: &[Opt<MsgcServer>] = &[
    opt!(
        "peers",
        "list",
        "-",
        "name = address, unique",
        Restart,
        false,
        "The cluster's members: node name = IP, IP:port or host name.",
        |m| Shown::Pairs(
            m.peers
                .iter()
                .map(|p| (p.name.clone(), p.address.clone()))
                .collect()
        ),
        |c, k, v| {
            c.peers = peers(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "port",
        "integer",
        "4809",
        "1..=65535",
        Restart,
        false,
        "UDP port of the group transport.",
        |m| n(m.port),
        |c, k, v| {
            c.port = integer(k, v, 1, 65535)? as u16;
            Ok(())
        }
    ),
    opt!(
        "connect_timeout",
        "seconds",
        "60",
        "0..=86400",
        Applies,
        false,
        "msgc option; kept, no effect in Cohort's transport.",
        |m| secs(m.connect_timeout),
        |c, k, v| {
            c.connect_timeout = seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "debug_level",
        "string",
        "\"ERROR\"",
        "non-empty",
        Applies,
        false,
        "msgc option; kept, no effect in Cohort's transport.",
        |m| s(&m.debug_level),
        |c, k, v| {
            c.debug_level = nonempty(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "idle_timeout",
        "seconds",
        "30",
        "0..=86400",
        Applies,
        false,
        "msgc option; kept, no effect in Cohort's transport.",
        |m| secs(m.idle_timeout),
        |c, k, v| {
            c.idle_timeout = seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "keepalive_interval",
        "seconds",
        "5",
        "0..=86400",
        Applies,
        false,
        "msgc option; kept, no effect in Cohort's transport.",
        |m| secs(m.keepalive_interval),
        |c, k, v| {
            c.keepalive_interval = seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "max_backlog",
        "integer",
        "5000",
        "1..=4294967295",
        Applies,
        false,
        "msgc option; kept, no effect in Cohort's transport.",
        |m| n(m.max_backlog),
        |c, k, v| {
            c.max_backlog = u32_in(k, v, 1, u32::MAX)?;
            Ok(())
        }
    ),
    opt!(
        "messages_per_iter",
        "integer",
        "20",
        "1..=4294967295",
        Applies,
        false,
        "msgc option; kept, no effect in Cohort's transport.",
        |m| n(m.messages_per_iter),
        |c, k, v| {
            c.messages_per_iter = u32_in(k, v, 1, u32::MAX)?;
            Ok(())
        }
    ),
    opt!(
        "reconnect_interval",
        "seconds",
        "5",
        "0..=86400",
        Applies,
        false,
        "msgc option; kept, no effect in Cohort's transport.",
        |m| secs(m.reconnect_interval),
        |c, k, v| {
            c.reconnect_interval = seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "tcpbuf_size",
        "integer",
        "131072",
        "1..=4294967295",
        Applies,
        false,
        "msgc option; kept, no effect in Cohort's transport.",
        |m| n(m.tcpbuf_size),
        |c, k, v| {
            c.tcpbuf_size = u32_in(k, v, 1, u32::MAX)?;
            Ok(())
        }
    ),
    opt!(
        "probe_interval",
        "seconds",
        "0.2",
        "0 < s <= 86400",
        Applies,
        true,
        "Time between failure-detector probes.",
        |m| secs(m.probe_interval),
        |c, k, v| {
            c.probe_interval = positive_seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "suspect_timeout",
        "seconds",
        "0.6",
        "above probe_interval",
        Applies,
        true,
        "Silence after which a peer is suspected.",
        |m| secs(m.suspect_timeout),
        |c, k, v| {
            c.suspect_timeout = positive_seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "cluster_key",
        "path or list",
        "-",
        "readable key files; a list is a keyring",
        Applies,
        true,
        "File holding the cluster key, or a keyring ( \"new\", \"old\" ): sent under the first, accepted under any; a reload rotates it.",
        |m| match m.cluster_key.as_slice() {
            [] => Shown::Absent,
            [one] => s(&one.to_string_lossy()),
            many => Shown::Value(format!(
                "( {} )",
                many.iter()
                    .map(|p| quote(&p.to_string_lossy()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        },
        |c, k, v| {
            c.cluster_key = match v {
                Value::List { items, loc } if items.is_empty() => {
                    return Err(ConfigError::new(loc, format!("'{k}' lists no key file")));
                }
                Value::List { items, .. } => items
                    .iter()
                    .map(|i| path_from(k, i))
                    .collect::<Result<_, _>>()?,
                _ => vec![path_from(k, v)?],
            };
            Ok(())
        }
    ),
    opt!(
        "cluster_crypto",
        "choice",
        "\"mac\"",
        "mac, seal",
        Restart,
        true,
        "With cluster_key: mac authenticates every datagram; seal also encrypts its messages (ChaCha20-Poly1305, a key per sender, incarnation and destination).",
        |m| s(m.cluster_crypto.name()),
        |c, k, v| {
            c.cluster_crypto = choice(
                k,
                v,
                &[("mac", ClusterCrypto::Mac), ("seal", ClusterCrypto::Seal)],
            )?;
            Ok(())
        }
    ),
    opt!(
        "mtu",
        "integer",
        "1400",
        "576..=65507",
        Restart,
        true,
        "Largest UDP payload sent, bytes.",
        |m| n(m.mtu),
        |c, k, v| {
            c.mtu = u32_in(k, v, 576, 65507)?;
            Ok(())
        }
    ),
    opt!(
        "max_unstable_bytes",
        "integer",
        "4194304",
        "at least mtu",
        Restart,
        true,
        "Flow-control window: bytes a sender may have unstable.",
        |m| n(m.max_unstable_bytes),
        |c, k, v| {
            c.max_unstable_bytes = integer(k, v, 1, i64::MAX)? as u64;
            Ok(())
        }
    ),
    opt!(
        "max_queue",
        "integer",
        "65536",
        "1..=4294967295",
        Restart,
        true,
        "Messages a sender may queue before sends would block.",
        |m| n(m.max_queue),
        |c, k, v| {
            c.max_queue = u32_in(k, v, 1, u32::MAX)?;
            Ok(())
        }
    ),
    opt!(
        "max_message_size",
        "integer",
        "16777216",
        "1024..=4294967295",
        Restart,
        true,
        "Largest message, bytes (larger ones travel in fragments).",
        |m| n(m.max_message_size),
        |c, k, v| {
            c.max_message_size = integer(k, v, 1024, i64::from(u32::MAX))? as u64;
            Ok(())
        }
    ),
    opt!(
        "cluster_id",
        "integer",
        "0",
        "0..=4294967295",
        Restart,
        true,
        "Cluster identifier: datagrams of another cluster are dropped.",
        |m| n(m.cluster_id),
        |c, k, v| {
            c.cluster_id = u32_in(k, v, 0, u32::MAX)?;
            Ok(())
        }
    ),
    opt!(
        "udp_driver",
        "choice",
        "\"syscall\"",
        "syscall, uring",
        Restart,
        true,
        "How datagrams move: recvmmsg/sendmmsg or io_uring.",
        |m| s(m.udp_driver.name()),
        |c, k, v| {
            c.udp_driver = choice(
                k,
                v,
                &[
                    ("syscall", UdpDriver::Syscall),
                    ("uring", UdpDriver::Uring),
                    ("io_uring", UdpDriver::Uring),
                ],
            )?;
            Ok(())
        }
    ),
    opt!(
        "loop_nice",
        "integer",
        "-4",
        "-20..=19",
        Restart,
        true,
        "Scheduling priority of the event loop thread.",
        |m| n(m.loop_nice),
        |c, k, v| {
            c.loop_nice = integer(k, v, -20, 19)? as i32;
            Ok(())
        }
    ),
];

fn kind_value(key: &str, v: &Value) -> Result<ReplicateKind, ConfigError> {
    let s = string(key, v)?;
    ReplicateKind::from_name(&s).ok_or_else(|| {
        let all: Vec<&str> = ReplicateKind::ALL.iter().map(|k| k.name()).collect();
        ConfigError::new(
            v.loc(),
            format!("unknown replication type '{s}' (known: {})", all.join(", ")),
        )
    })
}

/// `Replicate "name" { }` (inside `cluster`), in the order the printer writes them. The loader
/// checks what involves several options afterwards: `type` and `class` agree, `max_size` only
/// for caches, `binding_group` only for `outbound_cidr` and `outbound_domains`.
pub const REPLICATE: &[Opt<Replicate>] = &[
    opt!(
        "type",
        "choice",
        "the name",
        "a replication type",
        Applies,
        false,
        "cache, inbound_cidr, outbound_cidr, outbound_domains, outbound_binding_domains, OBTM, OBTC, shared_named_throttles, metrics or eccmgr_metrics.",
        |r| s(r.kind.name()),
        |r, k, v| {
            r.kind = kind_value(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "class",
        "choice",
        "-",
        "a replication type, equal to type",
        Applies,
        false,
        "The type of an object whose name is not its type (outbound_cidr_foo).",
        |r| r.class.map_or(Shown::Absent, |c| s(c.name())),
        |r, k, v| {
            r.class = Some(kind_value(k, v)?);
            Ok(())
        }
    ),
    opt!(
        "parameters",
        "list",
        "-",
        "snapshot, connect, delivery, transfail, permfail, reception, rejection, audit_series, gauge_cache",
        Applies,
        false,
        "`;`-separated (or a list).",
        |r| {
            if r.parameters.is_empty() {
                Shown::Absent
            } else {
                let p: Vec<&str> = r.parameters.iter().map(|p| p.name()).collect();
                s(&p.join(";"))
            }
        },
        |r, k, v| {
            let raw = match v {
                Value::List { .. } => strings(k, v)?,
                _ => string(k, v)?.split(';').map(str::to_owned).collect(),
            };
            for p in raw.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
                let param = ReplicateParam::from_name(p).ok_or_else(|| {
                    let all: Vec<&str> = ReplicateParam::ALL.iter().map(|k| k.name()).collect();
                    ConfigError::new(
                        v.loc(),
                        format!(
                            "unknown replication parameter '{p}' (known: {})",
                            all.join(", ")
                        ),
                    )
                })?;
                if !r.parameters.contains(&param) {
                    r.parameters.push(param);
                }
            }
            Ok(())
        }
    ),
    opt!(
        "max_delay",
        "seconds",
        "1",
        "0..=3600",
        Applies,
        false,
        "Time an update may be buffered before a flush.",
        |r| secs(r.max_delay),
        |r, k, v| {
            r.max_delay = seconds_in(k, v, 0.0, 3600.0)?;
            Ok(())
        }
    ),
    opt!(
        "max_pending",
        "integer",
        "100",
        "1..=4294967295",
        Applies,
        false,
        "Buffered updates that force a flush.",
        |r| n(r.max_pending),
        |r, k, v| {
            let m = integer(k, v, i64::MIN, u32::MAX.into())?;
            if m < 1 {
                return Err(ConfigError::new(
                    v.loc(),
                    format!("'max_pending' must be at least 1 (found {m})"),
                ));
            }
            r.max_pending = m as u32;
            Ok(())
        }
    ),
    opt!(
        "max_size",
        "integer",
        "-1",
        "-1, or at least 1; caches only",
        Applies,
        false,
        "Maximum entries of a cache; -1 = the largest supported.",
        |r| {
            if r.kind == ReplicateKind::Cache {
                n(r.max_size)
            } else {
                Shown::Absent
            }
        },
        |r, k, v| {
            let m = integer(k, v, -1, i64::MAX)?;
            if m == 0 {
                return Err(ConfigError::new(
                    v.loc(),
                    "'max_size' must be -1 (unbounded) or at least 1",
                ));
            }
            r.max_size = m;
            Ok(())
        }
    ),
    opt!(
        "binding_group",
        "string",
        "-",
        "outbound_cidr and outbound_domains only",
        Applies,
        false,
        "Only outbound connections on this Binding_Group's bindings are counted (cluster shared outbound open/close).",
        |r| opt_s(r.binding_group.as_deref()),
        |r, k, v| {
            r.binding_group = Some(nonempty(k, v)?);
            Ok(())
        }
    ),
];

/// `Topology "cidr" { }` (inside `cluster`).
pub const TOPOLOGY: &[Opt<Topology>] = &[
    opt!(
        "interface",
        "string",
        "-",
        "required; an interface name",
        Applies,
        false,
        "The interface DuraVIPs of this block are plumbed on.",
        |t| s(&t.interface),
        |t, k, v| {
            let i = nonempty(k, v)?;
            if i.len() > 15 || i.contains(['/', ' ']) {
                return Err(ConfigError::new(
                    v.loc(),
                    format!("'{i}' is not a valid interface name"),
                ));
            }
            t.interface = i;
            Ok(())
        }
    ),
    opt!(
        "cidrmask",
        "integer",
        "32 (128 for IPv6)",
        "0..=32 (0..=128 for IPv6)",
        Applies,
        false,
        "The prefix length the addresses are plumbed with.",
        |t| n(t.cidrmask),
        |t, k, v| {
            t.cidrmask = integer(k, v, 0, t.network.max_prefix_len().into())? as u8;
            Ok(())
        }
    ),
];

/// `Security { }`.
pub const SECURITY: &[Opt<Security>] = &[
    opt!(
        "user",
        "string",
        "-",
        "a user of this host",
        Restart,
        false,
        "The user cohortd runs as once set up, keeping its three capabilities.",
        |x| opt_s(x.user.as_deref()),
        |x, k, v| {
            x.user = Some(nonempty(k, v)?);
            Ok(())
        }
    ),
    opt!(
        "group",
        "string",
        "the user's primary group",
        "a group of this host",
        Restart,
        false,
        "The group cohortd runs as.",
        |x| opt_s(x.group.as_deref()),
        |x, k, v| {
            x.group = Some(nonempty(k, v)?);
            Ok(())
        }
    ),
];

/// A scope that can hold a DuraVIP: a binding or a listener's address.
pub trait DuravipScope {
    fn duravip(&self) -> (bool, Option<&str>);
    fn duravip_mut(&mut self) -> (&mut bool, &mut Option<String>);
}

impl DuravipScope for Binding {
    fn duravip(&self) -> (bool, Option<&str>) {
        (self.enable_duravip, self.duravip_preference.as_deref())
    }
    fn duravip_mut(&mut self) -> (&mut bool, &mut Option<String>) {
        (&mut self.enable_duravip, &mut self.duravip_preference)
    }
}

impl DuravipScope for Listener {
    fn duravip(&self) -> (bool, Option<&str>) {
        (self.enable_duravip, self.duravip_preference.as_deref())
    }
    fn duravip_mut(&mut self) -> (&mut bool, &mut Option<String>) {
        (&mut self.enable_duravip, &mut self.duravip_preference)
    }
}

const fn enable_duravip<T: DuravipScope>(bound: &'static str) -> Opt<T> {
    Opt {
        name: "Enable_Duravip",
        kind: "boolean",
        default: "false",
        bound,
        reload: Reload::Applies,
        extension: false,
        doc: "Whether the cluster keeps the address up on exactly one member.",
        get: |x| n(x.duravip().0),
        set: |x, k, v| {
            *x.duravip_mut().0 = boolean(k, v)?;
            Ok(())
        },
    }
}

const fn duravip_preference<T: DuravipScope>() -> Opt<T> {
    Opt {
        name: "Duravip_Preference",
        kind: "string",
        default: "-",
        bound: "a node name",
        reload: Reload::Applies,
        extension: false,
        doc: "The node that owns the address whenever it is in the view.",
        get: |x| opt_s(x.duravip().1),
        set: |x, k, v| {
            *x.duravip_mut().1 = Some(nonempty(k, v)?);
            Ok(())
        },
    }
}

/// `Binding "name" { }` (also inside `Binding_Group "name" { }`): the options Cohort reads; the
/// MTA's own binding options are kept and reported once.
pub const BINDING: &[Opt<Binding>] = &[
    opt!(
        "Bind_Address",
        "address",
        "-",
        "an IP address; required with Enable_Duravip",
        Applies,
        false,
        "The address the binding sends from: with Enable_Duravip, the DuraVIP the cluster keeps up.",
        |b| b.bind_address.map_or(Shown::Absent, |a| s(&a.to_string())),
        |b, k, v| {
            b.bind_address = Some(ip(k, v)?);
            Ok(())
        }
    ),
    enable_duravip("true or false"),
    duravip_preference(),
];

/// `ESMTP_Listener { Listen "IP:PORT" { } }`: the options Cohort reads on a listener's address.
pub const LISTEN: &[Opt<Listener>] = &[
    enable_duravip("true or false; not with Duravip_Follow"),
    duravip_preference(),
    opt!(
        "Duravip_Follow",
        "string",
        "-",
        "an Enable_Duravip binding's name or address",
        Applies,
        false,
        "The address moves with the named binding's owner.",
        |l| opt_s(l.duravip_follow.as_deref()),
        |l, k, v| {
            l.duravip_follow = Some(nonempty(k, v)?);
            Ok(())
        }
    ),
];

fn destination(v: &Value, key: &str) -> Result<Destination, ConfigError> {
    let text = string(key, v)?;
    match parse_journal(&text).map_err(|m| ConfigError::new(v.loc(), m))? {
        Some(j) => Ok(Destination::Journal(j)),
        None => Ok(Destination::File(text)),
    }
}

fn output_of(l: &Logger, log: &str) -> Shown {
    l.outputs
        .iter()
        .find(|o| o.log.eq_ignore_ascii_case(log))
        .map_or(Shown::Absent, |o| match &o.destination {
            Destination::Journal(j) => s(&super::render::journal_uri(j)),
            Destination::File(f) => s(f),
        })
}

fn set_output(l: &mut Logger, key: &str, v: &Value) -> Result<(), ConfigError> {
    let destination = destination(v, key)?;
    l.outputs.push(LogOutput {
        log: key.to_owned(),
        destination,
    });
    Ok(())
}

macro_rules! log_opt {
    ($name:literal, $doc:literal) => {
        opt!(
            $name,
            "destination",
            "-",
            "a file, or an absolute cluster:// or jlog:// journal",
            Applies,
            false,
            $doc,
            |l| output_of(l, $name),
            set_output
        )
    };
}

/// `ec_logger { }` and `bounce_logger { }`. Any other option whose value is a `cluster://` or
/// `jlog://` journal is a journal too (custom logs); the rest belong to the MTA.
pub const LOGGER: &[Opt<Logger>] = &[
    log_opt!("mainlog", "Reception and delivery records."),
    log_opt!("paniclog", "Warnings and errors."),
    log_opt!("rejectlog", "Rejected messages."),
    log_opt!("acctlog", "Accounting records."),
    log_opt!("bouncelog", "Bounces (bounce_logger)."),
    log_opt!(
        "bouncealllog",
        "Every bounce, classified or not (bounce_logger)."
    ),
];

/// `inbound_audit { }`: Cohort reads its `monitors`, the windows of the replicated series; the
/// module's other options are the MTA's.
pub const INBOUND_AUDIT: &[Opt<InboundAudit>] = &[opt!(
    "monitors",
    "list",
    "( \"300,6\" )",
    "\"SECONDS,WINDOWS\" each, both at least 1",
    Applies,
    false,
    "Windows of the replicated series (Replicate \"metrics\"): seconds per window, windows kept.",
    |a| Shown::Value(format!(
        "( {} )",
        a.monitors
            .iter()
            .map(|(w, n)| quote(&format!("{w},{n}")))
            .collect::<Vec<_>>()
            .join(", ")
    )),
    |a, k, v| {
        let items: Vec<&Value> = match v {
            Value::List { items, .. } => items.iter().collect(),
            other => vec![other],
        };
        let mut out = Vec::new();
        for item in items {
            let text = string(k, item)?;
            let parsed = text.split_once(',').and_then(|(w, n)| {
                Some((w.trim().parse::<u64>().ok()?, n.trim().parse::<u32>().ok()?))
            });
            match parsed {
                Some((w, n)) if w >= 1 && n >= 1 && w <= 86_400 * 366 => out.push((w, n)),
                _ => {
                    return Err(ConfigError::new(
                        item.loc(),
                        format!(
                            "'{k}' expects \"SECONDS,WINDOWS\" such as \"300,6\", found '{text}'"
                        ),
                    ));
                }
            }
        }
        if out.is_empty() {
            return Err(ConfigError::new(v.loc(), format!("'{k}' lists no monitor")));
        }
        a.monitors = out;
        Ok(())
    }
)];

/// The manager's `Logs { }` (eccluster.conf); its `Manager "name" { }` scopes are described beside
/// the table in `docs/configuration.md`.
pub const LOGS: &[Opt<ManagerLogs>] = &[
    opt!(
        "logfile",
        "string",
        "\"/var/log/eccluster/%Y/%m/%d/%{l}/%{s}/%{n}\"",
        "strftime plus %{l} log, %{s} subcluster, %{n} node",
        Restart,
        false,
        "Where the manager writes each pulled record; an unknown conversion is refused.",
        |m| s(&m.logfile),
        |m, k, v| {
            let f = nonempty(k, v)?;
            // The manager expands it for every record; a bad conversion is a configuration
            // error here, not a surprise at the first pull.
            if let Err(e) = crate::logmove::pattern::Pattern::parse(&f) {
                return Err(ConfigError::new(
                    v.loc(),
                    format!("'{k}' character {}: {}", e.col, e.what),
                ));
            }
            m.logfile = f;
            Ok(())
        }
    ),
    opt!(
        "file_mode",
        "string",
        "\"0640\"",
        "an octal mode up to 7777",
        Restart,
        false,
        "Mode of the files the manager creates.",
        |m| s(&format!("{:04o}", m.file_mode)),
        |m, k, v| {
            m.file_mode = octal_mode(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "dir_mode",
        "string",
        "\"0755\"",
        "an octal mode up to 7777",
        Restart,
        false,
        "Mode of the directories the manager creates.",
        |m| s(&format!("{:04o}", m.dir_mode)),
        |m, k, v| {
            m.dir_mode = octal_mode(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "max_open",
        "integer",
        "256",
        "1..=1000000",
        Restart,
        true,
        "Output files open at once (Momentum leaves it undocumented).",
        |m| n(m.max_open),
        |m, k, v| {
            m.max_open = u32_in(k, v, 1, 1_000_000)?;
            Ok(())
        }
    ),
    opt!(
        "max_idle",
        "seconds",
        "300",
        "0..=86400",
        Restart,
        true,
        "Seconds an output file stays open without a write.",
        |m| secs(m.max_idle),
        |m, k, v| {
            m.max_idle = seconds(k, v)?;
            Ok(())
        }
    ),
    opt!(
        "control_cache",
        "path",
        "\"/var/log/eccluster/control_cache\"",
        "a directory; relative to the file",
        Restart,
        false,
        "Directory caching the nodes' answers to the manager's commands (a file per answer).",
        |m| s(&m.control_cache.to_string_lossy()),
        |m, k, v| {
            m.control_cache = path_from(k, v)?;
            Ok(())
        }
    ),
];

/// The option of `table` named `key` (names are matched case-insensitively).
pub fn find<'t, T>(table: &'t [Opt<T>], key: &str) -> Option<&'t Opt<T>> {
    table.iter().find(|o| o.name.eq_ignore_ascii_case(key))
}

/// The names of a table, for suggestions.
pub fn names<T>(table: &[Opt<T>]) -> Vec<&'static str> {
    table.iter().map(|o| o.name).collect()
}

/// Options of `table` whose value differs between `old` and `new`.
pub fn changed<'t, T>(table: &'t [Opt<T>], old: &T, new: &T) -> Vec<&'t Opt<T>> {
    table
        .iter()
        .filter(|o| (o.get)(old) != (o.get)(new))
        .collect()
}

/// The reference of one scope as a Markdown table (the `docs/configuration.md` and
/// `cohort.conf(5)` source).
pub fn reference_table<T>(scope: &str, table: &[Opt<T>]) -> String {
    reference_rows(scope, &rows(table))
}

fn reference_rows(scope: &str, table: &[Row]) -> String {
    let mut out = format!(
        "| `{scope}` option | type | default | accepted | reload | |\n| --- | --- | --- | --- | --- | --- |\n"
    );
    for o in table {
        let ext = if o.extension {
            " (Cohort extension)"
        } else {
            ""
        };
        let reload = match o.reload {
            Reload::Applies => "applies",
            Reload::Restart => "restart",
        };
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} | {} | {}{} |\n",
            o.name, o.kind, o.default, o.bound, reload, o.doc, ext
        ));
    }
    out
}

/// One option as the reference prints it, whatever its scope's type.
pub struct Row {
    pub name: &'static str,
    pub kind: &'static str,
    pub default: &'static str,
    pub bound: &'static str,
    pub reload: Reload,
    pub extension: bool,
    pub doc: &'static str,
}

fn rows<T>(table: &[Opt<T>]) -> Vec<Row> {
    table
        .iter()
        .map(|o| Row {
            name: o.name,
            kind: o.kind,
            default: o.default,
            bound: o.bound,
            reload: o.reload,
            extension: o.extension,
            doc: o.doc,
        })
        .collect()
}

/// Every table: (the scope's name in the reference's header and markers, the scope as written in
/// a file, its rows). The reference, `cohort.conf(5)` and the documentation test iterate this.
pub fn catalogue() -> Vec<(&'static str, &'static str, Vec<Row>)> {
    vec![
        ("cluster", "cluster", rows(CLUSTER)),
        ("msgc_server", "msgc_server", rows(MSGC_SERVER)),
        ("Replicate", "Replicate \"name\"", rows(REPLICATE)),
        ("Topology", "Topology \"cidr\"", rows(TOPOLOGY)),
        ("Security", "Security", rows(SECURITY)),
        ("Binding", "Binding \"name\"", rows(BINDING)),
        (
            "ESMTP_Listener.Listen",
            "ESMTP_Listener.Listen \"ip:port\"",
            rows(LISTEN),
        ),
        ("ec_logger", "ec_logger / bounce_logger", rows(LOGGER)),
        ("Logs", "Logs", rows(LOGS)),
        ("inbound_audit", "inbound_audit", rows(INBOUND_AUDIT)),
    ]
}

/// The whole reference: every scope with a table.
pub fn reference() -> String {
    catalogue()
        .iter()
        .map(|(scope, _, rows)| reference_rows(scope, rows))
        .collect::<Vec<_>>()
        .join("\n")
}
