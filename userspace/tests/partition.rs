//! Partitions on real `cohortd` processes in network namespaces (root; skips otherwise): three
//! nodes and a client on one bridge, four DuraVIP addresses, XDP attached (generic). One node's
//! inbound cluster port is dropped with nftables (a one-sided cut: its own datagrams still go out,
//! and the XDP program still sees the others' datagrams arrive before netfilter drops them), while
//! every node still reaches the client.
//!
//! - With `duravip_quorum = majority`: during the cut every address is plumbed on exactly one of
//!   the two connected nodes and the cut node holds none (it says `[fenced: ...]`); after the heal,
//!   one 3-member view and every address once.
//! - Without it (Momentum's behaviour): the cut node installs its own view within the stated bound
//!   (10 x (suspect_timeout + probe_interval), 8 s at the defaults; docs/architecture.md).

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use cohort::lab::Lab;
use cohort::lab::procs::{Cluster, vip_owners, wait_single_owners};

const NODES: [usize; 3] = [0, 1, 2];
const CUT: usize = 2;
const PORT: u16 = 4809;

fn start(lab: &Lab, first: u8, quorum: bool) -> (Cluster<'_>, Vec<Ipv4Addr>) {
    let (vips, bindings, mut opts) = cohort::lab::procs::duravip_setup(lab, first);
    if quorum {
        opts.push_str("\n  duravip_quorum = majority");
    }
    // The client is not a peer: the quorum counts the three nodes.
    let mut c = support::cluster::cluster(lab, &bindings)
        .with_peers(3)
        .with_cluster_options(&opts);
    for i in NODES {
        c.start(i);
    }
    for i in NODES {
        c.wait_members(i, &NODES);
    }
    wait_single_owners(lab, &vips, &NODES);
    (c, vips)
}

/// Cuts node `CUT`'s inbound cluster port and waits until it is alone in its view and the others
/// are two (printing how long that took).
fn cut_and_split(lab: &Lab, c: &Cluster<'_>) {
    let t0 = Instant::now();
    lab.udp_loss(CUT, PORT, 100);
    let rest: Vec<usize> = NODES.iter().copied().filter(|&i| i != CUT).collect();
    c.wait_members(CUT, &[CUT]);
    for &i in &rest {
        c.wait_members(i, &rest);
    }
    eprintln!(
        "split views {:.2}s after the cut",
        t0.elapsed().as_secs_f64()
    );
}

fn heal(lab: &Lab, c: &Cluster<'_>, vips: &[Ipv4Addr]) {
    lab.udp_loss(CUT, PORT, 0);
    for i in NODES {
        c.wait_members(i, &NODES);
    }
    wait_single_owners(lab, vips, &NODES);
}

/// Waits until every address has one owner among `nodes` and their loads are within one.
fn wait_balanced(lab: &Lab, vips: &[Ipv4Addr], nodes: &[usize]) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let owners = wait_single_owners(lab, vips, nodes);
        let loads: Vec<usize> = nodes
            .iter()
            .map(|n| owners.iter().filter(|o| *o == n).count())
            .collect();
        let (lo, hi) = (loads.iter().min(), loads.iter().max());
        if hi.zip(lo).is_some_and(|(h, l)| h - l <= 1) {
            return;
        }
        assert!(Instant::now() < deadline, "never balanced: {loads:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_cut_node_is_fenced_under_quorum_majority_and_the_heal_restores_one_view() {
    let Some(lab) = Lab::new("partition_quorum", 4) else {
        return;
    };
    let (c, vips) = start(&lab, 121, true);
    cut_and_split(&lab, &c);
    // The connected pair takes every address; the cut node releases its own and claims none.
    // Balancing between the pair may still be moving addresses (a hand-off unplumbs before the
    // new owner plumbs): the check below starts once the loads are within one.
    let rest = [0, 1];
    wait_balanced(&lab, &vips, &rest);
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let owners = vip_owners(&lab, &vips, &NODES);
        assert!(
            owners.iter().all(|o| o.len() == 1 && o[0] != CUT),
            "during the cut each address on exactly one connected node: {owners:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let shown = c.ctl_text(CUT, &["cluster", "duravip", "show"]);
    assert!(shown.contains("[fenced:"), "{shown}");
    // The client is answered by the connected owners only.
    let owners = vip_owners(&lab, &vips, &NODES);
    for (v, o) in vips.iter().zip(&owners) {
        assert_eq!(
            support::cluster::arping(&lab, 3, *v),
            Some(support::cluster::mac(&lab, o[0])),
            "{v}"
        );
    }
    heal(&lab, &c, &vips);
    let shown = c.ctl_text(CUT, &["cluster", "duravip", "show"]);
    assert!(!shown.contains("[fenced:"), "{shown}");
}

#[test]
fn without_quorum_a_cut_node_installs_its_own_view() {
    let Some(lab) = Lab::new("partition_no_quorum", 4) else {
        return;
    };
    let (c, vips) = start(&lab, 131, false);
    cut_and_split(&lab, &c);
    // Momentum's behaviour: the cut node elects itself for every address.
    let deadline = Instant::now() + Duration::from_secs(20);
    while vip_owners(&lab, &vips, &[CUT]).iter().any(|o| o.is_empty()) {
        assert!(
            Instant::now() < deadline,
            "the lone node claims every address"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    heal(&lab, &c, &vips);
}

/// `ping` from the client to `ip` through the MAC `mac` (a permanent neighbour entry, as a client
/// whose ARP cache still points at a hung node): whether a reply came.
fn ping_via(lab: &Lab, ip: Ipv4Addr, mac: &str) -> bool {
    let ip_s = ip.to_string();
    let ok = lab
        .cmd(3, "ip")
        .args([
            "neigh",
            "replace",
            &ip_s,
            "lladdr",
            mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "neighbour entry");
    lab.cmd(3, "ping")
        .args(["-c", "2", "-W", "1", "-q", &ip_s])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The lapsed-lease fence: a hung daemon (SIGSTOP) keeps its addresses plumbed, but once its
/// `xdp_lease` lapses its XDP program drops every IPv4 packet to them, so a client whose cache
/// still points at it gets no answer from its kernel. Resumed (SIGCONT), it re-arms the lease only
/// after an election confirmed what it holds; then every address has one owner again.
#[test]
fn a_hung_node_is_fenced_at_ingress_and_rearmed_after_an_election() {
    let Some(lab) = Lab::new("partition_hung_fence", 4) else {
        return;
    };
    let (c, vips) = start(&lab, 141, false);
    let owners = wait_single_owners(&lab, &vips, &NODES);
    let victim = owners[0];
    let victim_mac = support::cluster::mac(&lab, victim);
    assert!(
        ping_via(&lab, vips[0], &victim_mac),
        "the owner answers before the hang"
    );
    c.signal(victim, "-STOP");
    let rest: Vec<usize> = NODES.iter().copied().filter(|&i| i != victim).collect();
    for &i in &rest {
        c.wait_members(i, &rest);
    }
    // Past the lease (3 s at the default) the hung node's kernel still has the address, but
    // XDP drops what is sent to it.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        vip_owners(&lab, &vips, &[victim])[0] == [victim],
        "the hung node's kernel still has the address plumbed"
    );
    assert!(
        !ping_via(&lab, vips[0], &victim_mac),
        "a hung node's kernel answers nothing for its addresses once the lease lapsed"
    );
    c.signal(victim, "-CONT");
    for i in NODES {
        c.wait_members(i, &NODES);
    }
    wait_single_owners(&lab, &vips, &NODES);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let counters = c.counters(victim);
        let log = std::fs::read_to_string(c.log(victim)).unwrap_or_default();
        let lapsed = log.find("the XDP lease lapsed");
        let rearmed = log.find("XDP lease re-armed");
        if let (Some(l), Some(r)) = (lapsed, rearmed) {
            assert!(l < r);
            assert_eq!(
                counters["duravip_lease_lapses"].as_u64(),
                Some(1),
                "{counters}"
            );
            assert!(
                counters["xdp_ingress_fenced"].as_u64() >= Some(1),
                "the XDP program counted the fenced packets: {counters}"
            );
            // An election ran between the lapse and the re-arm.
            assert!(
                log[l..r].contains("view installed"),
                "re-armed only after a view confirmed the ownership:\n{}",
                &log[l..r]
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lease was never re-armed:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
