//! Real `cohortd` processes in network namespaces (root; skips otherwise): three nodes form one
//! view; kill -9 of one gives a 2-node view on both survivors; a restart rejoins as a new
//! incarnation; a cut cable gives two views and restoring it one; SIGTERM leaves gracefully;
//! forged datagrams are dropped and counted.

mod support;

use cohort::lab::Lab;
use support::cluster::Cluster;

fn private_name(c: &Cluster<'_>, observer: usize, node: &str) -> String {
    let v = c
        .ctl_json(observer, &["cluster", "membership"])
        .expect("membership");
    v["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["node_name"] == node)
        .and_then(|m| m["private_name"].as_str())
        .expect("member listed")
        .to_owned()
}

/// Adds `cluster_key` to the msgc_server scope of the first `n` nodes' configurations.
fn with_cluster_key(c: &Cluster<'_>, key: &std::path::Path, n: usize) {
    for i in 0..n {
        let text = std::fs::read_to_string(c.config_path(i)).expect("config");
        let text = text.replace(
            "msgc_server {",
            &format!("msgc_server {{\n  cluster_key = \"{}\"", key.display()),
        );
        std::fs::write(c.config_path(i), text).expect("config");
    }
}

#[test]
fn three_nodes_crash_restart_and_agree() {
    crash_restart_and_agree("syscall");
}

/// The same with the io_uring driver in every node's loop (`udp_driver = uring`).
#[test]
fn three_nodes_crash_restart_and_agree_over_io_uring() {
    crash_restart_and_agree("uring");
}

fn crash_restart_and_agree(driver: &str) {
    let Some(lab) = Lab::new(&format!("three_nodes_crash_restart_and_agree_{driver}"), 3) else {
        return;
    };
    let mut c =
        support::cluster::cluster(&lab, "").with_msgc_options(&format!("udp_driver = {driver}"));
    c.start_all();
    let v0 = c.wait_members(0, &[0, 1, 2]);
    let v1 = c.wait_members(1, &[0, 1, 2]);
    let v2 = c.wait_members(2, &[0, 1, 2]);
    assert!(
        v0 == v1 && v1 == v2,
        "same members in the same order: {v0:?} {v1:?} {v2:?}"
    );
    let before = private_name(&c, 0, "node3");

    c.kill(2);
    let s0 = c.wait_members(0, &[0, 1]);
    let s1 = c.wait_members(1, &[0, 1]);
    assert_eq!(s0, s1, "survivors agree");

    c.start(2);
    c.wait_members(0, &[0, 1, 2]);
    c.wait_members(1, &[0, 1, 2]);
    c.wait_members(2, &[0, 1, 2]);
    assert_ne!(
        private_name(&c, 0, "node3"),
        before,
        "a restarted node is a new incarnation"
    );
}

#[test]
fn partition_gives_two_views_and_heals_into_one() {
    let Some(lab) = Lab::new("partition_gives_two_views_and_heals_into_one", 3) else {
        return;
    };
    let mut c = support::cluster::cluster(&lab, "");
    c.start_all();
    for i in 0..3 {
        c.wait_members(i, &[0, 1, 2]);
    }
    lab.link(2, false);
    c.wait_members(0, &[0, 1]);
    c.wait_members(1, &[0, 1]);
    c.wait_members(2, &[2]);
    lab.link(2, true);
    for i in 0..3 {
        c.wait_members(i, &[0, 1, 2]);
    }
}

#[test]
fn sigterm_leaves_gracefully() {
    let Some(lab) = Lab::new("sigterm_leaves_gracefully", 3) else {
        return;
    };
    let mut c = support::cluster::cluster(&lab, "");
    c.start_all();
    for i in 0..3 {
        c.wait_members(i, &[0, 1, 2]);
    }
    let status = c.terminate(1);
    assert!(status.success(), "cohortd exits 0 on SIGTERM: {status:?}");
    c.wait_members(0, &[0, 2]);
    c.wait_members(2, &[0, 2]);
    // A graceful leave is not a failure: the survivors did not have to suspect anyone.
    let log = support::cluster::read(&c.log(1));
    assert!(log.contains("left the cluster"), "{log}");
}

#[test]
fn forged_datagrams_are_dropped_and_counted_with_a_cluster_key() {
    let Some(lab) = Lab::new(
        "forged_datagrams_are_dropped_and_counted_with_a_cluster_key",
        4,
    ) else {
        return;
    };
    let key = tempfile::NamedTempFile::new().expect("key file");
    std::fs::write(key.path(), b"correct horse battery staple, the cluster key")
        .expect("write key");
    // Three members; host 4 is an outsider on the same switch.
    let mut c = support::cluster::cluster(&lab, "");
    c.nodes.truncate(3);
    // The key goes into msgc_server: rewrite the configurations with it.
    with_cluster_key(&c, key.path(), 3);
    for i in 0..3 {
        c.start(i);
    }
    for i in 0..3 {
        c.wait_members(i, &[0, 1, 2]);
    }
    let before = c.counters(0);
    // 50 forged datagrams of assorted sizes from the outsider to node1's transport port.
    let target = lab.hosts[0].addr;
    let script = format!(
        "import socket,os\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n[s.sendto(os.urandom(1+i*17%1200),('{target}',4809)) for i in range(50)]\n"
    );
    let st = lab
        .cmd(3, "python3")
        .args(["-c", &script])
        .status()
        .expect("python");
    assert!(st.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let after = c.counters(0);
        let dropped = |v: &serde_json::Value| {
            v["dropped_bad_mac"].as_u64().unwrap_or(0)
                + v["dropped_undecodable"].as_u64().unwrap_or(0)
        };
        if dropped(&after) >= dropped(&before) + 50 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "forged datagrams not all counted: {after}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Membership unaffected.
    c.wait_members(0, &[0, 1, 2]);
}

#[test]
fn cluster_reset_rejoins_as_a_new_incarnation() {
    let Some(lab) = Lab::new("cluster_reset_rejoins_as_a_new_incarnation", 3) else {
        return;
    };
    let mut c = support::cluster::cluster(&lab, "");
    c.start_all();
    for i in 0..3 {
        c.wait_members(i, &[0, 1, 2]);
    }
    let views = |c: &Cluster<'_>| {
        c.counters(0)["views_installed"]
            .as_u64()
            .expect("views_installed")
    };
    let before = views(&c);
    // The failure detector's local health is among the counters (a formed, idle cluster on
    // this machine reads 0 within a few seconds; cohort-bench failover waits for that).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while c.counters(0)["local_health"]
        .as_u64()
        .expect("local_health")
        != 0
    {
        assert!(std::time::Instant::now() < deadline, "local health never 0");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = c.ctl_json(1, &["cluster", "reset"]);
    let _ = out; // the text answer is not JSON; the views below are the evidence
    // node1 sees node2 leave and come back: at least two more views, and all three again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while views(&c) < before + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no new views after reset"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for i in 0..3 {
        c.wait_members(i, &[0, 1, 2]);
    }
}

/// Enters network namespace `ns` on the calling thread.
fn enter(ns: &str) {
    use std::os::fd::AsFd;
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns");
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// Captures, inside `ns`, one UDP datagram from `src` to port 4809: its UDP payload.
fn capture_one(ns: String, src: std::net::Ipv4Addr) -> Vec<u8> {
    use smoltcp::wire::{IpProtocol, Ipv4Packet, UdpPacket};
    std::thread::spawn(move || {
        enter(&ns);
        let proto = (libc::ETH_P_IP as u16).to_be() as i32;
        // SAFETY: plain socket(2); checked.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, proto) };
        assert!(fd >= 0, "AF_PACKET socket");
        let mut buf = vec![0u8; 65536];
        for _ in 0..10_000 {
            // SAFETY: reads into a live buffer of the given length.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                continue;
            }
            let Ok(ip) = Ipv4Packet::new_checked(&buf[..n as usize]) else {
                continue;
            };
            if ip.src_addr() != src || ip.next_header() != IpProtocol::Udp {
                continue;
            }
            let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
                continue;
            };
            if udp.dst_port() == 4809 && udp.src_port() == 4809 && udp.payload().len() > 40 {
                let p = udp.payload().to_vec();
                // SAFETY: closes the descriptor opened above.
                unsafe { libc::close(fd) };
                return p;
            }
        }
        panic!("no transport datagram captured");
    })
    .join()
    .expect("capture thread")
}

/// Sends `payload` `times` times from inside `ns` as a UDP datagram from port 4809 to `dst`:4809,
/// through a raw socket (the daemon in `ns` holds port 4809), so it looks exactly like the original.
fn replay(ns: String, dst: std::net::Ipv4Addr, payload: Vec<u8>, times: usize) {
    std::thread::spawn(move || {
        enter(&ns);
        // SAFETY: plain socket(2); checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP) };
        assert!(fd >= 0, "raw socket");
        let mut udp = Vec::with_capacity(8 + payload.len());
        udp.extend_from_slice(&4809u16.to_be_bytes());
        udp.extend_from_slice(&4809u16.to_be_bytes());
        udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]); // no checksum (allowed for UDP over IPv4)
        udp.extend_from_slice(&payload);
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(dst.octets()),
            },
            sin_zero: [0; 8],
        };
        for _ in 0..times {
            // SAFETY: sends a live buffer to a valid sockaddr_in.
            let n = unsafe {
                libc::sendto(
                    fd,
                    udp.as_ptr().cast(),
                    udp.len(),
                    0,
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                )
            };
            assert_eq!(n as usize, udp.len(), "raw send");
        }
        // SAFETY: closes the descriptor opened above.
        unsafe { libc::close(fd) };
    })
    .join()
    .expect("replay thread");
}

#[test]
fn replayed_datagrams_are_dropped_and_counted() {
    let Some(lab) = Lab::new("replayed_datagrams_are_dropped_and_counted", 3) else {
        return;
    };
    let key = tempfile::NamedTempFile::new().expect("key file");
    std::fs::write(key.path(), b"another cluster key, long enough for BLAKE3").expect("write key");
    let mut c = support::cluster::cluster(&lab, "");
    with_cluster_key(&c, key.path(), 3);
    c.start_all();
    for i in 0..3 {
        c.wait_members(i, &[0, 1, 2]);
    }
    // A genuine, correctly authenticated datagram from node2 to node1, captured on the way in...
    let captured = capture_one(lab.hosts[0].ns.clone(), lab.hosts[1].addr);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = c.counters(0)["dropped_replay"]
        .as_u64()
        .expect("dropped_replay");
    // ...sent again ten times from node2's own address and port.
    replay(lab.hosts[1].ns.clone(), lab.hosts[0].addr, captured, 10);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = c.counters(0)["dropped_replay"]
            .as_u64()
            .expect("dropped_replay");
        if now >= before + 10 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replays not all dropped: {} -> {now}",
            before
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    c.wait_members(0, &[0, 1, 2]);
}

/// Field `n` (1-based, as proc(5) numbers them) of a task's `stat`.
fn stat_field(stat: &str, n: usize) -> i64 {
    // The command name may hold spaces; fields after it start at the last ')'.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    rest.split_whitespace()
        .nth(n - 3)
        .and_then(|f| f.parse().ok())
        .expect("numeric field")
}

#[test]
fn running_daemon_keeps_three_capabilities_and_a_raised_loop() {
    let Some(lab) = Lab::new(
        "running_daemon_keeps_three_capabilities_and_a_raised_loop",
        1,
    ) else {
        return;
    };
    let mut c = support::cluster::cluster(&lab, "");
    c.start(0);
    c.wait_members(0, &[0]);
    // A console connection is open, so its thread exists too.
    let _ = c.ctl(0, "cluster info", false);
    let pid = c.nodes[0].as_ref().expect("running").id();
    // CAP_NET_ADMIN (12), CAP_NET_RAW (13), CAP_BPF (39).
    let runtime: u64 = (1 << 12) | (1 << 13) | (1 << 39);
    let mut tasks = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let dir = task.expect("task").path();
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        if status.is_empty() || stat.is_empty() {
            continue; // the thread ended meanwhile
        }
        let cap = |name: &str| {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .expect("cap line");
            u64::from_str_radix(line.split_whitespace().nth(1).expect("value"), 16).expect("hex")
        };
        let name = status.lines().next().unwrap_or("").to_owned();
        assert_eq!(cap("CapEff:"), runtime, "{}: {name}", dir.display());
        assert_eq!(cap("CapPrm:"), runtime, "{}: {name}", dir.display());
        assert_eq!(cap("CapInh:"), 0, "{}: {name}", dir.display());
        let tid: u32 = dir
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| f.parse().ok())
            .expect("tid");
        // Field 19 is the nice value: the event loop runs on the main thread at loop_nice
        // (default -4); the console's and every other thread at the default.
        let nice = stat_field(&stat, 19);
        if tid == pid {
            let log = support::cluster::read(&c.log(0));
            assert_eq!(nice, -4, "the event loop's nice: {stat}\n{log}");
        } else {
            assert_eq!(nice, 0, "every other thread at the default: {name}: {stat}");
        }
        tasks += 1;
    }
    assert!(
        tasks >= 3,
        "the loop, the console acceptor and a connection"
    );
    let log = support::cluster::read(&c.log(0));
    assert!(log.contains("event loop priority set"), "{log}");
}
