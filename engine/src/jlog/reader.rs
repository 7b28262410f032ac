//! Subscribers' reading side: read intervals, messages and checkpoints, as jlog 2.x readers do.
//!
//! The usual loop is `read_interval` → read its records → `checkpoint(interval.last)`. An interval
//! never spans two segments; an empty interval means "caught up". Reading never modifies segment
//! data except to repair a damaged *closed* segment (as jlog does); it builds `.idx` files and
//! removes segments no subscriber needs once checkpoints move past them.

use std::sync::Arc;

use super::checkpoint::{JlogId, read_checkpoint_locked};
use super::error::{Result, corrupt};
use super::index::{read_offsets, resync_index};
use super::journal::Journal;
use super::lock::{Create, SharedFile};
use super::record::{HEADER_LEN, RecordHeader};
use super::segment::{index_path, list_segments, segment_path};

/// Most records [`Reader::next_batch`] returns at once.
pub const MAX_BATCH: u32 = 8192;

/// The records available to a subscriber in one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Id of the first unread record (meaningful when `count > 0`).
    pub first: JlogId,
    /// Id of the last record of the interval: checkpoint this after reading them all.
    pub last: JlogId,
    /// Number of records, `first..=last`.
    pub count: u32,
}

/// What a subscriber has not read yet (see [`Reader::backlog`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Records after the checkpoint.
    pub records: u64,
    /// Write time (since the Unix epoch, seconds truncated to 32 bits as stored) of the first.
    pub oldest: Option<std::time::Duration>,
}

/// One record read from a journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its address.
    pub id: JlogId,
    /// Write time, seconds (truncated to 32 bits, as stored).
    pub tv_sec: u32,
    /// Write time, microseconds.
    pub tv_usec: u32,
    /// The payload.
    pub payload: Vec<u8>,
}

struct OpenSegment {
    data: Arc<SharedFile>,
    idx: Arc<SharedFile>,
}

/// A subscriber's reader (`jlog_ctx_open_reader`).
pub struct Reader {
    journal: Journal,
    name: String,
    cp: Arc<SharedFile>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("journal", &self.journal.path())
            .field("subscriber", &self.name)
            .finish()
    }
}

impl Journal {
    /// Opens a reader for subscriber `name`, which must exist.
    pub fn reader(&self, name: &str) -> Result<Reader> {
        let cp = self.open_checkpoint(name)?;
        Ok(Reader {
            journal: self.clone(),
            name: name.to_string(),
            cp,
        })
    }
}

impl Reader {
    /// The subscriber name.
    pub fn subscriber(&self) -> &str {
        &self.name
    }

    /// The subscriber's current checkpoint.
    pub fn current_checkpoint(&self) -> Result<JlogId> {
        let _l = self.cp.lock()?;
        match read_checkpoint_locked(&self.cp)? {
            Some(id) => Ok(id),
            None => Ok(JlogId::new(self.journal.first_log_id()?, 0)),
        }
    }

    /// The unread records of the first segment that has any (`jlog_ctx_read_interval`). Moving to
    /// a later segment persists the checkpoint `(segment, 0)`, which may remove older segments.
    pub fn read_interval(&mut self) -> Result<Interval> {
        let chkpt = self.current_checkpoint()?;
        let mut start = chkpt;
        let finish = loop {
            let storage_log = self.journal.metastore()?.storage_log;
            match resync_index(self.journal.files(), start.log)? {
                None => {
                    if start.log >= storage_log {
                        break start;
                    }
                    // Skip the gap in one step (to the next segment present, at most the newest),
                    // so a checkpoint far behind costs one directory listing, not a probe per id.
                    let next = list_segments(self.journal.path())?
                        .into_iter()
                        .find(|&l| l > start.log)
                        .map_or(storage_log, |l| l.min(storage_log));
                    start = JlogId::new(next, 0);
                }
                Some(state) => {
                    let last = JlogId::new(start.log, state.count);
                    if last.marker < start.marker {
                        start = last;
                    }
                    if start == last && state.closed {
                        if start.log >= storage_log {
                            break start;
                        }
                        start = JlogId::new(start.log + 1, 0);
                        continue;
                    }
                    break last;
                }
            }
        };
        if start.log != chkpt.log {
            start.marker = 0;
            self.journal.store_checkpoint(&self.cp, start)?;
        } else {
            start.marker = chkpt.marker;
        }
        if finish.marker < start.marker {
            tracing::warn!(journal = %self.journal.path().display(), subscriber = %self.name,
                checkpoint = %start, end = %finish, "checkpoint past the end of the data; reset");
            self.journal.store_checkpoint(&self.cp, finish)?;
            return Ok(Interval {
                first: finish,
                last: finish,
                count: 0,
            });
        }
        let count = finish.marker - start.marker;
        let first = if count > 0 {
            JlogId::new(start.log, start.marker + 1)
        } else {
            start
        };
        Ok(Interval {
            first,
            last: finish,
            count,
        })
    }

    /// What this subscriber has not read yet: the records after its checkpoint in every
    /// segment, and the write time of the first of them. Unlike [`Reader::read_interval`] it
    /// never moves the checkpoint, so a monitor may call it beside the reading subscriber.
    pub fn backlog(&mut self) -> Result<Backlog> {
        let cp = self.current_checkpoint()?;
        let mut out = Backlog::default();
        for log in list_segments(self.journal.path())? {
            if log < cp.log {
                continue;
            }
            let Some(state) = resync_index(self.journal.files(), log)? else {
                continue;
            };
            let read = if log == cp.log {
                cp.marker.min(state.count)
            } else {
                0
            };
            let pending = state.count - read;
            if pending > 0 && out.oldest.is_none() {
                let r = self.read_message(JlogId::new(log, read + 1))?;
                out.oldest = Some(
                    std::time::Duration::from_secs(u64::from(r.tv_sec))
                        + std::time::Duration::from_micros(u64::from(r.tv_usec)),
                );
            }
            out.records += u64::from(pending);
        }
        Ok(out)
    }

    /// Reads one record (`jlog_ctx_read_message`).
    pub fn read_message(&mut self, id: JlogId) -> Result<Record> {
        let mut v = self.read_messages(id, 1)?;
        v.pop()
            .ok_or_else(|| corrupt(segment_path(self.journal.path(), id.log), 0, "no record"))
    }

    /// Reads `count` consecutive records of one segment starting at `first` with one read of the
    /// index and one of the data (`jlog_ctx_bulk_read_messages`). The records must have been
    /// reported by an interval.
    pub fn read_messages(&mut self, first: JlogId, count: u32) -> Result<Vec<Record>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        if first.marker == 0 {
            return Err(corrupt(
                index_path(self.journal.path(), first.log),
                0,
                "record markers start at 1",
            ));
        }
        match self.try_read(first, count) {
            Ok(v) => Ok(v),
            Err(e) => {
                // The index may be stale or damaged: rebuild it once from the data and retry.
                tracing::debug!(error = %e, "read failed; rebuilding index");
                let seg = self.open_segment(first.log)?;
                {
                    let _l = seg.idx.lock()?;
                    seg.idx.set_len(0)?;
                }
                resync_index(self.journal.files(), first.log)?;
                self.try_read(first, count)
            }
        }
    }

    /// Opens segment `log` and its index by path on every call: repair may have replaced the
    /// index file, and a descriptor kept from before would read the unlinked one. Within the
    /// process the descriptors are shared (see `lock.rs`), so this is a `stat` and a map lookup.
    fn open_segment(&self, log: u32) -> Result<OpenSegment> {
        let dir = self.journal.path();
        let mode = self.journal.file_mode();
        Ok(OpenSegment {
            data: SharedFile::open(&segment_path(dir, log), Create::No, mode)?,
            idx: SharedFile::open(&index_path(dir, log), Create::IfMissing, mode)?,
        })
    }

    fn try_read(&self, first: JlogId, count: u32) -> Result<Vec<Record>> {
        let magic = self.journal.metastore()?.hdr_magic;
        let seg = self.open_segment(first.log)?;
        let data_path = seg.data.path().to_path_buf();
        let offsets = read_offsets(&seg.idx, first.marker - 1, count)?;
        for (i, w) in offsets.windows(2).enumerate() {
            if w[1] <= w[0] {
                return Err(corrupt(
                    seg.idx.path(),
                    (u64::from(first.marker - 1) + i as u64 + 1) * 8,
                    "index offsets do not increase (close marker or damage)",
                ));
            }
        }
        let base = offsets[0];
        let last_off = *offsets.last().expect("count > 0");
        let mut hb = [0u8; HEADER_LEN];
        seg.data.read_exact_at(&mut hb, last_off)?;
        let last_hdr = RecordHeader::parse(&hb).expect("buffer is HEADER_LEN bytes");
        let end = last_off + last_hdr.record_len();
        let span = usize::try_from(end - base)
            .map_err(|_| corrupt(&data_path, base, "interval too large to read"))?;
        let mut buf = vec![0u8; span];
        seg.data.read_exact_at(&mut buf, base)?;
        let mut out = Vec::with_capacity(count as usize);
        for (i, &off) in offsets.iter().enumerate() {
            let at = (off - base) as usize;
            let h = RecordHeader::parse(&buf[at..])
                .ok_or_else(|| corrupt(&data_path, off, "truncated record header"))?;
            if h.magic != magic {
                return Err(corrupt(
                    &data_path,
                    off,
                    format!("record magic {:#010x}, expected {magic:#010x}", h.magic),
                ));
            }
            let rec_end = at as u64 + h.record_len();
            let limit = offsets.get(i + 1).map_or(span as u64, |&n| n - base);
            if rec_end > limit {
                return Err(corrupt(&data_path, off, "record overruns the next one"));
            }
            out.push(Record {
                id: JlogId::new(first.log, first.marker + i as u32),
                tv_sec: h.tv_sec,
                tv_usec: h.tv_usec,
                payload: buf[at + HEADER_LEN..rec_end as usize].to_vec(),
            });
        }
        Ok(out)
    }

    /// Records that the subscriber has consumed everything through `id`
    /// (`jlog_ctx_read_checkpoint`); segments no subscriber needs any more are removed. In a
    /// [`Safety::Safe`](super::Safety::Safe) journal the checkpoint is on disk when this returns.
    pub fn checkpoint(&mut self, id: JlogId) -> Result<()> {
        self.journal.store_checkpoint(&self.cp, id)
    }

    /// Reads the next records (possibly none): the next interval, cut to at most
    /// [`MAX_BATCH`] records so that memory stays bounded whatever the segment size. The returned
    /// interval describes exactly the records returned; the caller checkpoints its `last` once it
    /// has handled them.
    pub fn next_batch(&mut self) -> Result<(Interval, Vec<Record>)> {
        let mut interval = self.read_interval()?;
        if interval.count > MAX_BATCH {
            interval.count = MAX_BATCH;
            interval.last = JlogId::new(interval.first.log, interval.first.marker + MAX_BATCH - 1);
        }
        let records = self.read_messages(interval.first, interval.count)?;
        Ok((interval, records))
    }
}
