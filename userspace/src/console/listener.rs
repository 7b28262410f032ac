//! The console's listening sockets, bound exactly where `Control_Listener` says.
//!
//! A Unix socket is created with mode 0660 (owner and group may connect) without ever existing
//! under its final name with another mode: it is bound under a temporary name in the same
//! directory, chmod-ed, then hard-linked to the configured path, which fails if the path exists.
//! A socket file already at the path is removed only when nobody answers on it (a daemon that
//! crashed left it); a live console there makes start-up fail, and a file that is not a socket is
//! never touched. On drop the file is removed, but only if it is still the one this process
//! created (same device and inode).
//!
//! A TCP listener binds the configured address; `*:port` binds every address (IPv6 and, through
//! the dual-stack socket, IPv4; plain IPv4 where the host has no IPv6). The embedded default
//! configuration listens only on the Unix socket `/tmp/2025`, and Momentum's documented TCP
//! listener is loopback (`127.0.0.1:2025`): the console has no authentication, so an address
//! reachable from the network gives anyone there the console.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use cohort_engine::config::ListenAddr;

use super::stream::Stream;

/// The mode of the console's Unix socket file.
pub const SOCKET_MODE: u32 = 0o660;

/// Why a console address could not be listened on; each names the address.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("console socket {path}: a console is already listening there (another cohortd?)")]
    InUse { path: PathBuf },
    #[error("console socket {path}: the path exists and is not a socket; not removing it")]
    NotASocket { path: PathBuf },
    #[error("console socket {path}: cannot check the existing socket: {source}")]
    Probe { path: PathBuf, source: io::Error },
    #[error("console socket {path}: cannot remove the stale socket: {source}")]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error("console socket {path}: {action}: {source}")]
    Unix {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("console TCP address {addr}: cannot listen: {source}")]
    Tcp { addr: String, source: io::Error },
}

/// Where a console listener actually listens (a TCP port 0 resolved to the port the kernel chose).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BoundAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl fmt::Display for BoundAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundAddr::Unix(p) => write!(f, "{}", p.display()),
            BoundAddr::Tcp(a) => write!(f, "{a}"),
        }
    }
}

/// The Unix socket file this process created; removed on drop if it is still ours.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove console socket");
                }
            }
            Ok(_) => tracing::warn!(
                path = %self.path.display(),
                "console socket was replaced by another process; leaving it"
            ),
            Err(_) => {}
        }
    }
}

/// A listening console socket. A Unix listener owns its socket file: dropping the listener
/// removes the file if it is still the one it created.
#[derive(Debug)]
pub(crate) enum Listener {
    Unix {
        listener: UnixListener,
        file: SocketFile,
    },
    Tcp(TcpListener),
}

impl Listener {
    /// Listens on `addr` following the rules of this module. The listener is non-blocking (the
    /// server polls it).
    pub fn bind(addr: &ListenAddr) -> Result<Listener, ListenError> {
        match addr {
            ListenAddr::Unix(path) => bind_unix(path),
            ListenAddr::Inet { host, port } => bind_tcp(*host, *port),
        }
    }

    /// Where it listens.
    pub fn bound(&self) -> BoundAddr {
        match self {
            Listener::Unix { file, .. } => BoundAddr::Unix(file.path.clone()),
            Listener::Tcp(l) => BoundAddr::Tcp(
                l.local_addr()
                    .unwrap_or(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0)),
            ),
        }
    }

    /// Accepts one pending connection, `Ok(None)` when none is pending.
    pub fn accept(&self) -> io::Result<Option<Stream>> {
        let r = match self {
            Listener::Unix { listener, .. } => listener.accept().map(|(s, _)| Stream::Unix(s)),
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
        };
        match r {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Unix { listener, .. } => listener.as_fd(),
            Listener::Tcp(l) => l.as_fd(),
        }
    }
}

fn unix_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> ListenError + use<> {
    let path = path.to_owned();
    move |source| ListenError::Unix {
        path,
        action,
        source,
    }
}

/// Makes room at `path`: nothing there, or a stale socket that is removed.
fn clear_stale(path: &Path) -> Result<(), ListenError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ListenError::Probe {
                path: path.to_owned(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ListenError::NotASocket {
            path: path.to_owned(),
        });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(ListenError::InUse {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing stale console socket (nobody answers on it)");
            std::fs::remove_file(path).map_err(|source| ListenError::RemoveStale {
                path: path.to_owned(),
                source,
            })
        }
        Err(source) => Err(ListenError::Probe {
            path: path.to_owned(),
            source,
        }),
    }
}

fn bind_unix(path: &Path) -> Result<Listener, ListenError> {
    clear_stale(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = match UnixListener::bind(&tmp) {
        Ok(l) => {
            let placed =
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(SOCKET_MODE))
                    .map_err(unix_err(path, "cannot set mode 0660"))
                    .and_then(|()| match std::fs::hard_link(&tmp, path) {
                        Ok(()) => Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            Err(ListenError::InUse {
                                path: path.to_owned(),
                            })
                        }
                        // A file system without hard links: rename instead, which is as safe
                        // except against another daemon starting in the same instant.
                        Err(_) if std::fs::symlink_metadata(path).is_err() => {
                            std::fs::rename(&tmp, path)
                                .map_err(unix_err(path, "cannot place the socket"))
                        }
                        Err(e) => Err(unix_err(path, "cannot place the socket")(e)),
                    });
            let _ = std::fs::remove_file(&tmp);
            placed?;
            l
        }
        // The temporary name can be too long for a socket address where the path itself fits:
        // bind in place and set the mode at once.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            let l = UnixListener::bind(path).map_err(unix_err(path, "cannot listen"))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
                .map_err(unix_err(path, "cannot set mode 0660"))?;
            l
        }
        Err(e) => return Err(unix_err(path, "cannot listen")(e)),
    };
    let meta = std::fs::symlink_metadata(path).map_err(unix_err(path, "cannot stat the socket"))?;
    let file = SocketFile {
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    listener
        .set_nonblocking(true)
        .map_err(unix_err(path, "cannot make the socket non-blocking"))?;
    Ok(Listener::Unix { listener, file })
}

fn bind_tcp(host: Option<IpAddr>, port: u16) -> Result<Listener, ListenError> {
    let shown = ListenAddr::Inet { host, port }.to_string();
    let err = |source| ListenError::Tcp {
        addr: shown.clone(),
        source,
    };
    let listener = match host {
        Some(ip) => TcpListener::bind((ip, port)).map_err(err)?,
        None => TcpListener::bind((Ipv6Addr::UNSPECIFIED, port))
            .or_else(|_| TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
            .map_err(err)?,
    };
    listener.set_nonblocking(true).map_err(err)?;
    Ok(Listener::Tcp(listener))
}
