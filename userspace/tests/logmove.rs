//! Cluster logging through real `cohortd` processes in network namespaces (root; skips
//! otherwise): three nodes append to two `cluster://` journals each through their consoles, a
//! manager (`cohortd --manager`) pulls them over the keyed log service into its `Logs` pattern;
//! the manager is killed -9 mid-pull and restarted, then a node is killed -9 mid-serve and
//! restarted; every record acknowledged by a node's console is in the manager's files exactly
//! once, under the pattern's path. A peer with the wrong cluster key is refused and counted.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cohort::console::client::{Client, Endpoint};
use cohort::lab::{Lab, in_netns};
use cohort_engine::console::protocol::Status;
use cohort_engine::group::ClusterKey;
use cohort_engine::logmove::wire::{self, Message, Role, Session};
use support::cluster::Cluster;

const NODES: usize = 3;
const MANAGER: usize = 3;
const LOGS: [&str; 2] = ["mainlog", "rejectlog"];
const PER_LOG: usize = 250;

/// Per-node journals (mainlog for `master`, rejectlog for the manager's own name and `master`),
/// the cluster key everywhere, and the manager's `Logs` pattern.
fn configure(c: &Cluster<'_>, key: &Path, out: &Path, hosts: usize) {
    for i in 0..hosts {
        let mut text = std::fs::read_to_string(c.config_path(i)).expect("config");
        text = text.replace(
            "msgc_server {",
            &format!("msgc_server {{\n  cluster_key = \"{}\"", key.display()),
        );
        if i == MANAGER {
            text.push_str(&format!(
                "Logs {{\n  logfile = \"{}/%Y/%{{l}}/%{{s}}/%{{n}}\"\n  max_open = 2\n}}\n",
                out.display()
            ));
        } else {
            let dir = c.dir.path().join(c.name(i));
            let (main, reject) = (dir.join("mainlog.cluster"), dir.join("rejectlog.cluster"));
            text = text.replace(
                "cluster {\n",
                &format!(
                    "cluster {{\n  logs = [ mainlog = \"{}\" rejectlog = \"{}\" ]\n",
                    main.display(),
                    reject.display()
                ),
            );
            text.push_str(&format!(
                "ec_logger \"ec_logger_cluster\" {{\n  mainlog = \"cluster://{}=>master\"\n  \
                 rejectlog = \"cluster://{}?subscribers={},master\"\n}}\n",
                main.display(),
                reject.display(),
                c.name(MANAGER)
            ));
        }
        std::fs::write(c.config_path(i), text).expect("config");
    }
}

/// Appends `PER_LOG` records to each log of node `i` through its console, a few ms apart;
/// returns the records whose append the node confirmed and those left in doubt (the node died
/// while answering).
fn append_all(sock: PathBuf, node: String, stop: Arc<AtomicBool>) -> (Vec<String>, Vec<String>) {
    let (mut confirmed, mut doubtful) = (Vec::new(), Vec::new());
    let mut client: Option<Client> = None;
    for seq in 0..PER_LOG {
        for log in LOGS {
            let rec = format!("{node} {log} {seq:06}");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    return (confirmed, doubtful);
                }
                if client.is_none() {
                    client = Client::connect(&Endpoint::parse(&sock.to_string_lossy())).ok();
                }
                let Some(c) = client.as_mut() else {
                    // Node down: nothing was sent, so nothing is in doubt; try again.
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                match c.run(&format!("log append {log} {rec}"), false) {
                    Ok(r) if r.status == Status::Ok => {
                        confirmed.push(rec);
                        break;
                    }
                    Ok(r) => panic!(
                        "{node}: append refused: {}",
                        String::from_utf8_lossy(&r.body)
                    ),
                    Err(_) => {
                        // Sent, but the answer never came: it may or may not be in the journal.
                        doubtful.push(rec);
                        client = None;
                        break;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    (confirmed, doubtful)
}

/// Every file under `out`, relative, with its lines.
fn outputs(out: &Path) -> BTreeMap<PathBuf, Vec<String>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name() == ".cohort-logmove" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let rel = p.strip_prefix(out).expect("under out").to_path_buf();
                files.insert(rel, text.lines().map(str::to_owned).collect());
            }
        }
    }
    files
}

fn total_lines(out: &Path) -> usize {
    outputs(out).values().map(Vec::len).sum()
}

fn wait_lines(c: &Cluster<'_>, out: &Path, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while total_lines(out) < at_least {
        assert!(
            Instant::now() < deadline,
            "the manager never wrote {at_least} lines; its log:\n{}",
            support::cluster::read(&c.log(MANAGER))
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(c: &Cluster<'_>, host: usize, sig: &str) {
    c.signal(host, sig);
}

/// Stops the manager (SIGSTOP) and waits until node `i` has a batch sent to it and not
/// acknowledged (acks already on their way are let in first). Should the node have nothing to
/// send (its appender may be done), probe records are appended through its console; they are
/// returned, confirmed, to be counted with the rest. Should the node not be connected yet (a
/// restarted manager still connecting), the manager is let run a little and frozen again.
fn freeze_manager_until_sent(c: &Cluster<'_>, i: usize) -> Vec<String> {
    let unacked = |c: &Cluster<'_>| c.counters(i)["logmove_batches_unacked"].as_u64() > Some(0);
    let mut probes = Vec::new();
    for _attempt in 0..15 {
        signal(c, MANAGER, "-STOP");
        std::thread::sleep(Duration::from_millis(100));
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if unacked(c) {
                return probes;
            }
            let rec = format!("{} mainlog probe{:03}", c.name(i), probes.len());
            let mut cl =
                Client::connect(&Endpoint::parse(&c.socket(i).to_string_lossy())).expect("console");
            let r = cl
                .run(&format!("log append mainlog {rec}"), false)
                .expect("append");
            assert_eq!(r.status, Status::Ok, "{}", String::from_utf8_lossy(&r.body));
            probes.push(rec);
            std::thread::sleep(Duration::from_millis(100));
        }
        signal(c, MANAGER, "-CONT");
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("{} never had a batch in flight to the manager", c.name(i));
}

/// Three nodes and a manager on `configure`'s journals and the cluster key, with quick log
/// intervals (and `more` inside `cluster { }`), `edit` applied to every configuration, started
/// and formed; returns the cluster and the manager's output directory.
fn logging_cluster<'a>(
    lab: &'a Lab,
    more: &str,
    edit: impl Fn(String) -> String,
) -> (Cluster<'a>, PathBuf) {
    let mut c = support::cluster::cluster(lab, "").with_cluster_options(&format!(
        "  log_active_interval = 0.02\n  log_idle_interval = 0.5\n{more}"
    ));
    let key = c.dir.path().join("cluster.key");
    std::fs::write(&key, b"the logmove test's cluster key, long enough").expect("key");
    let out = c.dir.path().join("out");
    configure(&c, &key, &out, 4);
    for i in 0..4 {
        c.edit_config(i, &edit);
    }
    for i in 0..NODES {
        c.start(i);
    }
    c.start_manager(MANAGER);
    // A node's `cluster membership` lists the nodes (the manager is in the transport's view but
    // not in the nodes' groups).
    for i in 0..NODES {
        c.wait_members(i, &[0, 1, 2]);
    }
    (c, out)
}

#[test]
fn three_nodes_to_the_manager_exactly_once_across_kills() {
    let Some(lab) = Lab::new("three_nodes_to_the_manager_exactly_once_across_kills", 4) else {
        return;
    };
    let (mut c, out) = logging_cluster(&lab, "", |t| t);

    let stop = Arc::new(AtomicBool::new(false));
    let appenders: Vec<_> = (0..NODES)
        .map(|i| {
            let (sock, name, stop) = (c.socket(i), c.name(i), stop.clone());
            std::thread::spawn(move || append_all(sock, name, stop))
        })
        .collect();

    // The manager dies mid-pull, with a batch sent to it and not yet read, and comes back.
    wait_lines(&c, &out, 150);
    let mut probes = freeze_manager_until_sent(&c, 0);
    let connections = |c: &Cluster<'_>| c.counters(1)["logmove_connections"].as_u64();
    let before = connections(&c);
    c.kill(MANAGER);
    std::thread::sleep(Duration::from_millis(200));
    c.start_manager(MANAGER);
    let deadline = Instant::now() + Duration::from_secs(30);
    while connections(&c) <= before {
        assert!(
            Instant::now() < deadline,
            "the restarted manager never connected to node2"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A node dies mid-serve with its checkpoint behind the manager: the manager is frozen, the
    // node sends a batch into its socket, the node is frozen, the manager thaws, writes the batch
    // and acknowledges it into the frozen node's socket, and the node is killed before reading the
    // ack. The restarted node replays from its old checkpoint; the manager must skip what it
    // already has. (The node's appends continue once it is back.)
    probes.extend(freeze_manager_until_sent(&c, 1));
    signal(&c, 1, "-STOP");
    signal(&c, MANAGER, "-CONT");
    // The manager writes the batch and acknowledges it into the frozen node's socket.
    std::thread::sleep(Duration::from_millis(300));
    c.kill(1);
    std::thread::sleep(Duration::from_millis(200));
    c.start(1);
    c.wait_members(0, &[0, 1, 2]);

    let mut results: Vec<(Vec<String>, Vec<String>)> = appenders
        .into_iter()
        .map(|t| t.join().expect("appender"))
        .collect();
    for p in probes {
        let i = results
            .iter()
            .position(|r| {
                r.0.first()
                    .is_some_and(|x| x.split(' ').next() == p.split(' ').next())
            })
            .expect("probe of a known node");
        results[i].0.push(p);
    }
    stop.store(true, Ordering::Relaxed);
    let confirmed: usize = results.iter().map(|r| r.0.len()).sum();
    assert!(
        confirmed >= NODES * LOGS.len() * PER_LOG - 8,
        "appends were confirmed: {confirmed}"
    );

    // Wait (bounded) for every confirmed record to arrive.
    let deadline = Instant::now() + Duration::from_secs(60);
    let files = loop {
        let files = outputs(&out);
        let have: usize = files.values().map(Vec::len).sum();
        if have >= confirmed {
            // Anything still to come (a doubtful record) comes within a few pulls.
            std::thread::sleep(Duration::from_secs(1));
            break outputs(&out);
        }
        assert!(
            Instant::now() < deadline,
            "only {have} of {confirmed} records arrived; manager log:\n{}",
            support::cluster::read(&c.log(MANAGER))
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    // Every file is at <out>/<year>/<log>/<subcluster>/<node> and holds only that stream.
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for (rel, lines) in &files {
        let parts: Vec<String> = rel
            .components()
            .map(|x| x.as_os_str().to_string_lossy().into_owned())
            .collect();
        assert_eq!(parts.len(), 4, "{rel:?}");
        assert!(
            parts[0].len() == 4 && parts[0].chars().all(|ch| ch.is_ascii_digit()),
            "{rel:?}"
        );
        assert_eq!(parts[2], "default", "{rel:?}");
        for l in lines {
            let mut w = l.split(' ');
            assert_eq!(w.next(), Some(parts[3].as_str()), "{l} in {rel:?}");
            assert_eq!(w.next(), Some(parts[1].as_str()), "{l} in {rel:?}");
            *count.entry(l.as_str()).or_default() += 1;
        }
    }
    let dups: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "records written twice: {dups:?}");
    for (confirmed, doubtful) in &results {
        let missing: Vec<_> = confirmed
            .iter()
            .filter(|r| !count.contains_key(r.as_str()))
            .collect();
        assert!(missing.is_empty(), "records lost: {missing:?}");
        let known = confirmed.len() + doubtful.len();
        let node = confirmed.first().map(|r| r.split(' ').next().unwrap_or(""));
        let arrived = count
            .keys()
            .filter(|r| Some(r.split(' ').next().unwrap_or("")) == node)
            .count();
        assert!(
            arrived <= known,
            "records nobody appended: {arrived} > {known}"
        );
    }

    // `cluster show logs` on a node: both journals, their subscribers and checkpoints.
    let shown = c
        .ctl_json(0, &["cluster", "show", "logs"])
        .expect("cluster show logs");
    let logs = shown["logs"].as_array().expect("logs");
    assert_eq!(logs.len(), 2, "{shown}");
    assert!(logs[0]["on_disk"].as_u64() > Some(0), "{shown}");
    let subs: Vec<&str> = logs[1]["subscribers"]
        .as_array()
        .expect("subscribers")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(subs, ["master", "node4"], "{shown}");
    let counters = c.counters(0);
    assert!(
        counters["logmove_batches_acked"].as_u64() > Some(0),
        "{counters}"
    );
    assert_eq!(
        counters["logmove_auth_refused"].as_u64(),
        Some(0),
        "{counters}"
    );
}

/// Runs the client side of a handshake with `key` against `addr` from inside host 0's namespace;
/// returns the first message after it.
fn try_handshake(
    lab: &Lab,
    addr: std::net::SocketAddr,
    key: Option<ClusterKey>,
) -> Option<Message> {
    in_netns(&lab.hosts[0].ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut session = Session::plain(Role::Client);
        let cn = [5u8; 32];
        s.write_all(&session.seal(&Message::Hello {
            nonce: cn,
            name: "intruder".into(),
        }))
        .ok()?;
        let mut w = s.try_clone().ok()?;
        let mut buf = Vec::new();
        let mut recv = |session: &mut Session, buf: &mut Vec<u8>| -> Option<Message> {
            loop {
                if let Ok(Some((m, n))) = session.open(buf) {
                    buf.drain(..n);
                    return Some(m);
                }
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).ok().filter(|&n| n > 0)?;
                buf.extend_from_slice(&chunk[..n]);
            }
        };
        let Some(Message::Welcome {
            nonce: sn, proof, ..
        }) = recv(&mut session, &mut buf)
        else {
            return None;
        };
        assert!(proof.is_some(), "a keyed node proves its key");
        let k = key.unwrap_or_else(|| ClusterKey::from_material(b"not the cluster key at all"));
        w.write_all(&session.seal(&Message::Auth {
            proof: wire::client_proof(&k, &cn, &sn),
        }))
        .ok()?;
        let mut keyed = Session::keyed(&k, &cn, &sn, Role::Client);
        recv(&mut keyed, &mut buf)
    })
}

#[test]
fn a_wrong_cluster_key_is_refused_and_counted() {
    let Some(lab) = Lab::new("a_wrong_cluster_key_is_refused_and_counted", 1) else {
        return;
    };
    let mut c = support::cluster::cluster(&lab, "");
    let key = c.dir.path().join("cluster.key");
    let material = b"the right key for this one-node cluster";
    std::fs::write(&key, material).expect("key");
    let out = c.dir.path().join("out");
    configure(&c, &key, &out, 1);
    c.start(0);
    c.wait_members(0, &[0]);
    let addr = std::net::SocketAddr::from((lab.hosts[0].addr, 4802));
    // The service may take a moment to listen after the node appears.
    let deadline = Instant::now() + Duration::from_secs(10);
    let right = loop {
        let m = try_handshake(&lab, addr, Some(ClusterKey::from_material(material)));
        if m.is_some() || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        matches!(&right, Some(Message::Logs { logs }) if logs.len() == 2),
        "the right key gets the list of logs: {right:?}"
    );
    let wrong = try_handshake(&lab, addr, None);
    assert!(
        matches!(wrong, Some(Message::Refused { .. })),
        "a wrong key is refused: {wrong:?}"
    );
    let counters = c.counters(0);
    assert_eq!(
        counters["logmove_auth_refused"].as_u64(),
        Some(1),
        "{counters}"
    );
    assert_eq!(
        counters["logmove_connections"].as_u64(),
        Some(2),
        "{counters}"
    );
}

/// `GET /metrics` on `Metrics_Listener` 127.0.0.1:9464 inside host `i`'s namespace.
fn scrape(lab: &Lab, i: usize) -> String {
    in_netns(&lab.hosts[i].ns, || {
        let mut s = TcpStream::connect(("127.0.0.1", 9464)).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .ok()?;
        let mut r = String::new();
        s.read_to_string(&mut r).ok()?;
        r.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
    })
    .unwrap_or_default()
}

/// The value of the sample `name` (with its labels, exactly) in an exposition.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The operator's view of a running cluster through `/metrics`: on each node the round-trip time
/// and suspicion of every peer, the replication lag histogram filled by updates made on the
/// others, each journal's backlog and lag per subscriber (a subscriber nobody reads keeps its
/// records; the manager's subscriber is emptied by the pull), and on the manager the log pull's
/// counters and shipping lag per node. Each exposition passes `promtool check metrics` when
/// promtool is installed.
#[test]
fn metrics_show_peers_replication_lag_and_log_shipping() {
    let Some(lab) = Lab::new("metrics_show_peers_replication_lag_and_log_shipping", 4) else {
        return;
    };
    let (c, _out) = logging_cluster(
        &lab,
        "  Replicate \"outbound_domains\" { max_delay = 0.05 }",
        |t| t + "Metrics_Listener { Listen \"127.0.0.1:9464\" {} }\n",
    );
    // Replicated updates on every node, journal records on every node.
    for i in 0..NODES {
        let mut cl =
            Client::connect(&Endpoint::parse(&c.socket(i).to_string_lossy())).expect("console");
        for k in 0..20 {
            let r = cl
                .run(
                    &format!("cluster shared gauge incr outbound_domains d{i}-{k}.example"),
                    false,
                )
                .expect("answer");
            assert_eq!(r.status, Status::Ok, "{}", String::from_utf8_lossy(&r.body));
        }
        for k in 0..10 {
            for log in LOGS {
                let r = cl
                    .run(&format!("log append {log} {} {k}", c.name(i)), false)
                    .expect("answer");
                assert_eq!(r.status, Status::Ok, "{}", String::from_utf8_lossy(&r.body));
            }
        }
    }
    let manager = c.name(MANAGER);
    let deadline = Instant::now() + Duration::from_secs(60);
    let bodies = loop {
        let bodies = (0..4).map(|i| scrape(&lab, i)).collect::<Vec<_>>();
        let nodes_ready = (0..NODES).all(|i| {
            let b = &bodies[i];
            let peers_timed = (0..NODES).filter(|&j| j != i).all(|j| {
                let peer = format!("{{peer=\"{}\"}}", c.name(j));
                sample(b, &format!("cohort_peer_rtt_seconds{peer}")).is_some()
                    && sample(b, &format!("cohort_peer_suspected{peer}")) == Some(0.0)
            });
            // Forty updates from the two others, in at least one stamped message.
            let lag = sample(b, "cohort_replication_lag_seconds_count").unwrap_or(0.0) >= 1.0
                && sample(b, "cohort_replication_updates_in_total").unwrap_or(0.0) >= 40.0;
            let shipped = sample(
                b,
                &format!(
                    "cohort_journal_backlog_records{{log=\"rejectlog\",subscriber=\"{manager}\"}}"
                ),
            ) == Some(0.0);
            let kept = sample(
                b,
                "cohort_journal_backlog_records{log=\"rejectlog\",subscriber=\"master\"}",
            ) == Some(10.0);
            peers_timed && lag && shipped && kept
        });
        let manager_ready = (0..NODES).all(|i| {
            sample(
                &bodies[MANAGER],
                &format!(
                    "cohort_logship_lag_seconds{{node=\"{}\",log=\"rejectlog\"}}",
                    c.name(i)
                ),
            )
            .is_some()
        }) && sample(&bodies[MANAGER], "cohort_logship_records_written_total")
            .is_some_and(|n| n >= 60.0);
        if nodes_ready && manager_ready {
            break bodies;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed it all; node 0:\n{}\nmanager:\n{}",
            bodies[0],
            bodies[MANAGER]
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for (i, b) in bodies.iter().enumerate().take(NODES) {
        // Round trips inside one machine: positive and well under a second.
        let rtt = sample(
            b,
            &format!(
                "cohort_peer_rtt_seconds{{peer=\"{}\"}}",
                c.name((i + 1) % NODES)
            ),
        )
        .expect("rtt");
        assert!(rtt > 0.0 && rtt < 1.0, "rtt {rtt}");
        // The unread subscriber's oldest record is aging; the shipped one shows no lag.
        let kept = sample(
            b,
            "cohort_journal_lag_seconds{log=\"rejectlog\",subscriber=\"master\"}",
        )
        .expect("lag");
        assert!(kept > 0.0, "{kept}");
        assert_eq!(
            sample(
                b,
                &format!(
                    "cohort_journal_lag_seconds{{log=\"rejectlog\",subscriber=\"{manager}\"}}"
                ),
            ),
            Some(0.0)
        );
        let buckets: Vec<f64> = b
            .lines()
            .filter(|l| l.starts_with("cohort_replication_lag_seconds_bucket"))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        assert_eq!(buckets.len(), 15, "{b}");
        assert!(
            buckets.windows(2).all(|w| w[0] <= w[1]),
            "cumulative: {buckets:?}"
        );
    }
    for b in &bodies {
        support::promtool_check(b);
    }
}

/// `cluster jobs` on the manager lists one log pull per node; `cluster abort` stops one (its
/// node's new records stay on the node while the pull is paused, the others' keep arriving);
/// an unknown id is refused.
#[test]
fn the_manager_lists_its_pulls_as_jobs_and_aborts_one() {
    let Some(lab) = Lab::new("the_manager_lists_its_pulls_as_jobs_and_aborts_one", 4) else {
        return;
    };
    let (c, out) = logging_cluster(&lab, "", |t| t);
    let deadline = Instant::now() + Duration::from_secs(30);
    let jobs = loop {
        let (_, text) = c.ctl(MANAGER, "cluster jobs", true);
        let jobs: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| text.into());
        let pulls = jobs["jobs"]
            .as_array()
            .map_or(0, |j| j.iter().filter(|j| j["kind"] == "log pull").count());
        if pulls == NODES {
            break jobs;
        }
        assert!(Instant::now() < deadline, "no 3 pulls listed: {jobs}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let victim = c.name(1);
    let id = jobs["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .find(|j| j["what"].as_str().is_some_and(|w| w.contains(&victim)))
        .and_then(|j| j["id"].as_u64())
        .expect("the pull of node2");
    let (ok, text) = c.ctl(MANAGER, &format!("cluster abort {id}"), false);
    assert!(ok && text.contains(&format!("job {id}")), "{text}");
    // The pull stops (at once when connected; the answer says so when it took longer).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, listed) = c.ctl(MANAGER, "cluster jobs", false);
        if listed.starts_with("2 jobs") && !listed.contains(&victim) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the aborted pull is still listed: {listed}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, text) = c.ctl(MANAGER, "cluster abort 999999", false);
    assert!(!ok && text.contains("no job with id 999999"), "{text}");
    // Records appended now: node1's arrive, node2's wait for the paused pull.
    for i in [0, 1] {
        let (ok, text) = c.ctl(
            i,
            &format!("log append mainlog after-abort {}", c.name(i)),
            false,
        );
        assert!(ok, "{text}");
    }
    let arrived = |who: &str| {
        outputs(&out)
            .values()
            .flatten()
            .any(|l| l.contains(&format!("after-abort {who}")))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !arrived(&c.name(0)) {
        assert!(Instant::now() < deadline, "node1's record never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(!arrived(&victim), "the aborted pull is paused");
}
