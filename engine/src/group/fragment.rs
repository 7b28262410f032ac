//! Messages larger than one datagram: the sender's [`Fragmenter`] cuts one into [`Fragment`]s, the
//! receiver's [`Reassembly`] puts them back together, one per sender stream.
//!
//! How the guarantees carry over to whole messages:
//! - **Order.** The pieces of a message take increasing places in the sender's reliable stream, in
//!   piece order, and the sender starts no other message of its own until the last piece is in the
//!   stream (its later sends wait in its queue). Only the leader's [`Item::Sequence`] entries may sit
//!   between two pieces of the leader's own message, so the ordering of other members' messages
//!   never waits for a large message of the leader. A message is delivered (FIFO) or ordered by the
//!   leader (agreed) at the place of its last piece, exactly once.
//! - **Virtual synchrony.** A message whose last piece lies beyond a view's flush cut is delivered to
//!   no one: the pieces already taken in are dropped with the view's streams. A sender whose view
//!   changes mid-message sends the message again, whole, in the new view; a sender that dies or
//!   leaves mid-message leaves nothing partial anywhere.
//! - **Flow control.** Pieces enter the stream only while the sender's unstable bytes are below
//!   `max_unstable_bytes`, so the window bounds what is in flight in bytes, whatever the message size.
//! - **Memory.** A receiver holds at most one partial message per sender, of at most
//!   `max_message_size` bytes; a message announcing more is refused (counted) and its pieces skipped.
//! - **Trust.** Pieces arrive inside authenticated datagrams; one that does not continue the partial
//!   message exactly (index, count, total, order, group, length) drops that message and is counted.
//!   Every member holds the same stream items, so every member makes the same decision.

use crate::group::wire::{Fragment, Item, Order};

/// Cuts one message into fragments of at most `capacity` bytes, one at a time, and can start over
/// (when the view changes before the last piece was sent).
#[derive(Debug, Clone)]
pub struct Fragmenter {
    group: String,
    order: Order,
    payload: bytes::Bytes,
    capacity: usize,
    count: u32,
    next: u32,
}

impl Fragmenter {
    /// A message of `payload.len()` bytes, which must exceed `capacity` (it would fit one
    /// datagram otherwise) and fit in a `u32`; `capacity` must be positive.
    pub fn new(group: String, order: Order, payload: Vec<u8>, capacity: usize) -> Fragmenter {
        let capacity = capacity.max(1);
        let count = u32::try_from(payload.len().div_ceil(capacity)).unwrap_or(u32::MAX);
        debug_assert!(
            count >= 2,
            "a message that fits one datagram is not fragmented"
        );
        Fragmenter {
            group,
            order,
            payload: payload.into(),
            capacity,
            count,
            next: 0,
        }
    }

    /// The next piece, or `None` once the last one was taken.
    pub fn next_fragment(&mut self) -> Option<Fragment> {
        if self.next >= self.count {
            return None;
        }
        let start = self.next as usize * self.capacity;
        let end = (start + self.capacity).min(self.payload.len());
        let f = Fragment {
            group: self.group.clone(),
            order: self.order,
            total: u32::try_from(self.payload.len()).unwrap_or(u32::MAX),
            count: self.count,
            index: self.next,
            bytes: self.payload.slice(start..end),
        };
        self.next += 1;
        Some(f)
    }

    /// Whether every piece was taken.
    pub fn finished(&self) -> bool {
        self.next >= self.count
    }

    /// Whether some pieces were taken already.
    pub fn started(&self) -> bool {
        self.next > 0
    }

    /// Starts over from the first piece (the pieces sent so far went to a view that ended).
    pub fn restart(&mut self) {
        self.next = 0;
    }

    /// Flow-control weight of the pieces not taken yet.
    pub fn remaining_weight(&self) -> usize {
        let left = (self.count - self.next.min(self.count)) as usize;
        let sent = (self.next as usize * self.capacity).min(self.payload.len());
        (self.payload.len() - sent) + left * (self.group.len() + 16)
    }
}

/// What became of a piece given to [`Reassembly::absorb`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Absorbed {
    /// Kept; the message is not complete yet.
    Pending,
    /// The last piece: the whole message, as an [`Item::App`].
    Complete(Item),
    /// The message announces more than `max_message_size` bytes: refused, its pieces skipped.
    Refused,
    /// The piece does not continue the partial message: that message is dropped.
    Inconsistent,
    /// A later piece of a message already refused or dropped.
    Skipped,
}

#[derive(Debug, Clone)]
struct Partial {
    group: String,
    order: Order,
    total: u32,
    count: u32,
    next: u32,
    bytes: Vec<u8>,
}

/// The most a first piece makes room for in advance.
const PREALLOCATE_MAX: usize = 1 << 20;

/// One sender stream's message under reassembly (at most one at a time).
#[derive(Debug, Clone, Default)]
pub struct Reassembly {
    partial: Option<Partial>,
    skipping: bool,
}

impl Reassembly {
    /// Bytes held for the partial message.
    pub fn held(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.bytes.len())
    }

    /// Takes the next piece of this sender's stream, in stream order. `limit` is
    /// `max_message_size`.
    pub fn absorb(&mut self, f: &Fragment, limit: usize) -> Absorbed {
        if f.index == 0 {
            let replaced = self.partial.take().is_some();
            self.skipping = false;
            if f.total as usize > limit {
                self.skipping = true;
                return Absorbed::Refused;
            }
            // The whole message's room at once (no regrowth piece by piece), up to
            // PREALLOCATE_MAX: past that the buffer grows as pieces arrive, so a first piece
            // alone never claims more.
            let mut bytes = Vec::with_capacity((f.total as usize).min(PREALLOCATE_MAX));
            bytes.extend_from_slice(&f.bytes);
            self.partial = Some(Partial {
                group: f.group.clone(),
                order: f.order,
                total: f.total,
                count: f.count,
                next: 1,
                bytes,
            });
            // A new first piece while another message was partial: the sender never does that.
            return if replaced {
                Absorbed::Inconsistent
            } else {
                Absorbed::Pending
            };
        }
        let Some(p) = self.partial.as_mut() else {
            return if self.skipping {
                Absorbed::Skipped
            } else {
                self.skipping = true;
                Absorbed::Inconsistent
            };
        };
        let fits = p.bytes.len() + f.bytes.len() <= p.total as usize;
        if p.next != f.index
            || p.count != f.count
            || p.total != f.total
            || p.order != f.order
            || p.group != f.group
            || !fits
        {
            self.partial = None;
            self.skipping = true;
            return Absorbed::Inconsistent;
        }
        p.bytes.extend_from_slice(&f.bytes);
        p.next += 1;
        if !f.is_last() {
            return Absorbed::Pending;
        }
        let p = self.partial.take().expect("matched just above");
        if p.bytes.len() != p.total as usize {
            self.skipping = true;
            return Absorbed::Inconsistent;
        }
        Absorbed::Complete(Item::App {
            group: p.group,
            order: p.order,
            payload: p.bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(len: usize, cap: usize) -> Vec<Fragment> {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut f = Fragmenter::new("g".into(), Order::Agreed, payload, cap);
        std::iter::from_fn(|| f.next_fragment()).collect()
    }

    #[test]
    fn pieces_reassemble_into_the_message() {
        let pieces = cut(10_000, 999);
        assert_eq!(pieces.len(), 11);
        assert!(pieces.iter().all(|p| p.bytes.len() <= 999));
        let mut r = Reassembly::default();
        for p in &pieces[..10] {
            assert_eq!(r.absorb(p, 1 << 20), Absorbed::Pending);
        }
        let Absorbed::Complete(Item::App { payload, order, .. }) = r.absorb(&pieces[10], 1 << 20)
        else {
            panic!("the last piece completes the message");
        };
        assert_eq!(order, Order::Agreed);
        assert_eq!(payload.len(), 10_000);
        assert!(
            payload
                .iter()
                .enumerate()
                .all(|(i, b)| *b == (i * 7 % 251) as u8)
        );
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn remaining_weight_shrinks_to_zero_and_restart_resets() {
        let payload = vec![1u8; 5000];
        let mut f = Fragmenter::new("gg".into(), Order::Fifo, payload, 1000);
        let full = f.remaining_weight();
        assert_eq!(full, 5000 + 5 * 18);
        let first = f.next_fragment().expect("piece");
        assert_eq!(f.remaining_weight(), full - Item::Fragment(first).weight());
        while f.next_fragment().is_some() {}
        assert_eq!(f.remaining_weight(), 0);
        f.restart();
        assert!(!f.started());
        assert_eq!(f.remaining_weight(), full);
    }

    #[test]
    fn oversized_messages_are_refused_and_their_pieces_skipped() {
        let pieces = cut(5000, 1000);
        let mut r = Reassembly::default();
        assert_eq!(r.absorb(&pieces[0], 4000), Absorbed::Refused);
        for p in &pieces[1..] {
            assert_eq!(r.absorb(p, 4000), Absorbed::Skipped);
        }
        // The next message starts afresh.
        assert_eq!(r.absorb(&cut(3000, 1000)[0], 4000), Absorbed::Pending);
    }

    #[test]
    fn a_piece_that_does_not_continue_the_message_drops_it() {
        let pieces = cut(5000, 1000);
        let mut r = Reassembly::default();
        r.absorb(&pieces[0], 1 << 20);
        assert_eq!(r.absorb(&pieces[2], 1 << 20), Absorbed::Inconsistent);
        assert_eq!(r.absorb(&pieces[3], 1 << 20), Absorbed::Skipped);
        assert_eq!(r.held(), 0);

        let mut r = Reassembly::default();
        r.absorb(&pieces[0], 1 << 20);
        let mut other_group = pieces[1].clone();
        other_group.group = "h".into();
        assert_eq!(r.absorb(&other_group, 1 << 20), Absorbed::Inconsistent);

        let mut r = Reassembly::default();
        r.absorb(&pieces[0], 1 << 20);
        let mut long = pieces[1].clone();
        long.bytes = vec![0; 4500].into();
        assert_eq!(r.absorb(&long, 1 << 20), Absorbed::Inconsistent);

        let mut r = Reassembly::default();
        assert_eq!(r.absorb(&pieces[1], 1 << 20), Absorbed::Inconsistent);
    }

    proptest::proptest! {
        /// Arbitrary pieces (forged counts, totals, indices, groups) never panic reassembly,
        /// never make it hold more than the limit, and a completed message always has exactly
        /// its announced length.
        #[test]
        fn arbitrary_pieces_never_break_reassembly(
            pieces in proptest::collection::vec(
                (0u32..6, 2u32..6, 1u32..5000, proptest::collection::vec(proptest::prelude::any::<u8>(), 1..1500), proptest::prelude::any::<bool>()),
                0..40)
        ) {
            let mut r = Reassembly::default();
            for (index, count, total, bytes, agreed) in pieces {
                let f = Fragment {
                    group: if agreed { "g".into() } else { "h".into() },
                    order: if agreed { Order::Agreed } else { Order::Fifo },
                    total, count, index: index.min(count - 1), bytes: bytes.into(),
                };
                if let Absorbed::Complete(Item::App { payload, .. }) = r.absorb(&f, 4096) {
                    proptest::prop_assert_eq!(payload.len(), total as usize);
                }
                proptest::prop_assert!(r.held() <= 4096 + 1500);
            }
        }
    }

    #[test]
    fn a_short_last_piece_is_inconsistent() {
        let mut pieces = cut(3000, 1000);
        pieces[2].bytes.truncate(10);
        let mut r = Reassembly::default();
        r.absorb(&pieces[0], 1 << 20);
        r.absorb(&pieces[1], 1 << 20);
        assert_eq!(r.absorb(&pieces[2], 1 << 20), Absorbed::Inconsistent);
    }
}
