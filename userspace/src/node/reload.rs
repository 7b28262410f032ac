//! What a configuration reload changes, option by option: [`diff`] compares the running and the
//! new configuration through the option tables (`cohort_engine::config::options`) and the
//! scopes a reload applies (`Replicate`, `Topology`, DuraVIP bindings and listeners, loggers),
//! and lists what a reload cannot apply (a `restart` option, the listeners, the manager's
//! `Logs`, `Security`). The daemon refuses a reload with any of those, naming them, and keeps its
//! running configuration; otherwise it applies the rest and answers with the list.

use std::collections::BTreeMap;

use cohort_engine::config::options::{self, Reload, Shown};
use cohort_engine::config::{Config, Replicate, Security};
use cohort_engine::duravip::LocalConfig;

/// The differences between two configurations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// What a reload applies, one line each: `cluster.view_balance_interval: 10 -> 2`.
    pub applied: Vec<String>,
    /// What needs a restart: `cluster.nodename`, `Control_Listener`, ...
    pub refused: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.refused.is_empty()
    }
}

fn show(v: &Shown) -> String {
    match v {
        Shown::Absent => "(unset)".into(),
        Shown::Value(s) => s.clone(),
        Shown::Pairs(p) => format!("[{} entries]", p.len()),
    }
}

fn table<T>(scope: &str, table: &[options::Opt<T>], old: &T, new: &T, d: &mut Diff) {
    for o in options::changed(table, old, new) {
        let name = format!("{scope}.{}", o.name);
        match o.reload {
            Reload::Restart => d.refused.push(name),
            Reload::Applies => d.applied.push(format!(
                "{name}: {} -> {}",
                show(&(o.get)(old)),
                show(&(o.get)(new))
            )),
        }
    }
}

fn replicate(old: &[Replicate], new: &[Replicate], d: &mut Diff) {
    let o: BTreeMap<&str, &Replicate> = old.iter().map(|r| (r.name.as_str(), r)).collect();
    let n: BTreeMap<&str, &Replicate> = new.iter().map(|r| (r.name.as_str(), r)).collect();
    for (name, r) in &n {
        match o.get(name) {
            None => d.applied.push(format!("Replicate \"{name}\" added")),
            Some(before) if before != r => d.applied.push(format!("Replicate \"{name}\" changed")),
            Some(_) => {}
        }
    }
    for name in o.keys().filter(|k| !n.contains_key(*k)) {
        d.applied.push(format!("Replicate \"{name}\" removed"));
    }
}

/// A configuration's DuraVIP addresses by address.
fn by_ip(l: &LocalConfig) -> BTreeMap<std::net::IpAddr, &cohort_engine::duravip::AddrConfig> {
    l.addresses.iter().map(|a| (a.ip, a)).collect()
}

fn duravip(old: &Config, new: &Config, d: &mut Diff) {
    let (o, n) = (LocalConfig::from_config(old), LocalConfig::from_config(new));
    if o == n {
        return;
    }
    let (oi, ni) = (by_ip(&o), by_ip(&n));
    let added: Vec<String> = ni
        .keys()
        .filter(|ip| !oi.contains_key(*ip))
        .map(|ip| ip.to_string())
        .collect();
    let removed: Vec<String> = oi
        .keys()
        .filter(|ip| !ni.contains_key(*ip))
        .map(|ip| ip.to_string())
        .collect();
    let changed = ni
        .iter()
        .filter(|(ip, v)| oi.get(*ip).is_some_and(|w| w != *v))
        .count();
    let moved = n
        .placement
        .iter()
        .filter(|(ip, p)| o.placement.get(*ip).is_some_and(|q| q != *p))
        .count();
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("added {}", added.join(" ")));
    }
    if !removed.is_empty() {
        parts.push(format!("removed {}", removed.join(" ")));
    }
    if changed > 0 {
        parts.push(format!("{changed} reconfigured"));
    }
    if moved > 0 {
        parts.push(format!("{moved} placed anew"));
    }
    d.applied
        .push(format!("DuraVIP addresses: {}", parts.join(", ")));
}

/// Compares the running configuration `old` with `new`.
pub fn diff(old: &Config, new: &Config) -> Diff {
    let mut d = Diff::default();
    table(
        "cluster",
        options::CLUSTER,
        &old.cluster,
        &new.cluster,
        &mut d,
    );
    table(
        "msgc_server",
        options::MSGC_SERVER,
        &old.msgc_server,
        &new.msgc_server,
        &mut d,
    );
    // A keyring rotates in place; adding or removing the key changes every datagram's format.
    if old.msgc_server.cluster_key.is_empty() != new.msgc_server.cluster_key.is_empty() {
        d.applied
            .retain(|l| !l.starts_with("msgc_server.cluster_key"));
        d.refused
            .push("msgc_server.cluster_key (adding or removing the key)".into());
    }
    replicate(&old.cluster.replicate, &new.cluster.replicate, &mut d);
    if old.outbound_throttles != new.outbound_throttles {
        d.applied.push(format!(
            "cluster_outbound_throttle_*: {} stanzas changed",
            new.outbound_throttles.len()
        ));
    }
    let groups = |c: &Config| {
        c.bindings
            .iter()
            .filter_map(|b| Some((b.name.clone(), b.binding_group.clone()?)))
            .collect::<std::collections::BTreeSet<_>>()
    };
    if groups(old) != groups(new) {
        d.applied.push("Binding_Group members".into());
    }
    if old.cluster.topology != new.cluster.topology {
        d.applied.push(format!(
            "Topology: {} -> {} blocks",
            old.cluster.topology.len(),
            new.cluster.topology.len()
        ));
    }
    duravip(old, new, &mut d);
    if old.loggers != new.loggers {
        d.applied
            .push("ec_logger / bounce_logger destinations".into());
    }
    if old.control_listener != new.control_listener {
        d.refused.push("Control_Listener".into());
    }
    if old.eccluster_listener != new.eccluster_listener {
        d.refused.push("ECCluster_Listener".into());
    }
    if old.metrics_listener != new.metrics_listener {
        d.refused.push("Metrics_Listener".into());
    }
    match (&old.manager_logs, &new.manager_logs) {
        (Some(o), Some(n)) => {
            table("Logs", options::LOGS, o, n, &mut d);
            if o.managers != n.managers {
                d.refused.push("Logs.Manager".into());
            }
        }
        (o, n) if o != n => d.refused.push("Logs".into()),
        _ => {}
    }
    let audit = cohort_engine::config::InboundAudit::default();
    table(
        "inbound_audit",
        options::INBOUND_AUDIT,
        old.inbound_audit.as_ref().unwrap_or(&audit),
        new.inbound_audit.as_ref().unwrap_or(&audit),
        &mut d,
    );
    let none = Security::default();
    table(
        "Security",
        options::SECURITY,
        old.security.as_ref().unwrap_or(&none),
        new.security.as_ref().unwrap_or(&none),
        &mut d,
    );
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        cohort_engine::config::load_str(std::path::Path::new("t.conf"), text)
            .expect("valid")
            .config
    }

    #[test]
    fn applied_and_refused_changes_are_named() {
        let base = "cluster { nodename = \"a\" view_balance_interval = 10 \
                    Topology \"10.9.0.0/16\" { interface = \"eth0\" } } \
                    Binding \"b1\" { Enable_Duravip = true Bind_Address = \"10.9.0.1\" }";
        let old = cfg(base);
        assert!(diff(&old, &old).is_empty());
        let new = cfg("cluster { nodename = \"a\" view_balance_interval = 2 \
                       Replicate \"inbound_cidr\" {} \
                       Topology \"10.9.0.0/16\" { interface = \"eth0\" } } \
                       Binding \"b1\" { Enable_Duravip = true Bind_Address = \"10.9.0.1\" } \
                       Binding \"b2\" { Enable_Duravip = true Bind_Address = \"10.9.0.2\" }");
        let d = diff(&old, &new);
        assert!(d.refused.is_empty(), "{d:?}");
        assert!(
            d.applied
                .contains(&"cluster.view_balance_interval: 10 -> 2".to_string()),
            "{d:?}"
        );
        assert!(
            d.applied
                .contains(&"Replicate \"inbound_cidr\" added".to_string())
        );
        assert!(
            d.applied
                .iter()
                .any(|l| l == "DuraVIP addresses: added 10.9.0.2"),
            "{d:?}"
        );
        let renamed = cfg(&base.replace("nodename = \"a\"", "nodename = \"b\""));
        let d = diff(&old, &renamed);
        assert_eq!(d.refused, ["cluster.nodename"]);
        let moved = cfg(&format!("{base} msgc_server {{ port = 5000 }}"));
        assert_eq!(diff(&old, &moved).refused, ["msgc_server.port"]);
        let logs = cfg(&format!("{base} Logs {{ max_open = 9 }}"));
        let logs2 = cfg(&format!("{base} Logs {{ max_open = 10 }}"));
        assert_eq!(diff(&logs, &logs2).refused, ["Logs.max_open"]);
        let user = cfg(&format!("{base} Security {{ user = \"nobody\" }}"));
        assert_eq!(diff(&old, &user).refused, ["Security.user"]);
    }
}
