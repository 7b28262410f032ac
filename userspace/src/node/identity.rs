//! Who this node is on the cluster network: name, subcluster, address, port and incarnation.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use cohort_engine::config::{Config, nodename};

/// A node's resolved identity for one run of the process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub nodename: String,
    pub subcluster: String,
    /// Address and port the group transport binds and is known by.
    pub addr: SocketAddr,
    /// Fresh at every start, so a restarted node is a new member.
    pub incarnation: u64,
    pub pid: u32,
}

/// Why the identity could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no node name: set cluster {{ nodename }}, EC_NODE_NAME or the hostname")]
    NoName,
    #[error("cannot resolve address '{addr}' of peer '{peer}': {why}")]
    Resolve {
        peer: String,
        addr: String,
        why: String,
    },
    #[error(
        "node '{0}' has no address: set cluster {{ nodeaddr }}, list it in msgc_server {{ peers }}, or make its name resolve"
    )]
    NoAddress(String),
}

/// Resolves a `peers` address (`IP`, `IP:port`, `[v6]:port`, `host`, `host:port`) to a socket
/// address, with `port` when none is given.
pub fn resolve_peer(peer: &str, addr: &str, port: u16) -> Result<SocketAddr, IdentityError> {
    let err = |why: String| IdentityError::Resolve {
        peer: peer.to_owned(),
        addr: addr.to_owned(),
        why,
    };
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = addr.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let with_port = if addr.contains(':') {
        addr.to_owned()
    } else {
        format!("{addr}:{port}")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no address found".into()))
}

/// Bits of an incarnation that carry the process id (Linux pids are below 2^22), and the pid
/// read back: defined by the node machine, which names replication members after it.
pub use cohort_engine::node::{PID_BITS, pid_of};

/// This start's incarnation: milliseconds since the Unix epoch above the process id. It differs
/// between any two starts of a node and grows across restarts, which the transport relies on (the
/// member with the smallest incarnation is the oldest, and the oldest member leads), and any member
/// can read the pid back for Momentum's private names (`#ec1-<pid>#<node>`). Strictly increasing
/// within one process.
pub fn fresh_incarnation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64);
    let pid = u64::from(std::process::id()) & ((1 << PID_BITS) - 1);
    let now = (ms << PID_BITS) | pid;
    let prev = LAST.fetch_max(now, Ordering::SeqCst);
    if prev >= now {
        // Same millisecond in the same process: step past the previous one, keeping the pid bits.
        LAST.fetch_add(1 << PID_BITS, Ordering::SeqCst) + (1 << PID_BITS)
    } else {
        now
    }
}

/// Resolves this node's identity from the configuration and the environment.
pub fn resolve(cfg: &Config) -> Result<Identity, IdentityError> {
    let name = nodename::nodename(&cfg.cluster).ok_or(IdentityError::NoName)?;
    let port = cfg.msgc_server.port;
    let addr = match (
        cfg.cluster.nodeaddr,
        cfg.msgc_server.peers.iter().find(|p| p.name == name),
    ) {
        (Some(ip), Some(p)) => {
            // nodeaddr fixes the IP; a port given in peers still counts.
            let sa = resolve_peer(&p.name, &p.address, port)?;
            SocketAddr::new(ip, sa.port())
        }
        (Some(ip), None) => SocketAddr::new(ip, port),
        (None, Some(p)) => resolve_peer(&p.name, &p.address, port)?,
        // Neither: the node name resolved (DNS or /etc/hosts), as Momentum's nodeaddr falls
        // back to.
        (None, None) => match resolve_peer(&name, &name, port) {
            Ok(a) => a,
            Err(_) => return Err(IdentityError::NoAddress(name)),
        },
    };
    Ok(Identity {
        nodename: name,
        subcluster: nodename::subcluster(&cfg.cluster),
        addr,
        incarnation: fresh_incarnation(),
        pid: std::process::id(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_forms() {
        assert_eq!(
            resolve_peer("a", "10.0.0.1", 4809).expect("ip"),
            "10.0.0.1:4809".parse().expect("sa")
        );
        assert_eq!(
            resolve_peer("a", "10.0.0.1:5000", 4809).expect("ip:port"),
            "10.0.0.1:5000".parse().expect("sa")
        );
        assert_eq!(
            resolve_peer("a", "[::1]:5000", 4809).expect("v6"),
            "[::1]:5000".parse().expect("sa")
        );
        assert_eq!(
            resolve_peer("a", "localhost", 4809).expect("name").port(),
            4809
        );
        assert!(resolve_peer("a", "no-such-host.invalid", 4809).is_err());
    }

    #[test]
    fn incarnations_grow_and_carry_the_pid() {
        let a = fresh_incarnation();
        let b = fresh_incarnation();
        assert!(b > a);
        assert_eq!(pid_of(a), std::process::id());
        assert_eq!(pid_of(b), std::process::id());
    }

    #[test]
    fn address_from_peers_or_nodeaddr() {
        let text = "cluster { nodename = \"n2\" } msgc_server { peers = [ n1 = \"127.0.0.11\" n2 = \"127.0.0.12:5000\" ] }";
        let cfg = cohort_engine::config::load_str(std::path::Path::new("t"), text)
            .expect("valid")
            .config;
        let id = resolve(&cfg).expect("resolves");
        assert_eq!(id.addr, "127.0.0.12:5000".parse().expect("sa"));
        assert_eq!(id.subcluster, "default");
        let text = "cluster { nodename = \"n3\" } msgc_server { peers = [ n1 = \"127.0.0.11\" ] }";
        let cfg = cohort_engine::config::load_str(std::path::Path::new("t"), text)
            .expect("valid")
            .config;
        assert!(matches!(resolve(&cfg), Err(IdentityError::NoAddress(n)) if n == "n3"));
        // Neither nodeaddr nor a peers entry: the name resolved.
        let text =
            "cluster { nodename = \"localhost\" } msgc_server { peers = [ n1 = \"127.0.0.11\" ] }";
        let cfg = cohort_engine::config::load_str(std::path::Path::new("t"), text)
            .expect("valid")
            .config;
        let id = resolve(&cfg).expect("localhost resolves");
        assert!(id.addr.ip().is_loopback(), "{}", id.addr);
        assert_eq!(id.addr.port(), 4809);
    }
}
