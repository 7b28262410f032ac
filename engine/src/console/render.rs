//! Text and JSON renderings of the console's data ([`super::status`]).
//!
//! The text forms reproduce the samples of the Momentum module page (71.19.4) and the docs
//! survey byte for byte, so that operators and scripts that read Momentum's console read Cohort's
//! the same way. Every text ends with a newline. The JSON forms carry the same fields as data.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::grammar::{self, Scope, Word};
use super::status::*;

/// A value the console can show: as text for people, as JSON for `--json`.
pub trait Render {
    /// The text form, in the documented shape, ending in a newline (empty when there is nothing).
    fn text(&self) -> String;
    /// The same data as JSON.
    fn json(&self) -> Value;
}

/// The body a console response carries: `item.text()`, or with `json` its JSON pretty-printed
/// with a final newline.
pub fn render(item: &dyn Render, json: bool) -> String {
    if json {
        let mut s = format!("{:#}", item.json());
        s.push('\n');
        s
    } else {
        item.text()
    }
}

fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v)
        .expect("status types serialize to JSON: plain fields, string keys, no fallible impls")
}

impl Render for ClusterInfo {
    /// ```text
    /// Daemon: 4803 [m:#ec0-22787#labrat-1,s:#ec1-22787#labrat-1]
    /// Control Group: ec_console
    /// Cluster Group: ec_cluster (labrat-4 is leader)
    /// Logger Group: none
    /// ```
    /// Without a leader (not connected) the third line reads `Cluster Group: ec_cluster (no leader)`.
    fn text(&self) -> String {
        let leader = match &self.leader {
            Some(l) => format!("{l} is leader"),
            None => "no leader".to_owned(),
        };
        format!(
            "Daemon: {} [m:{},s:{}]\nControl Group: {}\nCluster Group: {} ({})\nLogger Group: {}\n",
            self.daemon_port,
            self.m_private_name,
            self.s_private_name,
            self.control_group,
            self.cluster_group,
            leader,
            self.logger_group.as_deref().unwrap_or("none"),
        )
    }
    fn json(&self) -> Value {
        to_json(self)
    }
}

const NULL: &str = "(Null)";

impl Render for Member {
    /// One block of `cluster membership`; a manager prints `(Null)` names and `0.0.0.0:0`.
    fn text(&self) -> String {
        let address = match self.address {
            Some(a) => a.to_string(),
            None => "0.0.0.0:0".to_owned(),
        };
        let mut groups = String::from("Groups:");
        if !self.groups.is_empty() {
            groups.push(' ');
            groups.push_str(&self.groups.join(", "));
        }
        format!(
            "Private Name: {}\nNode Name: {}\nSubcluster: {}\nNode Type: {}\nVersion: {}\nAddress: {}\n{}\n",
            self.private_name,
            self.node_name.as_deref().unwrap_or(NULL),
            self.subcluster.as_deref().unwrap_or(NULL),
            self.node_type,
            self.version,
            address,
            groups,
        )
    }
    fn json(&self) -> Value {
        to_json(self)
    }
}

impl Render for Membership {
    /// The members' blocks separated by one empty line.
    fn text(&self) -> String {
        self.members
            .iter()
            .map(Render::text)
            .collect::<Vec<_>>()
            .join("\n")
    }
    fn json(&self) -> Value {
        to_json(self)
    }
}

impl Render for NodeName {
    fn text(&self) -> String {
        format!("{}\n", self.nodename)
    }
    fn json(&self) -> Value {
        to_json(self)
    }
}

impl Render for NodeAddr {
    /// `10.80.116.201:4802`
    fn text(&self) -> String {
        format!("{}\n", self.address)
    }
    fn json(&self) -> Value {
        to_json(self)
    }
}

impl Render for Version {
    fn text(&self) -> String {
        format!("{}\n", self.version)
    }
    fn json(&self) -> Value {
        to_json(self)
    }
}

impl Render for Message {
    fn text(&self) -> String {
        if self.message.is_empty() || self.message.ends_with('\n') {
            self.message.clone()
        } else {
            format!("{}\n", self.message)
        }
    }
    fn json(&self) -> Value {
        to_json(self)
    }
}

impl Render for ArpTable {
    /// `10.80.116.204    [00:e0:81:63:5c:e8]  43s`: the address left-aligned in 16 columns.
    fn text(&self) -> String {
        let mut s = String::new();
        for e in &self.entries {
            let _ = writeln!(s, "{:<16} [{}]  {}s", e.ip.to_string(), e.mac, e.age_secs);
        }
        s
    }
    fn json(&self) -> Value {
        to_json(self)
    }
}

impl Render for Jobs {
    /// ```text
    /// 2 jobs
    ///    3  log pull      12.5 s  pulling the logs of node2: 1200 records written
    ///    4  duravip move   0.2 s  10.1.1.5 from node1 to node3
    /// ```
    fn text(&self) -> String {
        let mut s = match self.jobs.len() {
            0 => "no jobs\n".to_owned(),
            1 => "1 job\n".to_owned(),
            n => format!("{n} jobs\n"),
        };
        for j in &self.jobs {
            let _ = writeln!(
                s,
                "{:>5}  {:<12} {:>7.1} s  {}{}",
                j.id,
                j.kind,
                j.running_secs,
                j.what,
                if j.aborting { " (aborting)" } else { "" }
            );
        }
        s
    }
    fn json(&self) -> Value {
        to_json(self)
    }
}

impl Render for Logs {
    /// ```text
    /// mainlog
    /// <TAB>[on disk: 1604005 bytes]
    /// <TAB>[subscriber: 'master' @ 00000000:0000a43a]
    /// ```
    fn text(&self) -> String {
        let mut s = String::new();
        for log in &self.logs {
            let _ = writeln!(s, "{}\n\t[on disk: {} bytes]", log.name, log.on_disk);
            for sub in &log.subscribers {
                let _ = writeln!(
                    s,
                    "\t[subscriber: '{}' @ {:08x}:{:08x}]",
                    sub.name, sub.segment, sub.offset
                );
            }
        }
        s
    }
    fn json(&self) -> Value {
        to_json(self)
    }
}

impl Render for Counters {
    /// `Label: value` lines (a Cohort extension; Momentum had no such command).
    fn text(&self) -> String {
        let mut s = String::new();
        for (label, value) in self.labelled() {
            let _ = writeln!(s, "{label}: {value}");
        }
        s
    }
    /// A flat object: the fixed counters by field name, then the extra ones by their names.
    fn json(&self) -> Value {
        let mut map = serde_json::Map::new();
        let fixed = [
            ("datagrams_sent", self.datagrams_sent),
            ("datagrams_received", self.datagrams_received),
            ("bytes_sent", self.bytes_sent),
            ("bytes_received", self.bytes_received),
            ("dropped_bad_mac", self.dropped_bad_mac),
            ("dropped_undecodable", self.dropped_undecodable),
            ("dropped_stale_incarnation", self.dropped_stale_incarnation),
            ("dropped_replay", self.dropped_replay),
        ];
        for (k, v) in fixed {
            map.insert(k.to_owned(), Value::from(v));
        }
        for (k, v) in &self.extra {
            map.insert(k.clone(), Value::from(*v));
        }
        Value::Object(map)
    }
}

impl Counters {
    fn labelled(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = [
            ("Datagrams sent", self.datagrams_sent),
            ("Datagrams received", self.datagrams_received),
            ("Bytes sent", self.bytes_sent),
            ("Bytes received", self.bytes_received),
            ("Dropped (bad MAC)", self.dropped_bad_mac),
            ("Dropped (undecodable)", self.dropped_undecodable),
            (
                "Dropped (stale incarnation)",
                self.dropped_stale_incarnation,
            ),
            ("Dropped (replay)", self.dropped_replay),
        ]
        .into_iter()
        .map(|(l, v)| (l.to_owned(), v))
        .collect();
        out.extend(self.extra.iter().cloned());
        out
    }
}

impl Render for SharedList {
    /// ```text
    /// Currently managed objects:
    ///                   inbound_cidr [lazy, cidrtree w/ snapshots]
    /// ```
    /// The name right-aligned in 30 columns, the description in brackets.
    fn text(&self) -> String {
        let mut s = String::from("Currently managed objects:\n");
        for o in &self.objects {
            let _ = writeln!(s, "{:>30} [{}]", o.name, o.description);
        }
        s
    }
    fn json(&self) -> Value {
        to_json(self)
    }
}

impl Render for SharedShow {
    /// `lazy, snapped cidrtree 'inbound_cidr', view 'global'` then the rows: a CIDR tree as the
    /// count right-aligned in 7 columns, 25 spaces and the prefix; a gauge table as the key
    /// right-aligned in 60 columns, `:` and the value right-aligned in 13; a cache as the key
    /// right-aligned in 60 columns, `: ` and the value.
    fn text(&self) -> String {
        let snapped = if self.snapped { "snapped " } else { "" };
        let mut s = format!(
            "lazy, {snapped}{} '{}', view '{}'\n",
            self.kind, self.object, self.view
        );
        match &self.rows {
            SharedRows::Cidr(rows) => {
                for r in rows {
                    let _ = writeln!(s, "{:>7}{:25}{}", r.count, "", r.prefix);
                }
            }
            SharedRows::Table(rows) => {
                for r in rows {
                    let _ = writeln!(s, "{:>60}:{:>13}", r.key, r.count);
                }
            }
            SharedRows::Cache(rows) => {
                for r in rows {
                    let _ = writeln!(s, "{:>60}: {}", r.key, r.value);
                }
            }
        }
        s
    }
    fn json(&self) -> Value {
        to_json(self)
    }
}

impl Help {
    /// The commands a process of `role` (`Scope::Node` or `Scope::Manager`) accepts, from the
    /// grammar's table; with `cluster_only`, just the `cluster ...` commands (`cluster help`).
    pub fn for_role(role: Scope, cluster_only: bool) -> Help {
        let commands = grammar::forms()
            .iter()
            .filter(|f| !f.hidden && f.scope.allows(role))
            .filter(|f| !cluster_only || f.words.first() == Some(&Word::Keyword("cluster")))
            .map(|f| HelpEntry {
                usage: f.usage(),
                summary: f.summary.to_owned(),
            })
            .collect();
        Help { commands }
    }
}

impl Render for Help {
    /// One command a line: the form padded to a common width, two spaces, the description.
    fn text(&self) -> String {
        let width = self
            .commands
            .iter()
            .map(|c| c.usage.len())
            .max()
            .unwrap_or(0);
        let mut s = String::new();
        for c in &self.commands {
            let _ = writeln!(s, "{:<width$}  {}", c.usage, c.summary);
        }
        s
    }
    fn json(&self) -> Value {
        to_json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn sa(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn cluster_info_sample() {
        let info = ClusterInfo {
            daemon_port: 4803,
            m_private_name: "#ec0-22787#labrat-1".into(),
            s_private_name: "#ec1-22787#labrat-1".into(),
            control_group: "ec_console".into(),
            cluster_group: "ec_cluster".into(),
            leader: Some("labrat-4".into()),
            logger_group: None,
        };
        assert_eq!(
            info.text(),
            "Daemon: 4803 [m:#ec0-22787#labrat-1,s:#ec1-22787#labrat-1]\n\
             Control Group: ec_console\n\
             Cluster Group: ec_cluster (labrat-4 is leader)\n\
             Logger Group: none\n"
        );
        let j = info.json();
        assert_eq!(j["leader"], "labrat-4");
        assert_eq!(j["daemon_port"], 4803);
        assert!(j["logger_group"].is_null());
        let lonely = ClusterInfo {
            leader: None,
            logger_group: Some("ec_log".into()),
            ..info
        };
        let t = lonely.text();
        assert!(t.contains("Cluster Group: ec_cluster (no leader)\n"));
        assert!(t.ends_with("Logger Group: ec_log\n"));
    }

    fn sample_membership() -> Membership {
        let v = "3.0.10.30663 r(30669)".to_owned();
        let groups = || {
            vec![
                "ec_console".to_owned(),
                "ec_sc_default".to_owned(),
                "ec_cluster".to_owned(),
            ]
        };
        Membership {
            members: vec![
                Member {
                    private_name: "#ec0-20768#pono".into(),
                    node_name: Some("pono".into()),
                    subcluster: Some("default".into()),
                    node_type: NodeType::Node,
                    version: v.clone(),
                    address: sa("10.79.0.20:4802"),
                    groups: groups(),
                },
                Member {
                    private_name: "#ec0-08422#uhalehe".into(),
                    node_name: Some("uhalehe".into()),
                    subcluster: Some("default".into()),
                    node_type: NodeType::Node,
                    version: v.clone(),
                    address: sa("10.79.0.15:4802"),
                    groups: groups(),
                },
                Member {
                    private_name: "#barca#barca".into(),
                    node_name: None,
                    subcluster: None,
                    node_type: NodeType::Manager,
                    version: v,
                    address: None,
                    groups: vec!["ec_cluster".into()],
                },
            ],
        }
    }

    #[test]
    fn cluster_membership_sample() {
        let want = "\
Private Name: #ec0-20768#pono
Node Name: pono
Subcluster: default
Node Type: Momentum
Version: 3.0.10.30663 r(30669)
Address: 10.79.0.20:4802
Groups: ec_console, ec_sc_default, ec_cluster

Private Name: #ec0-08422#uhalehe
Node Name: uhalehe
Subcluster: default
Node Type: Momentum
Version: 3.0.10.30663 r(30669)
Address: 10.79.0.15:4802
Groups: ec_console, ec_sc_default, ec_cluster

Private Name: #barca#barca
Node Name: (Null)
Subcluster: (Null)
Node Type: Manager
Version: 3.0.10.30663 r(30669)
Address: 0.0.0.0:0
Groups: ec_cluster
";
        let m = sample_membership();
        assert_eq!(m.text(), want);
        let j = m.json();
        assert_eq!(j["members"][0]["node_type"], "Momentum");
        assert_eq!(j["members"][0]["address"], "10.79.0.20:4802");
        assert_eq!(j["members"][2]["node_type"], "Manager");
        assert!(j["members"][2]["node_name"].is_null());
        assert!(j["members"][2]["address"].is_null());
        assert_eq!(j["members"][1]["groups"][1], "ec_sc_default");
        assert_eq!(Membership::default().text(), "");
    }

    #[test]
    fn nodeaddr_nodename_version() {
        let a = NodeAddr {
            address: "10.80.116.201:4802".parse().unwrap(),
        };
        assert_eq!(a.text(), "10.80.116.201:4802\n");
        assert_eq!(a.json()["address"], "10.80.116.201:4802");
        let n = NodeName {
            nodename: "labrat-1".into(),
        };
        assert_eq!(n.text(), "labrat-1\n");
        assert_eq!(
            Version::current().text(),
            format!("Cohort {}\n", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn arp_show_sample() {
        let e = |ip: &str, mac: [u8; 6], age| ArpEntry {
            ip: ip.parse().unwrap(),
            mac: MacAddr(mac),
            age_secs: age,
        };
        let t = ArpTable {
            entries: vec![
                e("10.80.116.204", [0x00, 0xe0, 0x81, 0x63, 0x5c, 0xe8], 43),
                e("10.80.116.202", [0x00, 0x30, 0x48, 0x74, 0x28, 0x24], 13),
                e("10.80.116.201", [0x00, 0xe0, 0x81, 0x63, 0x5d, 0x64], 8),
                e("10.80.117.25", [0x00, 0x30, 0x48, 0x52, 0xf9, 0x06], 8),
                e("10.80.117.2", [0x00, 0x00, 0x5e, 0x00, 0x01, 0x0c], 8),
                e("10.80.116.203", [0x00, 0x30, 0x48, 0x74, 0x29, 0xee], 8),
            ],
        };
        assert_eq!(
            t.text(),
            "\
10.80.116.204    [00:e0:81:63:5c:e8]  43s
10.80.116.202    [00:30:48:74:28:24]  13s
10.80.116.201    [00:e0:81:63:5d:64]  8s
10.80.117.25     [00:30:48:52:f9:06]  8s
10.80.117.2      [00:00:5e:00:01:0c]  8s
10.80.116.203    [00:30:48:74:29:ee]  8s
"
        );
        let j = t.json();
        assert_eq!(j["entries"][0]["mac"], "00:e0:81:63:5c:e8");
        assert_eq!(j["entries"][0]["ip"], "10.80.116.204");
        assert_eq!(j["entries"][5]["age_secs"], 8);
    }

    #[test]
    fn show_logs_sample() {
        let sub = |offset| {
            vec![Subscriber {
                name: "master".into(),
                segment: 0,
                offset,
            }]
        };
        let logs = Logs {
            logs: vec![
                LogInfo {
                    name: "mainlog".into(),
                    on_disk: 1604005,
                    subscribers: sub(0xa43a),
                },
                LogInfo {
                    name: "paniclog".into(),
                    on_disk: 9184,
                    subscribers: sub(0x59),
                },
                LogInfo {
                    name: "rejectlog".into(),
                    on_disk: 3950,
                    subscribers: sub(0x1e),
                },
                LogInfo {
                    name: "bouncealllog".into(),
                    on_disk: 0,
                    subscribers: vec![],
                },
            ],
        };
        assert_eq!(
            logs.text(),
            "mainlog\n\t[on disk: 1604005 bytes]\n\t[subscriber: 'master' @ 00000000:0000a43a]\n\
             paniclog\n\t[on disk: 9184 bytes]\n\t[subscriber: 'master' @ 00000000:00000059]\n\
             rejectlog\n\t[on disk: 3950 bytes]\n\t[subscriber: 'master' @ 00000000:0000001e]\n\
             bouncealllog\n\t[on disk: 0 bytes]\n"
        );
        let j = logs.json();
        assert_eq!(j["logs"][0]["subscribers"][0]["offset"], 0xa43a);
        assert_eq!(
            j["logs"][3]["subscribers"].as_array().map(Vec::len),
            Some(0)
        );
    }

    #[test]
    fn shared_list_sample() {
        let o = |name: &str, kind: &str| SharedObject {
            name: name.into(),
            kind: kind.into(),
            lazy: true,
            snapshots: true,
            manager_only: false,
            max_delay: 0.5,
            max_pending: 1000,
            description: format!("lazy, {kind} w/ snapshots"),
        };
        let l = SharedList {
            objects: vec![
                o("inbound_cidr", "cidrtree"),
                o("outbound_cidr", "cidrtree"),
                o("outbound_domains", "gauge table"),
            ],
        };
        assert_eq!(
            l.text(),
            "\
Currently managed objects:
                  inbound_cidr [lazy, cidrtree w/ snapshots]
                 outbound_cidr [lazy, cidrtree w/ snapshots]
              outbound_domains [lazy, gauge table w/ snapshots]
"
        );
        let j = l.json();
        assert_eq!(j["objects"][2]["type"], "gauge table");
        assert_eq!(j["objects"][0]["max_delay"], 0.5);
        assert_eq!(j["objects"][0]["lazy"], true);
    }

    #[test]
    fn shared_show_samples() {
        let row = |p: &str, c| CidrRow {
            prefix: p.parse().unwrap(),
            count: c,
        };
        let cidr = SharedShow {
            object: "inbound_cidr".into(),
            kind: "cidrtree".into(),
            snapped: true,
            view: "#ec1-12137#relay-0-1".into(),
            rows: SharedRows::Cidr(vec![
                row("10.0.0.0/8", 5),
                row("10.0.0.0/24", 5),
                row("10.0.0.160/27", 5),
                row("10.0.0.176/29", 5),
                row("10.0.0.180/31", 5),
                row("10.0.0.180/32", 4),
                row("10.0.0.181/32", 1),
            ]),
        };
        assert_eq!(
            cidr.text(),
            "\
lazy, snapped cidrtree 'inbound_cidr', view '#ec1-12137#relay-0-1'
      5                         10.0.0.0/8
      5                         10.0.0.0/24
      5                         10.0.0.160/27
      5                         10.0.0.176/29
      5                         10.0.0.180/31
      4                         10.0.0.180/32
      1                         10.0.0.181/32
"
        );
        let j = cidr.json();
        assert_eq!(j["type"], "cidrtree");
        assert_eq!(j["object"], "inbound_cidr");
        assert_eq!(j["rows"][0]["prefix"], "10.0.0.0/8");
        assert_eq!(j["rows"][0]["count"], 5);
        let g = |k: &str, v| GaugeRow {
            key: k.into(),
            count: v,
        };
        let gauge = SharedShow {
            object: "outbound_domain".into(),
            kind: "gauge table".into(),
            snapped: true,
            view: "global".into(),
            rows: SharedRows::Table(vec![
                g("aol.com", 10),
                g("bellsouth.net", 23),
                g("hotmail.com", 246),
                g("omniti.com", 5),
                g("yahoo.com", 65),
            ]),
        };
        let want = [
            "lazy, snapped gauge table 'outbound_domain', view 'global'",
            "                                                     aol.com:           10",
            "                                               bellsouth.net:           23",
            "                                                 hotmail.com:          246",
            "                                                  omniti.com:            5",
            "                                                   yahoo.com:           65",
        ];
        assert_eq!(gauge.text(), want.join("\n") + "\n");
        assert_eq!(gauge.json()["rows"][4]["key"], "yahoo.com");
        let cache = SharedShow {
            object: "seen".into(),
            kind: "cache".into(),
            snapped: false,
            view: "global".into(),
            rows: SharedRows::Cache(vec![CacheRow {
                key: "k".into(),
                value: "v".into(),
                version: 3,
                writer: "#ec1-1#a".into(),
                ttl: 0,
            }]),
        };
        assert_eq!(
            cache.text(),
            format!("lazy, cache 'seen', view 'global'\n{:>60}: v\n", "k")
        );
        assert_eq!(cache.json()["rows"][0]["version"], 3);
    }

    #[test]
    fn counters_text_and_json() {
        let c = Counters {
            datagrams_sent: 10,
            datagrams_received: 9,
            dropped_bad_mac: 2,
            dropped_replay: 1,
            extra: vec![("retransmissions".into(), 3)],
            ..Counters::default()
        };
        let t = c.text();
        assert!(t.starts_with("Datagrams sent: 10\nDatagrams received: 9\n"));
        assert!(t.contains("Dropped (bad MAC): 2\n"));
        assert!(t.contains("Dropped (replay): 1\n"));
        assert!(t.ends_with("retransmissions: 3\n"));
        let j = c.json();
        assert_eq!(j["dropped_bad_mac"], 2);
        assert_eq!(j["retransmissions"], 3);
        assert_eq!(j["dropped_stale_incarnation"], 0);
    }

    #[test]
    fn help_lists_the_grammar() {
        let node = Help::for_role(Scope::Node, false);
        let usages: Vec<&str> = node.commands.iter().map(|c| c.usage.as_str()).collect();
        assert!(usages.contains(&"cluster abort <id>"));
        assert!(usages.contains(&"cluster duravip move <ip> to <node>"));
        assert!(usages.contains(&"version"));
        assert!(!usages.contains(&"broadcast <command>"));
        let mgr = Help::for_role(Scope::Manager, false);
        assert!(
            mgr.commands
                .iter()
                .any(|c| c.usage == "broadcast <command>")
        );
        // Of the cluster commands, the manager runs only its own jobs' (its log pulls).
        let mgr_cluster: Vec<&str> = mgr
            .commands
            .iter()
            .map(|c| c.usage.as_str())
            .filter(|u| u.starts_with("cluster "))
            .collect();
        assert_eq!(mgr_cluster, ["cluster abort <id>", "cluster jobs"]);
        let cl = Help::for_role(Scope::Node, true);
        assert!(cl.commands.iter().all(|c| c.usage.starts_with("cluster ")));
        let text = cl.text();
        let col = text.lines().next().and_then(|l| l.find("  Abort")).unwrap();
        // Descriptions start in one column, two spaces after the longest form.
        for line in text.lines() {
            let (form, rest) = line.split_at(col);
            assert!(
                rest.starts_with("  ") && !rest[2..].starts_with(' '),
                "{line}"
            );
            assert!(!form.starts_with(' '), "{line}");
        }
        assert!(text.lines().any(|l| l.as_bytes()[col - 1] != b' '));
    }

    #[test]
    fn render_picks_text_or_json() {
        let n = NodeName {
            nodename: "a".into(),
        };
        assert_eq!(render(&n, false), "a\n");
        let j: Value = serde_json::from_str(&render(&n, true)).unwrap();
        assert_eq!(j["nodename"], "a");
        assert_eq!(
            Message {
                message: "reloaded".into()
            }
            .text(),
            "reloaded\n"
        );
    }
}
