//! `cohortd --check-config`: validate a configuration and print the effective result.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use cohort_engine::config::{self, nodename};

/// Exit status for a configuration that does not load (the contract of DESIGN.md).
pub const EXIT_BAD_CONFIG: u8 = 2;

/// Loads `file` (the embedded default when `None`), runs every check the daemon runs before it
/// opens a socket (`node::setup::check`: identity, peers, cluster key, replicated objects, the
/// transport's settings, `Security` user and group), prints the effective configuration (text or
/// JSON) on stdout and what was ignored on stderr. Returns 0, or 2 with `FILE:LINE:COL: message`
/// (for a set-up error, the location of the option it blames, else of the file's start).
pub fn run(file: Option<&Path>, json: bool, manager: bool) -> ExitCode {
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
    if cfg.cluster.enabled
        && let Err(e) = crate::node::setup::check(cfg, manager)
    {
        eprintln!("{}: {e}", locate(file, e.option));
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
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

/// `FILE:LINE:COL` of `option` in `file` (the embedded default when `None`), else of the file's
/// start.
fn locate(file: Option<&Path>, option: Option<&str>) -> String {
    let items = match file {
        Some(f) => config::syntax::parse_file(f),
        None => {
            config::syntax::parse_str(Path::new("<embedded default>"), config::EMBEDDED_DEFAULT)
        }
    };
    let name = file.map_or_else(
        || "<embedded default>".to_owned(),
        |f| f.display().to_string(),
    );
    option
        .and_then(|o| items.ok().and_then(|i| config::syntax::locate(&i, o)))
        .map_or_else(|| format!("{name}:1:1"), |l| l.to_string())
}
