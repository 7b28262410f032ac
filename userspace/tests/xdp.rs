//! The XDP fast path on real veths in network namespaces (root; skips otherwise): it answers ARP
//! for an address no kernel owns, with the owner's MAC, only while its lease is valid and only for
//! addresses in its map; it stamps transport packets per peer; native mode works when the veth peer
//! runs the pass-through program.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

mod support;

use cohort::lab::{Lab, in_netns};
use cohort::xdp::{self, AttachedMode, FastPath, XdpSetting};

/// `arping` from `ns` for `ip`: the MAC that answered, if any.
fn arping(ns: &str, ip: Ipv4Addr) -> Option<String> {
    cohort::lab::procs::arping_in(ns, ip)
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn vip_of(lab: &Lab) -> Ipv4Addr {
    let o = lab.hosts[0].addr.octets();
    Ipv4Addr::new(o[0], o[1], o[2], 200)
}

#[test]
fn generic_mode_answers_arp_under_lease_and_stamps_peers() {
    let Some(lab) = Lab::new("generic_mode_answers_arp_under_lease_and_stamps_peers", 2) else {
        return;
    };
    let vip = vip_of(&lab);
    let client = lab.hosts[0].clone();
    let owner = lab.hosts[1].clone();
    in_netns(&owner.ns.clone(), move || {
        let mut fp = FastPath::attach("eth0", XdpSetting::Auto).expect("attach");
        assert_eq!(
            fp.mode(),
            AttachedMode::Generic,
            "auto picks generic on veth"
        );
        let mac = mac_text(fp.mac());

        // Not in the map yet: nobody answers (the address is plumbed nowhere).
        fp.renew_lease(Duration::from_secs(30)).expect("lease");
        assert_eq!(arping(&client.ns, vip), None);

        fp.insert_vip(vip).expect("insert");
        assert_eq!(fp.vip_list().expect("list"), [vip]);
        assert_eq!(
            arping(&client.ns, vip).as_deref(),
            Some(mac.as_str()),
            "XDP answers with the owner's MAC"
        );
        let s = fp.stats().expect("stats");
        assert!(s.arp_replied >= 1, "{s:?}");

        // Lease expired: no answer, counted; not even from the kernel, which has the address
        // plumbed: the node of a hung daemon stops claiming its addresses at ARP (docs/duravip.md,
        // "A hung daemon").
        let plumb = |verb: &str| {
            let st = Command::new("ip")
                .args([
                    "-n",
                    &owner.ns,
                    "addr",
                    verb,
                    &format!("{vip}/32"),
                    "dev",
                    "eth0",
                ])
                .status()
                .expect("ip addr");
            assert!(st.success(), "ip addr {verb}");
        };
        plumb("add");
        fp.expire_lease().expect("expire");
        assert_eq!(arping(&client.ns, vip), None);
        assert!(fp.stats().expect("stats").arp_lease_expired >= 1);
        // Out of the map, the address is the kernel's own business again: it answers.
        fp.remove_vip(vip).expect("remove");
        assert_eq!(arping(&client.ns, vip).as_deref(), Some(mac.as_str()));
        plumb("del");
        fp.insert_vip(vip).expect("insert again");

        // Renewed but removed from the map: no answer.
        fp.renew_lease(Duration::from_secs(30)).expect("lease");
        fp.remove_vip(vip).expect("remove");
        fp.remove_vip(vip).expect("removing twice is fine");
        assert_eq!(arping(&client.ns, vip), None);

        // Transport packets to the configured port are stamped per source address.
        fp.set_transport_port(4809).expect("port");
        let before = xdp::monotonic_ns();
        let send = format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n[s.sendto(b'hb',('{}',4809)) for _ in range(5)]\ns.sendto(b'x',('{}',4810))\n",
            owner.addr, owner.addr
        );
        let st = Command::new("ip")
            .args(["netns", "exec", &client.ns, "python3", "-c", &send])
            .status()
            .expect("python");
        assert!(st.success());
        std::thread::sleep(Duration::from_millis(100));
        let peers = fp.peer_arrivals().expect("peers");
        let p = peers
            .iter()
            .find(|(a, _)| *a == client.addr)
            .map(|(_, p)| *p)
            .expect("client stamped");
        assert_eq!(p.packets, 5, "only the transport port is stamped");
        assert!(p.last_ns >= before && p.last_ns <= xdp::monotonic_ns());
        drop(fp);
    });
}

#[test]
fn native_mode_on_veth_with_a_pass_through_peer() {
    let Some(lab) = Lab::new("native_mode_on_veth_with_a_pass_through_peer", 2) else {
        return;
    };
    let vip = vip_of(&lab);
    let client = lab.hosts[0].clone();
    let owner = lab.hosts[1].clone();
    let switch = lab.switch.clone();
    let port = owner.port.clone();
    // The switch-side peer runs the pass-through program natively; keep it attached meanwhile.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        cohort::lab::inproc::enter(&switch);
        let pass = xdp::attach_pass_through(&port).expect("pass-through");
        ready_tx.send(()).expect("ready");
        let _ = rx.recv();
        drop(pass);
    });
    ready_rx.recv().expect("pass-through attached");
    in_netns(&owner.ns.clone(), move || {
        let mut fp = FastPath::attach("eth0", XdpSetting::Native).expect("native attach");
        assert_eq!(fp.mode(), AttachedMode::Native);
        fp.insert_vip(vip).expect("insert");
        fp.renew_lease(Duration::from_secs(30)).expect("lease");
        let mac = mac_text(fp.mac());
        assert_eq!(arping(&client.ns, vip).as_deref(), Some(mac.as_str()));
        assert!(fp.stats().expect("stats").arp_replied >= 1);
    });
    tx.send(()).expect("release");
    holder.join().expect("holder");
}

/// A node without DuraVIPs still attaches the XDP program to its transport's interface, and the
/// peers' arrivals it stamps reach the failure detector.
#[test]
fn stamps_are_fed_on_nodes_without_duravips() {
    let Some(lab) = Lab::new("stamps_are_fed_on_nodes_without_duravips", 2) else {
        return;
    };
    let mut c = support::cluster::cluster(&lab, "");
    for i in 0..2 {
        c.start(i);
    }
    for i in 0..2 {
        c.wait_members(i, &[0, 1]);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let v = c.counters(0);
        let attached = v["xdp_interfaces_attached"].as_u64().unwrap_or(0);
        let fed = v["xdp_arrivals_fed"].as_u64().unwrap_or(0);
        if attached == 1 && fed > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no stamps fed: {v}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
