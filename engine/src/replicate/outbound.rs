//! Outbound events of the MTA and what the configuration says about them: which `Binding_Group`
//! each `Binding` belongs to (a `Replicate` scope's `binding_group` counts only that group's
//! bindings), and the `cluster_outbound_throttle_messages` / `cluster_outbound_throttle_connections`
//! stanzas that the `OBTM` and `OBTC` objects enforce cluster-wide.
//!
//! # Which throttle applies
//!
//! A message (or connection) on binding `B` to domain `D` falls back through the stanzas that
//! may define the option, most specific first, as Momentum's configuration fallback does:
//! `Binding_Group "G" { Domain "D" {} }` (with `G` the group of `B`), then `Binding_Group "G"`,
//! then a top-level `Domain "D"`, then the global scope. The first stanza that defines it is the
//! throttle, and every binding and domain that falls back to the same stanza shares its bucket
//! ("by reference"): the throttle's name is the stanza's (`G::D`, `G::*`, `D`, `*`, in lower
//! case). Binding, group and domain names match case-insensitively, as the configuration's
//! names do; domains match exactly (Momentum's regex `Domain` stanzas are not supported).

use std::collections::BTreeMap;

use super::throttle::ThrottleSpec;
use crate::config::Config;

/// Which of the two options a throttle comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ThrottleKind {
    /// `cluster_outbound_throttle_messages`, enforced by `OBTM`.
    Messages,
    /// `cluster_outbound_throttle_connections`, enforced by `OBTC`.
    Connections,
}

/// The stanza a throttle is defined in: (binding group, domain), either absent.
type Stanza = (Option<String>, Option<String>);

/// Bindings' groups and the configured outbound throttles (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outbound {
    /// Binding -> its group, both in lower case.
    groups: BTreeMap<String, String>,
    throttles: BTreeMap<(ThrottleKind, Stanza), ThrottleSpec>,
    /// Per kind (messages, connections), each throttle's name -> its rate (what a use by name
    /// looks up, without building a key).
    names: [BTreeMap<String, ThrottleSpec>; 2],
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

impl Outbound {
    /// What a configuration says: its bindings' groups and its outbound throttles.
    pub fn from_config(cfg: &Config) -> Outbound {
        let mut o = Outbound::default();
        for b in &cfg.bindings {
            if let Some(g) = &b.binding_group {
                o = o.with_binding(&b.name, g);
            }
        }
        for t in &cfg.outbound_throttles {
            let kind = if t.connections {
                ThrottleKind::Connections
            } else {
                ThrottleKind::Messages
            };
            let spec = ThrottleSpec {
                limit: t.limit,
                period: t.period,
                epsilon: super::throttle::DEFAULT_EPSILON,
            };
            o = o.with_throttle(kind, t.binding_group.as_deref(), t.domain.as_deref(), spec);
        }
        o
    }

    /// Adds binding `binding` to group `group` (for tests and programs that build it by hand).
    pub fn with_binding(mut self, binding: &str, group: &str) -> Outbound {
        self.groups.insert(lower(binding), lower(group));
        self
    }

    /// Adds a throttle (for tests and programs that build it by hand).
    pub fn with_throttle(
        mut self,
        kind: ThrottleKind,
        binding_group: Option<&str>,
        domain: Option<&str>,
        spec: ThrottleSpec,
    ) -> Outbound {
        let stanza = (binding_group.map(lower), domain.map(lower));
        self.names[kind as usize].insert(stanza_name(&stanza), spec);
        self.throttles.insert((kind, stanza), spec);
        self
    }

    /// The `Binding_Group` of `binding`, if it is in one.
    pub fn group_of(&self, binding: &str) -> Option<&str> {
        self.groups.get(&lower(binding)).map(String::as_str)
    }

    /// Whether a `Replicate` scope with `binding_group` counts events on `binding`: every
    /// binding when the scope names no group, else only that group's bindings.
    pub fn counts(&self, binding_group: Option<&str>, binding: &str) -> bool {
        binding_group.is_none_or(|g| {
            self.group_of(binding)
                .is_some_and(|b| b.eq_ignore_ascii_case(g))
        })
    }

    /// The throttle of `kind` that applies to `binding` and `domain`: its name (shared by every
    /// binding and domain that falls back to the same stanza) and its rate.
    pub fn throttle(
        &self,
        kind: ThrottleKind,
        binding: &str,
        domain: &str,
    ) -> Option<(String, ThrottleSpec)> {
        let group = self.group_of(binding).map(str::to_string);
        let domain = lower(domain);
        let candidates = [
            (group.clone(), Some(domain.clone())),
            (group, None),
            (None, Some(domain)),
            (None, None),
        ];
        candidates.into_iter().find_map(|stanza| {
            let spec = self.throttles.get(&(kind, stanza.clone()))?;
            Some((stanza_name(&stanza), *spec))
        })
    }

    /// The throttle of `kind` named `name` (as [`Outbound::throttle`] names them), if configured.
    pub fn named(&self, kind: ThrottleKind, name: &str) -> Option<ThrottleSpec> {
        self.names[kind as usize].get(name).copied()
    }

    /// Whether no throttle of `kind` is configured.
    pub fn has_throttles(&self, kind: ThrottleKind) -> bool {
        self.throttles.keys().any(|(k, _)| *k == kind)
    }
}

fn stanza_name((group, domain): &Stanza) -> String {
    match (group, domain) {
        (Some(g), Some(d)) => format!("{g}::{d}"),
        (Some(g), None) => format!("{g}::*"),
        (None, Some(d)) => d.clone(),
        (None, None) => "*".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(limit: u64) -> ThrottleSpec {
        ThrottleSpec::parse(&limit.to_string(), None).unwrap()
    }

    #[test]
    fn the_most_specific_stanza_applies_and_is_shared_by_reference() {
        let o = Outbound::default()
            .with_binding("b1", "east")
            .with_binding("B2", "East")
            .with_binding("w1", "west")
            .with_throttle(
                ThrottleKind::Messages,
                Some("east"),
                Some("AOL.com"),
                spec(1),
            )
            .with_throttle(ThrottleKind::Messages, Some("east"), None, spec(2))
            .with_throttle(ThrottleKind::Messages, None, Some("yahoo.com"), spec(3))
            .with_throttle(ThrottleKind::Messages, None, None, spec(4))
            .with_throttle(ThrottleKind::Connections, Some("west"), None, spec(5));
        let m = |b, d| o.throttle(ThrottleKind::Messages, b, d).unwrap();
        assert_eq!(m("b1", "aol.com"), ("east::aol.com".into(), spec(1)));
        assert_eq!(
            m("b2", "Aol.Com").0,
            "east::aol.com",
            "one bucket for the group"
        );
        assert_eq!(m("b1", "gmail.com"), ("east::*".into(), spec(2)));
        assert_eq!(
            m("b1", "yahoo.com").0,
            "east::*",
            "the group's stanza comes first"
        );
        assert_eq!(m("w1", "yahoo.com"), ("yahoo.com".into(), spec(3)));
        assert_eq!(m("nogroup", "aol.com"), ("*".into(), spec(4)));
        assert_eq!(
            o.throttle(ThrottleKind::Connections, "w1", "x.org"),
            Some(("west::*".into(), spec(5)))
        );
        assert_eq!(o.throttle(ThrottleKind::Connections, "b1", "x.org"), None);
        assert_eq!(o.named(ThrottleKind::Messages, "east::*"), Some(spec(2)));
        assert_eq!(o.named(ThrottleKind::Connections, "east::*"), None);
        assert!(o.counts(None, "anything"));
        assert!(o.counts(Some("east"), "b2"));
        assert!(
            o.counts(Some("EAST"), "B1"),
            "names match case-insensitively"
        );
        assert!(!o.counts(Some("east"), "w1"));
        assert!(!o.counts(Some("east"), "nogroup"));
    }
}
