//! `cohort-bench jlog`: appends/s and reads/s of 100-byte records in each safety mode, for
//! Cohort's writer (plain writes and io_uring, one record per call, batches, the pre-commit
//! buffer, and in the `safe` group the power-loss-durable `sync_appends`, which jlog has no
//! equivalent of) next to the real jlog C library (built by `ci/build-jlog`, driven by `jlog-driver`)
//! on the same disk in the same run.
//!
//! Every measurement stops after `--records` records or `--max-seconds`, whichever comes first,
//! so the run is bounded even where each append waits for the disk (`sync_appends`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cohort_engine::jlog::writer::DEFAULT_LOCK_HOLD;
use cohort_engine::jlog::{
    AppendBackend, Journal, JournalOptions, Position, Safety, WriterOptions,
};
use serde_json::{Value, json};

/// Command-line arguments of the jlog scenario.
#[derive(clap::Args)]
pub struct Args {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Records per measurement (upper bound).
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Time limit per measurement, seconds.
    #[arg(long, default_value_t = 3.0)]
    max_seconds: f64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 100)]
    record_bytes: usize,
    /// Directory to create journals in (default: the system temp dir); the same disk is used for
    /// Cohort and the real jlog.
    #[arg(long)]
    dir: Option<PathBuf>,
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

struct Variant {
    name: &'static str,
    backend: AppendBackend,
    batch: usize,
    pre_commit: u32,
    lock_hold: Duration,
    sync_appends: bool,
}

const HOLD: Duration = DEFAULT_LOCK_HOLD;
const NO_HOLD: Duration = Duration::ZERO;

const VARIANTS: &[Variant] = &[
    Variant {
        name: "cohort (default)",
        backend: AppendBackend::Plain,
        batch: 1,
        pre_commit: 0,
        lock_hold: HOLD,
        sync_appends: false,
    },
    Variant {
        name: "cohort, lock per append",
        backend: AppendBackend::Plain,
        batch: 1,
        pre_commit: 0,
        lock_hold: NO_HOLD,
        sync_appends: false,
    },
    Variant {
        name: "cohort io_uring",
        backend: AppendBackend::Uring,
        batch: 1,
        pre_commit: 0,
        lock_hold: HOLD,
        sync_appends: false,
    },
    Variant {
        name: "cohort batch 64",
        backend: AppendBackend::Plain,
        batch: 64,
        pre_commit: 0,
        lock_hold: HOLD,
        sync_appends: false,
    },
    Variant {
        name: "cohort io_uring, batch 64",
        backend: AppendBackend::Uring,
        batch: 64,
        pre_commit: 0,
        lock_hold: HOLD,
        sync_appends: false,
    },
    Variant {
        name: "cohort pre-commit 128 KiB",
        backend: AppendBackend::Plain,
        batch: 1,
        pre_commit: 128 * 1024,
        lock_hold: HOLD,
        sync_appends: false,
    },
];

/// Cohort's power-loss-durable appends (`sync_appends`), measured once, in the `safe` group.
const SYNC_VARIANTS: &[Variant] = &[
    Variant {
        name: "cohort sync each append",
        backend: AppendBackend::Plain,
        batch: 1,
        pre_commit: 0,
        lock_hold: HOLD,
        sync_appends: true,
    },
    Variant {
        name: "cohort sync, batch 64",
        backend: AppendBackend::Plain,
        batch: 64,
        pre_commit: 0,
        lock_hold: HOLD,
        sync_appends: true,
    },
    Variant {
        name: "cohort sync, io_uring, batch 64",
        backend: AppendBackend::Uring,
        batch: 64,
        pre_commit: 0,
        lock_hold: HOLD,
        sync_appends: true,
    },
];

struct Row {
    mode: Safety,
    name: String,
    appends: u64,
    appends_per_sec: f64,
    reads_per_sec: Option<f64>,
}

/// Runs the scenario and prints its results.
pub fn run(args: &Args) -> BenchResult<()> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("cohort-bench-jlog")
        .tempdir_in(&base)?;
    let limit = Duration::from_secs_f64(args.max_seconds);
    let real = build_real_jlog();
    if let Err(e) = &real {
        eprintln!("cohort-bench: real jlog unavailable, measuring Cohort only: {e}");
    }
    let payload = vec![b'X'; args.record_bytes];
    let mut rows = Vec::new();
    for mode in [Safety::Unsafe, Safety::AlmostSafe, Safety::Safe] {
        let extra: &[Variant] = if mode == Safety::Safe {
            SYNC_VARIANTS
        } else {
            &[]
        };
        for (i, v) in VARIANTS.iter().chain(extra).enumerate() {
            let dir = tmp.path().join(format!("{}-{i}", mode.name()));
            rows.push(cohort_run(&dir, mode, v, &payload, args.records, limit)?);
            std::fs::remove_dir_all(&dir)?;
        }
        if let Ok(real_dir) = &real {
            let dir = tmp.path().join(format!("{}-real", mode.name()));
            rows.push(real_run(
                real_dir,
                &dir,
                mode,
                args.record_bytes,
                args.records,
            )?);
            std::fs::remove_dir_all(&dir)?;
        }
    }
    let real_rate = |mode: Safety| {
        rows.iter()
            .find(|r| r.mode == mode && r.name.starts_with("real"))
            .map(|r| r.appends_per_sec)
    };
    if args.json {
        let results: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "mode": r.mode.name(),
                    "writer": r.name,
                    "records": r.appends,
                    "appends_per_sec": r.appends_per_sec.round(),
                    "reads_per_sec": r.reads_per_sec.map(f64::round),
                    "vs_real_jlog": real_rate(r.mode).map(|x| (r.appends_per_sec / x * 100.0).round() / 100.0),
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "scenario": "jlog",
                "record_bytes": args.record_bytes,
                "max_records": args.records,
                "dir": base.display().to_string(),
                "real_jlog": real.as_ref().ok().map(|_| "PyPI jlog 1.0.2 C sources (jlog 2.0.x)"),
                "results": results,
            })
        );
    } else {
        println!(
            "jlog: {} B records, up to {} per run or {:.1} s, in {}",
            args.record_bytes,
            args.records,
            args.max_seconds,
            base.display()
        );
        println!(
            "{:<9} {:<32} {:>9} {:>12} {:>12} {:>8}",
            "mode", "writer", "records", "appends/s", "reads/s", "vs real"
        );
        for r in &rows {
            let reads = r
                .reads_per_sec
                .map_or("-".to_string(), |x| format!("{x:.0}"));
            let vs = real_rate(r.mode).map_or("-".to_string(), |x| {
                format!("{:.2}x", r.appends_per_sec / x)
            });
            println!(
                "{:<9} {:<32} {:>9} {:>12.0} {:>12} {:>8}",
                r.mode.name(),
                r.name,
                r.appends,
                r.appends_per_sec,
                reads,
                vs
            );
        }
    }
    Ok(())
}

fn cohort_run(
    dir: &Path,
    mode: Safety,
    v: &Variant,
    payload: &[u8],
    max: u64,
    limit: Duration,
) -> BenchResult<Row> {
    let j = Journal::create(
        dir,
        JournalOptions {
            safety: mode,
            ..Default::default()
        },
    )?;
    j.add_subscriber("bench", Position::Begin)?;
    let mut w = j.writer(WriterOptions {
        pre_commit_size: Some(v.pre_commit),
        backend: v.backend,
        lock_hold: v.lock_hold,
        sync_appends: v.sync_appends,
    })?;
    let batch: Vec<&[u8]> = vec![payload; v.batch];
    let start = Instant::now();
    let mut n = 0u64;
    while n < max {
        if v.batch == 1 {
            w.append(payload)?;
            n += 1;
        } else {
            w.append_batch(&batch)?;
            n += v.batch as u64;
        }
        // Checking the clock every 64 records keeps it off the measured path.
        if n.is_multiple_of(64) && start.elapsed() >= limit {
            break;
        }
    }
    w.close()?;
    let appends_per_sec = n as f64 / start.elapsed().as_secs_f64();
    let mut r = j.reader("bench")?;
    let start = Instant::now();
    let mut read = 0u64;
    loop {
        let (iv, recs) = r.next_batch()?;
        if iv.count == 0 {
            break;
        }
        read += recs.len() as u64;
        r.checkpoint(iv.last)?;
    }
    let reads_per_sec = read as f64 / start.elapsed().as_secs_f64();
    if read != n {
        return Err(format!("{}: wrote {n} records, read back {read}", v.name).into());
    }
    Ok(Row {
        mode,
        name: v.name.to_string(),
        appends: n,
        appends_per_sec,
        reads_per_sec: Some(reads_per_sec),
    })
}

fn real_run(real: &Path, dir: &Path, mode: Safety, len: usize, records: u64) -> BenchResult<Row> {
    // The journal is created by Cohort so that the safety mode is in its metastore; the C writer
    // takes it from there.
    let j = Journal::create(
        dir,
        JournalOptions {
            safety: mode,
            ..Default::default()
        },
    )?;
    j.add_subscriber("bench", Position::Begin)?;
    let driver = real.join("jlog-driver");
    let d = dir.to_str().ok_or("non-UTF-8 bench directory")?;
    let out = Command::new(&driver)
        .args(["bench-write", d, &records.to_string(), &len.to_string()])
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "jlog-driver bench-write: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let appends_per_sec: f64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    let out = Command::new(&driver)
        .args(["bench-read", d, "bench"])
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "jlog-driver bench-read: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let reads_per_sec: f64 = it.next().ok_or("no read rate")?.parse()?;
    let read: u64 = it.next().ok_or("no read count")?.parse()?;
    if read != records {
        return Err(format!("real jlog wrote {records} records, read back {read}").into());
    }
    Ok(Row {
        mode,
        name: "real jlog (C)".to_string(),
        appends: records,
        appends_per_sec,
        reads_per_sec: Some(reads_per_sec),
    })
}

/// Builds the real jlog with `ci/build-jlog` (idempotent) and returns the directory holding
/// `jlog-driver`.
fn build_real_jlog() -> BenchResult<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/build-jlog");
    let out = Command::new("bash").arg(&script).output()?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}
