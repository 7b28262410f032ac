//! `cohort-bench arp-flood`: ARP replies per second for the same request flood, first from the
//! kernel, then from the XDP fast path, in the same run. Two namespaces on a bridge (root): the
//! responder has the address plumbed (so its kernel answers); a flooder thread in the other
//! namespace sends requests for it over AF_PACKET as fast as it can while a receiver thread counts
//! the replies. Then the XDP program is attached to the responder's eth0 (generic mode by default,
//! as `xdp = auto` does on veth), the address inserted and the lease renewed, and the flood is
//! repeated. The flooder is pinned to CPU 0 and the responder's receive path steered to CPU 1
//! (RPS), so that besides replies delivered the benchmark reports replies per second of the
//! responder CPU's interrupt time: what the path could answer with that CPU saturated.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cohort::lab::{Lab, in_netns, inproc};
use cohort::xdp::{FastPath, XdpSetting, XdpStats};
use serde_json::json;

use crate::arpwire::{self, Raw};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds of flood for each of the two paths (1..=60).
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
    /// XDP attach mode on the responder: generic (what `xdp = auto` picks on veth) or native (with
    /// the pass-through program on the bridge's end of the veth, which native XDP_TX needs).
    #[arg(long, default_value = "generic")]
    pub xdp: String,
    /// Send the requests to the responder's MAC instead of broadcast (like the kernel's cache
    /// refresh probes).
    #[arg(long)]
    pub unicast: bool,
    /// Also print one JSON object after the table.
    #[arg(long)]
    pub json: bool,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const RESPONDER: usize = 0;
const FLOODER: usize = 1;

/// One flood: requests sent, replies received, over how long.
struct Flood {
    sent: u64,
    send_errors: u64,
    replies: u64,
    backlog_drops: u64,
    secs: f64,
    /// Seconds CPU 1 (the responder's receive path) spent in interrupts and softirqs.
    responder_cpu: f64,
}

impl Flood {
    fn rate(&self) -> f64 {
        self.replies as f64 / self.secs
    }

    /// Replies per second of responder CPU: what one CPU could answer when saturated.
    fn capacity(&self) -> f64 {
        if self.responder_cpu > 0.0 {
            self.replies as f64 / self.responder_cpu
        } else {
            f64::NAN
        }
    }
}

/// Seconds CPU `cpu` has spent in hard and soft interrupts (`/proc/stat`), where the RPS'd
/// receive processing runs.
fn irq_seconds(cpu: usize) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let name = format!("cpu{cpu}");
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq ...
            (f.get(5).copied().unwrap_or(0) + f.get(6).copied().unwrap_or(0)) as f64 / hz
        })
        .unwrap_or(0.0)
}

/// Packets dropped because a CPU's input backlog was full, summed over CPUs
/// (`/proc/net/softnet_stat`, second column; machine-wide).
fn backlog_drops() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|h| u64::from_str_radix(h, 16).ok())
        .sum()
}

/// Pins the calling thread to `cpu`; best effort (the benchmark still runs unpinned).
fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain old data; CPU_SET stays within it for cpu < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu < libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

/// Steers the receive processing of host `i`'s eth0 to the CPUs of `mask` (RPS), so that the
/// responder's work runs on its own CPU instead of inside the flooder's `sendto`.
fn rps(lab: &Lab, i: usize, mask: &str) -> Res<()> {
    let out = lab
        .cmd(i, "sh")
        .arg("-c")
        .arg(format!(
            "echo {mask} > /sys/class/net/eth0/queues/rx-0/rps_cpus"
        ))
        .output()?;
    if !out.status.success() {
        return Err(format!("setting RPS: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

/// Floods `vip` with ARP requests from host `FLOODER` for `secs` (one thread pinned to CPU 0),
/// counting the replies that reach the flooder's eth0.
fn flood(lab: &Lab, vip: Ipv4Addr, dst: [u8; 6], secs: Duration) -> Res<Flood> {
    let ns = lab.hosts[FLOODER].ns.clone();
    let ip = lab.hosts[FLOODER].addr;
    // A socket that is never read: the kernel counts every ARP frame arriving on the flooder's
    // eth0 (the replies) even when its small buffer is full, so counting costs no CPU.
    let counter = in_netns(&ns, || {
        Raw::receiver("eth0", Duration::from_millis(1), 1 << 16).map_err(|e| e.to_string())
    })?;
    let _ = counter.stats();
    let drops0 = backlog_drops();
    let cpu0 = irq_seconds(1);
    let sender = std::thread::spawn(move || -> Result<(u64, u64, f64), String> {
        inproc::enter(&ns);
        pin(0);
        let mac = cohort::xdp::interface_mac("eth0").map_err(|e| e.to_string())?;
        let tx = Raw::sender("eth0").map_err(|e| e.to_string())?;
        let req = arpwire::request_to(dst, mac, ip, vip);
        let (mut sent, mut errors) = (0u64, 0u64);
        let t = Instant::now();
        while t.elapsed() < secs {
            for _ in 0..256 {
                match tx.send(&req) {
                    Ok(()) => sent += 1,
                    Err(_) => errors += 1,
                }
            }
        }
        Ok((sent, errors, t.elapsed().as_secs_f64()))
    });
    let sent = sender.join().map_err(|_| "the flooder panicked")?;
    // Replies still in flight when the flood stops are counted too.
    std::thread::sleep(Duration::from_millis(200));
    let (replies, _) = counter.stats();
    let responder_cpu = irq_seconds(1) - cpu0;
    let (sent, send_errors, secs) = sent?;
    Ok(Flood {
        sent,
        send_errors,
        replies,
        backlog_drops: backlog_drops().saturating_sub(drops0),
        secs,
        responder_cpu,
    })
}

/// The fast path attached in the responder's namespace, held by a thread there.
struct Xdp {
    ask: mpsc::Sender<mpsc::Sender<Result<XdpStats, String>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Xdp {
    fn attach(lab: &Lab, native: bool, vip: Ipv4Addr, lease: Duration) -> Res<Xdp> {
        let ns = lab.hosts[RESPONDER].ns.clone();
        let (switch, port) = (lab.switch.clone(), lab.hosts[RESPONDER].port.clone());
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (ask, asks) = mpsc::channel::<mpsc::Sender<Result<XdpStats, String>>>();
        let thread = std::thread::spawn(move || {
            // Native: the bridge's end first (setns is per thread; the programs stay attached
            // while their handles live, whatever namespace this thread is in).
            let _pass = if native {
                inproc::enter(&switch);
                match cohort::xdp::attach_pass_through(&port) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                }
            } else {
                None
            };
            inproc::enter(&ns);
            let setting = if native {
                XdpSetting::Native
            } else {
                XdpSetting::Generic
            };
            let fp = FastPath::attach("eth0", setting).and_then(|mut fp| {
                fp.insert_vip(vip)?;
                fp.renew_lease(lease)?;
                Ok(fp)
            });
            let fp = match fp {
                Ok(fp) => {
                    let _ = ready_tx.send(Ok(()));
                    fp
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            // Until the benchmark drops its end; the program is detached here, in its namespace.
            for reply in asks {
                let _ = reply.send(fp.stats().map_err(|e| e.to_string()));
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the XDP thread did not report")??;
        Ok(Xdp { ask, thread })
    }

    fn stats(&self) -> Res<XdpStats> {
        let (tx, rx) = mpsc::channel();
        self.ask.send(tx).map_err(|_| "the XDP thread is gone")?;
        Ok(rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| "the XDP thread did not answer")??)
    }

    fn detach(self) {
        drop(self.ask);
        let _ = self.thread.join();
    }
}

pub fn run(a: &Args) -> Res<()> {
    if !(1..=60).contains(&a.seconds) {
        return Err("--seconds must be within 1..=60".into());
    }
    let native = match a.xdp.as_str() {
        "generic" => false,
        "native" => true,
        m => return Err(format!("--xdp {m}: expected generic or native").into()),
    };
    let secs = Duration::from_secs(a.seconds);
    let lab = Lab::new("cohort-bench arp-flood", 2)
        .ok_or("the arp-flood benchmark needs root (network namespaces)")?;
    let o = lab.hosts[RESPONDER].addr.octets();
    let vip = Ipv4Addr::new(o[0], o[1], o[2], 200);
    let ns = lab.hosts[RESPONDER].ns.clone();
    let out = Command::new("ip")
        .args([
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{vip}/32"),
            "dev",
            "eth0",
        ])
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "ip addr add {vip}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let responder_mac = {
        let ns = ns.clone();
        in_netns(&ns, || {
            cohort::xdp::interface_mac("eth0").map_err(|e| e.to_string())
        })?
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus >= 2 {
        rps(&lab, RESPONDER, "2")?;
        rps(&lab, FLOODER, "1")?;
    }
    let dst = if a.unicast { responder_mac } else { [0xff; 6] };
    let kernel = flood(&lab, vip, dst, secs)?;
    // Lease: the whole XDP flood and then some; it only has to outlive this run.
    let xdp = Xdp::attach(&lab, native, vip, secs + Duration::from_secs(60))?;
    let before = xdp.stats()?;
    let fast = flood(&lab, vip, dst, secs)?;
    let after = xdp.stats()?;
    xdp.detach();
    let xdp_replied = after.arp_replied.saturating_sub(before.arp_replied);
    let ratio = if kernel.replies == 0 {
        f64::INFINITY
    } else {
        fast.rate() / kernel.rate()
    };
    println!(
        "arp-flood: {} requests for {vip} (at {}) flooded over AF_PACKET for {} s per path, \
         2 namespaces on a bridge, XDP in {} mode, flooder on CPU 0, {}",
        if a.unicast { "unicast" } else { "broadcast" },
        arpwire::mac_text(responder_mac),
        a.seconds,
        a.xdp,
        if cpus >= 2 {
            "responder's receive path on CPU 1 (RPS)"
        } else {
            "one CPU"
        }
    );
    println!(
        "{:<7} {:>11} {:>11} {:>10} {:>9} {:>10} {:>12} {:>13}",
        "path",
        "requests/s",
        "replies/s",
        "replies",
        "bl drops",
        "XDP repl",
        "CPU1 irq s",
        "replies/CPU-s"
    );
    for (name, f, x) in [("kernel", &kernel, None), ("XDP", &fast, Some(xdp_replied))] {
        println!(
            "{:<7} {:>11.0} {:>11.0} {:>10} {:>9} {:>10} {:>12.2} {:>13}",
            name,
            f.sent as f64 / f.secs,
            f.rate(),
            f.replies,
            f.backlog_drops,
            x.map_or_else(|| "-".to_owned(), |x| x.to_string()),
            f.responder_cpu,
            if f.capacity().is_finite() {
                format!("{:.0}", f.capacity())
            } else {
                "-".to_owned()
            }
        );
    }
    let capacity_ratio = fast.capacity() / kernel.capacity();
    if capacity_ratio.is_finite() {
        println!(
            "XDP / kernel: {ratio:.2}x replies per second delivered, \
             {capacity_ratio:.2}x replies per second of responder CPU"
        );
    } else {
        // Native XDP on veth runs in the sender's NAPI context, not on the RPS CPU.
        println!(
            "XDP / kernel: {ratio:.2}x replies per second delivered \
             (XDP ran outside CPU 1's interrupts: no per-CPU figure)"
        );
    }
    if kernel.send_errors + fast.send_errors > 0 {
        println!(
            "send errors: kernel flood {}, XDP flood {}",
            kernel.send_errors, fast.send_errors
        );
    }
    if a.json {
        println!(
            "{}",
            json!({
                "scenario": "arp-flood", "seconds": a.seconds, "xdp_mode": a.xdp, "unicast": a.unicast, "responder_rps_cpu1": cpus >= 2,
                "kernel_requests_per_s": kernel.sent as f64 / kernel.secs,
                "kernel_replies_per_s": kernel.rate(), "kernel_replies": kernel.replies,
                "kernel_backlog_drops": kernel.backlog_drops, "kernel_send_errors": kernel.send_errors,
                "xdp_requests_per_s": fast.sent as f64 / fast.secs,
                "xdp_replies_per_s": fast.rate(), "xdp_replies": fast.replies,
                "xdp_backlog_drops": fast.backlog_drops, "xdp_send_errors": fast.send_errors,
                "xdp_arp_replied_delta": xdp_replied,
                "kernel_responder_cpu_s": kernel.responder_cpu, "xdp_responder_cpu_s": fast.responder_cpu,
                "kernel_replies_per_cpu_s": kernel.capacity(), "xdp_replies_per_cpu_s": fast.capacity(),
                "ratio": ratio, "ratio_per_cpu_s": capacity_ratio,
            })
        );
    }
    Ok(())
}
