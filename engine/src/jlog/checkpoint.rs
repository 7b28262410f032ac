//! Record ids and the per-subscriber checkpoint files `cp.<hex(name)>`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::error::{Result, corrupt};
use super::lock::SharedFile;

/// Address of a record: segment id and 1-based ordinal within the segment (`%08x:%08x`).
/// As a checkpoint, `(L, M)` means "consumed through record M of segment L"; `M == 0` means
/// nothing of segment L yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct JlogId {
    /// Segment id (the segment file is named `{log:08x}`).
    pub log: u32,
    /// 1-based record number within the segment; 0 before the first record.
    pub marker: u32,
}

impl JlogId {
    /// Builds an id.
    pub const fn new(log: u32, marker: u32) -> JlogId {
        JlogId { log, marker }
    }

    /// The on-disk checkpoint bytes (native-endian `u32 log | u32 marker`).
    pub fn emit(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.log.to_ne_bytes());
        b[4..].copy_from_slice(&self.marker.to_ne_bytes());
        b
    }

    /// Decodes checkpoint bytes.
    pub fn parse(b: [u8; 8]) -> JlogId {
        JlogId {
            log: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            marker: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

impl fmt::Display for JlogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}:{:08x}", self.log, self.marker)
    }
}

/// Error of [`JlogId::from_str`].
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a jlog id (expected XXXXXXXX:YYYYYYYY in hex)")]
pub struct BadJlogId(String);

impl FromStr for JlogId {
    type Err = BadJlogId;
    fn from_str(s: &str) -> std::result::Result<JlogId, BadJlogId> {
        let bad = || BadJlogId(s.to_string());
        let (l, m) = s.split_once(':').ok_or_else(bad)?;
        Ok(JlogId {
            log: u32::from_str_radix(l, 16).map_err(|_| bad())?,
            marker: u32::from_str_radix(m, 16).map_err(|_| bad())?,
        })
    }
}

/// File name of a subscriber's checkpoint: `cp.` then each byte of the name as two lowercase hex
/// digits (`reader1` → `cp.72656164657231`).
pub fn checkpoint_file_name(subscriber: &str) -> String {
    let mut s = String::with_capacity(3 + 2 * subscriber.len());
    s.push_str("cp.");
    for b in subscriber.bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Decodes a `cp.<hex>` file name back to the subscriber name; `None` for other names or bad hex.
pub fn subscriber_from_file_name(file: &str) -> Option<String> {
    let hex = file.strip_prefix("cp.")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Path of `subscriber`'s checkpoint in journal `dir`.
pub fn checkpoint_path(dir: &Path, subscriber: &str) -> PathBuf {
    dir.join(checkpoint_file_name(subscriber))
}

/// Reads a checkpoint under its fcntl lock. `Ok(None)` for a zero-length file (just created, not
/// yet set); a file of any length other than 0 or 8 is corrupt.
pub fn read_checkpoint(file: &SharedFile) -> Result<Option<JlogId>> {
    let _lock = file.lock()?;
    read_checkpoint_locked(file)
}

/// [`read_checkpoint`] for a caller already holding the lock.
pub fn read_checkpoint_locked(file: &SharedFile) -> Result<Option<JlogId>> {
    match file.size()? {
        0 => Ok(None),
        8 => {
            let mut b = [0u8; 8];
            file.read_exact_at(&mut b, 0)?;
            Ok(Some(JlogId::parse(b)))
        }
        n => Err(corrupt(
            file.path(),
            0,
            format!("checkpoint is {n} bytes, expected 8"),
        )),
    }
}

/// Writes a checkpoint (caller holds the lock), fdatasync'd when `sync` (safety SAFE).
pub fn write_checkpoint_locked(file: &SharedFile, id: JlogId, sync: bool) -> Result<()> {
    file.write_all_at(&id.emit(), 0)?;
    if file.size()? != 8 {
        file.set_len(8)?;
    }
    if sync {
        file.sync_data()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_encode_as_jlog_does() {
        assert_eq!(checkpoint_file_name("reader1"), "cp.72656164657231");
        assert_eq!(checkpoint_file_name("s"), "cp.73");
        assert_eq!(
            subscriber_from_file_name("cp.72656164657231").as_deref(),
            Some("reader1")
        );
        assert_eq!(subscriber_from_file_name("cp.7"), None);
        assert_eq!(subscriber_from_file_name("cp.zz"), None);
        assert_eq!(subscriber_from_file_name("00000000"), None);
    }

    #[test]
    fn ids_print_and_parse() {
        let id = JlogId::new(2, 0xa43a);
        assert_eq!(id.to_string(), "00000002:0000a43a");
        assert_eq!("00000002:0000a43a".parse::<JlogId>().ok(), Some(id));
        assert!("2".parse::<JlogId>().is_err());
        assert_eq!(JlogId::parse(id.emit()), id);
    }
}
