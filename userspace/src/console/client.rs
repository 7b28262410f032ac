//! The client side of a console connection: where to connect ([`Endpoint`]) and one connection
//! that runs commands in turn ([`Client`]).

use std::fmt;
use std::io;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use cohort_engine::console::protocol::{self, ProtocolError, Request, Response};

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
        let perr = |endpoint: &Endpoint, source| ClientError::Protocol {
            endpoint: endpoint.clone(),
            source,
        };
        let reader = self
            .stream
            .try_clone()
            .map_err(|e| perr(&self.endpoint, e.into()))?;
        let n = lines.len();
        let endpoint = &self.endpoint;
        let writer = &mut self.stream;
        std::thread::scope(|scope| {
            let answers = scope.spawn(move || {
                let mut r = io::BufReader::with_capacity(64 * 1024, reader);
                let mut out = Vec::with_capacity(n);
                while out.len() < n {
                    match protocol::read_response(&mut r) {
                        Ok(Some(resp)) => out.push(resp),
                        Ok(None) => {
                            return Err(ClientError::Closed {
                                endpoint: endpoint.clone(),
                            });
                        }
                        Err(source) => return Err(perr(endpoint, source)),
                    }
                }
                Ok(out)
            });
            let mut frames = Vec::with_capacity(64 * 1024);
            let mut sent = Ok(());
            for line in lines {
                let req = Request {
                    line: line.as_ref().to_owned(),
                    json,
                };
                match req.encode() {
                    Ok(f) => frames.extend_from_slice(&f),
                    Err(e) => {
                        sent = Err(perr(endpoint, e));
                        break;
                    }
                }
                if frames.len() >= 64 * 1024 {
                    sent =
                        io::Write::write_all(writer, &frames).map_err(|e| perr(endpoint, e.into()));
                    frames.clear();
                    if sent.is_err() {
                        break;
                    }
                }
            }
            if sent.is_ok() {
                sent = io::Write::write_all(writer, &frames).map_err(|e| perr(endpoint, e.into()));
            }
            if sent.is_err() {
                // The reader would wait for answers that never come.
                let _ = writer.shutdown();
            }
            let answers = answers.join().unwrap_or(Err(ClientError::Closed {
                endpoint: endpoint.clone(),
            }));
            sent.and(answers)
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
