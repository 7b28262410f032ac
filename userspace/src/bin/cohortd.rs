//! `cohortd`: a Cohort cluster node (or, with `--manager`, the cluster manager).

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;

use clap::Parser;
use cohort::check_config;
use cohort::console::server::{ConsoleHandler, ConsoleServer, Identity, Role, ServerConfig};
use cohort::logsvc::{LogService, Puller, ServiceConfig};
use cohort::node::console::NodeConsole;
use cohort::node::manager::ManagerConsole;
use cohort::node::runtime::Node;
use cohort::node::{control, paniclog};
use cohort_engine::config::{self, UdpDriver};
use cohort_engine::udp::Driver;

/// Runs a Cohort node. `--check-config` validates a configuration and prints it with every default
/// filled in.
#[derive(Parser, Debug)]
#[command(name = "cohortd", version, about)]
struct Args {
    /// Configuration file (Momentum syntax). Without it the embedded default configuration is used.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate FILE (or --config, or the embedded default), print the effective configuration and
    /// exit 0; on an error print `FILE:LINE:COL: message` and exit 2.
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    check_config: Option<Option<PathBuf>>,
    /// With --check-config: print the effective configuration as JSON.
    #[arg(long)]
    json: bool,
    /// Run as the cluster manager (eccmgr).
    #[arg(long)]
    manager: bool,
    /// Print the embedded default configuration (Momentum 4's default ecelerity-cluster.conf) and
    /// exit, e.g. to `include` it from a node's own file.
    #[arg(long)]
    print_default_config: bool,
    /// Print the reference of every `cluster` and `msgc_server` option (type, default, accepted
    /// values, whether a reload applies it) as Markdown, from the table the loader uses, and exit.
    #[arg(long)]
    config_reference: bool,
    /// Log format on stderr: `text` (escape codes only when stderr is a terminal) or `json`
    /// (one object per line, for log collectors).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn main() -> ExitCode {
    if cohort::man::intercept::<Args>("8") {
        return ExitCode::SUCCESS;
    }
    if std::env::args().nth(1).as_deref() == Some("--man-config") {
        print!("{}", cohort::man::config_page());
        return ExitCode::SUCCESS;
    }
    cohort::allocator::tune();
    let args = Args::parse();
    if args.print_default_config {
        print!("{}", cohort_engine::config::EMBEDDED_DEFAULT);
        return ExitCode::SUCCESS;
    }
    if args.config_reference {
        print!("{}", cohort_engine::config::options::reference());
        return ExitCode::SUCCESS;
    }
    if let Some(file) = args.check_config {
        let file = file.or(args.config);
        return check_config::run(file.as_deref(), args.json, args.manager);
    }
    run(args.config, args.manager, args.log_format == "json")
}

fn run(path: Option<PathBuf>, manager: bool, json_logs: bool) -> ExitCode {
    let loaded = match &path {
        Some(p) => config::load_file(p),
        None => config::load_str(
            std::path::Path::new("<embedded default>"),
            config::EMBEDDED_DEFAULT,
        ),
    };
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(check_config::EXIT_BAD_CONFIG);
        }
    };
    let cfg = loaded.config;
    if !cfg.cluster.enabled {
        // `enabled = false`: the module is off, as in Momentum; say so rather than run half a node.
        eprintln!(
            "cohortd: the cluster module is disabled (cluster {{ enabled = false }}): no cluster service runs"
        );
        return ExitCode::SUCCESS;
    }
    let name = config::nodename::nodename(&cfg.cluster).unwrap_or_else(|| "unnamed".into());
    {
        use std::io::IsTerminal;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        // Plain text in files and journals; colours only for a person at a terminal.
        let text = (!json_logs).then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
        });
        let json = json_logs.then(|| {
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr)
        });
        tracing_subscriber::registry()
            .with(filter)
            .with(text)
            .with(json)
            .with(paniclog::PaniclogLayer)
            .init();
    }
    let span = tracing::info_span!("cohortd", node = %name);
    let _guard = span.enter();
    for i in &loaded.ignored {
        tracing::warn!("{i}");
    }
    paniclog::install(&cfg);
    let driver = match cfg.msgc_server.udp_driver {
        UdpDriver::Syscall => Driver::Syscall,
        UdpDriver::Uring => Driver::Uring,
    };
    let node = match Node::start(cfg.clone(), path, driver, manager) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            eprintln!("cohortd: {e}");
            return ExitCode::from(1);
        }
    };
    // This thread runs the event loop (node.run below): its priority is raised while
    // CAP_SYS_NICE is still held; the threads started from here on go back to the default.
    cohort::node::runtime::set_thread_nice(cfg.msgc_server.loop_nice);
    // `Security { user group }`: run as that user from here on, keeping the capabilities.
    if let Some(sec) = &cfg.security {
        let switched = cohort::privileges::lookup(sec)
            .map_err(|(_, e)| e)
            .and_then(|run| cohort::privileges::switch_user(&run).map_err(|e| e.to_string()));
        match switched {
            Ok(()) => {
                tracing::info!(user = ?sec.user, group = ?sec.group, "running as the Security user")
            }
            Err(e) => {
                tracing::error!("cannot switch to the Security user: {e}");
                eprintln!("cohortd: cannot switch to the Security user: {e}");
                return ExitCode::from(1);
            }
        }
    }
    // Everything that needed more privilege is set up: keep only what DuraVIP needs at run time,
    // before the console starts its threads (capabilities are per thread and inherited).
    if let Err(e) = cohort::privileges::keep_only_runtime_caps() {
        tracing::warn!("{e}");
    }
    paniclog::attach(node.shared.clone(), cfg.cluster.log_group.clone());
    start_metrics(&cfg, &node);
    let role = if manager { Role::Manager } else { Role::Node };
    let mut server_cfg = ServerConfig::from_config(&cfg, role);
    // TCP consoles prove the console key (or the cluster keyring) before any command.
    let ring = node.shared.cluster_key.read().ok().and_then(|k| k.clone());
    server_cfg.auth = match cohort::node::setup::console_key(&cfg, ring.as_ref()) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!("{}", e.message);
            eprintln!("cohortd: {}", e.message);
            return ExitCode::from(2);
        }
    };
    let handler: Arc<dyn ConsoleHandler> = if manager {
        match ManagerConsole::start(node.shared.clone()) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!("cannot start the manager console: {e}");
                eprintln!("cohortd: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        let node_console: Arc<dyn ConsoleHandler> = Arc::new(NodeConsole {
            shared: node.shared.clone(),
        });
        // The manager's commands run through the same console, as this node's name.
        let identity = Identity {
            nodename: node.shared.status.lock().map_or_else(
                |_| server_cfg.identity.nodename.clone(),
                |s| s.identity.nodename.clone(),
            ),
            role: Role::Node,
        };
        if let Err(e) =
            control::spawn_node_worker(node.shared.clone(), identity, node_console.clone())
        {
            tracing::error!("cannot start the control worker: {e}");
            eprintln!("cohortd: {e}");
            return ExitCode::from(1);
        }
        node_console
    };
    let console = match ConsoleServer::start(server_cfg, handler) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("cannot start the console: {e}");
            eprintln!("cohortd: {e}");
            return ExitCode::from(1);
        }
    };
    let logsvc = match start_logsvc(&cfg, &node, manager) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot start cluster logging: {e}");
            eprintln!("cohortd: {e}");
            console.stop();
            return ExitCode::from(1);
        }
    };
    let result = node.run();
    match logsvc {
        Logsvc::Serve(s) => s.stop(),
        Logsvc::Pull(p) => p.stop(),
        Logsvc::Off => {}
    }
    console.stop();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("cohortd: {e}");
            ExitCode::from(1)
        }
    }
}

/// The node's log service or the manager's log pull.
enum Logsvc {
    Serve(LogService),
    Pull(Puller),
    Off,
}

/// The Prometheus endpoint of `Metrics_Listener`, when configured. A listener that cannot be
/// opened is reported and the node runs on without it.
fn start_metrics(cfg: &config::Config, node: &Node) {
    let Some(m) = &cfg.metrics_listener else {
        return;
    };
    for l in &m.listens {
        let config::ListenAddr::Inet { host, port } = &l.addr else {
            continue;
        };
        let addr =
            std::net::SocketAddr::new(host.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])), *port);
        match cohort::metrics::start(node.shared.clone(), addr) {
            Ok(a) => tracing::info!(%a, "serving /metrics"),
            Err(e) => tracing::error!("Metrics_Listener {addr}: {e}; no metrics served there"),
        }
    }
}

fn start_logsvc(cfg: &config::Config, node: &Node, manager: bool) -> Result<Logsvc, String> {
    // The keyring in force, which a reload replaces; every handshake reads it.
    let key = node.shared.cluster_key.clone();
    let me = node
        .shared
        .status
        .lock()
        .map(|s| s.identity.nodename.clone())
        .map_err(|_| "status unavailable")?;
    if manager {
        let Some(logs) = cfg.manager_logs.clone() else {
            tracing::info!("no Logs stanza: not pulling the nodes' logs");
            return Ok(Logsvc::Off);
        };
        return Puller::start(node.shared.clone(), logs, me, key).map(Logsvc::Pull);
    }
    let Some(sc) = ServiceConfig::from_config(cfg, &me, key) else {
        tracing::info!("no inet ECCluster_Listener: the log service is off");
        return Ok(Logsvc::Off);
    };
    let addr = sc.listen;
    // The node's membership matters more than its log service: a listener that cannot be opened
    // is reported and the node runs on (the manager's pulls fail until a restart fixes it).
    match LogService::start(sc, node.shared.journals.clone()) {
        Ok(s) => Ok(Logsvc::Serve(s)),
        Err(e) => {
            tracing::error!("ECCluster_Listener {addr}: {e}; the log service is off");
            Ok(Logsvc::Off)
        }
    }
}
