//! Momentum's "lazy" replication: updates are coalesced per key and sent in batches.
//!
//! A [`Batcher`] holds the updates of one `Replicate` scope that have not been sent yet. Adds to
//! one key collapse into their net delta; cache writes to one key collapse into the newest. The
//! batch is due when `max_pending` updates have been buffered (counting every update, before
//! coalescing) or when the oldest buffered update has waited `max_delay`, whichever comes first.
//! A batch whose deltas all cancel sends nothing.
//!
//! Sans-IO: time is a `Duration` since an arbitrary epoch passed in by the caller; nothing here
//! reads a clock, and nothing here sends.

use std::collections::HashMap;
use std::time::Duration;

use super::update::{Key, Op, Update};

/// Pending updates of one object and the rule that says when they must go.
#[derive(Debug)]
pub struct Batcher {
    max_delay: Duration,
    max_pending: usize,
    /// Net delta, or newest cache write, per key; `order` keeps first-seen order for the wire.
    /// foldhash: the map is probed once per update, and SipHash showed in profiles.
    pending: HashMap<Key, Op, foldhash::quality::RandomState>,
    order: Vec<Key>,
    /// Updates pushed since the last drain (before coalescing).
    buffered: usize,
    /// When the oldest buffered update was pushed.
    since: Option<Duration>,
}

impl Batcher {
    /// A batcher flushing at `max_pending` updates or after `max_delay`.
    pub fn new(max_delay: Duration, max_pending: usize) -> Batcher {
        Batcher {
            max_delay,
            max_pending: max_pending.max(1),
            pending: HashMap::default(),
            order: Vec::new(),
            buffered: 0,
            since: None,
        }
    }

    /// Changes the flush limits (a configuration reload); what is buffered stays.
    pub fn retune(&mut self, max_delay: Duration, max_pending: usize) {
        self.max_delay = max_delay;
        self.max_pending = max_pending.max(1);
    }

    /// The flush limits: `(max_delay, max_pending)`.
    pub fn limits(&self) -> (Duration, usize) {
        (self.max_delay, self.max_pending)
    }

    /// Buffers `update` at time `now`; returns whether the batch is now due.
    pub fn push(&mut self, now: Duration, update: Update) -> bool {
        self.since.get_or_insert(now);
        self.buffered += 1;
        match self.pending.get_mut(&update.key) {
            Some(existing) => match (existing, update.op) {
                (Op::Add(total), Op::Add(delta)) => *total = total.wrapping_add(delta),
                (slot, op) => *slot = op,
            },
            None => {
                self.order.push(update.key.clone());
                self.pending.insert(update.key, update.op);
            }
        }
        self.is_due(now)
    }

    /// Whether the batch must be sent at `now`.
    pub fn is_due(&self, now: Duration) -> bool {
        self.poll_timeout().is_some_and(|t| t <= now)
    }

    /// When the batch becomes due; `None` when nothing is buffered.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let since = self.since?;
        if self.buffered >= self.max_pending {
            Some(since)
        } else {
            Some(since.saturating_add(self.max_delay))
        }
    }

    /// When the oldest buffered update was pushed; `None` when nothing is buffered.
    pub fn oldest(&self) -> Option<Duration> {
        self.since
    }

    /// Updates buffered since the last drain, before coalescing.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Distinct keys buffered.
    pub fn keys(&self) -> usize {
        self.pending.len()
    }

    /// Takes the coalesced batch in first-seen key order, dropping deltas that cancelled.
    pub fn drain(&mut self) -> Vec<Update> {
        self.buffered = 0;
        self.since = None;
        let mut pending = std::mem::take(&mut self.pending);
        let order = std::mem::take(&mut self.order);
        order
            .into_iter()
            .filter_map(|key| {
                let op = pending.remove(&key)?;
                match op {
                    Op::Add(0) => None,
                    op => Some(Update { key, op }),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(key: &str, d: i64) -> Update {
        Update {
            key: Key::Text(key.into()),
            op: Op::Add(d),
        }
    }

    #[test]
    fn coalesces_per_key_and_drops_cancelled_deltas() {
        let mut b = Batcher::new(Duration::from_secs(1), 100);
        let t = Duration::from_secs(10);
        b.push(t, add("a", 1));
        b.push(t, add("b", 1));
        b.push(t, add("a", 2));
        b.push(t, add("b", -1));
        assert_eq!(b.buffered(), 4);
        assert_eq!(b.drain(), vec![add("a", 3)]);
        assert_eq!(b.poll_timeout(), None);
    }

    #[test]
    fn due_at_max_pending_or_max_delay_whichever_first() {
        let mut b = Batcher::new(Duration::from_millis(1000), 3);
        let t0 = Duration::from_secs(5);
        assert!(!b.push(t0, add("a", 1)));
        assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        assert!(!b.is_due(t0 + Duration::from_millis(999)));
        assert!(b.is_due(t0 + Duration::from_millis(1000)));
        assert!(!b.push(t0, add("a", 1)));
        // The third update reaches max_pending even though it coalesces into one key.
        assert!(b.push(t0 + Duration::from_millis(1), add("a", 1)));
        assert_eq!(b.drain(), vec![add("a", 3)]);
        assert!(!b.push(t0 + Duration::from_secs(3), add("z", 1)));
        assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_secs(4)));
    }

    #[test]
    fn newest_cache_write_wins() {
        let mut b = Batcher::new(Duration::from_secs(1), 100);
        let set = |v: u64| Update {
            key: Key::Text("k".into()),
            op: Op::Set {
                version: v,
                ttl: 0,
                value: vec![v as u8],
                writer: None,
            },
        };
        b.push(Duration::ZERO, set(1));
        b.push(Duration::ZERO, set(2));
        assert_eq!(b.drain(), vec![set(2)]);
    }
}
