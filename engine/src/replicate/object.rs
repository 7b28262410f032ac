//! What a `Replicate "name" {}` scope asks for: the object's kind and its batching settings.

use std::time::Duration;

/// The replication types of Momentum's `Replicate` scope (`type`, `class`, or the scope name):
/// the configuration's own [`crate::config::ReplicateKind`], one enum for the loader and the
/// replicator.
pub type ObjectKind = crate::config::ReplicateKind;

/// The data structure behind a kind, which fixes how it merges and how it prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// [`super::cidr::CidrTree`] of per-member sums.
    CidrTree,
    /// [`super::gauge::GaugeTable`] of per-member sums.
    GaugeTable,
    /// Named throttles: gauge sums of per-window usage.
    Throttles,
    /// Last-writer-wins key/value cache.
    Cache,
    /// Windowed series: gauge sums keyed by series, window and item.
    Series,
}

impl ObjectKind {
    pub fn shape(self) -> Shape {
        match self {
            ObjectKind::InboundCidr | ObjectKind::OutboundCidr => Shape::CidrTree,
            ObjectKind::OutboundDomains | ObjectKind::OutboundBindingDomains => Shape::GaugeTable,
            ObjectKind::SharedNamedThrottles | ObjectKind::Obtm | ObjectKind::Obtc => {
                Shape::Throttles
            }
            ObjectKind::Cache => Shape::Cache,
            ObjectKind::Metrics | ObjectKind::EccmgrMetrics => Shape::Series,
        }
    }
}

impl Shape {
    /// The type's name in `cluster shared list` and `cluster shared show` headers.
    pub fn type_name(self) -> &'static str {
        match self {
            Shape::CidrTree => "cidrtree",
            Shape::GaugeTable => "gauge table",
            Shape::Throttles => "throttle table",
            Shape::Cache => "cache",
            Shape::Series => "time series",
        }
    }
}

/// A window monitor such as `"300,6"`: six windows of 300 seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Monitor {
    /// Window length in seconds (at least 1).
    pub window: u64,
    /// Number of windows kept (at least 1).
    pub windows: u32,
}

impl Monitor {
    /// Parses `"size,count"`.
    pub fn parse(text: &str) -> Result<Monitor, SettingsError> {
        let bad = || SettingsError::Monitor(text.to_string());
        let (size, count) = text.split_once(',').ok_or_else(bad)?;
        let window: u64 = size.trim().parse().map_err(|_| bad())?;
        let windows: u32 = count.trim().parse().map_err(|_| bad())?;
        if window == 0 || windows == 0 {
            return Err(bad());
        }
        Ok(Monitor { window, windows })
    }

    /// Seconds covered by all windows.
    pub fn span(&self) -> u64 {
        self.window.saturating_mul(u64::from(self.windows))
    }
}

/// Invalid replication settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    /// Neither `type`, `class` nor the scope name names a replication type.
    #[error("Replicate \"{0}\": no replication type (set type or class)")]
    UnknownType(String),
    /// `max_delay` is negative, NaN or absurd.
    #[error("Replicate \"{name}\": max_delay {value} is not a number of seconds in 0..=3600")]
    MaxDelay {
        /// Scope name.
        name: String,
        /// Value given.
        value: f64,
    },
    /// `max_pending` is zero.
    #[error("Replicate \"{0}\": max_pending must be at least 1")]
    MaxPending(String),
    /// The object name cannot travel in the wire format.
    #[error("Replicate \"{0}\": the name must be 1 to 255 bytes")]
    Name(String),
    /// An unknown `parameters` entry.
    #[error("Replicate \"{name}\": unknown parameter {parameter:?}")]
    Parameter {
        /// Scope name.
        name: String,
        /// The parameter.
        parameter: String,
    },
    /// A malformed monitor.
    #[error("monitor {0:?} is not \"window-seconds,number-of-windows\"")]
    Monitor(String),
    /// Two scopes with one name.
    #[error("Replicate \"{0}\" is defined twice")]
    Duplicate(String),
}

/// Parameters documented for `Replicate` scopes.
pub const PARAMETERS: [&str; 9] = [
    "snapshot",
    "connect",
    "delivery",
    "transfail",
    "permfail",
    "reception",
    "rejection",
    "audit_series",
    "gauge_cache",
];

/// The settings of one replicated object, as the configuration's `Replicate` scope gives them.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectSettings {
    /// Scope name: the object's name on the console and on the wire.
    pub name: String,
    /// What it replicates.
    pub kind: ObjectKind,
    /// `max_delay`: longest time an update waits before it is sent (default 1.0 s).
    pub max_delay: Duration,
    /// `max_pending`: number of buffered updates that triggers a send (default 100).
    pub max_pending: usize,
    /// `max_size` for caches: `None` is Momentum's `-1` (unbounded).
    pub max_size: Option<usize>,
    /// Joiners receive pre-existing entries. Always on for sums (their global view is wrong
    /// otherwise); for caches only with `parameters = "snapshot"`, as documented.
    pub snapshot: bool,
    /// `parameters` other than `snapshot` (metrics: `connect`, `reception`, ...).
    pub parameters: Vec<String>,
    /// `binding_group` for `outbound_cidr` / `outbound_domains` classes.
    pub binding_group: Option<String>,
    /// Updates go to the manager only (`eccmgr_metrics`, `replicate = manager`).
    pub manager_only: bool,
    /// Series monitors (metrics); default `"300,6"`.
    pub monitors: Vec<Monitor>,
}

impl ObjectSettings {
    /// Documented defaults for an object `name` of `kind`.
    pub fn new(name: &str, kind: ObjectKind) -> ObjectSettings {
        ObjectSettings {
            name: name.to_string(),
            kind,
            max_delay: Duration::from_secs(1),
            max_pending: 100,
            max_size: None,
            snapshot: kind.shape() != Shape::Cache,
            parameters: Vec::new(),
            binding_group: None,
            manager_only: kind == ObjectKind::EccmgrMetrics,
            monitors: vec![Monitor {
                window: 300,
                windows: 6,
            }],
        }
    }

    /// Builds settings from a `Replicate "name" { type class parameters max_delay max_pending
    /// max_size binding_group }` scope; absent options take their documented defaults.
    #[allow(clippy::too_many_arguments)]
    pub fn from_scope(
        name: &str,
        type_: Option<&str>,
        class: Option<&str>,
        parameters: Option<&str>,
        max_delay: Option<f64>,
        max_pending: Option<i64>,
        max_size: Option<i64>,
        binding_group: Option<&str>,
    ) -> Result<ObjectSettings, SettingsError> {
        let kind = type_
            .or(class)
            .and_then(ObjectKind::from_name)
            .or_else(|| ObjectKind::from_name(name))
            .ok_or_else(|| SettingsError::UnknownType(name.to_string()))?;
        let mut settings = ObjectSettings::new(name, kind);
        settings.validate_name()?;
        if let Some(value) = max_delay {
            if !(0.0..=3600.0).contains(&value) {
                return Err(SettingsError::MaxDelay {
                    name: name.to_string(),
                    value,
                });
            }
            settings.max_delay = Duration::from_secs_f64(value);
        }
        if let Some(value) = max_pending {
            settings.max_pending = usize::try_from(value)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| SettingsError::MaxPending(name.to_string()))?;
        }
        settings.max_size = max_size.and_then(|v| usize::try_from(v).ok());
        settings.binding_group = binding_group.map(str::to_string);
        for parameter in parameters
            .unwrap_or("")
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            if !PARAMETERS.contains(&parameter) {
                return Err(SettingsError::Parameter {
                    name: name.to_string(),
                    parameter: parameter.to_string(),
                });
            }
            if parameter == "snapshot" {
                settings.snapshot = true;
            } else {
                settings.parameters.push(parameter.to_string());
            }
        }
        Ok(settings)
    }

    /// Settings from the configuration's `Replicate` scope. Infallible: the loader checked every
    /// bound of the scope with its location (`config::load`), so a configuration that loads starts
    /// every object it names.
    pub fn from_config(scope: &crate::config::Replicate) -> ObjectSettings {
        let mut settings = ObjectSettings::new(&scope.name, scope.kind);
        settings.max_delay = scope.max_delay;
        settings.max_pending = usize::try_from(scope.max_pending)
            .unwrap_or(usize::MAX)
            .max(1);
        settings.max_size = usize::try_from(scope.max_size).ok();
        settings.binding_group = scope.binding_group.clone();
        for p in &scope.parameters {
            match p {
                crate::config::ReplicateParam::Snapshot => settings.snapshot = true,
                other => settings.parameters.push(other.name().to_string()),
            }
        }
        settings
    }

    pub(crate) fn validate_name(&self) -> Result<(), SettingsError> {
        if self.name.is_empty() || self.name.len() > 255 {
            return Err(SettingsError::Name(self.name.clone()));
        }
        Ok(())
    }

    /// The `cluster shared list` description: `lazy, cidrtree w/ snapshots`.
    pub fn description(&self) -> String {
        let mut out = format!("lazy, {}", self.kind.shape().type_name());
        if self.manager_only {
            out.push_str(" to manager");
        }
        if self.snapshot {
            out.push_str(" w/ snapshots");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_defaults_and_overrides() {
        let s =
            ObjectSettings::from_scope("inbound_cidr", None, None, None, None, None, None, None)
                .unwrap();
        assert_eq!(s.kind, ObjectKind::InboundCidr);
        assert_eq!(s.max_delay, Duration::from_secs(1));
        assert_eq!(s.max_pending, 100);
        assert_eq!(s.description(), "lazy, cidrtree w/ snapshots");
        let c = ObjectSettings::from_scope(
            "mycache",
            Some("cache"),
            None,
            Some("snapshot"),
            Some(0.05),
            Some(10),
            Some(-1),
            None,
        )
        .unwrap();
        assert!(c.snapshot && c.max_size.is_none());
        assert_eq!(c.max_delay, Duration::from_millis(50));
        let plain =
            ObjectSettings::from_scope("c2", Some("cache"), None, None, None, None, Some(5), None)
                .unwrap();
        assert!(!plain.snapshot);
        assert_eq!(plain.max_size, Some(5));
        assert_eq!(plain.description(), "lazy, cache");
        let foo = ObjectSettings::from_scope(
            "outbound_cidr_foo",
            None,
            Some("outbound_cidr"),
            None,
            None,
            None,
            None,
            Some("foo"),
        )
        .unwrap();
        assert_eq!(foo.kind, ObjectKind::OutboundCidr);
        assert!(matches!(
            ObjectSettings::from_scope("x", None, None, None, None, None, None, None),
            Err(SettingsError::UnknownType(_))
        ));
        assert!(matches!(
            ObjectSettings::from_scope(
                "metrics",
                None,
                None,
                Some("connect;bogus"),
                None,
                None,
                None,
                None
            ),
            Err(SettingsError::Parameter { .. })
        ));
        assert_eq!(Monitor::parse("300,6").unwrap().span(), 1800);
        let mut scope = crate::config::Replicate::new("OBTM", crate::config::ReplicateKind::Obtm);
        scope.max_delay = Duration::from_millis(250);
        scope.parameters = vec![crate::config::ReplicateParam::Snapshot];
        let from_config = ObjectSettings::from_config(&scope);
        assert_eq!(from_config.kind, ObjectKind::Obtm);
        assert_eq!(from_config.max_delay, Duration::from_millis(250));
        assert!(from_config.snapshot);
        let every = crate::config::ReplicateKind::ALL
            .iter()
            .map(|k| ObjectSettings::from_config(&crate::config::Replicate::new(k.name(), *k)))
            .filter(|s| s.kind.name() == s.name)
            .count();
        assert_eq!(every, 10);
        assert!(Monitor::parse("300").is_err());
    }
}
