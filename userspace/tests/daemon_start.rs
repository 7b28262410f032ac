//! `cohortd` started as a process on configurations that change how it starts: `enabled = false`
//! runs nothing and says so; `Security { user group }` runs the node as that user with only the
//! three capabilities it needs (root only: it skips without).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn cohortd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cohortd"))
}

/// A free UDP port on loopback.
fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

fn node_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let f = dir.join("node.conf");
    let text = format!(
        "cluster {{ nodename = \"n1\" }}\nmsgc_server {{ peers = [ n1 = \"127.0.0.1:{}\" ] }}\n\
         Control_Listener {{ Listen \"{}\" {{}} }}\n{extra}\n",
        free_port(),
        dir.join("n1.sock").display()
    );
    std::fs::write(&f, text).expect("write");
    f
}

#[test]
fn enabled_false_runs_nothing_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("off.conf");
    std::fs::write(&f, "cluster { enabled = false }\n").expect("write");
    let out = cohortd().arg("--config").arg(&f).output().expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the cluster module is disabled (cluster { enabled = false })"),
        "{err}"
    );
}

/// A field of `/proc/<pid>/status`.
fn status_field(pid: u32, field: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_owned())
}

#[test]
fn security_user_runs_the_node_with_three_capabilities() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP security_user_runs_the_node_with_three_capabilities: needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let f = node_config(
        dir.path(),
        "Security { user = \"nobody\" group = \"nogroup\" }",
    );
    let mut child = cohortd()
        .arg("--config")
        .arg(&f)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    let uid = loop {
        let uid = status_field(pid, "Uid:").unwrap_or_default();
        if uid.starts_with("65534") || Instant::now() > deadline {
            break uid;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let gid = status_field(pid, "Gid:").unwrap_or_default();
    let eff = status_field(pid, "CapEff:").unwrap_or_default();
    let prm = status_field(pid, "CapPrm:").unwrap_or_default();
    eprintln!("Uid {uid}, Gid {gid}, CapEff {eff}, CapPrm {prm}");
    let _ = child.kill();
    let out = child.wait_with_output().expect("exits");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !uid.is_empty() && uid.split_whitespace().all(|u| u == "65534"),
        "uid {uid:?}\n{log}"
    );
    assert!(
        !gid.is_empty() && gid.split_whitespace().all(|g| g == "65534"),
        "gid {gid:?}\n{log}"
    );
    let caps = |hex: &str| u64::from_str_radix(hex, 16).unwrap_or(0);
    // CAP_NET_ADMIN (12), CAP_NET_RAW (13), CAP_BPF (39), nothing else.
    let want = (1u64 << 12) | (1 << 13) | (1 << 39);
    assert_eq!(caps(&eff), want, "CapEff {eff}\n{log}");
    assert_eq!(caps(&prm), want, "CapPrm {prm}\n{log}");
}
