//! Interoperability with the real jlog C implementation (PyPI `jlog` 1.0.2's C sources, built by
//! `ci/build-jlog`): what Cohort writes the real library reads record for record, what the real
//! library writes Cohort reads, checkpoints move between them, and both share one journal under
//! fcntl locks. Fails with a clear message when the real jlog cannot be built, unless
//! `COHORT_SKIP_REAL_JLOG=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cohort_engine::jlog::{JlogId, Journal, JournalOptions, Position, Safety, WriterOptions};

struct RealJlog {
    dir: PathBuf,
}

impl RealJlog {
    /// Builds (or reuses) the real jlog; `None` only when skipping was asked for.
    fn get() -> Option<RealJlog> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = Command::new("bash")
            .arg(repo.join("ci/build-jlog"))
            .stderr(Stdio::inherit())
            .output();
        let skip = std::env::var("COHORT_SKIP_REAL_JLOG").as_deref() == Ok("1");
        match out {
            Ok(o) if o.status.success() => {
                let dir = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string());
                Some(RealJlog { dir })
            }
            other => {
                if skip {
                    eprintln!(
                        "COHORT_SKIP_REAL_JLOG=1: real jlog unavailable ({other:?}); skipping"
                    );
                    return None;
                }
                panic!(
                    "ci/build-jlog could not build the real jlog ({other:?}); it needs python3 -m pip \
                     (PyPI reachable), gcc and make. Set COHORT_SKIP_REAL_JLOG=1 to skip this test."
                );
            }
        }
    }

    fn driver(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut cmd = Command::new(self.dir.join("jlog-driver"));
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().expect("spawn jlog-driver");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin is piped")
                .write_all(input.as_bytes())
                .expect("write to jlog-driver");
        }
        let out = child.wait_with_output().expect("wait for jlog-driver");
        assert!(
            out.status.success(),
            "jlog-driver {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("driver prints ASCII")
    }

    fn jlogctl(&self, args: &[&str]) -> String {
        let out = Command::new(self.dir.join("jlogctl"))
            .args(args)
            .output()
            .expect("run jlogctl");
        assert!(out.status.success(), "jlogctl {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Reads as subscriber `sub` with the C library: `(id, payload)` per record.
    fn read(&self, dir: &Path, sub: &str, max: Option<usize>) -> Vec<(JlogId, Vec<u8>)> {
        let d = dir.to_str().expect("utf-8 path");
        let max = max.map(|m| m.to_string());
        let mut args = vec!["read", d, sub];
        if let Some(m) = &max {
            args.push(m);
        }
        self.driver(&args, None)
            .lines()
            .map(|l| {
                let (id, hex) = l.split_once(' ').expect("driver line is 'id hex'");
                (id.parse().expect("driver prints ids"), unhex(hex))
            })
            .collect()
    }

    fn write(&self, dir: &Path, payloads: &[Vec<u8>]) {
        let input: String = payloads.iter().map(|p| hex(p) + "\n").collect();
        self.driver(&["write", dir.to_str().expect("utf-8 path")], Some(&input));
    }
}

/// Asserts two record sequences are equal, reporting the first difference briefly.
fn assert_same(got: &[Vec<u8>], want: &[Vec<u8>], what: &str) {
    if got == want {
        return;
    }
    let i = got.iter().zip(want).take_while(|(a, b)| a == b).count();
    let show = |v: &[Vec<u8>]| {
        v.get(i).map_or("<end>".to_string(), |p| {
            String::from_utf8_lossy(&p[..p.len().min(40)]).into_owned()
        })
    };
    panic!(
        "{what}: {} records read, {} expected; first difference at #{i}: got {:?}, expected {:?}",
        got.len(),
        want.len(),
        show(got),
        show(want)
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("driver prints hex"))
        .collect()
}

/// Payloads of varied sizes, including empty, binary and larger than a segment.
fn payloads(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| match i % 7 {
            0 => Vec::new(),
            3 => (0..=255u8).chain(0..=255u8).collect(),
            5 => format!("{tag}-{i}-").repeat(40).into_bytes(),
            _ => format!("{tag}-{i}").into_bytes(),
        })
        .collect()
}

fn cohort_read_all(j: &Journal, sub: &str) -> Vec<(JlogId, Vec<u8>)> {
    let mut r = j.reader(sub).expect("open reader");
    let mut out = Vec::new();
    loop {
        let (iv, recs) = r.next_batch().expect("read batch");
        if iv.count == 0 {
            return out;
        }
        out.extend(recs.into_iter().map(|r| (r.id, r.payload)));
        r.checkpoint(iv.last).expect("checkpoint");
    }
}

#[test]
fn cohort_writes_real_jlog_reads_record_for_record() {
    let Some(real) = RealJlog::get() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cohort-written");
    let j = Journal::create(
        &dir,
        JournalOptions {
            unit_limit: 1000,
            ..Default::default()
        },
    )
    .expect("create");
    j.add_subscriber("c-reader", Position::Begin).expect("add");
    j.add_subscriber("cohort", Position::Begin).expect("add");
    let data = payloads("cw", 200);
    let mut w = j.writer(WriterOptions::default()).expect("writer");
    for p in &data[..100] {
        w.append(p).expect("append");
    }
    w.append_batch(&data[100..]).expect("append batch");
    w.close().expect("close");

    let subs = real.jlogctl(&["-s", dir.to_str().expect("utf-8")]);
    assert!(
        subs.contains("c-reader") && subs.contains("cohort"),
        "jlogctl -s: {subs}"
    );

    // A copy whose indexes Cohort builds first: the C reader must accept them as its own.
    let pre = tmp.path().join("indexed-by-cohort");
    std::fs::create_dir(&pre).expect("mkdir");
    for e in std::fs::read_dir(&dir).expect("readdir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), pre.join(e.file_name())).expect("copy");
    }
    let indexed = Journal::open(&pre)
        .expect("open")
        .segments()
        .expect("index");
    assert!(
        indexed
            .iter()
            .filter(|s| s.index.is_some_and(|i| i.closed))
            .count()
            > 2
    );
    let c_on_cohort_idx: Vec<Vec<u8>> = real
        .read(&pre, "c-reader", None)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_same(
        &c_on_cohort_idx,
        &data,
        "real jlog reading through Cohort-built indexes",
    );

    let c_read = real.read(&dir, "c-reader", None);
    let got: Vec<Vec<u8>> = c_read.iter().map(|(_, p)| p.clone()).collect();
    assert_same(&got, &data, "real jlog reading what Cohort wrote");
    assert!(
        c_read.last().expect("records").0.log > 2,
        "several segments were written"
    );

    // The index files the C reader built are byte-identical to the ones Cohort builds.
    let copy = tmp.path().join("copy");
    std::fs::create_dir(&copy).expect("mkdir");
    for e in std::fs::read_dir(&dir).expect("readdir") {
        let e = e.expect("entry");
        let name = e.file_name().into_string().expect("utf-8");
        if !name.ends_with(".idx") {
            std::fs::copy(e.path(), copy.join(&name)).expect("copy");
        }
    }
    let cohort_read = cohort_read_all(&Journal::open(&copy).expect("open copy"), "cohort");
    let ids = |v: &[(JlogId, Vec<u8>)]| {
        v.iter()
            .map(|(id, _)| id.to_string().into_bytes())
            .collect::<Vec<_>>()
    };
    assert_same(
        &ids(&cohort_read),
        &ids(&c_read),
        "ids assigned by Cohort and by C",
    );
    let payloads_of =
        |v: &[(JlogId, Vec<u8>)]| v.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>();
    assert_same(
        &payloads_of(&cohort_read),
        &payloads_of(&c_read),
        "Cohort and C reading one journal",
    );
    let mut compared = 0;
    for e in std::fs::read_dir(&dir).expect("readdir") {
        let name = e.expect("entry").file_name().into_string().expect("utf-8");
        if name.ends_with(".idx") && copy.join(&name).exists() {
            assert_eq!(
                std::fs::read(dir.join(&name)).expect("read"),
                std::fs::read(copy.join(&name)).expect("read"),
                "{name} differs between the C reader and Cohort"
            );
            compared += 1;
        }
    }
    assert!(compared > 0, "some index was built by both");
}

#[test]
fn real_jlog_writes_cohort_reads_and_cleans() {
    let Some(real) = RealJlog::get() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("c-written");
    let d = dir.to_str().expect("utf-8");
    real.driver(&["init", d, "1000"], None);
    real.driver(&["add", d, "cohort"], None);
    let data = payloads("c", 150);
    real.write(&dir, &data);

    let j = Journal::open(&dir).expect("open");
    let m = j.metastore().expect("meta");
    assert_eq!((m.unit_limit, m.safety), (1000, Safety::AlmostSafe));
    let read = cohort_read_all(&j, "cohort");
    let got: Vec<Vec<u8>> = read.iter().map(|(_, p)| p.clone()).collect();
    assert_same(&got, &data, "Cohort reading what the real jlog wrote");
    // The only subscriber is past every closed segment: they are gone.
    let left = j.segments().expect("segments");
    assert_eq!(left.len(), 1, "only the current segment remains: {left:?}");
    assert_eq!(
        left[0].log,
        m.storage_log.max(j.metastore().expect("meta").storage_log)
    );

    // A C writer and a Cohort writer appending to the same journal at once, under fcntl locks.
    let c_data = payloads("conc-c", 600);
    let r_data = payloads("conc-r", 600);
    let real_dir = real.dir.clone();
    let input: String = c_data.iter().map(|p| hex(p) + "\n").collect();
    let dir2 = dir.clone();
    let c_thread = std::thread::spawn(move || {
        RealJlog { dir: real_dir }.driver(&["write", dir2.to_str().expect("utf-8")], Some(&input));
    });
    let mut w = j.writer(WriterOptions::default()).expect("writer");
    for p in &r_data {
        w.append(p).expect("append");
    }
    w.close().expect("close");
    c_thread.join().expect("C writer");
    let both: Vec<Vec<u8>> = cohort_read_all(&j, "cohort")
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    // Each writer's tagged records appear complete and in its own order, interleaved or not.
    let tagged = |v: &[Vec<u8>], t: &[u8]| -> Vec<Vec<u8>> {
        v.iter().filter(|p| p.starts_with(t)).cloned().collect()
    };
    assert_same(
        &tagged(&both, b"conc-c"),
        &tagged(&c_data, b"conc-c"),
        "C writer's records",
    );
    assert_same(
        &tagged(&both, b"conc-r"),
        &tagged(&r_data, b"conc-r"),
        "Cohort writer's records",
    );
    assert_eq!(
        both.len(),
        c_data.len() + r_data.len(),
        "no record lost or torn"
    );
}

#[test]
fn checkpoints_move_between_cohort_and_real_jlog() {
    let Some(real) = RealJlog::get() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("shared");
    let j = Journal::create(
        &dir,
        JournalOptions {
            unit_limit: 600,
            ..Default::default()
        },
    )
    .expect("create");
    j.add_subscriber("both", Position::Begin).expect("add");
    let data = payloads("cp", 120);
    let mut w = j.writer(WriterOptions::default()).expect("writer");
    w.append_batch(&data).expect("append");
    w.close().expect("close");

    // Cohort consumes two intervals and checkpoints; the C reader resumes exactly after them.
    let mut r = j.reader("both").expect("reader");
    let mut first = Vec::new();
    for _ in 0..2 {
        let (iv, recs) = r.next_batch().expect("batch");
        first.extend(recs.into_iter().map(|r| r.payload));
        r.checkpoint(iv.last).expect("checkpoint");
    }
    assert!(!first.is_empty() && first.len() < data.len());
    // The C reader reads part of the rest and checkpoints mid-interval...
    let c_part = real.read(&dir, "both", Some(7));
    assert_eq!(c_part.len(), 7);
    let c_part: Vec<Vec<u8>> = c_part.into_iter().map(|(_, p)| p).collect();
    // ...and Cohort resumes from the C checkpoint.
    let rest: Vec<Vec<u8>> = cohort_read_all(&j, "both")
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let mut all = first;
    all.extend(c_part);
    all.extend(rest);
    assert_same(
        &all,
        &data,
        "records consumed across the two implementations",
    );

    // A subscriber added by the C library at the beginning is honoured by Cohort's cleanup.
    let d = dir.to_str().expect("utf-8");
    real.driver(&["add", d, "late"], None);
    let late_cp = j
        .checkpoint("late")
        .expect("checkpoint of C-added subscriber");
    assert_eq!(late_cp.marker, 0);
    assert_eq!(
        j.subscribers().expect("list"),
        vec!["both".to_string(), "late".to_string()]
    );
    let more = payloads("more", 30);
    let mut w = j.writer(WriterOptions::default()).expect("writer");
    w.append_batch(&more).expect("append");
    w.close().expect("close");
    let late: Vec<Vec<u8>> = real
        .read(&dir, "late", None)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    // "late" starts at the oldest segment still on disk, so it sees at least the new records.
    assert!(
        late.len() >= more.len() && late.ends_with(&more),
        "late read {} records",
        late.len()
    );
    assert!(j.remove_subscriber("late").expect("remove"));
    assert!(!real.jlogctl(&["-s", d]).contains("late"));
}
