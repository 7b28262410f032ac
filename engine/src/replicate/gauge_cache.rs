//! Gauge caches (`ec_gauge_cache_init` / `msys.gauge_cache.define`): named collections of
//! counters with a bound on their entries and a time to live since each entry's last change.
//!
//! A cache is defined on each node with its name, its maximum number of entries, its TTL and
//! whether it is replicated. A local cache lives here whole. A replicated one keeps its values in
//! the replicated object whose `parameters` hold `gauge_cache` (Momentum's
//! `Replicate "metrics" { parameters = "gauge_cache" }`), as gauge keys `cache@key`: increments
//! and decrements travel to every node like any other update and the value read is the sum over
//! the live members. This table keeps what the value alone cannot say: when each entry last
//! changed, on this node or on another (every node sees every change, so they age entries
//! alike), hence which entries expire or are the oldest when the cache is full. An entry that
//! expires or is evicted is forgotten here and, for a replicated cache, this node withdraws its
//! own contribution to it; reads see it absent from then on. A remote change that brings its
//! sender's contribution to zero is taken for such a withdrawal: it neither creates the entry
//! nor makes it younger here (so a decrement to exactly zero does not refresh the entry on the
//! other nodes, only on its own).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// What `init` says of one cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GaugeCacheDef {
    /// At most this many entries; adding one more drops the entry changed least recently.
    pub max: usize,
    /// An entry not changed for this long is dropped; zero keeps entries until evicted.
    pub ttl: Duration,
    /// Increments and decrements go to every node.
    pub replicated: bool,
}

/// Why a gauge cache operation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GaugeCacheError {
    /// `add`/`get` before `init`.
    #[error("no gauge cache named {0:?} (define it with init first)")]
    Unknown(String),
    /// A name the replicated keys could not carry.
    #[error("gauge cache name {0:?} must be non-empty and hold no '@'")]
    Name(String),
    /// An empty key (Momentum's changelog #3722: a zero-length key crashed it).
    #[error("a gauge cache key must not be empty")]
    EmptyKey,
    /// A replicated cache without a carrying object.
    #[error(
        "gauge cache {0:?} is replicated, but no Replicate scope has parameters = \"gauge_cache\""
    )]
    NotReplicated(String),
    /// `max` of zero.
    #[error("a gauge cache holds at least one entry")]
    Empty,
}

/// The key a replicated cache's entry has in its carrying object.
pub fn replicated_key(cache: &str, key: &str) -> String {
    format!("{cache}@{key}")
}

/// The cache and key of a carrying object's key, if it is one.
pub fn split_key(text: &str) -> Option<(&str, &str)> {
    text.split_once('@')
}

#[derive(Debug, Default)]
struct Cache {
    def: Option<GaugeCacheDef>,
    /// Key -> (value for a local cache, last change).
    entries: HashMap<String, (i64, Duration)>,
}

/// Every gauge cache of one node (definitions, local values, last changes).
#[derive(Debug, Default)]
pub struct GaugeCaches {
    caches: BTreeMap<String, Cache>,
    /// No entry expires before this (a lower bound, refined when reached).
    next_expiry: Option<Duration>,
}

/// What the caller must do after an operation: withdraw this node's contribution to these
/// replicated entries (`cache@key`) from the carrying object.
pub type Withdraw = Vec<String>;

impl GaugeCaches {
    /// Defines (or redefines) cache `name`. Idempotent, as scripts call it per message.
    pub fn init(&mut self, name: &str, def: GaugeCacheDef) -> Result<(), GaugeCacheError> {
        if name.is_empty() || name.contains('@') {
            return Err(GaugeCacheError::Name(name.to_string()));
        }
        if def.max == 0 {
            return Err(GaugeCacheError::Empty);
        }
        let cache = self.caches.entry(name.to_string()).or_default();
        cache.def = Some(def);
        self.next_expiry = None;
        Ok(())
    }

    /// The definition of `name`.
    pub fn def(&self, name: &str) -> Result<GaugeCacheDef, GaugeCacheError> {
        self.caches
            .get(name)
            .and_then(|c| c.def)
            .ok_or_else(|| GaugeCacheError::Unknown(name.to_string()))
    }

    /// Records a change of `key` by `delta` at `now` (this node's, or another's for a
    /// replicated cache); a new entry in a full cache drops the entry changed least recently.
    /// Returns the replicated entries this node must withdraw from.
    pub fn touch(
        &mut self,
        name: &str,
        key: &str,
        delta: i64,
        now: Duration,
    ) -> Result<Withdraw, GaugeCacheError> {
        if key.is_empty() {
            return Err(GaugeCacheError::EmptyKey);
        }
        let cache = self
            .caches
            .get_mut(name)
            .filter(|c| c.def.is_some())
            .ok_or_else(|| GaugeCacheError::Unknown(name.to_string()))?;
        let def = cache.def.unwrap_or(GaugeCacheDef {
            max: 1,
            ttl: Duration::ZERO,
            replicated: false,
        });
        let mut withdraw = Vec::new();
        if !cache.entries.contains_key(key) {
            while cache.entries.len() >= def.max {
                let Some(oldest) = cache
                    .entries
                    .iter()
                    .min_by_key(|(k, (_, last))| (*last, (*k).clone()))
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                cache.entries.remove(&oldest);
                if def.replicated {
                    withdraw.push(replicated_key(name, &oldest));
                }
            }
        }
        let entry = cache.entries.entry(key.to_string()).or_insert((0, now));
        entry.0 = entry.0.wrapping_add(delta);
        entry.1 = entry.1.max(now);
        if !def.ttl.is_zero() {
            let at = now + def.ttl;
            self.next_expiry = Some(self.next_expiry.map_or(at, |n| n.min(at)));
        }
        Ok(withdraw)
    }

    /// Whether `key` of `name` is present (not expired at `now`), and its local value (the
    /// value of a local cache; a replicated cache's is read from the carrying object).
    pub fn get(
        &self,
        name: &str,
        key: &str,
        now: Duration,
    ) -> Result<Option<i64>, GaugeCacheError> {
        let def = self.def(name)?;
        Ok(self.caches[name]
            .entries
            .get(key)
            .filter(|(_, last)| def.ttl.is_zero() || now < *last + def.ttl)
            .map(|(v, _)| *v))
    }

    /// Forgets `key` of `name` (`remove_item`); returns the replicated entry to withdraw.
    pub fn remove(&mut self, name: &str, key: &str) -> Result<Withdraw, GaugeCacheError> {
        let def = self.def(name)?;
        let removed = self
            .caches
            .get_mut(name)
            .and_then(|c| c.entries.remove(key));
        Ok(match removed {
            Some(_) if def.replicated => vec![replicated_key(name, key)],
            _ => Vec::new(),
        })
    }

    /// Drops the entries whose TTL ran out by `now`; returns the replicated ones to withdraw.
    pub fn expire(&mut self, now: Duration) -> Withdraw {
        if self.next_expiry.is_some_and(|n| now < n) {
            return Vec::new();
        }
        let mut withdraw = Vec::new();
        let mut next: Option<Duration> = None;
        for (name, cache) in &mut self.caches {
            let Some(def) = cache.def.filter(|d| !d.ttl.is_zero()) else {
                continue;
            };
            cache.entries.retain(|key, (_, last)| {
                let at = *last + def.ttl;
                if now >= at {
                    if def.replicated {
                        withdraw.push(replicated_key(name, key));
                    }
                    false
                } else {
                    next = Some(next.map_or(at, |n| n.min(at)));
                    true
                }
            });
        }
        self.next_expiry = next;
        withdraw
    }

    /// When the next entry may expire.
    pub fn next_expiry(&self) -> Option<Duration> {
        self.next_expiry
    }

    /// Defined caches, sorted, with their entry counts.
    pub fn list(&self) -> Vec<(String, GaugeCacheDef, usize)> {
        self.caches
            .iter()
            .filter_map(|(n, c)| Some((n.clone(), c.def?, c.entries.len())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(max: usize, ttl: u64, replicated: bool) -> GaugeCacheDef {
        GaugeCacheDef {
            max,
            ttl: Duration::from_secs(ttl),
            replicated,
        }
    }

    #[test]
    fn ttl_since_the_last_change_and_the_oldest_entry_dropped_when_full() {
        let mut g = GaugeCaches::default();
        let t = |s: u64| Duration::from_secs(1000 + s);
        assert_eq!(
            g.touch("c", "k", 1, t(0)),
            Err(GaugeCacheError::Unknown("c".into()))
        );
        assert!(g.init("a@b", def(2, 10, false)).is_err());
        assert_eq!(g.init("c", def(0, 10, false)), Err(GaugeCacheError::Empty));
        g.init("c", def(2, 10, false)).unwrap();
        assert_eq!(g.touch("c", "", 1, t(0)), Err(GaugeCacheError::EmptyKey));
        g.touch("c", "k1", 3, t(0)).unwrap();
        g.touch("c", "k2", 1, t(1)).unwrap();
        g.touch("c", "k1", -1, t(2)).unwrap();
        assert_eq!(g.get("c", "k1", t(2)).unwrap(), Some(2));
        // Full: k2 changed least recently and goes.
        assert!(g.touch("c", "k3", 5, t(3)).unwrap().is_empty());
        assert_eq!(g.get("c", "k2", t(3)).unwrap(), None);
        // k1 last changed at 2: gone at 12, k3 (3) still there.
        assert_eq!(g.get("c", "k1", t(12)).unwrap(), None);
        assert!(g.expire(t(11)).is_empty());
        assert_eq!(g.list()[0].2, 2);
        g.expire(t(12));
        assert_eq!(g.list()[0].2, 1);
        assert_eq!(g.get("c", "k3", t(12)).unwrap(), Some(5));
        assert_eq!(g.next_expiry(), Some(t(13)));
    }

    #[test]
    fn replicated_entries_that_go_are_withdrawn() {
        let mut g = GaugeCaches::default();
        let t = |s: u64| Duration::from_secs(1000 + s);
        g.init("r", def(1, 5, true)).unwrap();
        g.touch("r", "a", 1, t(0)).unwrap();
        assert_eq!(g.touch("r", "b", 1, t(1)).unwrap(), ["r@a"]);
        assert_eq!(g.expire(t(6)), ["r@b"]);
        g.touch("r", "c", 1, t(7)).unwrap();
        assert_eq!(g.remove("r", "c").unwrap(), ["r@c"]);
        assert!(g.remove("r", "c").unwrap().is_empty());
        assert_eq!(split_key("r@x@y"), Some(("r", "x@y")));
    }
}
