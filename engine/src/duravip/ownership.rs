//! The deterministic election and balancing every member of a view runs on the same inputs.
//!
//! Inputs: the view's members in order (index 0 is the leader), each with its announced
//! configuration and whether it may be given addresses (a *candidate*: mature and not withdrawn by
//! `release all`), and for every address its current owner and the members holding it.
//!
//! Rules, applied per address:
//! - **Participants** are the members configured for the address; only they may own it (disjoint
//!   participation, docs 27.4.4).
//! - **BROKEN** (docs 27.4.3), never owned: two participants announce different non-empty sets of
//!   binding names for it; or one of its binding names is bound to another address by some member;
//!   or participants disagree on what it follows; or it follows an address that is BROKEN, itself a
//!   follower, or unknown.
//! - **UNSAFE** (docs 27.4.2): participants announce different services; it is still elected.
//! - **in conflict** (docs 27.4.1): participants name two or more different preferred nodes; the
//!   normal election applies. With exactly one named node that is a candidate participant, that
//!   node owns the address (it is *pinned*), wherever it was before.
//! - Otherwise the current owner (or, after a view change, a current holder, lowest index first)
//!   keeps it while it is a candidate participant: no needless moves.
//! - Every remaining address (an *orphan*), in ascending address order, goes to the candidate
//!   participant with the smallest load, lowest index on ties (Wackamole's `Claim_unclaimed`).
//! - A `Duravip_Follow` address is not elected: it is owned by the owner of the address it follows
//!   when that member is configured for it, else unowned.
//!
//! The *load* of a member is the number of unpinned, non-follower addresses it owns; pinned
//! addresses are where their configuration puts them and do not count. Balancing
//! ([`balance`]) moves unpinned addresses from the most to the least loaded member until no move
//! between two members whose loads differ by more than one is possible.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde::Serialize;

use super::announce::{AddrConfig, Services};
use super::wire::BalanceMove;

/// One member as the election sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contender<'a> {
    pub name: &'a str,
    /// Mature and not withdrawn: may be given addresses.
    pub candidate: bool,
    /// Its announced configuration, strictly ascending by address (empty before it announced).
    pub addresses: &'a [AddrConfig],
}

/// Who owns and who holds an address before an election.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Current {
    pub owner: Option<usize>,
    pub holders: BTreeSet<usize>,
}

/// Why an address is BROKEN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Broken {
    /// Participants announce different binding names for the address.
    BindingNames,
    /// One of its binding names is bound to another address on some member.
    BindingElsewhere,
    /// Participants disagree on which address it follows.
    FollowMismatch,
    /// It follows an address that is BROKEN, a follower itself, or unknown.
    FollowTarget,
}

impl Broken {
    pub fn word(self) -> &'static str {
        match self {
            Broken::BindingNames => "binding_names",
            Broken::BindingElsewhere => "binding_elsewhere",
            Broken::FollowMismatch => "follow_mismatch",
            Broken::FollowTarget => "follow_target",
        }
    }
}

/// A member configured for an address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Participant {
    /// Its index in the view.
    pub index: usize,
    pub services: Services,
    pub candidate: bool,
}

/// The agreed state of one address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Union of the binding names participants announce.
    pub bindings: BTreeSet<String>,
    /// Union of the services participants announce.
    pub services: Services,
    /// The members configured for it, in view order. Empty for an address that someone still
    /// holds but nobody is configured for any more (it is being released).
    pub participants: Vec<Participant>,
    /// False when participants announce different services (UNSAFE).
    pub safe: bool,
    /// Two or more different preferred nodes are named.
    pub conflict: bool,
    pub broken: Option<Broken>,
    /// The one node participants name as preferred, when they agree.
    pub preference: Option<String>,
    /// The view index of that node when it is a candidate participant: the address is pinned there.
    pub preferred: Option<usize>,
    /// The address this one follows.
    pub follows: Option<IpAddr>,
    /// The member that owns it.
    pub owner: Option<usize>,
    /// The members that hold it (plumbed, or told to and not yet reported released). The owner
    /// joins this set only once no one else is in it: that is the hand-off.
    pub holders: BTreeSet<usize>,
}

impl Entry {
    /// The owner holds it and nobody else does.
    pub fn settled(&self) -> bool {
        match self.owner {
            Some(o) => self.holders.len() == 1 && self.holders.contains(&o),
            None => self.holders.is_empty(),
        }
    }

    /// Owned by the node its configuration prefers.
    pub fn pinned(&self) -> bool {
        self.owner.is_some() && self.owner == self.preferred
    }

    pub fn is_participant(&self, index: usize) -> bool {
        self.participants.iter().any(|p| p.index == index)
    }

    fn candidate_participant(&self, index: usize) -> bool {
        self.participants
            .iter()
            .any(|p| p.index == index && p.candidate)
    }
}

/// The ownership table of a view: every address someone is configured for or holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Table {
    pub entries: BTreeMap<IpAddr, Entry>,
}

/// A binding name for case-insensitive comparison, without allocating when it is lower case.
fn fold(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Equal as sets of case-insensitive names.
fn same_names(a: &BTreeSet<String>, b: &BTreeSet<String>) -> bool {
    let norm = |s: &BTreeSet<String>| -> BTreeSet<String> {
        s.iter().map(|x| x.to_ascii_lowercase()).collect()
    };
    a.len() == b.len() && norm(a) == norm(b)
}

/// Runs the election (module docs) and then [`Table::settle`]s the hand-offs it can.
pub fn elect(members: &[Contender<'_>], current: &BTreeMap<IpAddr, Current>) -> Table {
    let mut per_ip: BTreeMap<IpAddr, Vec<(usize, &AddrConfig)>> = BTreeMap::new();
    // Binding name (case-insensitive) -> (first address seen, bound to more than one).
    let mut name_ips: HashMap<Cow<'_, str>, (IpAddr, bool)> = HashMap::new();
    for (i, m) in members.iter().enumerate() {
        for a in m.addresses {
            per_ip.entry(a.ip).or_default().push((i, a));
            for b in &a.bindings {
                name_ips
                    .entry(fold(b))
                    .and_modify(|(first, multi)| *multi |= *first != a.ip)
                    .or_insert((a.ip, false));
            }
        }
    }
    let mut table = Table::default();
    for (ip, parts) in &per_ip {
        let mut bindings: BTreeSet<String> = BTreeSet::new();
        let mut services = Services::default();
        let mut names: Option<&BTreeSet<String>> = None;
        let mut broken = None;
        let mut prefs: BTreeSet<&str> = BTreeSet::new();
        let follows = parts[0].1.follows;
        for (_, a) in parts {
            services = services.union(a.services);
            if !a.bindings.is_empty() {
                match names {
                    Some(n) if *n == a.bindings => {}
                    Some(n) => {
                        bindings.extend(a.bindings.iter().cloned());
                        if !same_names(n, &a.bindings) {
                            broken = Some(Broken::BindingNames);
                        }
                    }
                    None => {
                        bindings.extend(a.bindings.iter().cloned());
                        names = Some(&a.bindings);
                    }
                }
            }
            if a.follows != follows {
                broken = broken.or(Some(Broken::FollowMismatch));
            }
            if let Some(p) = &a.preference {
                prefs.insert(p);
            }
        }
        if broken.is_none()
            && bindings
                .iter()
                .any(|b| name_ips.get(&fold(b)).is_some_and(|(_, multi)| *multi))
        {
            broken = Some(Broken::BindingElsewhere);
        }
        let safe = parts.iter().all(|(_, a)| a.services == parts[0].1.services);
        let conflict = prefs.len() > 1;
        let preference = (prefs.len() == 1 && follows.is_none())
            .then(|| prefs.first().map(|p| (*p).to_owned()))
            .flatten();
        let participants: Vec<Participant> = parts
            .iter()
            .map(|(i, a)| Participant {
                index: *i,
                services: a.services,
                candidate: members[*i].candidate,
            })
            .collect();
        let preferred = preference.as_deref().and_then(|p| {
            participants
                .iter()
                .find(|q| q.candidate && members[q.index].name == p)
                .map(|q| q.index)
        });
        table.entries.insert(
            *ip,
            Entry {
                bindings,
                services,
                participants,
                safe,
                conflict,
                broken,
                preference,
                preferred,
                follows,
                owner: None,
                holders: current
                    .get(ip)
                    .map(|c| c.holders.clone())
                    .unwrap_or_default(),
            },
        );
    }
    // A follower of something that is not a healthy leader cannot be managed.
    let bad_follow: Vec<IpAddr> = table
        .entries
        .iter()
        .filter(|(_, e)| e.broken.is_none())
        .filter_map(|(ip, e)| {
            let target = e.follows?;
            let ok = table
                .entries
                .get(&target)
                .is_some_and(|t| t.broken.is_none() && t.follows.is_none());
            (!ok).then_some(*ip)
        })
        .collect();
    for ip in bad_follow {
        if let Some(e) = table.entries.get_mut(&ip) {
            e.broken = Some(Broken::FollowTarget);
            e.preferred = None;
        }
    }
    // Addresses held by someone but configured by nobody: kept so their holders release them.
    for (ip, c) in current {
        if !c.holders.is_empty() && !table.entries.contains_key(ip) {
            table.entries.insert(
                *ip,
                Entry {
                    bindings: BTreeSet::new(),
                    services: Services::default(),
                    participants: Vec::new(),
                    safe: true,
                    conflict: false,
                    broken: None,
                    preference: None,
                    preferred: None,
                    follows: None,
                    owner: None,
                    holders: c.holders.clone(),
                },
            );
        }
    }

    // Pass 1: pinned addresses and addresses whose owner or holder may keep them.
    let mut load = vec![0usize; members.len()];
    let mut orphans = Vec::new();
    for (ip, e) in table.entries.iter_mut() {
        if e.broken.is_some() || e.follows.is_some() || e.participants.is_empty() {
            continue;
        }
        if let Some(p) = e.preferred {
            e.owner = Some(p);
            continue;
        }
        let cur = current.get(ip);
        let keeper = cur
            .and_then(|c| c.owner)
            .filter(|&o| e.candidate_participant(o))
            .or_else(|| {
                cur.and_then(|c| {
                    c.holders
                        .iter()
                        .copied()
                        .find(|&h| e.candidate_participant(h))
                })
            });
        match keeper {
            Some(k) => {
                e.owner = Some(k);
                load[k] += 1;
            }
            None => orphans.push(*ip),
        }
    }
    // Pass 2: orphans to the least-loaded candidate participant, lowest index on ties.
    for ip in orphans {
        let Some(e) = table.entries.get_mut(&ip) else {
            continue;
        };
        let best = e
            .participants
            .iter()
            .filter(|p| p.candidate)
            .min_by_key(|p| (load[p.index], p.index))
            .map(|p| p.index);
        if let Some(b) = best {
            e.owner = Some(b);
            load[b] += 1;
        }
    }
    table.update_followers();
    table.settle();
    table
}

impl Table {
    /// Gives every healthy follower the owner of the address it follows, when that member is
    /// configured for it.
    pub fn update_followers(&mut self) {
        let owners: BTreeMap<IpAddr, Option<usize>> = self
            .entries
            .iter()
            .filter(|(_, e)| e.follows.is_none())
            .map(|(ip, e)| (*ip, e.owner))
            .collect();
        for e in self.entries.values_mut() {
            if let (Some(t), None) = (e.follows, e.broken) {
                e.owner = owners
                    .get(&t)
                    .copied()
                    .flatten()
                    .filter(|&o| e.is_participant(o));
            }
        }
    }

    /// Completes the hand-offs that can complete: an owner that is not yet a holder becomes one
    /// when nobody else holds the address any more. Returns the addresses whose owner just
    /// became a holder (the owner acquires them). Also forgets addresses nobody is configured for
    /// and nobody holds.
    pub fn settle(&mut self) -> Vec<(IpAddr, usize)> {
        let mut acquired = Vec::new();
        for (ip, e) in self.entries.iter_mut() {
            if let Some(o) = e.owner
                && e.holders.iter().all(|&h| h == o)
                && e.holders.insert(o)
            {
                acquired.push((*ip, o));
            }
        }
        self.entries
            .retain(|_, e| !e.participants.is_empty() || !e.holders.is_empty());
        acquired
    }

    /// The load (unpinned, non-follower addresses owned) of each of `n` members.
    pub fn loads(&self, n: usize) -> Vec<usize> {
        let mut load = vec![0usize; n];
        for e in self.entries.values() {
            if let Some(o) = e.owner
                && e.follows.is_none()
                && !e.pinned()
                && o < n
            {
                load[o] += 1;
            }
        }
        load
    }

    /// The owner of an address.
    pub fn owner(&self, ip: IpAddr) -> Option<usize> {
        self.entries.get(&ip).and_then(|e| e.owner)
    }

    /// May `ip` be moved from `from` to `to` (by a balancing round or a console move)? It must be
    /// a healthy, unpinned leader address owned by `from` whose hand-off is complete, and `to` a
    /// candidate participant other than `from`.
    pub fn may_move(&self, ip: IpAddr, from: usize, to: usize) -> bool {
        self.entries.get(&ip).is_some_and(|e| {
            e.broken.is_none()
                && e.follows.is_none()
                && e.owner == Some(from)
                && from != to
                && !e.pinned()
                && e.settled()
                && e.candidate_participant(to)
        })
    }

    /// Moves `ip` (and its followers) to `to` without checks; callers check [`Table::may_move`].
    /// The old owner stays a holder until its release is delivered.
    pub fn reassign(&mut self, ip: IpAddr, to: usize) {
        if let Some(e) = self.entries.get_mut(&ip) {
            e.owner = Some(to);
        }
        self.update_followers();
    }

    /// Applies moves `(ip, from, to)` in order, each only if [`Table::may_move`] allows it from
    /// `from` (or from the current owner when `from` is `None`), then moves the followers once.
    /// Returns how many were refused.
    pub fn apply_moves(&mut self, moves: &[(IpAddr, Option<usize>, usize)]) -> usize {
        let mut refused = 0;
        for &(ip, from, to) in moves {
            match from.or(self.owner(ip)) {
                Some(from) if self.may_move(ip, from, to) => {
                    if let Some(e) = self.entries.get_mut(&ip) {
                        e.owner = Some(to);
                    }
                }
                _ => refused += 1,
            }
        }
        self.update_followers();
        refused
    }

    /// Removes `member` from the holders of `ips` (its RELEASED message was delivered).
    pub fn released(&mut self, member: usize, ips: &[IpAddr]) {
        for ip in ips {
            if let Some(e) = self.entries.get_mut(ip) {
                e.holders.remove(&member);
            }
        }
    }

    /// The state before the next election: owners and holders of every address.
    pub fn current(&self) -> BTreeMap<IpAddr, Current> {
        self.entries
            .iter()
            .map(|(ip, e)| {
                (
                    *ip,
                    Current {
                        owner: e.owner,
                        holders: e.holders.clone(),
                    },
                )
            })
            .collect()
    }

    /// Is the table balanced: no movable address from a member to another whose load is smaller
    /// by two or more?
    pub fn balanced(&self, candidates: &[bool]) -> bool {
        balance(self, candidates, 1).is_empty()
    }
}

/// One balancing round: up to `max_moves` moves, each from a member to one whose load is smaller
/// by at least two (most loaded giver first, then least loaded taker, lowest indices on ties,
/// lowest address of the giver that the taker may own). Every move lowers the sum of the squared
/// loads, so repeated rounds end, and a round is empty exactly when the table is balanced.
/// Addresses whose hand-off is still under way are not moved.
pub fn balance(table: &Table, candidates: &[bool], max_moves: usize) -> Vec<BalanceMove> {
    let n = candidates.len();
    let mut load = table.loads(n);
    // A deque per giver: the usual pick is its lowest address, taken from the front in O(1), so a
    // round of many moves over 10,240 addresses stays linear.
    let mut units: Vec<std::collections::VecDeque<IpAddr>> =
        vec![std::collections::VecDeque::new(); n];
    for (ip, e) in &table.entries {
        if let Some(o) = e.owner
            && o < n
            && table.may_move_any(*ip, o)
        {
            units[o].push_back(*ip);
        }
    }
    let mut moves = Vec::new();
    'round: while moves.len() < max_moves {
        let mut givers: Vec<usize> = (0..n).filter(|&i| !units[i].is_empty()).collect();
        givers.sort_by_key(|&i| (std::cmp::Reverse(load[i]), i));
        let mut takers: Vec<usize> = (0..n).filter(|&i| candidates[i]).collect();
        takers.sort_by_key(|&i| (load[i], i));
        for &a in &givers {
            for &b in &takers {
                if load[a] < load[b] + 2 {
                    break;
                }
                let pick = units[a].iter().position(|ip| table.may_move(*ip, a, b));
                if let Some(k) = pick {
                    let Some(ip) = units[a].remove(k) else {
                        break 'round;
                    };
                    load[a] -= 1;
                    load[b] += 1;
                    let (Ok(from), Ok(to)) = (u16::try_from(a), u16::try_from(b)) else {
                        // Views are limited to u16 indices when installed; nothing to move.
                        break 'round;
                    };
                    moves.push(BalanceMove { ip, from, to });
                    continue 'round;
                }
            }
        }
        break;
    }
    moves
}

impl Table {
    fn may_move_any(&self, ip: IpAddr, from: usize) -> bool {
        self.entries.get(&ip).is_some_and(|e| {
            e.broken.is_none()
                && e.follows.is_none()
                && e.owner == Some(from)
                && !e.pinned()
                && e.settled()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU time of one election over 16 members x 10,240 addresses (printed, not asserted):
    /// `cargo test --release -p cohort-engine election_cpu_time -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement; run in release mode"]
    fn election_cpu_time() {
        let a: Vec<AddrConfig> = (0..10_240u32)
            .map(|i| AddrConfig {
                ip: IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0001 + i)),
                bindings: [format!("b{i}")].into(),
                services: Services::MULTIVIP,
                preference: None,
                follows: None,
            })
            .collect();
        let names: Vec<String> = (0..16).map(|i| format!("m{i:02}")).collect();
        let members: Vec<Contender<'_>> = names
            .iter()
            .map(|n| Contender {
                name: n,
                candidate: true,
                addresses: &a,
            })
            .collect();
        let start = std::time::Instant::now();
        let rounds = 10u32;
        let mut owned = 0;
        for _ in 0..rounds {
            let t = elect(&members, &BTreeMap::new());
            owned += t.entries.values().filter(|e| e.owner.is_some()).count();
        }
        assert_eq!(owned, 10_240 * 10);
        eprintln!("one election, 16 x 10240: {:?}", start.elapsed() / rounds);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn addr(a: &str, bindings: &[&str]) -> AddrConfig {
        AddrConfig {
            ip: ip(a),
            bindings: bindings.iter().map(|b| (*b).to_owned()).collect(),
            services: Services::MULTIVIP,
            preference: None,
            follows: None,
        }
    }

    fn with_pref(mut a: AddrConfig, p: &str) -> AddrConfig {
        a.preference = Some(p.to_owned());
        a
    }

    struct Fixture {
        names: Vec<String>,
        configs: Vec<Vec<AddrConfig>>,
        candidate: Vec<bool>,
    }

    impl Fixture {
        fn uniform(n: usize, addrs: &[AddrConfig]) -> Fixture {
            Fixture {
                names: (0..n).map(|i| format!("n{i}")).collect(),
                configs: vec![addrs.to_vec(); n],
                candidate: vec![true; n],
            }
        }

        fn elect(&self, current: &BTreeMap<IpAddr, Current>) -> Table {
            let members: Vec<Contender<'_>> = (0..self.names.len())
                .map(|i| Contender {
                    name: &self.names[i],
                    candidate: self.candidate[i],
                    addresses: &self.configs[i],
                })
                .collect();
            elect(&members, current)
        }
    }

    fn many(n: usize) -> Vec<AddrConfig> {
        (0..n)
            .map(|i| {
                let name = format!("b{i}");
                addr(&format!("10.0.0.{}", i + 1), &[name.as_str()])
            })
            .collect()
    }

    fn held_by(pairs: &[(&str, usize)]) -> BTreeMap<IpAddr, Current> {
        pairs
            .iter()
            .map(|(a, h)| {
                (
                    ip(a),
                    Current {
                        owner: None,
                        holders: [*h].into(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn orphans_go_to_least_loaded_lowest_index() {
        let f = Fixture::uniform(3, &many(7));
        let t = f.elect(&BTreeMap::new());
        let owners: Vec<Option<usize>> = t.entries.values().map(|e| e.owner).collect();
        assert_eq!(
            owners,
            [0, 1, 2, 0, 1, 2, 0].map(Some),
            "round robin by load then index"
        );
        assert_eq!(t.loads(3), [3, 2, 2]);
        assert!(
            t.entries.values().all(Entry::settled),
            "nobody else held them"
        );
        assert!(t.balanced(&f.candidate));
    }

    #[test]
    fn holders_keep_their_addresses() {
        let f = Fixture::uniform(3, &many(4));
        let t = f.elect(&held_by(&[("10.0.0.1", 2), ("10.0.0.2", 2)]));
        assert_eq!(t.owner(ip("10.0.0.1")), Some(2));
        assert_eq!(t.owner(ip("10.0.0.2")), Some(2));
        // The others go to the least loaded: 0 then 1.
        assert_eq!(t.owner(ip("10.0.0.3")), Some(0));
        assert_eq!(t.owner(ip("10.0.0.4")), Some(1));
    }

    #[test]
    fn non_candidates_get_nothing_and_lose_what_they_hold() {
        let mut f = Fixture::uniform(2, &many(2));
        f.candidate[1] = false;
        let t = f.elect(&held_by(&[("10.0.0.1", 1)]));
        let e = &t.entries[&ip("10.0.0.1")];
        assert_eq!(e.owner, Some(0));
        assert_eq!(
            e.holders,
            [1].into(),
            "the old holder must release before 0 acquires"
        );
        assert!(!e.settled());
        assert_eq!(t.owner(ip("10.0.0.2")), Some(0));
        f.candidate[0] = false;
        let none = f.elect(&BTreeMap::new());
        assert!(none.entries.values().all(|e| e.owner.is_none()));
    }

    #[test]
    fn handoff_completes_when_release_is_delivered() {
        let mut f = Fixture::uniform(2, &many(1));
        f.candidate[1] = false;
        let mut t = f.elect(&held_by(&[("10.0.0.1", 1)]));
        assert!(t.settle().is_empty(), "1 still holds it");
        t.released(1, &[ip("10.0.0.1")]);
        assert_eq!(t.settle(), vec![(ip("10.0.0.1"), 0)]);
        assert!(t.entries[&ip("10.0.0.1")].settled());
    }

    #[test]
    fn preferred_node_gets_its_address_even_from_a_holder() {
        let a = with_pref(addr("10.0.0.1", &["b1"]), "n2");
        let f = Fixture::uniform(3, &[a]);
        let t = f.elect(&held_by(&[("10.0.0.1", 0)]));
        let e = &t.entries[&ip("10.0.0.1")];
        assert_eq!(
            (e.owner, e.preferred, e.conflict),
            (Some(2), Some(2), false)
        );
        assert!(e.pinned());
        assert_eq!(t.loads(3), [0, 0, 0], "pinned addresses do not count");
        // Preferred node not a candidate (immature): normal election.
        let mut g = Fixture::uniform(3, &[with_pref(addr("10.0.0.1", &["b1"]), "n2")]);
        g.candidate[2] = false;
        let t = g.elect(&held_by(&[("10.0.0.1", 1)]));
        assert_eq!(t.owner(ip("10.0.0.1")), Some(1));
        // Preferred node not configured for the address: ignored.
        let mut h = Fixture::uniform(3, &[with_pref(addr("10.0.0.1", &["b1"]), "n2")]);
        h.configs[2].clear();
        let t = h.elect(&BTreeMap::new());
        assert_eq!(t.owner(ip("10.0.0.1")), Some(0));
        assert_eq!(t.entries[&ip("10.0.0.1")].preferred, None);
    }

    #[test]
    fn two_preferences_are_in_conflict_and_elected_normally() {
        let mut f = Fixture::uniform(3, &[]);
        f.configs[0] = vec![with_pref(addr("10.0.0.1", &["b1"]), "n1")];
        f.configs[1] = vec![with_pref(addr("10.0.0.1", &["b1"]), "n2")];
        f.configs[2] = vec![addr("10.0.0.1", &["b1"])];
        let t = f.elect(&held_by(&[("10.0.0.1", 2)]));
        let e = &t.entries[&ip("10.0.0.1")];
        assert!(e.conflict);
        assert_eq!(e.preferred, None);
        assert_eq!(e.owner, Some(2), "the holder keeps it");
    }

    #[test]
    fn differing_services_are_unsafe_but_elected() {
        let mut f = Fixture::uniform(2, &many(1));
        f.configs[1][0].services = Services::MULTIVIP.union(Services::SMTP);
        let t = f.elect(&BTreeMap::new());
        let e = &t.entries[&ip("10.0.0.1")];
        assert!(!e.safe);
        assert_eq!(e.services, Services::ALL);
        assert_eq!(e.owner, Some(0));
    }

    #[test]
    fn differing_binding_names_are_broken_and_not_managed() {
        let mut f = Fixture::uniform(2, &many(2));
        f.configs[1][0] = addr("10.0.0.1", &["other"]);
        let t = f.elect(&held_by(&[("10.0.0.1", 1)]));
        let e = &t.entries[&ip("10.0.0.1")];
        assert_eq!(e.broken, Some(Broken::BindingNames));
        assert_eq!(e.owner, None, "BROKEN is never owned");
        assert_eq!(e.holders, [1].into(), "its holder must release it");
        // A name bound to two addresses breaks both.
        let mut g = Fixture::uniform(2, &many(2));
        g.configs[1] = vec![addr("10.0.0.3", &["b0"]), addr("10.0.0.2", &["b1"])];
        g.configs[1].sort_by_key(|a| a.ip);
        let t = g.elect(&BTreeMap::new());
        assert_eq!(
            t.entries[&ip("10.0.0.1")].broken,
            Some(Broken::BindingElsewhere)
        );
        assert_eq!(
            t.entries[&ip("10.0.0.3")].broken,
            Some(Broken::BindingElsewhere)
        );
        assert_eq!(t.entries[&ip("10.0.0.2")].broken, None);
        // A listener-only participant (no names) does not break a binding's address.
        let mut h = Fixture::uniform(2, &many(1));
        h.configs[1][0].bindings.clear();
        h.configs[1][0].services = Services::SMTP;
        let t = h.elect(&BTreeMap::new());
        let e = &t.entries[&ip("10.0.0.1")];
        assert_eq!((e.broken, e.safe), (None, false));
    }

    #[test]
    fn followers_go_with_their_leader() {
        let mut follower = addr("10.0.1.1", &[]);
        follower.services = Services::SMTP;
        follower.follows = Some(ip("10.0.0.2"));
        let mut cfg = many(2);
        cfg.push(follower);
        let f = Fixture::uniform(3, &cfg);
        let t = f.elect(&held_by(&[("10.0.0.2", 2)]));
        assert_eq!(t.owner(ip("10.0.1.1")), Some(2));
        // Balancing moves it along with the leader.
        let mut t2 = t.clone();
        t2.reassign(ip("10.0.0.2"), 1);
        assert_eq!(t2.owner(ip("10.0.1.1")), Some(1));
        // An owner not configured for the follower leaves it unowned.
        let mut g = Fixture::uniform(3, &cfg);
        g.configs[2].pop();
        let t = g.elect(&held_by(&[("10.0.0.2", 2)]));
        assert_eq!(t.owner(ip("10.0.1.1")), None);
        // Following an unknown address is BROKEN.
        let mut orphan = addr("10.0.1.2", &[]);
        orphan.follows = Some(ip("10.9.9.9"));
        let h = Fixture::uniform(2, &[orphan]);
        let t = h.elect(&BTreeMap::new());
        assert_eq!(
            t.entries[&ip("10.0.1.2")].broken,
            Some(Broken::FollowTarget)
        );
        assert_eq!(t.owner(ip("10.0.1.2")), None);
    }

    #[test]
    fn disjoint_participation() {
        let mut f = Fixture::uniform(3, &many(3));
        f.configs[0] = vec![addr("10.0.0.1", &["b0"])];
        let t = f.elect(&BTreeMap::new());
        assert_eq!(t.owner(ip("10.0.0.1")), Some(0));
        assert_eq!(t.owner(ip("10.0.0.2")), Some(1));
        assert_eq!(t.owner(ip("10.0.0.3")), Some(2));
        assert!(!t.entries[&ip("10.0.0.2")].is_participant(0));
    }

    #[test]
    fn unconfigured_held_address_is_released_then_forgotten() {
        let f = Fixture::uniform(2, &many(1));
        let mut t = f.elect(&held_by(&[("10.9.0.1", 1)]));
        let e = &t.entries[&ip("10.9.0.1")];
        assert_eq!((e.owner, e.participants.len()), (None, 0));
        t.released(1, &[ip("10.9.0.1")]);
        t.settle();
        assert!(!t.entries.contains_key(&ip("10.9.0.1")));
    }

    #[test]
    fn balancing_moves_at_most_set_size_and_converges() {
        let f = Fixture::uniform(3, &many(9));
        let all_on_zero: BTreeMap<IpAddr, Current> = f.configs[0]
            .iter()
            .map(|a| {
                (
                    a.ip,
                    Current {
                        owner: None,
                        holders: [0].into(),
                    },
                )
            })
            .collect();
        let mut t = f.elect(&all_on_zero);
        assert_eq!(t.loads(3), [9, 0, 0]);
        let mut rounds = 0;
        loop {
            let moves = balance(&t, &f.candidate, 2);
            assert!(moves.len() <= 2);
            if moves.is_empty() {
                break;
            }
            rounds += 1;
            for m in moves {
                assert!(t.may_move(m.ip, usize::from(m.from), usize::from(m.to)));
                t.reassign(m.ip, usize::from(m.to));
                t.released(usize::from(m.from), &[m.ip]);
            }
            t.settle();
        }
        assert_eq!(t.loads(3), [3, 3, 3]);
        assert_eq!(rounds, 3, "six moves, two per round");
        assert!(t.balanced(&f.candidate));
    }

    #[test]
    fn balancing_leaves_pinned_and_unsettled_alone() {
        let mut cfg = many(4);
        for a in &mut cfg {
            *a = with_pref(a.clone(), "n0");
        }
        let f = Fixture::uniform(2, &cfg);
        let t = f.elect(&BTreeMap::new());
        assert_eq!(t.loads(2), [0, 0]);
        assert!(balance(&t, &f.candidate, 10).is_empty(), "all pinned");
        // Unsettled: owner 0, still held by 1.
        let mut g = Fixture::uniform(2, &many(4));
        g.candidate[1] = false;
        let t = g.elect(&held_by(&[("10.0.0.1", 1)]));
        assert!(!t.may_move(ip("10.0.0.1"), 0, 1));
    }

    #[test]
    fn balancing_respects_disjoint_participation() {
        // Member 1 is configured only for the first address; 0 owns all 5 and cannot give more.
        let mut f = Fixture::uniform(2, &many(5));
        f.configs[1].truncate(1);
        let held: Vec<(String, usize)> = (1..=5).map(|i| (format!("10.0.0.{i}"), 0)).collect();
        let pairs: Vec<(&str, usize)> = held.iter().map(|(a, h)| (a.as_str(), *h)).collect();
        let t = f.elect(&held_by(&pairs));
        let moves = balance(&t, &f.candidate, 10);
        assert_eq!(
            moves,
            vec![BalanceMove {
                ip: ip("10.0.0.1"),
                from: 0,
                to: 1
            }]
        );
    }
}
