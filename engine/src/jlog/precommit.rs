//! The `pre_commit` file: a memory-mapped buffer of whole records not yet appended to the segment.
//!
//! Layout: `u32 used` (native-endian) then the buffer. Because the file is mapped shared, records
//! copied into it survive the death of the writing process; the next writer (Cohort or jlog ≥ 2.2)
//! appends them to the segment before its own records. jlog allows this only with a single writer
//! process per journal, and so does Cohort.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::MmapMut;

use super::error::{Result, corrupt, io_err};
use super::lock::{Create, SharedFile};

/// File name of the pre-commit buffer (with an underscore, as jlog spells it).
pub const PRE_COMMIT: &str = "pre_commit";

/// An open, mapped pre-commit buffer.
pub struct PreCommit {
    file: Arc<SharedFile>,
    map: MmapMut,
}

impl std::fmt::Debug for PreCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreCommit")
            .field("path", &self.file.path())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl PreCommit {
    /// Opens (creating with `4 + default_size` zero bytes when missing or empty) and maps the
    /// buffer of journal `dir`.
    pub fn open(dir: &Path, default_size: u32, mode: u32) -> Result<PreCommit> {
        let path = dir.join(PRE_COMMIT);
        let file = SharedFile::open(&path, Create::IfMissing, mode)?;
        let _l = file.lock()?;
        let len = file.size()?;
        if len == 0 {
            file.set_len(4 + u64::from(default_size))?;
        } else if len < 4 {
            return Err(corrupt(
                &path,
                0,
                format!("pre_commit is {len} bytes, less than 4"),
            ));
        }
        // SAFETY: the mapping is of a regular file this process keeps open; other processes may
        // change it (that is the file's purpose), and every access goes through `used` (read with
        // an atomic load) and bounds-checked slices, so concurrent modification cannot cause
        // out-of-bounds access.
        let map = unsafe { MmapMut::map_mut(file.file()) }.map_err(|e| io_err(&path, "mmap", e))?;
        let pc = PreCommit {
            file: file.clone(),
            map,
        };
        if pc.used_raw() as usize > pc.capacity() {
            return Err(corrupt(
                &path,
                0,
                format!(
                    "pre_commit says {} bytes used, buffer holds {}",
                    pc.used_raw(),
                    pc.capacity()
                ),
            ));
        }
        Ok(pc)
    }

    fn used_word(&self) -> &AtomicU32 {
        // SAFETY: the map is at least 4 bytes long and page-aligned, so its first word is a valid,
        // aligned u32 that lives as long as `self`.
        unsafe { &*(self.map.as_ptr() as *const AtomicU32) }
    }

    fn used_raw(&self) -> u32 {
        self.used_word().load(Ordering::Acquire)
    }

    /// Buffer capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.map.len() - 4
    }

    /// The buffered records (clamped to the buffer, whatever the file says).
    pub fn pending(&self) -> &[u8] {
        let used = (self.used_raw() as usize).min(self.capacity());
        &self.map[4..4 + used]
    }

    /// Appends `parts` (one or more whole records) if they fit; returns whether they did. The
    /// bytes are copied before `used` is advanced, so a crash never exposes a partial record.
    /// With `sync`, the new bytes and then the `used` word are flushed to disk (`msync`) before
    /// returning, for `WriterOptions::sync_appends`.
    pub fn push(&mut self, parts: &[&[u8]], sync: bool) -> Result<bool> {
        let before = self.pending().len();
        if !self.try_push(parts) {
            return Ok(false);
        }
        if sync {
            let after = self.pending().len();
            let path = self.file.path();
            self.map
                .flush_range(4 + before, after - before)
                .map_err(|e| io_err(path, "msync", e))?;
            self.map
                .flush_range(0, 4)
                .map_err(|e| io_err(path, "msync", e))?;
        }
        Ok(true)
    }

    fn try_push(&mut self, parts: &[&[u8]]) -> bool {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let used = (self.used_raw() as usize).min(self.capacity());
        if used + len > self.capacity() {
            return false;
        }
        let mut at = 4 + used;
        for p in parts {
            self.map[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        self.used_word()
            .store((used + len) as u32, Ordering::Release);
        true
    }

    /// Marks the buffer empty (after its contents reached the segment).
    pub fn clear(&mut self) {
        self.used_word().store(0, Ordering::Release);
    }

    /// Replaces the buffer with an empty one of `size` bytes (a new file: jlog does the same, so
    /// that a process still mapping the old one never sees it change size); the caller has
    /// flushed it first.
    pub fn resize(&mut self, dir: &Path, size: u32, mode: u32) -> Result<()> {
        let path = dir.join(PRE_COMMIT);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path, "unlink", e)),
        }
        *self = PreCommit::open(dir, size, mode)?;
        Ok(())
    }
}
