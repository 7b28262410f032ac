//! The manager's durable position for one (node, log) stream: the id of the last record it has
//! written durably, and, while a batch is being written, which output files that batch touches
//! and how long they were before it.
//!
//! The write of a batch goes: [`Position::begin`] (made durable) → records appended to the output
//! files and fsynced → [`Position::commit`] (made durable) → the ack to the node. Whatever instant
//! the manager dies at, [`Position::recover`] then says what to cut: a pending batch is truncated
//! away (its records are still unacknowledged on the node, which sends them again), and records at
//! or below the committed id are skipped when a node replays them (the manager died after
//! committing but before the node saw the ack). Nothing is written twice and nothing is lost.
//!
//! On disk: two slots of [`SLOT_LEN`] bytes written alternately, each a full encoding with a
//! BLAKE3 checksum, so a torn write damages only the slot being written and the other one still
//! holds the previous state. A slot (integers big-endian):
//!
//! ```text
//! "CHLMPOS1" | seq u64 | committed log u32 | committed marker u32 | records u64 |
//! 0, or 1 | last log u32 | last marker u32 | records u64 | files u8 |
//!           files x (path_len u32 | path bytes | length before the batch u64)
//! | zeros up to SLOT_LEN - 32 | BLAKE3 of the encoding before the zeros (32 bytes)
//! ```

use std::path::PathBuf;

use crate::jlog::JlogId;

/// Bytes of one slot; the file is two of them.
pub const SLOT_LEN: usize = 16 * 1024;
const MAGIC: &[u8; 8] = b"CHLMPOS1";
const SUM_LEN: usize = 32;

/// Most output files one pending batch may touch: three paths of `PATH_MAX` (4096) bytes fit a
/// slot. The writer ends a batch early rather than exceed it.
pub const MAX_PENDING_FILES: usize = 3;

/// A batch being written: its last record's id and each output file's length before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub last: JlogId,
    pub records: u64,
    pub files: Vec<(PathBuf, u64)>,
}

/// The durable state of one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Incremented by every write; picks the newer of the two slots.
    pub seq: u64,
    /// The last record written durably (`00000000:00000000` before any).
    pub committed: JlogId,
    /// Records written durably so far (for statistics and benchmarks).
    pub records: u64,
    pub pending: Option<Pending>,
}

/// Why a position file cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    #[error("position file of {len} bytes (expected 0, {SLOT_LEN} or {})", 2 * SLOT_LEN)]
    Length { len: usize },
    #[error("neither slot of the position file is intact (slot 0: {0}; slot 1: {1})")]
    Corrupt(String, String),
    #[error("pending batch touches {0} files, more than a slot holds")]
    TooManyFiles(usize),
}

impl Position {
    /// Whether a replayed record is already written durably and must be skipped.
    pub fn skips(&self, id: JlogId) -> bool {
        id <= self.committed
    }

    /// The state to make durable before writing a batch ending at `last`.
    pub fn begin(&self, last: JlogId, records: u64, files: Vec<(PathBuf, u64)>) -> Position {
        Position {
            seq: self.seq + 1,
            committed: self.committed,
            records: self.records,
            pending: Some(Pending {
                last,
                records,
                files,
            }),
        }
    }

    /// The state to make durable once the pending batch's data is durable.
    pub fn commit(&self) -> Position {
        let (committed, records) = match &self.pending {
            Some(p) => (p.last, self.records + p.records),
            None => (self.committed, self.records),
        };
        Position {
            seq: self.seq + 1,
            committed,
            records,
            pending: None,
        }
    }

    /// After a restart: the state to continue from and the truncations that undo a batch that
    /// was pending when the manager stopped (apply them, then persist the returned state).
    pub fn recover(&self) -> (Position, Vec<(PathBuf, u64)>) {
        let cut = self
            .pending
            .as_ref()
            .map(|p| p.files.clone())
            .unwrap_or_default();
        (
            Position {
                seq: self.seq + 1,
                committed: self.committed,
                records: self.records,
                pending: None,
            },
            cut,
        )
    }

    /// The byte offset in the file of the slot this state is written to.
    pub fn slot_offset(&self) -> u64 {
        (self.seq % 2) * SLOT_LEN as u64
    }

    /// One slot's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, PositionError> {
        let mut o = Vec::with_capacity(SLOT_LEN);
        o.extend_from_slice(MAGIC);
        o.extend_from_slice(&self.seq.to_be_bytes());
        o.extend_from_slice(&self.committed.log.to_be_bytes());
        o.extend_from_slice(&self.committed.marker.to_be_bytes());
        o.extend_from_slice(&self.records.to_be_bytes());
        match &self.pending {
            None => o.push(0),
            Some(p) => {
                if p.files.len() > MAX_PENDING_FILES {
                    return Err(PositionError::TooManyFiles(p.files.len()));
                }
                o.push(1);
                o.extend_from_slice(&p.last.log.to_be_bytes());
                o.extend_from_slice(&p.last.marker.to_be_bytes());
                o.extend_from_slice(&p.records.to_be_bytes());
                o.push(p.files.len() as u8);
                for (path, len) in &p.files {
                    let b = path.as_os_str().as_encoded_bytes();
                    o.extend_from_slice(&(b.len() as u32).to_be_bytes());
                    o.extend_from_slice(b);
                    o.extend_from_slice(&len.to_be_bytes());
                }
            }
        }
        if o.len() + SUM_LEN > SLOT_LEN {
            return Err(PositionError::TooManyFiles(
                self.pending.as_ref().map_or(0, |p| p.files.len()),
            ));
        }
        let sum = blake3::hash(&o);
        o.resize(SLOT_LEN - SUM_LEN, 0);
        o.extend_from_slice(sum.as_bytes());
        Ok(o)
    }

    /// Decodes one slot; the error says what is wrong with it.
    pub fn decode_slot(slot: &[u8]) -> Result<Position, String> {
        if slot.len() != SLOT_LEN {
            return Err(format!("{} bytes", slot.len()));
        }
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let end = at + n;
            if end > SLOT_LEN - SUM_LEN {
                return Err(format!("truncated at byte {at}"));
            }
            let s = &slot[at..end];
            at = end;
            Ok(s)
        };
        let u32_of = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
        let u64_of = |s: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_be_bytes(a)
        };
        if take(8)? != MAGIC {
            return Err("bad magic at byte 0".into());
        }
        let seq = u64_of(take(8)?);
        let committed = JlogId::new(u32_of(take(4)?), u32_of(take(4)?));
        let records = u64_of(take(8)?);
        let pending = match take(1)?[0] {
            0 => None,
            1 => {
                let last = JlogId::new(u32_of(take(4)?), u32_of(take(4)?));
                let precords = u64_of(take(8)?);
                let n = take(1)?[0] as usize;
                let mut files = Vec::with_capacity(n.min(MAX_PENDING_FILES));
                for _ in 0..n {
                    let len = u32_of(take(4)?) as usize;
                    let p = take(len)?.to_vec();
                    let flen = u64_of(take(8)?);
                    #[cfg(unix)]
                    let path = {
                        use std::os::unix::ffi::OsStringExt;
                        PathBuf::from(std::ffi::OsString::from_vec(p))
                    };
                    files.push((path, flen));
                }
                Some(Pending {
                    last,
                    records: precords,
                    files,
                })
            }
            f => return Err(format!("pending flag {f}")),
        };
        let body_end = at;
        if slot[body_end..SLOT_LEN - SUM_LEN].iter().any(|&b| b != 0) {
            return Err(format!("garbage after byte {body_end}"));
        }
        let sum = blake3::hash(&slot[..body_end]);
        if sum.as_bytes()[..] != slot[SLOT_LEN - SUM_LEN..] {
            return Err("checksum mismatch".into());
        }
        Ok(Position {
            seq,
            committed,
            records,
            pending,
        })
    }

    /// The state a whole position file holds: the intact slot with the higher sequence number;
    /// an empty file is a fresh stream.
    pub fn decode_file(bytes: &[u8]) -> Result<Position, PositionError> {
        if bytes.is_empty() {
            return Ok(Position::default());
        }
        // One slot long: only slot 0 was ever written (a crash before the second write).
        if bytes.len() != 2 * SLOT_LEN && bytes.len() != SLOT_LEN {
            return Err(PositionError::Length { len: bytes.len() });
        }
        let a = Position::decode_slot(&bytes[..SLOT_LEN]);
        let b = match bytes.get(SLOT_LEN..) {
            Some(rest) if !rest.is_empty() => Position::decode_slot(rest),
            _ => Err("never written".to_owned()),
        };
        match (a, b) {
            (Ok(a), Ok(b)) => Ok(if a.seq >= b.seq { a } else { b }),
            (Ok(a), Err(_)) => Ok(a),
            (Err(_), Ok(b)) => Ok(b),
            // Never written (a fresh file is zero-filled by the first write's extension).
            (Err(_), Err(_)) if bytes.iter().all(|&x| x == 0) => Ok(Position::default()),
            (Err(x), Err(y)) => Err(PositionError::Corrupt(x, y)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write(file: &mut Vec<u8>, p: &Position) {
        if file.is_empty() {
            file.resize(2 * SLOT_LEN, 0);
        }
        let off = p.slot_offset() as usize;
        file[off..off + SLOT_LEN].copy_from_slice(&p.encode().expect("fits"));
    }

    /// Golden bytes of a slot, written by hand from the layout in the module documentation.
    #[test]
    fn golden_slot() {
        let p = Position {
            seq: 2,
            committed: JlogId::new(1, 3),
            records: 9,
            pending: Some(Pending {
                last: JlogId::new(1, 5),
                records: 2,
                files: vec![(PathBuf::from("/o"), 0x0102)],
            }),
        };
        let body: Vec<u8> = [
            &b"CHLMPOS1"[..],
            &[0, 0, 0, 0, 0, 0, 0, 2],    // seq
            &[0, 0, 0, 1, 0, 0, 0, 3],    // committed 1:3
            &[0, 0, 0, 0, 0, 0, 0, 9],    // records
            &[1, 0, 0, 0, 1, 0, 0, 0, 5], // pending, last 1:5
            &[0, 0, 0, 0, 0, 0, 0, 2, 1], // its records, one file
            &[0, 0, 0, 2, b'/', b'o'],    // path "/o"
            &[0, 0, 0, 0, 0, 0, 1, 2],    // its length before the batch
        ]
        .concat();
        let slot = p.encode().expect("fits");
        assert_eq!(slot.len(), SLOT_LEN);
        assert_eq!(&slot[..body.len()], &body[..]);
        assert!(slot[body.len()..SLOT_LEN - SUM_LEN].iter().all(|&b| b == 0));
        assert_eq!(&slot[SLOT_LEN - SUM_LEN..], blake3::hash(&body).as_bytes());
        assert_eq!(Position::decode_slot(&slot).expect("decodes"), p);
    }

    #[test]
    fn begin_commit_recover_cycle() {
        let mut file = Vec::new();
        let p0 = Position::decode_file(&file).expect("fresh");
        assert!(!p0.skips(JlogId::new(0, 1)));
        let p1 = p0.begin(JlogId::new(0, 10), 10, vec![("/o/a".into(), 0)]);
        write(&mut file, &p1);
        // Crash here: the batch is undone, nothing counts as written.
        let (r, cut) = Position::decode_file(&file).expect("valid").recover();
        assert_eq!(cut, vec![(PathBuf::from("/o/a"), 0)]);
        assert_eq!(r.committed, JlogId::new(0, 0));
        assert!(!r.skips(JlogId::new(0, 1)));
        let p2 = p1.commit();
        write(&mut file, &p2);
        // Crash after the commit: replayed records through 0:10 are skipped, 0:11 is not.
        let (r, cut) = Position::decode_file(&file).expect("valid").recover();
        assert!(cut.is_empty());
        assert_eq!(r.records, 10);
        assert!(r.skips(JlogId::new(0, 10)));
        assert!(!r.skips(JlogId::new(0, 11)));
    }

    #[test]
    fn a_torn_slot_leaves_the_previous_state() {
        let mut file = Vec::new();
        let p1 = Position::default()
            .begin(JlogId::new(0, 5), 5, vec![])
            .commit();
        write(&mut file, &p1);
        let p2 = p1.begin(JlogId::new(0, 9), 4, vec![("/o/b".into(), 77)]);
        write(&mut file, &p2);
        // Tear the slot p2 went to.
        let off = p2.slot_offset() as usize;
        file[off + 20] ^= 0xff;
        assert_eq!(Position::decode_file(&file).expect("one intact"), p1);
        // Both torn: refused, not silently reset (that would duplicate everything).
        let other = p1.slot_offset() as usize;
        file[other + 20] ^= 0xff;
        assert!(matches!(
            Position::decode_file(&file),
            Err(PositionError::Corrupt(..))
        ));
        assert!(matches!(
            Position::decode_file(&file[..100]),
            Err(PositionError::Length { len: 100 })
        ));
        // Only the first slot ever written.
        let first = Position::default().commit();
        let mut one = vec![0u8; SLOT_LEN];
        one.copy_from_slice(&first.encode().expect("fits"));
        assert_eq!(Position::decode_file(&one).expect("one slot"), first);
    }

    #[test]
    fn too_many_files_is_refused() {
        let files = (0..=MAX_PENDING_FILES)
            .map(|i| (PathBuf::from(format!("/f{i}")), 0))
            .collect();
        assert!(
            Position::default()
                .begin(JlogId::new(0, 1), 1, files)
                .encode()
                .is_err()
        );
    }

    proptest! {
        #[test]
        fn slots_round_trip(seq in any::<u64>(), l in any::<u32>(), m in any::<u32>(), n in any::<u64>(),
                            pend in proptest::option::of((any::<u32>(), any::<u32>(), proptest::collection::vec(("[a-z/]{1,40}", any::<u64>()), 0..=MAX_PENDING_FILES)))) {
            let p = Position {
                seq,
                committed: JlogId::new(l, m),
                records: n,
                pending: pend.map(|(a, b, fs)| Pending { last: JlogId::new(a, b), records: 3, files: fs.into_iter().map(|(p, n)| (PathBuf::from(p), n)).collect() }),
            };
            let slot = p.encode().expect("fits");
            prop_assert_eq!(Position::decode_slot(&slot).expect("valid"), p);
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), at in 0usize..SLOT_LEN) {
            let mut slot = vec![0u8; SLOT_LEN];
            let n = bytes.len().min(SLOT_LEN - at);
            slot[at..at + n].copy_from_slice(&bytes[..n]);
            let _ = Position::decode_slot(&slot);
            let _ = Position::decode_file(&bytes);
        }
    }
}
