//! What a member is configured to manage and what it announces after every view change.
//!
//! A member announces, per DuraVIP address it is configured for: the binding names on that address,
//! the services configured on it, its `Duravip_Preference`, and, for a `Duravip_Follow` listener,
//! the address it follows; plus whether it is mature and which addresses it currently holds. Every
//! member of the view receives every announcement in agreed order and runs the same election
//! ([`super::ownership`]) on them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::config::{Config, ListenAddr};

/// The services configured on a DuraVIP address. Momentum shows `multivip` for bindings; Cohort
/// adds `smtp` for an `ESMTP_Listener` listening on the address. Two members configured for one
/// address with different services mark it UNSAFE (docs 27.4.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Services(u8);

impl Services {
    /// A `Binding` has this address as its `Bind_Address`: shown as `multivip`.
    pub const MULTIVIP: Services = Services(1);
    /// An `ESMTP_Listener` listens on this address: shown as `smtp`.
    pub const SMTP: Services = Services(2);
    /// Every bit the wire format accepts.
    pub const ALL: Services = Services(3);

    /// The raw bits (for the wire).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Services from raw bits; `None` when an unknown bit is set.
    pub fn from_bits(bits: u8) -> Option<Services> {
        (bits & !Self::ALL.0 == 0).then_some(Services(bits))
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Services) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Services) -> Services {
        Services(self.0 | other.0)
    }

    /// The words shown by the console, in a fixed order.
    pub fn words(self) -> Vec<&'static str> {
        let mut w = Vec::new();
        if self.contains(Self::MULTIVIP) {
            w.push("multivip");
        }
        if self.contains(Self::SMTP) {
            w.push("smtp");
        }
        w
    }
}

impl fmt::Display for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.words().join(" "))
    }
}

impl Serialize for Services {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.words().serialize(s)
    }
}

/// One DuraVIP address as one member is configured for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct AddrConfig {
    pub ip: IpAddr,
    /// Names of the bindings whose `Bind_Address` is this address (every binding on it, since a
    /// DuraVIP address on one service is DuraVIP on all of them, docs 27.4.2).
    pub bindings: BTreeSet<String>,
    pub services: Services,
    /// The node this member's configuration prefers as the owner.
    pub preference: Option<String>,
    /// For a `Duravip_Follow` listener: the address of the binding it follows. Such an address is
    /// never elected on its own; it goes wherever the followed address goes.
    pub follows: Option<IpAddr>,
}

/// Everything a member announces: the body of a STATE message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Announcement {
    /// The member has been part of a mature view (or is told so by the view maturing): only mature
    /// members are given addresses.
    pub mature: bool,
    /// The member ran `cluster duravip release all`: it takes no address until it runs
    /// `cluster duravip announce view`.
    pub withdrawn: bool,
    /// The addresses this member is configured for, strictly ascending by address.
    pub addresses: Vec<AddrConfig>,
    /// The addresses this member holds (has been told to plumb and not yet to unplumb), strictly
    /// ascending.
    pub held: Vec<IpAddr>,
}

/// Where an address is plumbed: the `Topology` block it falls in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub interface: String,
    pub cidrmask: u8,
}

/// The DuraVIP part of this node's configuration, derived from a [`Config`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LocalConfig {
    /// Strictly ascending by address.
    pub addresses: Vec<AddrConfig>,
    /// Where each configured address is plumbed, from the `Topology` blocks (the most specific
    /// block wins). Addresses outside every block are absent (configuration validation refuses
    /// them; the action then carries no placement).
    pub placement: BTreeMap<IpAddr, Placement>,
}

impl LocalConfig {
    /// Derives the DuraVIP addresses from the `Binding` and `ESMTP_Listener` stanzas:
    /// - an address is DuraVIP when a binding with `Enable_Duravip` binds to it, or an ESMTP
    ///   listener with `Enable_Duravip` or `Duravip_Follow` listens on it;
    /// - its binding names are those of every binding on it, its services `multivip` when any
    ///   binding is on it and `smtp` when any ESMTP listener listens on it;
    /// - its preference is the first `Duravip_Preference` of an enabled binding, else of an enabled
    ///   listener, on it (file order);
    /// - a `Duravip_Follow` listener's address follows the address of the binding named (or
    ///   addressed) by the option, even when something else also enables the address.
    ///
    /// A follow target that names no enabled binding is skipped with a warning (configuration
    /// validation already refuses it).
    pub fn from_config(cfg: &Config) -> LocalConfig {
        let listener_host = |addr: &ListenAddr| match addr {
            ListenAddr::Inet { host: Some(h), .. } => Some(*h),
            _ => None,
        };
        let mut enabled: BTreeSet<IpAddr> = BTreeSet::new();
        let mut follows: BTreeMap<IpAddr, IpAddr> = BTreeMap::new();
        for b in &cfg.bindings {
            if let (true, Some(a)) = (b.enable_duravip, b.bind_address) {
                enabled.insert(a);
            }
        }
        for l in &cfg.esmtp_listeners {
            let Some(h) = listener_host(&l.addr) else {
                continue;
            };
            if l.enable_duravip {
                enabled.insert(h);
            }
            if let Some(target) = &l.duravip_follow {
                let followed = cfg.bindings.iter().find(|b| {
                    b.enable_duravip
                        && (b.name.eq_ignore_ascii_case(target)
                            || b.bind_address.map(|a| a.to_string()).as_deref()
                                == Some(target.as_str()))
                });
                match followed.and_then(|b| b.bind_address) {
                    Some(a) if a != h => {
                        follows.insert(h, a);
                    }
                    _ => tracing::warn!(
                        listener = %l.addr,
                        target = %target,
                        "Duravip_Follow names no Enable_Duravip binding with another address; ignored"
                    ),
                }
            }
        }
        let all: BTreeSet<IpAddr> = enabled.iter().chain(follows.keys()).copied().collect();
        let mut addresses = Vec::with_capacity(all.len());
        for ip in all {
            let mut bindings = BTreeSet::new();
            let mut services = Services::default();
            let mut preference = None;
            for b in cfg.bindings.iter().filter(|b| b.bind_address == Some(ip)) {
                bindings.insert(b.name.clone());
                services = services.union(Services::MULTIVIP);
                if b.enable_duravip && preference.is_none() {
                    preference.clone_from(&b.duravip_preference);
                }
            }
            for l in cfg
                .esmtp_listeners
                .iter()
                .filter(|l| listener_host(&l.addr) == Some(ip))
            {
                services = services.union(Services::SMTP);
                if l.enable_duravip && preference.is_none() {
                    preference.clone_from(&l.duravip_preference);
                }
            }
            addresses.push(AddrConfig {
                ip,
                bindings,
                services,
                preference,
                follows: follows.get(&ip).copied(),
            });
        }
        let mut placement = BTreeMap::new();
        for a in &addresses {
            let best = cfg
                .cluster
                .topology
                .iter()
                .filter(|t| t.network.contains(&a.ip))
                .max_by_key(|t| t.network.prefix_len());
            if let Some(t) = best {
                placement.insert(
                    a.ip,
                    Placement {
                        interface: t.interface.clone(),
                        cidrmask: t.cidrmask,
                    },
                );
            }
        }
        LocalConfig {
            addresses,
            placement,
        }
    }

    /// The network an address is plumbed with (`ip/cidrmask`), when its `Topology` is known.
    pub fn network(&self, ip: IpAddr) -> Option<IpNet> {
        self.placement
            .get(&ip)
            .and_then(|p| IpNet::new(ip, p.cidrmask).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use std::path::Path;

    fn local(text: &str) -> LocalConfig {
        let loaded = load_str(Path::new("t.conf"), text).expect("valid configuration");
        LocalConfig::from_config(&loaded.config)
    }

    const TOPO: &str = "cluster { Topology \"10.1.0.0/16\" { interface = \"eth1\" } \
        Topology \"10.1.2.0/24\" { interface = \"eth2\" cidrmask = 24 } }\n";

    #[test]
    fn bindings_and_listeners_become_addresses() {
        let l = local(&format!(
            "{TOPO}
            ESMTP_Listener {{ Listen \"10.1.1.1:25\" {{ Enable_Duravip = true }} \
                              Listen \"10.1.1.9:25\" {{ Duravip_Follow = \"b2\" }} }}
            Binding \"b1\" {{ Enable_Duravip = true Bind_Address = \"10.1.1.1\" Duravip_Preference = \"n1\" }}
            Binding \"b1b\" {{ Bind_Address = \"10.1.1.1\" }}
            Binding \"b2\" {{ Enable_Duravip = true Bind_Address = \"10.1.2.2\" }}
            Binding \"plain\" {{ Bind_Address = \"10.1.1.7\" }}"
        ));
        let ips: Vec<String> = l.addresses.iter().map(|a| a.ip.to_string()).collect();
        assert_eq!(ips, ["10.1.1.1", "10.1.1.9", "10.1.2.2"]);
        let a = &l.addresses[0];
        assert_eq!(
            a.bindings.iter().collect::<Vec<_>>(),
            ["b1", "b1b"],
            "every binding on the address"
        );
        assert_eq!(a.services, Services::MULTIVIP.union(Services::SMTP));
        assert_eq!(a.preference.as_deref(), Some("n1"));
        assert_eq!(a.follows, None);
        let f = &l.addresses[1];
        assert_eq!(f.services, Services::SMTP);
        assert_eq!(f.follows, Some("10.1.2.2".parse().expect("ip")));
        assert!(f.bindings.is_empty());
        assert_eq!(l.addresses[2].services, Services::MULTIVIP);
        assert_eq!(
            l.network("10.1.2.2".parse().expect("ip"))
                .map(|n| n.to_string()),
            Some("10.1.2.2/24".to_owned()),
            "the most specific Topology block wins"
        );
        assert_eq!(
            l.placement[&"10.1.1.1".parse::<IpAddr>().expect("ip")].interface,
            "eth1"
        );
    }

    #[test]
    fn follow_by_ip_and_services_words() {
        let l = local(&format!(
            "{TOPO}
            ESMTP_Listener {{ Listen \"10.1.1.3:25\" {{ Duravip_Follow = \"10.1.1.4\" }} }}
            Binding \"x\" {{ Enable_Duravip = true Bind_Address = \"10.1.1.4\" }}"
        ));
        assert_eq!(
            l.addresses[0].follows,
            Some("10.1.1.4".parse().expect("ip"))
        );
        assert_eq!(Services::ALL.to_string(), "multivip smtp");
        assert_eq!(Services::from_bits(4), None);
        assert_eq!(Services::from_bits(2), Some(Services::SMTP));
    }
}
