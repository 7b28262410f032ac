//! The event loop's work on the host beside the node machine: collecting this node's ARP
//! entries for the shared cache, feeding the XDP program's arrival stamps to the failure
//! detector, starting the data plane, publishing the status the console reads.

use std::time::{Duration, Instant};

use cohort_engine::config::Config;
use cohort_engine::duravip::arpcache;
use cohort_engine::group::Time;

use super::{Node, XDP_STAMP_PERIOD};

/// The data plane (CAP_NET_ADMIN), or `None` with an error logged: the node runs on without
/// plumbing.
pub(super) fn start_dataplane(
    cfg: &Config,
    own: std::net::IpAddr,
    node: &str,
) -> Option<crate::dataplane::DataPlane> {
    match crate::dataplane::DataPlane::start(cfg, vec![own], Instant::now()) {
        Ok(mut d) => {
            d.hooks.set_node(node);
            Some(d)
        }
        Err(e) => {
            tracing::error!(error = %e, "DuraVIP data plane unavailable: addresses will not be plumbed");
            None
        }
    }
}

impl Node {
    /// Collects this node's ARP entries on the `Topology` interfaces (the kernel's neighbour
    /// table) and hands them to the node machine, which adds them to the shared cache and
    /// reports them to the cluster.
    pub(super) fn collect_arp(&mut self, now: Time) {
        if let Some(every) = self.arp_every {
            self.next_arp = now + every;
        }
        let text = match std::fs::read_to_string("/proc/net/arp") {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read /proc/net/arp; the shared ARP cache gets no IPv4 host from this node");
                String::new()
            }
        };
        let (scope, vips) = (&self.arp_scope, &self.vip_addrs);
        let keep = |dev: &str, ip: std::net::IpAddr| {
            !vips.contains(&ip) && scope.iter().any(|(i, n)| i == dev && n.contains(&ip))
        };
        let mut hosts = match arpcache::parse_proc_net_arp(&text, |d, ip| keep(d, ip.into())) {
            Ok(hosts) => hosts,
            Err(e) => {
                tracing::warn!(error = %e, "cannot parse the kernel's ARP table");
                Vec::new()
            }
        };
        // IPv6 hosts come from the neighbour table (rtnetlink), only where a Topology block is IPv6.
        if scope.iter().any(|(_, n)| matches!(n, ipnet::IpNet::V6(_)))
            && let Some(dp) = &self.dataplane
        {
            match dp.neighbours6() {
                Ok(found) => hosts.extend(
                    found
                        .into_iter()
                        .filter(|(dev, ip, _)| keep(dev, std::net::IpAddr::V6(*ip)))
                        .map(|(_, ip, mac)| arpcache::Neighbour {
                            ip: std::net::IpAddr::V6(ip),
                            mac,
                        }),
                ),
                Err(e) => tracing::warn!(error = %e, "cannot read the IPv6 neighbour table"),
            }
        }
        self.node.handle_arp_report(now, &hosts);
    }

    /// Gives the failure detector the transport arrivals the XDP program stamped since the last
    /// read (at most every [`XDP_STAMP_PERIOD`]): each peer whose packet count moved was heard at
    /// its stamp, placed on the loop's clock. The kernel's `SO_TIMESTAMPNS` stamps are used too.
    pub(super) fn feed_xdp_stamps(&mut self, now: Time) {
        if now < self.next_xdp_read || self.xdp_peers.is_empty() {
            return;
        }
        let Some(dp) = self.dataplane.as_mut().filter(|d| d.xdp_attached()) else {
            return;
        };
        self.next_xdp_read = now + XDP_STAMP_PERIOD;
        let arrivals = dp.peer_arrivals();
        let mono = crate::xdp::monotonic_ns();
        for (ip, p) in arrivals {
            let Some(name) = self.xdp_peers.get(&ip) else {
                continue;
            };
            let seen = self.xdp_seen.entry(ip).or_insert(0);
            if *seen == p.packets {
                continue;
            }
            *seen = p.packets;
            let age = mono.saturating_sub(p.last_ns);
            let at = Time::from_nanos(now.as_nanos().saturating_sub(age));
            self.node.note_arrival(now, name, at);
            self.xdp_arrivals_fed += 1;
        }
    }

    /// The lapsed-lease fence. While the loop was stalled past `xdp_lease`, the XDP program
    /// dropped ARP and IPv4 ingress for this node's addresses; the data plane keeps the lease
    /// lapsed until the node's ownership is confirmed. On noticing the lapse the node re-announces
    /// its DuraVIP state, so the members re-run the election at that point of the agreed stream.
    /// The lease is re-armed once an election has run after the lapse and either in a view
    /// installed since (the peers removed the stalled node and it rejoined) or after two
    /// suspicion timeouts in the same view (the peers would have removed it by then and it would
    /// have noticed their new view); the owned set the data plane holds then is what that election
    /// decided.
    pub(super) fn fence_lapsed_lease(&mut self, now: Time) {
        let Some(dp) = self.dataplane.as_mut() else {
            return;
        };
        if !dp.lease_lapsed() {
            self.lapse = None;
            return;
        }
        let d = self.node.duravip();
        let (view, elections) = (d.view().map(|v| v.0), d.stats().elections);
        let Some((at_view, at_elections, at)) = self.lapse else {
            self.lapse = Some((view, elections, now));
            self.node.confirm_duravip(now);
            return;
        };
        let settled = d.table().is_some() && elections > at_elections;
        let new_view = view.is_some() && view != at_view;
        let waited = now.since(at) >= self.node.endpoint().suspect_timeout() * 2;
        if settled && (new_view || waited) {
            self.lapse = None;
            dp.rearm(Instant::now());
        }
    }

    pub(super) fn publish(&mut self) {
        let refresh =
            self.duravip_dirty || self.last_status.elapsed() >= Duration::from_millis(500);
        let now = self.clock.now();
        let dv = refresh.then(|| self.node.duravip().status(now));
        if refresh {
            self.duravip_dirty = false;
            self.last_status = Instant::now();
        }
        let mut back = Vec::new();
        if let Ok(mut s) = self.shared.status.lock() {
            s.counters = self.node.endpoint().counters().clone();
            s.local_health = self.node.endpoint().local_health();
            s.peers = self
                .node
                .endpoint()
                .peer_health()
                .into_iter()
                .map(|p| crate::node::shared::PeerStatus {
                    silent_for: now.since(p.last_heard),
                    member: p.member,
                    suspected: p.suspected,
                    failed: p.failed,
                    rtt: p.rtt,
                })
                .collect();
            s.io = self.io.stats();
            if refresh {
                s.arp = self.node.arp().table(Duration::from_nanos(now.as_nanos()));
            }
            if let Some(dv) = dv {
                back = self.shared.jobs.settle_moves(&dv);
                s.duravip = Some(dv);
                s.dataplane = self.dataplane.as_ref().map(|d| {
                    let mut st = d.stats.clone();
                    st.hooks = d.hooks.stats;
                    st
                });
                // Taken before the program's counters, so it never exceeds the packets stamped.
                s.xdp_arrivals_fed = self.xdp_arrivals_fed;
                s.xdp = self.dataplane.as_ref().map(|d| d.xdp_stats());
            }
        }
        // Aborted moves that have arrived go back where they came from.
        for (ip, node) in back {
            let cmd = cohort_engine::node::Command::DuravipMove {
                ip,
                node: node.clone(),
            };
            match self.node.handle_command(now, cmd) {
                Ok(()) => {
                    tracing::info!(%ip, to = %node, "aborted move: moving the address back");
                    self.duravip_dirty = true;
                }
                Err(e) => {
                    tracing::warn!(%ip, to = %node, error = %e, "aborted move: cannot move it back");
                    self.shared.jobs.move_back_refused(ip);
                }
            }
        }
    }
}
