//! DuraVIP end to end with real `cohortd` processes in network namespaces (root; skips otherwise):
//! three nodes and a client on one bridge, four DuraVIP addresses. Every address is plumbed on
//! exactly one node and the client's ARP requests are answered with that node's MAC; when an owner
//! is killed (kill -9 and its cable cut at the same instant), its addresses move to the survivors
//! and the client's ARP is answered by the new owner, through the XDP fast path.

mod support;

use support::cluster::{arping, mac};

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use cohort::lab::procs::Cluster;
use cohort::lab::{Lab, run};

fn owners(lab: &Lab, vips: &[Ipv4Addr], nodes: &[usize]) -> Vec<Vec<usize>> {
    cohort::lab::procs::vip_owners(lab, vips, nodes)
}

fn wait_single_owners(lab: &Lab, vips: &[Ipv4Addr], nodes: &[usize]) -> Vec<usize> {
    cohort::lab::procs::wait_single_owners(lab, vips, nodes)
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
    let left = cohort::lab::procs::plumbed(&lab, leaver);
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

/// Parses `aa:bb:cc:dd:ee:ff`.
fn mac_bytes(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (b, p) in m.iter_mut().zip(s.split(':')) {
        *b = u8::from_str_radix(p, 16).expect("hex MAC");
    }
    m
}

/// One ARP frame as seen on the wire.
#[derive(Debug)]
struct SeenArp {
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    op: u16,
    sender_ip: Ipv4Addr,
    target_mac: [u8; 6],
    target_ip: Ipv4Addr,
}

/// Captures ARP frames on `eth0` of the namespace `ns` (AF_PACKET) until one whose sender
/// address is `about` arrives or `within` passes; signals on `ready` once the socket is open.
fn capture_arp_about(
    ns: String,
    about: Ipv4Addr,
    within: Duration,
    ready: std::sync::mpsc::Sender<()>,
) -> Option<SeenArp> {
    cohort::lab::in_netns(&ns, move || {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let proto = (libc::ETH_P_ARP as u16).to_be() as i32;
        // SAFETY: plain socket(2), checked below.
        let fd =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd was just created and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: a valid timeval for SO_RCVTIMEO.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        ready.send(()).expect("test waits");
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 1600];
        while Instant::now() < deadline {
            // SAFETY: receives into a live buffer of its length.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 42 {
                continue;
            }
            let f = &buf[..n as usize];
            let ip = |o: usize| Ipv4Addr::new(f[o], f[o + 1], f[o + 2], f[o + 3]);
            let mac = |o: usize| -> [u8; 6] { f[o..o + 6].try_into().expect("6 bytes") };
            let seen = SeenArp {
                eth_dst: mac(0),
                eth_src: mac(6),
                op: u16::from_be_bytes([f[20], f[21]]),
                sender_ip: ip(28),
                target_mac: mac(32),
                target_ip: ip(38),
            };
            if seen.sender_ip == about {
                return Some(seen);
            }
        }
        None
    })
}

/// The shared ARP cache end to end (`arp_all_hosts = false`): the client talks to node1 only, so
/// only node1's kernel knows its MAC; node1 reports it, node3 lists it in `cluster arp show`, and
/// when node2 acquires an address it announces it with an ARP reply sent to the client alone.
/// Also: with XDP attached, the program's per-peer arrival stamps reach the failure detector.
#[test]
fn shared_arp_cache_targets_the_client_and_xdp_stamps_are_fed() {
    let Some(lab) = Lab::new("shared_arp_cache_targets_the_client", 4) else {
        return;
    };
    let (vips, bindings, opts) = cohort::lab::procs::duravip_setup(&lab, 121);
    let opts = format!("{opts}\n  arp_all_hosts = false\n  arp_cache_interval = 0.5\n");
    // The client is no peer, so no node's transport ever makes its kernel resolve the client.
    let mut c = support::cluster::cluster(&lab, &bindings)
        .with_cluster_options(&opts)
        .with_peers(NODES.len());
    for i in NODES {
        c.start(i);
    }
    for i in NODES {
        c.wait_members(i, &NODES);
    }
    let owners = wait_single_owners(&lab, &vips, &NODES);
    let client = lab.hosts[3].addr;
    let client_mac = mac(&lab, 3);
    let ping = lab
        .cmd(3, "ping")
        .args(["-c", "1", "-W", "2", &lab.hosts[0].addr.to_string()])
        .status()
        .expect("ping");
    assert!(ping.success(), "the client reaches node1");
    // node3 learns the client from node1's report.
    let deadline = Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let t = c
            .ctl_json(2, &["cluster", "arp", "show"])
            .expect("arp show");
        let entry = t["entries"]
            .as_array()
            .and_then(|es| {
                es.iter()
                    .find(|e| e["ip"].as_str() == Some(&client.to_string()))
            })
            .cloned();
        if let Some(e) = entry {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "node3's shared ARP cache never listed the client {client}: {t}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        listed["mac"].as_str(),
        Some(client_mac.as_str()),
        "{listed}"
    );
    // Not from node3's own kernel: it never talked to the client.
    let own = run(Command::new("ip").args([
        "-n",
        &lab.hosts[2].ns,
        "neigh",
        "show",
        &client.to_string(),
    ]));
    assert!(
        !String::from_utf8_lossy(&own.stdout).contains(&client_mac),
        "node3's kernel knows the client by itself"
    );
    let text = c.ctl_text(2, &["cluster", "arp", "show"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("{client:<16} [{client_mac}]  ")) && l.ends_with('s')),
        "docs' shape: {text}"
    );
    // node2 acquires an address it does not hold: the client gets a targeted ARP reply.
    let k = owners
        .iter()
        .position(|&o| o != 1)
        .expect("some address not on node2");
    let vip = vips[k];
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = lab.hosts[3].ns.clone();
    let cap = std::thread::spawn(move || capture_arp_about(ns, vip, Duration::from_secs(15), tx));
    rx.recv().expect("capture started");
    let node2 = c.name(1);
    let moved = c.ctl_text(
        1,
        &["cluster", "duravip", "move", &vip.to_string(), "to", &node2],
    );
    assert!(
        moved.starts_with("done: ") || moved.starts_with("requested: "),
        "{moved}"
    );
    let seen = cap
        .join()
        .expect("capture thread")
        .unwrap_or_else(|| panic!("the client saw no ARP about {vip} after the move to node2"));
    let node2_mac = mac_bytes(&mac(&lab, 1));
    assert_eq!(seen.eth_src, node2_mac, "{seen:?}");
    assert_eq!(
        seen.op, 2,
        "a reply, not a broadcast gratuitous request: {seen:?}"
    );
    assert_eq!(seen.eth_dst, mac_bytes(&client_mac), "{seen:?}");
    assert_eq!(
        (seen.target_mac, seen.target_ip),
        (mac_bytes(&client_mac), client),
        "{seen:?}"
    );
    assert!(
        owners_of(&lab, vip) == vec![1],
        "{vip} plumbed on node2 only"
    );
    // XDP stamped the peers' transport packets and the detector was given the stamps.
    for i in NODES {
        let counters = c.counters(i);
        let stamped = counters["xdp_transport_stamped"].as_u64().unwrap_or(0);
        let fed = counters["xdp_arrivals_fed"].as_u64().unwrap_or(0);
        assert!(stamped > 0 && fed > 0, "node{}: {counters}", i + 1);
        assert!(
            fed <= stamped,
            "each fed arrival is a stamped packet: {counters}"
        );
    }
}

fn owners_of(lab: &Lab, vip: Ipv4Addr) -> Vec<usize> {
    owners(lab, &[vip], &NODES).remove(0)
}

/// `xdp = native` on an interface whose driver has no native XDP (a bridge): the attach fails,
/// one log line says so, the console counts the interface as unavailable, and the kernel's own
/// ARP answers for the plumbed address.
#[test]
fn xdp_that_cannot_attach_leaves_arp_to_the_kernel() {
    let Some(lab) = Lab::new("xdp_that_cannot_attach_leaves_arp_to_the_kernel", 2) else {
        return;
    };
    // Node 1's address moves from its veth to a bridge above it: br0 is the Topology interface.
    let ns = &lab.hosts[0].ns;
    let addr = format!("{}/24", lab.hosts[0].addr);
    for args in [
        vec!["link", "add", "br0", "type", "bridge", "forward_delay", "0"],
        vec!["link", "set", "eth0", "master", "br0"],
        vec!["addr", "del", &addr, "dev", "eth0"],
        vec!["addr", "add", &addr, "dev", "br0"],
        vec!["link", "set", "br0", "up"],
    ] {
        let out = run(Command::new("ip").args(["-n", ns]).args(&args));
        assert!(out.status.success(), "ip {args:?}: {out:?}");
    }
    let o = lab.hosts[0].addr.octets();
    let vip = Ipv4Addr::new(o[0], o[1], o[2], 77);
    let binding = format!("Binding \"vip\" {{ Enable_Duravip = true Bind_Address = \"{vip}\" }}\n");
    let opts = format!(
        "  view_mature_time = 0.5\n  xdp = native\n  \
         Topology \"{}.{}.{}.0/24\" {{ interface = \"br0\" }}",
        o[0], o[1], o[2]
    );
    let mut c = support::cluster::cluster(&lab, &binding)
        .with_peers(1)
        .with_cluster_options(&opts);
    c.start(0);
    c.wait_members(0, &[0]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let on_bridge = || {
        let out = run(Command::new("ip").args(["-n", ns, "-4", "addr", "show", "dev", "br0"]));
        String::from_utf8_lossy(&out.stdout).contains(&format!("{vip}/32"))
    };
    while !on_bridge() {
        assert!(Instant::now() < deadline, "{vip} never plumbed on br0");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = run(Command::new("ip").args(["-n", ns, "link", "show", "br0"]));
    let bridge_mac = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("br0's MAC")
        .to_owned();
    assert_eq!(
        arping(&lab, 1, vip).as_deref(),
        Some(bridge_mac.as_str()),
        "the kernel answers for {vip} with the bridge's MAC"
    );
    let counters = c.counters(0);
    assert_eq!(
        (
            counters["xdp_interfaces_attached"].as_u64(),
            counters["xdp_interfaces_unavailable"].as_u64(),
            counters["xdp_arp_replied"].as_u64(),
        ),
        (Some(0), Some(1), Some(0)),
        "{counters}"
    );
    // One line, and only one, however long the node runs (the reconciliation does not retry).
    std::thread::sleep(Duration::from_secs(2));
    let log = cohort::lab::procs::read(&c.log(0));
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("XDP unavailable"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("br0") && lines[0].contains("the kernel answers ARP"),
        "{}",
        lines[0]
    );
}

/// `duravip_notify`: each node runs the program on every acquire (with the address, the interface
/// and its node name) and on every release, including the releases of a SIGTERM.
#[test]
fn duravip_notify_runs_on_acquire_and_release() {
    use std::os::unix::fs::PermissionsExt;
    let Some(lab) = Lab::new("duravip_notify_runs_on_acquire_and_release", 4) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("hook.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1 $2 $3 $COHORT_NODE\" >> {}/\"$COHORT_NODE\".events\n",
            dir.path().display()
        ),
    )
    .expect("write the hook");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (vips, bindings, mut opts) = cohort::lab::procs::duravip_setup(&lab, 151);
    opts.push_str(&format!("\n  duravip_notify = \"{}\"", script.display()));
    let mut c = support::cluster::cluster(&lab, &bindings).with_cluster_options(&opts);
    for i in NODES {
        c.start(i);
    }
    for i in NODES {
        c.wait_members(i, &NODES);
    }
    let owners = wait_single_owners(&lab, &vips, &NODES);
    let names: Vec<String> = (0..3).map(|i| c.name(i)).collect();
    let events = |i: usize| {
        std::fs::read_to_string(dir.path().join(format!("{}.events", names[i]))).unwrap_or_default()
    };
    // Every owner ran the hook for each of its addresses (hooks run asynchronously: wait).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let done = vips
            .iter()
            .zip(&owners)
            .all(|(v, &o)| events(o).contains(&format!("acquire {v} eth0 {}", names[o])));
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "hooks: {:?}", NODES.map(events));
        std::thread::sleep(Duration::from_millis(100));
    }
    let leaver = owners[0];
    let status = c.terminate(leaver);
    assert!(status.success());
    let text = events(leaver);
    for (v, &o) in vips.iter().zip(&owners) {
        if o == leaver {
            assert!(
                text.contains(&format!("release {v} eth0 {}", names[leaver])),
                "{text}"
            );
        }
    }
    // Every node still running (the same node may own both addresses, so `owners[1]` can be the
    // one that just left).
    for i in NODES.into_iter().filter(|&i| i != leaver) {
        let counters = c.counters(i);
        assert_eq!(
            counters["duravip_notify_failed"].as_u64(),
            Some(0),
            "{counters}"
        );
    }
}

/// `cluster duravip move` answers its outcome: `done` once the address has its new owner,
/// `refused: ... why` (an unknown node); the `from_host to_host` form moves every address of one
/// node; `cluster duravip debug on` shows in the state tables.
#[test]
fn console_moves_answer_their_outcome() {
    let Some(lab) = Lab::new("console_moves_answer_their_outcome", 4) else {
        return;
    };
    // No balancing round during the test (it would move addresses under the commands' feet).
    let (vips, bindings, opts) = cohort::lab::procs::duravip_setup(&lab, 161);
    let opts = opts.replace("view_balance_interval = 1", "view_balance_interval = 600");
    let mut c = support::cluster::cluster(&lab, &bindings).with_cluster_options(&opts);
    for i in NODES {
        c.start(i);
    }
    for i in NODES {
        c.wait_members(i, &NODES);
    }
    let owners = wait_single_owners(&lab, &vips, &NODES);
    let from = owners[0];
    let to = (from + 1) % 3;
    let (ok, text) = c.ctl(
        2,
        &format!("cluster duravip move {} to {}", vips[0], c.name(to)),
        false,
    );
    assert!(ok, "{text}");
    assert_eq!(text, format!("done: {} moved to {}\n", vips[0], c.name(to)));
    assert_eq!(owners_of(&lab, vips[0]), [to]);
    let (ok, text) = c.ctl(
        0,
        &format!("cluster duravip move {} to nosuch", vips[1]),
        false,
    );
    assert!(!ok);
    assert!(
        text.starts_with(&format!("refused: {} to nosuch: ", vips[1]))
            && text.contains("nosuch is not a member of view"),
        "{text}"
    );
    // Everything `to` owns goes to `from` (asked where the first move was seen done: elsewhere
    // its hand-off may still be reported in progress, a refusal of its own).
    let (ok, text) = c.ctl(
        2,
        &format!("cluster duravip move {} {}", c.name(to), c.name(from)),
        false,
    );
    assert!(ok, "{text}");
    // One line per address `to` owned (at least the one moved to it above), each done.
    assert!(!text.is_empty());
    assert!(
        text.lines()
            .all(|l| l.starts_with("done: ") && l.ends_with(&format!(" moved to {}", c.name(from)))),
        "{text}"
    );
    assert!(
        text.contains(&format!("done: {} moved to", vips[0])),
        "{text}"
    );
    // (Balancing rounds may move addresses back afterwards; every address keeps one owner.)
    wait_single_owners(&lab, &vips, &NODES);
    let (ok, text) = c.ctl(0, "cluster duravip debug on", false);
    assert!(ok, "{text}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !c
        .ctl_text(0, &["cluster", "duravip", "show", "tables"])
        .contains("debug=\"true\"")
    {
        assert!(Instant::now() < deadline, "debug on never showed");
        std::thread::sleep(Duration::from_millis(50));
    }
}
