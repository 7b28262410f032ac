//! `config reload` and SIGHUP on a running 3-node cluster (needs root for the network namespaces;
//! skips without): each node's file gains a `Replicate` scope and a DuraVIP binding and changes
//! `view_balance_interval`; after the reload the new object is listed and replicates, the new
//! address is plumbed on exactly one node, the new interval is in force. A reload that changes
//! the node name is refused, naming the option, and changes nothing.

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use cohort::lab::Lab;

const NODES: [usize; 3] = [0, 1, 2];

fn wait_single_owners(lab: &Lab, vips: &[Ipv4Addr]) {
    cohort::lab::procs::wait_single_owners(lab, vips, &NODES);
}

#[test]
fn reload_applies_objects_addresses_and_intervals_and_refuses_a_rename() {
    let Some(lab) = Lab::new("reload_applies", 3) else {
        return;
    };
    let (mut vips, bindings, opts) = cohort::lab::procs::duravip_setup(&lab, 141);
    let mut c = support::cluster::cluster(&lab, &bindings)
        .with_cluster_options(&format!("{opts}\n  Replicate \"inbound_cidr\" {{}}"));
    for i in NODES {
        c.start(i);
    }
    for i in NODES {
        c.wait_members(i, &NODES);
    }
    wait_single_owners(&lab, &vips);

    // Each file: a new object, a fifth address, a new balancing interval.
    let o = lab.hosts[0].addr.octets();
    let fifth = Ipv4Addr::new(o[0], o[1], o[2], 145);
    vips.push(fifth);
    for i in NODES {
        c.edit_config(i, |t| {
            t.replace(
                "  view_balance_interval = 1\n",
                "  view_balance_interval = 2\n  Replicate \"outbound_domains\" {}\n",
            ) + &format!(
                "Binding \"vip4\" {{ Enable_Duravip = true Bind_Address = \"{fifth}\" }}\n"
            )
        });
    }
    // node1 by SIGHUP, the others through the console (whose answer lists the changes).
    let pid = c.nodes[0].as_ref().expect("running").id();
    // SAFETY: kill(2) with a child's pid and a signal number.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    for i in [1, 2] {
        let (ok, reply) = c.ctl(i, "config reload", false);
        assert!(ok, "{reply}");
        assert!(reply.starts_with("configuration reloaded: "), "{reply}");
        eprintln!("node{}: {}", i + 1, reply.trim_end());
        for want in [
            "cluster.view_balance_interval: 1 -> 2",
            "Replicate \"outbound_domains\" added",
            "DuraVIP addresses: added 10.",
        ] {
            assert!(reply.contains(want), "{want} in {reply}");
        }
    }
    // The new object is listed everywhere and replicates.
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in NODES {
        loop {
            let list = c.ctl_text(i, &["cluster", "shared", "list"]);
            if list.contains("outbound_domains [lazy, gauge table") {
                break;
            }
            assert!(Instant::now() < deadline, "node{} lists {list}", i + 1);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (ok, reply) = c.ctl(
        1,
        "cluster shared gauge incr outbound_domains example.com 3",
        false,
    );
    assert!(ok, "{reply}");
    for i in NODES {
        loop {
            let v = c.ctl_text(
                i,
                &[
                    "cluster",
                    "shared",
                    "gauge",
                    "get",
                    "outbound_domains",
                    "example.com",
                ],
            );
            if v.trim() == "3" {
                break;
            }
            assert!(Instant::now() < deadline, "node{} reads {v}", i + 1);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The fifth address has exactly one owner, the four others still one each.
    wait_single_owners(&lab, &vips);
    // The new interval is in force on every node.
    for i in NODES {
        let t = c
            .ctl_json(i, &["cluster", "duravip", "show", "tables"])
            .expect("duravip tables");
        assert_eq!(t["params"]["balance_interval"], 2.0, "node{}: {t}", i + 1);
    }

    // A rename needs a restart: refused, named, nothing changed.
    c.edit_config(2, |t| {
        t.replace("nodename = \"node3\"", "nodename = \"node9\"")
            .replace("view_balance_interval = 2", "view_balance_interval = 3")
    });
    let (_, reply) = c.ctl(2, "config reload", false);
    assert!(
        reply.contains("reload refused, running configuration kept: cluster.nodename cannot change without a restart"),
        "{reply}"
    );
    let t = c
        .ctl_json(2, &["cluster", "duravip", "show", "tables"])
        .expect("duravip tables");
    assert_eq!(t["params"]["balance_interval"], 2.0, "{t}");
    assert_eq!(c.wait_members(0, &NODES).len(), 3);
    eprintln!("node3, renamed: {}", reply.trim_end());
}
