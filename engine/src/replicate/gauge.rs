//! Gauge tables: a concurrent map from a key to a signed gauge.
//!
//! `outbound_domains` and `outbound_binding_domains` count open outbound connections per domain
//! (or per `binding::domain`); each node owns its contribution and the global table is the sum.
//! The same table, keyed differently, carries throttle usage and series counts.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

use super::cidr::{FROZEN, freeze_zero, pack, try_add_word, unpack};

type Table<K> = papaya::HashMap<K, AtomicU64, foldhash::quality::RandomState>;

/// Concurrent key → signed gauge map, lock-free: a [`papaya`] table of counter words, each
/// added to with a CAS.
///
/// A key whose gauge returns to zero stays in the map until [`GaugeTable::retain_nonzero`]; it
/// is never printed. Removing a gauge first *freezes* its word (the frozen bit, by CAS), so an
/// addition racing the removal fails on the frozen word, finishes the removal and adds to a fresh
/// gauge: nothing is lost, nothing waits.
#[derive(Debug)]
pub struct GaugeTable<K: Eq + Hash> {
    gauges: Table<K>,
}

impl<K: Eq + Hash + Clone + Ord + Send + Sync> Default for GaugeTable<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash + Clone + Ord + Send + Sync> GaugeTable<K> {
    /// An empty table.
    pub fn new() -> Self {
        GaugeTable {
            // Blocking resizes: an incremental one moves entries only on writes (see cidr.rs).
            gauges: papaya::HashMap::builder()
                .hasher(foldhash::quality::RandomState::default())
                .resize_mode(papaya::ResizeMode::Blocking)
                .build(),
        }
    }

    /// Adds `delta` to `key`'s gauge (creating it at zero) and returns the new value.
    pub fn add(&self, key: &K, delta: i64) -> i64 {
        let table = self.gauges.pin();
        loop {
            let word = match table.get(key) {
                Some(w) => w,
                None => table.get_or_insert_with(key.clone(), || AtomicU64::new(pack(0))),
            };
            if try_add_word(word, delta) {
                return unpack(word.load(Ordering::Acquire));
            }
            // Frozen for removal: finish it and add to a fresh gauge.
            let _ = table.remove_if(key, |_, now| std::ptr::eq(now, word));
        }
    }

    /// The gauge of `key` (zero when absent).
    pub fn get(&self, key: &K) -> i64 {
        self.gauges
            .pin()
            .get(key)
            .map_or(0, |w| unpack(w.load(Ordering::Acquire)))
    }

    /// Sets `key`'s gauge to `value`, returning the previous value.
    pub fn set(&self, key: &K, value: i64) -> i64 {
        let table = self.gauges.pin();
        loop {
            let word = match table.get(key) {
                Some(w) => w,
                None => table.get_or_insert_with(key.clone(), || AtomicU64::new(pack(0))),
            };
            let seen = word.load(Ordering::Acquire);
            if seen & FROZEN != 0 {
                let _ = table.remove_if(key, |_, now| std::ptr::eq(now, word));
                continue;
            }
            if word
                .compare_exchange(seen, pack(value), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return unpack(seen);
            }
        }
    }

    /// Non-zero gauges sorted by key.
    pub fn entries(&self) -> Vec<(K, i64)> {
        let table = self.gauges.pin();
        let mut out: Vec<(K, i64)> = table
            .iter()
            .map(|(k, w)| (k.clone(), unpack(w.load(Ordering::Acquire))))
            .filter(|(_, v)| *v != 0)
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Drops zero gauges (bounded memory for tables whose keys come and go): each is frozen at
    /// exactly zero, then removed.
    pub fn retain_nonzero(&self) {
        let table = self.gauges.pin();
        for (key, word) in table.iter() {
            if freeze_zero(word) {
                let _ = table.remove_if(key, |_, now| std::ptr::eq(now, word));
            }
        }
    }

    /// Drops every gauge whose key fails `keep` (an addition racing it lands in a fresh gauge).
    pub fn retain(&self, mut keep: impl FnMut(&K) -> bool) {
        let table = self.gauges.pin();
        for (key, word) in table.iter() {
            if !keep(key) {
                word.fetch_or(FROZEN, Ordering::AcqRel);
                let _ = table.remove_if(key, |_, now| std::ptr::eq(now, word));
            }
        }
    }

    /// Number of keys held, zeros included.
    pub fn len(&self) -> usize {
        self.gauges.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.gauges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    #[test]
    fn renders_the_outbound_domain_sample_byte_for_byte() {
        let table = GaugeTable::new();
        for (domain, n) in [
            ("yahoo.com", 65),
            ("hotmail.com", 246),
            ("aol.com", 10),
            ("omniti.com", 5),
            ("bellsouth.net", 23),
            ("closed.example", 0),
        ] {
            table.add(&domain.to_string(), n);
        }
        let sample = "                                                     aol.com:           10
                                               bellsouth.net:           23
                                                 hotmail.com:          246
                                                  omniti.com:            5
                                                   yahoo.com:           65
";
        let want: Vec<(String, i64)> = sample
            .lines()
            .map(|l| {
                let (k, v) = l.split_once(':').expect("key: value");
                (k.trim().to_string(), v.trim().parse().expect("value"))
            })
            .collect();
        assert_eq!(table.entries(), want);
    }

    #[test]
    fn concurrent_adds_sum_exactly() {
        let table = Arc::new(GaugeTable::<String>::new());
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let table = Arc::clone(&table);
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        table.add(
                            &format!("d{}.example", i % 17),
                            if t % 2 == 0 { 2 } else { -1 },
                        );
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let total: i64 = table.entries().iter().map(|(_, v)| v).sum();
        assert_eq!(total, 2 * 10_000 * 2 - 2 * 10_000);
        table.add(&"gone".to_string(), 1);
        table.add(&"gone".to_string(), -1);
        table.retain_nonzero();
        assert_eq!(table.get(&"gone".to_string()), 0);
        assert_eq!(table.len(), 17);
    }

    /// Removals of zero gauges race additions to the same keys: no addition is lost.
    #[test]
    fn adds_racing_removals_lose_nothing() {
        let table = Arc::new(GaugeTable::<u32>::new());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pruner = {
            let (table, stop) = (Arc::clone(&table), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    table.retain_nonzero();
                }
            })
        };
        let writers: Vec<_> = (0..3u32)
            .map(|t| {
                let table = Arc::clone(&table);
                std::thread::spawn(move || {
                    // Pairs that cancel keep sending gauges back to zero; one in eight stays.
                    for i in 0..30_000u32 {
                        let key = (i * 7 + t) % 16;
                        table.add(&key, 1);
                        if i % 8 != 0 {
                            table.add(&key, -1);
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        pruner.join().unwrap();
        let total: i64 = table.entries().iter().map(|(_, v)| v).sum();
        assert_eq!(total, 3 * 30_000 / 8);
        table.set(&3, 5);
        table.retain(|k| *k != 3);
        assert_eq!(table.get(&3), 0);
    }
}
