//! Appending records, byte-compatible with jlog 2.x writers and safe to run beside them.
//!
//! Each append takes the fcntl lock on the current segment, writes whole records at the end of the
//! file with one positioned write, and rolls to a new segment once the file reaches `unit_limit`
//! (fdatasync, then `storage_log + 1` in the metastore under its lock), exactly like
//! `jlog_ctx_write_message`. Opening a writer first truncates a torn record left by a crashed
//! writer and flushes a `pre_commit` buffer left by a previous writer, so that nothing is lost or
//! reordered and readers never meet garbage.
//!
//! Durability once `append`/`append_batch` returns: in every [`Safety`] mode the record survives
//! a crash of the writing process (it is in the page cache or in the shared `pre_commit`
//! mapping), and survives a power loss once its segment has rolled or the writer has closed (both
//! fdatasync the segment), exactly as with jlog. With [`WriterOptions::sync_appends`] (a Cohort
//! extension, independent of the mode) it survives a power loss as soon as the call returns.

use std::io::IoSlice;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::error::{JlogError, Result, io_err};
use super::journal::Journal;
use super::lease::LeaseShared;
use super::lock::{Create, SharedFile};
use super::metastore::{Metastore, Safety};
use super::precommit::PreCommit;
use super::record::{HEADER_LEN, RecordHeader};
use super::repair::{complete_prefix_len_of, repair_segment_locked};
use super::segment::segment_path;
use super::uring::UringAppender;

/// How record bytes reach the segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppendBackend {
    /// `pwritev(2)` (+ `fdatasync(2)` with `sync_appends`). The default: appends that extend an
    /// ext4 file cannot complete inline in io_uring and are handed to a kernel worker thread, so
    /// plain writes measured several times faster (see the jlog benchmark in docs/benchmarks.md).
    #[default]
    Plain,
    /// io_uring `WRITEV` (linked with `FSYNC(DATASYNC)` with `sync_appends`), one
    /// `io_uring_enter` per append.
    Uring,
}

/// Settings for [`Journal::writer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Size of the `pre_commit` buffer. `None` keeps the size the file already has (jlog's
    /// "sticky" behaviour; 0 for a new journal); `Some(n)` resizes it after flushing it.
    pub pre_commit_size: Option<u32>,
    /// Write path.
    pub backend: AppendBackend,
    /// How long the writer may keep the segment's fcntl lock between appends. While it holds
    /// the lock it knows the segment's size, so an append is a single `pwritev`. The lock is
    /// given back after an append once it has been held this long, by a small reaper thread once
    /// the writer has been idle this long, and at once by [`Writer::flush`], [`Writer::close`], a
    /// roll or dropping the writer; so other writers (C or Cohort) wait about this long at most.
    /// `Duration::ZERO` locks and unlocks around every append, as jlog does (and starts no
    /// thread). Readers never take this lock.
    pub lock_hold: Duration,
    /// fdatasync the segment (or msync the new pre-commit bytes) before each `append` /
    /// `append_batch` returns, so a reported record survives a power loss. jlog has no such
    /// mode in any safety level; batching appends amortises the cost (group commit).
    pub sync_appends: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            pre_commit_size: None,
            backend: AppendBackend::Plain,
            lock_hold: DEFAULT_LOCK_HOLD,
            sync_appends: false,
        }
    }
}

/// Default for [`WriterOptions::lock_hold`].
pub const DEFAULT_LOCK_HOLD: Duration = Duration::from_millis(1);

/// Counters of what a writer did, for metrics and for checking a safety mode's promise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records appended.
    pub records: u64,
    /// Positioned writes to segment files (appends and pre-commit flushes).
    pub writes: u64,
    /// fdatasyncs of segment data (per write with `sync_appends`, and on roll and close).
    pub data_syncs: u64,
    /// msyncs of the pre-commit buffer (per append with `sync_appends` and a pre-commit buffer).
    pub pre_commit_syncs: u64,
    /// Segment rolls.
    pub rolls: u64,
}

/// The segment lock as a writer holds it across appends.
#[derive(Debug, Clone, Copy)]
struct Held {
    since: Instant,
    /// The segment's size: exact, because nobody else can write while the lock is held.
    size: u64,
}

/// An open writer (`jlog_ctx_open_writer`). One per process per journal when a pre-commit buffer
/// is used (jlog's rule); any number otherwise.
pub struct Writer {
    journal: Journal,
    meta: Metastore,
    current_log: u32,
    seg: Arc<SharedFile>,
    pre: PreCommit,
    uring: Option<UringAppender>,
    scratch: Vec<u8>,
    held: Option<Held>,
    lock_hold: Duration,
    lease: Arc<LeaseShared>,
    reaper: Option<JoinHandle<()>>,
    sync_appends: bool,
    stats: WriterStats,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("journal", &self.journal.path())
            .field("current_log", &self.current_log)
            .finish()
    }
}

fn now() -> (u32, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as u32, d.subsec_micros())
}

impl Journal {
    /// Opens a writer: validates the metastore (extending a pre-2.0 one in place), repairs a torn
    /// tail of the current segment and flushes a leftover pre-commit buffer before returning.
    pub fn writer(&self, opts: WriterOptions) -> Result<Writer> {
        let meta = {
            let _l = self.meta_file().lock()?;
            let m = Metastore::load(self.meta_file())?;
            if m.legacy_len {
                m.save(self.meta_file())?;
            }
            m
        };
        let current_log = meta.storage_log;
        let seg = SharedFile::open(
            &segment_path(self.path(), current_log),
            Create::IfMissing,
            self.file_mode(),
        )?;
        let pre = PreCommit::open(
            self.path(),
            opts.pre_commit_size.unwrap_or(0),
            self.file_mode(),
        )?;
        let uring = match opts.backend {
            AppendBackend::Plain => None,
            AppendBackend::Uring => {
                Some(UringAppender::new().map_err(|source| JlogError::Uring {
                    path: seg.path().to_path_buf(),
                    source,
                })?)
            }
        };
        let (lease, reaper) = LeaseShared::start(opts.lock_hold);
        let mut w = Writer {
            journal: self.clone(),
            meta,
            current_log,
            seg,
            pre,
            uring,
            scratch: Vec::new(),
            held: None,
            lock_hold: opts.lock_hold,
            lease,
            reaper,
            sync_appends: opts.sync_appends,
            stats: WriterStats::default(),
        };
        w.leased(Writer::recover)?;
        if let Some(size) = opts.pre_commit_size
            && size as usize != w.pre.capacity()
        {
            w.flush()?;
            w.pre.resize(self.path(), size, self.file_mode())?;
        }
        Ok(w)
    }
}

impl Writer {
    /// Id of the segment being written.
    pub fn current_log(&self) -> u32 {
        self.current_log
    }

    /// What this writer has done so far.
    pub fn stats(&self) -> WriterStats {
        self.stats
    }

    /// The journal's safety mode as this writer applies it.
    pub fn safety(&self) -> Safety {
        self.meta.safety
    }

    fn recover(&mut self) -> Result<()> {
        let result = self.recover_held();
        self.unhold();
        result
    }

    fn recover_held(&mut self) -> Result<()> {
        let len = self.hold()?.size;
        if len > 0 && complete_prefix_len_of(&self.seg, self.meta.hdr_magic)? != len {
            let r = repair_segment_locked(&self.seg, self.meta.hdr_magic)?;
            tracing::warn!(segment = %self.seg.path().display(), dropped = r.dropped_bytes,
                "removed a torn or damaged tail left by a crashed writer");
            if let Some(h) = self.held.as_mut() {
                h.size = r.new_len;
            }
        }
        self.flush_pre_commit_held()
    }

    fn write_locked(&mut self, parts: &[&[u8]], offset: u64) -> Result<()> {
        let sync = self.sync_appends;
        let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let fd = self.seg.file().as_raw_fd();
        self.stats.writes += 1;
        if sync {
            self.stats.data_syncs += 1;
        }
        let mut done = match self.uring.as_mut() {
            Some(ring) => {
                ring.write_at(fd, &slices, offset, sync)
                    .map_err(|source| JlogError::Uring {
                        path: self.seg.path().to_path_buf(),
                        source,
                    })?
            }
            None => {
                pwritev(fd, &slices, offset).map_err(|e| io_err(self.seg.path(), "pwritev", e))?
            }
        };
        if done < total {
            // Complete a short write byte-exactly; rare (disk full or a signal).
            let flat: Vec<u8> = parts.concat();
            while done < total {
                let n = pwritev(fd, &[IoSlice::new(&flat[done..])], offset + done as u64)
                    .map_err(|e| io_err(self.seg.path(), "pwrite", e))?;
                if n == 0 {
                    return Err(io_err(
                        self.seg.path(),
                        "pwrite",
                        std::io::ErrorKind::WriteZero.into(),
                    ));
                }
                done += n;
            }
            if sync {
                self.seg.sync_data()?;
            }
        } else if sync && self.uring.is_none() {
            self.seg.sync_data()?;
        }
        Ok(())
    }

    /// Appends one record stamped with the current time.
    pub fn append(&mut self, payload: &[u8]) -> Result<()> {
        let (s, us) = now();
        self.append_at(payload, s, us)
    }

    /// Appends one record with the given write time (`jlog_ctx_write_message` with a timeval).
    pub fn append_at(&mut self, payload: &[u8], tv_sec: u32, tv_usec: u32) -> Result<()> {
        let mlen = u32::try_from(payload.len()).map_err(|_| JlogError::Invalid {
            path: self.journal.path().to_path_buf(),
            what: format!(
                "record of {} bytes exceeds the format's 4 GiB limit",
                payload.len()
            ),
        })?;
        let hdr = RecordHeader {
            magic: self.meta.hdr_magic,
            tv_sec,
            tv_usec,
            mlen,
        }
        .emit();
        self.leased(|w| w.append_records(&[&hdr, payload], HEADER_LEN + payload.len()))?;
        self.stats.records += 1;
        Ok(())
    }

    /// Appends several records, stamped with the current time, with as few writes as the segment
    /// size limit allows (one write per segment touched).
    pub fn append_batch<P: AsRef<[u8]>>(&mut self, payloads: &[P]) -> Result<()> {
        self.leased(|w| w.append_batch_leased(payloads))
    }

    fn append_batch_leased<P: AsRef<[u8]>>(&mut self, payloads: &[P]) -> Result<()> {
        let (s, us) = now();
        let magic = self.meta.hdr_magic;
        let mut buf = std::mem::take(&mut self.scratch);
        let mut i = 0;
        let result = (|| {
            while i < payloads.len() {
                buf.clear();
                // A chunk never crosses a roll point: jlog rolls after the write that reaches the
                // limit. (With a pre-commit buffer the roll point is decided at flush time.)
                let start_len = if self.pre.capacity() == 0 {
                    self.hold()?.size
                } else {
                    0
                };
                let limit = u64::from(self.meta.unit_limit);
                let chunk_start = i;
                while i < payloads.len()
                    && (buf.is_empty() || start_len + (buf.len() as u64) < limit)
                {
                    let p = payloads[i].as_ref();
                    let mlen = u32::try_from(p.len()).map_err(|_| JlogError::Invalid {
                        path: self.journal.path().to_path_buf(),
                        what: format!(
                            "record of {} bytes exceeds the format's 4 GiB limit",
                            p.len()
                        ),
                    })?;
                    buf.extend_from_slice(
                        &RecordHeader {
                            magic,
                            tv_sec: s,
                            tv_usec: us,
                            mlen,
                        }
                        .emit(),
                    );
                    buf.extend_from_slice(p);
                    i += 1;
                }
                let len = buf.len();
                self.append_records(&[&buf], len)?;
                self.stats.records += (i - chunk_start) as u64;
            }
            Ok(())
        })();
        self.scratch = buf;
        result
    }

    /// Runs one writer operation with the reaper kept out, first forgetting a lock the reaper
    /// released meanwhile.
    fn leased<T>(&mut self, op: impl FnOnce(&mut Writer) -> Result<T>) -> Result<T> {
        let lease = self.lease.clone();
        let mut guard = lease.enter();
        if guard.take_reaped() {
            self.held = None;
        }
        let result = op(self);
        guard.leave(self.held.map(|_| self.seg.clone()));
        result
    }

    /// Takes the segment lock unless this writer already holds it, and returns what is known
    /// while holding it.
    fn hold(&mut self) -> Result<Held> {
        if let Some(h) = self.held {
            return Ok(h);
        }
        // Another writer that rolled did so because this segment reached `unit_limit`; the size
        // check after taking the lock then rolls this writer too, adopting the newer segment.
        self.seg.acquire()?;
        let size = match self.seg.size() {
            Ok(s) => s,
            Err(e) => {
                self.seg.release();
                return Err(e);
            }
        };
        let h = Held {
            since: Instant::now(),
            size,
        };
        self.held = Some(h);
        Ok(h)
    }

    fn grew(&mut self, by: u64) {
        if let Some(h) = self.held.as_mut() {
            h.size += by;
        }
    }

    /// Gives the segment lock back.
    fn unhold(&mut self) {
        if self.held.take().is_some() {
            self.seg.release();
        }
    }

    /// Gives the lock back once it has been held for `lock_hold`.
    fn unhold_if_due(&mut self) {
        if self
            .held
            .is_some_and(|h| h.since.elapsed() >= self.lock_hold)
        {
            self.unhold();
        }
    }

    /// Writes whole records (`parts` concatenated, `len` bytes) under the segment lock.
    fn append_records(&mut self, parts: &[&[u8]], len: usize) -> Result<()> {
        let result = self.append_records_held(parts, len);
        if result.is_err() {
            // After a failure the cached size may be wrong: start afresh next time.
            self.unhold();
        } else {
            self.unhold_if_due();
        }
        result
    }

    fn append_records_held(&mut self, parts: &[&[u8]], len: usize) -> Result<()> {
        let limit = u64::from(self.meta.unit_limit);
        loop {
            self.hold()?;
            if self.pre.capacity() > 0 {
                if self.pre.push(parts, self.sync_appends)? {
                    self.count_pre_commit_push();
                    return Ok(());
                }
                // Full: its records go to the segment first, keeping the order.
                self.flush_pre_commit_held()?;
                if self.held.is_some_and(|h| h.size >= limit) {
                    self.roll()?;
                    continue;
                }
                if len <= self.pre.capacity() && self.pre.push(parts, self.sync_appends)? {
                    self.count_pre_commit_push();
                    return Ok(());
                }
            }
            // The flush above may have grown the segment: use the size as it is now.
            let held = self.hold()?;
            if held.size >= limit {
                // Another writer filled this segment (or a crash left it full): roll first.
                self.roll()?;
                continue;
            }
            self.write_locked(parts, held.size)?;
            self.grew(len as u64);
            if held.size + len as u64 >= limit {
                self.roll()?;
            }
            return Ok(());
        }
    }

    fn count_pre_commit_push(&mut self) {
        if self.sync_appends {
            self.stats.pre_commit_syncs += 1;
        }
    }

    fn flush_pre_commit_held(&mut self) -> Result<()> {
        if self.pre.pending().is_empty() {
            return Ok(());
        }
        let held = self.hold()?;
        let pending = self.pre.pending().to_vec();
        self.write_locked(&[&pending], held.size)?;
        self.grew(pending.len() as u64);
        self.pre.clear();
        Ok(())
    }

    /// Switches to segment `log`, which another writer (or this one) has started.
    fn adopt(&mut self, log: u32) -> Result<()> {
        self.unhold();
        self.current_log = log;
        self.seg = SharedFile::open(
            &segment_path(self.journal.path(), log),
            Create::IfMissing,
            self.journal.file_mode(),
        )?;
        Ok(())
    }

    /// Moves to the next segment (`__jlog_metastore_atomic_increment`): the finished segment is
    /// fdatasync'd, and `storage_log` is advanced only if no other writer already did.
    fn roll(&mut self) -> Result<()> {
        self.unhold();
        self.seg.sync_data()?;
        self.stats.data_syncs += 1;
        self.stats.rolls += 1;
        let meta_file = self.journal.meta_file();
        let m = {
            let _l = meta_file.lock()?;
            let mut m = Metastore::load(meta_file)?;
            if m.storage_log == self.current_log {
                let next = self
                    .current_log
                    .checked_add(1)
                    .ok_or_else(|| JlogError::Invalid {
                        path: self.journal.path().to_path_buf(),
                        what: "segment ids exhausted (0xffffffff)".into(),
                    })?;
                SharedFile::open(
                    &segment_path(self.journal.path(), next),
                    Create::IfMissing,
                    self.journal.file_mode(),
                )?;
                m.storage_log = next;
                m.save(meta_file)?;
            }
            m
        };
        self.meta = m;
        self.adopt(m.storage_log)
    }

    /// Appends whatever the pre-commit buffer holds to the segment, making it visible to readers
    /// (`jlog_ctx_flush_pre_commit_buffer`), and gives the segment lock back to other writers.
    pub fn flush(&mut self) -> Result<()> {
        self.leased(Writer::flush_leased)
    }

    fn flush_leased(&mut self) -> Result<()> {
        let result = (|| {
            if self.pre.pending().is_empty() {
                return Ok(());
            }
            self.flush_pre_commit_held()?;
            if self
                .held
                .is_some_and(|h| h.size >= u64::from(self.meta.unit_limit))
            {
                self.roll()?;
            }
            Ok(())
        })();
        self.unhold();
        result
    }

    /// Flushes the pre-commit buffer and fdatasyncs the segment (`jlog_ctx_close`). Dropping a
    /// writer without calling this keeps buffered records in `pre_commit` for the next writer.
    pub fn close(self) -> Result<()> {
        self.close_and_report().map(|_| ())
    }

    /// [`close`](Self::close), returning the writer's final counters.
    pub fn close_and_report(mut self) -> Result<WriterStats> {
        self.flush()?;
        self.seg.sync_data()?;
        self.stats.data_syncs += 1;
        Ok(self.stats)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.leased(|w| {
            w.unhold();
            Ok(())
        });
        self.lease.shutdown();
        if let Some(r) = self.reaper.take() {
            // The reaper only waits on the lease; it ends as soon as it sees the shutdown.
            let _ = r.join();
        }
    }
}

fn pwritev(fd: std::os::fd::RawFd, bufs: &[IoSlice<'_>], offset: u64) -> std::io::Result<usize> {
    let off = libc::off_t::try_from(offset)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let cnt = libc::c_int::try_from(bufs.len())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    loop {
        // SAFETY: IoSlice is ABI-compatible with iovec; the slices are valid for the call.
        let n = unsafe { libc::pwritev(fd, bufs.as_ptr().cast::<libc::iovec>(), cnt, off) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
