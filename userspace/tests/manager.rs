//! The cluster manager (`cohortd --manager`, eccmgr) with real processes in network namespaces
//! (root; skips otherwise): three nodes and a manager. Broadcast, unicast and subcluster commands
//! reach exactly the nodes they address (seen by their side effects), `retrieve` family commands
//! return every addressed node's answer (an answer larger than the MTU included), the control
//! cache is written and flushed, a node killed while a retrieve waits is reported as not
//! answering; DuraVIP moves and view announcements broadcast from the manager; paniclog lines
//! broadcast on `log_group` reach `cohortctl listen`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cohort::lab::Lab;
use cohort::lab::procs::Cluster;

const NODES: [usize; 3] = [0, 1, 2];
const MANAGER: usize = 3;

/// Three nodes (node1, node2 in subcluster `east`, node3 in `west`) and the manager (node4) with
/// its control cache in the cluster's directory, all in one view.
fn cluster_with_manager<'a>(
    lab: &'a Lab,
    extra: &str,
    cluster_opts: &str,
    paniclogs: bool,
) -> Cluster<'a> {
    let mut c = support::cluster::cluster(lab, extra).with_cluster_options(cluster_opts);
    for (i, sc) in [(0, "east"), (1, "east"), (2, "west")] {
        let journal = c.dir.path().join(format!("paniclog{i}.cluster"));
        c.edit_config(i, |t| {
            let mut opts = format!("cluster {{\n  subcluster = \"{sc}\"\n");
            if paniclogs {
                opts.push_str(&format!(
                    "  logs = [ paniclog = \"{}\" ]\n",
                    journal.display()
                ));
            }
            t.replacen("cluster {\n", &opts, 1)
        });
    }
    let cache = c.dir.path().join("control_cache");
    c.edit_config(MANAGER, |t| {
        format!("{t}\nLogs {{ control_cache = \"{}\" }}\n", cache.display())
    });
    for i in NODES {
        c.start(i);
    }
    c.start_manager(MANAGER);
    for i in [0, 1, 2, MANAGER] {
        wait_view(&c, i, 4);
    }
    wait_control_group(&c);
    c
}

/// Waits (bounded) until `i` sees `n` members (the manager has no node name in membership, so
/// this counts private names).
fn wait_view(c: &Cluster<'_>, i: usize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let cmd = if i == MANAGER {
        "show cluster membership"
    } else {
        "cluster membership"
    };
    loop {
        let got = c
            .ctl_json(i, &[cmd])
            .and_then(|v| v["members"].as_array().map(Vec::len));
        if got == Some(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never saw {n} members (last {got:?}); its log:\n{}",
            c.name(i),
            std::fs::read_to_string(c.log(i)).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the manager sees all three nodes in the control group.
fn wait_control_group(c: &Cluster<'_>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = c
            .ctl_json(MANAGER, &["show cluster membership"])
            .expect("membership");
        let in_console = v["members"]
            .as_array()
            .expect("members")
            .iter()
            .filter(|m| {
                m["groups"]
                    .as_array()
                    .is_some_and(|g| g.iter().any(|g| g == "ec_console"))
            })
            .count();
        if in_console == 3 {
            return;
        }
        assert!(Instant::now() < deadline, "control group incomplete: {v:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The manager's JSON answer to `line`.
fn mgr_json(c: &Cluster<'_>, line: &str) -> serde_json::Value {
    let (ok, body) = c.ctl(MANAGER, line, true);
    assert!(ok, "'{line}' failed on the manager: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("'{line}': {e}: {body}"))
}

/// Node name -> (status, answer) of a retrieve's JSON.
fn responses(v: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
    v["responses"]
        .as_array()
        .expect("responses")
        .iter()
        .map(|r| {
            let status = r["status"].as_str().expect("status").to_owned();
            let body = r
                .get("answer")
                .or_else(|| r.get(status.as_str()))
                .cloned()
                .unwrap_or_default();
            (r["node"].as_str().expect("node").to_owned(), status, body)
        })
        .collect()
}

fn logger_group(c: &Cluster<'_>, i: usize) -> Option<String> {
    c.ctl_json(i, &["cluster info"])
        .and_then(|v| v["logger_group"].as_str().map(str::to_owned))
}

/// Waits (bounded) until node `i`'s `cluster info` names logger group `want`.
fn wait_logger_group(c: &Cluster<'_>, i: usize, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while logger_group(c, i).as_deref() != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{} never reloaded to logger group {want}: {:?}",
            c.name(i),
            logger_group(c, i)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn set_log_group(c: &Cluster<'_>, i: usize, group: &str) {
    c.edit_config(i, |t| {
        let kept: Vec<&str> = t
            .lines()
            .filter(|l| !l.trim_start().starts_with("log_group"))
            .collect();
        kept.join("\n").replacen(
            "cluster {\n",
            &format!("cluster {{\n  log_group = \"{group}\"\n"),
            1,
        )
    });
}

#[test]
fn manager_console_commands_reach_and_answer() {
    let Some(lab) = Lab::new("manager_console_commands_reach_and_answer", 4) else {
        return;
    };
    let mut c = cluster_with_manager(&lab, "", "", false);

    // The manager is a member of type Manager; its own commands answer locally.
    let members = mgr_json(&c, "show cluster membership");
    let types: Vec<&str> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["node_type"].as_str())
        .collect();
    assert_eq!(
        types.iter().filter(|t| **t == "Manager").count(),
        1,
        "{members:#}"
    );
    let (ok, info) = c.ctl(MANAGER, "info", false);
    assert!(ok && info.contains("Control Group: ec_console"), "{info}");
    let (ok, _) = c.ctl(MANAGER, "cluster info", false);
    assert!(!ok, "node commands do not run in the manager itself");

    // broadcast: every node reloads its configuration (changed beforehand) and shows it.
    for i in NODES {
        set_log_group(&c, i, "ec_reloaded");
    }
    let sent = mgr_json(&c, "broadcast config reload");
    let mut nodes: Vec<String> = serde_json::from_value(sent["nodes"].clone()).expect("nodes");
    nodes.sort();
    assert_eq!(nodes, ["node1", "node2", "node3"]);
    for i in NODES {
        wait_logger_group(&c, i, "ec_reloaded");
    }

    // unicast: only the addressed node reloads.
    for i in NODES {
        set_log_group(&c, i, "ec_unicast");
    }
    mgr_json(&c, "unicast node2 config reload");
    wait_logger_group(&c, 1, "ec_unicast");
    let r = mgr_json(&c, "retrieve_node node2 config reload");
    assert_eq!(responses(&r).len(), 1, "{r:#}");
    for i in [0, 2] {
        assert_eq!(logger_group(&c, i).as_deref(), Some("ec_reloaded"));
    }

    // retrieve: every node's own answer, in the docs' text shape per node.
    let (ok, text) = c.ctl(MANAGER, "retrieve cluster nodename", false);
    assert!(ok, "{text}");
    for n in ["node1", "node2", "node3"] {
        assert!(text.contains(&format!("{n}:\n{n}\n")), "{text}");
    }
    let r = mgr_json(&c, "retrieve cluster info");
    let rs = responses(&r);
    assert_eq!(rs.len(), 3, "{r:#}");
    for (node, status, answer) in &rs {
        assert_eq!(status, "ok", "{r:#}");
        assert_eq!(answer["control_group"], "ec_console", "{node}: {answer:#}");
        let own = c
            .ctl_json(
                (node[4..].parse::<usize>().expect("nodeN")) - 1,
                &["cluster info"],
            )
            .expect("own info");
        assert_eq!(answer["m_private_name"], own["m_private_name"]);
    }

    // The control cache holds a file per node answer; flushing empties it.
    let cache = c.dir.path().join("control_cache");
    let entry = cache.join("cluster%20info.json");
    assert!(entry.join("command").is_file(), "{}", entry.display());
    for (node, _, answer) in &rs {
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(entry.join(node)).expect("cached"))
                .expect("cached JSON");
        assert_eq!(&file, answer);
    }
    let first = r["request"].as_u64().expect("request id");
    let again = mgr_json(&c, "retrieve cluster info");
    assert_eq!(
        again["request"].as_u64(),
        Some(first),
        "served from the cache"
    );
    let flushed = mgr_json(&c, "flush control cache");
    assert!(
        flushed["entries_removed"].as_u64() >= Some(2),
        "{flushed:#}"
    );
    assert!(!entry.exists());
    let fresh = mgr_json(&c, "retrieve cluster info");
    assert_ne!(
        fresh["request"].as_u64(),
        Some(first),
        "asked anew after a flush"
    );
    assert!(entry.join("node1").is_file());

    // retrieve_node and subcluster retrieve address only their nodes.
    let r = mgr_json(&c, "retrieve_node node3 cluster nodename");
    let rs = responses(&r);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].0, "node3");
    assert_eq!(rs[0].2, serde_json::json!({ "nodename": "node3" }), "{r:#}");
    let r = mgr_json(&c, "subcluster retrieve east cluster nodename");
    let mut east: Vec<String> = responses(&r).into_iter().map(|x| x.0).collect();
    east.sort();
    assert_eq!(east, ["node1", "node2"], "{r:#}");
    let (ok, err) = c.ctl(MANAGER, "retrieve_node nosuch cluster nodename", false);
    assert!(!ok && err.contains("nosuch"), "{err}");

    // A node's error comes back as such, with its message.
    let r = mgr_json(&c, "retrieve cluster abort 5");
    let rs = responses(&r);
    assert_eq!(rs.len(), 3, "{r:#}");
    for (_, status, body) in rs {
        assert_eq!(status, "error", "{r:#}");
        assert!(
            body.as_str()
                .is_some_and(|b| b.contains("no job with id 5")),
            "{r:#}"
        );
    }

    // An answer larger than the MTU (1400) arrives whole, identical to the node's own.
    let (ok, text) = c.ctl(MANAGER, "retrieve help", false);
    assert!(ok, "{text}");
    let (_, own) = c.ctl(1, "help", false);
    assert!(own.len() > 1400, "help is {} bytes", own.len());
    assert!(text.contains(&format!("node2:\n{own}")), "{text}");

    // A node that cannot answer and is then killed is reported as not answering.
    let pid = c.nodes[2].as_ref().expect("node3 runs").id();
    let stopped = Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .expect("kill -STOP");
    assert!(stopped.success());
    let socket = c.socket(MANAGER);
    let waiter = std::thread::spawn(move || {
        let mut cl = cohort::console::Client::connect(&cohort::console::Endpoint::parse(
            &socket.to_string_lossy(),
        ))
        .expect("manager console");
        let r = cl.run("retrieve cluster membership", true).expect("answer");
        String::from_utf8_lossy(&r.body).into_owned()
    });
    std::thread::sleep(Duration::from_millis(300));
    c.kill(2);
    let body = waiter.join().expect("retrieve returns");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let rs = responses(&v);
    assert_eq!(rs.len(), 3, "{v:#}");
    for (node, status, body) in rs {
        if node == "node3" {
            assert_eq!(status, "missing", "{v:#}");
            assert!(body.as_str().is_some_and(|b| b.contains("no answer")));
        } else {
            assert_eq!(status, "ok", "{v:#}");
        }
    }
    let (ok, _) = c.ctl(MANAGER, "shutdown", false);
    assert!(ok);
    let status = c.nodes[MANAGER]
        .take()
        .expect("manager")
        .wait()
        .expect("exits");
    assert!(status.success(), "the manager shuts down cleanly");
}

fn plumbed_on(lab: &Lab, i: usize, ip: std::net::Ipv4Addr) -> bool {
    cohort::lab::procs::plumbed(lab, i).contains(&format!("{ip}/32"))
}

fn owner(lab: &Lab, ip: std::net::Ipv4Addr) -> Vec<usize> {
    NODES
        .into_iter()
        .filter(|&i| plumbed_on(lab, i, ip))
        .collect()
}

fn wait_single_owners(lab: &Lab, vips: &[std::net::Ipv4Addr]) {
    cohort::lab::procs::wait_single_owners(lab, vips, &NODES);
}

#[test]
fn duravip_broadcasts_and_paniclog_listen() {
    let Some(lab) = Lab::new("duravip_broadcasts_and_paniclog_listen", 4) else {
        return;
    };
    let (vips, bindings, cluster_opts) = cohort::lab::procs::duravip_setup(&lab, 200);
    let c = cluster_with_manager(
        &lab,
        &bindings,
        &format!("{cluster_opts}\n  log_group = \"ec_paniclog\""),
        true,
    );

    // Every address gets one owner; a broadcast move gives it to the node named.
    wait_single_owners(&lab, &vips);
    let vip = vips[0];
    let from = owner(&lab, vip)[0];
    let to = (from + 1) % 3;
    let sent = mgr_json(
        &c,
        &format!("broadcast cluster duravip move {vip} to {}", c.name(to)),
    );
    assert_eq!(sent["nodes"].as_array().map(Vec::len), Some(3), "{sent:#}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while owner(&lab, vip) != [to] {
        assert!(
            Instant::now() < deadline,
            "{vip} never moved from {} to {}: now on {:?}",
            c.name(from),
            c.name(to),
            owner(&lab, vip)
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // announce view: every node runs it (its answer is cached), ownership stays single.
    let before: Vec<u64> = NODES
        .iter()
        .map(|&i| c.counters(i)["messages_sent"].as_u64().unwrap_or(0))
        .collect();
    mgr_json(&c, "broadcast cluster duravip announce view");
    let r = mgr_json(&c, "retrieve cluster duravip announce view");
    let rs = responses(&r);
    assert_eq!(rs.len(), 3, "{r:#}");
    assert!(rs.iter().all(|(_, s, _)| s == "ok"), "{r:#}");
    for (k, &i) in NODES.iter().enumerate() {
        let after = c.counters(i)["messages_sent"].as_u64().unwrap_or(0);
        assert!(after > before[k], "{} sent nothing", c.name(i));
    }
    wait_single_owners(&lab, &vips);

    // cohortctl listen on node1 sees node2's paniclog line; node2's journal holds it.
    let mut listener = Command::new(support::cluster::bin(
        "cohortctl",
        env!("CARGO_BIN_EXE_cohortctl"),
    ))
    .args([
        "--socket",
        &c.socket(0).to_string_lossy(),
        "listen",
        "ec_paniclog",
    ])
    .stdout(Stdio::piped())
    .spawn()
    .expect("cohortctl listen");
    let out = listener.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let hello = rx.recv_timeout(Duration::from_secs(10)).expect("listening");
    assert_eq!(hello, "Listening to group ec_paniclog");
    wait_in_group(&c, 0, "ec_paniclog", true);
    c.edit_config(1, |t| format!("{t}\ncluster {{ this is not valid"));
    let mut seen = None;
    for _ in 0..40 {
        let (ok, reply) = c.ctl(1, "config reload", false);
        assert!(
            !ok && reply.starts_with("reload refused"),
            "a failed reload answers an error and keeps the configuration: {reply}"
        );
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            seen = Some(line);
            break;
        }
    }
    let _ = listener.kill();
    let _ = listener.wait();
    let line = seen.expect("a paniclog broadcast reached cohortctl listen");
    // The listener has gone, so node1 leaves the group it joined only for it.
    wait_in_group(&c, 0, "ec_paniclog", false);
    assert!(
        line.starts_with("[ec_paniclog] node2: ")
            && line.contains(":ERROR: ")
            && line.contains("config reload refused, running configuration kept"),
        "{line}"
    );
    let journal = cohort_engine::jlog::Journal::open(c.dir.path().join("paniclog1.cluster"))
        .expect("journal");
    let mut reader = journal.reader("master").expect("subscriber master");
    let (_, records) = reader.next_batch().expect("records");
    assert!(
        records
            .iter()
            .any(|r| String::from_utf8_lossy(&r.payload).contains("config reload refused")),
        "the paniclog journal holds the line"
    );
}

/// Waits (bounded) until node `i`'s own entry in its `cluster membership` does (or does not)
/// list `group`.
fn wait_in_group(c: &Cluster<'_>, i: usize, group: &str, want: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = c.ctl_json(i, &["cluster membership"]).expect("membership");
        let in_group = m["members"].as_array().expect("members").iter().any(|m| {
            m["node_name"] == c.name(i).as_str()
                && m["groups"]
                    .as_array()
                    .is_some_and(|g| g.iter().any(|g| g == group))
        });
        if in_group == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} in {group}: {in_group}, expected {want}: {m:#}",
            c.name(i)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
