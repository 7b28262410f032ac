//! `cohort-bench replicate --config FILE` (and `--mix`, `--keys`, `--zipf`, `--threads`): the
//! operator's own `Replicate` scopes under a load that touches every object.
//!
//! Every node of the lab runs the file's `Replicate` scopes with their own `max_pending` and
//! `max_delay` (objects only the manager keeps are left out: there is no manager in the lab).
//! `--threads` updaters per node pick an object type by the `--mix` weights, an object of that
//! type in turn, and a key from `--keys` (uniform, or Zipf with exponent `--zipf`), and update it
//! through the node's own API as an application in the process would: CIDR increments, gauge
//! increments, throttle events, cache writes, series events. node1 also bumps a probe key of one
//! object every 10 ms (in rotation) and every other node polls its global view for it, which
//! times the propagation lag per object.
//!
//! Printed per object: updates/s, encoded bytes per replicated update (section headers and
//! updates, snapshots included), lag p50/p99/p999; per node: CPU of its event loop plus its
//! updaters, as a share of one core. At the end the updaters stop, the nodes flush, and every
//! sum object is checked: on every node, the global view of every key equals the sum of the
//! nodes' local views (caches: every node holds the same value). Progress is a line per
//! second (rewritten in place on a terminal); Ctrl-C stops the load early and the summary covers
//! what ran. `--report FILE.html` writes the figures as a page (see [`crate::report`]).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cohort::lab::{Lab, inproc};
use cohort_engine::config::model::{Replicate, ReplicateKind};
use cohort_engine::replicate::throttle::ThrottleSpec;
use cohort_engine::replicate::{Objects, SeriesItem, View};
use hdrhistogram::Histogram;
use ipnet::IpNet;
use serde_json::json;

use crate::cidr::SplitMix;
use crate::replicate::{Args, wall};
use crate::report::Report;

/// The load's object types, as `--mix` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Class {
    Cidr,
    Gauge,
    Throttle,
    Cache,
    Series,
}

const CLASSES: [Class; 5] = [
    Class::Cidr,
    Class::Gauge,
    Class::Throttle,
    Class::Cache,
    Class::Series,
];

impl Class {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Class::Cidr => "cidr",
            Class::Gauge => "gauge",
            Class::Throttle => "throttle",
            Class::Cache => "cache",
            Class::Series => "series",
        }
    }

    fn of(kind: ReplicateKind) -> Option<Class> {
        Some(match kind {
            ReplicateKind::InboundCidr | ReplicateKind::OutboundCidr => Class::Cidr,
            ReplicateKind::OutboundDomains | ReplicateKind::OutboundBindingDomains => Class::Gauge,
            ReplicateKind::SharedNamedThrottles | ReplicateKind::Obtm | ReplicateKind::Obtc => {
                Class::Throttle
            }
            ReplicateKind::Cache => Class::Cache,
            ReplicateKind::Metrics => Class::Series,
            ReplicateKind::EccmgrMetrics => return None,
        })
    }
}

/// Throttle names per object stay under the default bound on named throttles (1,000).
const THROTTLE_NAMES: u64 = 900;
/// The series name the load counts (not a built-in one: it needs `audit_series` replicated).
const SERIES: &str = "bench";

/// `--mix cidr=60,gauge=30,throttle=10`: weights per class; an error names the bad part.
pub(crate) fn parse_mix(text: &str) -> Result<BTreeMap<Class, u32>, String> {
    let mut mix = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part
            .split_once('=')
            .ok_or_else(|| format!("--mix: '{part}' is not TYPE=WEIGHT"))?;
        let class = CLASSES
            .into_iter()
            .find(|c| c.name() == name.trim())
            .ok_or_else(|| {
                format!("--mix: unknown type '{name}' (cidr, gauge, throttle, cache or series)")
            })?;
        let weight: u32 = weight
            .trim()
            .parse()
            .map_err(|_| format!("--mix: weight '{weight}' of {name} is not a whole number"))?;
        mix.insert(class, weight);
    }
    if mix.values().all(|w| *w == 0) {
        return Err("--mix: every weight is zero".into());
    }
    Ok(mix)
}

/// How keys are drawn, for people: `uniform` or `zipf S`.
pub(crate) fn distribution(zipf: Option<f64>) -> String {
    zipf.map_or("uniform".to_string(), |s| format!("zipf {s}"))
}

/// Draws key numbers `0..n`: uniform, or Zipf with exponent `s` (inverse CDF on a table).
pub(crate) struct Keys {
    n: u64,
    cdf: Option<Vec<f64>>,
}

impl Keys {
    pub(crate) fn new(n: u64, zipf: Option<f64>) -> Keys {
        let cdf = zipf.map(|s| {
            let mut acc = 0.0;
            let mut cdf: Vec<f64> = (1..=n)
                .map(|k| {
                    acc += 1.0 / (k as f64).powf(s);
                    acc
                })
                .collect();
            for c in &mut cdf {
                *c /= acc;
            }
            cdf
        });
        Keys { n, cdf }
    }

    pub(crate) fn draw(&self, r: u64) -> u64 {
        match &self.cdf {
            None => r % self.n,
            Some(cdf) => {
                let u = (r >> 11) as f64 / (1u64 << 53) as f64;
                cdf.partition_point(|c| *c < u).min(cdf.len() - 1) as u64
            }
        }
    }
}

/// Key `k` as each class spells it (the probe has its own, outside the load's keys).
fn cidr_key(k: u64) -> IpNet {
    let ip = 0x0a00_0000u32 | (k as u32 & 0x00ff_ffff);
    IpNet::new(std::net::Ipv4Addr::from(ip).into(), 32).expect("a /32 is valid")
}

fn probe_net() -> IpNet {
    IpNet::new(std::net::Ipv4Addr::new(192, 0, 2, 1).into(), 32).expect("a /32 is valid")
}

const PROBE: &str = "cohort-bench-probe";

fn throttle_spec() -> ThrottleSpec {
    ThrottleSpec {
        limit: u64::MAX / 4,
        period: 3600,
        epsilon: cohort_engine::replicate::throttle::DEFAULT_EPSILON,
    }
}

/// One update of key `k` in `object` of `class`; whether the batch is due (wake the loop).
fn update(objects: &Objects, class: Class, object: &str, k: u64, seq: u64) -> bool {
    let now = wall();
    let due = match class {
        Class::Cidr => objects.cidr_add(object, cidr_key(k), 1, now),
        Class::Gauge => objects.gauge_add(object, &format!("d{k}.example"), 1, now),
        Class::Throttle => {
            objects.throttle_inc(object, &format!("t{}", k % THROTTLE_NAMES), 1, now)
        }
        Class::Cache => {
            objects.cache_set(object, &format!("k{k}"), seq.to_string().as_bytes(), 0, now)
        }
        Class::Series => {
            objects.series_add(object, SERIES, SeriesItem::Text(format!("i{k}")), 1, now)
        }
    };
    due.unwrap_or(false)
}

/// node1's probe write for `object`: the probe's value becomes `seq`.
fn probe_write(objects: &Objects, class: Class, object: &str, seq: i64) -> bool {
    let now = wall();
    let due = match class {
        Class::Cidr => objects.cidr_add(object, probe_net(), 1, now),
        Class::Gauge => objects.gauge_add(object, PROBE, 1, now),
        Class::Throttle => objects.throttle_inc(object, PROBE, 1, now),
        Class::Cache => objects.cache_set(object, PROBE, seq.to_string().as_bytes(), 0, now),
        Class::Series => objects.series_add(object, SERIES, SeriesItem::Text(PROBE.into()), 1, now),
    };
    due.unwrap_or(false)
}

/// The probe's value for `object` in another node's global view.
fn probe_read(objects: &Objects, class: Class, object: &str, monitor: Option<Monitor>) -> i64 {
    let r = match class {
        Class::Cidr => objects.cidr_count(object, probe_net(), View::Global),
        Class::Gauge => objects.gauge_get(object, PROBE, View::Global),
        Class::Throttle => objects.throttle_usage(object, PROBE),
        Class::Cache => Ok(objects
            .cache_get(object, PROBE, wall())
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)),
        Class::Series => Ok(monitor.map_or(0, |m| {
            series_total(
                objects,
                object,
                &SeriesItem::Text(PROBE.into()),
                m,
                View::Global,
            )
        })),
    };
    r.unwrap_or(0)
}

use cohort_engine::replicate::Monitor;

/// Events of the load's series for `item` in `view`, over every window of `monitor`.
fn series_total(
    objects: &Objects,
    object: &str,
    item: &SeriesItem,
    monitor: Monitor,
    view: View,
) -> i64 {
    objects
        .series_count(
            object,
            SERIES,
            item,
            monitor,
            0,
            monitor.windows.saturating_sub(1),
            view,
            wall(),
        )
        .unwrap_or(0)
}

/// One object under load.
struct Target {
    name: String,
    class: Class,
    monitor: Option<Monitor>,
    /// Updates made to it, all nodes.
    updates: AtomicU64,
}

/// CPU time (user + system) of thread `tid` of this process, in clock ticks.
fn thread_ticks(tid: i32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return 0;
    };
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    let at = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    at(11) + at(12)
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// CPU seconds the calling thread has used.
fn own_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec pointer and a valid clock id.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// From now on Ctrl-C ends the load early instead of the process (see [`interrupted`]).
pub(crate) fn catch_interrupt() {
    INTERRUPTED.store(false, Ordering::Relaxed);
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        )
    };
}

/// Whether Ctrl-C was pressed since [`catch_interrupt`].
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// The Replicate scopes of `path` the lab can run, with the load's classes.
fn objects_of(path: Option<&Path>) -> Result<(Vec<Replicate>, String), String> {
    let (scopes, source) = match path {
        Some(p) => {
            let loaded = cohort_engine::config::load_file(p).map_err(|e| e.to_string())?;
            (loaded.config.cluster.replicate, p.display().to_string())
        }
        None => (
            [
                ("inbound_cidr", ReplicateKind::InboundCidr),
                ("outbound_domains", ReplicateKind::OutboundDomains),
                (
                    "shared_named_throttles",
                    ReplicateKind::SharedNamedThrottles,
                ),
                ("cache", ReplicateKind::Cache),
                ("metrics", ReplicateKind::Metrics),
            ]
            .into_iter()
            .map(|(n, k)| Replicate::new(n, k))
            .collect(),
            "(built in: one object of every type at the defaults)".to_string(),
        ),
    };
    let kept: Vec<Replicate> = scopes
        .into_iter()
        .filter(|r| Class::of(r.kind).is_some())
        .collect();
    if kept.is_empty() {
        return Err(format!(
            "{source}: no Replicate scope the nodes keep (cluster {{ Replicate \"NAME\" {{ }} }})"
        ));
    }
    Ok((kept, source))
}

/// Runs the operator's load; prints the tables (and JSON, and the report).
pub fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let (scopes, source) = objects_of(a.config.as_deref())?;
    let present: Vec<Class> = CLASSES
        .into_iter()
        .filter(|c| scopes.iter().any(|r| Class::of(r.kind) == Some(*c)))
        .collect();
    let mix = match &a.mix {
        Some(text) => parse_mix(text)?,
        None => present.iter().map(|c| (*c, 1)).collect(),
    };
    for (class, weight) in &mix {
        if *weight > 0 && !present.contains(class) {
            return Err(format!(
                "--mix names {} but {source} has no object of that type",
                class.name()
            )
            .into());
        }
    }
    if a.keys == 0 {
        return Err("--keys must be at least 1".into());
    }
    if let Some(s) = a.zipf
        && !(s.is_finite() && s > 0.0)
    {
        return Err("--zipf must be a positive number".into());
    }
    let cluster_opts: String = scopes
        .iter()
        .map(cohort_engine::config::render::render_replicate)
        .collect();
    let lab = Lab::new("cohort-bench replicate", a.nodes)
        .ok_or("the replicate benchmark needs root (network namespaces)")?;
    let nodes: Vec<inproc::InProc> = (0..a.nodes)
        .map(|i| inproc::start_with(&lab, i, &cluster_opts, "", &[]))
        .collect();
    for n in &nodes {
        n.wait_view(a.nodes, "ec_cluster");
    }
    let objects0 = nodes[0].shared.objects();
    let targets: Arc<Vec<Target>> = Arc::new(
        scopes
            .iter()
            .filter_map(|r| {
                let class = Class::of(r.kind)?;
                let monitor = objects0
                    .settings(&r.name)
                    .ok()
                    .and_then(|s| s.monitors.first().copied());
                Some(Target {
                    name: r.name.clone(),
                    class,
                    monitor,
                    updates: AtomicU64::new(0),
                })
            })
            .collect(),
    );
    // Throttles are defined before they count; every node defines the probe and the load's.
    for n in &nodes {
        let objects = n.shared.objects();
        for t in targets.iter().filter(|t| t.class == Class::Throttle) {
            for name in (0..THROTTLE_NAMES.min(a.keys))
                .map(|k| format!("t{k}"))
                .chain([PROBE.to_string()])
            {
                objects.throttle_create(&t.name, &name, throttle_spec(), wall())?;
            }
        }
    }
    // Weighted choice of a class, then objects of that class in turn.
    let by_class: Arc<BTreeMap<Class, Vec<usize>>> = Arc::new(
        present
            .iter()
            .map(|c| {
                (
                    *c,
                    (0..targets.len())
                        .filter(|i| targets[*i].class == *c)
                        .collect(),
                )
            })
            .collect(),
    );
    let wheel: Arc<Vec<Class>> = Arc::new(
        mix.iter()
            .flat_map(|(c, w)| std::iter::repeat_n(*c, *w as usize))
            .collect(),
    );
    let keys = Arc::new(Keys::new(a.keys, a.zipf));
    catch_interrupt();

    let stop = Arc::new(AtomicBool::new(false));
    let loop_ticks0: Vec<u64> = nodes.iter().map(|n| thread_ticks(n.tid)).collect();
    let start = Instant::now();
    let mut updaters = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for t in 0..a.threads.max(1) {
            let (objects, waker, stop) = (n.shared.objects(), n.shared.waker.clone(), stop.clone());
            let (targets, by_class, wheel, keys) = (
                targets.clone(),
                by_class.clone(),
                wheel.clone(),
                keys.clone(),
            );
            updaters.push((
                i,
                std::thread::spawn(move || {
                    let mut rng = SplitMix((i as u64) << 32 | t as u64);
                    let mut turn = vec![0usize; CLASSES.len()];
                    let mut counts = vec![0u64; targets.len()];
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..256 {
                            let r = rng.next();
                            let class = wheel[(r % wheel.len() as u64) as usize];
                            let list = &by_class[&class];
                            let slot = &mut turn[class as usize];
                            let at = list[*slot % list.len()];
                            *slot = slot.wrapping_add(1);
                            seq += 1;
                            let k = keys.draw(rng.next());
                            if update(&objects, class, &targets[at].name, k, seq) {
                                let _ = waker.wake();
                            }
                            counts[at] += 1;
                        }
                    }
                    for (t, c) in targets.iter().zip(counts) {
                        t.updates.fetch_add(c, Ordering::Relaxed);
                    }
                    own_cpu()
                }),
            ));
        }
    }

    // Probes, one object per 10 ms tick in rotation; progress once a second.
    let mut lags: Vec<Histogram<u64>> = targets
        .iter()
        .map(|_| Histogram::new_with_bounds(1, 60_000_000, 3))
        .collect::<Result<_, _>>()?;
    let mut seqs = vec![0i64; targets.len()];
    let deadline = start + Duration::from_secs_f64(a.seconds);
    let tty = std::io::stderr().is_terminal();
    let mut timeline: Vec<(f64, f64)> = Vec::new();
    let mut last_tick = Instant::now();
    let mut last_total = 0u64;
    let probe_objects = nodes[0].shared.objects();
    let mut turn = 0usize;
    while Instant::now() < deadline && !interrupted() {
        let at = turn % targets.len();
        turn += 1;
        let target = &targets[at];
        seqs[at] += 1;
        let seq = seqs[at];
        let t0 = Instant::now();
        if probe_write(&probe_objects, target.class, &target.name, seq) {
            let _ = nodes[0].shared.waker.wake();
        }
        let mut pending: Vec<usize> = (1..nodes.len()).collect();
        while !pending.is_empty() && t0.elapsed() < Duration::from_secs(5) {
            pending.retain(|&j| {
                let seen = probe_read(
                    &nodes[j].shared.objects(),
                    target.class,
                    &target.name,
                    target.monitor,
                );
                if seen >= seq {
                    let _ = lags[at].record(t0.elapsed().as_micros().max(1) as u64);
                    false
                } else {
                    true
                }
            });
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_millis(10));
        if last_tick.elapsed() >= Duration::from_secs(1) {
            // The updaters publish their counts when they stop; the replicators' counters are
            // live, so progress counts the updates the nodes have sent on.
            let total: u64 = nodes
                .iter()
                .filter_map(|n| {
                    n.shared
                        .replicator
                        .lock()
                        .ok()
                        .map(|r| r.stats().updates_out)
                })
                .sum();
            let rate = (total - last_total) as f64 / last_tick.elapsed().as_secs_f64();
            let t = start.elapsed().as_secs_f64();
            timeline.push((t, rate));
            let line = format!(
                "replicate: {t:5.1} / {:.0} s, {:>10.0} replicated updates/s",
                a.seconds, rate
            );
            if tty {
                let done = (t / a.seconds).clamp(0.0, 1.0);
                let filled = (done * 30.0).round() as usize;
                eprint!(
                    "\r[{}{}] {line}",
                    "#".repeat(filled),
                    ".".repeat(30 - filled)
                );
            } else {
                eprintln!("{line}");
            }
            last_total = total;
            last_tick = Instant::now();
        }
    }
    if tty {
        eprintln!();
    }
    let interrupted = interrupted();
    stop.store(true, Ordering::Relaxed);
    let mut updater_cpu = vec![0.0f64; nodes.len()];
    for (i, h) in updaters {
        updater_cpu[i] += h.join().map_err(|_| "an updater panicked")?;
    }
    let secs = start.elapsed().as_secs_f64();
    let hz = ticks_per_sec();
    let cpu: Vec<f64> = nodes
        .iter()
        .zip(&loop_ticks0)
        .zip(&updater_cpu)
        .map(|((n, t0), up)| {
            ((thread_ticks(n.tid).saturating_sub(*t0)) as f64 / hz + up) / secs * 100.0
        })
        .collect();
    // Let every batch go out and land: the longest max_delay, then a margin.
    let settle =
        scopes.iter().map(|r| r.max_delay).max().unwrap_or_default() + Duration::from_secs(2);
    for n in &nodes {
        let _ = n.shared.waker.wake();
    }
    std::thread::sleep(settle);
    let mut stats: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for n in &nodes {
        if let Ok(r) = n.shared.replicator.lock() {
            for (name, s) in r.object_stats() {
                let e = stats.entry(name.clone()).or_default();
                e.0 += s.updates_out;
                e.1 += s.bytes_out;
            }
        }
    }
    let checks: Vec<Result<bool, String>> =
        targets.iter().map(|t| check(&nodes, t, a.keys)).collect();

    println!(
        "replicate --config: {} nodes in namespaces, {} updater thread(s) per node, {} keys ({}), {:.1} s{}",
        a.nodes,
        a.threads.max(1),
        a.keys,
        crate::replicate_mix::distribution(a.zipf),
        secs,
        if interrupted { " (interrupted)" } else { "" }
    );
    println!("objects from {source}");
    println!(
        "{:<28} {:<9} {:>10} {:>8} {:>12} {:>11} {:>9} {:>9} {:>9}  global = sum of locals",
        "object",
        "type",
        "max_delay",
        "pending",
        "updates/s",
        "bytes/upd",
        "lag p50",
        "lag p99",
        "lag p999",
    );
    let mut rows = Vec::new();
    let mut table_rows = Vec::new();
    for ((t, lag), check) in targets.iter().zip(&lags).zip(&checks) {
        let scope = scopes.iter().find(|r| r.name == t.name);
        let (delay, pending) =
            scope.map_or((0.0, 0), |r| (r.max_delay.as_secs_f64(), r.max_pending));
        let rate = t.updates.load(Ordering::Relaxed) as f64 / secs;
        let (ups, bytes) = stats.get(&t.name).copied().unwrap_or_default();
        let per_update = bytes as f64 / ups.max(1) as f64;
        let ms = |q: f64| {
            if lag.is_empty() {
                f64::NAN
            } else {
                lag.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let verdict = match check {
            Ok(true) => "yes".to_string(),
            Ok(false) => "n/a (no local view)".to_string(),
            Err(e) => format!("NO: {e}"),
        };
        println!(
            "{:<28} {:<9} {:>10} {:>8} {:>12.0} {:>11.1} {:>7.1}ms {:>7.1}ms {:>7.1}ms  {}",
            t.name,
            t.class.name(),
            delay,
            pending,
            rate,
            per_update,
            ms(0.5),
            ms(0.99),
            ms(0.999),
            verdict
        );
        table_rows.push(vec![
            t.name.clone(),
            t.class.name().to_string(),
            format!("{rate:.0}"),
            format!("{per_update:.1}"),
            format!("{:.1}", ms(0.5)),
            format!("{:.1}", ms(0.99)),
            format!("{:.1}", ms(0.999)),
            verdict.clone(),
        ]);
        rows.push(json!({
            "object": t.name, "type": t.class.name(), "max_delay": delay, "max_pending": pending,
            "updates": t.updates.load(Ordering::Relaxed), "updates_per_sec": rate,
            "replicated_updates": ups, "bytes_per_update": per_update,
            "lag_p50_ms": ms(0.5), "lag_p99_ms": ms(0.99), "lag_p999_ms": ms(0.999),
            "lag_samples": lag.len(), "consistent": check.is_ok(),
            "checked": check.as_ref().is_ok_and(|c| *c),
            "check": check.as_ref().err(),
        }));
    }
    println!(
        "CPU per node (event loop + updaters, % of one core): {}",
        cpu.iter()
            .enumerate()
            .map(|(i, c)| format!("node{} {c:.0}%", i + 1))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if a.json {
        println!(
            "{}",
            json!({ "scenario": "replicate", "config": source, "nodes": a.nodes,
                    "threads": a.threads.max(1), "keys": a.keys, "zipf": a.zipf,
                    "seconds": secs, "interrupted": interrupted,
                    "cpu_percent": cpu, "objects": rows,
                    "timeline": timeline.iter().map(|(t, r)| json!([t, r])).collect::<Vec<_>>() })
        );
    }
    if let Some(path) = &a.report {
        let mut report = Report::new("cohort-bench replicate");
        report.text(
            "Run",
            &format!(
                "{} nodes, {} updater thread(s) per node, {} keys ({}), {:.1} s{}\nobjects from {source}\nmix: {}",
                a.nodes,
                a.threads.max(1),
                a.keys,
                distribution(a.zipf),
                secs,
                if interrupted { " (interrupted)" } else { "" },
                mix.iter()
                    .map(|(c, w)| format!("{}={w}", c.name()))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        );
        report.text("Replicate scopes", &cluster_opts);
        report.table(
            "Per object",
            &[
                "object",
                "type",
                "updates/s",
                "bytes/update",
                "lag p50 ms",
                "lag p99 ms",
                "lag p999 ms",
                "global = sum of locals",
            ],
            &table_rows,
        );
        report.line_chart(
            "Replicated updates per second over time (all nodes)",
            "seconds",
            "updates/s",
            &[("replicated".to_string(), timeline.clone())],
        );
        let curves: Vec<(String, Vec<(f64, f64)>)> = targets
            .iter()
            .zip(&lags)
            .map(|(t, h)| {
                let points = (0..=100)
                    .map(|p| {
                        let q = (f64::from(p) / 100.0).min(0.999);
                        (f64::from(p), h.value_at_quantile(q) as f64 / 1000.0)
                    })
                    .filter(|_| !h.is_empty())
                    .collect();
                (t.name.clone(), points)
            })
            .collect();
        report.percentile_chart("Propagation lag per object", "lag (ms)", &curves);
        report.bar_chart(
            "Updates per second per object",
            "updates/s",
            &targets
                .iter()
                .map(|t| {
                    (
                        t.name.clone(),
                        t.updates.load(Ordering::Relaxed) as f64 / secs,
                    )
                })
                .collect::<Vec<_>>(),
        );
        report.write(path)?;
        println!("report: {} ({} figures)", path.display(), report.figures());
    }
    for n in nodes {
        n.stop();
    }
    if checks.iter().any(Result::is_err) {
        return Err("a global view differs from the sum of the nodes' local views".into());
    }
    Ok(())
}

/// After the load: on every node, the global view of every key equals the sum of the nodes'
/// local views (CIDR: the whole load block and the probe; gauges and series: every key; caches:
/// every node holds the same values). Throttle usage has no local view to compare; its
/// probe lag is what shows it replicates.
/// `Ok(false)`: nothing to compare (throttles).
fn check(nodes: &[inproc::InProc], t: &Target, keys: u64) -> Result<bool, String> {
    let objects: Vec<Arc<Objects>> = nodes.iter().map(|n| n.shared.objects()).collect();
    let compare = |what: &str, get: &dyn Fn(&Objects, View) -> i64| -> Result<(), String> {
        let sum: i64 = objects.iter().map(|o| get(o, View::Local)).sum();
        for (i, o) in objects.iter().enumerate() {
            let global = get(o, View::Global);
            if global != sum {
                return Err(format!(
                    "{what}: node{} global {global}, sum of locals {sum}",
                    i + 1
                ));
            }
        }
        Ok(())
    };
    let sample = |n: u64| (0..keys).step_by((keys / n).max(1) as usize);
    match t.class {
        Class::Cidr => {
            let block: IpNet = "10.0.0.0/8".parse().expect("a block");
            compare("10.0.0.0/8", &|o, v| {
                o.cidr_count(&t.name, block, v).unwrap_or(0)
            })?;
            for k in sample(64) {
                let net = cidr_key(k);
                compare(&net.to_string(), &|o, v| {
                    o.cidr_count(&t.name, net, v).unwrap_or(0)
                })?;
            }
            Ok(true)
        }
        Class::Gauge => {
            for key in sample(256)
                .map(|k| format!("d{k}.example"))
                .chain([PROBE.to_string()])
            {
                compare(&key, &|o, v| o.gauge_get(&t.name, &key, v).unwrap_or(0))?;
            }
            Ok(true)
        }
        Class::Series => {
            let Some(m) = t.monitor else {
                return Ok(false);
            };
            for item in sample(64).map(|k| format!("i{k}")) {
                let item = SeriesItem::Text(item);
                compare(&format!("{item:?}"), &|o, v| {
                    series_total(o, &t.name, &item, m, v)
                })?;
            }
            Ok(true)
        }
        Class::Cache => {
            for key in sample(256)
                .map(|k| format!("k{k}"))
                .chain([PROBE.to_string()])
            {
                let first = objects[0].cache_get(&t.name, &key, wall()).ok().flatten();
                for (i, o) in objects.iter().enumerate().skip(1) {
                    let here = o.cache_get(&t.name, &key, wall()).ok().flatten();
                    if here != first {
                        return Err(format!("cache key {key}: node{} differs from node1", i + 1));
                    }
                }
            }
            Ok(true)
        }
        Class::Throttle => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_names_its_errors() {
        let mix = parse_mix("cidr=60, gauge=30,throttle=10").unwrap();
        assert_eq!(mix[&Class::Cidr], 60);
        assert_eq!(mix[&Class::Throttle], 10);
        assert!(parse_mix("cidr").unwrap_err().contains("TYPE=WEIGHT"));
        assert!(
            parse_mix("cidrs=1")
                .unwrap_err()
                .contains("unknown type 'cidrs'")
        );
        assert!(parse_mix("cidr=x").unwrap_err().contains("whole number"));
        assert!(parse_mix("cidr=0").unwrap_err().contains("zero"));
    }

    #[test]
    fn zipf_keys_favour_the_first() {
        let keys = Keys::new(1000, Some(1.2));
        let mut rng = SplitMix(5);
        let mut hits = [0u32; 1000];
        for _ in 0..100_000 {
            hits[keys.draw(rng.next()) as usize] += 1;
        }
        assert!(hits[0] > hits[10] && hits[10] > hits[500]);
        let uniform = Keys::new(1000, None);
        assert!((0..10_000).all(|_| uniform.draw(rng.next()) < 1000));
    }
}
