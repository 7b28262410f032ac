//! `cohort-bench transport`: messages per second from one sender through the group transport to
//! every other member, with per-message latency (hdrhistogram), datagrams per second and messages
//! per datagram. Real sockets: every node runs in its own network namespace on a bridge (root).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cohort::lab::{Lab, inproc};
use cohort_engine::group::Order;
use hdrhistogram::Histogram;
use serde_json::json;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Members of the cluster (one sender, the others receive).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Payload bytes per message (at least 16: a sequence number and a send time).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Messages sent.
    #[arg(long, default_value_t = 200_000)]
    pub count: u64,
    /// agreed (total order, the default), safe (agreed, delivered once every member holds the
    /// message) or fifo; a comma-separated list runs each in turn on fresh nodes and prints each
    /// one's p99 against the first's (`--order agreed,safe`).
    #[arg(long, default_value = "agreed")]
    pub order: String,
    /// Offered load in messages per second; 0 sends as fast as the transport takes them
    /// (throughput; latency is then mostly queueing).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Also print one JSON object after the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the figures as a self-contained HTML page (inline SVG plots): delivered
    /// messages per second over time and the latency distribution.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
    /// Datagram protection: none, mac (a `cluster_key`: every datagram authenticated) or seal
    /// (`cluster_crypto = seal`: messages also encrypted). Run it twice to compare.
    #[arg(long, default_value = "none")]
    pub crypto: String,
    /// Which member sends: `first` (the first member of the view, which sequences agreed and
    /// safe messages: agreed delivery is then one hop) or `other` (another member: agreed
    /// delivery waits for the sequencer's order, a second hop, as for most senders of a cluster).
    #[arg(long, default_value = "first")]
    pub sender: String,
    /// The UDP driver of every node (`msgc_server { udp_driver }`): syscall or uring.
    #[arg(long, default_value = "syscall")]
    pub driver: String,
}

pub fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if !a.order.contains(',') {
        return run_one(a).map(|_| ());
    }
    let mut results: Vec<(String, f64)> = Vec::new();
    for order in a.order.split(',').map(str::trim) {
        let mut one = a.clone();
        one.order = order.to_owned();
        one.report = a
            .report
            .as_ref()
            .map(|p| p.with_extension(format!("{order}.html")));
        results.push((order.to_owned(), run_one(&one)?));
        println!();
    }
    let (first, base) = results[0].clone();
    println!("p99 against {first}'s in this run:");
    for (order, p99) in &results {
        println!(
            "  {order:>8}: p99 {p99:.3} ms, {:.2}x",
            p99 / base.max(1e-9)
        );
    }
    Ok(())
}

/// One order: the run, its table, and its p99 latency in milliseconds.
fn run_one(a: &Args) -> Result<f64, Box<dyn std::error::Error>> {
    let order = match a.order.as_str() {
        "agreed" => Order::Agreed,
        "fifo" => Order::Fifo,
        "safe" => Order::Safe,
        o => return Err(format!("--order {o}: expected agreed, safe or fifo").into()),
    };
    if a.nodes < 2 {
        return Err("--nodes must be at least 2".into());
    }
    let size = a.size.max(16);
    let lab = Lab::new("cohort-bench transport", a.nodes)
        .ok_or("the transport benchmark needs root (network namespaces)")?;
    let key_dir = tempfile::tempdir()?;
    let key = key_dir.path().join("cluster.key");
    std::fs::write(&key, b"cohort-bench transport cluster key")?;
    let msgc = match a.crypto.as_str() {
        "none" => String::new(),
        "mac" => format!("cluster_key = \"{}\"", key.display()),
        "seal" => format!("cluster_key = \"{}\"\ncluster_crypto = seal", key.display()),
        o => return Err(format!("--crypto {o}: expected none, mac or seal").into()),
    };
    let msgc = match a.driver.as_str() {
        "syscall" | "uring" => format!("{msgc}\nudp_driver = {}", a.driver),
        o => return Err(format!("--driver {o}: expected syscall or uring").into()),
    };
    let nodes: Vec<_> = (0..a.nodes)
        .map(|i| inproc::start_with_msgc(&lab, i, "", &msgc, "", &["bench"]))
        .collect();
    for n in &nodes {
        n.wait_view(a.nodes, "bench");
    }
    // The member that sequences: the first of the view.
    let first = nodes[0]
        .shared
        .status
        .lock()
        .ok()
        .and_then(|s| s.view.members.first().cloned());
    let is_first = |n: &inproc::InProc| {
        n.shared
            .status
            .lock()
            .is_ok_and(|s| Some(&s.me) == first.as_ref())
    };
    let s_index = match a.sender.as_str() {
        "first" => nodes.iter().position(is_first).unwrap_or(0),
        "other" => nodes.iter().position(|n| !is_first(n)).unwrap_or(0),
        o => return Err(format!("--sender {o}: expected first or other").into()),
    };
    let mut nodes = nodes;
    let sender_node = nodes.remove(s_index);
    let epoch = Instant::now();
    let (count, nodes_n) = (a.count, a.nodes);
    // Receivers: every member but the sender counts and times what it gets.
    let mut handles = Vec::new();
    let nice = sender_node
        .shared
        .status
        .lock()
        .map_or(0, |s| s.config.msgc_server.loop_nice);
    let progress: Vec<Arc<AtomicU64>> = (1..a.nodes).map(|_| Arc::new(AtomicU64::new(0))).collect();
    for (n, done) in nodes.iter().zip(&progress) {
        let rx = n.subscribe_fresh();
        let done = done.clone();
        handles.push(std::thread::spawn(move || {
            // The same priority as the nodes' event loops (loop_nice), so that the consumer keeps
            // up and deliveries do not pile up in the channel (memory, then page faults).
            cohort::node::runtime::set_thread_nice(nice);
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
                .expect("histogram bounds are valid");
            let mut got = 0u64;
            let mut last = Duration::ZERO;
            while got < count {
                let Ok(d) = rx.recv_timeout(Duration::from_secs(10)) else {
                    break;
                };
                let sent = u64::from_le_bytes(d.payload[8..16].try_into().expect("16-byte header"));
                let now = epoch.elapsed();
                let _ = h.record((now.as_nanos() as u64).saturating_sub(sent).max(1));
                got += 1;
                last = now;
                if got.is_multiple_of(64) {
                    done.store(got, Ordering::Relaxed);
                }
            }
            (got, last, h)
        }));
    }
    let sender = &sender_node.shared;
    // The sender's own deliveries are read by no one: drop them rather than queue them.
    sender.unsubscribe();
    let start = epoch.elapsed();
    let before = sender
        .status
        .lock()
        .map(|s| s.counters.clone())
        .map_err(|_| "status")?;
    let mut seq = 0u64;
    // At most 50k messages or 32 MiB in flight (sent, not yet delivered to every receiver): the
    // transport's window gives the back-pressure, and the producer does not spend a core filling
    // memory ahead of it.
    let window = (32 << 20) / size as u64;
    let window = window.clamp(64, 50_000);
    // (seconds since the start, messages delivered to every receiver), for the report.
    let mut samples: Vec<(f64, u64)> = vec![(0.0, 0)];
    let sample_every = Duration::from_millis(200);
    let mut next_sample = start + sample_every;
    while seq < count {
        let delivered = progress
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        if epoch.elapsed() >= next_sample {
            samples.push(((epoch.elapsed() - start).as_secs_f64(), delivered));
            next_sample += sample_every;
        }
        if seq.saturating_sub(delivered) >= window {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let mut n = 1000.min(count - seq).min(window - (seq - delivered));
        if a.rate > 0 {
            // Paced: never ahead of rate x elapsed; small batches keep the spacing even.
            let due = ((epoch.elapsed() - start).as_secs_f64() * a.rate as f64) as u64;
            if due <= seq {
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
            n = n.min(due - seq).min(100);
        }
        let now = epoch.elapsed().as_nanos() as u64;
        let batch: Vec<Vec<u8>> = (seq..seq + n)
            .map(|i| {
                let mut p = vec![0u8; size];
                p[..8].copy_from_slice(&i.to_le_bytes());
                p[8..16].copy_from_slice(&now.to_le_bytes());
                p
            })
            .collect();
        sender.send_batch("bench", batch, order);
        seq += n;
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .expect("histogram bounds are valid");
    let mut end = start;
    let mut delivered = Vec::new();
    for h in handles {
        let (got, last, hist) = h.join().map_err(|_| "receiver panicked")?;
        all.add(&hist).map_err(|e| e.to_string())?;
        end = end.max(last);
        delivered.push(got);
    }
    let after = sender
        .status
        .lock()
        .map(|s| s.counters.clone())
        .map_err(|_| "status")?;
    let secs = (end - start).as_secs_f64().max(1e-9);
    let datagrams = after.datagrams_sent - before.datagrams_sent;
    let messages = after.messages_sent - before.messages_sent;
    let min_delivered = delivered.iter().copied().min().unwrap_or(0);
    let rate = min_delivered as f64 / secs;
    let p50 = all.value_at_quantile(0.50) as f64 / 1e6;
    let p99 = all.value_at_quantile(0.99) as f64 / 1e6;
    let offered = if a.rate > 0 {
        format!("offered {} msg/s", a.rate)
    } else {
        "unpaced".to_owned()
    };
    println!(
        "transport: {nodes_n} nodes in namespaces, one sender (the {} member of the view), {count} {} messages of {size} B, {offered}, crypto {}, driver {}",
        a.sender, a.order, a.crypto, a.driver
    );
    println!(
        "{:>14} {:>10} {:>10} {:>14} {:>14} {:>12}",
        "msgs/s", "p50 ms", "p99 ms", "datagrams/s", "msgs/datagram", "delivered"
    );
    println!(
        "{:>14.0} {:>10.3} {:>10.3} {:>14.0} {:>14.1} {:>12}",
        rate,
        p50,
        p99,
        datagrams as f64 / secs,
        messages as f64 / datagrams.max(1) as f64,
        min_delivered
    );
    let nacks: u64 = nodes
        .iter()
        .filter_map(|n| n.shared.status.lock().ok().map(|s| s.counters.nacks_sent))
        .sum();
    let retransmissions = after.retransmissions - before.retransmissions;
    println!(
        "retransmissions by the sender {retransmissions}, NACKs sent by the receivers {nacks}"
    );
    for n in nodes.into_iter().chain([sender_node]) {
        n.stop();
    }
    if a.json {
        println!(
            "{}",
            json!({
                "scenario": "transport", "nodes": nodes_n, "crypto": a.crypto, "offered_rate": a.rate, "size": size, "count": count, "order": a.order, "sender": a.sender, "driver": a.driver,
                "messages_per_sec": rate, "latency_p50_ms": p50, "latency_p99_ms": p99,
                "datagrams_per_sec": datagrams as f64 / secs,
                "messages_per_datagram": messages as f64 / datagrams.max(1) as f64,
                "delivered_min": min_delivered, "seconds": secs,
                "retransmissions": retransmissions, "nacks": nacks,
            })
        );
    }
    if let Some(path) = &a.report {
        samples.push((secs, min_delivered));
        let timeline: Vec<(f64, f64)> = samples
            .windows(2)
            .filter(|w| w[1].0 > w[0].0)
            .map(|w| {
                (
                    w[1].0,
                    (w[1].1 - w[0].1.min(w[1].1)) as f64 / (w[1].0 - w[0].0),
                )
            })
            .collect();
        let latency: Vec<(f64, f64)> = (0..=100)
            .filter(|_| !all.is_empty())
            .map(|p| {
                let q = (f64::from(p) / 100.0).min(0.999);
                (f64::from(p), all.value_at_quantile(q) as f64 / 1e6)
            })
            .collect();
        let mut report = crate::report::Report::new("cohort-bench transport");
        report.text(
            "Run",
            &format!(
                "{nodes_n} nodes in namespaces, one sender, {count} {} messages of {size} B, {offered}",
                a.order
            ),
        );
        report.table(
            "Result",
            &[
                "msgs/s",
                "p50 ms",
                "p99 ms",
                "datagrams/s",
                "delivered",
                "retransmissions",
                "NACKs",
            ],
            &[vec![
                format!("{rate:.0}"),
                format!("{p50:.3}"),
                format!("{p99:.3}"),
                format!("{:.0}", datagrams as f64 / secs),
                min_delivered.to_string(),
                retransmissions.to_string(),
                nacks.to_string(),
            ]],
        );
        report.line_chart(
            "Messages delivered to every receiver per second",
            "seconds",
            "msgs/s",
            &[(a.order.clone(), timeline)],
        );
        report.percentile_chart(
            "Latency, send to delivery",
            "ms",
            &[(a.order.clone(), latency)],
        );
        report.write(path)?;
        println!("report: {} ({} figures)", path.display(), report.figures());
    }
    if min_delivered < count {
        return Err(format!(
            "only {min_delivered} of {count} messages were delivered to every receiver"
        )
        .into());
    }
    Ok(p99)
}
