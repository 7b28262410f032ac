//! The node runtime: identity, signals, and the event loop that drives the sans-IO protocol
//! state machines with the UDP driver.

pub mod console;
pub mod control;
pub mod control_cache;
pub mod identity;
pub mod jobs;
pub mod manager;
pub mod paniclog;
pub mod priority;
pub mod reload;
pub mod runtime;
pub mod setup;
pub mod shared;
pub mod signals;
