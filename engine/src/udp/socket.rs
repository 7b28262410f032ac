//! Socket set-up shared by both drivers.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// Kernel buffer size asked for; bursts of replication traffic must not overflow the queue.
pub const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// A non-blocking UDP socket bound to `addr`, with large buffers and kernel receive timestamps.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM.cloexec(),
        Some(Protocol::UDP),
    )?;
    // Larger buffers are an optimisation; a kernel that caps them is not an error.
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    let sock: UdpSocket = sock.into();
    enable_timestamps(&sock)?;
    Ok(sock)
}

fn enable_timestamps(sock: &UdpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with a valid fd and a pointer to a live c_int of the stated size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Room for an `SCM_TIMESTAMPNS` and a `UDP_GRO` control message.
pub const CMSG_SPACE: usize = 128;

/// `UDP_SEGMENT` from `linux/udp.h` (the libc crate lacks it on glibc targets): send one buffer
/// that the kernel cuts into datagrams of the given size (UDP GSO, Linux 4.18).
pub const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` from `linux/udp.h`: receive back-to-back datagrams of one sender coalesced into one
/// buffer, with their size in a control message (Linux 5.0).
pub const UDP_GRO: libc::c_int = 104;
/// Most segments the kernel takes in one GSO send (`UDP_MAX_SEGMENTS`).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes in one GSO send (an IP datagram's payload limit, less headers).
pub const GSO_MAX_BYTES: usize = 65_000;

/// Sets an integer `SOL_UDP` option; `Err` when the kernel does not know it.
pub fn set_udp_option(sock: &UdpSocket, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt with a valid fd and a pointer to a live c_int of the stated size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The segment size of a buffer the kernel coalesced (`UDP_GRO`), if the control messages say so.
pub fn gro_segment_from_cmsgs(control: &[u8]) -> Option<usize> {
    cmsgs(control).find_map(|(level, kind, data)| {
        if level != libc::SOL_UDP || kind != UDP_GRO || data.len() < 4 {
            return None;
        }
        let size = i32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
        usize::try_from(size).ok().filter(|s| *s > 0)
    })
}

/// The datagrams of one received buffer, handed to `sink` (their count is returned): with `gro`
/// on, a coalesced buffer holds datagrams of the control message's segment size, the last
/// possibly shorter; an empty datagram is one datagram.
pub fn hand_datagrams(
    from: SocketAddr,
    data: &[u8],
    control: &[u8],
    gro: bool,
    sink: &mut dyn FnMut(super::Received<'_>),
) -> usize {
    let kernel_ns = timestamp_from_cmsgs(control);
    if data.is_empty() {
        sink(super::Received {
            from,
            data,
            kernel_ns,
        });
        return 1;
    }
    let segment = if gro {
        gro_segment_from_cmsgs(control).unwrap_or(data.len())
    } else {
        data.len()
    };
    let mut n = 0;
    for d in data.chunks(segment) {
        n += 1;
        sink(super::Received {
            from,
            data: d,
            kernel_ns,
        });
    }
    n
}

/// The control message of a segmented send (`UDP_SEGMENT` with `segment` bytes per datagram):
/// a `cmsghdr` and the size in an 8-aligned 32-byte buffer, `CMSG_SPACE(2)` bytes of it used.
pub fn segment_cmsg(segment: usize) -> [u64; 4] {
    let mut buf = [0u64; 4];
    let seg = u16::try_from(segment).unwrap_or(u16::MAX);
    // SAFETY: CMSG_LEN is pure arithmetic.
    let cmsg_len = unsafe { libc::CMSG_LEN(2) } as usize;
    let hdr = libc::cmsghdr {
        cmsg_len,
        cmsg_level: libc::SOL_UDP,
        cmsg_type: UDP_SEGMENT,
    };
    let p = buf.as_mut_ptr().cast::<u8>();
    // SAFETY: the 32-byte, 8-aligned buffer holds a cmsghdr (16 bytes) and a u16.
    unsafe {
        std::ptr::write_unaligned(p.cast::<libc::cmsghdr>(), hdr);
        std::ptr::write_unaligned(
            p.add(std::mem::size_of::<libc::cmsghdr>()).cast::<u16>(),
            seg,
        );
    }
    buf
}

/// Orders a batch for segmentation offload: datagrams grouped by destination (each destination's
/// datagrams keep their order), then cut into runs that one GSO send carries: the same
/// destination, every datagram but the last of the run exactly as long as the first, at most
/// [`GSO_MAX_SEGMENTS`] datagrams and [`GSO_MAX_BYTES`] bytes. Returns index ranges into the
/// returned order.
pub fn gso_runs(batch: &[(SocketAddr, usize)]) -> (Vec<usize>, Vec<core::ops::Range<usize>>) {
    let mut order: Vec<usize> = (0..batch.len()).collect();
    // A stable sort keeps each destination's datagrams in the order they were queued.
    order.sort_by_key(|&i| batch[i].0);
    let mut runs = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let (to, size) = batch[order[start]];
        let mut end = start + 1;
        let mut bytes = size;
        while end < order.len() && end - start < GSO_MAX_SEGMENTS {
            let (t, len) = batch[order[end]];
            // The previous datagram must be full-size for the run to go on.
            let prev = batch[order[end - 1]].1;
            if t != to || len > size || prev != size || bytes + len > GSO_MAX_BYTES {
                break;
            }
            bytes += len;
            end += 1;
        }
        runs.push(start..end);
        start = end;
    }
    (order, runs)
}

/// The control messages of a buffer the kernel filled: `(level, type, data)` each, stopping at
/// the first malformed header.
fn cmsgs(control: &[u8]) -> impl Iterator<Item = (libc::c_int, libc::c_int, &[u8])> {
    let hdr = std::mem::size_of::<libc::cmsghdr>();
    let mut off = 0;
    std::iter::from_fn(move || {
        if off + hdr > control.len() {
            return None;
        }
        // SAFETY: bounds checked above; read_unaligned copes with any alignment.
        let c: libc::cmsghdr = unsafe { std::ptr::read_unaligned(control[off..].as_ptr().cast()) };
        let len = c.cmsg_len;
        if len < hdr || off + len > control.len() {
            return None;
        }
        let data = &control[off + hdr..off + len];
        // CMSG_ALIGN: control messages are padded to the size of a long.
        let align = std::mem::size_of::<usize>();
        off += (len + align - 1) & !(align - 1);
        Some((c.cmsg_level, c.cmsg_type, data))
    })
}

/// The kernel receive time carried in a control-message buffer, if any.
pub fn timestamp_from_cmsgs(control: &[u8]) -> Option<u64> {
    cmsgs(control).find_map(|(level, kind, data)| {
        (level == libc::SOL_SOCKET
            && kind == libc::SCM_TIMESTAMPNS
            && data.len() >= std::mem::size_of::<libc::timespec>())
        .then(|| {
            // SAFETY: length checked; unaligned read of a plain-old-data struct.
            let ts: libc::timespec = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        })
    })
}

/// Converts a kernel `sockaddr_storage` into a std address.
pub fn from_sockaddr(storage: &libc::sockaddr_storage, len: usize) -> Option<SocketAddr> {
    // SAFETY: the storage is large enough for any address family and was filled by the kernel.
    let addr = unsafe { socket2::SockAddr::new(*storage, len as libc::socklen_t) };
    addr.as_socket()
}

/// Writes `addr` into a `sockaddr_storage`, returning the length to pass to the kernel.
pub fn to_sockaddr(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    let a = socket2::SockAddr::from(addr);
    let len = a.len() as usize;
    // SAFETY: copies len <= size_of::<sockaddr_storage>() bytes between two valid buffers.
    unsafe {
        std::ptr::copy_nonoverlapping(
            a.as_ptr().cast::<u8>(),
            (storage as *mut libc::sockaddr_storage).cast::<u8>(),
            len,
        );
    }
    a.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_group_destinations_and_stop_at_a_short_datagram() {
        let a: SocketAddr = "10.0.0.1:4809".parse().expect("literal");
        let b: SocketAddr = "10.0.0.2:4809".parse().expect("literal");
        let batch = [
            (a, 1300),
            (b, 1300),
            (a, 1300),
            (b, 1300),
            (a, 700),
            (a, 1300),
            (b, 90),
        ];
        let (order, runs) = gso_runs(&batch);
        let runs: Vec<Vec<usize>> = runs.into_iter().map(|r| order[r].to_vec()).collect();
        assert_eq!(runs, vec![vec![0, 2, 4], vec![5], vec![1, 3, 6]]);
    }

    #[test]
    fn runs_respect_the_kernels_limits() {
        let a: SocketAddr = "10.0.0.1:4809".parse().expect("literal");
        let batch = vec![(a, 1000); 200];
        let (_, runs) = gso_runs(&batch);
        assert!(runs.iter().all(|r| r.len() <= GSO_MAX_SEGMENTS));
        assert!(runs.iter().all(|r| r.len() * 1000 <= GSO_MAX_BYTES));
        assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), 200);
    }
}
