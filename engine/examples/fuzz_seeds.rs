//! Writes each fuzz target's seeds (valid inputs made by the encoders) into `DIR/<target>/`:
//! `cargo run -p cohort-engine --example fuzz_seeds -- DIR` (what `ci/fuzz` does).

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: fuzz_seeds DIR");
        std::process::exit(2);
    };
    for (name, _) in cohort_engine::fuzzing::TARGETS {
        let d = std::path::Path::new(&dir).join(name);
        std::fs::create_dir_all(&d).expect("create the seed directory");
        for (k, s) in cohort_engine::fuzzing::seeds(name).iter().enumerate() {
            std::fs::write(d.join(format!("seed{k:03}")), s).expect("write a seed");
        }
    }
}
