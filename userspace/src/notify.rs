//! systemd's notification protocol (`sd_notify(3)`), for `Type=notify` units: `READY=1` once the
//! node has installed its first view, `WATCHDOG=1` from the event loop at half `WatchdogSec`
//! (so a hung loop gets the service restarted), `RELOADING=1` / `READY=1` around a reload,
//! `STOPPING=1` on a graceful leave, and a `STATUS=` line. Without `NOTIFY_SOCKET` (not under
//! systemd) every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// The notification socket of this process, if systemd gave one.
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
    /// Half the watchdog interval systemd asked for (`WATCHDOG_USEC`), when it asked.
    watchdog_every: Option<Duration>,
    next_watchdog: Instant,
    ready: bool,
}

impl Notifier {
    /// From the environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`). A path starting
    /// with `@` is in the abstract namespace.
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            let addr = if let Some(name) = path.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
            } else {
                std::os::unix::net::SocketAddr::from_pathname(&path).ok()?
            };
            let s = UnixDatagram::unbound().ok()?;
            Some((s, addr))
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us)
            .map(|u| Duration::from_micros(u) / 2);
        Notifier {
            socket,
            watchdog_every,
            next_watchdog: Instant::now(),
            ready: false,
        }
    }

    /// Whether systemd listens.
    pub fn active(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends one notification (`KEY=value` lines). Errors are logged once per call and
    /// otherwise ignored: the node runs on without its supervisor's notifications.
    pub fn send(&self, state: &str) {
        if let Some((s, addr)) = &self.socket
            && let Err(e) = s.send_to_addr(state.as_bytes(), addr)
        {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }

    /// `READY=1` with a status line, the first time only.
    pub fn ready(&mut self, status: &str) {
        if !self.ready {
            self.ready = true;
            self.send(&format!("READY=1\nSTATUS={status}"));
        }
    }

    /// `WATCHDOG=1` when due; call every turn of the event loop.
    pub fn tick(&mut self, now: Instant) {
        if let Some(every) = self.watchdog_every
            && now >= self.next_watchdog
        {
            self.send("WATCHDOG=1");
            self.next_watchdog = now + every;
        }
    }

    /// When [`Notifier::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.watchdog_every.map(|_| self.next_watchdog)
    }
}
