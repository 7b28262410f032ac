//! The `cohort` crate: the binaries `cohortd` and `cohortctl` and what only they need (process
//! start-up, sockets, netlink, the XDP loader). Logic lives in `cohort-engine`.

pub mod allocator;
pub mod check_config;
pub mod console;
pub mod dataplane;
pub mod garp;
pub mod lab;
pub mod logsvc;
pub mod man;
pub mod metrics;
pub mod node;
pub mod notify;
pub mod notify_hook;
pub mod plumb;
pub mod privileges;
pub mod xdp;
