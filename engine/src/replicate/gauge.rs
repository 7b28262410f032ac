//! Gauge tables: a concurrent map from a key to a signed gauge.
//!
//! `outbound_domains` and `outbound_binding_domains` count open outbound connections per domain
//! (or per `binding::domain`); each node owns its contribution and the global table is the sum.
//! The same table, keyed differently, carries throttle usage and series counts.

use std::hash::Hash;

use dashmap::DashMap;

/// Concurrent key → signed gauge map (sharded locks from dashmap; no global lock).
///
/// A key whose gauge returns to zero stays in the map until [`GaugeTable::retain_nonzero`]; it
/// is never printed.
#[derive(Debug)]
pub struct GaugeTable<K: Eq + Hash> {
    gauges: DashMap<K, i64, foldhash::quality::RandomState>,
}

impl<K: Eq + Hash + Clone + Ord> Default for GaugeTable<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash + Clone + Ord> GaugeTable<K> {
    /// An empty table.
    pub fn new() -> Self {
        GaugeTable {
            gauges: DashMap::default(),
        }
    }

    /// Adds `delta` to `key`'s gauge (creating it at zero) and returns the new value.
    pub fn add(&self, key: &K, delta: i64) -> i64 {
        if let Some(mut gauge) = self.gauges.get_mut(key) {
            *gauge += delta;
            return *gauge;
        }
        let mut gauge = self.gauges.entry(key.clone()).or_insert(0);
        *gauge += delta;
        *gauge
    }

    /// The gauge of `key` (zero when absent).
    pub fn get(&self, key: &K) -> i64 {
        self.gauges.get(key).map(|g| *g).unwrap_or(0)
    }

    /// Sets `key`'s gauge to `value`, returning the previous value.
    pub fn set(&self, key: &K, value: i64) -> i64 {
        self.gauges.insert(key.clone(), value).unwrap_or(0)
    }

    /// Non-zero gauges sorted by key.
    pub fn entries(&self) -> Vec<(K, i64)> {
        let mut out: Vec<(K, i64)> = self
            .gauges
            .iter()
            .filter(|e| *e.value() != 0)
            .map(|e| (e.key().clone(), *e.value()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Drops zero gauges (bounded memory for tables whose keys come and go).
    pub fn retain_nonzero(&self) {
        self.gauges.retain(|_, v| *v != 0);
    }

    /// Drops every gauge whose key fails `keep`.
    pub fn retain(&self, mut keep: impl FnMut(&K) -> bool) {
        self.gauges.retain(|k, _| keep(k));
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
}
