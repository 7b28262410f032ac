//! The console end to end: the real server on a temporary Unix socket and a loopback TCP port,
//! driven by the real `cohortctl` binary.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output, Stdio};
use std::sync::Arc;

use cohort::console::server::ServerError;
use cohort::console::{
    BoundAddr, Client, ConsoleHandler, ConsoleServer, Endpoint, Identity, ListenError, Role,
    ServerConfig,
};
use cohort_engine::config::{self, ListenAddr};
use cohort_engine::console::grammar::{ClusterCommand, Command};
use cohort_engine::console::protocol::{self, Status};
use cohort_engine::console::render::render;
use cohort_engine::console::status::{
    ClusterInfo, Member, Membership, Message, NodeAddr, NodeType, version_string,
};

const NODE: &str = "relay-0-1";

/// A handler answering from a loaded configuration: the data a node knows before it has joined
/// anything. It renders through the same renderers the daemon uses.
struct ConfigHandler {
    cfg: config::Config,
}

impl ConfigHandler {
    fn new() -> Self {
        let text = r#"
            cluster {
                nodename = "relay-0-1"
                nodeaddr = "10.0.0.11"
                log_group = "ec_log"
            }
            ECCluster_Listener { Listen "*:4802" {} }
        "#;
        let loaded = config::load_str(Path::new("test.conf"), text).expect("valid test config");
        ConfigHandler { cfg: loaded.config }
    }

    fn private_name(&self, conn: u8) -> String {
        format!("#ec{conn}-{:05}#{NODE}", std::process::id() % 100_000)
    }

    fn info(&self) -> ClusterInfo {
        ClusterInfo {
            daemon_port: self.cfg.msgc_server.port,
            m_private_name: self.private_name(0),
            s_private_name: self.private_name(1),
            control_group: self.cfg.cluster.control_group.clone(),
            cluster_group: self.cfg.cluster.cluster_group.clone(),
            leader: None,
            logger_group: self.cfg.cluster.log_group.clone(),
        }
    }

    fn addr(&self) -> Option<std::net::SocketAddr> {
        let ip = self.cfg.cluster.nodeaddr?;
        let port = self
            .cfg
            .eccluster_listener
            .listens
            .iter()
            .find_map(|l| match l.addr {
                ListenAddr::Inet { port, .. } => Some(port),
                ListenAddr::Unix(_) => None,
            })?;
        Some((ip, port).into())
    }
}

impl ConsoleHandler for ConfigHandler {
    fn handle(&self, cmd: &Command, json: bool) -> Result<String, String> {
        match cmd {
            Command::Cluster(ClusterCommand::Info) => Ok(render(&self.info(), json)),
            Command::Cluster(ClusterCommand::Nodeaddr) => {
                let address = self.addr().ok_or("no nodeaddr configured")?;
                Ok(render(&NodeAddr { address }, json))
            }
            Command::Cluster(ClusterCommand::Membership) => {
                let me = Member {
                    private_name: self.private_name(0),
                    node_name: Some(NODE.into()),
                    subcluster: Some(config::nodename::resolve_subcluster(
                        &self.cfg.cluster,
                        None,
                    )),
                    node_type: NodeType::Node,
                    version: version_string(),
                    address: self.addr(),
                    groups: vec![self.cfg.cluster.control_group.clone()],
                };
                Ok(render(&Membership { members: vec![me] }, json))
            }
            Command::ConfigReload => Ok(render(
                &Message {
                    message: "configuration unchanged".into(),
                },
                json,
            )),
            Command::Cluster(ClusterCommand::Abort { id }) => Err(format!("no job {id}")),
            // A handler bug must not take the console down.
            Command::Cluster(ClusterCommand::Reset) => panic!("reset is not supported here"),
            other => Err(format!("'{other}' needs the group protocol")),
        }
    }
}

struct Harness {
    dir: tempfile::TempDir,
    server: Option<ConsoleServer>,
}

impl Harness {
    fn socket(&self) -> PathBuf {
        self.dir.path().join("console.sock")
    }

    fn tcp(&self) -> String {
        let server = self.server.as_ref().expect("running");
        server
            .local_addrs()
            .iter()
            .find_map(|b| match b {
                BoundAddr::Tcp(a) => Some(a.to_string()),
                BoundAddr::Unix(_) => None,
            })
            .expect("a TCP listener")
    }
}

fn server_config(socket: &Path, tcp: bool, role: Role, max: usize) -> ServerConfig {
    let mut listens = vec![ListenAddr::Unix(socket.to_owned())];
    if tcp {
        listens.push(ListenAddr::Inet {
            host: Some("127.0.0.1".parse().expect("loopback")),
            port: 0,
        });
    }
    ServerConfig {
        listens,
        identity: Identity {
            nodename: NODE.into(),
            role,
        },
        max_connections: max,
        frame_timeout: std::time::Duration::from_secs(10),
        auth: None,
    }
}

fn start_with(role: Role, max: usize) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("console.sock");
    let server = ConsoleServer::start(
        server_config(&socket, true, role, max),
        Arc::new(ConfigHandler::new()),
    )
    .expect("server starts");
    Harness {
        dir,
        server: Some(server),
    }
}

fn start() -> Harness {
    start_with(Role::Node, 8)
}

fn ctl(home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Process::new(env!("CARGO_BIN_EXE_cohortctl"))
        .args(args)
        .env("HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cohortctl runs");
    {
        let mut input = child.stdin.take().expect("piped stdin");
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).expect("write stdin");
        }
    }
    child.wait_with_output().expect("cohortctl finishes")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn one_shot_text_and_json_over_unix_and_tcp() {
    let h = start();
    let sock = h.socket();
    let sock = sock.to_str().expect("utf-8 path");
    let home = h.dir.path();

    let o = ctl(home, &["--socket", sock, "cluster", "nodename"], None);
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (Some(0), "relay-0-1\n"),
        "{}",
        stderr(&o)
    );

    let o = ctl(
        home,
        &["--socket", sock, "--json", "cluster", "nodename"],
        None,
    );
    assert_eq!(o.status.code(), Some(0));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON output");
    assert_eq!(j["nodename"], NODE);

    let o = ctl(home, &["--socket", sock, "version"], None);
    assert_eq!(stdout(&o), format!("{}\n", version_string()));

    let info = ConfigHandler::new().info();
    let o = ctl(home, &["-s", sock, "cluster", "info"], None);
    assert_eq!(stdout(&o), render(&info, false));
    assert!(stdout(&o).starts_with("Daemon: 4809 [m:#ec0-"));
    assert!(stdout(&o).ends_with("Cluster Group: ec_cluster (no leader)\nLogger Group: ec_log\n"));

    let tcp = h.tcp();
    let o = ctl(home, &["--socket", &tcp, "cluster", "nodeaddr"], None);
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (Some(0), "10.0.0.11:4802\n")
    );

    let o = ctl(
        home,
        &["--socket", &tcp, "--json", "cluster", "membership"],
        None,
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON output");
    assert_eq!(j["members"][0]["node_name"], NODE);
    assert_eq!(j["members"][0]["node_type"], "Momentum");
    assert_eq!(j["members"][0]["address"], "10.0.0.11:4802");
    assert_eq!(j["members"][0]["subcluster"], "default");

    let o = ctl(home, &["--socket", sock, "cluster", "membership"], None);
    assert!(
        stdout(&o).contains("\nNode Type: Momentum\nVersion: Cohort "),
        "{}",
        stdout(&o)
    );

    let o = ctl(home, &["--socket", sock, "cluster", "help"], None);
    assert!(stdout(&o).lines().all(|l| l.starts_with("cluster ")));
    assert!(stdout(&o).contains("cluster membership"));
    let o = ctl(home, &["--socket", sock, "help"], None);
    assert!(stdout(&o).contains("config reload") && !stdout(&o).contains("broadcast <command>"));
}

#[test]
fn exit_codes_and_error_messages() {
    let h = start();
    let sock = h.socket();
    let sock = sock.to_str().expect("utf-8 path");
    let home = h.dir.path();

    // The handler refuses: exit 1, message on stderr.
    let o = ctl(home, &["--socket", sock, "cluster", "abort", "7"], None);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "no job 7\n");
    assert_eq!(stdout(&o), "");

    let o = ctl(
        home,
        &["--socket", sock, "--json", "cluster", "abort", "7"],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&o.stderr).expect("JSON error");
    assert_eq!(j["error"], "no job 7");

    // The grammar refuses: the message names the word and the choices.
    let o = ctl(home, &["--socket", sock, "cluster", "nodenam"], None);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("'nodenam'") && e.contains("nodename") && e.contains("membership"),
        "{e}"
    );

    // A manager command on a node.
    let o = ctl(
        home,
        &["--socket", sock, "broadcast", "cluster", "info"],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("manager command"), "{}", stderr(&o));

    // Nothing listening: exit 2 naming the socket.
    let missing = h.dir.path().join("nobody-here");
    let missing = missing.to_str().expect("utf-8 path");
    let o = ctl(home, &["--socket", missing, "cluster", "info"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains(missing), "{}", stderr(&o));
}

#[test]
fn manager_role_refuses_node_commands() {
    let h = start_with(Role::Manager, 8);
    let sock = h.socket();
    let sock = sock.to_str().expect("utf-8 path");
    let o = ctl(h.dir.path(), &["--socket", sock, "cluster", "info"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("broadcast cluster info"),
        "{}",
        stderr(&o)
    );
    let o = ctl(h.dir.path(), &["--socket", sock, "help"], None);
    assert!(stdout(&o).contains("broadcast <command>") && !stdout(&o).contains("cluster info"));
}

#[test]
fn socket_mode_is_0660_and_stop_removes_it() {
    let mut h = start();
    let meta = std::fs::symlink_metadata(h.socket()).expect("socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
    // No temporary name is left beside it.
    let names: Vec<_> = std::fs::read_dir(h.dir.path())
        .expect("list dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("console.sock")]);

    let mut client =
        Client::connect(&cohort::console::Endpoint::Unix(h.socket())).expect("connect");
    assert_eq!(
        client.run("version", false).expect("answer").status,
        Status::Ok
    );
    h.server.take().expect("running").stop();
    assert!(!h.socket().exists(), "stop removes the socket file");
    // The open connection was shut down too.
    assert!(client.run("version", false).is_err());
    let o = ctl(
        h.dir.path(),
        &["--socket", h.socket().to_str().expect("utf-8"), "version"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn stale_socket_is_replaced_live_one_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("console.sock");
    // A socket file nobody listens on, as a crashed daemon leaves it. Bound but never listening:
    // a dropped listener could live on for a moment in a child another test is forking.
    {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, bind, socket};
        use std::os::fd::AsRawFd;
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .expect("socket");
        bind(fd.as_raw_fd(), &UnixAddr::new(&sock).expect("path fits")).expect("bind");
    }
    assert!(sock.exists());
    let server = ConsoleServer::start(
        server_config(&sock, false, Role::Node, 4),
        Arc::new(ConfigHandler::new()),
    )
    .expect("a stale socket is replaced");
    let o = ctl(
        dir.path(),
        &[
            "--socket",
            sock.to_str().expect("utf-8"),
            "cluster",
            "nodename",
        ],
        None,
    );
    assert_eq!(stdout(&o), "relay-0-1\n");

    // A second server on the same path is refused and leaves the live one alone.
    let second = ConsoleServer::start(
        server_config(&sock, false, Role::Node, 4),
        Arc::new(ConfigHandler::new()),
    );
    assert!(
        matches!(second, Err(ServerError::Listen(ListenError::InUse { ref path })) if path == &sock),
        "{second:?}"
    );
    let o = ctl(
        dir.path(),
        &[
            "--socket",
            sock.to_str().expect("utf-8"),
            "cluster",
            "nodename",
        ],
        None,
    );
    assert_eq!(stdout(&o), "relay-0-1\n");
    drop(server);
    assert!(!sock.exists());

    // A regular file at the path is never removed.
    std::fs::write(&sock, b"not a socket").expect("write file");
    let r = ConsoleServer::start(
        server_config(&sock, false, Role::Node, 4),
        Arc::new(ConfigHandler::new()),
    );
    assert!(
        matches!(r, Err(ServerError::Listen(ListenError::NotASocket { .. }))),
        "{r:?}"
    );
    assert_eq!(std::fs::read(&sock).expect("file kept"), b"not a socket");
}

#[test]
fn a_failed_listener_releases_the_others() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("console.sock");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let mut cfg = server_config(&sock, false, Role::Node, 4);
    cfg.listens.push(ListenAddr::Inet {
        host: Some("127.0.0.1".parse().expect("ip")),
        port,
    });
    let r = ConsoleServer::start(cfg, Arc::new(ConfigHandler::new()));
    match r {
        Err(ServerError::Listen(ListenError::Tcp { addr, .. })) => {
            assert_eq!(addr, format!("127.0.0.1:{port}"))
        }
        other => panic!("expected a TCP bind error, got {other:?}"),
    }
    assert!(!sock.exists(), "the Unix socket bound first was removed");
}

#[test]
fn piped_input_runs_each_line() {
    let h = start();
    let sock = h.socket();
    let sock = sock.to_str().expect("utf-8 path");
    let o = ctl(
        h.dir.path(),
        &["--socket", sock],
        Some("cluster nodename\n"),
    );
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (Some(0), "relay-0-1\n"),
        "{}",
        stderr(&o)
    );

    let o = ctl(
        h.dir.path(),
        &["--socket", sock],
        Some("\nversion\n  cluster   nodename  \nconfig reload\nquit\ncluster nodename\n"),
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o),
        format!("{}\nrelay-0-1\nconfiguration unchanged\n", version_string())
    );

    let o = ctl(
        h.dir.path(),
        &["--socket", sock, "--json"],
        Some("cluster abort 3\ncluster nodename\n"),
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed command shows in the exit status"
    );
    assert!(stderr(&o).contains("no job 3"));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON output");
    assert_eq!(j["nodename"], NODE);
    assert!(
        !h.dir.path().join(".cohortctl_history").exists(),
        "piped input is not history"
    );
}

#[test]
fn connection_limit_and_malformed_requests() {
    let h = start_with(Role::Node, 1);
    let ep = cohort::console::Endpoint::Unix(h.socket());
    let mut first = Client::connect(&ep).expect("connect");
    assert_eq!(
        first.run("version", false).expect("answer").status,
        Status::Ok
    );

    let mut second = Client::connect(&ep).expect("the kernel accepts the connection");
    match second.run("version", false) {
        Ok(r) => {
            assert_eq!(r.status, Status::Error);
            assert!(String::from_utf8_lossy(&r.body).contains("too many console connections"));
        }
        // The refusal may close the socket before our request is written.
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    drop(first);
    // The slot is released once the server sees the close; a bounded number of tries.
    let mut ok = false;
    for _ in 0..200 {
        let mut c = Client::connect(&ep).expect("connect");
        if matches!(c.run("version", false), Ok(r) if r.status == Status::Ok) {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(ok, "a released slot is reused");

    // Something that is not the console protocol gets an error frame and is closed.
    let h2 = start();
    let mut raw = UnixStream::connect(h2.socket()).expect("connect");
    raw.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    let resp = protocol::read_response(&mut raw)
        .expect("a frame")
        .expect("not EOF");
    assert_eq!(resp.status, Status::Error);
    assert!(String::from_utf8_lossy(&resp.body).contains("malformed request"));
    let mut rest = Vec::new();
    raw.read_to_end(&mut rest).expect("closed");
    assert!(rest.is_empty());
}

#[test]
fn server_answers_local_commands_from_config() {
    let loaded = config::load_str(
        Path::new("t.conf"),
        "cluster { nodename = \"from-config\" } Control_Listener { Listen \"/tmp/x\" {} Listen \"127.0.0.1:2025\" {} }",
    )
    .expect("valid");
    let cfg = ServerConfig::from_config(&loaded.config, Role::Node);
    assert_eq!(cfg.identity.nodename, "from-config");
    assert_eq!(
        cfg.listens,
        vec![
            ListenAddr::Unix("/tmp/x".into()),
            ListenAddr::Inet {
                host: Some("127.0.0.1".parse().expect("ip")),
                port: 2025
            }
        ]
    );
    let dflt = config::load_str(Path::new("d.conf"), config::EMBEDDED_DEFAULT).expect("default");
    let cfg = ServerConfig::from_config(&dflt.config, Role::Node);
    assert_eq!(cfg.listens, vec![ListenAddr::Unix("/tmp/2025".into())]);
}

/// The output of a program on a pseudo-terminal, read up to what a test waits for.
struct Pty {
    master: std::fs::File,
    seen: String,
}

impl Pty {
    /// Reads until `needle` appears after what earlier calls consumed; returns the text up to and
    /// including it. The poll timeout only turns a hang into a failure with the output so far.
    fn expect(&mut self, needle: &str) -> String {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        loop {
            if let Some(i) = self.seen.find(needle) {
                let upto: String = self.seen.drain(..i + needle.len()).collect();
                return upto;
            }
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            let n = poll(&mut fds, PollTimeout::from(30_000u16)).expect("poll");
            assert!(
                n > 0,
                "no {needle:?} on the terminal; it shows {:?}",
                self.seen
            );
            let mut buf = [0u8; 4096];
            match self.master.read(&mut buf) {
                Ok(0) | Err(_) => panic!(
                    "terminal closed before {needle:?}; it showed {:?}",
                    self.seen
                ),
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    }

    fn type_keys(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).expect("type");
    }
}

fn is_prompt_clock(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 8
        && b[2] == b':'
        && b[5] == b':'
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| b[i].is_ascii_digit())
}

#[test]
fn interactive_console_on_a_terminal() {
    let h = start();
    let sock = h.socket();
    let sock = sock.to_str().expect("utf-8 path");
    let ws = nix::pty::Winsize {
        ws_row: 30,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = match nix::pty::openpty(&ws, None) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping the terminal test: no pseudo-terminal here ({e})");
            return;
        }
    };
    // openpty's descriptors are inheritable; keep them out of children other tests spawn.
    for fd in [&pty.master, &pty.slave] {
        use nix::fcntl::{F_SETFD, FdFlag, fcntl};
        use std::os::fd::AsRawFd;
        fcntl(fd.as_raw_fd(), F_SETFD(FdFlag::FD_CLOEXEC)).expect("set close-on-exec");
    }
    let slave = std::fs::File::from(pty.slave);
    let mut child = Process::new(env!("CARGO_BIN_EXE_cohortctl"))
        .args(["--socket", sock])
        .env("HOME", h.dir.path())
        .env("TERM", "xterm")
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave)
        .spawn()
        .expect("cohortctl runs");
    let mut term = Pty {
        master: std::fs::File::from(pty.master),
        seen: String::new(),
    };
    let prompt_tail = format!(" cohort({sock})> ");

    let banner = term.expect(&prompt_tail);
    assert!(banner.contains(&version_string()), "{banner:?}");
    let clock = banner
        .rsplit(['\n', '\r'])
        .next()
        .and_then(|l| l.get(l.len() - prompt_tail.len() - 8..l.len() - prompt_tail.len()))
        .unwrap_or_default()
        .to_owned();
    assert!(
        is_prompt_clock(&clock),
        "prompt starts with HH:MM:SS: {banner:?}"
    );

    // Tab completes the keyword from the grammar; Enter runs it.
    term.type_keys("cluster nodena\t");
    term.expect("cluster nodename ");
    term.type_keys("\r");
    term.expect("relay-0-1\r\n");
    term.expect(&prompt_tail);

    // An error is shown and the console goes on.
    term.type_keys("cluster abort 5\r");
    term.expect("no job 5");
    term.expect(&prompt_tail);

    term.type_keys("quit\r");
    let status = child.wait().expect("cohortctl exits");
    assert_eq!(status.code(), Some(0));
    let history =
        std::fs::read_to_string(h.dir.path().join(".cohortctl_history")).expect("history saved");
    assert!(
        history.lines().any(|l| l == "cluster nodename"),
        "{history:?}"
    );
    assert!(
        history.lines().any(|l| l == "cluster abort 5"),
        "{history:?}"
    );
}

#[test]
fn handler_panic_is_an_error_and_the_connection_survives() {
    let h = start();
    let mut c = Client::connect(&cohort::console::Endpoint::Unix(h.socket())).expect("connect");
    let r = c.run("cluster reset", false).expect("an answer");
    assert_eq!(r.status, Status::Error);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "internal error while running 'cluster reset'"
    );
    let r = c.run("cluster nodename", false).expect("still connected");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (Status::Ok, &b"relay-0-1\n"[..])
    );
}

#[test]
fn an_incomplete_request_is_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("console.sock");
    let mut cfg = server_config(&sock, false, Role::Node, 4);
    cfg.frame_timeout = std::time::Duration::from_millis(50);
    let _server = ConsoleServer::start(cfg, Arc::new(ConfigHandler::new())).expect("starts");
    let mut raw = UnixStream::connect(&sock).expect("connect");
    // Half a header, then silence: the server answers with an error and closes.
    raw.write_all(b"CQ\x01").expect("write");
    let resp = protocol::read_response(&mut raw)
        .expect("a frame")
        .expect("not EOF");
    assert_eq!(resp.status, Status::Error);
    assert!(String::from_utf8_lossy(&resp.body).contains("incomplete"));
    let mut rest = Vec::new();
    raw.read_to_end(&mut rest).expect("closed");
    assert!(rest.is_empty());

    // An idle connection between requests is not dropped (the interactive console relies on it).
    let mut idle =
        Client::connect(&cohort::console::Endpoint::Unix(sock.clone())).expect("connect");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        idle.run("version", false).expect("answer").status,
        Status::Ok
    );
}

/// A manager whose `shutdown` stops its own console from inside the handler.
struct ShutdownHandler {
    stop: std::sync::OnceLock<cohort::console::StopHandle>,
}

impl ConsoleHandler for ShutdownHandler {
    fn handle(&self, cmd: &Command, json: bool) -> Result<String, String> {
        match cmd {
            Command::Manager(cohort_engine::console::ManagerCommand::Shutdown) => {
                self.stop.get().ok_or("not started")?.stop();
                Ok(render(
                    &Message {
                        message: "shutting down".into(),
                    },
                    json,
                ))
            }
            other => Err(format!("'{other}' is not served here")),
        }
    }
}

#[test]
fn shutdown_from_a_handler_answers_then_stops() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("console.sock");
    let handler = Arc::new(ShutdownHandler {
        stop: std::sync::OnceLock::new(),
    });
    let server = ConsoleServer::start(
        server_config(&sock, false, Role::Manager, 4),
        handler.clone(),
    )
    .expect("starts");
    handler.stop.set(server.stop_handle()).expect("set once");
    let mut other =
        Client::connect(&cohort::console::Endpoint::Unix(sock.clone())).expect("connect");
    assert_eq!(
        other.run("version", false).expect("answer").status,
        Status::Ok
    );

    let o = ctl(
        dir.path(),
        &["--socket", sock.to_str().expect("utf-8"), "shutdown"],
        None,
    );
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (Some(0), "shutting down\n"),
        "{}",
        stderr(&o)
    );
    assert!(server.stop_handle().is_stopped());
    assert!(!sock.exists(), "the socket file is gone");
    assert!(
        other.run("version", false).is_err(),
        "other connections were closed"
    );
    drop(server);
}

#[test]
fn wildcard_tcp_listens_on_every_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("console.sock");
    let mut cfg = server_config(&sock, false, Role::Node, 4);
    cfg.listens = vec![ListenAddr::Inet {
        host: None,
        port: 0,
    }];
    let server = ConsoleServer::start(cfg, Arc::new(ConfigHandler::new())).expect("starts");
    let bound = match server.local_addrs() {
        [BoundAddr::Tcp(a)] => *a,
        other => panic!("one TCP listener expected, got {other:?}"),
    };
    assert!(bound.ip().is_unspecified(), "{bound}");
    // Reached through IPv4 loopback whether the socket is dual-stack [::] or 0.0.0.0.
    let o = ctl(
        dir.path(),
        &[
            "--socket",
            &format!("127.0.0.1:{}", bound.port()),
            "cluster",
            "nodename",
        ],
        None,
    );
    assert_eq!(stdout(&o), "relay-0-1\n", "{}", stderr(&o));
}

#[test]
fn garbage_on_the_socket_never_takes_the_server_down() {
    use proptest::prelude::*;
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("console.sock");
    // Enough slots that connections of earlier cases still closing never refuse a new one.
    let mut cfg = server_config(&sock, false, Role::Node, 256);
    cfg.frame_timeout = std::time::Duration::from_millis(20);
    let _server = ConsoleServer::start(cfg, Arc::new(ConfigHandler::new())).expect("starts");
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 64,
        ..Default::default()
    });
    let valid_start = prop_oneof![
        Just(Vec::new()),
        Just(b"CQ\x01\x00".to_vec()),
        Just(b"CQ\x01\x01\x00\x00\x00".to_vec()),
    ];
    let input =
        (valid_start, proptest::collection::vec(any::<u8>(), 0..200)).prop_map(|(mut a, b)| {
            a.extend(b);
            a
        });
    runner
        .run(&input, |bytes| {
            let mut raw = UnixStream::connect(&sock).expect("connect");
            let _ = raw.write_all(&bytes);
            let _ = raw.shutdown(std::net::Shutdown::Write);
            // Whatever comes back is whole response frames, and then the server closes.
            let mut back = Vec::new();
            let _ = raw.read_to_end(&mut back);
            let mut rest = &back[..];
            while !rest.is_empty() {
                match protocol::Response::decode(rest) {
                    Ok(Some((_, used))) => rest = &rest[used..],
                    other => panic!("not a response frame: {other:?} in {back:?}"),
                }
            }
            let mut c = Client::connect(&cohort::console::Endpoint::Unix(sock.clone()))
                .expect("still listening");
            prop_assert_eq!(c.run("version", false).expect("answer").status, Status::Ok);
            Ok(())
        })
        .expect("the server survives every input");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let h = start();
    // Mixed answers: local ones, the handler's, its errors, parse errors, big and small bodies.
    let kinds = [
        "cluster nodename",
        "cluster abort 7",
        "version",
        "cluster frobnicate",
        "cluster membership",
        "cluster info",
        "help",
        // Updates, read without the grammar; this handler refuses them as it refuses any
        // command it does not serve (the default `update` hands them to `handle`).
        "cluster shared cidr incr inbound_cidr 10.1.2.3",
        "cluster shared gauge decr outbound_domains example.com 2",
    ];
    let lines: Vec<String> = (0..20_000)
        .map(|i| {
            if i % 11 == 0 {
                format!("cluster abort {i}")
            } else {
                kinds[i % kinds.len()].to_owned()
            }
        })
        .collect();
    for endpoint in [
        cohort::console::Endpoint::Unix(h.socket()),
        cohort::console::Endpoint::Tcp(h.tcp()),
    ] {
        let mut one = Client::connect(&endpoint).expect("connect");
        let mut piped = Client::connect(&endpoint).expect("connect");
        for json in [false, true] {
            let answers = piped.pipeline(&lines, json).expect("pipeline");
            assert_eq!(answers.len(), lines.len());
            for (i, (line, got)) in lines.iter().zip(&answers).enumerate().take(700) {
                let want = one.run(line, json).expect("run");
                assert_eq!(got, &want, "answer {i} to {line:?} over {endpoint}");
            }
            for (i, got) in answers.iter().enumerate().filter(|(i, _)| i % 11 == 0) {
                assert!(
                    String::from_utf8_lossy(&got.body).contains(&format!("no job {i}")),
                    "answer {i} is out of order"
                );
            }
        }
        // The connection is still usable one request at a time.
        let r = piped.run("cluster nodename", false).expect("run");
        assert_eq!(r.body, b"relay-0-1\n");
        assert!(
            piped
                .pipeline::<&str>(&[], false)
                .expect("empty")
                .is_empty()
        );
    }
}

/// A TCP console with a key: nothing runs before the challenge is answered with the key (a
/// rotated keyring's other key works too); a wrong proof closes the connection and is counted,
/// and after five a minute the peer is refused at once; the Unix socket is not challenged; and
/// `cohortctl --key` answers the challenge.
#[test]
fn a_tcp_console_with_a_key_requires_the_challenge() {
    use cohort_engine::group::ClusterKey;
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("console.key");
    std::fs::write(&key_file, b"the console key of this test").expect("key");
    let key = ClusterKey::load(&key_file).expect("key");
    let older = ClusterKey::from_material(b"the previous console key");
    let socket = dir.path().join("console.sock");
    let mut cfg = server_config(&socket, true, Role::Node, 16);
    cfg.auth = ClusterKey::ring([key.clone(), older.clone()]);
    let server = ConsoleServer::start(cfg, Arc::new(ConfigHandler::new())).expect("starts");
    let h = Harness {
        dir,
        server: Some(server),
    };
    let tcp = Endpoint::parse(&h.tcp());
    // Without the proof: refused, and the connection stays for the challenge.
    let mut c = Client::connect(&tcp).expect("connect");
    let r = c.run("cluster nodename", false).expect("answer");
    assert_eq!(r.status, Status::Error);
    assert!(String::from_utf8_lossy(&r.body).contains("authentication required"));
    c.authenticate(&key).expect("the right key");
    let r = c.run("cluster nodename", false).expect("answer");
    assert_eq!(r.status, Status::Ok, "{}", String::from_utf8_lossy(&r.body));
    // The ring's other key is accepted too.
    let mut c = Client::connect(&tcp).expect("connect");
    c.authenticate(&older).expect("the other key of the ring");
    // The Unix socket asks nothing.
    let mut u = Client::connect(&Endpoint::Unix(h.socket())).expect("connect");
    assert_eq!(
        u.run("cluster nodename", false).expect("answer").status,
        Status::Ok
    );
    // cohortctl answers the challenge with --key, and fails without it.
    let out = ctl(
        h.dir.path(),
        &[
            "--socket",
            &h.tcp(),
            "--key",
            &key_file.to_string_lossy(),
            "cluster",
            "nodename",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ctl(
        h.dir.path(),
        &["--socket", &h.tcp(), "cluster", "nodename"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    // Wrong proofs: each closes its connection; the sixth attempt in a minute is refused at once.
    let wrong = ClusterKey::from_material(b"not the console key at all");
    for _ in 0..5 {
        let mut c = Client::connect(&tcp).expect("connect");
        let e = c.authenticate(&wrong).expect_err("a wrong key");
        assert!(e.to_string().contains("authentication failed"), "{e}");
    }
    let mut c = Client::connect(&tcp).expect("connect");
    let e = c.authenticate(&key).expect_err("rate limited");
    assert!(
        e.to_string().contains("too many failed authentications"),
        "{e}"
    );
}
