//! `cohort-bench failover`: a DuraVIP owner crashes (kill -9 and its cable cut at the same
//! instant); how long until the survivors install the new view, and how long until a client's ARP
//! request for the address is answered with a survivor's MAC. Real `cohortd` processes in network
//! namespaces (root): three nodes and a client on one bridge, four DuraVIP addresses, the set-up of
//! `userspace/tests/duravip.rs`. The client sends its own ARP request every 2 ms over AF_PACKET and
//! takes the first reply for the address whose sender is not the victim; the survivors' consoles
//! are polled every 2 ms. The victim is restarted (with its cable) between runs.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cohort::lab::procs::Cluster;
use cohort::lab::{Lab, in_netns, inproc};
use serde_json::json;

use crate::arpwire::{self, Raw};
use crate::view_change::{sibling, until_view};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Owner crashes measured.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Also print one JSON object after the table.
    #[arg(long)]
    pub json: bool,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const NODES: [usize; 3] = [0, 1, 2];
const CLIENT: usize = 3;
/// The client's request period.
const PROBE_EVERY: Duration = Duration::from_millis(2);

/// For each address, the nodes that have it plumbed on eth0.
fn owners(lab: &Lab, vips: &[Ipv4Addr], nodes: &[usize]) -> Res<Vec<Vec<usize>>> {
    let mut shown = Vec::new();
    for &i in nodes {
        let out = Command::new("ip")
            .args(["-n", &lab.hosts[i].ns, "-4", "addr", "show", "dev", "eth0"])
            .output()?;
        shown.push((i, String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    Ok(vips
        .iter()
        .map(|v| {
            shown
                .iter()
                .filter(|(_, a)| a.contains(&format!("{v}/32")))
                .map(|(i, _)| *i)
                .collect()
        })
        .collect())
}

/// Waits until every address has exactly one owner among `nodes` and that has not changed for
/// `stable` (the cluster rebalances after a rejoin); the owners.
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
        if o.iter().all(|x| x.len() == 1) {
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
            return Err(format!("the addresses never settled on one owner each: {o:?}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the client saw: when the first accepted reply arrived and from which MAC.
type Answer = Result<Option<(Instant, [u8; 6])>, String>;

/// Starts the client's prober in namespace `ns`: an ARP request for `vip` every 2 ms until a reply
/// whose sender MAC passes `accept` arrives, `stop` is set, or `limit` passes.
fn probe(
    ns: String,
    client: Ipv4Addr,
    vip: Ipv4Addr,
    accept: impl Fn([u8; 6]) -> bool + Send + 'static,
    stop: Arc<AtomicBool>,
    limit: Duration,
) -> std::thread::JoinHandle<Answer> {
    std::thread::spawn(move || {
        inproc::enter(&ns);
        let err = |e: std::io::Error| e.to_string();
        let mac = cohort::xdp::interface_mac("eth0").map_err(|e| e.to_string())?;
        let tx = Raw::sender("eth0").map_err(err)?;
        let rx = Raw::receiver("eth0", Duration::from_micros(200), 1 << 20).map_err(err)?;
        let req = arpwire::request(mac, client, vip);
        let end = Instant::now() + limit;
        let mut next = Instant::now();
        let mut buf = [0u8; 2048];
        while Instant::now() < end && !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                tx.send(&req).map_err(err)?;
                next += PROBE_EVERY;
            }
            if let Some(f) = rx.recv(&mut buf).map_err(err)?
                && let Some(m) = arpwire::reply_for(f, vip)
                && accept(m)
            {
                return Ok(Some((Instant::now(), m)));
            }
        }
        Ok(None)
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
    let cohortd = sibling("cohortd")?;
    let lab = Lab::new("cohort-bench failover", 4)
        .ok_or("the failover benchmark needs root (network namespaces)")?;
    let (vips, bindings, cluster_opts) = cohort::lab::procs::duravip_setup(&lab, 101);
    let mut c = Cluster::new(&lab, &cohortd, &bindings).with_cluster_options(&cluster_opts);
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
    let vip = vips[0];
    let (mut view_t, mut arp_t, mut diff_t) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..a.runs {
        let before = settled_owners(&lab, &vips, &NODES, Duration::from_millis(1500))?;
        let victim = before[0];
        let vmac = macs[victim];
        // The client reaches the address at its owner before the crash.
        let seen = probe(
            client_ns.clone(),
            client_ip,
            vip,
            move |m| m == vmac,
            Arc::new(AtomicBool::new(false)),
            Duration::from_secs(5),
        )
        .join()
        .map_err(|_| "the client's prober panicked")??;
        if seen.is_none() {
            return Err(format!(
                "run {run}: the client is not answered by the owner node{}",
                victim + 1
            )
            .into());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let prober = probe(
            client_ns.clone(),
            client_ip,
            vip,
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
        let answer = prober
            .join()
            .map_err(|_| "the client's prober panicked")??;
        let view = view.ok_or(format!(
            "run {run}: the survivors never installed the smaller view"
        ))?;
        let (at, by) = answer.ok_or(format!(
            "run {run}: the client was never answered by a survivor"
        ))?;
        let arp = at.duration_since(t0);
        let new_owner = macs.iter().position(|m| *m == by);
        view_t.push(ms(view));
        arp_t.push(ms(arp));
        diff_t.push(ms(arp) - ms(view));
        eprintln!(
            "run {run}: node{} killed, view {:.1} ms, ARP answered by {} after {:.1} ms",
            victim + 1,
            ms(view),
            new_owner.map_or_else(|| arpwire::mac_text(by), |i| format!("node{}", i + 1)),
            ms(arp)
        );
        // Back to three: the victim's stale addresses go before its cable comes back.
        for v in &vips {
            let _ = Command::new("ip")
                .args([
                    "-n",
                    &lab.hosts[victim].ns,
                    "addr",
                    "del",
                    &format!("{v}/32"),
                    "dev",
                    "eth0",
                ])
                .output();
        }
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
    for v in [&mut view_t, &mut arp_t, &mut diff_t] {
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
        "failover: 3 nodes + client in namespaces, 4 DuraVIP addresses, xdp generic, {} runs, \
         client ARP every {} ms",
        a.runs,
        PROBE_EVERY.as_millis()
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10}",
        "kill -9 + cable cut ->", "p50 ms", "p99 ms", "max ms"
    );
    row("survivors' new view", &view_t);
    row("client ARP answered", &arp_t);
    row("ARP minus view (same run)", &diff_t);
    if a.json {
        println!(
            "{}",
            json!({
                "scenario": "failover", "nodes": 3, "runs": a.runs, "probe_ms": PROBE_EVERY.as_millis() as u64,
                "view_p50_ms": q(&view_t, 0.5), "view_p99_ms": q(&view_t, 0.99), "view_max_ms": view_t[view_t.len() - 1],
                "arp_p50_ms": q(&arp_t, 0.5), "arp_p99_ms": q(&arp_t, 0.99), "arp_max_ms": arp_t[arp_t.len() - 1],
                "diff_p50_ms": q(&diff_t, 0.5), "diff_p99_ms": q(&diff_t, 0.99), "diff_max_ms": diff_t[diff_t.len() - 1],
                "xdp_arp_replied_running_daemons": xdp_replied,
            })
        );
    }
    Ok(())
}
