//! `cohort-bench replicate --config` (root; skips otherwise): a configuration holding every
//! object type the nodes keep is run under a load that touches every object; the run must report
//! every object with figures, every sum object's global views must equal the sum of the nodes'
//! local views at the end (caches: the same values everywhere), and `--report` must write a page
//! that parses (as XML: the page is polyglot XHTML) with one `<svg>` per figure it announces.

use std::path::Path;
use std::process::Command;

#[test]
fn an_operators_configuration_is_benchmarked_object_by_object() {
    let Some(bench) = bench_as_root("an_operators_configuration_is_benchmarked_object_by_object")
    else {
        return;
    };
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/every-object.conf");
    let dir = tempfile::tempdir().expect("a scratch directory");
    let page = dir.path().join("replicate.html");
    let out = Command::new(bench)
        .args([
            "replicate",
            "--seconds",
            "2",
            "--json",
            "--zipf",
            "1.1",
            "--keys",
            "1000",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--report")
        .arg(&page)
        .output()
        .expect("cohort-bench runs");
    let (stdout, json) = succeeded(&out);
    let objects = json["objects"].as_array().expect("objects");
    let names: Vec<&str> = objects
        .iter()
        .filter_map(|o| o["object"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "inbound_cidr",
            "outbound_cidr",
            "outbound_domains",
            "outbound_binding_domains",
            "shared_named_throttles",
            "cache",
            "metrics"
        ]
    );
    for o in objects {
        let name = &o["object"];
        assert!(o["updates"].as_u64().unwrap_or(0) > 0, "{name} was updated");
        assert!(
            o["replicated_updates"].as_u64().unwrap_or(0) > 0,
            "{name} replicated"
        );
        assert!(
            o["bytes_per_update"].as_f64().unwrap_or(0.0) > 0.0,
            "{name} bytes"
        );
        assert!(o["lag_samples"].as_u64().unwrap_or(0) > 0, "{name} probed");
        assert_eq!(o["consistent"], true, "{name}: {}", o["check"]);
        let checked = o["type"] != "throttle";
        assert_eq!(o["checked"], checked, "{name}");
    }
    assert_eq!(json["cpu_percent"].as_array().map(Vec::len), Some(3));

    let html = std::fs::read_to_string(&page).expect("the report was written");
    let svgs = svg_count(&html);
    assert_eq!(svgs, html.matches("<figure").count());
    assert!(
        stdout.contains(&format!("({svgs} figures)")),
        "the run announced {svgs} figures"
    );
    assert_eq!(
        svgs, 3,
        "throughput over time, lag distribution, per-object throughput"
    );
    assert!(
        html.contains("max_pending = 500"),
        "the configuration is in the page"
    );
}

/// `cohort-bench transport --report`: the page parses and holds its two figures (messages per
/// second over time, the latency distribution).
#[test]
fn the_transport_report_parses() {
    let Some(bench) = bench_as_root("the_transport_report_parses") else {
        return;
    };
    let dir = tempfile::tempdir().expect("a scratch directory");
    let page = dir.path().join("transport.html");
    let out = Command::new(bench)
        .args(["transport", "--count", "5000", "--report"])
        .arg(&page)
        .output()
        .expect("cohort-bench runs");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).expect("the report was written");
    assert_eq!(svg_count(&html), 2);
}

fn svg_count(html: &str) -> usize {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(html, options).expect("the report parses");
    doc.descendants()
        .filter(|n| n.tag_name().name() == "svg")
        .count()
}

/// `cohort-bench replicate --target`: the load runs against three real `cohortd` processes
/// through their console sockets, and afterwards no key of the benchmark's own is left on any
/// node (its CIDR block, its gauge and cache keys), once the nodes' compaction has run.
#[test]
fn a_target_run_leaves_no_key_of_its_own() {
    let Some(bench) = bench_as_root("a_target_run_leaves_no_key_of_its_own") else {
        return;
    };
    let cohortd = bench.with_file_name("cohortd");
    if !cohortd.exists() {
        eprintln!(
            "SKIP a_target_run_leaves_no_key_of_its_own: cohortd is not built beside cohort-bench"
        );
        return;
    }
    let lab = cohort::lab::Lab::new("bench target", 3).expect("namespaces");
    let mut cluster = cohort::lab::procs::Cluster::new(&lab, &cohortd, "").with_cluster_options(
        "Replicate \"inbound_cidr\" { max_delay = 0.05 }\n\
         Replicate \"outbound_domains\" { max_delay = 0.05 }\n\
         Replicate \"cache\" { max_delay = 0.05 }\n\
         Replicate \"shared_named_throttles\" {}",
    );
    cluster.start_all();
    for i in 0..3 {
        cluster.wait_members(i, &[0, 1, 2]);
    }
    // The operator's own keys, which must stay as they are.
    let (ok, _) = cluster.ctl(
        0,
        "cluster shared gauge incr outbound_domains example.com 7",
        false,
    );
    assert!(ok);
    let sockets: Vec<String> = (0..3)
        .map(|i| cluster.socket(i).display().to_string())
        .collect();
    let out = Command::new(bench)
        .args([
            "replicate",
            "--seconds",
            "2",
            "--json",
            "--keys",
            "500",
            "--target",
        ])
        .arg(sockets.join(","))
        .output()
        .expect("cohort-bench runs");
    let (_, json) = succeeded(&out);
    let objects = json["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 3, "CIDR tree, gauge table and cache");
    assert!(
        objects
            .iter()
            .all(|o| o["updates"].as_u64().unwrap_or(0) > 0)
    );
    assert_eq!(
        json["left_alone"][0],
        "shared_named_throttles (throttle table)"
    );
    // A throttle in the mix is refused: it could not be taken back.
    let refused = Command::new(bench)
        .args(["replicate", "--mix", "throttle=1", "--target"])
        .arg(sockets.join(","))
        .output()
        .expect("cohort-bench runs");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot be taken back"));
    // So is a key space that would reach the probe's address.
    let refused = Command::new(bench)
        .args(["replicate", "--keys", "200000", "--target"])
        .arg(sockets.join(","))
        .output()
        .expect("cohort-bench runs");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("at most 131071"));

    let ours = |i: usize| -> Vec<String> {
        ["inbound_cidr", "outbound_domains", "cache"]
            .iter()
            .flat_map(|object| {
                let show = cluster.ctl_text(i, &["cluster", "shared", "show", object]);
                show.lines()
                    .filter(|l| {
                        l.contains("198.18.")
                            || l.contains("198.19.")
                            || l.contains("cohort-bench.")
                    })
                    .map(|l| format!("{object}: {}", l.trim()))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    // Zero counts go at the nodes' next compaction (every 10 s), expired cache keys at once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(25);
    for i in 0..3 {
        loop {
            let left = ours(i);
            if left.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node{} still holds the benchmark's keys: {left:?}",
                i + 1
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        let gauge = cluster.ctl_text(
            i,
            &[
                "cluster",
                "shared",
                "gauge",
                "get",
                "outbound_domains",
                "example.com",
            ],
        );
        assert!(
            gauge.trim().ends_with('7'),
            "node{}: example.com is {gauge}",
            i + 1
        );
    }
}

/// The output of a run that must have succeeded, printed, and its JSON object.
fn succeeded(out: &std::process::Output) -> (String, serde_json::Value) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "cohort-bench failed");
    let json: serde_json::Value = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("one JSON object");
    (stdout, json)
}

/// The benchmark binary, or `None` (with a SKIP line naming `test`) when not root.
fn bench_as_root(test: &str) -> Option<&'static Path> {
    if !cohort::lab::is_root() {
        eprintln!("SKIP {test}: needs root");
        return None;
    }
    Some(Path::new(env!("CARGO_BIN_EXE_cohort-bench")))
}
