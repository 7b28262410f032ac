//! Replicated shared objects (Momentum's `Replicate "name" {}` scopes).
//!
//! Each node owns its contribution to every object; every node keeps every live member's
//! contribution and the global sum.
//!
//! - [`cidr`]: the concurrent CIDR tree (`inbound_cidr`, `outbound_cidr`);
//! - [`gauge`]: gauge tables (`outbound_domains`, `outbound_binding_domains`);
//! - [`throttle`]: cluster-wide X-per-Y throttles (`shared_named_throttles`, `OBTM`, `OBTC`);
//! - [`cache`]: last-writer-wins caches with TTL and LRU (`type = "cache"`);
//! - [`series`]: windowed series (`metrics`, `audit_series`, `eccmgr_metrics`);
//! - [`batcher`]: coalescing and the `max_pending` / `max_delay` flush rule;
//! - [`wire`]: the message format; [`update`]: what one update says;
//! - [`replica`]: the application handle ([`Objects`]) and the sans-IO [`Replicator`];
//! - [`console`]: `cluster shared list` / `cluster shared show`;
//! - [`object`]: what a `Replicate` scope configures; [`member`]: member identity.

pub mod batcher;
pub mod cache;
pub mod cidr;
pub mod console;
pub mod gauge;
pub mod member;
pub mod object;
pub mod replica;
pub mod series;
pub mod throttle;
pub mod update;
pub mod wire;

pub use member::MemberId;
pub use object::{Monitor, ObjectKind, ObjectSettings, SettingsError, Shape};
pub use replica::{
    DEFAULT_MTU, Destination, Objects, ReplicateError, Replicator, Rows, Stats, Transmit, View,
};
pub use update::{Key, Op, SeriesItem, Update};
