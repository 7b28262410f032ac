//! Repair of damaged segments: torn tail records left by a crash and garbage inside a segment.
//!
//! A segment is valid when it is a sequence of complete records whose headers carry the journal's
//! magic and a microseconds field below one million (every writer fills it from a clock). Repair
//! keeps every such record, drops everything else (resynchronising on the next magic), compacts
//! the file and truncates it. Unlike jlog's
//! `jlog_repair_datafile` it does not also drop the last good record before a damaged range.

use std::ops::Range;

use super::error::Result;
use super::lock::SharedFile;
use super::record::{HEADER_LEN, RecordHeader};

/// What a segment repair did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentRepair {
    /// Records kept.
    pub records: u64,
    /// Bytes removed (torn tail and garbage).
    pub dropped_bytes: u64,
    /// Length of the segment afterwards.
    pub new_len: u64,
}

/// Walks `data` and returns the byte ranges of valid records, in order.
pub fn valid_records(data: &[u8], magic: u32) -> Vec<Range<usize>> {
    let magic_bytes = magic.to_ne_bytes();
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + HEADER_LEN <= data.len() {
        if let Some(end) = record_at(data, pos, magic) {
            out.push(pos..end);
            pos = end;
            continue;
        }
        // Resynchronise: the next position holding the magic.
        pos = match data[pos + 1..].windows(4).position(|w| w == magic_bytes) {
            Some(i) => pos + 1 + i,
            None => break,
        };
    }
    out
}

/// End offset of the record starting at `pos` if its header has `magic` and it fits in `data`.
fn record_at(data: &[u8], pos: usize, magic: u32) -> Option<usize> {
    let h = RecordHeader::parse(data.get(pos..)?)?;
    if h.magic != magic || h.tv_usec >= 1_000_000 {
        return None;
    }
    let end = pos.checked_add(usize::try_from(h.record_len()).ok()?)?;
    (end <= data.len()).then_some(end)
}

/// Length of the longest prefix of `data` made of complete records with `magic`.
pub fn complete_prefix_len(data: &[u8], magic: u32) -> usize {
    let mut pos = 0;
    while let Some(end) = record_at(data, pos, magic) {
        pos = end;
    }
    pos
}

/// [`complete_prefix_len`] over a file, read in bounded chunks (a segment may be far larger
/// than memory should hold at once).
pub fn complete_prefix_len_of(file: &SharedFile, magic: u32) -> Result<u64> {
    const CHUNK: u64 = 1 << 20;
    let len = file.size()?;
    let mut pos = 0u64;
    let mut buf = Vec::new();
    while pos + HEADER_LEN as u64 <= len {
        buf.resize(HEADER_LEN, 0);
        file.read_exact_at(&mut buf, pos)?;
        let Some(h) = RecordHeader::parse(&buf) else {
            break;
        };
        if h.magic != magic || h.tv_usec >= 1_000_000 || pos + h.record_len() > len {
            break;
        }
        // Walk the headers of the records inside the next chunk without one read per record.
        let window = (len - pos).min(CHUNK);
        buf.resize(usize::try_from(window).unwrap_or(usize::MAX), 0);
        file.read_exact_at(&mut buf, pos)?;
        let inner = complete_prefix_len(&buf, magic) as u64;
        pos += if inner > 0 { inner } else { h.record_len() };
    }
    Ok(pos)
}

/// Repairs a segment in place; the caller holds the segment's lock so no writer is appending.
pub fn repair_segment_locked(file: &SharedFile, magic: u32) -> Result<SegmentRepair> {
    let len = file.size()?;
    let mut data = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut data, 0)?;
    let ranges = valid_records(&data, magic);
    let mut write_at = 0usize;
    // Compact in place: valid ranges only move towards the start, so copying in order is safe.
    let mut first_moved = None;
    for r in &ranges {
        if r.start != write_at && first_moved.is_none() {
            first_moved = Some(write_at);
        }
        data.copy_within(r.clone(), write_at);
        write_at += r.len();
    }
    if let Some(from) = first_moved {
        file.write_all_at(&data[from..write_at], from as u64)?;
    }
    let new_len = write_at as u64;
    if new_len != len {
        file.set_len(new_len)?;
        file.sync_data()?;
    }
    Ok(SegmentRepair {
        records: ranges.len() as u64,
        dropped_bytes: len - new_len,
        new_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jlog::record::DEFAULT_HDR_MAGIC;

    fn rec(payload: &[u8]) -> Vec<u8> {
        let mut v = RecordHeader {
            magic: DEFAULT_HDR_MAGIC,
            tv_sec: 1,
            tv_usec: 2,
            mlen: payload.len() as u32,
        }
        .emit()
        .to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn keeps_records_around_garbage_and_drops_torn_tail() {
        let mut seg = Vec::new();
        seg.extend(rec(b"good-1"));
        seg.extend(rec(b"good-2"));
        seg.extend(b"GARBAGE GARBAGE");
        let g3 = seg.len();
        seg.extend(rec(b"good-3"));
        let torn = rec(b"torn tail record");
        seg.extend(&torn[..torn.len() - 3]);
        let ranges = valid_records(&seg, DEFAULT_HDR_MAGIC);
        let payloads: Vec<&[u8]> = ranges.iter().map(|r| &seg[r.start + 16..r.end]).collect();
        assert_eq!(payloads, vec![&b"good-1"[..], b"good-2", b"good-3"]);
        assert_eq!(ranges[2].start, g3);
        assert_eq!(complete_prefix_len(&seg, DEFAULT_HDR_MAGIC), 2 * 22);
    }

    #[test]
    fn streamed_prefix_matches_in_memory_prefix_across_chunks() {
        use crate::jlog::lock::{Create, SharedFile};
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut seg = Vec::new();
        // Small records crossing the 1 MiB chunk boundary, then one record larger than a chunk.
        for i in 0..1200u32 {
            seg.extend(rec(&vec![(i % 251) as u8; 1000]));
        }
        seg.extend(rec(&vec![7u8; 3 << 20]));
        let whole = seg.len();
        let torn = rec(b"torn at the end");
        seg.extend(&torn[..20]);
        let path = tmp.path().join("00000000");
        std::fs::write(&path, &seg).expect("write");
        let f = SharedFile::open(&path, Create::No, 0o640).expect("open");
        assert_eq!(complete_prefix_len(&seg, DEFAULT_HDR_MAGIC), whole);
        assert_eq!(
            complete_prefix_len_of(&f, DEFAULT_HDR_MAGIC).expect("scan"),
            whole as u64
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..300 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let ranges = valid_records(&data, DEFAULT_HDR_MAGIC);
            assert!(ranges.iter().all(|r| r.end <= data.len()));
            let _ = complete_prefix_len(&data, 0);
        }
    }
}
