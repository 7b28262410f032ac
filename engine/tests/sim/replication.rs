//! Replicated objects over the simulated group: every member runs a [`Replicator`] on its own
//! views and FIFO messages, as the daemon does, and applies random increments and decrements to a
//! CIDR tree and a gauge table while the faults happen. Once the cluster is quiet,
//! [`check_replication`] verifies the convergence invariant: every member's global view equals
//! the sum of the live members' local state, for every prefix and key and for blocks above them.
//!
//! The batches ride the cluster group as the node machine's replication channel, next to DuraVIP's
//! messages, exactly as in the daemon.

use std::collections::BTreeMap;
use std::time::Duration;

use cohort_engine::group::MemberId;
use cohort_engine::node::replication_member;
use cohort_engine::replicate::{self, ObjectKind, ObjectSettings, Replicator, Rows, View};
use ipnet::IpNet;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use crate::world::{SEC, World};

const CIDR: &str = "inbound_cidr";
const GAUGE: &str = "outbound_domains";

/// How a seed replicates: the objects' batching settings.
pub struct Settings {
    pub max_delay: Duration,
    pub max_pending: usize,
    /// Updates are applied while true; [`check_replication`] turns them off to let things settle.
    pub updating: bool,
    /// The updates' own random stream, so that the seed's scenario draws stay as they were.
    pub rng: ChaCha8Rng,
}

impl Settings {
    /// Random batching for `seed`: `max_delay` 100-500 ms, `max_pending` 5-40, so both flush
    /// rules fire.
    pub fn for_seed(seed: u64) -> Settings {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7e91_1ca7e);
        Settings {
            max_delay: Duration::from_millis(rng.random_range(100..500)),
            max_pending: rng.random_range(5..40),
            updating: true,
            rng,
        }
    }
}

fn now(w: &World, i: usize) -> Duration {
    Duration::from_nanos(w.nodes[i].local(w.now).as_nanos())
}

/// The replicated objects of a new incarnation `me` (hook for `World::start`): the seed's
/// objects, or none when it does not replicate.
pub fn replicator(w: &World, me: &MemberId) -> Result<Replicator, String> {
    let settings: Vec<ObjectSettings> = match &w.replication {
        None => Vec::new(),
        Some(s) => [
            (CIDR, ObjectKind::InboundCidr),
            (GAUGE, ObjectKind::OutboundDomains),
        ]
        .into_iter()
        .map(|(name, kind)| {
            let mut o = ObjectSettings::new(name, kind);
            o.max_delay = s.max_delay;
            o.max_pending = s.max_pending;
            o
        })
        .collect(),
    };
    // A small MTU so that snapshots span several messages.
    Replicator::new(replication_member(me), settings, 600, false).map_err(|e| e.to_string())
}

/// Keys the updates pick from: a few IPv4 hosts in two /24s, an IPv6 host, and gauge keys.
fn net(k: u32) -> IpNet {
    match k % 9 {
        8 => format!("2001:db8::{}/128", k % 3 + 1),
        j => format!("10.{}.{}.{}/32", j % 2, j % 3, k % 5 + 1),
    }
    .parse()
    .expect("a valid host prefix")
}

/// Node `i` applies a few random increments and decrements (hook for the application's send
/// turn in `World::app_step`).
pub fn update(w: &mut World, i: usize) -> Result<(), String> {
    let t = now(w, i);
    let Some(s) = w.replication.as_mut().filter(|s| s.updating) else {
        return Ok(());
    };
    // One send turn in ten carries a few updates: enough to be in flight through every fault,
    // few enough that the seeds stay quick.
    if !s.rng.random_bool(0.1) {
        return Ok(());
    }
    let n = s.rng.random_range(1..=6);
    for _ in 0..n {
        let k: u32 = s.rng.random_range(0..64);
        let delta: i64 = s.rng.random_range(-3..=4);
        let cidr = s.rng.random_bool(0.7);
        let Some(r) = w.nodes[i].replicator() else {
            return Ok(());
        };
        let objects = r
            .lock()
            .map_err(|_| "replicator poisoned")?
            .objects()
            .clone();
        let res = if cidr {
            objects.cidr_add(CIDR, net(k), delta, t)
        } else {
            objects.gauge_add(GAUGE, &format!("d{}.example", k % 7), delta, t)
        };
        res.map_err(|e| format!("n{i} update: {e}"))?;
    }
    Ok(())
}

/// Non-zero rows of `object` as a map, from `member`'s contribution or (None) the global view.
/// CIDR rows are kept for host prefixes only: those hold exactly their own count, while the
/// count shown on a branch point depends on which prefixes the tree has met (blocks are checked
/// with counts, which add up whatever the shape).
fn rows(r: &Replicator, object: &str, who: Option<&replicate::MemberId>) -> BTreeMap<String, i64> {
    let rows = r
        .rows(object, who, Duration::ZERO)
        .expect("the object is configured");
    let pairs: Vec<(String, i64)> = match rows {
        Rows::Cidr(v) => v
            .into_iter()
            .filter(|(n, _)| n.prefix_len() == n.max_prefix_len())
            .map(|(n, c)| (n.to_string(), c))
            .collect(),
        Rows::Table(v) => v.into_iter().map(|(k, c)| (format!("{k:?}"), c)).collect(),
        Rows::Cache(_) => Vec::new(),
    };
    let mut out = BTreeMap::new();
    for (k, c) in pairs {
        *out.entry(k).or_insert(0) += c;
    }
    out.retain(|_, c| *c != 0);
    out
}

/// Every prefix in any of `reps`' CIDR trees (global and local), for block counts.
fn prefixes(reps: &[&Replicator]) -> Vec<IpNet> {
    let mut out = std::collections::BTreeSet::new();
    for r in reps {
        for who in [None, Some(r.me())] {
            if let Ok(Rows::Cidr(v)) = r.rows(CIDR, who, Duration::ZERO) {
                out.extend(v.into_iter().map(|(n, _)| n));
            }
        }
    }
    out.into_iter().collect()
}

/// Once the cluster is quiet (updates stopped, batches delivered): every member of the view holds
/// as its global view exactly the sum of the members' local contributions, row by row and for
/// blocks (one walk each), and each member's copy of another's contribution equals that member's
/// own.
pub fn check_replication(w: &mut World) -> Result<(), String> {
    let Some(s) = w.replication.as_mut() else {
        return Ok(());
    };
    s.updating = false;
    let settle = s.max_delay.as_nanos() as u64 + SEC;
    w.run_until(w.now + settle)?;
    let members: Vec<usize> = (0..w.nodes.len())
        .filter(|&i| w.nodes[i].cn.is_some() && !w.nodes[i].stuck)
        .collect();
    let guards: Vec<_> = members
        .iter()
        .map(|&i| {
            w.nodes[i]
                .replicator()
                .expect("filtered")
                .lock()
                .expect("replicator")
        })
        .collect();
    let reps: Vec<&Replicator> = guards.iter().map(|g| &**g).collect();
    let mut blocks: Vec<IpNet> = [
        "10.0.0.0/8",
        "10.0.0.0/16",
        "10.1.2.0/24",
        "0.0.0.0/0",
        "2001:db8::/32",
        "::/0",
    ]
    .iter()
    .map(|b| b.parse().expect("a valid block"))
    .collect();
    for object in [CIDR, GAUGE] {
        let mut want: BTreeMap<String, i64> = BTreeMap::new();
        for r in &reps {
            for (k, c) in rows(r, object, Some(r.me())) {
                *want.entry(k).or_insert(0) += c;
            }
        }
        want.retain(|_, c| *c != 0);
        for (&i, r) in members.iter().zip(&reps) {
            let got = rows(r, object, None);
            if got != want {
                let diff: Vec<String> = want
                    .keys()
                    .chain(got.keys())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .filter(|k| want.get(*k) != got.get(*k))
                    .take(8)
                    .map(|k| {
                        format!(
                            "{k}: global {:?}, members' sum {:?}",
                            got.get(k),
                            want.get(k)
                        )
                    })
                    .collect();
                return Err(format!(
                    "replication: n{i}'s global view of {object} is not the sum of the live members' contributions ({} rows differ: {diff:?}; members {members:?}){}",
                    diff.len(),
                    w.describe()
                ));
            }
            for other in &reps {
                let theirs = rows(other, object, Some(other.me()));
                let copy = rows(r, object, Some(other.me()));
                if theirs != copy {
                    return Err(format!(
                        "replication: n{i}'s copy of {}'s contribution to {object} differs from it: {copy:?} vs {theirs:?}",
                        other.me()
                    ));
                }
            }
        }
    }
    blocks.extend(prefixes(&reps));
    for block in blocks {
        let want: i64 = reps
            .iter()
            .map(|r| {
                r.objects()
                    .cidr_count(CIDR, block, View::Local)
                    .expect("cidr")
            })
            .sum();
        for (&i, r) in members.iter().zip(&reps) {
            let got = r
                .objects()
                .cidr_count(CIDR, block, View::Global)
                .expect("cidr");
            if got != want {
                return Err(format!(
                    "replication: n{i} counts {got} in {block}, the live members' contributions sum to {want}"
                ));
            }
        }
    }
    Ok(())
}
