//! Real `cohortd` processes in a lab (`cohort::lab::procs`), with this build's binary.
pub use cohort::lab::procs::*;

/// This build's binary `name`, or a copy of it in `COHORT_TEST_BIN_DIR` when that is set: with a
/// target directory shared between work trees, another tree's build can replace the binaries
/// under `target/debug` while these tests run.
pub fn bin(name: &str, built: &str) -> std::path::PathBuf {
    match std::env::var_os("COHORT_TEST_BIN_DIR") {
        Some(dir) => std::path::Path::new(&dir).join(name),
        None => std::path::PathBuf::from(built),
    }
}

/// A cluster running this build's `cohortd`.
pub fn cluster<'a>(lab: &'a cohort::lab::Lab, extra: &str) -> Cluster<'a> {
    Cluster::new(lab, &bin("cohortd", env!("CARGO_BIN_EXE_cohortd")), extra)
}
