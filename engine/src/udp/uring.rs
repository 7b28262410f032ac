//! The io_uring driver: one multishot `recvmsg` that keeps receiving into a ring of provided
//! buffers (no system call per datagram, none per batch beyond the one wait; with `UDP_GRO` a
//! buffer may hold a run of coalesced datagrams, split here), `sendmsg` SQEs submitted together
//! (a run of equal datagrams to one destination as one `UDP_SEGMENT` send, as the syscall driver
//! does), the socket registered as a fixed file, a single-issuer ring whose completions are
//! processed only when the driver enters the kernel (`DEFER_TASKRUN`, where the kernel has it),
//! and a read on the waker's eventfd so a wait can be ended from elsewhere.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, Fd, Fixed, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode};

use super::socket::{self, CMSG_SPACE};
use super::{DatagramIo, IoStats, MAX_DATAGRAM, Outgoing, Received, Waker};

const RECV: u64 = 1;
const WAKE: u64 = 2;
const SEND: u64 = 3;
/// Buffer group id of the provided-buffer ring.
const BGID: u16 = 7;
/// Sends submitted per `io_uring_enter`.
const SEND_BATCH: usize = 256;
const RING_ENTRIES: u32 = 1024;

/// Provided buffers, registered with the kernel as a buffer ring: the kernel takes one per
/// datagram; we give it back (advance the tail) once the datagram has been handed over.
struct BufRing {
    ring: *mut BufRingEntry,
    ring_bytes: usize,
    entries: u16,
    tail: u16,
    buf_size: usize,
    bufs: Vec<u8>,
}

// SAFETY: the mapping is owned by this struct and only touched by the thread that owns the driver.
unsafe impl Send for BufRing {}

impl BufRing {
    fn new(entries: u16, buf_size: usize) -> io::Result<Self> {
        let ring_bytes = entries as usize * std::mem::size_of::<BufRingEntry>();
        // The ring must be page aligned: map it.
        // SAFETY: anonymous private mapping; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut r = BufRing {
            ring: ptr.cast(),
            ring_bytes,
            entries,
            tail: 0,
            buf_size,
            bufs: vec![0; entries as usize * buf_size],
        };
        for bid in 0..entries {
            r.push(bid);
        }
        r.publish();
        Ok(r)
    }

    /// Queues buffer `bid` for the kernel (visible after [`Self::publish`]).
    fn push(&mut self, bid: u16) {
        let idx = (self.tail & (self.entries - 1)) as usize;
        let addr = self.bufs[bid as usize * self.buf_size..].as_mut_ptr() as u64;
        // SAFETY: idx < entries, inside the mapping.
        let e = unsafe { &mut *self.ring.add(idx) };
        e.set_addr(addr);
        e.set_len(self.buf_size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lives in entry 0 of the mapping; the kernel reads it concurrently,
        // hence the atomic release store.
        unsafe {
            let tail = BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn buf(&self, bid: u16, len: usize) -> &[u8] {
        &self.bufs[bid as usize * self.buf_size..][..len.min(self.buf_size)]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in new().
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_bytes);
        }
    }
}

/// One send in flight to the kernel (a datagram, or a run of them with `UDP_SEGMENT`): its
/// address, iovecs and control message must live until completion.
struct SendSlot {
    name: libc::sockaddr_storage,
    hdr: libc::msghdr,
    /// `cmsghdr` + the segment size, 8-aligned.
    cmsg: [u64; 4],
    /// Datagrams it carries.
    datagrams: usize,
}

/// io_uring UDP driver. Its ring has a single issuer: the first thread that sends or receives
/// through it; calls from any other thread afterwards fail (EEXIST).
pub struct UringUdp {
    // Field order matters for drop: the ring (and any operation in flight) goes before the buffers.
    ring: IoUring,
    sock: UdpSocket,
    waker: Waker,
    bufs: BufRing,
    recv_hdr: Box<libc::msghdr>,
    recv_armed: bool,
    wake_buf: Box<u64>,
    wake_armed: bool,
    /// Receive completions seen while waiting for sends, handed over at the next `recv`.
    pending: VecDeque<(u16, usize)>,
    send_slots: Vec<SendSlot>,
    send_iovs: Vec<libc::iovec>,
    /// Runs of equal datagrams go as one segmented send (turned off if the kernel refuses).
    gso: bool,
    /// The kernel coalesces received datagrams (`UDP_GRO`).
    gro: bool,
    /// The socket is registered as fixed file 0.
    fixed: bool,
    /// The ring waits for its issuer's first call to be enabled.
    disabled: bool,
    stats: IoStats,
}

// SAFETY: raw pointers inside (msghdr, slots) point into memory owned by this struct.
unsafe impl Send for UringUdp {}

impl UringUdp {
    pub fn new(sock: UdpSocket) -> io::Result<Self> {
        Self::with_max_payload(sock, MAX_DATAGRAM)
    }

    /// A driver whose buffers hold datagrams up to `max_payload` bytes (longer ones are dropped).
    pub fn with_max_payload(sock: UdpSocket, max_payload: usize) -> io::Result<Self> {
        // One thread submits and reaps (the event loop): SINGLE_ISSUER with DEFER_TASKRUN runs
        // completion work only when it enters the kernel asking for events (TASKRUN_FLAG tells
        // it when some is waiting). Kernels before 6.1 refuse it: COOP_TASKRUN (no IPI per send).
        // The ring starts disabled and is enabled by the first call that uses it, so the issuer is
        // the thread that drives the driver, not the one that made it.
        let (ring, disabled) = match IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .setup_r_disabled()
            .build(RING_ENTRIES)
        {
            Ok(r) => (r, true),
            Err(_) => (
                IoUring::builder()
                    .setup_coop_taskrun()
                    .build(RING_ENTRIES)?,
                false,
            ),
        };
        // The socket as fixed file 0: no file table lookup per operation.
        let fixed = ring.submitter().register_files(&[sock.as_raw_fd()]).is_ok();
        // As the syscall driver: COHORT_NO_GSO / COHORT_NO_GRO turn the offloads off.
        let gso = socket::set_udp_option(&sock, socket::UDP_SEGMENT, 0).is_ok()
            && std::env::var_os("COHORT_NO_GSO").is_none();
        let gro = max_payload >= super::MAX_DATAGRAM
            && std::env::var_os("COHORT_NO_GRO").is_none()
            && socket::set_udp_option(&sock, socket::UDP_GRO, 1).is_ok();
        let header = 16 + std::mem::size_of::<libc::sockaddr_storage>() + CMSG_SPACE;
        let buf_size = header + max_payload;
        // About 32 MiB of buffers, between 64 and 4096 of them (a power of two).
        let entries = (32 * 1024 * 1024 / buf_size)
            .clamp(64, 4096)
            .next_power_of_two()
            .min(4096) as u16;
        let bufs = BufRing::new(entries, buf_size)?;
        // SAFETY: the ring memory stays mapped and unmoved until the driver (and the ring) drop.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(bufs.ring as u64, entries, BGID, 0)?
        };
        // SAFETY: plain old data; the multishot template only needs the name and control sizes.
        let mut recv_hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        recv_hdr.msg_controllen = CMSG_SPACE;
        Ok(UringUdp {
            ring,
            sock,
            waker: Waker::new()?,
            bufs,
            recv_hdr,
            recv_armed: false,
            wake_buf: Box::new(0),
            wake_armed: false,
            pending: VecDeque::new(),
            send_slots: Vec::new(),
            send_iovs: Vec::new(),
            gso,
            gro,
            fixed,
            disabled,
            stats: IoStats::default(),
        })
    }

    /// Enables a ring set up disabled: the calling thread becomes its single issuer.
    fn enable(&mut self) -> io::Result<()> {
        if self.disabled {
            self.ring.submitter().register_enable_rings()?;
            self.disabled = false;
        }
        Ok(())
    }

    /// Whether segmentation offload is in use for sends.
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Whether receive offload is on.
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// The multishot receive on the socket (the fixed file when registered).
    fn recv_entry(&self) -> io_uring::squeue::Entry {
        if self.fixed {
            opcode::RecvMsgMulti::new(Fixed(0), &*self.recv_hdr, BGID).build()
        } else {
            opcode::RecvMsgMulti::new(Fd(self.sock.as_raw_fd()), &*self.recv_hdr, BGID).build()
        }
    }

    /// A send of `hdr` on the socket (the fixed file when registered).
    fn send_entry(&self, hdr: *const libc::msghdr) -> io_uring::squeue::Entry {
        if self.fixed {
            opcode::SendMsg::new(Fixed(0), hdr).build()
        } else {
            opcode::SendMsg::new(Fd(self.sock.as_raw_fd()), hdr).build()
        }
    }

    fn arm(&mut self) -> io::Result<()> {
        if !self.recv_armed {
            let e = self.recv_entry().user_data(RECV);
            self.push(e)?;
            self.recv_armed = true;
        }
        if !self.wake_armed {
            let e = opcode::Read::new(
                Fd(self.waker.fd()),
                (&mut *self.wake_buf as *mut u64).cast(),
                8,
            )
            .build()
            .user_data(WAKE);
            self.push(e)?;
            self.wake_armed = true;
        }
        Ok(())
    }

    fn push(&mut self, e: io_uring::squeue::Entry) -> io::Result<()> {
        // SAFETY: every entry points at memory owned by self that outlives its completion.
        while unsafe { self.ring.submission().push(&e) }.is_err() {
            self.submit()?;
        }
        Ok(())
    }

    /// Submits what is queued (and runs deferred completion work); a signal is not an error.
    fn submit(&mut self) -> io::Result<()> {
        self.stats.syscalls += 1;
        match self.ring.submit() {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Takes every completion; receive completions are queued in `pending`. Returns the sends
    /// completed; refused ones are listed in `failed` (slot index, errno).
    fn reap_sends(&mut self, failed: &mut Vec<(usize, i32)>) -> usize {
        let mut sends = 0;
        let cqes: Vec<cqueue::Entry> = self.ring.completion().collect();
        for c in cqes {
            match c.user_data() {
                RECV => {
                    if !cqueue::more(c.flags()) {
                        self.recv_armed = false;
                    }
                    if c.result() >= 0
                        && let Some(bid) = cqueue::buffer_select(c.flags())
                    {
                        self.pending.push_back((bid, c.result() as usize));
                    }
                    // ENOBUFS (all buffers in use) simply ends the multishot; arm() re-arms it
                    // after the buffers have been given back.
                }
                WAKE => self.wake_armed = false,
                d if d & 0xff == SEND => {
                    sends += 1;
                    if c.result() < 0 {
                        failed.push(((d >> 8) as usize, -c.result()));
                    }
                }
                _ => {}
            }
        }
        sends
    }

    /// [`UringUdp::reap_sends`] outside a send (no send is in flight then).
    fn reap(&mut self) -> usize {
        self.reap_sends(&mut Vec::new())
    }

    fn hand_over(&mut self, sink: &mut dyn FnMut(Received<'_>)) -> usize {
        let mut n = 0;
        while let Some((bid, len)) = self.pending.pop_front() {
            let buf = self.bufs.buf(bid, len);
            if let Ok(out) = RecvMsgOut::parse(buf, &self.recv_hdr) {
                if out.is_payload_truncated() {
                    self.stats.truncated += 1;
                } else {
                    // SAFETY: plain old data.
                    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
                    let name = out.name_data();
                    let len = name
                        .len()
                        .min(std::mem::size_of::<libc::sockaddr_storage>());
                    // SAFETY: copies len bytes into a storage of at least that size.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            name.as_ptr(),
                            (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
                            len,
                        )
                    };
                    if let Some(from) = socket::from_sockaddr(&storage, len) {
                        let k = socket::hand_datagrams(
                            from,
                            out.payload_data(),
                            out.control_data(),
                            self.gro,
                            sink,
                        );
                        self.stats.datagrams_received += k as u64;
                        n += k;
                    }
                }
            }
            self.bufs.push(bid);
        }
        self.bufs.publish();
        n
    }
}

impl DatagramIo for UringUdp {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    fn send_batch(&mut self, batch: &[Outgoing<'_>]) -> io::Result<usize> {
        self.enable()?;
        // Runs of equal datagrams to one destination (one datagram each without offload).
        let (order, runs) = if self.gso {
            let shape: Vec<(SocketAddr, usize)> =
                batch.iter().map(|o| (o.to, o.data.len())).collect();
            socket::gso_runs(&shape)
        } else {
            (
                (0..batch.len()).collect(),
                (0..batch.len()).map(|i| i..i + 1).collect(),
            )
        };
        let mut refused: Vec<std::ops::Range<usize>> = Vec::new();
        for group in runs.chunks(SEND_BATCH) {
            self.send_slots.clear();
            self.send_iovs.clear();
            for run in group {
                let first = &batch[order[run.start]];
                // SAFETY: plain old data, filled below.
                let mut slot = SendSlot {
                    name: unsafe { std::mem::zeroed() },
                    hdr: unsafe { std::mem::zeroed() },
                    cmsg: [0; 4],
                    datagrams: run.len(),
                };
                slot.hdr.msg_namelen = socket::to_sockaddr(first.to, &mut slot.name);
                if run.len() > 1 {
                    slot.cmsg = socket::segment_cmsg(first.data.len());
                }
                for &i in &order[run.clone()] {
                    self.send_iovs.push(libc::iovec {
                        iov_base: batch[i].data.as_ptr() as *mut _,
                        iov_len: batch[i].data.len(),
                    });
                }
                self.send_slots.push(slot);
            }
            // Pointers are taken only after the vectors stop growing.
            let mut at = 0;
            let mut entries = Vec::with_capacity(group.len());
            for (k, run) in group.iter().enumerate() {
                let s = &mut self.send_slots[k];
                s.hdr.msg_name = (&mut s.name as *mut libc::sockaddr_storage).cast();
                s.hdr.msg_iov = &mut self.send_iovs[at];
                s.hdr.msg_iovlen = run.len();
                at += run.len();
                if run.len() > 1 {
                    s.hdr.msg_control = s.cmsg.as_mut_ptr().cast();
                    // SAFETY: CMSG_SPACE is pure arithmetic.
                    s.hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
                }
                // The slot's index rides in the user data, so a refused run can be retried.
                let hdr: *const libc::msghdr = &s.hdr;
                entries.push(self.send_entry(hdr).user_data(SEND | ((k as u64) << 8)));
            }
            for e in entries {
                self.push(e)?;
            }
            let datagrams: usize = group.iter().map(|r| r.len()).sum();
            self.stats.datagrams_sent += datagrams as u64;
            // Every send of this group must complete before the slots (and caller data) go away.
            let mut failed: Vec<(usize, i32)> = Vec::new();
            let mut done = self.reap_sends(&mut failed);
            while done < group.len() {
                self.stats.syscalls += 1;
                match self.ring.submit_and_wait(1) {
                    Ok(_) => {}
                    // A signal (the daemon handles TERM, INT and HUP): the sends are still in
                    // flight and point at this call's slots and the caller's data, so wait on.
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                done += self.reap_sends(&mut failed);
            }
            for (k, errno) in failed {
                let n = self.send_slots[k].datagrams;
                self.stats.datagrams_sent = self.stats.datagrams_sent.saturating_sub(n as u64);
                if n > 1
                    && matches!(
                        errno,
                        libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT
                    )
                {
                    // The device or kernel cannot segment: fall back for good.
                    tracing::info!(
                        errno,
                        "UDP segmentation offload refused; sending datagram by datagram"
                    );
                    self.gso = false;
                    refused.push(group[k].clone());
                } else {
                    self.stats.send_errors += n as u64;
                }
            }
        }
        for run in refused {
            let singles: Vec<Outgoing<'_>> = order[run].iter().map(|&i| batch[i]).collect();
            self.send_batch(&singles)?;
        }
        Ok(batch.len())
    }

    fn recv(
        &mut self,
        wait: Option<Duration>,
        sink: &mut dyn FnMut(Received<'_>),
    ) -> io::Result<usize> {
        self.enable()?;
        // Reap before arming: a receive armed while every buffer waits in `pending` would fail
        // at once (ENOBUFS) and leave the next wait with nothing armed.
        self.reap();
        if self.pending.is_empty() {
            self.arm()?;
            self.stats.syscalls += 1;
            let r = match wait {
                Some(d) if d.is_zero() => self.ring.submit().map(|_| ()),
                Some(d) => {
                    let ts = Timespec::new().sec(d.as_secs()).nsec(d.subsec_nanos());
                    let args = SubmitArgs::new().timespec(&ts);
                    self.ring.submitter().submit_with_args(1, &args).map(|_| ())
                }
                None => self.ring.submit_and_wait(1).map(|_| ()),
            };
            match r {
                Ok(()) => {}
                // ETIME: the wait timed out; EINTR: a signal. Neither is an error here.
                Err(e)
                    if e.raw_os_error() == Some(libc::ETIME)
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            self.reap();
        }
        self.waker.drain();
        let n = self.hand_over(sink);
        // The buffers are back: re-arm now (a receive that ended meanwhile is seen by this reap)
        // so that datagrams arriving before the next call are already being received.
        self.reap();
        self.arm()?;
        self.submit()?;
        Ok(n)
    }

    fn waker(&self) -> Waker {
        self.waker.clone()
    }

    fn stats(&self) -> IoStats {
        self.stats
    }
}
