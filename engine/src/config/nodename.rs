//! Who this node is: its name and subcluster, resolved as the Momentum module page documents.

use super::model::Cluster;

/// The node name: the `nodename` option, else `EC_NODE_NAME`, else the system hostname cut at the
/// first `.`. Empty values count as unset. `None` only when all three are missing.
pub fn resolve_nodename(
    cluster: &Cluster,
    env_node_name: Option<&str>,
    hostname: Option<&str>,
) -> Option<String> {
    let nonempty = |s: &str| {
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_owned())
    };
    cluster
        .nodename
        .as_deref()
        .and_then(nonempty)
        .or_else(|| env_node_name.and_then(nonempty))
        .or_else(|| {
            hostname
                .and_then(|h| h.split('.').next())
                .and_then(nonempty)
        })
}

/// The node name for this process, reading `EC_NODE_NAME` and the hostname.
pub fn nodename(cluster: &Cluster) -> Option<String> {
    let env = std::env::var("EC_NODE_NAME").ok();
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok());
    resolve_nodename(cluster, env.as_deref(), host.as_deref())
}

/// The subcluster: the `subcluster` option, else `EC_SUB_CLUSTER`, else `default`.
pub fn resolve_subcluster(cluster: &Cluster, env_sub_cluster: Option<&str>) -> String {
    cluster
        .subcluster
        .clone()
        .or_else(|| {
            env_sub_cluster
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "default".to_owned())
}

/// The subcluster for this process, reading `EC_SUB_CLUSTER`.
pub fn subcluster(cluster: &Cluster) -> String {
    resolve_subcluster(cluster, std::env::var("EC_SUB_CLUSTER").ok().as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_then_env_then_hostname() {
        let mut c = Cluster::default();
        assert_eq!(
            resolve_nodename(&c, None, Some("relay-0-1.example.com")).as_deref(),
            Some("relay-0-1")
        );
        assert_eq!(
            resolve_nodename(&c, Some("envname"), Some("host.x")).as_deref(),
            Some("envname")
        );
        assert_eq!(
            resolve_nodename(&c, Some(""), Some("host.x")).as_deref(),
            Some("host")
        );
        c.nodename = Some("opt".into());
        assert_eq!(
            resolve_nodename(&c, Some("envname"), Some("host.x")).as_deref(),
            Some("opt")
        );
        assert_eq!(resolve_nodename(&Cluster::default(), None, None), None);
    }

    #[test]
    fn subcluster_resolution() {
        let mut c = Cluster::default();
        assert_eq!(resolve_subcluster(&c, None), "default");
        assert_eq!(resolve_subcluster(&c, Some("east")), "east");
        c.subcluster = Some("west".into());
        assert_eq!(resolve_subcluster(&c, Some("east")), "west");
    }
}
