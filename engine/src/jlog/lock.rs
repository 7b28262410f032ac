//! Files shared with the real jlog through POSIX record locks.
//!
//! jlog serialises writers and index builders with `fcntl(F_SETLKW)` write locks over a whole file
//! (never `flock`, which does not conflict with fcntl locks on Linux). POSIX locks belong to the
//! process and are all dropped when *any* descriptor of the file is closed, so, like jlog, this
//! module keeps one descriptor per file per process (keyed by device and inode) and pairs the
//! fcntl lock with an in-process mutex so that threads of one process exclude each other too.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};

use super::error::{JlogError, Result, io_err};

/// One open descriptor of a journal file, shared by everything in this process that uses the file.
#[derive(Debug)]
pub struct SharedFile {
    /// Closed in `Drop` while the registry is locked (see there).
    file: ManuallyDrop<File>,
    path: PathBuf,
    key: (u64, u64),
    /// Whether a thread of this process holds the lock; with `freed`, the in-process half of
    /// the lock. (A plain flag rather than a `MutexGuard` so that a writer can hold the lock
    /// across calls.)
    held: Mutex<bool>,
    freed: Condvar,
}

type Registry = Mutex<HashMap<(u64, u64), Weak<SharedFile>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock_registry() -> MutexGuard<'static, HashMap<(u64, u64), Weak<SharedFile>>> {
    // A panic while holding the registry leaves the map itself consistent (inserts and removes are
    // single operations), so a poisoned lock can be used as is.
    registry().lock().unwrap_or_else(|p| p.into_inner())
}

/// How [`SharedFile::open`] treats a missing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Fail with `NotFound` when the file does not exist.
    No,
    /// Create it (mode 0640 less the umask) when missing, like jlog's `O_CREAT`.
    IfMissing,
    /// Create it and fail if it exists (`O_CREAT|O_EXCL`).
    New,
}

impl SharedFile {
    /// Opens `path` read-write (jlog opens everything `O_RDWR`, readers included), reusing this
    /// process's descriptor when the file is already open.
    pub fn open(path: &Path, create: Create, mode: u32) -> Result<Arc<SharedFile>> {
        // Look up by stat *before* opening: opening a second descriptor and closing it would drop
        // the locks another part of this process holds through the first one.
        if create != Create::New
            && let Ok(meta) = std::fs::metadata(path)
        {
            let key = (meta.dev(), meta.ino());
            if let Some(found) = lock_registry().get(&key).and_then(Weak::upgrade) {
                return Ok(found);
            }
        }
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).mode(mode);
        match create {
            Create::No => {}
            Create::IfMissing => {
                opts.create(true);
            }
            Create::New => {
                opts.create_new(true);
            }
        }
        let file = opts.open(path).map_err(|e| io_err(path, "open", e))?;
        let meta = file.metadata().map_err(|e| io_err(path, "fstat", e))?;
        let key = (meta.dev(), meta.ino());
        let mut reg = lock_registry();
        if let Some(found) = reg.get(&key).and_then(Weak::upgrade) {
            // Raced with another thread that opened the same inode: keep ours alive for the whole
            // process lifetime instead of closing it, which would drop that thread's locks.
            std::mem::forget(file);
            return Ok(found);
        }
        let shared = Arc::new(SharedFile {
            file: ManuallyDrop::new(file),
            path: path.to_path_buf(),
            key,
            held: Mutex::new(false),
            freed: Condvar::new(),
        });
        reg.insert(key, Arc::downgrade(&shared));
        reg.retain(|_, w| w.strong_count() > 0);
        Ok(shared)
    }

    /// The path this file was opened under.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor, for positioned I/O.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Current length of the file.
    pub fn size(&self) -> Result<u64> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| io_err(&self.path, "fstat", e))
    }

    /// Reads exactly `buf.len()` bytes at `offset`; a short file is a [`JlogError::Corrupt`].
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.file.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                super::error::corrupt(&self.path, offset, format!("{} bytes expected", buf.len()))
            } else {
                io_err(&self.path, "pread", e)
            }
        })
    }

    /// Writes all of `buf` at `offset`.
    pub fn write_all_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| io_err(&self.path, "pwrite", e))
    }

    /// Truncates or extends the file to `len` bytes.
    pub fn set_len(&self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| io_err(&self.path, "ftruncate", e))
    }

    /// `fdatasync`: the file's data is on stable storage when this returns.
    pub fn sync_data(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| io_err(&self.path, "fdatasync", e))
    }

    /// Takes the in-process lock and then the exclusive fcntl lock over the whole file, waiting
    /// for both; the guard releases them in reverse order.
    pub fn lock(&self) -> Result<FileLock<'_>> {
        self.acquire()?;
        Ok(FileLock { file: self })
    }

    /// [`lock`](Self::lock) without a guard, for a holder that keeps the lock across calls; it
    /// must call [`release`](Self::release) exactly once afterwards.
    pub fn acquire(&self) -> Result<()> {
        {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            while *held {
                held = self.freed.wait(held).unwrap_or_else(|p| p.into_inner());
            }
            *held = true;
        }
        if let Err(e) = fcntl_lock(&self.file, libc::F_WRLCK as libc::c_short) {
            self.release_local();
            return Err(io_err(&self.path, "fcntl(F_SETLKW)", e));
        }
        Ok(())
    }

    /// Releases a lock taken with [`acquire`](Self::acquire).
    pub fn release(&self) {
        if let Err(e) = fcntl_lock(&self.file, libc::F_UNLCK as libc::c_short) {
            // Unlocking a valid descriptor cannot fail on Linux; if it somehow did, the lock
            // goes away when the descriptor closes.
            tracing::warn!(path = %self.path.display(), error = %e, "fcntl unlock failed");
        }
        self.release_local();
    }

    fn release_local(&self) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.freed.notify_one();
    }
}

impl Drop for SharedFile {
    fn drop(&mut self) {
        // Close while holding the registry: a thread opening the same file meanwhile cannot
        // register (and so cannot lock through) a new descriptor before this close, which drops
        // every POSIX lock the process holds on the file.
        let mut reg = lock_registry();
        if reg.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
            reg.remove(&self.key);
        }
        // SAFETY: `file` is never used again; this is the only place it is dropped.
        unsafe { ManuallyDrop::drop(&mut self.file) };
    }
}

fn fcntl_lock(file: &File, kind: libc::c_short) -> io::Result<()> {
    // SAFETY: flock is a plain C struct for which all-zero bytes are a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    loop {
        // SAFETY: the descriptor is open for the lifetime of `file` and `fl` is a valid flock.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLKW, &fl) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
            _ => return Err(err),
        }
    }
}

/// An exclusive lock on a whole journal file, held by this thread and (through fcntl) this process.
#[derive(Debug)]
pub struct FileLock<'a> {
    file: &'a SharedFile,
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        self.file.release();
    }
}

/// Error for a missing file, used by callers that treat absence specially.
pub fn is_not_found(err: &JlogError) -> bool {
    matches!(err, JlogError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
}
