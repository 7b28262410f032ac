//! From the syntax tree to the typed [`Config`]: names matched case-insensitively, values checked
//! and converted, defaults filled in, cross-references validated. Every error carries the location
//! of the text that caused it; options that belong to the MTA are kept and reported once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::error::{ConfigError, Loc};
use super::model::*;
use super::syntax::{self, Item, ItemKind, Scope, Value};

/// An option or scope that Cohort keeps but does not act on, reported once to the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ignored {
    pub loc: Loc,
    /// Where it sits, e.g. `cluster.mbus_daemon` or `Security`.
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ignored: {} ({})", self.loc, self.path, self.reason)
    }
}

/// A configuration and what was ignored while reading it.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub ignored: Vec<Ignored>,
}

/// Reads, parses and validates a configuration file.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    from_items(&syntax::parse_file(path)?)
}

/// Parses and validates `text` as the content of the file `name`.
pub fn load_str(name: &Path, text: &str) -> Result<Loaded, ConfigError> {
    from_items(&syntax::parse_str(name, text)?)
}

/// Parses and validates raw bytes (any bytes: never panics) as the content of `name`.
pub fn load_bytes(name: &Path, bytes: &[u8]) -> Result<Loaded, ConfigError> {
    from_items(&syntax::parse_bytes(name, bytes)?)
}

const MTA: &str = "belongs to the MTA, not to Cohort";

/// Plain edit distance, for suggestions on misspelt option names.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn suggestion(key: &str, known: &[&str]) -> String {
    match known
        .iter()
        .map(|k| (distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
    {
        Some((_, k)) => format!("not a Cohort option; did you mean '{k}'?"),
        None => MTA.to_owned(),
    }
}

struct Ctx {
    ignored: Vec<Ignored>,
}

impl Ctx {
    fn ignore(&mut self, item: &Item, path: String, reason: impl Into<String>) -> Extra {
        let reason = reason.into();
        if !self.ignored.iter().any(|i| i.path == path) {
            self.ignored.push(Ignored {
                loc: item.loc.clone(),
                path,
                reason,
            });
        }
        extra(item)
    }
}

fn extra(item: &Item) -> Extra {
    let mut text = String::new();
    syntax::render_item(item, 0, &mut text);
    let key = match &item.kind {
        ItemKind::Option { key, .. } => key.clone(),
        ItemKind::Scope(s) => s.kind.clone(),
    };
    Extra {
        key,
        text: text.trim_end().to_owned(),
    }
}

fn item_label(item: &Item) -> String {
    match &item.kind {
        ItemKind::Option { key, .. } => key.clone(),
        ItemKind::Scope(Scope {
            kind,
            name: Some(n),
            ..
        }) => format!("{kind} \"{n}\""),
        ItemKind::Scope(s) => s.kind.clone(),
    }
}

/// Remembers where each option of one scope was first set, so a repeat is reported with both places.
#[derive(Default)]
struct Seen(HashMap<String, Loc>);

impl Seen {
    fn check(&mut self, key: &str, loc: &Loc) -> Result<(), ConfigError> {
        let k = key.to_ascii_lowercase();
        if let Some(first) = self.0.get(&k) {
            return Err(ConfigError::new(
                loc,
                format!("'{key}' is set twice (first at {first})"),
            ));
        }
        self.0.insert(k, loc.clone());
        Ok(())
    }
}

// ---- value conversion -------------------------------------------------------------------------

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Scalar { .. } => "a single value",
        Value::List { .. } => "a list",
        Value::Dict { .. } => "a dictionary",
    }
}

fn string(key: &str, v: &Value) -> Result<String, ConfigError> {
    match v {
        Value::Scalar { text, .. } => Ok(text.clone()),
        other => Err(ConfigError::new(
            other.loc(),
            format!("'{key}' expects a string, found {}", kind_of(other)),
        )),
    }
}

fn nonempty(key: &str, v: &Value) -> Result<String, ConfigError> {
    let s = string(key, v)?;
    if s.trim().is_empty() {
        return Err(ConfigError::new(
            v.loc(),
            format!("'{key}' must not be empty"),
        ));
    }
    Ok(s)
}

fn boolean(key: &str, v: &Value) -> Result<bool, ConfigError> {
    let s = string(key, v)?;
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(ConfigError::new(
            v.loc(),
            format!("'{key}' expects true or false, found '{s}'"),
        )),
    }
}

fn number(key: &str, v: &Value) -> Result<f64, ConfigError> {
    let s = string(key, v)?;
    match s.trim().parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(n),
        _ => Err(ConfigError::new(
            v.loc(),
            format!("'{key}' expects a number, found '{s}'"),
        )),
    }
}

/// The longest time any option takes: a day. A larger value is refused where it is written (a
/// slip such as `1e20` would otherwise overflow the daemon's timers).
pub const MAX_SECONDS: f64 = 86_400.0;

/// Seconds (fractions allowed) within `min..=max`, as a [`Duration`] (whole nanoseconds).
fn seconds_in(key: &str, v: &Value, min: f64, max: f64) -> Result<Duration, ConfigError> {
    let n = number(key, v)?;
    if n < 0.0 {
        return Err(ConfigError::new(
            v.loc(),
            format!("'{key}' is an interval and cannot be negative (found {n})"),
        ));
    }
    if n < min || n > max {
        return Err(ConfigError::new(
            v.loc(),
            format!("'{key}' must be between {min} and {max} seconds (found {n})"),
        ));
    }
    // Whole nanoseconds, rounded: 0.1 is 100 ms exactly, so printing gives back 0.1.
    Ok(Duration::from_nanos((n * 1e9).round() as u64))
}

/// Non-negative seconds, at most [`MAX_SECONDS`].
fn seconds(key: &str, v: &Value) -> Result<Duration, ConfigError> {
    seconds_in(key, v, 0.0, MAX_SECONDS)
}

/// Seconds greater than zero, at most [`MAX_SECONDS`].
fn positive_seconds(key: &str, v: &Value) -> Result<Duration, ConfigError> {
    let d = seconds(key, v)?;
    if d.is_zero() {
        return Err(ConfigError::new(
            v.loc(),
            format!("'{key}' must be greater than 0"),
        ));
    }
    Ok(d)
}

fn integer(key: &str, v: &Value, min: i64, max: i64) -> Result<i64, ConfigError> {
    let s = string(key, v)?;
    let n: i64 = s.trim().parse().map_err(|_| {
        ConfigError::new(
            v.loc(),
            format!("'{key}' expects a whole number, found '{s}'"),
        )
    })?;
    if n < min || n > max {
        return Err(ConfigError::new(
            v.loc(),
            format!("'{key}' must be between {min} and {max} (found {n})"),
        ));
    }
    Ok(n)
}

fn u32_in(key: &str, v: &Value, min: u32, max: u32) -> Result<u32, ConfigError> {
    integer(key, v, min.into(), max.into()).map(|n| n as u32)
}

fn ip(key: &str, v: &Value) -> Result<IpAddr, ConfigError> {
    let s = string(key, v)?;
    s.trim().parse().map_err(|_| {
        ConfigError::new(
            v.loc(),
            format!("'{key}' expects an IP address, found '{s}'"),
        )
    })
}

/// A list of strings; a single string is accepted as a one-element list.
fn strings(key: &str, v: &Value) -> Result<Vec<String>, ConfigError> {
    match v {
        Value::Scalar { .. } => Ok(vec![string(key, v)?]),
        Value::List { items, .. } => items.iter().map(|i| string(key, i)).collect(),
        Value::Dict { loc, .. } => Err(ConfigError::new(
            loc,
            format!("'{key}' expects a list, found a dictionary"),
        )),
    }
}

fn octal_mode(key: &str, v: &Value) -> Result<u32, ConfigError> {
    let s = string(key, v)?;
    match u32::from_str_radix(s.trim(), 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(ConfigError::new(
            v.loc(),
            format!("'{key}' expects an octal file mode such as \"0640\", found '{s}'"),
        )),
    }
}

/// A path, made absolute against the directory of the file that named it.
fn path_from(key: &str, v: &Value) -> Result<PathBuf, ConfigError> {
    let p = PathBuf::from(nonempty(key, v)?);
    if p.is_absolute() {
        return Ok(p);
    }
    let base = v.loc().file.parent().map(Path::to_path_buf);
    Ok(match base {
        Some(b) if !b.as_os_str().is_empty() => b.join(p),
        _ => std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p),
    })
}

fn absolute(key: &str, v: &Value) -> Result<PathBuf, ConfigError> {
    let p = PathBuf::from(nonempty(key, v)?);
    if !p.is_absolute() {
        return Err(ConfigError::new(
            v.loc(),
            format!("'{key}' must be an absolute path, found '{}'", p.display()),
        ));
    }
    Ok(p)
}

/// `"/tmp/2025"`, `"*:4802"`, `":4809"`, `"2025"`, `"127.0.0.1:2025"`, `"[::1]:2025"`.
pub fn parse_listen(s: &str) -> Result<ListenAddr, String> {
    let s = s.trim();
    if s.starts_with('/') {
        return Ok(ListenAddr::Unix(PathBuf::from(s)));
    }
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("bad port '{p}' in listen address '{s}'"))
    };
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
        return Ok(ListenAddr::Inet {
            host: None,
            port: port(s)?,
        });
    }
    let Some((host, p)) = s.rsplit_once(':') else {
        return Err(format!(
            "listen address '{s}' is neither a path nor host:port"
        ));
    };
    let host = match host {
        "" | "*" => None,
        h => {
            let h = h
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(h);
            Some(
                h.parse::<IpAddr>()
                    .map_err(|_| format!("bad host '{h}' in listen address '{s}'"))?,
            )
        }
    };
    Ok(ListenAddr::Inet {
        host,
        port: port(p)?,
    })
}

fn listen_addr(scope: &Scope, item: &Item) -> Result<ListenAddr, ConfigError> {
    let loc = scope.name_loc.as_ref().unwrap_or(&item.loc);
    let Some(name) = &scope.name else {
        return Err(ConfigError::new(
            loc,
            "Listen needs an address, as in Listen \"127.0.0.1:2025\" {}",
        ));
    };
    parse_listen(name).map_err(|m| ConfigError::new(loc, m))
}

/// `cluster:///path=>sub`, `jlog:///path?subscribers=a,b` (both forms may be combined).
pub fn parse_journal(s: &str) -> Result<Option<JournalDest>, String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Ok(None);
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "cluster" && scheme != "jlog" {
        return Ok(None);
    }
    let (rest, arrow) = match rest.split_once("=>") {
        Some((r, sub)) => (r, Some(sub)),
        None => (rest, None),
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if !path.starts_with('/') {
        return Err(format!(
            "journal path in '{s}' must be absolute, as in {scheme}:///var/log/ecelerity/mainlog.cluster"
        ));
    }
    let mut subscribers: Vec<String> = Vec::new();
    let mut add = |name: &str| -> Result<(), String> {
        let name = name.trim();
        if name.is_empty() || name.contains(['/', ',', '?', '=']) {
            return Err(format!("bad subscriber name '{name}' in '{s}'"));
        }
        if !subscribers.iter().any(|x| x == name) {
            subscribers.push(name.to_owned());
        }
        Ok(())
    };
    if let Some(q) = query {
        for param in q.split('&').filter(|p| !p.is_empty()) {
            match param.split_once('=') {
                Some(("subscribers", list)) => {
                    for n in list.split(',') {
                        add(n)?;
                    }
                }
                _ => return Err(format!("unknown journal parameter '{param}' in '{s}'")),
            }
        }
    }
    if let Some(sub) = arrow {
        add(sub)?;
    }
    Ok(Some(JournalDest {
        scheme,
        path: PathBuf::from(path),
        subscribers,
    }))
}

// ---- scopes -----------------------------------------------------------------------------------

/// Builds the typed configuration from parsed items.
pub fn from_items(items: &[Item]) -> Result<Loaded, ConfigError> {
    let mut ctx = Ctx {
        ignored: Vec::new(),
    };
    let mut cfg = Config::default();
    let mut singles: HashMap<&'static str, Loc> = HashMap::new();
    let mut single = |name: &'static str, item: &Item| -> Result<(), ConfigError> {
        if let Some(first) = singles.get(name) {
            return Err(ConfigError::new(
                &item.loc,
                format!("second '{name}' scope (the first is at {first})"),
            ));
        }
        singles.insert(name, item.loc.clone());
        Ok(())
    };
    let mut control: Option<ControlListener> = None;
    let mut ecc: Option<EcclusterListener> = None;
    for item in items {
        let ItemKind::Scope(scope) = &item.kind else {
            let label = item_label(item);
            let e = ctx.ignore(item, label, MTA);
            cfg.extra.push(e);
            continue;
        };
        match scope.kind.to_ascii_lowercase().as_str() {
            "cluster" => {
                single("cluster", item)?;
                cfg.cluster = cluster(scope, &mut ctx)?;
            }
            "msgc_server" => {
                single("msgc_server", item)?;
                cfg.msgc_server = msgc_server(scope, &mut ctx)?;
            }
            "logs" => {
                single("Logs", item)?;
                cfg.manager_logs = Some(manager_logs(scope, &mut ctx)?);
            }
            "metrics_listener" => {
                let m = cfg
                    .metrics_listener
                    .get_or_insert_with(MetricsListener::default);
                listener_stanza(
                    scope,
                    "Metrics_Listener",
                    &mut m.listens,
                    &mut m.extra,
                    &mut ctx,
                )?;
                if let Some(l) = m
                    .listens
                    .iter()
                    .find(|l| !matches!(l.addr, ListenAddr::Inet { .. }))
                {
                    return Err(ConfigError::new(
                        &item.loc,
                        format!(
                            "Metrics_Listener serves HTTP on an inet address, not '{}'",
                            l.addr
                        ),
                    ));
                }
            }
            "security" => {
                single("Security", item)?;
                cfg.security = Some(security(scope, &mut ctx)?);
            }
            "control_listener" => {
                let c = control.get_or_insert_with(|| ControlListener {
                    listens: Vec::new(),
                    extra: Vec::new(),
                });
                listener_stanza(
                    scope,
                    "Control_Listener",
                    &mut c.listens,
                    &mut c.extra,
                    &mut ctx,
                )?;
            }
            "eccluster_listener" => {
                let c = ecc.get_or_insert_with(|| EcclusterListener {
                    listens: Vec::new(),
                    extra: Vec::new(),
                });
                listener_stanza(
                    scope,
                    "ECCluster_Listener",
                    &mut c.listens,
                    &mut c.extra,
                    &mut ctx,
                )?;
            }
            "binding" => cfg.bindings.push(binding(scope, item, None, &mut ctx)?),
            "binding_group" => binding_group(scope, item, &mut cfg, &mut ctx)?,
            "esmtp_listener" => esmtp_listener(scope, &mut cfg, &mut ctx)?,
            "ec_logger" => cfg
                .loggers
                .push(logger(scope, LoggerModule::EcLogger, &mut ctx)?),
            "bounce_logger" => {
                cfg.loggers
                    .push(logger(scope, LoggerModule::BounceLogger, &mut ctx)?)
            }
            _ => {
                let label = item_label(item);
                let e = ctx.ignore(item, label, MTA);
                cfg.extra.push(e);
            }
        }
    }
    if let Some(c) = control {
        cfg.control_listener = c;
    }
    if let Some(c) = ecc {
        cfg.eccluster_listener = c;
    }
    validate_duravip(&cfg, items)?;
    Ok(Loaded {
        config: cfg,
        ignored: ctx.ignored,
    })
}

fn cluster(scope: &Scope, ctx: &mut Ctx) -> Result<Cluster, ConfigError> {
    let mut c = Cluster::default();
    let mut seen = Seen::default();
    let mut replicate_names: HashMap<String, Loc> = HashMap::new();
    let mut topo_nets: HashMap<IpNet, Loc> = HashMap::new();
    for item in &scope.items {
        match &item.kind {
            ItemKind::Option { key, value: v } => {
                seen.check(key, &item.loc)?;
                let k = key.to_ascii_lowercase();
                match k.as_str() {
                    "cluster_group" => c.cluster_group = nonempty(key, v)?,
                    "control_group" => c.control_group = nonempty(key, v)?,
                    "log_group" => c.log_group = Some(nonempty(key, v)?),
                    "nodename" => {
                        let n = nonempty(key, v)?;
                        if n.contains(char::is_whitespace) || n.contains('#') {
                            return Err(ConfigError::new(
                                v.loc(),
                                format!("nodename '{n}' must not contain spaces or '#'"),
                            ));
                        }
                        c.nodename = Some(n);
                    }
                    "nodeaddr" => {
                        let a = ip(key, v)?;
                        if a == IpAddr::from([127, 0, 0, 1]) {
                            return Err(ConfigError::new(
                                v.loc(),
                                "nodeaddr must be routable via the cluster network and must not be 127.0.0.1",
                            ));
                        }
                        c.nodeaddr = Some(a);
                    }
                    "subcluster" => {
                        let s = nonempty(key, v)?;
                        if s.chars().any(|ch| !ch.is_ascii_lowercase() && !ch.is_ascii_digit() && ch != '_' && ch != '-') {
                            return Err(ConfigError::new(
                                v.loc(),
                                format!("subcluster '{s}' must be a single lower-case word"),
                            ));
                        }
                        c.subcluster = Some(s);
                    }
                    "logs" => c.logs = logs_dict(key, v)?,
                    "log_active_interval" => c.log_active_interval = seconds(key, v)?,
                    "log_idle_interval" => c.log_idle_interval = seconds(key, v)?,
                    "heartbeat_start_delay" => c.heartbeat_start_delay = seconds(key, v)?,
                    "heartbeats_per_sec" => c.heartbeats_per_sec = u32_in(key, v, 1, 1000)?,
                    "if_check_interval" => c.if_check_interval = positive_seconds(key, v)?,
                    "if_down_limit" => c.if_down_limit = seconds(key, v)?,
                    "arp_all_hosts" => c.arp_all_hosts = boolean(key, v)?,
                    "arp_cache_interval" => c.arp_cache_interval = seconds(key, v)?,
                    "duravip_balance_set_size" => {
                        c.duravip_balance_set_size = u32_in(key, v, 1, 1_000_000)?
                    }
                    "view_mature_time" => c.view_mature_time = seconds(key, v)?,
                    "view_balance_interval" => c.view_balance_interval = positive_seconds(key, v)?,
                    "view_broadcast_interval" => c.view_broadcast_interval = seconds(key, v)?,
                    // The changelog (#4620) spells it with "-ing"; both spellings are accepted.
                    "unconditional_rebind" | "unconditional_rebinding" => {
                        c.unconditional_rebind = boolean(key, v)?
                    }
                    "debug_level" => c.debug_level = nonempty(key, v)?,
                    "enabled" => c.enabled = boolean(key, v)?,
                    "tcp_buffer_size" => c.tcp_buffer_size = u32_in(key, v, 1, u32::MAX)?,
                    "garp_count" => c.garp_count = u32_in(key, v, 0, 100)?,
                    "garp_interval" => c.garp_interval = seconds(key, v)?,
                    "garp_refresh" => c.garp_refresh = seconds(key, v)?,
                    "xdp" => {
                        let s = string(key, v)?;
                        c.xdp = match s.to_ascii_lowercase().as_str() {
                            "auto" => XdpMode::Auto,
                            "native" => XdpMode::Native,
                            "generic" => XdpMode::Generic,
                            "off" => XdpMode::Off,
                            _ => {
                                return Err(ConfigError::new(
                                    v.loc(),
                                    format!("'xdp' expects auto, native, generic or off, found '{s}'"),
                                ));
                            }
                        }
                    }
                    "xdp_lease" => c.xdp_lease = positive_seconds(key, v)?,
                    "mbus_daemon" => c.extra.push(ctx.ignore(
                        item,
                        format!("cluster.{key}"),
                        "deprecated since Momentum 3.4; Cohort's transport is configured in msgc_server",
                    )),
                    "cluster_listener" => c.extra.push(ctx.ignore(
                        item,
                        format!("cluster.{key}"),
                        "replaced by the ECCluster_Listener stanza in Momentum 3.0.15",
                    )),
                    _ => c.extra.push(ctx.ignore(
                        item,
                        format!("cluster.{key}"),
                        suggestion(&k, &super::options::names(super::options::CLUSTER)),
                    )),
                }
            }
            ItemKind::Scope(s) => match s.kind.to_ascii_lowercase().as_str() {
                "replicate" => {
                    let r = replicate(s, item)?;
                    let k = r.name.to_ascii_lowercase();
                    if let Some(first) = replicate_names.get(&k) {
                        return Err(ConfigError::new(
                            &item.loc,
                            format!(
                                "Replicate \"{}\" is defined twice (first at {first})",
                                r.name
                            ),
                        ));
                    }
                    replicate_names.insert(k, item.loc.clone());
                    c.replicate.push(r);
                }
                "topology" => {
                    let t = topology(s, item)?;
                    if let Some(first) = topo_nets.get(&t.network) {
                        return Err(ConfigError::new(
                            &item.loc,
                            format!(
                                "Topology \"{}\" is defined twice (first at {first})",
                                t.network
                            ),
                        ));
                    }
                    topo_nets.insert(t.network, item.loc.clone());
                    c.topology.push(t);
                }
                _ => {
                    let label = format!("cluster.{}", item_label(item));
                    c.extra.push(ctx.ignore(item, label, MTA));
                }
            },
        }
    }
    Ok(c)
}

fn logs_dict(key: &str, v: &Value) -> Result<Vec<(String, PathBuf)>, ConfigError> {
    let Value::Dict { entries, .. } = v else {
        return Err(ConfigError::new(
            v.loc(),
            format!(
                "'{key}' expects a dictionary [ name = \"/path\" ... ], found {}",
                kind_of(v)
            ),
        ));
    };
    let mut seen = Seen::default();
    let mut out = Vec::new();
    for e in entries {
        seen.check(&e.key, &e.loc)?;
        out.push((e.key.clone(), absolute(&e.key, &e.value)?));
    }
    Ok(out)
}

fn replicate(scope: &Scope, item: &Item) -> Result<Replicate, ConfigError> {
    let Some(name) = scope.name.clone().filter(|n| !n.trim().is_empty()) else {
        return Err(ConfigError::new(
            &item.loc,
            "Replicate needs a name, as in Replicate \"inbound_cidr\" {}",
        ));
    };
    let mut seen = Seen::default();
    let mut ty: Option<(ReplicateKind, Loc)> = None;
    let mut class: Option<ReplicateKind> = None;
    let mut r = Replicate::new(name.clone(), ReplicateKind::Cache);
    let mut max_size_loc: Option<Loc> = None;
    let mut binding_group_loc: Option<Loc> = None;
    let kind_value = |key: &str, v: &Value| -> Result<ReplicateKind, ConfigError> {
        let s = string(key, v)?;
        ReplicateKind::from_name(&s).ok_or_else(|| {
            let all: Vec<&str> = ReplicateKind::ALL.iter().map(|k| k.name()).collect();
            ConfigError::new(
                v.loc(),
                format!("unknown replication type '{s}' (known: {})", all.join(", ")),
            )
        })
    };
    for it in &scope.items {
        let ItemKind::Option { key, value: v } = &it.kind else {
            return Err(ConfigError::new(
                &it.loc,
                format!(
                    "unexpected scope '{}' inside Replicate \"{name}\"",
                    item_label(it)
                ),
            ));
        };
        seen.check(key, &it.loc)?;
        match key.to_ascii_lowercase().as_str() {
            "type" => ty = Some((kind_value(key, v)?, v.loc().clone())),
            "class" => class = Some(kind_value(key, v)?),
            "parameters" => {
                let raw = match v {
                    Value::List { .. } => strings(key, v)?,
                    _ => string(key, v)?.split(';').map(str::to_owned).collect(),
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
            }
            "max_delay" => r.max_delay = seconds_in(key, v, 0.0, 3600.0)?,
            "max_pending" => {
                let n = integer(key, v, i64::MIN, u32::MAX.into())?;
                if n < 1 {
                    return Err(ConfigError::new(
                        v.loc(),
                        format!("'max_pending' must be at least 1 (found {n})"),
                    ));
                }
                r.max_pending = n as u32;
            }
            "max_size" => {
                let n = integer(key, v, -1, i64::MAX)?;
                if n == 0 {
                    return Err(ConfigError::new(
                        v.loc(),
                        "'max_size' must be -1 (unbounded) or at least 1",
                    ));
                }
                r.max_size = n;
                max_size_loc = Some(v.loc().clone());
            }
            "binding_group" => {
                r.binding_group = Some(nonempty(key, v)?);
                binding_group_loc = Some(v.loc().clone());
            }
            other => {
                let known = [
                    "type",
                    "class",
                    "parameters",
                    "max_delay",
                    "max_pending",
                    "max_size",
                    "binding_group",
                ];
                let hint = match known.iter().find(|k| distance(other, k) <= 2) {
                    Some(k) => format!("; did you mean '{k}'?"),
                    None => String::new(),
                };
                return Err(ConfigError::new(
                    &it.loc,
                    format!(
                        "unknown option '{key}' in Replicate \"{name}\" (valid: {}){hint}",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    r.class = class;
    r.kind = match (&ty, class) {
        (Some((t, loc)), Some(c)) if *t != c => {
            return Err(ConfigError::new(
                loc,
                format!(
                    "Replicate \"{name}\" has type '{}' but class '{}'; they must agree",
                    t.name(),
                    c.name()
                ),
            ));
        }
        (Some((t, _)), _) => *t,
        (None, Some(c)) => c,
        (None, None) => ReplicateKind::from_name(&name).ok_or_else(|| {
            ConfigError::new(
                scope.name_loc.as_ref().unwrap_or(&item.loc),
                format!(
                    "unknown replication type '{name}': name a built-in object or give type = \"...\" (for caches type = \"cache\")"
                ),
            )
        })?,
    };
    if let Some(loc) = max_size_loc
        && r.kind != ReplicateKind::Cache
    {
        return Err(ConfigError::new(
            &loc,
            format!(
                "'max_size' is only valid for caches, and Replicate \"{name}\" is {}",
                r.kind.name()
            ),
        ));
    }
    if let Some(loc) = binding_group_loc
        && !matches!(
            r.kind,
            ReplicateKind::OutboundCidr | ReplicateKind::OutboundDomains
        )
    {
        return Err(ConfigError::new(
            &loc,
            format!(
                "'binding_group' is only valid for outbound_cidr and outbound_domains, and Replicate \"{name}\" is {}",
                r.kind.name()
            ),
        ));
    }
    Ok(r)
}

fn topology(scope: &Scope, item: &Item) -> Result<Topology, ConfigError> {
    let name_loc = scope.name_loc.as_ref().unwrap_or(&item.loc);
    let Some(name) = &scope.name else {
        return Err(ConfigError::new(
            &item.loc,
            "Topology needs a network, as in Topology \"10.1.1.0/24\" {}",
        ));
    };
    let network: IpNet = name.trim().parse().map_err(|_| {
        ConfigError::new(
            name_loc,
            format!("bad CIDR '{name}' in Topology (expected a network such as 10.1.1.0/24)"),
        )
    })?;
    if network.trunc() != network {
        return Err(ConfigError::new(
            name_loc,
            format!(
                "Topology \"{name}\" has host bits set; did you mean \"{}\"?",
                network.trunc()
            ),
        ));
    }
    let max = network.max_prefix_len();
    let mut t = Topology {
        network,
        interface: String::new(),
        cidrmask: max,
    };
    let mut seen = Seen::default();
    let mut interface = None;
    for it in &scope.items {
        let ItemKind::Option { key, value: v } = &it.kind else {
            return Err(ConfigError::new(
                &it.loc,
                format!(
                    "unexpected scope '{}' inside Topology \"{name}\"",
                    item_label(it)
                ),
            ));
        };
        seen.check(key, &it.loc)?;
        match key.to_ascii_lowercase().as_str() {
            "interface" => {
                let i = nonempty(key, v)?;
                if i.len() > 15 || i.contains(['/', ' ']) {
                    return Err(ConfigError::new(
                        v.loc(),
                        format!("'{i}' is not a valid interface name"),
                    ));
                }
                interface = Some(i);
            }
            "cidrmask" => t.cidrmask = integer(key, v, 0, max.into())? as u8,
            _ => {
                return Err(ConfigError::new(
                    &it.loc,
                    format!(
                        "unknown option '{key}' in Topology \"{name}\" (valid: interface, cidrmask)"
                    ),
                ));
            }
        }
    }
    let Some(interface) = interface else {
        return Err(ConfigError::new(
            &item.loc,
            format!("Topology \"{name}\" needs an interface, as in interface = \"eth1\""),
        ));
    };
    t.interface = interface;
    Ok(t)
}

fn msgc_server(scope: &Scope, ctx: &mut Ctx) -> Result<MsgcServer, ConfigError> {
    let mut m = MsgcServer::default();
    let mut seen = Seen::default();
    let mut probe_loc = None;
    let mut mtu_loc = None;
    for item in &scope.items {
        let ItemKind::Option { key, value: v } = &item.kind else {
            let label = format!("msgc_server.{}", item_label(item));
            m.extra.push(ctx.ignore(item, label, MTA));
            continue;
        };
        seen.check(key, &item.loc)?;
        let k = key.to_ascii_lowercase();
        match k.as_str() {
            "peers" => m.peers = peers(key, v)?,
            "port" => m.port = integer(key, v, 1, 65535)? as u16,
            "connect_timeout" => m.connect_timeout = seconds(key, v)?,
            "debug_level" => m.debug_level = nonempty(key, v)?,
            "idle_timeout" => m.idle_timeout = seconds(key, v)?,
            "keepalive_interval" => m.keepalive_interval = seconds(key, v)?,
            "max_backlog" => m.max_backlog = u32_in(key, v, 1, u32::MAX)?,
            "messages_per_iter" => m.messages_per_iter = u32_in(key, v, 1, u32::MAX)?,
            "reconnect_interval" => m.reconnect_interval = seconds(key, v)?,
            "tcpbuf_size" => m.tcpbuf_size = u32_in(key, v, 1, u32::MAX)?,
            "probe_interval" => {
                m.probe_interval = positive_seconds(key, v)?;
                probe_loc.get_or_insert(v.loc().clone());
            }
            "suspect_timeout" => {
                m.suspect_timeout = positive_seconds(key, v)?;
                probe_loc = Some(v.loc().clone());
            }
            "cluster_key" => m.cluster_key = Some(path_from(key, v)?),
            "mtu" => {
                m.mtu = u32_in(key, v, 576, 65507)?;
                mtu_loc = Some(v.loc().clone());
            }
            "max_unstable_bytes" => {
                m.max_unstable_bytes = integer(key, v, 1, i64::MAX)? as u64;
                mtu_loc.get_or_insert(v.loc().clone());
            }
            "max_queue" => m.max_queue = u32_in(key, v, 1, u32::MAX)?,
            // The pieces carry the total length in 32 bits.
            "max_message_size" => {
                m.max_message_size = integer(key, v, 1024, i64::from(u32::MAX))? as u64
            }
            "cluster_id" => m.cluster_id = u32_in(key, v, 0, u32::MAX)?,
            "loop_nice" => m.loop_nice = integer(key, v, -20, 19)? as i32,
            "udp_driver" => {
                let s = string(key, v)?;
                m.udp_driver = match s.to_ascii_lowercase().as_str() {
                    "syscall" => UdpDriver::Syscall,
                    "uring" | "io_uring" => UdpDriver::Uring,
                    _ => {
                        return Err(ConfigError::new(
                            v.loc(),
                            format!("'udp_driver' expects syscall or uring, found '{s}'"),
                        ));
                    }
                }
            }
            _ => m.extra.push(ctx.ignore(
                item,
                format!("msgc_server.{key}"),
                suggestion(&k, &super::options::names(super::options::MSGC_SERVER)),
            )),
        }
    }
    if let Some(loc) = probe_loc
        && m.suspect_timeout <= m.probe_interval
    {
        return Err(ConfigError::new(
            &loc,
            format!(
                "suspect_timeout ({}) must be greater than probe_interval ({})",
                m.suspect_timeout.as_secs_f64(),
                m.probe_interval.as_secs_f64()
            ),
        ));
    }
    if let Some(loc) = mtu_loc
        && m.max_unstable_bytes < u64::from(m.mtu)
    {
        return Err(ConfigError::new(
            &loc,
            format!(
                "max_unstable_bytes ({}) must be at least mtu ({})",
                m.max_unstable_bytes, m.mtu
            ),
        ));
    }
    Ok(m)
}

fn peers(key: &str, v: &Value) -> Result<Vec<Peer>, ConfigError> {
    let Value::Dict { entries, .. } = v else {
        return Err(ConfigError::new(
            v.loc(),
            format!(
                "'{key}' expects a dictionary [ node1 = \"10.0.0.1\" ... ], found {}",
                kind_of(v)
            ),
        ));
    };
    let mut names = Seen::default();
    let mut addrs: HashMap<String, Loc> = HashMap::new();
    let mut out = Vec::new();
    for e in entries {
        if e.key.trim().is_empty() || e.key.contains(char::is_whitespace) || e.key.contains('#') {
            return Err(ConfigError::new(
                &e.loc,
                format!("bad peer name '{}'", e.key),
            ));
        }
        names.check(&e.key, &e.loc).map_err(|err| {
            ConfigError::new(&err.loc, format!("duplicate peer: {}", err.message))
        })?;
        let address = nonempty(&e.key, &e.value)?.trim().to_owned();
        if address.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                e.value.loc(),
                format!("bad address '{address}' for peer '{}'", e.key),
            ));
        }
        let norm = address.to_ascii_lowercase();
        if let Some(first) = addrs.get(&norm) {
            return Err(ConfigError::new(
                e.value.loc(),
                format!("duplicate peer address '{address}' (first at {first})"),
            ));
        }
        addrs.insert(norm, e.value.loc().clone());
        out.push(Peer {
            name: e.key.clone(),
            address,
        });
    }
    Ok(out)
}

fn listener_stanza(
    scope: &Scope,
    stanza: &str,
    listens: &mut Vec<Listen>,
    extra_out: &mut Vec<Extra>,
    ctx: &mut Ctx,
) -> Result<(), ConfigError> {
    for item in &scope.items {
        match &item.kind {
            ItemKind::Scope(s) if s.kind.eq_ignore_ascii_case("listen") => {
                let addr = listen_addr(s, item)?;
                if let Some(dup) = listens.iter().find(|l| l.addr == addr) {
                    return Err(ConfigError::new(
                        s.name_loc.as_ref().unwrap_or(&item.loc),
                        format!("{stanza} listens on {} twice", dup.addr),
                    ));
                }
                let mut extra = Vec::new();
                for it in &s.items {
                    let label = format!("{stanza}.Listen \"{addr}\".{}", item_label(it));
                    extra.push(ctx.ignore(it, label, MTA));
                }
                listens.push(Listen { addr, extra });
            }
            _ => {
                let label = format!("{stanza}.{}", item_label(item));
                extra_out.push(ctx.ignore(item, label, MTA));
            }
        }
    }
    Ok(())
}

fn binding(
    scope: &Scope,
    item: &Item,
    group: Option<&str>,
    ctx: &mut Ctx,
) -> Result<Binding, ConfigError> {
    let Some(name) = scope.name.clone().filter(|n| !n.trim().is_empty()) else {
        return Err(ConfigError::new(
            &item.loc,
            "Binding needs a name, as in Binding \"duravip-1\" {}",
        ));
    };
    let mut b = Binding {
        name: name.clone(),
        binding_group: group.map(str::to_owned),
        bind_address: None,
        enable_duravip: false,
        duravip_preference: None,
        extra: Vec::new(),
    };
    let mut seen = Seen::default();
    for it in &scope.items {
        if let ItemKind::Option { key, value: v } = &it.kind {
            seen.check(key, &it.loc)?;
            match key.to_ascii_lowercase().as_str() {
                "bind_address" => {
                    b.bind_address = Some(ip(key, v)?);
                    continue;
                }
                "enable_duravip" => {
                    b.enable_duravip = boolean(key, v)?;
                    continue;
                }
                "duravip_preference" => {
                    b.duravip_preference = Some(nonempty(key, v)?);
                    continue;
                }
                "duravip_follow" => {
                    return Err(ConfigError::new(
                        &it.loc,
                        "Duravip_Follow is only valid on listeners: bindings cannot follow",
                    ));
                }
                _ => {}
            }
        }
        let label = format!("Binding \"{name}\".{}", item_label(it));
        b.extra.push(ctx.ignore(it, label, MTA));
    }
    if b.enable_duravip && b.bind_address.is_none() {
        return Err(ConfigError::new(
            &item.loc,
            format!("Binding \"{name}\" has Enable_Duravip but no Bind_Address to manage"),
        ));
    }
    Ok(b)
}

fn binding_group(
    scope: &Scope,
    item: &Item,
    cfg: &mut Config,
    ctx: &mut Ctx,
) -> Result<(), ConfigError> {
    let Some(group) = scope.name.clone().filter(|n| !n.trim().is_empty()) else {
        return Err(ConfigError::new(
            &item.loc,
            "Binding_Group needs a name, as in Binding_Group \"east\" {}",
        ));
    };
    let mut extra = Vec::new();
    for it in &scope.items {
        match &it.kind {
            ItemKind::Scope(s) if s.kind.eq_ignore_ascii_case("binding") => {
                cfg.bindings.push(binding(s, it, Some(&group), ctx)?)
            }
            _ => {
                let label = format!("Binding_Group \"{group}\".{}", item_label(it));
                extra.push(ctx.ignore(it, label, MTA));
            }
        }
    }
    match cfg.binding_groups.iter_mut().find(|g| g.name == group) {
        Some(g) => g.extra.extend(extra),
        None => cfg.binding_groups.push(BindingGroup { name: group, extra }),
    }
    Ok(())
}

fn esmtp_listener(scope: &Scope, cfg: &mut Config, ctx: &mut Ctx) -> Result<(), ConfigError> {
    for item in &scope.items {
        match &item.kind {
            ItemKind::Scope(s) if s.kind.eq_ignore_ascii_case("listen") => {
                let addr = listen_addr(s, item)?;
                let mut l = Listener {
                    addr: addr.clone(),
                    enable_duravip: false,
                    duravip_preference: None,
                    duravip_follow: None,
                    extra: Vec::new(),
                };
                let mut seen = Seen::default();
                for it in &s.items {
                    if let ItemKind::Option { key, value: v } = &it.kind {
                        seen.check(key, &it.loc)?;
                        match key.to_ascii_lowercase().as_str() {
                            "enable_duravip" => {
                                l.enable_duravip = boolean(key, v)?;
                                continue;
                            }
                            "duravip_preference" => {
                                l.duravip_preference = Some(nonempty(key, v)?);
                                continue;
                            }
                            "duravip_follow" => {
                                l.duravip_follow = Some(nonempty(key, v)?);
                                continue;
                            }
                            _ => {}
                        }
                    }
                    let label = format!("ESMTP_Listener.Listen \"{addr}\".{}", item_label(it));
                    l.extra.push(ctx.ignore(it, label, MTA));
                }
                cfg.esmtp_listeners.push(l);
            }
            _ => {
                let label = format!("ESMTP_Listener.{}", item_label(item));
                cfg.esmtp_listener_extra.push(ctx.ignore(item, label, MTA));
            }
        }
    }
    Ok(())
}

const LOG_KEYS: &[&str] = &[
    "mainlog",
    "paniclog",
    "rejectlog",
    "acctlog",
    "bouncelog",
    "bouncealllog",
];

fn logger(scope: &Scope, module: LoggerModule, ctx: &mut Ctx) -> Result<Logger, ConfigError> {
    let mut l = Logger {
        module,
        name: scope.name.clone(),
        outputs: Vec::new(),
        extra: Vec::new(),
    };
    let mut seen = Seen::default();
    let label = match &scope.name {
        Some(n) => format!("{} \"{n}\"", module.scope_name()),
        None => module.scope_name().to_owned(),
    };
    for it in &scope.items {
        if let ItemKind::Option { key, value: v } = &it.kind {
            seen.check(key, &it.loc)?;
            if let Value::Scalar { text, .. } = v {
                if let Some(j) = parse_journal(text).map_err(|m| ConfigError::new(v.loc(), m))? {
                    l.outputs.push(LogOutput {
                        log: key.clone(),
                        destination: Destination::Journal(j),
                    });
                    continue;
                }
                if LOG_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key)) {
                    l.outputs.push(LogOutput {
                        log: key.clone(),
                        destination: Destination::File(text.clone()),
                    });
                    continue;
                }
            }
        }
        let path = format!("{label}.{}", item_label(it));
        l.extra.push(ctx.ignore(it, path, MTA));
    }
    Ok(l)
}

fn security(scope: &Scope, ctx: &mut Ctx) -> Result<Security, ConfigError> {
    let mut sec = Security::default();
    let mut seen = Seen::default();
    for item in &scope.items {
        match &item.kind {
            ItemKind::Option { key, value: v } => {
                seen.check(key, &item.loc)?;
                match key.to_ascii_lowercase().as_str() {
                    "user" => sec.user = Some(nonempty(key, v)?),
                    "group" => sec.group = Some(nonempty(key, v)?),
                    "capabilities" | "privileges" => sec.extra.push(ctx.ignore(
                        item,
                        format!("Security.{key}"),
                        "not applicable: cohortd keeps CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF",
                    )),
                    _ => sec.extra.push(ctx.ignore(
                        item,
                        format!("Security.{key}"),
                        suggestion(&key.to_ascii_lowercase(), &["user", "group"]),
                    )),
                }
            }
            ItemKind::Scope(_) => {
                let label = format!("Security.{}", item_label(item));
                sec.extra.push(ctx.ignore(item, label, MTA));
            }
        }
    }
    Ok(sec)
}

fn manager_logs(scope: &Scope, ctx: &mut Ctx) -> Result<ManagerLogs, ConfigError> {
    let mut m = ManagerLogs::default();
    let mut seen = Seen::default();
    let mut manager_names = Seen::default();
    for item in &scope.items {
        match &item.kind {
            ItemKind::Option { key, value: v } => {
                seen.check(key, &item.loc)?;
                match key.to_ascii_lowercase().as_str() {
                    "logfile" => {
                        m.logfile = nonempty(key, v)?;
                        // The manager expands it for every record; a bad conversion is a
                        // configuration error here, not a surprise at the first pull.
                        if let Err(e) = crate::logmove::pattern::Pattern::parse(&m.logfile) {
                            return Err(ConfigError::new(
                                v.loc(),
                                format!("'{key}' character {}: {}", e.col, e.what),
                            ));
                        }
                    }
                    "file_mode" => m.file_mode = octal_mode(key, v)?,
                    "dir_mode" => m.dir_mode = octal_mode(key, v)?,
                    "max_open" => m.max_open = u32_in(key, v, 1, 1_000_000)?,
                    "max_idle" => m.max_idle = seconds(key, v)?,
                    "control_cache" => m.control_cache = path_from(key, v)?,
                    _ => {
                        let label = format!("Logs.{key}");
                        m.extra.push(ctx.ignore(item, label, MTA));
                    }
                }
            }
            ItemKind::Scope(s) if s.kind.eq_ignore_ascii_case("manager") => {
                let Some(name) = s.name.clone() else {
                    return Err(ConfigError::new(
                        &item.loc,
                        "Manager needs a name, as in Manager \"eastmgr\" {}",
                    ));
                };
                manager_names.check(&name, &item.loc)?;
                m.managers.push(manager_scope(s, name)?);
            }
            ItemKind::Scope(_) => {
                let label = format!("Logs.{}", item_label(item));
                m.extra.push(ctx.ignore(item, label, MTA));
            }
        }
    }
    Ok(m)
}

fn manager_scope(s: &Scope, name: String) -> Result<ManagerScope, ConfigError> {
    let mut ms = ManagerScope {
        name: name.clone(),
        subscribers: None,
        nodes: Vec::new(),
    };
    let mut seen = Seen::default();
    let mut node_names = Seen::default();
    for it in &s.items {
        match &it.kind {
            ItemKind::Option { key, value: v } if key.eq_ignore_ascii_case("subscriber") => {
                seen.check(key, &it.loc)?;
                ms.subscribers = Some(strings(key, v)?);
            }
            ItemKind::Scope(n) if n.kind.eq_ignore_ascii_case("node") => {
                let Some(node) = n.name.clone() else {
                    return Err(ConfigError::new(
                        &it.loc,
                        "Node needs a name, as in Node \"west1\" {}",
                    ));
                };
                node_names.check(&node, &it.loc)?;
                let mut subs = None;
                for nit in &n.items {
                    match &nit.kind {
                        ItemKind::Option { key, value: v }
                            if key.eq_ignore_ascii_case("subscriber") =>
                        {
                            if subs.is_some() {
                                return Err(ConfigError::new(
                                    &nit.loc,
                                    format!("'Subscriber' is set twice in Node \"{node}\""),
                                ));
                            }
                            subs = Some(strings(key, v)?);
                        }
                        _ => {
                            return Err(ConfigError::new(
                                &nit.loc,
                                format!(
                                    "unexpected '{}' in Node \"{node}\" (only Subscriber is valid)",
                                    item_label(nit)
                                ),
                            ));
                        }
                    }
                }
                let Some(subscribers) = subs else {
                    return Err(ConfigError::new(
                        &it.loc,
                        format!(
                            "Node \"{node}\" needs a Subscriber list (use Subscriber = () to pull nothing)"
                        ),
                    ));
                };
                ms.nodes.push(NodeScope {
                    name: node,
                    subscribers,
                });
            }
            _ => {
                return Err(ConfigError::new(
                    &it.loc,
                    format!(
                        "unexpected '{}' in Manager \"{name}\" (valid: Subscriber, Node)",
                        item_label(it)
                    ),
                ));
            }
        }
    }
    Ok(ms)
}

/// Cross-checks of DuraVIP settings that span stanzas (docs chapter 27).
fn validate_duravip(cfg: &Config, items: &[Item]) -> Result<(), ConfigError> {
    // Errors found here concern whole stanzas; point at the first place the stanza kind appears.
    let loc_of = |kind: &str, name: Option<&str>| -> Loc {
        fn find<'a>(items: &'a [Item], kind: &str, name: Option<&str>) -> Option<&'a Loc> {
            for i in items {
                if let ItemKind::Scope(s) = &i.kind {
                    if s.kind.eq_ignore_ascii_case(kind)
                        && (name.is_none() || s.name.as_deref() == name)
                    {
                        return Some(s.name_loc.as_ref().unwrap_or(&i.loc));
                    }
                    if let Some(l) = find(&s.items, kind, name) {
                        return Some(l);
                    }
                }
            }
            None
        }
        find(items, kind, name)
            .or_else(|| items.first().map(|i| &i.loc))
            .cloned()
            .unwrap_or_else(|| Loc {
                file: std::sync::Arc::new(PathBuf::from("<config>")),
                line: 1,
                col: 1,
            })
    };
    let mut names: HashMap<String, &Binding> = HashMap::new();
    for b in &cfg.bindings {
        if names.insert(b.name.to_ascii_lowercase(), b).is_some() {
            return Err(ConfigError::new(
                &loc_of("binding", Some(&b.name)),
                format!("Binding \"{}\" is defined twice", b.name),
            ));
        }
    }
    let duravip_bindings: Vec<&Binding> =
        cfg.bindings.iter().filter(|b| b.enable_duravip).collect();
    for l in &cfg.esmtp_listeners {
        let here = || loc_of("listen", Some(&l.addr.to_string()));
        let host = match &l.addr {
            ListenAddr::Inet { host: Some(h), .. } => Some(*h),
            _ => None,
        };
        if l.enable_duravip && l.duravip_follow.is_some() {
            return Err(ConfigError::new(
                &here(),
                format!(
                    "listener {} cannot be both Enable_Duravip and Duravip_Follow",
                    l.addr
                ),
            ));
        }
        if (l.enable_duravip || l.duravip_follow.is_some()) && host.is_none() {
            return Err(ConfigError::new(
                &here(),
                format!(
                    "listener {} is DuraVIP-managed and needs an explicit IP address",
                    l.addr
                ),
            ));
        }
        if let Some(target) = &l.duravip_follow {
            if l.duravip_preference.is_some() {
                return Err(ConfigError::new(
                    &here(),
                    format!(
                        "listener {} follows '{target}' and must not also set Duravip_Preference",
                        l.addr
                    ),
                ));
            }
            let followed = duravip_bindings.iter().find(|b| {
                b.name.eq_ignore_ascii_case(target)
                    || b.bind_address.map(|a| a.to_string()) == Some(target.clone())
            });
            let Some(b) = followed else {
                return Err(ConfigError::new(
                    &here(),
                    format!(
                        "listener {} follows '{target}', which is not an Enable_Duravip binding (by name or IP)",
                        l.addr
                    ),
                ));
            };
            if b.bind_address == host {
                return Err(ConfigError::new(
                    &here(),
                    format!(
                        "listener {} has the same IP as the binding \"{}\" it follows",
                        l.addr, b.name
                    ),
                ));
            }
        }
    }
    // Every managed address must have a Topology telling where to plumb it.
    let managed = duravip_bindings
        .iter()
        .filter_map(|b| {
            b.bind_address
                .map(|a| (a, loc_of("binding", Some(&b.name))))
        })
        .chain(cfg.esmtp_listeners.iter().filter_map(|l| {
            match (&l.addr, l.enable_duravip || l.duravip_follow.is_some()) {
                (ListenAddr::Inet { host: Some(h), .. }, true) => {
                    Some((*h, loc_of("listen", Some(&l.addr.to_string()))))
                }
                _ => None,
            }
        }));
    for (addr, loc) in managed {
        if !cfg
            .cluster
            .topology
            .iter()
            .any(|t| t.network.contains(&addr))
        {
            return Err(ConfigError::new(
                &loc,
                format!(
                    "DuraVIP address {addr} is not inside any Topology network of the cluster scope"
                ),
            ));
        }
    }
    Ok(())
}
