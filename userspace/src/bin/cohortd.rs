//! `cohortd`: a Cohort cluster node (or, with `--manager`, the cluster manager).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cohort::check_config;

/// Runs a Cohort node. `--check-config` validates a configuration and prints it with every default
/// filled in.
#[derive(Parser, Debug)]
#[command(name = "cohortd", version, about)]
struct Args {
    /// Configuration file (Momentum syntax). Without it the embedded default configuration is used.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate FILE (or --config, or the embedded default), print the effective configuration and
    /// exit 0; on an error print `FILE:LINE:COL: message` and exit 2.
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    check_config: Option<Option<PathBuf>>,
    /// With --check-config: print the effective configuration as JSON.
    #[arg(long)]
    json: bool,
    /// Run as the cluster manager (eccmgr).
    #[arg(long)]
    manager: bool,
    /// Print the embedded default configuration (Momentum 4's default ecelerity-cluster.conf) and
    /// exit, e.g. to `include` it from a node's own file.
    #[arg(long)]
    print_default_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_default_config {
        print!("{}", cohort_engine::config::EMBEDDED_DEFAULT);
        return ExitCode::SUCCESS;
    }
    if let Some(file) = args.check_config {
        let file = file.or(args.config);
        return check_config::run(file.as_deref(), args.json);
    }
    eprintln!(
        "cohortd: running a {} is not available in this build yet; `cohortd --check-config FILE` validates a configuration",
        if args.manager { "manager" } else { "node" }
    );
    ExitCode::from(64)
}
