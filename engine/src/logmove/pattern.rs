//! The manager's output path pattern, `Logs { logfile = "/var/log/eccluster/%Y/%m/%d/%{l}/%{s}/%{n}" }`:
//! strftime conversions plus `%{l}` (the log's name in the node's `logs` dictionary), `%{s}` (the
//! node's subcluster) and `%{n}` (the node's name).
//!
//! The time is the record's own write time, not the clock at pull time: a record replayed after a
//! crash lands in the same file as the first time, which the exactly-once position relies on.
//! Substituted names cannot climb out of the pattern's directories: `/` becomes `_`, and `.`, `..`
//! or an empty name become `_`.

use std::path::PathBuf;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, TimeZone};

/// Why a pattern is refused; `col` is the 1-based character column in the pattern.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("logfile pattern column {col}: {what}")]
pub struct PatternError {
    pub col: usize,
    pub what: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    /// Literal text and strftime conversions (checked at parse time).
    Time(String),
    Log,
    Subcluster,
    Node,
}

/// A parsed `logfile` pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    pieces: Vec<Piece>,
    text: String,
}

impl Pattern {
    /// Parses and checks a pattern: every `%{...}` must be `l`, `s` or `n`, and every other `%`
    /// conversion one strftime knows.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        if text.is_empty() {
            return Err(PatternError {
                col: 1,
                what: "empty pattern".into(),
            });
        }
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut lit_col = 1;
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        let flush = |lit: &mut String, lit_col: usize, pieces: &mut Vec<Piece>| {
            if lit.is_empty() {
                return Ok(());
            }
            if StrftimeItems::new(lit).any(|it| matches!(it, Item::Error)) {
                return Err(PatternError {
                    col: lit_col,
                    what: format!("'{lit}' holds a conversion strftime does not know"),
                });
            }
            pieces.push(Piece::Time(std::mem::take(lit)));
            Ok(())
        };
        while i < chars.len() {
            if chars[i] == '%' && chars.get(i + 1) == Some(&'%') {
                lit.push_str("%%");
                i += 2;
                continue;
            }
            if chars[i] == '%' && chars.get(i + 1) == Some(&'{') {
                let close = chars[i..].iter().position(|&c| c == '}').map(|p| p + i);
                let Some(close) = close else {
                    return Err(PatternError {
                        col: i + 1,
                        what: "'%{' without a closing '}'".into(),
                    });
                };
                let name: String = chars[i + 2..close].iter().collect();
                let piece = match name.as_str() {
                    "l" => Piece::Log,
                    "s" => Piece::Subcluster,
                    "n" => Piece::Node,
                    other => {
                        return Err(PatternError {
                            col: i + 1,
                            what: format!(
                                "unknown macro %{{{other}}}; expected %{{l}}, %{{s}} or %{{n}}"
                            ),
                        });
                    }
                };
                flush(&mut lit, lit_col, &mut pieces)?;
                pieces.push(piece);
                i = close + 1;
                lit_col = i + 1;
                continue;
            }
            if lit.is_empty() {
                lit_col = i + 1;
            }
            lit.push(chars[i]);
            i += 1;
        }
        flush(&mut lit, lit_col, &mut pieces)?;
        Ok(Pattern {
            pieces,
            text: text.to_owned(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The directory every expansion lies under: the pattern's text up to the last `/` before
    /// its first conversion (`.` when there is none). The manager keeps its positions there.
    pub fn root(&self) -> PathBuf {
        let fixed = match self.text.find('%') {
            Some(p) => &self.text[..p],
            None => &self.text,
        };
        match fixed.rfind('/') {
            Some(0) => PathBuf::from("/"),
            Some(p) => PathBuf::from(&fixed[..p]),
            None => PathBuf::from("."),
        }
    }

    /// The output path of a record written at `time` for log `log` of node `node` in subcluster
    /// `subcluster`.
    pub fn expand<Tz: TimeZone>(
        &self,
        time: &DateTime<Tz>,
        log: &str,
        subcluster: &str,
        node: &str,
    ) -> PathBuf
    where
        Tz::Offset: std::fmt::Display,
    {
        use std::fmt::Write;
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Time(f) => {
                    // Checked at parse time; should formatting still fail, the text stays literal.
                    let mut s = String::new();
                    if write!(s, "{}", time.format(f)).is_err() {
                        s = f.clone();
                    }
                    out.push_str(&s);
                }
                Piece::Log => out.push_str(&component(log)),
                Piece::Subcluster => out.push_str(&component(subcluster)),
                Piece::Node => out.push_str(&component(node)),
            }
        }
        PathBuf::from(out)
    }
}

/// A name made safe as (part of) one path component.
fn component(name: &str) -> String {
    match name {
        "" | "." | ".." => "_".to_owned(),
        n => n.replace(['/', '\0'], "_"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn t() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 7, 14, 5, 9)
            .single()
            .expect("valid date")
    }

    #[test]
    fn documented_default_expands_to_the_documented_result() {
        let p = Pattern::parse("/var/log/eccluster/%Y/%m/%d/%{l}/%{s}/%{n}").expect("valid");
        assert_eq!(
            p.expand(&t(), "mainlog", "default", "mta1"),
            PathBuf::from("/var/log/eccluster/2026/03/07/mainlog/default/mta1")
        );
        assert_eq!(p.root(), PathBuf::from("/var/log/eccluster"));
    }

    #[test]
    fn literal_percent_and_names_with_slashes() {
        let p = Pattern::parse("out/100%%/%{n}-%{l}.%H").expect("valid");
        assert_eq!(
            p.expand(&t(), "../x", "s", ".."),
            PathBuf::from("out/100%/_-.._x.14")
        );
        assert_eq!(p.root(), PathBuf::from("out"));
        assert_eq!(
            Pattern::parse("%{n}").expect("valid").root(),
            PathBuf::from(".")
        );
    }

    #[test]
    fn bad_patterns_name_the_column() {
        let e = Pattern::parse("/a/%{x}/b").expect_err("macro");
        assert_eq!(e.col, 4);
        assert!(e.what.contains("%{x}"), "{e}");
        let e = Pattern::parse("/a/%{l").expect_err("unclosed");
        assert_eq!(e.col, 4);
        let e = Pattern::parse("/a/%{l}/%Q").expect_err("strftime");
        assert_eq!(e.col, 8, "{e}");
        assert!(Pattern::parse("").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_expansion_stays_under_root(text in "[a-z/%{}QYmdlsn.]{0,24}", name in "[a-z./]{0,6}") {
            if let Ok(p) = Pattern::parse(&text) {
                let out = p.expand(&t(), &name, &name, &name);
                let root = p.root();
                if root.as_path() != std::path::Path::new(".") {
                    proptest::prop_assert!(out.starts_with(&root), "{:?} not under {:?}", out, root);
                }
                proptest::prop_assert!(!out.components().any(|c| c == std::path::Component::ParentDir) || text.contains(".."));
            }
        }
    }
}
