//! The DuraVIP data plane on real veths (root; skips otherwise): start-up removes stale addresses,
//! acquiring plumbs + announces + feeds XDP, the maintenance cycle re-plumbs an address that
//! disappeared once `if_down_limit` has passed, releasing removes it.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cohort::dataplane::DataPlane;
use cohort::lab::{Lab, in_netns, run};

fn addrs(ns: &str) -> String {
    String::from_utf8_lossy(
        &run(Command::new("ip").args(["-n", ns, "-4", "addr", "show", "dev", "eth0"])).stdout,
    )
    .to_string()
}

#[test]
fn acquire_maintain_release() {
    let Some(lab) = Lab::new("acquire_maintain_release", 2) else {
        return;
    };
    let o = lab.hosts[0].addr.octets();
    let vip = Ipv4Addr::new(o[0], o[1], o[2], 210);
    let stale = Ipv4Addr::new(o[0], o[1], o[2], 211);
    let client = lab.hosts[0].clone();
    let owner = lab.hosts[1].clone();
    run(Command::new("ip").args([
        "netns",
        "exec",
        &client.ns,
        "sysctl",
        "-qw",
        "net.ipv4.conf.eth0.arp_accept=1",
    ]));
    // A leftover from an earlier run.
    run(Command::new("ip").args([
        "-n",
        &owner.ns,
        "addr",
        "add",
        &format!("{stale}/32"),
        "dev",
        "eth0",
    ]));
    let text = format!(
        "cluster {{ if_down_limit = 0.2 if_check_interval = 0.1 garp_count = 2 garp_interval = 0.05 xdp = generic
           Topology \"{o0}.{o1}.{o2}.0/24\" {{ interface = \"eth0\" }} }}
         Binding \"a\" {{ Enable_Duravip = true Bind_Address = \"{vip}\" }}
         Binding \"b\" {{ Enable_Duravip = true Bind_Address = \"{stale}\" }}",
        o0 = o[0], o1 = o[1], o2 = o[2]
    );
    let cfg = cohort_engine::config::load_str(Path::new("dp.conf"), &text)
        .expect("valid")
        .config;
    let owner_ns = owner.ns.clone();
    in_netns(&owner.ns.clone(), move || {
        let t0 = Instant::now();
        let mut dp = DataPlane::start(&cfg, vec![IpAddr::V4(owner.addr)], t0).expect("start");
        assert_eq!(dp.stats.stale_removed, 1);
        assert!(
            !addrs(&owner_ns).contains(&stale.to_string()),
            "stale address removed at start-up"
        );
        assert!(
            dp.stats.xdp_unavailable.is_empty(),
            "{:?}",
            dp.stats.xdp_unavailable
        );

        dp.set_owned(&BTreeSet::from([IpAddr::V4(vip)]), t0);
        assert!(addrs(&owner_ns).contains(&format!("{vip}/32")));
        // Drive the loop until the announcement burst is out.
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            dp.tick(Instant::now());
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(dp.stats.arp_frames_sent, 2, "garp_count frames");

        // Someone removes the address behind our back: re-plumbed after if_down_limit.
        run(Command::new("ip").args([
            "-n",
            &owner_ns,
            "addr",
            "del",
            &format!("{vip}/32"),
            "dev",
            "eth0",
        ]));
        let deadline = Instant::now() + Duration::from_secs(3);
        while dp.stats.replumbed == 0 && Instant::now() < deadline {
            dp.tick(Instant::now());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(dp.stats.replumbed, 1);
        assert!(addrs(&owner_ns).contains(&format!("{vip}/32")));

        dp.set_owned(&BTreeSet::new(), Instant::now());
        assert!(!addrs(&owner_ns).contains(&vip.to_string()), "released");
        assert!(
            addrs(&owner_ns).contains(&owner.addr.to_string()),
            "main address untouched"
        );
        assert_eq!(
            (dp.stats.acquired, dp.stats.released, dp.stats.errors),
            (2, 1, 0)
        );
    });
    // The client learned the VIP's owner from the gratuitous ARP.
    let neigh = String::from_utf8_lossy(
        &run(Command::new("ip").args(["-n", &client.ns, "neigh", "show", &vip.to_string()])).stdout,
    )
    .to_string();
    assert!(neigh.contains("lladdr"), "client learned the VIP: {neigh}");
}
