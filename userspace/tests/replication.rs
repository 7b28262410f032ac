//! Replicated objects between three nodes over real sockets in network namespaces (root; skips
//! otherwise). Three `cohortd` processes take their load through the control socket, as
//! applications in other processes do: every node's global view is the sum of the live members'
//! contributions; a member killed with kill -9 takes exactly its contribution with it; its new
//! incarnation receives the survivors' state as snapshots before it adds its own, and then all
//! agree; caches, throttles and series work the same way across processes. In-process nodes show
//! the same for a member cut off by a cable cut.

mod support;

use std::time::{Duration, Instant};

use cohort::console::{Client, Endpoint};
use cohort::lab::{Lab, inproc};
use cohort_engine::console::protocol::Status;
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
            .objects()
            .cidr_add("inbound_cidr", net, 1, wall())
            .expect("cidr add");
        n.shared
            .objects()
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
        .objects()
        .cidr_count("inbound_cidr", all(), View::Global)
        .expect("count");
    let g: i64 = (1..=3)
        .map(|k| {
            n.shared
                .objects()
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
fn a_cut_off_member_takes_its_contribution() {
    let Some(lab) = Lab::new("a_cut_off_member_takes_its_contribution", 3) else {
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
    let shown = cohort_engine::console::render::render(
        &cohort_engine::replicate::report::shared_show(&r, "inbound_cidr", Some("node2"), wall())
            .expect("show"),
        false,
    );
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

/// The replicated objects of the process test (inside `cluster { }`).
const PROC_OPTS: &str = "Replicate \"inbound_cidr\" { max_delay = 0.05 }\n\
    Replicate \"outbound_domains\" { max_delay = 0.05 }\n\
    Replicate \"shared_named_throttles\" { max_delay = 0.05 }\n\
    Replicate \"metrics\" { max_delay = 0.05 }\n\
    Replicate \"sessions\" { type = \"cache\" max_delay = 0.05 }";

fn console(c: &support::cluster::Cluster<'_>, i: usize) -> Client {
    Client::connect(&Endpoint::Unix(c.socket(i))).expect("console")
}

/// Runs `lines` pipelined on node `i`'s console; every answer must be a success.
fn run_all(c: &support::cluster::Cluster<'_>, i: usize, lines: &[String]) -> Vec<String> {
    let answers = console(c, i).pipeline(lines, false).expect("answers");
    answers
        .iter()
        .zip(lines)
        .map(|(a, l)| {
            let body = String::from_utf8_lossy(&a.body).trim().to_owned();
            assert_eq!(a.status, Status::Ok, "{l}: {body}");
            body
        })
        .collect()
}

/// One command's answer on node `i` (`None` when it failed).
fn ask(c: &support::cluster::Cluster<'_>, i: usize, line: &str) -> Option<String> {
    let r = console(c, i).run(line, false).expect("answer");
    (r.status == Status::Ok).then(|| String::from_utf8_lossy(&r.body).trim().to_owned())
}

fn number(c: &support::cluster::Cluster<'_>, i: usize, line: &str) -> i64 {
    ask(c, i, line)
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("{line} on node{}: no number", i + 1))
}

/// Node `i`'s load through its console, pipelined: connections from its own /16 with varied
/// increments and decrements, and its own gauge. Returns the net count it added.
fn socket_load(c: &support::cluster::Cluster<'_>, i: usize) -> i64 {
    let mut lines = Vec::new();
    let mut total = 0;
    for j in 0..PER_NODE {
        let net = format!("10.{}.{}.{}", i + 1, j / 250, j % 250 + 1);
        // +3 then -1 for every third address, +1 for the others.
        if j % 3 == 0 {
            lines.push(format!("cluster shared cidr incr inbound_cidr {net} 3"));
            lines.push(format!("cluster shared cidr decr inbound_cidr {net}/32"));
            total += 2;
        } else {
            lines.push(format!("cluster shared cidr incr inbound_cidr {net}"));
            total += 1;
        }
        lines.push(format!(
            "cluster shared gauge incr outbound_domains node{}.example",
            i + 1
        ));
    }
    let answers = run_all(c, i, &lines);
    assert!(answers.iter().all(|a| a == "OK"), "updates answer OK");
    total
}

/// Waits (bounded) until `line` answers `want` on node `i`.
fn wait_answer(c: &support::cluster::Cluster<'_>, i: usize, line: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = ask(c, i, line);
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node{}: '{line}' answers {got:?}, want {want:?}",
            i + 1
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Node `i`'s global counts: each node's /16 (in node order) and each node's gauge.
fn per_node_global(c: &support::cluster::Cluster<'_>, i: usize) -> Vec<(i64, i64)> {
    (1..=3)
        .map(|k| {
            (
                number(
                    c,
                    i,
                    &format!("cluster shared cidr count inbound_cidr 10.{k}.0.0/16"),
                ),
                number(
                    c,
                    i,
                    &format!("cluster shared gauge get outbound_domains node{k}.example"),
                ),
            )
        })
        .collect()
}

#[test]
fn kill_nine_takes_exactly_its_contribution() {
    let Some(lab) = Lab::new("kill_nine_takes_exactly_its_contribution", 3) else {
        return;
    };
    let mut c = support::cluster::cluster(&lab, "").with_cluster_options(PROC_OPTS);
    c.start_all();
    for i in 0..3 {
        c.wait_members(i, &[0, 1, 2]);
    }
    let added: Vec<i64> = (0..3).map(|i| socket_load(&c, i)).collect();
    let total: i64 = added.iter().sum();
    // The updates' own answers (read without the grammar): JSON, the wrong object, the wrong
    // kind and a malformed one, which the grammar then reports with its column.
    let mut con = console(&c, 0);
    let r = con
        .run(
            "cluster shared gauge incr outbound_domains probe.example 0",
            true,
        )
        .expect("answer");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (Status::Ok, &b"{\"ok\":true}\n"[..])
    );
    for (line, want) in [
        (
            "cluster shared cidr incr nosuch 10.0.0.1",
            "no replicated object named \"nosuch\"",
        ),
        (
            "cluster shared gauge incr inbound_cidr k",
            "object \"inbound_cidr\" is a",
        ),
        (
            "cluster shared cidr incr inbound_cidr 10.0.0.300",
            "column 39",
        ),
    ] {
        let r = con.run(line, false).expect("answer");
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            r.status == Status::Error && body.contains(want),
            "{line}: {body}"
        );
    }
    drop(con);
    let gauge = i64::from(PER_NODE);
    for i in 0..3 {
        wait_answer(
            &c,
            i,
            "cluster shared cidr count inbound_cidr 10.0.0.0/8",
            &total.to_string(),
        );
        wait_answer(
            &c,
            i,
            "cluster shared cidr count inbound_cidr 10.0.0.0/8 local",
            &added[i].to_string(),
        );
        let want: Vec<(i64, i64)> = added.iter().map(|&a| (a, gauge)).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while per_node_global(&c, i) != want {
            assert!(
                Instant::now() < deadline,
                "node{} never saw every gauge",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Caches, throttles and series across processes.
    run_all(
        &c,
        0,
        &["cluster shared cache set sessions user42 Token-1 1H".to_owned()],
    );
    wait_answer(&c, 2, "cluster shared cache get sessions user42", "Token-1");
    for i in 0..3 {
        run_all(
            &c,
            i,
            &[
                "cluster shared throttle create shared_named_throttles burst 10/100000000"
                    .to_owned(),
                format!(
                    "cluster shared series add metrics audit_series 10.9.9.{} 4",
                    i + 1
                ),
            ],
        );
    }
    assert_eq!(
        ask(
            &c,
            2,
            "cluster shared throttle check shared_named_throttles burst"
        )
        .as_deref(),
        Some("false")
    );
    assert_eq!(
        ask(
            &c,
            2,
            "cluster shared throttle tarpit shared_named_throttles burst"
        )
        .as_deref(),
        Some("0"),
        "within budget: no delay"
    );
    run_all(
        &c,
        0,
        &["cluster shared throttle inc shared_named_throttles burst 6".to_owned()],
    );
    run_all(
        &c,
        1,
        &["cluster shared throttle inc shared_named_throttles burst 6".to_owned()],
    );
    wait_answer(
        &c,
        2,
        "cluster shared throttle check shared_named_throttles burst",
        "true",
    );
    // Over budget: the tarpit is what is left of the window (of 10^8 seconds).
    let wait: f64 = ask(
        &c,
        2,
        "cluster shared throttle tarpit shared_named_throttles burst",
    )
    .and_then(|b| b.parse().ok())
    .expect("seconds");
    assert!(wait > 0.0 && wait <= 1e8, "{wait}");
    wait_answer(
        &c,
        1,
        "cluster shared series count metrics audit_series 10.9.9.0/24",
        "12",
    );

    // kill -9 of node3: the survivors' global views lose exactly its contribution.
    c.kill(2);
    for i in 0..2 {
        c.wait_members(i, &[0, 1]);
        wait_answer(
            &c,
            i,
            "cluster shared cidr count inbound_cidr 10.0.0.0/8",
            &(added[0] + added[1]).to_string(),
        );
        assert_eq!(
            per_node_global(&c, i),
            vec![(added[0], gauge), (added[1], gauge), (0, 0)],
            "node{} after the kill",
            i + 1
        );
        assert_eq!(
            number(
                &c,
                i,
                "cluster shared series count metrics audit_series 10.9.9.0/24"
            ),
            8
        );
    }
    // A new incarnation: before it adds anything of its own it holds the survivors' state,
    // received as snapshots (the cache has no `snapshot` parameter: joiners see new writes only).
    c.start(2);
    for i in 0..3 {
        c.wait_members(i, &[0, 1, 2]);
    }
    wait_answer(
        &c,
        2,
        "cluster shared cidr count inbound_cidr 10.0.0.0/8",
        &(added[0] + added[1]).to_string(),
    );
    assert_eq!(
        per_node_global(&c, 2),
        vec![(added[0], gauge), (added[1], gauge), (0, 0)]
    );
    assert_eq!(
        number(
            &c,
            2,
            "cluster shared cidr count inbound_cidr 10.0.0.0/8 local"
        ),
        0
    );
    assert!(ask(&c, 2, "cluster shared cache get sessions user42").is_none());
    let again = socket_load(&c, 2);
    assert_eq!(again, added[2]);
    for i in 0..3 {
        wait_answer(
            &c,
            i,
            "cluster shared cidr count inbound_cidr 10.0.0.0/8",
            &total.to_string(),
        );
        let want: Vec<(i64, i64)> = added.iter().map(|&a| (a, gauge)).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while per_node_global(&c, i) != want {
            assert!(Instant::now() < deadline, "node{} never agreed", i + 1);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // The per-member view over the console names the new incarnation Momentum's way.
    let shown = ask(&c, 0, "cluster shared show inbound_cidr from node3").expect("show");
    assert!(
        shown.starts_with("lazy, snapped cidrtree 'inbound_cidr', view '#ec1-"),
        "{shown}"
    );
}

/// `cluster_outbound_throttle_messages` on two `cohortd` processes: the group's stanza is one
/// bucket across both nodes through `OBTM`, a reload's new rate applies in place, and an
/// `outbound_cidr` scope with `binding_group` counts only that group's bindings; a replicated
/// gauge cache sums both nodes' increments and a local one stays local.
#[test]
fn outbound_throttles_binding_groups_and_gauge_caches_over_the_console() {
    let Some(lab) = Lab::new("outbound_throttles_binding_groups_and_gauge_caches", 2) else {
        return;
    };
    let groups = "Binding_Group \"east\" {\n  Binding \"b1\" {}\n  Binding \"b2\" {}\n  \
                  cluster_outbound_throttle_messages = \"5/100000000\"\n}\n\
                  Binding_Group \"west\" { Binding \"w1\" {} }\n";
    let mut c = support::cluster::cluster(&lab, groups).with_cluster_options(
        "Replicate \"OBTM\" { max_delay = 0.05 }\n\
         Replicate \"outbound_cidr\" { binding_group = \"east\" max_delay = 0.05 }\n\
         Replicate \"metrics\" { parameters = \"gauge_cache\" max_delay = 0.05 }",
    );
    c.start_all();
    for i in 0..2 {
        c.wait_members(i, &[0, 1]);
    }
    assert_eq!(
        ask(&c, 0, "cluster shared outbound which OBTM b2 aol.com").as_deref(),
        Some("east::*")
    );
    assert_eq!(
        ask(&c, 0, "cluster shared outbound which OBTM w1 aol.com").as_deref(),
        Some("none")
    );
    run_all(
        &c,
        0,
        &["cluster shared outbound inc OBTM b1 aol.com 3".to_owned()],
    );
    run_all(
        &c,
        1,
        &["cluster shared outbound inc OBTM b2 gmail.com 3".to_owned()],
    );
    wait_answer(&c, 0, "cluster shared throttle check OBTM east::*", "true");
    wait_answer(
        &c,
        1,
        "cluster shared outbound check OBTM b1 yahoo.com",
        "true",
    );
    assert_eq!(
        ask(&c, 1, "cluster shared outbound check OBTM w1 yahoo.com").as_deref(),
        Some("false"),
        "no stanza applies to the west group"
    );
    // A reload raises the rate: the usage so far (6) is now within budget.
    for i in 0..2 {
        c.edit_config(i, |t| t.replace("\"5/100000000\"", "\"100/100000000\""));
        let (ok, reply) = c.ctl(i, "config reload", false);
        assert!(ok, "{reply}");
        assert!(reply.contains("cluster_outbound_throttle_*"), "{reply}");
    }
    wait_answer(
        &c,
        0,
        "cluster shared outbound check OBTM b1 aol.com",
        "false",
    );
    // The usage survived the reload: 94 more reach the new limit (100).
    run_all(
        &c,
        1,
        &["cluster shared outbound inc OBTM b2 aol.com 94".to_owned()],
    );
    wait_answer(
        &c,
        0,
        "cluster shared outbound check OBTM b1 aol.com",
        "true",
    );
    // Connections: the east-only outbound_cidr counts b1's, not w1's.
    run_all(
        &c,
        0,
        &[
            "cluster shared outbound open b1 aol.com 192.0.2.7".to_owned(),
            "cluster shared outbound open w1 aol.com 192.0.2.8".to_owned(),
        ],
    );
    wait_answer(
        &c,
        1,
        "cluster shared cidr count outbound_cidr 192.0.2.0/24",
        "1",
    );
    run_all(
        &c,
        1,
        &["cluster shared outbound close b1 aol.com 192.0.2.7".to_owned()],
    );
    wait_answer(
        &c,
        0,
        "cluster shared cidr count outbound_cidr 192.0.2.0/24",
        "0",
    );
}
