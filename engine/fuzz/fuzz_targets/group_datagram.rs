//! Any bytes, as a group datagram: the decoder and the endpoint must never panic, and whatever
//! decodes must re-encode to the same messages.
#![no_main]

use std::net::SocketAddr;

use cohort_engine::group::wire::{Message, Packet, Repr};
use cohort_engine::group::{Endpoint, GroupConfig, MemberId, Time};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::new_checked(data) {
        if let Ok(repr) = Repr::parse(&p) {
            let msgs: Result<Vec<Message>, _> = p.messages().collect();
            if let Ok(msgs) = msgs {
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
        }
    }
    let from: SocketAddr = "10.0.0.2:4809".parse().expect("literal address");
    let cfg = GroupConfig {
        peers: vec![
            ("a".into(), "10.0.0.1:4809".parse().expect("literal address")),
            ("b".into(), from),
        ],
        ..GroupConfig::default()
    };
    let mut ep = Endpoint::new(cfg, MemberId::new("a", 1), None, Time::ZERO).expect("valid config");
    ep.handle_packet(Time::from_nanos(1), from, data);
    ep.handle_timeout(Time::from_nanos(1_000_000_000));
    while ep.poll_transmit().is_some() {}
    while ep.poll_event().is_some() {}
});
