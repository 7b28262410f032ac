//! A jlog directory: creation, opening, metadata, segment listing, cleanup and repair.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::checkpoint::{
    JlogId, read_checkpoint_locked, subscriber_from_file_name, write_checkpoint_locked,
};
use super::error::{JlogError, Result, io_err};
use super::index::{IndexState, resync_index};
use super::lock::{Create, SharedFile, is_not_found};
use super::metastore::{DEFAULT_UNIT_LIMIT, METASTORE, Metastore, Safety};
use super::record::DEFAULT_HDR_MAGIC;
use super::repair::{SegmentRepair, repair_segment_locked};
use super::segment::{index_path, list_segments, segment_path, unlink_segment};

/// jlog's default file mode for everything it creates.
pub const DEFAULT_FILE_MODE: u32 = 0o640;

/// Settings for [`Journal::create`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalOptions {
    /// Segment roll threshold in bytes (jlog default 4 MiB).
    pub unit_limit: u32,
    /// Safety mode stored in the metastore.
    pub safety: Safety,
    /// Mode of created files; the directory gets an x bit for every r bit.
    pub file_mode: u32,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            unit_limit: DEFAULT_UNIT_LIMIT,
            safety: Safety::AlmostSafe,
            file_mode: DEFAULT_FILE_MODE,
        }
    }
}

/// An open jlog directory. Cheap to clone; every clone shares the process's descriptors.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
    meta: Arc<SharedFile>,
    file_mode: u32,
}

/// One segment as listed by [`Journal::segments`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Segment id.
    pub log: u32,
    /// Data file size in bytes.
    pub size: u64,
    /// Subscribers whose checkpoint still needs this segment.
    pub pending_readers: usize,
    /// Index state after a resync (`None` if it was removed meanwhile).
    pub index: Option<IndexState>,
}

/// What [`Journal::repair`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// The metastore was rewritten (bad length or fields, or `storage_log` behind the newest
    /// segment).
    pub metastore_rewritten: bool,
    /// Checkpoints that were reset, with their old and new values.
    pub checkpoints_reset: Vec<(String, Option<JlogId>, JlogId)>,
    /// Segments whose data was repaired, and how.
    pub segments_repaired: Vec<(u32, SegmentRepair)>,
    /// Segments removed because no subscriber needed them.
    pub segments_removed: Vec<u32>,
}

impl Journal {
    /// Creates a new jlog at `dir` (the directory may exist but must not hold a metastore), like
    /// `jlog_ctx_init`.
    pub fn create(dir: impl AsRef<Path>, opts: JournalOptions) -> Result<Journal> {
        let dir = dir.as_ref();
        if opts.unit_limit == 0 {
            return Err(JlogError::Invalid {
                path: dir.to_path_buf(),
                what: "unit_limit must be > 0".into(),
            });
        }
        let dir_mode = opts.file_mode | ((opts.file_mode & 0o444) >> 2);
        match std::fs::DirBuilder::new().mode(dir_mode).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(io_err(dir, "mkdir", e)),
        }
        let mpath = dir.join(METASTORE);
        let meta = match SharedFile::open(&mpath, Create::New, opts.file_mode) {
            Ok(m) => m,
            Err(JlogError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                return Err(JlogError::AlreadyExists {
                    path: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(e),
        };
        {
            let _l = meta.lock()?;
            Metastore {
                storage_log: 0,
                unit_limit: opts.unit_limit,
                safety: opts.safety,
                hdr_magic: DEFAULT_HDR_MAGIC,
                legacy_len: false,
            }
            .save(&meta)?;
        }
        Ok(Journal {
            dir: dir.to_path_buf(),
            meta,
            file_mode: opts.file_mode,
        })
    }

    /// Opens an existing jlog.
    pub fn open(dir: impl AsRef<Path>) -> Result<Journal> {
        let dir = dir.as_ref();
        let meta = match SharedFile::open(&dir.join(METASTORE), Create::No, DEFAULT_FILE_MODE) {
            Ok(m) => m,
            Err(e) if is_not_found(&e) => {
                return Err(JlogError::NotAJournal {
                    path: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(e),
        };
        Ok(Journal {
            dir: dir.to_path_buf(),
            meta,
            file_mode: DEFAULT_FILE_MODE,
        })
    }

    /// Opens the jlog at `dir`, creating it with `opts` if it has no metastore yet.
    pub fn open_or_create(dir: impl AsRef<Path>, opts: JournalOptions) -> Result<Journal> {
        match Journal::create(dir.as_ref(), opts) {
            Err(JlogError::AlreadyExists { .. }) => Journal::open(dir),
            other => other,
        }
    }

    /// The journal directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Mode used for files this process creates.
    pub fn file_mode(&self) -> u32 {
        self.file_mode
    }

    pub(crate) fn meta_file(&self) -> &SharedFile {
        &self.meta
    }

    /// What the index module needs of this journal.
    pub(crate) fn files(&self) -> super::index::Files<'_> {
        super::index::Files {
            dir: &self.dir,
            meta: &self.meta,
            mode: self.file_mode,
        }
    }

    /// The current metastore (read fresh from disk).
    pub fn metastore(&self) -> Result<Metastore> {
        Metastore::load(&self.meta)
    }

    /// Changes the safety mode for every process using the journal (`jlog_ctx_alter_safety`).
    pub fn set_safety(&self, safety: Safety) -> Result<()> {
        let _l = self.meta.lock()?;
        let mut m = Metastore::load(&self.meta)?;
        m.safety = safety;
        m.save(&self.meta)
    }

    /// Changes the segment size limit (`jlog_ctx_alter_journal_size`).
    pub fn set_unit_limit(&self, unit_limit: u32) -> Result<()> {
        if unit_limit == 0 {
            return Err(JlogError::Invalid {
                path: self.dir.clone(),
                what: "unit_limit must be > 0".into(),
            });
        }
        let _l = self.meta.lock()?;
        let mut m = Metastore::load(&self.meta)?;
        m.unit_limit = unit_limit;
        m.save(&self.meta)
    }

    /// The smallest segment id present (any-case 8-hex-digit name), or 0 when there is none, as
    /// `jlog_ctx_first_log_id`.
    pub fn first_log_id(&self) -> Result<u32> {
        Ok(list_segments(&self.dir)?.first().copied().unwrap_or(0))
    }

    /// How many subscribers still need segment `log` (checkpoint segment `<= log`), and the
    /// earliest checkpoint segment of all. A checkpoint that cannot be read counts as needing
    /// everything, so that nothing is deleted on its account.
    pub fn pending_readers(&self, log: u32) -> Result<(usize, Option<u32>)> {
        let mut readers = 0;
        let mut earliest: Option<u32> = None;
        for (_, file) in self.checkpoint_files()? {
            let cp = SharedFile::open(&file, Create::No, self.file_mode).and_then(|f| {
                let _l = f.lock()?;
                read_checkpoint_locked(&f)
            });
            let cp_log = match cp {
                Ok(Some(id)) => id.log,
                Err(e) if is_not_found(&e) => continue,
                Ok(None) | Err(_) => 0,
            };
            earliest = Some(earliest.map_or(cp_log, |e| e.min(cp_log)));
            if cp_log <= log {
                readers += 1;
            }
        }
        Ok((readers, earliest))
    }

    /// `(subscriber name, checkpoint path)` of every `cp.*` file whose name decodes.
    pub(crate) fn checkpoint_files(&self) -> Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io_err(&self.dir, "readdir", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&self.dir, "readdir", e))?;
            if let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(subscriber_from_file_name)
            {
                out.push((name, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes every segment before the newest that no subscriber needs (`jlogctl -c`). Returns
    /// the ids removed.
    pub fn clean(&self) -> Result<Vec<u32>> {
        let storage_log = self.metastore()?.storage_log;
        let mut removed = Vec::new();
        for log in list_segments(&self.dir)? {
            if log < storage_log && self.pending_readers(log)?.0 == 0 {
                unlink_segment(&self.dir, log)?;
                removed.push(log);
            }
        }
        Ok(removed)
    }

    /// Lists segments with sizes, pending readers and index state (`jlogctl -l -i`). Building the
    /// index state resyncs each index, as jlogctl does.
    pub fn segments(&self) -> Result<Vec<SegmentInfo>> {
        let mut out = Vec::new();
        for log in list_segments(&self.dir)? {
            let size = match std::fs::metadata(segment_path(&self.dir, log)) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(segment_path(&self.dir, log), "stat", e)),
            };
            out.push(SegmentInfo {
                log,
                size,
                pending_readers: self.pending_readers(log)?.0,
                index: resync_index(self.files(), log)?,
            });
        }
        Ok(out)
    }

    /// Repairs the journal (`jlog_ctx_repair`, `jlogctl repair`): rewrites a bad metastore (with
    /// `storage_log` = newest segment), resets checkpoints that point outside the data, and with
    /// `aggressive` also repairs every segment (torn tails, garbage), rebuilds indexes lazily and
    /// removes segments no subscriber needs. Must not run while another process writes.
    pub fn repair(dir: impl AsRef<Path>, aggressive: bool) -> Result<RepairReport> {
        let dir = dir.as_ref();
        let mut report = RepairReport::default();
        let mpath = dir.join(METASTORE);
        if !dir.is_dir() {
            return Err(JlogError::NotAJournal {
                path: dir.to_path_buf(),
            });
        }
        let meta = SharedFile::open(&mpath, Create::IfMissing, DEFAULT_FILE_MODE)?;
        let segments = list_segments(dir)?;
        let newest = segments.last().copied();
        {
            let _l = meta.lock()?;
            let mut m = match Metastore::load(&meta) {
                Ok(m) => m,
                Err(JlogError::Compressed { path, magic }) => {
                    return Err(JlogError::Compressed { path, magic });
                }
                Err(_) => {
                    report.metastore_rewritten = true;
                    salvage_metastore(&meta)?
                }
            };
            if let Some(n) = newest
                && m.storage_log != n
            {
                m.storage_log = n;
                report.metastore_rewritten = true;
            }
            if report.metastore_rewritten || m.legacy_len && meta.size()? != 16 {
                m.save(&meta)?;
                meta.set_len(16)?;
            }
        }
        let j = Journal {
            dir: dir.to_path_buf(),
            meta,
            file_mode: DEFAULT_FILE_MODE,
        };
        let m = j.metastore()?;
        if aggressive {
            for &log in &segments {
                let data = match SharedFile::open(&segment_path(dir, log), Create::No, j.file_mode)
                {
                    Ok(f) => f,
                    Err(e) if is_not_found(&e) => continue,
                    Err(e) => return Err(e),
                };
                let r = {
                    let _dl = data.lock()?;
                    repair_segment_locked(&data, m.hdr_magic)?
                };
                if r.dropped_bytes > 0 {
                    report.segments_repaired.push((log, r));
                }
                match std::fs::remove_file(index_path(dir, log)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(index_path(dir, log), "unlink", e)),
                }
            }
        }
        let earliest = segments.first().copied().unwrap_or(0);
        let latest = m.storage_log;
        for (name, path) in j.checkpoint_files()? {
            if name.starts_with('~') {
                continue;
            }
            let f = SharedFile::open(&path, Create::No, j.file_mode)?;
            let _l = f.lock()?;
            let old = read_checkpoint_locked(&f).ok().flatten();
            let fixed = match old {
                Some(id) if id.log >= earliest && id.log <= latest => {
                    drop(_l);
                    let count = resync_index(j.files(), id.log)?.map_or(0, |s| s.count);
                    if id.marker <= count {
                        continue;
                    }
                    let fixed = JlogId::new(id.log, count);
                    let _l = f.lock()?;
                    write_checkpoint_locked(&f, fixed, m.safety == Safety::Safe)?;
                    report.checkpoints_reset.push((name, old, fixed));
                    continue;
                }
                Some(id) if id.log > latest => JlogId::new(latest, 0),
                _ => JlogId::new(earliest, 0),
            };
            write_checkpoint_locked(&f, fixed, m.safety == Safety::Safe)?;
            report.checkpoints_reset.push((name, old, fixed));
        }
        if aggressive {
            report.segments_removed = j.clean()?;
        }
        Ok(report)
    }
}

/// Rebuilds a metastore from whatever fields of the damaged file are valid, defaults elsewhere.
fn salvage_metastore(meta: &SharedFile) -> Result<Metastore> {
    let len = meta.size()?.min(16) as usize;
    let mut b = [0u8; 16];
    meta.read_exact_at(&mut b[..len], 0)?;
    let word =
        |i: usize| (i + 4 <= len).then(|| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]));
    let mut m = Metastore::default();
    if let Some(s) = word(0) {
        m.storage_log = s;
    }
    if let Some(u) = word(4).filter(|&u| u > 0) {
        m.unit_limit = u;
    }
    if let Some(s) = word(8).and_then(Safety::from_u32) {
        m.safety = s;
    }
    match word(12) {
        Some(DEFAULT_HDR_MAGIC) => {}
        Some(0) => m.hdr_magic = 0,
        None if len == 12 => m.hdr_magic = 0,
        _ => {}
    }
    Ok(m)
}
