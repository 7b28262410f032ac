//! Momentum-style configuration: the syntax ([`syntax`]), the typed options with their documented
//! defaults ([`model`]), the option tables ([`options`]: type, default, bound, documentation,
//! reload), reading and validation ([`load`]), printing the effective configuration
//! ([`mod@render`]) and the node's identity ([`nodename`]).
//!
//! ```
//! use cohort_engine::config;
//! let loaded = config::load_str(
//!     std::path::Path::new("example.conf"),
//!     "cluster { view_mature_time = 2 Replicate \"inbound_cidr\" {} }",
//! )
//! .expect("valid");
//! assert_eq!(loaded.config.cluster.view_mature_time, std::time::Duration::from_secs(2));
//! assert_eq!(loaded.config.cluster.heartbeats_per_sec, 1); // documented default
//! ```

pub mod error;
pub mod load;
pub mod model;
pub mod nodename;
pub mod options;
pub mod render;
pub mod syntax;
pub mod values;

pub use error::{ConfigError, Loc};
pub use load::{Ignored, Loaded, load_bytes, load_file, load_str};
pub use model::*;
pub use render::render;

/// The configuration embedded in the binaries: Momentum 4's default `ecelerity-cluster.conf`
/// (the file in `shared/examples`), used by the README's first command and by `cohortd` when no
/// `--config` is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.conf");
