//! Cluster logging's I/O: the node's journals and its log service on `ECCluster_Listener`, and the
//! manager's pull of every node's logs into its `Logs { logfile = ... }` files. The protocol, the
//! output pattern and the exactly-once position are in [`cohort_engine::logmove`].

pub mod journals;
pub mod puller;
pub mod server;
pub mod sink;
pub mod stream;
pub mod worker;

pub use journals::Journals;
pub use puller::Puller;
pub use server::{LogService, ServiceConfig};
pub use sink::Sink;

/// The keyring in force, shared with the node's loop (a reload replaces it).
pub type KeyCell = std::sync::Arc<std::sync::RwLock<Option<cohort_engine::group::ClusterKey>>>;
