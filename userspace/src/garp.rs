//! ARP announcements for DuraVIP acquisitions, sent through an AF_PACKET socket with frames built
//! by smoltcp: a broadcast gratuitous ARP (`arp_all_hosts = true`), or an ARP reply sent to each
//! host of the cluster's shared ARP cache (`arp_all_hosts = false`). For an IPv6 address the same
//! two shapes are unsolicited neighbour advertisements (override flag, target link-layer address):
//! to all nodes (`ff02::1`), or to each IPv6 host of the cache.

use std::net::{Ipv4Addr, Ipv6Addr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IPV6_LINK_LOCAL_ALL_NODES, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv6Packet,
    Ipv6Repr, NdiscNeighborFlags, NdiscRepr, RawHardwareAddress,
};

#[derive(Debug, thiserror::Error)]
pub enum GarpError {
    #[error("no interface named '{0}'")]
    NoInterface(String),
    #[error("AF_PACKET socket: {0}")]
    Socket(std::io::Error),
    #[error("sending on {iface}: {err}")]
    Send { iface: String, err: std::io::Error },
}

/// An ARP frame: Ethernet header + ARP for Ethernet/IPv4.
pub fn frame(eth_dst: [u8; 6], eth_src: [u8; 6], arp: ArpRepr) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: EthernetAddress(eth_src),
        dst_addr: EthernetAddress(eth_dst),
        ethertype: EthernetProtocol::Arp,
    };
    let mut buf = vec![0u8; eth.buffer_len() + arp.buffer_len()];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut f);
    arp.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
    buf
}

/// The gratuitous ARP request announcing that `ip` is at `mac` (sender = target = `ip`).
pub fn gratuitous(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    frame(
        [0xff; 6],
        mac,
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress(mac),
            source_protocol_addr: ip,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: ip,
        },
    )
}

/// An ARP reply telling one host (`host_ip` at `host_mac`) that `ip` is at `mac`.
pub fn targeted(mac: [u8; 6], ip: Ipv4Addr, host_mac: [u8; 6], host_ip: Ipv4Addr) -> Vec<u8> {
    frame(
        host_mac,
        mac,
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(mac),
            source_protocol_addr: ip,
            target_hardware_addr: EthernetAddress(host_mac),
            target_protocol_addr: host_ip,
        },
    )
}

/// An unsolicited neighbour advertisement that `ip` is at `mac` (override set, solicited not),
/// to `dst` at `eth_dst`.
fn advert(mac: [u8; 6], ip: Ipv6Addr, eth_dst: [u8; 6], dst: Ipv6Addr) -> Vec<u8> {
    let icmp = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags: NdiscNeighborFlags::OVERRIDE,
        target_addr: ip,
        lladdr: Some(RawHardwareAddress::from(EthernetAddress(mac))),
    });
    let ip6 = Ipv6Repr {
        src_addr: ip,
        dst_addr: dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit: 255,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(mac),
        dst_addr: EthernetAddress(eth_dst),
        ethertype: EthernetProtocol::Ipv6,
    };
    let mut buf = vec![0u8; eth.buffer_len() + ip6.buffer_len() + icmp.buffer_len()];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut f);
    let mut p = Ipv6Packet::new_unchecked(f.payload_mut());
    ip6.emit(&mut p);
    icmp.emit(
        &ip,
        &dst,
        &mut Icmpv6Packet::new_unchecked(p.payload_mut()),
        &ChecksumCapabilities::default(),
    );
    buf
}

/// The unsolicited neighbour advertisement to all nodes announcing that `ip` is at `mac`.
pub fn advert_all(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    advert(mac, ip, [0x33, 0x33, 0, 0, 0, 1], IPV6_LINK_LOCAL_ALL_NODES)
}

/// The neighbour advertisement telling one host (`host_ip` at `host_mac`) that `ip` is at `mac`.
pub fn advert_to(mac: [u8; 6], ip: Ipv6Addr, host_mac: [u8; 6], host_ip: Ipv6Addr) -> Vec<u8> {
    advert(mac, ip, host_mac, host_ip)
}

/// A raw socket bound to one interface, in the network namespace of the thread that opened it.
pub struct ArpSocket {
    fd: std::os::fd::OwnedFd,
    ifindex: i32,
    iface: String,
}

impl ArpSocket {
    pub fn open(iface: &str) -> Result<ArpSocket, GarpError> {
        use std::os::fd::FromRawFd;
        let c =
            std::ffi::CString::new(iface).map_err(|_| GarpError::NoInterface(iface.to_owned()))?;
        // SAFETY: c is NUL-terminated.
        let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) } as i32;
        if ifindex == 0 {
            return Err(GarpError::NoInterface(iface.to_owned()));
        }
        let proto = (libc::ETH_P_ARP as u16).to_be() as i32;
        // SAFETY: plain socket(2); checked below.
        let fd =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        if fd < 0 {
            return Err(GarpError::Socket(std::io::Error::last_os_error()));
        }
        // SAFETY: fd was just created and is owned by nothing else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        Ok(ArpSocket {
            fd,
            ifindex,
            iface: iface.to_owned(),
        })
    }

    /// Sends one complete Ethernet frame.
    pub fn send(&self, frame: &[u8]) -> Result<(), GarpError> {
        send_frame(&self.fd, self.ifindex, frame).map_err(|err| GarpError::Send {
            iface: self.iface.clone(),
            err,
        })?;
        Ok(())
    }
}

/// Sends one complete Ethernet frame carrying ARP (its first 6 bytes are the destination MAC)
/// through the AF_PACKET socket `fd` on interface `ifindex`.
pub fn send_frame(fd: &std::os::fd::OwnedFd, ifindex: i32, frame: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if frame.len() < 6 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "an Ethernet frame is longer than its destination address",
        ));
    }
    // SAFETY: sockaddr_ll is plain old data.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    // The frame's own EtherType (ARP, or IPv6 for a neighbour advertisement).
    sll.sll_protocol = match frame.get(12..14) {
        Some(t) => u16::from_be_bytes([t[0], t[1]]).to_be(),
        None => (libc::ETH_P_ARP as u16).to_be(),
    };
    sll.sll_ifindex = ifindex;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: sends frame.len() bytes from a live slice to a valid sockaddr_ll.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gratuitous_frame_fields() {
        let mac = [2, 0, 0, 0, 0, 9];
        let ip = Ipv4Addr::new(10, 1, 1, 7);
        let f = gratuitous(mac, ip);
        assert_eq!(f.len(), 42);
        let eth = EthernetFrame::new_checked(&f[..]).expect("eth");
        assert_eq!(eth.dst_addr(), EthernetAddress::BROADCAST);
        assert_eq!(eth.src_addr(), EthernetAddress(mac));
        assert_eq!(eth.ethertype(), EthernetProtocol::Arp);
        let arp =
            ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).expect("arp")).expect("repr");
        assert_eq!(
            arp,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                source_hardware_addr: EthernetAddress(mac),
                source_protocol_addr: ip,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: ip,
            }
        );
    }

    #[test]
    fn neighbour_advertisements_parse_with_a_valid_checksum() {
        let mac = [2, 0, 0, 0, 0, 9];
        let ip: Ipv6Addr = "fd00::7".parse().unwrap();
        let host: Ipv6Addr = "fd00::1".parse().unwrap();
        for (f, eth_dst, dst) in [
            (
                advert_all(mac, ip),
                [0x33, 0x33, 0, 0, 0, 1],
                IPV6_LINK_LOCAL_ALL_NODES,
            ),
            (
                advert_to(mac, ip, [2, 0, 0, 0, 0, 1], host),
                [2, 0, 0, 0, 0, 1],
                host,
            ),
        ] {
            let eth = EthernetFrame::new_checked(&f[..]).expect("eth");
            assert_eq!(eth.dst_addr(), EthernetAddress(eth_dst));
            assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
            let p = Ipv6Packet::new_checked(eth.payload()).expect("ipv6");
            let r = Ipv6Repr::parse(&p).expect("ipv6 repr");
            assert_eq!((r.src_addr, r.dst_addr, r.hop_limit), (ip, dst, 255));
            let icmp = Icmpv6Packet::new_checked(p.payload()).expect("icmpv6");
            assert!(icmp.verify_checksum(&ip, &dst), "checksum");
            let repr = Icmpv6Repr::parse(&ip, &dst, &icmp, &ChecksumCapabilities::default())
                .expect("icmpv6 repr");
            assert_eq!(
                repr,
                Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
                    flags: NdiscNeighborFlags::OVERRIDE,
                    target_addr: ip,
                    lladdr: Some(RawHardwareAddress::from(EthernetAddress(mac))),
                })
            );
        }
    }

    #[test]
    fn targeted_frame_is_a_unicast_reply() {
        let f = targeted(
            [2, 0, 0, 0, 0, 9],
            Ipv4Addr::new(10, 1, 1, 7),
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(10, 1, 1, 1),
        );
        let eth = EthernetFrame::new_checked(&f[..]).expect("eth");
        assert_eq!(eth.dst_addr(), EthernetAddress([2, 0, 0, 0, 0, 1]));
        let arp =
            ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).expect("arp")).expect("repr");
        let ArpRepr::EthernetIpv4 {
            operation,
            target_protocol_addr,
            ..
        } = arp
        else {
            panic!("ipv4")
        };
        assert_eq!(operation, ArpOperation::Reply);
        assert_eq!(target_protocol_addr, Ipv4Addr::new(10, 1, 1, 1));
    }
}
