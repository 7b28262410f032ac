//! Prints a [`Config`] as Momentum configuration text with every default written out: the output of
//! `cohortd --check-config`. Parsing the output gives back an equal `Config` (tested by property).

use std::fmt::Write as _;

use super::model::*;
use super::options;
use super::syntax::quote;

/// The effective configuration as configuration text.
pub fn render(cfg: &Config) -> String {
    let mut w = Writer::default();
    cluster(&mut w, &cfg.cluster);
    msgc(&mut w, &cfg.msgc_server);
    listeners(
        &mut w,
        "Control_Listener",
        &cfg.control_listener.listens,
        &cfg.control_listener.extra,
    );
    listeners(
        &mut w,
        "ECCluster_Listener",
        &cfg.eccluster_listener.listens,
        &cfg.eccluster_listener.extra,
    );
    if let Some(m) = &cfg.metrics_listener {
        listeners(&mut w, "Metrics_Listener", &m.listens, &m.extra);
    }
    bindings(&mut w, cfg);
    esmtp(&mut w, cfg);
    for l in &cfg.loggers {
        logger(&mut w, l);
    }
    if let Some(m) = &cfg.manager_logs {
        manager_logs(&mut w, m);
    }
    if let Some(a) = &cfg.inbound_audit {
        w.open("inbound_audit");
        w.options(options::INBOUND_AUDIT, a);
        a.extra.iter().for_each(|e| w.extra(e));
        w.close();
    }
    if let Some(sec) = &cfg.security {
        w.open("Security");
        w.options(options::SECURITY, sec);
        for e in &sec.extra {
            w.extra(e);
        }
        w.close();
    }
    for e in &cfg.extra {
        w.extra(e);
    }
    w.out
}

#[derive(Default)]
struct Writer {
    out: String,
    indent: usize,
}

impl Writer {
    fn line(&mut self, s: impl AsRef<str>) {
        let _ = writeln!(self.out, "{:w$}{}", "", s.as_ref(), w = self.indent);
    }
    fn open(&mut self, s: impl AsRef<str>) {
        self.line(format!("{} {{", s.as_ref()));
        self.indent += 2;
    }
    fn close(&mut self) {
        self.indent -= 2;
        self.line("}");
    }
    fn str(&mut self, key: &str, v: &str) {
        self.line(format!("{key} = {}", quote(v)));
    }
    /// Every option of `table` that has a value, in table order.
    fn options<T>(&mut self, table: &[options::Opt<T>], scope: &T) {
        for o in table {
            match (o.get)(scope) {
                options::Shown::Absent => {}
                options::Shown::Value(v) => self.line(format!("{} = {v}", o.name)),
                options::Shown::Pairs(pairs) => {
                    self.line(format!("{} = [", o.name));
                    self.indent += 2;
                    for (k, v) in pairs {
                        self.line(format!("{} = {}", quote(&k), quote(&v)));
                    }
                    self.indent -= 2;
                    self.line("]");
                }
            }
        }
    }

    fn extra(&mut self, e: &Extra) {
        for l in e.text.lines() {
            self.line(l);
        }
    }
}

/// One `Replicate` scope as configuration text (for a tool that hands an operator's objects to
/// nodes it configures itself, such as `cohort-bench replicate --config`).
pub fn render_replicate(r: &Replicate) -> String {
    let mut w = Writer::default();
    w.open(format!("Replicate {}", quote(&r.name)));
    w.options(options::REPLICATE, r);
    w.close();
    w.out
}

fn cluster(w: &mut Writer, c: &Cluster) {
    w.open("cluster");
    w.options(options::CLUSTER, c);
    for r in &c.replicate {
        w.open(format!("Replicate {}", quote(&r.name)));
        w.options(options::REPLICATE, r);
        w.close();
    }
    for t in &c.topology {
        w.open(format!("Topology {}", quote(&t.network.to_string())));
        w.options(options::TOPOLOGY, t);
        w.close();
    }
    for e in &c.extra {
        w.extra(e);
    }
    w.close();
}

fn msgc(w: &mut Writer, m: &MsgcServer) {
    w.open("msgc_server");
    w.options(options::MSGC_SERVER, m);
    for e in &m.extra {
        w.extra(e);
    }
    w.close();
}

fn listen_scope(w: &mut Writer, addr: &ListenAddr, extra: &[Extra]) {
    if extra.is_empty() {
        w.line(format!("Listen {} {{}}", quote(&addr.to_string())));
    } else {
        w.open(format!("Listen {}", quote(&addr.to_string())));
        extra.iter().for_each(|e| w.extra(e));
        w.close();
    }
}

fn listeners(w: &mut Writer, stanza: &str, listens: &[Listen], extra: &[Extra]) {
    w.open(stanza);
    for e in extra {
        w.extra(e);
    }
    for l in listens {
        listen_scope(w, &l.addr, &l.extra);
    }
    w.close();
}

fn bindings(w: &mut Writer, cfg: &Config) {
    // Groups first, in order, carrying their own options; each grouped binding is then wrapped in a
    // scope of its group, which keeps the bindings' order when the output is parsed again.
    for g in &cfg.binding_groups {
        w.open(format!("Binding_Group {}", quote(&g.name)));
        g.extra.iter().for_each(|e| w.extra(e));
        w.close();
    }
    for b in &cfg.bindings {
        if let Some(g) = &b.binding_group {
            w.open(format!("Binding_Group {}", quote(g)));
        }
        w.open(format!("Binding {}", quote(&b.name)));
        w.options(options::BINDING, b);
        b.extra.iter().for_each(|e| w.extra(e));
        w.close();
        if b.binding_group.is_some() {
            w.close();
        }
    }
}

fn esmtp(w: &mut Writer, cfg: &Config) {
    if cfg.esmtp_listeners.is_empty() && cfg.esmtp_listener_extra.is_empty() {
        return;
    }
    w.open("ESMTP_Listener");
    cfg.esmtp_listener_extra.iter().for_each(|e| w.extra(e));
    for l in &cfg.esmtp_listeners {
        w.open(format!("Listen {}", quote(&l.addr.to_string())));
        w.options(options::LISTEN, l);
        l.extra.iter().for_each(|e| w.extra(e));
        w.close();
    }
    w.close();
}

/// A journal destination in canonical form: `=>sub` for one subscriber, `?subscribers=` for more.
pub fn journal_uri(j: &JournalDest) -> String {
    let mut s = format!("{}://{}", j.scheme, j.path.to_string_lossy());
    match j.subscribers.as_slice() {
        [] => {}
        [one] => {
            let _ = write!(s, "=>{one}");
        }
        many => {
            let _ = write!(s, "?subscribers={}", many.join(","));
        }
    }
    s
}

fn logger(w: &mut Writer, l: &Logger) {
    match &l.name {
        Some(n) => w.open(format!("{} {}", l.module.scope_name(), quote(n))),
        None => w.open(l.module.scope_name()),
    }
    // In file order rather than the table's: custom journal logs sit among the table's keys.
    for o in &l.outputs {
        match &o.destination {
            Destination::Journal(j) => w.str(&o.log, &journal_uri(j)),
            Destination::File(f) => w.str(&o.log, f),
        }
    }
    l.extra.iter().for_each(|e| w.extra(e));
    w.close();
}

fn subscriber_list(subs: &[String]) -> String {
    let q: Vec<String> = subs.iter().map(|s| quote(s)).collect();
    if q.is_empty() {
        "()".into()
    } else {
        format!("( {} )", q.join(", "))
    }
}

fn manager_logs(w: &mut Writer, m: &ManagerLogs) {
    w.open("Logs");
    w.options(options::LOGS, m);
    for mgr in &m.managers {
        w.open(format!("Manager {}", quote(&mgr.name)));
        if let Some(s) = &mgr.subscribers {
            w.line(format!("Subscriber = {}", subscriber_list(s)));
        }
        for n in &mgr.nodes {
            w.open(format!("Node {}", quote(&n.name)));
            w.line(format!("Subscriber = {}", subscriber_list(&n.subscribers)));
            w.close();
        }
        w.close();
    }
    m.extra.iter().for_each(|e| w.extra(e));
    w.close();
}
