//! `cohort-bench view-change`: how long the survivors take to install the new view after a member
//! is killed with SIGKILL, and after a member leaves with SIGTERM. Real `cohortd` processes in
//! network namespaces (root), default settings; the survivors' consoles are polled every 2 ms.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cohort::lab::Lab;
use cohort::lab::procs::Cluster;
use hdrhistogram::Histogram;
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kills (and as many graceful leaves) measured.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Members of the cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Also print one JSON object after the table.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn sibling(name: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let me = std::env::current_exe()?;
    let p = me.with_file_name(name);
    if !p.exists() {
        return Err(format!(
            "{} not found next to cohort-bench (cargo build --release -p cohort)",
            p.display()
        )
        .into());
    }
    Ok(p)
}

/// Waits until every node in `observers` shows exactly `n` members; the time it took.
pub(crate) fn until_view(
    c: &Cluster<'_>,
    observers: &[usize],
    n: usize,
    from: Instant,
) -> Option<Duration> {
    let deadline = from + Duration::from_secs(30);
    let mut pending: Vec<usize> = observers.to_vec();
    while Instant::now() < deadline {
        pending.retain(|&i| c.members(i).is_none_or(|m| m.len() != n));
        if pending.is_empty() {
            return Some(from.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

pub fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if a.nodes < 2 {
        return Err("--nodes must be at least 2".into());
    }
    let cohortd = sibling("cohortd")?;
    let lab = Lab::new("cohort-bench view-change", a.nodes)
        .ok_or("the view-change benchmark needs root (network namespaces)")?;
    let mut c = Cluster::new(&lab, &cohortd, "");
    c.start_all();
    let all: Vec<usize> = (0..a.nodes).collect();
    until_view(&c, &all, a.nodes, Instant::now()).ok_or("the cluster did not form")?;
    // The membership's own traffic, idle: datagrams per second each member sends (probes,
    // acknowledgements, discovery), over 5 s of a formed view.
    let sent = |c: &Cluster<'_>| -> u64 {
        (0..a.nodes)
            .filter_map(|i| c.ctl_json(i, &["cluster", "counters"]))
            .filter_map(|v| v["datagrams_sent"].as_u64())
            .sum()
    };
    std::thread::sleep(Duration::from_secs(2));
    let (s0, t0) = (sent(&c), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let idle = (sent(&c) - s0) as f64 / t0.elapsed().as_secs_f64() / a.nodes as f64;
    let mut kill = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut leave = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let victim = a.nodes - 1;
    let survivors: Vec<usize> = (0..victim).collect();
    for run in 0..a.runs {
        for graceful in [false, true] {
            let t0 = Instant::now();
            if graceful {
                c.terminate(victim);
            } else {
                c.kill(victim);
            }
            let took = until_view(&c, &survivors, a.nodes - 1, t0).ok_or(format!(
                "run {run}: survivors never installed the smaller view"
            ))?;
            if graceful { &mut leave } else { &mut kill }.record(took.as_micros().max(1) as u64)?;
            c.start(victim);
            until_view(&c, &all, a.nodes, Instant::now())
                .ok_or(format!("run {run}: the node did not rejoin"))?;
        }
    }
    println!(
        "view-change: {} nodes in namespaces, default settings, {} runs each",
        a.nodes, a.runs
    );
    println!("idle: {idle:.1} datagrams per second sent per member");
    println!(
        "{:<16} {:>10} {:>10} {:>10}",
        "event", "p50 ms", "p99 ms", "max ms"
    );
    println!(
        "{:<16} {:>10.1} {:>10.1} {:>10.1}",
        "kill -9",
        ms(&kill, 0.5),
        ms(&kill, 0.99),
        kill.max() as f64 / 1000.0
    );
    println!(
        "{:<16} {:>10.1} {:>10.1} {:>10.1}",
        "graceful leave",
        ms(&leave, 0.5),
        ms(&leave, 0.99),
        leave.max() as f64 / 1000.0
    );
    if a.json {
        println!(
            "{}",
            json!({
                "scenario": "view-change", "nodes": a.nodes, "runs": a.runs,
                "idle_datagrams_per_member_per_s": idle,
                "kill_p50_ms": ms(&kill, 0.5), "kill_p99_ms": ms(&kill, 0.99), "kill_max_ms": kill.max() as f64 / 1000.0,
                "leave_p50_ms": ms(&leave, 0.5), "leave_p99_ms": ms(&leave, 0.99), "leave_max_ms": leave.max() as f64 / 1000.0,
            })
        );
    }
    Ok(())
}
