//! Property: any configuration `cohortd --check-config` accepts starts a node. Random files are
//! written from the option tables (every `cluster` and `msgc_server` option, with values in and
//! out of their bounds: negative, zero, huge, fractional, wrong types), `Replicate`, `Topology`
//! and DuraVIP scopes; each one the loader and the set-up check accept
//! (`cohort::node::setup::check`, what `--check-config` runs) must build the node machine and run
//! it for a while (timers, polls) without an error or a panic.

use std::path::Path;
use std::time::Duration;

use cohort::node::setup;
use cohort_engine::config::{self, options};
use cohort_engine::group::Time;
use cohort_engine::node::ClusterNode;
use proptest::prelude::*;

const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "0.5",
    "0.001",
    "2",
    "3600",
    "86400",
    "86401",
    "1e20",
    "\"NaN\"",
    "true",
    "false",
    "\"word\"",
    "65535",
    "65536",
    "576",
    "100",
    "4294967296",
    "\"10.1.2.3\"",
    "-20",
    "19",
    "\"uring\"",
    "\"off\"",
    "\"generic\"",
];

const KINDS: &[&str] = &[
    "inbound_cidr",
    "outbound_domains",
    "cache",
    "metrics",
    "OBTM",
    "shared_named_throttles",
];

fn option(scope: usize) -> impl Strategy<Value = String> {
    let table: Vec<(&'static str, &'static str)> = if scope == 0 {
        options::CLUSTER
            .iter()
            .map(|o| (o.name, o.default))
            .collect()
    } else {
        options::MSGC_SERVER
            .iter()
            .map(|o| (o.name, o.default))
            .collect()
    };
    (
        prop::sample::select(table),
        prop::sample::select(VALUES.to_vec()),
        0u8..4,
    )
        .prop_filter("identity options are fixed", |((n, _), _, _)| {
            !matches!(
                *n,
                "nodename" | "peers" | "nodeaddr" | "cluster_key" | "logs"
            )
        })
        // Mostly a value of the option's own type (its default), else anything.
        .prop_map(|((n, default), any, pick)| {
            let v = if pick > 0 && default != "-" {
                default
            } else {
                any
            };
            format!("  {n} = {v}\n")
        })
}

fn replicate() -> impl Strategy<Value = String> {
    (
        prop::sample::select(KINDS.to_vec()),
        prop::sample::select(vec!["0", "0.01", "1", "3600", "5000", "-1", "\"x\""]),
        prop::sample::select(vec!["1", "100", "0", "4294967295"]),
        any::<bool>(),
    )
        .prop_map(|(k, delay, pending, snap)| {
            let p = if snap {
                "parameters = \"snapshot\""
            } else {
                ""
            };
            format!("  Replicate \"{k}\" {{ max_delay = {delay} max_pending = {pending} {p} }}\n")
        })
}

fn file() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(option(0), 0..8),
        prop::collection::vec(option(1), 0..6),
        prop::collection::vec(replicate(), 0..3),
        any::<bool>(),
        0u8..4,
    )
        .prop_map(|(cluster, msgc, reps, topo, vips)| {
            let mut t = String::from("cluster {\n  nodename = \"n1\"\n");
            cluster.iter().for_each(|o| t.push_str(o));
            reps.iter().for_each(|r| t.push_str(r));
            if topo {
                t.push_str("  Topology \"10.9.0.0/16\" { interface = \"eth0\" }\n");
            }
            t.push_str("}\nmsgc_server {\n  peers = [ n1 = \"127.0.0.1\" n2 = \"127.0.0.2\" ]\n");
            msgc.iter().for_each(|o| t.push_str(o));
            t.push_str("}\n");
            if topo {
                for k in 0..vips {
                    t.push_str(&format!(
                        "Binding \"b{k}\" {{ Enable_Duravip = true Bind_Address = \"10.9.0.{}\" }}\n",
                        k + 1
                    ));
                }
            }
            t
        })
}

/// The generator is not vacuous: a good share of its files pass the check and run.
#[test]
fn the_generator_reaches_the_node() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut loaded, mut accepted) = (0, 0);
    for _ in 0..400 {
        let text = file().new_tree(&mut runner).expect("a file").current();
        if let Ok(l) = config::load_str(Path::new("p.conf"), &text) {
            loaded += 1;
            accepted += usize::from(setup::check(&l.config, false).is_ok());
        }
    }
    eprintln!("of 400 random files, {loaded} load and {accepted} pass the check");
    assert!(accepted >= 40, "{accepted} of 400 pass the check");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn a_configuration_the_check_accepts_starts_a_node(text in file()) {
        let Ok(loaded) = config::load_str(Path::new("p.conf"), &text) else {
            return Ok(());
        };
        let cfg = loaded.config;
        let Ok(plan) = setup::check(&cfg, false) else {
            return Ok(());
        };
        let replicator = std::sync::Arc::new(std::sync::Mutex::new(
            plan.replicator().expect("the check built it"),
        ));
        let setup = plan.node_setup(&cfg.cluster.cluster_group, replicator, Duration::ZERO);
        let mut node = ClusterNode::new(setup, Time::ZERO).expect("the check built it");
        // Run it for a simulated minute: heartbeats, timers and polls, as the daemon's loop does.
        let mut now = Time::ZERO;
        for _ in 0..600 {
            now = now + Duration::from_millis(100);
            node.heartbeat(now);
            node.handle_timeout(now);
            while node.poll_transmit().is_some() {}
            while node.poll_action().is_some() {}
            while node.poll_event().is_some() {}
            let _ = node.poll_timeout();
        }
        // A reload to the same plan changes nothing and is accepted.
        node.reconfigure(now, plan.reconfig()).expect("reload to itself");
    }
}
