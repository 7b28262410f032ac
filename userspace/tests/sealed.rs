//! `msgc_server { cluster_crypto = seal }` on a real 2-node cluster (root; skips otherwise): a
//! replicated update whose key is a known canary reaches the other node, and a capture of the
//! cluster traffic taken meanwhile (tcpdump on the lab's bridge) holds none of the canary's
//! bytes. The same run with `cluster_crypto = mac` finds the canary in its capture, which shows
//! the search would see a payload in clear. A sealed node and a MAC node do not form a cluster.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cohort::lab::Lab;

const CANARY: &str = "sealed-canary-7f3a9c0e51.example";

/// Runs the 2-node cluster in `mode`, bumps the canary on node1, waits for node2 to count it, and
/// returns the bytes tcpdump captured on the lab's bridge meanwhile.
fn capture(mode: &str) -> Option<Vec<u8>> {
    let lab = Lab::new(&format!("sealed_{mode}"), 2)?;
    let mut c = support::cluster::cluster(&lab, "")
        .with_cluster_options("  Replicate \"outbound_domains\" { max_delay = 0.05 }");
    let key = c.dir.path().join("cluster.key");
    std::fs::write(&key, b"a cluster key for the sealed test").expect("key");
    let options = format!(
        "msgc_server {{\n  cluster_key = \"{}\"\n  cluster_crypto = {mode}",
        key.display()
    );
    for i in 0..2 {
        c.edit_config(i, |t| t.replace("msgc_server {", &options));
    }
    c.start_all();
    c.wait_members(0, &[0, 1]);
    c.wait_members(1, &[0, 1]);
    let pcap = c.dir.path().join("capture.pcap");
    // On the lab's bridge: every datagram between the nodes crosses it (the switch namespace's
    // br0; inside a node's namespace the XDP program sees ingress before a capture does).
    let mut tcpdump = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.switch,
            "tcpdump",
            "-i",
            "br0",
            "--immediate-mode",
            "-U",
            "-n",
            "-w",
        ])
        .arg(&pcap)
        .arg("udp")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(c.dir.path().join("tcpdump.log")).expect("log"))
        .spawn()
        .expect("tcpdump runs (ci/setup installs it)");
    // tcpdump writes the file header once it listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&pcap).map_or(0, |m| m.len()) == 0 {
        assert!(Instant::now() < deadline, "tcpdump did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (ok, body) = c.ctl(
        0,
        &format!("cluster shared gauge incr outbound_domains {CANARY} 5"),
        false,
    );
    assert!(ok, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = c.ctl_text(
            1,
            &[
                "cluster",
                "shared",
                "gauge",
                "get",
                "outbound_domains",
                CANARY,
            ],
        );
        if got.trim().ends_with('5') {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{mode}: node2 never counted the canary ({got})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-INT", &tcpdump.id().to_string()])
        .status();
    let _ = tcpdump.wait();
    eprintln!(
        "{mode}: {}",
        std::fs::read_to_string(c.dir.path().join("tcpdump.log")).unwrap_or_default()
    );
    for i in 0..2 {
        let counters = c.counters(i);
        assert_eq!(
            counters["dropped_bad_mac"].as_u64(),
            Some(0),
            "{mode}: node{} refused datagrams",
            i + 1
        );
    }
    Some(std::fs::read(&pcap).expect("the capture"))
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_sealed_cluster_carries_no_payload_in_clear() {
    let Some(sealed) = capture("seal") else {
        return;
    };
    assert!(
        sealed.len() > 200,
        "the capture holds the cluster's traffic ({} bytes)",
        sealed.len()
    );
    assert!(
        !holds(&sealed, CANARY.as_bytes()),
        "the canary travelled in clear under cluster_crypto = seal"
    );
    let clear = capture("mac").expect("root");
    assert!(
        holds(&clear, CANARY.as_bytes()),
        "with cluster_crypto = mac the capture shows the canary: the search works"
    );
}

#[test]
fn sealed_and_mac_nodes_do_not_form_a_cluster() {
    let Some(lab) = Lab::new("sealed_mixed", 2) else {
        return;
    };
    let mut c = support::cluster::cluster(&lab, "");
    let key = c.dir.path().join("cluster.key");
    std::fs::write(&key, b"a cluster key for the sealed test").expect("key");
    for (i, mode) in [(0, "seal"), (1, "mac")] {
        let options = format!(
            "msgc_server {{\n  cluster_key = \"{}\"\n  cluster_crypto = {mode}",
            key.display()
        );
        c.edit_config(i, |t| t.replace("msgc_server {", &options));
    }
    c.start_all();
    std::thread::sleep(Duration::from_secs(3));
    for i in 0..2 {
        let members = c.members(i).unwrap_or_default();
        assert_eq!(members.len(), 1, "node{} formed {members:?}", i + 1);
        assert!(
            c.counters(i)["dropped_bad_mac"].as_u64().unwrap_or(0) > 0,
            "node{} counted the other's datagrams as refused",
            i + 1
        );
    }
}
