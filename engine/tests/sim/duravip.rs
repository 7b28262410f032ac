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

use std::collections::BTreeMap;
use std::net::IpAddr;

use cohort_engine::duravip::{LocalConfig, Params};

use crate::world::{SEC, World};

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
        params.get_or_insert_with(|| Params::from_cluster(&cfg.cluster));
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

/// Once the view has held, matured and had its balancing rounds:
/// - every address has exactly one holder among the view's members;
/// - a preferred address is held by its preferred node when that node is a member; the doubly
///   preferred one is marked in conflict on every member exactly when both are members;
/// - followers are held by the holder of what they follow;
/// - loads differ by at most one, where the load of a member is the number of leader addresses it
///   holds that are not pinned to it by a preference (the definition in
///   `cohort_engine::duravip::ownership`), and every member's agreed table has those loads;
/// - then nothing moves (no ping-pong).
pub fn check(w: &mut World) -> Result<(), String> {
    if w.duravip.is_none() {
        return Ok(());
    }
    w.run_until(w.now + 6 * SEC)?;
    let members: Vec<usize> = (0..w.nodes.len())
        .filter(|&i| w.nodes[i].cn.is_some() && !w.nodes[i].stuck)
        .collect();
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
    // Stable and balanced: nothing moves any more (no ping-pong).
    let actions = w.dv_actions;
    w.run_until(w.now + 3 * SEC)?;
    if w.dv_actions != actions {
        return Err(format!(
            "DuraVIP: {} ownership changes in a stable, balanced view",
            w.dv_actions - actions
        ));
    }
    Ok(())
}
