//! Raw ARP on one interface for the DuraVIP benchmarks (`failover`, `arp-flood`): AF_PACKET
//! sockets opened by the calling thread (hence in its network namespace), request frames built and
//! replies parsed with smoltcp's wire types. The sending socket has protocol 0, so the kernel queues
//! nothing to it; the receiving socket ignores what this host itself sends.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
};

fn ifindex(iface: &str) -> io::Result<i32> {
    let c = std::ffi::CString::new(iface)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
    // SAFETY: c is NUL-terminated.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(i as i32)
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: passes a live value of its own size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sll(ifindex: i32) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
    sll.sll_ifindex = ifindex;
    sll
}

/// An AF_PACKET socket on one interface.
pub struct Raw {
    fd: OwnedFd,
    ifindex: i32,
}

impl Raw {
    fn open(iface: &str, proto: u16) -> io::Result<Raw> {
        let ifindex = ifindex(iface)?;
        // SAFETY: plain socket(2); checked below.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto.to_be()),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just created and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Raw { fd, ifindex })
    }

    /// A socket that only sends.
    pub fn sender(iface: &str) -> io::Result<Raw> {
        Raw::open(iface, 0)
    }

    /// A socket receiving the ARP frames that arrive on `iface` (not those this host sends), each
    /// `recv` waiting at most `timeout`, with a receive buffer of `rcvbuf` bytes.
    pub fn receiver(iface: &str, timeout: Duration, rcvbuf: usize) -> io::Result<Raw> {
        let r = Raw::open(iface, libc::ETH_P_ARP as u16)?;
        let one: libc::c_int = 1;
        setsockopt(&r.fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one)?;
        let buf = libc::c_int::try_from(rcvbuf).unwrap_or(libc::c_int::MAX);
        setsockopt(&r.fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &buf)?;
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        setsockopt(&r.fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
        let a = sll(r.ifindex);
        // SAFETY: binds to a valid sockaddr_ll of its own size.
        let rc = unsafe {
            libc::bind(
                r.fd.as_raw_fd(),
                (&a as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // Frames queued before the bind (from any interface) are of no interest.
        let mut scratch = [0u8; 64];
        // SAFETY: non-blocking reads into a live buffer until the queue is empty.
        while unsafe {
            libc::recv(
                r.fd.as_raw_fd(),
                scratch.as_mut_ptr().cast(),
                scratch.len(),
                libc::MSG_DONTWAIT,
            )
        } > 0
        {}
        Ok(r)
    }

    /// Sends one complete Ethernet frame (its first 6 bytes are the destination).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        cohort::garp::send_frame(&self.fd, self.ifindex, frame)
    }

    /// One frame, or `None` when the timeout passed first.
    pub fn recv<'b>(&self, buf: &'b mut [u8]) -> io::Result<Option<&'b [u8]>> {
        // SAFETY: reads at most buf.len() bytes into a live buffer.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(&buf[..n as usize]))
    }

    /// Frames that reached this socket since the last call, and how many of them were dropped
    /// because the receive buffer was full (PACKET_STATISTICS, which resets on each read; its
    /// packet count includes the drops).
    pub fn stats(&self) -> (u64, u64) {
        let mut st = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: the kernel writes at most len bytes into st.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            (0, 0)
        } else {
            (u64::from(st.tp_packets), u64::from(st.tp_drops))
        }
    }
}

/// A broadcast ARP request from `mac`/`ip` asking who has `target`.
pub fn request(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    request_to([0xff; 6], mac, ip, target)
}

/// The same request sent to Ethernet address `dst` (unicast, as the kernel's cache refresh probes
/// are).
pub fn request_to(dst: [u8; 6], mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    cohort::garp::frame(
        dst,
        mac,
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress(mac),
            source_protocol_addr: ip,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        },
    )
}

/// The address and the sender MAC of `frame` when it is an ARP reply.
pub fn reply(frame: &[u8]) -> Option<(Ipv4Addr, [u8; 6])> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()?;
    match arp {
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr,
            source_protocol_addr,
            ..
        } => Some((source_protocol_addr, source_hardware_addr.0)),
        _ => None,
    }
}

/// `aa:bb:..` for tables.
pub fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
