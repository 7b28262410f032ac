//! `cohort-bench <scenario>`: each scenario prints a table for people and, with `--json`, one JSON
//! object on the last line of stdout. Every scenario is bounded and stops by itself.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cidr;
mod replicate_local;
mod udp;

#[derive(Parser, Debug)]
#[command(name = "cohort-bench", version, about)]
struct Cli {
    /// Print one JSON object with the results after the table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Datagrams per second through the io_uring and the syscall UDP drivers.
    Udp(udp::Args),
    /// CIDR tree lookups and increments, 1 and 2 threads, next to the prefix-trie crate.
    Cidr(cidr::Args),
    /// In-process replication pipeline: local updates, batching, encoding, decoding, applying.
    ReplicateLocal(replicate_local::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.scenario {
        Scenario::Udp(a) => udp::run(a),
        Scenario::Cidr(a) => cidr::run(a),
        Scenario::ReplicateLocal(a) => replicate_local::run(a),
    };
    match result {
        Ok(v) => {
            if cli.json {
                println!("{v}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cohort-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
