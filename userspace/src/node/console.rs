//! The node's answers to console commands, from the status the event loop keeps current.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cohort_engine::console::duravip::DuravipTables;
use cohort_engine::console::render::render;
use cohort_engine::console::shared_ops::{OutboundQuestion, SharedUpdate};
use cohort_engine::console::status::{
    ArpTable, ClusterInfo, Counters, Member, Membership, NodeAddr, NodeType,
};
use cohort_engine::console::{ClusterCommand, Command, SharedOp};
use cohort_engine::replicate;

use super::shared::{Request, Shared};
use crate::console::server::ConsoleHandler;

/// Answers `cluster ...` commands with the node's live state.
pub struct NodeConsole {
    pub shared: Arc<Shared>,
}

/// Momentum's private names: `#ec0-<pid>#<node>` (main connection) and `#ec1-...` (shared objects).
pub fn private_name(conn: u8, pid: u32, node: &str) -> String {
    format!("#ec{conn}-{pid}#{node}")
}

impl NodeConsole {
    fn info(&self) -> Result<ClusterInfo, String> {
        let s = self
            .shared
            .status
            .lock()
            .map_err(|_| "status unavailable")?;
        let id = &s.identity;
        Ok(ClusterInfo {
            daemon_port: id.addr.port(),
            m_private_name: private_name(0, id.pid, &id.nodename),
            s_private_name: private_name(1, id.pid, &id.nodename),
            control_group: s.config.cluster.control_group.clone(),
            cluster_group: s.config.cluster.cluster_group.clone(),
            leader: Some(s.view.leader().name.clone()),
            logger_group: s.config.cluster.log_group.clone(),
        })
    }

    fn membership(&self) -> Result<Membership, String> {
        let s = self
            .shared
            .status
            .lock()
            .map_err(|_| "status unavailable")?;
        let members = s
            .view
            .members
            .iter()
            .map(|m| {
                let info = s.infos.get(m);
                let manager = info.is_some_and(|i| i.node_type == "Manager");
                let pid = info.map_or(super::identity::pid_of(m.incarnation), |i| i.pid);
                // Groups in the order Momentum prints them: control, subcluster, cluster, others.
                let mut groups: Vec<String> = s
                    .groups
                    .iter()
                    .filter(|(g, ms)| ms.contains(m) && !super::control::is_private_group(g))
                    .map(|(g, _)| g.clone())
                    .collect();
                let rank = |g: &String| {
                    if *g == s.config.cluster.control_group {
                        0
                    } else if g.starts_with("ec_sc_") {
                        1
                    } else if *g == s.config.cluster.cluster_group {
                        2
                    } else {
                        3
                    }
                };
                groups.sort_by_key(|g| (rank(g), g.clone()));
                Member {
                    private_name: if manager {
                        format!("#{0}#{0}", m.name)
                    } else {
                        private_name(0, pid, &m.name)
                    },
                    node_name: (!manager).then(|| m.name.clone()),
                    subcluster: if manager {
                        None
                    } else {
                        info.map(|i| i.subcluster.clone())
                    },
                    node_type: if manager {
                        NodeType::Manager
                    } else {
                        NodeType::Node
                    },
                    version: info.map_or_else(|| "(unknown)".to_owned(), |i| i.version.clone()),
                    address: info
                        .and_then(|i| i.eccluster_addr.parse::<SocketAddr>().ok())
                        .filter(|a| a.port() != 0),
                    groups,
                }
            })
            .collect();
        Ok(Membership { members })
    }

    fn counters(&self) -> Result<Counters, String> {
        let s = self
            .shared
            .status
            .lock()
            .map_err(|_| "status unavailable")?;
        let c = &s.counters;
        Ok(Counters {
            datagrams_sent: c.datagrams_sent,
            datagrams_received: c.datagrams_received,
            bytes_sent: c.bytes_sent,
            bytes_received: c.bytes_received,
            dropped_bad_mac: c.dropped_bad_mac,
            dropped_undecodable: c.dropped_undecodable,
            dropped_stale_incarnation: c.dropped_stale_incarnation,
            dropped_replay: c.dropped_replay,
            extra: [
                ("dropped_foreign_cluster".into(), c.dropped_foreign_cluster),
                ("dropped_unknown_sender".into(), c.dropped_unknown_sender),
                ("dropped_queue_full".into(), c.dropped_queue_full),
                ("messages_sent".into(), c.messages_sent),
                ("messages_delivered".into(), c.messages_delivered),
                ("retransmissions".into(), c.retransmissions),
                ("nacks_sent".into(), c.nacks_sent),
                ("views_installed".into(), c.views_installed),
                // Lifeguard's local health score: 0 healthy; each point stretches every
                // failure-detection timeout once more (late timers, late reads).
                ("local_health".into(), u64::from(s.local_health)),
                ("io_syscalls".into(), s.io.syscalls),
                ("io_send_errors".into(), s.io.send_errors),
                ("io_truncated".into(), s.io.truncated),
                ("xdp_arp_replied".into(), s.xdp.map_or(0, |x| x.arp_replied)),
                (
                    "xdp_arp_lease_expired".into(),
                    s.xdp.map_or(0, |x| x.arp_lease_expired),
                ),
                ("xdp_arp_passed".into(), s.xdp.map_or(0, |x| x.arp_passed)),
                (
                    "xdp_transport_stamped".into(),
                    s.xdp.map_or(0, |x| x.transport_stamped),
                ),
                (
                    "xdp_ingress_fenced".into(),
                    s.xdp.map_or(0, |x| x.ingress_fenced),
                ),
                ("xdp_ndp_replied".into(), s.xdp.map_or(0, |x| x.ndp_replied)),
                (
                    "xdp_ndp_lease_expired".into(),
                    s.xdp.map_or(0, |x| x.ndp_lease_expired),
                ),
                ("xdp_arrivals_fed".into(), s.xdp_arrivals_fed),
                (
                    "xdp_interfaces_attached".into(),
                    s.dataplane.as_ref().map_or(0, |d| d.xdp_attached),
                ),
                (
                    "xdp_interfaces_unavailable".into(),
                    s.dataplane
                        .as_ref()
                        .map_or(0, |d| d.xdp_unavailable.len() as u64),
                ),
                (
                    "duravip_acquired".into(),
                    s.dataplane.as_ref().map_or(0, |d| d.acquired),
                ),
                (
                    "duravip_released".into(),
                    s.dataplane.as_ref().map_or(0, |d| d.released),
                ),
                (
                    "duravip_arp_frames_sent".into(),
                    s.dataplane.as_ref().map_or(0, |d| d.arp_frames_sent),
                ),
                (
                    "duravip_lease_lapses".into(),
                    s.dataplane.as_ref().map_or(0, |d| d.lease_lapses),
                ),
                (
                    "duravip_notify_started".into(),
                    s.dataplane.as_ref().map_or(0, |d| d.hooks.started),
                ),
                (
                    "duravip_notify_failed".into(),
                    s.dataplane
                        .as_ref()
                        .map_or(0, |d| d.hooks.failed + d.hooks.timed_out + d.hooks.dropped),
                ),
            ]
            .into_iter()
            .chain(self.shared.journals.counters())
            .collect(),
        })
    }

    /// `cluster arp show`: the shared ARP cache as the loop last published it.
    fn arp(&self) -> Result<ArpTable, String> {
        Ok(self
            .shared
            .status
            .lock()
            .map_err(|_| "status unavailable")?
            .arp
            .clone())
    }

    fn nodeaddr(&self) -> Result<NodeAddr, String> {
        let s = self
            .shared
            .status
            .lock()
            .map_err(|_| "status unavailable")?;
        let me = s.me.clone();
        let addr = s
            .infos
            .get(&me)
            .and_then(|i| i.eccluster_addr.parse::<SocketAddr>().ok())
            .unwrap_or(s.identity.addr);
        Ok(NodeAddr { address: addr })
    }

    /// The answer to an update; when it made its object's batch due (`max_pending`), the event
    /// loop is woken to send it.
    fn updated(&self, due: bool, json: bool) -> Cow<'static, str> {
        if due {
            let _ = self.shared.waker.wake();
        }
        Cow::Borrowed(if json { "{\"ok\":true}\n" } else { "OK\n" })
    }

    /// An application's operation on a replicated object (`cluster shared cidr|gauge|...`):
    /// the same calls as `Shared::objects` in the process. Updates answer `OK`; when one makes
    /// its object's batch due (`max_pending`), the event loop is woken to send it.
    fn shared_op(&self, op: &SharedOp, json: bool) -> Result<String, String> {
        use replicate::View;
        let objects = self.shared.objects();
        let now = super::shared::wall();
        let view = |local: bool| if local { View::Local } else { View::Global };
        let e = |e: replicate::ReplicateError| e.to_string();
        let due = |due: bool| Ok(self.updated(due, json).into_owned());
        let exceeded = |over: bool| {
            Ok(if json {
                format!("{{\"exceeded\":{over}}}\n")
            } else {
                format!("{over}\n")
            })
        };
        let seconds = |wait: Duration| {
            let secs = wait.as_secs_f64();
            Ok(if json {
                format!("{{\"seconds\":{secs}}}\n")
            } else {
                format!("{secs}\n")
            })
        };
        let number = |n: i64| {
            Ok(if json {
                format!("{{\"value\":{n}}}\n")
            } else {
                format!("{n}\n")
            })
        };
        match op {
            SharedOp::CidrAdd { object, net, delta } => self
                .update(
                    &SharedUpdate::Cidr {
                        object,
                        net: *net,
                        delta: *delta,
                    },
                    json,
                )
                .map(Cow::into_owned),
            SharedOp::CidrCount { object, net, local } => {
                number(objects.cidr_count(object, *net, view(*local)).map_err(e)?)
            }
            SharedOp::GaugeAdd { object, key, delta } => self
                .update(
                    &SharedUpdate::Gauge {
                        object,
                        key,
                        delta: *delta,
                    },
                    json,
                )
                .map(Cow::into_owned),
            SharedOp::GaugeGet { object, key, local } => {
                number(objects.gauge_get(object, key, view(*local)).map_err(e)?)
            }
            SharedOp::ThrottleCreate {
                object,
                name,
                limit,
                period,
            } => {
                let spec =
                    replicate::throttle::ThrottleSpec::parse(&format!("{limit}/{period}"), None)
                        .map_err(|e| e.to_string())?;
                objects
                    .throttle_create(object, name, spec, now)
                    .map_err(e)?;
                due(false)
            }
            SharedOp::ThrottleInc { object, name, n } => {
                due(objects.throttle_inc(object, name, *n, now).map_err(e)?)
            }
            SharedOp::ThrottleCheck { object, name } => {
                exceeded(objects.throttle_check(object, name, now).map_err(e)?)
            }
            SharedOp::ThrottleTarpit { object, name } => {
                seconds(objects.throttle_tarpit(object, name, now).map_err(e)?)
            }
            SharedOp::OutboundAsk {
                what,
                object,
                binding,
                domain,
            } => match what {
                OutboundQuestion::Check => exceeded(
                    objects
                        .outbound_check(object, binding, domain, now)
                        .map_err(e)?,
                ),
                OutboundQuestion::Tarpit => seconds(
                    objects
                        .outbound_tarpit(object, binding, domain, now)
                        .map_err(e)?,
                ),
                OutboundQuestion::Which => {
                    let name = objects
                        .outbound_throttle(object, binding, domain)
                        .map_err(e)?;
                    Ok(match (name, json) {
                        (Some(n), true) => {
                            format!("{{\"throttle\":{}}}\n", serde_json::Value::from(n))
                        }
                        (None, true) => "{\"throttle\":null}\n".to_string(),
                        (Some(n), false) => format!("{n}\n"),
                        (None, false) => "none\n".to_string(),
                    })
                }
            },
            SharedOp::OutboundInc {
                object,
                binding,
                domain,
                n,
            } => due(objects
                .outbound_inc(object, binding, domain, *n, now)
                .map_err(e)?),
            SharedOp::OutboundConnection {
                binding,
                domain,
                address,
                delta,
            } => {
                let (_, d) = objects
                    .outbound_connection(binding, domain, *address, *delta, now)
                    .map_err(e)?;
                due(d)
            }
            SharedOp::GaugeCacheInit {
                cache,
                max,
                ttl,
                replicate,
            } => {
                let max = usize::try_from(*max).unwrap_or(usize::MAX);
                let ttl = Duration::from_secs(u64::from(*ttl));
                objects
                    .gauge_cache_init(cache, max, ttl, *replicate)
                    .map_err(e)?;
                due(false)
            }
            SharedOp::GaugeCacheAdd { cache, key, delta } => due(objects
                .gauge_cache_add(cache, key, *delta, now)
                .map_err(e)?),
            SharedOp::GaugeCacheShow { cache, key } => {
                number(objects.gauge_cache_get(cache, key, now).map_err(e)?)
            }
            SharedOp::GaugeCacheDelete { cache, key } => {
                due(objects.gauge_cache_remove(cache, key, now).map_err(e)?)
            }
            SharedOp::GaugeCacheList => {
                let caches = objects.gauge_caches();
                Ok(if json {
                    let rows: Vec<serde_json::Value> = caches
                        .iter()
                        .map(|(name, d, entries)| {
                            serde_json::json!({
                                "name": name, "max": d.max, "ttl": d.ttl.as_secs(),
                                "replicated": d.replicated, "entries": entries,
                            })
                        })
                        .collect();
                    format!("{}\n", serde_json::Value::Array(rows))
                } else {
                    let mut out = format!(
                        "{:<24} {:>10} {:>8} {:>10} {:>10}\n",
                        "gauge cache", "max", "ttl", "replicated", "entries"
                    );
                    for (name, d, entries) in &caches {
                        out.push_str(&format!(
                            "{name:<24} {:>10} {:>8} {:>10} {entries:>10}\n",
                            d.max,
                            d.ttl.as_secs(),
                            if d.replicated { "yes" } else { "no" }
                        ));
                    }
                    out
                })
            }
            SharedOp::CacheSet {
                object,
                key,
                value,
                ttl,
            } => due(objects
                .cache_set(object, key, value.as_bytes(), *ttl, now)
                .map_err(e)?),
            SharedOp::CacheGet { object, key } => {
                match objects.cache_get(object, key, now).map_err(e)? {
                    Some(v) if json => Ok(format!(
                        "{}\n",
                        serde_json::json!({ "value": String::from_utf8_lossy(&v) })
                    )),
                    Some(mut v) => {
                        v.push(b'\n');
                        Ok(String::from_utf8_lossy(&v).into_owned())
                    }
                    None => Err(format!(
                        "cache {object:?} has no key {key:?} (absent or expired)"
                    )),
                }
            }
            SharedOp::SeriesAdd {
                object,
                series,
                item,
                n,
            } => due(objects
                .series_add(object, series, series_item(item), *n, now)
                .map_err(e)?),
            SharedOp::SeriesCount {
                object,
                series,
                item,
                local,
            } => {
                let monitor = *objects
                    .settings(object)
                    .map_err(e)?
                    .monitors
                    .first()
                    .ok_or_else(|| format!("object {object:?} has no monitor"))?;
                let last = monitor.windows.saturating_sub(1);
                number(
                    objects
                        .series_count(
                            object,
                            series,
                            &series_item(item),
                            monitor,
                            0,
                            last,
                            view(*local),
                            now,
                        )
                        .map_err(e)?,
                )
            }
        }
    }

    fn reload(&self) -> Result<String, String> {
        let before = self
            .shared
            .status
            .lock()
            .map_err(|_| "status unavailable")?
            .last_reload
            .clone();
        self.shared.request(Request::Reload);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
            let s = self
                .shared
                .status
                .lock()
                .map_err(|_| "status unavailable")?;
            if s.last_reload != before
                || s.last_reload.is_some() && t0.elapsed() > Duration::from_millis(500)
            {
                let text = s.last_reload.clone().unwrap_or_default();
                // A refused reload is an error for scripts too.
                return if text.starts_with("reload refused") {
                    Err(text)
                } else {
                    Ok(format!("{text}\n"))
                };
            }
        }
        Err("the reload did not finish within 5 s".into())
    }

    /// `cluster abort <id>`: a log pull stops (and pauses); a move is undone by moving the
    /// address back once it has arrived (the event loop does it: see `Jobs::settle_moves`).
    fn abort(&self, id: u64) -> Result<String, String> {
        match self.shared.jobs.abort(id)? {
            super::jobs::Aborted::Pull { node } => {
                let t0 = Instant::now();
                while self.shared.jobs.contains(id) && t0.elapsed() < Duration::from_secs(5) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(if self.shared.jobs.contains(id) {
                    format!(
                        "abort of job {id} requested: the pull of {node}'s logs has not stopped yet (see cluster jobs)\n"
                    )
                } else {
                    format!(
                        "aborted job {id}: the pull of {node}'s logs stopped; it resumes in {} s\n",
                        super::jobs::PULL_PAUSE.as_secs()
                    )
                })
            }
            super::jobs::Aborted::Move { ip, from, to } => Ok(format!(
                "abort of job {id} requested: {ip} goes back from {to} to {from} once its move is carried out (see cluster jobs)\n"
            )),
        }
    }

    /// One move and its outcome: `done` once this node's table names `to` as the owner (the
    /// move travels in agreed order and the old owner releases first), `refused: why` when the
    /// node machine refuses it (pinned, unknown node, hand-off in progress, ...), or `requested`
    /// when it is accepted but not carried out within 5 s.
    fn duravip_move(&self, ip: std::net::IpAddr, to: &str) -> Result<String, String> {
        self.move_once(ip, to, true)
    }

    /// Moves `ip` to `to`, waiting up to 5 s for the hand-off; with `as_job`, listed by
    /// `cluster jobs` until the new owner holds it.
    fn move_once(&self, ip: std::net::IpAddr, to: &str, as_job: bool) -> Result<String, String> {
        let from = self
            .shared
            .status
            .lock()
            .ok()
            .and_then(|s| {
                s.duravip
                    .as_ref()
                    .and_then(|d| d.entries.iter().find(|e| e.ip == ip))
                    .and_then(|e| e.owner.clone())
            })
            .unwrap_or_else(|| "nobody".to_owned());
        let (tx, rx) = std::sync::mpsc::channel();
        self.shared.request(Request::DuravipMove {
            ip,
            node: to.to_owned(),
            reply: Some(tx),
        });
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return Err(format!("refused: {ip} to {to}: {why}")),
            Err(_) => return Err(format!("{ip}: the node did not answer within 5 s")),
        }
        let job = as_job.then(|| self.shared.jobs.start_move(ip, &from, to));
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            let owner = self.shared.status.lock().ok().and_then(|s| {
                s.duravip
                    .as_ref()
                    .and_then(|d| d.entries.iter().find(|e| e.ip == ip))
                    .map(|e| (e.owner.clone(), e.handoff))
            });
            if let Some((Some(o), false)) = owner
                && o == to
            {
                if let Some(id) = job {
                    self.shared.jobs.finish(id);
                }
                return Ok(format!("done: {ip} moved to {to}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(match job {
            Some(id) => format!(
                "requested: {ip} to {to} (accepted, not carried out within 5 s; job {id} in cluster jobs)"
            ),
            None => format!(
                "requested: {ip} to {to} (accepted, not carried out within 5 s; see cluster duravip show)"
            ),
        })
    }
}

/// A series item: an address or block when the word is one, else a string key.
fn series_item(word: &str) -> replicate::SeriesItem {
    match cohort_engine::console::shared_ops::parse_net(word) {
        Some(net) => replicate::SeriesItem::Net(net),
        None => replicate::SeriesItem::Text(word.to_owned()),
    }
}

impl ConsoleHandler for NodeConsole {
    fn listen(
        &self,
        group: &str,
        json: bool,
    ) -> Result<Box<dyn crate::console::ListenSource>, String> {
        super::control::listen(&self.shared, group, json)
    }

    /// The hot updates of `cluster shared cidr|gauge incr|decr`: the same calls as
    /// [`NodeConsole::shared_op`], without building the command or the answer.
    fn update(&self, u: &SharedUpdate<'_>, json: bool) -> Result<Cow<'static, str>, String> {
        let objects = self.shared.objects();
        let now = super::shared::wall();
        let due = match *u {
            SharedUpdate::Cidr { object, net, delta } => objects.cidr_add(object, net, delta, now),
            SharedUpdate::Gauge { object, key, delta } => {
                objects.gauge_add(object, key, delta, now)
            }
        }
        .map_err(|e| e.to_string())?;
        Ok(self.updated(due, json))
    }

    fn handle(&self, cmd: &Command, json: bool) -> Result<String, String> {
        match cmd {
            Command::ConfigReload => self.reload(),
            Command::LogAppend { log, text } => self
                .shared
                .log_append(log, text.as_bytes())
                .map(|()| String::new()),
            Command::Cluster(c) => match c {
                ClusterCommand::Info => Ok(render(&self.info()?, json)),
                ClusterCommand::Membership => Ok(render(&self.membership()?, json)),
                ClusterCommand::Nodeaddr => Ok(render(&self.nodeaddr()?, json)),
                ClusterCommand::Counters => Ok(render(&self.counters()?, json)),
                ClusterCommand::ArpShow => Ok(render(&self.arp()?, json)),
                ClusterCommand::ShowLogs => Ok(render(&self.shared.journals.show(), json)),
                ClusterCommand::SharedOp(op) => self.shared_op(op, json),
                ClusterCommand::SharedList => {
                    let r = self
                        .shared
                        .replicator
                        .lock()
                        .map_err(|_| "replication state unavailable")?;
                    Ok(render(&replicate::report::shared_list(&r), json))
                }
                ClusterCommand::SharedShow { object, from } => {
                    let r = self
                        .shared
                        .replicator
                        .lock()
                        .map_err(|_| "replication state unavailable")?;
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    replicate::report::shared_show(&r, object, from.as_deref(), now)
                        .map(|show| render(&show, json))
                        .map_err(|e| e.to_string())
                }
                ClusterCommand::DuravipShow | ClusterCommand::DuravipShowTables => {
                    let st = self
                        .shared
                        .status
                        .lock()
                        .map_err(|_| "status unavailable")?;
                    let Some(dv) = st.duravip.as_ref() else {
                        return Err("DuraVIP state not available yet".into());
                    };
                    let tables = matches!(c, ClusterCommand::DuravipShowTables);
                    Ok(if tables {
                        render(&DuravipTables(dv), json)
                    } else {
                        render(dv, json)
                    })
                }
                ClusterCommand::DuravipDebug { on } => {
                    self.shared.request(Request::DuravipDebug(*on));
                    Ok(format!(
                        "DuraVIP debugging {}\n",
                        if *on { "on" } else { "off" }
                    ))
                }
                ClusterCommand::DuravipAnnounceView => {
                    self.shared.request(Request::DuravipAnnounce);
                    Ok("DuraVIP view announced\n".into())
                }
                ClusterCommand::DuravipReleaseAll => {
                    self.shared.request(Request::DuravipReleaseAll);
                    Ok("releasing all DuraVIPs held by this node\n".into())
                }
                ClusterCommand::DuravipMove { ip, to } => {
                    let outcome = self.duravip_move(*ip, to);
                    outcome.map(|line| format!("{line}\n"))
                }
                ClusterCommand::DuravipMoveNode { from, to } => {
                    let owned: Vec<std::net::IpAddr> = self
                        .shared
                        .status
                        .lock()
                        .ok()
                        .and_then(|s| {
                            s.duravip.as_ref().map(|d| {
                                d.entries
                                    .iter()
                                    .filter(|e| e.owner.as_deref() == Some(from.as_str()))
                                    .map(|e| e.ip)
                                    .collect()
                            })
                        })
                        .unwrap_or_default();
                    if owned.is_empty() {
                        return Err(format!(
                            "refused: {from} owns no DuraVIP in this node's view"
                        ));
                    }
                    let mut out = String::new();
                    let mut refused = false;
                    for ip in owned {
                        match self.duravip_move(ip, to) {
                            Ok(line) => out.push_str(&line),
                            Err(line) => {
                                refused = true;
                                out.push_str(&line);
                            }
                        }
                        out.push('\n');
                    }
                    if refused { Err(out) } else { Ok(out) }
                }
                ClusterCommand::Reset => {
                    self.shared.request(Request::Reset);
                    Ok("cluster membership reset requested\n".into())
                }
                ClusterCommand::Jobs => Ok(render(&self.shared.jobs.list(), json)),
                ClusterCommand::Abort { id } => self.abort(*id),
                other => Err(format!("'{other}' is not available on this node yet")),
            },
            other => Err(format!("'{other}' is not a node command")),
        }
    }
}
