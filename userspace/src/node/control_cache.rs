//! The manager's control cache on disk (`Logs { Control_Cache = PATH }`): the answers to the
//! commands it sent to the cluster, kept so an operator (or a script) can read them later and so
//! `flush control cache` has something to clear.
//!
//! Layout: `PATH/` holds one directory per command, named by the command's canonical text with
//! every byte outside `[A-Za-z0-9._-]` written `%XX` (`cluster%20info`; a `--json` request adds
//! `.json`). Inside, `command` describes the request (id, line, group, addressees, when it was
//! sent) and each answer is a file named for the node (escaped the same way): `NODE` holds the
//! node's output, `NODE.error` its error message, `NODE.missing` why it did not answer. A newer
//! request of the same command replaces the directory. Only directories holding a `command` file
//! are ever removed, so a mistyped `Control_Cache` cannot make the manager delete anything else.

use std::io;
use std::path::{Path, PathBuf};

/// The file naming a cached command's request.
const COMMAND_FILE: &str = "command";

/// `s` as a single path component: bytes outside `[A-Za-z0-9._-]` as `%XX`, and a leading dot
/// escaped so that no name is hidden, `.` or `..`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// How a node's answer ended, as cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok(String),
    Error(String),
    /// No answer; the reason (left the view, timed out).
    Missing(String),
}

/// The control cache directory (or none, when it cannot be created: answers then live only in
/// memory and the reason is logged once).
#[derive(Debug)]
pub struct ControlCache {
    dir: Option<PathBuf>,
}

impl ControlCache {
    /// Opens (creating) `dir` and removes the command directories a previous run left (stale
    /// answers from another incarnation of the cluster).
    pub fn open(dir: &Path) -> ControlCache {
        match std::fs::create_dir_all(dir) {
            Ok(()) => {
                let c = ControlCache {
                    dir: Some(dir.to_path_buf()),
                };
                if let Err(e) = c.flush() {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot clear the stale control cache");
                }
                c
            }
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "control cache unavailable; answers are kept in memory only");
                ControlCache { dir: None }
            }
        }
    }

    /// The directory of one command's answers.
    pub fn command_dir(&self, line: &str, json: bool) -> Option<PathBuf> {
        let name = if json {
            format!("{}.json", escape(line))
        } else {
            escape(line)
        };
        self.dir.as_ref().map(|d| d.join(name))
    }

    /// Starts a command's entry (replacing an older one): writes its `command` file.
    pub fn begin(&self, line: &str, json: bool, description: &str) {
        let Some(d) = self.command_dir(line, json) else {
            return;
        };
        let r = (|| {
            if d.join(COMMAND_FILE).exists() {
                std::fs::remove_dir_all(&d)?;
            }
            std::fs::create_dir_all(&d)?;
            std::fs::write(d.join(COMMAND_FILE), description)
        })();
        if let Err(e) = r {
            tracing::warn!(dir = %d.display(), error = %e, "cannot write the control cache");
        }
    }

    /// Writes one node's answer to a command's entry.
    pub fn record(&self, line: &str, json: bool, node: &str, outcome: &Outcome) {
        let Some(d) = self.command_dir(line, json) else {
            return;
        };
        let (name, body) = match outcome {
            Outcome::Ok(b) => (escape(node), b),
            Outcome::Error(b) => (format!("{}.error", escape(node)), b),
            Outcome::Missing(b) => (format!("{}.missing", escape(node)), b),
        };
        if let Err(e) = std::fs::write(d.join(name), body) {
            tracing::warn!(dir = %d.display(), error = %e, "cannot write the control cache");
        }
    }

    /// Removes every command entry; returns how many there were.
    pub fn flush(&self) -> io::Result<usize> {
        let Some(dir) = &self.dir else {
            return Ok(0);
        };
        let mut n = 0;
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.is_dir() && p.join(COMMAND_FILE).is_file() {
                std::fs::remove_dir_all(&p)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_names_are_single_safe_components() {
        assert_eq!(escape("cluster info"), "cluster%20info");
        assert_eq!(escape("../x/y"), "%2E.%2Fx%2Fy");
        assert_eq!(escape(".."), "%2E.");
        assert_eq!(escape(""), "%00");
        assert_eq!(escape("node-1.a_b"), "node-1.a_b");
    }

    #[test]
    fn entries_are_written_replaced_and_flushed_and_nothing_else_is() {
        let t = tempfile::tempdir().expect("tempdir");
        let keep = t.path().join("operator-notes");
        std::fs::create_dir_all(&keep).expect("mkdir");
        let c = ControlCache::open(t.path());
        c.begin("cluster info", false, "request 1\n");
        c.record(
            "cluster info",
            false,
            "node1",
            &Outcome::Ok("Daemon: 4802\n".into()),
        );
        c.record(
            "cluster info",
            false,
            "node2",
            &Outcome::Missing("timed out".into()),
        );
        let d = c.command_dir("cluster info", false).expect("dir");
        assert_eq!(
            std::fs::read_to_string(d.join("node1")).expect("answer"),
            "Daemon: 4802\n"
        );
        assert!(d.join("node2.missing").is_file());
        c.begin("cluster info", false, "request 2\n");
        assert!(
            !d.join("node1").exists(),
            "a newer request replaces the entry"
        );
        assert_eq!(c.flush().expect("flush"), 1);
        assert!(!d.exists());
        assert!(keep.is_dir(), "only command entries are removed");
    }
}
