//! The namespace lab itself works: hosts reach each other over the bridge, a cut cable isolates a
//! host, and the nftables loss rule drops what it should. (Root; skips otherwise.)

mod support;

use std::net::UdpSocket;
use std::process::Command;

use support::netns::{Lab, run};

#[test]
fn hosts_reach_each_other_and_links_cut() {
    let Some(lab) = Lab::new("hosts_reach_each_other_and_links_cut", 3) else {
        return;
    };
    let ping = |from: usize, to: usize| {
        lab.cmd(from, "ping")
            .args(["-c", "1", "-W", "1", &lab.hosts[to].addr.to_string()])
            .output()
            .expect("ping runs")
            .status
            .success()
    };
    assert!(ping(0, 1));
    assert!(ping(2, 0));
    lab.link(1, false);
    assert!(!ping(0, 1), "a cut cable isolates the host");
    assert!(ping(0, 2), "the others still talk");
    lab.link(1, true);
    assert!(ping(0, 1), "restored");
}

#[test]
fn nft_loss_drops_every_datagram_at_100_percent() {
    let Some(lab) = Lab::new("nft_loss_drops_every_datagram_at_100_percent", 1) else {
        return;
    };
    lab.udp_loss(0, 4809, 100);
    // A receiver inside the namespace counts what arrives from 20 datagrams sent to itself.
    let script = "import socket\nr=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nr.bind(('0.0.0.0',4809))\nr.settimeout(0.3)\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n[s.sendto(b'x',(\"ADDR\",4809)) for _ in range(20)]\nn=0\ntry:\n  while True:\n    r.recv(10); n+=1\nexcept Exception:\n  pass\nprint(n)\n";
    let script = script.replace("ADDR", &lab.hosts[0].addr.to_string());
    let count = |lab: &Lab| -> u32 {
        let out = run(lab.cmd(0, "python3").args(["-c", &script]));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("count")
    };
    assert_eq!(count(&lab), 0, "100 % loss drops all");
    lab.udp_loss(0, 4809, 0);
    assert_eq!(count(&lab), 20, "rule removed, all arrive");
    // The socket API itself is untouched outside the namespace.
    let _ = UdpSocket::bind("127.0.0.1:0").expect("host stack unaffected");
    let _ = Command::new("true").status();
}
