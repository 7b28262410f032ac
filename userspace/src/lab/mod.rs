//! The network-namespace lab used by the multi-node tests, the benchmarks and (in shell form)
//! `ci/demo`. A lab is made of namespaces: one "switch" namespace holding a bridge, and one namespace
//! per host, each wired to the bridge by a veth pair (`eth0` inside the host). Addresses are
//! `10.<net>.0.<n>/24`, inside namespaces this lab created and nowhere else. Dropping the lab
//! deletes every namespace (and with them the veths and anything still running inside is left to
//! the caller's `Child` handles).
//!
//! Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN); [`Lab::new`] returns `None` with a message otherwise,
//! so tests skip cleanly.

use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub mod inproc;
pub mod procs;

/// Whether this process may build namespaces.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `f` on a new thread that has entered network namespace `ns` (setns is per thread), and
/// returns its result.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        inproc::enter(&ns);
        f()
    })
    .join()
    .expect("the thread inside the namespace panicked")
}

/// Runs a command, panicking with its output if it fails: lab set-up must not half-succeed, and
/// the lab only serves tests and benchmarks, where a panic is the report.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) -> Output {
    run(Command::new("ip").args(args))
}

/// One host of the lab.
#[derive(Clone, Debug)]
pub struct Host {
    pub ns: String,
    pub addr: Ipv4Addr,
    /// The veth end on the switch side (for link down / up).
    pub port: String,
}

pub struct Lab {
    pub tag: String,
    pub switch: String,
    pub hosts: Vec<Host>,
    net: u8,
}

impl Lab {
    /// A lab with `n` hosts on one bridge, or `None` (with a message) when not root.
    pub fn new(test: &str, n: usize) -> Option<Lab> {
        if !is_root() {
            eprintln!("SKIP {test}: needs root to create network namespaces");
            return None;
        }
        let seq = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("ch{}x{}", pid % 100_000, seq);
        // A distinct /24 per lab so concurrent labs never share addresses.
        let net = (100 + (pid + seq * 7) % 150) as u8;
        let switch = format!("{tag}sw");
        ip(&["netns", "add", &switch]);
        let mut lab = Lab {
            tag: tag.clone(),
            switch: switch.clone(),
            hosts: Vec::new(),
            net,
        };
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        ip(&["-n", &switch, "link", "set", "lo", "up"]);
        for i in 1..=n {
            lab.add_host(i);
        }
        Some(lab)
    }

    fn add_host(&mut self, i: usize) {
        let ns = format!("{}h{i}", self.tag);
        let port = format!("p{i}");
        let addr = Ipv4Addr::new(10, self.net, 0, i as u8);
        ip(&["netns", "add", &ns]);
        ip(&[
            "-n",
            &self.switch,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ]);
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &port,
            "master",
            "br0",
            "up",
        ]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        self.hosts.push(Host { ns, addr, port });
    }

    /// A command run inside host `i` (0-based).
    pub fn cmd(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.hosts[i].ns, program]);
        c.stdin(Stdio::null());
        c
    }

    /// Cuts (or restores) host `i`'s cable at the switch.
    pub fn link(&self, i: usize, up: bool) {
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &self.hosts[i].port,
            if up { "up" } else { "down" },
        ]);
    }

    /// Drops a random `percent` (1..=100) of UDP datagrams to `port` arriving at host `i`
    /// (nftables `numgen random`: this kernel has no netem). `percent = 0` removes the rule.
    pub fn udp_loss(&self, i: usize, port: u16, percent: u32) {
        let ns = &self.hosts[i].ns;
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "nft",
                "delete",
                "table",
                "inet",
                "cohortlab",
            ])
            .output();
        if percent == 0 {
            return;
        }
        let nft = |args: &[&str]| {
            run(Command::new("ip")
                .args(["netns", "exec", ns, "nft"])
                .args(args))
        };
        nft(&["add", "table", "inet", "cohortlab"]);
        nft(&[
            "add chain inet cohortlab input { type filter hook input priority 0; policy accept; }",
        ]);
        let rule = if percent >= 100 {
            format!("add rule inet cohortlab input udp dport {port} drop")
        } else {
            format!(
                "add rule inet cohortlab input udp dport {port} numgen random mod 100 lt {percent} drop"
            )
        };
        nft(&[&rule]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", &h.ns]).output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.switch])
            .output();
    }
}
