//! Logmove frames over a blocking TCP stream: the engine's [`Session`] seals and opens them; this
//! reads with a timeout and keeps the bytes of a partial frame.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use cohort_engine::logmove::wire::{Message, NONCE_LEN, OpenError, Session};

/// Why a logmove connection ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("logmove peer {peer}: {source}")]
    Io {
        peer: SocketAddr,
        source: std::io::Error,
    },
    #[error("logmove peer {peer} closed the connection")]
    Closed { peer: SocketAddr },
    #[error("logmove peer {peer}: {source}")]
    Frame { peer: SocketAddr, source: OpenError },
    #[error("logmove peer {peer}: {what}")]
    Protocol { peer: SocketAddr, what: String },
}

/// A connection carrying logmove frames.
pub struct FramedStream {
    stream: TcpStream,
    peer: SocketAddr,
    buf: Vec<u8>,
    pub session: Session,
}

const READ_CHUNK: usize = 256 * 1024;

impl FramedStream {
    pub fn new(stream: TcpStream, session: Session) -> std::io::Result<FramedStream> {
        let peer = stream.peer_addr()?;
        stream.set_nodelay(true)?;
        Ok(FramedStream {
            stream,
            peer,
            buf: Vec::new(),
            session,
        })
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// A protocol error naming this peer.
    pub fn protocol(&self, what: impl Into<String>) -> StreamError {
        StreamError::Protocol {
            peer: self.peer,
            what: what.into(),
        }
    }

    pub fn send(&mut self, m: &Message) -> Result<(), StreamError> {
        let bytes = self.session.seal(m);
        self.stream
            .write_all(&bytes)
            .map_err(|source| StreamError::Io {
                peer: self.peer,
                source,
            })
    }

    /// The next message, or `None` when none arrived within `wait`.
    pub fn recv(&mut self, wait: Duration) -> Result<Option<Message>, StreamError> {
        let deadline = Instant::now() + wait;
        loop {
            match self.session.open(&self.buf) {
                Ok(Some((m, used))) => {
                    self.buf.drain(..used);
                    return Ok(Some(m));
                }
                Ok(None) => {}
                Err(source) => {
                    return Err(StreamError::Frame {
                        peer: self.peer,
                        source,
                    });
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let io = |source| StreamError::Io {
                peer: self.peer,
                source,
            };
            self.stream.set_read_timeout(Some(left)).map_err(io)?;
            let at = self.buf.len();
            self.buf.resize(at + READ_CHUNK, 0);
            let r = self.stream.read(&mut self.buf[at..]);
            match r {
                Ok(0) => {
                    self.buf.truncate(at);
                    return Err(StreamError::Closed { peer: self.peer });
                }
                Ok(n) => self.buf.truncate(at + n),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    self.buf.truncate(at);
                    return Ok(None);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => self.buf.truncate(at),
                Err(e) => {
                    self.buf.truncate(at);
                    return Err(io(e));
                }
            }
        }
    }

    /// The next message, which must arrive within `wait`.
    pub fn expect(&mut self, wait: Duration, what: &str) -> Result<Message, StreamError> {
        self.recv(wait)?
            .ok_or_else(|| self.protocol(format!("no {what} within {wait:?}")))
    }
}

/// A fresh random nonce for a handshake.
pub fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    let mut filled = 0;
    while filled < NONCE_LEN {
        // SAFETY: the pointer and length describe the unfilled tail of `n`.
        let r = unsafe { libc::getrandom(n[filled..].as_mut_ptr().cast(), NONCE_LEN - filled, 0) };
        if r > 0 {
            filled += r as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // getrandom(2) cannot fail on Linux ≥ 3.17 with these arguments; should it, fall back
            // on the clock and pid, which still differ per connection.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            n[..16].copy_from_slice(&t.to_le_bytes());
            n[16..20].copy_from_slice(&std::process::id().to_le_bytes());
            break;
        }
    }
    n
}
