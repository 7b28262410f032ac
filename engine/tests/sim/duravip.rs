//! DuraVIP ownership over the group simulator's seeds: every member runs the ownership machine on
//! its real views and agreed messages inside the node machine (`cohort_engine::node`, which the
//! daemon runs too); this module gives the members their
//! configuration and checks the outcome once faults stop.
//!
//! The configuration, on every member unless said otherwise:
//! - `v1`..`v6` (10.9.0.1-6): plain DuraVIP bindings, elected and balanced;
//! - `p7` (10.9.0.7): `Duravip_Preference = "n1"`, so n1 owns it whenever n1 is a live member;
//! - `c8` (10.9.0.8): n0 prefers n0 and n2 prefers n2, the others name no one: *in conflict* when
//!   both are members (normal election), pinned to whichever of them is the only member;
//! - listeners on 10.9.1.1 and 10.9.1.7 with `Duravip_Follow` of `v1` and `p7`: they go wherever
//!   what they follow goes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use cohort_engine::duravip::{AddrConfig, LocalConfig, Params, Services, Table};
use rand::RngExt;
use rand::rngs::ChaCha8Rng;

use crate::world::{MS, SEC, World};

/// What the seeds exercised, so that a long run can insist it exercised every rule.
#[derive(Clone, Debug, Default)]
pub struct Coverage {
    pub acquisitions: u64,
    /// Acquisitions of an address another member held in the previous view (a hand-off).
    pub handoffs: u64,
    /// Tables listing two holders of one address (after a merge).
    pub merged_duplicates: u64,
    pub moves: u64,
    pub broken: u64,
    pub conflict: u64,
    pub unsafe_: u64,
    pub pinned: u64,
    pub followers_owned: u64,
}

impl Coverage {
    pub fn add(&mut self, o: &Coverage) {
        self.acquisitions += o.acquisitions;
        self.handoffs += o.handoffs;
        self.merged_duplicates += o.merged_duplicates;
        self.moves += o.moves;
        self.broken += o.broken;
        self.conflict += o.conflict;
        self.unsafe_ += o.unsafe_;
        self.pinned += o.pinned;
        self.followers_owned += o.followers_owned;
    }

    /// The rules never exercised.
    pub fn missing(&self) -> Vec<&'static str> {
        [
            ("acquisitions", self.acquisitions),
            ("hand-offs", self.handoffs),
            ("addresses held twice after a merge", self.merged_duplicates),
            ("console moves", self.moves),
            ("BROKEN addresses", self.broken),
            ("addresses in conflict", self.conflict),
            ("UNSAFE addresses", self.unsafe_),
            ("pinned addresses", self.pinned),
            ("owned followers", self.followers_owned),
        ]
        .into_iter()
        .filter(|(_, n)| *n == 0)
        .map(|(w, _)| w)
        .collect()
    }
}

fn random_v4(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 9, a, b))
}

/// A random DuraVIP configuration for `n` members `n0`..: up to 20 leader addresses on
/// 10.9.0.x (some preferring a member, or a name no member has), up to two followers on 10.9.1.x,
/// and in most seeds per-member perturbations; random maturity, balancing and re-announcement.
pub fn random(rng: &mut ChaCha8Rng, n: usize) -> (Vec<LocalConfig>, Params) {
    let addresses = rng.random_range(1..=20usize);
    let mut base = Vec::new();
    for i in 0..addresses {
        base.push(AddrConfig {
            ip: random_v4(0, u8::try_from(i + 1).unwrap_or(1)),
            bindings: [format!("b{i}")].into(),
            services: Services::MULTIVIP,
            preference: rng
                .random_bool(0.2)
                .then(|| format!("n{}", rng.random_range(0..=n))),
            follows: None,
        });
    }
    for f in 0..rng.random_range(0..3usize) {
        let target = base[rng.random_range(0..addresses)].ip;
        base.push(AddrConfig {
            ip: random_v4(1, u8::try_from(f + 1).unwrap_or(1)),
            bindings: BTreeSet::new(),
            services: Services::SMTP,
            preference: None,
            follows: Some(target),
        });
    }
    let perturb = rng.random_bool(0.6);
    let locals = (0..n)
        .map(|i| {
            let mut addrs = Vec::new();
            for a in &base {
                let mut a = a.clone();
                if perturb {
                    if rng.random_bool(0.08) {
                        continue;
                    }
                    if rng.random_bool(0.04) {
                        a.services = Services::ALL;
                    }
                    if rng.random_bool(0.02) && a.follows.is_none() {
                        a.bindings = [format!("wrong-{}", rng.random_range(0..3))].into();
                    }
                    if rng.random_bool(0.03) && a.follows.is_none() {
                        a.preference = Some(format!("n{i}"));
                    }
                }
                addrs.push(a);
            }
            LocalConfig {
                addresses: addrs,
                placement: BTreeMap::new(),
            }
        })
        .collect();
    let params = Params {
        mature_time: Duration::from_millis(rng.random_range(1..=4) * 500),
        balance_interval: Duration::from_secs(rng.random_range(1..=3)),
        broadcast_interval: rng
            .random_bool(0.3)
            .then(|| Duration::from_secs(rng.random_range(3..=10))),
        balance_set_size: rng.random_range(1..=4),
        quorum: None,
        takeover_delay: Duration::ZERO,
    };
    (locals, params)
}

/// Plain addresses 10.9.0.1..=PLAIN.
const PLAIN: u8 = 6;
/// Preferred by n1 on every member.
const PREFERRED: u8 = 7;
/// Preferred by n0 on n0 and by n2 on n2.
const CONFLICT: u8 = 8;
/// Follower address (10.9.1.x) -> the address (10.9.0.x) it follows.
const FOLLOWERS: [(u8, u8); 2] = [(1, 1), (7, PREFERRED)];

fn leader(k: u8) -> IpAddr {
    IpAddr::from([10, 9, 0, k])
}

fn follower(k: u8) -> IpAddr {
    IpAddr::from([10, 9, 1, k])
}

/// The configuration of node `i` of `n`, with short maturity and balancing.
fn config_text(i: usize) -> String {
    let mut text = String::from(
        "cluster { view_mature_time = 0.5 view_balance_interval = 1 duravip_balance_set_size = 2\n\
         Topology \"10.9.0.0/16\" { interface = \"eth0\" } }\n",
    );
    for k in 1..=PLAIN {
        text.push_str(&format!(
            "Binding \"v{k}\" {{ Enable_Duravip = true Bind_Address = \"10.9.0.{k}\" }}\n"
        ));
    }
    text.push_str(&format!(
        "Binding \"p{PREFERRED}\" {{ Enable_Duravip = true Bind_Address = \"10.9.0.{PREFERRED}\" \
         Duravip_Preference = \"n1\" }}\n"
    ));
    let pref = match i {
        0 | 2 => format!("Duravip_Preference = \"n{i}\""),
        _ => String::new(),
    };
    text.push_str(&format!(
        "Binding \"c{CONFLICT}\" {{ Enable_Duravip = true Bind_Address = \"10.9.0.{CONFLICT}\" {pref} }}\n"
    ));
    text.push_str("ESMTP_Listener {\n");
    for (f, l) in FOLLOWERS {
        let name = if l == PREFERRED {
            format!("p{l}")
        } else {
            format!("v{l}")
        };
        text.push_str(&format!(
            "  Listen \"10.9.1.{f}:25\" {{ Duravip_Follow = \"{name}\" }}\n"
        ));
    }
    text.push_str("}\n");
    text
}

/// Each of `n` members' DuraVIP configuration, and the parameters they share.
pub fn config(n: usize) -> (Vec<LocalConfig>, Params) {
    let mut locals = Vec::with_capacity(n);
    let mut params = None;
    for i in 0..n {
        let cfg = cohort_engine::config::load_str(
            std::path::Path::new("sim-duravip.conf"),
            &config_text(i),
        )
        .expect("the simulator's DuraVIP configuration is valid")
        .config;
        locals.push(LocalConfig::from_config(&cfg));
        params.get_or_insert_with(|| Params::from_config(&cfg));
    }
    (locals, params.unwrap_or_default())
}

/// The node the members `present` (node indices) agree to prefer for leader address `k`: the one
/// node their configurations name, when exactly one is named and it is present. Absent members'
/// configurations do not count, so a conflict needs both preferring members in the view.
fn pinned_to(k: u8, present: &[usize]) -> Option<usize> {
    let named: std::collections::BTreeSet<usize> = present
        .iter()
        .filter_map(|&i| match k {
            PREFERRED => Some(1),
            CONFLICT if i == 0 || i == 2 => Some(i),
            _ => None,
        })
        .collect();
    match named.first() {
        Some(&p) if named.len() == 1 && present.contains(&p) => Some(p),
        _ => None,
    }
}

/// Once the view has held, matured and had its balancing rounds, for every configuration
/// ([`tables_agree`]): every member holds the agreed table of one mature view, the table is sane
/// and balanced, and what members hold is what it says. Then, for the fixed configuration
/// (`World::dv_exact`), the exact expectations ([`exact`]), and for every seed, that nothing
/// moves any more (no ping-pong). Returns what the converged tables exercised.
pub fn check(w: &mut World) -> Result<Coverage, String> {
    let Some((locals, params)) = w.duravip.clone() else {
        return Ok(Coverage::default());
    };
    let addresses = locals.iter().map(|l| l.addresses.len()).max().unwrap_or(0);
    let rounds = u32::try_from(addresses + 6).unwrap_or(u32::MAX);
    let deadline = w.now
        + (6 * SEC).max(duration_ns(
            params.mature_time + params.balance_interval * rounds,
        ));
    loop {
        w.run_until(w.now + 500 * MS)?;
        match tables_agree(w) {
            Ok(()) => break,
            Err(e) if w.now >= deadline => return Err(format!("DuraVIP: {e}{}", w.describe())),
            Err(_) => {}
        }
    }
    if w.dv_exact {
        exact(w)?;
    }
    let mut cov = w.dv_coverage.clone();
    let members = w.members();
    if let Some(t) = members
        .first()
        .and_then(|&i| w.nodes[i].cn.as_ref())
        .and_then(|c| c.duravip().table())
    {
        for e in t.entries.values() {
            cov.broken += u64::from(e.broken.is_some());
            cov.conflict += u64::from(e.conflict);
            cov.unsafe_ += u64::from(!e.safe);
            cov.pinned += u64::from(e.pinned());
            cov.followers_owned += u64::from(e.follows.is_some() && e.owner.is_some());
        }
    }
    // Stable and balanced: nothing moves any more (no ping-pong), through re-announcements and
    // further balancing rounds.
    let before = members
        .first()
        .and_then(|&i| w.nodes[i].cn.as_ref())
        .and_then(|c| c.duravip().table().cloned());
    let actions = w.dv_actions;
    let quiet = (3 * SEC).max(duration_ns(params.balance_interval * 3));
    w.run_until(w.now + quiet)?;
    if w.dv_actions != actions {
        return Err(format!(
            "DuraVIP: {} ownership changes in a stable, balanced view",
            w.dv_actions - actions
        ));
    }
    let after = members
        .first()
        .and_then(|&i| w.nodes[i].cn.as_ref())
        .and_then(|c| c.duravip().table().cloned());
    if before != after {
        return Err("DuraVIP: the agreed table changed in a stable, balanced view".into());
    }
    Ok(cov)
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Invariants of any agreed table: a BROKEN address has no owner; an owner is a participant and,
/// unless the address follows another, a candidate; a follower sits with what it follows.
pub fn sane(t: &Table, candidates: &[bool]) -> Result<(), String> {
    for (ip, e) in &t.entries {
        if e.broken.is_some() && e.owner.is_some() {
            return Err(format!("BROKEN {ip} has owner {:?}", e.owner));
        }
        if let Some(o) = e.owner {
            if !e.is_participant(o) {
                return Err(format!("{ip} owned by {o}, not a participant"));
            }
            if e.follows.is_none() && !candidates.get(o).copied().unwrap_or(false) {
                return Err(format!("{ip} owned by {o}, not a candidate"));
            }
        }
        if let Some(f) = e.follows
            && e.broken.is_none()
        {
            let lo = t.owner(f);
            if e.owner.is_some() && e.owner != lo {
                return Err(format!(
                    "follower {ip} at {:?}, leader {f} at {lo:?}",
                    e.owner
                ));
            }
        }
    }
    Ok(())
}

/// The converged checks of any configuration, on the members of the one view: each has the same
/// agreed table of a mature view; every hand-off completed; a BROKEN address is held by no one;
/// a managed address is owned by one of its participants, a follower by what it follows' owner;
/// each address is held by exactly its owner; a present, unconflicted preference is honoured;
/// loads are balanced.
pub fn tables_agree(w: &World) -> Result<(), String> {
    let members = w.members();
    let Some(&first) = members.first() else {
        return Ok(());
    };
    let d0 = w.nodes[first].cn.as_ref().ok_or("down")?.duravip();
    let (_, view) = d0.view().ok_or(format!("n{first} has no view"))?;
    let t = d0.table().ok_or(format!("n{first} has no agreed table"))?;
    if !d0.view_mature() {
        return Err(format!("n{first}: the view never matured"));
    }
    let position: BTreeMap<String, usize> = view
        .iter()
        .enumerate()
        .map(|(k, m)| (m.name.clone(), k))
        .collect();
    let mut held_by: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
    for &i in &members {
        let d = w.nodes[i].cn.as_ref().ok_or("down")?.duravip();
        if d.table() != Some(t) {
            return Err(format!("n{i} and n{first} disagree on the agreed table"));
        }
        if d.held() != &w.nodes[i].held {
            return Err(format!(
                "n{i}: the machine thinks it holds {:?}, its actions say {:?}",
                d.held(),
                w.nodes[i].held
            ));
        }
        let k = *position
            .get(&format!("n{i}"))
            .ok_or(format!("n{i} is not in n{first}'s view"))?;
        for ip in &w.nodes[i].held {
            held_by.entry(*ip).or_default().push(k);
        }
    }
    let candidates = d0.candidates();
    sane(t, &candidates)?;
    for ip in held_by.keys() {
        if !t.entries.contains_key(ip) {
            return Err(format!("{ip} is held but not in the table"));
        }
    }
    for (ip, e) in &t.entries {
        let holders = held_by.get(ip).cloned().unwrap_or_default();
        if !e.settled() {
            return Err(format!("{ip}: hand-off never completed: {e:?}"));
        }
        if e.broken.is_some() {
            if !holders.is_empty() {
                return Err(format!("BROKEN {ip} held by {holders:?}"));
            }
            continue;
        }
        let managed = e.participants.iter().any(|p| p.candidate);
        let expected = match e.follows {
            Some(f) => t.owner(f).filter(|&o| e.is_participant(o)),
            None if managed => {
                let o = e.owner.ok_or(format!("managed {ip} has no owner"))?;
                Some(o)
            }
            None => None,
        };
        if e.owner != expected {
            return Err(format!("{ip}: owner {:?}, expected {expected:?}", e.owner));
        }
        let want: Vec<usize> = e.owner.into_iter().collect();
        if holders != want {
            return Err(format!(
                "{ip}: physically held by {holders:?}, owner {:?}",
                e.owner
            ));
        }
        if let Some(p) = &e.preference
            && !e.conflict
            && e.follows.is_none()
            && let Some(q) = e
                .participants
                .iter()
                .find(|q| view[q.index].name == *p && q.candidate)
            && e.owner != Some(q.index)
        {
            return Err(format!(
                "{ip} prefers {p} (present) but its owner is {:?}",
                e.owner
            ));
        }
    }
    if !t.balanced(&candidates) {
        return Err(format!(
            "not balanced: loads {:?}",
            t.loads(candidates.len())
        ));
    }
    Ok(())
}

/// The fixed configuration's expectations:
/// - every address has exactly one holder among the view's members;
/// - a preferred address is held by its preferred node when that node is a member; the doubly
///   preferred one is marked in conflict on every member exactly when both are members;
/// - followers are held by the holder of what they follow;
/// - loads differ by at most one, where the load of a member is the number of leader addresses it
///   holds that are not pinned to it by a preference (the definition in
///   `cohort_engine::duravip::ownership`), and every member's agreed table has those loads;
fn exact(w: &World) -> Result<(), String> {
    let members = w.members();
    let mut holders: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
    for &i in &members {
        for ip in &w.nodes[i].held {
            holders.entry(*ip).or_default().push(i);
        }
    }
    let all = (1..=CONFLICT)
        .map(leader)
        .chain(FOLLOWERS.iter().map(|(f, _)| follower(*f)));
    let mut holder: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for ip in all {
        match holders.get(&ip).map(Vec::as_slice) {
            Some([h]) => {
                holder.insert(ip, *h);
            }
            h => {
                return Err(format!(
                    "DuraVIP: {ip} has holders {h:?} among the view's members {members:?}{}",
                    w.describe()
                ));
            }
        }
    }
    for k in [PREFERRED, CONFLICT] {
        if let Some(p) = pinned_to(k, &members)
            && holder[&leader(k)] != p
        {
            return Err(format!(
                "DuraVIP: {} is held by n{} although n{p}, its preferred node, is a member {members:?}",
                leader(k),
                holder[&leader(k)]
            ));
        }
    }
    let conflict = members.contains(&0) && members.contains(&2);
    for &i in &members {
        let flagged = w.nodes[i]
            .cn
            .as_ref()
            .and_then(|c| c.duravip().table())
            .and_then(|t| t.entries.get(&leader(CONFLICT)))
            .map(|e| e.conflict);
        if flagged != Some(conflict) {
            return Err(format!(
                "DuraVIP: n{i} marks {} in conflict: {flagged:?}, expected {conflict} (members {members:?})",
                leader(CONFLICT)
            ));
        }
    }
    for (f, l) in FOLLOWERS {
        if holder[&follower(f)] != holder[&leader(l)] {
            return Err(format!(
                "DuraVIP: follower {} is on n{}, what it follows ({}) on n{}",
                follower(f),
                holder[&follower(f)],
                leader(l),
                holder[&leader(l)]
            ));
        }
    }
    let loads: Vec<usize> = members
        .iter()
        .map(|&i| {
            (1..=CONFLICT)
                .filter(|&k| holder[&leader(k)] == i && pinned_to(k, &members) != Some(i))
                .count()
        })
        .collect();
    let (min, max) = (
        loads.iter().min().copied().unwrap_or(0),
        loads.iter().max().copied().unwrap_or(0),
    );
    if max - min > 1 {
        return Err(format!(
            "DuraVIP: loads {loads:?} of members {members:?} differ by more than one"
        ));
    }
    // The machine's own notion of load, in view order, must be the same.
    for &i in &members {
        let Some(d) = w.nodes[i].cn.as_ref().map(|c| c.duravip()) else {
            continue;
        };
        let (Some((_, view)), Some(t)) = (d.view(), d.table()) else {
            return Err(format!("DuraVIP: n{i} has no agreed table"));
        };
        let theirs = t.loads(view.len());
        for (k, &m) in members.iter().enumerate() {
            let name = format!("n{m}");
            let at = view.iter().position(|v| v.name == name);
            if at.map(|a| theirs[a]) != Some(loads[k]) {
                return Err(format!(
                    "DuraVIP: n{i}'s table gives n{m} load {:?}, the checker {}",
                    at.map(|a| theirs[a]),
                    loads[k]
                ));
            }
        }
    }
    Ok(())
}
