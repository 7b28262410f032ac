//! Logmove: how the manager pulls the nodes' journals (Momentum's log aggregation, docs §8), the
//! parts that are logic and no I/O.
//!
//! - [`wire`]: the framed TCP protocol spoken on `ECCluster_Listener` (hello, optional keyed
//!   challenge/response, pull, batch, ack), with a decoder that never panics.
//! - [`pattern`]: the manager's `Logs { logfile = ... }` pattern (strftime plus `%{l}`, `%{s}`,
//!   `%{n}`) turned into output paths.
//! - [`position`]: the manager's durable per-(node, log) position, which makes a pull exactly-once
//!   across a crash of either side.

pub mod pattern;
pub mod position;
pub mod wire;

pub use pattern::{Pattern, PatternError};
pub use position::{Pending, Position, PositionError};
pub use wire::{Frame, LogEntry, Message, OpenError, Role, Session, WireError, WireRecord};
