//! The client side of a console connection: where to connect ([`Endpoint`]) and one connection
//! that runs commands in turn ([`Client`]).

use std::fmt;
use std::io;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use cohort_engine::console::protocol::{self, ProtocolError, Request, Response, Status};

use super::stream::Stream;

/// Where a console listens, as given to `cohortctl --socket`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `HOST:PORT` (a name, an IPv4 address or a bracketed IPv6 address).
    Tcp(String),
}

impl Endpoint {
    /// `HOST:PORT` when the text does not start with `/` or `.` and ends in `:` and a port
    /// number; anything else is a Unix socket path (`/tmp/2025`, `./2025`, `2025`).
    pub fn parse(s: &str) -> Endpoint {
        let tcp = !s.starts_with('/')
            && !s.starts_with('.')
            && s.rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if tcp {
            Endpoint::Tcp(s.to_owned())
        } else {
            Endpoint::Unix(PathBuf::from(s))
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
            Endpoint::Tcp(a) => f.write_str(a),
        }
    }
}

/// Why a command got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the console at {endpoint}: {source}")]
    Connect {
        endpoint: Endpoint,
        source: io::Error,
    },
    #[error("console at {endpoint}: {source}")]
    Protocol {
        endpoint: Endpoint,
        source: ProtocolError,
    },
    #[error("console at {endpoint} closed the connection without answering")]
    Closed { endpoint: Endpoint },
    #[error("console at {endpoint}: authentication refused: {why}")]
    Auth { endpoint: Endpoint, why: String },
}

/// One connection to a console server.
#[derive(Debug)]
pub struct Client {
    endpoint: Endpoint,
    stream: Stream,
}

impl Client {
    /// Connects to `endpoint`.
    pub fn connect(endpoint: &Endpoint) -> Result<Client, ClientError> {
        let err = |source| ClientError::Connect {
            endpoint: endpoint.clone(),
            source,
        };
        let stream = match endpoint {
            Endpoint::Unix(p) => Stream::Unix(UnixStream::connect(p).map_err(err)?),
            Endpoint::Tcp(a) => Stream::Tcp(TcpStream::connect(a.as_str()).map_err(err)?),
        };
        Ok(Client {
            endpoint: endpoint.clone(),
            stream,
        })
    }

    /// Gives up waiting on the console after `t` (a stopped daemon answers nothing): reads and
    /// writes that take longer fail.
    pub fn set_timeout(&mut self, t: Option<std::time::Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(t)?;
        self.stream.set_write_timeout(t)
    }

    /// Proves `key` to a TCP console that asks for it (`cohort_engine::console::auth`): asks for a
    /// challenge and answers it. A console that needs no authentication says so and this returns
    /// at once.
    pub fn authenticate(
        &mut self,
        key: &cohort_engine::group::ClusterKey,
    ) -> Result<(), ClientError> {
        use cohort_engine::console::auth;
        let endpoint = self.endpoint.clone();
        let refused = |why: String| ClientError::Auth {
            endpoint: endpoint.clone(),
            why,
        };
        let r = self.run("auth", false)?;
        let body = String::from_utf8_lossy(&r.body).trim().to_owned();
        if r.status != Status::Ok {
            return Err(refused(body));
        }
        let Some(challenge) = body.strip_prefix("challenge ").and_then(auth::unhex32) else {
            return Ok(());
        };
        let proof = auth::hex(&auth::proof(key, &challenge));
        let r = self.run(&format!("auth {proof}"), false)?;
        if r.status != Status::Ok {
            return Err(refused(String::from_utf8_lossy(&r.body).trim().to_owned()));
        }
        Ok(())
    }

    /// Where this client is connected.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends a request without waiting for its answer (for `listen`, whose answers are a stream:
    /// read them with [`Client::next_response`]).
    pub fn send(&mut self, line: &str, json: bool) -> Result<(), ClientError> {
        let req = Request {
            line: line.to_owned(),
            json,
        };
        protocol::write_request(&mut self.stream, &req).map_err(|source| ClientError::Protocol {
            endpoint: self.endpoint.clone(),
            source,
        })
    }

    /// The next response frame; `None` when the server closed the connection.
    pub fn next_response(&mut self) -> Result<Option<Response>, ClientError> {
        protocol::read_response(&mut self.stream).map_err(|source| ClientError::Protocol {
            endpoint: self.endpoint.clone(),
            source,
        })
    }

    /// Sends `line` and waits for the answer. An error here means the connection is unusable.
    pub fn run(&mut self, line: &str, json: bool) -> Result<Response, ClientError> {
        let perr = |source| ClientError::Protocol {
            endpoint: self.endpoint.clone(),
            source,
        };
        let req = Request {
            line: line.to_owned(),
            json,
        };
        protocol::write_request(&mut self.stream, &req).map_err(perr)?;
        match protocol::read_response(&mut self.stream) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(ClientError::Closed {
                endpoint: self.endpoint.clone(),
            }),
            Err(source) => Err(ClientError::Protocol {
                endpoint: self.endpoint.clone(),
                source,
            }),
        }
    }
}

impl Client {
    /// Sends every line at once and returns the answers in order (pipelining): a reader thread
    /// takes the answers while this thread writes, so neither side waits on the other and no
    /// number of lines or size of answers can make both block on full socket buffers. An error
    /// means the connection is unusable.
    pub fn pipeline<S: AsRef<str>>(
        &mut self,
        lines: &[S],
        json: bool,
    ) -> Result<Vec<Response>, ClientError> {
        let mut out = Vec::with_capacity(lines.len());
        self.stream_lines(lines.iter(), json, |r| out.push(r))?;
        Ok(out)
    }

    /// Streams requests: writes the lines as `lines` yields them (in writes of up to 64 KiB)
    /// while a reader thread hands each answer, in order, to `on_answer`; returns the number
    /// of requests once every one is answered. Nothing waits for a round trip, so a producer
    /// that keeps yielding keeps the server busy; this is how an application sends updates at
    /// a high rate. An error means the connection is unusable.
    pub fn stream_lines<S, I, F>(
        &mut self,
        lines: I,
        json: bool,
        mut on_answer: F,
    ) -> Result<u64, ClientError>
    where
        S: AsRef<str>,
        I: Iterator<Item = S>,
        F: FnMut(Response) + Send,
    {
        let perr = |endpoint: &Endpoint, source| ClientError::Protocol {
            endpoint: endpoint.clone(),
            source,
        };
        let mut reader = self
            .stream
            .try_clone()
            .map_err(|e| perr(&self.endpoint, e.into()))?;
        let endpoint = &self.endpoint;
        let writer = &mut self.stream;
        // The writer tells the reader how many requests each write carried; the reader reads
        // only while answers are owed, so it never waits on a connection with nothing to come.
        let (sent_tx, sent_rx) = std::sync::mpsc::channel::<u64>();
        let on_answer = &mut on_answer;
        std::thread::scope(|scope| {
            let answers = scope.spawn(move || {
                let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
                let mut at = 0;
                let mut owed = 0u64;
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    while owed > 0 {
                        match Response::decode(&buf[at..]) {
                            Ok(Some((resp, used))) => {
                                at += used;
                                owed -= 1;
                                on_answer(resp);
                                continue;
                            }
                            Ok(None) => {}
                            Err(source) => return Err(perr(endpoint, source)),
                        }
                        buf.drain(..at);
                        at = 0;
                        match io::Read::read(&mut reader, &mut chunk) {
                            Ok(0) if buf.is_empty() => {
                                return Err(ClientError::Closed {
                                    endpoint: endpoint.clone(),
                                });
                            }
                            Ok(0) => {
                                let got = buf.len();
                                let source = ProtocolError::Truncated { got, need: got + 1 };
                                return Err(perr(endpoint, source));
                            }
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(perr(endpoint, e.into())),
                        }
                    }
                    match sent_rx.recv() {
                        Ok(n) => owed += n,
                        // The writer is done and everything it sent is answered.
                        Err(_) => return Ok(()),
                    }
                }
            });
            let mut frames = Vec::with_capacity(64 * 1024);
            let mut in_frames = 0u64;
            let mut total = 0u64;
            let mut sent = Ok(());
            let mut flush = |frames: &mut Vec<u8>, n: &mut u64| {
                // Announced before the write: the answers may come back before it returns.
                let _ = sent_tx.send(*n);
                *n = 0;
                let r = io::Write::write_all(writer, frames).map_err(|e| perr(endpoint, e.into()));
                frames.clear();
                r
            };
            for line in lines {
                if let Err(e) = protocol::encode_request_into(line.as_ref(), json, &mut frames) {
                    sent = Err(perr(endpoint, e));
                    break;
                }
                in_frames += 1;
                total += 1;
                if frames.len() >= 64 * 1024 {
                    sent = flush(&mut frames, &mut in_frames);
                    if sent.is_err() {
                        break;
                    }
                }
            }
            if sent.is_ok() && !frames.is_empty() {
                sent = flush(&mut frames, &mut in_frames);
            }
            drop(sent_tx);
            if sent.is_err() {
                // The reader would wait for answers that never come.
                let _ = writer.shutdown();
            }
            let answers = answers.join().unwrap_or(Err(ClientError::Closed {
                endpoint: endpoint.clone(),
            }));
            sent.and(answers).map(|()| total)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("/tmp/2025"),
            Endpoint::Unix("/tmp/2025".into())
        );
        assert_eq!(Endpoint::parse("2025"), Endpoint::Unix("2025".into()));
        assert_eq!(Endpoint::parse("./a:1"), Endpoint::Unix("./a:1".into()));
        assert_eq!(
            Endpoint::parse("127.0.0.1:2025"),
            Endpoint::Tcp("127.0.0.1:2025".into())
        );
        assert_eq!(
            Endpoint::parse("[::1]:2025"),
            Endpoint::Tcp("[::1]:2025".into())
        );
        assert_eq!(
            Endpoint::parse("localhost:2025"),
            Endpoint::Tcp("localhost:2025".into())
        );
        assert_eq!(Endpoint::parse("a:b"), Endpoint::Unix("a:b".into()));
        assert_eq!(Endpoint::parse(":2025"), Endpoint::Unix(":2025".into()));
    }
}
