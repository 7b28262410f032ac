//! What a node is made of, from its configuration: the transport's settings, its member info and
//! the groups it joins.

use std::net::SocketAddr;

use cohort_engine::config::{self, Config};
use cohort_engine::group::GroupConfig;
use cohort_engine::node::MemberInfo;

use super::identity::{self, Identity};

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
        ];
    }
    vec![
        cfg.cluster.control_group.clone(),
        format!("ec_sc_{}", id.subcluster),
        cfg.cluster.cluster_group.clone(),
    ]
}
