//! Journals byte-compatible with jlog 2.x (OmniTI/Circonus "journaled log"), the on-disk format of
//! Momentum's `cluster://` / `jlog://` logs.
//!
//! A journal is a directory holding a `metastore`, data segments named `%08x`, per-segment `.idx`
//! files, one `cp.<hex(name)>` checkpoint per subscriber and a `pre_commit` buffer. Cohort's
//! [`Writer`] and [`Reader`] read and write exactly what the C library does and take the same
//! fcntl locks, so a jlog C program (jlogctl, Perl `JLog::Reader`, Momentum itself) and Cohort can
//! share one journal. See `reference/jlog-format.md` for the format byte by byte.
//!
//! ```no_run
//! use cohort_engine::jlog::{Journal, JournalOptions, Position, WriterOptions};
//! # fn main() -> Result<(), cohort_engine::jlog::JlogError> {
//! let j = Journal::open_or_create("/var/log/cohort/mainlog.cluster", JournalOptions::default())?;
//! if !j.subscribers()?.iter().any(|s| s == "master") {
//!     j.add_subscriber("master", Position::Begin)?;
//! }
//! let mut w = j.writer(WriterOptions::default())?;
//! w.append(b"a log line")?;
//! let mut r = j.reader("master")?;
//! let (interval, records) = r.next_batch()?;
//! for rec in &records { println!("{} {:?}", rec.id, rec.payload); }
//! r.checkpoint(interval.last)?;
//! # Ok(()) }
//! ```

pub mod checkpoint;
pub mod error;
pub mod index;
pub mod journal;
pub mod lease;
pub mod lock;
pub mod metastore;
pub mod precommit;
pub mod reader;
pub mod record;
pub mod repair;
pub mod segment;
pub mod subscriber;
pub mod uring;
pub mod writer;

pub use checkpoint::JlogId;
pub use error::{JlogError, Result};
pub use index::IndexState;
pub use journal::{Journal, JournalOptions, RepairReport, SegmentInfo};
pub use metastore::{Metastore, Safety};
pub use reader::{Backlog, Interval, Reader, Record};
pub use repair::SegmentRepair;
pub use subscriber::Position;
pub use writer::{AppendBackend, Writer, WriterOptions, WriterStats};
