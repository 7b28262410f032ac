//! `ci/package` builds the Debian package from this build's binaries; the package is unpacked
//! into a scratch root (what `dpkg -i` writes, without running the maintainer scripts), and the
//! installed `cohortd --check-config` accepts the installed configuration; the man pages are
//! roff, the configuration's lists every option; `systemd-analyze verify` accepts the units.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_cohort-bench"))
        .parent()
        .expect("target dir")
        .to_path_buf()
}

fn gunzip(p: &Path) -> String {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(p)
        .output()
        .expect("gzip runs");
    assert!(out.status.success(), "{}", p.display());
    String::from_utf8(out.stdout).expect("utf8")
}

#[test]
fn the_package_installs_and_its_configuration_checks() {
    let bins = bin_dir();
    if !bins.join("cohortd").exists() {
        // `cargo test --workspace` (what CI runs) builds every binary; one package alone may not.
        eprintln!(
            "SKIP: {} has no cohortd (run cargo test --workspace)",
            bins.display()
        );
        return;
    }
    let out_dir = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let built = Command::new("bash")
        .arg(root.join("ci/package"))
        .arg("--bin-dir")
        .arg(&bins)
        .arg("--out")
        .arg(out_dir.path())
        .arg("--fast")
        .output()
        .expect("ci/package runs");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = PathBuf::from(String::from_utf8_lossy(&built.stdout).trim());
    let name = deb.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    assert!(
        name.starts_with("cohort_") && name.ends_with("_amd64.deb"),
        "{name}"
    );
    let info = Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .output()
        .expect("dpkg-deb");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("Package: cohort"), "{info}");
    assert!(info.contains("conffiles"), "{info}");

    let scratch = tempfile::tempdir().expect("tempdir");
    let unpacked = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(scratch.path())
        .status()
        .expect("dpkg-deb -x");
    assert!(unpacked.success());
    let r = scratch.path();
    for d in ["var/log/ecelerity", "var/lib/cohort", "etc/cohort"] {
        assert!(r.join(d).is_dir(), "{d}");
    }
    let check = Command::new(r.join("usr/bin/cohortd"))
        .arg("--check-config")
        .arg(r.join("etc/cohort/cohort.conf"))
        .env("EC_NODE_NAME", "localhost")
        .output()
        .expect("installed cohortd runs");
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    for (page, word) in [
        ("usr/share/man/man8/cohortd.8.gz", "check\\-config"),
        ("usr/share/man/man1/cohortctl.1.gz", "cohortctl"),
        ("usr/share/man/man1/cohort-jlog.1.gz", "cohort\\-jlog"),
        ("usr/share/man/man1/cohort-bench.1.gz", "cohort\\-bench"),
        (
            "usr/share/man/man5/cohort.conf.5.gz",
            "view_balance_interval",
        ),
    ] {
        let text = gunzip(&r.join(page));
        assert!(
            text.starts_with(".ie") || text.starts_with(".TH"),
            "{page}: {}",
            &text[..text.len().min(80)]
        );
        assert!(text.contains(word), "{page} names {word}");
    }
    let conf = gunzip(&r.join("usr/share/man/man5/cohort.conf.5.gz"));
    for o in cohort_engine::config::options::CLUSTER {
        assert!(
            conf.contains(&format!(".B {}\n", o.name)),
            "cohort.conf(5) lists {}",
            o.name
        );
    }

    // The units verify, with ExecStart pointing at the unpacked binary.
    let units = tempfile::tempdir().expect("tempdir");
    for unit in ["cohortd.service", "cohort-manager.service"] {
        let text = std::fs::read_to_string(r.join("lib/systemd/system").join(unit)).expect("unit");
        let text = text.replace(
            "/usr/bin/cohortd",
            &r.join("usr/bin/cohortd").to_string_lossy(),
        );
        let path = units.path().join(unit);
        std::fs::write(&path, text).expect("write unit");
        let v = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .expect("systemd-analyze runs");
        let err = String::from_utf8_lossy(&v.stderr);
        assert!(v.status.success() && err.trim().is_empty(), "{unit}: {err}");
    }
}
