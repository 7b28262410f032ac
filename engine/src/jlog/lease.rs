//! A writer's hold on its segment's fcntl lock between appends, and the reaper thread that gives
//! the lock back once the writer has been idle for the hold time.
//!
//! Keeping the lock across appends makes each append a single `pwritev` (the size is known while
//! the lock is held). Without the reaper, a writer that appends once and then waits for input
//! would block every other writer (a jlog C program included) until its next call; the reaper
//! bounds that wait to about the hold time. Every writer operation runs inside [`LeaseShared::enter`],
//! so the reaper never releases the lock in the middle of an append.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::lock::SharedFile;

struct State {
    /// The segment whose lock the writer holds, if any.
    holding: Option<Arc<SharedFile>>,
    last_use: Instant,
    /// The reaper released the lock since the writer last looked.
    reaped: bool,
    shutdown: bool,
}

/// State shared by a writer and its reaper.
pub struct LeaseShared {
    st: Mutex<State>,
    cv: Condvar,
    idle: Duration,
}

impl LeaseShared {
    /// Starts the bookkeeping, and the reaper thread when `idle` is not zero (with a zero hold
    /// the writer releases the lock after every operation itself).
    pub fn start(idle: Duration) -> (Arc<LeaseShared>, Option<JoinHandle<()>>) {
        let shared = Arc::new(LeaseShared {
            st: Mutex::new(State {
                holding: None,
                last_use: Instant::now(),
                reaped: false,
                shutdown: false,
            }),
            cv: Condvar::new(),
            idle,
        });
        let reaper = (!idle.is_zero()).then(|| {
            let s = shared.clone();
            std::thread::Builder::new()
                .name("jlog-lease".into())
                .spawn(move || s.reap())
                .ok()
        });
        (shared, reaper.flatten())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic (plain field writes), so poison is ignored.
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reap(&self) {
        let mut st = self.lock();
        loop {
            if st.shutdown {
                return;
            }
            let Some(seg) = st.holding.clone() else {
                st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            };
            let deadline = st.last_use + self.idle;
            let now = Instant::now();
            if now >= deadline {
                seg.release();
                st.holding = None;
                st.reaped = true;
            } else {
                st = self
                    .cv
                    .wait_timeout(st, deadline - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
    }

    /// Begins a writer operation: excludes the reaper until [`LeaseGuard::leave`].
    pub fn enter(&self) -> LeaseGuard<'_> {
        LeaseGuard {
            st: self.lock(),
            shared: self,
        }
    }

    /// Stops the reaper (the writer has released the lock itself).
    pub fn shutdown(&self) {
        self.lock().shutdown = true;
        self.cv.notify_all();
    }
}

/// A writer operation in progress.
pub struct LeaseGuard<'a> {
    st: MutexGuard<'a, State>,
    shared: &'a LeaseShared,
}

impl LeaseGuard<'_> {
    /// Whether the reaper released the lock since the last operation (the writer must then
    /// forget what it knew while holding it).
    pub fn take_reaped(&mut self) -> bool {
        std::mem::take(&mut self.st.reaped)
    }

    /// Ends the operation, recording which segment's lock the writer now holds.
    pub fn leave(mut self, holding: Option<Arc<SharedFile>>) {
        let wake = self.st.holding.is_none() && holding.is_some();
        self.st.holding = holding;
        self.st.last_use = Instant::now();
        drop(self.st);
        if wake {
            self.shared.cv.notify_one();
        }
    }
}
