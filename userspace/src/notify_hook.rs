//! `duravip_notify = "/path/script"` (Cohort extension): a program run on every DuraVIP acquire and
//! release, for networks that ignore gratuitous ARP and need an API call (cloud routes, secondary
//! private addresses).
//!
//! The program gets the event, the address and the interface as arguments
//! (`script acquire 10.1.1.1 eth0`) and in the environment (`COHORT_EVENT`, `COHORT_ADDRESS`,
//! `COHORT_INTERFACE`, `COHORT_NODE`). It never blocks the event loop: hooks are started as child
//! processes and reaped by [`Hooks::poll`]; at most [`MAX_RUNNING`] run at once (the rest wait in
//! order), two hooks of one address never run at once (an acquire and the release that follows
//! it run in that order), and a hook still running after `duravip_notify_timeout` is killed and
//! counted. A failing hook is logged with its exit status and counted; it changes nothing about
//! ownership.

use std::collections::{BTreeSet, VecDeque};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Hooks running at once, at most.
pub const MAX_RUNNING: usize = 16;
/// Hooks waiting to start, at most; beyond it the oldest waiting hook is dropped (and counted).
pub const MAX_WAITING: usize = 65_536;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Acquire,
    Release,
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Event::Acquire => "acquire",
            Event::Release => "release",
        }
    }
}

/// Counters, for `cluster counters`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HookStats {
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub dropped: u64,
}

struct Running {
    child: Child,
    ip: IpAddr,
    event: Event,
    started: Instant,
}

/// The hooks of one node.
pub struct Hooks {
    program: Option<PathBuf>,
    timeout: Duration,
    node: String,
    waiting: VecDeque<(Event, IpAddr, String)>,
    running: Vec<Running>,
    pub stats: HookStats,
}

impl Hooks {
    pub fn new(program: Option<PathBuf>, timeout: Duration, node: String) -> Hooks {
        Hooks {
            program,
            timeout,
            node,
            waiting: VecDeque::new(),
            running: Vec::new(),
            stats: HookStats::default(),
        }
    }

    /// The node name the hooks see as `COHORT_NODE`.
    pub fn set_node(&mut self, node: &str) {
        node.clone_into(&mut self.node);
    }

    /// A configuration reload: new program and timeout for hooks started from now on.
    pub fn reconfigure(&mut self, program: Option<PathBuf>, timeout: Duration) {
        self.program = program;
        self.timeout = timeout;
    }

    /// Queues the hook for `event` on `ip` (plumbed on `iface`) and starts what may start.
    pub fn fire(&mut self, event: Event, ip: IpAddr, iface: &str, now: Instant) {
        if self.program.is_none() {
            return;
        }
        if self.waiting.len() >= MAX_WAITING {
            self.waiting.pop_front();
            self.stats.dropped += 1;
        }
        self.waiting.push_back((event, ip, iface.to_owned()));
        self.poll(now);
    }

    /// Reaps finished hooks, kills overdue ones, starts waiting ones. Never blocks.
    pub fn poll(&mut self, now: Instant) {
        let timeout = self.timeout;
        let stats = &mut self.stats;
        self.running.retain_mut(|r| match r.child.try_wait() {
            Ok(Some(status)) => {
                if status.success() {
                    stats.succeeded += 1;
                } else {
                    stats.failed += 1;
                    tracing::warn!(ip = %r.ip, event = r.event.name(), %status, "duravip_notify hook failed");
                }
                false
            }
            Ok(None) if now.duration_since(r.started) >= timeout => {
                let _ = r.child.kill();
                let _ = r.child.wait();
                stats.timed_out += 1;
                tracing::warn!(ip = %r.ip, event = r.event.name(), timeout_s = timeout.as_secs_f64(), "duravip_notify hook killed: it ran too long");
                false
            }
            Ok(None) => true,
            Err(e) => {
                stats.failed += 1;
                tracing::warn!(ip = %r.ip, error = %e, "duravip_notify hook cannot be waited for");
                false
            }
        });
        let Some(program) = self.program.clone() else {
            self.waiting.clear();
            return;
        };
        let mut busy: BTreeSet<IpAddr> = self.running.iter().map(|r| r.ip).collect();
        let mut k = 0;
        while self.running.len() < MAX_RUNNING && k < self.waiting.len() {
            if busy.contains(&self.waiting[k].1) {
                k += 1;
                continue;
            }
            // Hooks of one address keep their order: only the first waiting one of an address
            // may start, and it is the one found first here.
            let Some((event, ip, iface)) = self.waiting.remove(k) else {
                break;
            };
            let spawned = Command::new(&program)
                .args([event.name(), &ip.to_string(), &iface])
                .env("COHORT_EVENT", event.name())
                .env("COHORT_ADDRESS", ip.to_string())
                .env("COHORT_INTERFACE", &iface)
                .env("COHORT_NODE", &self.node)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn();
            match spawned {
                Ok(child) => {
                    self.stats.started += 1;
                    busy.insert(ip);
                    self.running.push(Running {
                        child,
                        ip,
                        event,
                        started: now,
                    });
                }
                Err(e) => {
                    self.stats.failed += 1;
                    tracing::warn!(program = %program.display(), %ip, error = %e, "cannot start the duravip_notify hook");
                }
            }
        }
    }

    /// Hooks running or waiting.
    pub fn pending(&self) -> usize {
        self.running.len() + self.waiting.len()
    }

    /// At shutdown: lets running and waiting hooks finish for at most `limit`, then kills the rest.
    pub fn drain(&mut self, limit: Duration) {
        let until = Instant::now() + limit;
        while self.pending() > 0 && Instant::now() < until {
            self.poll(Instant::now());
            std::thread::sleep(Duration::from_millis(10));
        }
        for mut r in self.running.drain(..) {
            let _ = r.child.kill();
            let _ = r.child.wait();
            self.stats.timed_out += 1;
        }
        self.stats.dropped += self.waiting.len() as u64;
        self.waiting.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &std::path::Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("hook.sh");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    fn wait(h: &mut Hooks) {
        let until = Instant::now() + Duration::from_secs(20);
        while h.pending() > 0 && Instant::now() < until {
            h.poll(Instant::now());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(h.pending(), 0);
    }

    #[test]
    fn hooks_run_in_order_per_address_with_arguments_and_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let p = script(
            dir.path(),
            &format!(
                "sleep 0.0$(( $(od -An -N1 -tu1 /dev/urandom) % 5 ))\necho \"$1 $2 $3 $COHORT_EVENT $COHORT_ADDRESS $COHORT_INTERFACE $COHORT_NODE\" >> {}",
                log.display()
            ),
        );
        let mut h = Hooks::new(Some(p), Duration::from_secs(10), "node1".into());
        let now = Instant::now();
        for k in 0..40u8 {
            let ip = IpAddr::from([10, 0, 0, k % 4]);
            let ev = if k % 8 < 4 {
                Event::Acquire
            } else {
                Event::Release
            };
            h.fire(ev, ip, "eth0", now);
        }
        wait(&mut h);
        assert_eq!(h.stats.succeeded, 40);
        let text = std::fs::read_to_string(&log).expect("log");
        for k in 0..4u8 {
            let ip = format!("10.0.0.{k}");
            let events: Vec<&str> = text
                .lines()
                .filter(|l| l.split(' ').nth(1) == Some(ip.as_str()))
                .map(|l| l.split(' ').next().unwrap_or(""))
                .collect();
            assert_eq!(events.len(), 10);
            for (n, e) in events.iter().enumerate() {
                assert_eq!(
                    *e,
                    if n % 2 == 0 { "acquire" } else { "release" },
                    "{ip}: {events:?}"
                );
            }
        }
        assert!(
            text.lines()
                .all(|l| l.ends_with(" eth0 node1") && l.split(' ').next() == l.split(' ').nth(3))
        );
    }

    #[test]
    fn a_hook_that_hangs_is_killed_and_a_failing_one_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = script(dir.path(), "[ \"$1\" = acquire ] && exec sleep 30\nexit 3");
        let mut h = Hooks::new(Some(p), Duration::from_millis(300), "n".into());
        let t0 = Instant::now();
        h.fire(Event::Acquire, IpAddr::from([10, 0, 0, 1]), "eth0", t0);
        h.fire(Event::Release, IpAddr::from([10, 0, 0, 2]), "eth0", t0);
        // fire never waits for the hook.
        assert!(t0.elapsed() < Duration::from_secs(5));
        wait(&mut h);
        assert_eq!(h.stats.timed_out, 1);
        assert_eq!(h.stats.failed, 1);
    }
}
