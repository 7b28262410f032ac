//! The node's cluster journals: the `cluster://` / `jlog://` destinations of its `ec_logger` and
//! `bounce_logger` stanzas, created with their subscribers at start-up; appends from the Rust API
//! ([`crate::node::runtime::Shared::log_append`]) and the console (`log append`); and what
//! `cluster show logs` prints about the journals of the `logs` dictionary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use cohort_engine::config::{Config, Destination};
use cohort_engine::console::status::{LogInfo, Logs, Subscriber};
use cohort_engine::jlog::{Journal, JournalOptions, Position, Writer, WriterOptions};

/// One journal this node writes.
struct Written {
    journal: Journal,
    path: PathBuf,
    writer: Mutex<Option<Writer>>,
}

/// Counters of the log service, shown by `cluster counters`.
#[derive(Debug, Default)]
pub struct ServiceStats {
    pub connections: AtomicU64,
    /// Connections refused because the peer could not prove the cluster key.
    pub auth_refused: AtomicU64,
    /// Connections ended by an undecodable, forged or out-of-turn frame.
    pub protocol_errors: AtomicU64,
    pub records_sent: AtomicU64,
    pub batches_sent: AtomicU64,
    pub batches_acked: AtomicU64,
    /// Batches sent on live connections and not acknowledged yet (a gauge).
    pub batches_unacked: AtomicU64,
}

/// A generation counter that appends bump, so an idle log service wakes at once instead of after
/// `log_idle_interval`.
#[derive(Debug, Default)]
pub struct AppendSignal {
    generation: Mutex<u64>,
    cv: Condvar,
}

impl AppendSignal {
    pub fn bump(&self) {
        if let Ok(mut g) = self.generation.lock() {
            *g += 1;
            self.cv.notify_all();
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.lock().map_or(0, |g| *g)
    }

    /// Waits until the generation differs from `seen` or `wait` has passed.
    pub fn wait_past(&self, seen: u64, wait: Duration) {
        if let Ok(g) = self.generation.lock() {
            let _ = self.cv.wait_timeout_while(g, wait, |g| *g == seen);
        }
    }
}

/// The node's journals and the state its log service shares.
pub struct Journals {
    /// The `logs` dictionary: what the log service serves (a reload replaces it).
    served: RwLock<Vec<(String, PathBuf)>>,
    /// Journals this node appends to, by log name (the logger key, and the `logs` name of the
    /// same path); a reload replaces it.
    written: RwLock<BTreeMap<String, Arc<Written>>>,
    /// `log_active_interval` and `log_idle_interval` (a reload changes them).
    pacing: RwLock<(Duration, Duration)>,
    /// Which connection pulls each (log, subscriber) now. A newer connection takes a pair over
    /// (the manager restarted before its old connection was seen dead); the old one then stops
    /// serving it. A late checkpoint from the old one is harmless: the manager skips what it has.
    pulling: Mutex<BTreeMap<(String, String), u64>>,
    next_conn: std::sync::atomic::AtomicU64,
    pub appended: AppendSignal,
    pub stats: ServiceStats,
}

impl std::fmt::Debug for Journals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journals")
            .field("served", &self.served())
            .field("written", &read(&self.written).keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Journals {
    /// No journals (the manager, or a node without cluster loggers).
    pub fn none() -> Journals {
        Journals {
            served: RwLock::new(Vec::new()),
            written: RwLock::new(BTreeMap::new()),
            pacing: RwLock::new((Duration::from_secs(1), Duration::from_secs(10))),
            pulling: Mutex::new(BTreeMap::new()),
            next_conn: AtomicU64::new(1),
            appended: AppendSignal::default(),
            stats: ServiceStats::default(),
        }
    }

    /// Creates (or opens) every `cluster://` / `jlog://` destination of the configuration with its
    /// subscribers, so no record can be removed before its reader first connects. A destination
    /// that cannot be opened is logged and left out; the node still starts.
    pub fn start(cfg: &Config) -> Journals {
        let j = Journals::none();
        j.reload(cfg);
        j
    }

    /// Takes a configuration's `logs` dictionary, journals and pacing (at start-up and on a
    /// reload). A journal already open stays open (its writer too); a new destination is created
    /// with its subscribers; one that cannot be opened is logged and left out. Returns the log
    /// names added and removed.
    pub fn reload(&self, cfg: &Config) -> (Vec<String>, Vec<String>) {
        let old = read(&self.written).clone();
        let mut written: BTreeMap<String, Arc<Written>> = BTreeMap::new();
        let mut by_path: Vec<(PathBuf, Arc<Written>)> = old
            .values()
            .map(|w| (w.path.clone(), Arc::clone(w)))
            .collect();
        for logger in &cfg.loggers {
            for out in &logger.outputs {
                let Destination::Journal(d) = &out.destination else {
                    continue;
                };
                let existing = by_path
                    .iter()
                    .find(|(p, _)| same_path(p, &d.path))
                    .map(|(_, w)| Arc::clone(w));
                let w = match existing {
                    Some(w) => w,
                    None => match open_with_subscribers(&d.path, &d.subscribers) {
                        Ok(journal) => {
                            let w = Arc::new(Written {
                                journal,
                                path: d.path.clone(),
                                writer: Mutex::new(None),
                            });
                            by_path.push((d.path.clone(), Arc::clone(&w)));
                            w
                        }
                        Err(e) => {
                            tracing::error!(log = %out.log, path = %d.path.display(), error = %e,
                                "cannot open the cluster journal");
                            continue;
                        }
                    },
                };
                for (name, path) in &cfg.cluster.logs {
                    if same_path(path, &d.path) {
                        written.insert(name.clone(), Arc::clone(&w));
                    }
                }
                written.insert(out.log.clone(), w);
            }
        }
        let added = written
            .keys()
            .filter(|k| !old.contains_key(*k))
            .cloned()
            .collect();
        let removed = old
            .keys()
            .filter(|k| !written.contains_key(*k))
            .cloned()
            .collect();
        *write(&self.written) = written;
        *write(&self.served) = cfg.cluster.logs.clone();
        *write(&self.pacing) = (
            cfg.cluster.log_active_interval,
            cfg.cluster.log_idle_interval,
        );
        (added, removed)
    }

    /// `log_active_interval` and `log_idle_interval`.
    pub fn pacing(&self) -> (Duration, Duration) {
        *read(&self.pacing)
    }

    /// Appends one record to log `name` (a logger key or a `logs` name).
    pub fn append(&self, name: &str, payload: &[u8]) -> Result<(), String> {
        let w = read(&self.written)
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no cluster journal named '{name}' on this node"))?;
        let mut guard = w.writer.lock().map_err(|_| "journal writer poisoned")?;
        if guard.is_none() {
            *guard = Some(
                w.journal
                    .writer(WriterOptions::default())
                    .map_err(|e| e.to_string())?,
            );
        }
        let writer = guard.as_mut().expect("opened just above");
        if let Err(e) = writer.append(payload) {
            // Reopen on the next append: the writer's view of the segment may be stale.
            *guard = None;
            return Err(e.to_string());
        }
        drop(guard);
        self.appended.bump();
        Ok(())
    }

    /// The `logs` dictionary.
    pub fn served(&self) -> Vec<(String, PathBuf)> {
        read(&self.served).clone()
    }

    /// The path of served log `name`.
    pub fn served_path(&self, name: &str) -> Option<PathBuf> {
        read(&self.served)
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
    }

    /// A fresh connection id for [`Journals::claim`].
    pub fn connection_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Connection `conn` now pulls (log, subscriber), taking it over from any other.
    pub fn claim(&self, log: &str, subscriber: &str, conn: u64) {
        if let Ok(mut s) = self.pulling.lock() {
            s.insert((log.to_owned(), subscriber.to_owned()), conn);
        }
    }

    /// Whether connection `conn` still pulls (log, subscriber).
    pub fn owns(&self, log: &str, subscriber: &str, conn: u64) -> bool {
        self.pulling
            .lock()
            .is_ok_and(|s| s.get(&(log.to_owned(), subscriber.to_owned())) == Some(&conn))
    }

    /// Connection `conn` ends its pull of (log, subscriber), unless another took it over.
    pub fn release(&self, log: &str, subscriber: &str, conn: u64) {
        if let Ok(mut s) = self.pulling.lock() {
            let k = (log.to_owned(), subscriber.to_owned());
            if s.get(&k) == Some(&conn) {
                s.remove(&k);
            }
        }
    }

    /// `cluster show logs`: each served journal's size on disk and subscribers' checkpoints; a
    /// journal not created yet shows 0 bytes and no subscribers.
    pub fn show(&self) -> Logs {
        let logs = self
            .served()
            .into_iter()
            .map(|(name, path)| {
                let (on_disk, subscribers) = match Journal::open(&path) {
                    Ok(j) => (segment_bytes(&path), subscribers_of(&j)),
                    Err(_) => (0, Vec::new()),
                };
                LogInfo {
                    name: name.clone(),
                    on_disk,
                    subscribers,
                }
            })
            .collect();
        Logs { logs }
    }

    /// Per served journal and subscriber, what it has not read yet (for the metrics): unread
    /// records and the append time of the oldest. The manager's subscriber's backlog is the
    /// node's log-shipping lag.
    pub fn backlogs(&self) -> Vec<(String, String, cohort_engine::jlog::Backlog)> {
        let mut out = Vec::new();
        for (name, path) in self.served() {
            let Ok(j) = Journal::open(&path) else {
                continue;
            };
            let mut subs = j.subscribers().unwrap_or_default();
            subs.sort();
            for sub in subs {
                if let Ok(b) = j.reader(&sub).and_then(|mut r| r.backlog()) {
                    out.push((name.clone(), sub, b));
                }
            }
        }
        out
    }

    /// The counters `cluster counters` adds for the log service.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let s = &self.stats;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("logmove_connections".into(), g(&s.connections)),
            ("logmove_auth_refused".into(), g(&s.auth_refused)),
            ("logmove_protocol_errors".into(), g(&s.protocol_errors)),
            ("logmove_records_sent".into(), g(&s.records_sent)),
            ("logmove_batches_sent".into(), g(&s.batches_sent)),
            ("logmove_batches_acked".into(), g(&s.batches_acked)),
            ("logmove_batches_unacked".into(), g(&s.batches_unacked)),
        ]
    }
}

fn same_path(a: &Path, b: &Path) -> bool {
    a == b
        || a.canonicalize()
            .ok()
            .is_some_and(|x| b.canonicalize().ok() == Some(x))
}

fn open_with_subscribers(
    path: &Path,
    subscribers: &[String],
) -> Result<Journal, cohort_engine::jlog::JlogError> {
    // "created on demand", parents included (docs §8.2).
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| cohort_engine::jlog::JlogError::Io {
            path: parent.to_owned(),
            op: "mkdir",
            source,
        })?;
    }
    let j = Journal::open_or_create(path, JournalOptions::default())?;
    let have = j.subscribers()?;
    for s in subscribers {
        if !have.contains(s) {
            j.add_subscriber(s, Position::Begin)?;
        }
    }
    Ok(j)
}

/// Bytes of the journal's segment files (`%08x`).
fn segment_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.len() == 8 && n.chars().all(|c| c.is_ascii_hexdigit())
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn subscribers_of(j: &Journal) -> Vec<Subscriber> {
    let mut names = j.subscribers().unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let cp = j.checkpoint(&name).ok()?;
            Some(Subscriber {
                name,
                segment: cp.log,
                offset: cp.marker,
            })
        })
        .collect()
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_create_journals_with_subscribers_and_appends_land() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mainlog.cluster");
        let text = format!(
            "cluster {{ logs = [ mainlog = \"{p}\" ] }}\n\
             ec_logger \"ec_logger_cluster\" {{ mainlog = \"cluster://{p}?subscribers=mgr1,master\" }}\n",
            p = path.display()
        );
        let cfg = cohort_engine::config::load_str(Path::new("t.conf"), &text)
            .expect("valid")
            .config;
        let j = Journals::start(&cfg);
        let gen0 = j.appended.generation();
        j.append("mainlog", b"one").expect("append");
        j.append("mainlog", b"two").expect("append");
        assert!(j.appended.generation() > gen0);
        assert!(j.append("nosuchlog", b"x").is_err());
        let shown = j.show();
        assert_eq!(shown.logs.len(), 1);
        assert!(shown.logs[0].on_disk > 0);
        let subs: Vec<&str> = shown.logs[0]
            .subscribers
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(subs, ["master", "mgr1"]);
        let mut r = Journal::open(&path)
            .expect("journal")
            .reader("master")
            .expect("reader");
        let (_, recs) = r.next_batch().expect("read");
        let payloads: Vec<&[u8]> = recs.iter().map(|r| r.payload.as_slice()).collect();
        assert_eq!(payloads, [b"one".as_slice(), b"two".as_slice()]);
        let (a, b) = (j.connection_id(), j.connection_id());
        j.claim("mainlog", "master", a);
        assert!(j.owns("mainlog", "master", a));
        j.claim("mainlog", "master", b);
        assert!(!j.owns("mainlog", "master", a), "taken over");
        j.release("mainlog", "master", a);
        assert!(
            j.owns("mainlog", "master", b),
            "the old one cannot release it"
        );
        j.release("mainlog", "master", b);
        assert!(!j.owns("mainlog", "master", b));
    }
}
