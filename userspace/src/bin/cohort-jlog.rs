//! `cohort-jlog`: the operator's tool for jlog journals (Cohort's and the real jlog's alike), with
//! the jlogctl subcommands an operator needs plus `write` and a `tail` that follows a journal as a
//! subscriber and checkpoints.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use cohort_engine::jlog::{
    AppendBackend, JlogError, JlogId, Journal, JournalOptions, Position, Safety, WriterOptions,
};

#[derive(Parser)]
#[command(
    name = "cohort-jlog",
    about = "Inspect, repair, write and follow jlog journals"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a journal (jlogctl create).
    Init {
        /// Journal directory.
        dir: PathBuf,
        /// Segment size limit in bytes.
        #[arg(long, default_value_t = 4 * 1024 * 1024)]
        unit_limit: u32,
        /// unsafe, metasafe or safe.
        #[arg(long, default_value = "metasafe", value_parser = parse_safety)]
        safety: Safety,
    },
    /// Add, remove, list or show subscribers (jlogctl subscriber).
    Subscriber {
        #[command(subcommand)]
        op: SubOp,
    },
    /// List segments with sizes, pending readers and index state (jlogctl data -l -i).
    Data {
        /// Journal directory.
        dir: PathBuf,
    },
    /// Show the metastore (jlogctl meta).
    Meta {
        /// Journal directory.
        dir: PathBuf,
    },
    /// Change the safety mode or the segment size of a journal (jlogctl alter).
    Alter {
        /// Journal directory.
        dir: PathBuf,
        /// New safety mode.
        #[arg(long, value_parser = parse_safety)]
        safety: Option<Safety>,
        /// New segment size limit.
        #[arg(long)]
        unit_limit: Option<u32>,
    },
    /// Remove segments no subscriber needs (jlogctl clean).
    Clean {
        /// Journal directory.
        dir: PathBuf,
    },
    /// Repair the metastore and checkpoints; with --force also every segment (jlogctl repair).
    /// Do not run while another process writes the journal.
    Repair {
        /// Journal directory.
        dir: PathBuf,
        /// Also repair data files and remove unneeded segments.
        #[arg(short, long)]
        force: bool,
    },
    /// Append one record per line of stdin.
    Write {
        /// Journal directory (created if missing).
        dir: PathBuf,
        /// Pre-commit buffer size in bytes (0 disables it; default keeps the journal's).
        #[arg(long)]
        pre_commit: Option<u32>,
        /// Write path.
        #[arg(long, value_enum, default_value = "plain")]
        backend: Backend,
        /// After each append returns, print the number of records appended so far on stdout.
        #[arg(long)]
        ack: bool,
        /// fdatasync each record before acknowledging it (survives a power loss).
        #[arg(long)]
        sync: bool,
    },
    /// Print records as a subscriber and checkpoint after each interval; --follow keeps waiting
    /// for new records like `tail -f`.
    Tail {
        /// Journal directory.
        dir: PathBuf,
        /// Subscriber to read as and checkpoint; created at the end of the journal if missing
        /// (at the beginning with --begin). Without it, like jlogtail, a temporary subscriber
        /// starts at the end and its checkpoint file is removed at once, so it never holds back
        /// the removal of old segments.
        #[arg(short, long)]
        subscriber: Option<String>,
        /// Start a new subscriber at the oldest record instead of the end.
        #[arg(long)]
        begin: bool,
        /// Keep following instead of stopping when caught up.
        #[arg(short, long)]
        follow: bool,
        /// Print each record's id before it.
        #[arg(long)]
        ids: bool,
        /// Stop after this many records.
        #[arg(short = 'n', long)]
        count: Option<u64>,
    },
}

#[derive(Subcommand)]
enum SubOp {
    /// Add a subscriber.
    Add {
        /// Journal directory.
        dir: PathBuf,
        /// Subscriber name.
        name: String,
        /// Start at the end of the journal instead of the beginning.
        #[arg(long)]
        end: bool,
    },
    /// Remove a subscriber.
    Remove {
        /// Journal directory.
        dir: PathBuf,
        /// Subscriber name.
        name: String,
    },
    /// List subscribers with their checkpoints.
    List {
        /// Journal directory.
        dir: PathBuf,
    },
    /// Set a subscriber's checkpoint (XXXXXXXX:YYYYYYYY), adding it if missing.
    Set {
        /// Journal directory.
        dir: PathBuf,
        /// Subscriber name.
        name: String,
        /// The checkpoint.
        checkpoint: JlogId,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    Plain,
    Uring,
}

fn parse_safety(s: &str) -> Result<Safety, String> {
    Safety::parse(s).ok_or_else(|| format!("{s:?}: expected unsafe, metasafe or safe"))
}

fn main() -> ExitCode {
    if cohort::man::intercept::<Cli>("1") {
        return ExitCode::SUCCESS;
    }
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cohort-jlog: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), JlogError> {
    let mut out = std::io::stdout().lock();
    let w = |r: std::io::Result<()>| {
        // A closed stdout (e.g. piped into `head`) ends the command quietly.
        if r.is_err() {
            std::process::exit(0);
        }
    };
    match cli.cmd {
        Cmd::Init {
            dir,
            unit_limit,
            safety,
        } => {
            Journal::create(
                &dir,
                JournalOptions {
                    unit_limit,
                    safety,
                    ..Default::default()
                },
            )?;
        }
        Cmd::Subscriber { op } => match op {
            SubOp::Add { dir, name, end } => {
                let at = if end { Position::End } else { Position::Begin };
                Journal::open(&dir)?.add_subscriber(&name, at)?;
            }
            SubOp::Remove { dir, name } => {
                if !Journal::open(&dir)?.remove_subscriber(&name)? {
                    return Err(JlogError::NoSubscriber { path: dir, name });
                }
            }
            SubOp::List { dir } => {
                let j = Journal::open(&dir)?;
                for name in j.subscribers()? {
                    let cp = j.checkpoint(&name)?;
                    w(writeln!(out, "{name}\t{cp}"));
                }
            }
            SubOp::Set {
                dir,
                name,
                checkpoint,
            } => Journal::open(&dir)?.set_checkpoint(&name, checkpoint)?,
        },
        Cmd::Data { dir } => {
            let j = Journal::open(&dir)?;
            for s in j.segments()? {
                let idx = match s.index {
                    Some(i) => format!(
                        "{} records, {}",
                        i.count,
                        if i.closed { "closed" } else { "open" }
                    ),
                    None => "removed".to_string(),
                };
                w(writeln!(
                    out,
                    "{:08x}\t{} bytes\t{} pending readers\t{idx}",
                    s.log, s.size, s.pending_readers
                ));
            }
        }
        Cmd::Meta { dir } => {
            let j = Journal::open(&dir)?;
            let m = j.metastore()?;
            let pc = std::fs::metadata(dir.join("pre_commit"))
                .map(|m| m.len().saturating_sub(4))
                .unwrap_or(0);
            w(writeln!(out, "magic\t{:08x}", m.hdr_magic));
            w(writeln!(out, "storagelog\t{:08x}", m.storage_log));
            w(writeln!(out, "compression\toff"));
            w(writeln!(out, "safety\t{}", m.safety.name()));
            w(writeln!(out, "precommit\t{pc}"));
            w(writeln!(out, "segmentsize\t{}", m.unit_limit));
        }
        Cmd::Alter {
            dir,
            safety,
            unit_limit,
        } => {
            let j = Journal::open(&dir)?;
            if let Some(s) = safety {
                j.set_safety(s)?;
            }
            if let Some(u) = unit_limit {
                j.set_unit_limit(u)?;
            }
        }
        Cmd::Clean { dir } => {
            for log in Journal::open(&dir)?.clean()? {
                w(writeln!(out, "removed {log:08x}"));
            }
        }
        Cmd::Repair { dir, force } => {
            let r = Journal::repair(&dir, force)?;
            if r.metastore_rewritten {
                w(writeln!(out, "metastore rewritten"));
            }
            for (name, old, new) in &r.checkpoints_reset {
                let old = old.map_or("unreadable".to_string(), |o| o.to_string());
                w(writeln!(out, "checkpoint {name}: {old} -> {new}"));
            }
            for (log, s) in &r.segments_repaired {
                w(writeln!(
                    out,
                    "segment {log:08x}: kept {} records, dropped {} bytes",
                    s.records, s.dropped_bytes
                ));
            }
            for log in &r.segments_removed {
                w(writeln!(out, "removed {log:08x}"));
            }
        }
        Cmd::Write {
            dir,
            pre_commit,
            backend,
            ack,
            sync,
        } => {
            let j = Journal::open_or_create(&dir, JournalOptions::default())?;
            let backend = match backend {
                Backend::Plain => AppendBackend::Plain,
                Backend::Uring => AppendBackend::Uring,
            };
            let mut writer = j.writer(WriterOptions {
                pre_commit_size: pre_commit,
                backend,
                sync_appends: sync,
                ..Default::default()
            })?;
            let mut stdin = std::io::BufReader::with_capacity(1 << 16, std::io::stdin().lock());
            let mut n: u64 = 0;
            let mut line = Vec::new();
            loop {
                if stdin.buffer().is_empty() {
                    // About to wait for input: make buffered records visible and let other
                    // writers have the segment.
                    writer.flush()?;
                }
                line.clear();
                let got = stdin
                    .read_until(b'\n', &mut line)
                    .map_err(|e| JlogError::Io {
                        path: "<stdin>".into(),
                        op: "read",
                        source: e,
                    })?;
                if got == 0 {
                    break;
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                writer.append(&line)?;
                n += 1;
                if ack {
                    w(writeln!(out, "{n}").and_then(|()| out.flush()));
                }
            }
            writer.close()?;
        }
        Cmd::Tail {
            dir,
            subscriber,
            begin,
            follow,
            ids,
            count,
        } => {
            let j = Journal::open(&dir)?;
            let at = if begin {
                Position::Begin
            } else {
                Position::End
            };
            let mut r = match &subscriber {
                Some(name) => {
                    if !j.subscribers()?.contains(name) {
                        j.add_subscriber(name, at)?;
                    }
                    j.reader(name)?
                }
                None => {
                    let name = format!("cohort-jlog-tail-{}", std::process::id());
                    j.add_subscriber(&name, at)?;
                    let r = j.reader(&name)?;
                    // The reader keeps its checkpoint file open; unlinked, it is invisible to
                    // cleanup.
                    j.remove_subscriber(&name)?;
                    r
                }
            };
            let mut printed: u64 = 0;
            let mut backoff = Duration::from_millis(10);
            loop {
                let (iv, recs) = r.next_batch()?;
                if iv.count == 0 {
                    if !follow {
                        break;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
                backoff = Duration::from_millis(10);
                let mut last = iv.last;
                let mut done = false;
                for rec in &recs {
                    if ids {
                        w(write!(out, "{} ", rec.id));
                    }
                    w(out
                        .write_all(&rec.payload)
                        .and_then(|()| out.write_all(b"\n")));
                    printed += 1;
                    last = rec.id;
                    if count.is_some_and(|c| printed >= c) {
                        done = true;
                        break;
                    }
                }
                w(out.flush());
                r.checkpoint(last)?;
                if done {
                    break;
                }
            }
        }
    }
    w(out.flush());
    Ok(())
}
