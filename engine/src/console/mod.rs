//! The operator console's logic: the command grammar ([`grammar`]), the data a command shows
//! ([`status`]; the domains' own state types, re-exported), how that data is printed in the
//! documented shapes or as JSON through one trait ([`render`], DuraVIP's in [`duravip`]) and the
//! framing between `cohortctl` and the daemon ([`protocol`]). No sockets here: the server and the
//! client live in the `cohort` crate. The console sits above the domains: it imports their state
//! types; no domain imports the console.
//!
//! ```
//! use cohort_engine::console::{grammar, render::{render, Render}, status::NodeAddr};
//! let cmd = grammar::parse("cluster nodeaddr").expect("a documented command");
//! assert_eq!(cmd.to_string(), "cluster nodeaddr");
//! let addr = NodeAddr { address: "10.80.116.201:4802".parse().expect("an address") };
//! assert_eq!(render(&addr, false), "10.80.116.201:4802\n");
//! ```

pub mod auth;
pub mod control;
pub mod duravip;
pub mod grammar;
pub mod protocol;
pub mod render;
pub mod shared_ops;
pub mod status;

pub use grammar::{ClusterCommand, Command, ManagerCommand, ParseError, Scope};
pub use shared_ops::SharedOp;
