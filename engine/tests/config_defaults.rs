//! The documented default configuration parses unchanged and every option takes the default the
//! Momentum documentation gives it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cohort_engine::config::{self, *};

fn shared_example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/examples/momentum-default-cluster.conf")
}

#[test]
fn embedded_default_is_the_shared_example_unchanged() {
    let shared = std::fs::read_to_string(shared_example())
        .expect("the project keeps its copy of the shared example");
    assert_eq!(config::EMBEDDED_DEFAULT, shared);
}

#[test]
fn example_parses_with_documented_defaults() {
    let loaded = config::load_file(&shared_example()).expect("the documented default parses");
    assert!(loaded.ignored.is_empty(), "{:?}", loaded.ignored);
    let cfg = loaded.config;
    let c = &cfg.cluster;

    // cluster scope, module page 71.19 and docs survey section 2
    assert_eq!(c.cluster_group, "ec_cluster");
    assert_eq!(c.control_group, "ec_console");
    assert_eq!(c.log_group, None);
    assert_eq!(c.nodename, None);
    assert_eq!(c.nodeaddr, None);
    assert_eq!(c.subcluster, None);
    assert_eq!(c.log_active_interval, Duration::from_secs(1));
    assert_eq!(c.log_idle_interval, Duration::from_secs(10));
    assert_eq!(c.heartbeat_start_delay, Duration::from_secs(15));
    assert_eq!(c.heartbeats_per_sec, 1);
    assert_eq!(c.if_check_interval, Duration::from_secs(30));
    assert_eq!(c.if_down_limit, Duration::from_secs(4));
    assert!(c.arp_all_hosts);
    assert_eq!(c.duravip_balance_set_size, 1);
    assert_eq!(c.view_mature_time, Duration::from_secs(5));
    assert_eq!(c.view_balance_interval, Duration::from_secs(10));
    assert_eq!(c.view_broadcast_interval, Duration::from_secs(0));
    assert!(c.unconditional_rebind);
    assert_eq!(c.debug_level, "error");
    assert!(c.enabled);
    assert_eq!(c.tcp_buffer_size, 32768);
    // Cohort extensions of the cluster scope
    assert_eq!(c.garp_count, 3);
    assert_eq!(c.garp_interval, Duration::from_millis(100));
    assert_eq!(c.garp_refresh, Duration::from_secs(0));
    assert_eq!(c.arp_cache_interval, Duration::from_secs(60));
    assert_eq!(c.xdp, XdpMode::Auto);
    assert_eq!(c.xdp_lease, Duration::from_secs(3));
    let logs: Vec<(&str, &str)> = c
        .logs
        .iter()
        .map(|(k, p)| (k.as_str(), p.to_str().expect("utf8")))
        .collect();
    assert_eq!(
        logs,
        [
            ("rejectlog", "/var/log/ecelerity/rejectlog.cluster"),
            ("paniclog", "/var/log/ecelerity/paniclog.cluster"),
            ("mainlog", "/var/log/ecelerity/mainlog.cluster"),
            ("acctlog", "/var/log/ecelerity/acctlog.cluster"),
            ("bouncelog", "/var/log/ecelerity/bouncelog.cluster"),
        ]
    );

    // Replicate scopes: the five of the default file, each with max_delay 1.0 and max_pending 100
    let names: Vec<(&str, ReplicateKind)> = c
        .replicate
        .iter()
        .map(|r| (r.name.as_str(), r.kind))
        .collect();
    assert_eq!(
        names,
        [
            ("inbound_cidr", ReplicateKind::InboundCidr),
            ("outbound_cidr", ReplicateKind::OutboundCidr),
            ("outbound_domains", ReplicateKind::OutboundDomains),
            (
                "outbound_binding_domains",
                ReplicateKind::OutboundBindingDomains
            ),
            (
                "shared_named_throttles",
                ReplicateKind::SharedNamedThrottles
            ),
        ]
    );
    for r in &c.replicate {
        assert_eq!(r.max_delay, Duration::from_secs(1), "{}", r.name);
        assert_eq!(r.max_pending, 100, "{}", r.name);
        assert_eq!(r.max_size, -1, "{}", r.name);
        assert_eq!(r.class, None, "{}", r.name);
        assert_eq!(r.binding_group, None, "{}", r.name);
        assert!(r.parameters.is_empty(), "{}", r.name);
    }

    // Topology
    assert_eq!(c.topology.len(), 1);
    assert_eq!(c.topology[0].network.to_string(), "10.1.1.0/24");
    assert_eq!(c.topology[0].interface, "eth1");
    assert_eq!(c.topology[0].cidrmask, 32);

    // msgc_server (absent from the file: Momentum 4's documented defaults)
    let m = &cfg.msgc_server;
    assert!(m.peers.is_empty());
    assert_eq!(m.port, 4809);
    assert_eq!(m.connect_timeout, Duration::from_secs(60));
    assert_eq!(m.debug_level, "ERROR");
    assert_eq!(m.idle_timeout, Duration::from_secs(30));
    assert_eq!(m.keepalive_interval, Duration::from_secs(5));
    assert_eq!(m.max_backlog, 5000);
    assert_eq!(m.messages_per_iter, 20);
    assert_eq!(m.reconnect_interval, Duration::from_secs(5));
    assert_eq!(m.tcpbuf_size, 131072);
    // Cohort's own transport options
    assert_eq!(m.probe_interval, Duration::from_millis(200));
    assert_eq!(m.suspect_timeout, Duration::from_millis(600));
    assert!(m.cluster_key.is_empty());
    assert_eq!(m.mtu, 1400);
    assert_eq!(m.max_unstable_bytes, 4 * 1024 * 1024);
    assert_eq!(m.max_queue, 65536);
    assert_eq!(m.cluster_id, 0);
    assert_eq!(m.udp_driver, UdpDriver::Syscall);

    // Listeners
    assert_eq!(
        cfg.control_listener
            .listens
            .iter()
            .map(|l| l.addr.clone())
            .collect::<Vec<_>>(),
        [ListenAddr::Unix(PathBuf::from("/tmp/2025"))]
    );
    assert_eq!(
        cfg.eccluster_listener
            .listens
            .iter()
            .map(|l| l.addr.clone())
            .collect::<Vec<_>>(),
        [ListenAddr::Inet {
            host: None,
            port: 4802
        }]
    );

    // Loggers: four ec_logger journals and one bounce_logger journal, each with subscriber master
    assert_eq!(cfg.loggers.len(), 2);
    assert_eq!(cfg.loggers[0].module, LoggerModule::EcLogger);
    assert_eq!(cfg.loggers[0].name.as_deref(), Some("ec_logger_cluster"));
    assert_eq!(cfg.loggers[1].module, LoggerModule::BounceLogger);
    let outputs: Vec<(String, String, Vec<String>)> = cfg
        .loggers
        .iter()
        .flat_map(|l| &l.outputs)
        .map(|o| match &o.destination {
            Destination::Journal(j) => (
                o.log.clone(),
                j.path.display().to_string(),
                j.subscribers.clone(),
            ),
            Destination::File(f) => panic!("{} is a journal, not the file {f}", o.log),
        })
        .collect();
    let master = || vec!["master".to_string()];
    assert_eq!(
        outputs,
        [
            (
                "mainlog".into(),
                "/var/log/ecelerity/mainlog.cluster".into(),
                master()
            ),
            (
                "paniclog".into(),
                "/var/log/ecelerity/paniclog.cluster".into(),
                master()
            ),
            (
                "rejectlog".into(),
                "/var/log/ecelerity/rejectlog.cluster".into(),
                master()
            ),
            (
                "acctlog".into(),
                "/var/log/ecelerity/acctlog.cluster".into(),
                master()
            ),
            (
                "bouncelog".into(),
                "/var/log/ecelerity/bouncelog.cluster".into(),
                master()
            ),
        ]
    );
    assert!(cfg.bindings.is_empty());
    assert!(cfg.esmtp_listeners.is_empty());
    assert_eq!(cfg.manager_logs, None);
}

#[test]
fn manager_logs_defaults_and_scopes() {
    let text = r#"
        Logs {
          logfile = "/var/log/eccluster/%Y/%m/%d/%{l}/%{s}/%{n}"
          file_mode = "0640"
          dir_mode = "0755"
          Manager "eastmgr" {
            Node "west1" { Subscriber = () }
            Node "west2" { Subscriber = ("eastmgr", "master") }
          }
          Manager "westmgr" { Subscriber = ( "westmgr" ) }
        }
    "#;
    let cfg = config::load_str(Path::new("eccluster.conf"), text)
        .expect("valid")
        .config;
    let m = cfg.manager_logs.expect("Logs stanza");
    assert_eq!(m.logfile, "/var/log/eccluster/%Y/%m/%d/%{l}/%{s}/%{n}");
    assert_eq!(m.file_mode, 0o640);
    assert_eq!(m.dir_mode, 0o755);
    assert_eq!(m.max_open, 256);
    assert_eq!(m.max_idle, Duration::from_secs(300));
    assert_eq!(
        m.control_cache,
        PathBuf::from("/var/log/eccluster/control_cache")
    );
    assert_eq!(m.managers.len(), 2);
    assert_eq!(m.managers[0].subscribers, None);
    assert_eq!(m.managers[0].nodes[0].subscribers, Vec::<String>::new());
    assert_eq!(m.managers[0].nodes[1].subscribers, ["eastmgr", "master"]);
    assert_eq!(
        m.managers[1].subscribers.as_deref(),
        Some(&["westmgr".to_string()][..])
    );
}

#[test]
fn duravip_bindings_listeners_and_case_insensitive_names() {
    let text = r#"
        CLUSTER {
          TOPOLOGY "10.1.1.0/24" { INTERFACE = "veth0" }
          Topology "10.2.1.0/24" { interface = "veth0" cidrmask = "24" }
          Topology "fd00::/64" { interface = "veth0" }
        }
        ESMTP_Listener {
          Listen "10.1.1.1:25" { Enable_Duravip = true }
          Listen "10.1.1.3:25" { duravip_follow = "bindingname" Enable_Authentication = "false" }
        }
        Binding "duravip-1" { enable_duravip = TRUE  bind_address = "10.1.1.1" }
        Binding_Group "east" {
          Binding "bindingname" { Enable_Duravip = true  Bind_Address = "10.2.1.1" Duravip_Preference = "node2" }
          Outbound_Throttle_Messages = "10/60"
        }
        Binding "v6" { Enable_Duravip = yes Bind_Address = "fd00::5" }
    "#;
    let loaded = config::load_str(Path::new("n.conf"), text).expect("valid");
    let cfg = loaded.config;
    assert_eq!(cfg.cluster.topology[0].cidrmask, 32);
    assert_eq!(cfg.cluster.topology[1].cidrmask, 24);
    assert_eq!(
        cfg.cluster.topology[2].cidrmask, 128,
        "IPv6 blocks default to /128"
    );
    assert_eq!(cfg.bindings.len(), 3);
    assert_eq!(cfg.bindings[1].binding_group.as_deref(), Some("east"));
    assert_eq!(cfg.bindings[1].duravip_preference.as_deref(), Some("node2"));
    assert_eq!(
        cfg.bindings[0].bind_address,
        Some("10.1.1.1".parse::<IpAddr>().expect("ip"))
    );
    assert!(cfg.esmtp_listeners[0].enable_duravip);
    assert_eq!(
        cfg.esmtp_listeners[1].duravip_follow.as_deref(),
        Some("bindingname")
    );
    let paths: Vec<&str> = loaded.ignored.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "ESMTP_Listener.Listen \"10.1.1.3:25\".Enable_Authentication",
            "Binding_Group \"east\".Outbound_Throttle_Messages"
        ]
    );
}

#[test]
fn cluster_outbound_throttles_are_read_where_momentum_defines_them() {
    let text = r#"
        cluster {
          Replicate "OBTM" {}
          Replicate "outbound_cidr" { binding_group = "esat" }
        }
        Domain "/.*\\.example$/" { cluster_outbound_throttle_messages = "1" }
        cluster_outbound_throttle_messages = "1000/60"
        cluster_outbound_throttle_connections = "5"
        Domain "AOL.com" {
          cluster_outbound_throttle_messages = "100"
          max_outbound_connections = 4
        }
        Binding_Group "east" {
          Binding "b1" { Bind_Address = "10.2.1.1" }
          cluster_outbound_throttle_messages = "10/60"
          Domain "yahoo.com" { cluster_outbound_throttle_messages = "3/10" }
        }
    "#;
    let loaded = config::load_str(Path::new("n.conf"), text).expect("valid");
    type Row<'a> = (bool, Option<&'a str>, Option<&'a str>, u64, u64);
    let got: Vec<Row<'_>> = loaded
        .config
        .outbound_throttles
        .iter()
        .map(|t| {
            (
                t.connections,
                t.binding_group.as_deref(),
                t.domain.as_deref(),
                t.limit,
                t.period,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (false, None, None, 1000, 60),
            (false, None, Some("AOL.com"), 100, 1),
            (false, Some("east"), None, 10, 60),
            (false, Some("east"), Some("yahoo.com"), 3, 10),
        ],
        "the connections throttle needs Replicate \"OBTC\", which is absent"
    );
    let ignored: Vec<(&str, &str)> = loaded
        .ignored
        .iter()
        .map(|i| (i.path.as_str(), i.reason.as_str()))
        .collect();
    assert_eq!(
        ignored,
        [
            (
                "Domain \"/.*\\.example$/\"",
                "belongs to the MTA, not to Cohort"
            ),
            (
                "Domain \"AOL.com\".max_outbound_connections",
                "belongs to the MTA, not to Cohort"
            ),
            (
                "Domain \"/.*\\.example$/\".cluster_outbound_throttle_messages",
                "not enforced: regex Domain stanzas are not supported for cluster throttles"
            ),
            (
                "cluster_outbound_throttle_connections",
                "not enforced: it needs Replicate \"OBTC\" {} in the cluster scope"
            ),
            (
                "cluster.Replicate \"outbound_cidr\".binding_group",
                "no Binding_Group \"esat\": the object counts no binding"
            ),
        ]
    );
    // The stanzas print back as written.
    let printed = config::render(&loaded.config);
    assert!(
        printed.contains("cluster_outbound_throttle_messages = \"10/60\""),
        "{printed}"
    );
    let again = config::load_str(Path::new("again.conf"), &printed).expect("reloads");
    assert_eq!(
        again.config.outbound_throttles,
        loaded.config.outbound_throttles
    );

    for (bad, at) in [
        (
            "cluster { Replicate \"OBTM\" {} }\ncluster_outbound_throttle_messages = \"ten\"",
            "2:38",
        ),
        (
            "cluster { Replicate \"OBTM\" {} }\nDomain \"a.org\" {\n cluster_outbound_throttle_messages = \"1/0\"\n}",
            "3:39",
        ),
        (
            "cluster { Replicate \"OBTM\" {} }\ncluster_outbound_throttle_messages = 1\ncluster_outbound_throttle_messages = 2",
            "3:1",
        ),
        (
            "cluster { Replicate \"OBTM\" {} }\nDomain \"a.org\" { cluster_outbound_throttle_messages = 1 }\nDomain \"A.org\" { cluster_outbound_throttle_messages = 2 }",
            "3:18",
        ),
    ] {
        let e = config::load_str(Path::new("b.conf"), bad).expect_err(bad);
        assert!(
            e.to_string().starts_with(&format!("b.conf:{at}")),
            "{bad}: {e}"
        );
    }
}

#[test]
fn mta_options_are_kept_and_reported_once() {
    let text = r#"
        Threads { SwapIn = 20 }
        cluster { mbus_daemon = 4803 view_mature_tme = 5 foo = 1 }
        Threads { SwapIn = 21 }
        spool_base = "/var/spool/ecelerity"
        msgc_client { server = ( "127.0.0.1:4809" ) }
    "#;
    let loaded = config::load_str(Path::new("m.conf"), text).expect("MTA options are not fatal");
    let report: Vec<String> = loaded.ignored.iter().map(|i| i.to_string()).collect();
    assert_eq!(report.len(), 6, "{report:#?}");
    assert!(
        report[0].starts_with("m.conf:2:9: ignored: Threads"),
        "{report:#?}"
    );
    assert!(report[1].contains("cluster.mbus_daemon") && report[1].contains("deprecated"));
    assert!(
        report[2].contains("did you mean 'view_mature_time'?"),
        "{report:#?}"
    );
    assert!(report[3].contains("cluster.foo") && report[3].contains("MTA"));
    assert!(report[4].contains("spool_base"));
    assert!(report[5].contains("msgc_client"));
    // Kept: printed back in the effective configuration.
    let out = config::render(&loaded.config);
    assert!(out.contains("Threads {\n  SwapIn = 20"), "{out}");
    assert!(
        out.contains("spool_base = \"/var/spool/ecelerity\""),
        "{out}"
    );
    assert!(out.contains("  mbus_daemon = 4803"), "{out}");
}

/// `Security` is read (Cohort switches to its user and group); its `Capabilities` and
/// `Privileges` are reported once as not applicable, and a second scope is an error.
#[test]
fn security_is_read_and_its_capabilities_reported() {
    let text = "Security {\n  user = \"ecuser\"\n  group = \"ecgroup\"\n  Capabilities = \"cap_net_admin+ep\"\n}\n";
    let loaded = config::load_str(Path::new("s.conf"), text).expect("valid");
    let sec = loaded.config.security.expect("read");
    assert_eq!(sec.user.as_deref(), Some("ecuser"));
    assert_eq!(sec.group.as_deref(), Some("ecgroup"));
    assert_eq!(loaded.ignored.len(), 1);
    assert!(
        loaded.ignored[0]
            .to_string()
            .starts_with("s.conf:4:3: ignored: Security.Capabilities (not applicable"),
        "{}",
        loaded.ignored[0]
    );
    let twice = config::load_str(Path::new("s.conf"), &format!("{text}{text}"));
    assert!(
        twice
            .err()
            .is_some_and(|e| e.to_string().contains("second 'Security' scope")),
    );
}

#[test]
fn journal_destinations() {
    use cohort_engine::config::load::parse_journal;
    let j = parse_journal("cluster:///var/log/x.cluster=>master")
        .expect("ok")
        .expect("journal");
    assert_eq!(
        (j.scheme.as_str(), j.path.to_str(), j.subscribers.as_slice()),
        (
            "cluster",
            Some("/var/log/x.cluster"),
            &["master".to_string()][..]
        )
    );
    let j = parse_journal("jlog:///l?subscribers=mgr1,mgr2,mgr3")
        .expect("ok")
        .expect("journal");
    assert_eq!(j.subscribers, ["mgr1", "mgr2", "mgr3"]);
    let j = parse_journal("cluster:///l?subscribers=a,b=>c")
        .expect("ok")
        .expect("journal");
    assert_eq!(j.subscribers, ["a", "b", "c"]);
    assert_eq!(parse_journal("/var/log/plain").expect("ok"), None);
    assert!(parse_journal("cluster://relative/x").is_err());
    assert!(parse_journal("cluster:///x?subscriber=a").is_err());
    assert!(parse_journal("cluster:///x=>").is_err());
}
