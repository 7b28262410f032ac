//! Replicated caches (`Replicate "name" { type = "cache" }`): key/value with TTL and LRU.
//!
//! Every write carries a Lamport version; a replica keeps, per key, the write with the greatest
//! `(version, writer)`, so replicas that have received the same writes hold the same entry
//! whatever order they arrived in. Expiry and LRU eviction are local decisions: each node frees
//! its own memory, and a later write brings the key back everywhere.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::member::MemberId;

/// A `ttl` string that is not seconds, `<n>M` or `<n>H`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ttl {0:?} is not a number of seconds, or of minutes/hours ending in M/H")]
pub struct TtlError(pub String);

/// Parses `ec_cluster_cache_set`'s `ttl`: seconds, or minutes/hours with an `M`/`H` suffix;
/// `"0"` never expires (returned as 0).
pub fn parse_ttl(text: &str) -> Result<u32, TtlError> {
    let bad = || TtlError(text.to_string());
    let t = text.trim();
    let (digits, unit) = match t.as_bytes().last() {
        Some(b'H' | b'h') => (&t[..t.len() - 1], 3600u64),
        Some(b'M' | b'm') => (&t[..t.len() - 1], 60),
        _ => (t, 1),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    u32::try_from(n.checked_mul(unit).ok_or_else(bad)?).map_err(|_| bad())
}

/// One cached value and the write that produced it (equality ignores local LRU bookkeeping).
#[derive(Debug, Clone)]
pub struct CacheEntry {
    /// The value bytes.
    pub value: Vec<u8>,
    /// Lamport version of the write.
    pub version: u64,
    /// Member that wrote it.
    pub writer: MemberId,
    /// When it expires on this node; `None` never.
    pub expires: Option<Duration>,
    tick: u64,
}

impl PartialEq for CacheEntry {
    fn eq(&self, other: &Self) -> bool {
        (&self.value, self.version, &self.writer, self.expires)
            == (&other.value, other.version, &other.writer, other.expires)
    }
}

impl Eq for CacheEntry {}

impl CacheEntry {
    /// Seconds left at `now` as a wire ttl (0 = never; an expired entry reports 1).
    pub fn ttl_left(&self, now: Duration) -> u32 {
        match self.expires {
            None => 0,
            Some(at) => {
                let left = at.saturating_sub(now).as_secs().max(1);
                u32::try_from(left).unwrap_or(u32::MAX)
            }
        }
    }
}

/// A bounded LRU key/value store with last-writer-wins merging.
#[derive(Debug, Default)]
pub struct CacheStore {
    entries: HashMap<String, CacheEntry>,
    lru: BTreeMap<u64, String>,
    tick: u64,
    max_size: Option<usize>,
}

impl CacheStore {
    /// A store holding at most `max_size` keys (`None`: unbounded, Momentum's `-1`).
    pub fn new(max_size: Option<usize>) -> CacheStore {
        CacheStore {
            max_size,
            ..CacheStore::default()
        }
    }

    fn touch(&mut self, key: &str) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(entry) = self.entries.get_mut(key) {
            self.lru.remove(&entry.tick);
            entry.tick = tick;
            self.lru.insert(tick, key.to_string());
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.lru.remove(&entry.tick);
        }
    }

    /// The value of `key` at `now`, refreshing its LRU position; expired entries are dropped.
    pub fn get(&mut self, key: &str, now: Duration) -> Option<Vec<u8>> {
        let expired = self.entries.get(key)?.expires.is_some_and(|at| at <= now);
        if expired {
            self.remove(key);
            return None;
        }
        self.touch(key);
        self.entries.get(key).map(|e| e.value.clone())
    }

    /// Applies a write unless the store holds a newer one; returns whether it was applied.
    /// `ttl` counts from `now` (0 = never expires).
    pub fn apply(
        &mut self,
        key: &str,
        value: Vec<u8>,
        version: u64,
        writer: &MemberId,
        ttl: u32,
        now: Duration,
    ) -> bool {
        if let Some(existing) = self.entries.get(key)
            && (existing.version, &existing.writer) >= (version, writer)
        {
            return false;
        }
        let expires = (ttl != 0).then(|| now + Duration::from_secs(u64::from(ttl)));
        self.remove(key);
        self.entries.insert(
            key.to_string(),
            CacheEntry {
                value,
                version,
                writer: writer.clone(),
                expires,
                tick: 0,
            },
        );
        self.touch(key);
        self.evict();
        true
    }

    fn evict(&mut self) {
        let Some(max) = self.max_size else { return };
        while self.entries.len() > max {
            let Some((_, key)) = self.lru.pop_first() else {
                return;
            };
            self.entries.remove(&key);
        }
    }

    /// Drops entries expired at `now`.
    pub fn expire(&mut self, now: Duration) {
        let dead: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires.is_some_and(|at| at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in dead {
            self.remove(&key);
        }
    }

    /// Live entries at `now`, sorted by key.
    pub fn entries(&self, now: Duration) -> Vec<(String, CacheEntry)> {
        let mut out: Vec<(String, CacheEntry)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires.is_none_or(|at| at > now))
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_strings() {
        assert_eq!(parse_ttl("0"), Ok(0));
        assert_eq!(parse_ttl("45"), Ok(45));
        assert_eq!(parse_ttl("5M"), Ok(300));
        assert_eq!(parse_ttl("2H"), Ok(7200));
        assert!(parse_ttl("H").is_err());
        assert!(parse_ttl("-1").is_err());
        assert!(parse_ttl("99999999999H").is_err());
    }

    #[test]
    fn newest_write_wins_in_any_order() {
        let a = MemberId::new("#a#n1");
        let b = MemberId::new("#b#n2");
        let t = Duration::from_secs(1);
        let mut one = CacheStore::new(None);
        let mut two = CacheStore::new(None);
        one.apply("k", b"x".to_vec(), 3, &a, 0, t);
        one.apply("k", b"y".to_vec(), 3, &b, 0, t);
        two.apply("k", b"y".to_vec(), 3, &b, 0, t);
        assert!(!two.apply("k", b"x".to_vec(), 3, &a, 0, t));
        assert_eq!(one.get("k", t), Some(b"y".to_vec()));
        assert_eq!(one.entries(t), two.entries(t));
    }

    #[test]
    fn expires_and_evicts_least_recently_used() {
        let w = MemberId::new("w");
        let mut c = CacheStore::new(Some(2));
        let t = Duration::from_secs(100);
        c.apply("a", b"1".to_vec(), 1, &w, 10, t);
        c.apply("b", b"2".to_vec(), 2, &w, 0, t);
        assert_eq!(c.get("a", t), Some(b"1".to_vec()));
        c.apply("c", b"3".to_vec(), 3, &w, 0, t);
        // "b" was least recently used.
        assert_eq!(c.get("b", t), None);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("a", t + Duration::from_secs(10)), None);
        assert_eq!(
            c.get("c", t + Duration::from_secs(1000)),
            Some(b"3".to_vec())
        );
    }
}
