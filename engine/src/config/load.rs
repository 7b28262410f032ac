//! From the syntax tree to the typed [`Config`]: names matched case-insensitively, values checked
//! and converted, defaults filled in, cross-references validated. Every error carries the location
//! of the text that caused it; options that belong to the MTA are kept and reported once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use super::error::{ConfigError, Loc};
use super::model::*;
use super::options;
use super::syntax::{self, Item, ItemKind, Scope, Value};
use super::values::*;
pub use super::values::{MAX_SECONDS, parse_journal};

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
            "inbound_audit" => {
                single("inbound_audit", item)?;
                cfg.inbound_audit = Some(inbound_audit(scope, &mut ctx)?);
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
    outbound_throttles(items, &mut cfg, &mut ctx)?;
    unknown_binding_groups(items, &cfg, &mut ctx);
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
                // The changelog (#4620) spells it with "-ing"; both spellings are accepted.
                let name = match k.as_str() {
                    "unconditional_rebinding" => "unconditional_rebind",
                    other => other,
                };
                if let Some(o) = options::find(options::CLUSTER, name) {
                    (o.set)(&mut c, key, v)?;
                    continue;
                }
                match k.as_str() {
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
                        suggestion(&k, &options::names(options::CLUSTER)),
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

fn replicate(scope: &Scope, item: &Item) -> Result<Replicate, ConfigError> {
    let Some(name) = scope.name.clone().filter(|n| !n.trim().is_empty()) else {
        return Err(ConfigError::new(
            &item.loc,
            "Replicate needs a name, as in Replicate \"inbound_cidr\" {}",
        ));
    };
    let mut seen = Seen::default();
    let mut r = Replicate::new(name.clone(), ReplicateKind::Cache);
    // Where each option was written, for the checks that involve several.
    let mut locs: HashMap<&'static str, Loc> = HashMap::new();
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
        let k = key.to_ascii_lowercase();
        let Some(o) = options::find(options::REPLICATE, &k) else {
            let known = options::names(options::REPLICATE);
            let hint = match known.iter().find(|n| distance(&k, n) <= 2) {
                Some(n) => format!("; did you mean '{n}'?"),
                None => String::new(),
            };
            return Err(ConfigError::new(
                &it.loc,
                format!(
                    "unknown option '{key}' in Replicate \"{name}\" (valid: {}){hint}",
                    known.join(", ")
                ),
            ));
        };
        (o.set)(&mut r, key, v)?;
        locs.insert(o.name, v.loc().clone());
    }
    let class = r.class;
    let ty = locs.get("type").map(|l| (r.kind, l.clone()));
    let max_size_loc = locs.get("max_size").cloned();
    let binding_group_loc = locs.get("binding_group").cloned();
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
        let k = key.to_ascii_lowercase();
        let Some(o) = options::find(options::TOPOLOGY, &k) else {
            return Err(ConfigError::new(
                &it.loc,
                format!(
                    "unknown option '{key}' in Topology \"{name}\" (valid: interface, cidrmask)"
                ),
            ));
        };
        (o.set)(&mut t, key, v)?;
    }
    let interface = (!t.interface.is_empty()).then(|| t.interface.clone());
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
        let Some(o) = options::find(options::MSGC_SERVER, &k) else {
            m.extra.push(ctx.ignore(
                item,
                format!("msgc_server.{key}"),
                suggestion(&k, &options::names(options::MSGC_SERVER)),
            ));
            continue;
        };
        (o.set)(&mut m, key, v)?;
        // Where the cross-checks below point: the later-checked option of each pair.
        match o.name {
            "probe_interval" => {
                probe_loc.get_or_insert(v.loc().clone());
            }
            "suspect_timeout" => probe_loc = Some(v.loc().clone()),
            "mtu" => mtu_loc = Some(v.loc().clone()),
            "max_unstable_bytes" => {
                mtu_loc.get_or_insert(v.loc().clone());
            }
            _ => {}
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
        let mut reason = MTA.to_owned();
        if let ItemKind::Option { key, value: v } = &it.kind {
            seen.check(key, &it.loc)?;
            if key.eq_ignore_ascii_case("duravip_follow") {
                return Err(ConfigError::new(
                    &it.loc,
                    "Duravip_Follow is only valid on listeners: bindings cannot follow",
                ));
            }
            if let Some(o) = options::find(options::BINDING, key) {
                (o.set)(&mut b, key, v)?;
                continue;
            }
            reason = suggestion(key, &options::names(options::BINDING));
        }
        let label = format!("Binding \"{name}\".{}", item_label(it));
        b.extra.push(ctx.ignore(it, label, reason));
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

const OUTBOUND_THROTTLES: [&str; 2] = [
    "cluster_outbound_throttle_messages",
    "cluster_outbound_throttle_connections",
];

/// Reads `cluster_outbound_throttle_messages` / `_connections` where Momentum defines them: the
/// global scope, `Domain "d"`, `Binding_Group "g"` and `Domain "d"` inside it. The stanzas were
/// kept as MTA items by the main pass; the throttle options in them are Cohort's now (an
/// `OBTM` / `OBTC` object enforces them), so they leave the ignored list. Without the object
/// they are listed as ignored with the reason.
/// A `Replicate` scope whose `binding_group` names no `Binding_Group` counts no binding: listed
/// (with its location) so that a misspelt group does not go unnoticed.
fn unknown_binding_groups(items: &[Item], cfg: &Config, ctx: &mut Ctx) {
    let known = |g: &str| {
        cfg.binding_groups
            .iter()
            .any(|b| b.name.eq_ignore_ascii_case(g))
    };
    let scopes = |items: &'_ [Item], kind: &str| -> Vec<(Option<String>, Vec<Item>)> {
        items
            .iter()
            .filter_map(|it| match &it.kind {
                ItemKind::Scope(s) if s.kind.eq_ignore_ascii_case(kind) => {
                    Some((s.name.clone(), s.items.clone()))
                }
                _ => None,
            })
            .collect()
    };
    for (_, cluster_items) in scopes(items, "cluster") {
        for (name, r_items) in scopes(&cluster_items, "replicate") {
            for it in &r_items {
                let ItemKind::Option { key, value } = &it.kind else {
                    continue;
                };
                let Value::Scalar { text, loc, .. } = value else {
                    continue;
                };
                if !key.eq_ignore_ascii_case("binding_group") || known(text) {
                    continue;
                }
                let path = format!(
                    "cluster.Replicate \"{}\".binding_group",
                    name.clone().unwrap_or_default()
                );
                if !ctx.ignored.iter().any(|i| i.path == path) {
                    ctx.ignored.push(Ignored {
                        loc: loc.clone(),
                        path,
                        reason: format!(
                            "no Binding_Group \"{text}\": the object counts no binding"
                        ),
                    });
                }
            }
        }
    }
}

fn is_outbound_throttle(it: &Item) -> bool {
    matches!(&it.kind, ItemKind::Option { key, .. }
        if OUTBOUND_THROTTLES.iter().any(|o| key.eq_ignore_ascii_case(o)))
}

fn outbound_throttles(items: &[Item], cfg: &mut Config, ctx: &mut Ctx) -> Result<(), ConfigError> {
    // (item, path for the ignored list, group, domain)
    let mut found: Found<'_> = Vec::new();
    // Domain scopes holding a throttle: (the scope's item, its path), to list their other items.
    let mut domains: Vec<(&Item, String)> = Vec::new();
    let is_throttle = is_outbound_throttle;
    type Found<'a> = Vec<(&'a Item, String, Option<String>, Option<String>)>;
    fn domain_scope<'a>(
        it: &'a Item,
        s: &'a Scope,
        path: String,
        group: Option<&String>,
        found: &mut Found<'a>,
        domains: &mut Vec<(&'a Item, String)>,
    ) {
        let Some(d) = &s.name else { return };
        if d.len() > 1 && d.starts_with('/') && d.ends_with('/') {
            // A regex stanza: its throttle is listed as not enforced (see below).
            return;
        }
        let before = found.len();
        for inner in s.items.iter().filter(|i| is_outbound_throttle(i)) {
            let inner_path = format!("{path}.{}", item_label(inner));
            found.push((inner, inner_path, group.cloned(), Some(d.clone())));
        }
        if found.len() > before {
            domains.push((it, path));
        }
    }
    for it in items {
        match &it.kind {
            ItemKind::Option { .. } if is_throttle(it) => {
                found.push((it, item_label(it), None, None));
            }
            ItemKind::Scope(s) if s.kind.eq_ignore_ascii_case("domain") => {
                domain_scope(it, s, item_label(it), None, &mut found, &mut domains);
            }
            ItemKind::Scope(s) if s.kind.eq_ignore_ascii_case("binding_group") => {
                let Some(g) = &s.name else { continue };
                for inner in &s.items {
                    let path = format!("Binding_Group \"{g}\".{}", item_label(inner));
                    match &inner.kind {
                        ItemKind::Option { .. } if is_throttle(inner) => {
                            found.push((inner, path, Some(g.clone()), None));
                        }
                        ItemKind::Scope(d) if d.kind.eq_ignore_ascii_case("domain") => {
                            domain_scope(inner, d, path, Some(g), &mut found, &mut domains);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    // A Domain stanza holding a throttle is Cohort's in part: its other items are listed one by one.
    for (scope_item, path) in domains {
        ctx.ignored.retain(|i| i.path != path);
        if let ItemKind::Scope(s) = &scope_item.kind {
            for inner in s.items.iter().filter(|i| !is_throttle(i)) {
                let _ = ctx.ignore(inner, format!("{path}.{}", item_label(inner)), MTA);
            }
        }
    }
    // Regex Domain stanzas (Momentum's `Domain "/.../"`) are not matched by Cohort.
    for it in items {
        let regex_domains = |s: &Scope| {
            s.kind.eq_ignore_ascii_case("domain")
                && s.name
                    .as_deref()
                    .is_some_and(|d| d.len() > 1 && d.starts_with('/') && d.ends_with('/'))
        };
        let mut check = |scope_item: &Item, s: &Scope, prefix: String| {
            for inner in s.items.iter().filter(|i| is_outbound_throttle(i)) {
                let path = format!("{prefix}{}.{}", item_label(scope_item), item_label(inner));
                let _ = ctx.ignore(
                    inner,
                    path,
                    "not enforced: regex Domain stanzas are not supported for cluster throttles",
                );
            }
        };
        match &it.kind {
            ItemKind::Scope(s) if regex_domains(s) => check(it, s, String::new()),
            ItemKind::Scope(g) if g.kind.eq_ignore_ascii_case("binding_group") => {
                for inner in &g.items {
                    if let ItemKind::Scope(d) = &inner.kind
                        && regex_domains(d)
                    {
                        let prefix =
                            format!("Binding_Group \"{}\".", g.name.clone().unwrap_or_default());
                        check(inner, d, prefix);
                    }
                }
            }
            _ => {}
        }
    }
    let mut seen: HashMap<(bool, Option<String>, Option<String>), Loc> = HashMap::new();
    for (it, path, binding_group, domain) in found {
        let ItemKind::Option { key, value } = &it.kind else {
            continue;
        };
        let connections = key.eq_ignore_ascii_case(OUTBOUND_THROTTLES[1]);
        let Value::Scalar { text, .. } = value else {
            return Err(ConfigError::new(
                value.loc(),
                format!("{key} takes \"N\" or \"N/SECONDS\""),
            ));
        };
        let spec = crate::replicate::throttle::ThrottleSpec::parse(text, None)
            .map_err(|e| ConfigError::new(value.loc(), format!("{key}: {e}")))?;
        let lower = |o: &Option<String>| o.as_deref().map(str::to_ascii_lowercase);
        let stanza = (connections, lower(&binding_group), lower(&domain));
        if let Some(first) = seen.get(&stanza) {
            return Err(ConfigError::new(
                &it.loc,
                format!("second {key} for the same scope (the first is at {first})"),
            ));
        }
        seen.insert(stanza, it.loc.clone());
        let (kind, object) = if connections {
            (ReplicateKind::Obtc, "OBTC")
        } else {
            (ReplicateKind::Obtm, "OBTM")
        };
        ctx.ignored.retain(|i| i.path != path);
        if !cfg.cluster.replicate.iter().any(|r| r.kind == kind) {
            let _ = ctx.ignore(
                it,
                path,
                format!("not enforced: it needs Replicate \"{object}\" {{}} in the cluster scope"),
            );
            continue;
        }
        cfg.outbound_throttles.push(OutboundThrottle {
            connections,
            binding_group,
            domain,
            limit: spec.limit,
            period: spec.period,
        });
    }
    // One order whatever the file's (printing the configuration moves stanzas).
    cfg.outbound_throttles.sort_by(|a, b| {
        (a.connections, &a.binding_group, &a.domain).cmp(&(
            b.connections,
            &b.binding_group,
            &b.domain,
        ))
    });
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
                    let mut reason = MTA.to_owned();
                    if let ItemKind::Option { key, value: v } = &it.kind {
                        seen.check(key, &it.loc)?;
                        if let Some(o) = options::find(options::LISTEN, key) {
                            (o.set)(&mut l, key, v)?;
                            continue;
                        }
                        reason = suggestion(key, &options::names(options::LISTEN));
                    }
                    let label = format!("ESMTP_Listener.Listen \"{addr}\".{}", item_label(it));
                    l.extra.push(ctx.ignore(it, label, reason));
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
        let mut reason = MTA.to_owned();
        if let ItemKind::Option { key, value: v } = &it.kind {
            seen.check(key, &it.loc)?;
            if let Some(o) = options::find(options::LOGGER, key) {
                (o.set)(&mut l, key, v)?;
                continue;
            }
            // A custom log written to a journal is a journal Cohort keeps too.
            if let Value::Scalar { text, .. } = v
                && let Some(j) = parse_journal(text).map_err(|m| ConfigError::new(v.loc(), m))?
            {
                l.outputs.push(LogOutput {
                    log: key.clone(),
                    destination: Destination::Journal(j),
                });
                continue;
            }
            reason = suggestion(key, &options::names(options::LOGGER));
        }
        let path = format!("{label}.{}", item_label(it));
        l.extra.push(ctx.ignore(it, path, reason));
    }
    Ok(l)
}

fn inbound_audit(scope: &Scope, ctx: &mut Ctx) -> Result<InboundAudit, ConfigError> {
    let mut a = InboundAudit::default();
    let mut seen = Seen::default();
    for item in &scope.items {
        if let ItemKind::Option { key, value: v } = &item.kind {
            seen.check(key, &item.loc)?;
            if let Some(o) = options::find(options::INBOUND_AUDIT, key) {
                (o.set)(&mut a, key, v)?;
                continue;
            }
        }
        let label = format!("inbound_audit.{}", item_label(item));
        a.extra.push(ctx.ignore(item, label, MTA));
    }
    Ok(a)
}

fn security(scope: &Scope, ctx: &mut Ctx) -> Result<Security, ConfigError> {
    let mut sec = Security::default();
    let mut seen = Seen::default();
    for item in &scope.items {
        match &item.kind {
            ItemKind::Option { key, value: v } => {
                seen.check(key, &item.loc)?;
                let k = key.to_ascii_lowercase();
                if let Some(o) = options::find(options::SECURITY, &k) {
                    (o.set)(&mut sec, key, v)?;
                    continue;
                }
                match k.as_str() {
                    "capabilities" | "privileges" => sec.extra.push(ctx.ignore(
                        item,
                        format!("Security.{key}"),
                        "not applicable: cohortd keeps CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF",
                    )),
                    _ => sec.extra.push(ctx.ignore(
                        item,
                        format!("Security.{key}"),
                        suggestion(&k, &options::names(options::SECURITY)),
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
                if let Some(o) = options::find(options::LOGS, key) {
                    (o.set)(&mut m, key, v)?;
                } else {
                    let reason = suggestion(key, &options::names(options::LOGS));
                    m.extra
                        .push(ctx.ignore(item, format!("Logs.{key}"), reason));
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
