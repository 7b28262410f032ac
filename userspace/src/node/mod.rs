//! The node runtime: identity, signals, and the event loop that drives the sans-IO protocol
//! state machines with the UDP driver.

pub mod identity;
pub mod signals;
