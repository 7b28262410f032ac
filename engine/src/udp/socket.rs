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

/// Room for one `SCM_TIMESTAMPNS` control message.
pub const CMSG_SPACE: usize = 64;

/// The kernel receive time carried in a control-message buffer, if any.
pub fn timestamp_from_cmsgs(control: &[u8]) -> Option<u64> {
    let hdr = std::mem::size_of::<libc::cmsghdr>();
    let mut off = 0;
    while off + hdr <= control.len() {
        // SAFETY: bounds checked above; read_unaligned copes with any alignment.
        let c: libc::cmsghdr = unsafe { std::ptr::read_unaligned(control[off..].as_ptr().cast()) };
        let len = c.cmsg_len;
        if len < hdr || off + len > control.len() {
            return None;
        }
        let data = &control[off + hdr..off + len];
        if c.cmsg_level == libc::SOL_SOCKET
            && c.cmsg_type == libc::SCM_TIMESTAMPNS
            && data.len() >= std::mem::size_of::<libc::timespec>()
        {
            // SAFETY: length checked; unaligned read of a plain-old-data struct.
            let ts: libc::timespec = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
            return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
        }
        // CMSG_ALIGN: control messages are padded to the size of a long.
        let align = std::mem::size_of::<usize>();
        off += (len + align - 1) & !(align - 1);
    }
    None
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
