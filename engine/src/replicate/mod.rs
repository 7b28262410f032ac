//! Replicated shared objects (Momentum's `Replicate "name" {}` scopes).
//!
//! Each node owns its contribution to every object; every node keeps every live member's
//! contribution and the global sum.
//!
//! - [`cidr`]: the concurrent CIDR tree (`inbound_cidr`, `outbound_cidr`);
//! - [`gauge`]: gauge tables (`outbound_domains`, `outbound_binding_domains`);
//! - [`gauge_cache`]: gauge caches (`ec_gauge_cache_*`, replicated with `parameters = "gauge_cache"`);
//! - [`throttle`]: cluster-wide X-per-Y throttles (`shared_named_throttles`, `OBTM`, `OBTC`);
//! - [`outbound`]: bindings' groups and the `cluster_outbound_throttle_*` stanzas;
//! - [`cache`]: last-writer-wins caches with TTL and LRU (`type = "cache"`);
//! - [`series`]: windowed series (`metrics`, `audit_series`, `eccmgr_metrics`);
//! - [`batcher`]: coalescing and the `max_pending` / `max_delay` flush rule;
//! - [`wire`]: the message format; [`update`]: what one update says;
//! - [`replica`]: the application handle ([`Objects`]) and the sans-IO [`Replicator`];
//! - [`report`]: what `cluster shared list` and `cluster shared show` report (the console renders it);
//! - [`object`]: what a `Replicate` scope configures; [`member`]: member identity.
//!
//! Two members, one update, one message:
//!
//! ```
//! use std::time::Duration;
//! use cohort_engine::replicate::{MemberId, ObjectKind, ObjectSettings, Replicator, View};
//!
//! let settings = || vec![ObjectSettings::new("inbound_cidr", ObjectKind::InboundCidr)];
//! let (a, b) = (MemberId::new("#ec1-1#relay-0-1"), MemberId::new("#ec1-2#relay-0-2"));
//! let mut ra = Replicator::new(a.clone(), settings(), 1400, false)?;
//! let mut rb = Replicator::new(b.clone(), settings(), 1400, false)?;
//! let now = Duration::from_secs(1_700_000_000);
//! let view = [a.clone(), b.clone()];
//! ra.handle_view(now, &view);
//! rb.handle_view(now, &view);
//!
//! ra.objects().cidr_add("inbound_cidr", "10.0.0.180/32".parse()?, 1, now)?;
//! // Nothing leaves before max_delay (1 s) or max_pending (100 updates)...
//! ra.handle_timeout(now + Duration::from_millis(999));
//! // ...and then everything pending goes, after the join's snapshot.
//! ra.handle_timeout(now + Duration::from_secs(1));
//! while let Some(t) = ra.poll_transmit() {
//!     rb.handle_message(now, &a, &t.payload)?;
//! }
//! let block = "10.0.0.0/24".parse()?;
//! assert_eq!(rb.objects().cidr_count("inbound_cidr", block, View::Global)?, 1);
//! assert_eq!(rb.objects().cidr_count("inbound_cidr", block, View::Local)?, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod batcher;
pub mod cache;
pub mod cidr;
pub mod gauge;
pub mod gauge_cache;
pub mod member;
pub mod object;
pub mod outbound;
pub mod replica;
pub mod report;
pub mod series;
pub mod throttle;
pub mod update;
pub mod wire;

pub use member::MemberId;
pub use object::{Monitor, ObjectKind, ObjectSettings, SettingsError, Shape};
pub use outbound::{Outbound, ThrottleKind};
pub use replica::{
    DEFAULT_MTU, DEFAULT_OUTBOX_LIMIT, Destination, LAG_BUCKETS, LagHistogram, ObjectStats,
    Objects, Reconfigured, ReplicateError, Replicator, Rows, Stats, Transmit, View,
};
pub use update::{Key, Op, SeriesItem, Update};
