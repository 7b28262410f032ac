//! DuraVIP's rules, scenario by scenario, on node machines over the simulated transport: cold
//! start and maturity, fail-over at once, a joiner balanced `duravip_balance_set_size` addresses
//! per round, preferences, console moves, `release all` and `announce view`, followers,
//! re-announcement without moves, and 512 addresses over 16 members. These were the DuraVIP-only
//! simulator's scenarios; here they run on the composition the daemon runs, with real views,
//! real agreed delivery and timing.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use cohort_engine::console::render::Render;
use cohort_engine::duravip::{AddrConfig, LocalConfig, Params, Services};
use cohort_engine::node::Command;

use crate::world::{MS, SEC, World};
use crate::{duravip, run_until_converged, sim_config};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// `n` plain addresses 10.0.0.1.. with bindings `b0`..
fn addrs(n: usize) -> Vec<AddrConfig> {
    (0..n)
        .map(|i| AddrConfig {
            ip: IpAddr::V4(Ipv4Addr::from(0x0a00_0001 + u32::try_from(i).unwrap_or(0))),
            bindings: [format!("b{i}")].into(),
            services: Services::MULTIVIP,
            preference: None,
            follows: None,
        })
        .collect()
}

/// Momentum's defaults (maturity 5 s, a balancing round every 10 s) and `set` moves per round.
fn params(set: usize) -> Params {
    Params {
        mature_time: Duration::from_secs(5),
        balance_interval: Duration::from_secs(10),
        broadcast_interval: None,
        balance_set_size: set,
        quorum: None,
        takeover_delay: Duration::ZERO,
    }
}

/// `n` members configured alike, quiet apart from DuraVIP (no application traffic).
fn world(seed: u64, n: usize, a: &[AddrConfig], params: Params) -> World {
    let local = LocalConfig {
        addresses: a.to_vec(),
        placement: BTreeMap::new(),
    };
    let mut w = World::new(seed, n, sim_config(), None);
    w.duravip = Some((vec![local; n], params));
    for node in &mut w.nodes {
        node.sends = false;
    }
    w
}

/// Starts `nodes` and runs until they form one view; returns when it formed.
fn start(w: &mut World, nodes: &[usize]) -> u64 {
    for &i in nodes {
        w.start(i).expect("start");
    }
    run_until_converged(w, 10 * SEC, "formation").expect("one view")
}

fn held(w: &World, i: usize) -> usize {
    w.nodes[i].held.len()
}

fn holds(w: &World, i: usize, a: &str) -> bool {
    w.nodes[i].held.contains(&ip(a))
}

fn loads(w: &World) -> Vec<usize> {
    w.members().into_iter().map(|i| held(w, i)).collect()
}

#[test]
fn cold_start_assigns_nothing_until_the_view_matures() {
    let mut w = world(1, 3, &addrs(7), params(1));
    let formed = start(&mut w, &[0, 1, 2]);
    w.run_until(formed + 4500 * MS).expect("run");
    assert_eq!(loads(&w), [0, 0, 0], "nothing before the view matures");
    assert!(w.nodes.iter().all(|n| {
        let d = n.cn.as_ref().expect("up").duravip();
        !d.view_mature()
            && d.table()
                .is_some_and(|t| t.entries.values().all(|e| e.owner.is_none()))
    }));
    w.run_until(formed + 6 * SEC).expect("run");
    let mut l = loads(&w);
    l.sort();
    assert_eq!(l, [2, 2, 3], "seven addresses, loads within one");
    duravip::tables_agree(&w).expect("converged");
    // The console's view of it, on the holder of 10.0.0.1.
    let h = (0..3).find(|&i| holds(&w, i, "10.0.0.1")).expect("held");
    let d = w.nodes[h].cn.as_ref().expect("up").duravip();
    let text = d.status(w.nodes[h].local(w.now)).text();
    assert!(
        text.starts_with("DuraVIP State:\n10.0.0.1/b0: (owned,safe) multivip\n\t[view stable for "),
        "{text}"
    );
    assert!(text.contains(&format!(" *  \tn{h} multivip\n")), "{text}");
}

#[test]
fn a_crashed_owners_addresses_move_at_once() {
    let mut w = world(2, 3, &addrs(6), params(1));
    let formed = start(&mut w, &[0, 1, 2]);
    w.run_until(formed + 6 * SEC).expect("run");
    let lost = w.nodes[1].held.clone();
    assert_eq!(lost.len(), 2);
    w.crash(1);
    run_until_converged(&mut w, 10 * SEC, "after the crash").expect("two members");
    // No maturity wait: the survivors' view is mature at once, so the addresses move within a
    // turn or two of the view.
    w.run_until(w.now + 100 * MS).expect("run");
    for a in &lost {
        assert!(
            w.nodes[0].held.contains(a) ^ w.nodes[2].held.contains(a),
            "{a} has one new holder"
        );
    }
    assert_eq!(loads(&w), [3, 3]);
    w.run_until(w.now + 12 * SEC).expect("run");
    duravip::tables_agree(&w).expect("converged");
}

#[test]
fn a_joiner_waits_for_maturity_then_balancing_moves_set_size_per_round() {
    let mut w = world(3, 3, &addrs(12), params(2));
    let formed = start(&mut w, &[0, 1]);
    w.run_until(formed + 6 * SEC).expect("run");
    assert_eq!(loads(&w), [6, 6]);
    w.start(2).expect("join");
    let joined = run_until_converged(&mut w, 10 * SEC, "the join").expect("three members");
    // Watch the joiner's load: it grows by the set size per round, the first round after the
    // view matured, the next ones a balancing interval apart, until the loads are equal.
    let mut steps: Vec<(u64, usize)> = Vec::new();
    let mut last = held(&w, 2);
    assert_eq!(last, 0, "an immature joiner gets nothing");
    while w.now < joined + 60 * SEC {
        w.run_until(w.now + 50 * MS).expect("run");
        let now = held(&w, 2);
        if now != last {
            steps.push((w.now - joined, now));
            last = now;
        }
    }
    let secs: Vec<(f64, usize)> = steps
        .iter()
        .map(|(t, l)| (*t as f64 / SEC as f64, *l))
        .collect();
    eprintln!("joiner's load over time since the view: {secs:?}");
    assert_eq!(
        steps.iter().map(|s| s.1).collect::<Vec<_>>(),
        [2, 4],
        "two moves per round, then balanced"
    );
    assert!(steps[0].0 >= 5 * SEC, "not before the view matured");
    assert!(
        steps[1].0 - steps[0].0 >= 9500 * MS,
        "rounds a balancing interval apart"
    );
    assert_eq!(loads(&w), [4, 4, 4]);
    duravip::tables_agree(&w).expect("converged");
}

#[test]
fn a_preferred_node_gets_its_address_back_once_mature() {
    let mut a = addrs(3);
    a[1].preference = Some("n1".into());
    let mut w = world(4, 2, &a, params(1));
    let formed = start(&mut w, &[0, 1]);
    w.run_until(formed + 6 * SEC).expect("run");
    assert!(holds(&w, 1, "10.0.0.2"));
    w.crash(1);
    run_until_converged(&mut w, 10 * SEC, "after the crash").expect("alone");
    w.run_until(w.now + 100 * MS).expect("run");
    assert!(holds(&w, 0, "10.0.0.2"), "fail-over");
    w.start(1).expect("restart");
    let back = run_until_converged(&mut w, 10 * SEC, "the restart").expect("two members");
    w.run_until(back + 4 * SEC).expect("run");
    assert!(
        holds(&w, 0, "10.0.0.2"),
        "the restarted n1 is not mature yet"
    );
    w.run_until(back + 6 * SEC).expect("run");
    assert!(holds(&w, 1, "10.0.0.2"), "preference honoured once mature");
    assert!(!holds(&w, 0, "10.0.0.2"));
    let loads_now = loads(&w);
    assert_eq!(
        loads_now,
        [2, 1],
        "n0 holds both unpinned addresses until a round"
    );
    w.run_until(back + 18 * SEC).expect("run");
    duravip::tables_agree(&w).expect("converged after one balancing round");
}

#[test]
fn console_move_release_all_and_announce() {
    let mut w = world(5, 2, &addrs(2), params(1));
    let formed = start(&mut w, &[0, 1]);
    w.run_until(formed + 6 * SEC).expect("run");
    let h = usize::from(!holds(&w, 0, "10.0.0.1"));
    let o = 1 - h;
    assert!(holds(&w, h, "10.0.0.1"));
    let unknown = w
        .command(
            o,
            Command::DuravipMove {
                ip: ip("10.0.0.9"),
                node: format!("n{o}"),
            },
        )
        .expect_err("not a DuraVIP address");
    assert!(unknown.contains("10.0.0.9"), "{unknown}");
    let nobody = w
        .command(
            o,
            Command::DuravipMove {
                ip: ip("10.0.0.1"),
                node: "zz".into(),
            },
        )
        .expect_err("no such member");
    assert!(nobody.contains("zz"), "{nobody}");
    w.command(
        o,
        Command::DuravipMove {
            ip: ip("10.0.0.1"),
            node: format!("n{o}"),
        },
    )
    .expect("a valid move");
    w.run_until(w.now + 500 * MS).expect("run");
    assert!(
        holds(&w, o, "10.0.0.1") && !holds(&w, h, "10.0.0.1"),
        "moved"
    );
    // release all on o: h takes everything, o stays out across later rounds.
    w.command(o, Command::DuravipReleaseAll)
        .expect("release all");
    w.run_until(w.now + 60 * SEC).expect("run");
    assert_eq!((held(&w, h), held(&w, o)), (2, 0));
    let d = w.nodes[o].cn.as_ref().expect("up").duravip();
    assert!(d.status(w.nodes[o].local(w.now)).node_withdrawn);
    // announce view brings it back; balancing gives it one address.
    w.command(o, Command::DuravipAnnounce).expect("announce");
    w.run_until(w.now + 20 * SEC).expect("run");
    assert_eq!((held(&w, h), held(&w, o)), (1, 1));
    duravip::tables_agree(&w).expect("converged");
}

#[test]
fn followers_stay_with_their_binding() {
    let mut a = addrs(4);
    a.push(AddrConfig {
        ip: ip("10.0.1.1"),
        bindings: Default::default(),
        services: Services::SMTP,
        preference: None,
        follows: Some(ip("10.0.0.3")),
    });
    let mut w = world(6, 3, &a, params(1));
    let formed = start(&mut w, &[0, 1, 2]);
    w.run_until(formed + 6 * SEC).expect("run");
    for i in 0..3 {
        assert_eq!(holds(&w, i, "10.0.0.3"), holds(&w, i, "10.0.1.1"), "n{i}");
    }
    let holder = (0..3).find(|&i| holds(&w, i, "10.0.0.3")).expect("owned");
    w.crash(holder);
    run_until_converged(&mut w, 10 * SEC, "after the crash").expect("two members");
    w.run_until(w.now + 100 * MS).expect("run");
    let new = (0..3)
        .find(|&i| holds(&w, i, "10.0.0.3"))
        .expect("failed over");
    assert_ne!(new, holder);
    assert!(holds(&w, new, "10.0.1.1"), "the follower went along");
}

#[test]
fn broadcast_interval_reannounces_without_moving_anything() {
    let mut p = params(1);
    p.broadcast_interval = Some(Duration::from_secs(3));
    let mut w = world(7, 2, &addrs(4), p);
    let formed = start(&mut w, &[0, 1]);
    w.run_until(formed + 6 * SEC).expect("run");
    let elections = |w: &World| {
        w.nodes[0]
            .cn
            .as_ref()
            .expect("up")
            .duravip()
            .stats()
            .elections
    };
    let before = elections(&w);
    let actions = w.dv_actions;
    w.run_until(w.now + 30 * SEC).expect("run");
    assert!(
        elections(&w) >= before + 10,
        "two members re-announce every 3 s: {} elections",
        elections(&w) - before
    );
    assert_eq!(w.dv_actions, actions, "nothing moved");
}

/// 16 members and 512 addresses: a crash fails everything over at once; a restart is balanced in
/// rounds of the set size (32 moves to the joiner, 8 per round) after its view matures.
#[test]
fn five_hundred_addresses_over_sixteen_members() {
    let p = Params {
        mature_time: Duration::from_secs(1),
        balance_interval: Duration::from_secs(2),
        broadcast_interval: None,
        balance_set_size: 8,
        quorum: None,
        takeover_delay: Duration::ZERO,
    };
    let mut w = world(8, 16, &addrs(512), p);
    let all: Vec<usize> = (0..16).collect();
    let formed = start(&mut w, &all);
    w.run_until(formed + 3 * SEC).expect("run");
    assert!(loads(&w).iter().all(|&l| l == 32), "{:?}", loads(&w));
    w.crash(5);
    run_until_converged(&mut w, 10 * SEC, "after the crash").expect("15 members");
    // At once: within a few network round trips of the new view (the election's messages).
    let view = w.now;
    while loads(&w).iter().sum::<usize>() < 512 && w.now < view + 300 * MS {
        w.run_until(w.now + 10 * MS).expect("run");
    }
    assert_eq!(
        loads(&w).iter().sum::<usize>(),
        512,
        "everything failed over at once"
    );
    w.start(5).expect("restart");
    let joined = run_until_converged(&mut w, 10 * SEC, "the restart").expect("16 members");
    let deadline = joined + 20 * SEC;
    while loads(&w).iter().any(|&l| l != 32) {
        assert!(w.now < deadline, "not balanced: {:?}", loads(&w));
        w.run_until(w.now + 100 * MS).expect("run");
    }
    let took = (w.now - joined) as f64 / SEC as f64;
    eprintln!("512 addresses / 16 members: the joiner was balanced {took:.1} s after its view");
    // Maturity (1 s) and four rounds of eight, two seconds apart.
    assert!(took >= 6.0, "faster than four rounds allow: {took:.1} s");
    duravip::tables_agree(&w).expect("converged");
}

/// Each address's holders among live members.
fn holders(w: &World, a: &[AddrConfig]) -> Vec<usize> {
    a.iter()
        .map(|c| {
            w.live()
                .iter()
                .filter(|&&i| w.nodes[i].held.contains(&c.ip))
                .count()
        })
        .collect()
}

/// `duravip_quorum = majority`: an isolated member (1 of 3) releases what it holds and claims
/// nothing while the other two take everything, so each address has exactly one holder once both
/// sides installed their views; after the heal one view places each address once. Without the
/// quorum (Momentum's behaviour) the isolated member claims every address for itself.
#[test]
fn a_minority_view_is_fenced_under_duravip_quorum_majority() {
    for quorum in [Some(2), None] {
        let a = addrs(6);
        let mut w = world(
            31,
            3,
            &a,
            Params {
                quorum,
                ..params(3)
            },
        );
        let formed = start(&mut w, &[0, 1, 2]);
        w.run_until(formed + 6 * SEC).expect("run");
        assert_eq!(loads(&w), [2, 2, 2]);
        w.faults.sides = Some(vec![0, 0, 1]);
        let cut = w.now;
        let split = |w: &World| {
            let v = |i: usize| w.nodes[i].ep().expect("live").view().members.len();
            v(0) == 2 && v(1) == 2 && v(2) == 1
        };
        while !split(&w) {
            assert!(w.now < cut + 4 * SEC, "views split:{}", w.describe());
            w.run_until(w.now + 10 * MS).expect("run");
        }
        w.run_until(w.now + 100 * MS).expect("run");
        let isolated = w.nodes[2].cn.as_ref().expect("up").duravip();
        match quorum {
            Some(_) => {
                assert!(isolated.fenced());
                assert!(
                    isolated
                        .status(w.nodes[2].local(w.now))
                        .text()
                        .contains("[fenced:")
                );
                for _ in 0..50 {
                    w.run_until(w.now + 100 * MS).expect("run");
                    assert_eq!(held(&w, 2), 0, "the fenced member holds nothing");
                    assert_eq!(
                        holders(&w, &a),
                        [1; 6],
                        "one holder per address during the cut"
                    );
                }
            }
            None => {
                w.run_until(w.now + 5 * SEC).expect("run");
                assert_eq!(
                    held(&w, 2),
                    6,
                    "Momentum: the isolated member takes everything"
                );
                assert_eq!(held(&w, 0) + held(&w, 1), 6);
            }
        }
        w.faults.sides = None;
        run_until_converged(&mut w, 15 * SEC, "after the heal").expect("one view");
        let healed = w.now;
        while w.now < healed + 30 * SEC && loads(&w) != [2, 2, 2] {
            w.run_until(w.now + 100 * MS).expect("run");
        }
        eprintln!(
            "quorum {quorum:?}: balanced {:.1}s after the heal",
            (w.now - healed) as f64 / SEC as f64
        );
        assert_eq!(holders(&w, &a), [1; 6], "every address once after the heal");
        assert!(!w.nodes[2].cn.as_ref().expect("up").duravip().fenced());
        duravip::tables_agree(&w).expect("converged");
    }
}
