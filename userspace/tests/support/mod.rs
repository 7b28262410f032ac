//! Test support shared by the multi-process tests of the `cohort` crate.
#![allow(dead_code)] // each test binary uses a different part

pub mod netns;
