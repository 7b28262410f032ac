//! The cluster heartbeat: the layer above the transport proves its process is not stuck.
//!
//! The cluster layer calls [`Endpoint::heartbeat`](crate::group::Endpoint::heartbeat)
//! `heartbeats_per_sec` times a second; the endpoint carries the resulting counter in every probe.
//! A member whose probes keep arriving but whose counter stands still for three heartbeat periods
//! (stretched by local health) is stuck: its transport answers but its process does not, Momentum's
//! "byzantine" node. Checking starts `heartbeat_start_delay` after a member entered the view, so a
//! starting process has time to come up. A node that sees its own counter stand still stops looking
//! for peers, so a stuck node that was removed is not merged back.

use core::time::Duration;
use std::collections::BTreeMap;

use crate::group::member::MemberId;
use crate::group::time::Time;

#[derive(Debug, Clone)]
struct Beat {
    count: u64,
    changed: Time,
    since: Time,
    /// When the last probe (with its counter) came.
    seen: Time,
}

/// Watches every view member's heartbeat counter, and this node's own.
#[derive(Debug, Clone)]
pub struct HeartbeatMonitor {
    timeout: Duration,
    start_delay: Duration,
    started: Time,
    count: u64,
    last_beat: Time,
    peers: BTreeMap<MemberId, Beat>,
}

impl HeartbeatMonitor {
    /// A new stuck timeout from a configuration reload (`heartbeats_per_sec`).
    pub fn retune(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// A monitor for a node started at `now`.
    pub fn new(timeout: Duration, start_delay: Duration, now: Time) -> HeartbeatMonitor {
        HeartbeatMonitor {
            timeout,
            start_delay,
            started: now,
            count: 0,
            last_beat: now,
            peers: BTreeMap::new(),
        }
    }

    /// The layer above is alive: advance this node's counter.
    pub fn beat(&mut self, now: Time) {
        self.count += 1;
        self.last_beat = now;
    }

    /// This node's counter, carried in probes.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Starts watching `m`, which entered the view at `now`.
    pub fn watch(&mut self, m: &MemberId, now: Time) {
        self.peers.entry(m.clone()).or_insert(Beat {
            count: 0,
            changed: now,
            since: now,
            seen: Time::ZERO,
        });
    }

    /// Stops watching members for which `keep` is false.
    pub fn retain(&mut self, keep: impl Fn(&MemberId) -> bool) {
        self.peers.retain(|m, _| keep(m));
    }

    /// `m`'s probe carried `count`.
    pub fn observe(&mut self, m: &MemberId, count: u64, now: Time) {
        if let Some(b) = self.peers.get_mut(m) {
            b.seen = now;
            if count != b.count {
                b.count = count;
                b.changed = now;
            }
        }
    }

    /// Whether `m` is stuck: watched for the start delay, its probes still arriving (the last one
    /// less than `recent` ago) and its counter still for the timeout. A member whose probes stop is
    /// the failure detector's business, not a stuck one.
    pub fn stuck(&self, m: &MemberId, now: Time, stretch: u32, recent: Duration) -> bool {
        self.peers.get(m).is_some_and(|b| {
            now.since(b.since) >= self.start_delay
                && now.since(b.seen) < recent
                && now.since(b.changed) >= self.timeout * stretch.max(1)
        })
    }

    /// Whether this node's own layer above has stopped beating.
    pub fn self_stuck(&self, now: Time) -> bool {
        now.since(self.started) >= self.start_delay && now.since(self.last_beat) >= self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Time {
        Time::from_nanos(n * 1_000_000_000)
    }

    #[test]
    fn a_still_counter_is_stuck_only_after_the_start_delay() {
        let mut h = HeartbeatMonitor::new(Duration::from_secs(3), Duration::from_secs(15), s(0));
        let m = MemberId::new("b", 1);
        h.watch(&m, s(0));
        let recent = Duration::from_secs(1);
        assert!(!h.stuck(&m, s(10), 1, recent));
        h.observe(&m, 5, s(13));
        h.observe(&m, 5, s(15));
        assert!(!h.stuck(&m, s(15), 1, recent));
        h.observe(&m, 5, s(16));
        assert!(h.stuck(&m, s(16), 1, recent));
        assert!(
            !h.stuck(&m, s(16), 3, recent),
            "a slow observer stretches the timeout"
        );
        assert!(!h.stuck(&m, s(18), 1, recent), "silent, not stuck");
        h.observe(&m, 6, s(18));
        assert!(!h.stuck(&m, s(19), 1, recent));
        assert!(h.self_stuck(s(20)));
        h.beat(s(20));
        assert!(!h.self_stuck(s(21)));
    }
}
