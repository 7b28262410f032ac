//! `cohort-bench <scenario>`: Cohort's benchmarks. Each scenario prints a table for people and,
//! with `--json`, one JSON object. None of them runs in CI; each is bounded and ends by itself.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod arp_flood;
mod arpwire;
mod chaos;
mod cidr;
mod failover;
mod jlog;
mod logmove;
mod replicate;
mod replicate_local;
mod replicate_mix;
mod replicate_target;
mod report;
mod soak;
mod transport;
mod udp;
mod view_change;

#[derive(Parser)]
#[command(name = "cohort-bench", version, about = "Cohort's benchmarks")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

/// A scenario whose module returns its JSON object, with the `--json` flag that prints it.
#[derive(clap::Args)]
struct WithJson<A: clap::Args> {
    #[command(flatten)]
    args: A,
    /// Also print one JSON object after the table.
    #[arg(long)]
    json: bool,
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
    /// CIDR tree lookups and increments, 1 and 2 threads, next to the prefix-trie crate.
    Cidr(WithJson<cidr::Args>),
    /// The manager's log pull: records per second from 3 nodes into the manager and the lag from
    /// append on a node to durable on the manager, p50/p99, in network namespaces (root).
    Logmove(logmove::Args),
    /// Replicated updates through the whole stack, nodes in network namespaces (root).
    Replicate(replicate::Args),
    /// In-process replication pipeline: local updates, batching, encoding, decoding, applying.
    ReplicateLocal(WithJson<replicate_local::Args>),
    /// DuraVIP owner crash (kill -9 + cable cut) to the survivors' new view and to a client's ARP
    /// request answered with a survivor's MAC, 3 nodes and a client in namespaces (root).
    Failover(failover::Args),
    /// Faults injected continuously into a 5-node cluster with a manager and a client while it
    /// replicates, moves DuraVIPs and ships journals, and checkers of what users care about (root).
    Chaos(chaos::Args),
    /// ARP replies per second for the same request flood from the kernel and from the XDP fast
    /// path, two namespaces on a bridge (root).
    ArpFlood(arp_flood::Args),
    /// A failure-detection profile under CPU stress (`stress-ng --cpu N`): views installed while
    /// nobody left, in network namespaces (root).
    Soak(soak::Args),
}

fn print_json(
    json: bool,
    v: Result<serde_json::Value, String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let v = v?;
    if json {
        println!("{v}");
    }
    Ok(())
}

fn main() -> ExitCode {
    if cohort::man::intercept::<Cli>("1") {
        return ExitCode::SUCCESS;
    }
    cohort::allocator::tune();
    let result: Result<(), Box<dyn std::error::Error>> = match Cli::parse().scenario {
        Scenario::Jlog(args) => jlog::run(&args),
        Scenario::Udp(args) => udp::run(&args),
        Scenario::Transport(args) => transport::run(&args),
        Scenario::ViewChange(args) => view_change::run(&args),
        Scenario::Cidr(w) => print_json(w.json, cidr::run(&w.args)),
        Scenario::Replicate(args) => replicate::run(&args),
        Scenario::Logmove(args) => logmove::run(&args),
        Scenario::ReplicateLocal(w) => print_json(w.json, replicate_local::run(&w.args)),
        Scenario::Failover(args) => failover::run(&args),
        Scenario::Chaos(args) => chaos::run(&args),
        Scenario::ArpFlood(args) => arp_flood::run(&args),
        Scenario::Soak(args) => soak::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cohort-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
