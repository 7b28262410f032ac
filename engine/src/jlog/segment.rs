//! Segment files: naming (`%08x` and `%08x.idx`), listing and removal.

use std::path::{Path, PathBuf};

use super::error::{Result, io_err};

/// Path of segment `log` in journal `dir`.
pub fn segment_path(dir: &Path, log: u32) -> PathBuf {
    dir.join(format!("{log:08x}"))
}

/// Path of the index of segment `log`.
pub fn index_path(dir: &Path, log: u32) -> PathBuf {
    dir.join(format!("{log:08x}.idx"))
}

/// The segment id of a data file name: exactly 8 hex digits. jlog's `first_log_id` accepts either
/// case; `upper_ok == false` gives its stricter `is_datafile` (lowercase only).
pub fn parse_segment_name(name: &str, upper_ok: bool) -> Option<u32> {
    if name.len() != 8
        || !name.bytes().all(|b| {
            b.is_ascii_digit()
                || (b'a'..=b'f').contains(&b)
                || (upper_ok && (b'A'..=b'F').contains(&b))
        })
    {
        return None;
    }
    u32::from_str_radix(name, 16).ok()
}

/// Ids of every data segment present in `dir`, sorted.
pub fn list_segments(dir: &Path) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| io_err(dir, "readdir", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir, "readdir", e))?;
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| parse_segment_name(n, true))
        {
            out.push(id);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Removes segment `log` and its index; a file that is already gone is not an error.
pub fn unlink_segment(dir: &Path, log: u32) -> Result<()> {
    for p in [segment_path(dir, log), index_path(dir, log)] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&p, "unlink", e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            segment_path(Path::new("/j"), 0x1f),
            PathBuf::from("/j/0000001f")
        );
        assert_eq!(
            index_path(Path::new("/j"), 1),
            PathBuf::from("/j/00000001.idx")
        );
        assert_eq!(parse_segment_name("0000001f", false), Some(0x1f));
        assert_eq!(parse_segment_name("0000001F", false), None);
        assert_eq!(parse_segment_name("0000001F", true), Some(0x1f));
        assert_eq!(parse_segment_name("00000001.idx", true), None);
        assert_eq!(parse_segment_name("metastor", true), None);
    }
}
