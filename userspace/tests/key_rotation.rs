//! Rolling rotation of the cluster key on a running 3-node cluster (root; skips otherwise): the
//! three reloads of docs/security.md (add the new key second everywhere, move it first everywhere,
//! remove the old one), each node reloaded in turn while replicated updates flow, with no view
//! change at any step and every update counted on every node. A reload that would add or remove
//! the key altogether is refused.

mod support;

use std::time::{Duration, Instant};

use cohort::lab::Lab;

fn views(c: &support::cluster::Cluster<'_>, i: usize) -> u64 {
    c.counters(i)["views_installed"]
        .as_u64()
        .expect("views_installed")
}

#[test]
fn a_keyring_rotates_with_three_reloads_and_no_view_change() {
    let Some(lab) = Lab::new("key_rotation", 3) else {
        return;
    };
    let mut c = support::cluster::cluster(&lab, "")
        .with_cluster_options("  Replicate \"outbound_domains\" { max_delay = 0.05 }");
    let old = c.dir.path().join("old.key");
    let new = c.dir.path().join("new.key");
    std::fs::write(&old, b"the old cluster key, long enough").expect("key");
    std::fs::write(&new, b"the new cluster key, long enough too").expect("key");
    let ring = |keys: &[&std::path::Path]| {
        let q: Vec<String> = keys
            .iter()
            .map(|k| format!("\"{}\"", k.display()))
            .collect();
        format!("msgc_server {{\n  cluster_key = ( {} )", q.join(", "))
    };
    for i in 0..3 {
        c.edit_config(i, |t| t.replace("msgc_server {", &ring(&[&old])));
    }
    for i in 0..3 {
        c.start(i);
    }
    for i in 0..3 {
        c.wait_members(i, &[0, 1, 2]);
    }
    let before: Vec<u64> = (0..3).map(|i| views(&c, i)).collect();
    let mut sent = 0u64;
    let bump = |c: &support::cluster::Cluster<'_>, sent: &mut u64| {
        for i in 0..3 {
            let (ok, body) = c.ctl(
                i,
                "cluster shared gauge incr outbound_domains rotation",
                false,
            );
            assert!(ok, "{body}");
            *sent += 1;
        }
    };
    let steps: [&[&std::path::Path]; 3] = [&[&old, &new], &[&new, &old], &[&new]];
    for (k, step) in steps.iter().enumerate() {
        for i in 0..3 {
            let current = std::fs::read_to_string(c.config_path(i)).expect("config");
            let start = current.find("msgc_server {").expect("scope");
            let end = current[start..]
                .find('\n')
                .map(|e| start + e)
                .expect("line");
            let line_end = current[end + 1..]
                .find('\n')
                .map(|e| end + 1 + e)
                .expect("key line");
            let text = format!(
                "{}{}{}",
                &current[..start],
                ring(step),
                &current[line_end..]
            );
            std::fs::write(c.config_path(i), text).expect("config");
            let (ok, reply) = c.ctl(i, "config reload", false);
            assert!(ok, "step {} on node{}: {reply}", k + 1, i + 1);
            assert!(reply.contains("msgc_server.cluster_key"), "{reply}");
            bump(&c, &mut sent);
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    // Every update reached every node, and no view changed.
    let want = sent.to_string();
    for (i, was) in before.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (ok, got) = c.ctl(
                i,
                "cluster shared gauge get outbound_domains rotation",
                false,
            );
            if ok && got.trim() == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node{} reads {got}, want {want}",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let counters = c.counters(i);
        assert_eq!(
            views(&c, i),
            *was,
            "node{}: a view changed: {counters}",
            i + 1
        );
    }
    // Removing the key altogether needs a restart.
    let current = std::fs::read_to_string(c.config_path(0)).expect("config");
    let start = current.find("  cluster_key").expect("key line");
    let end = current[start..]
        .find('\n')
        .map(|e| start + e + 1)
        .expect("end");
    std::fs::write(
        c.config_path(0),
        format!("{}{}", &current[..start], &current[end..]),
    )
    .expect("config");
    let (ok, reply) = c.ctl(0, "config reload", false);
    assert!(!ok, "{reply}");
    assert!(reply.contains("msgc_server.cluster_key"), "{reply}");
}
