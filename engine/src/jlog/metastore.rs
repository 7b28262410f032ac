//! The `metastore` file: which segment is being written, when to roll, the safety mode and the
//! record header magic.
//!
//! Layout (native-endian): `u32 storage_log | u32 unit_limit | u32 safety | u32 hdr_magic`.
//! Pre-2.0 jlogs have a 12-byte metastore without `hdr_magic`; their records carry magic 0.

use super::error::{JlogError, Result, corrupt};
use super::lock::SharedFile;
use super::record::{DEFAULT_HDR_MAGIC, LEGACY_HDR_MAGIC, is_compressed_magic};

/// File name of the metastore inside the journal directory.
pub const METASTORE: &str = "metastore";
/// Length of a jlog 2.x metastore.
pub const META_LEN: usize = 16;
/// Length of a pre-2.0 metastore.
pub const LEGACY_META_LEN: usize = 12;
/// jlog's default segment size limit (4 MiB).
pub const DEFAULT_UNIT_LIMIT: u32 = 4 * 1024 * 1024;

/// The safety mode stored in the metastore and shared by every process that opens the journal.
/// Cohort gives each mode exactly jlog 2.6's meaning, so a journal behaves the same whichever
/// implementation writes it. In every mode a record survives the death of the writing process as
/// soon as `append` returns, and survives a power loss once its segment has rolled or the writer
/// has closed (both fdatasync the segment). For power-loss durability of each record as soon as
/// the call returns, use `WriterOptions::sync_appends`, in any mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Safety {
    /// `JLOG_UNSAFE` (0): nothing is fsync'd except segments on roll and close.
    Unsafe,
    /// `JLOG_ALMOST_SAFE` (1, jlog's default, "metasafe"): the same as `Unsafe` in jlog 2.6.
    AlmostSafe,
    /// `JLOG_SAFE` (2): checkpoints and the metastore are also fdatasync'd when written, so after a
    /// power loss a subscriber neither re-reads nor skips records it had checkpointed, and the
    /// journal's segment bookkeeping is intact.
    Safe,
}

impl Safety {
    /// The metastore encoding.
    pub fn as_u32(self) -> u32 {
        match self {
            Safety::Unsafe => 0,
            Safety::AlmostSafe => 1,
            Safety::Safe => 2,
        }
    }

    /// Decodes the metastore value; `None` outside 0..=2.
    pub fn from_u32(v: u32) -> Option<Safety> {
        match v {
            0 => Some(Safety::Unsafe),
            1 => Some(Safety::AlmostSafe),
            2 => Some(Safety::Safe),
            _ => None,
        }
    }

    /// The name jlogctl prints (`unsafe`, `metasafe`, `safe`).
    pub fn name(self) -> &'static str {
        match self {
            Safety::Unsafe => "unsafe",
            Safety::AlmostSafe => "metasafe",
            Safety::Safe => "safe",
        }
    }

    /// Parses `unsafe`, `metasafe` / `almost_safe`, `safe`.
    pub fn parse(s: &str) -> Option<Safety> {
        match s {
            "unsafe" => Some(Safety::Unsafe),
            "metasafe" | "almost_safe" | "almostsafe" => Some(Safety::AlmostSafe),
            "safe" => Some(Safety::Safe),
            _ => None,
        }
    }
}

/// The decoded metastore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metastore {
    /// Id of the newest segment, the one writers append to.
    pub storage_log: u32,
    /// Segment roll threshold in bytes.
    pub unit_limit: u32,
    /// The journal's safety mode.
    pub safety: Safety,
    /// Magic every record header starts with (0 for legacy journals).
    pub hdr_magic: u32,
    /// Whether the file was the 12-byte pre-2.0 layout.
    pub legacy_len: bool,
}

impl Default for Metastore {
    fn default() -> Self {
        Metastore {
            storage_log: 0,
            unit_limit: DEFAULT_UNIT_LIMIT,
            safety: Safety::AlmostSafe,
            hdr_magic: DEFAULT_HDR_MAGIC,
            legacy_len: false,
        }
    }
}

impl Metastore {
    /// Decodes and validates the metastore bytes; `path` is only used in errors.
    pub fn parse(b: &[u8], path: &std::path::Path) -> Result<Metastore> {
        let legacy_len = match b.len() {
            META_LEN => false,
            LEGACY_META_LEN => true,
            n => {
                return Err(corrupt(
                    path,
                    0,
                    format!("metastore is {n} bytes, expected 16 (or 12 for pre-2.0)"),
                ));
            }
        };
        let word = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let hdr_magic = if legacy_len {
            LEGACY_HDR_MAGIC
        } else {
            word(12)
        };
        if is_compressed_magic(hdr_magic) {
            return Err(JlogError::Compressed {
                path: path.to_path_buf(),
                magic: hdr_magic,
            });
        }
        if hdr_magic != DEFAULT_HDR_MAGIC && hdr_magic != LEGACY_HDR_MAGIC {
            return Err(corrupt(
                path,
                12,
                format!("unknown header magic {hdr_magic:#010x}"),
            ));
        }
        let unit_limit = word(4);
        if unit_limit == 0 {
            return Err(corrupt(path, 4, "unit_limit is 0"));
        }
        let safety = Safety::from_u32(word(8))
            .ok_or_else(|| corrupt(path, 8, format!("safety {} is not 0, 1 or 2", word(8))))?;
        Ok(Metastore {
            storage_log: word(0),
            unit_limit,
            safety,
            hdr_magic,
            legacy_len,
        })
    }

    /// The 16 bytes jlog 2.x writes.
    pub fn emit(&self) -> [u8; META_LEN] {
        let mut out = [0u8; META_LEN];
        out[0..4].copy_from_slice(&self.storage_log.to_ne_bytes());
        out[4..8].copy_from_slice(&self.unit_limit.to_ne_bytes());
        out[8..12].copy_from_slice(&self.safety.as_u32().to_ne_bytes());
        out[12..16].copy_from_slice(&self.hdr_magic.to_ne_bytes());
        out
    }

    /// Reads the metastore through `file` (no lock: jlog readers read it unlocked too, through a
    /// shared mapping; the fields are aligned words updated in place).
    pub fn load(file: &SharedFile) -> Result<Metastore> {
        let len = file.size()?;
        if len != META_LEN as u64 && len != LEGACY_META_LEN as u64 {
            return Err(corrupt(
                file.path(),
                0,
                format!("metastore is {len} bytes, expected 16 (or 12 for pre-2.0)"),
            ));
        }
        let mut buf = [0u8; META_LEN];
        let n = len as usize;
        file.read_exact_at(&mut buf[..n], 0)?;
        Metastore::parse(&buf[..n], file.path())
    }

    /// Writes all 16 bytes (extending a legacy 12-byte file, as jlog 2.0 does), fdatasync'd when
    /// the journal is [`Safety::Safe`]. Callers hold the metastore lock.
    pub fn save(&self, file: &SharedFile) -> Result<()> {
        file.write_all_at(&self.emit(), 0)?;
        if self.safety == Safety::Safe {
            file.sync_data()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn fresh_metastore_matches_reference_hexdump() {
        // jlog-format.md 2.1: "00000000 00004000 01000000 18733a66".
        let bytes = Metastore::default().emit();
        assert_eq!(
            bytes,
            [
                0, 0, 0, 0, 0, 0, 0x40, 0, 1, 0, 0, 0, 0x18, 0x73, 0x3a, 0x66
            ]
        );
        assert_eq!(
            Metastore::parse(&bytes, Path::new("m")).ok(),
            Some(Metastore::default())
        );
    }

    #[test]
    fn rejects_bad_fields_with_offsets() {
        let p = Path::new("m");
        let mut b = Metastore::default().emit();
        b[8] = 7;
        assert!(matches!(
            Metastore::parse(&b, p),
            Err(JlogError::Corrupt { offset: 8, .. })
        ));
        let mut b = Metastore::default().emit();
        b[4..8].fill(0);
        assert!(matches!(
            Metastore::parse(&b, p),
            Err(JlogError::Corrupt { offset: 4, .. })
        ));
        let mut b = Metastore::default().emit();
        b[12..16].copy_from_slice(&0x1510_6A01u32.to_ne_bytes());
        assert!(matches!(
            Metastore::parse(&b, p),
            Err(JlogError::Compressed { .. })
        ));
        assert!(Metastore::parse(&b[..5], p).is_err());
    }

    #[test]
    fn legacy_twelve_bytes_means_magic_zero() {
        let b = Metastore::default().emit();
        let m = Metastore::parse(&b[..12], Path::new("m")).ok();
        assert_eq!(m.map(|m| (m.hdr_magic, m.legacy_len)), Some((0, true)));
    }
}
