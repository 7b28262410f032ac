//! `cohort-bench replicate`: replicated counter updates through the whole stack. Every node runs
//! in its own network namespace (root) and hammers its `inbound_cidr` object from one updater
//! thread; node1 also bumps a probe gauge every 10 ms, and every other node polls it to measure
//! propagation lag (update on node1 to visibility in the other node's global view; one process,
//! one clock). Reported: cluster-wide updates per second, lag p50/p99, transport datagrams per
//! second, replicated updates per message.
//!
//! `--via socket` makes the updaters applications in the manner of another process: each talks
//! to its node's console server (the daemon's own server and handler, on a Unix socket) and
//! streams `cluster shared cidr incr ...` requests with `Client::stream_lines` (writing while a
//! reader takes the answers, never waiting for a round trip); `--via both` runs every
//! configuration both ways, in-process first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cohort::console::server::{ConsoleServer, Identity, Role, ServerConfig};
use cohort::console::{Client, Endpoint};
use cohort::lab::{Lab, inproc};
use cohort::node::console::NodeConsole;
use cohort_engine::config::ListenAddr;
use cohort_engine::console::protocol::Status;
use cohort_engine::replicate::View;
use hdrhistogram::Histogram;
use ipnet::IpNet;
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Members of the cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Seconds of load per configuration.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Also print one JSON object after the table.
    #[arg(long)]
    pub json: bool,
    /// How the updaters reach their node: in the process (`Shared::objects`), through the
    /// control socket with pipelined requests, or both in turn.
    #[arg(long, value_enum, default_value_t = Via::Inproc)]
    pub via: Via,
    /// With `--via socket`: connections (updater threads) per node.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Run the `Replicate` scopes of this configuration file (with their `max_pending` and
    /// `max_delay`) under a load that touches every object, instead of the fixed sweep.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Share of updates per object type, e.g. `cidr=60,gauge=30,throttle=10` (types: cidr,
    /// gauge, throttle, cache, series); default: equal shares of the types the file has. Without
    /// `--config`, one object of every type at the defaults.
    #[arg(long)]
    pub mix: Option<String>,
    /// With `--config` or `--mix`: distinct keys per object.
    #[arg(long, default_value_t = 4096)]
    pub keys: u64,
    /// With `--config` or `--mix`: draw keys with a Zipf distribution of this exponent
    /// (default: uniform).
    #[arg(long)]
    pub zipf: Option<f64>,
    /// With `--config` or `--mix`: updater threads per node.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Also write the figures as a self-contained HTML page (inline SVG plots).
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
    /// Load a cluster that is already running instead of the lab: its nodes' consoles
    /// (`SOCK,SOCK,...`: Unix socket paths, or `HOST:PORT` consoles that need no key), with
    /// `--mix` over its CIDR trees, gauge tables and caches on the benchmark's own keys, all
    /// taken back at the end.
    #[arg(long, value_name = "SOCK,SOCK,...")]
    pub target: Option<String>,
}

/// Where the updates come from.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Inproc,
    Socket,
    Both,
}

/// The address updater `i` increments as its `k`-th update: 4096 addresses per node, so updates
/// coalesce per key between flushes.
fn address(i: usize, k: u32) -> IpNet {
    let ip = 0x0a00_0000 | ((i as u32 & 0x3f) << 18) | (k % 4096);
    IpNet::new(std::net::Ipv4Addr::from(ip).into(), 32).expect("a /32 is valid")
}

pub(crate) fn wall() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

struct Outcome {
    updates_per_sec: f64,
    lag_p50_ms: f64,
    lag_p99_ms: f64,
    datagrams_per_sec: f64,
    updates_per_message: f64,
    /// Updates that went on the wire (after coalescing per key), all nodes, per second.
    replicated_per_sec: f64,
}

fn run_one(
    a: &Args,
    max_delay: f64,
    max_pending: u32,
    socket: bool,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let lab = Lab::new("cohort-bench replicate", a.nodes)
        .ok_or("the replicate benchmark needs root (network namespaces)")?;
    let opts = format!(
        "Replicate \"inbound_cidr\" {{ max_delay = {max_delay} max_pending = {max_pending} }}\n\
         Replicate \"outbound_domains\" {{ max_delay = {max_delay} max_pending = {max_pending} }}"
    );
    let nodes: Vec<inproc::InProc> = (0..a.nodes)
        .map(|i| inproc::start_with(&lab, i, &opts, "", &[]))
        .collect();
    for n in &nodes {
        n.wait_view(a.nodes, "ec_cluster");
    }
    // With --via socket, every node's console on a Unix socket: the daemon's server and handler.
    let dir = tempfile::tempdir()?;
    let mut consoles = Vec::new();
    if socket {
        for (i, n) in nodes.iter().enumerate() {
            let path = dir.path().join(format!("node{}.sock", i + 1));
            let server = ConsoleServer::start(
                ServerConfig {
                    listens: vec![ListenAddr::Unix(path.clone())],
                    identity: Identity {
                        nodename: format!("node{}", i + 1),
                        role: Role::Node,
                    },
                    max_connections: a.connections + 4,
                    frame_timeout: Duration::from_secs(10),
                    auth: None,
                },
                Arc::new(NodeConsole {
                    shared: n.shared.clone(),
                }),
            )?;
            consoles.push((Endpoint::Unix(path), server));
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let updates = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let before: Vec<_> = nodes
        .iter()
        .map(|n| {
            n.shared
                .status
                .lock()
                .map(|s| s.counters.clone())
                .unwrap_or_default()
        })
        .collect();
    let mut threads = Vec::new();
    for (i, endpoint) in consoles
        .iter()
        .enumerate()
        .flat_map(|(i, (e, _))| std::iter::repeat_n((i, e), a.connections.max(1)))
    {
        let mut client = Client::connect(endpoint)?;
        let (stop, updates) = (stop.clone(), updates.clone());
        threads.push(std::thread::spawn(move || {
            // One request at a time from a generator that stops with the run; the client
            // writes them as they come and a reader counts the answers, so the connection
            // never waits for a round trip.
            // The updater's 4096 addresses cycle, so their lines are formatted once: the
            // application's own formatting is not what this measures.
            let texts: Vec<String> = (1..=4096u32)
                .map(|k| format!("cluster shared cidr incr inbound_cidr {}", address(i, k)))
                .collect();
            let mut k: usize = 0;
            let lines = std::iter::from_fn(|| {
                if k.is_multiple_of(1024) && stop.load(Ordering::Relaxed) {
                    return None;
                }
                k = k.wrapping_add(1);
                Some(&texts[k % texts.len()])
            });
            let mut answered = 0u64;
            client
                .stream_lines(lines, false, |r| {
                    assert_eq!(r.status, Status::Ok, "every update accepted");
                    answered += 1;
                    if answered == 1024 {
                        updates.fetch_add(answered, Ordering::Relaxed);
                        answered = 0;
                    }
                })
                .expect("the console answers");
            updates.fetch_add(answered, Ordering::Relaxed);
        }));
    }
    for (i, n) in nodes.iter().enumerate().filter(|_| !socket) {
        let (objects, waker, stop, updates) = (
            n.shared.objects(),
            n.shared.waker.clone(),
            stop.clone(),
            updates.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut k: u32 = 0;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..1000 {
                    k = k.wrapping_add(1);
                    if objects
                        .cidr_add("inbound_cidr", address(i, k), 1, wall())
                        .unwrap_or(false)
                    {
                        let _ = waker.wake();
                    }
                }
                updates.fetch_add(1000, Ordering::Relaxed);
            }
        }));
    }
    // Probe: node1 bumps a gauge every 10 ms; the others see each bump in their global view.
    let mut lag = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let probe = &nodes[0].shared;
    let mut seq = 0i64;
    let deadline = start + Duration::from_secs_f64(a.seconds);
    while Instant::now() < deadline {
        seq += 1;
        let t0 = Instant::now();
        probe
            .objects()
            .gauge_add("outbound_domains", "probe", 1, wall())?;
        let _ = probe.waker.wake();
        let mut pending: Vec<usize> = (1..nodes.len()).collect();
        while !pending.is_empty() && t0.elapsed() < Duration::from_secs(5) {
            pending.retain(|&j| {
                let v = nodes[j]
                    .shared
                    .objects()
                    .gauge_get("outbound_domains", "probe", View::Global)
                    .unwrap_or(0);
                if v >= seq {
                    let _ = lag.record(t0.elapsed().as_micros().max(1) as u64);
                    false
                } else {
                    true
                }
            });
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let secs = start.elapsed().as_secs_f64();
    let mut datagrams = 0u64;
    let (mut msgs, mut ups) = (0u64, 0u64);
    for (n, b) in nodes.iter().zip(&before) {
        if let Ok(s) = n.shared.status.lock() {
            datagrams += s.counters.datagrams_sent - b.datagrams_sent;
        }
        if let Ok(r) = n.shared.replicator.lock() {
            let st = r.stats();
            msgs += st.messages_out;
            ups += st.updates_out;
        }
    }
    for (_, server) in consoles {
        server.stop();
    }
    for n in nodes {
        n.stop();
    }
    Ok(Outcome {
        updates_per_sec: updates.load(Ordering::Relaxed) as f64 / secs,
        lag_p50_ms: lag.value_at_quantile(0.5) as f64 / 1000.0,
        lag_p99_ms: lag.value_at_quantile(0.99) as f64 / 1000.0,
        datagrams_per_sec: datagrams as f64 / secs,
        updates_per_message: ups as f64 / msgs.max(1) as f64,
        replicated_per_sec: ups as f64 / secs,
    })
}

pub fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(targets) = &a.target {
        return crate::replicate_target::run(a, targets);
    }
    if a.config.is_some() || a.mix.is_some() {
        return crate::replicate_mix::run(a);
    }
    let configs = [
        ("defaults (1.0 s, 100)", 1.0, 100u32),
        ("max_delay 0.01", 0.01, 100),
        ("max_delay 0.01, max_pending 10000", 0.01, 10_000),
    ];
    let vias: &[(&str, bool)] = match a.via {
        Via::Inproc => &[("in-process", false)],
        Via::Socket => &[("socket", true)],
        Via::Both => &[("in-process", false), ("socket", true)],
    };
    println!(
        "replicate: {} nodes in namespaces, one updater thread per node, {} s per configuration",
        a.nodes, a.seconds
    );
    if a.via != Via::Inproc {
        println!(
            "socket: {} connection(s) per node stream 'cluster shared cidr incr' requests to the node's console (Unix socket), answers read as they come",
            a.connections
        );
    }
    println!(
        "{:<36} {:<10} {:>14} {:>10} {:>10} {:>13} {:>12} {:>13}",
        "configuration",
        "via",
        "updates/s",
        "lag p50",
        "lag p99",
        "datagrams/s",
        "upd/message",
        "replicated/s"
    );
    let mut rows = Vec::new();
    for ((name, d, p), (via, socket)) in configs
        .into_iter()
        .flat_map(|c| vias.iter().map(move |v| (c, *v)))
    {
        let o = run_one(a, d, p, socket)?;
        println!(
            "{:<36} {:<10} {:>14.0} {:>8.1}ms {:>8.1}ms {:>13.0} {:>12.1} {:>13.0}",
            name,
            via,
            o.updates_per_sec,
            o.lag_p50_ms,
            o.lag_p99_ms,
            o.datagrams_per_sec,
            o.updates_per_message,
            o.replicated_per_sec
        );
        rows.push(json!({
            "configuration": name, "via": via, "max_delay": d, "max_pending": p, "updates_per_sec": o.updates_per_sec,
            "lag_p50_ms": o.lag_p50_ms, "lag_p99_ms": o.lag_p99_ms, "datagrams_per_sec": o.datagrams_per_sec,
            "updates_per_message": o.updates_per_message, "replicated_per_sec": o.replicated_per_sec,
        }));
    }
    if a.json {
        println!(
            "{}",
            json!({ "scenario": "replicate", "nodes": a.nodes, "seconds": a.seconds, "runs": rows })
        );
    }
    if let Some(path) = &a.report {
        let label = |r: &serde_json::Value| {
            format!(
                "{} ({})",
                r["configuration"].as_str().unwrap_or(""),
                r["via"].as_str().unwrap_or("")
            )
        };
        let figure = |key: &str| -> Vec<(String, f64)> {
            rows.iter()
                .map(|r| (label(r), r[key].as_f64().unwrap_or(f64::NAN)))
                .collect()
        };
        let mut report = crate::report::Report::new("cohort-bench replicate");
        report.text(
            "Run",
            &format!(
                "{} nodes in namespaces, one updater thread per node, {} s per configuration, \
                 Replicate \"inbound_cidr\" and \"outbound_domains\" at each configuration's \
                 max_delay and max_pending",
                a.nodes, a.seconds
            ),
        );
        report.table(
            "Configurations",
            &[
                "configuration",
                "updates/s",
                "lag p50 ms",
                "lag p99 ms",
                "updates/message",
            ],
            &rows
                .iter()
                .map(|r| {
                    vec![
                        label(r),
                        format!("{:.0}", r["updates_per_sec"].as_f64().unwrap_or(0.0)),
                        format!("{:.1}", r["lag_p50_ms"].as_f64().unwrap_or(0.0)),
                        format!("{:.1}", r["lag_p99_ms"].as_f64().unwrap_or(0.0)),
                        format!("{:.1}", r["updates_per_message"].as_f64().unwrap_or(0.0)),
                    ]
                })
                .collect::<Vec<_>>(),
        );
        report.bar_chart(
            "Updates per second, cluster-wide",
            "updates/s",
            &figure("updates_per_sec"),
        );
        report.bar_chart("Propagation lag p99", "ms", &figure("lag_p99_ms"));
        report.write(path)?;
        println!("report: {} ({} figures)", path.display(), report.figures());
    }
    Ok(())
}
