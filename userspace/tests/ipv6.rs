//! IPv6 DuraVIPs on real veths in network namespaces (root; skips otherwise): the unsolicited
//! neighbour advertisements an acquisition sends move a client's neighbour entry to the new
//! owner's MAC; the XDP program answers neighbour solicitations for an address in its map only
//! while its lease is valid; the node's IPv6 neighbours reach the shared neighbour cache.

mod support;

use std::net::Ipv6Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use cohort::garp::{self, ArpSocket};
use cohort::lab::{Lab, in_netns, run};
use cohort::plumb::Plumber;
use cohort::xdp::{self, FastPath, XdpSetting};

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The MAC of `ip` in `ns`'s IPv6 neighbour table, if it has one (the line of that address
/// exactly: `ip neigh show ADDR` also prints other entries here).
fn neigh6_mac(ns: &str, ip: Ipv6Addr) -> Option<String> {
    let out = run(Command::new("ip").args(["-n", ns, "-6", "neigh", "show", "dev", "eth0"]));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text.lines().find(|l| {
        l.split_whitespace()
            .next()
            .and_then(|a| a.parse::<Ipv6Addr>().ok())
            == Some(ip)
    })?;
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == "lladdr" {
            return words.next().map(str::to_owned);
        }
    }
    None
}

fn ip(ns: &str, args: &[&str]) {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run(Command::new("ip").args(&all));
}

/// Gives `ns`'s eth0 the address `addr/64` at once (no duplicate address detection).
fn add6(ns: &str, addr: &str) {
    ip(
        ns,
        &[
            "-6",
            "addr",
            "add",
            &format!("{addr}/64"),
            "dev",
            "eth0",
            "nodad",
        ],
    );
}

/// One ping from `ns` (its answer does not matter: it makes the kernel solicit `ip`'s MAC).
fn solicit(ns: &str, ip: Ipv6Addr) {
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "ping",
            "-6",
            "-c",
            "1",
            "-W",
            "1",
            &ip.to_string(),
        ])
        .output();
}

#[test]
fn unsolicited_neighbour_advertisements_move_a_client_to_the_new_owner() {
    let Some(lab) = Lab::new("unsolicited_neighbour_advertisements", 2) else {
        return;
    };
    let (client, owner) = (lab.hosts[0].clone(), lab.hosts[1].clone());
    let (vip1, vip2): (Ipv6Addr, Ipv6Addr) =
        ("fd00:c0::7".parse().unwrap(), "fd00:c0::8".parse().unwrap());
    let client_ip: Ipv6Addr = "fd00:c0::1".parse().unwrap();
    add6(&client.ns, &client_ip.to_string());
    // The client still has the old owner's MAC for both addresses (a fail-over).
    for vip in [vip1, vip2] {
        ip(
            &client.ns,
            &[
                "-6",
                "neigh",
                "replace",
                &vip.to_string(),
                "lladdr",
                "02:00:00:00:00:99",
                "dev",
                "eth0",
                "nud",
                "stale",
            ],
        );
    }
    let client_mac = in_netns(&client.ns.clone(), || {
        xdp::interface_mac("eth0").expect("mac")
    });
    let owner_mac = in_netns(&owner.ns.clone(), move || {
        let mac = xdp::interface_mac("eth0").expect("mac");
        let s = ArpSocket::open("eth0").expect("AF_PACKET");
        s.send(&garp::advert_all(mac, vip1))
            .expect("advert to all nodes");
        s.send(&garp::advert_to(mac, vip2, client_mac, client_ip))
            .expect("advert to the client");
        mac
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let want = Some(mac_text(owner_mac));
    while (neigh6_mac(&client.ns, vip1) != want || neigh6_mac(&client.ns, vip2) != want)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        neigh6_mac(&client.ns, vip1),
        want,
        "advertisement to all nodes"
    );
    assert_eq!(
        neigh6_mac(&client.ns, vip2),
        want,
        "advertisement to the client"
    );
}

#[test]
fn xdp_answers_neighbour_solicitations_under_lease() {
    let Some(lab) = Lab::new("xdp_answers_neighbour_solicitations", 2) else {
        return;
    };
    let (client, owner) = (lab.hosts[0].clone(), lab.hosts[1].clone());
    let vip: Ipv6Addr = "fd00:c1::7".parse().unwrap();
    add6(&client.ns, "fd00:c1::1");
    // The owner's own address in the block, so that it can reach the client at the end.
    add6(&owner.ns, "fd00:c1::2");
    let cns = client.ns.clone();
    in_netns(&owner.ns.clone(), move || {
        let mut fp = FastPath::attach("eth0", XdpSetting::Auto).expect("attach");
        let mac = mac_text(fp.mac());
        let flush = || ip(&cns, &["-6", "neigh", "flush", "dev", "eth0"]);
        fp.renew_lease(Duration::from_secs(30)).expect("lease");
        // Not in the map (and plumbed nowhere): nobody answers.
        solicit(&cns, vip);
        assert_eq!(neigh6_mac(&cns, vip), None);

        fp.insert_vip6(vip).expect("insert");
        assert_eq!(fp.vip6_list().expect("list"), [vip]);
        flush();
        solicit(&cns, vip);
        assert_eq!(
            neigh6_mac(&cns, vip).as_deref(),
            Some(mac.as_str()),
            "XDP answers"
        );
        let s = fp.stats().expect("stats");
        assert!(s.ndp_replied >= 1, "{s:?}");

        // The lease lapsed: no answer, even with the address plumbed (the kernel would answer).
        let plumber = Plumber::new(Vec::new()).expect("netlink");
        plumber.add("eth0", vip.into(), 128).expect("plumb");
        fp.expire_lease().expect("expire");
        flush();
        solicit(&cns, vip);
        assert_eq!(
            neigh6_mac(&cns, vip),
            None,
            "lapsed lease: solicitations dropped"
        );
        assert!(fp.stats().expect("stats").ndp_lease_expired >= 1);
        // Out of the map, the plumbed address is the kernel's to answer again.
        fp.remove_vip6(vip).expect("remove");
        fp.remove_vip6(vip).expect("removing twice is fine");
        flush();
        solicit(&cns, vip);
        assert_eq!(
            neigh6_mac(&cns, vip).as_deref(),
            Some(mac.as_str()),
            "the kernel answers"
        );
        plumber.remove("eth0", vip.into(), 128).expect("unplumb");

        // Duplicate address detection: a client that tries to take the owned address hears the
        // program's advertisement to all nodes and gives it up ("dadfailed"), whether its probe
        // carries no option (the advertisement grows the frame) or a nonce (RFC 7527).
        fp.insert_vip6(vip).expect("insert again");
        fp.renew_lease(Duration::from_secs(30)).expect("lease");
        for (enhanced, shape) in [("0", "no option"), ("1", "a nonce")] {
            run(Command::new("ip").args([
                "netns",
                "exec",
                &cns,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.eth0.enhanced_dad={enhanced}"),
            ]));
            let before = fp.stats().expect("stats").ndp_replied;
            ip(
                &cns,
                &["-6", "addr", "add", &format!("{vip}/64"), "dev", "eth0"],
            );
            let deadline = Instant::now() + Duration::from_secs(5);
            let failed = loop {
                let out =
                    run(Command::new("ip").args(["-n", &cns, "-6", "addr", "show", "dev", "eth0"]));
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let line = text
                    .lines()
                    .find(|l| l.contains(&format!("{vip}/64")))
                    .unwrap_or("")
                    .to_owned();
                if line.contains("dadfailed") || Instant::now() >= deadline {
                    break line;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            assert!(
                failed.contains("dadfailed"),
                "DAD probe with {shape}: {failed}"
            );
            assert!(
                fp.stats().expect("stats").ndp_replied > before,
                "answered by XDP"
            );
            ip(
                &cns,
                &["-6", "addr", "del", &format!("{vip}/64"), "dev", "eth0"],
            );
        }
        fp.remove_vip6(vip).expect("remove");

        // The owner's neighbour table, as the shared cache collects it, holds the client.
        let client_ip: Ipv6Addr = "fd00:c1::1".parse().unwrap();
        let _ = Command::new("ping")
            .args(["-6", "-c", "1", "-W", "1", "fd00:c1::1"])
            .output();
        let found = plumber.neighbours6().expect("neighbours");
        assert!(
            found.iter().any(|(_, a, _)| *a == client_ip),
            "the client is in the IPv6 neighbour table: {found:?}"
        );
        drop(fp);
    });
}

/// IPv6 DuraVIPs with real `cohortd` processes: three nodes and a client, four addresses in an IPv6
/// `Topology` block. Each is plumbed on exactly one node and the client's solicitation is answered
/// with the owner's MAC; a move sends the new owner's unsolicited advertisement, which updates the
/// client's entry without a new solicitation; the client, talking to node1 only, is listed by
/// node3's `cluster arp show` (the shared neighbour cache holds IPv6 hosts).
#[test]
fn ipv6_duravips_end_to_end() {
    let Some(lab) = Lab::new("ipv6_duravips_end_to_end", 4) else {
        return;
    };
    const NODES: [usize; 3] = [0, 1, 2];
    let vips: Vec<Ipv6Addr> = (0..4u16)
        .map(|k| Ipv6Addr::new(0xfd00, 0xc2, 0, 0, 0, 0, 0, 0x100 + k))
        .collect();
    let bindings: String = vips
        .iter()
        .enumerate()
        .map(|(k, v)| {
            format!("Binding \"v6vip{k}\" {{ Enable_Duravip = true Bind_Address = \"{v}\" }}\n")
        })
        .collect();
    let opts = "  view_mature_time = 0.5\n  view_balance_interval = 600\n  xdp = generic\n  \
                arp_cache_interval = 0.5\n  Topology \"fd00:c2::/64\" { interface = \"eth0\" }";
    for (i, host) in lab.hosts.iter().enumerate() {
        add6(&host.ns, &format!("fd00:c2::{}", i + 11));
    }
    let mut c = support::cluster::cluster(&lab, &bindings)
        .with_cluster_options(opts)
        .with_peers(NODES.len());
    for i in NODES {
        c.start(i);
    }
    for i in NODES {
        c.wait_members(i, &NODES);
    }
    let owners = cohort::lab::procs::wait_single_owners(&lab, &vips, &NODES);
    let client = lab.hosts[3].ns.clone();
    let node_mac = |i: usize| {
        in_netns(&lab.hosts[i].ns.clone(), || {
            xdp::interface_mac("eth0").expect("mac")
        })
    };
    // Each address answered with its owner's MAC (owners read again if placement moved).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut owners = owners;
    loop {
        let answered: Vec<Option<String>> = vips
            .iter()
            .map(|v| {
                // Forget this address alone (the others' entries stay for the move below).
                let _ = Command::new("ip")
                    .args([
                        "-n",
                        &client,
                        "-6",
                        "neigh",
                        "del",
                        &v.to_string(),
                        "dev",
                        "eth0",
                    ])
                    .output();
                solicit(&client, *v);
                neigh6_mac(&client, *v)
            })
            .collect();
        let want: Vec<Option<String>> = owners
            .iter()
            .map(|&o| Some(mac_text(node_mac(o))))
            .collect();
        if answered == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "answers {answered:?}, owners' MACs {want:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
        owners = cohort::lab::procs::wait_single_owners(&lab, &vips, &NODES);
    }
    // A move: the new owner's advertisement to all nodes updates the client's entry.
    let from = owners[0];
    let to = (from + 1) % 3;
    let (ok, text) = c.ctl(
        2,
        &format!("cluster duravip move {} to {}", vips[0], c.name(to)),
        false,
    );
    assert!(ok, "{text}");
    let want = Some(mac_text(node_mac(to)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while neigh6_mac(&client, vips[0]) != want {
        assert!(
            Instant::now() < deadline,
            "the client's entry for {} stayed {:?}",
            vips[0],
            neigh6_mac(&client, vips[0])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The shared neighbour cache: a fresh client address talks to node1 alone; node3 lists it.
    let client_ip = "fd00:c2::99";
    add6(&client, client_ip);
    let _ = Command::new("ip")
        .args(["netns", "exec", &client, "ping", "-6", "-c", "1", "-W", "2"])
        .args(["-I", client_ip, "fd00:c2::11"])
        .output();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = c
            .ctl_json(2, &["cluster", "arp", "show"])
            .expect("arp show");
        let listed = t["entries"]
            .as_array()
            .is_some_and(|es| es.iter().any(|e| e["ip"].as_str() == Some(client_ip)));
        if listed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node3 never listed the client {client_ip}: {t}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = neigh6_mac(&lab.hosts[2].ns, client_ip.parse().unwrap());
    let all = run(Command::new("ip").args([
        "-n",
        &lab.hosts[2].ns,
        "-6",
        "neigh",
        "show",
        "dev",
        "eth0",
    ]));
    assert_eq!(
        got,
        None,
        "node3's kernel knows the client by itself: {}",
        String::from_utf8_lossy(&all.stdout)
    );
    let text = c.ctl_text(2, &["cluster", "arp", "show"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("{client_ip:<16} [{}]  ", mac_text(node_mac(3))))),
        "{text}"
    );
}
