//! `cohortd` started as a process on configurations that change how it starts: `enabled = false`
//! runs nothing and says so; `Security { user group }` runs the node as that user with only the
//! three capabilities it needs (root only: it skips without).

mod support;

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

/// Under systemd (`Type=notify`): with `NOTIFY_SOCKET` and `WATCHDOG_USEC` set, a node sends
/// `READY=1` once it has a view and `WATCHDOG=1` from its event loop.
#[test]
fn ready_after_the_first_view_and_watchdog_from_the_loop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let f = node_config(dir.path(), "");
    let mut child = cohortd()
        .arg("--config")
        .arg(&f)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut ready, mut watchdogs) = (None, 0);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline && (ready.is_none() || watchdogs < 2) {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.contains("READY=1") {
                ready = Some(msg.clone());
            }
            watchdogs += usize::from(msg.contains("WATCHDOG=1"));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let ready = ready.expect("READY=1 within 20 s");
    assert!(ready.contains("STATUS=in view"), "{ready}");
    assert!(watchdogs >= 2, "{watchdogs} WATCHDOG=1");
}

/// Logs written to a file carry no terminal escape codes; `--log-format json` writes one JSON
/// object per line.
#[test]
fn logs_are_plain_text_or_json() {
    for json in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = node_config(dir.path(), "");
        let log = dir.path().join("node.log");
        let mut cmd = cohortd();
        cmd.arg("--config").arg(&f);
        if json {
            cmd.args(["--log-format", "json"]);
        }
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
            < 2
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        let text = std::fs::read_to_string(&log).expect("log");
        assert!(text.lines().count() >= 2, "{text}");
        assert!(!text.contains('\x1b'), "escape codes in {text}");
        if json {
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
                assert!(v["level"].is_string(), "{line}");
            }
        }
    }
}

/// `Metrics_Listener`: `GET /metrics` answers the Prometheus text format, which `promtool check
/// metrics` accepts (when promtool is installed: `ci/setup` installs it).
#[test]
fn metrics_are_served_in_the_prometheus_format() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let f = node_config(
        dir.path(),
        &format!("Metrics_Listener {{ Listen \"127.0.0.1:{port}\" {{}} }}"),
    );
    let mut child = cohortd()
        .arg("--config")
        .arg(&f)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let got = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
            let mut r = String::new();
            s.read_to_string(&mut r)?;
            Ok(r)
        });
        match got {
            Ok(r) if r.contains("cohort_view_members") => break r,
            _ if Instant::now() > deadline => panic!("no /metrics within 10 s: {got:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let (head, body) = body.split_once("\r\n\r\n").expect("HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    for name in [
        "cohort_view_members 1",
        "cohort_views_installed_total",
        "cohort_datagrams_received_total",
        "cohort_datagrams_dropped_total{reason=\"bad_mac\"}",
        "cohort_replication_messages_out_total",
        "cohort_uptime_seconds",
    ] {
        assert!(body.contains(name), "{name} in\n{body}");
    }
    support::promtool_check(body);
}
