//! The chaos harness as a test (root; skips otherwise): `cohort-bench chaos` for
//! `COHORT_CHAOS_MINUTES` (2 by default) must end with every checker satisfied (one view after
//! every heal, one owner per address past the grace, counts equal to the live contributions,
//! every acknowledged journal record at the manager exactly once, the client's ARP answered by
//! each owner). The report is printed with the output.

use std::path::Path;
use std::process::Command;

#[test]
fn the_chaos_harness_finds_nothing() {
    if !cohort::lab::is_root() {
        eprintln!("SKIP the_chaos_harness_finds_nothing: needs root (network namespaces)");
        return;
    }
    let bench = Path::new(env!("CARGO_BIN_EXE_cohort-bench"));
    if !bench.with_file_name("cohortd").exists() {
        eprintln!("SKIP the_chaos_harness_finds_nothing: cohortd is not built beside cohort-bench");
        return;
    }
    let minutes = std::env::var("COHORT_CHAOS_MINUTES").unwrap_or_else(|_| "2".into());
    let out = Command::new(bench)
        .args(["chaos", "--minutes", &minutes, "--seed", "3"])
        .output()
        .expect("cohort-bench runs");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("one view after every heal"), "{report}");
    // The one-owner checker must have looked (a run with no sample would prove nothing).
    let samples: u64 = report
        .lines()
        .find_map(|l| l.strip_prefix("one owner: "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if minutes.parse::<f64>().unwrap_or(2.0) >= 1.0 {
        assert!(
            samples > 0,
            "the one-owner checker took no sample:\n{report}"
        );
    }
    // An address on two running nodes in consecutive samples past the grace is a failure like
    // any other (it was the open finding after a kill -9 with the debug build: a member left out
    // of a view change kept its addresses while the others plumbed them at once).
    assert!(
        !report.contains("FAILED: two owners in consecutive samples"),
        "an address had two owners:\n{report}"
    );
    let failed: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("FAILED: "))
        .collect();
    assert!(failed.is_empty(), "chaos checkers failed:\n{report}");
    assert!(out.status.success(), "cohort-bench chaos failed:\n{report}");
}
