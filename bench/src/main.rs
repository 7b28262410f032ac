//! `cohort-bench <scenario>`: each scenario prints a table for people and, with `--json`, one
//! JSON object. Scenarios are bounded and finish by themselves.

mod cidr;
mod replicate_local;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cohort-bench", about = "Cohort benchmarks")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

/// One variant per scenario, one module per scenario.
#[derive(Subcommand)]
enum Scenario {
    /// CIDR tree lookups and increments, 1 and 2 threads, next to the prefix-trie crate.
    Cidr(cidr::Args),
    /// In-process replication pipeline: local updates, batching, encoding, decoding, applying.
    ReplicateLocal(replicate_local::Args),
}

fn main() {
    let cli = Cli::parse();
    match cli.scenario {
        Scenario::Cidr(args) => cidr::run(&args),
        Scenario::ReplicateLocal(args) => replicate_local::run(&args),
    }
}
