//! The console server: listens on every `Control_Listener` address, reads framed requests
//! (`cohort_engine::console::protocol`), parses them with the console grammar, answers what needs
//! only local data itself and hands every other command to the daemon's [`ConsoleHandler`].
//!
//! Threads: one acceptor polls all listeners and a wake-up socket; each connection gets its own
//! thread, at most [`ServerConfig::max_connections`] at once (one more is told so and closed). A
//! connection carries any number of requests, so an interactive `cohortctl` keeps one; a client
//! may pipeline them (write many before reading) and gets the answers in order.
//! A request must arrive whole within [`ServerConfig::frame_timeout`] of its first byte; a
//! response write that blocks longer than that drops the connection. [`StopHandle::stop`] closes the listeners,
//! removes the Unix socket files, shuts every connection down and joins every thread.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use cohort_engine::config::{self, ListenAddr};
use cohort_engine::console::grammar::{self, ClusterCommand, Command, Scope};
use cohort_engine::console::protocol::{self, ProtocolError, RequestRef, Response, Status};
use cohort_engine::console::render::{Render, render};
use cohort_engine::console::shared_ops::{self, SharedUpdate};
use cohort_engine::console::status::{Help, NodeName, Version};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::listener::{BoundAddr, ListenError, Listener};
use super::stream::Stream;

/// Default for [`ServerConfig::frame_timeout`].
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the acceptor pauses after a failed accept (file descriptors exhausted and the like).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Default bound on concurrent console connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 32;

/// Runs the commands the server does not answer itself. The daemon implements it with its live
/// state; it is called from connection threads, possibly several at once.
pub trait ConsoleHandler: Send + Sync + 'static {
    /// Runs `cmd` and returns the response body (rendered as JSON when `json`, normally through
    /// `cohort_engine::console::render::render`), or the error message for the operator.
    /// A panic is caught and reported as an internal error; the connection stays usable.
    fn handle(&self, cmd: &Command, json: bool) -> Result<String, String>;

    /// `listen <group>`: joins the group and returns the source of its messages, each rendered
    /// (as JSON when `json`) for one response frame. The server streams them to the connection
    /// until the client closes it or the server stops. Consoles without groups refuse.
    fn listen(&self, group: &str, json: bool) -> Result<Box<dyn ListenSource>, String> {
        let _ = json;
        Err(format!("this console cannot listen to group {group}"))
    }

    /// An application's update (`cluster shared cidr|gauge incr|decr`), read by
    /// [`shared_ops::parse_update`] without the grammar: the same answer as [`handle`] gives
    /// for the same line. A handler that serves updates at a high rate answers them here
    /// without building the command; by default they go through [`handle`].
    ///
    /// [`handle`]: ConsoleHandler::handle
    fn update(&self, update: &SharedUpdate<'_>, json: bool) -> Result<Cow<'static, str>, String> {
        self.handle(
            &Command::Cluster(ClusterCommand::SharedOp(update.to_op())),
            json,
        )
        .map(Cow::Owned)
    }
}

/// What `listen` streams: the next rendered message, waiting at most the given time.
pub trait ListenSource: Send {
    fn next(&mut self, wait: Duration) -> ListenNext;
}

/// One step of a `listen` stream.
#[derive(Debug, PartialEq, Eq)]
pub enum ListenNext {
    /// A message to send to the client.
    Line(String),
    /// Nothing arrived within the wait.
    Idle,
    /// The source is gone (the daemon is stopping).
    Closed,
}

/// Which kind of process serves the console: it decides which commands are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `cohortd`: `cluster ...` commands, not the manager's.
    Node,
    /// `cohortd --manager` (eccmgr): the manager's commands, not `cluster ...` (Momentum: "these
    /// commands do not execute when issued from within the eccmgr service").
    Manager,
}

impl Role {
    fn scope(self) -> Scope {
        match self {
            Role::Node => Scope::Node,
            Role::Manager => Scope::Manager,
        }
    }
}

/// What the server knows without asking the handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The node name (`cluster nodename`).
    pub nodename: String,
    pub role: Role,
}

/// Where and how the console listens.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// The `Control_Listener` `Listen` addresses.
    pub listens: Vec<ListenAddr>,
    pub identity: Identity,
    /// Concurrent connections served; one more is refused with an error response.
    pub max_connections: usize,
    /// How long a request may take to arrive once its first byte has, and how long a response
    /// write may block, before the connection is dropped.
    pub frame_timeout: Duration,
    /// The console keyring (`console_key`, else `cluster_key`): TCP connections must prove it
    /// before any command (`cohort_engine::console::auth`); `None`: no challenge.
    pub auth: Option<cohort_engine::group::ClusterKey>,
}

impl ServerConfig {
    /// The console of `cfg`: its `Control_Listener` addresses and its node name (the `nodename`
    /// option, `EC_NODE_NAME`, the host name; `localhost` if none of them is set).
    pub fn from_config(cfg: &config::Config, role: Role) -> ServerConfig {
        ServerConfig {
            listens: cfg
                .control_listener
                .listens
                .iter()
                .map(|l| l.addr.clone())
                .collect(),
            identity: Identity {
                nodename: config::nodename::nodename(&cfg.cluster)
                    .unwrap_or_else(|| "localhost".to_owned()),
                role,
            },
            max_connections: DEFAULT_MAX_CONNECTIONS,
            frame_timeout: DEFAULT_FRAME_TIMEOUT,
            auth: None,
        }
    }
}

/// Why the console server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("console server: {what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
}

/// The running console server. Dropping it stops it (see [`StopHandle::stop`]).
#[derive(Debug)]
pub struct ConsoleServer {
    bound: Vec<BoundAddr>,
    stop: StopHandle,
}

/// Stops the server from any thread (a signal handler thread, the daemon's shutdown path).
#[derive(Clone, Debug)]
pub struct StopHandle {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    stopping: AtomicBool,
    /// Held for the whole of a stop, so a second caller returns only once the first has finished.
    stop_lock: Mutex<()>,
    waker: Mutex<Option<UnixStream>>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
    conns: Mutex<Connections>,
    active: AtomicUsize,
}

#[derive(Debug, Default)]
struct Connections {
    next_id: u64,
    open: HashMap<u64, (Stream, Option<JoinHandle<()>>)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a thread panicked while holding it; the maps stay consistent
    // because every update is a single insert or remove.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StopHandle {
    /// Closes the listeners (removing the Unix socket files this server created), shuts every
    /// connection down and waits for all server threads. Idempotent; returns once stopped. A
    /// handler call in progress is waited for. Called from a handler (a `shutdown` command), it
    /// spares the calling connection, so the command's response is still delivered; that
    /// connection ends when its client closes it.
    pub fn stop(&self) {
        let s = &self.inner;
        let _one_at_a_time = lock(&s.stop_lock);
        s.stopping.store(true, Ordering::SeqCst);
        if let Some(mut w) = lock(&s.waker).take() {
            let _ = w.write_all(b"x");
        }
        if let Some(h) = lock(&s.acceptor).take() {
            let _ = h.join();
        }
        let me = std::thread::current().id();
        let open: Vec<(Stream, Option<JoinHandle<()>>)> = lock(&s.conns)
            .open
            .drain()
            .map(|(_, v)| v)
            .filter(|(_, h)| h.as_ref().is_none_or(|h| h.thread().id() != me))
            .collect();
        for (stream, _) in &open {
            let _ = stream.shutdown();
        }
        for (_, handle) in open {
            if let Some(h) = handle {
                let _ = h.join();
            }
        }
    }

    /// Whether [`stop`](Self::stop) has been called.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }
}

impl ConsoleServer {
    /// Binds every address of `cfg` (all or none: a failure releases what was bound) and starts
    /// serving with `handler`.
    pub fn start(
        cfg: ServerConfig,
        handler: Arc<dyn ConsoleHandler>,
    ) -> Result<ConsoleServer, ServerError> {
        let mut listeners = Vec::with_capacity(cfg.listens.len());
        for addr in &cfg.listens {
            listeners.push(Listener::bind(addr)?);
        }
        let bound: Vec<BoundAddr> = listeners.iter().map(Listener::bound).collect();
        let (wake_tx, wake_rx) = UnixStream::pair().map_err(|source| ServerError::Io {
            what: "cannot create the wake-up socket",
            source,
        })?;
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            stop_lock: Mutex::new(()),
            waker: Mutex::new(Some(wake_tx)),
            acceptor: Mutex::new(None),
            conns: Mutex::new(Connections::default()),
            active: AtomicUsize::new(0),
        });
        let dispatcher = Arc::new(Dispatcher {
            identity: cfg.identity,
            handler,
            frame_timeout: cfg.frame_timeout,
            auth: cfg.auth,
            failures: Mutex::new(HashMap::new()),
            auth_failures: std::sync::atomic::AtomicU64::new(0),
        });
        let max = cfg.max_connections.max(1);
        let acc_shared = Arc::clone(&shared);
        let acceptor =
            crate::node::runtime::spawn_daemon_thread("console-accept".into(), move || {
                accept_loop(listeners, wake_rx, acc_shared, dispatcher, max)
            })
            .map_err(|source| ServerError::Io {
                what: "cannot start the acceptor thread",
                source,
            })?;
        *lock(&shared.acceptor) = Some(acceptor);
        for b in &bound {
            tracing::info!(address = %b, "console listening");
        }
        Ok(ConsoleServer {
            bound,
            stop: StopHandle { inner: shared },
        })
    }

    /// Where the server listens, in configuration order (TCP port 0 resolved).
    pub fn local_addrs(&self) -> &[BoundAddr] {
        &self.bound
    }

    /// A handle that stops the server from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Stops the server and waits for its threads (see [`StopHandle::stop`]).
    pub fn stop(self) {
        self.stop.stop();
    }
}

impl Drop for ConsoleServer {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

fn accept_loop(
    listeners: Vec<Listener>,
    wake_rx: UnixStream,
    shared: Arc<Shared>,
    dispatcher: Arc<Dispatcher>,
    max: usize,
) {
    let span = tracing::info_span!("console", node = %dispatcher.identity.nodename);
    let _entered = span.enter();
    loop {
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(listeners.len() + 1);
        fds.push(PollFd::new(wake_rx.as_fd(), PollFlags::POLLIN));
        for l in &listeners {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!(error = %e, "console: poll failed; the console stops accepting");
                return;
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if shared.stopping.load(Ordering::SeqCst) || ready[0] {
            // Dropping the listeners closes them and removes the socket files.
            return;
        }
        for (l, _) in listeners.iter().zip(&ready[1..]).filter(|(_, r)| **r) {
            loop {
                match l.accept() {
                    Ok(Some(stream)) => admit(stream, &shared, &dispatcher, max),
                    Ok(None) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // ECONNABORTED, EMFILE and the like: this connection is lost, not the
                        // listener. A connection left in the backlog (EMFILE) keeps the listener
                        // readable, so pause instead of spinning on it.
                        tracing::warn!(listener = %l.bound(), error = %e, "console: accept failed");
                        std::thread::sleep(ACCEPT_ERROR_PAUSE);
                        break;
                    }
                }
            }
        }
    }
}

/// Decrements the active count however the connection thread ends.
struct Slot(Arc<Shared>, u64);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        lock(&self.0.conns).open.remove(&self.1);
    }
}

fn admit(stream: Stream, shared: &Arc<Shared>, dispatcher: &Arc<Dispatcher>, max: usize) {
    let peer = stream.peer();
    if stream.set_nonblocking(false).is_err()
        || stream
            .set_write_timeout(Some(dispatcher.frame_timeout))
            .is_err()
    {
        return;
    }
    if shared.active.fetch_add(1, Ordering::SeqCst) >= max {
        shared.active.fetch_sub(1, Ordering::SeqCst);
        tracing::warn!(%peer, max, "console: connection refused, too many open");
        let mut s = stream;
        let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
        let msg = format!("too many console connections (limit {max}); try again later");
        if let Ok(frame) = Response::error(msg).encode() {
            let _ = s.write_all(&frame);
        }
        return;
    }
    let Ok(registered) = stream.try_clone() else {
        shared.active.fetch_sub(1, Ordering::SeqCst);
        return;
    };
    let id = {
        let mut c = lock(&shared.conns);
        c.next_id += 1;
        let id = c.next_id;
        c.open.insert(id, (registered, None));
        id
    };
    let slot = Slot(Arc::clone(shared), id);
    let d = Arc::clone(dispatcher);
    let spawned = std::thread::Builder::new()
        .name(format!("console-{id}"))
        .spawn(move || {
            let _slot = slot;
            let span = tracing::info_span!("console", node = %d.identity.nodename, %peer);
            let _entered = span.enter();
            serve(stream, &d);
        });
    match spawned {
        Ok(h) => {
            if let Some(entry) = lock(&shared.conns).open.get_mut(&id) {
                entry.1 = Some(h);
            }
        }
        Err(e) => tracing::error!(error = %e, "console: cannot start a connection thread"),
    }
}

/// Bytes read from a connection at a time; also the output size that is written without
/// waiting for the input to run dry.
const IO_CHUNK: usize = 64 * 1024;

/// Serves one connection until the peer closes it, a frame is malformed or times out, or the
/// server stops (which shuts the socket down).
///
/// Requests may be pipelined: every whole request already received is answered, in order, and
/// the answers go out in one write when no further whole request is waiting (or when
/// [`IO_CHUNK`] bytes of answers have gathered), so a client that writes many requests at once
/// gets many answers per system call.
fn serve(mut stream: Stream, d: &Dispatcher) {
    let peer = stream.peer();
    let mut gate = cohort_engine::console::auth::Gate::new(match stream {
        Stream::Tcp(_) => d.auth.clone(),
        Stream::Unix(_) => None,
    });
    let mut buf: Vec<u8> = Vec::new();
    // Where the next request starts in `buf`; consumed bytes are dropped once per read.
    let mut at = 0;
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; IO_CHUNK];
    let mut timed = false;
    loop {
        match RequestRef::decode(&buf[at..]) {
            Ok(Some((req, used))) => {
                at += used;
                if !gate.passed() || req.line.trim_start().starts_with("auth") {
                    use cohort_engine::console::auth::Verdict;
                    let verdict = if d.blocked(&peer) {
                        Verdict::Refuse {
                            message: "too many failed authentications; try again later".into(),
                            close: true,
                        }
                    } else {
                        gate.check(req.line, crate::logsvc::stream::nonce)
                    };
                    let (status, body, close) = match verdict {
                        Verdict::Pass => (None, String::new(), false),
                        Verdict::Reply(body) => (Some(Status::Ok), body, false),
                        Verdict::Refuse { message, close } => {
                            if close {
                                d.failed(&peer);
                            }
                            (Some(Status::Error), message, close)
                        }
                    };
                    if let Some(status) = status {
                        protocol::encode_response_into(status, body.as_bytes(), &mut out)
                            .expect("a short message is far below the response limit");
                        if close {
                            let _ = stream.write_all(&out);
                            return;
                        }
                        continue;
                    }
                }
                match d.answer(req, &mut out) {
                    Answered::Yes => {}
                    Answered::Listen(group) => {
                        // The connection belongs to the stream from here on; answers to
                        // requests pipelined before it go out first.
                        if !out.is_empty() && stream.write_all(&out).is_err() {
                            return;
                        }
                        stream_group(&mut stream, d, &group, req.json);
                        return;
                    }
                }
                if out.len() < IO_CHUNK {
                    continue;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "console: malformed request; closing");
                let _ = stream.write_all(&out);
                refuse(&mut stream, &e);
                return;
            }
        }
        if !out.is_empty() {
            if let Err(e) = stream.write_all(&out) {
                tracing::debug!(error = %e, "console: response not delivered");
                return;
            }
            out.clear();
            continue;
        }
        buf.drain(..at);
        at = 0;
        let want_timeout = !buf.is_empty();
        if want_timeout != timed {
            let t = want_timeout.then_some(d.frame_timeout);
            if stream.set_read_timeout(t).is_err() {
                return;
            }
            timed = want_timeout;
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                if !buf.is_empty() {
                    tracing::debug!(bytes = buf.len(), "console: peer closed inside a request");
                }
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                tracing::warn!(timeout = ?d.frame_timeout, "console: request incomplete; closing");
                let _ = stream.write_all(
                    &Response::error("request incomplete; closing")
                        .encode()
                        .expect("a short error message is far below the response limit"),
                );
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "console: read failed");
                return;
            }
        }
    }
}

/// How often a `listen` stream checks that its client is still there.
const LISTEN_POLL: Duration = Duration::from_millis(200);

/// Serves `listen <group>`: a first response saying so (or the refusal), then one response per
/// message, until the client closes the connection, sends anything or the source closes.
fn stream_group(stream: &mut Stream, d: &Dispatcher, group: &str, json: bool) {
    let mut source = match d.handler.listen(group, json) {
        Ok(s) => s,
        Err(e) => {
            if let Ok(f) = Response::error(error_body(&e, json)).encode() {
                let _ = stream.write_all(&f);
            }
            return;
        }
    };
    let hello = if json {
        format!("{:#}\n", serde_json::json!({ "listening": group }))
    } else {
        format!("Listening to group {group}\n")
    };
    let send = |stream: &mut Stream, body: String| {
        Response::ok(body)
            .encode()
            .is_ok_and(|f| stream.write_all(&f).is_ok())
    };
    if !send(stream, hello)
        || stream
            .set_read_timeout(Some(Duration::from_millis(1)))
            .is_err()
    {
        return;
    }
    let mut probe = [0u8; 1];
    loop {
        match source.next(LISTEN_POLL) {
            ListenNext::Line(l) => {
                if !send(stream, l) {
                    return;
                }
            }
            ListenNext::Idle => {}
            ListenNext::Closed => return,
        }
        match stream.read(&mut probe) {
            // Closed, or a client that sends something while listening: the stream ends.
            Ok(_) => return,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

fn refuse(stream: &mut Stream, e: &ProtocolError) {
    if let Ok(frame) = Response::error(format!("malformed request: {e}")).encode() {
        let _ = stream.write_all(&frame);
    }
}

/// Parses requests, enforces the role, answers local commands and calls the handler.
struct Dispatcher {
    identity: Identity,
    handler: Arc<dyn ConsoleHandler>,
    frame_timeout: Duration,
    auth: Option<cohort_engine::group::ClusterKey>,
    /// Failed authentications per peer address in the current minute (rate limit).
    failures: Mutex<HashMap<String, (u32, std::time::Instant)>>,
    auth_failures: std::sync::atomic::AtomicU64,
}

/// Failed authentications a peer address may make per minute; beyond, its attempts are refused
/// at once for the rest of the minute.
const AUTH_FAILURES_PER_MINUTE: u32 = 5;

impl Dispatcher {
    fn peer_host(peer: &str) -> String {
        peer.rsplit_once(':').map_or(peer, |(h, _)| h).to_owned()
    }

    /// Whether `peer` used up its failed attempts for this minute.
    fn blocked(&self, peer: &str) -> bool {
        let f = lock(&self.failures);
        f.get(&Self::peer_host(peer)).is_some_and(|(n, since)| {
            *n >= AUTH_FAILURES_PER_MINUTE && since.elapsed() < Duration::from_secs(60)
        })
    }

    /// Counts a failed authentication from `peer`; logs the first of each minute per peer.
    fn failed(&self, peer: &str) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
        let mut f = lock(&self.failures);
        if f.len() > 4096 {
            f.retain(|_, (_, since)| since.elapsed() < Duration::from_secs(60));
        }
        let e = f
            .entry(Self::peer_host(peer))
            .or_insert((0, std::time::Instant::now()));
        if e.1.elapsed() >= Duration::from_secs(60) {
            *e = (0, std::time::Instant::now());
        }
        e.0 += 1;
        if e.0 == 1 || e.0 == AUTH_FAILURES_PER_MINUTE {
            tracing::warn!(%peer, failures = e.0, total = self.auth_failures.load(Ordering::Relaxed), "console: authentication failed");
        }
    }
}

fn error_body(msg: &str, json: bool) -> String {
    if json {
        format!("{:#}\n", serde_json::json!({ "error": msg }))
    } else {
        msg.to_owned()
    }
}

/// What [`Dispatcher::answer`] did with a request.
enum Answered {
    /// Its response frame is in the output.
    Yes,
    /// It is `listen <group>`: the caller streams the group.
    Listen(String),
}

impl Dispatcher {
    /// Runs one request and appends its response frame to `out`. An application's update
    /// (`cluster shared cidr|gauge incr|decr`) is read without the grammar and answered
    /// without building a command; everything else is parsed once and run by [`run_command`].
    fn answer(&self, req: RequestRef<'_>, out: &mut Vec<u8>) -> Answered {
        let fast = (self.identity.role == Role::Node)
            .then(|| shared_ops::parse_update(req.line))
            .flatten();
        let result = match fast {
            Some(u) => guarded(&req.line, || self.handler.update(&u, req.json)),
            None => match grammar::parse(req.line) {
                Ok(Command::Listen { group }) => return Answered::Listen(group),
                Ok(cmd) => run_command(&self.identity, self.handler.as_ref(), &cmd, req.json)
                    .map(Cow::Owned),
                Err(e) => Err(e.to_string()),
            },
        };
        let (status, body) = match result {
            Ok(body) => (Status::Ok, body),
            Err(msg) => (Status::Error, Cow::Owned(error_body(&msg, req.json))),
        };
        if let Err(e) = protocol::encode_response_into(status, body.as_bytes(), out) {
            let msg = format!("response not sent: {e}");
            protocol::encode_response_into(Status::Error, msg.as_bytes(), out)
                .expect("a short error message is far below the response limit");
        }
        Answered::Yes
    }
}

/// Runs one command line as the console does: parses it, enforces the role, answers what needs
/// only local data and hands the rest to `handler` (a panic there is caught and reported). The
/// node runs the manager's `broadcast` / `unicast` / `retrieve` commands through this too, so
/// they answer exactly as the node's own console would.
pub fn execute(
    identity: &Identity,
    handler: &dyn ConsoleHandler,
    line: &str,
    json: bool,
) -> Result<String, String> {
    let cmd = grammar::parse(line).map_err(|e| e.to_string())?;
    run_command(identity, handler, &cmd, json)
}

/// [`execute`] for a command already parsed.
fn run_command(
    identity: &Identity,
    handler: &dyn ConsoleHandler,
    cmd: &Command,
    json: bool,
) -> Result<String, String> {
    let role = identity.role;
    if !cmd.scope().allows(role.scope()) {
        return Err(match role {
            Role::Node => {
                format!("'{cmd}' is a cluster manager command; this is a node (cohortd)")
            }
            Role::Manager => format!(
                "'{cmd}' is a node command and does not run in the cluster manager; use 'broadcast {cmd}' or 'unicast <node> {cmd}'"
            ),
        });
    }
    if let Command::Listen { group } = cmd {
        return Err(format!(
            "'listen {group}' streams messages; run it as 'cohortctl listen {group}'"
        ));
    }
    let local: Option<Box<dyn Render>> = match cmd {
        Command::Help => Some(Box::new(Help::for_role(role.scope(), false))),
        Command::Version => Some(Box::new(Version::current())),
        Command::Cluster(ClusterCommand::Help) => Some(Box::new(Help::for_role(Scope::Node, true))),
        Command::Cluster(ClusterCommand::Nodename) => Some(Box::new(NodeName {
            nodename: identity.nodename.clone(),
        })),
        _ => None,
    };
    if let Some(item) = local {
        return Ok(render(item.as_ref(), json));
    }
    guarded(cmd, || handler.handle(cmd, json))
}

/// Runs a handler call for `command`; a panic there is caught, logged and reported as an
/// internal error, and the connection stays usable.
fn guarded<T>(
    command: &dyn std::fmt::Display,
    call: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(call)).unwrap_or_else(|_| {
        tracing::error!(command = %command, "console handler panicked");
        Err(format!("internal error while running '{command}'"))
    })
}
