//! `cohort-bench soak`: the acceptance test of a failure-detection profile under CPU stress.
//! Real `cohortd` processes in network namespaces (root) run with the profile's timing and
//! `loop_nice = -10` (as docs/operations.md asks for short timeouts) while `stress-ng --cpu N`
//! keeps every core busy for the whole run; the nodes' consoles are read every second. A false
//! view is any view installed while nobody left: the figure to report is how many there were
//! (zero passes).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cohort::lab::Lab;
use cohort::lab::procs::Cluster;
use serde_json::json;

use crate::view_change::{sibling, until_view};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Minutes of stress.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Members of the cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// CPU stressors (`stress-ng --cpu N`).
    #[arg(long, default_value_t = 4)]
    pub stress: usize,
    /// `probe_interval` in seconds (the fast profile's by default).
    #[arg(long, default_value_t = 0.025)]
    pub probe_interval: f64,
    /// `suspect_timeout` in seconds (the fast profile's by default).
    #[arg(long, default_value_t = 0.075)]
    pub suspect_timeout: f64,
    /// Also print one JSON object after the report.
    #[arg(long)]
    pub json: bool,
}

/// Every node's `views_installed` counter (None where the console did not answer).
fn views(c: &Cluster<'_>, n: usize) -> Vec<Option<u64>> {
    (0..n)
        .map(|i| {
            c.ctl_json(i, &["cluster", "counters"])
                .and_then(|v| v["views_installed"].as_u64())
        })
        .collect()
}

pub fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if a.nodes < 2 {
        return Err("--nodes must be at least 2".into());
    }
    if !(a.minutes > 0.0 && a.minutes <= 24.0 * 60.0) {
        return Err("--minutes must be more than 0 and at most a day".into());
    }
    let cohortd = sibling("cohortd")?;
    Command::new("stress-ng")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("stress-ng is needed (bash ci/setup installs it): {e}"))?;
    let lab =
        Lab::new("cohort-bench soak", a.nodes).ok_or("the soak needs root (network namespaces)")?;
    let mut c = Cluster::new(&lab, &cohortd, "").with_msgc_options(&format!(
        "probe_interval = {}\nsuspect_timeout = {}\nloop_nice = -10",
        a.probe_interval, a.suspect_timeout
    ));
    c.start_all();
    let all: Vec<usize> = (0..a.nodes).collect();
    until_view(&c, &all, a.nodes, Instant::now()).ok_or("the cluster did not form")?;
    std::thread::sleep(Duration::from_secs(1));
    let before = views(&c, a.nodes);
    if before.iter().any(Option::is_none) {
        return Err("a node's console did not answer before the stress".into());
    }
    let secs = (a.minutes * 60.0).round().max(1.0) as u64;
    let mut stress = Command::new("stress-ng")
        .args([
            "--cpu",
            &a.stress.to_string(),
            "--timeout",
            &format!("{secs}s"),
        ])
        .arg("--quiet")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("stress-ng: {e}"))?;
    println!(
        "soak: {} nodes, probe_interval {} s, suspect_timeout {} s, loop_nice -10, stress-ng --cpu {} for {secs} s",
        a.nodes, a.probe_interval, a.suspect_timeout, a.stress
    );
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    // (seconds into the run, node, views installed so far) whenever a node's count moves.
    let mut changes: Vec<(f64, usize, u64)> = Vec::new();
    let mut last = before.clone();
    let mut unanswered = 0u64;
    let mut next_line = start + Duration::from_secs(60);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        let now = views(&c, a.nodes);
        for (i, (v, l)) in now.iter().zip(last.iter_mut()).enumerate() {
            match v {
                Some(v) if Some(*v) != *l => {
                    changes.push((start.elapsed().as_secs_f64(), i, *v));
                    println!(
                        "  {:7.1} s: {} installed a view ({} so far)",
                        start.elapsed().as_secs_f64(),
                        c.name(i),
                        v - before[i].unwrap_or(0)
                    );
                    *l = Some(*v);
                }
                Some(_) => {}
                None => unanswered += 1,
            }
        }
        if Instant::now() >= next_line {
            println!(
                "  {:5.0} s: {} false views so far",
                start.elapsed().as_secs_f64(),
                changes.len()
            );
            next_line += Duration::from_secs(60);
        }
    }
    let _ = stress.wait();
    let after = views(&c, a.nodes);
    let false_views: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.unwrap_or(0).saturating_sub(b.unwrap_or(0)))
        .sum();
    let one_view = until_view(&c, &all, a.nodes, Instant::now()).is_some();
    println!(
        "soak: {false_views} views installed during {secs} s of stress (0 passes); consoles that did not answer a 1 s poll: {unanswered}; one {}-member view at the end: {one_view}",
        a.nodes
    );
    if a.json {
        println!(
            "{}",
            json!({
                "scenario": "soak", "nodes": a.nodes, "seconds": secs, "stressors": a.stress,
                "probe_interval": a.probe_interval, "suspect_timeout": a.suspect_timeout,
                "false_views": false_views, "unanswered_polls": unanswered,
                "one_view_at_end": one_view,
                "changes": changes.iter().map(|(t, i, v)| json!({"at": t, "node": i, "views": v})).collect::<Vec<_>>(),
            })
        );
    }
    if false_views > 0 || !one_view {
        return Err(format!("{false_views} false views under stress").into());
    }
    Ok(())
}
