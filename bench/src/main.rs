//! `cohort-bench <scenario>`: Cohort's benchmarks. Each scenario prints a table for people and,
//! with `--json`, one JSON object. None of them runs in CI; each is bounded and ends by itself.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod jlog;
mod transport;
mod udp;
mod view_change;

#[derive(Parser)]
#[command(name = "cohort-bench", version, about = "Cohort's benchmarks")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

/// One variant per scenario, each implemented in its own module.
#[derive(Subcommand)]
enum Scenario {
    /// Journal appends and reads per second, Cohort against the real jlog on the same disk.
    Jlog(jlog::Args),
    /// Datagrams per second through the io_uring and the syscall UDP drivers.
    Udp(udp::Args),
    /// Group messages per second and latency, one sender, nodes in network namespaces (root).
    Transport(transport::Args),
    /// Time from kill -9 / SIGTERM of a member to the survivors' new view (root).
    ViewChange(view_change::Args),
}

fn main() -> ExitCode {
    let result: Result<(), Box<dyn std::error::Error>> = match Cli::parse().scenario {
        Scenario::Jlog(args) => jlog::run(&args),
        Scenario::Udp(args) => udp::run(&args),
        Scenario::Transport(args) => transport::run(&args),
        Scenario::ViewChange(args) => view_change::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cohort-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
