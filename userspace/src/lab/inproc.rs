//! Nodes run in this process, each on threads that entered one host's network namespace: the
//! application channel (send, deliveries) is then directly at hand for tests and benchmarks. Like
//! the rest of the lab it serves tests and benchmarks only: a failure panics, and the panic is the
//! report.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::node::runtime::{Delivery, Node, Request, Shared};
use cohort_engine::udp::Driver;

use super::Lab;

pub struct InProc {
    pub shared: Arc<Shared>,
    pub deliveries: Receiver<Delivery>,
    pub thread: Option<std::thread::JoinHandle<()>>,
    /// Kernel thread id of the node's event loop (for its CPU time in `/proc/self/task`).
    pub tid: i32,
}

pub fn enter(ns: &str) {
    let file = File::open(format!("/run/netns/{ns}")).expect("netns file");
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// Starts node `i` of `lab` (names node1..), joined to `groups`, with `extra` configuration.
pub fn start(lab: &Lab, i: usize, extra: &str, groups: &[&str]) -> InProc {
    start_with(lab, i, "", extra, groups)
}

/// [`start`] with `cluster_opts` inside the node's `cluster { }` scope.
pub fn start_with(lab: &Lab, i: usize, cluster_opts: &str, extra: &str, groups: &[&str]) -> InProc {
    start_with_msgc(lab, i, cluster_opts, "", extra, groups)
}

/// [`start_with`] with `msgc_opts` inside the node's `msgc_server { }` scope too.
pub fn start_with_msgc(
    lab: &Lab,
    i: usize,
    cluster_opts: &str,
    msgc_opts: &str,
    extra: &str,
    groups: &[&str],
) -> InProc {
    let peers: String = lab
        .hosts
        .iter()
        .enumerate()
        .map(|(j, h)| format!("node{} = \"{}\"\n", j + 1, h.addr))
        .collect();
    let text = format!(
        "cluster {{ nodename = \"node{}\"\n{cluster_opts}\n}}\nmsgc_server {{ peers = [\n{peers}]\n{msgc_opts}\n}}\nControl_Listener {{ }}\n{extra}\n",
        i + 1
    );
    let cfg = cohort_engine::config::load_str(Path::new("inproc.conf"), &text)
        .expect("valid config")
        .config;
    let ns = lab.hosts[i].ns.clone();
    let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        enter(&ns);
        let driver = match cfg.msgc_server.udp_driver {
            cohort_engine::config::UdpDriver::Syscall => Driver::Syscall,
            cohort_engine::config::UdpDriver::Uring => Driver::Uring,
        };
        let node = Node::start(cfg, None, driver, false).expect("node starts");
        let shared = node.shared.clone();
        let deliveries = shared.subscribe(1 << 16);
        for g in groups {
            shared.request(Request::Join(g));
        }
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        tx.send((shared, deliveries, tid)).expect("handover");
        node.run().expect("node runs");
    });
    let (shared, deliveries, tid) = rx.recv().expect("node started");
    InProc {
        shared,
        deliveries,
        thread: Some(thread),
        tid,
    }
}

impl InProc {
    /// A new delivery channel (replacing the one `start` made), for a reader on another thread.
    pub fn subscribe_fresh(&self) -> std::sync::mpsc::Receiver<Delivery> {
        self.shared.subscribe(1 << 16)
    }

    pub fn view_size(&self) -> usize {
        self.shared
            .status
            .lock()
            .map_or(0, |s| s.view.members.len())
    }

    pub fn views_installed(&self) -> u64 {
        self.shared
            .status
            .lock()
            .map_or(0, |s| s.counters.views_installed)
    }

    /// Waits (bounded) for a view of `n` members in which `group` has `n` members too.
    pub fn wait_view(&self, n: usize, group: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self.shared.status.lock().is_ok_and(|s| {
                s.view.members.len() == n && s.groups.get(group).is_some_and(|m| m.len() == n)
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no view of {n} with group {group}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(mut self) {
        self.shared.request(Request::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
