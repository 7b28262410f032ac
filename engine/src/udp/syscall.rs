//! The plain-syscall driver: `recvmmsg` and `sendmmsg`, 64 messages per call, `poll` to wait.
//!
//! Where the kernel has them, UDP segmentation offload (`UDP_SEGMENT`) sends a run of
//! equal-sized datagrams to one destination (the pieces of a large message) as one message, and
//! receive offload (`UDP_GRO`) hands back-to-back datagrams of one sender over as one buffer, cut
//! here into the original datagrams. A kernel without them is used datagram by datagram.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::socket::{self, CMSG_SPACE};
use super::{DatagramIo, IoStats, MAX_DATAGRAM, Outgoing, Received, Waker};

/// Datagrams moved per system call.
const BATCH: usize = 64;

/// `recvmmsg`/`sendmmsg` on a non-blocking socket.
pub struct SyscallUdp {
    sock: UdpSocket,
    waker: Waker,
    bufs: Vec<u8>,
    names: Vec<libc::sockaddr_storage>,
    controls: Vec<[u8; CMSG_SPACE]>,
    stats: IoStats,
    /// Segmentation offload on send is available (and has not failed).
    gso: bool,
    /// Receive offload is on: buffers may hold several datagrams.
    gro: bool,
}

/// Control-message room for one `UDP_SEGMENT` (a `u16`), 8-byte aligned for `cmsghdr`.
type SegmentCmsg = [u64; 4];

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
    unsafe { std::mem::zeroed() }
}

impl SyscallUdp {
    pub fn new(sock: UdpSocket) -> io::Result<Self> {
        // Setting a segment size of 0 on the socket probes for UDP_SEGMENT without changing how
        // plain sends behave.
        let gso = socket::set_udp_option(&sock, socket::UDP_SEGMENT, 0).is_ok()
            && std::env::var_os("COHORT_NO_GSO").is_none();
        let gro = std::env::var_os("COHORT_NO_GRO").is_none()
            && socket::set_udp_option(&sock, socket::UDP_GRO, 1).is_ok();
        Ok(SyscallUdp {
            gso,
            gro,
            sock,
            waker: Waker::new()?,
            bufs: vec![0; BATCH * MAX_DATAGRAM],
            names: vec![zeroed_storage(); BATCH],
            controls: vec![[0; CMSG_SPACE]; BATCH],
            stats: IoStats::default(),
        })
    }

    /// One non-blocking `recvmmsg`; returns how many datagrams were handed to `sink`.
    fn recv_once(&mut self, sink: &mut dyn FnMut(Received<'_>)) -> io::Result<usize> {
        let mut iovs: Vec<libc::iovec> = self
            .bufs
            .chunks_mut(MAX_DATAGRAM)
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: mmsghdr is plain old data; every pointer field is set below.
        let mut hdrs: Vec<libc::mmsghdr> =
            (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
        for (i, h) in hdrs.iter_mut().enumerate() {
            h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_hdr.msg_iov = &mut iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = self.controls[i].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = CMSG_SPACE;
        }
        self.stats.syscalls += 1;
        // SAFETY: every header points into buffers owned by self that outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let mut handed = 0;
        for (i, h) in hdrs.iter().take(n as usize).enumerate() {
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.stats.truncated += 1;
                continue;
            }
            let Some(from) = socket::from_sockaddr(&self.names[i], h.msg_hdr.msg_namelen as usize)
            else {
                continue;
            };
            let ctl = &self.controls[i][..h.msg_hdr.msg_controllen.min(CMSG_SPACE)];
            let data = &self.bufs[i * MAX_DATAGRAM..i * MAX_DATAGRAM + h.msg_len as usize];
            let k = socket::hand_datagrams(from, data, ctl, self.gro, sink);
            self.stats.datagrams_received += k as u64;
            handed += k;
        }
        Ok(handed)
    }

    fn poll(&mut self, events: libc::c_short, wait: Option<Duration>) -> io::Result<()> {
        let mut fds = [
            libc::pollfd {
                fd: self.sock.as_raw_fd(),
                events,
                revents: 0,
            },
            libc::pollfd {
                fd: self.waker.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let timeout = wait.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
        self.stats.syscalls += 1;
        // SAFETY: fds is a live array of two pollfd structs.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        self.waker.drain();
        Ok(())
    }
}

impl DatagramIo for SyscallUdp {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    fn send_batch(&mut self, batch: &[Outgoing<'_>]) -> io::Result<usize> {
        if self.gso && batch.len() > 1 {
            self.send_segmented(batch)
        } else {
            self.send_plain(batch)
        }
    }

    fn recv(
        &mut self,
        wait: Option<Duration>,
        sink: &mut dyn FnMut(Received<'_>),
    ) -> io::Result<usize> {
        let mut total = self.recv_once(sink)?;
        if total == 0 && wait != Some(Duration::ZERO) {
            self.poll(libc::POLLIN, wait)?;
            total = self.recv_once(sink)?;
        }
        // Drain what is queued, bounded so that sends and timers are never starved.
        let mut rounds = 0;
        while total > 0 && rounds < 16 {
            let n = self.recv_once(sink)?;
            if n == 0 {
                break;
            }
            total += n;
            rounds += 1;
        }
        Ok(total)
    }

    fn waker(&self) -> Waker {
        self.waker.clone()
    }

    fn stats(&self) -> IoStats {
        self.stats
    }
}

impl SyscallUdp {
    /// Whether segmentation offload is in use for sends.
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Whether receive offload is on.
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// Sends with `UDP_SEGMENT`: each run of [`socket::gso_runs`] is one message whose iovecs are
    /// the run's datagrams (no copy) and whose control message gives their size. A kernel or device
    /// that refuses a segmented send turns offload off and the run goes datagram by datagram.
    fn send_segmented(&mut self, batch: &[Outgoing<'_>]) -> io::Result<usize> {
        let shape: Vec<(SocketAddr, usize)> = batch.iter().map(|o| (o.to, o.data.len())).collect();
        let (order, runs) = socket::gso_runs(&shape);
        let mut sent = 0;
        for group in runs.chunks(BATCH) {
            let mut names: Vec<libc::sockaddr_storage> = vec![zeroed_storage(); group.len()];
            let mut lens = Vec::with_capacity(group.len());
            let mut iovs: Vec<libc::iovec> = Vec::new();
            let mut cmsgs: Vec<SegmentCmsg> = vec![[0; 4]; group.len()];
            for (k, run) in group.iter().enumerate() {
                let first = &batch[order[run.start]];
                lens.push(socket::to_sockaddr(first.to, &mut names[k]));
                for &i in &order[run.clone()] {
                    iovs.push(libc::iovec {
                        iov_base: batch[i].data.as_ptr() as *mut _,
                        iov_len: batch[i].data.len(),
                    });
                }
                if run.len() > 1 {
                    cmsgs[k] = socket::segment_cmsg(first.data.len());
                }
            }
            // SAFETY: plain old data, pointers set below.
            let mut hdrs: Vec<libc::mmsghdr> = (0..group.len())
                .map(|_| unsafe { std::mem::zeroed() })
                .collect();
            let mut at = 0;
            for (k, (h, run)) in hdrs.iter_mut().zip(group).enumerate() {
                h.msg_hdr.msg_name = (&mut names[k] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = lens[k];
                h.msg_hdr.msg_iov = &mut iovs[at];
                h.msg_hdr.msg_iovlen = run.len();
                at += run.len();
                if run.len() > 1 {
                    h.msg_hdr.msg_control = cmsgs[k].as_mut_ptr().cast();
                    // SAFETY: CMSG_SPACE is pure arithmetic.
                    h.msg_hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
                }
            }
            let mut off = 0;
            let mut retried = false;
            while off < hdrs.len() {
                let (n, refused) = self.sendmmsg_from(&mut hdrs[off..], &mut retried)?;
                for run in &group[off..off + n] {
                    sent += run.len();
                    self.stats.datagrams_sent += run.len() as u64;
                }
                off += n;
                let Some(e) = refused else {
                    continue;
                };
                let run = group[off].clone();
                if run.len() > 1
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
                    )
                {
                    // The device or kernel cannot segment: fall back for good.
                    tracing::info!(error = %e, "UDP segmentation offload refused; sending datagram by datagram");
                    self.gso = false;
                    let singles: Vec<Outgoing<'_>> = order[run].iter().map(|&i| batch[i]).collect();
                    sent += self.send_plain(&singles)?;
                } else {
                    self.stats.send_errors += run.len() as u64;
                }
                off += 1;
            }
        }
        Ok(sent)
    }

    /// `sendmmsg` of `hdrs` from the first: retried when interrupted, and once (after up to
    /// 10 ms) when the send buffer is full (`retried` remembers that across calls of one batch).
    /// Returns how many messages the kernel took and, when it stopped short, why it refused the
    /// next one (the caller skips or falls back; UDP drops).
    fn sendmmsg_from(
        &mut self,
        hdrs: &mut [libc::mmsghdr],
        retried: &mut bool,
    ) -> io::Result<(usize, Option<io::Error>)> {
        loop {
            self.stats.syscalls += 1;
            // SAFETY: the headers point at names, iovecs, control buffers and caller data that
            // the caller keeps alive for the call.
            let n = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    hdrs.len() as u32,
                    0,
                )
            };
            if n > 0 {
                return Ok((n as usize, None));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock if !*retried => {
                    *retried = true;
                    self.poll(libc::POLLOUT, Some(Duration::from_millis(10)))?;
                }
                _ => return Ok((0, Some(e))),
            }
        }
    }

    /// One message per datagram.
    fn send_plain(&mut self, batch: &[Outgoing<'_>]) -> io::Result<usize> {
        let mut sent = 0;
        for chunk in batch.chunks(BATCH) {
            let mut names: Vec<libc::sockaddr_storage> = vec![zeroed_storage(); chunk.len()];
            let mut lens = Vec::with_capacity(chunk.len());
            for (o, n) in chunk.iter().zip(names.iter_mut()) {
                lens.push(socket::to_sockaddr(o.to, n));
            }
            let mut iovs: Vec<libc::iovec> = chunk
                .iter()
                .map(|o| libc::iovec {
                    iov_base: o.data.as_ptr() as *mut _,
                    iov_len: o.data.len(),
                })
                .collect();
            // SAFETY: plain old data, pointers set below.
            let mut hdrs: Vec<libc::mmsghdr> = (0..chunk.len())
                .map(|_| unsafe { std::mem::zeroed() })
                .collect();
            for (i, h) in hdrs.iter_mut().enumerate() {
                h.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = lens[i];
                h.msg_hdr.msg_iov = &mut iovs[i];
                h.msg_hdr.msg_iovlen = 1;
            }
            let mut off = 0;
            let mut retried = false;
            while off < hdrs.len() {
                let (n, refused) = self.sendmmsg_from(&mut hdrs[off..], &mut retried)?;
                off += n;
                sent += n;
                self.stats.datagrams_sent += n as u64;
                if refused.is_some() {
                    // This datagram cannot be sent (no route, refused); skip it like UDP does.
                    self.stats.send_errors += 1;
                    off += 1;
                }
            }
        }
        Ok(sent)
    }
}
