//! Plumbing DuraVIP addresses onto interfaces with rtnetlink (neli): add, remove, list. Every
//! operation is idempotent (adding a present address or removing an absent one succeeds), and the
//! node's own main addresses are refused, as the DuraVIP chapter requires.

use std::net::IpAddr;

use neli::consts::nl::NlmF;
use neli::consts::rtnl::{Ifa, IfaF, Nda, Nud, RtAddrFamily, RtScope, Rtm, Rtn};
use neli::consts::socket::NlFamily;
use neli::nl::{NlPayload, Nlmsghdr};
use neli::router::synchronous::NlRouter;
use neli::rtnl::{Ifaddrmsg, IfaddrmsgBuilder, Ndmsg, NdmsgBuilder, RtattrBuilder};
use neli::types::{Buffer, RtBuffer};
use neli::utils::Groups;

#[derive(Debug, thiserror::Error)]
pub enum PlumbError {
    #[error("no interface named '{0}'")]
    NoInterface(String),
    #[error("{0} is this node's own main address; DuraVIP never plumbs or unplumbs it")]
    Protected(IpAddr),
    #[error("prefix length {prefix} is invalid for {ip}")]
    Prefix { ip: IpAddr, prefix: u8 },
    #[error("netlink: {0}")]
    Netlink(String),
}

/// An rtnetlink connection in the network namespace of the thread that opened it.
pub struct Plumber {
    rtnl: NlRouter,
    protected: Vec<IpAddr>,
}

/// The index of `iface` in the calling thread's network namespace.
pub fn ifindex(iface: &str) -> Result<u32, PlumbError> {
    let c = std::ffi::CString::new(iface).map_err(|_| PlumbError::NoInterface(iface.to_owned()))?;
    // SAFETY: c is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(PlumbError::NoInterface(iface.to_owned()))
    } else {
        Ok(i)
    }
}

fn nl<E: std::fmt::Display>(e: E) -> PlumbError {
    PlumbError::Netlink(e.to_string())
}

impl Plumber {
    /// Opens rtnetlink; `protected` are addresses it must never touch (the node's main address).
    pub fn new(protected: Vec<IpAddr>) -> Result<Plumber, PlumbError> {
        // The router spawns a thread of its own that lives as long as the daemon. Capabilities are
        // per thread and inherited at creation, so the router is made on a short-lived thread
        // that first keeps only the run-time capabilities (CAP_NET_ADMIN suffices for netlink):
        // otherwise that thread would keep every capability the daemon started with.
        let made = std::thread::spawn(|| {
            if let Err(e) = crate::privileges::keep_only_runtime_caps() {
                tracing::debug!(error = %e, "netlink thread keeps the capabilities it has");
            }
            let (rtnl, _) =
                NlRouter::connect(NlFamily::Route, None, Groups::empty()).map_err(nl)?;
            rtnl.enable_ext_ack(true).map_err(nl)?;
            Ok::<_, PlumbError>(rtnl)
        })
        .join()
        .map_err(|_| PlumbError::Netlink("the netlink set-up thread panicked".into()))??;
        Ok(Plumber {
            rtnl: made,
            protected,
        })
    }

    fn check(&self, ip: IpAddr, prefix: u8) -> Result<(), PlumbError> {
        if self.protected.contains(&ip) {
            return Err(PlumbError::Protected(ip));
        }
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(PlumbError::Prefix { ip, prefix });
        }
        Ok(())
    }

    fn msg(ip: IpAddr, prefix: u8, index: u32) -> Result<Ifaddrmsg, PlumbError> {
        let (family, bytes) = match ip {
            IpAddr::V4(a) => (RtAddrFamily::Inet, a.octets().to_vec()),
            IpAddr::V6(a) => (RtAddrFamily::Inet6, a.octets().to_vec()),
        };
        let mut attrs = RtBuffer::new();
        for kind in [Ifa::Local, Ifa::Address] {
            attrs.push(
                RtattrBuilder::default()
                    .rta_type(kind)
                    .rta_payload(Buffer::from(bytes.clone()))
                    .build()
                    .map_err(nl)?,
            );
        }
        // An IPv6 DuraVIP is usable at once and never marked "dadfailed" because the previous
        // owner still had it for a moment: no duplicate address detection (as keepalived).
        let flags = match ip {
            IpAddr::V4(_) => IfaF::PERMANENT,
            IpAddr::V6(_) => IfaF::PERMANENT | IfaF::NODAD,
        };
        IfaddrmsgBuilder::default()
            .ifa_family(family)
            .ifa_prefixlen(prefix)
            .ifa_flags(flags)
            .ifa_scope(RtScope::Universe)
            .ifa_index(index)
            .rtattrs(attrs)
            .build()
            .map_err(nl)
    }

    /// Sends one request and waits for its acknowledgement; `ok_errno` also counts as success.
    fn request(
        &self,
        kind: Rtm,
        flags: NlmF,
        msg: Ifaddrmsg,
        ok_errno: i32,
    ) -> Result<(), PlumbError> {
        let recv = self
            .rtnl
            .send::<Rtm, Ifaddrmsg, Rtm, Ifaddrmsg>(
                kind,
                flags | NlmF::ACK,
                NlPayload::Payload(msg),
            )
            .map_err(nl)?;
        for r in recv {
            match r {
                Ok(_) => {}
                // The kernel's error packet carries the negated errno.
                Err(neli::err::RouterError::Nlmsgerr(e)) if e.error().abs() == ok_errno => {
                    return Ok(());
                }
                Err(neli::err::RouterError::Nlmsgerr(e)) => {
                    return Err(PlumbError::Netlink(
                        std::io::Error::from_raw_os_error(e.error().abs()).to_string(),
                    ));
                }
                Err(e) => return Err(nl(e)),
            }
        }
        Ok(())
    }

    /// Adds `ip/prefix` to `iface` (already present: nothing to do).
    pub fn add(&self, iface: &str, ip: IpAddr, prefix: u8) -> Result<(), PlumbError> {
        self.check(ip, prefix)?;
        let m = Self::msg(ip, prefix, ifindex(iface)?)?;
        self.request(Rtm::Newaddr, NlmF::CREATE | NlmF::EXCL, m, libc::EEXIST)
    }

    /// Removes `ip/prefix` from `iface` (already absent: nothing to do).
    pub fn remove(&self, iface: &str, ip: IpAddr, prefix: u8) -> Result<(), PlumbError> {
        self.check(ip, prefix)?;
        let m = Self::msg(ip, prefix, ifindex(iface)?)?;
        self.request(Rtm::Deladdr, NlmF::empty(), m, libc::EADDRNOTAVAIL)
    }

    /// The kernel's IPv6 neighbour table: (interface index, address, MAC) of every entry whose
    /// MAC is known (reachable, stale, delay, probe or permanent).
    pub fn neighbours6(&self) -> Result<Vec<(u32, std::net::Ipv6Addr, [u8; 6])>, PlumbError> {
        let req = NdmsgBuilder::default()
            .ndm_family(RtAddrFamily::Inet6)
            .ndm_index(0)
            .ndm_state(Nud::empty())
            .ndm_type(Rtn::Unspec)
            .build()
            .map_err(nl)?;
        let recv = self
            .rtnl
            .send::<Rtm, Ndmsg, Rtm, Ndmsg>(Rtm::Getneigh, NlmF::DUMP, NlPayload::Payload(req))
            .map_err(nl)?;
        let known = Nud::REACHABLE | Nud::STALE | Nud::DELAY | Nud::PROBE | Nud::PERMANENT;
        let mut out = Vec::new();
        for r in recv {
            let h: Nlmsghdr<Rtm, Ndmsg> = r.map_err(nl)?;
            let NlPayload::Payload(p) = h.nl_payload() else {
                continue;
            };
            if *p.ndm_family() != RtAddrFamily::Inet6 || !p.ndm_state().intersects(known) {
                continue;
            }
            let handle = p.rtattrs().get_attr_handle();
            let (Ok(dst), Ok(ll)) = (
                handle.get_attr_payload_as_with_len_borrowed::<&[u8]>(Nda::Dst),
                handle.get_attr_payload_as_with_len_borrowed::<&[u8]>(Nda::Lladdr),
            ) else {
                continue;
            };
            let (Ok(dst), Ok(mac)) = (<[u8; 16]>::try_from(dst), <[u8; 6]>::try_from(ll)) else {
                continue;
            };
            if mac == [0; 6] {
                continue;
            }
            let index = u32::try_from(*p.ndm_index()).unwrap_or(0);
            out.push((index, std::net::Ipv6Addr::from(dst), mac));
        }
        Ok(out)
    }

    /// The addresses on `iface`, with their prefix lengths.
    pub fn list(&self, iface: &str) -> Result<Vec<(IpAddr, u8)>, PlumbError> {
        let index = ifindex(iface)?;
        let req = IfaddrmsgBuilder::default()
            .ifa_family(RtAddrFamily::Unspecified)
            .ifa_prefixlen(0)
            .ifa_scope(RtScope::Universe)
            .ifa_index(0)
            .build()
            .map_err(nl)?;
        let recv = self
            .rtnl
            .send::<Rtm, Ifaddrmsg, Rtm, Ifaddrmsg>(
                Rtm::Getaddr,
                NlmF::DUMP,
                NlPayload::Payload(req),
            )
            .map_err(nl)?;
        let mut out = Vec::new();
        for r in recv {
            let h: Nlmsghdr<Rtm, Ifaddrmsg> = r.map_err(nl)?;
            let NlPayload::Payload(p) = h.nl_payload() else {
                continue;
            };
            if *p.ifa_index() != index {
                continue;
            }
            let handle = p.rtattrs().get_attr_handle();
            let Ok(bytes) = handle.get_attr_payload_as_with_len_borrowed::<&[u8]>(Ifa::Address)
            else {
                continue;
            };
            let ip = match bytes.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(bytes).map_err(nl)?),
                16 => IpAddr::from(<[u8; 16]>::try_from(bytes).map_err(nl)?),
                _ => continue,
            };
            out.push((ip, *p.ifa_prefixlen()));
        }
        out.sort();
        Ok(out)
    }
}
