//! The checks the fuzz targets run (`engine/fuzz/`, `bash ci/fuzz`), kept in the crate so that the
//! regression test (`engine/tests/fuzz_regressions.rs`) runs every input a fuzzer ever found through
//! the very same code, and so that the seeds each target starts from are produced by the encoders
//! themselves ([`seeds`]) and cannot go stale.
//!
//! Each check takes any bytes. It may return early; it panics only when a decoder breaks its
//! contract: a panic inside a decoder, or something that decoded and does not come back the same
//! through its encoder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::group::wire::{Item, Message, Packet, Repr};
use crate::group::{Endpoint, GroupConfig, MemberId, Time};

/// A target's check.
pub type Check = fn(&[u8]);

/// Every target: its name (the fuzz binary's) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("group_datagram", group_datagram),
    ("group_fragments", group_fragments),
    ("replication", replication),
    ("duravip", duravip),
    ("logmove", logmove),
    ("console", console),
    ("channel", channel),
    ("config", config),
    ("jlog_metastore", jlog_metastore),
    ("jlog_files", jlog_files),
];

/// The check of target `name`.
pub fn check(name: &str) -> Option<Check> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

fn peers() -> Vec<(String, SocketAddr)> {
    vec![
        ("a".into(), SocketAddr::from(([10, 0, 0, 1], 4809))),
        ("b".into(), SocketAddr::from(([10, 0, 0, 2], 4809))),
    ]
}

/// A group datagram: what decodes re-encodes to the same messages (datagrams without a MAC or a
/// seal), and endpoints fed it (without a key, and sealed) do not panic.
pub fn group_datagram(data: &[u8]) {
    if let Ok(p) = Packet::new_checked(data)
        && p.trailer_len() == 0
        && let Ok(repr) = Repr::parse(&p)
        && let Ok(msgs) = p.messages().collect::<Result<Vec<Message>, _>>()
    {
        let mut buf = Vec::new();
        repr.emit(&mut buf);
        for m in &msgs {
            m.emit(&mut buf);
        }
        let again = Packet::new_checked(&buf[..]).expect("re-encoded header is valid");
        let back: Vec<Message> = again
            .messages()
            .collect::<Result<_, _>>()
            .expect("re-encoded messages decode");
        assert_eq!(back, msgs);
    }
    let cfg = GroupConfig {
        peers: peers(),
        ..GroupConfig::default()
    };
    for key in [None, Some(fuzz_sealed_key())] {
        let Ok(mut ep) = Endpoint::new(cfg.clone(), MemberId::new("a", 1), key, Time::ZERO) else {
            return;
        };
        ep.handle_packet(Time::from_nanos(1), peers()[1].1, data);
        ep.handle_timeout(Time::from_nanos(1_000_000_000));
        while ep.poll_transmit().is_some() {}
        while ep.poll_event().is_some() {}
    }
}

/// Pieces of large messages (forged, inconsistent, out of order, duplicated) through one
/// receiver's streams and reassembly: nothing panics, no piece reaches the layer above, and the
/// bytes held for partial messages stay bounded.
pub fn group_fragments(data: &[u8]) {
    use crate::group::delivery::ViewStreams;
    const MAX_MESSAGE: usize = 64 * 1024;
    let mut streams = ViewStreams::new(3, 0, 256, MAX_MESSAGE);
    let mut rest = data;
    // Records: kind u8 | length u16 | body, as in a datagram.
    while rest.len() >= 3 {
        let kind = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        let end = (3 + len).min(rest.len());
        let body = &rest[3..end];
        rest = &rest[end..];
        let Ok(Message::Data { origin, seq, item }) = Message::parse(kind, body, 3) else {
            continue;
        };
        let _ = streams.receive(usize::from(origin % 3), seq, item);
        let (delivered, _) = streams.deliver(true);
        for d in delivered {
            if let Item::App { payload, .. } = &d.item {
                assert!(payload.len() <= MAX_MESSAGE.max(1 << 16));
            }
            assert!(
                !matches!(d.item, Item::Fragment(_)),
                "pieces never reach the layer above"
            );
        }
        assert!(streams.reassembly_bytes() <= 3 * MAX_MESSAGE);
    }
    let cut: Vec<u64> = streams.received();
    for d in streams.deliver_to_cut(&cut) {
        assert!(!matches!(d.item, Item::Fragment(_)));
    }
}

/// A replication message: what decodes re-encodes to bytes that decode to the same message.
pub fn replication(data: &[u8]) {
    use crate::replicate::wire::Message;
    if let Ok(m) = Message::parse_bytes(data)
        && let Ok(bytes) = m.to_bytes()
    {
        assert_eq!(Message::parse_bytes(&bytes).expect("re-encoded"), m);
    }
}

/// A DuraVIP message (and an ARP-cache report): round trip as above.
pub fn duravip(data: &[u8]) {
    use crate::duravip::wire::Repr;
    if let Ok(r) = Repr::parse_bytes(data)
        && let Ok(bytes) = r.to_bytes()
    {
        assert_eq!(Repr::parse_bytes(&bytes).expect("re-encoded"), r);
    }
    use crate::duravip::arpcache::{decode_report, encode_reports};
    if let Ok(hosts) = decode_report(data)
        && !hosts.is_empty()
    {
        // One report holds one family within its bound: it encodes back to the same bytes.
        assert_eq!(encode_reports(&hosts), vec![data.to_vec()]);
    }
}

/// Log shipping: a stream of frames through an unkeyed and a keyed session (each frame decoded or
/// refused, never a panic), the message decoder on its own, and the stored stream positions.
pub fn logmove(data: &[u8]) {
    use crate::logmove::wire::{Message, Role, Session};
    for mut s in [
        Session::plain(Role::Server),
        Session::keyed(
            &crate::group::ClusterKey::from_material(b"fuzz"),
            &[1; 32],
            &[2; 32],
            Role::Server,
        ),
    ] {
        let mut rest = data;
        while let Ok(Some((m, used))) = s.open(rest) {
            assert!(used > 0 && used <= rest.len());
            let mut plain = Session::plain(Role::Client);
            let frame = plain.seal(&m);
            let (back, _) = Session::plain(Role::Server)
                .open(&frame)
                .expect("re-encoded frame")
                .expect("whole frame");
            assert_eq!(back, m);
            rest = &rest[used..];
        }
    }
    if let Some((&k, payload)) = data.split_first() {
        let _ = Message::parse(k, payload);
    }
    let _ = crate::logmove::position::Position::decode_slot(data);
    let _ = crate::logmove::position::Position::decode_file(data);
}

/// The console: request and response frames, the manager's control messages, and (as text) the
/// command grammar and the shared-object update syntax.
pub fn console(data: &[u8]) {
    use crate::console::control::ControlMsg;
    use crate::console::protocol::{Request, Response};
    if let Ok(Some((r, used))) = Request::decode(data) {
        assert!(used <= data.len());
        let bytes = r.encode().expect("decoded requests encode");
        assert_eq!(
            Request::decode(&bytes).expect("again"),
            Some((r, bytes.len()))
        );
    }
    if let Ok(Some((r, used))) = Response::decode(data) {
        assert!(used <= data.len());
        let bytes = r.encode().expect("decoded responses encode");
        assert_eq!(
            Response::decode(&bytes).expect("again"),
            Some((r, bytes.len()))
        );
    }
    if let Ok(m) = ControlMsg::decode(data) {
        let bytes = match &m {
            ControlMsg::Command(c) => c.encode().expect("decoded commands encode"),
            ControlMsg::Answer(a) => a.encode(),
        };
        assert_eq!(ControlMsg::decode(&bytes).expect("again"), m);
    }
    if let Ok(line) = std::str::from_utf8(data) {
        if let Ok(cmd) = crate::console::grammar::parse(line) {
            // The canonical form parses to the same command.
            let canonical = cmd.to_string();
            assert_eq!(
                crate::console::grammar::parse(&canonical).as_ref(),
                Ok(&cmd),
                "{canonical}"
            );
        }
        let _ = crate::console::shared_ops::parse_update(line);
    }
}

/// Cohort's own cluster-group messages (member information and the channel kinds).
pub fn channel(data: &[u8]) {
    use crate::node::channel::{Channel, MemberInfo};
    if let Ok(c) = Channel::parse(data) {
        assert_eq!(Channel::parse(&c.emit()).expect("re-encoded"), c);
    }
    if let Ok(i) = MemberInfo::parse(data) {
        assert_eq!(MemberInfo::parse(&i.emit()).expect("re-encoded"), i);
    }
}

/// A configuration file: loads or is refused with a location; what loads prints as text that
/// loads to the same configuration.
pub fn config(data: &[u8]) {
    let name = Path::new("fuzz.conf");
    if let Ok(l) = crate::config::load_bytes(name, data) {
        let text = crate::config::render(&l.config);
        let again = crate::config::load_str(name, &text)
            .unwrap_or_else(|e| panic!("the printed configuration loads: {e}\n{text}"));
        assert_eq!(again.config, l.config, "{text}");
    }
}

/// A jlog metastore: decodes or is refused; what decodes re-encodes to the same.
pub fn jlog_metastore(data: &[u8]) {
    use crate::jlog::metastore::Metastore;
    if let Ok(m) = Metastore::parse(data, Path::new("metastore")) {
        let again = Metastore::parse(&m.emit(), Path::new("metastore")).expect("re-encoded");
        assert_eq!(again.storage_log, m.storage_log);
        assert_eq!(again.unit_limit, m.unit_limit);
        assert_eq!(again.hdr_magic, m.hdr_magic);
    }
}

/// The files of a journal, packed as records `which u8 | length u16 | bytes`:
/// 0 metastore, 1 segment 0, 2 index of segment 0, 3 subscriber `s`'s checkpoint, 4 segment 1,
/// 5 index of segment 1.
const JLOG_FILES: [&str; 6] = [
    "metastore",
    "00000000",
    "00000000.idx",
    "cp.73",
    "00000001",
    "00000001.idx",
];

/// A journal directory holding `data`'s files; a reader for `s` reads what it can, then the
/// journal is repaired and read again. Errors are fine; panics are not, nor a record returned
/// beyond what the segment holds.
pub fn jlog_files(data: &[u8]) {
    use crate::jlog::journal::Journal;
    thread_local! {
        static DIR: PathBuf = {
            let base = if Path::new("/dev/shm").is_dir() {
                PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            };
            let d = base.join(format!("cohort-fuzz-jlog-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&d);
            d
        };
    }
    let dir = DIR.with(Clone::clone);
    for f in JLOG_FILES {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let mut rest = data;
    while rest.len() >= 3 {
        let which = usize::from(rest[0]) % JLOG_FILES.len();
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        let end = (3 + len).min(rest.len());
        let _ = std::fs::write(dir.join(JLOG_FILES[which]), &rest[3..end]);
        rest = &rest[end..];
    }
    let read = |j: &Journal| {
        let _ = j.segments();
        let _ = j.first_log_id();
        let _ = j.pending_readers(0);
        let Ok(mut r) = j.reader("s") else { return };
        for _ in 0..4 {
            let Ok(i) = r.read_interval() else { return };
            if i.count == 0 {
                return;
            }
            let Ok(recs) = r.read_messages(i.first, i.count.min(64)) else {
                return;
            };
            assert!(recs.len() <= 64);
            if r.checkpoint(i.last).is_err() {
                return;
            }
        }
    };
    if let Ok(j) = Journal::open(&dir) {
        read(&j);
    }
    let _ = Journal::repair(&dir, false);
    if let Ok(j) = Journal::open(&dir) {
        read(&j);
    }
}

/// Valid inputs for target `name`, made by the encoders (the fuzzers' seeds).
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    match name {
        "group_fragments" => group_seeds(true, None),
        "group_datagram" => {
            let mut all = group_seeds(false, None);
            all.extend(group_seeds(false, Some(fuzz_sealed_key())));
            all
        }
        "replication" => replication_seeds(),
        "duravip" => duravip_seeds(),
        "logmove" => logmove_seeds(),
        "console" => console_seeds(),
        "channel" => channel_seeds(),
        "config" => vec![crate::config::EMBEDDED_DEFAULT.as_bytes().to_vec()],
        "jlog_metastore" => vec![crate::jlog::metastore::Metastore::default().emit().to_vec()],
        "jlog_files" => jlog_seeds(),
        _ => Vec::new(),
    }
}

/// The sealed key of the `group_datagram` target's second endpoint (its seeds are sealed under it,
/// so the fuzzer starts from datagrams that open).
fn fuzz_sealed_key() -> crate::group::ClusterKey {
    crate::group::ClusterKey::from_material(b"the fuzzer's sealed key").sealing(true)
}

/// Datagrams two endpoints exchange (under `key`, if any) while forming a view and sending a
/// small and a large message; for fragments, the data records of those datagrams in the target's
/// record format.
fn group_seeds(records: bool, key: Option<crate::group::ClusterKey>) -> Vec<Vec<u8>> {
    let cfg = |_: usize| GroupConfig {
        peers: peers(),
        mtu: 600,
        ..GroupConfig::default()
    };
    let mut eps: Vec<Endpoint> = (0..2)
        .filter_map(|i| {
            let name = ["a", "b"][i];
            Endpoint::new(cfg(i), MemberId::new(name, 1), key.clone(), Time::ZERO).ok()
        })
        .collect();
    let mut out = Vec::new();
    let mut now = Time::ZERO;
    for step in 0..200u64 {
        now = Time::from_nanos(step * 20_000_000);
        if step == 100 {
            for ep in &mut eps {
                let _ = ep.join("g");
            }
        }
        if step == 150 {
            let _ = eps[0].send("g", b"small", crate::group::Order::Agreed);
            let _ = eps[0].send("g", &[0x5a; 2000], crate::group::Order::Fifo);
        }
        for ep in &mut eps {
            ep.handle_timeout(now);
        }
        for i in 0..2 {
            while let Some(t) = eps[i].poll_transmit() {
                if out.len() < 64 || step >= 150 {
                    out.push(t.payload.clone());
                }
                let from = peers()[i].1;
                eps[1 - i].handle_packet(now, from, &t.payload);
            }
        }
    }
    let _ = now;
    if !records {
        return out;
    }
    // The data messages, re-framed as records.
    let mut recs = Vec::new();
    for d in &out {
        let Ok(p) = Packet::new_checked(&d[..]) else {
            continue;
        };
        let Ok(msgs) = p.messages().collect::<Result<Vec<Message>, _>>() else {
            continue;
        };
        let mut seed = Vec::new();
        for m in msgs.iter().filter(|m| matches!(m, Message::Data { .. })) {
            let mut body = Vec::new();
            m.emit(&mut body);
            // emit writes kind | length | body already.
            seed.extend_from_slice(&body);
        }
        if !seed.is_empty() {
            recs.push(seed);
        }
    }
    recs
}

fn replication_seeds() -> Vec<Vec<u8>> {
    crate::replicate::wire::Message::example()
        .to_bytes()
        .into_iter()
        .collect()
}

fn duravip_seeds() -> Vec<Vec<u8>> {
    use crate::duravip::{AddrConfig, DuravipMachine, LocalConfig, Member, Params, Services, View};
    let addresses: Vec<AddrConfig> = (1..=3u8)
        .map(|k| AddrConfig {
            ip: std::net::IpAddr::from([10, 9, 0, k]),
            bindings: [format!("b{k}")].into(),
            services: Services::MULTIVIP,
            preference: (k == 2).then(|| "a".to_owned()),
            follows: None,
        })
        .collect();
    let config = LocalConfig {
        addresses,
        placement: Default::default(),
    };
    let mut m = DuravipMachine::new(Member::new("a", 1), config, Params::default());
    let view = View {
        id: 1,
        members: vec![Member::new("a", 1), Member::new("b", 2)],
    };
    let _ = m.handle_view(Time::ZERO, view);
    let _ = m.request_move(std::net::IpAddr::from([10, 9, 0, 1]), "b");
    let mut out = Vec::new();
    while let Some(b) = m.poll_transmit() {
        out.push(b);
    }
    // ARP-cache reports of both families (versions 1 and 2).
    use crate::duravip::arpcache::{Neighbour, encode_reports};
    let hosts = [
        Neighbour {
            ip: std::net::IpAddr::from([10, 9, 0, 7]),
            mac: [2, 0, 0, 0, 0, 7],
        },
        Neighbour {
            ip: "fd00::7".parse().expect("an address"),
            mac: [2, 0, 0, 0, 0, 8],
        },
    ];
    out.extend(encode_reports(&hosts));
    out
}

fn logmove_seeds() -> Vec<Vec<u8>> {
    use crate::logmove::wire::{Message, Role, Session};
    let mut s = Session::plain(Role::Client);
    [
        Message::Hello {
            nonce: [3; 32],
            name: "node1".into(),
        },
        Message::Pull {
            log: "mainlog".into(),
            subscriber: "master".into(),
        },
        Message::Refused {
            reason: "no".into(),
        },
    ]
    .iter()
    .map(|m| s.seal(m))
    .collect()
}

fn console_seeds() -> Vec<Vec<u8>> {
    use crate::console::control::{AnswerChunk, CommandMsg};
    use crate::console::protocol::{Request, Response, Status};
    let mut out = vec![
        b"cluster duravip move 10.0.0.1 to node2".to_vec(),
        b"cluster shared add inbound_cidr 10.0.0.0/8 3".to_vec(),
    ];
    out.extend(
        Request {
            line: "cluster membership".into(),
            json: true,
        }
        .encode(),
    );
    out.extend(
        Response {
            status: Status::Ok,
            body: b"ok\n".to_vec(),
        }
        .encode(),
    );
    out.extend(
        CommandMsg {
            request: 7,
            reply_group: "mgr".into(),
            target: Some("node1".into()),
            json: false,
            line: "cluster counters".into(),
        }
        .encode(),
    );
    out.push(
        AnswerChunk {
            request: 7,
            ok: true,
            index: 0,
            count: 1,
            data: b"x".to_vec(),
        }
        .encode(),
    );
    out
}

fn channel_seeds() -> Vec<Vec<u8>> {
    use crate::node::channel::{Channel, MemberInfo};
    vec![
        Channel::MemberInfo(MemberInfo {
            pid: 42,
            subcluster: "default".into(),
            node_type: "Momentum".into(),
            version: "0.1".into(),
            eccluster_addr: "10.0.0.1:4802".into(),
        })
        .emit(),
        Channel::Duravip(b"\x01\x02").emit(),
    ]
}

/// A real journal with a subscriber and records in two segments, packed in the target's format.
fn jlog_seeds() -> Vec<Vec<u8>> {
    use crate::jlog::journal::{Journal, JournalOptions};
    use crate::jlog::subscriber::Position;
    use crate::jlog::writer::WriterOptions;
    let Ok(tmp) = tempfile_dir() else {
        return Vec::new();
    };
    let dir = tmp.join("j");
    let build = || -> crate::jlog::error::Result<()> {
        let j = Journal::create(
            &dir,
            JournalOptions {
                unit_limit: 256,
                ..JournalOptions::default()
            },
        )?;
        j.add_subscriber("s", Position::Begin)?;
        let mut w = j.writer(WriterOptions::default())?;
        for k in 0..12u32 {
            w.append(format!("record {k} {}", "x".repeat(k as usize * 5)).as_bytes())?;
        }
        w.close()?;
        let mut r = j.reader("s")?;
        let i = r.read_interval()?;
        let _ = r.read_messages(i.first, i.count.min(3))?;
        Ok(())
    };
    let ok = build().is_ok();
    let mut seed = Vec::new();
    for (k, f) in JLOG_FILES.iter().enumerate() {
        if let Ok(b) = std::fs::read(dir.join(f)) {
            let b = &b[..b.len().min(usize::from(u16::MAX))];
            seed.push(u8::try_from(k).unwrap_or(0));
            seed.extend_from_slice(&u16::try_from(b.len()).unwrap_or(0).to_be_bytes());
            seed.extend_from_slice(b);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    if ok { vec![seed] } else { Vec::new() }
}

fn tempfile_dir() -> std::io::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!(
        "cohort-fuzz-seeds-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
