//! A cluster of real `cohortd` processes, one per host of a [`Lab`], each with its own
//! configuration file, console socket and log; queried through the console protocol. For tests
//! and benchmarks: failures panic, and the panic is the report.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Lab;
use crate::console::client::{Client, Endpoint};

pub struct Cluster<'a> {
    pub lab: &'a Lab,
    /// The `cohortd` binary to run.
    pub cohortd: PathBuf,
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Option<Child>>,
    /// Extra text appended to every node's configuration.
    pub extra: String,
    /// Extra text inside every node's `cluster { }` scope.
    pub cluster_extra: String,
    /// Extra text inside every node's `msgc_server { }` scope.
    pub msgc_extra: String,
    /// How many of the lab's hosts (the first ones) are peers in the configurations; all if
    /// `None`. A host left out is a pure client: no node ever sends to it unasked.
    pub peers: Option<usize>,
}

impl<'a> Cluster<'a> {
    /// Writes the configurations; starts nothing.
    pub fn new(lab: &'a Lab, cohortd: &Path, extra: &str) -> Cluster<'a> {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Cluster {
            lab,
            cohortd: cohortd.to_path_buf(),
            dir,
            nodes: (0..lab.hosts.len()).map(|_| None).collect(),
            extra: extra.to_owned(),
            cluster_extra: String::new(),
            msgc_extra: String::new(),
            peers: None,
        };
        for i in 0..lab.hosts.len() {
            std::fs::write(c.config_path(i), c.config_text(i)).expect("write config");
        }
        c
    }

    /// Adds `text` inside every node's `cluster { }` scope (configurations are rewritten).
    pub fn with_cluster_options(mut self, text: &str) -> Self {
        self.cluster_extra = text.to_owned();
        for i in 0..self.lab.hosts.len() {
            std::fs::write(self.config_path(i), self.config_text(i)).expect("write config");
        }
        self
    }

    /// Adds `text` inside every node's `msgc_server { }` scope (configurations are rewritten).
    pub fn with_msgc_options(mut self, text: &str) -> Self {
        self.msgc_extra = text.to_owned();
        for i in 0..self.lab.hosts.len() {
            std::fs::write(self.config_path(i), self.config_text(i)).expect("write config");
        }
        self
    }

    /// Only the first `n` hosts are peers (configurations are rewritten).
    pub fn with_peers(mut self, n: usize) -> Self {
        self.peers = Some(n);
        for i in 0..self.lab.hosts.len() {
            std::fs::write(self.config_path(i), self.config_text(i)).expect("write config");
        }
        self
    }

    pub fn name(&self, i: usize) -> String {
        format!("node{}", i + 1)
    }

    pub fn config_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.conf", self.name(i)))
    }

    pub fn socket(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.sock", self.name(i)))
    }

    pub fn log(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.name(i)))
    }

    fn config_text(&self, i: usize) -> String {
        let peers: String = self
            .lab
            .hosts
            .iter()
            .enumerate()
            .take(self.peers.unwrap_or(usize::MAX))
            .map(|(j, h)| format!("    {} = \"{}\"\n", self.name(j), h.addr))
            .collect();
        format!(
            "cluster {{\n  nodename = \"{name}\"\n{cluster_extra}\n}}\nmsgc_server {{\n  peers = [\n{peers}  ]\n{msgc_extra}\n}}\n\
             Control_Listener {{ Listen \"{sock}\" {{}} }}\nECCluster_Listener {{ Listen \"{addr}:4802\" {{}} }}\n{extra}\n",
            name = self.name(i),
            cluster_extra = self.cluster_extra,
            msgc_extra = self.msgc_extra,
            sock = self.socket(i).display(),
            addr = self.lab.hosts[i].addr,
            extra = self.extra,
        )
    }

    /// Starts node `i` (again, if it was killed): a new process, hence a new incarnation.
    pub fn start(&mut self, i: usize) {
        self.start_with(i, &[]);
    }

    /// Starts host `i` as the cluster manager (`cohortd --manager`, eccmgr).
    pub fn start_manager(&mut self, i: usize) {
        self.start_with(i, &["--manager"]);
    }

    /// Starts host `i` with extra `cohortd` arguments.
    pub fn start_with(&mut self, i: usize, args: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .expect("log");
        let child = self
            .lab
            .cmd(i, &self.cohortd.to_string_lossy())
            .args(args)
            .arg("--config")
            .arg(self.config_path(i))
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().expect("log fd")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("cohortd starts");
        self.nodes[i] = Some(child);
    }

    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    /// kill -9.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` (as `kill` spells it: `-STOP`, `-CONT`) to node `i`'s process.
    pub fn signal(&self, i: usize, sig: &str) {
        let pid = self.nodes[i]
            .as_ref()
            .expect("process runs")
            .id()
            .to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self, i: usize) -> std::process::ExitStatus {
        let mut c = self.nodes[i].take().expect("node running");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        c.wait().expect("exit status")
    }

    /// `<cmd>` on node `i`'s console: the status and the body as text.
    pub fn ctl(&self, i: usize, cmd: &str, json: bool) -> (bool, String) {
        let mut c = Client::connect(&Endpoint::parse(&self.socket(i).to_string_lossy()))
            .expect("console reachable");
        let r = c.run(cmd, json).expect("console answers");
        (
            r.status == cohort_engine::console::protocol::Status::Ok,
            String::from_utf8_lossy(&r.body).into_owned(),
        )
    }

    /// Rewrites host `i`'s configuration with `edit` applied to its text.
    pub fn edit_config(&self, i: usize, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(self.config_path(i)).expect("config");
        std::fs::write(self.config_path(i), edit(text)).expect("config");
    }

    /// `<cmd> --json` on node `i`'s console.
    pub fn ctl_json(&self, i: usize, cmd: &[&str]) -> Option<serde_json::Value> {
        let mut c = Client::connect(&Endpoint::parse(&self.socket(i).to_string_lossy())).ok()?;
        let r = c.run(&cmd.join(" "), true).ok()?;
        if r.status != cohort_engine::console::protocol::Status::Ok {
            return None;
        }
        serde_json::from_slice(&r.body).ok()
    }

    /// `<cmd>` on node `i`'s console: the text it prints (an error's message too).
    pub fn ctl_text(&self, i: usize, cmd: &[&str]) -> String {
        let mut c = Client::connect(&Endpoint::parse(&self.socket(i).to_string_lossy()))
            .expect("console connects");
        let r = c.run(&cmd.join(" "), false).expect("console answers");
        String::from_utf8_lossy(&r.body).into_owned()
    }

    /// Node names of node `i`'s current view, in view order.
    pub fn members(&self, i: usize) -> Option<Vec<String>> {
        let v = self.ctl_json(i, &["cluster", "membership"])?;
        v["members"].as_array().map(|ms| {
            ms.iter()
                .filter_map(|m| m["node_name"].as_str().map(str::to_owned))
                .collect()
        })
    }

    /// Waits (bounded) until node `i`'s view has exactly the members `want` (any order).
    pub fn wait_members(&self, i: usize, want: &[usize]) -> Vec<String> {
        let mut want_names: Vec<String> = want.iter().map(|&j| self.name(j)).collect();
        want_names.sort();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(m) = self.members(i) {
                let mut sorted = m.clone();
                sorted.sort();
                if sorted == want_names {
                    return m;
                }
                last = Some(m);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} never saw {:?} (last view {:?}); its log:\n{}",
            self.name(i),
            want_names,
            last,
            std::fs::read_to_string(self.log(i)).unwrap_or_default()
        );
    }

    pub fn counters(&self, i: usize) -> serde_json::Value {
        self.ctl_json(i, &["cluster", "counters"])
            .expect("counters")
    }
}

impl Drop for Cluster<'_> {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        // A failing test gets the end of every node's log: views, warnings, errors.
        if std::thread::panicking() {
            for i in 0..self.nodes.len() {
                let log = std::fs::read_to_string(self.log(i)).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                eprintln!(
                    "--- {} log (last {} lines):\n{}",
                    self.name(i),
                    tail.len(),
                    tail.join("\n")
                );
            }
        }
    }
}

/// For each address of `vips`, the hosts among `nodes` that have it plumbed (as a /32 or a /128).
pub fn vip_owners<A: Copy + Into<std::net::IpAddr>>(
    lab: &Lab,
    vips: &[A],
    nodes: &[usize],
) -> Vec<Vec<usize>> {
    let v6 = vips.iter().any(|v| (*v).into().is_ipv6());
    let addrs: Vec<(usize, String)> = nodes
        .iter()
        .map(|&i| {
            let mut a = plumbed(lab, i);
            if v6 {
                a.push_str(&plumbed6(lab, i));
            }
            (i, a)
        })
        .collect();
    vips.iter()
        .map(|v| {
            let v: std::net::IpAddr = (*v).into();
            let host = if v.is_ipv6() { 128 } else { 32 };
            addrs
                .iter()
                .filter(|(_, a)| a.contains(&format!("{v}/{host}")))
                .map(|(i, _)| *i)
                .collect()
        })
        .collect()
}

/// Waits (bounded, 40 s) until every address of `vips` is plumbed on exactly one of `nodes` (a
/// move in progress may briefly leave one unplumbed); returns each address's owner.
pub fn wait_single_owners<A: Copy + Into<std::net::IpAddr>>(
    lab: &Lab,
    vips: &[A],
    nodes: &[usize],
) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let o = vip_owners(lab, vips, nodes);
        if o.iter().all(|x| x.len() == 1) {
            return o.into_iter().map(|x| x[0]).collect();
        }
        assert!(
            Instant::now() < deadline,
            "addresses never each had one owner: {o:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The IPv6 addresses on host `i`'s `eth0`, as `ip -6 addr show` prints them.
pub fn plumbed6(lab: &Lab, i: usize) -> String {
    let out = super::run(Command::new("ip").args([
        "-n",
        &lab.hosts[i].ns,
        "-6",
        "addr",
        "show",
        "dev",
        "eth0",
    ]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The IPv4 addresses on host `i`'s `eth0`, as `ip -4 addr show` prints them.
pub fn plumbed(lab: &Lab, i: usize) -> String {
    let out = super::run(Command::new("ip").args([
        "-n",
        &lab.hosts[i].ns,
        "-4",
        "addr",
        "show",
        "dev",
        "eth0",
    ]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The MAC address of host `i`'s `eth0` (`aa:bb:...`, lower case).
pub fn mac(lab: &Lab, i: usize) -> String {
    let out = super::run(Command::new("ip").args(["-n", &lab.hosts[i].ns, "link", "show", "eth0"]));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("MAC")
        .to_owned()
}

/// Two ARP requests for `ip` from `eth0` in the namespace `ns` (arping): the MAC of the first
/// reply (lower case), if any came within two seconds.
pub fn arping_in(ns: &str, ip: std::net::Ipv4Addr) -> Option<String> {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "arping", "-c", "2", "-w", "2", "-I", "eth0",
        ])
        .arg(ip.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("arping runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.contains("reply from"))
        .and_then(|l| l.split('[').nth(1))
        .and_then(|r| r.split(']').next())
        .map(|m| m.to_ascii_lowercase())
}

/// [`arping_in`] from host `from` of the lab.
pub fn arping(lab: &Lab, from: usize, ip: std::net::Ipv4Addr) -> Option<String> {
    arping_in(&lab.hosts[from].ns, ip)
}

/// Reads a file, or "" when absent.
pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// A DuraVIP set-up for a lab: four addresses `first..first+4` on the lab's network as
/// `Enable_Duravip` bindings (the text to append to each node's configuration), and the `cluster`
/// options that place them on `eth0` with fast maturity and balancing and generic XDP.
pub fn duravip_setup(lab: &Lab, first: u8) -> (Vec<std::net::Ipv4Addr>, String, String) {
    let o = lab.hosts[0].addr.octets();
    let vips: Vec<std::net::Ipv4Addr> = (first..first + 4)
        .map(|n| std::net::Ipv4Addr::new(o[0], o[1], o[2], n))
        .collect();
    let bindings: String = vips
        .iter()
        .enumerate()
        .map(|(k, v)| {
            format!("Binding \"vip{k}\" {{ Enable_Duravip = true Bind_Address = \"{v}\" }}\n")
        })
        .collect();
    let cluster_opts = format!(
        "  view_mature_time = 0.5\n  view_balance_interval = 1\n  duravip_balance_set_size = 4\n  xdp = generic\n  \
         Topology \"{}.{}.{}.0/24\" {{ interface = \"eth0\" }}",
        o[0], o[1], o[2]
    );
    (vips, bindings, cluster_opts)
}

/// DuraVIP at scale for a lab: `count` addresses from `10.<lab>.16.0` upwards (outside the lab's
/// /24, inside its /16; at most 10,240) and the `cluster` options that place them on `eth0` with
/// fast maturity, a balancing round that may move every address at once, and generic XDP. A
/// client reaches them after [`route_vips`].
pub fn duravip_many(lab: &Lab, count: usize) -> (Vec<std::net::Ipv4Addr>, String) {
    let o = lab.hosts[0].addr.octets();
    let vips = (0..count.min(40 * 256))
        .map(|k| std::net::Ipv4Addr::new(o[0], o[1], 16 + (k / 256) as u8, (k % 256) as u8))
        .collect();
    let opts = format!(
        "  view_mature_time = 0.5\n  view_balance_interval = 1\n  duravip_balance_set_size = {}\n  \
         xdp = generic\n  Topology \"{}.{}.0.0/16\" {{ interface = \"eth0\" }}",
        count.max(2),
        o[0],
        o[1]
    );
    (vips, opts)
}

/// `Enable_Duravip` bindings for `vips`: `copies(k)` bindings (at least one) for address `k`.
pub fn duravip_bindings(vips: &[std::net::Ipv4Addr], copies: impl Fn(usize) -> usize) -> String {
    let mut text = String::new();
    for (k, v) in vips.iter().enumerate() {
        for c in 0..copies(k).max(1) {
            text.push_str(&format!(
                "Binding \"vip{k}_{c}\" {{ Enable_Duravip = true Bind_Address = \"{v}\" }}\n"
            ));
        }
    }
    text
}

/// Gives host `i` a route to the addresses of [`duravip_many`] on its `eth0`.
pub fn route_vips(lab: &Lab, i: usize) {
    let o = lab.hosts[0].addr.octets();
    let status = lab
        .cmd(i, "ip")
        .args([
            "route",
            "add",
            &format!("{}.{}.0.0/16", o[0], o[1]),
            "dev",
            "eth0",
        ])
        .status()
        .expect("ip route");
    assert!(status.success(), "route to the DuraVIP addresses");
}

/// The /32 IPv4 addresses plumbed on host `i`'s `eth0`.
pub fn plumbed_addrs(lab: &Lab, i: usize) -> Vec<std::net::Ipv4Addr> {
    plumbed(lab, i)
        .split_whitespace()
        .filter_map(|w| w.strip_suffix("/32"))
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// Removes `addrs` from host `i`'s `eth0` (one `ip -batch`; absent ones are ignored).
pub fn unplumb(lab: &Lab, i: usize, addrs: &[std::net::Ipv4Addr]) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["-n", &lab.hosts[i].ns, "-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ip -batch");
    let mut input = child.stdin.take().expect("stdin");
    for a in addrs {
        let _ = writeln!(input, "addr del {a}/32 dev eth0");
    }
    drop(input);
    let _ = child.wait();
}
