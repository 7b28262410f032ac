//! Property tests of the configuration reader: printing a configuration and reading the output
//! gives the same configuration, and no input, however broken, panics the reader.

#![allow(clippy::field_reassign_with_default)] // strategies fill defaults field by field

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use cohort_engine::config::{self, *};
use ipnet::IpNet;
use proptest::prelude::*;

fn round_trip(cfg: &Config) -> Result<(), TestCaseError> {
    let text = config::render(cfg);
    let back = config::load_str(Path::new("rendered.conf"), &text)
        .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
    prop_assert_eq!(&back.config, cfg, "\n{}", text);
    Ok(())
}

fn word() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,10}"
}

/// A valid `Logs { logfile }` pattern: arbitrary text (without `%`) between strftime
/// conversions and the `%{l}`, `%{s}`, `%{n}` macros.
fn logfile_pattern() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            text().prop_map(|t| t.replace('%', "")),
            prop_oneof![
                Just("%Y"),
                Just("%m"),
                Just("%d"),
                Just("%H"),
                Just("%%"),
                Just("%{l}"),
                Just("%{s}"),
                Just("%{n}")
            ]
            .prop_map(str::to_owned),
        ],
        1..6,
    )
    .prop_map(|parts| parts.concat())
    .prop_filter("non-blank", |s| !s.trim().is_empty())
}

/// Arbitrary printable text, quotes, backslashes and escapes included.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_]{1,12}",
        "[ -~]{0,16}",
        "\\PC{1,8}",
        Just("a\"b\\c\nd\te".to_string())
    ]
    .prop_filter("non-blank", |s| !s.trim().is_empty())
}

fn secs() -> impl Strategy<Value = std::time::Duration> {
    prop_oneof![0u64..100_000u64].prop_map(|n| std::time::Duration::from_millis(n * 10))
}

fn abs_path() -> impl Strategy<Value = PathBuf> {
    "(/[a-z0-9._-]{1,8}){1,4}".prop_map(PathBuf::from)
}

fn kind() -> impl Strategy<Value = ReplicateKind> {
    prop::sample::select(ReplicateKind::ALL.to_vec())
}

fn replicate() -> impl Strategy<Value = Replicate> {
    (
        word(),
        kind(),
        any::<bool>(),
        prop::sample::subsequence(ReplicateParam::ALL.to_vec(), 0..4),
        secs(),
        1u32..10_000,
        prop_oneof![Just(-1i64), 1i64..1_000_000],
        prop::option::of(word()),
    )
        .prop_map(
            |(name, kind, with_class, parameters, max_delay, max_pending, max_size, bg)| {
                let mut r = Replicate::new(name, kind);
                r.class = with_class.then_some(kind);
                r.parameters = parameters;
                r.max_delay = max_delay;
                r.max_pending = max_pending;
                if kind == ReplicateKind::Cache {
                    r.max_size = max_size;
                }
                if matches!(
                    kind,
                    ReplicateKind::OutboundCidr | ReplicateKind::OutboundDomains
                ) {
                    r.binding_group = bg;
                }
                r
            },
        )
}

fn topology() -> impl Strategy<Value = Topology> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32)
            .prop_map(|(a, l)| IpNet::new(IpAddr::from(a), l).expect("len <= 32").trunc()),
        (any::<[u8; 16]>(), 0u8..=128)
            .prop_map(|(a, l)| IpNet::new(IpAddr::from(a), l).expect("len <= 128").trunc()),
    ]
    .prop_flat_map(|network| {
        let max = network.max_prefix_len();
        ("[a-z][a-z0-9]{0,12}", 0..=max).prop_map(move |(interface, cidrmask)| Topology {
            network,
            interface,
            cidrmask,
        })
    })
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from)
    ]
}

fn extra() -> impl Strategy<Value = Extra> {
    (word(), text()).prop_map(|(k, v)| {
        let key = format!("mta_{k}");
        Extra {
            text: format!("{key} = {}", config::syntax::quote(&v)),
            key,
        }
    })
}

fn dedup_by<T>(v: &mut Vec<T>, key: impl Fn(&T) -> String) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|x| seen.insert(key(x)));
}

fn cluster() -> impl Strategy<Value = Cluster> {
    (
        (
            text(),
            text(),
            prop::option::of(text()),
            prop::option::of(word()),
            prop::option::of(ip()),
            prop::option::of(word()),
        ),
        prop::collection::vec((word(), abs_path()), 0..6),
        (
            secs(),
            secs(),
            secs(),
            1u32..1000,
            secs().prop_map(|s| s + std::time::Duration::from_millis(10)),
            secs(),
        ),
        (
            any::<bool>(),
            1u32..1000,
            secs(),
            secs().prop_map(|s| s + std::time::Duration::from_millis(10)),
            secs(),
            any::<bool>(),
            any::<bool>(),
            1u32..1_000_000,
        ),
        prop::collection::vec(replicate(), 0..6),
        prop::collection::vec(topology(), 0..4),
        prop::collection::vec(extra(), 0..3),
    )
        .prop_map(|(ids, logs, ints, more, replicate, topology, extra)| {
            let mut c = Cluster::default();
            (
                c.cluster_group,
                c.control_group,
                c.log_group,
                c.nodename,
                c.nodeaddr,
                c.subcluster,
            ) = ids;
            if c.nodeaddr == Some(IpAddr::from([127, 0, 0, 1])) {
                c.nodeaddr = None;
            }
            c.logs = logs;
            dedup_by(&mut c.logs, |(k, _)| k.to_ascii_lowercase());
            (
                c.log_active_interval,
                c.log_idle_interval,
                c.heartbeat_start_delay,
                c.heartbeats_per_sec,
                c.if_check_interval,
                c.if_down_limit,
            ) = ints;
            (
                c.arp_all_hosts,
                c.duravip_balance_set_size,
                c.view_mature_time,
                c.view_balance_interval,
                c.view_broadcast_interval,
                c.unconditional_rebind,
                c.enabled,
                c.tcp_buffer_size,
            ) = more;
            c.xdp = [
                XdpMode::Auto,
                XdpMode::Native,
                XdpMode::Generic,
                XdpMode::Off,
            ][(c.tcp_buffer_size % 4) as usize];
            c.garp_count = c.duravip_balance_set_size % 101;
            c.garp_interval = c.view_mature_time;
            c.garp_refresh = c.view_broadcast_interval;
            c.arp_cache_interval = c.if_down_limit;
            c.xdp_lease = c.view_balance_interval;
            c.replicate = replicate;
            dedup_by(&mut c.replicate, |r| r.name.to_ascii_lowercase());
            c.topology = topology;
            dedup_by(&mut c.topology, |t| t.network.to_string());
            c.extra = extra;
            dedup_by(&mut c.extra, |e| e.key.to_ascii_lowercase());
            c
        })
}

fn msgc() -> impl Strategy<Value = MsgcServer> {
    (
        prop::collection::vec(
            (
                word(),
                prop_oneof![ip().prop_map(|a| a.to_string()), word()],
            ),
            0..8,
        ),
        1u16..,
        (
            secs(),
            secs(),
            secs(),
            1u32..100_000,
            1u32..1000,
            secs(),
            1u32..1_000_000,
        ),
        (
            1u32..1000,
            1u32..1000,
            prop::collection::vec(abs_path(), 0..3),
            576u32..=65507,
            0u64..1 << 40,
            1u32..1_000_000,
            any::<u32>(),
        ),
    )
        .prop_map(|(peers, port, a, b)| {
            let mut m = MsgcServer::default();
            m.peers = peers
                .into_iter()
                .map(|(name, address)| Peer { name, address })
                .collect();
            dedup_by(&mut m.peers, |p| p.name.to_ascii_lowercase());
            dedup_by(&mut m.peers, |p| p.address.to_ascii_lowercase());
            m.port = port;
            (
                m.connect_timeout,
                m.idle_timeout,
                m.keepalive_interval,
                m.max_backlog,
                m.messages_per_iter,
                m.reconnect_interval,
                m.tcpbuf_size,
            ) = a;
            let (probe_ms, extra_ms, key, mtu, window, queue, cluster_id) = b;
            m.probe_interval = std::time::Duration::from_millis(u64::from(probe_ms));
            m.suspect_timeout = std::time::Duration::from_millis(u64::from(probe_ms + extra_ms));
            m.cluster_key = key;
            m.mtu = mtu;
            m.max_unstable_bytes = u64::from(mtu) + window;
            m.max_queue = queue;
            m.cluster_id = cluster_id;
            if cluster_id % 2 == 1 {
                m.udp_driver = UdpDriver::Uring;
            }
            // -20..=19, from bits the other fields do not use.
            m.loop_nice = (cluster_id >> 8) as i32 % 40 - 20;
            m
        })
}

fn listen_addr() -> impl Strategy<Value = ListenAddr> {
    prop_oneof![
        abs_path().prop_map(ListenAddr::Unix),
        (prop::option::of(ip()), any::<u16>())
            .prop_map(|(host, port)| ListenAddr::Inet { host, port }),
    ]
}

fn listens() -> impl Strategy<Value = Vec<Listen>> {
    prop::collection::vec((listen_addr(), prop::collection::vec(extra(), 0..2)), 0..4).prop_map(
        |v| {
            let mut v: Vec<Listen> = v
                .into_iter()
                .map(|(addr, mut extra)| {
                    dedup_by(&mut extra, |e| e.key.to_ascii_lowercase());
                    Listen { addr, extra }
                })
                .collect();
            dedup_by(&mut v, |l| l.addr.to_string());
            v
        },
    )
}

fn journal() -> impl Strategy<Value = JournalDest> {
    (
        prop::sample::select(vec!["cluster", "jlog"]),
        abs_path(),
        prop::collection::vec(word(), 0..4),
    )
        .prop_map(|(scheme, path, mut subscribers)| {
            dedup_by(&mut subscribers, |s| s.clone());
            JournalDest {
                scheme: scheme.into(),
                path,
                subscribers,
            }
        })
}

fn logger() -> impl Strategy<Value = Logger> {
    (
        any::<bool>(),
        prop::option::of(word()),
        prop::collection::vec((word(), journal()), 0..4),
        prop::option::of(abs_path()),
    )
        .prop_map(|(bounce, name, journals, file)| {
            let mut outputs: Vec<LogOutput> = journals
                .into_iter()
                .map(|(log, j)| LogOutput {
                    log,
                    destination: Destination::Journal(j),
                })
                .collect();
            if let Some(f) = file {
                outputs.push(LogOutput {
                    log: "acctlog".into(),
                    destination: Destination::File(f.display().to_string()),
                });
            }
            dedup_by(&mut outputs, |o| o.log.to_ascii_lowercase());
            Logger {
                module: if bounce {
                    LoggerModule::BounceLogger
                } else {
                    LoggerModule::EcLogger
                },
                name,
                outputs,
                extra: Vec::new(),
            }
        })
}

fn manager_logs() -> impl Strategy<Value = ManagerLogs> {
    (
        logfile_pattern(),
        0u32..=0o7777,
        0u32..=0o7777,
        1u32..10_000,
        secs(),
        abs_path(),
        prop::collection::vec(
            (
                word(),
                prop::option::of(prop::collection::vec(word(), 0..3)),
                prop::collection::vec((word(), prop::collection::vec(word(), 0..3)), 0..3),
            ),
            0..3,
        ),
    )
        .prop_map(
            |(logfile, file_mode, dir_mode, max_open, max_idle, control_cache, managers)| {
                let mut managers: Vec<ManagerScope> = managers
                    .into_iter()
                    .map(|(name, subscribers, nodes)| {
                        let mut nodes: Vec<NodeScope> = nodes
                            .into_iter()
                            .map(|(name, subscribers)| NodeScope { name, subscribers })
                            .collect();
                        dedup_by(&mut nodes, |n| n.name.to_ascii_lowercase());
                        ManagerScope {
                            name,
                            subscribers,
                            nodes,
                        }
                    })
                    .collect();
                dedup_by(&mut managers, |m| m.name.to_ascii_lowercase());
                ManagerLogs {
                    logfile,
                    file_mode,
                    dir_mode,
                    max_open,
                    max_idle,
                    control_cache,
                    managers,
                    extra: Vec::new(),
                }
            },
        )
}

fn binding_set() -> impl Strategy<Value = (Vec<BindingGroup>, Vec<Binding>)> {
    (
        prop::collection::vec(word(), 0..3),
        prop::collection::vec(
            (
                word(),
                prop::option::of(0usize..3),
                prop::option::of(ip()),
                prop::option::of(word()),
            ),
            0..6,
        ),
    )
        .prop_map(|(mut groups, bindings)| {
            dedup_by(&mut groups, |g| g.clone());
            let mut bindings: Vec<Binding> = bindings
                .into_iter()
                .map(|(name, g, bind_address, duravip_preference)| Binding {
                    name,
                    binding_group: g.and_then(|i| groups.get(i).cloned()),
                    bind_address,
                    enable_duravip: false,
                    duravip_preference,
                    extra: Vec::new(),
                })
                .collect();
            dedup_by(&mut bindings, |b| b.name.to_ascii_lowercase());
            let groups = groups
                .into_iter()
                .map(|name| BindingGroup {
                    name,
                    extra: Vec::new(),
                })
                .collect();
            (groups, bindings)
        })
}

fn config_strategy() -> impl Strategy<Value = Config> {
    (
        cluster(),
        msgc(),
        (listens(), listens(), any::<bool>(), any::<bool>()),
        binding_set(),
        prop::collection::vec(logger(), 0..3),
        prop::option::of(manager_logs()),
        prop::collection::vec(extra(), 0..3),
    )
        .prop_map(
            |(
                cluster,
                msgc_server,
                (control, ecc, keep_control, keep_ecc),
                (binding_groups, bindings),
                loggers,
                manager_logs,
                mut extra,
            )| {
                dedup_by(&mut extra, |e| e.key.clone());
                let mut cfg = Config {
                    cluster,
                    msgc_server,
                    bindings,
                    binding_groups,
                    loggers,
                    manager_logs,
                    extra,
                    ..Config::default()
                };
                if !keep_control {
                    cfg.control_listener.listens = control;
                }
                if !keep_ecc {
                    cfg.eccluster_listener.listens = ecc;
                }
                cfg
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printing_and_reading_gives_the_same_configuration(cfg in config_strategy()) {
        round_trip(&cfg)?;
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = config::load_bytes(Path::new("fuzz.conf"), &bytes);
    }

    #[test]
    fn random_config_shaped_text_never_panics(parts in prop::collection::vec(prop::sample::select(vec![
        "cluster", "{", "}", "[", "]", "(", ")", "=", ",", ";", "\"", "\"x\"", "#c\n", "\n", " ",
        "Replicate", "\"inbound_cidr\"", "Topology", "\"10.1.1.0/24\"", "interface", "cidrmask", "33",
        "-1", "max_pending", "0", "true", "include", "\\", "Binding", "Enable_Duravip", "Bind_Address",
        "\"10.1.1.1\"", "ESMTP_Listener", "Listen", "\"*:25\"", "Duravip_Follow", "msgc_server", "peers",
        "Logs", "Manager", "Node", "Subscriber", "ec_logger", "\"cluster:///x=>m\"", "logs", "é",
    ]), 0..80)) {
        let text: String = parts.concat();
        let _ = config::load_str(Path::new("soup.conf"), &text);
    }
}

#[test]
fn documented_example_round_trips() {
    let loaded =
        config::load_str(Path::new("default.conf"), config::EMBEDDED_DEFAULT).expect("valid");
    round_trip(&loaded.config).expect("round trip");
}

#[test]
fn duravip_and_mta_extras_round_trip() {
    let text = r#"
        Security { user = "ecuser" Capabilities = "cap_net_admin+ep cap_net_raw+ep" }
        cluster {
          mbus_daemon = 4803
          Topology "10.1.1.0/24" { interface = "veth0" }
          Topology "10.2.1.0/24" { interface = "veth0" }
        }
        ESMTP_Listener {
          Concurrency = 20
          Listen "10.1.1.1:25" { Enable_Duravip = true Duravip_Preference = "node1" }
          Listen "10.1.1.3:25" { Duravip_Follow = "bindingname" Enable_Authentication = "false" }
        }
        Binding "duravip-1" { Enable_Duravip = true Bind_Address = "10.1.1.1" }
        Binding_Group "east" {
          Outbound_Throttle_Messages = "10/60"
          Binding "bindingname" { Enable_Duravip = true Bind_Address = "10.2.1.1" }
        }
        Binding "plain" { Bind_Address = "10.9.9.9" }
        Control_Listener {
          AuthDigestMD5Parameters = [ uri = "ecauth://" ]
          Listen "/tmp/2025" { Enable_Authentication = "false" }
          Listen "127.0.0.1:2025" { }
        }
        ec_logger "ec_logger" { mainlog = "/var/log/eccluster/mainlog.ec" heartbeat = "0" }
    "#;
    let loaded = config::load_str(Path::new("d.conf"), text).expect("valid");
    round_trip(&loaded.config).expect("round trip");
}
