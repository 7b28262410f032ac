//! The io_uring driver: one multishot `recvmsg` that keeps receiving into a ring of provided
//! buffers (no system call per datagram, none per batch beyond the one wait), `sendmsg` SQEs
//! submitted together, and a read on the waker's eventfd so a wait can be ended from elsewhere.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, Fd, RecvMsgOut, SubmitArgs, Timespec};
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

/// One datagram in flight to the kernel: its address and iovec must live until completion.
struct SendSlot {
    name: libc::sockaddr_storage,
    iov: libc::iovec,
    hdr: libc::msghdr,
}

/// io_uring UDP driver.
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
        // COOP_TASKRUN: completions are processed when we enter the kernel anyway; no IPI per send.
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .build(RING_ENTRIES)?;
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
            stats: IoStats::default(),
        })
    }

    fn arm(&mut self) -> io::Result<()> {
        if !self.recv_armed {
            let e = opcode::RecvMsgMulti::new(Fd(self.sock.as_raw_fd()), &*self.recv_hdr, BGID)
                .build()
                .user_data(RECV);
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
            self.stats.syscalls += 1;
            self.ring.submit()?;
        }
        Ok(())
    }

    /// Takes every completion; receive completions are queued in `pending`.
    fn reap(&mut self) -> usize {
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
                SEND => {
                    sends += 1;
                    if c.result() < 0 {
                        self.stats.send_errors += 1;
                        self.stats.datagrams_sent = self.stats.datagrams_sent.saturating_sub(1);
                    }
                }
                _ => {}
            }
        }
        sends
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
                        self.stats.datagrams_received += 1;
                        n += 1;
                        sink(Received {
                            from,
                            data: out.payload_data(),
                            kernel_ns: socket::timestamp_from_cmsgs(out.control_data()),
                        });
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
        for chunk in batch.chunks(SEND_BATCH) {
            self.send_slots.clear();
            for o in chunk {
                // SAFETY: plain old data, filled below.
                let mut slot = SendSlot {
                    name: unsafe { std::mem::zeroed() },
                    iov: libc::iovec {
                        iov_base: o.data.as_ptr() as *mut _,
                        iov_len: o.data.len(),
                    },
                    hdr: unsafe { std::mem::zeroed() },
                };
                slot.hdr.msg_namelen = socket::to_sockaddr(o.to, &mut slot.name);
                self.send_slots.push(slot);
            }
            // Pointers are taken only after the vector stops growing.
            for i in 0..self.send_slots.len() {
                let s = &mut self.send_slots[i];
                s.hdr.msg_name = (&mut s.name as *mut libc::sockaddr_storage).cast();
                s.hdr.msg_iov = &mut s.iov;
                s.hdr.msg_iovlen = 1;
                let e = opcode::SendMsg::new(Fd(self.sock.as_raw_fd()), &s.hdr)
                    .build()
                    .user_data(SEND);
                self.push(e)?;
            }
            self.stats.datagrams_sent += chunk.len() as u64;
            // Every send of this chunk must complete before the slots (and caller data) go away.
            let mut done = self.reap();
            while done < chunk.len() {
                self.stats.syscalls += 1;
                self.ring.submit_and_wait(1)?;
                done += self.reap();
            }
        }
        Ok(batch.len())
    }

    fn recv(
        &mut self,
        wait: Option<Duration>,
        sink: &mut dyn FnMut(Received<'_>),
    ) -> io::Result<usize> {
        self.arm()?;
        self.reap();
        if self.pending.is_empty() {
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
        } else {
            self.ring.submit()?;
        }
        self.waker.drain();
        let n = self.hand_over(sink);
        // Re-arm now so that datagrams arriving before the next call are already being received.
        self.arm()?;
        self.ring.submit()?;
        Ok(n)
    }

    fn waker(&self) -> Waker {
        self.waker.clone()
    }

    fn stats(&self) -> IoStats {
        self.stats
    }
}
