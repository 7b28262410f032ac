//! `cohortctl`: Cohort's console client.
//!
//! `cohortctl [--socket PATH|HOST:PORT] [--key FILE|--config FILE] [--json] COMMAND...` runs one
//! command (after answering a TCP console's challenge with the key, when one is given) and prints its
//! output: exit 0 when the command succeeded, 1 when the daemon refused it, 2 when the console
//! cannot be reached. Without a command it is an interactive console with Momentum's prompt shape
//! (`HH:MM:SS cohort(/tmp/2025)> `), history in `~/.cohortctl_history` and tab completion; `quit`,
//! `exit` or end of input leave. When standard input is not a terminal it reads one command a
//! line without a prompt (`echo "cluster nodename" | cohortctl`) and exits 1 if any command
//! failed. `cohortctl listen <group>` streams the messages of a named group (for instance the
//! `log_group` paniclog broadcasts) until interrupted.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cohort::console::{Client, ClientError, Endpoint};
use cohort_engine::console::grammar;
use cohort_engine::console::protocol::{Response, Status};
use cohort_engine::group::ClusterKey;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};

const EXIT_OK: u8 = 0;
const EXIT_COMMAND_FAILED: u8 = 1;
const EXIT_NO_CONSOLE: u8 = 2;

/// Cohort's console client: runs one console command, or an interactive console without one.
#[derive(Parser, Debug)]
#[command(name = "cohortctl", version)]
struct Args {
    /// The console: a Unix socket path, or HOST:PORT for a TCP Control_Listener.
    #[arg(
        long,
        short = 's',
        value_name = "PATH|HOST:PORT",
        default_value = "/tmp/2025"
    )]
    socket: String,
    /// Ask for the output as JSON (every command).
    #[arg(long)]
    json: bool,
    /// The console key file a TCP console asks for (`console_key`, or the cluster key file).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Take the console key from this configuration (its `console_key`, else its
    /// `cluster_key`) when `--key` is not given.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The command, e.g. `cluster membership`. Without it: the interactive console.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    if cohort::man::intercept::<Args>("1") {
        return ExitCode::SUCCESS;
    }
    let args = Args::parse();
    let endpoint = Endpoint::parse(&args.socket);
    match console_key(&args) {
        Ok(k) => {
            let _ = KEY.set(k);
        }
        Err(e) => {
            eprintln!("cohortctl: {e}");
            return ExitCode::from(EXIT_NO_CONSOLE);
        }
    }
    let code = if args.command.is_empty() {
        interactive(&endpoint, args.json)
    } else {
        one_shot(&endpoint, &args.command.join(" "), args.json)
    };
    ExitCode::from(code)
}

/// The key TCP consoles are answered with (see [`connect`]).
static KEY: std::sync::OnceLock<Option<ClusterKey>> = std::sync::OnceLock::new();

/// `--key`, else the key of `--config` (its `console_key`, else its cluster keyring).
fn console_key(args: &Args) -> Result<Option<ClusterKey>, String> {
    if let Some(k) = &args.key {
        return ClusterKey::load(k).map(Some).map_err(|e| e.to_string());
    }
    let Some(path) = &args.config else {
        return Ok(None);
    };
    let cfg = cohort_engine::config::load_file(path)
        .map_err(|e| e.to_string())?
        .config;
    match &cfg.cluster.console_key {
        Some(p) => ClusterKey::load(p).map(Some).map_err(|e| e.to_string()),
        None => ClusterKey::load_ring(&cfg.msgc_server.cluster_key).map_err(|e| e.to_string()),
    }
}

/// Connects to the console; a TCP console is answered with the key, when there is one.
fn connect(endpoint: &Endpoint) -> Result<Client, ClientError> {
    let mut c = Client::connect(endpoint)?;
    if let (Endpoint::Tcp(_), Some(Some(key))) = (endpoint, KEY.get()) {
        c.authenticate(key)?;
    }
    Ok(c)
}

fn no_console(e: &ClientError) -> u8 {
    match e {
        ClientError::Connect { .. } => eprintln!("cohortctl: {e} (is cohortd running there?)"),
        _ => eprintln!("cohortctl: {e}"),
    }
    EXIT_NO_CONSOLE
}

/// Prints a response: the body on stdout when the command succeeded, on stderr when it failed.
/// Returns whether it succeeded.
fn print_response(resp: &Response) -> bool {
    let mut body = String::from_utf8_lossy(&resp.body).into_owned();
    if !body.is_empty() && !body.ends_with('\n') {
        body.push('\n');
    }
    match resp.status {
        Status::Ok => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(body.as_bytes());
            let _ = out.flush();
            true
        }
        Status::Error => {
            eprint!("{body}");
            false
        }
    }
}

fn one_shot(endpoint: &Endpoint, line: &str, json: bool) -> u8 {
    let mut client = match connect(endpoint) {
        Ok(c) => c,
        Err(e) => return no_console(&e),
    };
    if let Ok(grammar::Command::Listen { .. }) = grammar::parse(line) {
        return listen(client, line, json);
    }
    match client.run(line, json) {
        Ok(resp) if print_response(&resp) => EXIT_OK,
        Ok(_) => EXIT_COMMAND_FAILED,
        Err(e) => no_console(&e),
    }
}

/// `listen <group>`: prints every message of the group as the daemon relays it (Spread's
/// `spuser`), until the daemon closes the connection or cohortctl is interrupted.
fn listen(mut client: Client, line: &str, json: bool) -> u8 {
    if let Err(e) = client.send(line, json) {
        return no_console(&e);
    }
    loop {
        match client.next_response() {
            Ok(Some(resp)) => {
                if !print_response(&resp) {
                    return EXIT_COMMAND_FAILED;
                }
            }
            Ok(None) => return EXIT_OK,
            Err(e) => return no_console(&e),
        }
    }
}

/// Tab completion from the console grammar, plus the client's own `quit` and `exit`.
struct ConsoleHelper;

impl Completer for ConsoleHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let left = line.get(..pos).unwrap_or(line);
        let c = grammar::complete(left);
        let mut words: Vec<&str> = c.candidates;
        if left[..c.start].trim().is_empty() {
            let partial = &left[c.start..];
            words.extend(
                ["quit", "exit"]
                    .into_iter()
                    .filter(|w| w.starts_with(partial)),
            );
        }
        let pairs = words
            .into_iter()
            .map(|w| Pair {
                display: w.to_owned(),
                replacement: format!("{w} "),
            })
            .collect();
        Ok((c.start, pairs))
    }
}

impl Hinter for ConsoleHelper {
    type Hint = String;
}

impl Highlighter for ConsoleHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Borrowed(line)
    }
}

impl Validator for ConsoleHelper {}

impl Helper for ConsoleHelper {}

fn history_file() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cohortctl_history"))
}

fn prompt(endpoint: &Endpoint) -> String {
    format!(
        "{} cohort({endpoint})> ",
        chrono::Local::now().format("%H:%M:%S")
    )
}

/// Commands sent at once when standard input is not a terminal.
const PIPED_BATCH: usize = 4096;

/// Standard input that is not a terminal: one command a line (blank lines skipped, `quit` or
/// `exit` ends), pipelined in batches of [`PIPED_BATCH`] so a script's thousands of updates cost
/// a few round trips; the answers print in order. Exit 1 if any command failed, 2 if the
/// console was lost (the rest of the input is then not sent).
fn piped(endpoint: &Endpoint, json: bool) -> u8 {
    let mut client = match connect(endpoint) {
        Ok(c) => c,
        Err(e) => return no_console(&e),
    };
    let mut failed = false;
    let mut batch: Vec<String> = Vec::new();
    let mut lines = std::io::stdin().lines();
    loop {
        let line = match lines.next() {
            Some(Ok(l)) => Some(l),
            Some(Err(e)) => {
                eprintln!("cohortctl: reading input: {e}");
                failed = true;
                None
            }
            None => None,
        };
        let stop = match line.as_deref().map(str::trim) {
            None | Some("quit" | "exit") => true,
            Some("") => continue,
            Some(l) => {
                batch.push(l.to_owned());
                false
            }
        };
        if batch.len() >= PIPED_BATCH || (stop && !batch.is_empty()) {
            match client.pipeline(&batch, json) {
                Ok(answers) => {
                    for resp in &answers {
                        failed |= !print_response(resp);
                    }
                }
                Err(e) => return no_console(&e),
            }
            batch.clear();
        }
        if stop {
            break;
        }
    }
    if failed { EXIT_COMMAND_FAILED } else { EXIT_OK }
}

fn interactive(endpoint: &Endpoint, json: bool) -> u8 {
    let tty = std::io::stdin().is_terminal();
    if !tty {
        return piped(endpoint, json);
    }
    let mut client = match connect(endpoint) {
        Ok(c) => Some(c),
        Err(e) => return no_console(&e),
    };
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .build();
    let mut editor: Editor<ConsoleHelper, DefaultHistory> = match Editor::with_config(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cohortctl: cannot start the line editor: {e}");
            return EXIT_NO_CONSOLE;
        }
    };
    editor.set_helper(Some(ConsoleHelper));
    let history = history_file().filter(|_| tty);
    if let Some(h) = &history {
        // A missing or unreadable history file only means no history.
        let _ = editor.load_history(h);
    }
    if tty {
        let version = client
            .as_mut()
            .and_then(|c| c.run("version", false).ok())
            .map(|r| String::from_utf8_lossy(&r.body).trim().to_owned())
            .unwrap_or_default();
        println!("# {version} console on {endpoint}; 'help' lists commands, 'quit' leaves");
    }
    let mut failed = false;
    let mut lost = false;
    loop {
        let line = match editor.readline(&prompt(endpoint)) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("cohortctl: reading input: {e}");
                failed = true;
                break;
            }
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "quit" || line == "exit" {
            break;
        }
        let _ = editor.add_history_entry(line);
        if let Ok(grammar::Command::Listen { .. }) = grammar::parse(line) {
            // A stream takes the whole connection; it runs from the shell instead.
            eprintln!("cohortctl: run 'cohortctl listen <group>' from the shell to stream a group");
            failed = true;
            continue;
        }
        if client.is_none() {
            match connect(endpoint) {
                Ok(c) => client = Some(c),
                Err(e) => {
                    eprintln!("cohortctl: {e}");
                    lost = true;
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else {
            continue;
        };
        match c.run(line, json) {
            Ok(resp) => failed |= !print_response(&resp),
            Err(e) => {
                // The connection is gone; the next command reconnects (never this one again:
                // it may have run before the connection broke).
                eprintln!("cohortctl: {e}");
                client = None;
                lost = true;
            }
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    match (tty, lost, failed) {
        (true, _, _) => EXIT_OK,
        (false, true, _) => EXIT_NO_CONSOLE,
        (false, false, true) => EXIT_COMMAND_FAILED,
        (false, false, false) => EXIT_OK,
    }
}
