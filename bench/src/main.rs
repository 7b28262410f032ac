//! `cohort-bench <scenario>`: Cohort's benchmarks. Each scenario prints a table for people and,
//! with `--json`, one JSON object. None of them runs in CI; each is bounded and ends by itself.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod jlog;
mod udp;

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
}

fn main() -> ExitCode {
    let result: Result<(), Box<dyn std::error::Error>> = match Cli::parse().scenario {
        Scenario::Jlog(args) => jlog::run(&args),
        Scenario::Udp(args) => udp::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cohort-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
