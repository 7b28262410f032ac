//! The manager's console commands on the control group and the nodes' answers to them.
//!
//! The manager (`cohortd --manager`, Momentum's eccmgr) sends a [`CommandMsg`] in agreed order to
//! the control group (`ec_console`) or a subcluster's group (`ec_sc_<name>`); every node of the
//! group runs the command line through its own console and answers on the manager's reply group
//! with [`AnswerChunk`]s, per-sender FIFO. The group layer does not fragment (a payload larger
//! than one datagram is refused), so an answer is cut into chunks here ([`answer_chunks`]) and put
//! back together on the manager ([`Reassembly`]).
//!
//! ```text
//! command (manager -> nodes)                answer chunk (node -> manager)
//! off  size                                 off  size
//! 0    1   magic 0xC1                       0    1   magic 0xC2
//! 1    1   version = 1                      1    1   version = 1
//! 2    8   request id, big-endian           2    8   request id, big-endian
//! 10   1   flags: bit 0 JSON, bit 1 target  10   1   status: 0 ok, 1 error
//! 11   1   reply group length R (1..=64)    11   4   chunk index, big-endian
//! 12   R   reply group, UTF-8               15   4   chunk count (1..=MAX_CHUNKS)
//! ..   1   target length T (if bit 1)       19   ..  this chunk's bytes of the answer
//! ..   T   target node name, UTF-8
//! ..   ..  the command line, UTF-8
//! ```
//!
//! Decoding never panics and names the offset of the first bad field.

/// First byte of a command message.
pub const MAGIC_COMMAND: u8 = 0xC1;
/// First byte of an answer chunk.
pub const MAGIC_ANSWER: u8 = 0xC2;
/// The format version this build speaks.
pub const VERSION: u8 = 1;
/// Bytes of an answer chunk before its data.
pub const ANSWER_HEADER_LEN: usize = 19;
/// Most chunks one answer may have. Nodes of this version send one chunk per answer
/// ([`answer_message`]); the manager still reassembles answers sent in several chunks.
pub const MAX_CHUNKS: u32 = 8192;
/// Largest answer a node sends, in bytes (within the group layer's default `max_message_size` of
/// 16 MiB); a node whose answer is longer sends it cut short with a note saying so.
pub const MAX_ANSWER: usize = 8 * 1024 * 1024;
/// Longest group or node name carried (the group layer's limit).
pub const MAX_NAME: usize = 64;

const FLAG_JSON: u8 = 0x01;
const FLAG_TARGET: u8 = 0x02;

/// A console command for the nodes of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandMsg {
    /// The manager's number for this request; answers carry it back.
    pub request: u64,
    /// The group the answers go to (only the manager is a member of it).
    pub reply_group: String,
    /// `Some(node)`: only that node runs the command (`unicast`, `retrieve_node`).
    pub target: Option<String>,
    /// Answer in JSON (`--json` on the manager's console).
    pub json: bool,
    /// The command line, canonical (`Command`'s `Display`).
    pub line: String,
}

/// One piece of a node's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerChunk {
    pub request: u64,
    /// The command succeeded (its output) or failed (the error message).
    pub ok: bool,
    /// 0-based position of this chunk.
    pub index: u32,
    /// How many chunks the answer has.
    pub count: u32,
    pub data: Vec<u8>,
}

/// A message of the control protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlMsg {
    Command(CommandMsg),
    Answer(AnswerChunk),
}

/// Why bytes are not a control message; `offset` is where the bad field starts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("control message: {what} at offset {offset}")]
    Malformed { offset: usize, what: &'static str },
    #[error("control message: a {what} of {len} bytes exceeds {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
}

fn bad(offset: usize, what: &'static str) -> ControlError {
    ControlError::Malformed { offset, what }
}

/// Whether `payload` is a control message (by its first byte); other traffic on the same groups
/// is left to others.
pub fn is_control(payload: &[u8]) -> bool {
    matches!(payload.first(), Some(&MAGIC_COMMAND | &MAGIC_ANSWER))
}

fn push_name(out: &mut Vec<u8>, what: &'static str, name: &str) -> Result<(), ControlError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(ControlError::TooLong {
            what,
            len: name.len(),
            max: MAX_NAME,
        });
    }
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

impl CommandMsg {
    /// The message's bytes. Fails when a name is empty or longer than [`MAX_NAME`].
    pub fn encode(&self) -> Result<Vec<u8>, ControlError> {
        let mut out = Vec::with_capacity(32 + self.reply_group.len() + self.line.len());
        out.push(MAGIC_COMMAND);
        out.push(VERSION);
        out.extend_from_slice(&self.request.to_be_bytes());
        let mut flags = 0;
        if self.json {
            flags |= FLAG_JSON;
        }
        if self.target.is_some() {
            flags |= FLAG_TARGET;
        }
        out.push(flags);
        push_name(&mut out, "reply group", &self.reply_group)?;
        if let Some(t) = &self.target {
            push_name(&mut out, "target node name", t)?;
        }
        out.extend_from_slice(self.line.as_bytes());
        Ok(out)
    }
}

impl AnswerChunk {
    /// The chunk's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ANSWER_HEADER_LEN + self.data.len());
        out.push(MAGIC_ANSWER);
        out.push(VERSION);
        out.extend_from_slice(&self.request.to_be_bytes());
        out.push(u8::from(!self.ok));
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.data);
        out
    }
}

/// A cursor over a message that reports where it failed.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ControlError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(bad(self.pos, what))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, ControlError> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, ControlError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, ControlError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn name(&mut self, what: &'static str) -> Result<String, ControlError> {
        let at = self.pos;
        let len = self.u8(what)? as usize;
        if len == 0 || len > MAX_NAME {
            return Err(bad(at, what));
        }
        let start = self.pos;
        let b = self.take(len, what)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|e| bad(start + e.valid_up_to(), "name is not UTF-8"))
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

impl ControlMsg {
    /// Decodes a control message; any input gives a message or an error, never a panic.
    pub fn decode(buf: &[u8]) -> Result<ControlMsg, ControlError> {
        let mut r = Reader { buf, pos: 0 };
        let magic = r.u8("missing magic")?;
        if magic != MAGIC_COMMAND && magic != MAGIC_ANSWER {
            return Err(bad(0, "unknown magic"));
        }
        if r.u8("missing version")? != VERSION {
            return Err(bad(1, "unsupported version"));
        }
        let request = r.u64("truncated request id")?;
        if magic == MAGIC_COMMAND {
            let flags = r.u8("missing flags")?;
            if flags & !(FLAG_JSON | FLAG_TARGET) != 0 {
                return Err(bad(10, "unknown flag bits"));
            }
            let reply_group = r.name("bad reply group")?;
            let target = if flags & FLAG_TARGET != 0 {
                Some(r.name("bad target node name")?)
            } else {
                None
            };
            let start = r.pos;
            let line = std::str::from_utf8(r.rest())
                .map_err(|e| bad(start + e.valid_up_to(), "command line is not UTF-8"))?
                .to_owned();
            return Ok(ControlMsg::Command(CommandMsg {
                request,
                reply_group,
                target,
                json: flags & FLAG_JSON != 0,
                line,
            }));
        }
        let ok = match r.u8("missing status")? {
            0 => true,
            1 => false,
            _ => return Err(bad(10, "unknown status")),
        };
        let index = r.u32("truncated chunk index")?;
        let count = r.u32("truncated chunk count")?;
        if count == 0 || count > MAX_CHUNKS {
            return Err(bad(15, "chunk count out of range"));
        }
        if index >= count {
            return Err(bad(11, "chunk index beyond the count"));
        }
        Ok(ControlMsg::Answer(AnswerChunk {
            request,
            ok,
            index,
            count,
            data: r.rest().to_vec(),
        }))
    }
}

/// The note that replaces the end of an answer longer than [`MAX_ANSWER`].
pub const CUT_NOTE: &[u8] = b"\n[answer cut: longer than the 8 MiB a node may send]\n";

/// The whole answer as one message: the group layer carries messages larger than a datagram, so
/// a node sends one chunk (index 0 of 1) whatever the answer's size, up to [`MAX_ANSWER`].
pub fn answer_message(request: u64, ok: bool, answer: &[u8]) -> Vec<u8> {
    let mut one = answer_chunks(request, ok, answer, usize::MAX);
    debug_assert_eq!(one.len(), 1, "an unbounded chunk size gives one chunk");
    one.pop().unwrap_or_default()
}

/// Cuts an answer into chunk messages of at most `max_payload` bytes each (the group layer's
/// largest payload for the reply group). An answer longer than [`MAX_ANSWER`] is cut short and
/// ends with [`CUT_NOTE`]. `max_payload` must leave room for the header and some data; below
/// that, one chunk per [`MAX_CHUNKS`]-th of the answer is still produced, and the sender's
/// transport refuses what does not fit.
pub fn answer_chunks(request: u64, ok: bool, answer: &[u8], max_payload: usize) -> Vec<Vec<u8>> {
    let body: std::borrow::Cow<'_, [u8]> = if answer.len() > MAX_ANSWER {
        let keep = MAX_ANSWER - CUT_NOTE.len();
        let mut v = answer[..keep].to_vec();
        v.extend_from_slice(CUT_NOTE);
        v.into()
    } else {
        answer.into()
    };
    let per = max_payload
        .saturating_sub(ANSWER_HEADER_LEN)
        .max(body.len().div_ceil(MAX_CHUNKS as usize))
        .max(1);
    let pieces: Vec<&[u8]> = if body.is_empty() {
        vec![&[][..]]
    } else {
        body.chunks(per).collect()
    };
    let count = pieces.len() as u32;
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, data)| {
            AnswerChunk {
                request,
                ok,
                index: i as u32,
                count,
                data: data.to_vec(),
            }
            .encode()
        })
        .collect()
}

/// A whole answer, put back together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub request: u64,
    pub ok: bool,
    pub body: Vec<u8>,
}

/// Why a chunk was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    #[error("chunk {index} of request {request} arrived where chunk {expected} was due")]
    OutOfOrder {
        request: u64,
        index: u32,
        expected: u32,
    },
    #[error("chunk of request {request} disagrees with the earlier chunks' count or status")]
    Inconsistent { request: u64 },
    #[error("answer to request {request} exceeds {MAX_ANSWER} bytes")]
    TooLarge { request: u64 },
}

/// Puts one sender's answer chunks back together. Chunks arrive in order (the group layer's
/// per-sender FIFO); anything else is refused and the partial answer dropped, so a broken answer
/// is reported as missing instead of shown wrong.
#[derive(Debug, Default)]
pub struct Reassembly {
    partial: Option<Partial>,
}

#[derive(Debug)]
struct Partial {
    request: u64,
    ok: bool,
    count: u32,
    next: u32,
    body: Vec<u8>,
}

impl Reassembly {
    /// Takes the next chunk from this sender; returns the answer once its last chunk is in.
    pub fn push(&mut self, c: AnswerChunk) -> Result<Option<Answer>, ReassemblyError> {
        if c.index == 0 {
            // A new answer starts; an unfinished one from this sender is abandoned.
            self.partial = Some(Partial {
                request: c.request,
                ok: c.ok,
                count: c.count,
                next: 0,
                body: Vec::new(),
            });
        }
        let Some(p) = self.partial.as_mut() else {
            return Err(ReassemblyError::OutOfOrder {
                request: c.request,
                index: c.index,
                expected: 0,
            });
        };
        if p.request != c.request || p.ok != c.ok || p.count != c.count {
            self.partial = None;
            return Err(ReassemblyError::Inconsistent { request: c.request });
        }
        if c.index != p.next {
            let expected = p.next;
            self.partial = None;
            return Err(ReassemblyError::OutOfOrder {
                request: c.request,
                index: c.index,
                expected,
            });
        }
        if p.body.len() + c.data.len() > MAX_ANSWER {
            self.partial = None;
            return Err(ReassemblyError::TooLarge { request: c.request });
        }
        p.body.extend_from_slice(&c.data);
        p.next += 1;
        if p.next < p.count {
            return Ok(None);
        }
        Ok(self.partial.take().map(|p| Answer {
            request: p.request,
            ok: p.ok,
            body: p.body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cmd(target: Option<&str>) -> CommandMsg {
        CommandMsg {
            request: 7,
            reply_group: "#mgr".into(),
            target: target.map(str::to_owned),
            json: true,
            line: "cluster info".into(),
        }
    }

    /// Golden bytes: a field swapped in both `encode` and `decode` fails here.
    #[test]
    fn golden_bytes() {
        let mut want = vec![MAGIC_COMMAND, VERSION, 0, 0, 0, 0, 0, 0, 0, 7, 0x03, 4];
        want.extend_from_slice(b"#mgr");
        want.push(5);
        want.extend_from_slice(b"node2");
        want.extend_from_slice(b"cluster info");
        let c = cmd(Some("node2"));
        assert_eq!(c.encode().expect("encodes"), want);
        assert_eq!(ControlMsg::decode(&want), Ok(ControlMsg::Command(c)));
        let a = AnswerChunk {
            request: 0x0102,
            ok: false,
            index: 3,
            count: 4,
            data: b"no".to_vec(),
        };
        let want = [
            MAGIC_ANSWER,
            VERSION,
            0,
            0,
            0,
            0,
            0,
            0,
            1,
            2,
            1,
            0,
            0,
            0,
            3,
            0,
            0,
            0,
            4,
            b'n',
            b'o',
        ];
        assert_eq!(a.encode(), want);
        assert_eq!(ControlMsg::decode(&want), Ok(ControlMsg::Answer(a)));
    }

    #[test]
    fn command_round_trips() {
        for t in [None, Some("node2")] {
            let m = cmd(t);
            let b = m.encode().expect("encodes");
            assert_eq!(ControlMsg::decode(&b), Ok(ControlMsg::Command(m)));
        }
    }

    #[test]
    fn names_are_bounded() {
        let mut m = cmd(None);
        m.reply_group = "g".repeat(MAX_NAME + 1);
        assert!(m.encode().is_err());
        m.reply_group = String::new();
        assert!(m.encode().is_err());
    }

    #[test]
    fn errors_name_the_offset() {
        let mut b = cmd(Some("n")).encode().expect("encodes");
        b[10] = 0x80;
        assert_eq!(ControlMsg::decode(&b), Err(bad(10, "unknown flag bits")));
        assert_eq!(
            ControlMsg::decode(&[0xC2, 1, 0]),
            Err(bad(2, "truncated request id"))
        );
        assert_eq!(ControlMsg::decode(&[0x00]), Err(bad(0, "unknown magic")));
        let c = AnswerChunk {
            request: 1,
            ok: true,
            index: 2,
            count: 2,
            data: vec![],
        }
        .encode();
        assert_eq!(
            ControlMsg::decode(&c),
            Err(bad(11, "chunk index beyond the count"))
        );
    }

    #[test]
    fn a_large_answer_is_cut_and_put_back() {
        let answer: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let chunks = answer_chunks(9, true, &answer, 1000);
        assert_eq!(chunks.len(), 10_000usize.div_ceil(1000 - ANSWER_HEADER_LEN));
        assert!(chunks.iter().all(|c| c.len() <= 1000));
        let mut r = Reassembly::default();
        let mut got = None;
        for c in chunks {
            let ControlMsg::Answer(a) = ControlMsg::decode(&c).expect("decodes") else {
                panic!("an answer chunk");
            };
            assert!(got.is_none(), "nothing after the last chunk");
            got = r.push(a).expect("in order");
        }
        assert_eq!(
            got,
            Some(Answer {
                request: 9,
                ok: true,
                body: answer
            })
        );
    }

    #[test]
    fn an_empty_answer_is_one_chunk() {
        let chunks = answer_chunks(1, false, b"", 600);
        assert_eq!(chunks.len(), 1);
        let ControlMsg::Answer(a) = ControlMsg::decode(&chunks[0]).expect("decodes") else {
            panic!("an answer chunk");
        };
        let got = Reassembly::default().push(a).expect("taken");
        assert_eq!(
            got,
            Some(Answer {
                request: 1,
                ok: false,
                body: vec![]
            })
        );
    }

    #[test]
    fn an_oversized_answer_is_cut_short_with_a_note() {
        let answer = vec![b'x'; MAX_ANSWER + 10];
        let chunks = answer_chunks(3, true, &answer, 64 * 1024);
        let mut r = Reassembly::default();
        let mut got = None;
        for c in chunks {
            let ControlMsg::Answer(a) = ControlMsg::decode(&c).expect("decodes") else {
                panic!("an answer chunk");
            };
            got = r.push(a).expect("in order");
        }
        let body = got.expect("whole").body;
        assert_eq!(body.len(), MAX_ANSWER);
        assert!(body.ends_with(CUT_NOTE));
    }

    #[test]
    fn a_gap_drops_the_partial_answer() {
        let chunks = answer_chunks(4, true, &[1u8; 300], 119);
        assert!(chunks.len() >= 3);
        let dec = |b: &Vec<u8>| match ControlMsg::decode(b) {
            Ok(ControlMsg::Answer(a)) => a,
            other => panic!("{other:?}"),
        };
        let mut r = Reassembly::default();
        assert_eq!(r.push(dec(&chunks[0])), Ok(None));
        assert!(matches!(
            r.push(dec(&chunks[2])),
            Err(ReassemblyError::OutOfOrder {
                index: 2,
                expected: 1,
                ..
            })
        ));
        assert!(
            r.push(dec(&chunks[1])).is_err(),
            "the partial answer is gone"
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ControlMsg::decode(&b);
        }

        #[test]
        fn decode_of_mutated_messages_never_panics(
            pos in 0usize..64, byte in any::<u8>(), cut in 0usize..64,
        ) {
            let mut b = cmd(Some("node1")).encode().expect("encodes");
            let n = b.len();
            b[pos % n] = byte;
            b.truncate(cut.max(1).min(n));
            let _ = ControlMsg::decode(&b);
        }

        #[test]
        fn chunks_round_trip(
            body in proptest::collection::vec(any::<u8>(), 0..5000),
            mtu in (ANSWER_HEADER_LEN + 1)..2000usize,
            request in any::<u64>(), ok in any::<bool>(),
        ) {
            let mut r = Reassembly::default();
            let mut got = None;
            // At most MAX_CHUNKS chunks: a body too large for that many MTU-sized chunks has
            // larger ones.
            let limit = mtu.max(ANSWER_HEADER_LEN + body.len().div_ceil(MAX_CHUNKS as usize));
            for c in answer_chunks(request, ok, &body, mtu) {
                prop_assert!(c.len() <= limit);
                match ControlMsg::decode(&c) {
                    Ok(ControlMsg::Answer(a)) => got = r.push(a).expect("in order"),
                    other => prop_assert!(false, "{other:?}"),
                }
            }
            prop_assert_eq!(got, Some(Answer { request, ok, body }));
        }

        #[test]
        fn commands_round_trip(
            request in any::<u64>(), json in any::<bool>(),
            group in "[a-z_#]{1,64}", target in proptest::option::of("[a-z0-9]{1,64}"),
            line in "\\PC{0,100}",
        ) {
            let m = CommandMsg { request, reply_group: group, target, json, line };
            let b = m.encode().expect("encodes");
            prop_assert_eq!(ControlMsg::decode(&b), Ok(ControlMsg::Command(m)));
        }
    }
}
