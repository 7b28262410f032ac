//! Subscribers: named readers, each with its own checkpoint file `cp.<hex(name)>`.
//!
//! Segments are deleted only when every subscriber has checkpointed past them, so a subscriber
//! that never reads holds data back forever (Momentum's docs say the same of its jlogs).

use super::checkpoint::{JlogId, checkpoint_path, read_checkpoint_locked, write_checkpoint_locked};
use super::error::{JlogError, Result};
use super::journal::Journal;
use super::lock::{Create, SharedFile, is_not_found};
use super::metastore::Safety;
use super::segment::{list_segments, unlink_segment};

/// Where a new subscriber starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// At the oldest record still on disk (`JLOG_BEGIN`).
    Begin,
    /// After the last record written so far (`JLOG_END`).
    End,
}

impl Journal {
    /// Registers `name` (`jlog_ctx_add_subscriber`). Fails with [`JlogError::SubscriberExists`] if
    /// it already has a checkpoint.
    pub fn add_subscriber(&self, name: &str, at: Position) -> Result<()> {
        let path = checkpoint_path(self.path(), name);
        let file = match SharedFile::open(&path, Create::New, self.file_mode()) {
            Ok(f) => f,
            Err(JlogError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                return Err(JlogError::SubscriberExists {
                    path: self.path().to_path_buf(),
                    name: name.to_string(),
                });
            }
            Err(e) => return Err(e),
        };
        let safe = self.metastore()?.safety == Safety::Safe;
        match at {
            Position::Begin => {
                let _l = file.lock()?;
                write_checkpoint_locked(&file, JlogId::new(self.first_log_id()?, 0), safe)?;
            }
            Position::End => {
                {
                    let _l = file.lock()?;
                    let storage_log = self.metastore()?.storage_log;
                    write_checkpoint_locked(&file, JlogId::new(storage_log, 0), safe)?;
                }
                let interval = self.reader(name)?.read_interval()?;
                let _l = file.lock()?;
                write_checkpoint_locked(&file, interval.last, safe)?;
            }
        }
        Ok(())
    }

    /// Unregisters `name`; `Ok(true)` if it existed (`jlog_ctx_remove_subscriber`).
    pub fn remove_subscriber(&self, name: &str) -> Result<bool> {
        let path = checkpoint_path(self.path(), name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(super::error::io_err(path, "unlink", e)),
        }
    }

    /// Names of all subscribers, sorted (`jlog_ctx_list_subscribers`).
    pub fn subscribers(&self) -> Result<Vec<String>> {
        Ok(self
            .checkpoint_files()?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    /// `name`'s checkpoint. A checkpoint created but not yet set reads as the first segment.
    pub fn checkpoint(&self, name: &str) -> Result<JlogId> {
        let file = self.open_checkpoint(name)?;
        let _l = file.lock()?;
        match read_checkpoint_locked(&file)? {
            Some(id) => Ok(id),
            None => Ok(JlogId::new(self.first_log_id()?, 0)),
        }
    }

    /// Sets `name`'s checkpoint, adding the subscriber if missing; may rewind
    /// (`jlog_ctx_set_subscriber_checkpoint`). Segments no subscriber needs any more are removed.
    pub fn set_checkpoint(&self, name: &str, id: JlogId) -> Result<()> {
        let file = SharedFile::open(
            &checkpoint_path(self.path(), name),
            Create::IfMissing,
            self.file_mode(),
        )?;
        self.store_checkpoint(&file, id)
    }

    pub(crate) fn open_checkpoint(&self, name: &str) -> Result<std::sync::Arc<SharedFile>> {
        match SharedFile::open(
            &checkpoint_path(self.path(), name),
            Create::No,
            self.file_mode(),
        ) {
            Err(e) if is_not_found(&e) => Err(JlogError::NoSubscriber {
                path: self.path().to_path_buf(),
                name: name.to_string(),
            }),
            other => other,
        }
    }

    /// Writes a checkpoint and then removes the segments in `[old.log, new.log)` that no
    /// subscriber needs, as `jlog_ctx_read_checkpoint` does.
    pub(crate) fn store_checkpoint(&self, file: &SharedFile, id: JlogId) -> Result<()> {
        let safe = self.metastore()?.safety == Safety::Safe;
        let old = {
            let _l = file.lock()?;
            // An unreadable old value (damaged file) is simply replaced.
            let old = read_checkpoint_locked(file).ok().flatten().unwrap_or(id);
            write_checkpoint_locked(file, id, safe)?;
            old
        };
        if old.log < id.log {
            // Only segments that exist: a damaged or rewound checkpoint may span a huge range.
            for log in list_segments(self.path())? {
                if log >= old.log && log < id.log && self.pending_readers(log)?.0 == 0 {
                    unlink_segment(self.path(), log)?;
                }
            }
        }
        Ok(())
    }
}
