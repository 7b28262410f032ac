//! Cohort's own paniclog: panics and error-level events of `cohortd` are appended to its
//! `paniclog` journal (jlog) and, when `log_group` is configured, broadcast on that group so that
//! `cohortctl listen <group>` (Momentum: Spread's `spuser`) shows them as they happen.
//!
//! A line is `SECONDS:LEVEL: text`, Momentum's paniclog shape (`1290000000:...`) with the level
//! spelled out. The journal is the `paniclog` output of an `ec_logger` when it is a `cluster://`
//! (or `jlog://`) destination, else the `paniclog` entry of the cluster's `logs` dictionary. It
//! is created with its destination's subscribers (`master` when none are named) so nothing is
//! lost before the manager first reads it; its parent directory must exist (a node never creates
//! `/var/log/...` trees on its own). Without a usable journal the lines are still broadcast.
//!
//! Recording never blocks on itself: a line produced while recording (an error inside the jlog
//! writer) is dropped rather than deadlocking.

use std::cell::Cell;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use cohort_engine::config::{Config, Destination};
use cohort_engine::group::Order;
use cohort_engine::jlog::{Journal, JournalOptions, Position, Writer, WriterOptions};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

use super::shared::{Request, Shared};

/// Longest paniclog line broadcast on `log_group` (1 MiB); the journal keeps it whole.
const MAX_BROADCAST_LINE: usize = 1024 * 1024;

/// The process's paniclog, once [`install`]ed.
static PANICLOG: OnceLock<Paniclog> = OnceLock::new();

thread_local! {
    /// Set while this thread records a line: a line produced meanwhile is dropped.
    static RECORDING: Cell<bool> = const { Cell::new(false) };
}

struct Paniclog {
    writer: Mutex<Option<Writer>>,
    /// The journal `writer` appends to.
    path: Mutex<Option<PathBuf>>,
    broadcast: Mutex<Option<(Arc<Shared>, String)>>,
}

/// Where the paniclog journal is and the subscribers to create it with.
pub fn journal_of(cfg: &Config) -> Option<(PathBuf, Vec<String>)> {
    let from_logger = cfg.loggers.iter().find_map(|l| {
        l.outputs
            .iter()
            .find(|o| o.log == "paniclog")
            .and_then(|o| match &o.destination {
                Destination::Journal(j) => Some((j.path.clone(), j.subscribers.clone())),
                Destination::File(_) => None,
            })
    });
    from_logger
        .or_else(|| {
            cfg.cluster
                .logs
                .iter()
                .find(|(n, _)| n == "paniclog")
                .map(|(_, p)| (p.clone(), Vec::new()))
        })
        .map(|(p, mut subs)| {
            if subs.is_empty() {
                subs.push("master".to_owned());
            }
            (p, subs)
        })
}

fn open_writer(path: &std::path::Path, subscribers: &[String]) -> Result<Writer, String> {
    let journal =
        Journal::open_or_create(path, JournalOptions::default()).map_err(|e| e.to_string())?;
    let existing = journal.subscribers().map_err(|e| e.to_string())?;
    for s in subscribers.iter().filter(|s| !existing.contains(s)) {
        if let Err(e) = journal.add_subscriber(s, Position::Begin) {
            tracing::warn!(journal = %path.display(), subscriber = %s, error = %e, "cannot add a paniclog subscriber");
        }
    }
    journal
        .writer(WriterOptions {
            lock_hold: std::time::Duration::ZERO,
            sync_appends: true,
            ..WriterOptions::default()
        })
        .map_err(|e| e.to_string())
}

/// Opens the paniclog journal of `cfg` and chains a panic hook that records panics. Call once,
/// early; later calls change nothing.
pub fn install(cfg: &Config) {
    let path = journal_of(cfg).map(|(p, _)| p);
    let writer = open_journal(cfg);
    if PANICLOG
        .set(Paniclog {
            writer: Mutex::new(writer),
            path: Mutex::new(path),
            broadcast: Mutex::new(None),
        })
        .is_err()
    {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-text panic payload)".to_owned());
        let thread = std::thread::current();
        record(
            "PANIC",
            &format!(
                "thread '{}' panicked{place}: {what}",
                thread.name().unwrap_or("unnamed")
            ),
        );
        previous(info);
    }));
}

fn open_journal(cfg: &Config) -> Option<Writer> {
    journal_of(cfg).and_then(|(path, subs)| match open_writer(&path, &subs) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(journal = %path.display(), error = %e, "paniclog journal unavailable; paniclog lines are only broadcast");
            None
        }
    })
}

/// A configuration reload: the paniclog journal (reopened when its path changed) and the
/// `log_group` it is broadcast on (none stops broadcasting).
pub fn reload(shared: Arc<Shared>, cfg: &Config) {
    let Some(p) = PANICLOG.get() else {
        return;
    };
    let path = journal_of(cfg).map(|(p, _)| p);
    if let Ok(mut current) = p.path.lock()
        && *current != path
    {
        let writer = open_journal(cfg);
        if let Ok(mut w) = p.writer.lock() {
            *w = writer;
        }
        *current = path;
    }
    if let Ok(mut b) = p.broadcast.lock() {
        *b = cfg.cluster.log_group.clone().map(|g| (shared, g));
    }
}

/// From now on, broadcast every line on `group` through `shared`'s transport.
pub fn attach(shared: Arc<Shared>, group: Option<String>) {
    if let (Some(p), Some(g)) = (PANICLOG.get(), group)
        && let Ok(mut b) = p.broadcast.lock()
    {
        *b = Some((shared, g));
    }
}

/// Appends one line to the paniclog and broadcasts it.
pub fn record(level: &str, text: &str) {
    let Some(p) = PANICLOG.get() else {
        return;
    };
    if RECORDING.with(|r| r.replace(true)) {
        return;
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let line = format!("{secs}:{level}: {text}");
    if let Ok(mut w) = p.writer.try_lock()
        && let Some(w) = w.as_mut()
        && let Err(e) = w.append(line.as_bytes())
    {
        // Reported on stderr only: through tracing it would come back here.
        eprintln!("cohortd: paniclog append failed: {e}");
    }
    let target = p.broadcast.try_lock().ok().and_then(|b| b.clone());
    if let Some((shared, group)) = target {
        // The group layer carries the whole line, whatever its length (a panic message with a
        // backtrace runs to kilobytes); only a runaway line is cut, at a character boundary.
        let mut bytes = line.into_bytes();
        if bytes.len() > MAX_BROADCAST_LINE {
            let mut end = MAX_BROADCAST_LINE;
            while end > 0 && (bytes[end] & 0xc0) == 0x80 {
                end -= 1;
            }
            bytes.truncate(end);
        }
        // try_lock: a panic on a thread that holds the request queue must not hang in its hook.
        if let Ok(mut q) = shared.requests.try_lock() {
            q.push_back(Request::Send {
                group,
                payload: bytes,
                order: Order::Fifo,
            });
        }
        let _ = shared.waker.wake();
    }
    RECORDING.with(|r| r.set(false));
}

/// A `tracing` layer that records every error-level event in the paniclog.
pub struct PaniclogLayer;

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PaniclogLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() != tracing::Level::ERROR {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        record(
            "ERROR",
            &format!("{}: {}{}", event.metadata().target(), f.message, f.rest),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test of this binary that installs the process-wide paniclog.
    #[test]
    fn a_panic_is_appended_to_the_journal() {
        let t = tempfile::tempdir().expect("tempdir");
        let path = t.path().join("paniclog.cluster");
        let cfg = cohort_engine::config::load_str(
            std::path::Path::new("t.conf"),
            &format!(
                "cluster {{ logs = [ paniclog = \"{}\" ] }}\n",
                path.display()
            ),
        )
        .expect("config")
        .config;
        install(&cfg);
        let joined = std::thread::Builder::new()
            .name("doomed".into())
            .spawn(|| panic!("paniclog test {}", 42))
            .expect("thread")
            .join();
        assert!(joined.is_err());
        let journal = Journal::open(&path).expect("created with its subscriber");
        let mut reader = journal.reader("master").expect("subscriber master");
        let (_, records) = reader.next_batch().expect("records");
        let lines: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
            .collect();
        assert!(
            lines
                .iter()
                .any(|l| l.contains(":PANIC: thread 'doomed' panicked at ")
                    && l.ends_with(": paniclog test 42")),
            "{lines:?}"
        );
    }

    #[test]
    fn the_logger_destination_wins_and_master_is_the_default_subscriber() {
        let cfg = cohort_engine::config::load_str(
            std::path::Path::new("t.conf"),
            "cluster { logs = [ paniclog = \"/tmp/p.cluster\" ] }\n",
        )
        .expect("config")
        .config;
        assert_eq!(
            journal_of(&cfg),
            Some((PathBuf::from("/tmp/p.cluster"), vec!["master".to_owned()]))
        );
        let cfg = cohort_engine::config::load_str(
            std::path::Path::new("t.conf"),
            "cluster { logs = [ paniclog = \"/tmp/p.cluster\" ] }\n\
             ec_logger \"ec_logger\" { paniclog = \"cluster:///tmp/q.cluster?subscribers=a,b\" }\n",
        )
        .expect("config")
        .config;
        assert_eq!(
            journal_of(&cfg),
            Some((
                PathBuf::from("/tmp/q.cluster"),
                vec!["a".to_owned(), "b".to_owned()]
            ))
        );
    }
}
