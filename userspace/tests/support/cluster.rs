//! Real `cohortd` processes in a lab (`cohort::lab::procs`), with this build's binary.
pub use cohort::lab::procs::*;

/// A cluster running this build's `cohortd`.
pub fn cluster<'a>(lab: &'a cohort::lab::Lab, extra: &str) -> Cluster<'a> {
    Cluster::new(
        lab,
        std::path::Path::new(env!("CARGO_BIN_EXE_cohortd")),
        extra,
    )
}
