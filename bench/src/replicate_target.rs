//! `cohort-bench replicate --target SOCK,SOCK,...`: the `--mix` load against a cluster that is
//! already running, through its nodes' consoles (Unix sockets, or `HOST:PORT` consoles that need
//! no key), so an operator can measure production-shaped nodes.
//!
//! The objects come from the first console's `cluster shared list`. Every node gets `--threads`
//! connections streaming `cluster shared cidr|gauge incr` and `cluster shared cache set`
//! requests (pipelined, answers read as they come) on the benchmark's own keys: CIDR prefixes in
//! 198.18.0.0/15 (the range set aside for benchmarks, RFC 2544), gauge and cache keys starting
//! `cohort-bench.`. The first console bumps a probe key of one object every 10 ms, in rotation,
//! and the others poll their global view for it (lag, as seen through the consoles). Throttles
//! and series are refused: neither can be taken back once counted, and the run must leave the
//! cluster as it found it. At the end every connection takes back exactly what it added (a
//! `decr` per key and amount) and every cache key it wrote is rewritten to expire a second
//! later; zero counts are then freed by the nodes' own compaction (every 10 s).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cohort::console::{Client, Endpoint};
use cohort_engine::console::protocol::Status;
use hdrhistogram::Histogram;
use serde_json::json;

use crate::cidr::SplitMix;
use crate::replicate::Args;

/// The object types `--target` can load and take back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Cidr,
    Gauge,
    Cache,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Cidr => "cidr",
            Class::Gauge => "gauge",
            Class::Cache => "cache",
        }
    }

    /// From `cluster shared list --json`'s `type`.
    fn of(kind: &str) -> Option<Class> {
        match kind {
            "cidrtree" => Some(Class::Cidr),
            "gauge table" => Some(Class::Gauge),
            "cache" => Some(Class::Cache),
            _ => None,
        }
    }
}

/// Key `k` as the class spells it: the benchmark's own namespace.
fn key(class: Class, k: u64) -> String {
    match class {
        Class::Cidr => {
            let ip = 0xc612_0000u32 | (k as u32 & 0x0001_ffff);
            format!("{}/32", std::net::Ipv4Addr::from(ip))
        }
        Class::Gauge | Class::Cache => format!("cohort-bench.k{k}"),
    }
}

/// The probe's key: outside the load's keys (CIDR: the last address of 198.18.0.0/15).
fn probe_key(class: Class) -> String {
    match class {
        Class::Cidr => "198.19.255.255/32".into(),
        Class::Gauge | Class::Cache => "cohort-bench.probe".into(),
    }
}

fn update_line(class: Class, object: &str, key: &str, seq: u64) -> String {
    match class {
        Class::Cidr => format!("cluster shared cidr incr {object} {key}"),
        Class::Gauge => format!("cluster shared gauge incr {object} {key}"),
        Class::Cache => format!("cluster shared cache set {object} {key} {seq}"),
    }
}

/// The lines that take back what one connection did.
fn undo_lines(class: Class, object: &str, key: &str, amount: u64) -> String {
    match class {
        Class::Cidr => format!("cluster shared cidr decr {object} {key} {amount}"),
        Class::Gauge => format!("cluster shared gauge decr {object} {key} {amount}"),
        Class::Cache => format!("cluster shared cache set {object} {key} 0 1"),
    }
}

fn probe_read_line(class: Class, object: &str) -> String {
    let key = probe_key(class);
    match class {
        Class::Cidr => format!("cluster shared cidr count {object} {key}"),
        Class::Gauge => format!("cluster shared gauge get {object} {key}"),
        Class::Cache => format!("cluster shared cache get {object} {key}"),
    }
}

/// The number an answer holds (a count, a gauge, a cache value written as a number).
fn answer_number(body: &[u8]) -> i64 {
    String::from_utf8_lossy(body)
        .split_whitespace()
        .rev()
        .find_map(|w| w.parse().ok())
        .unwrap_or(0)
}

struct Target {
    name: String,
    class: Class,
    updates: AtomicU64,
}

fn objects_of(endpoint: &Endpoint) -> Result<Vec<(String, String)>, String> {
    let mut client = connect(endpoint).map_err(|e| format!("--target {e}"))?;
    let answer = client
        .run("cluster shared list", true)
        .map_err(|e| format!("--target {endpoint}: {e}"))?;
    let v: serde_json::Value = serde_json::from_slice(&answer.body)
        .map_err(|e| format!("--target {endpoint}: cluster shared list: {e}"))?;
    Ok(v["objects"]
        .as_array()
        .map(|objects| {
            objects
                .iter()
                .filter_map(|o| {
                    Some((
                        o["name"].as_str()?.to_string(),
                        o["type"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Runs the load against the consoles of `--target`.
pub fn run(a: &Args, targets_arg: &str) -> Result<(), Box<dyn std::error::Error>> {
    let endpoints: Vec<Endpoint> = targets_arg
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Endpoint::parse)
        .collect();
    if endpoints.is_empty() {
        return Err("--target: no console given (SOCK,SOCK,...)".into());
    }
    if a.config.is_some() {
        return Err("--target runs on the cluster's own objects; --config is for the lab".into());
    }
    if a.keys > 131_071 {
        return Err(format!(
            "--keys {} with --target: at most 131071 (the benchmark's CIDR keys are the addresses \
             of 198.18.0.0/15 but its last, the probe's)",
            a.keys
        )
        .into());
    }
    let listed = objects_of(&endpoints[0])?;
    let mut refused = Vec::new();
    let targets: Arc<Vec<Target>> = Arc::new(
        listed
            .iter()
            .filter_map(|(name, kind)| match Class::of(kind) {
                Some(class) => Some(Target {
                    name: name.clone(),
                    class,
                    updates: AtomicU64::new(0),
                }),
                None => {
                    refused.push(format!("{name} ({kind})"));
                    None
                }
            })
            .collect(),
    );
    let mix: Vec<(Class, u32)> = match &a.mix {
        None => [Class::Cidr, Class::Gauge, Class::Cache]
            .into_iter()
            .filter(|c| targets.iter().any(|t| t.class == *c))
            .map(|c| (c, 1))
            .collect(),
        Some(text) => {
            use crate::replicate_mix::Class as Mixed;
            let mut mix = Vec::new();
            for (mixed, weight) in crate::replicate_mix::parse_mix(text)? {
                let name = mixed.name();
                let class = match mixed {
                    Mixed::Cidr => Class::Cidr,
                    Mixed::Gauge => Class::Gauge,
                    Mixed::Cache => Class::Cache,
                    Mixed::Throttle | Mixed::Series => {
                        return Err(format!(
                            "--mix {name} with --target: {name} counts cannot be taken back, and \
                             the run must leave the cluster as it found it"
                        )
                        .into());
                    }
                };
                if weight > 0 && !targets.iter().any(|t| t.class == class) {
                    return Err(format!("--mix {name}: the cluster has no such object").into());
                }
                mix.push((class, weight));
            }
            mix
        }
    };
    let wheel: Arc<Vec<Class>> = Arc::new(
        mix.iter()
            .flat_map(|(c, w)| std::iter::repeat_n(*c, *w as usize))
            .collect(),
    );
    if wheel.is_empty() {
        return Err("--target: no CIDR tree, gauge table or cache to load".into());
    }
    let keys = Arc::new(crate::replicate_mix::Keys::new(a.keys.max(1), a.zipf));

    crate::replicate_mix::catch_interrupt();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut workers = Vec::new();
    // Every connection first: a console that cannot be reached stops the run before any load.
    let mut clients = Vec::new();
    for (i, endpoint) in endpoints.iter().enumerate() {
        for t in 0..a.threads.max(1) {
            clients.push((i, t, endpoint.clone(), connect(endpoint)?));
        }
    }
    for (i, t, endpoint, client) in clients {
        {
            let mut client = client;
            let (stop, targets, wheel, keys) =
                (stop.clone(), targets.clone(), wheel.clone(), keys.clone());
            workers.push(std::thread::spawn(move || -> Result<(), String> {
                let mut rng = SplitMix((i as u64) << 32 | t as u64 | 1 << 63);
                let mut turn = [0usize; 3];
                // (object, key) of each line sent, in order; the answers come in that order.
                let (sent, answered) = std::sync::mpsc::channel::<(usize, u64)>();
                // The answers are handed over on the client's reader thread.
                let answered = std::sync::Mutex::new(answered);
                // What this connection added, counted from the answers: (object, key) -> amount.
                let mut added: HashMap<(usize, u64), u64> = HashMap::new();
                let mut seq = 0u64;
                let mut refused = 0u64;
                let lines = std::iter::from_fn(|| {
                    if seq.is_multiple_of(256) && stop.load(Ordering::Relaxed) {
                        return None;
                    }
                    seq += 1;
                    let class = wheel[(rng.next() % wheel.len() as u64) as usize];
                    let of_class: Vec<usize> = (0..targets.len())
                        .filter(|j| targets[*j].class == class)
                        .collect();
                    let slot = &mut turn[class as usize];
                    let at = of_class[*slot % of_class.len()];
                    *slot = slot.wrapping_add(1);
                    let k = keys.draw(rng.next());
                    let _ = sent.send((at, k));
                    Some(update_line(class, &targets[at].name, &key(class, k), seq))
                });
                let streamed = client.stream_lines(lines, false, |r| {
                    let Some(line) = answered.lock().ok().and_then(|a| a.try_recv().ok()) else {
                        return;
                    };
                    if r.status == Status::Ok {
                        *added.entry(line).or_default() += 1;
                    } else {
                        refused += 1;
                    }
                });
                for ((at, _), n) in &added {
                    targets[*at].updates.fetch_add(*n, Ordering::Relaxed);
                }
                // Take everything back, on a fresh connection if this one broke. Lines written
                // but never answered before a break cannot be known: they are reported.
                let unanswered = answered.lock().map_or(0, |a| a.try_iter().count());
                let mut problems = Vec::new();
                if let Err(e) = &streamed {
                    problems.push(format!(
                        "{endpoint}: the stream broke ({e}); {unanswered} updates unanswered, \
                         perhaps applied and not taken back"
                    ));
                    match connect(&endpoint) {
                        Ok(c) => client = c,
                        Err(e) => {
                            problems.push(format!("{endpoint}: cannot take back: {e}"));
                            return Err(problems.join("; "));
                        }
                    }
                }
                let undo: Vec<String> = added
                    .iter()
                    .map(|((at, k), amount)| {
                        let t = &targets[*at];
                        undo_lines(t.class, &t.name, &key(t.class, *k), *amount)
                    })
                    .collect();
                match client.pipeline(&undo, false) {
                    Ok(answers) => {
                        let failed = answers.iter().filter(|r| r.status != Status::Ok).count();
                        if failed > 0 {
                            problems.push(format!("{endpoint}: {failed} take-backs were refused"));
                        }
                    }
                    Err(e) => problems.push(format!("{endpoint}: taking back failed: {e}")),
                }
                if refused > 0 {
                    problems.push(format!("{endpoint}: {refused} updates were refused"));
                }
                if problems.is_empty() {
                    Ok(())
                } else {
                    Err(problems.join("; "))
                }
            }));
        }
    }

    // Probes through the consoles: the first writes, the others read their global view. Whatever
    // happens here, the load stops and everything is taken back before an error is returned.
    let mut lags: Vec<Histogram<u64>> = targets
        .iter()
        .map(|_| Histogram::new_with_bounds(1, 60_000_000, 3))
        .collect::<Result<_, _>>()?;
    // Probe writes answered Ok, per object (what the take-back subtracts).
    let mut probes: Vec<i64> = vec![0; targets.len()];
    let mut first: Option<Client> = None;
    let probed = probe_phase(
        a,
        &endpoints,
        &targets,
        &mut lags,
        &mut probes,
        &mut first,
        start,
    );
    let interrupted = crate::replicate_mix::interrupted();
    stop.store(true, Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    let mut failures = Vec::new();
    if let Err(e) = &probed {
        failures.push(format!("probes: {e}"));
    }
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("a connection's thread panicked".into()),
        }
    }
    // The probes go too.
    let mut first = match first {
        Some(c) => Some(c),
        None => connect(&endpoints[0]).ok(),
    };
    for (t, n) in targets.iter().zip(&probes) {
        let undo = match t.class {
            Class::Cache => undo_lines(t.class, &t.name, &probe_key(t.class), 0),
            _ if *n > 0 => undo_lines(t.class, &t.name, &probe_key(t.class), *n as u64),
            _ => continue,
        };
        let done = first
            .as_mut()
            .map(|c| c.run(&undo, false))
            .is_some_and(|r| r.is_ok_and(|r| r.status == Status::Ok));
        if !done {
            failures.push(format!("the probe of {} was not taken back", t.name));
        }
    }

    println!(
        "replicate --target: {} consoles, {} connection(s) each, {} keys ({}), {:.1} s{}",
        endpoints.len(),
        a.threads.max(1),
        a.keys,
        crate::replicate_mix::distribution(a.zipf),
        secs,
        if interrupted { " (interrupted)" } else { "" }
    );
    if !refused.is_empty() {
        println!("left alone (cannot be taken back): {}", refused.join(", "));
    }
    println!(
        "{:<28} {:<6} {:>12} {:>10} {:>10} {:>10}",
        "object", "type", "updates/s", "lag p50", "lag p99", "lag p999"
    );
    let mut rows = Vec::new();
    for (t, lag) in targets.iter().zip(&lags) {
        let rate = t.updates.load(Ordering::Relaxed) as f64 / secs;
        let ms = |q: f64| {
            if lag.is_empty() {
                f64::NAN
            } else {
                lag.value_at_quantile(q) as f64 / 1000.0
            }
        };
        println!(
            "{:<28} {:<6} {:>12.0} {:>8.1}ms {:>8.1}ms {:>8.1}ms",
            t.name,
            t.class.name(),
            rate,
            ms(0.5),
            ms(0.99),
            ms(0.999)
        );
        rows.push(json!({
            "object": t.name, "type": t.class.name(), "updates": t.updates.load(Ordering::Relaxed),
            "updates_per_sec": rate, "lag_p50_ms": ms(0.5), "lag_p99_ms": ms(0.99),
            "lag_p999_ms": ms(0.999), "lag_samples": lag.len(),
        }));
    }
    if a.json {
        println!(
            "{}",
            json!({ "scenario": "replicate", "targets": endpoints.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "threads": a.threads.max(1), "keys": a.keys, "zipf": a.zipf, "seconds": secs,
                    "interrupted": interrupted, "objects": rows, "left_alone": refused })
        );
    }
    if !failures.is_empty() {
        return Err(failures.join("; ").into());
    }
    Ok(())
}

/// A console connection that gives up after 10 s of silence (a stopped node answers nothing).
fn connect(endpoint: &Endpoint) -> Result<Client, String> {
    let mut c = Client::connect(endpoint).map_err(|e| format!("{endpoint}: {e}"))?;
    c.set_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| format!("{endpoint}: {e}"))?;
    Ok(c)
}

/// node1 bumps one object's probe key every 10 ms, in rotation, and the other consoles read it
/// back until they see it (or 5 s pass); until the deadline or Ctrl-C.
fn probe_phase(
    a: &Args,
    endpoints: &[Endpoint],
    targets: &[Target],
    lags: &mut [Histogram<u64>],
    probes: &mut [i64],
    first_out: &mut Option<Client>,
    start: Instant,
) -> Result<(), String> {
    let first = first_out.insert(connect(&endpoints[0])?);
    let mut readers: Vec<Client> = endpoints[1..]
        .iter()
        .map(connect)
        .collect::<Result<_, _>>()?;
    let deadline = start + Duration::from_secs_f64(a.seconds);
    let mut turn = 0usize;
    let mut last_tick = Instant::now();
    while Instant::now() < deadline && !crate::replicate_mix::interrupted() {
        let at = turn % targets.len();
        turn += 1;
        let t = &targets[at];
        let seq = probes[at] + 1;
        let write = match t.class {
            Class::Cidr => format!("cluster shared cidr incr {} {}", t.name, probe_key(t.class)),
            Class::Gauge => format!(
                "cluster shared gauge incr {} {}",
                t.name,
                probe_key(t.class)
            ),
            Class::Cache => format!(
                "cluster shared cache set {} {} {seq} 60",
                t.name,
                probe_key(t.class)
            ),
        };
        let t0 = Instant::now();
        let answer = first.run(&write, false).map_err(|e| e.to_string())?;
        if answer.status != Status::Ok {
            return Err(format!(
                "the probe write was refused: {}",
                String::from_utf8_lossy(&answer.body)
            ));
        }
        probes[at] = seq;
        let mut pending: Vec<usize> = (0..readers.len()).collect();
        while !pending.is_empty() && t0.elapsed() < Duration::from_secs(5) {
            let mut still = Vec::new();
            for j in pending {
                let body = readers[j]
                    .run(&probe_read_line(t.class, &t.name), false)
                    .map_err(|e| e.to_string())?
                    .body;
                if answer_number(&body) >= seq {
                    let _ = lags[at].record(t0.elapsed().as_micros().max(1) as u64);
                } else {
                    still.push(j);
                }
            }
            pending = still;
            std::thread::sleep(Duration::from_micros(500));
        }
        std::thread::sleep(Duration::from_millis(10));
        if last_tick.elapsed() >= Duration::from_secs(1) {
            eprintln!(
                "replicate --target: {:5.1} / {:.0} s",
                start.elapsed().as_secs_f64(),
                a.seconds
            );
            last_tick = Instant::now();
        }
    }
    Ok(())
}
