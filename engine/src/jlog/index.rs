//! Segment indexes (`XXXXXXXX.idx`): arrays of native-endian u64 byte offsets, one per complete
//! record, plus a trailing 0 "close marker" once the writer has moved past the segment.
//!
//! Readers build and extend the index under an fcntl lock on the `.idx` file, exactly as jlog's
//! `___jlog_resync_index` does, so a C reader and a Cohort reader can share one. A partially written
//! record at the end of the segment being written is never indexed.

use super::error::{JlogError, Result, corrupt};
use super::lock::{Create, SharedFile, is_not_found};
use super::metastore::Metastore;
use super::record::{HEADER_LEN, RecordHeader};
use super::repair::repair_segment_locked;
use super::segment::{index_path, segment_path, unlink_segment};

/// What indexing needs of a journal: its directory, its metastore file and the mode of the files
/// it creates. (The journal hands these over, so this module does not depend on it.)
#[derive(Clone, Copy)]
pub struct Files<'a> {
    pub dir: &'a std::path::Path,
    pub meta: &'a SharedFile,
    pub mode: u32,
}

/// The state of a segment's index after a resync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexState {
    /// Number of complete records indexed.
    pub count: u32,
    /// Whether the segment is closed (the writer moved on and every byte is indexed).
    pub closed: bool,
}

enum Attempt {
    /// The index was inconsistent with the data: truncate it and build it again.
    Rebuild,
    /// The data file has bad bytes at the given place.
    Damaged(JlogError),
    /// The data file grew while a closed segment was being checked: try again.
    Raced,
}

const SCAN_CHUNK: usize = 1 << 20;

/// Brings the index of segment `log` up to date with its data file and reports how many records
/// it holds and whether the segment is closed. `Ok(None)` when the segment does not exist (or was
/// an empty segment the writer had left, which is removed as jlog 2.6 does).
///
/// A closed segment (`log < storage_log`) whose data is damaged (bad magic, trailing garbage, torn
/// tail) is repaired in place and reindexed, as jlog does; damage in the segment still being written
/// is reported as [`JlogError::Corrupt`].
pub fn resync_index(j: Files<'_>, log: u32) -> Result<Option<IndexState>> {
    let mut last_err = None;
    for _ in 0..4 {
        let (data, idx) = match open_pair(j, log)? {
            Some(p) => p,
            None => return Ok(None),
        };
        match resync_once(j, log, &data, &idx)? {
            Ok(state) => return Ok(state),
            Err(Attempt::Raced) => {}
            Err(Attempt::Rebuild) => {
                let _l = idx.lock()?;
                idx.set_len(0)?;
            }
            Err(Attempt::Damaged(e)) => {
                let meta = Metastore::load(j.meta)?;
                if log >= meta.storage_log {
                    return Err(e);
                }
                tracing::warn!(journal = %j.dir.display(), segment = log, error = %e,
                    "repairing damaged closed segment");
                {
                    let _dl = data.lock()?;
                    repair_segment_locked(&data, meta.hdr_magic)?;
                }
                let _l = idx.lock()?;
                idx.set_len(0)?;
                last_err = Some(e);
            }
        }
    }
    Err(last_err.unwrap_or_else(|| {
        corrupt(
            index_path(j.dir, log),
            0,
            "index could not be brought in line with its segment",
        )
    }))
}

fn open_pair(
    j: Files<'_>,
    log: u32,
) -> Result<Option<(std::sync::Arc<SharedFile>, std::sync::Arc<SharedFile>)>> {
    let data = match SharedFile::open(&segment_path(j.dir, log), Create::No, j.mode) {
        Ok(f) => f,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let idx = SharedFile::open(&index_path(j.dir, log), Create::IfMissing, j.mode)?;
    Ok(Some((data, idx)))
}

fn read_u64(f: &SharedFile, off: u64) -> Result<u64> {
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, off)?;
    Ok(u64::from_ne_bytes(b))
}

fn resync_once(
    j: Files<'_>,
    log: u32,
    data: &SharedFile,
    idx: &SharedFile,
) -> Result<std::result::Result<Option<IndexState>, Attempt>> {
    let _lock = idx.lock()?;
    let meta = Metastore::load(j.meta)?;
    let magic = meta.hdr_magic;
    let data_len = data.size()?;
    if data_len == 0 && log < meta.storage_log {
        unlink_segment(j.dir, log)?;
        return Ok(Ok(None));
    }
    let idx_len = idx.size()?;
    if idx_len % 8 != 0 {
        return Ok(Err(Attempt::Rebuild));
    }
    let entries = idx_len / 8;
    let mut off = 0u64;
    if entries >= 1 {
        let last = read_u64(idx, idx_len - 8)?;
        if entries > 1 && last == 0 {
            return Ok(Ok(Some(IndexState {
                count: u32::try_from(entries - 1).unwrap_or(u32::MAX),
                closed: true,
            })));
        }
        // A corrupt index may hold any offset: rebuild rather than overflow.
        if last
            .checked_add(HEADER_LEN as u64)
            .is_none_or(|e| e > data_len)
        {
            return Ok(Err(Attempt::Rebuild));
        }
        let mut hb = [0u8; HEADER_LEN];
        data.read_exact_at(&mut hb, last)?;
        let h = RecordHeader::parse(&hb).expect("buffer is HEADER_LEN bytes");
        if h.magic != magic
            || last
                .checked_add(h.record_len())
                .is_none_or(|e| e > data_len)
        {
            return Ok(Err(Attempt::Rebuild));
        }
        off = last + h.record_len();
    }

    let mut new_offsets: Vec<u64> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_base = off;
    while off + HEADER_LEN as u64 <= data_len {
        let in_buf = off >= buf_base && off + HEADER_LEN as u64 <= buf_base + buf.len() as u64;
        if !in_buf {
            let want =
                usize::try_from((data_len - off).min(SCAN_CHUNK as u64)).unwrap_or(SCAN_CHUNK);
            buf.resize(want, 0);
            data.read_exact_at(&mut buf, off)?;
            buf_base = off;
        }
        let at = usize::try_from(off - buf_base).expect("offset lies inside the buffer");
        let h = RecordHeader::parse(&buf[at..]).expect("header lies inside the buffer");
        if h.magic != magic {
            return Ok(Err(Attempt::Damaged(corrupt(
                segment_path(j.dir, log),
                off,
                format!("record magic {:#010x}, expected {magic:#010x}", h.magic),
            ))));
        }
        let next = off + h.record_len();
        if next > data_len {
            break;
        }
        new_offsets.push(off);
        off = next;
    }

    let mut closed = false;
    if log < meta.storage_log {
        if data.size()? != data_len {
            return Ok(Err(Attempt::Raced));
        }
        if off != data_len {
            return Ok(Err(Attempt::Damaged(corrupt(
                segment_path(j.dir, log),
                off,
                "closed segment ends in a partial record or garbage",
            ))));
        }
        closed = true;
    }
    let total = entries + new_offsets.len() as u64;
    if closed && total > 0 {
        // The close marker: never for an empty segment, where a lone 0 would read as "record at 0".
        new_offsets.push(0);
    }
    if !new_offsets.is_empty() {
        let bytes: Vec<u8> = new_offsets.iter().flat_map(|o| o.to_ne_bytes()).collect();
        idx.write_all_at(&bytes, idx_len)?;
    }
    Ok(Ok(Some(IndexState {
        count: u32::try_from(total).unwrap_or(u32::MAX),
        closed,
    })))
}

/// Reads the byte offsets of records `first..first+count` (0-based) from the index of `log`.
pub fn read_offsets(idx: &SharedFile, first: u32, count: u32) -> Result<Vec<u64>> {
    let mut b = vec![0u8; count as usize * 8];
    idx.read_exact_at(&mut b, u64::from(first) * 8)?;
    Ok(b.chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().expect("chunks_exact yields 8 bytes")))
        .collect())
}
