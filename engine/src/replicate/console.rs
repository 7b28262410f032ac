//! `cluster shared list` and `cluster shared show <obj> [from <node>]`, as text in the shapes of
//! Momentum's console samples and as JSON for `--json`; and the same data as the console
//! module's status types ([`shared_list_status`], [`shared_show_status`]) for the console server,
//! whose renderers print the same bytes.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use super::cidr;
use super::gauge;
use super::member::MemberId;
use super::replica::{ReplicateError, Replicator, Rows};
use crate::console::status::{CidrRow, GaugeRow, SharedDump, SharedList, SharedObject, SharedShow};

/// Why a `cluster shared` command could not be answered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConsoleError {
    /// No such object, or another replication error.
    #[error(transparent)]
    Replicate(#[from] ReplicateError),
    /// `from <node>` named nobody in the current view.
    #[error("no member {0:?} in the current view")]
    UnknownMember(String),
    /// The console's status types have no shape for this object's rows (caches).
    #[error("object {0:?} has no console dump shape; use its text or JSON rendering")]
    NoDumpShape(String),
}

/// `cluster shared list`: the header, then each object's name right-aligned in 30 columns and
/// its description in brackets.
pub fn shared_list(replicator: &Replicator) -> String {
    let mut out = String::from("Currently managed objects:\n");
    for obj in replicator.objects().iter() {
        let s = obj.settings();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{:>30} [{}]", s.name, s.description());
    }
    out
}

/// `cluster shared list --json`.
pub fn shared_list_json(replicator: &Replicator) -> Value {
    let objects: Vec<Value> = replicator
        .objects()
        .iter()
        .map(|obj| {
            let s = obj.settings();
            json!({
                "name": s.name,
                "type": s.kind.shape().type_name(),
                "lazy": true,
                "snapshots": s.snapshot,
                "manager_only": s.manager_only,
                "max_delay": s.max_delay.as_secs_f64(),
                "max_pending": s.max_pending,
                "description": s.description(),
            })
        })
        .collect();
    json!({ "objects": objects })
}

fn resolve(replicator: &Replicator, from: Option<&str>) -> Result<Option<MemberId>, ConsoleError> {
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
        .ok_or_else(|| ConsoleError::UnknownMember(name.to_string()))
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

fn header(replicator: &Replicator, object: &str, view: &str) -> Result<String, ConsoleError> {
    let settings = replicator.objects().settings(object)?;
    let snapped = if settings.snapshot { "snapped " } else { "" };
    Ok(format!(
        "lazy, {snapped}{} '{object}', view '{view}'\n",
        settings.kind.shape().type_name()
    ))
}

/// `cluster shared show <object>` (global view) or `... from <node>` (that member's view; the
/// node name or the full member name).
pub fn shared_show(
    replicator: &Replicator,
    object: &str,
    from: Option<&str>,
    now: Duration,
) -> Result<String, ConsoleError> {
    let object = &*object_name(replicator, object);
    let member = resolve(replicator, from)?;
    let view = member
        .as_ref()
        .map_or_else(|| "global".to_string(), |m| m.to_string());
    let mut out = header(replicator, object, &view)?;
    match replicator.rows(object, member.as_ref(), now)? {
        Rows::Cidr(entries) => out.push_str(&cidr::render_entries(&entries)),
        Rows::Table(entries) => out.push_str(&gauge::render_entries(&entries)),
        Rows::Cache(entries) => {
            for (key, entry) in entries {
                let _ = writeln!(out, "{key:>60}: {}", String::from_utf8_lossy(&entry.value));
            }
        }
    }
    Ok(out)
}

/// `cluster shared show <object> [from <node>] --json`.
pub fn shared_show_json(
    replicator: &Replicator,
    object: &str,
    from: Option<&str>,
    now: Duration,
) -> Result<Value, ConsoleError> {
    let object = &*object_name(replicator, object);
    let member = resolve(replicator, from)?;
    let settings = replicator.objects().settings(object)?;
    let rows = match replicator.rows(object, member.as_ref(), now)? {
        Rows::Cidr(entries) => entries
            .into_iter()
            .map(|(net, count)| json!({ "prefix": net.to_string(), "count": count }))
            .collect::<Vec<_>>(),
        Rows::Table(entries) => entries
            .into_iter()
            .map(|(key, count)| json!({ "key": key.to_string(), "count": count }))
            .collect(),
        Rows::Cache(entries) => entries
            .into_iter()
            .map(|(key, e)| {
                json!({
                    "key": key,
                    "value": String::from_utf8_lossy(&e.value),
                    "version": e.version,
                    "writer": e.writer.to_string(),
                    "ttl": e.ttl_left(now),
                })
            })
            .collect(),
    };
    Ok(json!({
        "object": object,
        "type": settings.kind.shape().type_name(),
        "snapped": settings.snapshot,
        "view": member.map_or_else(|| "global".to_string(), |m| m.to_string()),
        "rows": rows,
    }))
}

/// `cluster shared list` as the console module's status type.
pub fn shared_list_status(replicator: &Replicator) -> SharedList {
    SharedList {
        objects: replicator
            .objects()
            .iter()
            .map(|obj| {
                let s = obj.settings();
                let mut kind = s.kind.shape().type_name().to_string();
                if s.manager_only {
                    kind.push_str(" to manager");
                }
                SharedObject {
                    name: s.name.clone(),
                    kind,
                    snapshots: s.snapshot,
                }
            })
            .collect(),
    }
}

/// `cluster shared show <object> [from <node>]` as the console module's status type. Gauge
/// tables, throttles and series become gauge rows; caches have no dump shape there.
pub fn shared_show_status(
    replicator: &Replicator,
    object: &str,
    from: Option<&str>,
    now: Duration,
) -> Result<SharedShow, ConsoleError> {
    let object = &*object_name(replicator, object);
    let member = resolve(replicator, from)?;
    let settings = replicator.objects().settings(object)?;
    let dump = match replicator.rows(object, member.as_ref(), now)? {
        Rows::Cidr(entries) => SharedDump::Cidrtree {
            rows: entries
                .into_iter()
                .map(|(prefix, count)| CidrRow { prefix, count })
                .collect(),
        },
        Rows::Table(entries) => SharedDump::GaugeTable {
            rows: entries
                .into_iter()
                .map(|(key, value)| GaugeRow {
                    key: key.to_string(),
                    value,
                })
                .collect(),
        },
        Rows::Cache(_) => return Err(ConsoleError::NoDumpShape(object.to_string())),
    };
    Ok(SharedShow {
        name: object.to_string(),
        snapshots: settings.snapshot,
        view: member.map_or_else(|| "global".to_string(), |m| m.to_string()),
        dump,
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
        let sample = "Currently managed objects:
                  inbound_cidr [lazy, cidrtree w/ snapshots]
                 outbound_cidr [lazy, cidrtree w/ snapshots]
              outbound_domains [lazy, gauge table w/ snapshots]
";
        assert_eq!(shared_list(&r), sample);
        use crate::console::render::Render;
        assert_eq!(shared_list_status(&r).text(), sample);
        let json = shared_list_json(&r);
        assert_eq!(json["objects"][2]["type"], "gauge table");
        assert_eq!(json["objects"].as_array().map(Vec::len), Some(3));
        let show = shared_show(&r, "outbound_domain", None, Duration::ZERO).unwrap();
        assert_eq!(
            show,
            "lazy, snapped gauge table 'outbound_domains', view 'global'\n"
        );
        assert!(shared_show(&r, "nothing", None, Duration::ZERO).is_err());
    }
}
