//! The manager's output: records pulled from the nodes, written under the `Logs { logfile = ... }`
//! pattern with `File_Mode` / `Dir_Mode`, at most `Max_Open` files open, each closed after
//! `Max_Idle` seconds unwritten; and beside them, under `<pattern root>/.cohort-logmove/`, one
//! position file per (node, log) (see [`cohort_engine::logmove::position`]).
//!
//! One batch is written at a time, whole (position intent, data, fsync, position commit), so a
//! crash leaves at most one batch to undo even when the pattern sends several streams to one file.

use std::collections::HashMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{Local, TimeZone};
use cohort_engine::config::ManagerLogs;
use cohort_engine::logmove::position::{MAX_PENDING_FILES, SLOT_LEN};
use cohort_engine::logmove::{Pattern, Position, WireRecord};

/// Why a batch could not be written (the manager then drops the connection without acking).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Position {
        path: PathBuf,
        source: cohort_engine::logmove::PositionError,
    },
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> SinkError + 'a {
    move |source| SinkError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

/// What one call to [`Sink::write`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub records: u64,
    /// Records at or below the stream's durable position (replayed after a crash), not written.
    pub skipped: u64,
}

struct Stream {
    file: File,
    path: PathBuf,
    pos: Position,
}

struct Open {
    file: File,
    last_used: Instant,
}

struct Inner {
    streams: HashMap<(String, String), Stream>,
    files: HashMap<PathBuf, Open>,
}

/// The manager's writer of pulled records.
pub struct Sink {
    pattern: Pattern,
    state_dir: PathBuf,
    file_mode: u32,
    dir_mode: u32,
    max_open: usize,
    max_idle: Duration,
    inner: Mutex<Inner>,
}

impl Sink {
    pub fn new(logs: &ManagerLogs) -> Result<Sink, String> {
        let pattern = Pattern::parse(&logs.logfile).map_err(|e| format!("Logs logfile: {e}"))?;
        let state_dir = pattern.root().join(".cohort-logmove");
        Ok(Sink {
            pattern,
            state_dir,
            file_mode: logs.file_mode,
            dir_mode: logs.dir_mode,
            max_open: (logs.max_open as usize).max(1),
            max_idle: logs.max_idle,
            inner: Mutex::new(Inner {
                streams: HashMap::new(),
                files: HashMap::new(),
            }),
        })
    }

    /// The position file of a (node, log) stream.
    pub fn position_path(&self, node: &str, log: &str) -> PathBuf {
        let safe = |s: &str| s.replace(['/', '\0'], "_").replace("..", "__");
        self.state_dir
            .join(safe(node))
            .join(format!("{}.pos", safe(log)))
    }

    /// Output files open now.
    pub fn open_files(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.files.len())
    }

    /// Closes output files idle longer than `Max_Idle`.
    pub fn sweep(&self) {
        if let Ok(mut i) = self.inner.lock() {
            let max = self.max_idle;
            i.files.retain(|_, o| o.last_used.elapsed() < max);
        }
    }

    fn mkdirs(&self, dir: &Path) -> Result<(), SinkError> {
        DirBuilder::new()
            .recursive(true)
            .mode(self.dir_mode)
            .create(dir)
            .map_err(io(dir, "mkdir"))
    }

    /// Loads a stream's position, undoing a batch a crash left half done.
    fn load(&self, node: &str, log: &str) -> Result<Stream, SinkError> {
        let path = self.position_path(node, log);
        if let Some(d) = path.parent() {
            self.mkdirs(d)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(self.file_mode)
            .open(&path)
            .map_err(io(&path, "open"))?;
        let bytes = std::fs::read(&path).map_err(io(&path, "read"))?;
        let stored = Position::decode_file(&bytes).map_err(|source| SinkError::Position {
            path: path.clone(),
            source,
        })?;
        let (pos, cut) = stored.recover();
        for (out, len) in &cut {
            match OpenOptions::new().write(true).open(out) {
                Ok(f) => {
                    let now = f.metadata().map_err(io(out, "stat"))?.len();
                    if now > *len {
                        tracing::warn!(file = %out.display(), from = now, to = len,
                            "undoing a batch the manager did not finish writing");
                        f.set_len(*len).map_err(io(out, "truncate"))?;
                        f.sync_all().map_err(io(out, "fsync"))?;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(out, "open")(e)),
            }
        }
        if bytes.is_empty() {
            // Both slots exist from the start (zeros read as a fresh stream).
            file.set_len(2 * SLOT_LEN as u64)
                .map_err(io(&path, "truncate"))?;
        }
        let mut s = Stream { file, path, pos };
        if !cut.is_empty() || bytes.is_empty() {
            let p = s.pos.clone();
            persist(&mut s, p)?;
        }
        Ok(s)
    }

    /// Writes the records of one batch from `node` (in `subcluster`) for `log`, durably, skipping
    /// those already written. Returns only once everything is on disk: then the batch may be
    /// acknowledged.
    pub fn write(
        &self,
        node: &str,
        subcluster: &str,
        log: &str,
        records: &[WireRecord],
    ) -> Result<Written, SinkError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let key = (node.to_owned(), log.to_owned());
        if !inner.streams.contains_key(&key) {
            let s = self.load(node, log)?;
            inner.streams.insert(key.clone(), s);
        }
        let committed = inner.streams[&key].pos.committed;
        let fresh: Vec<&WireRecord> = records.iter().filter(|r| r.id > committed).collect();
        let mut done = Written {
            records: 0,
            skipped: (records.len() - fresh.len()) as u64,
        };
        // Cut the batch where it would touch more files than a position slot records.
        let mut chunk: Vec<(PathBuf, &WireRecord)> = Vec::new();
        let mut paths: Vec<PathBuf> = Vec::new();
        for r in fresh {
            let t = Local
                .timestamp_opt(i64::from(r.tv_sec), r.tv_usec.min(999_999) * 1000)
                .earliest()
                .unwrap_or_else(Local::now);
            let p = self.pattern.expand(&t, log, subcluster, node);
            if !paths.contains(&p) {
                if paths.len() == MAX_PENDING_FILES {
                    done.records += self.write_chunk_or_forget(&mut inner, &key, &chunk)?;
                    chunk.clear();
                    paths.clear();
                }
                paths.push(p.clone());
            }
            chunk.push((p, r));
        }
        if !chunk.is_empty() {
            done.records += self.write_chunk_or_forget(&mut inner, &key, &chunk)?;
        }
        Ok(done)
    }

    /// [`Sink::write_chunk`]; after a failure the stream is forgotten, so that the next write
    /// reloads it from its position file and undoes whatever part of the chunk reached the files.
    fn write_chunk_or_forget(
        &self,
        inner: &mut Inner,
        key: &(String, String),
        chunk: &[(PathBuf, &WireRecord)],
    ) -> Result<u64, SinkError> {
        let r = self.write_chunk(inner, key, chunk);
        if r.is_err() {
            inner.streams.remove(key);
            inner.files.clear();
        }
        r
    }

    fn write_chunk(
        &self,
        inner: &mut Inner,
        key: &(String, String),
        chunk: &[(PathBuf, &WireRecord)],
    ) -> Result<u64, SinkError> {
        let Some(last) = chunk.last().map(|(_, r)| r.id) else {
            return Ok(0);
        };
        // The bytes per file, in record order.
        let mut per_file: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        for (p, r) in chunk {
            let i = match per_file.iter().position(|(q, _)| q == p) {
                Some(i) => i,
                None => {
                    per_file.push((p.clone(), Vec::new()));
                    per_file.len() - 1
                }
            };
            let buf = &mut per_file[i].1;
            buf.extend_from_slice(&r.payload);
            if r.payload.last() != Some(&b'\n') {
                buf.push(b'\n');
            }
        }
        let mut lens = Vec::with_capacity(per_file.len());
        for (p, _) in &per_file {
            let f = self.file(inner, p)?;
            lens.push((p.clone(), f.metadata().map_err(io(p, "stat"))?.len()));
        }
        let stream = inner.streams.get_mut(key).expect("loaded by write");
        let intent = stream.pos.begin(last, chunk.len() as u64, lens);
        persist(stream, intent)?;
        for (p, bytes) in &per_file {
            let f = &mut self.file(inner, p)?;
            f.write_all(bytes).map_err(io(p, "write"))?;
            f.sync_data().map_err(io(p, "fdatasync"))?;
        }
        let stream = inner.streams.get_mut(key).expect("loaded by write");
        let commit = stream.pos.commit();
        persist(stream, commit)?;
        Ok(chunk.len() as u64)
    }

    /// The open output file `path`, opened (and its directories made) if need be; the least
    /// recently used file is closed first when `Max_Open` are open.
    fn file(&self, inner: &mut Inner, path: &Path) -> Result<File, SinkError> {
        if let Some(o) = inner.files.get_mut(path) {
            o.last_used = Instant::now();
            return o.file.try_clone().map_err(io(path, "dup"));
        }
        if inner.files.len() >= self.max_open
            && let Some(oldest) = inner
                .files
                .iter()
                .min_by_key(|(_, o)| o.last_used)
                .map(|(p, _)| p.clone())
        {
            inner.files.remove(&oldest);
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let new_dir = !dir.exists();
        self.mkdirs(dir)?;
        let existed = path.exists();
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(self.file_mode)
            .open(path)
            .map_err(io(path, "open"))?;
        if !existed || new_dir {
            // The new name must survive a power loss as well as the data.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        let dup = file.try_clone().map_err(io(path, "dup"))?;
        inner.files.insert(
            path.to_owned(),
            Open {
                file,
                last_used: Instant::now(),
            },
        );
        Ok(dup)
    }

    /// The durable position of a stream as stored (for statistics and tests).
    pub fn position(&self, node: &str, log: &str) -> Option<Position> {
        let bytes = std::fs::read(self.position_path(node, log)).ok()?;
        Position::decode_file(&bytes).ok()
    }
}

/// Writes `p` to its slot and makes it durable.
fn persist(s: &mut Stream, p: Position) -> Result<(), SinkError> {
    let bytes = p.encode().map_err(|source| SinkError::Position {
        path: s.path.clone(),
        source,
    })?;
    s.file
        .write_all_at(&bytes, p.slot_offset())
        .map_err(io(&s.path, "write"))?;
    s.file.sync_data().map_err(io(&s.path, "fdatasync"))?;
    s.pos = p;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_engine::jlog::JlogId;

    fn rec(m: u32, text: &str) -> WireRecord {
        WireRecord {
            id: JlogId::new(0, m),
            tv_sec: 1_700_000_000,
            tv_usec: 0,
            payload: text.as_bytes().to_vec(),
        }
    }

    fn write(s: &Sink, recs: &[WireRecord]) -> Written {
        s.write("node1", "default", "mainlog", recs).expect("write")
    }

    fn sink(dir: &Path, max_open: u32) -> Sink {
        Sink::new(&ManagerLogs {
            logfile: format!("{}/%{{l}}/%{{s}}/%{{n}}", dir.display()),
            max_open,
            ..ManagerLogs::default()
        })
        .expect("valid pattern")
    }

    #[test]
    fn replays_are_skipped_and_a_half_batch_is_undone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("mainlog/default/node1");
        let s = sink(dir.path(), 4);
        assert_eq!(
            write(&s, &[rec(1, "a"), rec(2, "b")]),
            Written {
                records: 2,
                skipped: 0
            }
        );
        // The node replays 1..3 (it never saw the ack): 1 and 2 are skipped.
        assert_eq!(
            write(&s, &[rec(1, "a"), rec(2, "b"), rec(3, "c")]),
            Written {
                records: 1,
                skipped: 2
            }
        );
        assert_eq!(std::fs::read_to_string(&out).expect("output"), "a\nb\nc\n");
        // A manager that died after its intent and part of the data: the restart cuts it off.
        let pos = s.position("node1", "mainlog").expect("position");
        let len = std::fs::metadata(&out).expect("stat").len();
        let intent = pos.begin(JlogId::new(0, 5), 2, vec![(out.clone(), len)]);
        let pfile = OpenOptions::new()
            .write(true)
            .open(s.position_path("node1", "mainlog"))
            .expect("open");
        pfile
            .write_all_at(&intent.encode().expect("fits"), intent.slot_offset())
            .expect("write");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&out)
            .and_then(|mut f| f.write_all(b"d\n"))
            .expect("append");
        let s2 = sink(dir.path(), 4);
        assert_eq!(
            write(&s2, &[rec(3, "c"), rec(4, "d"), rec(5, "e")]),
            Written {
                records: 2,
                skipped: 1
            }
        );
        assert_eq!(
            std::fs::read_to_string(&out).expect("output"),
            "a\nb\nc\nd\ne\n"
        );
        assert_eq!(s2.position("node1", "mainlog").expect("pos").records, 5);
    }

    #[test]
    fn max_open_bounds_open_files_and_modes_apply() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let s = sink(dir.path(), 2);
        for n in 0..5 {
            s.write(&format!("node{n}"), "default", "mainlog", &[rec(1, "x")])
                .expect("write");
            assert!(s.open_files() <= 2);
        }
        let m = std::fs::metadata(dir.path().join("mainlog/default/node0"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(m & 0o777, 0o640);
        let m = std::fs::metadata(dir.path().join("mainlog/default"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(m & 0o777, 0o755);
    }
}
