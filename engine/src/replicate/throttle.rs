//! Cluster-wide X-per-Y-seconds throttles (`ec_shared_throttle_*`, `OBTM`, `OBTC`).
//!
//! # Algorithm (Momentum documents only `epsilon`; this is Cohort's)
//!
//! Time is cut into windows of `period` seconds aligned on the Unix epoch, so every node with a
//! synchronised clock is in the same window. Each node's contribution to the replicated sum of a
//! throttle is the number of events *it* admitted in the current window; when its window ends
//! it sends the negative of that count, so the global sum is the cluster's usage in the current
//! window (a node that has not rolled yet is counted with its old window: usage is
//! over-estimated for at most one replication delay, never under-estimated).
//!
//! Between two *exchanges* (this node flushing its updates for the object, or receiving another
//! member's) a node admits at most its *allowance*:
//! `allowance = max(1, floor(epsilon × (limit − known_usage)))` while `known_usage < limit`, else
//! 0. Each exchange recomputes it from the fresher sum. `epsilon` is therefore the fraction of
//! the remaining budget that one node may take in one round of information passing: with a high
//! epsilon one busy node converges on the limit in few rounds but can take nearly all of what is
//! left before others hear of it; several nodes bursting in the same round can overshoot by up
//! to `(members × epsilon − 1) × remaining`. `epsilon ≤ 1 / members` never overshoots.
//!
//! [`Throttles`] holds this state per name; the replicated counts themselves live in the
//! object's gauge tables, keyed by [`super::update::Key::Text`] with the throttle name.

use std::collections::HashMap;
use std::time::Duration;

/// A malformed throttle definition or an unknown throttle.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThrottleError {
    /// Not `N` or `N/seconds` with positive integers.
    #[error("throttle {0:?} is not \"messages\" or \"messages/seconds\"")]
    Spec(String),
    /// Epsilon outside `(0, 1)`.
    #[error("epsilon {0} must be strictly between 0 and 1")]
    Epsilon(f64),
    /// `inc`/`check` before `create`.
    #[error("no shared throttle named {0:?}")]
    Unknown(String),
    /// More throttles than the configured bound.
    #[error("too many shared throttles (at most {0})")]
    Full(usize),
}

/// `binding::domain` (the key of an `outbound_binding_domains` gauge), or the domain alone.
/// (OBTM / OBTC throttles are named after their configuration stanza: see
/// [`super::outbound`].)
pub fn outbound_name(scope: Option<&str>, domain: &str) -> String {
    match scope {
        Some(scope) => format!("{scope}::{domain}"),
        None => domain.to_string(),
    }
}

/// X messages per Y seconds, with the epsilon of `ec_shared_throttle_create`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThrottleSpec {
    /// Events allowed per period, cluster-wide.
    pub limit: u64,
    /// Period length in whole seconds (at least 1).
    pub period: u64,
    /// Fraction of the remaining budget one node may take per exchange; default 0.95.
    pub epsilon: f64,
}

/// Documented default epsilon.
pub const DEFAULT_EPSILON: f64 = 0.95;
/// Default bound on named throttles (Momentum's `siv_throttle_cache_size`).
pub const DEFAULT_CAPACITY: usize = 1000;

impl ThrottleSpec {
    /// Parses `"N"` (per second) or `"N/secs"` with `epsilon` (None = 0.95).
    pub fn parse(text: &str, epsilon: Option<f64>) -> Result<ThrottleSpec, ThrottleError> {
        let bad = || ThrottleError::Spec(text.to_string());
        let (n, secs) = match text.split_once('/') {
            Some((n, s)) => (n.trim(), s.trim()),
            None => (text.trim(), "1"),
        };
        let limit: u64 = n.parse().map_err(|_| bad())?;
        let period: u64 = secs.parse().map_err(|_| bad())?;
        if period == 0 {
            return Err(bad());
        }
        let epsilon = epsilon.unwrap_or(DEFAULT_EPSILON);
        if !(epsilon > 0.0 && epsilon < 1.0) {
            return Err(ThrottleError::Epsilon(epsilon));
        }
        Ok(ThrottleSpec {
            limit,
            period,
            epsilon,
        })
    }

    fn window(&self, now: Duration) -> u64 {
        now.as_secs() / self.period
    }
}

#[derive(Debug, Clone)]
struct ThrottleState {
    spec: ThrottleSpec,
    window: u64,
    /// Events this node admitted in `window` (its replicated contribution).
    used: i64,
    allowance: i64,
    spent: i64,
}

impl ThrottleState {
    fn recompute(&mut self, known_usage: i64) {
        let remaining = self.spec.limit as i64 - known_usage;
        self.allowance = if remaining >= 1 {
            ((self.spec.epsilon * remaining as f64).floor() as i64).max(1)
        } else {
            0
        };
        self.spent = 0;
    }
}

/// Per-name throttle state of one throttle object (bounded by `capacity`).
#[derive(Debug)]
pub struct Throttles {
    states: HashMap<String, ThrottleState>,
    capacity: usize,
}

impl Throttles {
    /// An empty set holding at most `capacity` throttles.
    pub fn new(capacity: usize) -> Throttles {
        Throttles {
            states: HashMap::new(),
            capacity,
        }
    }

    /// Defines (or redefines) `name`. Idempotent, as `ec_shared_throttle_create` is called per
    /// message.
    pub fn create(
        &mut self,
        name: &str,
        spec: ThrottleSpec,
        now: Duration,
        known_usage: i64,
    ) -> Result<(), ThrottleError> {
        if let Some(state) = self.states.get_mut(name) {
            if state.spec != spec {
                // A new rate (a reload): the allowance follows it at once. A new period
                // starts counting its window from now, with the usage counted so far.
                state.spec = spec;
                state.window = spec.window(now);
                state.recompute(known_usage);
            }
            return Ok(());
        }
        if self.states.len() >= self.capacity {
            // Make room with a throttle that holds no usage (its window ended, or it was never
            // used): nothing replicated depends on it. One with usage must stay until its window
            // ends, or its contribution would never be withdrawn.
            let idle = self
                .states
                .iter()
                .find(|(_, s)| s.used == 0)
                .map(|(n, _)| n.clone());
            match idle {
                Some(name) => {
                    self.states.remove(&name);
                }
                None => return Err(ThrottleError::Full(self.capacity)),
            }
        }
        let mut state = ThrottleState {
            spec,
            window: spec.window(now),
            used: 0,
            allowance: 0,
            spent: 0,
        };
        state.recompute(known_usage);
        self.states.insert(name.to_string(), state);
        Ok(())
    }

    /// Ends `name`'s window if `now` is past it: returns the delta that withdraws this node's
    /// usage from the replicated sum (to be applied locally and sent).
    pub fn roll(&mut self, name: &str, now: Duration) -> Result<i64, ThrottleError> {
        let state = self
            .states
            .get_mut(name)
            .ok_or_else(|| ThrottleError::Unknown(name.to_string()))?;
        let window = state.spec.window(now);
        if window == state.window {
            return Ok(0);
        }
        state.window = window;
        let withdraw = -state.used;
        state.used = 0;
        Ok(withdraw)
    }

    /// Rolls every throttle: `(name, delta)` for each window that ended.
    pub fn roll_all(&mut self, now: Duration) -> Vec<(String, i64)> {
        let names: Vec<String> = self.states.keys().cloned().collect();
        names
            .into_iter()
            .filter_map(|name| {
                let delta = self.roll(&name, now).ok()?;
                (delta != 0).then_some((name, delta))
            })
            .collect()
    }

    /// Records `n` events admitted by this node (the caller adds `n` to the replicated sum).
    pub fn inc(&mut self, name: &str, n: i64) -> Result<(), ThrottleError> {
        let state = self
            .states
            .get_mut(name)
            .ok_or_else(|| ThrottleError::Unknown(name.to_string()))?;
        state.used += n;
        state.spent += n;
        Ok(())
    }

    /// Whether `name` is over budget given the cluster usage known now.
    pub fn is_exceeded(&self, name: &str, known_usage: i64) -> Result<bool, ThrottleError> {
        let state = self
            .states
            .get(name)
            .ok_or_else(|| ThrottleError::Unknown(name.to_string()))?;
        Ok(known_usage >= state.spec.limit as i64 || state.spent >= state.allowance)
    }

    /// How long a sender should wait: until the end of the window when exceeded, else zero.
    pub fn tarpit(
        &self,
        name: &str,
        known_usage: i64,
        now: Duration,
    ) -> Result<Duration, ThrottleError> {
        if !self.is_exceeded(name, known_usage)? {
            return Ok(Duration::ZERO);
        }
        let state = &self.states[name];
        let end = Duration::from_secs((state.window + 1).saturating_mul(state.spec.period));
        Ok(end.saturating_sub(now))
    }

    /// An exchange happened: recompute every allowance from the current sums.
    pub fn exchange(&mut self, known_usage: impl Fn(&str) -> i64) {
        for (name, state) in &mut self.states {
            state.recompute(known_usage(name));
        }
    }

    /// When the earliest window with usage to withdraw ends.
    pub fn next_roll(&self) -> Option<Duration> {
        self.states
            .values()
            .filter(|s| s.used != 0)
            .map(|s| Duration::from_secs((s.window + 1).saturating_mul(s.spec.period)))
            .min()
    }

    /// Defined names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.states.keys().cloned().collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_names() {
        assert_eq!(outbound_name(Some("b1"), "aol.com"), "b1::aol.com");
        assert_eq!(outbound_name(None, "aol.com"), "aol.com");
    }

    #[test]
    fn specs() {
        let s = ThrottleSpec::parse("100/60", None).unwrap();
        assert_eq!((s.limit, s.period, s.epsilon), (100, 60, 0.95));
        assert_eq!(ThrottleSpec::parse("5", Some(0.5)).unwrap().period, 1);
        assert!(ThrottleSpec::parse("5/0", None).is_err());
        assert!(ThrottleSpec::parse("5", Some(1.0)).is_err());
    }

    #[test]
    fn allowance_is_epsilon_of_the_remainder_per_exchange() {
        let mut t = Throttles::new(10);
        let now = Duration::from_secs(1000);
        t.create(
            "x",
            ThrottleSpec::parse("100/10", Some(0.5)).unwrap(),
            now,
            0,
        )
        .unwrap();
        // 50 may be taken before the next exchange.
        for _ in 0..50 {
            assert!(!t.is_exceeded("x", 0).unwrap());
            t.inc("x", 1).unwrap();
        }
        assert!(t.is_exceeded("x", 50).unwrap());
        assert_eq!(t.tarpit("x", 50, now).unwrap(), Duration::from_secs(10));
        // After an exchange that reports 90 used cluster-wide, 5 more.
        t.exchange(|_| 90);
        for _ in 0..5 {
            assert!(!t.is_exceeded("x", 90).unwrap());
            t.inc("x", 1).unwrap();
        }
        assert!(t.is_exceeded("x", 95).unwrap());
        t.exchange(|_| 100);
        assert!(t.is_exceeded("x", 100).unwrap());
        assert_eq!(t.next_roll(), Some(Duration::from_secs(1010)));
        // The window ends: this node withdraws its 55.
        assert_eq!(t.roll("x", now + Duration::from_secs(10)).unwrap(), -55);
        assert_eq!(t.roll_all(now + Duration::from_secs(11)), vec![]);
        assert!(matches!(t.inc("y", 1), Err(ThrottleError::Unknown(_))));
        // Full: an idle throttle makes room, a used one does not.
        let spec = ThrottleSpec::parse("1/1", None).unwrap();
        let mut small = Throttles::new(1);
        small.create("a", spec, now, 0).unwrap();
        small.inc("a", 1).unwrap();
        assert!(matches!(
            small.create("b", spec, now, 0),
            Err(ThrottleError::Full(1))
        ));
        small.roll("a", now + Duration::from_secs(1)).unwrap();
        small.create("b", spec, now, 0).unwrap();
        assert_eq!(small.names(), vec!["b".to_string()]);
    }
}
