//! Compiles the XDP program with clang-19 (`ci/setup` installs it with libbpf-dev) and leaves the
//! object in OUT_DIR for `include_bytes!`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/cohort_xdp.c");
    println!("cargo:rerun-if-changed=include/cohort_xdp.h");
    println!("cargo:rerun-if-env-changed=COHORT_CLANG");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("cohort_xdp.o");
    let clang = std::env::var("COHORT_CLANG").unwrap_or_else(|_| "clang-19".into());
    let result = Command::new(&clang)
        .args([
            "-O2",
            "-g",
            "-Wall",
            "-Werror",
            "-target",
            "bpf",
            "-I/usr/include/x86_64-linux-gnu",
            "-Iinclude",
            "-c",
            "src/cohort_xdp.c",
            "-o",
        ])
        .arg(&out)
        .status();
    match result {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} failed to compile src/cohort_xdp.c ({s})"),
        Err(e) => panic!(
            "cannot run {clang} ({e}): run `bash ci/setup`, which installs clang-19 and libbpf-dev"
        ),
    }
}
