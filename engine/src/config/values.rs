//! Conversion of option values, each with its check and the location of what it refuses: the
//! loader ([`super::load`]) and the option tables ([`super::options`]) share them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{ConfigError, Loc};
use super::model::{JournalDest, Peer};
use super::syntax::Value;

/// Remembers where each option of one scope was first set, so a repeat is reported with both places.
#[derive(Default)]
pub(crate) struct Seen(HashMap<String, Loc>);

impl Seen {
    pub(crate) fn check(&mut self, key: &str, loc: &Loc) -> Result<(), ConfigError> {
        let k = key.to_ascii_lowercase();
        if let Some(first) = self.0.get(&k) {
            return Err(ConfigError::new(
                loc,
                format!("'{key}' is set twice (first at {first})"),
            ));
        }
        self.0.insert(k, loc.clone());
        Ok(())
    }
}

// ---- value conversion -------------------------------------------------------------------------

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Scalar { .. } => "a single value",
        Value::List { .. } => "a list",
        Value::Dict { .. } => "a dictionary",
    }
}

pub(crate) fn string(key: &str, v: &Value) -> Result<String, ConfigError> {
    match v {
        Value::Scalar { text, .. } => Ok(text.clone()),
        other => Err(ConfigError::new(
            other.loc(),
            format!("'{key}' expects a string, found {}", kind_of(other)),
        )),
    }
}

pub(crate) fn nonempty(key: &str, v: &Value) -> Result<String, ConfigError> {
    let s = string(key, v)?;
    if s.trim().is_empty() {
        return Err(ConfigError::new(
            v.loc(),
            format!("'{key}' must not be empty"),
        ));
    }
    Ok(s)
}

pub(crate) fn boolean(key: &str, v: &Value) -> Result<bool, ConfigError> {
    let s = string(key, v)?;
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(ConfigError::new(
            v.loc(),
            format!("'{key}' expects true or false, found '{s}'"),
        )),
    }
}

pub(crate) fn number(key: &str, v: &Value) -> Result<f64, ConfigError> {
    let s = string(key, v)?;
    match s.trim().parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(n),
        _ => Err(ConfigError::new(
            v.loc(),
            format!("'{key}' expects a number, found '{s}'"),
        )),
    }
}

/// The longest time any option takes: a day. A larger value is refused where it is written (a
/// slip such as `1e20` would otherwise overflow the daemon's timers).
pub const MAX_SECONDS: f64 = 86_400.0;

/// Seconds (fractions allowed) within `min..=max`, as a [`Duration`] (whole nanoseconds).
pub(crate) fn seconds_in(
    key: &str,
    v: &Value,
    min: f64,
    max: f64,
) -> Result<Duration, ConfigError> {
    let n = number(key, v)?;
    if n < 0.0 {
        return Err(ConfigError::new(
            v.loc(),
            format!("'{key}' is an interval and cannot be negative (found {n})"),
        ));
    }
    if n < min || n > max {
        return Err(ConfigError::new(
            v.loc(),
            format!("'{key}' must be between {min} and {max} seconds (found {n})"),
        ));
    }
    // Whole nanoseconds, rounded: 0.1 is 100 ms exactly, so printing gives back 0.1.
    Ok(Duration::from_nanos((n * 1e9).round() as u64))
}

/// Non-negative seconds, at most [`MAX_SECONDS`].
pub(crate) fn seconds(key: &str, v: &Value) -> Result<Duration, ConfigError> {
    seconds_in(key, v, 0.0, MAX_SECONDS)
}

/// Seconds greater than zero, at most [`MAX_SECONDS`].
pub(crate) fn positive_seconds(key: &str, v: &Value) -> Result<Duration, ConfigError> {
    let d = seconds(key, v)?;
    if d.is_zero() {
        return Err(ConfigError::new(
            v.loc(),
            format!("'{key}' must be greater than 0"),
        ));
    }
    Ok(d)
}

pub(crate) fn integer(key: &str, v: &Value, min: i64, max: i64) -> Result<i64, ConfigError> {
    let s = string(key, v)?;
    let n: i64 = s.trim().parse().map_err(|_| {
        ConfigError::new(
            v.loc(),
            format!("'{key}' expects a whole number, found '{s}'"),
        )
    })?;
    if n < min || n > max {
        return Err(ConfigError::new(
            v.loc(),
            format!("'{key}' must be between {min} and {max} (found {n})"),
        ));
    }
    Ok(n)
}

pub(crate) fn u32_in(key: &str, v: &Value, min: u32, max: u32) -> Result<u32, ConfigError> {
    integer(key, v, min.into(), max.into()).map(|n| n as u32)
}

pub(crate) fn ip(key: &str, v: &Value) -> Result<IpAddr, ConfigError> {
    let s = string(key, v)?;
    s.trim().parse().map_err(|_| {
        ConfigError::new(
            v.loc(),
            format!("'{key}' expects an IP address, found '{s}'"),
        )
    })
}

/// A list of strings; a single string is accepted as a one-element list.
pub(crate) fn strings(key: &str, v: &Value) -> Result<Vec<String>, ConfigError> {
    match v {
        Value::Scalar { .. } => Ok(vec![string(key, v)?]),
        Value::List { items, .. } => items.iter().map(|i| string(key, i)).collect(),
        Value::Dict { loc, .. } => Err(ConfigError::new(
            loc,
            format!("'{key}' expects a list, found a dictionary"),
        )),
    }
}

pub(crate) fn octal_mode(key: &str, v: &Value) -> Result<u32, ConfigError> {
    let s = string(key, v)?;
    match u32::from_str_radix(s.trim(), 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(ConfigError::new(
            v.loc(),
            format!("'{key}' expects an octal file mode such as \"0640\", found '{s}'"),
        )),
    }
}

/// One of `options` (names matched case-insensitively); the error lists the names.
pub(crate) fn choice<T: Copy>(
    key: &str,
    v: &Value,
    options: &[(&str, T)],
) -> Result<T, ConfigError> {
    let s = string(key, v)?;
    if let Some((_, t)) = options
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s.trim()))
    {
        return Ok(*t);
    }
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    let list = match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    };
    Err(ConfigError::new(
        v.loc(),
        format!("'{key}' expects {list}, found '{s}'"),
    ))
}

/// A path, made absolute against the directory of the file that named it.
pub(crate) fn path_from(key: &str, v: &Value) -> Result<PathBuf, ConfigError> {
    let p = PathBuf::from(nonempty(key, v)?);
    if p.is_absolute() {
        return Ok(p);
    }
    let base = v.loc().file.parent().map(Path::to_path_buf);
    Ok(match base {
        Some(b) if !b.as_os_str().is_empty() => b.join(p),
        _ => std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p),
    })
}

pub(crate) fn absolute(key: &str, v: &Value) -> Result<PathBuf, ConfigError> {
    let p = PathBuf::from(nonempty(key, v)?);
    if !p.is_absolute() {
        return Err(ConfigError::new(
            v.loc(),
            format!("'{key}' must be an absolute path, found '{}'", p.display()),
        ));
    }
    Ok(p)
}

/// `"/tmp/2025"`, `"*:4802"`, `":4809"`, `"2025"`, `"127.0.0.1:2025"`, `"[::1]:2025"`.
pub(crate) fn logs_dict(key: &str, v: &Value) -> Result<Vec<(String, PathBuf)>, ConfigError> {
    let Value::Dict { entries, .. } = v else {
        return Err(ConfigError::new(
            v.loc(),
            format!(
                "'{key}' expects a dictionary [ name = \"/path\" ... ], found {}",
                kind_of(v)
            ),
        ));
    };
    let mut seen = Seen::default();
    let mut out = Vec::new();
    for e in entries {
        seen.check(&e.key, &e.loc)?;
        out.push((e.key.clone(), absolute(&e.key, &e.value)?));
    }
    Ok(out)
}

pub(crate) fn peers(key: &str, v: &Value) -> Result<Vec<Peer>, ConfigError> {
    let Value::Dict { entries, .. } = v else {
        return Err(ConfigError::new(
            v.loc(),
            format!(
                "'{key}' expects a dictionary [ node1 = \"10.0.0.1\" ... ], found {}",
                kind_of(v)
            ),
        ));
    };
    let mut names = Seen::default();
    let mut addrs: HashMap<String, Loc> = HashMap::new();
    let mut out = Vec::new();
    for e in entries {
        if e.key.trim().is_empty() || e.key.contains(char::is_whitespace) || e.key.contains('#') {
            return Err(ConfigError::new(
                &e.loc,
                format!("bad peer name '{}'", e.key),
            ));
        }
        names.check(&e.key, &e.loc).map_err(|err| {
            ConfigError::new(&err.loc, format!("duplicate peer: {}", err.message))
        })?;
        let address = nonempty(&e.key, &e.value)?.trim().to_owned();
        if address.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                e.value.loc(),
                format!("bad address '{address}' for peer '{}'", e.key),
            ));
        }
        let norm = address.to_ascii_lowercase();
        if let Some(first) = addrs.get(&norm) {
            return Err(ConfigError::new(
                e.value.loc(),
                format!("duplicate peer address '{address}' (first at {first})"),
            ));
        }
        addrs.insert(norm, e.value.loc().clone());
        out.push(Peer {
            name: e.key.clone(),
            address,
        });
    }
    Ok(out)
}

/// `cluster:///path=>sub`, `jlog:///path?subscribers=a,b` (both forms may be combined).
pub fn parse_journal(s: &str) -> Result<Option<JournalDest>, String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Ok(None);
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "cluster" && scheme != "jlog" {
        return Ok(None);
    }
    let (rest, arrow) = match rest.split_once("=>") {
        Some((r, sub)) => (r, Some(sub)),
        None => (rest, None),
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if !path.starts_with('/') {
        return Err(format!(
            "journal path in '{s}' must be absolute, as in {scheme}:///var/log/ecelerity/mainlog.cluster"
        ));
    }
    let mut subscribers: Vec<String> = Vec::new();
    let mut add = |name: &str| -> Result<(), String> {
        let name = name.trim();
        if name.is_empty() || name.contains(['/', ',', '?', '=']) {
            return Err(format!("bad subscriber name '{name}' in '{s}'"));
        }
        if !subscribers.iter().any(|x| x == name) {
            subscribers.push(name.to_owned());
        }
        Ok(())
    };
    if let Some(q) = query {
        for param in q.split('&').filter(|p| !p.is_empty()) {
            match param.split_once('=') {
                Some(("subscribers", list)) => {
                    for n in list.split(',') {
                        add(n)?;
                    }
                }
                _ => return Err(format!("unknown journal parameter '{param}' in '{s}'")),
            }
        }
    }
    if let Some(sub) = arrow {
        add(sub)?;
    }
    Ok(Some(JournalDest {
        scheme,
        path: PathBuf::from(path),
        subscribers,
    }))
}
