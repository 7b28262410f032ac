//! `cohort-bench chaos --minutes N`: faults injected continuously into a running cluster while it
//! works, and checkers for what its users care about. Real `cohortd` processes in network
//! namespaces (root): five nodes, a manager and a client on one bridge; four DuraVIP addresses
//! with `duravip_quorum = majority`; a replicated gauge; journals shipped to the manager.
//!
//! One fault at a time, held 1 to 5 s, then healed, from: kill -9 of a node (restarted at the
//! heal), SIGSTOP (SIGCONT at the heal), a one-sided cut (the node's inbound cluster port dropped
//! with nftables), a two-sided cut (its cable unplugged at the switch), 20 % loss on every node's
//! cluster port. Meanwhile: gauge increments on every node, DuraVIP moves from random consoles,
//! journal appends on every node.
//!
//! Checkers:
//! - one view: after every heal, every running node's view holds exactly the running nodes
//!   (bounded wait; the time it took is reported);
//! - one owner: every 200 ms, among the nodes the client can reach and that run (not stopped, not
//!   unplugged), past the detection grace (2 s), no address is plumbed on two nodes in two
//!   consecutive samples (one sample may catch a hand-off: the nodes are read one after another);
//! - counts: once quiet, every node reads the gauge as the sum of the live nodes' confirmed
//!   increments since their last start (increments whose answer was lost may count or not);
//! - journals: once quiet, every confirmed record is at the manager exactly once, and a record
//!   whose answer was lost at most once.
//!
//! Everything is bounded: the run stops after `--minutes`, every wait has a deadline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cohort::console::client::{Client, Endpoint};
use cohort::lab::Lab;
use cohort::lab::procs::{Cluster, duravip_setup, vip_owners};
use cohort_engine::console::protocol::Status;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

use crate::view_change::sibling;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// How long faults are injected (the checks at the end come on top).
    #[arg(long, default_value_t = 2.0)]
    pub minutes: f64,
    /// Seed of the fault schedule.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also print one JSON object after the report.
    #[arg(long)]
    pub json: bool,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const NODES: usize = 5;
const MANAGER: usize = 5;
const CLIENT: usize = 6;
const PORT: u16 = 4809;
/// How long two owners of one address may coexist after a fault: detection and hand-off.
const GRACE: Duration = Duration::from_secs(2);

/// What a node's process is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    Stopped,
    Unplugged,
    Deaf,
    Down,
}

/// The harness's view of the cluster, shared with the workload threads.
struct World {
    state: [State; NODES],
    /// Bumped at every kill: an answer from an earlier generation is not counted.
    generation: [u64; NODES],
    /// Per node: gauge increments confirmed and whose answer was lost, since its last start.
    gauge: [(i64, i64); NODES],
    /// Journal records: confirmed, and those whose answer was lost.
    confirmed: Vec<String>,
    doubtful: Vec<String>,
    moves: (u64, u64),
}

/// The nodes' consoles and names, for the threads that talk to them.
#[derive(Clone)]
struct Consoles {
    sockets: Vec<PathBuf>,
    names: Vec<String>,
}

impl Consoles {
    fn name(&self, i: usize) -> &str {
        &self.names[i]
    }
}

fn console(c: &Consoles, i: usize, line: &str) -> Option<(bool, String)> {
    let mut cl = Client::connect(&Endpoint::Unix(c.sockets[i].clone())).ok()?;
    cl.set_timeout(Some(Duration::from_secs(3))).ok()?;
    let r = cl.run(line, false).ok()?;
    Some((
        r.status == Status::Ok,
        String::from_utf8_lossy(&r.body).trim().to_owned(),
    ))
}

fn configure(c: &Cluster<'_>, key: &Path, out: &Path) {
    for i in 0..=MANAGER {
        let mut text = std::fs::read_to_string(c.config_path(i)).expect("config");
        text = text.replace(
            "msgc_server {",
            &format!("msgc_server {{\n  cluster_key = \"{}\"", key.display()),
        );
        if i == MANAGER {
            text.push_str(&format!(
                "Logs {{\n  logfile = \"{}/%{{l}}/%{{n}}\"\n}}\n",
                out.display()
            ));
        } else {
            let main = c.dir.path().join(c.name(i)).join("mainlog.cluster");
            text = text.replace(
                "cluster {\n",
                &format!(
                    "cluster {{\n  logs = [ mainlog = \"{}\" ]\n",
                    main.display()
                ),
            );
            text.push_str(&format!(
                "ec_logger \"ec_logger_cluster\" {{\n  mainlog = \"cluster://{}=>master\"\n}}\n",
                main.display()
            ));
        }
        std::fs::write(c.config_path(i), text).expect("config");
    }
}

fn running(w: &Mutex<World>) -> Vec<usize> {
    let w = w.lock().expect("world");
    (0..NODES)
        .filter(|&i| matches!(w.state[i], State::Running | State::Deaf))
        .collect()
}

/// The workload: one thread per node (gauge increments and journal appends) and one mover.
fn workload(c: &Consoles, world: &Arc<Mutex<World>>, stop: &Arc<AtomicBool>, vips: &[String]) {
    std::thread::scope(|s| {
        for i in 0..NODES {
            let (world, stop) = (world.clone(), stop.clone());
            s.spawn(move || {
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    if !matches!(world.lock().expect("world").state[i], State::Running) {
                        continue;
                    }
                    let generation = world.lock().expect("world").generation[i];
                    let r = console(c, i, "cluster shared gauge incr outbound_domains chaos");
                    let mut w = world.lock().expect("world");
                    if w.generation[i] != generation {
                        // Killed meanwhile: its contribution left with it.
                        continue;
                    }
                    match r {
                        Some((true, _)) => w.gauge[i].0 += 1,
                        _ => w.gauge[i].1 += 1,
                    }
                    drop(w);
                    seq += 1;
                    let rec = format!("{} {seq:08}", c.name(i));
                    let r = console(c, i, &format!("log append mainlog {rec}"));
                    let mut w = world.lock().expect("world");
                    match r {
                        Some((true, _)) => w.confirmed.push(rec),
                        _ => w.doubtful.push(rec),
                    }
                }
            });
        }
        let (world, stop) = (world.clone(), stop.clone());
        s.spawn(move || {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1500));
                let live = running(&world);
                if live.len() < 2 {
                    continue;
                }
                let at = live[rng.random_range(0..live.len())];
                let to = live[rng.random_range(0..live.len())];
                let vip = &vips[rng.random_range(0..vips.len())];
                let r = console(
                    c,
                    at,
                    &format!("cluster duravip move {vip} to {}", c.name(to)),
                );
                let mut w = world.lock().expect("world");
                match r {
                    Some((true, _)) => w.moves.0 += 1,
                    _ => w.moves.1 += 1,
                }
            }
        });
    });
}

/// Waits until every running node's view holds exactly the running nodes; how long it took.
fn one_view(c: &Consoles, live: &[usize], bound: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut want: Vec<String> = live.iter().map(|&i| c.name(i).to_owned()).collect();
    want.sort();
    while t0.elapsed() < bound {
        let all = live.iter().all(|&i| {
            let Some((true, text)) = console(c, i, "cluster membership") else {
                return false;
            };
            let mut have: Vec<String> = want
                .iter()
                .filter(|n| text.contains(&format!("{n} ")) || text.contains(&format!("{n}\n")))
                .cloned()
                .collect();
            have.sort();
            // Every running node listed, and no other node name.
            have == want
                && (0..NODES)
                    .filter(|j| !live.contains(j))
                    .all(|j| !text.contains(&format!("{} ", c.name(j))))
        });
        if all {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The DuraVIP and view lines of `nodes`' logs (the last 12 of each), printed with a one-owner
/// failure to show where the second owner came from.
fn duravip_log(c: &Cluster<'_>, nodes: &[usize]) -> Vec<String> {
    let mut out = Vec::new();
    for &i in nodes {
        let text = std::fs::read_to_string(c.log(i)).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.contains("DuraVIP") || l.contains("duravip") || l.contains("view installed")
            })
            .collect();
        for l in &lines[lines.len().saturating_sub(12)..] {
            out.push(format!("  {}: {l}", c.name(i)));
        }
    }
    out
}

/// Records delivered to the manager, by record text.
fn at_manager(out: &Path) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name() != ".cohort-logmove" {
                for l in std::fs::read_to_string(&p).unwrap_or_default().lines() {
                    *seen.entry(l.to_owned()).or_insert(0) += 1;
                }
            }
        }
    }
    seen
}

pub fn run(a: &Args) -> Res<()> {
    let cohortd = sibling("cohortd")?;
    let lab = Lab::new("cohort-bench chaos", NODES + 2)
        .ok_or("the chaos harness needs root (network namespaces)")?;
    let (vips, bindings, mut opts) = duravip_setup(&lab, 211);
    opts.push_str(
        "\n  duravip_quorum = majority\n  log_active_interval = 0.05\n  \
         Replicate \"outbound_domains\" { max_delay = 0.05 }",
    );
    let mut c = Cluster::new(&lab, &cohortd, &bindings)
        .with_peers(NODES + 1)
        .with_cluster_options(&opts);
    let key = c.dir.path().join("cluster.key");
    std::fs::write(&key, b"the chaos harness's cluster key, long enough")?;
    let out: PathBuf = c.dir.path().join("out");
    configure(&c, &key, &out);
    for i in 0..NODES {
        c.start(i);
    }
    c.start_manager(MANAGER);
    let all: Vec<usize> = (0..NODES).collect();
    let consoles = Consoles {
        sockets: (0..NODES).map(|i| c.socket(i)).collect(),
        names: (0..NODES).map(|i| c.name(i)).collect(),
    };
    one_view(&consoles, &all, Duration::from_secs(30)).ok_or("the cluster did not form")?;
    let vip_text: Vec<String> = vips.iter().map(ToString::to_string).collect();

    let world = Arc::new(Mutex::new(World {
        state: [State::Running; NODES],
        generation: [0; NODES],
        gauge: [(0, 0); NODES],
        confirmed: Vec::new(),
        doubtful: Vec::new(),
        moves: (0, 0),
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let mut injected: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut heals: Vec<f64> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut evidence: Vec<String> = Vec::new();
    let mut double_owner_samples = 0u64;
    let mut last_doubled: Vec<usize> = Vec::new();
    let mut samples = 0u64;
    let end = Instant::now() + Duration::from_secs_f64(a.minutes.max(0.05) * 60.0);
    let worker = {
        let (world, stop, vt, cons) = (
            world.clone(),
            stop.clone(),
            vip_text.clone(),
            consoles.clone(),
        );
        std::thread::spawn(move || workload(&cons, &world, &stop, &vt))
    };
    {
        while Instant::now() < end {
            let victim = rng.random_range(0..NODES);
            let kind = rng.random_range(0..5);
            let hold = Duration::from_millis(rng.random_range(1000..5000));
            let name = [
                "kill -9",
                "SIGSTOP",
                "one-sided cut",
                "two-sided cut",
                "20% loss",
            ][kind];
            *injected.entry(name).or_insert(0) += 1;
            println!(
                "{:>7.1}s left: {name} on {} for {:.1} s",
                end.saturating_duration_since(Instant::now()).as_secs_f64(),
                c.name(victim),
                hold.as_secs_f64()
            );
            let state = match kind {
                0 => {
                    // kill under the lock so the workload does not count an answer from the dead.
                    let mut w = world.lock().expect("world");
                    w.state[victim] = State::Down;
                    w.generation[victim] += 1;
                    w.gauge[victim] = (0, 0);
                    drop(w);
                    c.kill(victim);
                    State::Down
                }
                1 => {
                    c.signal(victim, "-STOP");
                    State::Stopped
                }
                2 => {
                    lab.udp_loss(victim, PORT, 100);
                    State::Deaf
                }
                3 => {
                    lab.link(victim, false);
                    State::Unplugged
                }
                _ => {
                    for i in 0..NODES {
                        lab.udp_loss(i, PORT, 20);
                    }
                    State::Running
                }
            };
            world.lock().expect("world").state[victim] = state;
            let injected_at = Instant::now();
            let until = injected_at + hold;
            while Instant::now() < until {
                // One owner per address among the nodes the client reaches and that run.
                let reach: Vec<usize> = (0..NODES)
                    .filter(|&i| {
                        matches!(
                            world.lock().expect("world").state[i],
                            State::Running | State::Deaf
                        )
                    })
                    .collect();
                if injected_at.elapsed() > GRACE {
                    samples += 1;
                    // Each node's addresses are read one node after the other, so a hand-off (a
                    // DuraVIP move, a rebalancing) can show its old owner, read first, and its new
                    // one, read a few milliseconds later. An address counts as doubly owned when
                    // two consecutive samples, 200 ms apart, both show it on two nodes.
                    let owners = vip_owners(&lab, &vips, &reach);
                    let doubled: Vec<usize> =
                        (0..vips.len()).filter(|k| owners[*k].len() > 1).collect();
                    if !doubled.is_empty() {
                        double_owner_samples += 1;
                    }
                    if doubled.iter().any(|k| last_doubled.contains(k)) {
                        failures.push(format!(
                            "two owners in consecutive samples {:.1}s into {name} on {}: {owners:?}",
                            injected_at.elapsed().as_secs_f64(),
                            c.name(victim)
                        ));
                        if evidence.len() < 200 {
                            let mut nodes: Vec<usize> =
                                doubled.iter().flat_map(|&k| owners[k].clone()).collect();
                            nodes.sort_unstable();
                            nodes.dedup();
                            evidence.extend(duravip_log(&c, &nodes));
                        }
                    }
                    last_doubled = doubled;
                } else {
                    last_doubled.clear();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            // Heal.
            match kind {
                0 => c.start(victim),
                1 => c.signal(victim, "-CONT"),
                2 => lab.udp_loss(victim, PORT, 0),
                3 => lab.link(victim, true),
                _ => {
                    for i in 0..NODES {
                        lab.udp_loss(i, PORT, 0);
                    }
                }
            }
            world.lock().expect("world").state[victim] = State::Running;
            match one_view(&consoles, &all, Duration::from_secs(30)) {
                Some(t) => heals.push(t.as_secs_f64()),
                None => failures.push(format!("no single view within 30 s after healing {name}")),
            }
        }
        stop.store(true, Ordering::Relaxed);
    }
    worker.join().map_err(|_| "the workload thread panicked")?;
    // Quiet: every count and record settles.
    std::thread::sleep(Duration::from_secs(2));
    let w = world.lock().expect("world");
    let (sure, unsure): (i64, i64) = w.gauge.iter().fold((0, 0), |(a, b), g| (a + g.0, b + g.1));
    for i in 0..NODES {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = console(
                &consoles,
                i,
                "cluster shared gauge get outbound_domains chaos",
            )
            .and_then(|(ok, t)| ok.then_some(t))
            .and_then(|t| t.parse::<i64>().ok())
            .unwrap_or(-1);
            if (sure..=sure + unsure).contains(&v) {
                break;
            }
            if Instant::now() > deadline {
                failures.push(format!(
                    "{} reads the gauge as {v}, the live contributions are {sure} (+{unsure} unanswered)",
                    c.name(i)
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let seen = at_manager(&out);
        if w.confirmed.iter().all(|r| seen.contains_key(r)) || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let missing = w
        .confirmed
        .iter()
        .filter(|r| !seen.contains_key(*r))
        .count();
    let duplicated = seen.values().filter(|n| **n > 1).count();
    if missing > 0 {
        failures.push(format!(
            "{missing} acknowledged journal records never reached the manager"
        ));
    }
    if duplicated > 0 {
        failures.push(format!(
            "{duplicated} journal records reached the manager twice"
        ));
    }
    // The client's ARP for every address is answered by its one owner.
    let owners = vip_owners(&lab, &vips, &all);
    for (v, o) in vips.iter().zip(&owners) {
        match o.as_slice() {
            [one] => {
                let want = cohort::lab::procs::mac(&lab, *one);
                let got = cohort::lab::procs::arping(&lab, CLIENT, *v);
                if got.as_deref() != Some(want.as_str()) {
                    failures.push(format!(
                        "the client's ARP for {v} is answered by {got:?}, its owner is {} ({want})",
                        c.name(*one)
                    ));
                }
            }
            many => failures.push(format!("{v} has owners {many:?} once quiet")),
        }
    }
    heals.sort_by(f64::total_cmp);
    let p = |q: f64| {
        heals
            .get(((heals.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!("injected: {injected:?}");
    println!(
        "one view after every heal: {} heals, re-formed p50 {:.2} s, max {:.2} s",
        heals.len(),
        p(0.5),
        p(1.0)
    );
    println!(
        "one owner: {samples} samples, {double_owner_samples} showing an address on two nodes past {GRACE:?} (a failure only in two consecutive samples)"
    );
    println!("gauge: {sure} confirmed increments (+{unsure} unanswered) on the live nodes");
    println!(
        "journals: {} confirmed records ({} unanswered), {missing} missing, {duplicated} duplicated",
        w.confirmed.len(),
        w.doubtful.len()
    );
    println!("DuraVIP moves: {} answered, {} not", w.moves.0, w.moves.1);
    for f in &failures {
        println!("FAILED: {f}");
    }
    for l in &evidence {
        println!("{l}");
    }
    if a.json {
        println!(
            "{}",
            json!({
                "injected": injected,
                "heals": heals.len(),
                "reform_p50_s": p(0.5),
                "reform_max_s": p(1.0),
                "owner_samples": samples,
                "double_owner_samples": double_owner_samples,
                "records": w.confirmed.len(),
                "missing": missing,
                "duplicated": duplicated,
                "failures": failures,
            })
        );
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} checker failures", failures.len()).into())
    }
}
