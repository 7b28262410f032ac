//! SIGTERM/SIGINT (leave gracefully) and SIGHUP (reload), turned into flags the event loop reads
//! after the driver's waker ends its wait.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cohort_engine::udp::Waker;

/// What the signal handlers have asked for since the last look.
#[derive(Clone, Default)]
pub struct SignalFlags {
    terminate: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

impl SignalFlags {
    /// Installs the handlers; each sets its flag and wakes the loop.
    pub fn install(waker: &Waker) -> io::Result<SignalFlags> {
        let flags = SignalFlags::default();
        for (sig, flag) in [
            (signal_hook::consts::SIGTERM, flags.terminate.clone()),
            (signal_hook::consts::SIGINT, flags.terminate.clone()),
            (signal_hook::consts::SIGHUP, flags.reload.clone()),
        ] {
            let w = waker.clone();
            // SAFETY: the handler only stores an atomic and calls write(2) on an eventfd, both
            // async-signal-safe.
            unsafe {
                signal_hook::low_level::register(sig, move || {
                    flag.store(true, Ordering::SeqCst);
                    let _ = w.wake();
                })?;
            }
        }
        Ok(flags)
    }

    /// Whether a terminate signal has arrived (stays set).
    pub fn terminate_requested(&self) -> bool {
        self.terminate.load(Ordering::SeqCst)
    }

    /// Whether a reload was requested since the last call (clears it).
    pub fn take_reload(&self) -> bool {
        self.reload.swap(false, Ordering::SeqCst)
    }

    /// Requests termination from inside the process (console `shutdown`).
    pub fn request_terminate(&self) {
        self.terminate.store(true, Ordering::SeqCst);
    }

    /// Requests a reload from inside the process (console `config reload`).
    pub fn request_reload(&self) {
        self.reload.store(true, Ordering::SeqCst);
    }
}
