//! What a node is made of, from its configuration ([`plan`]): its identity, the transport's
//! settings and key, its member info, the groups it joins, DuraVIP's configuration and timing,
//! the replicated objects and the shared ARP cache's schedule. Worked out without touching the
//! network, so that `cohortd --check-config` ([`check`]) refuses exactly what the daemon would,
//! and a reload ([`Plan::reconfig`]) applies what the new file says.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_engine::config::model::ClusterCrypto;
use cohort_engine::config::{self, Config};
use cohort_engine::duravip::{LocalConfig, Params};
use cohort_engine::group::{ClusterKey, GroupConfig, MemberId, Time};
use cohort_engine::node::{ClusterNode, MemberInfo, NodeSetup, Reconfig, replication_member};
use cohort_engine::replicate::{ObjectSettings, Replicator};

use super::identity::{self, Identity};

/// Why a configuration cannot run, and the option to blame (`scope.option`), when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlanError {
    /// The option whose value the daemon refuses, e.g. `msgc_server.cluster_key`.
    pub option: Option<&'static str>,
    pub message: String,
}

impl PlanError {
    fn at(option: &'static str, message: impl Into<String>) -> PlanError {
        PlanError {
            option: Some(option),
            message: message.into(),
        }
    }
}

/// Everything a node runs with that its configuration decides.
#[derive(Clone, Debug)]
pub struct Plan {
    pub identity: Identity,
    pub group: GroupConfig,
    pub key: Option<ClusterKey>,
    /// What a TCP console connection must prove: `console_key`, else the cluster keyring.
    pub console_key: Option<ClusterKey>,
    pub info: MemberInfo,
    pub joins: Vec<String>,
    pub manager: bool,
    pub duravip: LocalConfig,
    pub duravip_params: Params,
    pub replicate: Vec<ObjectSettings>,
    /// Bindings' groups and the `cluster_outbound_throttle_*` stanzas.
    pub outbound: cohort_engine::replicate::Outbound,
    /// Bytes of each replication message (room left for the transport's framing).
    pub replication_mtu: usize,
    /// `arp_cache_interval`, when this node collects (a node with `Topology` interfaces).
    pub arp_every: Option<Duration>,
    /// A host stays in the shared cache while some node reported it within three intervals.
    pub arp_ttl: Duration,
    /// Where this node collects ARP entries: every `Topology` block's (interface, network).
    pub arp_scope: Vec<(String, ipnet::IpNet)>,
    /// Configured DuraVIP addresses (never hosts of the ARP cache).
    pub vip_addrs: BTreeSet<IpAddr>,
    /// Peer name by IPv4 address (addresses shared by several peers left out), for the XDP
    /// program's arrival stamps.
    pub xdp_peers: BTreeMap<Ipv4Addr, String>,
}

/// Works out what `cfg` runs as (a node, or with `manager` the manager): every check the daemon
/// makes before it opens a socket.
pub fn plan(cfg: &Config, manager: bool) -> Result<Plan, PlanError> {
    let identity = identity::resolve(cfg).map_err(|e| match &e {
        identity::IdentityError::NoName => PlanError::at("cluster.nodename", e.to_string()),
        identity::IdentityError::Resolve { .. } => {
            PlanError::at("msgc_server.peers", e.to_string())
        }
        identity::IdentityError::NoAddress(_) => PlanError::at("cluster.nodeaddr", e.to_string()),
    })?;
    let group = group_config(cfg).map_err(|e| PlanError::at("msgc_server.peers", e.to_string()))?;
    let seal = cfg.msgc_server.cluster_crypto == ClusterCrypto::Seal;
    let key = ClusterKey::load_ring(&group.cluster_key)
        .map_err(|e| {
            PlanError::at(
                "msgc_server.cluster_key",
                format!("cannot read the cluster key: {e}"),
            )
        })?
        .map(|k| k.sealing(seal));
    if seal && key.is_none() {
        return Err(PlanError::at(
            "msgc_server.cluster_crypto",
            "cluster_crypto = seal needs a cluster_key to derive its keys from".to_string(),
        ));
    }
    let console_key = console_key(cfg, key.as_ref())?;
    if let Some(sec) = &cfg.security {
        crate::privileges::lookup(sec)
            .map_err(|(option, message)| PlanError::at(option, message))?;
    }
    if let Some(p) = &cfg.cluster.duravip_notify {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(p) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
            Ok(_) => {
                return Err(PlanError::at(
                    "cluster.duravip_notify",
                    format!("{} is not an executable file", p.display()),
                ));
            }
            Err(e) => {
                return Err(PlanError::at(
                    "cluster.duravip_notify",
                    format!("cannot use {}: {e}", p.display()),
                ));
            }
        }
    }
    let info = my_info(cfg, &identity, manager);
    let joins = groups_to_join(cfg, &identity, manager);
    let replicate: Vec<ObjectSettings> = cfg
        .cluster
        .replicate
        .iter()
        .map(|r| {
            let mut o = ObjectSettings::from_config(r);
            // The series' windows come from `inbound_audit { monitors }` (default "300,6").
            if let Some(a) = &cfg.inbound_audit
                && o.kind.shape() == cohort_engine::replicate::Shape::Series
            {
                o.monitors = a
                    .monitors
                    .iter()
                    .map(|&(window, windows)| cohort_engine::replicate::Monitor { window, windows })
                    .collect();
            }
            o
        })
        .collect();
    // Only nodes with Topology interfaces have hosts of interest to collect.
    let arp_every =
        (!manager && !cfg.cluster.topology.is_empty() && !cfg.cluster.arp_cache_interval.is_zero())
            .then_some(cfg.cluster.arp_cache_interval);
    let arp_ttl = arp_every.map_or(Duration::from_secs(180), |d| 3 * d);
    let arp_scope = cfg
        .cluster
        .topology
        .iter()
        .map(|t| (t.interface.clone(), t.network))
        .collect();
    let vip_addrs = crate::dataplane::placements(cfg)
        .into_iter()
        .map(|p| p.ip)
        .collect();
    let mut xdp_peers: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    let mut shared_ip: BTreeSet<Ipv4Addr> = BTreeSet::new();
    for (name, a) in &group.peers {
        if let IpAddr::V4(v4) = a.ip()
            && xdp_peers.insert(v4, name.clone()).is_some()
        {
            shared_ip.insert(v4);
        }
    }
    xdp_peers.retain(|ip, _| !shared_ip.contains(ip));
    Ok(Plan {
        identity,
        console_key,
        key,
        info,
        joins,
        manager,
        duravip: if manager {
            LocalConfig::default()
        } else {
            LocalConfig::from_config(cfg)
        },
        duravip_params: Params::from_config(cfg),
        replicate,
        outbound: cohort_engine::replicate::Outbound::from_config(cfg),
        // Leave room in each transport message for its framing and the channel byte.
        replication_mtu: (cfg.msgc_server.mtu as usize).saturating_sub(256).max(512),
        arp_every,
        arp_ttl,
        arp_scope,
        vip_addrs,
        xdp_peers,
        group,
    })
}

impl Plan {
    /// This node's member id.
    pub fn me(&self) -> MemberId {
        MemberId::new(self.identity.nodename.clone(), self.identity.incarnation)
    }

    /// The replicated objects, empty.
    pub fn replicator(&self) -> Result<Replicator, PlanError> {
        let mut r = Replicator::new(
            replication_member(&self.me()),
            self.replicate.clone(),
            self.replication_mtu,
            self.manager,
        )
        .map_err(|e| PlanError::at("cluster.Replicate", format!("replication: {e}")))?;
        r.set_outbound(self.outbound.clone());
        Ok(r)
    }

    /// What the node machine is built from.
    pub fn node_setup(
        &self,
        cluster_group: &str,
        replicator: Arc<Mutex<Replicator>>,
        wall_epoch: Duration,
    ) -> NodeSetup {
        NodeSetup {
            group: self.group.clone(),
            me: self.me(),
            key: self.key.clone(),
            cluster_group: cluster_group.to_owned(),
            joins: self.joins.clone(),
            duravip: self.duravip.clone(),
            duravip_params: self.duravip_params.clone(),
            info: self.info.clone(),
            replicator,
            arp_ttl: self.arp_ttl,
            wall_epoch,
        }
    }

    /// What a reload to this plan changes in a running node machine.
    pub fn reconfig(&self) -> Reconfig {
        Reconfig {
            duravip: self.duravip.clone(),
            duravip_params: self.duravip_params.clone(),
            replicate: self.replicate.clone(),
            arp_ttl: self.arp_ttl,
            probe_interval: self.group.probe_interval,
            suspect_timeout: self.group.suspect_timeout,
            heartbeats_per_sec: self.group.heartbeats_per_sec,
            key: self.key.clone(),
            outbound: self.outbound.clone(),
        }
    }
}

/// What a TCP console connection must prove: the `console_key` file, else the cluster keyring
/// `cluster`. Without either, a TCP `Control_Listener` address outside loopback is refused:
/// anyone who reached it could run any command.
pub fn console_key(
    cfg: &Config,
    cluster: Option<&ClusterKey>,
) -> Result<Option<ClusterKey>, PlanError> {
    let key = match &cfg.cluster.console_key {
        Some(p) => Some(ClusterKey::load(p).map_err(|e| {
            PlanError::at(
                "cluster.console_key",
                format!("cannot read the console key: {e}"),
            )
        })?),
        None => cluster.cloned(),
    };
    if key.is_none() {
        let exposed = cfg.control_listener.listens.iter().find(|l| match &l.addr {
            cohort_engine::config::ListenAddr::Inet { host, .. } => {
                !host.is_some_and(|h| h.is_loopback())
            }
            cohort_engine::config::ListenAddr::Unix(_) => false,
        });
        if let Some(l) = exposed {
            return Err(PlanError::at(
                "Control_Listener.Listen",
                format!(
                    "the console listens on {} outside loopback without a key: set \
                     cluster {{ console_key }} or msgc_server {{ cluster_key }} (every TCP \
                     connection then proves it), or listen on 127.0.0.1",
                    l.addr
                ),
            ));
        }
    }
    Ok(key)
}

/// `--check-config` beyond the loader: the plan, then the node machine built from it (sans-IO),
/// exactly as the daemon builds them before it opens its socket.
pub fn check(cfg: &Config, manager: bool) -> Result<Plan, PlanError> {
    let plan = plan(cfg, manager)?;
    let replicator = Arc::new(Mutex::new(plan.replicator()?));
    let setup = plan.node_setup(&cfg.cluster.cluster_group, replicator, Duration::ZERO);
    ClusterNode::new(setup, Time::ZERO)
        .map_err(|e| PlanError::at("msgc_server", format!("the group transport: {e}")))?;
    Ok(plan)
}

/// The transport settings of a configuration, with every peer resolved.
pub fn group_config(cfg: &Config) -> Result<GroupConfig, identity::IdentityError> {
    let m = &cfg.msgc_server;
    let peers = m
        .peers
        .iter()
        .map(|p| identity::resolve_peer(&p.name, &p.address, m.port).map(|a| (p.name.clone(), a)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(GroupConfig {
        port: m.port,
        peers,
        probe_interval: m.probe_interval,
        suspect_timeout: m.suspect_timeout,
        cluster_key: m.cluster_key.clone(),
        mtu: m.mtu as usize,
        max_unstable_bytes: m.max_unstable_bytes as usize,
        max_queue: m.max_queue as usize,
        max_message_size: usize::try_from(m.max_message_size).unwrap_or(usize::MAX),
        heartbeats_per_sec: cfg.cluster.heartbeats_per_sec,
        heartbeat_start_delay: cfg.cluster.heartbeat_start_delay,
        cluster_id: m.cluster_id,
    })
}

/// This node's `MemberInfo`.
pub(crate) fn my_info(cfg: &Config, id: &Identity, manager: bool) -> MemberInfo {
    let ecc = cfg
        .eccluster_listener
        .listens
        .iter()
        .find_map(|l| match &l.addr {
            config::ListenAddr::Inet {
                host: Some(h),
                port,
            } => Some(SocketAddr::new(*h, *port)),
            config::ListenAddr::Inet { host: None, port } => {
                Some(SocketAddr::new(id.addr.ip(), *port))
            }
            config::ListenAddr::Unix(_) => None,
        })
        .map_or_else(|| "0.0.0.0:0".to_owned(), |a| a.to_string());
    MemberInfo {
        pid: id.pid,
        subcluster: id.subcluster.clone(),
        node_type: if manager { "Manager" } else { "Momentum" }.to_owned(),
        version: format!("Cohort {}", env!("CARGO_PKG_VERSION")),
        eccluster_addr: if manager { "0.0.0.0:0".to_owned() } else { ecc },
    }
}

/// The groups a node joins: the cluster and control groups and its subcluster's group; a manager
/// joins the cluster group (as in the documented `cluster membership` sample) and its private
/// reply group.
pub fn groups_to_join(cfg: &Config, id: &Identity, manager: bool) -> Vec<String> {
    if manager {
        // The manager's private reply group (hidden from `cluster membership`, like Spread's
        // private groups) receives the nodes' answers to its console commands.
        return vec![
            cfg.cluster.cluster_group.clone(),
            super::control::reply_group(&id.nodename),
            // Replication meant for the manager alone (eccmgr_metrics).
            cohort_engine::node::MANAGER_GROUP.to_owned(),
        ];
    }
    vec![
        cfg.cluster.control_group.clone(),
        format!("ec_sc_{}", id.subcluster),
        cfg.cluster.cluster_group.clone(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_take_their_windows_from_inbound_audit() {
        let text = "cluster {\n  nodename = \"n1\"\n  Replicate \"metrics\" {}\n  Replicate \"inbound_cidr\" {}\n}\n\
                    msgc_server { peers = [ n1 = \"127.0.0.1\" ] }\n\
                    inbound_audit {\n  monitors = ( \"60,10\", \"3600,24\" )\n  log_dir = \"/tmp\"\n}\n";
        let cfg = cohort_engine::config::load_str(std::path::Path::new("t.conf"), text)
            .expect("loads")
            .config;
        let p = plan(&cfg, false).expect("plan");
        let metrics = p
            .replicate
            .iter()
            .find(|o| o.name == "metrics")
            .expect("metrics");
        let windows: Vec<(u64, u32)> = metrics
            .monitors
            .iter()
            .map(|m| (m.window, m.windows))
            .collect();
        assert_eq!(windows, [(60, 10), (3600, 24)]);
        // Without the scope: Momentum's "300,6".
        let cfg = cohort_engine::config::load_str(
            std::path::Path::new("t.conf"),
            &text[..text.find("inbound_audit").expect("scope")],
        )
        .expect("loads")
        .config;
        let p = plan(&cfg, false).expect("plan");
        let metrics = p
            .replicate
            .iter()
            .find(|o| o.name == "metrics")
            .expect("metrics");
        assert_eq!(
            (metrics.monitors[0].window, metrics.monitors[0].windows),
            (300, 6)
        );
        // A bad monitor is refused where it is written.
        let e = cohort_engine::config::load_str(
            std::path::Path::new("t.conf"),
            "inbound_audit {\n  monitors = ( \"300,6\", \"0,5\" )\n}\n",
        )
        .expect_err("refused");
        assert!(
            e.to_string().starts_with("t.conf:2:25: 'monitors' expects"),
            "{e}"
        );
    }
}
