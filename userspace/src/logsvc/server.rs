//! The node's log service on `ECCluster_Listener`: serves the journals of the `logs` dictionary to
//! the manager (see [`cohort_engine::logmove::wire`] for the conversation). A subscriber's
//! checkpoint moves only when the manager acknowledges a batch, which it does once the batch is
//! durable on its side; so a crash of either end replays, never loses.
//!
//! Pacing: after sending a batch the service waits `log_active_interval` before the next one;
//! when nothing is pending it looks again after `log_idle_interval`, or at once when this node
//! appends (through [`super::Journals::append`]).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cohort_engine::config::{Config, ListenAddr};
use cohort_engine::jlog::{JlogId, Journal, Reader};
use cohort_engine::logmove::wire::{
    self, LogEntry, MAX_PAYLOAD, Message, Role, Session, WireRecord,
};

use super::journals::Journals;
use super::stream::{FramedStream, StreamError, nonce};
use super::worker::Worker;

/// Most connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 64;
/// Bytes of records per batch (well below the frame limit).
const BATCH_BYTES: usize = 4 << 20;
/// How long a handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Longest wait for an acknowledgement before the connection is dropped (and the batch replayed
/// to the next connection).
const ACK_TIMEOUT: Duration = Duration::from_secs(120);

/// What the service needs to know.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub listen: SocketAddr,
    pub nodename: String,
    /// The keyring in force (read at every handshake; a reload replaces it).
    pub key: super::KeyCell,
}

impl ServiceConfig {
    /// From a node's configuration: the first inet `Listen` of `ECCluster_Listener` (`*` = every
    /// address); `None` when there is none.
    pub fn from_config(cfg: &Config, nodename: &str, key: super::KeyCell) -> Option<ServiceConfig> {
        let listen = cfg
            .eccluster_listener
            .listens
            .iter()
            .find_map(|l| match &l.addr {
                ListenAddr::Inet { host, port } => Some(SocketAddr::new(
                    host.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
                    *port,
                )),
                ListenAddr::Unix(_) => None,
            })?;
        Some(ServiceConfig {
            listen,
            nodename: nodename.to_owned(),
            key,
        })
    }
}

/// The running service; [`LogService::stop`] ends it.
pub struct LogService {
    worker: Worker,
    pub addr: SocketAddr,
}

impl LogService {
    pub fn start(cfg: ServiceConfig, journals: Arc<Journals>) -> std::io::Result<LogService> {
        let listener = TcpListener::bind(cfg.listen)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let worker = Worker::spawn("logsvc", move |stop| {
            accept_loop(listener, cfg, journals, stop)
        })?;
        tracing::info!(%addr, "log service listening");
        Ok(LogService { worker, addr })
    }

    pub fn stop(self) {
        self.worker.stop();
    }
}

fn accept_loop(
    listener: TcpListener,
    cfg: ServiceConfig,
    journals: Arc<Journals>,
    stop: Arc<AtomicBool>,
) {
    let live = Arc::new(AtomicUsize::new(0));
    let cfg = Arc::new(cfg);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, peer)) => {
                if live.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    tracing::warn!(%peer, "log service: too many connections; closing");
                    continue;
                }
                let _ = s.set_nonblocking(false);
                journals.stats.connections.fetch_add(1, Ordering::Relaxed);
                live.fetch_add(1, Ordering::Relaxed);
                let (cfg, journals, stop, conn_live) =
                    (cfg.clone(), journals.clone(), stop.clone(), live.clone());
                let spawned = std::thread::Builder::new()
                    .name("logsvc-conn".into())
                    .spawn(move || {
                        let mut conn = Conn {
                            cfg: &cfg,
                            journals: &journals,
                            id: journals.connection_id(),
                            pulls: BTreeMap::new(),
                        };
                        if let Err(e) = conn.serve(s, &stop) {
                            match e {
                                StreamError::Closed { .. } => tracing::debug!("{e}"),
                                _ => tracing::warn!("log service: {e}"),
                            }
                        }
                        conn.release_all();
                        conn_live.fetch_sub(1, Ordering::Relaxed);
                    });
                if spawned.is_err() {
                    live.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!(error = %e, "log service accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// One log being pulled on a connection.
struct Pull {
    subscriber: String,
    reader: Reader,
    /// The last id of the batch sent and not yet acknowledged.
    outstanding: Option<JlogId>,
}

struct Conn<'a> {
    cfg: &'a ServiceConfig,
    journals: &'a Journals,
    id: u64,
    pulls: BTreeMap<String, Pull>,
}

impl Conn<'_> {
    fn release_all(&mut self) {
        for (log, p) in std::mem::take(&mut self.pulls) {
            self.drop_pull(&log, &p);
        }
    }

    /// Forgets a pull: its claim and its unacknowledged batch, if any.
    fn drop_pull(&self, log: &str, p: &Pull) {
        self.journals.release(log, &p.subscriber, self.id);
        if p.outstanding.is_some() {
            self.journals
                .stats
                .batches_unacked
                .fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn serve(&mut self, s: TcpStream, stop: &AtomicBool) -> Result<(), StreamError> {
        let mut fs = FramedStream::new(s, Session::plain(Role::Server)).map_err(|source| {
            StreamError::Io {
                peer: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            }
        })?;
        self.handshake(&mut fs)?;
        fs.send(&Message::Logs { logs: self.list() })?;
        let mut next_send = Instant::now();
        let mut waiting_since: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            let seen = self.journals.appended.generation();
            if Instant::now() >= next_send && self.send_batches(&mut fs)? {
                next_send = Instant::now() + self.journals.pacing().0;
            }
            let outstanding = self.pulls.values().any(|p| p.outstanding.is_some());
            let free = self.pulls.values().any(|p| p.outstanding.is_none());
            if outstanding {
                let since = *waiting_since.get_or_insert_with(Instant::now);
                if since.elapsed() > ACK_TIMEOUT {
                    return Err(fs.protocol("no acknowledgement in time"));
                }
            } else {
                waiting_since = None;
            }
            // Wait for a frame (an ack or a pull): while pacing holds the next batch back, until
            // it may go; else up to the idle interval, cut short by a local append.
            let pacing = next_send.saturating_duration_since(Instant::now());
            let wait = if pacing.is_zero() {
                self.journals.pacing().1
            } else {
                pacing
            };
            let deadline = Instant::now() + wait;
            loop {
                let slice = deadline
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(20));
                if let Some(m) = fs.recv(slice)? {
                    self.handle(&mut fs, m)?;
                    break;
                }
                if Instant::now() >= deadline
                    || stop.load(Ordering::Relaxed)
                    || (free && self.journals.appended.generation() != seen)
                {
                    break;
                }
            }
        }
        Ok(())
    }

    fn handshake(&self, fs: &mut FramedStream) -> Result<(), StreamError> {
        let Message::Hello { nonce: cn, name } = fs.expect(HANDSHAKE, "hello")? else {
            return Err(fs.protocol("expected hello"));
        };
        let sn = nonce();
        let ring = self.cfg.key.read().ok().and_then(|k| k.clone());
        // The proof is made with the ring's first key; the puller answers with whichever of its
        // keys matched it, so both sides key the session with the same one.
        fs.send(&Message::Welcome {
            nonce: sn,
            name: self.cfg.nodename.clone(),
            proof: ring.as_ref().map(|k| wire::server_proof(k, &cn, &sn)),
        })?;
        if let Some(ring) = &ring {
            let matched = match fs.expect(HANDSHAKE, "proof of the cluster key") {
                Ok(Message::Auth { proof }) => ring
                    .singles()
                    .find(|k| wire::client_proof_matches(k, &cn, &sn, &proof)),
                _ => None,
            };
            let Some(k) = matched else {
                self.journals
                    .stats
                    .auth_refused
                    .fetch_add(1, Ordering::Relaxed);
                let _ = fs.send(&Message::Refused {
                    reason: "cluster key proof missing or wrong".into(),
                });
                return Err(fs.protocol(format!("{name} did not prove the cluster key; refused")));
            };
            fs.session = Session::keyed(&k, &cn, &sn, Role::Server);
        }
        tracing::info!(peer = %fs.peer(), manager = %name, keyed = fs.session.is_keyed(), "log puller connected");
        Ok(())
    }

    fn list(&self) -> Vec<LogEntry> {
        self.journals
            .served()
            .iter()
            .filter_map(|(name, path)| {
                let j = Journal::open(path).ok()?;
                Some(LogEntry {
                    name: name.clone(),
                    subscribers: j.subscribers().unwrap_or_default(),
                })
            })
            .collect()
    }

    fn handle(&mut self, fs: &mut FramedStream, m: Message) -> Result<(), StreamError> {
        match m {
            Message::Pull { log, subscriber } => {
                let reply = match self.open(&log, &subscriber) {
                    Ok(checkpoint) => Message::Opened {
                        log,
                        subscriber,
                        checkpoint,
                    },
                    Err(reason) => Message::PullError { log, reason },
                };
                fs.send(&reply)
            }
            Message::Ack { log, last } => {
                let Some(p) = self.pulls.get_mut(&log) else {
                    return Err(self.bad(fs, format!("ack for '{log}', which is not pulled")));
                };
                if p.outstanding != Some(last) {
                    let want = p.outstanding;
                    return Err(self.bad(
                        fs,
                        format!("ack of {last} for '{log}'; outstanding {want:?}"),
                    ));
                }
                if let Err(e) = p.reader.checkpoint(last) {
                    return Err(fs.protocol(format!("cannot checkpoint '{log}' at {last}: {e}")));
                }
                p.outstanding = None;
                self.journals
                    .stats
                    .batches_acked
                    .fetch_add(1, Ordering::Relaxed);
                self.journals
                    .stats
                    .batches_unacked
                    .fetch_sub(1, Ordering::Relaxed);
                Ok(())
            }
            other => Err(self.bad(fs, format!("unexpected frame kind {}", other.kind()))),
        }
    }

    fn bad(&self, fs: &FramedStream, what: String) -> StreamError {
        self.journals
            .stats
            .protocol_errors
            .fetch_add(1, Ordering::Relaxed);
        fs.protocol(what)
    }

    fn open(&mut self, log: &str, subscriber: &str) -> Result<JlogId, String> {
        if self.pulls.contains_key(log) {
            return Err("already pulled on this connection".into());
        }
        let path = self
            .journals
            .served_path(log)
            .ok_or_else(|| format!("'{log}' is not in this node's logs dictionary"))?;
        let j = Journal::open(path).map_err(|e| e.to_string())?;
        if !j
            .subscribers()
            .map_err(|e| e.to_string())?
            .iter()
            .any(|s| s == subscriber)
        {
            return Err(format!("'{log}' has no subscriber '{subscriber}'"));
        }
        let opened = j
            .reader(subscriber)
            .and_then(|r| r.current_checkpoint().map(|c| (r, c)));
        match opened {
            Ok((reader, checkpoint)) => {
                self.journals.claim(log, subscriber, self.id);
                self.pulls.insert(
                    log.to_owned(),
                    Pull {
                        subscriber: subscriber.to_owned(),
                        reader,
                        outstanding: None,
                    },
                );
                Ok(checkpoint)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Sends the next batch of every log with none outstanding; whether any was sent.
    fn send_batches(&mut self, fs: &mut FramedStream) -> Result<bool, StreamError> {
        let mut sent = false;
        let lost: Vec<String> = self
            .pulls
            .iter()
            .filter(|(log, p)| !self.journals.owns(log, &p.subscriber, self.id))
            .map(|(log, _)| log.clone())
            .collect();
        for log in lost {
            if let Some(p) = self.pulls.remove(&log) {
                tracing::info!(log = %log, subscriber = %p.subscriber, "pull taken over by a newer connection");
                self.drop_pull(&log, &p);
            }
        }
        for (log, p) in &mut self.pulls {
            if p.outstanding.is_some() {
                continue;
            }
            let (_, records) = match p.reader.next_batch() {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(log = %log, error = %e, "cannot read the journal");
                    continue;
                }
            };
            let mut bytes = 0usize;
            let mut out = Vec::new();
            for r in records {
                let len = wire::record_wire_len(r.payload.len());
                if !out.is_empty() && bytes + len > BATCH_BYTES {
                    break;
                }
                if len > MAX_PAYLOAD - 1024 {
                    tracing::error!(log = %log, id = %r.id, bytes = len, "record larger than a frame; it cannot be served");
                    break;
                }
                bytes += len;
                out.push(WireRecord {
                    id: r.id,
                    tv_sec: r.tv_sec,
                    tv_usec: r.tv_usec,
                    payload: r.payload,
                });
            }
            let Some(last) = out.last().map(|r| r.id) else {
                continue;
            };
            let n = out.len() as u64;
            fs.send(&Message::Batch {
                log: log.clone(),
                records: out,
            })?;
            self.journals
                .stats
                .records_sent
                .fetch_add(n, Ordering::Relaxed);
            self.journals
                .stats
                .batches_sent
                .fetch_add(1, Ordering::Relaxed);
            self.journals
                .stats
                .batches_unacked
                .fetch_add(1, Ordering::Relaxed);
            p.outstanding = Some(last);
            sent = true;
        }
        Ok(sent)
    }
}
