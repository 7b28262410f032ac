//! Every fuzz target's check (`cohort_engine::fuzzing`) on its seeds (valid inputs made by the
//! encoders; each target must have some) and on every input a fuzzer ever found
//! (`engine/fuzz/regressions/<target>/`, one file per crash, added when it was fixed).

use std::path::Path;

use cohort_engine::fuzzing;

#[test]
fn every_target_passes_its_seeds() {
    for (name, check) in fuzzing::TARGETS {
        let seeds = fuzzing::seeds(name);
        assert!(!seeds.is_empty(), "{name} has seeds");
        for s in &seeds {
            check(s);
        }
    }
}

#[test]
fn every_input_the_fuzzers_found_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut ran = 0;
    for (name, check) in fuzzing::TARGETS {
        let Ok(dir) = std::fs::read_dir(root.join(name)) else {
            continue;
        };
        for f in dir.flatten() {
            let bytes = std::fs::read(f.path()).expect("regression input");
            eprintln!("{name}: {}", f.path().display());
            check(&bytes);
            ran += 1;
        }
    }
    assert!(ran > 0, "the regression corpus is in the repository");
}
