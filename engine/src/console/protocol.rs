//! The console wire protocol between `cohortctl` and the daemon's console server.
//!
//! A connection (Unix stream socket or TCP) carries any number of request/response exchanges:
//! the server answers every request frame with one response frame, in the order the requests
//! came. A client may pipeline: write many requests before reading (it must keep reading while it
//! writes, or bound how far it runs ahead, so that neither side blocks on a full socket buffer).
//! Both frames are an 8-byte header and a body:
//!
//! ```text
//! offset  size  request                         response
//! 0       2     magic "CQ"                      magic "CR"
//! 2       1     version = 1                     version = 1
//! 3       1     flags: bit 0 = JSON output,     status: 0 = ok, 1 = error
//!               other bits must be 0
//! 4       4     body length, big-endian         body length, big-endian
//! 8       len   the command line, UTF-8         the output: any bytes (text or JSON)
//! ```
//!
//! Limits: a request body is at most [`MAX_REQUEST_BODY`] (64 KiB), a response body at most
//! [`MAX_RESPONSE_BODY`]; a header announcing more is refused before any of the body is read.
//! The length prefix lets a body hold any bytes (newlines, NULs), and the magic makes a peer that
//! speaks something else (an HTTP client on the TCP port) fail at once with a clear error.
//!
//! Decoding is incremental and never panics: [`Request::decode`] and [`Response::decode`] take the
//! bytes received so far and return a frame, `Ok(None)` when more bytes are needed, or a
//! [`ProtocolError`] naming the offset of the bad field.

use std::io::{self, Read, Write};

/// Request magic, `CQ` (Cohort Query).
pub const REQUEST_MAGIC: [u8; 2] = *b"CQ";
/// Response magic, `CR` (Cohort Reply).
pub const RESPONSE_MAGIC: [u8; 2] = *b"CR";
/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 8;
/// Largest request body (command line) accepted: 64 KiB.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;
/// Largest response body accepted: 64 MiB (a large shared-object dump fits many times over).
pub const MAX_RESPONSE_BODY: usize = 64 * 1024 * 1024;

/// Request flag bit: render the response as JSON.
const FLAG_JSON: u8 = 0x01;

/// Why bytes are not a valid frame, with the offset (from the frame's start) of the bad field.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error(
        "bad magic {found:02x?} at offset 0, expected {expected:02x?} (is this a Cohort console?)"
    )]
    BadMagic { found: [u8; 2], expected: [u8; 2] },
    #[error(
        "unsupported console protocol version {found} at offset 2 (this side speaks {VERSION})"
    )]
    UnsupportedVersion { found: u8 },
    #[error("unknown request flag bits {bits:#04x} at offset 3")]
    UnknownFlags { bits: u8 },
    #[error("unknown response status {found} at offset 3")]
    UnknownStatus { found: u8 },
    #[error("{what} body of {len} bytes (length at offset 4) exceeds the limit of {max} bytes")]
    TooLarge {
        what: &'static str,
        len: u64,
        max: usize,
    },
    #[error("command line is not UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("connection closed inside a frame after {got} of {need} bytes")]
    Truncated { got: usize, need: usize },
    #[error("console connection: {0}")]
    Io(#[from] io::Error),
}

/// One command for the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The command line as typed (the server parses it).
    pub line: String,
    /// Whether the response body should be JSON.
    pub json: bool,
}

/// Whether the command succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Error,
}

/// The server's answer: a status and the output (on error, the message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    pub body: Vec<u8>,
}

impl Response {
    /// A successful response carrying `body`.
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Response {
            status: Status::Ok,
            body: body.into(),
        }
    }

    /// An error response carrying the message `body`.
    pub fn error(body: impl Into<Vec<u8>>) -> Self {
        Response {
            status: Status::Error,
            body: body.into(),
        }
    }
}

fn header(magic: [u8; 2], byte3: u8, len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).expect("bodies are bounded far below 4 GiB before framing");
    let l = len.to_be_bytes();
    [magic[0], magic[1], VERSION, byte3, l[0], l[1], l[2], l[3]]
}

/// Checks the header fields present in `buf` (as many as have arrived) and returns byte 3 and the
/// body length once the whole header is there.
fn check_header(
    buf: &[u8],
    magic: [u8; 2],
    what: &'static str,
    max: usize,
) -> Result<Option<(u8, usize)>, ProtocolError> {
    let have = &buf[..buf.len().min(2)];
    if have != &magic[..have.len()] {
        let mut found = [0u8; 2];
        found[..have.len()].copy_from_slice(have);
        return Err(ProtocolError::BadMagic {
            found,
            expected: magic,
        });
    }
    if let Some(&v) = buf.get(2)
        && v != VERSION
    {
        return Err(ProtocolError::UnsupportedVersion { found: v });
    }
    let Some(h) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
    if len_usize > max {
        return Err(ProtocolError::TooLarge {
            what,
            len: u64::from(len),
            max,
        });
    }
    Ok(Some((h[3], len_usize)))
}

impl Request {
    /// The request's frame. Fails only when the line is longer than [`MAX_REQUEST_BODY`].
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.line.len());
        encode_request_into(&self.line, self.json, &mut out)?;
        Ok(out)
    }

    /// Decodes the frame at the start of `buf`: the request and the bytes it used, or `None`
    /// while the frame is incomplete. Errors are reported as soon as the bad byte has arrived.
    pub fn decode(buf: &[u8]) -> Result<Option<(Request, usize)>, ProtocolError> {
        Ok(RequestRef::decode(buf)?.map(|(r, used)| {
            (
                Request {
                    line: r.line.to_owned(),
                    json: r.json,
                },
                used,
            )
        }))
    }
}

/// A request decoded in place: the command line borrows the receive buffer, so a server can
/// answer it without copying it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestRef<'a> {
    pub line: &'a str,
    pub json: bool,
}

impl<'a> RequestRef<'a> {
    /// [`Request::decode`] without the copy of the line.
    pub fn decode(buf: &'a [u8]) -> Result<Option<(RequestRef<'a>, usize)>, ProtocolError> {
        if let Some(&flags) = buf.get(3)
            && flags & !FLAG_JSON != 0
        {
            // Checked before the length so a peer speaking another protocol is told early; the
            // magic and version come first in check_header.
            check_header(&buf[..3], REQUEST_MAGIC, "request", MAX_REQUEST_BODY)?;
            return Err(ProtocolError::UnknownFlags {
                bits: flags & !FLAG_JSON,
            });
        }
        let Some((flags, len)) = check_header(buf, REQUEST_MAGIC, "request", MAX_REQUEST_BODY)?
        else {
            return Ok(None);
        };
        let Some(body) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
            return Ok(None);
        };
        let line = std::str::from_utf8(body).map_err(|e| ProtocolError::NotUtf8 {
            offset: HEADER_LEN + e.valid_up_to(),
        })?;
        Ok(Some((
            RequestRef {
                line,
                json: flags & FLAG_JSON != 0,
            },
            HEADER_LEN + len,
        )))
    }
}

/// Appends the frame of request `line` to `out` (what [`Request::encode`] returns, without a
/// buffer of its own). Fails only when the line is longer than [`MAX_REQUEST_BODY`]; `out` is
/// then unchanged.
pub fn encode_request_into(line: &str, json: bool, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    let body = line.as_bytes();
    if body.len() > MAX_REQUEST_BODY {
        return Err(ProtocolError::TooLarge {
            what: "request",
            len: body.len() as u64,
            max: MAX_REQUEST_BODY,
        });
    }
    let flags = if json { FLAG_JSON } else { 0 };
    out.extend_from_slice(&header(REQUEST_MAGIC, flags, body.len()));
    out.extend_from_slice(body);
    Ok(())
}

/// Appends the frame of a response with `status` and `body` to `out` (what
/// [`Response::encode`] returns). Fails only when the body is longer than
/// [`MAX_RESPONSE_BODY`]; `out` is then unchanged.
pub fn encode_response_into(
    status: Status,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    if body.len() > MAX_RESPONSE_BODY {
        return Err(ProtocolError::TooLarge {
            what: "response",
            len: body.len() as u64,
            max: MAX_RESPONSE_BODY,
        });
    }
    let status = match status {
        Status::Ok => 0,
        Status::Error => 1,
    };
    out.extend_from_slice(&header(RESPONSE_MAGIC, status, body.len()));
    out.extend_from_slice(body);
    Ok(())
}

impl Response {
    /// The response's frame. Fails only when the body is longer than [`MAX_RESPONSE_BODY`].
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.body.len());
        encode_response_into(self.status, &self.body, &mut out)?;
        Ok(out)
    }

    /// Decodes the frame at the start of `buf`, like [`Request::decode`].
    pub fn decode(buf: &[u8]) -> Result<Option<(Response, usize)>, ProtocolError> {
        let status = |b: u8| match b {
            0 => Ok(Status::Ok),
            1 => Ok(Status::Error),
            found => Err(ProtocolError::UnknownStatus { found }),
        };
        if let Some(&b) = buf.get(3) {
            check_header(&buf[..3], RESPONSE_MAGIC, "response", MAX_RESPONSE_BODY)?;
            status(b)?;
        }
        let Some((b, len)) = check_header(buf, RESPONSE_MAGIC, "response", MAX_RESPONSE_BODY)?
        else {
            return Ok(None);
        };
        let Some(body) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
            return Ok(None);
        };
        Ok(Some((
            Response {
                status: status(b)?,
                body: body.to_vec(),
            },
            HEADER_LEN + len,
        )))
    }
}

/// Reads one frame from a blocking stream with `decode`: `Ok(None)` when the stream ends cleanly
/// before a frame starts. Reads the header first and then exactly the body, so no byte of a
/// following frame is consumed.
fn read_frame<T>(
    r: &mut impl Read,
    decode: impl Fn(&[u8]) -> Result<Option<(T, usize)>, ProtocolError>,
) -> Result<Option<T>, ProtocolError> {
    let mut buf = vec![0u8; HEADER_LEN];
    let mut got = 0;
    let mut need = HEADER_LEN;
    loop {
        while got < need {
            match r.read(&mut buf[got..need]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(ProtocolError::Truncated { got, need }),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
            // Validate the header as it arrives so a wrong peer fails before we wait for more.
            if let Some((frame, _)) = decode(&buf[..got])? {
                return Ok(Some(frame));
            }
        }
        if need == HEADER_LEN {
            let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
            need = HEADER_LEN + len;
            buf.resize(need, 0);
        } else {
            // decode had the whole frame and returned None: impossible for a well-formed length.
            return Err(ProtocolError::Truncated { got, need });
        }
    }
}

/// Reads one request from a blocking stream; `Ok(None)` at a clean end of stream.
pub fn read_request(r: &mut impl Read) -> Result<Option<Request>, ProtocolError> {
    read_frame(r, Request::decode)
}

/// Reads one response from a blocking stream; `Ok(None)` at a clean end of stream.
pub fn read_response(r: &mut impl Read) -> Result<Option<Response>, ProtocolError> {
    read_frame(r, Response::decode)
}

/// Writes one request frame and flushes.
pub fn write_request(w: &mut impl Write, req: &Request) -> Result<(), ProtocolError> {
    w.write_all(&req.encode()?)?;
    w.flush()?;
    Ok(())
}

/// Writes one response frame and flushes.
pub fn write_response(w: &mut impl Write, resp: &Response) -> Result<(), ProtocolError> {
    w.write_all(&resp.encode()?)?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_layout() {
        let f = Request {
            line: "cluster info".into(),
            json: true,
        }
        .encode()
        .unwrap();
        assert_eq!(&f[..8], b"CQ\x01\x01\x00\x00\x00\x0c");
        assert_eq!(&f[8..], b"cluster info");
        let r = Response::error("no such job").encode().unwrap();
        assert_eq!(&r[..8], b"CR\x01\x01\x00\x00\x00\x0b");
    }

    #[test]
    fn limits() {
        let big = Request {
            line: "x".repeat(MAX_REQUEST_BODY + 1),
            json: false,
        };
        assert!(matches!(big.encode(), Err(ProtocolError::TooLarge { .. })));
        let ok = Request {
            line: "x".repeat(MAX_REQUEST_BODY),
            json: false,
        };
        let f = ok.encode().unwrap();
        assert_eq!(Request::decode(&f).unwrap().unwrap().0, ok);
        // A header announcing too much is refused before the body arrives.
        let mut h = b"CQ\x01\x00".to_vec();
        h.extend_from_slice(&((MAX_REQUEST_BODY as u32) + 1).to_be_bytes());
        assert!(matches!(
            Request::decode(&h),
            Err(ProtocolError::TooLarge { len, .. }) if len == MAX_REQUEST_BODY as u64 + 1
        ));
        let mut h = b"CR\x01\x00".to_vec();
        h.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Response::decode(&h),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_fields_are_named_early() {
        assert!(matches!(
            Request::decode(b"G"),
            Err(ProtocolError::BadMagic { .. })
        ));
        let e = Request::decode(b"GET / HTTP/1.1\r\n").unwrap_err();
        assert!(e.to_string().contains("offset 0"), "{e}");
        assert!(matches!(
            Request::decode(b"CQ\x02"),
            Err(ProtocolError::UnsupportedVersion { found: 2 })
        ));
        assert!(matches!(
            Request::decode(b"CQ\x01\x80"),
            Err(ProtocolError::UnknownFlags { bits: 0x80 })
        ));
        assert!(matches!(
            Response::decode(b"CR\x01\x07"),
            Err(ProtocolError::UnknownStatus { found: 7 })
        ));
        assert!(matches!(
            Request::decode(b"CQ\x01\x00\x00\x00\x00\x02a\xff"),
            Err(ProtocolError::NotUtf8 { offset: 9 })
        ));
        // A response magic is not a request.
        assert!(matches!(
            Request::decode(b"CR"),
            Err(ProtocolError::BadMagic { .. })
        ));
    }

    #[test]
    fn stream_reading() {
        let mut bytes = Vec::new();
        for (i, line) in ["cluster info", "", "version"].iter().enumerate() {
            write_request(
                &mut bytes,
                &Request {
                    line: (*line).into(),
                    json: i == 1,
                },
            )
            .unwrap();
        }
        let mut r = &bytes[..];
        assert_eq!(read_request(&mut r).unwrap().unwrap().line, "cluster info");
        let empty = read_request(&mut r).unwrap().unwrap();
        assert_eq!((empty.line.as_str(), empty.json), ("", true));
        assert_eq!(read_request(&mut r).unwrap().unwrap().line, "version");
        assert!(read_request(&mut r).unwrap().is_none());
        let cut = &bytes[..10];
        assert!(matches!(
            read_request(&mut &cut[..]),
            Err(ProtocolError::Truncated { got: 10, need: 20 })
        ));
        let mut resp = Vec::new();
        write_response(&mut resp, &Response::ok(b"a\0b\n".to_vec())).unwrap();
        assert_eq!(
            read_response(&mut &resp[..]).unwrap().unwrap(),
            Response::ok(b"a\0b\n".to_vec())
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes);
            let _ = read_request(&mut &bytes[..]);
            let _ = read_response(&mut &bytes[..]);
        }

        #[test]
        fn headers_then_garbage_never_panic(
            magic in prop_oneof![Just(*b"CQ"), Just(*b"CR")],
            b3 in any::<u8>(),
            len in 0u32..64,
            rest in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut bytes = magic.to_vec();
            bytes.push(VERSION);
            bytes.push(b3);
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(&rest);
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes);
            let _ = read_request(&mut &bytes[..]);
            let _ = read_response(&mut &bytes[..]);
        }

        #[test]
        fn request_round_trip(line in "\\PC{0,200}", json in any::<bool>()) {
            let req = Request { line, json };
            let frame = req.encode().unwrap();
            // Every proper prefix is incomplete, never an error.
            for cut in 0..frame.len() {
                prop_assert!(Request::decode(&frame[..cut]).unwrap().is_none());
            }
            let mut two = frame.clone();
            two.extend_from_slice(&frame);
            let (got, used) = Request::decode(&two).unwrap().unwrap();
            prop_assert_eq!(used, frame.len());
            prop_assert_eq!(&got, &req);
            prop_assert_eq!(read_request(&mut &two[..]).unwrap(), Some(req));
        }

        #[test]
        fn response_round_trip(body in proptest::collection::vec(any::<u8>(), 0..300), ok in any::<bool>()) {
            let resp = if ok { Response::ok(body) } else { Response::error(body) };
            let frame = resp.encode().unwrap();
            for cut in 0..frame.len() {
                prop_assert!(Response::decode(&frame[..cut]).unwrap().is_none());
            }
            let (got, used) = Response::decode(&frame).unwrap().unwrap();
            prop_assert_eq!(used, frame.len());
            prop_assert_eq!(&got, &resp);
            prop_assert_eq!(read_response(&mut &frame[..]).unwrap(), Some(resp));
        }
    }
}
