//! `cohort-bench replicate-local`: the replication pipeline in one process, no network.
//!
//! Node A's application adds connections to `inbound_cidr` at a fixed *virtual* rate over a set
//! of distinct addresses; A's replicator batches, coalesces and encodes them at MTU 1400; node
//! B's replicator decodes and applies every message. The virtual clock decides when batches are
//! due, so `max_delay` and `max_pending` act exactly as they would at that rate; the wall clock
//! measures what the CPU costs. Reported: application updates per wall second through the
//! whole pipeline, datagrams, updates per datagram, and coalescing.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use cohort_engine::replicate::{MemberId, ObjectKind, ObjectSettings, Replicator, View};
use ipnet::{IpNet, Ipv4Net};
use serde_json::json;

/// Options of the `replicate-local` scenario.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Application updates per configuration.
    #[arg(long, default_value_t = 2_000_000)]
    updates: u64,
    /// Virtual application rate, updates per second.
    #[arg(long, default_value_t = 1_000_000)]
    rate: u64,
    /// Distinct addresses updated.
    #[arg(long, default_value_t = 10_000)]
    keys: u32,
}

struct Outcome {
    label: &'static str,
    max_delay: f64,
    max_pending: usize,
    wall: f64,
    datagrams: u64,
    wire_updates: u64,
    bytes: u64,
    encode_apply_secs: f64,
}

fn one(
    args: &Args,
    label: &'static str,
    max_delay: f64,
    max_pending: usize,
) -> Result<Outcome, String> {
    let settings = |name: &str| {
        let mut s = ObjectSettings::new(name, ObjectKind::InboundCidr);
        s.max_delay = Duration::from_secs_f64(max_delay);
        s.max_pending = max_pending;
        vec![s]
    };
    let (ida, idb) = (
        MemberId::new("#ec1-1#bench-a"),
        MemberId::new("#ec1-2#bench-b"),
    );
    let mut a = Replicator::new(ida.clone(), settings("inbound_cidr"), 1400, false)
        .map_err(|e| e.to_string())?;
    let mut b = Replicator::new(idb.clone(), settings("inbound_cidr"), 1400, false)
        .map_err(|e| e.to_string())?;
    let view = [ida.clone(), idb.clone()];
    let mut now = Duration::from_secs(1_000);
    a.handle_view(now, &view);
    b.handle_view(now, &view);
    while a.poll_transmit().is_some() {}
    while b.poll_transmit().is_some() {}

    let objects = a.objects().clone();
    let step = Duration::from_nanos(1_000_000_000 / args.rate.max(1));
    let nets: Vec<IpNet> = (0..args.keys)
        .map(|i| {
            IpNet::V4(Ipv4Net::from(Ipv4Addr::from(
                0x0a00_0000 | i.wrapping_mul(2_654_435_761) >> 8,
            )))
        })
        .collect();
    let (mut datagrams, mut bytes) = (0u64, 0u64);
    let mut pipeline = Duration::ZERO;
    let start = Instant::now();
    let mut x = 0x1234_5678u64;
    for i in 0..args.updates {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let net = nets[(x % nets.len() as u64) as usize];
        // Connections open and close: the sum stays small, the updates keep coming.
        let delta = if i & 1 == 0 { 1 } else { -1 };
        let due = objects
            .cidr_add("inbound_cidr", net, delta, now)
            .map_err(|e| e.to_string())?;
        now += step;
        if due || a.poll_timeout().is_some_and(|t| t <= now) {
            let t0 = Instant::now();
            a.handle_timeout(now);
            while let Some(t) = a.poll_transmit() {
                datagrams += 1;
                bytes += t.payload.len() as u64;
                b.handle_message(now, &ida, &t.payload)
                    .map_err(|e| e.to_string())?;
            }
            pipeline += t0.elapsed();
        }
    }
    a.flush(now);
    while let Some(t) = a.poll_transmit() {
        datagrams += 1;
        bytes += t.payload.len() as u64;
        b.handle_message(now, &ida, &t.payload)
            .map_err(|e| e.to_string())?;
    }
    let wall = start.elapsed().as_secs_f64();
    // The benchmark is only meaningful if B ended with A's state.
    let whole: IpNet = "10.0.0.0/8".parse().map_err(|e| format!("{e}"))?;
    let sa = a.objects().cidr_count("inbound_cidr", whole, View::Local);
    let sb = b.objects().cidr_count("inbound_cidr", whole, View::Global);
    if sa != sb {
        return Err(format!(
            "B's global view {sb:?} differs from A's contribution {sa:?}"
        ));
    }
    Ok(Outcome {
        label,
        max_delay,
        max_pending,
        wall,
        datagrams,
        wire_updates: a.stats().updates_out,
        bytes,
        encode_apply_secs: pipeline.as_secs_f64(),
    })
}

/// Runs the scenario, prints its table and returns its JSON object.
pub fn run(args: &Args) -> Result<serde_json::Value, String> {
    let outcomes = [
        one(args, "Momentum defaults", 1.0, 100)?,
        one(args, "low max_delay", 0.01, 100)?,
        one(args, "low max_delay, large max_pending", 0.01, 1_000_000)?,
        one(args, "default max_delay, large max_pending", 1.0, 1_000_000)?,
    ];
    let virtual_secs = args.updates as f64 / args.rate as f64;
    let rows: Vec<_> = outcomes
        .iter()
        .map(|o| {
            json!({
                "config": o.label, "max_delay": o.max_delay, "max_pending": o.max_pending,
                "app_updates_per_sec": (args.updates as f64 / o.wall).round(),
                "wire_updates_per_sec_encode_decode_apply": (o.wire_updates as f64 / o.encode_apply_secs.max(1e-9)).round(),
                "datagrams": o.datagrams,
                "datagrams_per_virtual_sec": (o.datagrams as f64 / virtual_secs).round(),
                "wire_updates": o.wire_updates,
                "updates_per_datagram": o.wire_updates as f64 / o.datagrams.max(1) as f64,
                "bytes_per_datagram": o.bytes as f64 / o.datagrams.max(1) as f64,
                "app_updates_per_wire_update": args.updates as f64 / o.wire_updates.max(1) as f64,
            })
        })
        .collect();
    println!(
        "replicate-local: {} updates over {} addresses at a virtual {} updates/s, MTU 1400",
        args.updates, args.keys, args.rate
    );
    println!(
        "{:<38} {:>9} {:>11} {:>13} {:>15} {:>10} {:>9} {:>9} {:>9}",
        "config",
        "max_delay",
        "max_pending",
        "app upd/s",
        "wire upd/s e+d+a",
        "datagrams",
        "dgram/vs",
        "upd/dgram",
        "B/dgram"
    );
    for o in &outcomes {
        println!(
            "{:<38} {:>9} {:>11} {:>13.0} {:>15.0} {:>10} {:>9.0} {:>9.1} {:>9.0}",
            o.label,
            o.max_delay,
            o.max_pending,
            args.updates as f64 / o.wall,
            o.wire_updates as f64 / o.encode_apply_secs.max(1e-9),
            o.datagrams,
            o.datagrams as f64 / virtual_secs,
            o.wire_updates as f64 / o.datagrams.max(1) as f64,
            o.bytes as f64 / o.datagrams.max(1) as f64,
        );
    }
    println!("app upd/s: application updates per wall second through the whole pipeline (1 core);");
    println!(
        "wire upd/s e+d+a: coalesced updates per second of A's encode plus B's decode and apply;"
    );
    println!("dgram/vs: datagrams per virtual second at the virtual rate.");
    Ok(
        json!({ "scenario": "replicate-local", "mtu": 1400, "updates": args.updates,
               "virtual_rate": args.rate, "keys": args.keys, "results": rows }),
    )
}
