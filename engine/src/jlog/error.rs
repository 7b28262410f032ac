//! Typed errors for every journal operation, each naming the file (and, for content errors, the
//! byte offset) where it happened.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while reading or writing a journal. File contents never cause a
/// panic: a malformed metastore, index, checkpoint or record becomes one of these variants.
#[derive(Debug, thiserror::Error)]
pub enum JlogError {
    /// A system call on `path` failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What was being done (open, pread, fcntl lock, ...).
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A file's content is not what the jlog format allows at `offset`.
    #[error("{path}: corrupt at offset {offset}: {what}")]
    Corrupt {
        /// The file holding the bad bytes.
        path: PathBuf,
        /// Byte offset of the first bad byte (or of the structure that is bad).
        offset: u64,
        /// What was expected there.
        what: String,
    },
    /// `path` exists but is not a jlog directory (no `metastore`).
    #[error("{path}: not a jlog (no metastore)")]
    NotAJournal {
        /// The directory that was opened.
        path: PathBuf,
    },
    /// `jlog init` on a directory that already holds a jlog.
    #[error("{path}: a jlog already exists here")]
    AlreadyExists {
        /// The directory.
        path: PathBuf,
    },
    /// The subscriber has no checkpoint file (`cp.<hex>`).
    #[error("{path}: no subscriber {name:?}")]
    NoSubscriber {
        /// The journal directory.
        path: PathBuf,
        /// The subscriber name asked for.
        name: String,
    },
    /// `add_subscriber` for a name that already has a checkpoint.
    #[error("{path}: subscriber {name:?} already exists")]
    SubscriberExists {
        /// The journal directory.
        path: PathBuf,
        /// The subscriber name.
        name: String,
    },
    /// A caller-supplied argument is outside what the format can express.
    #[error("{path}: {what}")]
    Invalid {
        /// The journal directory.
        path: PathBuf,
        /// What was wrong with the argument.
        what: String,
    },
    /// The journal uses LZ4-compressed records, which Cohort does not read or write.
    #[error("{path}: compressed jlogs (header magic {magic:#010x}) are not supported")]
    Compressed {
        /// The metastore.
        path: PathBuf,
        /// The metastore's header magic.
        magic: u32,
    },
    /// The io_uring append backend could not be set up or failed.
    #[error("{path}: io_uring: {source}")]
    Uring {
        /// The segment being written.
        path: PathBuf,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
}

/// Result of every journal operation.
pub type Result<T> = std::result::Result<T, JlogError>;

/// Builds a [`JlogError::Io`] from the last OS error of an `op` on `path`.
pub(crate) fn io_err(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> JlogError {
    JlogError::Io {
        path: path.into(),
        op,
        source,
    }
}

/// Builds a [`JlogError::Corrupt`].
pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> JlogError {
    JlogError::Corrupt {
        path: path.into(),
        offset,
        what: what.into(),
    }
}
