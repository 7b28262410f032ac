//! DuraVIP end to end with real `cohortd` processes in network namespaces (root; skips otherwise):
//! three nodes and a client on one bridge, four DuraVIP addresses. Every address is plumbed on
//! exactly one node and the client's ARP requests are answered with that node's MAC; when an owner
//! is killed (kill -9 and its cable cut at the same instant), its addresses move to the survivors
//! and the client's ARP is answered by the new owner, through the XDP fast path.

mod support;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use cohort::lab::procs::Cluster;
use cohort::lab::{Lab, run};

fn plumbed(lab: &Lab, i: usize) -> String {
    cohort::lab::procs::plumbed(lab, i)
}

fn mac(lab: &Lab, i: usize) -> String {
    let out = run(Command::new("ip").args(["-n", &lab.hosts[i].ns, "link", "show", "eth0"]));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("MAC")
        .to_owned()
}

fn arping(lab: &Lab, from: usize, ip: Ipv4Addr) -> Option<String> {
    let out = lab
        .cmd(from, "arping")
        .args(["-c", "2", "-w", "2", "-I", "eth0", &ip.to_string()])
        .output()
        .expect("arping");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.contains("reply from"))
        .and_then(|l| l.split('[').nth(1))
        .and_then(|r| r.split(']').next())
        .map(|m| m.to_ascii_lowercase())
}

/// For each VIP, the nodes (0..3) that have it plumbed.
fn owners(lab: &Lab, vips: &[Ipv4Addr], nodes: &[usize]) -> Vec<Vec<usize>> {
    let addrs: Vec<(usize, String)> = nodes.iter().map(|&i| (i, plumbed(lab, i))).collect();
    vips.iter()
        .map(|v| {
            addrs
                .iter()
                .filter(|(_, a)| a.contains(&format!("{v}/32")))
                .map(|(i, _)| *i)
                .collect()
        })
        .collect()
}

fn wait_single_owners(lab: &Lab, vips: &[Ipv4Addr], nodes: &[usize]) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let o = owners(lab, vips, nodes);
        if o.iter().all(|x| x.len() == 1) {
            return o.into_iter().map(|x| x[0]).collect();
        }
        assert!(
            Instant::now() < deadline,
            "addresses never each had one owner: {o:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts nodes 0..3 of `lab` with four DuraVIP bindings (host numbers `first..first+4`), waits
/// for one view and for every address to have exactly one owner; returns the cluster, the
/// addresses and their owners.
fn vip_cluster(lab: &Lab, first: u8) -> (Cluster<'_>, Vec<Ipv4Addr>, Vec<usize>) {
    let (vips, bindings, cluster_opts) = cohort::lab::procs::duravip_setup(lab, first);
    let mut c = support::cluster::cluster(lab, &bindings).with_cluster_options(&cluster_opts);
    for i in NODES {
        c.start(i);
    }
    for i in NODES {
        c.wait_members(i, &NODES);
    }
    let owners = wait_single_owners(lab, &vips, &NODES);
    (c, vips, owners)
}

const NODES: [usize; 3] = [0, 1, 2];

#[test]
fn failover_moves_addresses_and_the_client_follows() {
    let Some(lab) = Lab::new("failover_moves_addresses_and_the_client_follows", 4) else {
        return;
    };
    let (mut c, vips, before) = vip_cluster(&lab, 101);
    let nodes = NODES;
    // The client reaches each address at its owner.
    for (v, &owner) in vips.iter().zip(&before) {
        assert_eq!(
            arping(&lab, 3, *v),
            Some(mac(&lab, owner)),
            "{v} answered by its owner node{}",
            owner + 1
        );
    }
    let shown = c
        .ctl_json(0, &["cluster", "duravip", "show"])
        .expect("duravip show");
    assert!(shown.to_string().contains(&vips[0].to_string()), "{shown}");

    // Crash the owner of the first address: kill -9 and cut its cable at the same instant.
    let victim = before[0];
    c.kill(victim);
    lab.link(victim, false);
    let survivors: Vec<usize> = nodes.iter().copied().filter(|&i| i != victim).collect();
    for &i in &survivors {
        c.wait_members(i, &survivors);
    }
    let after = wait_single_owners(&lab, &vips, &survivors);
    let new_owner = after[0];
    assert_ne!(new_owner, victim);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if arping(&lab, 3, vips[0]) == Some(mac(&lab, new_owner)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the client is not answered by the new owner node{}",
            new_owner + 1
        );
    }
    // The answer came from the XDP fast path.
    let counters = c.counters(new_owner);
    let replied = counters["xdp_arp_replied"].as_u64().unwrap_or(0);
    assert!(replied >= 1, "XDP answered: {counters}");
}

#[test]
fn sigterm_releases_addresses_and_a_survivor_takes_them() {
    let Some(lab) = Lab::new("sigterm_releases_addresses_and_a_survivor_takes_them", 4) else {
        return;
    };
    let (mut c, vips, before) = vip_cluster(&lab, 111);
    let nodes = NODES;
    let leaver = before[0];
    let held: Vec<Ipv4Addr> = vips
        .iter()
        .zip(&before)
        .filter(|(_, o)| **o == leaver)
        .map(|(v, _)| *v)
        .collect();
    let status = c.terminate(leaver);
    assert!(status.success(), "{status:?}");
    // Released at once: gone from the leaver's interface by the time the process has exited.
    let left = plumbed(&lab, leaver);
    for v in &held {
        assert!(
            !left.contains(&format!("{v}/32")),
            "{v} still plumbed on the node that left: {left}"
        );
    }
    let survivors: Vec<usize> = nodes.iter().copied().filter(|&i| i != leaver).collect();
    let after = wait_single_owners(&lab, &vips, &survivors);
    assert!(after.iter().all(|o| survivors.contains(o)));
    assert_eq!(
        arping(&lab, 3, vips[0]),
        Some(mac(&lab, after[0])),
        "the client follows"
    );
}
