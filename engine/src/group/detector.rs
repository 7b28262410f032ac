//! Failure detection: SWIM-style suspicion with indirect confirmation, and Lifeguard's local health.
//!
//! Every datagram from a member is evidence that it lives ([`Detector::heard`]). A member silent for
//! the suspicion timeout becomes a suspect: the endpoint probes it directly and asks other members
//! whether they heard from it ([`Verdict::Suspect`]). If one more probe interval passes without
//! evidence, it has failed ([`Verdict::Failed`]) and the coordinator removes it.
//!
//! Local health: a node whose own timers fire late, or which reads datagrams long after they
//! arrived, is itself slow. It raises its health score, which stretches every timeout by
//! `(1 + score)`, and it does not count the time it was stalled against its peers. So a loaded node
//! does not declare healthy peers dead; the score decays once its timers are punctual again.

use core::time::Duration;
use std::collections::BTreeMap;

use crate::group::member::MemberId;
use crate::group::time::Time;

/// Highest local-health score: timeouts stretch at most `1 + MAX_HEALTH` times.
pub const MAX_HEALTH: u32 = 8;

/// What the detector concluded about a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Silent too long: probe it and ask others about it.
    Suspect(MemberId),
    /// Still silent after confirmation: remove it.
    Failed(MemberId),
}

#[derive(Debug, Clone)]
struct Peer {
    last_heard: Time,
    /// When a datagram of it last reached the transport's socket (not merely the host).
    last_delivered: Time,
    suspected_at: Option<Time>,
    failed: bool,
    /// Whether silence alone makes this peer a suspect: every peer in a small view, the ring
    /// neighbours in a large one (see `Endpoint`). An unmonitored peer is suspected only when
    /// another member reports it ([`Detector::suspect`]).
    monitored: bool,
    /// When a suspicion of this peer was last cleared by evidence: a report about it is not
    /// verified again within a suspicion timeout of that.
    vouched: Option<Time>,
    rtt: Rtt,
}

/// Round-trip times measured to one member (probes echoed at once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rtt {
    /// The latest sample.
    pub last: Option<Duration>,
    /// Smoothed as TCP does (RFC 6298: 7/8 of the old value, 1/8 of the sample).
    pub smoothed: Option<Duration>,
    /// Samples taken since the member entered the view.
    pub samples: u64,
}

impl Rtt {
    fn sample(&mut self, rtt: Duration) {
        self.last = Some(rtt);
        self.smoothed = Some(match self.smoothed {
            None => rtt,
            Some(s) => (s * 7 + rtt) / 8,
        });
        self.samples += 1;
    }
}

/// What the detector knows of one watched member, for the console and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerHealth {
    /// The member.
    pub member: MemberId,
    /// When it was last heard from.
    pub last_heard: Time,
    /// Suspected (silent for the suspicion timeout) and not heard from since.
    pub suspected: bool,
    /// Declared failed.
    pub failed: bool,
    /// Round-trip times to it.
    pub rtt: Rtt,
}

/// The failure detector of one member.
#[derive(Debug, Clone)]
pub struct Detector {
    probe_interval: Duration,
    suspect_timeout: Duration,
    health: u32,
    last_late: Time,
    peers: BTreeMap<MemberId, Peer>,
    /// How many of `peers` are failed (most of the time none: `is_failed` then looks nothing up).
    failed: usize,
}

impl Detector {
    /// A detector with the configured probe interval and suspicion timeout.
    pub fn new(probe_interval: Duration, suspect_timeout: Duration) -> Detector {
        Detector {
            probe_interval,
            suspect_timeout,
            health: 0,
            last_late: Time::ZERO,
            peers: BTreeMap::new(),
            failed: 0,
        }
    }

    /// New timing from a configuration reload; what was heard so far stays.
    pub fn retune(&mut self, probe_interval: Duration, suspect_timeout: Duration) {
        self.probe_interval = probe_interval;
        self.suspect_timeout = suspect_timeout;
    }

    /// Starts watching `m` (a new view member), as if just heard from.
    pub fn watch(&mut self, m: &MemberId, now: Time) {
        self.peers.entry(m.clone()).or_insert(Peer {
            last_heard: now,
            last_delivered: now,
            suspected_at: None,
            failed: false,
            monitored: true,
            vouched: None,
            rtt: Rtt::default(),
        });
    }

    /// Whether silence alone makes `m` a suspect. A peer that becomes monitored gets a full
    /// suspicion timeout from `now` (nothing was expected of it before).
    pub fn monitor(&mut self, m: &MemberId, on: bool, now: Time) {
        if let Some(p) = self.peers.get_mut(m) {
            if on && !p.monitored {
                p.last_heard = p.last_heard.max(now);
            }
            p.monitored = on;
        }
    }

    /// `m` took part in the view change just installed: whatever was suspected of it is void, and
    /// it gets a full suspicion timeout from `now`.
    pub fn renew(&mut self, m: &MemberId, now: Time) {
        if let Some(p) = self.peers.get_mut(m) {
            p.last_heard = p.last_heard.max(now);
            p.suspected_at = None;
            if std::mem::take(&mut p.failed) {
                self.failed -= 1;
            }
        }
    }

    pub fn is_monitored(&self, m: &MemberId) -> bool {
        self.peers.get(m).is_some_and(|p| p.monitored)
    }

    /// Another member reports `m` failed: suspect it from `now` (the endpoint then probes it
    /// directly and through others, and it fails one probe interval later unless heard), unless
    /// it is already suspected or failed, or it is monitored here and was heard within the
    /// suspicion timeout (this member's own evidence outweighs the report), or, with `vouching`,
    /// it was shown alive within a suspicion timeout (repeated reports do not repeat the check).
    /// Returns whether `m` became a suspect.
    pub fn suspect(&mut self, m: &MemberId, now: Time, vouching: bool) -> bool {
        let timeout = self.suspect_timeout();
        let Some(p) = self.peers.get_mut(m) else {
            return false;
        };
        if p.failed
            || p.suspected_at.is_some()
            || (p.monitored && now.since(p.last_heard) < timeout)
            || (vouching && p.vouched.is_some_and(|v| now.since(v) < timeout))
        {
            return false;
        }
        p.suspected_at = Some(now);
        true
    }

    /// A probe to `m` came back after `rtt`.
    pub fn rtt_sample(&mut self, m: &MemberId, rtt: Duration) {
        if let Some(p) = self.peers.get_mut(m) {
            p.rtt.sample(rtt);
        }
    }

    /// Every watched member, in member order.
    pub fn peer_health(&self) -> Vec<PeerHealth> {
        self.peers
            .iter()
            .map(|(m, p)| PeerHealth {
                member: m.clone(),
                last_heard: p.last_heard,
                suspected: p.suspected_at.is_some() && !p.failed,
                failed: p.failed,
                rtt: p.rtt,
            })
            .collect()
    }

    /// Stops watching every member for which `keep` is false.
    pub fn retain(&mut self, keep: impl Fn(&MemberId) -> bool) {
        self.peers.retain(|m, _| keep(m));
        self.failed = self.peers.values().filter(|p| p.failed).count();
    }

    /// Evidence that `m` was alive at `at` (the arrival time, kernel-stamped where possible).
    /// Clears suspicion and failure: a member that speaks again is alive.
    pub fn heard(&mut self, m: &MemberId, at: Time) {
        if let Some(p) = self.peers.get_mut(m) {
            p.last_delivered = p.last_delivered.max(at);
            if Self::alive(p, at) {
                self.failed -= 1;
            }
        }
    }

    /// A datagram of `m` reached the host at `at` (an XDP or kernel arrival stamp) but is not
    /// known to have reached the socket. It proves `m` alive for at most one suspicion timeout
    /// past the last datagram the socket delivered: a node whose inbound cluster traffic is
    /// dropped after the XDP hook (a netfilter rule) still sees its peers arrive, yet can take no
    /// part in the view, so it must still suspect them within a bounded time.
    pub fn arrived(&mut self, m: &MemberId, at: Time) {
        let window = self.suspect_timeout();
        if let Some(p) = self.peers.get_mut(m)
            && at.since(p.last_delivered) < window
            && Self::alive(p, at)
        {
            self.failed -= 1;
        }
    }

    /// Whether `p` was failed (and is no longer).
    fn alive(p: &mut Peer, at: Time) -> bool {
        if at > p.last_heard {
            p.last_heard = at;
        }
        if p.suspected_at.is_some_and(|s| at >= s) || p.failed {
            p.suspected_at = None;
            p.vouched = Some(at);
            return std::mem::take(&mut p.failed);
        }
        false
    }

    /// Declares `m` failed at once (a graceful leave, or a newer incarnation of the same node).
    pub fn fail(&mut self, m: &MemberId) {
        if let Some(p) = self.peers.get_mut(m)
            && !std::mem::replace(&mut p.failed, true)
        {
            self.failed += 1;
        }
    }

    /// A timer meant for `deadline` fired at `now`. Lateness is local slowness: raise the health
    /// score and do not count the stall against any peer.
    pub fn timer_fired(&mut self, now: Time, deadline: Time) {
        let late = now.since(deadline);
        if late < self.probe_interval / 2 {
            return;
        }
        self.raise(now);
        for p in self.peers.values_mut() {
            p.last_heard = (p.last_heard + late).min(now);
            p.last_delivered = (p.last_delivered + late).min(now);
            if let Some(s) = p.suspected_at.as_mut() {
                *s = (*s + late).min(now);
            }
        }
    }

    /// A datagram that arrived at `arrival` is processed at `now`: a long backlog is local slowness.
    pub fn backlog(&mut self, arrival: Time, now: Time) {
        if now.since(arrival) >= self.probe_interval / 2 {
            self.raise(now);
        }
    }

    fn raise(&mut self, now: Time) {
        self.health = (self.health + 1).min(MAX_HEALTH);
        self.last_late = now;
    }

    /// The local health score (0 = healthy).
    pub fn health(&self) -> u32 {
        self.health
    }

    /// Multiplier every timeout is stretched by.
    pub fn stretch(&self) -> u32 {
        1 + self.health
    }

    /// The suspicion timeout, stretched by local health.
    pub fn suspect_timeout(&self) -> Duration {
        self.suspect_timeout * self.stretch()
    }

    /// Whether `m` has been declared failed.
    pub fn is_failed(&self, m: &MemberId) -> bool {
        self.failed > 0 && self.peers.get(m).is_some_and(|p| p.failed)
    }

    /// When `m` was last heard from, if watched.
    pub fn last_heard(&self, m: &MemberId) -> Option<Time> {
        self.peers.get(m).map(|p| p.last_heard)
    }

    /// Advances suspicion; returns what changed.
    pub fn check(&mut self, now: Time) -> Vec<Verdict> {
        if self.health > 0 && now.since(self.last_late) >= self.probe_interval * 4 {
            self.health -= 1;
            self.last_late = now;
        }
        let timeout = self.suspect_timeout();
        let confirm = self.probe_interval * self.stretch();
        let mut out = Vec::new();
        for (m, p) in self.peers.iter_mut() {
            if p.failed {
                continue;
            }
            match p.suspected_at {
                None if p.monitored && now.since(p.last_heard) >= timeout => {
                    p.suspected_at = Some(now);
                    out.push(Verdict::Suspect(m.clone()));
                }
                Some(s) if now.since(s) >= confirm => {
                    p.failed = true;
                    self.failed += 1;
                    out.push(Verdict::Failed(m.clone()));
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Time {
        Time::from_nanos(n * 1_000_000)
    }

    #[test]
    fn silence_leads_to_suspicion_then_failure() {
        let mut d = Detector::new(Duration::from_millis(200), Duration::from_millis(600));
        let m = MemberId::new("b", 1);
        d.watch(&m, ms(0));
        assert!(d.check(ms(500)).is_empty());
        assert_eq!(d.check(ms(600)), vec![Verdict::Suspect(m.clone())]);
        assert!(d.check(ms(700)).is_empty());
        assert_eq!(d.check(ms(800)), vec![Verdict::Failed(m.clone())]);
        assert!(d.is_failed(&m));
        d.heard(&m, ms(850));
        assert!(!d.is_failed(&m));
    }

    #[test]
    fn an_unmonitored_peer_is_suspected_only_when_reported() {
        let mut d = Detector::new(Duration::from_millis(200), Duration::from_millis(600));
        let (near, far) = (MemberId::new("b", 1), MemberId::new("c", 1));
        d.watch(&near, ms(0));
        d.watch(&far, ms(0));
        d.monitor(&far, false, ms(0));
        assert_eq!(d.check(ms(600)), vec![Verdict::Suspect(near.clone())]);
        assert!(
            d.check(ms(5000))
                .iter()
                .all(|v| *v != Verdict::Suspect(far.clone()))
        );
        // A report about a monitored peer heard lately is outweighed by this member's evidence.
        d.heard(&near, ms(5000));
        assert!(!d.suspect(&near, ms(5100), false));
        // A report about an unmonitored one starts suspicion; an answer clears it.
        assert!(d.suspect(&far, ms(5100), true));
        assert!(!d.suspect(&far, ms(5150), false), "already suspected");
        d.heard(&far, ms(5200));
        assert!(!d.is_failed(&far));
        // Shown alive at 5.2 s: a repeated report within a suspicion timeout is not checked
        // again, but new evidence (a proposal dropping it) is.
        assert!(!d.suspect(&far, ms(5300), true));
        let mut e = d.clone();
        assert!(e.suspect(&far, ms(5300), false));
        assert!(d.suspect(&far, ms(6000), true));
        let about_far = |v: Vec<Verdict>| -> Vec<Verdict> {
            v.into_iter()
                .filter(|v| matches!(v, Verdict::Suspect(m) | Verdict::Failed(m) if *m == far))
                .collect()
        };
        assert!(about_far(d.check(ms(6100))).is_empty());
        assert_eq!(
            about_far(d.check(ms(6200))),
            vec![Verdict::Failed(far.clone())]
        );
        // A peer that becomes monitored gets a full timeout from then.
        let other = MemberId::new("d", 1);
        d.watch(&other, ms(0));
        d.monitor(&other, false, ms(0));
        d.monitor(&other, true, ms(7000));
        assert!(
            d.check(ms(7500))
                .iter()
                .all(|v| *v != Verdict::Suspect(other.clone()))
        );
        assert!(d.check(ms(7600)).contains(&Verdict::Suspect(other)));
    }

    #[test]
    fn round_trips_are_smoothed_and_suspicion_shows() {
        let mut d = Detector::new(Duration::from_millis(200), Duration::from_millis(600));
        let m = MemberId::new("b", 1);
        d.watch(&m, ms(0));
        d.rtt_sample(&m, Duration::from_micros(800));
        d.rtt_sample(&m, Duration::from_micros(1600));
        let h = &d.peer_health()[0];
        assert_eq!(h.rtt.last, Some(Duration::from_micros(1600)));
        assert_eq!(h.rtt.smoothed, Some(Duration::from_micros(900)));
        assert_eq!(h.rtt.samples, 2);
        assert!(!h.suspected);
        d.check(ms(600));
        assert!(d.peer_health()[0].suspected);
        d.check(ms(800));
        let h = &d.peer_health()[0];
        assert!(h.failed && !h.suspected);
        d.rtt_sample(&MemberId::new("c", 1), Duration::from_millis(1));
        assert_eq!(d.peer_health().len(), 1, "only watched members");
    }

    #[test]
    fn evidence_during_suspicion_clears_it() {
        let mut d = Detector::new(Duration::from_millis(200), Duration::from_millis(600));
        let m = MemberId::new("b", 1);
        d.watch(&m, ms(0));
        d.check(ms(650));
        d.heard(&m, ms(700));
        assert!(d.check(ms(900)).is_empty());
    }

    #[test]
    fn a_late_timer_stretches_timeouts_and_spares_peers() {
        let mut d = Detector::new(Duration::from_millis(200), Duration::from_millis(600));
        let m = MemberId::new("b", 1);
        d.watch(&m, ms(0));
        // The node itself stalled for two seconds.
        d.timer_fired(ms(2050), ms(50));
        assert_eq!(d.health(), 1);
        assert!(
            d.check(ms(2050)).is_empty(),
            "the stall is not the peer's fault"
        );
        assert_eq!(d.suspect_timeout(), Duration::from_millis(1200));
        assert!(d.check(ms(2050 + 500)).is_empty());
    }
}
