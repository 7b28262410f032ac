//! A named background thread with a stop flag, as the log service and the puller run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// A thread that runs until its stop flag is set; [`Worker::stop`] sets it and joins.
pub struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts `run` on a thread named `name`, handing it the stop flag it must watch.
    pub fn spawn(
        name: &str,
        run: impl FnOnce(Arc<AtomicBool>) + Send + 'static,
    ) -> std::io::Result<Worker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = crate::node::runtime::spawn_daemon_thread(name.to_owned(), move || run(flag))?;
        Ok(Worker {
            stop,
            thread: Some(thread),
        })
    }

    /// Sets the stop flag and waits for the thread to end.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
