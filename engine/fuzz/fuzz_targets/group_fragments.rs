//! Any bytes, as a sequence of data messages from one sender: pieces of large messages (forged,
//! inconsistent, out of order, duplicated) go through the receiver's streams and reassembly. Nothing
//! may panic, a delivered message is never larger than `max_message_size`, and the bytes held for
//! partial messages never exceed it per sender.
#![no_main]

use cohort_engine::group::delivery::ViewStreams;
use cohort_engine::group::wire::{Item, Message};
use libfuzzer_sys::fuzz_target;

const MAX_MESSAGE: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut streams = ViewStreams::new(3, 0, 256, MAX_MESSAGE);
    let mut rest = data;
    // Records: kind u8 | length u16 | body, as in a datagram.
    while rest.len() >= 3 {
        let kind = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        let body = &rest[3..(3 + len).min(rest.len())];
        rest = &rest[(3 + len).min(rest.len())..];
        let Ok(Message::Data { origin, seq, item }) = Message::parse(kind, body, 3) else {
            continue;
        };
        let _ = streams.receive(usize::from(origin % 3), seq, item);
        let (delivered, _) = streams.deliver(true);
        for d in delivered {
            if let Item::App { payload, .. } = &d.item {
                assert!(payload.len() <= MAX_MESSAGE.max(1 << 16));
            }
            assert!(!matches!(d.item, Item::Fragment(_)), "pieces never reach the layer above");
        }
        assert!(streams.reassembly_bytes() <= 3 * MAX_MESSAGE);
    }
    let cut: Vec<u64> = streams.received();
    for d in streams.deliver_to_cut(&cut) {
        assert!(!matches!(d.item, Item::Fragment(_)));
    }
});
