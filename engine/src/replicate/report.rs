//! What `cluster shared list` and `cluster shared show <obj> [from <node>]` report: the
//! replicator's state as plain data ([`SharedList`], [`SharedShow`]). The console renders it,
//! as text in the shapes of Momentum's samples and as JSON for `--json`, through its one
//! `Render` trait (`crate::console::render`); nothing here knows the console.

use std::time::Duration;

use serde::Serialize;

use super::member::MemberId;
use super::replica::{ReplicateError, Replicator, Rows};

/// Why a `cluster shared` command could not be answered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    /// No such object, or another replication error.
    #[error(transparent)]
    Replicate(#[from] ReplicateError),
    /// `from <node>` named nobody in the current view.
    #[error("no member {0:?} in the current view")]
    UnknownMember(String),
}

/// One object of `cluster shared list`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SharedObject {
    pub name: String,
    /// The object's type: `cidrtree`, `gauge table`, `cache`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Always true: every Cohort object is lazily replicated, as Momentum's are.
    pub lazy: bool,
    /// Snapshotted to joining members (`w/ snapshots`).
    pub snapshots: bool,
    /// Replicated to the manager only (`to manager`).
    pub manager_only: bool,
    /// `max_delay` in seconds.
    pub max_delay: f64,
    pub max_pending: usize,
    /// The bracketed description: `lazy, cidrtree w/ snapshots`.
    pub description: String,
}

/// `cluster shared list`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SharedList {
    pub objects: Vec<SharedObject>,
}

/// One stored prefix of a CIDR tree and the count of everything under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CidrRow {
    pub prefix: ipnet::IpNet,
    pub count: i64,
}

/// One key of a gauge table (or throttle, or series bucket) and its gauge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GaugeRow {
    pub key: String,
    pub count: i64,
}

/// One entry of a cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CacheRow {
    pub key: String,
    /// The value, as text (invalid UTF-8 replaced).
    pub value: String,
    /// Lamport version of the write.
    pub version: u64,
    /// The member that wrote it.
    pub writer: String,
    /// Seconds left to live; 0 for no expiry.
    pub ttl: u32,
}

/// The rows of a `cluster shared show` dump, by the object's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum SharedRows {
    /// A CIDR tree: each stored prefix with the count under it, in tree order.
    Cidr(Vec<CidrRow>),
    /// A gauge table, throttle or series: key and gauge, in key order.
    Table(Vec<GaugeRow>),
    /// A cache: entries in key order.
    Cache(Vec<CacheRow>),
}

/// `cluster shared show <obj> [from <node>]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SharedShow {
    /// The configured object's name.
    pub object: String,
    /// Its type: `cidrtree`, `gauge table`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Snapshots are kept (`snapped`).
    pub snapped: bool,
    /// `global`, or the private name of the member whose contribution is shown.
    pub view: String,
    pub rows: SharedRows,
}

/// `cluster shared list`.
pub fn shared_list(replicator: &Replicator) -> SharedList {
    SharedList {
        objects: replicator
            .objects()
            .iter()
            .map(|obj| {
                let s = obj.settings();
                let (max_delay, max_pending) = obj.batching();
                SharedObject {
                    name: s.name.clone(),
                    kind: s.kind.shape().type_name().to_string(),
                    lazy: true,
                    snapshots: s.snapshot,
                    manager_only: s.manager_only,
                    max_delay: max_delay.as_secs_f64(),
                    max_pending,
                    description: s.description(),
                }
            })
            .collect(),
    }
}

fn resolve(replicator: &Replicator, from: Option<&str>) -> Result<Option<MemberId>, ReportError> {
    let Some(name) = from else {
        return Ok(None);
    };
    if replicator.me().matches(name) {
        return Ok(Some(replicator.me().clone()));
    }
    replicator
        .view()
        .iter()
        .find(|m| m.matches(name))
        .cloned()
        .map(Some)
        .ok_or_else(|| ReportError::UnknownMember(name.to_string()))
}

/// The configured object a console argument names: exact, or the singular/plural spelling the
/// Momentum samples mix up (`outbound_domain` for `outbound_domains`).
fn object_name<'a>(replicator: &Replicator, object: &'a str) -> std::borrow::Cow<'a, str> {
    let objects = replicator.objects();
    if objects.settings(object).is_ok() {
        return object.into();
    }
    let plural = format!("{object}s");
    if objects.settings(&plural).is_ok() {
        return plural.into();
    }
    match object.strip_suffix('s') {
        Some(singular) if objects.settings(singular).is_ok() => singular.into(),
        _ => object.into(),
    }
}

/// `cluster shared show <object>` (global view) or `... from <node>` (that member's view; the
/// node name or the full member name).
pub fn shared_show(
    replicator: &Replicator,
    object: &str,
    from: Option<&str>,
    now: Duration,
) -> Result<SharedShow, ReportError> {
    let object = &*object_name(replicator, object);
    let member = resolve(replicator, from)?;
    let settings = replicator.objects().settings(object)?;
    let rows = match replicator.rows(object, member.as_ref(), now)? {
        Rows::Cidr(entries) => SharedRows::Cidr(
            entries
                .into_iter()
                .map(|(prefix, count)| CidrRow { prefix, count })
                .collect(),
        ),
        Rows::Table(entries) => SharedRows::Table(
            entries
                .into_iter()
                .map(|(key, count)| GaugeRow {
                    key: key.to_string(),
                    count,
                })
                .collect(),
        ),
        Rows::Cache(entries) => SharedRows::Cache(
            entries
                .into_iter()
                .map(|(key, e)| CacheRow {
                    value: String::from_utf8_lossy(&e.value).into_owned(),
                    version: e.version,
                    writer: e.writer.to_string(),
                    ttl: e.ttl_left(now),
                    key,
                })
                .collect(),
        ),
    };
    Ok(SharedShow {
        object: object.to_string(),
        kind: settings.kind.shape().type_name().to_string(),
        snapped: settings.snapshot,
        view: member.map_or_else(|| "global".to_string(), |m| m.to_string()),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicate::object::{ObjectKind, ObjectSettings};

    #[test]
    fn list_matches_the_sample() {
        let settings = ["inbound_cidr", "outbound_cidr", "outbound_domains"]
            .map(|n| ObjectSettings::new(n, ObjectKind::from_name(n).unwrap()))
            .to_vec();
        let r = Replicator::new(MemberId::new("#ec1-1#relay-0-1"), settings, 1400, false).unwrap();
        let list = shared_list(&r);
        let described: Vec<(&str, &str)> = list
            .objects
            .iter()
            .map(|o| (o.name.as_str(), o.description.as_str()))
            .collect();
        assert_eq!(
            described,
            [
                ("inbound_cidr", "lazy, cidrtree w/ snapshots"),
                ("outbound_cidr", "lazy, cidrtree w/ snapshots"),
                ("outbound_domains", "lazy, gauge table w/ snapshots"),
            ]
        );
        assert_eq!(list.objects[2].kind, "gauge table");
        // The singular spelling of Momentum's sample names the configured plural.
        let show = shared_show(&r, "outbound_domain", None, Duration::ZERO).unwrap();
        assert_eq!(
            (show.object.as_str(), show.kind.as_str(), show.view.as_str()),
            ("outbound_domains", "gauge table", "global")
        );
        assert_eq!(show.rows, SharedRows::Table(Vec::new()));
        assert_eq!(
            shared_show(&r, "outbound_domain", Some("nobody"), Duration::ZERO),
            Err(ReportError::UnknownMember("nobody".into()))
        );
        assert!(shared_show(&r, "nothing", None, Duration::ZERO).is_err());
    }
}
