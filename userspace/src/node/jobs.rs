//! Jobs: work of this node that runs on after the command or event that started it, listed by
//! `cluster jobs` with an id that `cluster abort <id>` takes (Momentum's eccmgr jobs). Two kinds:
//!
//! - a **log pull** on a manager: the pull of one node's journals, for as long as that node is in
//!   the view. Aborting it closes the connection; the manager does not pull that node again for
//!   [`PULL_PAUSE`], and what was not
//!   acknowledged is pulled again then, exactly once as always;
//! - a **DuraVIP move** (`cluster duravip move`), from the moment the cluster accepted it until the
//!   new owner holds the address alone. Aborting it moves the address back to the node it came
//!   from once it has arrived (a move like any other, made by the event loop: the job ends when the
//!   address is back, or when that move is refused or its node is gone).
//!
//! The registry is shared by the console threads, the manager's pull threads and the event loop;
//! finished jobs leave it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cohort_engine::console::status::{JobInfo, Jobs as JobList};
use cohort_engine::duravip;

/// How long an aborted log pull stays stopped before the manager pulls that node again.
pub const PULL_PAUSE: Duration = Duration::from_secs(60);

#[derive(Debug)]
enum Kind {
    LogPull {
        node: String,
    },
    DuravipMove {
        ip: IpAddr,
        from: String,
        to: String,
        /// `cluster abort`: the move back to `from` was sent (it is listed until carried out).
        back_sent: bool,
    },
}

#[derive(Debug)]
struct Entry {
    kind: Kind,
    started: Instant,
    /// Records written so far (log pulls).
    progress: Arc<AtomicU64>,
    abort: Arc<AtomicBool>,
}

/// The node's running jobs.
#[derive(Debug, Default)]
pub struct Jobs {
    next: AtomicU64,
    list: Mutex<BTreeMap<u64, Entry>>,
}

/// A log pull's registration: it leaves the registry when dropped.
#[derive(Debug)]
pub struct PullJob {
    jobs: Arc<Jobs>,
    id: u64,
    progress: Arc<AtomicU64>,
    abort: Arc<AtomicBool>,
}

impl PullJob {
    /// The job's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether `cluster abort` asked this pull to stop.
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// `n` more records written.
    pub fn add_records(&self, n: u64) {
        self.progress.fetch_add(n, Ordering::Relaxed);
    }
}

impl Drop for PullJob {
    fn drop(&mut self) {
        if let Ok(mut l) = self.jobs.list.lock() {
            l.remove(&self.id);
        }
    }
}

/// What `cluster abort` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Aborted {
    /// A log pull was told to stop.
    Pull { node: String },
    /// A move is to be undone: the caller moves `ip` back to `from`.
    Move {
        ip: IpAddr,
        from: String,
        to: String,
    },
}

impl Jobs {
    fn insert(&self, kind: Kind) -> (u64, Arc<AtomicU64>, Arc<AtomicBool>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (progress, abort) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        if let Ok(mut l) = self.list.lock() {
            l.insert(
                id,
                Entry {
                    kind,
                    started: Instant::now(),
                    progress: progress.clone(),
                    abort: abort.clone(),
                },
            );
        }
        (id, progress, abort)
    }

    /// A manager starts pulling `node`'s logs.
    pub fn start_pull(self: &Arc<Self>, node: &str) -> PullJob {
        let (id, progress, abort) = self.insert(Kind::LogPull {
            node: node.to_owned(),
        });
        PullJob {
            jobs: self.clone(),
            id,
            progress,
            abort,
        }
    }

    /// The cluster accepted moving `ip` from `from` to `to`; returns the job's id.
    pub fn start_move(&self, ip: IpAddr, from: &str, to: &str) -> u64 {
        self.insert(Kind::DuravipMove {
            ip,
            from: from.to_owned(),
            to: to.to_owned(),
            back_sent: false,
        })
        .0
    }

    /// Follows the move jobs in `status` (the event loop calls it with each fresh status): a move
    /// ends once its target holds the address with no hand-off under way, or when the address or
    /// the target left this node's view; an aborted move that has arrived is sent back (returned
    /// as `(ip, node)` moves for the caller to make, once each) and ends when it is back.
    pub fn settle_moves(&self, status: &duravip::Status) -> Vec<(IpAddr, String)> {
        self.settle(|ip, node| {
            let entry = status.entries.iter().find(|x| x.ip == ip)?;
            let present = entry.members.iter().any(|m| m.name == node);
            let at = entry.owner.as_deref() == Some(node) && !entry.handoff;
            present.then_some(at)
        })
    }

    /// `state(ip, node)`: `None` when `node` can no longer get `ip`, else whether it holds it
    /// with the hand-off finished.
    fn settle(&self, state: impl Fn(IpAddr, &str) -> Option<bool>) -> Vec<(IpAddr, String)> {
        let mut back = Vec::new();
        let Ok(mut l) = self.list.lock() else {
            return back;
        };
        l.retain(|_, e| {
            let aborted = e.abort.load(Ordering::Relaxed);
            let Kind::DuravipMove {
                ip,
                from,
                to,
                back_sent,
            } = &mut e.kind
            else {
                return true;
            };
            if *back_sent {
                return state(*ip, from) == Some(false);
            }
            match state(*ip, to) {
                None => false,
                Some(false) => true,
                Some(true) if aborted => {
                    *back_sent = true;
                    back.push((*ip, from.clone()));
                    true
                }
                Some(true) => false,
            }
        });
        back
    }

    /// A move back that was refused: the job ends.
    pub fn move_back_refused(&self, ip: IpAddr) {
        if let Ok(mut l) = self.list.lock() {
            l.retain(|_, e| {
                !matches!(&e.kind, Kind::DuravipMove { ip: x, back_sent: true, .. } if *x == ip)
            });
        }
    }

    /// `cluster abort <id>`.
    pub fn abort(&self, id: u64) -> Result<Aborted, String> {
        let l = self
            .list
            .lock()
            .map_err(|_| "the job list is poisoned".to_owned())?;
        let Some(e) = l.get(&id) else {
            return Err(format!("no job with id {id} is running on this node"));
        };
        match &e.kind {
            Kind::LogPull { node } => {
                e.abort.store(true, Ordering::Relaxed);
                Ok(Aborted::Pull { node: node.clone() })
            }
            Kind::DuravipMove { ip, from, to, .. } => {
                e.abort.store(true, Ordering::Relaxed);
                Ok(Aborted::Move {
                    ip: *ip,
                    from: from.clone(),
                    to: to.clone(),
                })
            }
        }
    }

    /// Job `id` is over.
    pub fn finish(&self, id: u64) {
        if let Ok(mut l) = self.list.lock() {
            l.remove(&id);
        }
    }

    /// Whether job `id` is still listed.
    pub fn contains(&self, id: u64) -> bool {
        self.list.lock().is_ok_and(|l| l.contains_key(&id))
    }

    /// `cluster jobs`.
    pub fn list(&self) -> JobList {
        let Ok(l) = self.list.lock() else {
            return JobList::default();
        };
        let jobs = l
            .iter()
            .map(|(id, e)| {
                let (kind, what) = match &e.kind {
                    Kind::LogPull { node } => (
                        "log pull",
                        format!(
                            "pulling the logs of {node}: {} records written",
                            e.progress.load(Ordering::Relaxed)
                        ),
                    ),
                    Kind::DuravipMove {
                        ip,
                        from,
                        to,
                        back_sent,
                    } => (
                        "duravip move",
                        if *back_sent {
                            format!("{ip} from {from} to {to}, aborted: moving back to {from}")
                        } else {
                            format!("{ip} from {from} to {to}")
                        },
                    ),
                };
                JobInfo {
                    id: *id,
                    kind: kind.to_owned(),
                    what,
                    running_secs: e.started.elapsed().as_secs_f64(),
                    aborting: e.abort.load(Ordering::Relaxed),
                }
            })
            .collect();
        JobList { jobs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulls_and_moves_are_listed_aborted_and_leave() {
        let jobs = Arc::new(Jobs::default());
        let pull = jobs.start_pull("node2");
        pull.add_records(5);
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        let mv = jobs.start_move(ip, "node1", "node3");
        let list = jobs.list();
        assert_eq!(list.jobs.len(), 2);
        assert_eq!(list.jobs[0].id, pull.id());
        assert!(list.jobs[0].what.contains("node2: 5 records"), "{list:?}");
        assert_eq!(list.jobs[1].what, "10.0.0.5 from node1 to node3");
        assert_eq!(
            jobs.abort(pull.id()),
            Ok(Aborted::Pull {
                node: "node2".into()
            })
        );
        assert!(pull.aborted());
        assert!(jobs.list().jobs[0].aborting, "listed until the pull stops");
        drop(pull);
        assert_eq!(
            jobs.abort(mv),
            Ok(Aborted::Move {
                ip,
                from: "node1".into(),
                to: "node3".into()
            })
        );
        assert!(jobs.list().jobs[0].aborting, "listed until it is back");
    }

    #[test]
    fn moves_end_when_carried_out_or_impossible() {
        let jobs = Jobs::default();
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let a = jobs.start_move(ip(1), "node1", "node2");
        let b = jobs.start_move(ip(2), "node1", "node2");
        let c = jobs.start_move(ip(3), "node1", "node3");
        let pull = Arc::new(Jobs::default());
        let _p = pull.start_pull("node2");
        // 1: still handing off; 2: arrived; 3: gone from the table.
        let back = jobs.settle(|at, _| match at {
            x if x == ip(1) => Some(false),
            x if x == ip(2) => Some(true),
            _ => None,
        });
        assert!(back.is_empty());
        assert!(jobs.contains(a) && !jobs.contains(b) && !jobs.contains(c));
        assert!(pull.settle(|_, _| None).is_empty());
        assert_eq!(pull.list().jobs.len(), 1, "pulls are not moves");
        // An aborted move: sent back once it has arrived, listed until it is back.
        jobs.abort(a).expect("listed");
        let at_target = |_: IpAddr, node: &str| Some(node == "node2");
        assert_eq!(jobs.settle(at_target), vec![(ip(1), "node1".to_owned())]);
        assert!(jobs.settle(at_target).is_empty(), "sent back once");
        assert!(jobs.list().jobs[0].what.ends_with("moving back to node1"));
        assert!(jobs.contains(a));
        jobs.settle(|_, node| Some(node == "node1"));
        assert!(!jobs.contains(a), "back where it was");
        // A refused move back ends the job.
        let d = jobs.start_move(ip(4), "node1", "node2");
        jobs.abort(d).expect("listed");
        jobs.settle(at_target);
        jobs.move_back_refused(ip(4));
        assert!(!jobs.contains(d));
    }
}
