//! An eventfd that ends a driver's wait from another thread (console commands, signals).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Cloneable handle; [`Waker::wake`] makes the driver's current or next wait return.
///
/// Wakes between two drains cost one system call: a console thread that makes a batch due
/// with every update it applies wakes the driver once, not once per update.
#[derive(Clone, Debug)]
pub struct Waker(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    fd: OwnedFd,
    /// Set by the wake that writes the eventfd; cleared by [`Waker::drain`] after it has read
    /// the eventfd. While it is set, the driver has a wake-up coming or is awake and has not
    /// yet looked at the work, so a further wake has nothing to add.
    signalled: AtomicBool,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        // SAFETY: eventfd has no memory-safety preconditions; the result is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker(Arc::new(Inner {
            fd,
            signalled: AtomicBool::new(false),
        })))
    }

    /// Makes the driver's current or next wait return. Call it after the change the driver
    /// must see (a batch made due, a request queued).
    pub fn wake(&self) -> io::Result<()> {
        if self.0.signalled.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        let n = unsafe { libc::write(self.fd(), (&one as *const u64).cast(), 8) };
        if n == 8 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        // EAGAIN: the counter is saturated, which already means "wake up".
        if e.kind() == io::ErrorKind::WouldBlock {
            Ok(())
        } else {
            Err(e)
        }
    }

    /// Clears pending wake-ups; returns whether there was one. The driver calls it when its
    /// wait returns and looks at the work only afterwards, so a wake that found the flag set
    /// (and made no system call) is seen: its change came before the flag was cleared here.
    pub fn drain(&self) -> bool {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from an eventfd we own.
        let n = unsafe { libc::read(self.fd(), (&mut v as *mut u64).cast(), 8) };
        // After the read: a wake between the read and this swap is covered by the driver
        // looking at the work next; a wake after it writes the eventfd again. A swap rather
        // than a store: it reads the flag written by the skipped wakes' swaps, so their changes
        // happen before the driver's look at the work.
        self.0.signalled.swap(false, Ordering::AcqRel);
        n == 8 && v > 0
    }

    pub fn fd(&self) -> RawFd {
        self.0.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn readable(w: &Waker, ms: i32) -> bool {
        let mut fds = [libc::pollfd {
            fd: w.fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: fds is a live array of one pollfd.
        unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) == 1 }
    }

    #[test]
    fn wakes_between_drains_are_one() {
        let w = Waker::new().unwrap();
        assert!(!w.drain());
        w.wake().unwrap();
        w.wake().unwrap();
        assert!(readable(&w, 0));
        assert!(w.drain());
        assert!(!readable(&w, 0));
        assert!(!w.drain());
        w.clone().wake().unwrap();
        assert!(readable(&w, 0), "a wake after the drain signals again");
        assert!(w.drain());
    }

    /// A driver that waits, drains and then looks at the work sees every change however the
    /// wakes interleave with its drains: it never sleeps with work waiting.
    #[test]
    fn no_change_is_missed() {
        let w = Waker::new().unwrap();
        let work = Arc::new(AtomicU64::new(0));
        const N: u64 = 200_000;
        let producer = {
            let (w, work) = (w.clone(), work.clone());
            std::thread::spawn(move || {
                for _ in 0..N {
                    work.fetch_add(1, Ordering::SeqCst);
                    w.wake().unwrap();
                }
            })
        };
        let mut seen = 0;
        while seen < N {
            // A missed wake leaves work waiting with nothing to end this wait: 10 s of it
            // fails the test.
            let woke = readable(&w, 10_000);
            w.drain();
            let now = work.load(Ordering::SeqCst);
            assert!(
                woke || now == seen,
                "slept through work: {seen} seen, {now} done"
            );
            seen = now;
        }
        producer.join().unwrap();
    }
}
