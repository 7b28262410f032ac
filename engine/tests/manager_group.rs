//! `eccmgr_metrics` goes to the manager only ("update the eccmgr but not other nodes"): three node
//! machines over an in-memory network, two nodes and a manager (which joins
//! `node::MANAGER_GROUP`). A node counts events in an `eccmgr_metrics` object and in a `metrics`
//! object; the manager sees both in its global view, the other node only the `metrics` one, and no
//! replication message of the manager-only object is delivered to the other node.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_engine::duravip::{LocalConfig, Params};
use cohort_engine::group::{GroupConfig, MemberId, Time};
use cohort_engine::node::channel::MemberInfo;
use cohort_engine::node::{ClusterNode, Command, MANAGER_GROUP, NodeSetup};
use cohort_engine::replicate::{Monitor, ObjectKind, ObjectSettings, Replicator, SeriesItem, View};

const CLUSTER: &str = "ec_cluster";

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8 + 1], 4809))
}

fn node(i: usize, manager: bool) -> ClusterNode {
    let names = ["node1", "node2", "mgr"];
    let cfg = GroupConfig {
        peers: (0..3).map(|k| (names[k].to_owned(), addr(k))).collect(),
        ..GroupConfig::default()
    };
    let me = MemberId::new(names[i], i as u64 + 1);
    let settings: Vec<ObjectSettings> = [
        ("eccmgr_metrics", ObjectKind::EccmgrMetrics),
        ("metrics", ObjectKind::Metrics),
    ]
    .into_iter()
    .map(|(n, k)| {
        let mut o = ObjectSettings::new(n, k);
        o.max_delay = Duration::from_millis(10);
        o.monitors = vec![Monitor {
            window: 60,
            windows: 2,
        }];
        o
    })
    .collect();
    let replicator = Replicator::new(
        cohort_engine::node::replication_member(&me),
        settings,
        1400,
        manager,
    )
    .expect("replicator");
    let mut joins = vec![CLUSTER.to_owned()];
    if manager {
        joins.push(MANAGER_GROUP.to_owned());
    }
    let setup = NodeSetup {
        group: cfg,
        me,
        key: None,
        cluster_group: CLUSTER.to_owned(),
        joins,
        duravip: LocalConfig::default(),
        duravip_params: Params::default(),
        info: MemberInfo {
            pid: 1,
            subcluster: "default".into(),
            node_type: if manager { "Manager" } else { "Momentum" }.into(),
            version: "test".into(),
            eccluster_addr: "0.0.0.0:0".into(),
        },
        replicator: Arc::new(Mutex::new(replicator)),
        arp_ttl: Duration::from_secs(180),
        wall_epoch: Duration::from_secs(1_800_000_000),
    };
    ClusterNode::new(setup, Time::ZERO).expect("node")
}

/// Runs the three machines for `ms` milliseconds of simulated time, 1 ms per step.
fn run(nodes: &mut [ClusterNode], now: &mut Time, ms: u64) {
    let mut wire: VecDeque<(usize, usize, Vec<u8>)> = VecDeque::new();
    for _ in 0..ms {
        *now = Time::from_nanos(now.as_nanos() + 1_000_000);
        for (i, n) in nodes.iter_mut().enumerate() {
            if n.poll_timeout().is_some_and(|t| t <= *now) {
                n.handle_timeout(*now);
            }
            n.heartbeat(*now);
            while let Some(t) = n.poll_transmit() {
                let to = (0..3).find(|k| addr(*k) == t.destination).expect("a peer");
                wire.push_back((i, to, t.payload));
            }
            while n.poll_event().is_some() {}
        }
        while let Some((from, to, bytes)) = wire.pop_front() {
            nodes[to].handle_packet(*now, addr(from), &bytes);
        }
    }
}

fn count(n: &ClusterNode, object: &str) -> i64 {
    let r = n.replicator().lock().expect("replicator");
    r.objects()
        .series_count(
            object,
            "s",
            &SeriesItem::Text("x".into()),
            Monitor {
                window: 60,
                windows: 2,
            },
            0,
            0,
            View::Global,
            Duration::from_secs(1_800_000_100),
        )
        .expect("a series object")
}

#[test]
fn eccmgr_metrics_reach_the_manager_and_no_node() {
    let mut nodes = vec![node(0, false), node(1, false), node(2, true)];
    let mut now = Time::ZERO;
    run(&mut nodes, &mut now, 3000);
    assert_eq!(nodes[0].endpoint().view().members.len(), 3, "one view");
    assert_eq!(
        nodes[0].endpoint().group_members(MANAGER_GROUP).len(),
        1,
        "only the manager is in the manager group"
    );
    let delivered = |n: &ClusterNode| n.endpoint().counters().messages_delivered;
    let add = |nodes: &mut [ClusterNode], now: Time, object: &str| {
        nodes[0]
            .replicator()
            .lock()
            .expect("replicator")
            .objects()
            .series_add(
                object,
                "s",
                SeriesItem::Text("x".into()),
                5,
                Duration::from_secs(1_800_000_100),
            )
            .expect("counted");
        nodes[0]
            .handle_command(now, Command::FlushReplication)
            .expect("flush");
    };
    // The manager-only object alone: delivered to the manager, to no node.
    let before = (delivered(&nodes[1]), delivered(&nodes[2]));
    add(&mut nodes, now, "eccmgr_metrics");
    run(&mut nodes, &mut now, 500);
    assert_eq!(delivered(&nodes[1]), before.0, "node2 received nothing");
    assert!(delivered(&nodes[2]) > before.1, "the manager received it");
    add(&mut nodes, now, "metrics");
    run(&mut nodes, &mut now, 1000);
    assert_eq!(
        count(&nodes[2], "metrics"),
        5,
        "the manager has the metrics"
    );
    assert_eq!(count(&nodes[1], "metrics"), 5, "and so has the other node");
    assert_eq!(
        count(&nodes[2], "eccmgr_metrics"),
        5,
        "the manager has the eccmgr metrics"
    );
    assert_eq!(
        count(&nodes[1], "eccmgr_metrics"),
        0,
        "the other node never received them"
    );
}
