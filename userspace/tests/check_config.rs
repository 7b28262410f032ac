//! `cohortd --check-config`, run as a process: exit status, stdout and the `FILE:LINE:COL` contract.

use std::path::{Path, PathBuf};
use std::process::Command;

fn cohortd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cohortd"))
}

/// `cohortd --check-config` on a file holding `text`: the exit code, stderr and the file's path.
fn check_text(dir: &Path, text: &str) -> (Option<i32>, String, PathBuf) {
    let f = dir.join("cohort.conf");
    std::fs::write(&f, text).expect("write");
    let out = cohortd()
        .arg("--check-config")
        .arg(&f)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr, f)
}

fn shared_example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/tests/examples/momentum-default-cluster.conf")
}

#[test]
fn example_prints_effective_config_and_exits_0() {
    let out = cohortd()
        .arg("--check-config")
        .arg(shared_example())
        .env("EC_NODE_NAME", "localhost")
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    assert!(stdout.contains("# nodename: localhost"), "{stdout}");
    assert!(stdout.contains("  view_mature_time = 5\n"), "{stdout}");
    assert!(
        stdout.contains("  heartbeat_start_delay = 15\n"),
        "{stdout}"
    );
    assert!(stdout.contains("  port = 4809\n"), "{stdout}");
    assert!(stdout.contains("Listen \"/tmp/2025\" {}"), "{stdout}");
    assert!(
        stdout.contains("mainlog = \"cluster:///var/log/ecelerity/mainlog.cluster=>master\""),
        "{stdout}"
    );
    assert!(
        out.stderr.is_empty(),
        "nothing ignored in the documented default"
    );

    // The printed configuration is itself a valid configuration that prints the same.
    let dir = tempfile::tempdir().expect("tempdir");
    let again = dir.path().join("effective.conf");
    std::fs::write(&again, &stdout).expect("write");
    let out2 = cohortd()
        .arg("--check-config")
        .arg(&again)
        .env("EC_NODE_NAME", "localhost")
        .output()
        .expect("runs");
    assert_eq!(out2.status.code(), Some(0));
    let body = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&String::from_utf8_lossy(&out2.stdout)), body(&stdout));
}

/// The check refuses what the daemon would refuse at start-up, with the location of the option
/// it blames: a node with no address (not in `peers`, no `nodeaddr`, a name that does not
/// resolve), a cluster key that cannot be read, a `Security` user that does not exist.
#[test]
fn what_the_daemon_refuses_the_check_refuses() {
    let out = cohortd()
        .arg("--check-config")
        .arg(shared_example())
        .env("EC_NODE_NAME", "node7.invalid")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("momentum-default-cluster.conf:18:1: node 'node7.invalid' has no address"),
        "{err}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let base = "cluster { nodename = \"n1\" }\nmsgc_server {\n  peers = [ n1 = \"127.0.0.1\" ]\n";
    let (code, err, f) = check_text(
        dir.path(),
        &format!("{base}  cluster_key = \"/nonexistent/key\"\n}}\n"),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with(&format!(
            "{}:4:17: cannot read the cluster key",
            f.display()
        )),
        "{err}"
    );
    let (code, err, f) = check_text(
        dir.path(),
        &format!("{base}}}\nSecurity {{\n  user = \"no-such-user-here\"\n}}\n"),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with(&format!("{}:6:10: no user", f.display())),
        "{err}"
    );
    // A console on TCP outside loopback with no key: anyone reaching it could run anything.
    let (code, err, f) = check_text(
        dir.path(),
        "cluster { nodename = \"n1\" }\nmsgc_server { peers = [ n1 = \"127.0.0.1\" ] }\nControl_Listener {\n  Listen \"0.0.0.0:2025\" {}\n}\n",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with(&format!(
            "{}:4:3: the console listens on 0.0.0.0:2025 outside loopback without a key",
            f.display()
        )),
        "{err}"
    );
    // With a key it is accepted.
    let key = dir.path().join("console.key");
    std::fs::write(&key, "a console key, long enough").expect("write");
    let (code, err, _) = check_text(
        dir.path(),
        &format!(
            "cluster {{ nodename = \"n1\" console_key = \"{}\" }}\nmsgc_server {{ peers = [ n1 = \"127.0.0.1\" ] }}\nControl_Listener {{\n  Listen \"0.0.0.0:2025\" {{}}\n}}\n",
            key.display()
        ),
    );
    assert_eq!(code, Some(0), "{err}");
    // A duravip_notify program that is not an executable file.
    let plain = dir.path().join("hook.txt");
    std::fs::write(&plain, "not a program").expect("write");
    let (code, err, f) = check_text(
        dir.path(),
        &format!(
            "cluster {{\n  nodename = \"n1\"\n  duravip_notify = \"{}\"\n}}\nmsgc_server {{ peers = [ n1 = \"127.0.0.1\" ] }}\n",
            plain.display()
        ),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with(&format!(
            "{}:3:20: {} is not an executable file",
            f.display(),
            plain.display()
        )),
        "{err}"
    );
}

#[test]
fn embedded_default_without_a_file() {
    let out = cohortd().arg("--check-config").output().expect("runs");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("<embedded default>"));
}

#[test]
fn json_output() {
    let out = cohortd()
        .args(["--check-config", "--json"])
        .env("EC_NODE_NAME", "localhost")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["nodename"], "localhost");
    assert_eq!(v["config"]["cluster"]["view_balance_interval"], 10.0);
    assert_eq!(
        v["config"]["cluster"]["topology"][0]["network"],
        "10.1.1.0/24"
    );
}

#[test]
fn errors_print_file_line_col_and_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = dir.path().join("node.conf");
    std::fs::create_dir(dir.path().join("conf.d")).expect("mkdir");
    std::fs::write(&main, "cluster { }\ninclude \"conf.d/msgc.conf\"\n").expect("write");
    std::fs::write(
        dir.path().join("conf.d/msgc.conf"),
        "msgc_server {\n  port = 0\n}\n",
    )
    .expect("write");
    let out = cohortd()
        .arg("--check-config")
        .arg(&main)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).expect("utf8");
    let want = format!(
        "{}:2:10: 'port' must be between 1 and 65535 (found 0)\n",
        dir.path().join("conf.d/msgc.conf").display()
    );
    assert_eq!(stderr, want);
}

#[test]
fn loop_nice_out_of_range_is_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, stderr, f) = check_text(
        dir.path(),
        "cluster { }\nmsgc_server {\n  loop_nice = -21\n}\n",
    );
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        format!(
            "{}:3:15: 'loop_nice' must be between -20 and 19 (found -21)\n",
            f.display()
        )
    );
}

#[test]
fn missing_file_is_a_config_error() {
    let out = cohortd()
        .args(["--check-config", "/nonexistent/cohort.conf"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("/nonexistent/cohort.conf:1:1: cannot read"),
        "{stderr}"
    );
}

#[test]
fn ignored_mta_options_are_reported_on_stderr_and_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, stderr, f) = check_text(dir.path(), "spool_base = \"/var/spool\"\ncluster { }\n");
    assert_eq!(code, Some(0));
    assert_eq!(
        stderr,
        format!(
            "{}:1:1: ignored: spool_base (belongs to the MTA, not to Cohort)\n",
            f.display()
        )
    );
}
