//! UDP drivers that move the group protocol's datagrams: batched sends and receives, kernel
//! receive timestamps, and a waker so other threads can interrupt a wait.
//!
//! Two implementations of [`DatagramIo`]: [`syscall::SyscallUdp`] (`recvmmsg`/`sendmmsg`) and
//! [`uring::UringUdp`] (io_uring: multishot `recvmsg` into a provided-buffer ring, `sendmsg`
//! batches submitted with one `io_uring_enter`, segmented sends and GRO as the syscall driver
//! has). `cohort-bench udp` and `cohort-bench transport --driver` measure both; the daemon uses
//! [`Driver::default`] (syscall: see docs/benchmarks.md for the figures and why) and
//! `udp_driver = syscall|uring` selects explicitly; `uring` falls back to the syscall driver
//! where io_uring cannot be set up.

pub mod socket;
pub mod syscall;
pub mod uring;
pub mod waker;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

pub use waker::Waker;

/// Largest datagram the drivers receive; anything longer is truncated by the kernel and dropped.
pub const MAX_DATAGRAM: usize = 65536;

/// One received datagram. `data` borrows the driver's buffer until the sink returns.
#[derive(Debug)]
pub struct Received<'a> {
    pub from: SocketAddr,
    pub data: &'a [u8],
    /// Arrival time stamped by the kernel (`SO_TIMESTAMPNS`, CLOCK_REALTIME nanoseconds), so a
    /// daemon that was descheduled still learns when a peer's packet really arrived.
    pub kernel_ns: Option<u64>,
}

/// A datagram to send.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub to: SocketAddr,
    pub data: &'a [u8],
}

/// Counters a driver keeps for the console.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IoStats {
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    /// Datagrams the kernel refused to send (no route, buffer full after retry).
    pub send_errors: u64,
    /// Received datagrams longer than [`MAX_DATAGRAM`], dropped.
    pub truncated: u64,
    /// Kernel calls made (io_uring_enter or recvmmsg/sendmmsg/poll).
    pub syscalls: u64,
}

/// A bound UDP socket with batched I/O.
pub trait DatagramIo: Send {
    /// Address the socket is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// Sends every datagram of `batch` (best effort, like UDP: a datagram the kernel refuses is
    /// counted in [`IoStats::send_errors`] and skipped). Returns how many were accepted.
    fn send_batch(&mut self, batch: &[Outgoing<'_>]) -> io::Result<usize>;
    /// Waits up to `wait` (forever if `None`, not at all if zero) for datagrams or a wake-up,
    /// then hands every datagram already received to `sink`. Returns how many were handed over.
    fn recv(
        &mut self,
        wait: Option<Duration>,
        sink: &mut dyn FnMut(Received<'_>),
    ) -> io::Result<usize>;
    /// A handle other threads use to end a wait early.
    fn waker(&self) -> Waker;
    fn stats(&self) -> IoStats;
}

/// Which driver to use.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// `recvmmsg`/`sendmmsg`: the default, because `cohort-bench udp` measured it ahead on this
    /// kind of machine (about 358k vs 267k datagrams/s of 100 B, 322k vs 308k of 1400 B).
    #[default]
    Syscall,
    /// io_uring: multishot receive into provided buffers, segmented sends, a single-issuer ring.
    Uring,
}

impl std::str::FromStr for Driver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "syscall" => Ok(Driver::Syscall),
            "uring" | "io_uring" => Ok(Driver::Uring),
            _ => Err(format!("unknown UDP driver '{s}' (syscall or uring)")),
        }
    }
}

/// Opens `driver` on a new socket bound to `bind`. Falls back to no error handling: if io_uring is
/// unavailable the error says so and the caller may choose [`Driver::Syscall`].
pub fn open(driver: Driver, bind: SocketAddr) -> io::Result<Box<dyn DatagramIo>> {
    let sock = socket::bind_udp(bind)?;
    Ok(match driver {
        Driver::Syscall => Box::new(syscall::SyscallUdp::new(sock)?),
        Driver::Uring => {
            // Where io_uring is missing or refused (an old kernel, kernel.io_uring_disabled, a
            // seccomp filter), the same socket goes to the syscall driver.
            let spare = sock.try_clone()?;
            match uring::UringUdp::new(sock) {
                Ok(u) => Box::new(u),
                Err(e) => {
                    tracing::warn!(error = %e, "io_uring unavailable; the syscall UDP driver takes over");
                    // The failed set-up may have turned receive offload on; the syscall driver
                    // decides for itself.
                    let _ = socket::set_udp_option(&spare, socket::UDP_GRO, 0);
                    Box::new(syscall::SyscallUdp::new(spare)?)
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(driver: Driver) {
        let mut a = open(driver, "127.0.0.1:0".parse().expect("addr")).expect("open a");
        let mut b = open(driver, "127.0.0.1:0".parse().expect("addr")).expect("open b");
        let to = b.local_addr().expect("addr");
        let payloads: Vec<Vec<u8>> = (0..200u32)
            .map(|i| i.to_le_bytes().repeat(1 + (i as usize % 40)))
            .collect();
        let batch: Vec<Outgoing<'_>> = payloads.iter().map(|p| Outgoing { to, data: p }).collect();
        assert_eq!(a.send_batch(&batch).expect("send"), 200);
        let mut got: Vec<Vec<u8>> = Vec::new();
        let from = a.local_addr().expect("addr");
        let mut rounds = 0;
        while got.len() < 200 && rounds < 1000 {
            rounds += 1;
            b.recv(Some(Duration::from_millis(50)), &mut |r| {
                assert_eq!(r.from, from);
                assert!(r.kernel_ns.is_some(), "kernel timestamp present");
                got.push(r.data.to_vec());
            })
            .expect("recv");
        }
        assert_eq!(
            got, payloads,
            "loopback delivers every datagram, in order, intact"
        );
        assert_eq!(b.stats().datagrams_received, 200);
        assert_eq!(a.stats().datagrams_sent, 200);
    }

    #[test]
    fn syscall_driver_round_trip() {
        exchange(Driver::Syscall);
    }

    #[test]
    fn uring_driver_round_trip() {
        exchange(Driver::Uring);
    }

    fn wake(driver: Driver) {
        let mut a = open(driver, "127.0.0.1:0".parse().expect("addr")).expect("open");
        let w = a.waker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w.wake().expect("wake");
        });
        // Without the wake-up this would wait forever.
        let n = a.recv(None, &mut |_| {}).expect("recv");
        assert_eq!(n, 0);
        t.join().expect("join");
    }

    #[test]
    fn syscall_driver_wakes() {
        wake(Driver::Syscall);
    }

    #[test]
    fn uring_driver_wakes() {
        wake(Driver::Uring);
    }

    #[test]
    fn largest_udp_datagram_arrives_whole() {
        for driver in [Driver::Syscall, Driver::Uring] {
            let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let mut b = open(driver, "127.0.0.1:0".parse().expect("addr")).expect("open");
            let to = b.local_addr().expect("addr");
            // 65507 is the largest IPv4 UDP payload; it fits MAX_DATAGRAM, so this must arrive.
            a.send_to(&vec![7u8; 65507], to).expect("send");
            a.send_to(b"after", to).expect("send");
            let mut got = Vec::new();
            for _ in 0..100 {
                b.recv(Some(Duration::from_millis(20)), &mut |r| {
                    got.push(r.data.len())
                })
                .expect("recv");
                if got.len() == 2 {
                    break;
                }
            }
            assert_eq!(got, [65507, 5], "{driver:?}");
        }
    }

    /// Runs of equal datagrams to one destination go as one segmented send (where the kernel
    /// offers UDP_SEGMENT) and arrive as the same datagrams, in order, whether the receiver gets
    /// them coalesced (UDP_GRO) or not; other destinations' datagrams are not mixed in.
    #[test]
    fn segmented_sends_arrive_as_the_original_datagrams() {
        // Every sender driver against every receiver driver (the receivers coalesce with GRO).
        for (sender, receiver) in [
            (Driver::Syscall, Driver::Syscall),
            (Driver::Uring, Driver::Uring),
            (Driver::Uring, Driver::Syscall),
            (Driver::Syscall, Driver::Uring),
        ] {
            let sock = socket::bind_udp("127.0.0.1:0".parse().expect("addr")).expect("bind");
            let (mut a, gso): (Box<dyn DatagramIo>, bool) = match sender {
                Driver::Syscall => {
                    let d = syscall::SyscallUdp::new(sock).expect("open");
                    let g = d.gso();
                    (Box::new(d), g)
                }
                Driver::Uring => {
                    let d = uring::UringUdp::new(sock).expect("open");
                    let g = d.gso();
                    (Box::new(d), g)
                }
            };
            let mut b = open(receiver, "127.0.0.1:0".parse().expect("addr")).expect("open");
            let mut c = open(receiver, "127.0.0.1:0".parse().expect("addr")).expect("open");
            let (tb, tc) = (b.local_addr().expect("addr"), c.local_addr().expect("addr"));
            let mut payloads: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
            for k in 0..100u32 {
                let len = if k % 50 == 49 { 300 } else { 1300 };
                let mut p = vec![(k % 251) as u8; len];
                p[..4].copy_from_slice(&k.to_be_bytes());
                payloads.push((if k % 3 == 0 { tc } else { tb }, p));
            }
            let batch: Vec<Outgoing<'_>> = payloads
                .iter()
                .map(|(to, d)| Outgoing { to: *to, data: d })
                .collect();
            let before = a.stats().syscalls;
            assert_eq!(a.send_batch(&batch).expect("send"), 100);
            let calls = a.stats().syscalls - before;
            eprintln!("{sender:?} -> {receiver:?}: UDP_SEGMENT in use: {gso}, {calls} send calls");
            if gso {
                assert!(calls < 5, "{sender:?}: one call carries every run");
            }
            for (drv, to) in [(&mut b, tb), (&mut c, tc)] {
                let want: Vec<&Vec<u8>> = payloads
                    .iter()
                    .filter(|(t, _)| *t == to)
                    .map(|(_, p)| p)
                    .collect();
                let mut got: Vec<Vec<u8>> = Vec::new();
                for _ in 0..200 {
                    drv.recv(Some(Duration::from_millis(10)), &mut |r| {
                        got.push(r.data.to_vec())
                    })
                    .expect("recv");
                    if got.len() >= want.len() {
                        break;
                    }
                }
                assert_eq!(got.len(), want.len(), "{sender:?} -> {receiver:?}");
                assert!(
                    got.iter().zip(&want).all(|(g, w)| g == *w),
                    "{sender:?} -> {receiver:?}: same bytes, same order"
                );
            }
        }
    }

    /// A receiver driven from another thread than the one that opened it keeps receiving a long
    /// paced stream (coalesced by GRO), for both drivers.
    #[test]
    fn a_receiver_on_its_own_thread_keeps_receiving() {
        for driver in [Driver::Syscall, Driver::Uring] {
            let mut rx = open(driver, "127.0.0.1:0".parse().expect("addr")).expect("open");
            let mut tx = open(driver, "127.0.0.1:0".parse().expect("addr")).expect("open");
            let to = rx.local_addr().expect("addr");
            const COUNT: u64 = 20_000;
            let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let seen = received.clone();
            let receiver = std::thread::spawn(move || {
                let mut got = 0u64;
                let mut idle = 0;
                while got < COUNT && idle < 200 {
                    let n = rx
                        .recv(Some(Duration::from_millis(10)), &mut |r| {
                            assert_eq!(r.data.len(), 1400)
                        })
                        .expect("recv");
                    idle = if n == 0 { idle + 1 } else { 0 };
                    got += n as u64;
                    seen.store(got, std::sync::atomic::Ordering::Relaxed);
                }
                got
            });
            let payload = vec![7u8; 1400];
            let mut sent = 0u64;
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while sent < COUNT {
                // At most 1,000 datagrams ahead of the receiver (far below any socket buffer):
                // this is not a throughput test, and loopback drops what a late receiver misses.
                while sent - received.load(std::sync::atomic::Ordering::Relaxed) > 1_000
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
                let out: Vec<Outgoing<'_>> =
                    (0..50).map(|_| Outgoing { to, data: &payload }).collect();
                sent += tx.send_batch(&out).expect("send") as u64;
            }
            let got = receiver.join().expect("receiver");
            assert_eq!(got, COUNT, "{driver:?}: every datagram received");
        }
    }

    #[test]
    fn datagrams_longer_than_the_buffers_are_dropped_and_counted() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let sock = socket::bind_udp("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let mut b = uring::UringUdp::with_max_payload(sock, 1500).expect("open");
        let to = b.local_addr().expect("addr");
        a.send_to(&[1u8; 1501], to).expect("send");
        a.send_to(&[2u8; 1500], to).expect("send");
        let mut got = Vec::new();
        for _ in 0..100 {
            b.recv(Some(Duration::from_millis(20)), &mut |r| {
                got.push(r.data.len())
            })
            .expect("recv");
            if !got.is_empty() {
                break;
            }
        }
        assert_eq!(got, [1500]);
        assert_eq!(b.stats().truncated, 1);
    }
}
