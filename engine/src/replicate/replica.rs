//! The per-node replication state machine and the shared objects applications write to.
//!
//! [`Objects`] is what applications hold (behind an `Arc`): every operation is `&self`, safe
//! from any thread, and updates this node's contribution and the global view at once, then
//! queues the update in the object's [`Batcher`]. [`Replicator`] is the sans-IO machine the
//! daemon drives: it turns due batches into messages (`poll_transmit`), applies other members'
//! messages (`handle_message`), and handles view changes (`handle_view`).
//!
//! # Invariant
//!
//! Each member owns its contribution. Every member keeps every live member's contribution and
//! the global sum. When a member leaves, its contribution is subtracted and dropped. When anyone
//! joins, every member flushes its batches and then multicasts a snapshot of its announced
//! contribution whose first section carries RESET, so receivers replace (never add to) what they
//! held for it; with per-sender FIFO delivery this makes the joiner's copy, and everyone else's,
//! equal to the sender's announced state. Hence once every batch has been flushed and delivered,
//! every member's global view equals the sum of the live members' local states. Caches merge by
//! last writer wins instead of by sum and converge on the newest write of every key.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ipnet::IpNet;

use super::batcher::Batcher;
use super::cache::{CacheEntry, CacheStore};
use super::cidr::{self, CidrTree};
use super::gauge::GaugeTable;
use super::gauge_cache::{self, GaugeCacheDef, GaugeCacheError, GaugeCaches};
use super::member::MemberId;
use super::object::{Monitor, ObjectKind, ObjectSettings, SettingsError, Shape};
use super::outbound::{Outbound, ThrottleKind};
use super::series;
use super::throttle::{DEFAULT_CAPACITY, ThrottleError, ThrottleSpec, Throttles};
use super::update::{Key, Op, SeriesItem, Update};
use super::wire::{Message, Packer, WireError};

/// Default bound on messages waiting in the outbox: while this many wait, due batches stay in
/// their batchers and keep coalescing instead of turning into more messages.
pub const DEFAULT_OUTBOX_LIMIT: usize = 4096;

/// Default largest message the replicator emits (bytes), leaving room for transport headers in
/// a 1500-byte Ethernet frame.
pub const DEFAULT_MTU: usize = 1400;

/// Why an operation on a replicated object failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplicateError {
    /// No `Replicate` scope of that name.
    #[error("no replicated object named {0:?}")]
    UnknownObject(String),
    /// The object exists but is of another type.
    #[error("object {object:?} is a {actual}, not a {wanted}")]
    WrongKind {
        /// Object name.
        object: String,
        /// Its type.
        actual: &'static str,
        /// The type the operation needs.
        wanted: &'static str,
    },
    /// A message from another member did not parse; it was dropped whole.
    #[error("message from {from}: {source}")]
    Wire {
        /// Sender.
        from: MemberId,
        /// What was wrong, with the offset.
        #[source]
        source: WireError,
    },
    /// A message from a member that is not in the current view was dropped.
    #[error("message from {0}, which is not in the current view")]
    NotMember(MemberId),
    /// Throttle misuse.
    #[error(transparent)]
    Throttle(#[from] ThrottleError),
    /// Gauge cache misuse.
    #[error(transparent)]
    GaugeCache(#[from] GaugeCacheError),
    /// Bad settings.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The series is not among the object's `parameters` (built-in series need their own
    /// parameter, named series need `audit_series`).
    #[error("object {object:?} does not replicate series {series:?} (see its parameters)")]
    NotReplicated {
        /// Object name.
        object: String,
        /// Series name.
        series: String,
    },
    /// A key or value is too long for the wire format (65535 bytes).
    #[error("key or value of {0} bytes is longer than 65535")]
    TooLong(usize),
}

/// Which view of an object to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// This node's own contribution.
    Local,
    /// The sum over the live members.
    Global,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below leaves its data consistent before any call that could panic.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A member's contribution to one sum object, as the structure that prints it.
#[derive(Debug)]
enum Sums {
    Cidr(CidrTree),
    Table(GaugeTable<Key>),
}

impl Sums {
    fn for_shape(shape: Shape) -> Option<Sums> {
        match shape {
            Shape::CidrTree => Some(Sums::Cidr(CidrTree::new())),
            Shape::GaugeTable | Shape::Throttles | Shape::Series => {
                Some(Sums::Table(GaugeTable::new()))
            }
            Shape::Cache => None,
        }
    }

    /// Adds `delta` to `key`; `false` if the key does not fit this structure.
    fn add(&self, key: &Key, delta: i64) -> bool {
        self.add_with(key, delta, &cidr::pin())
    }

    /// [`Sums::add`] under a guard the caller holds across several additions.
    fn add_with(&self, key: &Key, delta: i64, guard: &cidr::Guard) -> bool {
        match (self, key) {
            (Sums::Cidr(tree), Key::Net(net)) => {
                tree.add_with(*net, delta, guard);
                true
            }
            (Sums::Table(table), Key::Text(_) | Key::Series { .. }) => {
                table.add(key, delta);
                true
            }
            _ => false,
        }
    }

    fn get(&self, key: &Key) -> i64 {
        match (self, key) {
            (Sums::Cidr(tree), Key::Net(net)) => tree.count(*net),
            (Sums::Table(table), key) => table.get(key),
            _ => 0,
        }
    }

    fn rows(&self) -> Rows {
        match self {
            Sums::Cidr(tree) => Rows::Cidr(tree.entries()),
            Sums::Table(table) => Rows::Table(table.entries()),
        }
    }
}

/// Another member's contribution to one summed object: its own amount per key. Only the
/// replicator's thread writes it, so it is a plain map, one probe per update, rather than a
/// second tree to walk; `cluster shared show ... from <node>` builds the tree when asked.
#[derive(Debug)]
struct Contribution {
    /// CIDR keys (`Key::Net`), or table keys (`Key::Text`, `Key::Series`).
    cidr: bool,
    own: HashMap<Key, i64, foldhash::quality::RandomState>,
}

impl Contribution {
    fn for_shape(shape: Shape) -> Option<Contribution> {
        let cidr = match shape {
            Shape::CidrTree => true,
            Shape::GaugeTable | Shape::Throttles | Shape::Series => false,
            Shape::Cache => return None,
        };
        Some(Contribution {
            cidr,
            own: HashMap::default(),
        })
    }

    /// Adds `delta` to `key`; `false` if the key does not fit this object (as [`Sums::add`]).
    fn add(&mut self, key: &Key, delta: i64) -> bool {
        let key = match key {
            Key::Net(net) if self.cidr => std::borrow::Cow::Owned(Key::Net(net.trunc())),
            Key::Text(_) | Key::Series { .. } if !self.cidr => std::borrow::Cow::Borrowed(key),
            _ => return false,
        };
        match self.own.get_mut(key.as_ref()) {
            Some(v) => *v = v.wrapping_add(delta),
            None => {
                self.own.insert(key.into_owned(), delta);
            }
        }
        true
    }

    /// The non-zero amounts: what a departure subtracts.
    fn own_entries(&self) -> Vec<(Key, i64)> {
        self.own
            .iter()
            .filter(|(_, v)| **v != 0)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// What `cluster shared show <object> from <member>` prints: the member's tree (built
    /// from its amounts; a path-compressed trie has one shape for one set of keys, whatever
    /// the order they came in) or its table sorted by key.
    fn rows(&self) -> Rows {
        if self.cidr {
            let tree = CidrTree::new();
            let guard = cidr::pin();
            for (key, v) in &self.own {
                if let Key::Net(net) = key {
                    if *v == 0 {
                        // A key back at zero still has its node (and the branch point above
                        // it) until compaction, as in Momentum's trees: add and take away.
                        tree.add_with(*net, 1, &guard);
                        tree.add_with(*net, -1, &guard);
                    } else {
                        tree.add_with(*net, *v, &guard);
                    }
                }
            }
            Rows::Cidr(tree.entries())
        } else {
            let mut rows = self.own_entries();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            Rows::Table(rows)
        }
    }
}

/// What `cluster shared show` prints for one view of one object.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    /// CIDR tree nodes with non-zero counts, in tree order.
    Cidr(Vec<(IpNet, i64)>),
    /// Gauges (or throttle usage, or series buckets) sorted by key.
    Table(Vec<(Key, i64)>),
    /// Cache entries sorted by key.
    Cache(Vec<(String, CacheEntry)>),
}

#[derive(Debug)]
enum State {
    Sums {
        local: Sums,
        global: Sums,
        throttles: Option<Mutex<Throttles>>,
    },
    Cache(Mutex<CacheStore>),
}

/// One replicated object: its settings, its local and global state, its pending batch.
#[derive(Debug)]
pub struct Object {
    settings: ObjectSettings,
    state: State,
    pending: Mutex<Batcher>,
}

impl Object {
    fn new(settings: ObjectSettings) -> Object {
        let shape = settings.kind.shape();
        let state = match (Sums::for_shape(shape), Sums::for_shape(shape)) {
            (Some(local), Some(global)) => State::Sums {
                local,
                global,
                throttles: (shape == Shape::Throttles)
                    .then(|| Mutex::new(Throttles::new(DEFAULT_CAPACITY))),
            },
            _ => State::Cache(Mutex::new(CacheStore::new(settings.max_size))),
        };
        let pending = Mutex::new(Batcher::new(settings.max_delay, settings.max_pending));
        Object {
            settings,
            state,
            pending,
        }
    }

    /// The object's settings (`max_delay` and `max_pending` as configured at its creation; a
    /// reload may have retuned them since: see [`Object::batching`]).
    pub fn settings(&self) -> &ObjectSettings {
        &self.settings
    }

    /// The flush limits in force: `(max_delay, max_pending)`.
    pub fn batching(&self) -> (Duration, usize) {
        lock(&self.pending).limits()
    }

    fn wrong(&self, wanted: &'static str) -> ReplicateError {
        ReplicateError::WrongKind {
            object: self.settings.name.clone(),
            actual: self.settings.kind.shape().type_name(),
            wanted,
        }
    }

    fn sums(&self, wanted: &'static str) -> Result<(&Sums, &Sums), ReplicateError> {
        match &self.state {
            State::Sums { local, global, .. } => Ok((local, global)),
            State::Cache(_) => Err(self.wrong(wanted)),
        }
    }

    fn throttles(&self) -> Result<(&Mutex<Throttles>, &Sums), ReplicateError> {
        match &self.state {
            State::Sums {
                throttles: Some(t),
                global,
                ..
            } => Ok((t, global)),
            _ => Err(self.wrong("throttle table")),
        }
    }

    fn cache(&self) -> Result<&Mutex<CacheStore>, ReplicateError> {
        match &self.state {
            State::Cache(store) => Ok(store),
            State::Sums { .. } => Err(self.wrong("cache")),
        }
    }

    /// Applies a local delta to this node's contribution and the global view, and queues it.
    /// Returns whether the object's batch is due.
    fn local_add(&self, key: Key, delta: i64, now: Duration) -> bool {
        let guard = cidr::pin();
        if let State::Sums { local, global, .. } = &self.state
            && local.add_with(&key, delta, &guard)
        {
            global.add_with(&key, delta, &guard);
            drop(guard);
            return lock(&self.pending).push(
                now,
                Update {
                    key,
                    op: Op::Add(delta),
                },
            );
        }
        false
    }
}

/// Every replicated object of one node; the handle applications use (share it in an `Arc`).
///
/// Each update method returns `Ok(true)` when the object's batch has become due
/// (`max_pending` reached): a daemon may then wake its driver instead of waiting for
/// [`Replicator::poll_timeout`].
#[derive(Debug)]
pub struct Objects {
    me: MemberId,
    objects: BTreeMap<String, Arc<Object>>,
    /// Shared with the handles of earlier configurations, so cache versions keep growing.
    lamport: Arc<AtomicU64>,
    /// Bindings' groups and the `cluster_outbound_throttle_*` stanzas.
    outbound: Arc<Outbound>,
    /// Gauge caches' definitions and entries (kept across reloads).
    gauge_caches: Arc<Mutex<GaugeCaches>>,
}

/// Whether an object carries replicated gauge caches (`parameters = "gauge_cache"`).
fn carries_gauge_caches(s: &ObjectSettings) -> bool {
    s.kind.shape() == Shape::Series
        && !s.manager_only
        && s.parameters.iter().any(|p| p == "gauge_cache")
}

/// Which configured throttles an object enforces: OBTM the messages', OBTC the connections'.
fn outbound_kind(kind: ObjectKind) -> Option<ThrottleKind> {
    match kind {
        ObjectKind::Obtm => Some(ThrottleKind::Messages),
        ObjectKind::Obtc => Some(ThrottleKind::Connections),
        _ => None,
    }
}

impl Objects {
    fn get(&self, name: &str) -> Result<&Object, ReplicateError> {
        self.objects
            .get(name)
            .map(|o| &**o)
            .ok_or_else(|| ReplicateError::UnknownObject(name.to_string()))
    }

    /// This node's member id.
    pub fn me(&self) -> &MemberId {
        &self.me
    }

    /// The objects, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Object> {
        self.objects.values().map(|o| &**o)
    }

    /// One object's settings.
    pub fn settings(&self, name: &str) -> Result<&ObjectSettings, ReplicateError> {
        Ok(&self.get(name)?.settings)
    }

    /// Adds `delta` connections for `net` (an address as `/32` or `/128`, or a block) in CIDR
    /// tree `object` (`inbound_cidr`, `outbound_cidr`, ...).
    pub fn cidr_add(
        &self,
        object: &str,
        net: IpNet,
        delta: i64,
        now: Duration,
    ) -> Result<bool, ReplicateError> {
        let obj = self.get(object)?;
        if obj.settings.kind.shape() != Shape::CidrTree {
            return Err(obj.wrong("cidrtree"));
        }
        Ok(obj.local_add(Key::Net(net.trunc()), delta, now))
    }

    /// Connections inside netblock `net` in `view` of CIDR tree `object`: one lock-free walk.
    pub fn cidr_count(&self, object: &str, net: IpNet, view: View) -> Result<i64, ReplicateError> {
        let obj = self.get(object)?;
        let (local, global) = obj.sums("cidrtree")?;
        let sums = if view == View::Local { local } else { global };
        match sums {
            Sums::Cidr(tree) => Ok(tree.count(net.trunc())),
            Sums::Table(_) => Err(obj.wrong("cidrtree")),
        }
    }

    /// Adds `delta` to gauge `key` (a domain, or `binding::domain`) of gauge table `object`.
    pub fn gauge_add(
        &self,
        object: &str,
        key: &str,
        delta: i64,
        now: Duration,
    ) -> Result<bool, ReplicateError> {
        let obj = self.get(object)?;
        if obj.settings.kind.shape() != Shape::GaugeTable {
            return Err(obj.wrong("gauge table"));
        }
        check_len(key.len())?;
        Ok(obj.local_add(Key::Text(key.to_string()), delta, now))
    }

    /// Gauge `key` of gauge table `object` in `view`.
    pub fn gauge_get(&self, object: &str, key: &str, view: View) -> Result<i64, ReplicateError> {
        let obj = self.get(object)?;
        if obj.settings.kind.shape() != Shape::GaugeTable {
            return Err(obj.wrong("gauge table"));
        }
        let (local, global) = obj.sums("gauge table")?;
        let sums = if view == View::Local { local } else { global };
        Ok(sums.get(&Key::Text(key.to_string())))
    }

    /// `ec_shared_throttle_create`: defines throttle `name` in throttle object `object`
    /// (`shared_named_throttles`, `OBTM`, `OBTC`). Idempotent.
    pub fn throttle_create(
        &self,
        object: &str,
        name: &str,
        spec: ThrottleSpec,
        now: Duration,
    ) -> Result<(), ReplicateError> {
        check_len(name.len())?;
        let (throttles, global) = self.get(object)?.throttles()?;
        let usage = global.get(&Key::Text(name.to_string()));
        lock(throttles).create(name, spec, now, usage)?;
        Ok(())
    }

    fn throttle_roll(&self, obj: &Object, name: &str, now: Duration) -> Result<(), ReplicateError> {
        let (throttles, global) = obj.throttles()?;
        // A throttle the configuration defines (`cluster_outbound_throttle_*` for OBTM and
        // OBTC) exists from its first use, at the configured rate (a reload's new rate too).
        if let Some(spec) =
            outbound_kind(obj.settings.kind).and_then(|kind| self.outbound.named(kind, name))
        {
            let usage = global.get(&Key::Text(name.to_string()));
            lock(throttles).create(name, spec, now, usage)?;
        }
        let withdraw = lock(throttles).roll(name, now)?;
        if withdraw != 0 {
            obj.local_add(Key::Text(name.to_string()), withdraw, now);
        }
        Ok(())
    }

    /// `ec_shared_throttle_inc`: counts `n` events against throttle `name`.
    pub fn throttle_inc(
        &self,
        object: &str,
        name: &str,
        n: i64,
        now: Duration,
    ) -> Result<bool, ReplicateError> {
        let obj = self.get(object)?;
        self.throttle_roll(obj, name, now)?;
        let (throttles, _) = obj.throttles()?;
        lock(throttles).inc(name, n)?;
        Ok(obj.local_add(Key::Text(name.to_string()), n, now))
    }

    /// `ec_shared_throttle_check`: whether throttle `name` is over budget (see
    /// [`super::throttle`] for the algorithm).
    pub fn throttle_check(
        &self,
        object: &str,
        name: &str,
        now: Duration,
    ) -> Result<bool, ReplicateError> {
        let obj = self.get(object)?;
        self.throttle_roll(obj, name, now)?;
        let (throttles, global) = obj.throttles()?;
        let usage = global.get(&Key::Text(name.to_string()));
        Ok(lock(throttles).is_exceeded(name, usage)?)
    }

    /// `ec_shared_throttle_tarpit`: how long to delay when over budget (zero otherwise).
    pub fn throttle_tarpit(
        &self,
        object: &str,
        name: &str,
        now: Duration,
    ) -> Result<Duration, ReplicateError> {
        let obj = self.get(object)?;
        self.throttle_roll(obj, name, now)?;
        let (throttles, global) = obj.throttles()?;
        let usage = global.get(&Key::Text(name.to_string()));
        Ok(lock(throttles).tarpit(name, usage, now)?)
    }

    /// Cluster-wide usage of throttle `name` in the current window, as this node knows it.
    pub fn throttle_usage(&self, object: &str, name: &str) -> Result<i64, ReplicateError> {
        let (_, global) = self.get(object)?.throttles()?;
        Ok(global.get(&Key::Text(name.to_string())))
    }

    /// The object that carries replicated gauge caches: the first (by name) series object
    /// whose `parameters` hold `gauge_cache` and that goes to the nodes (not the manager alone).
    fn gauge_carrier(&self) -> Option<&Object> {
        self.objects
            .values()
            .find(|o| carries_gauge_caches(&o.settings))
            .map(|o| &**o)
    }

    /// Withdraws this node's contribution to replicated gauge cache entries (`cache@key`).
    fn gauge_withdraw(&self, carrier: &Object, keys: gauge_cache::Withdraw, now: Duration) -> bool {
        let mut due = false;
        if let State::Sums { local, .. } = &carrier.state {
            for k in keys {
                let key = Key::Text(k);
                let own = local.get(&key);
                if own != 0 {
                    due |= carrier.local_add(key, -own, now);
                }
            }
        }
        due
    }

    /// `ec_gauge_cache_init` / `msys.gauge_cache.define`: defines gauge cache `name` holding at
    /// most `max` entries, each dropped `ttl` after its last change (zero: never), replicated
    /// through the object whose `parameters` hold `gauge_cache` when `replicate`. Idempotent.
    pub fn gauge_cache_init(
        &self,
        name: &str,
        max: usize,
        ttl: Duration,
        replicate: bool,
    ) -> Result<(), ReplicateError> {
        check_len(name.len() + 1)?;
        if replicate && self.gauge_carrier().is_none() {
            return Err(GaugeCacheError::NotReplicated(name.to_string()).into());
        }
        let def = GaugeCacheDef {
            max,
            ttl,
            replicated: replicate,
        };
        lock(&self.gauge_caches).init(name, def)?;
        Ok(())
    }

    /// `ec_gauge_cache_inc` / `_dec`: adds `delta` to `key` of gauge cache `name`, creating it
    /// (and dropping the least recently changed entry when the cache is full). Returns whether
    /// the carrying object's batch became due.
    pub fn gauge_cache_add(
        &self,
        name: &str,
        key: &str,
        delta: i64,
        now: Duration,
    ) -> Result<bool, ReplicateError> {
        let text = gauge_cache::replicated_key(name, key);
        check_len(text.len())?;
        let mut caches = lock(&self.gauge_caches);
        let def = caches.def(name)?;
        let carrier = match def.replicated {
            true => Some(
                self.gauge_carrier()
                    .ok_or_else(|| GaugeCacheError::NotReplicated(name.to_string()))?,
            ),
            false => None,
        };
        let withdraw = caches.touch(name, key, delta, now)?;
        let Some(carrier) = carrier else {
            return Ok(false);
        };
        let due = self.gauge_withdraw(carrier, withdraw, now);
        Ok(carrier.local_add(Key::Text(text), delta, now) || due)
    }

    /// `ec_gauge_cache_get`: the value of `key` in gauge cache `name` (for a replicated cache,
    /// the sum over the live members); 0 when absent or expired.
    pub fn gauge_cache_get(
        &self,
        name: &str,
        key: &str,
        now: Duration,
    ) -> Result<i64, ReplicateError> {
        let caches = lock(&self.gauge_caches);
        let def = caches.def(name)?;
        let Some(value) = caches.get(name, key, now)? else {
            return Ok(0);
        };
        if !def.replicated {
            return Ok(value);
        }
        let carrier = self
            .gauge_carrier()
            .ok_or_else(|| GaugeCacheError::NotReplicated(name.to_string()))?;
        let (_, global) = carrier.sums("series")?;
        Ok(global.get(&Key::Text(gauge_cache::replicated_key(name, key))))
    }

    /// `msys.gauge_cache.remove_item`: forgets `key` of gauge cache `name` on this node (for a
    /// replicated cache, this node's contribution is withdrawn; other nodes keep theirs until
    /// the entry expires or is evicted there). Returns whether a batch became due.
    pub fn gauge_cache_remove(
        &self,
        name: &str,
        key: &str,
        now: Duration,
    ) -> Result<bool, ReplicateError> {
        let withdraw = lock(&self.gauge_caches).remove(name, key)?;
        Ok(match self.gauge_carrier() {
            Some(carrier) => self.gauge_withdraw(carrier, withdraw, now),
            None => false,
        })
    }

    /// The gauge caches defined on this node: name, definition, entries.
    pub fn gauge_caches(&self) -> Vec<(String, GaugeCacheDef, usize)> {
        lock(&self.gauge_caches).list()
    }

    /// The configured outbound throttle of `OBTM` / `OBTC` object `object` that applies to a
    /// message (connection) on `binding` to `domain` (see [`super::outbound`]), if any.
    pub fn outbound_throttle(
        &self,
        object: &str,
        binding: &str,
        domain: &str,
    ) -> Result<Option<String>, ReplicateError> {
        let obj = self.get(object)?;
        obj.throttles()?;
        let Some(kind) = outbound_kind(obj.settings.kind) else {
            return Err(obj.wrong("OBTM or OBTC"));
        };
        Ok(self
            .outbound
            .throttle(kind, binding, domain)
            .map(|(name, _)| name))
    }

    /// Whether a message (`OBTM`) or connection (`OBTC`) on `binding` to `domain` is over its
    /// configured cluster-wide throttle; `false` when no throttle applies.
    pub fn outbound_check(
        &self,
        object: &str,
        binding: &str,
        domain: &str,
        now: Duration,
    ) -> Result<bool, ReplicateError> {
        match self.outbound_throttle(object, binding, domain)? {
            Some(name) => self.throttle_check(object, &name, now),
            None => Ok(false),
        }
    }

    /// Counts `n` messages (connections) on `binding` to `domain` against their configured
    /// throttle; nothing when none applies. Returns whether the object's batch became due.
    pub fn outbound_inc(
        &self,
        object: &str,
        binding: &str,
        domain: &str,
        n: i64,
        now: Duration,
    ) -> Result<bool, ReplicateError> {
        match self.outbound_throttle(object, binding, domain)? {
            Some(name) => self.throttle_inc(object, &name, n, now),
            None => Ok(false),
        }
    }

    /// How long to delay a message (connection) on `binding` to `domain`: zero within budget or
    /// when no throttle applies.
    pub fn outbound_tarpit(
        &self,
        object: &str,
        binding: &str,
        domain: &str,
        now: Duration,
    ) -> Result<Duration, ReplicateError> {
        match self.outbound_throttle(object, binding, domain)? {
            Some(name) => self.throttle_tarpit(object, &name, now),
            None => Ok(Duration::ZERO),
        }
    }

    /// An outbound connection on `binding` to `domain` at `peer` opened (`delta` 1) or closed
    /// (-1): counted in every `outbound_cidr` object (the peer's address) and `outbound_domains`
    /// object (the domain) whose `binding_group` is absent or is the binding's group, and in
    /// every `outbound_binding_domains` object (`binding::domain`). Returns the names of the
    /// objects counted and whether a batch became due.
    pub fn outbound_connection(
        &self,
        binding: &str,
        domain: &str,
        peer: IpAddr,
        delta: i64,
        now: Duration,
    ) -> Result<(Vec<String>, bool), ReplicateError> {
        check_len(domain.len())?;
        let domain = domain.to_ascii_lowercase();
        // Every key first, so that a refused one leaves no count behind.
        let mut keyed = Vec::new();
        for obj in self.objects.values() {
            let s = &obj.settings;
            let key = match s.kind {
                ObjectKind::OutboundCidr
                    if self.outbound.counts(s.binding_group.as_deref(), binding) =>
                {
                    Key::Net(IpNet::from(peer))
                }
                ObjectKind::OutboundDomains
                    if self.outbound.counts(s.binding_group.as_deref(), binding) =>
                {
                    Key::Text(domain.clone())
                }
                ObjectKind::OutboundBindingDomains => {
                    let key = super::throttle::outbound_name(Some(binding), &domain);
                    check_len(key.len())?;
                    Key::Text(key)
                }
                _ => continue,
            };
            keyed.push((obj, key));
        }
        let mut counted = Vec::new();
        let mut due = false;
        for (obj, key) in keyed {
            due |= obj.local_add(key, delta, now);
            counted.push(obj.settings.name.clone());
        }
        Ok((counted, due))
    }

    /// `ec_cluster_cache_set`: writes `key` = `value` with `ttl` seconds to live (0 = never; see
    /// [`super::cache::parse_ttl`] for the documented strings).
    pub fn cache_set(
        &self,
        object: &str,
        key: &str,
        value: &[u8],
        ttl: u32,
        now: Duration,
    ) -> Result<bool, ReplicateError> {
        check_len(key.len())?;
        check_len(value.len())?;
        let obj = self.get(object)?;
        let store = obj.cache()?;
        let version = self.lamport.fetch_add(1, Ordering::AcqRel) + 1;
        lock(store).apply(key, value.to_vec(), version, &self.me, ttl, now);
        Ok(lock(&obj.pending).push(
            now,
            Update {
                key: Key::Text(key.to_string()),
                op: Op::Set {
                    version,
                    ttl,
                    value: value.to_vec(),
                    writer: None,
                },
            },
        ))
    }

    /// `ec_cluster_cache_get`: the value of `key`, if present and not expired.
    pub fn cache_get(
        &self,
        object: &str,
        key: &str,
        now: Duration,
    ) -> Result<Option<Vec<u8>>, ReplicateError> {
        let store = self.get(object)?.cache()?;
        Ok(lock(store).get(key, now))
    }

    /// `audit_series_add`: counts `amount` events of `series` for `item` at `now` (time since
    /// the Unix epoch) in series object `object`.
    pub fn series_add(
        &self,
        object: &str,
        series: &str,
        item: SeriesItem,
        amount: i64,
        now: Duration,
    ) -> Result<bool, ReplicateError> {
        check_len(series.len())?;
        let obj = self.get(object)?;
        if obj.settings.kind.shape() != Shape::Series {
            return Err(obj.wrong("time series"));
        }
        if !replicates_series(&obj.settings, series) {
            return Err(ReplicateError::NotReplicated {
                object: object.to_string(),
                series: series.to_string(),
            });
        }
        let item = match item {
            SeriesItem::Net(net) => SeriesItem::Net(net.trunc()),
            SeriesItem::Text(t) => {
                check_len(t.len())?;
                SeriesItem::Text(t)
            }
        };
        let bucket = series::bucket_len(&obj.settings.monitors);
        Ok(obj.local_add(series::key_at(series, item, now, bucket), amount, now))
    }

    /// `audit_series` / `count_cidr`: events of `series` for `target` (an address, a block
    /// holding addresses, or a string) in windows `period_start..=period_end` of `monitor`
    /// (0 = current window) at `now`.
    #[allow(clippy::too_many_arguments)]
    pub fn series_count(
        &self,
        object: &str,
        series: &str,
        target: &SeriesItem,
        monitor: Monitor,
        period_start: u32,
        period_end: u32,
        view: View,
        now: Duration,
    ) -> Result<i64, ReplicateError> {
        let obj = self.get(object)?;
        let (local, global) = obj.sums("time series")?;
        let Sums::Table(table) = (if view == View::Local { local } else { global }) else {
            return Err(obj.wrong("time series"));
        };
        let range = series::period_range(monitor, period_start, period_end, now);
        let entries = table.entries();
        Ok(series::sum(
            entries.iter().map(|(k, v)| (k, *v)),
            series,
            target,
            range,
        ))
    }
}

/// Whether `series` is enabled by the object's `parameters`: all of them when none is given;
/// otherwise a built-in series needs its parameter and a named series needs `audit_series`.
fn replicates_series(settings: &ObjectSettings, series: &str) -> bool {
    let p = &settings.parameters;
    let wanted = if series::BUILTIN_SERIES.contains(&series) {
        series
    } else {
        "audit_series"
    };
    p.is_empty() || p.iter().any(|x| x == wanted)
}

fn check_len(len: usize) -> Result<(), ReplicateError> {
    if len > super::wire::MAX_TEXT {
        return Err(ReplicateError::TooLong(len));
    }
    Ok(())
}

/// Where a message must go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Every member, FIFO per sender (the replication group).
    Cluster,
    /// The manager (eccmgr) only: `eccmgr_metrics`, `replicate = manager`.
    Manager,
}

/// One message for the transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Who receives it.
    pub destination: Destination,
    /// The encoded message, at most the configured MTU unless one update alone is larger.
    pub payload: Vec<u8>,
}

/// One object's replication counters, for benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObjectStats {
    /// Updates in produced messages.
    pub updates_out: u64,
    /// Bytes those updates and their section headers took.
    pub bytes_out: u64,
    /// Updates applied from other members.
    pub updates_in: u64,
}

/// Counters for `cluster shared` diagnostics and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages produced.
    pub messages_out: u64,
    /// Updates in produced messages.
    pub updates_out: u64,
    /// Messages applied.
    pub messages_in: u64,
    /// Updates applied.
    pub updates_in: u64,
    /// Messages dropped: malformed, or from outside the view.
    pub dropped: u64,
    /// Sections or updates ignored: unknown object, or a key of the wrong shape.
    pub ignored: u64,
    /// Snapshots sent.
    pub snapshots_out: u64,
    /// Replication lag of the stamped messages applied: from the oldest update in a message,
    /// on its sender's clock, to its application here.
    pub lag: LagHistogram,
}

/// Upper bounds, in seconds, of the [`LagHistogram`] buckets (Prometheus `le`; `+Inf` follows).
pub const LAG_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A fixed-bucket histogram of replication lags (the Prometheus shape: cumulative buckets are
/// computed when read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LagHistogram {
    /// Per [`LAG_BUCKETS`] bound, samples at most that bound and above the previous one; the
    /// last slot holds the samples above every bound.
    pub counts: [u64; LAG_BUCKETS.len() + 1],
    /// Sum of the samples, in nanoseconds.
    pub sum_nanos: u64,
    /// Samples.
    pub count: u64,
}

impl LagHistogram {
    /// Adds one sample.
    pub fn observe(&mut self, lag: Duration) {
        let secs = lag.as_secs_f64();
        let at = LAG_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LAG_BUCKETS.len());
        self.counts[at] += 1;
        self.sum_nanos = self
            .sum_nanos
            .saturating_add(u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX));
        self.count += 1;
    }

    /// `(le, cumulative count)` per bucket, `+Inf` last (as `f64::INFINITY`).
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        LAG_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts)
            .map(|(le, c)| {
                total += c;
                (le, total)
            })
            .collect()
    }
}

/// What [`Replicator::reconfigure`] did, by object name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconfigured {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Same object, new `max_delay` / `max_pending`.
    pub retuned: Vec<String>,
    /// Another type, parameters, `max_size` or binding group: a new, empty object.
    pub replaced: Vec<String>,
}

impl Reconfigured {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.retuned.is_empty()
            && self.replaced.is_empty()
    }
}

/// The sans-IO replication state machine of one node (see the module documentation).
///
/// Drive it with [`Replicator::handle_view`], [`Replicator::handle_message`] and
/// [`Replicator::handle_timeout`]; send what [`Replicator::poll_transmit`] yields; wake at
/// [`Replicator::poll_timeout`]. It never reads a clock or touches a socket.
#[derive(Debug)]
pub struct Replicator {
    objects: Arc<Objects>,
    view: Vec<MemberId>,
    /// Other live members' contributions, per object.
    members: BTreeMap<MemberId, BTreeMap<String, Contribution>>,
    /// This node's contribution as announced so far (sum objects), for snapshots.
    sent: BTreeMap<String, HashMap<Key, i64, foldhash::quality::RandomState>>,
    outbox: VecDeque<Transmit>,
    outbox_limit: usize,
    mtu: usize,
    is_manager: bool,
    stats: Stats,
    /// Per object: updates and bytes produced, updates applied.
    object_stats: BTreeMap<String, ObjectStats>,
}

impl Replicator {
    /// A replicator for member `me` with `settings` (one per `Replicate` scope), emitting
    /// messages of at most `mtu` bytes. `is_manager` is true on eccmgr, which also applies
    /// manager-only objects.
    pub fn new(
        me: MemberId,
        settings: Vec<ObjectSettings>,
        mtu: usize,
        is_manager: bool,
    ) -> Result<Replicator, ReplicateError> {
        let mut objects = BTreeMap::new();
        for s in settings {
            s.validate_name()?;
            if objects.contains_key(&s.name) {
                return Err(SettingsError::Duplicate(s.name).into());
            }
            objects.insert(s.name.clone(), Arc::new(Object::new(s)));
        }
        let sent = objects
            .values()
            .filter(|o| o.settings.kind.shape() != Shape::Cache)
            .map(|o| (o.settings.name.clone(), HashMap::default()))
            .collect();
        Ok(Replicator {
            objects: Arc::new(Objects {
                me,
                objects,
                lamport: Arc::new(AtomicU64::new(0)),
                outbound: Arc::new(Outbound::default()),
                gauge_caches: Arc::default(),
            }),
            view: Vec::new(),
            members: BTreeMap::new(),
            sent,
            outbox: VecDeque::new(),
            outbox_limit: DEFAULT_OUTBOX_LIMIT,
            mtu: mtu.max(64),
            is_manager,
            stats: Stats::default(),
            object_stats: BTreeMap::new(),
        })
    }

    /// The application handle. A reload ([`Replicator::reconfigure`]) replaces it: take it
    /// again after one to see added objects.
    pub fn objects(&self) -> &Arc<Objects> {
        &self.objects
    }

    /// Sets the bindings' groups and the outbound throttles (from the configuration, at start
    /// and on every reload). No object is replaced: a throttle's new rate applies from its next
    /// use, with the usage counted so far. Replaces the application handle, as a reload does.
    pub fn set_outbound(&mut self, outbound: Outbound) {
        if *self.objects.outbound == outbound {
            return;
        }
        self.objects = Arc::new(Objects {
            me: self.objects.me.clone(),
            objects: self.objects.objects.clone(),
            lamport: Arc::clone(&self.objects.lamport),
            outbound: Arc::new(outbound),
            gauge_caches: Arc::clone(&self.objects.gauge_caches),
        });
    }

    /// Applies a reloaded configuration's objects. An object whose settings differ only in
    /// `max_delay` / `max_pending` keeps its state and is retuned; any other change (type,
    /// parameters, `max_size`, binding group) replaces it with an empty object. A removed (or
    /// replaced) object's contribution leaves the cluster as on a leave: a section with RESET and
    /// no update tells every member to drop it. An added (or replaced) object asks every member
    /// for its contribution (a REQUEST section), so it converges without waiting for a view
    /// change. Pending batches go out first, under the old settings. Nothing changes on error.
    pub fn reconfigure(
        &mut self,
        now: Duration,
        settings: Vec<ObjectSettings>,
    ) -> Result<Reconfigured, ReplicateError> {
        let mut names = BTreeSet::new();
        for s in &settings {
            s.validate_name()?;
            if !names.insert(s.name.clone()) {
                return Err(SettingsError::Duplicate(s.name.clone()).into());
            }
        }
        self.flush(now);
        let mut done = Reconfigured::default();
        let mut objects = BTreeMap::new();
        let same_but_batching = |a: &ObjectSettings, b: &ObjectSettings| {
            let mut b = b.clone();
            b.max_delay = a.max_delay;
            b.max_pending = a.max_pending;
            *a == b
        };
        for s in settings {
            let name = s.name.clone();
            match self.objects.objects.get(&name) {
                Some(old) if same_but_batching(&old.settings, &s) => {
                    if old.batching() != (s.max_delay, s.max_pending) {
                        lock(&old.pending).retune(s.max_delay, s.max_pending);
                        done.retuned.push(name.clone());
                    }
                    objects.insert(name, Arc::clone(old));
                }
                Some(_) => {
                    done.replaced.push(name.clone());
                    objects.insert(name, Arc::new(Object::new(s)));
                }
                None => {
                    done.added.push(name.clone());
                    objects.insert(name, Arc::new(Object::new(s)));
                }
            }
        }
        done.removed = self
            .objects
            .objects
            .keys()
            .filter(|n| !objects.contains_key(*n))
            .cloned()
            .collect();
        let mut cluster = Packer::new(self.mtu);
        let mut manager = Packer::new(self.mtu);
        for name in done.removed.iter().chain(&done.replaced) {
            let old = &self.objects.objects[name];
            let packer = if old.settings.manager_only {
                &mut manager
            } else {
                &mut cluster
            };
            packer.begin(name, true);
            self.sent.remove(name);
            for contribution in self.members.values_mut() {
                contribution.remove(name);
            }
        }
        for name in done.added.iter().chain(&done.replaced) {
            let obj: &Arc<Object> = &objects[name];
            if obj.settings.kind.shape() != Shape::Cache {
                self.sent.insert(name.clone(), HashMap::default());
            }
            if obj.settings.manager_only {
                manager.request(name);
            } else {
                cluster.request(name);
            }
        }
        self.objects = Arc::new(Objects {
            me: self.objects.me.clone(),
            objects,
            lamport: Arc::clone(&self.objects.lamport),
            outbound: Arc::clone(&self.objects.outbound),
            gauge_caches: Arc::clone(&self.objects.gauge_caches),
        });
        self.queue(cluster, Destination::Cluster);
        self.queue(manager, Destination::Manager);
        Ok(done)
    }

    /// This node's member id.
    pub fn me(&self) -> &MemberId {
        &self.objects.me
    }

    /// The current view, as last given to [`Replicator::handle_view`].
    pub fn view(&self) -> &[MemberId] {
        &self.view
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Per object: updates and encoded bytes produced (section headers and updates; snapshots
    /// included), updates applied from other members.
    pub fn object_stats(&self) -> &BTreeMap<String, ObjectStats> {
        &self.object_stats
    }

    fn applies(&self, settings: &ObjectSettings) -> bool {
        !settings.manager_only || self.is_manager
    }

    /// Installs a new view (the agreed member list, this node included).
    ///
    /// Members that left lose their contribution. Whenever the view holds another member, every
    /// pending batch is flushed and a snapshot of this node's contribution is queued: not only
    /// for joiners, but because a member present before and after may have spent the time
    /// between in a partition this node never saw, having dropped this node's contribution.
    pub fn handle_view(&mut self, now: Duration, members: &[MemberId]) {
        let old: BTreeSet<MemberId> = self.view.iter().cloned().collect();
        let new: BTreeSet<MemberId> = members.iter().cloned().collect();
        let me = self.objects.me.clone();
        for gone in old.difference(&new) {
            self.drop_member(gone);
        }
        // Contributions of members we heard from but that are not in the view either.
        let strays: Vec<MemberId> = self
            .members
            .keys()
            .filter(|m| !new.contains(*m))
            .cloned()
            .collect();
        for stray in strays {
            self.drop_member(&stray);
        }
        let joined = new.iter().any(|m| !old.contains(m) && *m != me)
            || (!old.contains(&me) && new.len() > 1);
        // A member that is in both views may still have been away: after a partition this node
        // never noticed (its view went on with the same members), the other side dropped this
        // node's contribution and missed the batches sent meanwhile. Only a snapshot puts its
        // copy right, so one follows every view change with someone else in it.
        let resync = new.len() > 1;
        tracing::debug!(
            members = new.len(),
            left = old.difference(&new).count(),
            joined,
            "replication view installed"
        );
        self.view = members.to_vec();
        if resync && new.contains(&me) {
            self.flush(now);
            self.snapshot(now);
        }
    }

    fn drop_member(&mut self, member: &MemberId) {
        let Some(contribution) = self.members.remove(member) else {
            return;
        };
        for (name, sums) in contribution {
            let Ok(obj) = self.objects.get(&name) else {
                continue;
            };
            if let State::Sums { global, .. } = &obj.state {
                for (key, own) in sums.own_entries() {
                    global.add(&key, -own);
                }
            }
        }
    }

    fn snapshot(&mut self, now: Duration) {
        let mut cluster = Packer::new(self.mtu);
        let mut manager = Packer::new(self.mtu);
        let objects = Arc::clone(&self.objects);
        for obj in objects.objects.values() {
            if !obj.settings.snapshot {
                continue;
            }
            let packer = if obj.settings.manager_only {
                &mut manager
            } else {
                &mut cluster
            };
            self.snapshot_object(obj, packer, now);
        }
        self.queue(cluster, Destination::Cluster);
        self.queue(manager, Destination::Manager);
    }

    /// This node's contribution to `obj` into `packer`: sums as announced so far (after a RESET),
    /// cache entries as held.
    fn snapshot_object(&mut self, obj: &Object, packer: &mut Packer, now: Duration) {
        let name = &obj.settings.name;
        match &obj.state {
            State::Sums { .. } => {
                packer.begin(name, true);
                let mut entries: Vec<(&Key, &i64)> = self
                    .sent
                    .get(name)
                    .map(|m| m.iter().filter(|(_, v)| **v != 0).collect())
                    .unwrap_or_default();
                entries.sort();
                for (key, value) in entries {
                    packer.push(Update {
                        key: key.clone(),
                        op: Op::Add(*value),
                    });
                }
            }
            State::Cache(store) => {
                packer.begin(name, false);
                let me = &self.objects.me;
                for (key, entry) in lock(store).entries(now) {
                    let ttl = entry.ttl_left(now);
                    let writer = (entry.writer != *me).then(|| entry.writer.to_string());
                    packer.push(Update {
                        key: Key::Text(key),
                        op: Op::Set {
                            version: entry.version,
                            ttl,
                            value: entry.value,
                            writer,
                        },
                    });
                }
            }
        }
        self.stats.snapshots_out += 1;
    }

    fn queue(&mut self, packer: Packer, destination: Destination) {
        self.stats.updates_out += packer.updates() as u64;
        for tally in packer.tallies() {
            let out = self.object_stats.entry(tally.object.clone()).or_default();
            out.updates_out += tally.updates;
            out.bytes_out += tally.bytes;
        }
        for payload in packer.finish() {
            self.stats.messages_out += 1;
            self.outbox.push_back(Transmit {
                destination,
                payload,
            });
        }
    }

    /// Applies a message delivered by the transport from member `from`.
    ///
    /// A message this node sent itself is ignored (its updates were applied when made). A
    /// malformed message, or one from outside the view, is dropped whole and counted.
    pub fn handle_message(
        &mut self,
        now: Duration,
        from: &MemberId,
        bytes: &[u8],
    ) -> Result<(), ReplicateError> {
        if *from == self.objects.me {
            return Ok(());
        }
        if !self.view.contains(from) {
            self.stats.dropped += 1;
            tracing::debug!(%from, "replication message from outside the view dropped");
            return Err(ReplicateError::NotMember(from.clone()));
        }
        let message = match Message::parse_bytes(bytes) {
            Ok(m) => m,
            Err(source) => {
                self.stats.dropped += 1;
                tracing::warn!(%from, error = %source, "malformed replication message dropped");
                return Err(ReplicateError::Wire {
                    from: from.clone(),
                    source,
                });
            }
        };
        self.stats.messages_in += 1;
        if let Some(stamp) = message.stamp {
            // A sender's clock ahead of this one shows as no lag, never as a negative one.
            self.stats
                .lag
                .observe(now.saturating_sub(Duration::from_micros(stamp)));
        }
        let objects = Arc::clone(&self.objects);
        // One pin for the whole message rather than two per update.
        let guard = cidr::pin();
        let mut requested: Vec<Arc<Object>> = Vec::new();
        // Changes to replicated gauge cache entries: they age the entries here too.
        let mut gauge_changes: Vec<(String, i64)> = Vec::new();
        let carrier_name = objects.gauge_carrier().map(|o| o.settings.name.as_str());
        for section in message.sections {
            let Some(obj) = objects.objects.get(&section.object) else {
                self.stats.ignored += 1;
                continue;
            };
            if !self.applies(&obj.settings) {
                continue;
            }
            if section.request {
                // The sender created this object (a reload): it gets this node's contribution,
                // after the batches still pending here.
                requested.push(Arc::clone(obj));
            }
            let mut applied = 0u64;
            match &obj.state {
                State::Sums {
                    global, throttles, ..
                } => {
                    let contribution = self
                        .members
                        .entry(from.clone())
                        .or_default()
                        .entry(section.object.clone());
                    let sums = match contribution {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(e) => {
                            match Contribution::for_shape(obj.settings.kind.shape()) {
                                Some(s) => e.insert(s),
                                None => continue,
                            }
                        }
                    };
                    if section.reset {
                        for (key, own) in sums.own_entries() {
                            global.add(&key, -own);
                        }
                        sums.own.clear();
                    }
                    let carrier = carrier_name == Some(section.object.as_str());
                    for update in section.updates {
                        match update.op {
                            Op::Add(delta) if sums.add(&update.key, delta) => {
                                global.add_with(&update.key, delta, &guard);
                                self.stats.updates_in += 1;
                                applied += 1;
                                // A change that brings the sender's contribution to zero
                                // is (most likely) its withdrawal of an entry it dropped: it
                                // neither creates the entry here nor makes it younger.
                                if carrier
                                    && let Key::Text(t) = &update.key
                                    && sums.own.get(&update.key).is_some_and(|v| *v != 0)
                                {
                                    gauge_changes.push((t.clone(), delta));
                                }
                            }
                            _ => self.stats.ignored += 1,
                        }
                    }
                    if let Some(throttles) = throttles {
                        lock(throttles).exchange(|name| global.get(&Key::Text(name.to_string())));
                    }
                }
                State::Cache(store) => {
                    let mut store = lock(store);
                    for update in section.updates {
                        match (update.key, update.op) {
                            (
                                Key::Text(key),
                                Op::Set {
                                    version,
                                    ttl,
                                    value,
                                    writer,
                                },
                            ) => {
                                self.objects.lamport.fetch_max(version, Ordering::AcqRel);
                                let writer = writer.map_or_else(|| from.clone(), MemberId::new);
                                store.apply(&key, value, version, &writer, ttl, now);
                                self.stats.updates_in += 1;
                                applied += 1;
                            }
                            _ => self.stats.ignored += 1,
                        }
                    }
                }
            }
            if applied > 0 {
                let stats = self.object_stats.entry(section.object).or_default();
                stats.updates_in += applied;
            }
        }
        drop(guard);
        if !gauge_changes.is_empty() {
            let withdraw = {
                let mut caches = lock(&objects.gauge_caches);
                let mut withdraw = Vec::new();
                for (text, delta) in gauge_changes {
                    if let Some((cache, key)) = gauge_cache::split_key(&text)
                        && caches.def(cache).is_ok_and(|d| d.replicated)
                        && let Ok(w) = caches.touch(cache, key, delta, now)
                    {
                        withdraw.extend(w);
                    }
                }
                withdraw
            };
            if let Some(carrier) = objects.gauge_carrier() {
                objects.gauge_withdraw(carrier, withdraw, now);
            }
        }
        if !requested.is_empty() {
            self.flush(now);
            let mut cluster = Packer::new(self.mtu);
            let mut manager = Packer::new(self.mtu);
            for obj in requested {
                let packer = if obj.settings.manager_only {
                    &mut manager
                } else {
                    &mut cluster
                };
                self.snapshot_object(&obj, packer, now);
            }
            self.queue(cluster, Destination::Cluster);
            self.queue(manager, Destination::Manager);
        }
        Ok(())
    }

    /// Sends every due batch, rolls throttle windows, expires cache entries and old series
    /// buckets. While the outbox holds its limit of messages nothing new is queued: updates keep
    /// coalescing in their batchers (bounded by the number of distinct keys) until the driver
    /// drains [`Replicator::poll_transmit`].
    pub fn handle_timeout(&mut self, now: Duration) {
        for obj in self.objects.objects.values() {
            match &obj.state {
                State::Sums {
                    throttles: Some(throttles),
                    ..
                } => {
                    let rolled = lock(throttles).roll_all(now);
                    for (name, delta) in rolled {
                        obj.local_add(Key::Text(name), delta, now);
                    }
                }
                State::Cache(store) => lock(store).expire(now),
                State::Sums { .. } => {}
            }
        }
        self.expire_series(now);
        let withdraw = lock(&self.objects.gauge_caches).expire(now);
        if let Some(carrier) = self.objects.gauge_carrier() {
            self.objects.gauge_withdraw(carrier, withdraw, now);
        }
        self.send_due(now, false);
    }

    /// Sends every pending batch now, due or not (before a snapshot or a graceful leave).
    pub fn flush(&mut self, now: Duration) {
        self.send_due(now, true);
    }

    fn send_due(&mut self, now: Duration, all: bool) {
        // Back-pressure: the transport is behind, so let updates coalesce where they are. A
        // forced flush (snapshot, leave) goes regardless: it must precede what follows it.
        if !all && self.outbox.len() >= self.outbox_limit {
            return;
        }
        let mut cluster = Packer::new(self.mtu);
        let mut manager = Packer::new(self.mtu);
        for obj in self.objects.objects.values() {
            let batch = {
                let mut pending = lock(&obj.pending);
                if pending.poll_timeout().is_none() || (!all && !pending.is_due(now)) {
                    continue;
                }
                let oldest = pending.oldest();
                (pending.drain(), oldest)
            };
            let (batch, oldest) = batch;
            let name = &obj.settings.name;
            if let Some(sent) = self.sent.get_mut(name) {
                for update in &batch {
                    if let Op::Add(delta) = update.op {
                        let slot = sent.entry(update.key.clone()).or_insert(0);
                        *slot += delta;
                        if *slot == 0 {
                            sent.remove(&update.key);
                        }
                    }
                }
            }
            if let State::Sums {
                throttles: Some(throttles),
                global,
                ..
            } = &obj.state
            {
                lock(throttles).exchange(|n| global.get(&Key::Text(n.to_string())));
            }
            if batch.is_empty() {
                continue;
            }
            let packer = if obj.settings.manager_only {
                &mut manager
            } else {
                &mut cluster
            };
            if let Some(oldest) = oldest {
                packer.stamp(oldest);
            }
            packer.begin(name, false);
            for update in batch {
                packer.push(update);
            }
        }
        self.queue(cluster, Destination::Cluster);
        self.queue(manager, Destination::Manager);
    }

    fn expire_series(&mut self, now: Duration) {
        for obj in self.objects.objects.values() {
            if obj.settings.kind.shape() != Shape::Series {
                continue;
            }
            let horizon = series::horizon(&obj.settings.monitors, now);
            let keep = |k: &Key| !matches!(k, Key::Series { window, .. } if *window < horizon);
            if let State::Sums { local, global, .. } = &obj.state {
                for sums in [local, global] {
                    if let Sums::Table(t) = sums {
                        t.retain(keep);
                    }
                }
            }
            for contribution in self.members.values_mut() {
                if let Some(c) = contribution.get_mut(&obj.settings.name) {
                    c.own.retain(|k, _| keep(k));
                }
            }
            if let Some(sent) = self.sent.get_mut(&obj.settings.name) {
                sent.retain(|k, _| keep(k));
            }
        }
    }

    /// The earliest time at which [`Replicator::handle_timeout`] has work: the first batch
    /// deadline or the end of a throttle window this node has used. (Cache and series
    /// expiries are handled whenever it runs, and cache reads check expiry themselves.)
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.objects
            .objects
            .values()
            .flat_map(|o| {
                let roll = match &o.state {
                    State::Sums {
                        throttles: Some(t), ..
                    } => lock(t).next_roll(),
                    _ => None,
                };
                [lock(&o.pending).poll_timeout(), roll]
            })
            .flatten()
            .chain(lock(&self.objects.gauge_caches).next_expiry())
            .min()
    }

    /// The next message to send, in order.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// Bounds the outbox (default [`DEFAULT_OUTBOX_LIMIT`]); see [`Replicator::handle_timeout`].
    pub fn set_outbox_limit(&mut self, messages: usize) {
        self.outbox_limit = messages.max(1);
    }

    /// Messages waiting in the outbox.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// The rows of `object` in the global view, or in `member`'s contribution (this node's own
    /// contribution when `member` is this node).
    pub fn rows(
        &self,
        object: &str,
        member: Option<&MemberId>,
        now: Duration,
    ) -> Result<Rows, ReplicateError> {
        let obj = self.objects.get(object)?;
        match &obj.state {
            State::Sums { local, global, .. } => Ok(match member {
                None => global.rows(),
                Some(m) if *m == self.objects.me => local.rows(),
                Some(m) => match self.members.get(m).and_then(|c| c.get(object)) {
                    Some(sums) => sums.rows(),
                    None => Contribution::for_shape(obj.settings.kind.shape())
                        .map(|s| s.rows())
                        .unwrap_or(Rows::Table(Vec::new())),
                },
            }),
            State::Cache(store) => {
                let entries = lock(store).entries(now);
                Ok(Rows::Cache(match member {
                    None => entries,
                    Some(m) => entries
                        .into_iter()
                        .filter(|(_, e)| e.writer == *m)
                        .collect(),
                }))
            }
        }
    }

    /// Frees what zero counts hold: gauge keys back at zero everywhere, zero amounts of the
    /// other members' contributions (only this thread writes them),
    /// and in this node's own and global CIDR trees, which application threads write meanwhile,
    /// what [`CidrTree::prune`] removes (childless nodes and stride sums at zero). Counts are
    /// unchanged; call it from the driver now and then.
    pub fn compact(&mut self) {
        for obj in self.objects.objects.values() {
            if let State::Sums { local, global, .. } = &obj.state {
                for sums in [local, global] {
                    match sums {
                        Sums::Table(t) => t.retain_nonzero(),
                        Sums::Cidr(tree) => {
                            tree.prune();
                        }
                    }
                }
            }
        }
        for contribution in self.members.values_mut() {
            for c in contribution.values_mut() {
                c.own.retain(|_, v| *v != 0);
            }
        }
    }

    /// The kind of `object`.
    pub fn kind(&self, object: &str) -> Result<ObjectKind, ReplicateError> {
        Ok(self.objects.get(object)?.settings.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}

    #[test]
    fn application_handles_cross_threads() {
        // Applications share `Objects` between threads; the daemon may move the replicator.
        send_sync::<Objects>();
        send_sync::<CidrTree>();
        send::<Replicator>();
    }

    #[test]
    fn wrong_kinds_and_unknown_objects_are_errors() {
        let settings = vec![
            ObjectSettings::new("inbound_cidr", ObjectKind::InboundCidr),
            ObjectSettings::new("outbound_domains", ObjectKind::OutboundDomains),
        ];
        let r = Replicator::new(MemberId::new("m"), settings, 1400, false).unwrap();
        let o = r.objects();
        let now = Duration::ZERO;
        assert!(matches!(
            o.gauge_add("inbound_cidr", "x", 1, now),
            Err(ReplicateError::WrongKind { .. })
        ));
        assert!(matches!(
            o.cidr_add("nope", "10.0.0.0/8".parse().unwrap(), 1, now),
            Err(ReplicateError::UnknownObject(_))
        ));
        assert!(matches!(
            o.cache_get("outbound_domains", "k", now),
            Err(ReplicateError::WrongKind { .. })
        ));
        let dup = vec![
            ObjectSettings::new("inbound_cidr", ObjectKind::InboundCidr),
            ObjectSettings::new("inbound_cidr", ObjectKind::InboundCidr),
        ];
        assert!(Replicator::new(MemberId::new("m"), dup, 1400, false).is_err());
    }

    #[test]
    fn a_full_outbox_holds_updates_back_in_the_batchers() {
        let mut s = ObjectSettings::new("outbound_domains", ObjectKind::OutboundDomains);
        s.max_pending = 1;
        let mut r = Replicator::new(MemberId::new("a"), vec![s], 1400, false).unwrap();
        r.set_outbox_limit(2);
        let now = Duration::from_secs(1);
        for i in 0..5 {
            r.objects()
                .gauge_add("outbound_domains", &format!("d{i}"), 1, now)
                .unwrap();
            r.handle_timeout(now);
        }
        assert_eq!(r.outbox_len(), 2);
        // Drained, the rest goes out coalesced in one message.
        while r.poll_transmit().is_some() {}
        r.handle_timeout(now);
        let t = r.poll_transmit().unwrap();
        let m = crate::replicate::wire::Message::parse_bytes(&t.payload).unwrap();
        assert_eq!(m.sections[0].updates.len(), 3);
    }

    #[test]
    fn series_follow_the_parameters() {
        let mut metrics = ObjectSettings::new("metrics", ObjectKind::Metrics);
        metrics.parameters = vec!["connect".into(), "reception".into()];
        let r = Replicator::new(MemberId::new("m"), vec![metrics], 1400, false).unwrap();
        let o = r.objects();
        let ip = SeriesItem::Net("10.0.0.1/32".parse().unwrap());
        let now = Duration::from_secs(1_000);
        assert!(
            o.series_add("metrics", "connect", ip.clone(), 1, now)
                .is_ok()
        );
        assert!(matches!(
            o.series_add("metrics", "rejection", ip.clone(), 1, now),
            Err(ReplicateError::NotReplicated { .. })
        ));
        assert!(matches!(
            o.series_add("metrics", "my_series", ip, 1, now),
            Err(ReplicateError::NotReplicated { .. })
        ));
    }

    #[test]
    fn receivers_measure_the_lag_from_the_oldest_update() {
        let settings = || {
            vec![ObjectSettings::new(
                "outbound_domains",
                ObjectKind::OutboundDomains,
            )]
        };
        let (a, b) = (MemberId::new("a"), MemberId::new("b"));
        let mut ra = Replicator::new(a.clone(), settings(), 1400, false).unwrap();
        let mut rb = Replicator::new(b.clone(), settings(), 1400, false).unwrap();
        let t0 = Duration::from_secs(1_800_000_000);
        for r in [&mut ra, &mut rb] {
            r.handle_view(t0, &[a.clone(), b.clone()]);
            while r.poll_transmit().is_some() {}
        }
        // Two updates 4 ms apart, sent 60 ms after the first.
        let o = ra.objects();
        o.gauge_add("outbound_domains", "x", 1, t0).unwrap();
        o.gauge_add("outbound_domains", "y", 1, t0 + Duration::from_millis(4))
            .unwrap();
        ra.flush(t0 + Duration::from_millis(60));
        let t = ra.poll_transmit().expect("the batch");
        let m = crate::replicate::wire::Message::parse_bytes(&t.payload).unwrap();
        assert_eq!(
            m.stamp,
            Some(t0.as_micros() as u64),
            "the oldest update's time"
        );
        // Applied 80 ms after the first update: one sample of 80 ms.
        rb.handle_message(t0 + Duration::from_millis(80), &a, &t.payload)
            .unwrap();
        let lag = rb.stats().lag;
        assert_eq!(lag.count, 1);
        assert_eq!(lag.sum_nanos, 80_000_000);
        let cumulative = lag.cumulative();
        let le = |bound: f64| cumulative.iter().find(|(b, _)| *b == bound).unwrap().1;
        assert_eq!((le(0.05), le(0.1), le(f64::INFINITY)), (0, 1, 1));
        // A sender's clock ahead of the receiver's counts as no lag.
        ra.objects()
            .gauge_add("outbound_domains", "z", 1, t0 + Duration::from_secs(10))
            .unwrap();
        ra.flush(t0 + Duration::from_secs(10));
        let t = ra.poll_transmit().unwrap();
        rb.handle_message(t0 + Duration::from_secs(1), &a, &t.payload)
            .unwrap();
        let lag = rb.stats().lag;
        assert_eq!((lag.count, lag.counts[0]), (2, 1));
    }

    #[test]
    fn malformed_and_foreign_messages_are_dropped_and_counted() {
        let settings = vec![ObjectSettings::new("inbound_cidr", ObjectKind::InboundCidr)];
        let mut r = Replicator::new(MemberId::new("a"), settings, 1400, false).unwrap();
        let now = Duration::ZERO;
        r.handle_view(now, &[MemberId::new("a"), MemberId::new("b")]);
        assert!(matches!(
            r.handle_message(now, &MemberId::new("b"), b"CR\x01\x00\x00\x01\x05"),
            Err(ReplicateError::Wire { .. })
        ));
        assert!(matches!(
            r.handle_message(now, &MemberId::new("z"), b""),
            Err(ReplicateError::NotMember(_))
        ));
        assert_eq!(r.stats().dropped, 2);
    }
}
