//! The typed configuration: every option Cohort reads, with the default the Momentum
//! documentation gives it (or, where the documentation is silent or contradicts itself, the
//! default the configuration reference, docs/configuration.md, states).
//!
//! These types hold values only, no source positions, so that two configurations compare equal
//! when they mean the same thing (the round-trip property of [`super::render()`]).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

/// Time values are written in seconds (fractions allowed) and held as [`Duration`]s, each checked
/// against its option's bounds once, by the loader, with the value's location; JSON shows them in
/// seconds.
pub fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A whole configuration file: a node's (`ecelerity-cluster.conf` style) or a manager's
/// (`eccluster.conf` style); both may appear in one file.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Config {
    pub cluster: Cluster,
    pub msgc_server: MsgcServer,
    pub control_listener: ControlListener,
    pub eccluster_listener: EcclusterListener,
    /// `Binding` scopes, including those nested in a `Binding_Group`.
    pub bindings: Vec<Binding>,
    /// `Binding_Group` scopes (their own MTA options; members are in `bindings`).
    pub binding_groups: Vec<BindingGroup>,
    /// `Listen` scopes of all `ESMTP_Listener` stanzas, in file order.
    pub esmtp_listeners: Vec<Listener>,
    /// Options of the `ESMTP_Listener` stanzas outside their `Listen` scopes (MTA-only).
    pub esmtp_listener_extra: Vec<Extra>,
    /// `ec_logger` and `bounce_logger` stanzas.
    pub loggers: Vec<Logger>,
    /// The manager's `Logs` stanza (eccluster.conf), if present.
    pub manager_logs: Option<ManagerLogs>,
    /// `Security { user group }`, if present.
    pub security: Option<Security>,
    /// `inbound_audit { monitors = (...) }`: the windows of the replicated series (`metrics`).
    pub inbound_audit: Option<InboundAudit>,
    /// Cohort extension: `Metrics_Listener { Listen "ADDR:PORT" {} }`, the Prometheus endpoint
    /// (`/metrics`); off when absent.
    pub metrics_listener: Option<MetricsListener>,
    /// `cluster_outbound_throttle_messages` / `_connections` stanzas (global, `Domain`,
    /// `Binding_Group`, `Domain` inside `Binding_Group`) that an `OBTM` / `OBTC` object enforces.
    /// The options stay in the stanzas' `extra` as written, for printing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outbound_throttles: Vec<OutboundThrottle>,
    /// Top-level items that belong to the MTA, kept as written.
    pub extra: Vec<Extra>,
}

/// One `cluster_outbound_throttle_messages = "N/SECS"` (or `_connections`): at most `limit`
/// messages (connections) per `period` seconds across the cluster, for the stanza it is in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutboundThrottle {
    /// `cluster_outbound_throttle_connections` (else `_messages`).
    pub connections: bool,
    /// The `Binding_Group` it is in, if any.
    pub binding_group: Option<String>,
    /// The `Domain` it is in, if any.
    pub domain: Option<String>,
    pub limit: u64,
    pub period: u64,
}

/// An option or scope Cohort does not use, kept in canonical text so that printing the
/// configuration preserves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Extra {
    pub key: String,
    pub text: String,
}

/// The `cluster { }` scope (module page 71.19 and docs survey section 2).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cluster {
    /// EVS group through which DuraVIP ownership is coordinated. Default `ec_cluster`.
    pub cluster_group: String,
    /// Group on which nodes answer console commands from the manager. Default `ec_console`.
    pub control_group: String,
    /// Group on which paniclog lines are broadcast; none by default.
    pub log_group: Option<String>,
    /// Node name override; see [`super::nodename`] for the resolution order.
    pub nodename: Option<String>,
    /// Canonical cluster address; must not be 127.0.0.1.
    pub nodeaddr: Option<IpAddr>,
    /// Subcluster name (deprecated in Momentum, still used for the `ec_sc_<subcluster>` group).
    pub subcluster: Option<String>,
    /// Journals served to the log aggregator: name -> local path.
    pub logs: Vec<(String, PathBuf)>,
    /// Seconds between segment sends while logmove is active. Default 1.
    #[serde(serialize_with = "secs")]
    pub log_active_interval: Duration,
    /// Seconds to sleep when logmove has nothing pending. Default 10.
    #[serde(serialize_with = "secs")]
    pub log_idle_interval: Duration,
    /// Seconds after start-up before the cluster heartbeat starts. Default 15.
    #[serde(serialize_with = "secs")]
    pub heartbeat_start_delay: Duration,
    /// Heartbeats per second, at least 1. Default 1.
    pub heartbeats_per_sec: u32,
    /// Seconds between interface maintenance cycles. Default 30.
    #[serde(serialize_with = "secs")]
    pub if_check_interval: Duration,
    /// Seconds to wait before plumbing an address the maintenance cycle found missing. Default 4.
    #[serde(serialize_with = "secs")]
    pub if_down_limit: Duration,
    /// Broadcast gratuitous ARP (true) or target the hosts of the shared ARP cache. Default true.
    pub arp_all_hosts: bool,
    /// Cohort: seconds between collections of this node's ARP cache (the kernel's neighbour table
    /// on the `Topology` interfaces) shared with the cluster, as Wackamole's `Arp-Cache`. Default
    /// 60; 0 = never.
    #[serde(serialize_with = "secs")]
    pub arp_cache_interval: Duration,
    /// DuraVIPs moved per balancing round. Default 1 (see docs/configuration.md on the documented
    /// conflict).
    pub duravip_balance_set_size: u32,
    /// Cohort: `duravip_quorum = majority` fences a member whose view holds no majority of the
    /// configured peers (it releases its addresses and claims none). Default `none` (Momentum).
    pub duravip_quorum: Quorum,
    /// Cohort: the key file a TCP console connection must prove before any command; without it
    /// the cluster keyring serves. Default none.
    pub console_key: Option<PathBuf>,
    /// Cohort: a program run on every DuraVIP acquire and release (`script EVENT ADDRESS
    /// INTERFACE`). Default none.
    pub duravip_notify: Option<PathBuf>,
    /// Cohort: seconds a `duravip_notify` program may run before it is killed. Default 10.
    #[serde(serialize_with = "secs")]
    pub duravip_notify_timeout: Duration,
    /// Seconds a DuraVIP view must stay unchanged to be mature. Default 5.
    #[serde(serialize_with = "secs")]
    pub view_mature_time: Duration,
    /// Seconds between balancing rounds. Default 10.
    #[serde(serialize_with = "secs")]
    pub view_balance_interval: Duration,
    /// Seconds between speculative view announcements; 0 = never. Default 0.
    #[serde(serialize_with = "secs")]
    pub view_broadcast_interval: Duration,
    /// Full set_binding logic on message moves (MTA behaviour; kept for fidelity). Default true.
    pub unconditional_rebind: bool,
    /// Generic module option. Default `error`.
    pub debug_level: String,
    /// Generic module option. Default true.
    pub enabled: bool,
    /// Maximum TCP buffer size for outbound connections. Default 32768.
    pub tcp_buffer_size: u32,
    /// Cohort: gratuitous ARP frames sent when an address is acquired. Default 3.
    pub garp_count: u32,
    /// Cohort: seconds between those frames. Default 0.1.
    #[serde(serialize_with = "secs")]
    pub garp_interval: Duration,
    /// Cohort: seconds between repeated announcements of owned addresses; 0 = never. Default 0.
    #[serde(serialize_with = "secs")]
    pub garp_refresh: Duration,
    /// Cohort: XDP fast path attach mode: auto, native, generic or off. Default auto.
    pub xdp: XdpMode,
    /// Cohort: seconds the XDP program keeps answering without a renewal. Default 3.
    #[serde(serialize_with = "secs")]
    pub xdp_lease: Duration,
    pub replicate: Vec<Replicate>,
    pub topology: Vec<Topology>,
    pub extra: Vec<Extra>,
}

/// The five journals of the documented default `logs` dictionary.
pub fn default_logs() -> Vec<(String, PathBuf)> {
    ["rejectlog", "paniclog", "mainlog", "acctlog", "bouncelog"]
        .iter()
        .map(|n| {
            (
                (*n).to_owned(),
                PathBuf::from(format!("/var/log/ecelerity/{n}.cluster")),
            )
        })
        .collect()
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            cluster_group: "ec_cluster".into(),
            control_group: "ec_console".into(),
            log_group: None,
            nodename: None,
            nodeaddr: None,
            subcluster: None,
            logs: default_logs(),
            log_active_interval: Duration::from_secs(1),
            log_idle_interval: Duration::from_secs(10),
            heartbeat_start_delay: Duration::from_secs(15),
            heartbeats_per_sec: 1,
            if_check_interval: Duration::from_secs(30),
            if_down_limit: Duration::from_secs(4),
            arp_all_hosts: true,
            arp_cache_interval: Duration::from_secs(60),
            duravip_balance_set_size: 1,
            duravip_quorum: Quorum::None,
            console_key: None,
            duravip_notify: None,
            duravip_notify_timeout: Duration::from_secs(10),
            view_mature_time: Duration::from_secs(5),
            view_balance_interval: Duration::from_secs(10),
            view_broadcast_interval: Duration::from_secs(0),
            unconditional_rebind: true,
            debug_level: "error".into(),
            enabled: true,
            tcp_buffer_size: 32768,
            garp_count: 3,
            garp_interval: Duration::from_millis(100),
            garp_refresh: Duration::from_secs(0),
            xdp: XdpMode::Auto,
            xdp_lease: Duration::from_secs(3),
            replicate: Vec::new(),
            topology: Vec::new(),
            extra: Vec::new(),
        }
    }
}

/// The `cluster_crypto` option (Cohort extension).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum ClusterCrypto {
    /// With a `cluster_key`, every datagram carries a MAC; the messages travel in clear.
    #[default]
    Mac,
    /// Every datagram's messages are encrypted and authenticated (needs `cluster_key`).
    Seal,
}

impl ClusterCrypto {
    pub fn name(self) -> &'static str {
        match self {
            ClusterCrypto::Mac => "mac",
            ClusterCrypto::Seal => "seal",
        }
    }
}

/// The `duravip_quorum` option.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Quorum {
    /// Every view elects owners, whatever its size (Momentum's behaviour).
    #[default]
    None,
    /// Only a view holding more than half of the configured peers elects owners.
    Majority,
}

impl Quorum {
    pub fn name(self) -> &'static str {
        match self {
            Quorum::None => "none",
            Quorum::Majority => "majority",
        }
    }

    /// The view size below which a member is fenced, for `peers` configured nodes (this one
    /// included); `None` when nothing is fenced.
    pub fn threshold(self, peers: usize) -> Option<usize> {
        match self {
            Quorum::None => None,
            Quorum::Majority => Some(peers / 2 + 1),
        }
    }
}

/// The `xdp` option: how the fast path attaches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum XdpMode {
    /// Native on real NICs, generic on veth.
    #[default]
    Auto,
    Native,
    Generic,
    /// No XDP: the kernel answers ARP.
    Off,
}

impl XdpMode {
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Auto => "auto",
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Off => "off",
        }
    }
}

/// The `udp_driver` option: how the transport's datagrams move.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum UdpDriver {
    /// recvmmsg/sendmmsg (measured faster here; see `cohort-bench udp`).
    #[default]
    Syscall,
    /// io_uring with multishot receive.
    Uring,
}

impl UdpDriver {
    pub fn name(self) -> &'static str {
        match self {
            UdpDriver::Syscall => "syscall",
            UdpDriver::Uring => "uring",
        }
    }
}

/// What a `Replicate` scope replicates (module page, "Replication Types").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ReplicateKind {
    Cache,
    InboundCidr,
    OutboundCidr,
    OutboundDomains,
    OutboundBindingDomains,
    Obtm,
    Obtc,
    SharedNamedThrottles,
    Metrics,
    EccmgrMetrics,
}

impl ReplicateKind {
    pub const ALL: [ReplicateKind; 10] = [
        ReplicateKind::Cache,
        ReplicateKind::InboundCidr,
        ReplicateKind::OutboundCidr,
        ReplicateKind::OutboundDomains,
        ReplicateKind::OutboundBindingDomains,
        ReplicateKind::Obtm,
        ReplicateKind::Obtc,
        ReplicateKind::SharedNamedThrottles,
        ReplicateKind::Metrics,
        ReplicateKind::EccmgrMetrics,
    ];

    /// The name as the documentation spells it.
    pub fn name(self) -> &'static str {
        match self {
            ReplicateKind::Cache => "cache",
            ReplicateKind::InboundCidr => "inbound_cidr",
            ReplicateKind::OutboundCidr => "outbound_cidr",
            ReplicateKind::OutboundDomains => "outbound_domains",
            ReplicateKind::OutboundBindingDomains => "outbound_binding_domains",
            ReplicateKind::Obtm => "OBTM",
            ReplicateKind::Obtc => "OBTC",
            ReplicateKind::SharedNamedThrottles => "shared_named_throttles",
            ReplicateKind::Metrics => "metrics",
            ReplicateKind::EccmgrMetrics => "eccmgr_metrics",
        }
    }

    /// Case-insensitive lookup of a documented type name.
    pub fn from_name(s: &str) -> Option<ReplicateKind> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
    }
}

/// A value of the `parameters` option of a `Replicate` scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ReplicateParam {
    Snapshot,
    Connect,
    Delivery,
    Transfail,
    Permfail,
    Reception,
    Rejection,
    AuditSeries,
    GaugeCache,
}

impl ReplicateParam {
    pub const ALL: [ReplicateParam; 9] = [
        ReplicateParam::Snapshot,
        ReplicateParam::Connect,
        ReplicateParam::Delivery,
        ReplicateParam::Transfail,
        ReplicateParam::Permfail,
        ReplicateParam::Reception,
        ReplicateParam::Rejection,
        ReplicateParam::AuditSeries,
        ReplicateParam::GaugeCache,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ReplicateParam::Snapshot => "snapshot",
            ReplicateParam::Connect => "connect",
            ReplicateParam::Delivery => "delivery",
            ReplicateParam::Transfail => "transfail",
            ReplicateParam::Permfail => "permfail",
            ReplicateParam::Reception => "reception",
            ReplicateParam::Rejection => "rejection",
            ReplicateParam::AuditSeries => "audit_series",
            ReplicateParam::GaugeCache => "gauge_cache",
        }
    }

    pub fn from_name(s: &str) -> Option<ReplicateParam> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
    }
}

/// One `Replicate "name" { }` scope.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Replicate {
    /// The object's name (for built-ins also its type; for caches the ds_core cache name).
    pub name: String,
    /// The resolved type: `type`, else `class`, else the name.
    pub kind: ReplicateKind,
    /// `class`, for several objects of one type (e.g. `outbound_cidr_foo`).
    pub class: Option<ReplicateKind>,
    pub parameters: Vec<ReplicateParam>,
    /// Seconds updates may wait before a flush. Default 1.0.
    #[serde(serialize_with = "secs")]
    pub max_delay: Duration,
    /// Buffered updates that force a flush. Default 100.
    pub max_pending: u32,
    /// Maximum entries of a cache; -1 = the largest supported. Default -1.
    pub max_size: i64,
    /// Binding group tracked by outbound_cidr / outbound_domains objects.
    pub binding_group: Option<String>,
}

impl Replicate {
    /// A `Replicate` of `kind` named `name` with every option at its default.
    pub fn new(name: impl Into<String>, kind: ReplicateKind) -> Self {
        Replicate {
            name: name.into(),
            kind,
            class: None,
            parameters: Vec::new(),
            max_delay: Duration::from_secs(1),
            max_pending: 100,
            max_size: -1,
            binding_group: None,
        }
    }
}

/// `Topology "10.1.1.0/24" { interface = "eth1" cidrmask = 32 }`: where DuraVIPs of a netblock are
/// plumbed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Topology {
    pub network: IpNet,
    pub interface: String,
    /// Prefix length the address is plumbed with. Default 32 (128 for an IPv6 block).
    pub cidrmask: u8,
}

/// `msgc_server { }`: the group transport (Momentum 4's msgc options plus Cohort's own).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MsgcServer {
    /// Cluster members: node name -> address (IP, IP:port or host name).
    pub peers: Vec<Peer>,
    /// UDP port of the group transport. Default 4809.
    pub port: u16,
    /// msgc option, seconds. Default 60.
    #[serde(serialize_with = "secs")]
    pub connect_timeout: Duration,
    /// msgc option. Default `ERROR`.
    pub debug_level: String,
    /// msgc option, seconds. Default 30.
    #[serde(serialize_with = "secs")]
    pub idle_timeout: Duration,
    /// msgc option, seconds between no-op packets. Default 5.
    #[serde(serialize_with = "secs")]
    pub keepalive_interval: Duration,
    /// msgc option: queue length that declares a connection stuck. Default 5000.
    pub max_backlog: u32,
    /// msgc option. Default 20.
    pub messages_per_iter: u32,
    /// msgc option, seconds. Default 5.
    #[serde(serialize_with = "secs")]
    pub reconnect_interval: Duration,
    /// msgc option, bytes. Default 131072.
    pub tcpbuf_size: u32,
    /// Cohort: seconds between failure-detector probes. Default 0.2.
    #[serde(serialize_with = "secs")]
    pub probe_interval: Duration,
    /// Cohort: seconds of silence before a peer is suspected. Default 0.6.
    #[serde(serialize_with = "secs")]
    pub suspect_timeout: Duration,
    /// Cohort: file holding the cluster key; with it every datagram is authenticated.
    pub cluster_key: Vec<PathBuf>,
    /// Cohort: `cluster_crypto = seal` encrypts every datagram's messages (ChaCha20-Poly1305)
    /// instead of only authenticating them; needs `cluster_key`.
    pub cluster_crypto: ClusterCrypto,
    /// Cohort: largest UDP payload sent, bytes. Default 1400.
    pub mtu: u32,
    /// Cohort: flow-control window of unstable bytes per sender. Default 4194304.
    pub max_unstable_bytes: u64,
    /// Cohort: messages buffered for delivery per sender before back-pressure. Default 65536.
    pub max_queue: u32,
    /// Cohort: largest message the group layer carries, bytes (cut into pieces above a datagram;
    /// each receiver holds at most one partial message of this size per sender). Default 16 MiB.
    pub max_message_size: u64,
    /// Cohort: datagrams carrying another cluster id are dropped (several clusters, one network).
    /// Default 0.
    pub cluster_id: u32,
    /// Cohort: the UDP driver. Default syscall.
    pub udp_driver: UdpDriver,
    /// Cohort: nice value of the event loop's thread (transport, failure detector,
    /// replication), -20..=19; 0 leaves it as started. Default -4.
    pub loop_nice: i32,
    pub extra: Vec<Extra>,
}

impl Default for MsgcServer {
    fn default() -> Self {
        MsgcServer {
            peers: Vec::new(),
            port: 4809,
            connect_timeout: Duration::from_secs(60),
            debug_level: "ERROR".into(),
            idle_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(5),
            max_backlog: 5000,
            messages_per_iter: 20,
            reconnect_interval: Duration::from_secs(5),
            tcpbuf_size: 131072,
            probe_interval: Duration::from_millis(200),
            suspect_timeout: Duration::from_millis(600),
            cluster_key: Vec::new(),
            cluster_crypto: ClusterCrypto::Mac,
            mtu: 1400,
            max_unstable_bytes: 4 * 1024 * 1024,
            max_queue: 65536,
            max_message_size: 16 * 1024 * 1024,
            cluster_id: 0,
            udp_driver: UdpDriver::Syscall,
            loop_nice: -4,
            extra: Vec::new(),
        }
    }
}

/// One `peers` entry of `msgc_server`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Peer {
    pub name: String,
    pub address: String,
}

/// Where a listener listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ListenAddr {
    /// A Unix socket path (`"/tmp/2025"`).
    Unix(PathBuf),
    /// `host:port`; no host (`*:4802`, `:4809`) means every address.
    Inet { host: Option<IpAddr>, port: u16 },
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Unix(p) => write!(f, "{}", p.display()),
            ListenAddr::Inet { host: None, port } => write!(f, "*:{port}"),
            ListenAddr::Inet {
                host: Some(IpAddr::V6(h)),
                port,
            } => write!(f, "[{h}]:{port}"),
            ListenAddr::Inet {
                host: Some(h),
                port,
            } => write!(f, "{h}:{port}"),
        }
    }
}

/// A `Listen "addr" { }` scope of `Control_Listener` or `ECCluster_Listener`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Listen {
    pub addr: ListenAddr,
    pub extra: Vec<Extra>,
}

/// `Metrics_Listener` (Cohort extension): where `/metrics` is served over HTTP, in Prometheus's
/// text exposition format. Inet addresses only.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MetricsListener {
    pub listens: Vec<Listen>,
    pub extra: Vec<Extra>,
}

/// `Control_Listener`: the console. Default `Listen "/tmp/2025" {}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ControlListener {
    pub listens: Vec<Listen>,
    pub extra: Vec<Extra>,
}

impl Default for ControlListener {
    fn default() -> Self {
        ControlListener {
            listens: vec![Listen {
                addr: ListenAddr::Unix(PathBuf::from("/tmp/2025")),
                extra: Vec::new(),
            }],
            extra: Vec::new(),
        }
    }
}

/// `ECCluster_Listener`: node-to-node TCP (log pulls). Default `Listen "*:4802" {}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EcclusterListener {
    pub listens: Vec<Listen>,
    pub extra: Vec<Extra>,
}

impl Default for EcclusterListener {
    fn default() -> Self {
        EcclusterListener {
            listens: vec![Listen {
                addr: ListenAddr::Inet {
                    host: None,
                    port: 4802,
                },
                extra: Vec::new(),
            }],
            extra: Vec::new(),
        }
    }
}

/// A `Binding "name" { }` scope: an outbound address the MTA binds to.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Binding {
    pub name: String,
    /// The `Binding_Group` it is nested in, if any.
    pub binding_group: Option<String>,
    pub bind_address: Option<IpAddr>,
    pub enable_duravip: bool,
    /// Node name that should own this address when it is online.
    pub duravip_preference: Option<String>,
    pub extra: Vec<Extra>,
}

/// A `Binding_Group "name" { }` scope; its bindings name it in [`Binding::binding_group`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BindingGroup {
    pub name: String,
    pub extra: Vec<Extra>,
}

/// A `Listen "ip:port" { }` scope of `ESMTP_Listener`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Listener {
    pub addr: ListenAddr,
    pub enable_duravip: bool,
    pub duravip_preference: Option<String>,
    /// Binding name or IP address whose owner this listener's address follows.
    pub duravip_follow: Option<String>,
    pub extra: Vec<Extra>,
}

/// Which logging module a logger stanza configures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum LoggerModule {
    EcLogger,
    BounceLogger,
}

impl LoggerModule {
    pub fn scope_name(self) -> &'static str {
        match self {
            LoggerModule::EcLogger => "ec_logger",
            LoggerModule::BounceLogger => "bounce_logger",
        }
    }
}

/// An `ec_logger "name" { }` or `bounce_logger "name" { }` stanza.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Logger {
    pub module: LoggerModule,
    pub name: Option<String>,
    /// `mainlog = "cluster:///path=>master"` and the like, in file order.
    pub outputs: Vec<LogOutput>,
    pub extra: Vec<Extra>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogOutput {
    /// The log's key (`mainlog`, `paniclog`, `bouncelog`, ...).
    pub log: String,
    pub destination: Destination,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Destination {
    /// `cluster://` or `jlog://`: a journal directory with the subscribers to create.
    Journal(JournalDest),
    /// A plain file (written by the MTA, not by Cohort).
    File(String),
}

/// A parsed `cluster://PATH=>sub` / `jlog://PATH?subscribers=a,b` destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JournalDest {
    /// `cluster` or `jlog` (aliases).
    pub scheme: String,
    pub path: PathBuf,
    pub subscribers: Vec<String>,
}

/// The manager's `Logs { }` stanza (eccluster.conf).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ManagerLogs {
    /// Output path pattern: strftime plus `%{l}` log, `%{s}` subcluster, `%{n}` node.
    pub logfile: String,
    /// Mode of created files. Default 0640.
    pub file_mode: u32,
    /// Mode of created directories. Default 0755.
    pub dir_mode: u32,
    /// Concurrently open output files. Undocumented default; Cohort uses 256.
    pub max_open: u32,
    /// Seconds an output file may stay open unwritten. Undocumented default; Cohort uses 300.
    #[serde(serialize_with = "secs")]
    pub max_idle: Duration,
    /// File caching responses to cluster-wide console commands.
    pub control_cache: PathBuf,
    pub managers: Vec<ManagerScope>,
    pub extra: Vec<Extra>,
}

impl Default for ManagerLogs {
    fn default() -> Self {
        ManagerLogs {
            logfile: "/var/log/eccluster/%Y/%m/%d/%{l}/%{s}/%{n}".into(),
            file_mode: 0o640,
            dir_mode: 0o755,
            max_open: 256,
            max_idle: Duration::from_secs(300),
            control_cache: PathBuf::from("/var/log/eccluster/control_cache"),
            managers: Vec::new(),
            extra: Vec::new(),
        }
    }
}

/// `Manager "name" { Subscriber = (...) Node "n" { Subscriber = (...) } }` inside `Logs`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ManagerScope {
    pub name: String,
    /// Subscriber names this manager pulls with; `None` = the default (its node name, then `master`).
    pub subscribers: Option<Vec<String>>,
    pub nodes: Vec<NodeScope>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeScope {
    pub name: String,
    /// Subscriber names used for this node; empty = pull nothing from it.
    pub subscribers: Vec<String>,
}

/// `inbound_audit { monitors = ("300,6") }`: the windows of the replicated series (`metrics`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InboundAudit {
    /// `monitors = ( "window-size,number-of-windows" ... )`: seconds per window and windows kept.
    pub monitors: Vec<(u64, u32)>,
    /// The module's other options (`log_dir`, ...), the MTA's.
    pub extra: Vec<Extra>,
}

impl Default for InboundAudit {
    fn default() -> Self {
        InboundAudit {
            monitors: vec![(300, 6)],
            extra: Vec::new(),
        }
    }
}

/// `Security { user = "ecuser" group = "ecuser" }`: the user and group the daemon runs as once it
/// has set up (opened its sockets, journals and XDP), keeping only the three capabilities it
/// needs (`CAP_NET_ADMIN`, `CAP_NET_RAW`, `CAP_BPF`). Momentum's `Capabilities` and `Privileges`
/// are kept and reported once: Cohort's capabilities are fixed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Security {
    pub user: Option<String>,
    pub group: Option<String>,
    pub extra: Vec<Extra>,
}
