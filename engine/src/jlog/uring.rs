//! Positioned appends through io_uring: the record write and, with `sync_appends`, the fdatasync
//! that must follow it are submitted together and completed with a single `io_uring_enter`.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;

use io_uring::{IoUring, opcode, squeue, types};

/// A small ring owned by one writer.
pub struct UringAppender {
    ring: IoUring,
}

impl std::fmt::Debug for UringAppender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UringAppender")
    }
}

impl UringAppender {
    /// Sets up a ring; fails where io_uring is unavailable (old kernel, seccomp, sysctl).
    pub fn new() -> io::Result<UringAppender> {
        Ok(UringAppender {
            ring: IoUring::new(8)?,
        })
    }

    /// Writes all of `bufs` at `offset` of `fd`, then fdatasyncs when `sync`. Returns the number
    /// of bytes the ring wrote (the caller completes a short write with plain `pwrite`).
    pub fn write_at(
        &mut self,
        fd: RawFd,
        bufs: &[IoSlice<'_>],
        offset: u64,
        sync: bool,
    ) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let iovcnt =
            u32::try_from(bufs.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let write = opcode::Writev::new(types::Fd(fd), bufs.as_ptr().cast::<libc::iovec>(), iovcnt)
            .offset(offset)
            .build()
            .user_data(1);
        let write = if sync {
            write.flags(squeue::Flags::IO_LINK)
        } else {
            write
        };
        let fsync = opcode::Fsync::new(types::Fd(fd))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(2);
        let n = if sync { 2 } else { 1 };
        // SAFETY: the iovecs and the buffers they point to outlive the submission, because this
        // function waits for every completion before returning.
        unsafe {
            let mut sq = self.ring.submission();
            sq.push(&write)
                .map_err(|_| io::Error::other("submission queue full"))?;
            if sync {
                sq.push(&fsync)
                    .map_err(|_| io::Error::other("submission queue full"))?;
            }
        }
        self.ring.submit_and_wait(n)?;
        let mut written = 0usize;
        let mut sync_res = 0i32;
        let mut seen = 0;
        while seen < n {
            let next = self.ring.completion().next();
            let cqe = match next {
                Some(c) => c,
                None => {
                    self.ring.submit_and_wait(1)?;
                    continue;
                }
            };
            seen += 1;
            match cqe.user_data() {
                1 if cqe.result() < 0 => return Err(io::Error::from_raw_os_error(-cqe.result())),
                1 => written = cqe.result() as usize,
                _ => sync_res = cqe.result(),
            }
        }
        // A short write cancels the linked fsync (-ECANCELED): the caller finishes and syncs.
        if sync && written == total && sync_res < 0 {
            return Err(io::Error::from_raw_os_error(-sync_res));
        }
        Ok(written)
    }
}
