//! The manager's console (`cohortd --manager`, Momentum's eccmgr): `broadcast`, `unicast`,
//! `subcluster broadcast` send a node command to the control group (or `ec_sc_<subcluster>`) in
//! agreed order and return at once; every addressed node runs it and answers on the manager's
//! private reply group. `retrieve`, `retrieve_node` and `subcluster retrieve` show the answers to
//! the latest request of that command (waiting for the ones still due), sending the command first
//! when the cache holds no such request. Answers are kept in memory and in the control cache on
//! disk ([`super::control_cache`]) until `flush control cache`.
//!
//! A node that leaves the view before answering is reported at once as such; one that stays but
//! does not answer within [`ANSWER_TIMEOUT`] is reported as timed out.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cohort_engine::console::control::{CommandMsg, ControlMsg, Reassembly};
use cohort_engine::console::{ClusterCommand, Command, ManagerCommand};
use cohort_engine::group::{MemberId, Order};

use super::console::NodeConsole;
use super::control_cache::{ControlCache, Outcome};
use super::shared::{Delivery, Request, Shared};
use crate::console::server::ConsoleHandler;

/// How long a node that stays in the view may take to answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests kept in memory; the oldest are forgotten beyond this (their files stay until flushed).
pub const MAX_REQUESTS: usize = 1024;

/// One command sent to the cluster and what came back.
#[derive(Clone, Debug)]
struct Sent {
    line: String,
    json: bool,
    group: String,
    /// `Some(node)` for a unicast.
    target: Option<String>,
    /// The nodes expected to answer, in view order.
    addressees: Vec<String>,
    outcomes: BTreeMap<String, Outcome>,
    issued: Instant,
}

impl Sent {
    fn complete(&self) -> bool {
        self.addressees
            .iter()
            .all(|n| self.outcomes.contains_key(n))
    }
}

#[derive(Default)]
struct State {
    next_request: u64,
    sent: BTreeMap<u64, Sent>,
    reassembly: HashMap<MemberId, Reassembly>,
}

/// The manager's console handler.
pub struct ManagerConsole {
    shared: Arc<Shared>,
    node: NodeConsole,
    state: Mutex<State>,
    answered: Condvar,
    cache: ControlCache,
    control_group: String,
    reply_group: String,
    timeout: Duration,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every update of the state is complete before the lock is released.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Which request a `retrieve` family command reads.
enum Scope<'a> {
    Cluster,
    Subcluster(&'a str),
    Node(&'a str),
}

impl ManagerConsole {
    /// Opens the control cache and starts the thread that collects the nodes' answers.
    pub fn start(shared: Arc<Shared>) -> std::io::Result<Arc<ManagerConsole>> {
        let (cfg, me, incarnation) = {
            let s = shared.status.lock().map_err(|_| {
                std::io::Error::other("the manager's status is poisoned before it started")
            })?;
            (
                s.config.clone(),
                s.identity.nodename.clone(),
                s.me.incarnation,
            )
        };
        let cache_dir = cfg.manager_logs.clone().unwrap_or_default().control_cache;
        let rx = super::control::subscribe(&shared);
        let m = Arc::new(ManagerConsole {
            node: NodeConsole {
                shared: shared.clone(),
            },
            shared,
            // Request ids start from this incarnation's own base, so a late answer to a previous
            // run of the manager (same name, same reply group) never matches a new request.
            state: Mutex::new(State {
                next_request: (incarnation % 1_000_000) * 1_000 + 1,
                ..State::default()
            }),
            answered: Condvar::new(),
            cache: ControlCache::open(&cache_dir),
            control_group: cfg.cluster.control_group.clone(),
            reply_group: super::control::reply_group(&me),
            timeout: ANSWER_TIMEOUT,
        });
        let collector = Arc::clone(&m);
        super::priority::spawn_daemon_thread("control-answers".into(), move || {
            collector.collect(rx)
        })?;
        Ok(m)
    }

    /// Takes the nodes' answer chunks until the loop goes away.
    fn collect(&self, rx: Receiver<Delivery>) {
        while let Ok(d) = rx.recv() {
            let chunk = match ControlMsg::decode(&d.payload) {
                Ok(ControlMsg::Answer(a)) => a,
                // Commands go to the control group, which the manager does not join.
                Ok(ControlMsg::Command(_)) => continue,
                Err(e) => {
                    tracing::warn!(from = %d.sender.name, error = %e, "control answer dropped");
                    continue;
                }
            };
            let mut st = lock(&self.state);
            let done = st
                .reassembly
                .entry(d.sender.clone())
                .or_default()
                .push(chunk);
            let answer = match done {
                Ok(Some(a)) => a,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(from = %d.sender.name, error = %e, "answer dropped");
                    continue;
                }
            };
            let Some(sent) = st.sent.get_mut(&answer.request) else {
                continue;
            };
            let node = d.sender.name.clone();
            if !sent.addressees.contains(&node) || sent.outcomes.contains_key(&node) {
                continue;
            }
            let body = String::from_utf8_lossy(&answer.body).into_owned();
            let outcome = if answer.ok {
                Outcome::Ok(body)
            } else {
                Outcome::Error(body)
            };
            self.cache.record(&sent.line, sent.json, &node, &outcome);
            sent.outcomes.insert(node, outcome);
            self.answered.notify_all();
        }
    }

    fn status<T>(&self, f: impl FnOnce(&super::shared::NodeStatus) -> T) -> Result<T, String> {
        self.shared
            .status
            .lock()
            .map(|s| f(&s))
            .map_err(|_| "status unavailable".to_owned())
    }

    /// Sends `command` to `group` (or one node of it) and records the request.
    fn issue(
        &self,
        group: &str,
        target: Option<&str>,
        command: &Command,
        json: bool,
    ) -> Result<u64, String> {
        let (members, in_view) = self.status(|s| {
            let me = s.me.clone();
            let members: Vec<String> = s
                .groups
                .get(group)
                .map(|ms| {
                    ms.iter()
                        .filter(|m| **m != me)
                        .map(|m| m.name.clone())
                        .collect()
                })
                .unwrap_or_default();
            let in_view: Vec<String> = s.view.members.iter().map(|m| m.name.clone()).collect();
            (members, in_view)
        })?;
        let addressees: Vec<String> = match target {
            Some(t) if members.iter().any(|m| m == t) => vec![t.to_owned()],
            Some(t) if in_view.iter().any(|m| m == t) => {
                return Err(format!("{t} is in the cluster but not a member of {group}"));
            }
            Some(t) => return Err(format!("no node named {t} in the cluster")),
            None if members.is_empty() => {
                return Err(format!("no node is a member of {group}"));
            }
            None => members,
        };
        let line = command.to_string();
        let mut st = lock(&self.state);
        let request = st.next_request;
        let msg = CommandMsg {
            request,
            reply_group: self.reply_group.clone(),
            target: target.map(str::to_owned),
            json,
            line: line.clone(),
        }
        .encode()
        .map_err(|e| e.to_string())?;
        st.next_request += 1;
        self.cache.begin(
            &line,
            json,
            &format!(
                "request: {request}\ncommand: {line}\nformat: {}\ngroup: {group}\naddressees: {}\nsent: {}\n",
                if json { "json" } else { "text" },
                addressees.join(", "),
                humantime_now(),
            ),
        );
        st.sent.insert(
            request,
            Sent {
                line,
                json,
                group: group.to_owned(),
                target: target.map(str::to_owned),
                addressees,
                outcomes: BTreeMap::new(),
                issued: Instant::now(),
            },
        );
        while st.sent.len() > MAX_REQUESTS {
            st.sent.pop_first();
        }
        drop(st);
        self.shared.request(Request::Send {
            group: group.to_owned(),
            payload: msg,
            order: Order::Agreed,
        });
        Ok(request)
    }

    /// Waits until every addressee of `request` answered, left the view or timed out.
    fn wait(&self, request: u64) -> Option<Sent> {
        let mut st = lock(&self.state);
        loop {
            let view: Vec<String> = self
                .status(|s| s.view.members.iter().map(|m| m.name.clone()).collect())
                .unwrap_or_default();
            let sent = st.sent.get_mut(&request)?;
            let timed_out = sent.issued.elapsed() >= self.timeout;
            for n in sent.addressees.clone() {
                if sent.outcomes.contains_key(&n) {
                    continue;
                }
                let why = if !view.contains(&n) {
                    "no answer: left the cluster before answering".to_owned()
                } else if timed_out {
                    format!("no answer within {} s", self.timeout.as_secs())
                } else {
                    continue;
                };
                let o = Outcome::Missing(why);
                self.cache.record(&sent.line, sent.json, &n, &o);
                sent.outcomes.insert(n, o);
            }
            if sent.complete() {
                return Some(sent.clone());
            }
            // Bounded by the answer timeout: every pass either returns or sleeps at most 50 ms.
            st = self
                .answered
                .wait_timeout(st, Duration::from_millis(50))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// The latest request of `line` in `json` format that `scope` reads, if any.
    fn latest(&self, line: &str, json: bool, scope: &Scope<'_>) -> Option<u64> {
        let st = lock(&self.state);
        st.sent
            .iter()
            .rev()
            .find(|(_, s)| {
                s.line == line
                    && s.json == json
                    && match scope {
                        Scope::Cluster => s.group == self.control_group && s.target.is_none(),
                        Scope::Subcluster(sc) => s.group == subcluster_group(sc),
                        Scope::Node(n) => s.addressees.iter().any(|a| a == n),
                    }
            })
            .map(|(id, _)| *id)
    }

    fn retrieve(&self, command: &Command, json: bool, scope: Scope<'_>) -> Result<String, String> {
        let line = command.to_string();
        let request = match self.latest(&line, json, &scope) {
            Some(r) => r,
            None => match scope {
                Scope::Cluster => self.issue(&self.control_group, None, command, json)?,
                Scope::Subcluster(sc) => self.issue(&subcluster_group(sc), None, command, json)?,
                Scope::Node(n) => self.issue(&self.control_group, Some(n), command, json)?,
            },
        };
        let sent = self
            .wait(request)
            .ok_or("the control cache was flushed while waiting")?;
        let only = match scope {
            Scope::Node(n) => Some(n),
            _ => None,
        };
        Ok(render_answers(request, &sent, only, json))
    }

    fn sent_summary(&self, request: u64, json: bool) -> Result<String, String> {
        let st = lock(&self.state);
        let s = st.sent.get(&request).ok_or("request forgotten")?;
        Ok(if json {
            format!(
                "{:#}\n",
                serde_json::json!({
                    "request": request,
                    "command": s.line,
                    "group": s.group,
                    "nodes": s.addressees,
                })
            )
        } else {
            let hint = match (&s.target, s.group.strip_prefix("ec_sc_")) {
                (Some(n), _) => format!("retrieve_node {n} {}", s.line),
                (None, Some(sc)) if s.group != self.control_group => {
                    format!("subcluster retrieve {sc} {}", s.line)
                }
                (None, _) => format!("retrieve {}", s.line),
            };
            format!(
                "Sent '{}' to {} ({}: {}), request {request}; '{hint}' shows the answers\n",
                s.line,
                s.group,
                plural(s.addressees.len(), "node"),
                s.addressees.join(", "),
            )
        })
    }

    fn flush(&self, json: bool) -> Result<String, String> {
        let n = {
            let mut st = lock(&self.state);
            let n = st.sent.len();
            st.sent.clear();
            n
        };
        self.answered.notify_all();
        let files = self
            .cache
            .flush()
            .map_err(|e| format!("control cache not cleared: {e}"))?;
        Ok(if json {
            format!(
                "{:#}\n",
                serde_json::json!({ "requests_forgotten": n, "entries_removed": files })
            )
        } else {
            format!(
                "Control cache flushed: {} forgotten, {} removed\n",
                plural(n, "request"),
                plural(files, "cache entry")
            )
        })
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else if let Some(stem) = what.strip_suffix('y') {
        format!("{n} {stem}ies")
    } else {
        format!("{n} {what}s")
    }
}

fn humantime_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

/// The group of a subcluster's nodes.
pub fn subcluster_group(subcluster: &str) -> String {
    format!("ec_sc_{subcluster}")
}

/// The answers of a request: per node, in the order the nodes were addressed, its output (text
/// or, with `json`, the node's JSON), its error or why it did not answer.
fn render_answers(request: u64, s: &Sent, only: Option<&str>, json: bool) -> String {
    let nodes: Vec<&String> = s
        .addressees
        .iter()
        .filter(|n| only.is_none_or(|o| o == n.as_str()))
        .collect();
    if json {
        let answers: Vec<serde_json::Value> = nodes
            .iter()
            .map(|n| {
                let (status, body) = match s.outcomes.get(*n) {
                    Some(Outcome::Ok(b)) => ("ok", b.as_str()),
                    Some(Outcome::Error(b)) => ("error", b.as_str()),
                    Some(Outcome::Missing(b)) => ("missing", b.as_str()),
                    None => ("missing", "no answer"),
                };
                let value = match status {
                    "ok" => serde_json::from_str(body)
                        .unwrap_or_else(|_| serde_json::Value::String(body.to_owned())),
                    _ => serde_json::Value::String(body.to_owned()),
                };
                let key = if status == "ok" { "answer" } else { status };
                serde_json::json!({ "node": n, "status": status, key: value })
            })
            .collect();
        return format!(
            "{:#}\n",
            serde_json::json!({
                "request": request,
                "command": s.line,
                "group": s.group,
                "responses": answers,
            })
        );
    }
    let mut out = String::new();
    for n in nodes {
        match s.outcomes.get(n) {
            Some(Outcome::Ok(b)) => {
                out.push_str(&format!("{n}:\n{b}"));
                if !b.ends_with('\n') {
                    out.push('\n');
                }
            }
            Some(Outcome::Error(b)) => out.push_str(&format!("{n}: error: {}\n", b.trim_end())),
            Some(Outcome::Missing(b)) => out.push_str(&format!("{n}: {b}\n")),
            None => out.push_str(&format!("{n}: no answer\n")),
        }
        out.push('\n');
    }
    out
}

impl ConsoleHandler for ManagerConsole {
    fn listen(
        &self,
        group: &str,
        json: bool,
    ) -> Result<Box<dyn crate::console::ListenSource>, String> {
        self.node.listen(group, json)
    }

    fn handle(&self, cmd: &Command, json: bool) -> Result<String, String> {
        use ManagerCommand as M;
        match cmd {
            Command::Manager(m) => match m {
                M::Broadcast { command } => {
                    let r = self.issue(&self.control_group, None, command, json)?;
                    self.sent_summary(r, json)
                }
                M::Unicast { node, command } => {
                    let r = self.issue(&self.control_group, Some(node), command, json)?;
                    self.sent_summary(r, json)
                }
                M::SubclusterBroadcast {
                    subcluster,
                    command,
                } => {
                    let r = self.issue(&subcluster_group(subcluster), None, command, json)?;
                    self.sent_summary(r, json)
                }
                M::Retrieve { command } => self.retrieve(command, json, Scope::Cluster),
                M::RetrieveNode { node, command } => {
                    self.retrieve(command, json, Scope::Node(node))
                }
                M::SubclusterRetrieve {
                    subcluster,
                    command,
                } => self.retrieve(command, json, Scope::Subcluster(subcluster)),
                M::FlushControlCache => self.flush(json),
                M::ShowClusterMembership => self
                    .node
                    .handle(&Command::Cluster(ClusterCommand::Membership), json),
                M::Info => self
                    .node
                    .handle(&Command::Cluster(ClusterCommand::Info), json),
                M::Shutdown => {
                    self.shared.request(Request::Shutdown);
                    Ok(if json {
                        "{\n  \"shutdown\": true\n}\n".to_owned()
                    } else {
                        "Shutting down the cluster manager\n".to_owned()
                    })
                }
            },
            Command::ConfigReload
            | Command::Cluster(ClusterCommand::Jobs | ClusterCommand::Abort { .. }) => {
                self.node.handle(cmd, json)
            }
            other => Err(format!("'{other}' is not a manager command")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent() -> Sent {
        Sent {
            line: "cluster nodename".into(),
            json: false,
            group: "ec_console".into(),
            target: None,
            addressees: vec!["node1".into(), "node2".into(), "node3".into()],
            outcomes: BTreeMap::from([
                ("node1".into(), Outcome::Ok("node1\n".into())),
                ("node2".into(), Outcome::Error("refused".into())),
                (
                    "node3".into(),
                    Outcome::Missing("no answer within 10 s".into()),
                ),
            ]),
            issued: Instant::now(),
        }
    }

    #[test]
    fn answers_render_per_node_in_address_order() {
        let s = sent();
        assert!(s.complete());
        assert_eq!(
            render_answers(5, &s, None, false),
            "node1:\nnode1\n\nnode2: error: refused\n\nnode3: no answer within 10 s\n\n"
        );
        assert_eq!(
            render_answers(5, &s, Some("node1"), false),
            "node1:\nnode1\n\n"
        );
        let v: serde_json::Value =
            serde_json::from_str(&render_answers(5, &s, None, true)).expect("JSON");
        assert_eq!(v["request"], 5);
        assert_eq!(v["responses"][1]["status"], "error");
        assert_eq!(v["responses"][1]["error"], "refused");
        assert_eq!(v["responses"][2]["missing"], "no answer within 10 s");
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "node"), "1 node");
        assert_eq!(plural(3, "node"), "3 nodes");
        assert_eq!(plural(2, "cache entry"), "2 cache entries");
    }
}
