//! The DuraVIP data plane: makes this node's interfaces match the addresses it owns.
//!
//! Acquire: plumb the address (netlink) on its `Topology` interface with `cidrmask`, insert it in
//! the XDP map, then announce it (a burst of `garp_count` gratuitous ARPs `garp_interval` apart, or
//! with `arp_all_hosts = false` ARP replies to each known host). Release: remove it from the XDP
//! map first, then unplumb. Every `if_check_interval` the interfaces are compared with the owned
//! set: an owned address found missing is plumbed again once it has been missing for
//! `if_down_limit`; a plumbed address not owned is removed. Start-up removes every configured
//! DuraVIP address still on an interface (left over from an earlier run). Nothing here blocks: the
//! event loop calls [`DataPlane::tick`] at [`DataPlane::next_deadline`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use cohort_engine::config::{self, Config, ListenAddr};

use crate::garp::{self, ArpSocket};
use crate::plumb::{PlumbError, Plumber};
use crate::xdp::{FastPath, XdpSetting, XdpStats};

/// Where one DuraVIP address goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub ip: IpAddr,
    pub iface: String,
    pub prefix: u8,
    /// The `Topology` network block it belongs to: targeted ARP goes to the hosts in it.
    pub network: ipnet::IpNet,
}

/// Every DuraVIP address this node is configured for (bindings and listeners with
/// `Enable_Duravip`, and `Duravip_Follow` listeners), placed by the `Topology` that contains it.
pub fn placements(cfg: &Config) -> Vec<Placement> {
    let mut ips: BTreeSet<IpAddr> = cfg
        .bindings
        .iter()
        .filter(|b| b.enable_duravip)
        .filter_map(|b| b.bind_address)
        .collect();
    for l in &cfg.esmtp_listeners {
        if let ListenAddr::Inet { host: Some(h), .. } = l.addr
            && (l.enable_duravip || l.duravip_follow.is_some())
        {
            ips.insert(h);
        }
    }
    ips.into_iter()
        .filter_map(|ip| {
            cfg.cluster
                .topology
                .iter()
                .find(|t| t.network.contains(&ip))
                .map(|t| Placement {
                    ip,
                    iface: t.interface.clone(),
                    prefix: t.cidrmask,
                    network: t.network,
                })
        })
        .collect()
}

/// The data plane's settings, from the `cluster` scope.
#[derive(Clone, Debug)]
pub struct Settings {
    pub garp_count: u32,
    pub garp_interval: Duration,
    pub garp_refresh: Option<Duration>,
    pub arp_all_hosts: bool,
    pub xdp: XdpSetting,
    pub xdp_lease: Duration,
    pub if_check_interval: Duration,
    pub if_down_limit: Duration,
    pub notify: Option<std::path::PathBuf>,
    pub notify_timeout: Duration,
}

impl Settings {
    pub fn from_config(c: &config::Cluster) -> Settings {
        Settings {
            garp_count: c.garp_count,
            garp_interval: c.garp_interval,
            garp_refresh: (!c.garp_refresh.is_zero()).then_some(c.garp_refresh),
            arp_all_hosts: c.arp_all_hosts,
            xdp: match c.xdp {
                config::XdpMode::Auto => XdpSetting::Auto,
                config::XdpMode::Native => XdpSetting::Native,
                config::XdpMode::Generic => XdpSetting::Generic,
                config::XdpMode::Off => XdpSetting::Off,
            },
            xdp_lease: c.xdp_lease,
            if_check_interval: c.if_check_interval,
            if_down_limit: c.if_down_limit,
            notify: c.duravip_notify.clone(),
            notify_timeout: c.duravip_notify_timeout,
        }
    }
}

/// What the data plane has done, for the console.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DataPlaneStats {
    pub acquired: u64,
    pub released: u64,
    pub replumbed: u64,
    pub stale_removed: u64,
    pub arp_frames_sent: u64,
    pub errors: u64,
    /// Interfaces with the XDP fast path attached.
    pub xdp_attached: u64,
    /// Times the XDP lease lapsed (the loop stalled past `xdp_lease`).
    pub lease_lapses: u64,
    /// `duravip_notify` hooks.
    pub hooks: crate::notify_hook::HookStats,
    /// Why XDP is not in use on an interface, if it is not.
    pub xdp_unavailable: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error(transparent)]
    Plumb(#[from] PlumbError),
}

/// A pending announcement: `remaining` more frames for `ip`, the next at `at`.
struct Announce {
    ip: IpAddr,
    at: Instant,
    remaining: u32,
}

/// The name of interface `index`, if there is one.
fn interface_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    let c = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(c.to_string_lossy().into_owned())
}

pub struct DataPlane {
    plumber: Plumber,
    settings: Settings,
    placements: BTreeMap<IpAddr, Placement>,
    owned: BTreeSet<IpAddr>,
    xdp: BTreeMap<String, FastPath>,
    arp: BTreeMap<String, ArpSocket>,
    /// Hosts of the shared ARP cache, for targeted announcements.
    hosts: Vec<(IpAddr, [u8; 6])>,
    announces: Vec<Announce>,
    missing_since: BTreeMap<IpAddr, Instant>,
    next_check: Instant,
    next_refresh: Option<Instant>,
    next_lease: Instant,
    /// When the XDP lease was last renewed.
    last_renewed: Instant,
    /// The lease lapsed (the loop stalled past `xdp_lease`): it stays lapsed, and the XDP
    /// program keeps dropping ARP and IPv4 ingress for the addresses, until [`DataPlane::rearm`].
    lapsed: Option<Instant>,
    /// Addresses to plumb, taken [`ACQUIRES_PER_TICK`] at a time so that a node given
    /// thousands of addresses at once (a fail-over at 10,240 DuraVIPs) keeps its event loop
    /// turning: heartbeats and the failure detector run between batches, and peers do not
    /// suspect it. Only acquisitions wait: a release is done at once, because the node tells
    /// the cluster it released (RELEASED) right after.
    to_acquire: std::collections::VecDeque<IpAddr>,
    /// `duravip_notify` programs run on acquire and release.
    pub hooks: crate::notify_hook::Hooks,
    pub stats: DataPlaneStats,
}

/// Addresses plumbed per [`DataPlane::tick`] when many are waiting.
pub const ACQUIRES_PER_TICK: usize = 128;

/// The interface that holds `addr` (the transport's address), if any but loopback: where the XDP
/// program stamps the peers' arrivals even on a node without DuraVIPs.
pub fn interface_of(addr: IpAddr) -> Option<String> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for a in addrs {
        let Some(sa) = a.address else { continue };
        let ip = if let Some(v4) = sa.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = sa.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if ip == addr && !ip.is_loopback() && a.interface_name != "lo" {
            return Some(a.interface_name);
        }
    }
    None
}

impl DataPlane {
    /// Opens netlink, attaches XDP to every Topology interface that has DuraVIPs (logging once
    /// where it cannot), and removes stale DuraVIP addresses. `protected`: the node's own
    /// addresses, never touched; the first is the transport's, and XDP is attached to its
    /// interface too (arrival stamps for the failure detector) unless `xdp = off`.
    pub fn start(
        cfg: &Config,
        protected: Vec<IpAddr>,
        now: Instant,
    ) -> Result<DataPlane, DataPlaneError> {
        let transport_iface = protected.first().and_then(|a| interface_of(*a));
        let settings = Settings::from_config(&cfg.cluster);
        let plumber = Plumber::new(protected)?;
        let placements: BTreeMap<IpAddr, Placement> =
            placements(cfg).into_iter().map(|p| (p.ip, p)).collect();
        let ifaces: BTreeSet<String> = placements.values().map(|p| p.iface.clone()).collect();
        let mut dp = DataPlane {
            plumber,
            next_check: now + settings.if_check_interval,
            next_refresh: settings.garp_refresh.map(|r| now + r),
            next_lease: now,
            last_renewed: now,
            lapsed: None,
            to_acquire: std::collections::VecDeque::new(),
            hooks: crate::notify_hook::Hooks::new(
                settings.notify.clone(),
                settings.notify_timeout,
                String::new(),
            ),
            settings,
            placements,
            owned: BTreeSet::new(),
            xdp: BTreeMap::new(),
            arp: BTreeMap::new(),
            hosts: Vec::new(),
            announces: Vec::new(),
            missing_since: BTreeMap::new(),
            stats: DataPlaneStats::default(),
        };
        for iface in &ifaces {
            dp.attach_interface(iface, cfg.msgc_server.port)?;
        }
        if let Some(t) = transport_iface
            && !ifaces.contains(&t)
            && cfg.cluster.xdp != config::XdpMode::Off
        {
            dp.attach_interface(&t, cfg.msgc_server.port)?;
        }
        dp.renew_leases(now);
        Ok(dp)
    }

    /// Takes interface `iface` on: the XDP fast path (logged when unavailable), an ARP socket,
    /// and a clean slate (configured DuraVIPs found plumbed there are removed, as Momentum does
    /// at start-up).
    fn attach_interface(&mut self, iface: &str, port: u16) -> Result<(), DataPlaneError> {
        match FastPath::attach(iface, self.settings.xdp) {
            Ok(mut fp) => {
                // Stamp arrivals of the transport's datagrams (kernel time per peer).
                if let Err(e) = fp.set_transport_port(port) {
                    tracing::warn!(%iface, error = %e, "cannot configure XDP arrival stamping");
                }
                tracing::info!(%iface, mode = ?fp.mode(), "XDP fast path attached");
                self.xdp.insert(iface.to_owned(), fp);
                self.stats.xdp_attached += 1;
            }
            Err(e) => {
                tracing::warn!(%iface, error = %e, "XDP unavailable; the kernel answers ARP");
                self.stats
                    .xdp_unavailable
                    .insert(iface.to_owned(), e.to_string());
            }
        }
        match ArpSocket::open(iface) {
            Ok(s) => {
                self.arp.insert(iface.to_owned(), s);
            }
            Err(e) => tracing::warn!(%iface, error = %e, "cannot send ARP announcements"),
        }
        let present: BTreeSet<IpAddr> = self
            .plumber
            .list(iface)?
            .into_iter()
            .map(|(ip, _)| ip)
            .collect();
        let stale: Vec<Placement> = self
            .placements
            .values()
            .filter(|p| p.iface == iface && present.contains(&p.ip) && !self.owned.contains(&p.ip))
            .cloned()
            .collect();
        for p in stale {
            self.plumber.remove(&p.iface, p.ip, p.prefix)?;
            self.stats.stale_removed += 1;
            tracing::info!(ip = %p.ip, iface = %p.iface, "removed stale DuraVIP address");
        }
        Ok(())
    }

    /// A configuration reload: new timing and announcement settings (effective now), new
    /// placements (`Topology`, bindings), new interfaces taken on. An owned address keeps the
    /// placement it was plumbed with until the DuraVIP machine releases it.
    pub fn reconfigure(&mut self, cfg: &Config, now: Instant) -> Result<(), DataPlaneError> {
        self.settings = Settings::from_config(&cfg.cluster);
        self.hooks
            .reconfigure(self.settings.notify.clone(), self.settings.notify_timeout);
        self.next_check = self.next_check.min(now + self.settings.if_check_interval);
        self.next_refresh = self.settings.garp_refresh.map(|r| now + r);
        self.next_lease = now;
        let mut placements: BTreeMap<IpAddr, Placement> =
            placements(cfg).into_iter().map(|p| (p.ip, p)).collect();
        for ip in &self.owned {
            if !placements.contains_key(ip)
                && let Some(p) = self.placements.get(ip)
            {
                placements.insert(*ip, p.clone());
            }
        }
        let old: BTreeSet<String> = self.placements.values().map(|p| p.iface.clone()).collect();
        self.placements = placements;
        let new: BTreeSet<String> = self
            .placements
            .values()
            .map(|p| p.iface.clone())
            .filter(|i| !old.contains(i))
            .collect();
        for iface in new {
            self.attach_interface(&iface, cfg.msgc_server.port)?;
        }
        if self.lapsed.is_none() {
            self.renew_leases(now);
        }
        Ok(())
    }

    /// The addresses currently owned.
    pub fn owned(&self) -> &BTreeSet<IpAddr> {
        &self.owned
    }

    /// Every address the data plane manages, with its placement.
    pub fn placements(&self) -> impl Iterator<Item = &Placement> {
        self.placements.values()
    }

    /// The hosts targeted announcements go to (`arp_all_hosts = false`): the shared ARP cache.
    /// Each announcement goes to those in the address's `Topology` network.
    pub fn set_hosts(&mut self, hosts: Vec<(IpAddr, [u8; 6])>) {
        self.hosts = hosts;
    }

    /// Makes the owned set `owned` (addresses without a placement are ignored with a warning).
    /// Releases at once; acquisitions are queued and done by [`DataPlane::tick`],
    /// [`ACQUIRES_PER_TICK`] at a time (the first batch now).
    pub fn set_owned(&mut self, owned: &BTreeSet<IpAddr>, now: Instant) {
        let release: Vec<IpAddr> = self.owned.difference(owned).copied().collect();
        for ip in release {
            self.release(ip);
        }
        self.to_acquire.retain(|ip| owned.contains(ip));
        let queued: BTreeSet<IpAddr> = self.to_acquire.iter().copied().collect();
        self.to_acquire.extend(
            owned
                .iter()
                .filter(|ip| !self.owned.contains(*ip) && !queued.contains(*ip))
                .copied(),
        );
        self.acquire_some(now);
    }

    /// Plumbs up to [`ACQUIRES_PER_TICK`] queued addresses.
    fn acquire_some(&mut self, now: Instant) {
        for _ in 0..ACQUIRES_PER_TICK {
            let Some(ip) = self.to_acquire.pop_front() else {
                break;
            };
            self.acquire(ip, now);
        }
    }

    /// Addresses waiting to be plumbed.
    pub fn acquiring(&self) -> usize {
        self.to_acquire.len()
    }

    /// Whether the XDP lease lapsed and has not been re-armed.
    pub fn lease_lapsed(&self) -> bool {
        self.lapsed.is_some()
    }

    /// Re-arms a lapsed lease: the owned set is what an election confirmed.
    pub fn rearm(&mut self, now: Instant) {
        if let Some(at) = self.lapsed.take() {
            tracing::info!(
                fenced_ms = now.duration_since(at).as_millis() as u64,
                owned = self.owned.len(),
                "XDP lease re-armed: the election confirmed what this node holds"
            );
            self.renew_leases(now);
        }
    }

    /// Releases every owned address (graceful shutdown).
    pub fn release_all(&mut self) {
        self.to_acquire.clear();
        let all: Vec<IpAddr> = self.owned.iter().copied().collect();
        for ip in all {
            self.release(ip);
        }
    }

    fn acquire(&mut self, ip: IpAddr, now: Instant) {
        let Some(p) = self.placements.get(&ip).cloned() else {
            tracing::warn!(%ip, "asked to own an address with no Topology placement; ignored");
            return;
        };
        if let Err(e) = self.plumber.add(&p.iface, p.ip, p.prefix) {
            tracing::error!(%ip, iface = %p.iface, error = %e, "cannot plumb DuraVIP");
            self.stats.errors += 1;
            return;
        }
        self.owned.insert(ip);
        self.missing_since.remove(&ip);
        self.stats.acquired += 1;
        if let Some(fp) = self.xdp.get_mut(&p.iface) {
            let added = match ip {
                IpAddr::V4(v4) => fp.insert_vip(v4),
                IpAddr::V6(v6) => fp.insert_vip6(v6),
            };
            if let Err(e) = added {
                tracing::warn!(%ip, error = %e, "cannot add the address to the XDP map");
                self.stats.errors += 1;
            }
        }
        if self.settings.garp_count > 0 {
            self.announces.push(Announce {
                ip,
                at: now,
                remaining: self.settings.garp_count,
            });
        }
        tracing::info!(%ip, iface = %p.iface, "DuraVIP acquired");
        self.hooks
            .fire(crate::notify_hook::Event::Acquire, ip, &p.iface, now);
    }

    fn release(&mut self, ip: IpAddr) {
        let Some(p) = self.placements.get(&ip).cloned() else {
            return;
        };
        if let Some(fp) = self.xdp.get_mut(&p.iface) {
            let removed = match ip {
                IpAddr::V4(v4) => fp.remove_vip(v4),
                IpAddr::V6(v6) => fp.remove_vip6(v6),
            };
            if let Err(e) = removed {
                tracing::warn!(%ip, error = %e, "cannot remove the address from the XDP map");
                self.stats.errors += 1;
            }
        }
        self.announces.retain(|a| a.ip != ip);
        if let Err(e) = self.plumber.remove(&p.iface, p.ip, p.prefix) {
            tracing::error!(%ip, iface = %p.iface, error = %e, "cannot unplumb DuraVIP");
            self.stats.errors += 1;
        }
        self.owned.remove(&ip);
        self.missing_since.remove(&ip);
        self.stats.released += 1;
        tracing::info!(%ip, iface = %p.iface, "DuraVIP released");
        self.hooks.fire(
            crate::notify_hook::Event::Release,
            ip,
            &p.iface,
            Instant::now(),
        );
    }

    fn announce_once(&mut self, ip: IpAddr) {
        let Some(p) = self.placements.get(&ip) else {
            return;
        };
        let Some(sock) = self.arp.get(&p.iface) else {
            return;
        };
        let mac = match crate::xdp::interface_mac(&p.iface) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot announce");
                return;
            }
        };
        // A gratuitous ARP (IPv4) or an unsolicited neighbour advertisement (IPv6), to all or to
        // each host of the shared cache in the address's network.
        let frames: Vec<Vec<u8>> = if self.settings.arp_all_hosts {
            vec![match ip {
                IpAddr::V4(v4) => garp::gratuitous(mac, v4),
                IpAddr::V6(v6) => garp::advert_all(mac, v6),
            }]
        } else {
            self.hosts
                .iter()
                .filter(|(hip, _)| p.network.contains(hip) && *hip != ip)
                .filter_map(|(hip, hmac)| match (ip, hip) {
                    (IpAddr::V4(v4), IpAddr::V4(h)) => Some(garp::targeted(mac, v4, *hmac, *h)),
                    (IpAddr::V6(v6), IpAddr::V6(h)) => Some(garp::advert_to(mac, v6, *hmac, *h)),
                    _ => None,
                })
                .collect()
        };
        for f in frames {
            match sock.send(&f) {
                Ok(()) => self.stats.arp_frames_sent += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "ARP announcement failed");
                    self.stats.errors += 1;
                }
            }
        }
    }

    fn renew_leases(&mut self, now: Instant) {
        self.last_renewed = now;
        for fp in self.xdp.values_mut() {
            if let Err(e) = fp.renew_lease(self.settings.xdp_lease) {
                tracing::warn!(error = %e, "cannot renew the XDP lease");
            }
        }
        // Renew three times per lease, so one late turn of the loop never lets it lapse.
        self.next_lease = now + self.settings.xdp_lease / 3;
    }

    /// Compares the interfaces with the owned set (the `if_check_interval` cycle).
    pub fn maintain(&mut self, now: Instant) {
        let mut by_iface: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
        for p in self.placements.values() {
            if !by_iface.contains_key(&p.iface) {
                let present = self
                    .plumber
                    .list(&p.iface)
                    .map(|l| l.into_iter().map(|(ip, _)| ip).collect())
                    .unwrap_or_default();
                by_iface.insert(p.iface.clone(), present);
            }
        }
        let placements: Vec<Placement> = self.placements.values().cloned().collect();
        for p in placements {
            let present = by_iface.get(&p.iface).is_some_and(|s| s.contains(&p.ip));
            let owned = self.owned.contains(&p.ip);
            if owned && !present {
                let since = *self.missing_since.entry(p.ip).or_insert(now);
                if now.duration_since(since) >= self.settings.if_down_limit {
                    tracing::warn!(ip = %p.ip, iface = %p.iface, "owned DuraVIP was missing; plumbing it again");
                    self.owned.remove(&p.ip);
                    self.acquire(p.ip, now);
                    self.stats.replumbed += 1;
                }
            } else {
                self.missing_since.remove(&p.ip);
                if !owned && present {
                    tracing::warn!(ip = %p.ip, iface = %p.iface, "unowned DuraVIP found plumbed; removing it");
                    if let Err(e) = self.plumber.remove(&p.iface, p.ip, p.prefix) {
                        tracing::error!(error = %e, "cannot unplumb");
                        self.stats.errors += 1;
                    }
                }
            }
        }
    }

    /// Does what is due at `now`: lease renewal, announcement frames, refresh, maintenance.
    pub fn tick(&mut self, now: Instant) {
        self.acquire_some(now);
        self.hooks.poll(now);
        if now >= self.next_lease {
            if self.lapsed.is_none()
                && !self.xdp.is_empty()
                && now.duration_since(self.last_renewed) >= self.settings.xdp_lease
            {
                tracing::warn!(
                    stalled_ms = now.duration_since(self.last_renewed).as_millis() as u64,
                    "the XDP lease lapsed (the event loop stalled): the addresses stay fenced until a view confirms them"
                );
                self.lapsed = Some(now);
                self.stats.lease_lapses += 1;
            }
            if self.lapsed.is_none() {
                self.renew_leases(now);
            } else {
                self.next_lease = now + self.settings.xdp_lease / 3;
            }
        }
        let due: Vec<IpAddr> = self
            .announces
            .iter()
            .filter(|a| a.at <= now)
            .map(|a| a.ip)
            .collect();
        for ip in due {
            self.announce_once(ip);
        }
        let interval = self.settings.garp_interval;
        for a in self.announces.iter_mut().filter(|a| a.at <= now) {
            a.remaining -= 1;
            a.at = now + interval;
        }
        self.announces.retain(|a| a.remaining > 0);
        if let (Some(at), Some(every)) = (self.next_refresh, self.settings.garp_refresh)
            && now >= at
        {
            let owned: Vec<IpAddr> = self.owned.iter().copied().collect();
            for ip in owned {
                self.announce_once(ip);
            }
            self.next_refresh = Some(now + every);
        }
        if now >= self.next_check {
            self.maintain(now);
            // While an address is missing, look again when if_down_limit has passed for it.
            let soonest_missing = self
                .missing_since
                .values()
                .map(|t| *t + self.settings.if_down_limit)
                .min();
            let regular = now + self.settings.if_check_interval;
            self.next_check = soonest_missing.map_or(regular, |m| {
                m.min(regular).max(now + Duration::from_millis(10))
            });
        }
    }

    /// When [`Self::tick`] next has something to do.
    pub fn next_deadline(&self) -> Instant {
        if !self.to_acquire.is_empty() {
            return Instant::now();
        }
        let mut t = self.next_lease.min(self.next_check);
        if let Some(a) = self.announces.iter().map(|a| a.at).min() {
            t = t.min(a);
        }
        if let Some(r) = self.next_refresh {
            t = t.min(r);
        }
        if self.hooks.pending() > 0 {
            t = t.min(Instant::now() + Duration::from_millis(20));
        }
        t
    }

    /// Whether the XDP program is attached to at least one interface.
    pub fn xdp_attached(&self) -> bool {
        !self.xdp.is_empty()
    }

    /// The XDP program's latest transport arrival per peer address, over every interface: the
    /// newest stamp (CLOCK_MONOTONIC nanoseconds) and the packets counted. Interfaces whose map
    /// cannot be read are skipped (and counted as errors).
    pub fn peer_arrivals(&mut self) -> BTreeMap<Ipv4Addr, crate::xdp::maps::Peer> {
        let mut out: BTreeMap<Ipv4Addr, crate::xdp::maps::Peer> = BTreeMap::new();
        for fp in self.xdp.values() {
            match fp.peer_arrivals() {
                Ok(list) => {
                    for (ip, p) in list {
                        let e = out.entry(ip).or_default();
                        e.last_ns = e.last_ns.max(p.last_ns);
                        e.packets = e.packets.saturating_add(p.packets);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read XDP arrival stamps");
                    self.stats.errors += 1;
                }
            }
        }
        out
    }

    /// The kernel's IPv6 neighbours on this node's interfaces: (interface name, address, MAC).
    pub fn neighbours6(&self) -> Result<Vec<(String, std::net::Ipv6Addr, [u8; 6])>, PlumbError> {
        let mut names = BTreeMap::new();
        Ok(self
            .plumber
            .neighbours6()?
            .into_iter()
            .filter_map(|(index, ip, mac)| {
                let name = names
                    .entry(index)
                    .or_insert_with(|| interface_name(index))
                    .clone()?;
                Some((name, ip, mac))
            })
            .collect())
    }

    /// XDP counters summed over interfaces.
    pub fn xdp_stats(&self) -> XdpStats {
        let mut s = XdpStats::default();
        for fp in self.xdp.values() {
            if let Ok(x) = fp.stats() {
                s.arp_replied += x.arp_replied;
                s.arp_lease_expired += x.arp_lease_expired;
                s.arp_passed += x.arp_passed;
                s.transport_stamped += x.transport_stamped;
                s.ingress_fenced += x.ingress_fenced;
                s.ndp_replied += x.ndp_replied;
                s.ndp_lease_expired += x.ndp_lease_expired;
            }
        }
        s
    }
}
