//! Replicated CIDR trees and gauges between three nodes over real sockets in network namespaces
//! (root; skips otherwise): every node's global view is the sum of the live members'
//! contributions; a member cut off from the others takes exactly its contribution with it; a new
//! incarnation receives the survivors' state as snapshots before it adds its own.

use std::time::{Duration, Instant};

use cohort::lab::{Lab, inproc};
use cohort_engine::replicate::View;
use ipnet::IpNet;

const PER_NODE: u32 = 300;
const OPTS: &str = "Replicate \"inbound_cidr\" { max_delay = 0.05 }\nReplicate \"outbound_domains\" { max_delay = 0.05 }";

fn wall() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
}

fn all() -> IpNet {
    "10.0.0.0/8".parse().expect("net")
}

/// Node `i` records `PER_NODE` inbound connections from its own /16 and one gauge per connection.
fn load(n: &inproc::InProc, i: usize) {
    for j in 0..PER_NODE {
        let net: IpNet = format!("10.{}.{}.{}/32", i + 1, j / 250, j % 250 + 1)
            .parse()
            .expect("net");
        n.shared
            .objects
            .cidr_add("inbound_cidr", net, 1, wall())
            .expect("cidr add");
        n.shared
            .objects
            .gauge_add(
                "outbound_domains",
                &format!("node{}.example", i + 1),
                1,
                wall(),
            )
            .expect("gauge add");
    }
    n.shared.waker.wake().expect("wake");
}

fn global(n: &inproc::InProc) -> (i64, i64) {
    let c = n
        .shared
        .objects
        .cidr_count("inbound_cidr", all(), View::Global)
        .expect("count");
    let g: i64 = (1..=3)
        .map(|k| {
            n.shared
                .objects
                .gauge_get(
                    "outbound_domains",
                    &format!("node{k}.example"),
                    View::Global,
                )
                .expect("gauge")
        })
        .sum();
    (c, g)
}

fn wait_global(n: &inproc::InProc, want: i64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (c, g) = global(n);
        if c == want && g == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: global ({c}, {g}), want {want}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn contributions_follow_membership() {
    let Some(lab) = Lab::new("contributions_follow_membership", 3) else {
        return;
    };
    let mut nodes: Vec<inproc::InProc> = (0..3)
        .map(|i| inproc::start_with(&lab, i, OPTS, "", &[]))
        .collect();
    for n in &nodes {
        n.wait_view(3, "ec_cluster");
    }
    for (i, n) in nodes.iter().enumerate() {
        load(n, i);
    }
    let total = 3 * i64::from(PER_NODE);
    for (i, n) in nodes.iter().enumerate() {
        wait_global(n, total, &format!("node{} before the cut", i + 1));
    }
    // node3 is cut off: the survivors' views lose exactly its contribution.
    lab.link(2, false);
    for n in &nodes[..2] {
        n.wait_view(2, "ec_cluster");
        wait_global(n, 2 * i64::from(PER_NODE), "survivor after the cut");
    }
    // node3 goes away (its leave cannot be heard) and comes back as a new incarnation.
    let old = nodes.pop().expect("node3");
    old.stop();
    lab.link(2, true);
    let fresh = inproc::start_with(&lab, 2, OPTS, "", &[]);
    fresh.wait_view(3, "ec_cluster");
    // Snapshots: before adding anything of its own it sees the survivors' state.
    wait_global(
        &fresh,
        2 * i64::from(PER_NODE),
        "new incarnation from snapshots",
    );
    load(&fresh, 2);
    nodes.push(fresh);
    for (i, n) in nodes.iter().enumerate() {
        wait_global(n, total, &format!("node{} after the restart", i + 1));
    }
    // The per-member view names the member Momentum's way.
    let r = nodes[0].shared.replicator.lock().expect("replicator");
    let shown =
        cohort_engine::replicate::console::shared_show(&r, "inbound_cidr", Some("node2"), wall())
            .expect("show");
    assert!(
        shown.starts_with("lazy, snapped cidrtree 'inbound_cidr', view '#ec1-"),
        "{shown}"
    );
    assert!(
        shown.lines().next().is_some_and(|l| l.ends_with("#node2'")),
        "{shown}"
    );
    drop(r);
    for n in nodes {
        n.stop();
    }
}
