//! `cohort-bench udp`: datagrams per second through each UDP driver on loopback, one sender thread
//! and one receiver thread, the same datagram size and count for both drivers in the same run.

use std::time::{Duration, Instant};

use cohort_engine::udp::{self, Driver, Outgoing};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Datagrams sent per driver.
    #[arg(long, default_value_t = 500_000)]
    pub count: u64,
    /// Payload bytes per datagram.
    #[arg(long, default_value_t = 1400)]
    pub size: usize,
    /// Datagrams handed to the driver per send call.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
}

struct Run {
    driver: Driver,
    sent: u64,
    received: u64,
    secs: f64,
    send_syscalls: u64,
    recv_syscalls: u64,
}

fn run_one(driver: Driver, a: &Args) -> Result<Run, String> {
    let any = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    let mut rx = udp::open(driver, any).map_err(|e| format!("{driver:?} receiver: {e}"))?;
    let mut tx = udp::open(driver, any).map_err(|e| format!("{driver:?} sender: {e}"))?;
    let to = rx.local_addr().map_err(|e| e.to_string())?;
    let payload = vec![0xabu8; a.size];
    let (count, batch) = (a.count, a.batch.max(1));
    let start = Instant::now();
    let receiver = std::thread::spawn(move || {
        let mut got = 0u64;
        let mut idle = 0;
        // Loopback drops when the receiver falls behind; stop after 200 ms of silence.
        while got < count && idle < 20 {
            let n = rx
                .recv(Some(Duration::from_millis(10)), &mut |_| {})
                .unwrap_or(0);
            if n == 0 {
                idle += 1;
            } else {
                idle = 0;
                got += n as u64;
            }
        }
        (got, rx.stats().syscalls)
    });
    let mut sent = 0u64;
    while sent < count {
        let n = batch.min((count - sent) as usize);
        let out: Vec<Outgoing<'_>> = (0..n).map(|_| Outgoing { to, data: &payload }).collect();
        sent += tx.send_batch(&out).map_err(|e| e.to_string())? as u64;
    }
    let (received, recv_syscalls) = receiver
        .join()
        .map_err(|_| "receiver panicked".to_string())?;
    let secs = start.elapsed().as_secs_f64();
    Ok(Run {
        driver,
        sent,
        received,
        secs,
        send_syscalls: tx.stats().syscalls,
        recv_syscalls,
    })
}

pub fn run(a: &Args) -> Result<serde_json::Value, String> {
    let mut rows = Vec::new();
    println!(
        "udp: {} datagrams of {} B on loopback, {} per send call",
        a.count, a.size, a.batch
    );
    println!(
        "{:<8} {:>12} {:>12} {:>10} {:>10} {:>12} {:>12}",
        "driver", "sent/s", "received/s", "loss %", "MB/s", "send calls", "recv calls"
    );
    for driver in [Driver::Syscall, Driver::Uring] {
        let r = run_one(driver, a)?;
        let loss = 100.0 * (r.sent - r.received.min(r.sent)) as f64 / r.sent.max(1) as f64;
        let name = format!("{:?}", r.driver).to_lowercase();
        println!(
            "{:<8} {:>12.0} {:>12.0} {:>10.2} {:>10.1} {:>12} {:>12}",
            name,
            r.sent as f64 / r.secs,
            r.received as f64 / r.secs,
            loss,
            r.received as f64 * a.size as f64 / r.secs / 1e6,
            r.send_syscalls,
            r.recv_syscalls
        );
        rows.push(json!({
            "driver": name, "sent": r.sent, "received": r.received, "seconds": r.secs,
            "sent_per_sec": r.sent as f64 / r.secs, "received_per_sec": r.received as f64 / r.secs,
            "loss_percent": loss, "send_syscalls": r.send_syscalls, "recv_syscalls": r.recv_syscalls,
        }));
    }
    Ok(
        json!({ "scenario": "udp", "count": a.count, "size": a.size, "batch": a.batch, "drivers": rows }),
    )
}
