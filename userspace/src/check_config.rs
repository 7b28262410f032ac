//! `cohortd --check-config`: validate a configuration and print the effective result.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use cohort_engine::config::{self, nodename};

/// Exit status for a configuration that does not load (the contract of DESIGN.md).
pub const EXIT_BAD_CONFIG: u8 = 2;

/// Loads `file` (the embedded default when `None`), prints the effective configuration (text or
/// JSON) on stdout and what was ignored on stderr. Returns 0, or 2 with `FILE:LINE:COL: message`.
pub fn run(file: Option<&Path>, json: bool) -> ExitCode {
    let loaded = match file {
        Some(f) => config::load_file(f),
        None => config::load_str(Path::new("<embedded default>"), config::EMBEDDED_DEFAULT),
    };
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    for i in &loaded.ignored {
        eprintln!("{i}");
    }
    let cfg = &loaded.config;
    let name = nodename::nodename(&cfg.cluster);
    let sub = nodename::subcluster(&cfg.cluster);
    let out = if json {
        let v = serde_json::json!({
            "nodename": name,
            "subcluster": sub,
            "config": cfg,
            "ignored": loaded.ignored.iter().map(|i| serde_json::json!({
                "location": i.loc.to_string(), "path": i.path, "reason": i.reason,
            })).collect::<Vec<_>>(),
        });
        format!("{v:#}\n")
    } else {
        let source = file.map_or_else(
            || "<embedded default>".to_owned(),
            |f| f.display().to_string(),
        );
        format!(
            "# effective configuration of {source}, defaults filled in\n# nodename: {}\n# subcluster: {sub}\n{}",
            name.as_deref()
                .unwrap_or("(none: set nodename, EC_NODE_NAME or the hostname)"),
            config::render(cfg)
        )
    };
    // A closed stdout (e.g. `| head`) is not a configuration error.
    let _ = std::io::stdout().write_all(out.as_bytes());
    ExitCode::SUCCESS
}
