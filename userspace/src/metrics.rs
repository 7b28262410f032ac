//! The Prometheus endpoint (Cohort extension): `Metrics_Listener { Listen "ADDR:PORT" {} }`
//! serves `GET /metrics` in the text exposition format (version 0.0.4), from the status the
//! event loop publishes. One thread, one request per connection, bounded reads and writes with
//! timeouts: a slow scraper never touches the loop.
//!
//! Metrics: the view (`cohort_view_members`, `cohort_views_installed_total`), every transport
//! counter as `cohort_*_total` (dropped datagrams by reason as a label), the UDP driver's and the
//! XDP program's counters, DuraVIP (`cohort_duravip_addresses_owned`, and per configured address
//! `cohort_duravip_owned{address}` 1 on its holder), replication (messages and updates in and
//! out, snapshots, dropped, and the lag histogram `cohort_replication_lag_seconds`), the failure
//! detector's view of each peer (round-trip time, suspicion, silence) and its local health, the
//! cluster journals' backlog and lag per subscriber, on a manager the log pull's counters and
//! shipping lag per node, the log service's counters, and uptime.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::node::shared::Shared;

/// Starts serving on `addr`; the thread runs for the life of the process.
pub fn start(shared: Arc<Shared>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    crate::node::priority::spawn_daemon_thread("metrics".into(), move || {
        for conn in listener.incoming() {
            match conn {
                Ok(s) => {
                    if let Err(e) = serve(&shared, s) {
                        tracing::debug!(error = %e, "metrics request failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "metrics listener accept failed"),
            }
        }
    })?;
    Ok(bound)
}

fn serve(shared: &Shared, mut s: TcpStream) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut req = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&req);
    let first = line.lines().next().unwrap_or("");
    let mut parts = first.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = if method == "GET" && (path == "/metrics" || path == "/") {
        (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(shared),
        )
    } else {
        (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "only GET /metrics\n".to_owned(),
        )
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    s.flush()
}

/// Writes one metric family: HELP, TYPE and its samples (`labels` already formatted).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

/// A histogram family: cumulative `_bucket{le}` samples, `_sum` and `_count`.
fn histogram(out: &mut String, name: &str, help: &str, h: &cohort_engine::replicate::LagHistogram) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (le, c) in h.cumulative() {
        let le = if le.is_infinite() {
            "+Inf".to_owned()
        } else {
            le.to_string()
        };
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {c}");
    }
    let _ = writeln!(out, "{name}_sum {}", h.sum_nanos as f64 / 1e9);
    let _ = writeln!(out, "{name}_count {}", h.count);
}

/// One unlabelled counter, `cohort_{name}_total`.
fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    family(
        out,
        &format!("cohort_{name}_total"),
        "counter",
        help,
        &one(v as f64),
    );
}

fn one(v: impl Into<f64>) -> Vec<(String, f64)> {
    vec![(String::new(), v.into())]
}

fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition of this node's state now.
pub fn render(shared: &Shared) -> String {
    let mut out = String::new();
    let Ok(s) = shared.status.lock() else {
        return out;
    };
    let node = label_value(&s.identity.nodename);
    family(
        &mut out,
        "cohort_info",
        "gauge",
        "This node: its name and Cohort's version.",
        &[(
            format!(
                "{{node=\"{node}\",version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        )],
    );
    family(
        &mut out,
        "cohort_uptime_seconds",
        "gauge",
        "Seconds since cohortd started.",
        &one(s.started.elapsed().as_secs_f64()),
    );
    family(
        &mut out,
        "cohort_view_members",
        "gauge",
        "Members of the installed view.",
        &one(s.view.members.len() as f64),
    );
    family(
        &mut out,
        "cohort_view_age_seconds",
        "gauge",
        "Seconds since the view was installed.",
        &one(s.view_installed.elapsed().as_secs_f64()),
    );
    family(
        &mut out,
        "cohort_local_health",
        "gauge",
        "The failure detector's local health score (0 = healthy; each point stretches timeouts).",
        &one(s.local_health),
    );
    let peer = |p: &crate::node::shared::PeerStatus| {
        format!("{{peer=\"{}\"}}", label_value(&p.member.name))
    };
    family(
        &mut out,
        "cohort_peer_rtt_seconds",
        "gauge",
        "Smoothed round-trip time of probes to each view member (RFC 6298 weights).",
        &s.peers
            .iter()
            .filter_map(|p| Some((peer(p), p.rtt.smoothed?.as_secs_f64())))
            .collect::<Vec<_>>(),
    );
    family(
        &mut out,
        "cohort_peer_rtt_last_seconds",
        "gauge",
        "Latest round-trip time of a probe to each view member.",
        &s.peers
            .iter()
            .filter_map(|p| Some((peer(p), p.rtt.last?.as_secs_f64())))
            .collect::<Vec<_>>(),
    );
    family(
        &mut out,
        "cohort_peer_suspected",
        "gauge",
        "1 while the failure detector suspects the view member (silent for the suspicion timeout).",
        &s.peers
            .iter()
            .map(|p| (peer(p), if p.suspected || p.failed { 1.0 } else { 0.0 }))
            .collect::<Vec<_>>(),
    );
    family(
        &mut out,
        "cohort_peer_silence_seconds",
        "gauge",
        "Seconds since each view member was last heard from.",
        &s.peers
            .iter()
            .map(|p| (peer(p), p.silent_for.as_secs_f64()))
            .collect::<Vec<_>>(),
    );
    let c = &s.counters;
    let counters: [(&str, &str, u64); 15] = [
        ("views_installed", "Views installed.", c.views_installed),
        ("datagrams_sent", "Datagrams sent.", c.datagrams_sent),
        ("bytes_sent", "Bytes sent.", c.bytes_sent),
        (
            "datagrams_received",
            "Datagrams received.",
            c.datagrams_received,
        ),
        ("bytes_received", "Bytes received.", c.bytes_received),
        (
            "datagrams_accepted",
            "Datagrams accepted.",
            c.datagrams_accepted,
        ),
        ("messages_sent", "Group messages sent.", c.messages_sent),
        (
            "messages_delivered",
            "Group messages delivered.",
            c.messages_delivered,
        ),
        (
            "retransmissions",
            "Datagrams retransmitted.",
            c.retransmissions,
        ),
        ("nacks_sent", "Retransmission requests sent.", c.nacks_sent),
        (
            "messages_fragmented",
            "Large messages sent in pieces.",
            c.messages_fragmented,
        ),
        (
            "fragments_sent",
            "Pieces of large messages sent.",
            c.fragments_sent,
        ),
        (
            "messages_reassembled",
            "Large messages put back together.",
            c.messages_reassembled,
        ),
        (
            "reassembly_refused",
            "Large messages refused for their size.",
            c.reassembly_refused,
        ),
        (
            "fragments_inconsistent",
            "Large messages dropped for an inconsistent piece.",
            c.fragments_inconsistent,
        ),
    ];
    for (name, help, v) in counters {
        counter(&mut out, name, help, v);
    }
    let drops = [
        ("bad_mac", c.dropped_bad_mac),
        ("undecodable", c.dropped_undecodable),
        ("foreign_cluster", c.dropped_foreign_cluster),
        ("unknown_sender", c.dropped_unknown_sender),
        ("stale_incarnation", c.dropped_stale_incarnation),
        ("replay", c.dropped_replay),
        ("queue_full", c.dropped_queue_full),
    ];
    family(
        &mut out,
        "cohort_datagrams_dropped_total",
        "counter",
        "Datagrams dropped, by reason.",
        &drops
            .iter()
            .map(|(r, v)| (format!("{{reason=\"{r}\"}}"), *v as f64))
            .collect::<Vec<_>>(),
    );
    family(
        &mut out,
        "cohort_io_syscalls_total",
        "counter",
        "System calls of the UDP driver.",
        &one(s.io.syscalls as f64),
    );
    family(
        &mut out,
        "cohort_io_send_errors_total",
        "counter",
        "Datagrams the UDP driver could not send.",
        &one(s.io.send_errors as f64),
    );
    if let Some(x) = &s.xdp {
        family(
            &mut out,
            "cohort_xdp_arp_replied_total",
            "counter",
            "ARP requests the XDP program answered.",
            &one(x.arp_replied as f64),
        );
        family(
            &mut out,
            "cohort_xdp_arp_lease_expired_total",
            "counter",
            "ARP requests dropped because the XDP lease lapsed.",
            &one(x.arp_lease_expired as f64),
        );
        family(
            &mut out,
            "cohort_xdp_ingress_fenced_total",
            "counter",
            "IPv4 and IPv6 packets to an owned DuraVIP dropped because the XDP lease lapsed.",
            &one(x.ingress_fenced as f64),
        );
        family(
            &mut out,
            "cohort_xdp_ndp_replied_total",
            "counter",
            "IPv6 neighbour solicitations the XDP program answered.",
            &one(x.ndp_replied as f64),
        );
        family(
            &mut out,
            "cohort_xdp_ndp_lease_expired_total",
            "counter",
            "IPv6 neighbour solicitations dropped because the XDP lease lapsed.",
            &one(x.ndp_lease_expired as f64),
        );
    }
    if let Some(d) = &s.duravip {
        let owned: Vec<(String, f64)> = d
            .entries
            .iter()
            .map(|e| {
                let mine = e.members.iter().any(|m| m.this_node && m.holds);
                (
                    format!("{{address=\"{}\"}}", e.ip),
                    if mine { 1.0 } else { 0.0 },
                )
            })
            .collect();
        let count = owned.iter().filter(|(_, v)| *v > 0.0).count();
        family(
            &mut out,
            "cohort_duravip_addresses_owned",
            "gauge",
            "DuraVIP addresses this node holds.",
            &one(count as f64),
        );
        family(
            &mut out,
            "cohort_duravip_owned",
            "gauge",
            "1 when this node holds the DuraVIP address.",
            &owned,
        );
        family(
            &mut out,
            "cohort_duravip_view_mature",
            "gauge",
            "1 when the DuraVIP view is mature.",
            &one(if d.view_mature { 1.0 } else { 0.0 }),
        );
        family(
            &mut out,
            "cohort_duravip_fenced",
            "gauge",
            "1 when duravip_quorum = majority fences this node (its view holds no majority).",
            &one(if d.fenced { 1.0 } else { 0.0 }),
        );
    }
    drop(s);
    if let Ok(r) = shared.replicator.lock() {
        let st = r.stats();
        for (name, help, v) in [
            (
                "replication_messages_out",
                "Replication messages sent.",
                st.messages_out,
            ),
            (
                "replication_messages_in",
                "Replication messages applied.",
                st.messages_in,
            ),
            (
                "replication_updates_out",
                "Replicated updates sent.",
                st.updates_out,
            ),
            (
                "replication_updates_in",
                "Replicated updates applied.",
                st.updates_in,
            ),
            (
                "replication_snapshots_out",
                "Snapshots sent.",
                st.snapshots_out,
            ),
            (
                "replication_dropped",
                "Replication messages dropped.",
                st.dropped,
            ),
        ] {
            counter(&mut out, name, help, v);
        }
        histogram(
            &mut out,
            "cohort_replication_lag_seconds",
            "Replication lag of the messages applied here: from the oldest update in a message, \
             on its sender's clock, to its application on this node.",
            &st.lag,
        );
        family(
            &mut out,
            "cohort_replication_outbox_messages",
            "gauge",
            "Replication messages waiting for the transport.",
            &one(r.outbox_len() as f64),
        );
    }
    let log: Vec<(String, f64)> = shared
        .journals
        .counters()
        .into_iter()
        .map(|(k, v)| (format!("{{counter=\"{}\"}}", label_value(&k)), v as f64))
        .collect();
    let backlogs = shared.journals.backlogs();
    let now = crate::node::shared::wall();
    let labels = |log: &str, sub: &str| {
        format!(
            "{{log=\"{}\",subscriber=\"{}\"}}",
            label_value(log),
            label_value(sub)
        )
    };
    family(
        &mut out,
        "cohort_journal_backlog_records",
        "gauge",
        "Records of each cluster journal its subscriber has not read (the manager's subscriber: \
         records not shipped yet).",
        &backlogs
            .iter()
            .map(|(l, sub, b)| (labels(l, sub), b.records as f64))
            .collect::<Vec<_>>(),
    );
    family(
        &mut out,
        "cohort_journal_lag_seconds",
        "gauge",
        "Age of the oldest record of each cluster journal its subscriber has not read (0 when \
         caught up): the log-shipping lag for the manager's subscriber.",
        &backlogs
            .iter()
            .map(|(l, sub, b)| {
                let age = b
                    .oldest
                    .map_or(0.0, |t| now.saturating_sub(t).as_secs_f64());
                (labels(l, sub), age)
            })
            .collect::<Vec<_>>(),
    );
    if let Some(p) = shared.pull_stats.get() {
        use std::sync::atomic::Ordering::Relaxed;
        for (name, help, v) in [
            (
                "logship_records_written",
                "Records the manager's log pull wrote to its log files.",
                p.records_written.load(Relaxed),
            ),
            (
                "logship_records_skipped",
                "Records the manager's log pull had written before (not written twice).",
                p.records_skipped.load(Relaxed),
            ),
            (
                "logship_batches",
                "Batches the manager's log pull made durable and acknowledged.",
                p.batches.load(Relaxed),
            ),
            (
                "logship_connect_failures",
                "Connections to a node's log service that failed.",
                p.connect_failures.load(Relaxed),
            ),
            (
                "logship_auth_failures",
                "Log service handshakes that failed the cluster key.",
                p.auth_failures.load(Relaxed),
            ),
        ] {
            counter(&mut out, name, help, v);
        }
        let lags: Vec<(String, f64, f64)> = p
            .lag
            .lock()
            .map(|l| {
                l.iter()
                    .map(|((node, log), (lag, at))| {
                        (
                            format!(
                                "{{node=\"{}\",log=\"{}\"}}",
                                label_value(node),
                                label_value(log)
                            ),
                            *lag,
                            at.elapsed().as_secs_f64(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        family(
            &mut out,
            "cohort_logship_lag_seconds",
            "gauge",
            "Per node and log, from the append of the last record of the latest batch on the \
             node to that batch being durable at the manager.",
            &lags
                .iter()
                .map(|(l, lag, _)| (l.clone(), *lag))
                .collect::<Vec<_>>(),
        );
        family(
            &mut out,
            "cohort_logship_last_batch_age_seconds",
            "gauge",
            "Per node and log, seconds since the latest batch was made durable (grows while a \
             pull is stalled or paused).",
            &lags
                .iter()
                .map(|(l, _, age)| (l.clone(), *age))
                .collect::<Vec<_>>(),
        );
    }
    family(
        &mut out,
        "cohort_logsvc_events_total",
        "counter",
        "Log service counters (connections, batches, records, refusals).",
        &log,
    );
    out
}
