//! The chaos harness as a test (root; skips otherwise): `cohort-bench chaos` for
//! `COHORT_CHAOS_MINUTES` (2 by default) must end with every checker satisfied (one view after
//! every heal, one owner per address, counts equal to the live contributions, every acknowledged
//! journal record at the manager exactly once). Its report is printed with the test's output.

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
    assert!(out.status.success(), "chaos checkers failed:\n{report}");
    assert!(report.contains("one view after every heal"), "{report}");
    assert!(!report.contains("FAILED"), "{report}");
}
