//! The XDP fast path of Cohort: an ARP responder for owned DuraVIP addresses and a heartbeat
//! stamper, written in C (`ebpf/src/*.c`) and compiled by `build.rs` with clang-19.
//!
//! The program itself lands with the DuraVIP data-plane issue; this crate fixes its place in the
//! workspace so that `userspace` can depend on it from the start.
