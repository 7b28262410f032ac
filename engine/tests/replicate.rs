//! Replication end to end over an in-memory transport: the console samples rebuilt from three
//! members' traffic, and the convergence invariant under random updates, joins, leaves and
//! delivery interleavings.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use cohort_engine::console::render::Render;
use cohort_engine::replicate::report::{ReportError, shared_show as show_status};

/// `cluster shared show` as the console prints it.
fn shared_show(
    r: &Replicator,
    object: &str,
    from: Option<&str>,
    now: Duration,
) -> Result<String, ReportError> {
    show_status(r, object, from, now).map(|s| s.text())
}
use cohort_engine::replicate::throttle::ThrottleSpec;
use cohort_engine::replicate::{
    Destination, MemberId, Monitor, ObjectKind, ObjectSettings, Outbound, Replicator, Rows,
    SeriesItem, ThrottleKind, View,
};
use ipnet::IpNet;
use proptest::prelude::*;

fn settings() -> Vec<ObjectSettings> {
    let mut out: Vec<ObjectSettings> = [
        "inbound_cidr",
        "outbound_cidr",
        "outbound_domains",
        "shared_named_throttles",
    ]
    .iter()
    .map(|n| ObjectSettings::new(n, ObjectKind::from_name(n).unwrap()))
    .collect();
    let mut cache = ObjectSettings::new("mycache", ObjectKind::Cache);
    cache.snapshot = true;
    out.push(cache);
    let mut metrics = ObjectSettings::new("metrics", ObjectKind::Metrics);
    metrics.monitors = vec![Monitor {
        window: 10,
        windows: 3,
    }];
    out.push(metrics);
    out
}

/// Messages from one sender to one receiver, in order, with the sender's sequence numbers.
type Queue = VecDeque<(u64, Vec<u8>)>;

/// Members, their views (one per partition component), per-(sender, receiver) FIFO queues,
/// and a virtual clock.
struct Cluster {
    nodes: BTreeMap<MemberId, Replicator>,
    views: Vec<Vec<MemberId>>,
    /// Messages in flight, tagged with the sender's sequence number.
    queues: BTreeMap<(MemberId, MemberId), Queue>,
    sent: BTreeMap<MemberId, u64>,
    now: Duration,
    next: u32,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            nodes: BTreeMap::new(),
            views: Vec::new(),
            queues: BTreeMap::new(),
            sent: BTreeMap::new(),
            now: Duration::from_secs(1_700_000_000),
            next: 0,
        }
    }

    fn spawn(&mut self, name: &str) -> MemberId {
        self.spawn_with(name, settings(), Outbound::default())
    }

    fn spawn_with(
        &mut self,
        name: &str,
        settings: Vec<ObjectSettings>,
        outbound: Outbound,
    ) -> MemberId {
        let id = MemberId::new(name);
        let mut r = Replicator::new(id.clone(), settings, 1400, false).unwrap();
        r.set_outbound(outbound);
        self.nodes.insert(id.clone(), r);
        id
    }

    fn collect(&mut self, from: &MemberId) {
        let view = self.view_of(from);
        let Some(node) = self.nodes.get_mut(from) else {
            return;
        };
        while let Some(t) = node.poll_transmit() {
            assert_eq!(t.destination, Destination::Cluster);
            assert!(t.payload.len() <= 1400);
            let seq = self.sent.entry(from.clone()).or_default();
            *seq += 1;
            for to in &view {
                if to != from {
                    self.queues
                        .entry((from.clone(), to.clone()))
                        .or_default()
                        .push_back((*seq, t.payload.clone()));
                }
            }
        }
    }

    fn collect_all(&mut self) {
        for id in self.nodes.keys().cloned().collect::<Vec<_>>() {
            self.collect(&id);
        }
    }

    fn deliver(&mut self, from: &MemberId, to: &MemberId, n: usize) {
        for _ in 0..n {
            let Some((_, bytes)) = self
                .queues
                .get_mut(&(from.clone(), to.clone()))
                .and_then(VecDeque::pop_front)
            else {
                return;
            };
            let now = self.now;
            if let Some(node) = self.nodes.get_mut(to) {
                node.handle_message(now, from, &bytes).unwrap();
            }
            self.collect(to);
        }
    }

    fn deliver_all(&mut self) {
        loop {
            let keys: Vec<(MemberId, MemberId)> = self
                .queues
                .iter()
                .filter(|(_, q)| !q.is_empty())
                .map(|(k, _)| k.clone())
                .collect();
            if keys.is_empty() {
                return;
            }
            for (from, to) in keys {
                self.deliver(&from, &to, usize::MAX);
            }
        }
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        for node in self.nodes.values_mut() {
            node.handle_timeout(now);
        }
        self.collect_all();
    }

    fn flush(&mut self, id: &MemberId) {
        let now = self.now;
        self.nodes.get_mut(id).unwrap().flush(now);
        self.collect(id);
    }

    /// Every live member, component by component.
    fn members(&self) -> Vec<MemberId> {
        self.views.iter().flatten().cloned().collect()
    }

    /// The view `id` is in.
    fn view_of(&self, id: &MemberId) -> Vec<MemberId> {
        self.views
            .iter()
            .find(|v| v.contains(id))
            .cloned()
            .unwrap_or_default()
    }

    /// Installs `view`, replacing every component it overlaps.
    fn install(&mut self, view: Vec<MemberId>) {
        // Virtual synchrony: what was sent in the old views is delivered before the new one.
        self.deliver_all();
        self.views.retain(|v| !v.iter().any(|m| view.contains(m)));
        if view.is_empty() {
            return;
        }
        self.views.push(view.clone());
        let now = self.now;
        for id in &view {
            self.nodes.get_mut(id).unwrap().handle_view(now, &view);
        }
        self.collect_all();
    }

    /// Splits component `which` in two at `cut`.
    fn partition(&mut self, which: usize, cut: usize) {
        let Some(view) = self.views.get(which % self.views.len().max(1)).cloned() else {
            return;
        };
        if view.len() < 2 {
            return;
        }
        let at = 1 + cut % (view.len() - 1);
        let (left, right) = view.split_at(at);
        let (left, right) = (left.to_vec(), right.to_vec());
        self.install(left);
        self.install(right);
    }

    /// Merges the first two components.
    fn heal(&mut self) {
        if self.views.len() < 2 {
            return;
        }
        let mut merged = self.views[0].clone();
        merged.extend(self.views[1].iter().cloned());
        self.install(merged);
    }

    fn join(&mut self) -> MemberId {
        self.next += 1;
        let id = self.spawn(&format!("#ec1-{}#node-{}", 1000 + self.next, self.next));
        let mut view = self.views.first().cloned().unwrap_or_default();
        view.push(id.clone());
        self.install(view);
        id
    }

    /// `id` crashes. Virtual synchrony: each of its messages in flight reaches every survivor
    /// or none; those some survivor already has reach all, and `deliver_its_messages` decides
    /// for the rest.
    fn crash(&mut self, id: &MemberId, deliver_its_messages: bool) {
        let view: Vec<MemberId> = self.view_of(id).into_iter().filter(|m| m != id).collect();
        self.views.retain(|v| !v.contains(id));
        self.nodes.remove(id);
        self.queues.retain(|key, _| key.1 != *id);
        let sent = self.sent.get(id).copied().unwrap_or(0);
        // The highest sequence number some survivor has received.
        let seen = view
            .iter()
            .map(|to| {
                self.queues
                    .get(&(id.clone(), to.clone()))
                    .and_then(|q| q.front())
                    .map_or(sent, |(seq, _)| seq - 1)
            })
            .max()
            .unwrap_or(0);
        for to in &view {
            let q = self
                .queues
                .remove(&(id.clone(), to.clone()))
                .unwrap_or_default();
            for (seq, bytes) in q {
                if seq <= seen || deliver_its_messages {
                    let now = self.now;
                    self.nodes
                        .get_mut(to)
                        .unwrap()
                        .handle_message(now, id, &bytes)
                        .unwrap();
                }
            }
        }
        self.install(view);
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const SAMPLE_GLOBAL: &str = "lazy, snapped cidrtree 'inbound_cidr', view 'global'
     31                         10.0.0.0/8
     31                         10.0.0.0/24
      4                         10.0.0.0/25
      4                         10.0.0.103/32
     27                         10.0.0.160/27
     27                         10.0.0.176/29
     27                         10.0.0.180/31
     14                         10.0.0.180/32
     13                         10.0.0.181/32
";

const SAMPLE_RELAY_1: &str = "lazy, snapped cidrtree 'inbound_cidr', view '#ec1-12137#relay-0-1'
      5                         10.0.0.0/8
      5                         10.0.0.0/24
      5                         10.0.0.160/27
      5                         10.0.0.176/29
      5                         10.0.0.180/31
      4                         10.0.0.180/32
      1                         10.0.0.181/32
";

const SAMPLE_RELAY_2: &str = "lazy, snapped cidrtree 'inbound_cidr', view '#ec1-48616#relay-0-2'
      7                         10.0.0.0/8
      7                         10.0.0.0/24
      3                         10.0.0.103/32
      4                         10.0.0.160/27
      4                         10.0.0.180/31
      2                         10.0.0.180/32
      2                         10.0.0.181/32
";

#[test]
fn three_members_reproduce_the_console_samples() {
    let mut c = Cluster::new();
    let a = c.spawn("#ec1-12137#relay-0-1");
    let b = c.spawn("#ec1-48616#relay-0-2");
    let d = c.spawn("#ec1-52001#relay-0-3");
    c.install(vec![a.clone(), b.clone(), d.clone()]);
    let now = c.now;
    let add = |c: &mut Cluster, who: &MemberId, addr: &str, n: i64| {
        let objects = c.nodes[who].objects().clone();
        objects
            .cidr_add("inbound_cidr", IpNet::from(ip(addr)), n, now)
            .unwrap();
        c.flush(who);
    };
    // Connections that have closed leave their branch points behind, as in Momentum.
    for (who, addr) in [
        (&a, "10.200.0.1"),
        (&a, "10.0.0.176"),
        (&a, "10.0.0.165"),
        (&a, "10.0.0.1"),
        (&b, "10.200.0.2"),
        (&b, "10.0.0.165"),
    ] {
        add(&mut c, who, addr, 1);
        add(&mut c, who, addr, -1);
    }
    for (who, addr, n) in [
        (&a, "10.0.0.180", 4),
        (&a, "10.0.0.181", 1),
        (&b, "10.0.0.103", 3),
        (&b, "10.0.0.180", 2),
        (&b, "10.0.0.181", 2),
        (&d, "10.0.0.103", 1),
        (&d, "10.0.0.180", 8),
        (&d, "10.0.0.181", 10),
    ] {
        add(&mut c, who, addr, n);
    }
    c.deliver_all();
    let on_a = &c.nodes[&a];
    assert_eq!(
        shared_show(on_a, "inbound_cidr", None, now).unwrap(),
        SAMPLE_GLOBAL
    );
    assert_eq!(
        shared_show(on_a, "inbound_cidr", Some("relay-0-1"), now).unwrap(),
        SAMPLE_RELAY_1
    );
    assert_eq!(
        shared_show(on_a, "inbound_cidr", Some("relay-0-2"), now).unwrap(),
        SAMPLE_RELAY_2
    );
    // Another node's copy of relay-0-1's contribution prints the same.
    assert_eq!(
        shared_show(&c.nodes[&b], "inbound_cidr", Some("relay-0-1"), now).unwrap(),
        SAMPLE_RELAY_1
    );
    let json = show_status(on_a, "inbound_cidr", None, now).unwrap().json();
    assert_eq!(json["rows"][0]["prefix"], "10.0.0.0/8");
    assert_eq!(json["rows"][0]["count"], 31);
    assert!(shared_show(on_a, "inbound_cidr", Some("relay-9"), now).is_err());

    // Compaction frees relay-0-2's remnant nodes on a, and changes no count.
    c.nodes.get_mut(&a).unwrap().compact();
    let compacted = "lazy, snapped cidrtree 'inbound_cidr', view '#ec1-48616#relay-0-2'
      7                         10.0.0.0/24
      3                         10.0.0.103/32
      4                         10.0.0.180/31
      2                         10.0.0.180/32
      2                         10.0.0.181/32
";
    assert_eq!(
        shared_show(&c.nodes[&a], "inbound_cidr", Some("relay-0-2"), now).unwrap(),
        compacted
    );
    assert_eq!(
        shared_show(&c.nodes[&a], "inbound_cidr", None, now).unwrap(),
        SAMPLE_GLOBAL
    );

    // relay-0-3 dies: the survivors drop exactly its 19 connections.
    c.crash(&d, true);
    for who in [&a, &b] {
        let objects = c.nodes[who].objects();
        let global = objects
            .cidr_count("inbound_cidr", "10.0.0.0/8".parse().unwrap(), View::Global)
            .unwrap();
        assert_eq!(global, 12);
    }
    // A new incarnation joins and receives snapshots: all agree again.
    let e = c.join();
    c.deliver_all();
    let objects = c.nodes[&e].objects();
    assert_eq!(
        objects
            .cidr_count(
                "inbound_cidr",
                "10.0.0.180/31".parse().unwrap(),
                View::Global
            )
            .unwrap(),
        9
    );
}

#[test]
fn gauges_caches_and_batching_through_the_replicator() {
    let mut c = Cluster::new();
    let a = c.spawn("#1#a");
    let b = c.spawn("#2#b");
    c.install(vec![a.clone(), b.clone()]);
    // The join's snapshots.
    c.deliver_all();
    let now = c.now;
    let oa = c.nodes[&a].objects().clone();
    for _ in 0..99 {
        assert!(!oa.gauge_add("outbound_domains", "aol.com", 1, now).unwrap());
    }
    // Nothing is sent before max_pending (100) or max_delay (1 s).
    c.tick(Duration::from_millis(999));
    assert!(c.queues.values().all(VecDeque::is_empty));
    assert!(
        oa.gauge_add("outbound_domains", "aol.com", 1, c.now)
            .unwrap()
    );
    c.tick(Duration::ZERO);
    // One message carried the 100 coalesced updates.
    assert_eq!(c.queues[&(a.clone(), b.clone())].len(), 1);
    c.deliver_all();
    let ob = c.nodes[&b].objects().clone();
    assert_eq!(
        ob.gauge_get("outbound_domains", "aol.com", View::Global)
            .unwrap(),
        100
    );
    assert_eq!(
        ob.gauge_get("outbound_domains", "aol.com", View::Local)
            .unwrap(),
        0
    );
    oa.gauge_add("outbound_domains", "aol.com", -40, c.now)
        .unwrap();
    c.tick(Duration::from_secs(1));
    c.deliver_all();
    assert_eq!(
        ob.gauge_get("outbound_domains", "aol.com", View::Global)
            .unwrap(),
        60
    );

    // Cache: written on a, read on b, TTL honoured.
    oa.cache_set("mycache", "k", b"v1", 10, c.now).unwrap();
    c.tick(Duration::from_secs(1));
    c.deliver_all();
    assert_eq!(
        ob.cache_get("mycache", "k", c.now).unwrap(),
        Some(b"v1".to_vec())
    );
    let rows = c.nodes[&b].rows("mycache", Some(&a), c.now).unwrap();
    assert!(matches!(rows, Rows::Cache(ref e) if e.len() == 1));
    assert_eq!(
        ob.cache_get("mycache", "k", c.now + Duration::from_secs(10))
            .unwrap(),
        None
    );

    // Throttle: 10 per minute, cluster-wide.
    let spec = ThrottleSpec::parse("10/60", Some(0.5)).unwrap();
    for o in [&oa, &ob] {
        o.throttle_create("shared_named_throttles", "t", spec, c.now)
            .unwrap();
    }
    let mut admitted = 0;
    for _ in 0..5 {
        for o in [&oa, &ob] {
            if !o
                .throttle_check("shared_named_throttles", "t", c.now)
                .unwrap()
            {
                o.throttle_inc("shared_named_throttles", "t", 1, c.now)
                    .unwrap();
                admitted += 1;
            }
        }
        c.flush(&a);
        c.flush(&b);
        c.deliver_all();
    }
    // With nothing pending, the next wake-up is the end of the throttle's 60 s window.
    assert_eq!(
        c.nodes[&a].poll_timeout(),
        Some(Duration::from_secs(1_700_000_040))
    );
    assert!(admitted <= 10, "{admitted} admitted");
    assert!(admitted >= 8, "{admitted} admitted");
    assert!(
        oa.throttle_tarpit("shared_named_throttles", "t", c.now)
            .unwrap()
            > Duration::ZERO
    );

    // Series: per-IP counts over a CIDR block, cluster-wide.
    for o in [&oa, &ob] {
        o.series_add(
            "metrics",
            "connect",
            SeriesItem::Net(IpNet::from(ip("10.1.2.3"))),
            2,
            c.now,
        )
        .unwrap();
    }
    c.tick(Duration::from_secs(1));
    c.deliver_all();
    let m = Monitor {
        window: 10,
        windows: 3,
    };
    let block = SeriesItem::Net("10.0.0.0/8".parse().unwrap());
    let global = ob
        .series_count("metrics", "connect", &block, m, 0, 2, View::Global, c.now)
        .unwrap();
    assert_eq!(global, 4);
}

#[derive(Debug, Clone)]
enum Action {
    Cidr {
        node: usize,
        addr: u8,
        wide: bool,
        delta: i8,
    },
    Gauge {
        node: usize,
        key: u8,
        delta: i8,
    },
    Cache {
        node: usize,
        key: u8,
        value: u8,
    },
    Throttle {
        node: usize,
    },
    Series {
        node: usize,
        addr: u8,
    },
    Tick {
        ms: u16,
    },
    Deliver {
        from: usize,
        to: usize,
        n: u8,
    },
    Join,
    Crash {
        node: usize,
        deliver: bool,
    },
    Compact {
        node: usize,
    },
    Partition {
        which: usize,
        cut: usize,
    },
    Heal,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (any::<usize>(), any::<u8>(), any::<bool>(), -3i8..=4).prop_map(|(node, addr, wide, delta)| Action::Cidr { node, addr, wide, delta }),
        3 => (any::<usize>(), 0u8..6, -3i8..=4).prop_map(|(node, key, delta)| Action::Gauge { node, key, delta }),
        2 => (any::<usize>(), 0u8..4, any::<u8>()).prop_map(|(node, key, value)| Action::Cache { node, key, value }),
        1 => any::<usize>().prop_map(|node| Action::Throttle { node }),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(node, addr)| Action::Series { node, addr }),
        3 => (0u16..1500).prop_map(|ms| Action::Tick { ms }),
        6 => (any::<usize>(), any::<usize>(), 1u8..5).prop_map(|(from, to, n)| Action::Deliver { from, to, n }),
        1 => Just(Action::Join),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(node, deliver)| Action::Crash { node, deliver }),
        1 => any::<usize>().prop_map(|node| Action::Compact { node }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(which, cut)| Action::Partition { which, cut }),
        1 => Just(Action::Heal),
    ]
}

fn pick(c: &Cluster, i: usize) -> MemberId {
    let members = c.members();
    members[i % members.len()].clone()
}

fn run(actions: &[Action]) -> Result<(), TestCaseError> {
    let mut c = Cluster::new();
    let first = c.spawn("#ec1-1#node-0");
    c.install(vec![first]);
    c.join();
    for action in actions {
        let now = c.now;
        match *action {
            Action::Cidr {
                node,
                addr,
                wide,
                delta,
            } => {
                let id = pick(&c, node);
                let net = if wide {
                    IpNet::V4(
                        ipnet::Ipv4Net::new(Ipv4Addr::new(10, addr % 4, addr, 0), 24).unwrap(),
                    )
                } else {
                    IpNet::from(IpAddr::V4(Ipv4Addr::new(10, 0, addr % 8, addr)))
                };
                c.nodes[&id]
                    .objects()
                    .cidr_add("inbound_cidr", net, i64::from(delta), now)
                    .unwrap();
                c.collect(&id);
            }
            Action::Gauge { node, key, delta } => {
                let id = pick(&c, node);
                c.nodes[&id]
                    .objects()
                    .gauge_add(
                        "outbound_domains",
                        &format!("d{key}.example"),
                        i64::from(delta),
                        now,
                    )
                    .unwrap();
            }
            Action::Cache { node, key, value } => {
                let id = pick(&c, node);
                c.nodes[&id]
                    .objects()
                    .cache_set("mycache", &format!("k{key}"), &[value], 0, now)
                    .unwrap();
            }
            Action::Throttle { node } => {
                let id = pick(&c, node);
                let o = c.nodes[&id].objects().clone();
                o.throttle_create(
                    "shared_named_throttles",
                    "t",
                    ThrottleSpec::parse("50/5", None).unwrap(),
                    now,
                )
                .unwrap();
                if !o
                    .throttle_check("shared_named_throttles", "t", now)
                    .unwrap()
                {
                    o.throttle_inc("shared_named_throttles", "t", 1, now)
                        .unwrap();
                }
            }
            Action::Series { node, addr } => {
                let id = pick(&c, node);
                c.nodes[&id]
                    .objects()
                    .series_add(
                        "metrics",
                        "connect",
                        SeriesItem::Net(IpNet::from(IpAddr::V4(Ipv4Addr::new(10, 9, 0, addr)))),
                        1,
                        now,
                    )
                    .unwrap();
            }
            Action::Tick { ms } => c.tick(Duration::from_millis(u64::from(ms))),
            Action::Deliver { from, to, n } => {
                let (f, t) = (pick(&c, from), pick(&c, to));
                c.deliver(&f, &t, usize::from(n));
            }
            Action::Join => {
                if c.members().len() < 5 {
                    c.join();
                }
            }
            Action::Partition { which, cut } => c.partition(which, cut),
            Action::Heal => c.heal(),
            Action::Compact { node } => {
                let id = pick(&c, node);
                c.nodes.get_mut(&id).unwrap().compact();
            }
            Action::Crash { node, deliver } => {
                if c.members().len() > 1 {
                    let id = pick(&c, node);
                    c.crash(&id, deliver);
                }
            }
        }
        c.collect_all();
    }
    // Quiet: every batch flushed and every message delivered.
    c.tick(Duration::from_secs(5));
    while c.views.len() > 1 {
        c.heal();
    }
    for id in c.members() {
        c.flush(&id);
    }
    c.deliver_all();
    check_converged(&c)
}

fn check_converged(c: &Cluster) -> Result<(), TestCaseError> {
    let mut nets: BTreeSet<IpNet> = BTreeSet::new();
    for a in 0..=255u8 {
        nets.insert(IpNet::from(IpAddr::V4(Ipv4Addr::new(10, 0, a % 8, a))));
        nets.insert(IpNet::V4(
            ipnet::Ipv4Net::new(Ipv4Addr::new(10, a % 4, a, 0), 24).unwrap(),
        ));
    }
    nets.insert("10.0.0.0/8".parse().unwrap());
    nets.insert("10.0.0.0/16".parse().unwrap());
    nets.insert("10.0.4.0/22".parse().unwrap());
    let members: Vec<&Replicator> = c.members().iter().map(|m| &c.nodes[m]).collect();
    for net in &nets {
        let want: i64 = members
            .iter()
            .map(|r| {
                r.objects()
                    .cidr_count("inbound_cidr", *net, View::Local)
                    .unwrap()
            })
            .sum();
        for r in &members {
            let got = r
                .objects()
                .cidr_count("inbound_cidr", *net, View::Global)
                .unwrap();
            prop_assert_eq!(got, want, "{} at {}", net, r.me());
        }
    }
    for key in 0..6 {
        let key = format!("d{key}.example");
        let want: i64 = members
            .iter()
            .map(|r| {
                r.objects()
                    .gauge_get("outbound_domains", &key, View::Local)
                    .unwrap()
            })
            .sum();
        for r in &members {
            prop_assert_eq!(
                r.objects()
                    .gauge_get("outbound_domains", &key, View::Global)
                    .unwrap(),
                want
            );
        }
    }
    let usage: i64 = members
        .iter()
        .map(|r| {
            match r
                .rows("shared_named_throttles", Some(r.me()), c.now)
                .unwrap()
            {
                Rows::Table(t) => t.iter().map(|(_, v)| v).sum::<i64>(),
                _ => 0,
            }
        })
        .sum();
    let m = Monitor {
        window: 10,
        windows: 3,
    };
    let block = SeriesItem::Net("10.9.0.0/16".parse().unwrap());
    let series_want: i64 = members
        .iter()
        .map(|r| {
            r.objects()
                .series_count("metrics", "connect", &block, m, 0, 2, View::Local, c.now)
                .unwrap()
        })
        .sum();
    let first_cache = members[0].rows("mycache", None, c.now).unwrap();
    for r in &members {
        if r.objects()
            .throttle_usage("shared_named_throttles", "t")
            .is_ok()
        {
            prop_assert_eq!(
                r.objects()
                    .throttle_usage("shared_named_throttles", "t")
                    .unwrap(),
                usage
            );
        }
        prop_assert_eq!(
            r.objects()
                .series_count("metrics", "connect", &block, m, 0, 2, View::Global, c.now)
                .unwrap(),
            series_want
        );
        prop_assert_eq!(&r.rows("mycache", None, c.now).unwrap(), &first_cache);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_global_view_is_the_sum_of_the_live_local_states(actions in proptest::collection::vec(action(), 0..160)) {
        run(&actions)?;
    }
}

/// `cluster_outbound_throttle_messages` through `OBTM`: the stanza that applies to a binding and
/// a domain is one bucket cluster-wide, created on first use at the configured rate; outbound
/// connections are counted only by the objects whose `binding_group` is the binding's.
#[test]
fn outbound_throttles_and_binding_groups_through_the_replicator() {
    let objects = || {
        let mut east = ObjectSettings::new("outbound_cidr_east", ObjectKind::OutboundCidr);
        east.binding_group = Some("east".into());
        vec![
            ObjectSettings::new("OBTM", ObjectKind::Obtm),
            ObjectSettings::new("OBTC", ObjectKind::Obtc),
            ObjectSettings::new("outbound_cidr", ObjectKind::OutboundCidr),
            east,
            ObjectSettings::new("outbound_domains", ObjectKind::OutboundDomains),
            ObjectSettings::new(
                "outbound_binding_domains",
                ObjectKind::OutboundBindingDomains,
            ),
        ]
    };
    let outbound = Outbound::default()
        .with_binding("b1", "east")
        .with_binding("b2", "east")
        .with_binding("w1", "west")
        .with_throttle(
            ThrottleKind::Messages,
            Some("east"),
            None,
            ThrottleSpec::parse("10/60", Some(0.5)).unwrap(),
        );
    let mut c = Cluster::new();
    let a = c.spawn_with("#1#a", objects(), outbound.clone());
    let b = c.spawn_with("#2#b", objects(), outbound);
    c.install(vec![a.clone(), b.clone()]);
    c.deliver_all();
    let (oa, ob) = (c.nodes[&a].objects().clone(), c.nodes[&b].objects().clone());
    assert_eq!(
        oa.outbound_throttle("OBTM", "b1", "aol.com").unwrap(),
        Some("east::*".to_string())
    );
    assert_eq!(oa.outbound_throttle("OBTM", "w1", "aol.com").unwrap(), None);
    assert_eq!(oa.outbound_throttle("OBTC", "b1", "aol.com").unwrap(), None);
    assert!(oa.outbound_throttle("outbound_cidr", "b1", "x").is_err());
    // Two nodes, two bindings of the group, two domains: one bucket of 10 per minute.
    let mut admitted = 0;
    for round in 0..10 {
        for (o, binding) in [(&oa, "b1"), (&ob, "b2")] {
            let domain = if round % 2 == 0 {
                "aol.com"
            } else {
                "gmail.com"
            };
            if !o.outbound_check("OBTM", binding, domain, c.now).unwrap() {
                o.outbound_inc("OBTM", binding, domain, 1, c.now).unwrap();
                admitted += 1;
            }
        }
        c.flush(&a);
        c.flush(&b);
        c.deliver_all();
    }
    assert!((8..=10).contains(&admitted), "{admitted} admitted");
    assert_eq!(ob.throttle_usage("OBTM", "east::*").unwrap(), admitted);
    assert!(oa.outbound_tarpit("OBTM", "b1", "aol.com", c.now).unwrap() > Duration::ZERO);
    // No throttle applies to the west group: never over budget, nothing counted.
    assert!(!oa.outbound_check("OBTM", "w1", "aol.com", c.now).unwrap());
    assert!(!oa.outbound_inc("OBTM", "w1", "aol.com", 5, c.now).unwrap());
    assert_eq!(
        oa.outbound_tarpit("OBTM", "w1", "aol.com", c.now).unwrap(),
        Duration::ZERO
    );

    // Connections: the east object counts only east bindings.
    let peer = ip("192.0.2.7");
    let (counted, _) = oa
        .outbound_connection("b1", "AOL.com", peer, 1, c.now)
        .unwrap();
    assert_eq!(
        counted,
        [
            "outbound_binding_domains",
            "outbound_cidr",
            "outbound_cidr_east",
            "outbound_domains"
        ]
    );
    let (counted, _) = ob
        .outbound_connection("w1", "aol.com", peer, 1, c.now)
        .unwrap();
    assert_eq!(
        counted,
        [
            "outbound_binding_domains",
            "outbound_cidr",
            "outbound_domains"
        ]
    );
    c.tick(Duration::from_secs(1));
    c.deliver_all();
    let host = IpNet::from(peer);
    for o in [&oa, &ob] {
        assert_eq!(
            o.cidr_count("outbound_cidr", host, View::Global).unwrap(),
            2
        );
        assert_eq!(
            o.cidr_count("outbound_cidr_east", host, View::Global)
                .unwrap(),
            1
        );
        assert_eq!(
            o.gauge_get("outbound_domains", "aol.com", View::Global)
                .unwrap(),
            2
        );
        assert_eq!(
            o.gauge_get("outbound_binding_domains", "b1::aol.com", View::Global)
                .unwrap(),
            1
        );
    }
    oa.outbound_connection("b1", "aol.com", peer, -1, c.now)
        .unwrap();
    c.tick(Duration::from_secs(1));
    c.deliver_all();
    assert_eq!(
        ob.cidr_count("outbound_cidr_east", host, View::Global)
            .unwrap(),
        0
    );
    assert_eq!(
        ob.cidr_count("outbound_cidr", host, View::Global).unwrap(),
        1
    );
}

/// Gauge caches (`ec_gauge_cache_*`): a replicated cache's increments reach every node through
/// the object with `parameters = "gauge_cache"`; entries age on every node from their last
/// change anywhere, and when one expires or is evicted each node withdraws its contribution.
#[test]
fn gauge_caches_replicate_expire_and_evict() {
    let objects = || {
        let mut metrics = ObjectSettings::new("metrics", ObjectKind::Metrics);
        metrics.parameters = vec!["gauge_cache".into()];
        metrics.max_delay = Duration::from_millis(100);
        vec![metrics]
    };
    let mut c = Cluster::new();
    let a = c.spawn_with("#1#a", objects(), Outbound::default());
    let b = c.spawn_with("#2#b", objects(), Outbound::default());
    c.install(vec![a.clone(), b.clone()]);
    c.deliver_all();
    let (oa, ob) = (c.nodes[&a].objects().clone(), c.nodes[&b].objects().clone());
    let ttl = Duration::from_secs(10);
    for o in [&oa, &ob] {
        o.gauge_cache_init("senders", 2, ttl, true).unwrap();
        o.gauge_cache_init("local", 10, Duration::ZERO, false)
            .unwrap();
    }
    assert!(oa.gauge_cache_add("nope", "k", 1, c.now).is_err());
    oa.gauge_cache_add("senders", "alice", 3, c.now).unwrap();
    ob.gauge_cache_add("senders", "alice", 2, c.now).unwrap();
    oa.gauge_cache_add("local", "alice", 7, c.now).unwrap();
    c.tick(Duration::from_secs(1));
    c.deliver_all();
    for o in [&oa, &ob] {
        assert_eq!(o.gauge_cache_get("senders", "alice", c.now).unwrap(), 5);
    }
    assert_eq!(oa.gauge_cache_get("local", "alice", c.now).unwrap(), 7);
    assert_eq!(
        ob.gauge_cache_get("local", "alice", c.now).unwrap(),
        0,
        "local stays local"
    );
    // Full (2 entries): a third key drops the least recently changed, on both nodes.
    ob.gauge_cache_add("senders", "bob", 1, c.now).unwrap();
    c.tick(Duration::from_secs(1));
    c.deliver_all();
    oa.gauge_cache_add("senders", "carol", 1, c.now).unwrap();
    c.tick(Duration::from_secs(1));
    c.deliver_all();
    c.tick(Duration::from_secs(1));
    c.deliver_all();
    for o in [&oa, &ob] {
        assert_eq!(o.gauge_cache_get("senders", "alice", c.now).unwrap(), 0);
        assert_eq!(o.gauge_cache_get("senders", "bob", c.now).unwrap(), 1);
        assert_eq!(o.gauge_cache_get("senders", "carol", c.now).unwrap(), 1);
    }
    let sums = |r: &Replicator, now| match r.rows("metrics", None, now).unwrap() {
        Rows::Table(rows) => rows.into_iter().map(|(_, v)| v).sum::<i64>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        sums(&c.nodes[&a], c.now),
        2,
        "alice's 5 withdrawn by both nodes"
    );
    // No change for the TTL: everything expires and is withdrawn everywhere.
    for _ in 0..12 {
        c.tick(Duration::from_secs(1));
        c.deliver_all();
    }
    for o in [&oa, &ob] {
        assert_eq!(o.gauge_cache_get("senders", "carol", c.now).unwrap(), 0);
    }
    assert_eq!(sums(&c.nodes[&b], c.now), 0);
    assert_eq!(oa.gauge_caches()[1].2, 0, "no entry left in senders");
}

#[test]
fn caches_without_snapshot_show_joiners_only_new_writes() {
    let mut plain = ObjectSettings::new("plain", ObjectKind::Cache);
    plain.snapshot = false;
    let mut snapped = ObjectSettings::new("snapped", ObjectKind::Cache);
    snapped.snapshot = true;
    let now = Duration::from_secs(1_700_000_000);
    let (ia, ib) = (MemberId::new("#1#a"), MemberId::new("#2#b"));
    let mut a = Replicator::new(
        ia.clone(),
        vec![plain.clone(), snapped.clone()],
        1400,
        false,
    )
    .unwrap();
    let mut b = Replicator::new(ib.clone(), vec![plain, snapped], 1400, false).unwrap();
    a.handle_view(now, std::slice::from_ref(&ia));
    for object in ["plain", "snapped"] {
        a.objects().cache_set(object, "old", b"1", 0, now).unwrap();
    }
    a.flush(now);
    while a.poll_transmit().is_some() {}
    let view = [ia.clone(), ib.clone()];
    a.handle_view(now, &view);
    b.handle_view(now, &view);
    a.objects().cache_set("plain", "new", b"2", 0, now).unwrap();
    a.flush(now);
    while let Some(t) = a.poll_transmit() {
        b.handle_message(now, &ia, &t.payload).unwrap();
    }
    let ob = b.objects();
    assert_eq!(ob.cache_get("plain", "old", now).unwrap(), None);
    assert_eq!(
        ob.cache_get("plain", "new", now).unwrap(),
        Some(b"2".to_vec())
    );
    assert_eq!(
        ob.cache_get("snapped", "old", now).unwrap(),
        Some(b"1".to_vec())
    );
}

#[test]
fn eccmgr_metrics_go_to_the_manager_only() {
    let settings = vec![ObjectSettings::new(
        "eccmgr_metrics",
        ObjectKind::EccmgrMetrics,
    )];
    let now = Duration::from_secs(1_700_000_000);
    let (node, mgr, peer) = (
        MemberId::new("#1#node"),
        MemberId::new("#2#manager"),
        MemberId::new("#3#peer"),
    );
    let mut n = Replicator::new(node.clone(), settings.clone(), 1400, false).unwrap();
    let mut m = Replicator::new(mgr.clone(), settings.clone(), 1400, true).unwrap();
    let mut p = Replicator::new(peer.clone(), settings, 1400, false).unwrap();
    let view = [node.clone(), mgr.clone(), peer.clone()];
    for r in [&mut n, &mut m, &mut p] {
        r.handle_view(now, &view);
        while r.poll_transmit().is_some() {}
    }
    let item = SeriesItem::Net(IpNet::from(ip("192.0.2.1")));
    n.objects()
        .series_add("eccmgr_metrics", "connect", item.clone(), 3, now)
        .unwrap();
    n.flush(now);
    let t = n.poll_transmit().unwrap();
    assert_eq!(t.destination, Destination::Manager);
    m.handle_message(now, &node, &t.payload).unwrap();
    // A node that is not the manager ignores the objects it does not keep.
    p.handle_message(now, &node, &t.payload).unwrap();
    let monitor = Monitor {
        window: 300,
        windows: 6,
    };
    let count = |r: &Replicator| {
        r.objects()
            .series_count(
                "eccmgr_metrics",
                "connect",
                &item,
                monitor,
                0,
                0,
                View::Global,
                now,
            )
            .unwrap()
    };
    assert_eq!(count(&m), 3);
    assert_eq!(count(&p), 0);
}

#[test]
fn application_threads_and_the_driver_race_without_losing_updates() {
    let settings = || {
        let mut cidr = ObjectSettings::new("inbound_cidr", ObjectKind::InboundCidr);
        cidr.max_pending = 7;
        let mut gauge = ObjectSettings::new("outbound_domains", ObjectKind::OutboundDomains);
        gauge.max_pending = 5;
        vec![cidr, gauge]
    };
    let (ia, ib) = (MemberId::new("#1#a"), MemberId::new("#2#b"));
    let mut a = Replicator::new(ia.clone(), settings(), 1400, false).unwrap();
    let mut b = Replicator::new(ib.clone(), settings(), 1400, false).unwrap();
    let now = Duration::from_secs(1_700_000_000);
    let view = [ia.clone(), ib.clone()];
    a.handle_view(now, &view);
    b.handle_view(now, &view);
    let workers: Vec<_> = (0..4u8)
        .map(|t| {
            let objects = a.objects().clone();
            std::thread::spawn(move || {
                for i in 0..5_000u32 {
                    let addr = Ipv4Addr::new(10, t, (i % 7) as u8, (i % 251) as u8);
                    let delta = if i % 3 == 0 { -1 } else { 1 };
                    objects
                        .cidr_add("inbound_cidr", IpNet::from(IpAddr::V4(addr)), delta, now)
                        .unwrap();
                    objects
                        .gauge_add("outbound_domains", &format!("d{}", i % 13), delta, now)
                        .unwrap();
                }
            })
        })
        .collect();
    // The driver flushes and delivers while the application threads write.
    let pump = |a: &mut Replicator, b: &mut Replicator| {
        a.handle_timeout(now);
        while let Some(t) = a.poll_transmit() {
            b.handle_message(now, &ia, &t.payload).unwrap();
        }
    };
    while workers.iter().any(|w| !w.is_finished()) {
        pump(&mut a, &mut b);
    }
    for w in workers {
        w.join().unwrap();
    }
    a.flush(now);
    pump(&mut a, &mut b);
    let (oa, ob) = (a.objects().clone(), b.objects().clone());
    for block in ["10.0.0.0/8", "10.1.0.0/16", "10.2.3.0/24", "10.3.6.250/32"] {
        let net: IpNet = block.parse().unwrap();
        let local = oa.cidr_count("inbound_cidr", net, View::Local).unwrap();
        assert_eq!(
            ob.cidr_count("inbound_cidr", net, View::Global).unwrap(),
            local,
            "{block}"
        );
        assert_eq!(
            oa.cidr_count("inbound_cidr", net, View::Global).unwrap(),
            local,
            "{block}"
        );
    }
    assert_eq!(
        oa.cidr_count("inbound_cidr", "10.0.0.0/8".parse().unwrap(), View::Local)
            .unwrap(),
        4 * (5_000 - 2 * 1_667)
    );
    for k in 0..13 {
        let key = format!("d{k}");
        let local = oa.gauge_get("outbound_domains", &key, View::Local).unwrap();
        assert_eq!(
            ob.gauge_get("outbound_domains", &key, View::Global)
                .unwrap(),
            local
        );
    }
}

/// A configuration reload through the replicator: members add an object at different times (the
/// late one still gets the early ones' contributions, through its REQUEST), one retunes it (state
/// kept), one removes `inbound_cidr` (its contribution leaves every other member's global view,
/// as on a leave), one changes an object's type (a new, empty object).
#[test]
fn reconfigure_adds_retunes_replaces_and_removes_objects() {
    let mut c = Cluster::new();
    let (a, b, d) = (
        c.spawn("#ec1-1#a"),
        c.spawn("#ec1-2#b"),
        c.spawn("#ec1-3#d"),
    );
    c.install(vec![a.clone(), b.clone(), d.clone()]);
    let now = c.now;
    for (who, n) in [(&a, 3), (&b, 4), (&d, 5)] {
        c.nodes[who]
            .objects()
            .cidr_add("inbound_cidr", "10.0.0.1/32".parse().unwrap(), n, now)
            .unwrap();
        c.flush(who);
    }
    c.deliver_all();
    let global = |c: &Cluster, who: &MemberId| {
        c.nodes[who]
            .objects()
            .cidr_count("inbound_cidr", "10.0.0.0/8".parse().unwrap(), View::Global)
            .unwrap()
    };
    assert_eq!(global(&c, &b), 12);
    let with_extra = || {
        let mut s = settings();
        s.push(ObjectSettings::new("extra", ObjectKind::OutboundDomains));
        s
    };
    // a and b add "extra" and count in it; d adds it only afterwards.
    for who in [&a, &b] {
        let now = c.now;
        let done = c
            .nodes
            .get_mut(who)
            .unwrap()
            .reconfigure(now, with_extra())
            .unwrap();
        assert_eq!(done.added, ["extra"]);
        c.collect(who);
        c.nodes[who]
            .objects()
            .gauge_add("extra", "example.com", 2, now)
            .unwrap();
        c.flush(who);
    }
    c.deliver_all();
    let now = c.now;
    let done = c
        .nodes
        .get_mut(&d)
        .unwrap()
        .reconfigure(now, with_extra())
        .unwrap();
    assert_eq!((done.added.len(), done.removed.len()), (1, 0));
    c.collect(&d);
    c.deliver_all();
    for who in [&a, &b, &d] {
        let g = c.nodes[who]
            .objects()
            .gauge_get("extra", "example.com", View::Global)
            .unwrap();
        assert_eq!(
            g, 4,
            "{who}: the early members' contributions reach the late one"
        );
    }
    // d retunes "extra": same object, same counts, new limits.
    let mut retuned = with_extra();
    let last = retuned.len() - 1;
    retuned[last].max_pending = 7;
    retuned[last].max_delay = Duration::from_millis(20);
    let done = c
        .nodes
        .get_mut(&d)
        .unwrap()
        .reconfigure(now, retuned)
        .unwrap();
    assert_eq!(done.retuned, ["extra"]);
    let obj = c.nodes[&d]
        .objects()
        .iter()
        .find(|o| o.settings().name == "extra")
        .map(|o| o.batching());
    assert_eq!(obj, Some((Duration::from_millis(20), 7)));
    assert_eq!(
        c.nodes[&d]
            .objects()
            .gauge_get("extra", "example.com", View::Global)
            .unwrap(),
        4
    );
    // a removes inbound_cidr: b and d drop a's 3.
    let without: Vec<ObjectSettings> = with_extra()
        .into_iter()
        .filter(|s| s.name != "inbound_cidr")
        .collect();
    let done = c
        .nodes
        .get_mut(&a)
        .unwrap()
        .reconfigure(now, without)
        .unwrap();
    assert_eq!(done.removed, ["inbound_cidr"]);
    c.collect(&a);
    c.deliver_all();
    assert_eq!(global(&c, &b), 9);
    assert_eq!(global(&c, &d), 9);
    assert!(c.nodes[&a].objects().settings("inbound_cidr").is_err());
    // b turns "extra" into a CIDR tree: replaced, empty; the others drop b's gauge.
    let mut changed = with_extra();
    let last = changed.len() - 1;
    changed[last].kind = ObjectKind::InboundCidr;
    let done = c
        .nodes
        .get_mut(&b)
        .unwrap()
        .reconfigure(now, changed)
        .unwrap();
    assert_eq!(done.replaced, ["extra"]);
    c.collect(&b);
    c.deliver_all();
    assert_eq!(
        c.nodes[&d]
            .objects()
            .gauge_get("extra", "example.com", View::Global)
            .unwrap(),
        2,
        "only a's contribution is left on d"
    );
    // A duplicate name is refused and changes nothing.
    let mut dup = settings();
    dup.push(ObjectSettings::new("inbound_cidr", ObjectKind::InboundCidr));
    assert!(c.nodes.get_mut(&d).unwrap().reconfigure(now, dup).is_err());
    assert!(c.nodes[&d].objects().settings("extra").is_ok());
}
