//! A corpus of broken configuration files (`tests/config-broken/*.conf`), each with the exact error
//! location and message `cohortd --check-config` must report. The expectations live in
//! `tests/config-broken/EXPECTED`, one line per file: `name.conf => FILE:LINE:COL: message`, where
//! FILE is relative to the corpus directory (it names the included file when the error is in one).

use std::path::Path;

use cohort_engine::config;

#[test]
fn every_broken_file_fails_at_the_expected_place() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config-broken");
    let expected = std::fs::read_to_string(dir.join("EXPECTED")).expect("EXPECTED file");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".conf"))
        .collect();
    files.sort();
    let mut listed = Vec::new();
    let mut failures = Vec::new();
    for line in expected
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (name, want) = line
            .split_once(" => ")
            .expect("`name => expectation` lines");
        listed.push(name.to_owned());
        let got = match config::load_file(&dir.join(name)) {
            Ok(_) => "loaded without error".to_owned(),
            Err(e) => {
                // Paths are shown relative to the corpus, wherever the checkout is.
                e.to_string().replace(&format!("{}/", dir.display()), "")
            }
        };
        if got != want {
            failures.push(format!("{name}\n   want: {want}\n    got: {got}"));
        }
    }
    listed.sort();
    assert_eq!(
        listed, files,
        "every corpus file has exactly one expectation"
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
