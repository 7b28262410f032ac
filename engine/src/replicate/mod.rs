//! Replicated shared objects (Momentum's `Replicate "name" {}` scopes).
//!
//! Each node owns its contribution to every object; every node keeps every live member's
//! contribution and the global sum. [`cidr`] and [`gauge`] are the concurrent structures the
//! application writes to; the rest of the module is added alongside.

pub mod cidr;
pub mod gauge;
pub mod update;
pub mod wire;
