//! `cohort-bench cidr`: Cohort's concurrent CIDR tree next to the `prefix-trie` crate, on the
//! same prefixes in the same run.
//!
//! prefix-trie is a single-threaded map with no subtree sums: with two threads it is shared the
//! way an application would share it (an `RwLock`), and its "increment" updates the one prefix
//! only, where Cohort's also maintains every ancestor's sum.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use cohort_engine::replicate::cidr::CidrTree;
use ipnet::{IpNet, Ipv4Net};
use prefix_trie::PrefixMap;
use serde_json::json;

/// Options of the `cidr` scenario.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Distinct /32 prefixes in the trees.
    #[arg(long, default_value_t = 100_000)]
    prefixes: usize,
    /// Length of each measurement, milliseconds.
    #[arg(long, default_value_t = 500)]
    millis: u64,
}

/// A small, fast pseudo-random generator for load keys (SplitMix64).
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Runs `work(thread, rng, ops)` on `threads` threads for `millis` and returns total ops/s.
fn timed<F>(threads: usize, millis: u64, work: F) -> f64
where
    F: Fn(usize, &mut SplitMix) + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (work, stop, total) = (Arc::clone(&work), Arc::clone(&stop), Arc::clone(&total));
            std::thread::spawn(move || {
                let mut rng = SplitMix(t as u64 * 1_000_003 + 17);
                let mut ops = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        work(t, &mut rng);
                    }
                    ops += 256;
                }
                total.fetch_add(ops, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(millis));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        // A panicking benchmark thread is a bug worth seeing.
        h.join().expect("benchmark thread panicked");
    }
    total.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Lookups/s measured on thread 0 while thread 1 (if any) increments: returns (lookups/s,
/// increments/s).
fn mixed<L, W>(millis: u64, lookup: L, write: W) -> (f64, f64)
where
    L: Fn(&mut SplitMix) + Send + Sync + 'static,
    W: Fn(&mut SplitMix) + Send + Sync + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let writer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut rng = SplitMix(99);
            let mut ops = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..256 {
                    write(&mut rng);
                }
                ops += 256;
            }
            ops
        })
    };
    let reader = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut rng = SplitMix(7);
            let mut ops = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..256 {
                    lookup(&mut rng);
                }
                ops += 256;
            }
            ops
        })
    };
    std::thread::sleep(Duration::from_millis(millis));
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let reads = reader.join().expect("reader panicked") as f64 / elapsed;
    let writes = writer.join().expect("writer panicked") as f64 / elapsed;
    (reads, writes)
}

/// Runs the scenario, prints its table and returns its JSON object.
pub fn run(args: &Args) -> Result<serde_json::Value, String> {
    let mut rng = SplitMix(1);
    let nets: Arc<Vec<Ipv4Net>> = Arc::new(
        (0..args.prefixes)
            .map(|_| {
                Ipv4Net::from(Ipv4Addr::from(
                    0x0a00_0000 | (rng.next() as u32 & 0x00ff_ffff),
                ))
            })
            .collect(),
    );
    let n = nets.len() as u64;
    let cohort = Arc::new(CidrTree::new());
    let mut trie: PrefixMap<Ipv4Net, i64> = PrefixMap::new();
    for net in nets.iter() {
        cohort.add(IpNet::V4(*net), 1);
        *trie.entry(*net).or_insert(0) += 1;
    }
    let nodes = cohort.node_count();
    let trie = Arc::new(RwLock::new(trie));
    let ms = args.millis;

    let mut rows: Vec<(&str, &str, usize, f64)> = Vec::new();

    // Lookups, one thread, nobody writing.
    {
        let (t, ns) = (Arc::clone(&cohort), Arc::clone(&nets));
        rows.push((
            "lookups",
            "cohort",
            1,
            timed(1, ms, move |_, r| {
                std::hint::black_box(t.count(IpNet::V4(ns[(r.next() % n) as usize])));
            }),
        ));
        let (t, ns) = (Arc::clone(&cohort), Arc::clone(&nets));
        rows.push((
            "lookups, 256 per pin",
            "cohort",
            1,
            timed(1, ms, move |_, r| {
                let guard = cohort_engine::replicate::cidr::pin();
                for _ in 0..255 {
                    std::hint::black_box(
                        t.count_with(IpNet::V4(ns[(r.next() % n) as usize]), &guard),
                    );
                }
                std::hint::black_box(t.count_with(IpNet::V4(ns[(r.next() % n) as usize]), &guard));
            }) * 256.0,
        ));
        let (t, ns) = (Arc::clone(&trie), Arc::clone(&nets));
        let map = t.read().map(|m| m.clone()).unwrap_or_default();
        rows.push((
            "lookups",
            "prefix-trie",
            1,
            timed(1, ms, move |_, r| {
                std::hint::black_box(map.get(&ns[(r.next() % n) as usize]));
            }),
        ));
    }
    // Lookups on one thread while a second thread increments and decrements.
    let mixed_cohort = {
        let (t, ns) = (Arc::clone(&cohort), Arc::clone(&nets));
        let (w, wn) = (Arc::clone(&cohort), Arc::clone(&nets));
        mixed(
            ms,
            move |r| {
                std::hint::black_box(t.count(IpNet::V4(ns[(r.next() % n) as usize])));
            },
            move |r| {
                let x = r.next();
                w.add(
                    IpNet::V4(wn[(x % n) as usize]),
                    if x & 1 == 0 { 1 } else { -1 },
                );
            },
        )
    };
    let mixed_trie = {
        let (t, ns) = (Arc::clone(&trie), Arc::clone(&nets));
        let (w, wn) = (Arc::clone(&trie), Arc::clone(&nets));
        mixed(
            ms,
            move |r| {
                if let Ok(map) = t.read() {
                    std::hint::black_box(map.get(&ns[(r.next() % n) as usize]));
                }
            },
            move |r| {
                let x = r.next();
                if let Ok(mut map) = w.write()
                    && let Some(v) = map.get_mut(&wn[(x % n) as usize])
                {
                    *v += if x & 1 == 0 { 1 } else { -1 };
                }
            },
        )
    };
    rows.push(("lookups, +1 writer thread", "cohort", 1, mixed_cohort.0));
    rows.push((
        "lookups, +1 writer thread",
        "prefix-trie+RwLock",
        1,
        mixed_trie.0,
    ));
    // Increments, 1 and 2 threads.
    for threads in [1, 2] {
        let (t, ns) = (Arc::clone(&cohort), Arc::clone(&nets));
        rows.push((
            "increments",
            "cohort",
            threads,
            timed(threads, ms, move |_, r| {
                let x = r.next();
                t.add(
                    IpNet::V4(ns[(x % n) as usize]),
                    if x & 1 == 0 { 1 } else { -1 },
                );
            }),
        ));
        let (t, ns) = (Arc::clone(&trie), Arc::clone(&nets));
        rows.push((
            "increments",
            "prefix-trie+RwLock",
            threads,
            timed(threads, ms, move |_, r| {
                let x = r.next();
                if let Ok(mut map) = t.write()
                    && let Some(v) = map.get_mut(&ns[(x % n) as usize])
                {
                    *v += if x & 1 == 0 { 1 } else { -1 };
                }
            }),
        ));
    }
    // Inserting fresh prefixes (splices and new leaves), one thread.
    {
        let fresh = Arc::new(CidrTree::new());
        let f = Arc::clone(&fresh);
        rows.push((
            "inserts of new /32s",
            "cohort",
            1,
            timed(1, ms, move |_, r| {
                f.add(IpNet::V4(Ipv4Net::from(Ipv4Addr::from(r.next() as u32))), 1);
            }),
        ));
        let fresh = Arc::new(RwLock::new(PrefixMap::<Ipv4Net, i64>::new()));
        let f = Arc::clone(&fresh);
        rows.push((
            "inserts of new /32s",
            "prefix-trie+RwLock",
            1,
            timed(1, ms, move |_, r| {
                if let Ok(mut map) = f.write() {
                    *map.entry(Ipv4Net::from(Ipv4Addr::from(r.next() as u32)))
                        .or_insert(0) += 1;
                }
            }),
        ));
    }

    let results: Vec<_> = rows
        .iter()
        .map(|(what, imp, threads, rate)| {
            json!({ "measure": what, "implementation": imp, "threads": threads,
                    "ops_per_sec": rate.round(), "ns_per_op": 1e9 / rate * *threads as f64 })
        })
        .collect();
    println!(
        "cidr: {n} random /32 prefixes in 10.0.0.0/8 ({nodes} Cohort tree nodes), {ms} ms per row"
    );
    println!(
        "{:<28} {:<20} {:>7} {:>14} {:>12}",
        "measure", "implementation", "threads", "ops/s", "ns/op/thread"
    );
    for (what, imp, threads, rate) in &rows {
        println!(
            "{:<28} {:<20} {:>7} {:>14.0} {:>12.1}",
            what,
            imp,
            threads,
            rate,
            1e9 / rate * *threads as f64
        );
    }
    println!(
        "writer during the mixed rows: cohort {:.0} ops/s, prefix-trie+RwLock {:.0} ops/s",
        mixed_cohort.1, mixed_trie.1
    );
    Ok(
        json!({ "scenario": "cidr", "prefixes": n, "cohort_nodes": nodes,
               "writer_ops_per_sec": { "cohort": mixed_cohort.1.round(), "prefix-trie+RwLock": mixed_trie.1.round() },
               "results": results }),
    )
}
