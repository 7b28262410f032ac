//! The manager's log pull ("logmove"): one worker per node of the view (the members' announced
//! `eccluster_addr`), each connecting to that node's log service, pulling every log with the
//! first subscriber name of the manager's list that the journal has (by default the manager's node
//! name, then `master`; or the `Subscriber` lists of the `Manager` / `Node` scopes of `Logs`),
//! writing each batch durably through the [`Sink`] and only then acknowledging it.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use cohort_engine::config::ManagerLogs;
use cohort_engine::logmove::wire::{self, Message, Role, Session};

use super::sink::Sink;
use super::stream::{FramedStream, StreamError, nonce};
use super::worker::Worker;
use crate::node::runtime::Shared;

/// Counters of the manager's pulls.
#[derive(Debug, Default)]
pub struct PullStats {
    pub connections: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Nodes that could not prove the cluster key (or refused ours).
    pub auth_failures: AtomicU64,
    pub records_written: AtomicU64,
    pub records_skipped: AtomicU64,
    pub batches: AtomicU64,
    /// Per (node, log): the shipping lag of the last batch written, from the append of its last
    /// record on the node (the record's own time) to the batch being durable here, in seconds,
    /// and when that was (to show a stalled pull ageing). A node's entries go when its pull ends.
    pub lag: std::sync::Mutex<BTreeMap<(String, String), (f64, std::time::Instant)>>,
}

/// Which subscriber names the manager `me` pulls node `node`'s logs with, in order of preference.
pub fn subscribers_for(logs: &ManagerLogs, me: &str, node: &str) -> Vec<String> {
    let default = || vec![me.to_owned(), "master".to_owned()];
    let Some(scope) = logs
        .managers
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(me))
    else {
        return default();
    };
    if let Some(n) = scope
        .nodes
        .iter()
        .find(|n| n.name.eq_ignore_ascii_case(node))
    {
        return n.subscribers.clone();
    }
    scope.subscribers.clone().unwrap_or_else(default)
}

/// The running puller.
pub struct Puller {
    worker: Worker,
    pub stats: Arc<PullStats>,
}

struct Ctx {
    shared: Arc<Shared>,
    logs: ManagerLogs,
    me: String,
    key: super::KeyCell,
    sink: Sink,
    stats: Arc<PullStats>,
    stop: Arc<AtomicBool>,
}

impl Puller {
    pub fn start(
        shared: Arc<Shared>,
        logs: ManagerLogs,
        me: String,
        key: super::KeyCell,
    ) -> Result<Puller, String> {
        let sink = Sink::new(&logs)?;
        let stats = Arc::new(PullStats::default());
        let _ = shared.pull_stats.set(stats.clone());
        let st = stats.clone();
        let worker = Worker::spawn("logmove", move |stop| {
            supervise(&Arc::new(Ctx {
                shared,
                logs,
                me,
                key,
                sink,
                stats: st,
                stop,
            }))
        })
        .map_err(|e| e.to_string())?;
        Ok(Puller { worker, stats })
    }

    pub fn stop(self) {
        self.worker.stop();
    }
}

/// The nodes of the current view with a log service: name -> (address, subcluster).
fn nodes(shared: &Shared) -> BTreeMap<String, (SocketAddr, String)> {
    let Ok(s) = shared.status.lock() else {
        return BTreeMap::new();
    };
    s.infos
        .iter()
        .filter(|(m, i)| *m != &s.me && i.node_type != "Manager")
        .filter_map(|(m, i)| {
            let a: SocketAddr = i.eccluster_addr.parse().ok()?;
            (a.port() != 0 && !a.ip().is_unspecified())
                .then(|| (m.name.clone(), (a, i.subcluster.clone())))
        })
        .collect()
}

fn supervise(ctx: &Arc<Ctx>) {
    let mut workers: BTreeMap<String, JoinHandle<bool>> = BTreeMap::new();
    // Nodes whose pull `cluster abort` stopped, and until when.
    let mut paused: BTreeMap<String, std::time::Instant> = BTreeMap::new();
    while !ctx.stop.load(Ordering::Relaxed) {
        let finished: Vec<String> = workers
            .iter()
            .filter(|(_, h)| h.is_finished())
            .map(|(n, _)| n.clone())
            .collect();
        for name in finished {
            if let Some(h) = workers.remove(&name)
                && h.join().unwrap_or(false)
            {
                paused.insert(
                    name,
                    std::time::Instant::now() + crate::node::jobs::PULL_PAUSE,
                );
            }
        }
        paused.retain(|_, until| *until > std::time::Instant::now());
        for name in nodes(&ctx.shared).into_keys() {
            if workers.contains_key(&name) || paused.contains_key(&name) {
                continue;
            }
            let (c, n) = (ctx.clone(), name.clone());
            if let Ok(h) = std::thread::Builder::new()
                .name(format!("logmove-{name}"))
                .spawn(move || work(&c, &n))
            {
                workers.insert(name, h);
            }
        }
        ctx.sink.sweep();
        std::thread::sleep(Duration::from_millis(100));
    }
    for (_, h) in workers {
        let _ = h.join();
    }
}

/// Removes a node's shipping lags when its pull ends (a node that left shows none).
struct ForgetLag<'a> {
    ctx: &'a Ctx,
    node: &'a str,
}

impl Drop for ForgetLag<'_> {
    fn drop(&mut self) {
        if let Ok(mut l) = self.ctx.stats.lag.lock() {
            l.retain(|(n, _), _| n != self.node);
        }
    }
}

/// Pulls from one node while it is in the view, reconnecting after failures; a job of
/// `cluster jobs` meanwhile. Returns whether `cluster abort` stopped it.
fn work(ctx: &Ctx, node: &str) -> bool {
    let job = ctx.shared.jobs.start_pull(node);
    let _forget = ForgetLag { ctx, node };
    let mut backoff = Duration::from_millis(50);
    while !ctx.stop.load(Ordering::Relaxed) {
        // Aborted while not connected (the node refuses or does not answer): stop here too.
        if job.aborted() {
            return true;
        }
        let Some((addr, subcluster)) = nodes(&ctx.shared).remove(node) else {
            return false;
        };
        match pull(ctx, node, addr, &subcluster, &job) {
            Ok(()) => return job.aborted(),
            Err(e) => {
                match &e {
                    StreamError::Closed { .. } => tracing::info!(node, "{e}"),
                    _ => tracing::warn!(node, "{e}"),
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    false
}

/// One connection's pull; `Ok` when the manager stops or the node leaves the view.
fn pull(
    ctx: &Ctx,
    node: &str,
    addr: SocketAddr,
    subcluster: &str,
    job: &crate::node::jobs::PullJob,
) -> Result<(), StreamError> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|source| {
        ctx.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
        StreamError::Io { peer: addr, source }
    })?;
    let mut fs = FramedStream::new(s, Session::plain(Role::Client))
        .map_err(|source| StreamError::Io { peer: addr, source })?;
    ctx.stats.connections.fetch_add(1, Ordering::Relaxed);
    handshake(ctx, &mut fs)?;
    let Message::Logs { logs } = fs.expect(Duration::from_secs(10), "list of logs")? else {
        return Err(fs.protocol("expected the list of logs"));
    };
    let wanted = subscribers_for(&ctx.logs, &ctx.me, node);
    for l in &logs {
        let Some(sub) = wanted.iter().find(|w| l.subscribers.contains(w)) else {
            tracing::debug!(node, log = %l.name, "no subscriber of ours on this log; not pulled");
            continue;
        };
        fs.send(&Message::Pull {
            log: l.name.clone(),
            subscriber: sub.clone(),
        })?;
    }
    let mut idle = 0u32;
    while !ctx.stop.load(Ordering::Relaxed) {
        if job.aborted() {
            tracing::warn!(node, job = job.id(), "log pull aborted (cluster abort)");
            return Ok(());
        }
        let Some(m) = fs.recv(Duration::from_millis(200))? else {
            idle += 1;
            // Every few seconds of silence, check the node is still in the view.
            if idle.is_multiple_of(10)
                && nodes(&ctx.shared).get(node).map(|(a, _)| *a) != Some(addr)
            {
                return Ok(());
            }
            continue;
        };
        idle = 0;
        match m {
            Message::Opened {
                log,
                subscriber,
                checkpoint,
            } => {
                tracing::info!(node, log = %log, subscriber = %subscriber, %checkpoint, "pulling");
            }
            Message::PullError { log, reason } => {
                tracing::warn!(node, log = %log, "cannot pull: {reason}");
            }
            Message::Batch { log, records } => {
                let Some(last) = records.last().map(|r| r.id) else {
                    return Err(fs.protocol("empty batch"));
                };
                if records.windows(2).any(|w| w[1].id <= w[0].id) {
                    return Err(fs.protocol(format!("batch of '{log}' out of order")));
                }
                let w = ctx
                    .sink
                    .write(node, subcluster, &log, &records)
                    .map_err(|e| fs.protocol(format!("cannot write '{log}': {e}")))?;
                ctx.stats
                    .records_written
                    .fetch_add(w.records, Ordering::Relaxed);
                job.add_records(w.records);
                ctx.stats
                    .records_skipped
                    .fetch_add(w.skipped, Ordering::Relaxed);
                ctx.stats.batches.fetch_add(1, Ordering::Relaxed);
                if let Some(r) = records.last() {
                    let appended = Duration::from_secs(u64::from(r.tv_sec))
                        + Duration::from_micros(u64::from(r.tv_usec));
                    let lag = crate::node::shared::wall().saturating_sub(appended);
                    if let Ok(mut l) = ctx.stats.lag.lock() {
                        l.insert(
                            (node.to_owned(), log.clone()),
                            (lag.as_secs_f64(), std::time::Instant::now()),
                        );
                    }
                }
                // Durable now: the node may move its checkpoint.
                fs.send(&Message::Ack { log, last })?;
            }
            other => return Err(fs.protocol(format!("unexpected frame kind {}", other.kind()))),
        }
    }
    Ok(())
}

fn handshake(ctx: &Ctx, fs: &mut FramedStream) -> Result<(), StreamError> {
    let cn = nonce();
    fs.send(&Message::Hello {
        nonce: cn,
        name: ctx.me.clone(),
    })?;
    let m = fs.expect(Duration::from_secs(10), "welcome")?;
    let Message::Welcome {
        nonce: sn, proof, ..
    } = m
    else {
        if let Message::Refused { reason } = m {
            ctx.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
            return Err(fs.protocol(format!("refused: {reason}")));
        }
        return Err(fs.protocol("expected welcome"));
    };
    let ring = ctx.key.read().ok().and_then(|k| k.clone());
    // The node proved one key of its ring (its first); the answer and the session use the key of
    // this ring that matches it.
    let matched = match (&ring, &proof) {
        (Some(r), Some(p)) => r
            .singles()
            .find(|k| wire::server_proof_matches(k, &cn, &sn, p)),
        _ => None,
    };
    match (&ring, proof) {
        (Some(_), Some(_)) if matched.is_some() => {
            let k = matched.expect("matched is some");
            fs.send(&Message::Auth {
                proof: wire::client_proof(&k, &cn, &sn),
            })?;
            fs.session = Session::keyed(&k, &cn, &sn, Role::Client);
            Ok(())
        }
        (None, None) => Ok(()),
        (Some(_), _) => {
            ctx.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
            Err(fs.protocol("the node did not prove the cluster key; not pulling from it"))
        }
        (None, Some(_)) => {
            ctx.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
            Err(fs.protocol("the node requires a cluster key and this manager has none"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_engine::config::{ManagerScope, NodeScope};

    #[test]
    fn subscriber_lists_follow_the_documented_defaults_and_scopes() {
        let mut logs = ManagerLogs::default();
        assert_eq!(
            subscribers_for(&logs, "eastmgr", "west1"),
            ["eastmgr", "master"]
        );
        logs.managers.push(ManagerScope {
            name: "eastmgr".into(),
            subscribers: Some(vec!["east".into()]),
            nodes: vec![NodeScope {
                name: "west1".into(),
                subscribers: vec![],
            }],
        });
        assert!(subscribers_for(&logs, "eastmgr", "west1").is_empty());
        assert_eq!(subscribers_for(&logs, "eastmgr", "west2"), ["east"]);
        assert_eq!(
            subscribers_for(&logs, "westmgr", "west1"),
            ["westmgr", "master"]
        );
    }
}
