//! The event loop's scheduling priority (`msgc_server { loop_nice }`) and the daemon threads that
//! must not inherit it.

/// The nice value the process started with, once [`set_thread_nice`] has changed the calling
/// thread's (`i32::MIN` before).
static BASE_NICE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(i32::MIN);

fn own_tid() -> libc::id_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as libc::id_t }
}

/// The calling thread's nice value.
fn thread_nice() -> std::io::Result<i32> {
    // SAFETY: errno is thread-local; getpriority has no memory-safety preconditions. -1 is a
    // valid nice value, so errno tells an error apart.
    unsafe {
        *libc::__errno_location() = 0;
        let p = libc::getpriority(libc::PRIO_PROCESS, own_tid());
        if p == -1 && *libc::__errno_location() != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(p)
    }
}

/// Gives the calling thread (the event loop) nice value `nice` (`msgc_server { loop_nice }`):
/// the loop carries the failure detector and every node's replication, so under CPU load it
/// should not wait behind application threads (corosync runs its loop at real-time priority for
/// the same reason). A negative value needs CAP_SYS_NICE: `cohortd` calls this on its main
/// thread, which later runs the loop, before it drops its capabilities, and every thread it
/// starts afterwards goes back to the process's own value ([`default_thread_nice`]). Without
/// the privilege it says so once and runs as it is. Setting the value a thread already has
/// always succeeds.
pub fn set_thread_nice(nice: i32) {
    if nice == 0 {
        return;
    }
    if let Ok(before) = thread_nice() {
        if before == nice {
            return;
        }
        let _ = BASE_NICE.compare_exchange(
            i32::MIN,
            before,
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
        );
    }
    // SAFETY: setpriority has no memory-safety preconditions.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, own_tid(), nice) };
    if r == 0 {
        tracing::info!(nice, "event loop priority set");
    } else {
        let e = std::io::Error::last_os_error();
        tracing::warn!(nice, error = %e, "cannot set the event loop's priority (loop_nice); it runs at the default");
    }
}

/// Starts a daemon thread named `name` (the console, the control worker, the log service) at
/// the process's own priority: a thread inherits its creator's nice value, and the threads
/// `cohortd` starts come from the event loop's thread, raised by [`set_thread_nice`].
pub fn spawn_daemon_thread<T: Send + 'static>(
    name: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new().name(name).spawn(move || {
        default_thread_nice();
        f()
    })
}

/// Puts the calling thread back to the nice value the process started with, when
/// [`set_thread_nice`] raised the thread that started it (a daemon thread other than the loop:
/// the console, the control worker, the log service). Raising a nice value needs no privilege.
fn default_thread_nice() {
    let base = BASE_NICE.load(std::sync::atomic::Ordering::SeqCst);
    if base == i32::MIN || thread_nice().is_ok_and(|n| n == base) {
        return;
    }
    // SAFETY: setpriority has no memory-safety preconditions.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, own_tid(), base) } != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(error = %e, "cannot put a daemon thread back to the default priority");
    }
}
