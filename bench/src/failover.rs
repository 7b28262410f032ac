//! `cohort-bench failover`: a DuraVIP owner crashes (kill -9 and its cable cut at the same
//! instant); how long until the survivors install the new view, and how long until a client's ARP
//! request for the address is answered with a survivor's MAC. Real `cohortd` processes in network
//! namespaces (root): three nodes and a client on one bridge, `--vips` DuraVIP addresses (4 by
//! default; the set-up of `userspace/tests/duravip_scale.rs`). The victim is the owner of the first
//! address; the client sends its own ARP requests over AF_PACKET for every address the victim held
//! that no survivor has answered yet, one round every 2 ms (longer for many addresses: 20 us per
//! address), and takes for each address the first reply whose sender is not the victim. The
//! figure is the time until the last of them is answered. The survivors' consoles are polled
//! every 2 ms. The victim is restarted (with its cable) between runs.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cohort::lab::procs::{
    Cluster, duravip_bindings, duravip_many, plumbed_addrs, route_vips, unplumb,
};
use cohort::lab::{Lab, in_netns, inproc};
use serde_json::json;

use crate::arpwire::{self, Raw};
use crate::view_change::{sibling, until_view};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Owner crashes measured.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// DuraVIP addresses in the cluster (1..=10240).
    #[arg(long, default_value_t = 4)]
    pub vips: usize,
    /// `msgc_server { probe_interval }` in seconds (the transport's default when absent); with
    /// `--suspect-timeout`, the fast profile of docs/operations.md.
    #[arg(long)]
    pub probe_interval: Option<f64>,
    /// `msgc_server { suspect_timeout }` in seconds.
    #[arg(long)]
    pub suspect_timeout: Option<f64>,
    /// `msgc_server { loop_nice }` (the daemon's default, -4, when absent; the fast profiles of
    /// docs/operations.md use -10).
    #[arg(long, allow_hyphen_values = true)]
    pub loop_nice: Option<i32>,
    /// Also print one JSON object after the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the figures as a self-contained HTML page (inline SVG plots): each run's
    /// times and their distribution.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const NODES: [usize; 3] = [0, 1, 2];
const CLIENT: usize = 3;
/// The client's shortest request round.
const PROBE_EVERY: Duration = Duration::from_millis(2);
/// The client's request round grows by this much per address probed.
const PROBE_PER_ADDRESS: Duration = Duration::from_micros(20);

/// For each address, the nodes that have it plumbed on eth0.
fn owners(lab: &Lab, vips: &[Ipv4Addr], nodes: &[usize]) -> Res<Vec<Vec<usize>>> {
    let mut by_addr: HashMap<Ipv4Addr, Vec<usize>> = HashMap::new();
    for &i in nodes {
        for a in plumbed_addrs(lab, i) {
            by_addr.entry(a).or_default().push(i);
        }
    }
    Ok(vips
        .iter()
        .map(|v| by_addr.get(v).cloned().unwrap_or_default())
        .collect())
}

/// Waits until every node's failure detector reports local health 0 (`cluster counters`).
fn at_rest(c: &Cluster, within: Duration) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        let scores: Vec<u64> = NODES
            .iter()
            .map(|&i| {
                c.ctl_json(i, &["cluster", "counters"])
                    .and_then(|v| v["local_health"].as_u64())
                    .unwrap_or(u64::MAX)
            })
            .collect();
        if scores.iter().all(|s| *s == 0) {
            return Ok(());
        }
        if t0.elapsed() >= within {
            return Err(format!("local health never came back to 0: {scores:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every address has exactly one owner among `nodes`, the loads are within one (the
/// cluster rebalances after a rejoin) and that has not changed for `stable`; the owners.
fn settled_owners(
    lab: &Lab,
    vips: &[Ipv4Addr],
    nodes: &[usize],
    stable: Duration,
) -> Res<Vec<usize>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last: Option<(Vec<usize>, Instant)> = None;
    loop {
        let o = owners(lab, vips, nodes)?;
        let mut load = vec![0usize; lab.hosts.len()];
        for x in o.iter().filter(|x| x.len() == 1) {
            load[x[0]] += 1;
        }
        let loads: Vec<usize> = nodes.iter().map(|&i| load[i]).collect();
        let spread = loads.iter().max().unwrap_or(&0) - loads.iter().min().unwrap_or(&0);
        if o.iter().all(|x| x.len() == 1) && spread <= 1 {
            let now: Vec<usize> = o.iter().map(|x| x[0]).collect();
            match &last {
                Some((prev, since)) if *prev == now => {
                    if since.elapsed() >= stable {
                        return Ok(now);
                    }
                }
                _ => last = Some((now, Instant::now())),
            }
        } else {
            last = None;
        }
        if Instant::now() > deadline {
            return Err("the addresses never settled on one owner each, balanced".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the client saw: for each address probed, when the first accepted reply arrived and from
/// which MAC.
type Answers = Result<Vec<Option<(Instant, [u8; 6])>>, String>;

/// Starts the client's prober in namespace `ns`: ARP requests for every address of `vips` not yet
/// answered, one round per `PROBE_EVERY` (plus `PROBE_PER_ADDRESS` each), until each has a reply
/// whose sender MAC passes `accept`, `stop` is set, or `limit` passes.
fn probe(
    ns: String,
    client: Ipv4Addr,
    vips: Vec<Ipv4Addr>,
    accept: impl Fn([u8; 6]) -> bool + Send + 'static,
    stop: Arc<AtomicBool>,
    limit: Duration,
) -> std::thread::JoinHandle<Answers> {
    std::thread::spawn(move || {
        inproc::enter(&ns);
        let err = |e: std::io::Error| e.to_string();
        let mac = cohort::xdp::interface_mac("eth0").map_err(|e| e.to_string())?;
        let tx = Raw::sender("eth0").map_err(err)?;
        let rx = Raw::receiver("eth0", Duration::from_micros(200), 8 << 20).map_err(err)?;
        let index: HashMap<Ipv4Addr, usize> =
            vips.iter().enumerate().map(|(k, v)| (*v, k)).collect();
        let requests: Vec<Vec<u8>> = vips
            .iter()
            .map(|v| arpwire::request(mac, client, *v))
            .collect();
        let mut seen: Vec<Option<(Instant, [u8; 6])>> = vec![None; vips.len()];
        let mut left = vips.len();
        let end = Instant::now() + limit;
        let mut next = Instant::now();
        let mut buf = [0u8; 2048];
        while left > 0 && Instant::now() < end && !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                for (req, s) in requests.iter().zip(&seen) {
                    if s.is_none() {
                        tx.send(req).map_err(err)?;
                    }
                }
                let round = PROBE_EVERY.max(PROBE_PER_ADDRESS * left as u32);
                next = Instant::now() + round;
            }
            while let Some(f) = rx.recv(&mut buf).map_err(err)? {
                if let Some((ip, m)) = arpwire::reply(f)
                    && let Some(&k) = index.get(&ip)
                    && seen[k].is_none()
                    && accept(m)
                {
                    seen[k] = Some((Instant::now(), m));
                    left -= 1;
                }
                if Instant::now() >= next {
                    break;
                }
            }
        }
        Ok(seen)
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank quantile of sorted values.
fn q(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

pub fn run(a: &Args) -> Res<()> {
    if a.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    if !(1..=10_240).contains(&a.vips) {
        return Err("--vips must be between 1 and 10240".into());
    }
    let cohortd = sibling("cohortd")?;
    let lab = Lab::new("cohort-bench failover", 4)
        .ok_or("the failover benchmark needs root (network namespaces)")?;
    let (vips, cluster_opts) = duravip_many(&lab, a.vips);
    let bindings = duravip_bindings(&vips, |_| 1);
    let mut msgc = String::new();
    if let Some(p) = a.probe_interval {
        msgc.push_str(&format!("  probe_interval = {p}\n"));
    }
    if let Some(s) = a.suspect_timeout {
        msgc.push_str(&format!("  suspect_timeout = {s}\n"));
    }
    if let Some(n) = a.loop_nice {
        msgc.push_str(&format!("  loop_nice = {n}\n"));
    }
    let mut c = Cluster::new(&lab, &cohortd, &bindings)
        .with_cluster_options(&cluster_opts)
        .with_msgc_options(&msgc);
    route_vips(&lab, CLIENT);
    for i in NODES {
        c.start(i);
    }
    until_view(&c, &NODES, 3, Instant::now()).ok_or("the cluster did not form")?;
    let mut macs = Vec::new();
    for i in NODES {
        let ns = lab.hosts[i].ns.clone();
        macs.push(in_netns(&ns, || {
            cohort::xdp::interface_mac("eth0").map_err(|e| e.to_string())
        })?);
    }
    let client_ns = lab.hosts[CLIENT].ns.clone();
    let client_ip = lab.hosts[CLIENT].addr;
    let (mut view_t, mut arp_t, mut diff_t, mut first_t) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut held_n = Vec::new();
    for run in 0..a.runs {
        let before = settled_owners(&lab, &vips, &NODES, Duration::from_millis(1500))?;
        let victim = before[0];
        let vmac = macs[victim];
        let held: Vec<Ipv4Addr> = vips
            .iter()
            .zip(&before)
            .filter(|(_, o)| **o == victim)
            .map(|(v, _)| *v)
            .collect();
        // The client reaches the first address at its owner before the crash.
        let seen = probe(
            client_ns.clone(),
            client_ip,
            vec![vips[0]],
            move |m| m == vmac,
            Arc::new(AtomicBool::new(false)),
            Duration::from_secs(5),
        )
        .join()
        .map_err(|_| "the client's prober panicked")??;
        if seen[0].is_none() {
            let now = owners(&lab, &vips[..1], &NODES)?;
            let xdp: Vec<String> = NODES
                .iter()
                .filter_map(|&i| c.ctl_json(i, &["cluster", "counters"]))
                .map(|v| {
                    format!(
                        "replied {} passed {} lease_expired {}",
                        v["xdp_arp_replied"], v["xdp_arp_passed"], v["xdp_arp_lease_expired"]
                    )
                })
                .collect();
            return Err(format!(
                "run {run}: the client is not answered by the owner node{} (plumbed on {:?} now; xdp {xdp:?})",
                victim + 1,
                now[0]
            )
            .into());
        }
        // A crash of a cluster at rest: every node's local health back to 0 (the rejoin that
        // ended the previous run can leave a score, which stretches every timeout).
        at_rest(&c, Duration::from_secs(30))?;
        let stop = Arc::new(AtomicBool::new(false));
        let prober = probe(
            client_ns.clone(),
            client_ip,
            held.clone(),
            move |m| m != vmac,
            stop.clone(),
            Duration::from_secs(30),
        );
        std::thread::sleep(Duration::from_millis(20));
        let t0 = Instant::now();
        c.kill(victim);
        lab.link(victim, false);
        let survivors: Vec<usize> = NODES.iter().copied().filter(|&i| i != victim).collect();
        let view = until_view(&c, &survivors, 2, t0);
        if view.is_none() {
            stop.store(true, Ordering::Relaxed);
        }
        let answers = prober
            .join()
            .map_err(|_| "the client's prober panicked")??;
        let view = view.ok_or(format!(
            "run {run}: the survivors never installed the smaller view"
        ))?;
        let unanswered = answers.iter().filter(|x| x.is_none()).count();
        if unanswered > 0 {
            return Err(format!(
                "run {run}: {unanswered} of node{}'s {} addresses were never answered by a survivor",
                victim + 1,
                held.len()
            )
            .into());
        }
        let (at, by) = answers
            .iter()
            .flatten()
            .max_by_key(|(t, _)| *t)
            .copied()
            .ok_or("no address held")?;
        let first = answers
            .iter()
            .flatten()
            .map(|(t, _)| *t)
            .min()
            .ok_or("no address held")?;
        first_t.push(ms(first.duration_since(t0)));
        held_n.push(held.len());
        let arp = at.duration_since(t0);
        let new_owner = macs.iter().position(|m| *m == by);
        view_t.push(ms(view));
        arp_t.push(ms(arp));
        diff_t.push(ms(arp) - ms(view));
        eprintln!(
            "run {run}: node{} killed holding {} addresses, view {:.1} ms, the last answered by {} after {:.1} ms",
            victim + 1,
            held.len(),
            ms(view),
            new_owner.map_or_else(|| arpwire::mac_text(by), |i| format!("node{}", i + 1)),
            ms(arp)
        );
        // Back to three: the victim's stale addresses go before its cable comes back.
        unplumb(&lab, victim, &held);
        c.start(victim);
        lab.link(victim, true);
        until_view(&c, &NODES, 3, Instant::now())
            .ok_or(format!("run {run}: node{} did not rejoin", victim + 1))?;
    }
    let xdp_replied: u64 = NODES
        .iter()
        .filter_map(|&i| c.ctl_json(i, &["cluster", "counters"]))
        .filter_map(|v| v["xdp_arp_replied"].as_u64())
        .sum();
    let per_run: Vec<(String, Vec<(f64, f64)>)> = [
        ("survivors' new view", &view_t),
        ("client ARP, first address", &first_t),
        ("client ARP, last address", &arp_t),
    ]
    .into_iter()
    .map(|(name, v)| {
        let points = v
            .iter()
            .enumerate()
            .map(|(i, t)| ((i + 1) as f64, *t))
            .collect();
        (name.to_string(), points)
    })
    .collect();
    for v in [&mut view_t, &mut arp_t, &mut diff_t, &mut first_t] {
        v.sort_by(f64::total_cmp);
    }
    let row = |name: &str, v: &[f64]| {
        println!(
            "{:<28} {:>10.1} {:>10.1} {:>10.1}",
            name,
            q(v, 0.5),
            q(v, 0.99),
            v[v.len() - 1]
        );
    };
    println!(
        "failover: 3 nodes + client in namespaces, {} DuraVIP addresses ({}..{} on the victim), \
         xdp generic, {} runs, client ARP round every {} ms + {} us per address",
        a.vips,
        held_n.iter().min().copied().unwrap_or(0),
        held_n.iter().max().copied().unwrap_or(0),
        a.runs,
        PROBE_EVERY.as_millis(),
        PROBE_PER_ADDRESS.as_micros()
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10}",
        "kill -9 + cable cut ->", "p50 ms", "p99 ms", "max ms"
    );
    row("survivors' new view", &view_t);
    row("client ARP, first address", &first_t);
    row("client ARP, last address", &arp_t);
    row("last ARP minus view", &diff_t);
    if a.json {
        println!(
            "{}",
            json!({
                "scenario": "failover", "nodes": 3, "vips": a.vips, "runs": a.runs, "probe_ms": PROBE_EVERY.as_millis() as u64,
                "view_p50_ms": q(&view_t, 0.5), "view_p99_ms": q(&view_t, 0.99), "view_max_ms": view_t[view_t.len() - 1],
                "first_arp_p50_ms": q(&first_t, 0.5), "first_arp_p99_ms": q(&first_t, 0.99),
                "arp_p50_ms": q(&arp_t, 0.5), "arp_p99_ms": q(&arp_t, 0.99), "arp_max_ms": arp_t[arp_t.len() - 1],
                "diff_p50_ms": q(&diff_t, 0.5), "diff_p99_ms": q(&diff_t, 0.99), "diff_max_ms": diff_t[diff_t.len() - 1],
                "xdp_arp_replied_running_daemons": xdp_replied,
            })
        );
    }
    if let Some(path) = &a.report {
        let mut report = crate::report::Report::new("cohort-bench failover");
        report.text(
            "Run",
            &format!(
                "3 nodes + client in namespaces, {} DuraVIP addresses, {} runs of kill -9 + cable cut; probe_interval {}, suspect_timeout {}, loop_nice {}",
                a.vips,
                a.runs,
                a.probe_interval.map_or("default".into(), |v| format!("{v} s")),
                a.suspect_timeout.map_or("default".into(), |v| format!("{v} s")),
                a.loop_nice.map_or("default".into(), |v| v.to_string()),
            ),
        );
        let cells = |v: &[f64]| {
            vec![
                format!("{:.1}", q(v, 0.5)),
                format!("{:.1}", q(v, 0.99)),
                format!("{:.1}", v[v.len() - 1]),
            ]
        };
        let rows: Vec<Vec<String>> = [
            ("survivors' new view", &view_t),
            ("client ARP, first address", &first_t),
            ("client ARP, last address", &arp_t),
            ("last ARP minus view", &diff_t),
        ]
        .into_iter()
        .map(|(name, v)| [vec![name.to_string()], cells(v)].concat())
        .collect();
        report.table(
            "kill -9 + cable cut ->",
            &["time to", "p50 ms", "p99 ms", "max ms"],
            &rows,
        );
        report.line_chart("Each run", "run", "ms", &per_run);
        let distribution: Vec<(String, Vec<(f64, f64)>)> = per_run
            .iter()
            .map(|(name, points)| {
                let mut v: Vec<f64> = points.iter().map(|(_, t)| *t).collect();
                v.sort_by(f64::total_cmp);
                let n = v.len();
                let curve = v
                    .iter()
                    .enumerate()
                    .map(|(i, t)| ((i + 1) as f64 * 100.0 / n as f64, *t))
                    .collect();
                (name.clone(), curve)
            })
            .collect();
        report.percentile_chart("Distribution over the runs", "ms", &distribution);
        report.write(path)?;
        println!("report: {} ({} figures)", path.display(), report.figures());
    }
    Ok(())
}
