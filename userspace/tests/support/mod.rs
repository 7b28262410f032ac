//! Test support shared by the multi-process tests of the `cohort` crate (the lab itself is
//! `cohort::lab`, shared with the benchmarks).
#![allow(dead_code)] // each test binary uses a different part

pub mod cluster;
