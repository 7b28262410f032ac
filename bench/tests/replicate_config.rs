//! `cohort-bench replicate --config` (root; skips otherwise): a configuration holding every
//! object type the nodes keep is run under a load that touches every object; the run must report
//! every object with figures, every sum object's global views must equal the sum of the nodes'
//! local views at the end (caches: the same values everywhere), and `--report` must write a page
//! that parses (as XML: the page is polyglot XHTML) with one `<svg>` per figure it announces.

use std::path::Path;
use std::process::Command;

#[test]
fn an_operators_configuration_is_benchmarked_object_by_object() {
    if !cohort::lab::is_root() {
        eprintln!("SKIP an_operators_configuration_is_benchmarked_object_by_object: needs root");
        return;
    }
    let bench = Path::new(env!("CARGO_BIN_EXE_cohort-bench"));
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
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "cohort-bench failed");
    let json: serde_json::Value = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("one JSON object");
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
    if !cohort::lab::is_root() {
        eprintln!("SKIP the_transport_report_parses: needs root");
        return;
    }
    let bench = Path::new(env!("CARGO_BIN_EXE_cohort-bench"));
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
