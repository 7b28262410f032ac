//! Loads and drives the XDP fast path (`cohort-ebpf`) with aya 0.14: attach to the `Topology`
//! interface, keep the `vips` map in step with DuraVIP ownership, renew the lease that keeps the
//! program answering, read its counters and the kernel-stamped arrival times of peers.

pub mod maps;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use aya::Ebpf;
use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::programs::{Xdp, XdpMode};

use maps::{In6, Lease, Peer, Vip, XdpConfig};

/// The `xdp` setting: how (and whether) to attach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpSetting {
    /// Native on real NICs, generic on veth (whose native XDP_TX frames are only received when
    /// the peer runs an XDP program too); native failing falls back to generic.
    #[default]
    Auto,
    Native,
    Generic,
    /// Do not attach; the kernel's ARP answers.
    Off,
}

/// Where the program ended up running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Generic,
}

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("XDP is off by configuration")]
    Off,
    #[error("cannot load the XDP object: {0}")]
    Load(String),
    #[error("cannot attach XDP to {iface}: {why}")]
    Attach { iface: String, why: String },
    #[error("cannot read the MAC address of {iface}: {why}")]
    Mac { iface: String, why: String },
    #[error("XDP map {map}: {why}")]
    Map { map: &'static str, why: String },
}

/// Counters of the fast path, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct XdpStats {
    pub arp_replied: u64,
    pub arp_lease_expired: u64,
    pub arp_passed: u64,
    pub transport_stamped: u64,
    /// IPv4 and IPv6 packets to an owned address dropped while the lease had lapsed.
    pub ingress_fenced: u64,
    /// Neighbour solicitations for an owned IPv6 address answered.
    pub ndp_replied: u64,
    /// Neighbour solicitations dropped because the lease lapsed.
    pub ndp_lease_expired: u64,
}

/// The attached program and its maps. Dropping it detaches the program (do so in the network
/// namespace it was attached in).
pub struct FastPath {
    ebpf: Ebpf,
    iface: String,
    mac: [u8; 6],
    mode: AttachedMode,
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// An `ifreq` naming `iface`, for the ioctls below.
fn ifreq(iface: &str) -> Result<libc::ifreq, String> {
    let bytes = iface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return Err(format!("bad interface name '{iface}'"));
    }
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(r)
}

/// Runs `ioctl(req)` on a throw-away datagram socket: the socket belongs to the calling thread's
/// network namespace, unlike /sys, which shows the namespace of whoever mounted it.
fn sock_ioctl(req: libc::c_ulong, r: &mut libc::ifreq) -> Result<(), String> {
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    // SAFETY: r is a valid ifreq for this request; fd is ours and closed right after.
    let rc = unsafe { libc::ioctl(fd, req, r as *mut libc::ifreq) };
    let err = std::io::Error::last_os_error();
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    if rc < 0 { Err(err.to_string()) } else { Ok(()) }
}

/// The MAC address of `iface` in the calling thread's network namespace.
pub fn interface_mac(iface: &str) -> Result<[u8; 6], XdpError> {
    let err = |why: String| XdpError::Mac {
        iface: iface.to_owned(),
        why,
    };
    let mut r = ifreq(iface).map_err(err)?;
    sock_ioctl(libc::SIOCGIFHWADDR, &mut r).map_err(err)?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let sa = unsafe { r.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = *b as u8;
    }
    Ok(mac)
}

/// The kernel driver of `iface` (ethtool's GDRVINFO), e.g. `veth`.
pub fn interface_driver(iface: &str) -> Option<String> {
    const ETHTOOL_GDRVINFO: u32 = 3;
    // struct ethtool_drvinfo: cmd, then driver[32], ... 196 bytes in all.
    let mut info = [0u8; 196];
    info[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    let mut r = ifreq(iface).ok()?;
    r.ifr_ifru.ifru_data = info.as_mut_ptr().cast();
    sock_ioctl(libc::SIOCETHTOOL as libc::c_ulong, &mut r).ok()?;
    let driver = &info[4..36];
    let end = driver.iter().position(|&b| b == 0).unwrap_or(32);
    Some(String::from_utf8_lossy(&driver[..end]).into_owned())
}

/// Whether `iface` is a veth (native XDP_TX on veth needs a program on the peer).
fn is_veth(iface: &str) -> bool {
    interface_driver(iface).as_deref() == Some("veth")
}

/// Attaches the pass-through program to `iface` in native mode, for the far end of a veth whose
/// near end runs the fast path natively (only then are its XDP_TX frames received). The program
/// stays attached while the returned handle lives.
pub fn attach_pass_through(iface: &str) -> Result<Ebpf, XdpError> {
    let mut ebpf = Ebpf::load(cohort_ebpf::object()).map_err(|e| XdpError::Load(e.to_string()))?;
    let prog: &mut Xdp = ebpf
        .program_mut(cohort_ebpf::PASS_PROGRAM)
        .ok_or_else(|| XdpError::Load(format!("no program {}", cohort_ebpf::PASS_PROGRAM)))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| XdpError::Load(e.to_string()))?;
    prog.load().map_err(|e| XdpError::Load(e.to_string()))?;
    prog.attach(iface, XdpMode::Driver)
        .map_err(|e| XdpError::Attach {
            iface: iface.to_owned(),
            why: e.to_string(),
        })?;
    Ok(ebpf)
}

/// A map removal where a key already absent is not an error.
fn absent_is_fine(r: Result<(), aya::maps::MapError>, map: &'static str) -> Result<(), XdpError> {
    match r {
        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        Err(e) => Err(XdpError::Map {
            map,
            why: e.to_string(),
        }),
    }
}

impl FastPath {
    /// Loads the program and attaches it to `iface` as `setting` asks.
    pub fn attach(iface: &str, setting: XdpSetting) -> Result<FastPath, XdpError> {
        let modes: &[AttachedMode] = match setting {
            XdpSetting::Off => return Err(XdpError::Off),
            XdpSetting::Native => &[AttachedMode::Native],
            XdpSetting::Generic => &[AttachedMode::Generic],
            XdpSetting::Auto if is_veth(iface) => &[AttachedMode::Generic],
            XdpSetting::Auto => &[AttachedMode::Native, AttachedMode::Generic],
        };
        let mac = interface_mac(iface)?;
        let mut last = String::new();
        for &mode in modes {
            let mut ebpf =
                Ebpf::load(cohort_ebpf::object()).map_err(|e| XdpError::Load(e.to_string()))?;
            let prog: &mut Xdp = ebpf
                .program_mut(cohort_ebpf::PROGRAM)
                .ok_or_else(|| XdpError::Load(format!("no program {}", cohort_ebpf::PROGRAM)))?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| XdpError::Load(e.to_string()))?;
            prog.load().map_err(|e| XdpError::Load(e.to_string()))?;
            let xmode = match mode {
                AttachedMode::Native => XdpMode::Driver,
                AttachedMode::Generic => XdpMode::Skb,
            };
            match prog.attach(iface, xmode) {
                Ok(_) => {
                    let mut fp = FastPath {
                        ebpf,
                        iface: iface.to_owned(),
                        mac,
                        mode,
                    };
                    fp.expire_lease()?;
                    return Ok(fp);
                }
                Err(e) => last = format!("{mode:?}: {e}"),
            }
        }
        Err(XdpError::Attach {
            iface: iface.to_owned(),
            why: last,
        })
    }

    pub fn mode(&self) -> AttachedMode {
        self.mode
    }

    pub fn interface(&self) -> &str {
        &self.iface
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn vips(&mut self) -> Result<HashMap<&mut MapData, u32, Vip>, XdpError> {
        let m = self
            .ebpf
            .map_mut(cohort_ebpf::maps::VIPS)
            .ok_or(XdpError::Map {
                map: "vips",
                why: "missing".into(),
            })?;
        HashMap::try_from(m).map_err(|e| XdpError::Map {
            map: "vips",
            why: e.to_string(),
        })
    }

    /// Starts answering ARP for `ip` with this interface's MAC (while the lease is valid).
    pub fn insert_vip(&mut self, ip: Ipv4Addr) -> Result<(), XdpError> {
        let key = u32::from_ne_bytes(ip.octets());
        let v = Vip {
            mac: self.mac,
            flags: 0,
        };
        self.vips()?.insert(key, v, 0).map_err(|e| XdpError::Map {
            map: "vips",
            why: e.to_string(),
        })
    }

    /// Stops answering ARP for `ip`. Removing an address that is not there is not an error.
    pub fn remove_vip(&mut self, ip: Ipv4Addr) -> Result<(), XdpError> {
        let key = u32::from_ne_bytes(ip.octets());
        absent_is_fine(self.vips()?.remove(&key), "vips")
    }

    fn vips6(&mut self) -> Result<HashMap<&mut MapData, In6, Vip>, XdpError> {
        let m = self
            .ebpf
            .map_mut(cohort_ebpf::maps::VIPS6)
            .ok_or(XdpError::Map {
                map: "vips6",
                why: "missing".into(),
            })?;
        HashMap::try_from(m).map_err(|e| XdpError::Map {
            map: "vips6",
            why: e.to_string(),
        })
    }

    /// Starts answering neighbour solicitations for `ip` with this interface's MAC (while the
    /// lease is valid).
    pub fn insert_vip6(&mut self, ip: Ipv6Addr) -> Result<(), XdpError> {
        let v = Vip {
            mac: self.mac,
            flags: 0,
        };
        let key = In6 { addr: ip.octets() };
        self.vips6()?.insert(key, v, 0).map_err(|e| XdpError::Map {
            map: "vips6",
            why: e.to_string(),
        })
    }

    /// Stops answering for `ip`. Removing an address that is not there is not an error.
    pub fn remove_vip6(&mut self, ip: Ipv6Addr) -> Result<(), XdpError> {
        let key = In6 { addr: ip.octets() };
        absent_is_fine(self.vips6()?.remove(&key), "vips6")
    }

    /// The IPv6 addresses the program currently answers for.
    pub fn vip6_list(&mut self) -> Result<Vec<Ipv6Addr>, XdpError> {
        let m = self.vips6()?;
        let mut out: Vec<Ipv6Addr> = m
            .keys()
            .filter_map(Result::ok)
            .map(|k| Ipv6Addr::from(k.addr))
            .collect();
        out.sort();
        Ok(out)
    }

    /// The addresses the program currently answers for.
    pub fn vip_list(&mut self) -> Result<Vec<Ipv4Addr>, XdpError> {
        let m = self.vips()?;
        let mut out: Vec<Ipv4Addr> = m
            .keys()
            .filter_map(Result::ok)
            .map(|k| Ipv4Addr::from(k.to_ne_bytes()))
            .collect();
        out.sort();
        Ok(out)
    }

    fn set_lease(&mut self, expires_ns: u64) -> Result<(), XdpError> {
        let m = self
            .ebpf
            .map_mut(cohort_ebpf::maps::LEASE)
            .ok_or(XdpError::Map {
                map: "lease",
                why: "missing".into(),
            })?;
        let mut a: Array<&mut MapData, Lease> = Array::try_from(m).map_err(|e| XdpError::Map {
            map: "lease",
            why: e.to_string(),
        })?;
        a.set(0, Lease { expires_ns }, 0)
            .map_err(|e| XdpError::Map {
                map: "lease",
                why: e.to_string(),
            })
    }

    /// Keeps the program answering for `d` more from now.
    pub fn renew_lease(&mut self, d: Duration) -> Result<(), XdpError> {
        self.set_lease(monotonic_ns().saturating_add(d.as_nanos() as u64))
    }

    /// Stops every answer now (the kernel's ARP takes over).
    pub fn expire_lease(&mut self) -> Result<(), XdpError> {
        self.set_lease(0)
    }

    /// Stamps arrivals of UDP packets to `port` (0 stops stamping).
    pub fn set_transport_port(&mut self, port: u16) -> Result<(), XdpError> {
        let m = self
            .ebpf
            .map_mut(cohort_ebpf::maps::CONFIG)
            .ok_or(XdpError::Map {
                map: "config",
                why: "missing".into(),
            })?;
        let mut a: Array<&mut MapData, XdpConfig> =
            Array::try_from(m).map_err(|e| XdpError::Map {
                map: "config",
                why: e.to_string(),
            })?;
        a.set(
            0,
            XdpConfig {
                transport_port: port.to_be(),
                ..XdpConfig::default()
            },
            0,
        )
        .map_err(|e| XdpError::Map {
            map: "config",
            why: e.to_string(),
        })
    }

    /// Kernel arrival time (CLOCK_MONOTONIC ns) and packet count of every stamped peer.
    pub fn peer_arrivals(&self) -> Result<Vec<(Ipv4Addr, Peer)>, XdpError> {
        let m = self
            .ebpf
            .map(cohort_ebpf::maps::PEERS)
            .ok_or(XdpError::Map {
                map: "peers",
                why: "missing".into(),
            })?;
        let h: HashMap<&MapData, u32, Peer> = HashMap::try_from(m).map_err(|e| XdpError::Map {
            map: "peers",
            why: e.to_string(),
        })?;
        Ok(h.iter()
            .filter_map(Result::ok)
            .map(|(k, v)| (Ipv4Addr::from(k.to_ne_bytes()), v))
            .collect())
    }

    pub fn stats(&self) -> Result<XdpStats, XdpError> {
        let m = self
            .ebpf
            .map(cohort_ebpf::maps::STATS)
            .ok_or(XdpError::Map {
                map: "stats",
                why: "missing".into(),
            })?;
        let a: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(m).map_err(|e| XdpError::Map {
                map: "stats",
                why: e.to_string(),
            })?;
        let sum = |i: u32| a.get(&i, 0).map(|v| v.iter().sum::<u64>()).unwrap_or(0);
        Ok(XdpStats {
            arp_replied: sum(maps::STAT_ARP_REPLIED),
            arp_lease_expired: sum(maps::STAT_ARP_LEASE_EXPIRED),
            arp_passed: sum(maps::STAT_ARP_PASSED),
            transport_stamped: sum(maps::STAT_TRANSPORT_STAMPED),
            ingress_fenced: sum(maps::STAT_INGRESS_FENCED),
            ndp_replied: sum(maps::STAT_NDP_REPLIED),
            ndp_lease_expired: sum(maps::STAT_NDP_LEASE_EXPIRED),
        })
    }
}
