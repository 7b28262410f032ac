//! `cohort-bench logmove`: the manager's log pull through the whole stack. Three `cohortd` nodes
//! and a `cohortd --manager` run in network namespaces (root); this process appends 100-byte
//! records straight into each node's `mainlog` journal (as an MTA would, another process on the
//! node), each carrying its append time. It polls the manager's position files: when a stream's
//! durable record count grows, the records just made durable are read from the output file and
//! their lag (append on the node → durable on the manager) recorded (one machine, one clock).
//!
//! Two runs: saturating (every node appends `--records` as fast as it can; the rate is records
//! durable per second, the lag includes queueing) and paced (`--rate` records per second per node
//! for `--seconds`; the lag of a pull that keeps up).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cohort::lab::Lab;
use cohort::lab::procs::Cluster;
use cohort_engine::jlog::{Journal, WriterOptions};
use cohort_engine::logmove::Position;
use hdrhistogram::Histogram;
use serde_json::json;

use crate::view_change::sibling;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Records each node appends in the saturating run.
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Records per second per node in the paced run.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Seconds of the paced run.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// The nodes' log_idle_interval (appends from another process are found by this poll).
    #[arg(long, default_value_t = 0.01)]
    pub idle_interval: f64,
    /// Also print one JSON object after the table.
    #[arg(long)]
    pub json: bool,
}

const NODES: usize = 3;
const MANAGER: usize = 3;

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One stream's consumer: reads what the manager made durable.
struct Tail {
    pos: PathBuf,
    out: PathBuf,
    seen: u64,
    offset: u64,
    partial: Vec<u8>,
}

impl Tail {
    /// Records newly durable, each lag recorded in `h` (µs); the count.
    fn poll(&mut self, h: &mut Histogram<u64>) -> u64 {
        let Some(durable) = std::fs::read(&self.pos)
            .ok()
            .and_then(|b| Position::decode_file(&b).ok())
            .map(|p| p.records)
        else {
            return 0;
        };
        if durable <= self.seen {
            return 0;
        }
        let now = now_ns();
        let mut want = durable - self.seen;
        let Ok(mut f) = std::fs::File::open(&self.out) else {
            return 0;
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return 0;
        }
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        let mut data = std::mem::take(&mut self.partial);
        data.extend_from_slice(&buf);
        self.offset += buf.len() as u64;
        let mut used = 0;
        let mut got = 0;
        while want > 0 {
            let Some(nl) = data[used..].iter().position(|&b| b == b'\n') else {
                break;
            };
            let line = &data[used..used + nl];
            if let Some(ts) = std::str::from_utf8(&line[..20.min(line.len())])
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                let _ = h.record((now.saturating_sub(ts) / 1000).max(1));
            }
            used += nl + 1;
            want -= 1;
            got += 1;
        }
        self.partial = data[used..].to_vec();
        self.seen += got;
        got
    }
}

struct Outcome {
    records: u64,
    secs: f64,
    lag: Histogram<u64>,
}

fn setup<'a>(lab: &'a Lab, a: &Args) -> Result<(Cluster<'a>, PathBuf), Box<dyn std::error::Error>> {
    let cohortd = sibling("cohortd")?;
    let c = Cluster::new(lab, &cohortd, "").with_cluster_options(&format!(
        "  log_active_interval = 0\n  log_idle_interval = {}",
        a.idle_interval
    ));
    let out = c.dir.path().join("out");
    for i in 0..=MANAGER {
        let mut text = std::fs::read_to_string(c.config_path(i))?;
        if i == MANAGER {
            text.push_str(&format!(
                "Logs {{ logfile = \"{}/%{{l}}/%{{s}}/%{{n}}\" }}\n",
                out.display()
            ));
        } else {
            let j = journal_path(&c, i);
            text = text.replace(
                "cluster {\n",
                &format!("cluster {{\n  logs = [ mainlog = \"{}\" ]\n", j.display()),
            );
            text.push_str(&format!(
                "ec_logger \"ec_logger_cluster\" {{ mainlog = \"cluster://{}=>master\" }}\n",
                j.display()
            ));
        }
        std::fs::write(c.config_path(i), text)?;
    }
    Ok((c, out))
}

fn journal_path(c: &Cluster<'_>, i: usize) -> PathBuf {
    c.dir.path().join(c.name(i)).join("mainlog.cluster")
}

fn tails(c: &Cluster<'_>, out: &Path) -> Vec<Tail> {
    (0..NODES)
        .map(|i| Tail {
            pos: out
                .join(".cohort-logmove")
                .join(c.name(i))
                .join("mainlog.pos"),
            out: out.join("mainlog").join("default").join(c.name(i)),
            seen: 0,
            offset: 0,
            partial: Vec::new(),
        })
        .collect()
}

/// Appends `per_node` records on every node, at `rate` per second per node (0 = as fast as
/// possible), and follows them to the manager.
fn run_one(a: &Args, per_node: u64, rate: u64) -> Result<Outcome, Box<dyn std::error::Error>> {
    let lab = Lab::new("cohort-bench logmove", NODES + 1)
        .ok_or("the logmove benchmark needs root (network namespaces)")?;
    let (mut c, out) = setup(&lab, a)?;
    for i in 0..NODES {
        c.start(i);
    }
    c.start_manager(MANAGER);
    for i in 0..NODES {
        c.wait_members(i, &[0, 1, 2]);
    }
    // Every node serving the manager before the clock starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    while (0..NODES).any(|i| c.counters(i)["logmove_connections"].as_u64() < Some(1)) {
        if Instant::now() > deadline {
            return Err("the manager never connected to every node".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    let writers: Vec<_> = (0..NODES)
        .map(|i| {
            let path = journal_path(&c, i);
            std::thread::spawn(move || -> Result<(), String> {
                let j = Journal::open(&path).map_err(|e| e.to_string())?;
                let mut w = j
                    .writer(WriterOptions::default())
                    .map_err(|e| e.to_string())?;
                let t0 = Instant::now();
                let pad = "x".repeat(68);
                for seq in 0..per_node {
                    if rate > 0 {
                        let due = t0 + Duration::from_secs_f64(seq as f64 / rate as f64);
                        if let Some(d) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(d);
                        }
                    }
                    let rec = format!("{:020} {seq:010} {pad}", now_ns());
                    w.append(rec.as_bytes()).map_err(|e| e.to_string())?;
                }
                w.close().map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut lag = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut tails = tails(&c, &out);
    let total = per_node * NODES as u64;
    let mut done = 0;
    let limit =
        Duration::from_secs(120) + Duration::from_secs_f64(per_node as f64 / rate.max(1) as f64);
    while done < total {
        if start.elapsed() > limit {
            return Err(format!("only {done} of {total} records durable on the manager").into());
        }
        for t in &mut tails {
            done += t.poll(&mut lag);
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let secs = start.elapsed().as_secs_f64();
    for w in writers {
        w.join().map_err(|_| "writer panicked")??;
    }
    Ok(Outcome {
        records: total,
        secs,
        lag,
    })
}

pub fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "logmove: {NODES} nodes and a manager in namespaces, 100-byte records appended on every node, \
         log_active_interval 0, log_idle_interval {}",
        a.idle_interval
    );
    println!(
        "{:<34} {:>10} {:>14} {:>11} {:>11}",
        "run", "records", "records/s", "lag p50", "lag p99"
    );
    let paced = (a.rate as f64 * a.seconds) as u64;
    let runs = [
        (format!("saturating, {} per node", a.records), a.records, 0),
        (format!("paced, {}/s per node", a.rate), paced, a.rate),
    ];
    let mut rows = Vec::new();
    for (name, n, rate) in runs {
        let o = run_one(a, n, rate)?;
        let (p50, p99) = (
            o.lag.value_at_quantile(0.5) as f64 / 1000.0,
            o.lag.value_at_quantile(0.99) as f64 / 1000.0,
        );
        let rps = o.records as f64 / o.secs;
        println!(
            "{:<34} {:>10} {:>14.0} {:>9.1}ms {:>9.1}ms",
            name, o.records, rps, p50, p99
        );
        rows.push(json!({
            "run": name, "records": o.records, "rate_per_node": rate, "seconds": o.secs,
            "records_per_sec": rps, "lag_p50_ms": p50, "lag_p99_ms": p99,
        }));
    }
    if a.json {
        println!(
            "{}",
            json!({ "scenario": "logmove", "nodes": NODES, "idle_interval": a.idle_interval, "runs": rows })
        );
    }
    Ok(())
}
