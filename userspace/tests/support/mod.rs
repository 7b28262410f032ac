//! Test support shared by the multi-process tests of the `cohort` crate (the lab itself is
//! `cohort::lab`, shared with the benchmarks).
#![allow(dead_code)] // each test binary uses a different part

pub mod cluster;

/// `promtool check metrics` on an exposition (when promtool is installed: `ci/setup` installs
/// it; otherwise the check is skipped and says so).
pub fn promtool_check(body: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(mut p) => {
            p.stdin
                .take()
                .expect("stdin")
                .write_all(body.as_bytes())
                .expect("write");
            let out = p.wait_with_output().expect("promtool runs");
            assert!(
                out.status.success(),
                "promtool: {}{}\n{body}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(e) => eprintln!("SKIP promtool check: {e} (bash ci/setup installs it)"),
    }
}
