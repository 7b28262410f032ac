//! One replicated update: which key of an object, and what happens to it.

use std::fmt;

use ipnet::IpNet;

/// The item a series counts: an address or netblock, or an arbitrary string key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SeriesItem {
    /// An IP address (as a host prefix) or a CIDR block.
    Net(IpNet),
    /// A string key (Lua `audit_series` of type `string`).
    Text(String),
}

impl fmt::Display for SeriesItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeriesItem::Net(net) => write!(f, "{net}"),
            SeriesItem::Text(text) => f.write_str(text),
        }
    }
}

/// The key of an update inside one object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// A CIDR tree prefix (`/32` or `/128` for one address).
    Net(IpNet),
    /// A gauge-table, throttle or cache key.
    Text(String),
    /// One window of one series: `window` is the window's start in Unix seconds, so that every
    /// node with a synchronised clock files an event under the same window.
    Series {
        /// Series name (`connect`, `reception`, ... or a named audit series).
        series: String,
        /// Window start, Unix seconds, a multiple of the window size.
        window: u64,
        /// What is counted.
        item: SeriesItem,
    },
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Net(net) => write!(f, "{net}"),
            Key::Text(text) => f.write_str(text),
            Key::Series {
                series,
                window,
                item,
            } => write!(f, "{series}@{window}:{item}"),
        }
    }
}

/// What an update does to its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Adds to the sender's contribution (CIDR trees, gauges, throttles, series). Coalesced
    /// updates carry the net delta.
    Add(i64),
    /// Writes a cache value. The newest `(version, writer)` wins everywhere, so replicas agree
    /// whatever the delivery interleaving.
    Set {
        /// Lamport version: greater than every version the writer had seen for any key.
        version: u64,
        /// Seconds to live from reception; 0 never expires.
        ttl: u32,
        /// The value bytes.
        value: Vec<u8>,
        /// The member that wrote it, when it is not the sender (a snapshot relays everyone's
        /// writes); `None` is the sender.
        writer: Option<String>,
    },
}

/// A key and what happens to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// Which key.
    pub key: Key,
    /// What happens to it.
    pub op: Op,
}
