//! Address plumbing over rtnetlink and ARP announcements over AF_PACKET, on real veths in network
//! namespaces (root; skips otherwise).

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use cohort::garp::{self, ArpSocket};
use cohort::lab::{Lab, in_netns, run};
use cohort::plumb::{PlumbError, Plumber};
use cohort::xdp;

fn arping_ok(ns: &str, ip: Ipv4Addr) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "arping",
            "-c",
            "1",
            "-w",
            "2",
            "-I",
            "eth0",
            &ip.to_string(),
        ])
        .output()
        .expect("arping")
        .status
        .success()
}

fn neigh_mac(ns: &str, ip: Ipv4Addr) -> Option<String> {
    let out = run(Command::new("ip").args(["-n", ns, "neigh", "show", &ip.to_string()]));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "lladdr" {
            return words.next().map(str::to_owned);
        }
    }
    None
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn plumb_add_remove_is_idempotent_and_protects_the_main_address() {
    let Some(lab) = Lab::new(
        "plumb_add_remove_is_idempotent_and_protects_the_main_address",
        2,
    ) else {
        return;
    };
    let o = lab.hosts[0].addr.octets();
    let vip = Ipv4Addr::new(o[0], o[1], o[2], 201);
    let client = lab.hosts[0].clone();
    let owner = lab.hosts[1].clone();
    in_netns(&owner.ns.clone(), move || {
        let p = Plumber::new(vec![IpAddr::V4(owner.addr)]).expect("rtnetlink");
        assert!(!arping_ok(&client.ns, vip), "nobody has the VIP yet");
        p.add("eth0", vip.into(), 32).expect("add");
        p.add("eth0", vip.into(), 32).expect("adding twice is fine");
        let list = p.list("eth0").expect("list");
        assert!(list.contains(&(vip.into(), 32)), "{list:?}");
        assert!(list.contains(&(owner.addr.into(), 24)), "{list:?}");
        assert!(
            arping_ok(&client.ns, vip),
            "the kernel answers for a plumbed VIP"
        );
        p.remove("eth0", vip.into(), 32).expect("remove");
        p.remove("eth0", vip.into(), 32)
            .expect("removing twice is fine");
        assert!(!p.list("eth0").expect("list").contains(&(vip.into(), 32)));
        assert!(matches!(
            p.remove("eth0", owner.addr.into(), 24),
            Err(PlumbError::Protected(_))
        ));
        assert!(matches!(
            p.add("nosuch0", vip.into(), 32),
            Err(PlumbError::NoInterface(_))
        ));
        assert!(matches!(
            p.add("eth0", vip.into(), 33),
            Err(PlumbError::Prefix { .. })
        ));
        assert!(
            p.list("eth0")
                .expect("list")
                .contains(&(owner.addr.into(), 24)),
            "main address untouched"
        );
    });
}

#[test]
fn gratuitous_and_targeted_arp_reach_the_neighbour_table() {
    let Some(lab) = Lab::new("gratuitous_and_targeted_arp_reach_the_neighbour_table", 2) else {
        return;
    };
    let o = lab.hosts[0].addr.octets();
    let (vip1, vip2) = (
        Ipv4Addr::new(o[0], o[1], o[2], 202),
        Ipv4Addr::new(o[0], o[1], o[2], 203),
    );
    let client = lab.hosts[0].clone();
    let owner = lab.hosts[1].clone();
    // The client accepts unsolicited ARP into its table (as a switch or router would learn it).
    run(Command::new("ip").args([
        "netns",
        "exec",
        &client.ns,
        "sysctl",
        "-qw",
        "net.ipv4.conf.eth0.arp_accept=1",
    ]));
    let client_mac = in_netns(&client.ns.clone(), || {
        xdp::interface_mac("eth0").expect("mac")
    });
    let owner_mac = in_netns(&owner.ns.clone(), move || {
        let mac = xdp::interface_mac("eth0").expect("mac");
        let s = ArpSocket::open("eth0").expect("AF_PACKET");
        s.send(&garp::gratuitous(mac, vip1)).expect("garp");
        s.send(&garp::targeted(mac, vip2, client_mac, client.addr))
            .expect("targeted");
        mac
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(
        neigh_mac(&lab.hosts[0].ns, vip1),
        Some(mac_text(owner_mac)),
        "gratuitous ARP learned"
    );
    assert_eq!(
        neigh_mac(&lab.hosts[0].ns, vip2),
        Some(mac_text(owner_mac)),
        "targeted ARP learned"
    );
}
