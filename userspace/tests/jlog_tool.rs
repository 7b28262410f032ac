//! The `cohort-jlog` operator tool end to end: create, subscribe, write, inspect, tail (once and
//! following), repair.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use cohort_engine::jlog::{Journal, WriterOptions};

fn tool(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cohort-jlog"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cohort-jlog");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input.as_bytes())
            .expect("stdin");
    }
    child.wait_with_output().expect("wait")
}

fn ok(args: &[&str], stdin: Option<&str>) -> String {
    let out = tool(args, stdin);
    assert!(
        out.status.success(),
        "cohort-jlog {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn operator_workflow() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("mainlog.cluster");
    let d = s(&dir);
    ok(
        &["init", d, "--unit-limit", "200", "--safety", "safe"],
        None,
    );
    ok(&["subscriber", "add", d, "master"], None);
    ok(&["subscriber", "add", d, "other"], None);
    let acks = ok(
        &["write", d, "--ack"],
        Some("line one\nline two\nline three\n"),
    );
    assert_eq!(acks, "1\n2\n3\n");
    let meta = ok(&["meta", d], None);
    assert!(
        meta.contains("safety\tsafe") && meta.contains("segmentsize\t200"),
        "{meta}"
    );
    assert!(meta.contains("magic\t663a7318"), "{meta}");
    let list = ok(&["subscriber", "list", d], None);
    assert_eq!(
        list,
        "master\t00000000:00000000\nother\t00000000:00000000\n"
    );

    let tailed = ok(&["tail", d, "-s", "master", "--ids"], None);
    assert_eq!(
        tailed,
        "00000000:00000001 line one\n00000000:00000002 line two\n00000000:00000003 line three\n"
    );
    // Checkpointed: a second run prints nothing new.
    assert_eq!(ok(&["tail", d, "-s", "master"], None), "");
    assert!(ok(&["subscriber", "list", d], None).contains("master\t00000000:00000003"));
    let data = ok(&["data", d], None);
    assert!(
        data.contains("00000000\t") && data.contains("3 records"),
        "{data}"
    );

    // Removing a subscriber; removing it again is an error.
    ok(&["subscriber", "remove", d, "other"], None);
    let again = tool(&["subscriber", "remove", d, "other"], None);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no subscriber"));

    // tail --follow picks up records written after it started, and checkpoints them.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_cohort-jlog"))
        .args(["tail", d, "-s", "master", "--follow", "-n", "40"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn tail -f");
    let mut lines = BufReader::new(follow.stdout.take().expect("piped")).lines();
    let j = Journal::open(&dir).expect("open");
    let mut w = j.writer(WriterOptions::default()).expect("writer");
    for i in 0..40 {
        w.append(format!("followed {i}").as_bytes())
            .expect("append");
        if i % 10 == 9 {
            w.flush().expect("flush");
        }
    }
    w.close().expect("close");
    for i in 0..40 {
        let line = lines.next().expect("tail printed a line").expect("read");
        assert_eq!(line, format!("followed {i}"));
    }
    assert!(
        follow
            .wait()
            .expect("tail exits after -n records")
            .success()
    );
    let cp = j.checkpoint("master").expect("checkpoint");
    assert!(cp.log > 0, "followed across segment rolls to {cp}");
    assert_eq!(ok(&["tail", d, "-s", "master"], None), "");

    // Without --subscriber, tail leaves no checkpoint behind.
    assert_eq!(
        ok(&["tail", d], None),
        "",
        "a temporary subscriber starts at the end"
    );
    let from_oldest = ok(&["tail", d, "--begin"], None);
    assert!(from_oldest.ends_with("followed 39\n"), "{from_oldest}");
    assert_eq!(j.subscribers().expect("list"), vec!["master".to_string()]);

    // A torn tail in the current segment and a bad checkpoint: repair fixes both.
    let seg = dir.join(format!("{:08x}", j.metastore().expect("meta").storage_log));
    let mut bytes = std::fs::read(&seg).expect("segment");
    bytes.extend_from_slice(&0x663A_7318u32.to_ne_bytes());
    bytes.extend_from_slice(b"torn");
    std::fs::write(&seg, &bytes).expect("tear");
    std::fs::write(dir.join("cp.6d6173746572"), [0xff; 8]).expect("bad checkpoint");
    let report = ok(&["repair", d, "--force"], None);
    assert!(report.contains("checkpoint master"), "{report}");
    assert!(report.contains("dropped 8 bytes"), "{report}");
    ok(&["write", d], Some("after repair\n"));
    let after = ok(&["tail", d, "-s", "master"], None);
    assert!(after.ends_with("after repair\n"), "{after}");
}
