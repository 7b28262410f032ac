//! Reliable delivery within one view: per-sender FIFO streams with gap detection for NACKs and
//! duplicate suppression, the leader's agreed order, stability from acknowledgement vectors, and the
//! flow-control window.
//!
//! Every member numbers its items from 1 in each view. A receiver delivers a sender's items in that
//! order, never skipping one. An agreed item waits until the leader's stream (stream 0) names it in a
//! [`Item::Sequence`] entry; the leader's own agreed items are ordered by their place in its stream.
//! So every member delivers agreed items in the order of the leader's stream, and each sender's items
//! in the order they were sent.
//!
//! A safe item ([`crate::group::Order::Safe`]) is agreed and also waits, at its place in the
//! agreed order (holding up what follows it), until it is stable: every member holds it, as the
//! acknowledgement vectors show (a sender holds what it sent, so receiving an item also raises its
//! sender's own acknowledgement). Receivers acknowledge safe items at once (see the endpoint).
//!
//! At a view change the flush fixes a cut (per sender, the last item to deliver in the view);
//! [`ViewStreams::deliver_to_cut`] delivers exactly up to it, first in the normal order and then,
//! for what the leader never sequenced, sender by sender: the same on every member holding the same
//! items, which is what virtual synchrony needs.

use std::collections::BTreeMap;

use crate::group::fragment::{Absorbed, Reassembly};
use crate::group::wire::Item;

/// An item handed to the layer above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Index of the sender in the view.
    pub origin: usize,
    /// Its sequence number.
    pub seq: u64,
    /// The item.
    pub item: Item,
}

/// What became of a received item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Stored for delivery.
    New,
    /// Already held or delivered: dropped.
    Duplicate,
    /// Further ahead of delivery than `max_queue`: dropped, to be retransmitted later.
    Full,
    /// The origin is not a member of the view.
    UnknownOrigin,
}

#[derive(Debug, Default, Clone)]
struct Stream {
    /// Items received and not yet both delivered and stable.
    items: BTreeMap<u64, Item>,
    /// Every item up to this one is held (or was delivered and collected).
    contiguous: u64,
    delivered: u64,
    /// Highest sequence number known to exist (seen, or announced in the sender's probe).
    known_high: u64,
    /// Every member holds every item up to this one.
    stable: u64,
    /// Every item up to this one was collected (none that low can arrive again: see `receive`).
    collected: u64,
    /// The message whose pieces this stream delivered so far (see [`crate::group::fragment`]).
    reassembly: Reassembly,
}

/// What reassembly refused (see [`ViewStreams::take_fragment_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FragmentStats {
    /// Messages refused because they announced more than `max_message_size` bytes.
    pub refused: u64,
    /// Messages dropped because a piece did not continue them exactly.
    pub inconsistent: u64,
    /// Messages put back together from pieces.
    pub reassembled: u64,
}

/// The streams of every member of one view, as one member sees them.
#[derive(Debug, Clone)]
pub struct ViewStreams {
    me: usize,
    streams: Vec<Stream>,
    /// `acks[j][i]`: member j holds member i's items up to this one.
    acks: Vec<Vec<u64>>,
    /// Per column of `acks`: its minimum, and how many rows hold exactly that. Raising the last
    /// of those rows marks the column `dirty`, for `collect` to find its new minimum.
    column_min: Vec<u64>,
    at_min: Vec<usize>,
    dirty: Vec<bool>,
    /// Whether anything `collect` looks at (a column of `acks`, a delivery cursor) moved since it
    /// last ran.
    moved: bool,
    /// Leader only: the highest item of each sender already sequenced.
    sequenced: Vec<u64>,
    unstable_bytes: usize,
    max_queue: u64,
    max_message: usize,
    stats: FragmentStats,
}

impl ViewStreams {
    /// Empty streams for a view of `n` members, seen by member `me`; a receiver buffers at most
    /// `max_queue` items per sender ahead of delivery and reassembles messages of at most
    /// `max_message` bytes.
    pub fn new(n: usize, me: usize, max_queue: usize, max_message: usize) -> ViewStreams {
        ViewStreams {
            me,
            streams: vec![Stream::default(); n],
            acks: vec![vec![0; n]; n],
            column_min: vec![0; n],
            at_min: vec![n; n],
            dirty: vec![false; n],
            moved: false,
            sequenced: vec![0; n],
            unstable_bytes: 0,
            max_queue: max_queue.max(1) as u64,
            max_message,
            stats: FragmentStats::default(),
        }
    }

    /// What reassembly counted since the last call.
    pub fn take_fragment_stats(&mut self) -> FragmentStats {
        std::mem::take(&mut self.stats)
    }

    /// Bytes held for partial messages, all senders together.
    pub fn reassembly_bytes(&self) -> usize {
        self.streams.iter().map(|s| s.reassembly.held()).sum()
    }

    /// Stream `i`'s item `seq`, as the layer above sees it: a piece of a large message is taken
    /// into the stream's reassembly (and yields the whole message when it is the last piece);
    /// anything else is returned as it is. `None`: nothing to hand up.
    fn take(&mut self, i: usize, seq: u64) -> Option<Item> {
        let s = &mut self.streams[i];
        let Item::Fragment(f) = s.items.get(&seq)? else {
            return s.items.get(&seq).cloned();
        };
        match s.reassembly.absorb(f, self.max_message) {
            Absorbed::Pending | Absorbed::Skipped => None,
            Absorbed::Complete(item) => {
                self.stats.reassembled += 1;
                Some(item)
            }
            Absorbed::Refused => {
                self.stats.refused += 1;
                None
            }
            Absorbed::Inconsistent => {
                self.stats.inconsistent += 1;
                None
            }
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether the view is empty (never for a real view).
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Payload bytes this member sent that some member may still lack.
    pub fn unstable_bytes(&self) -> usize {
        self.unstable_bytes
    }

    /// Appends one of this member's own items to its stream; returns its sequence number.
    pub fn push_own(&mut self, item: Item) -> u64 {
        self.unstable_bytes += item.weight();
        let s = &mut self.streams[self.me];
        let seq = s.contiguous + 1;
        s.items.insert(seq, item);
        s.contiguous = seq;
        s.known_high = seq;
        self.raise(self.me, self.me, seq);
        seq
    }

    /// Stores an item received from the network.
    pub fn receive(&mut self, origin: usize, seq: u64, item: Item) -> Received {
        let max_queue = self.max_queue;
        let Some(s) = self.streams.get_mut(origin) else {
            return Received::UnknownOrigin;
        };
        if seq == 0 || seq <= s.contiguous || s.items.contains_key(&seq) {
            return Received::Duplicate;
        }
        if seq > s.delivered + max_queue {
            return Received::Full;
        }
        s.items.insert(seq, item);
        s.known_high = s.known_high.max(seq);
        while s.items.contains_key(&(s.contiguous + 1)) {
            s.contiguous += 1;
        }
        let c = s.contiguous;
        self.raise(self.me, origin, c);
        // Its sender holds every item of its own stream up to this one.
        self.raise(origin, origin, seq);
        Received::New
    }

    /// An item still held, for a retransmission.
    pub fn get(&self, origin: usize, seq: u64) -> Option<&Item> {
        self.streams.get(origin)?.items.get(&seq)
    }

    /// Per sender, the highest item held contiguously: this member's acknowledgement vector.
    pub fn received(&self) -> Vec<u64> {
        self.streams.iter().map(|s| s.contiguous).collect()
    }

    /// The members whose last acknowledgement vector (as this member knows it) lacks an item
    /// this member holds.
    pub fn lagging(&self) -> Vec<usize> {
        let mine = &self.acks[self.me];
        (0..self.acks.len())
            .filter(|&j| j != self.me && self.acks[j].iter().zip(mine).any(|(a, m)| a < m))
            .collect()
    }

    /// Records member `j`'s acknowledgement vector, learns which items exist, and frees what every
    /// member holds.
    pub fn on_acks(&mut self, j: usize, acks: &[u64]) {
        if j >= self.streams.len() || acks.len() != self.streams.len() || j == self.me {
            return;
        }
        let mut raised = false;
        for (i, a) in acks.iter().enumerate() {
            raised |= self.raise(j, i, *a);
        }
        let announced = acks[j];
        let s = &mut self.streams[j];
        s.known_high = s.known_high.max(announced);
        // Only a raised acknowledgement can make more items stable.
        if raised {
            self.collect();
        }
    }

    /// Raises `acks[j][i]` to `v` if that is higher; whether it was.
    fn raise(&mut self, j: usize, i: usize, v: u64) -> bool {
        let slot = &mut self.acks[j][i];
        if v <= *slot {
            return false;
        }
        let old = std::mem::replace(slot, v);
        if old == self.column_min[i] {
            self.at_min[i] = self.at_min[i].saturating_sub(1);
            self.dirty[i] |= self.at_min[i] == 0;
        }
        self.moved = true;
        true
    }

    /// Column `i` of `acks`: its minimum, and how many rows hold exactly that.
    fn column(&self, i: usize) -> (u64, usize) {
        let min = self.acks.iter().map(|row| row[i]).min().unwrap_or(0);
        (min, self.acks.iter().filter(|row| row[i] == min).count())
    }

    fn collect(&mut self) {
        if !std::mem::take(&mut self.moved) {
            return;
        }
        for i in 0..self.streams.len() {
            // A column's minimum rises only once every row that held it rose.
            if std::mem::take(&mut self.dirty[i]) {
                let (min, at) = self.column(i);
                (self.column_min[i], self.at_min[i]) = (min, at);
                let s = &mut self.streams[i];
                s.stable = s.stable.max(min);
            }
            debug_assert_eq!(
                (self.column_min[i], self.at_min[i]),
                self.column(i),
                "column {i}'s minimum kept up to date"
            );
            let s = &mut self.streams[i];
            // Items held by every member go once delivered here too: an item that became stable
            // before its delivery (a safe or agreed one waiting for its place) goes at the
            // collection after that delivery.
            let upto = s.stable.min(s.delivered);
            if upto <= s.collected {
                continue;
            }
            s.collected = upto;
            while let Some(entry) = s.items.first_entry() {
                if *entry.key() > upto {
                    break;
                }
                let item = entry.remove();
                if i == self.me {
                    self.unstable_bytes = self.unstable_bytes.saturating_sub(item.weight());
                }
            }
        }
    }

    /// Missing ranges to NACK: `(origin, from, to)`, at most `batch` items each.
    pub fn gaps(&self, batch: u64) -> Vec<(usize, u64, u64)> {
        let mut out = Vec::new();
        for (i, s) in self.streams.iter().enumerate() {
            if i == self.me || s.contiguous >= s.known_high {
                continue;
            }
            let from = s.contiguous + 1;
            let mut to = s.known_high.min(from + batch - 1);
            to = to.min(s.delivered + self.max_queue);
            // Ask only for what is really missing at the front.
            if let Some((&first_held, _)) = s.items.range(from..).next() {
                to = to.min(first_held.saturating_sub(1)).max(from);
            }
            out.push((i, from, to));
        }
        out
    }

    /// Whether every item up to `cut[i]` of every sender `i` is held.
    pub fn holds(&self, cut: &[u64]) -> bool {
        self.streams
            .iter()
            .zip(cut)
            .all(|(s, c)| s.contiguous >= *c)
    }

    /// Marks `upto` as existing for `origin`, so that [`ViewStreams::gaps`] asks for it.
    pub fn expect(&mut self, origin: usize, upto: u64) {
        if let Some(s) = self.streams.get_mut(origin) {
            s.known_high = s.known_high.max(upto);
        }
    }

    /// Delivers whatever the normal rules allow. With `sequence` (this member leads the view and no
    /// flush is under way), agreed items reaching the head of their stream are sequenced: the new
    /// [`Item::Sequence`] entries are appended to this member's stream and returned with their
    /// numbers, for the caller to send.
    pub fn deliver(&mut self, sequence: bool) -> (Vec<Delivered>, Vec<(u64, Item)>) {
        self.deliver_gated(sequence, true)
    }

    /// [`ViewStreams::deliver`]; `gate_safe` false delivers safe items without waiting for their
    /// stability (after a flush, every surviving member holds everything up to the cut).
    fn deliver_gated(
        &mut self,
        sequence: bool,
        gate_safe: bool,
    ) -> (Vec<Delivered>, Vec<(u64, Item)>) {
        #[cfg(debug_assertions)]
        let before: Vec<u64> = self.streams.iter().map(|s| s.delivered).collect();
        self.collect();
        let r = self.deliver_inner(sequence, gate_safe);
        #[cfg(debug_assertions)]
        for (s, b) in self.streams.iter().zip(before) {
            debug_assert!(s.delivered >= b, "delivery cursors never go back");
            debug_assert!(
                s.delivered <= s.contiguous && s.contiguous <= s.known_high.max(s.contiguous),
                "delivered {} <= held in order {}",
                s.delivered,
                s.contiguous
            );
        }
        r
    }

    fn deliver_inner(
        &mut self,
        sequence: bool,
        gate_safe: bool,
    ) -> (Vec<Delivered>, Vec<(u64, Item)>) {
        let mut out = Vec::new();
        let mut new_own = Vec::new();
        let leader_seq = sequence && self.me == 0;
        loop {
            let mut progress = false;
            for i in 0..self.streams.len() {
                loop {
                    let next = self.streams[i].delivered + 1;
                    if next > self.streams[i].contiguous {
                        break;
                    }
                    let Some(item) = self.streams[i].items.get(&next) else {
                        // Collected items are always delivered ones; nothing past delivered is gone.
                        break;
                    };
                    match item {
                        Item::Sequence { origin, seq } => {
                            let (o, seq) = (usize::from(*origin), *seq);
                            if i != 0 || o == 0 || o >= self.streams.len() {
                                // Only the leader's stream orders; anything else is ignored.
                                self.streams[i].delivered = next;
                                progress = true;
                                continue;
                            }
                            let so = &self.streams[o];
                            if so.delivered >= seq {
                                self.streams[0].delivered = next;
                                progress = true;
                                continue;
                            }
                            if so.delivered + 1 != seq
                                || so.contiguous < seq
                                || !so.items.contains_key(&seq)
                                || (gate_safe
                                    && so.stable < seq
                                    && so.items.get(&seq).is_some_and(Item::is_safe))
                            {
                                break;
                            }
                            let item = self.take(o, seq);
                            self.streams[o].delivered = seq;
                            self.streams[0].delivered = next;
                            if let Some(item) = item {
                                out.push(Delivered {
                                    origin: o,
                                    seq,
                                    item,
                                });
                            }
                            progress = true;
                        }
                        it if it.is_agreed() && i != 0 => {
                            if leader_seq && self.sequenced[i] < next {
                                self.sequenced[i] = next;
                                let entry = Item::Sequence {
                                    origin: u16::try_from(i).unwrap_or(u16::MAX),
                                    seq: next,
                                };
                                let s = self.push_own(entry.clone());
                                new_own.push((s, entry));
                                progress = true;
                            }
                            break;
                        }
                        it if gate_safe && it.is_safe() && self.streams[i].stable < next => {
                            // The leader's own safe item, at its place in the order: not yet
                            // held by every member.
                            break;
                        }
                        _ => {
                            let item = self.take(i, next);
                            self.streams[i].delivered = next;
                            if let Some(item) = item {
                                out.push(Delivered {
                                    origin: i,
                                    seq: next,
                                    item,
                                });
                            }
                            progress = true;
                        }
                    }
                }
            }
            if !progress {
                break;
            }
            self.moved = true;
        }
        self.collect();
        (out, new_own)
    }

    /// Delivers exactly the items up to `cut` (which this member holds: see [`ViewStreams::holds`]):
    /// first what the agreed order allows, then the rest sender by sender in view order. Items past
    /// the cut are never delivered.
    pub fn deliver_to_cut(&mut self, cut: &[u64]) -> Vec<Delivered> {
        for (s, c) in self.streams.iter_mut().zip(cut) {
            s.contiguous = s.contiguous.min(*c);
        }
        let (mut out, _) = self.deliver_gated(false, false);
        for (i, c) in cut.iter().enumerate().take(self.streams.len()) {
            while self.streams[i].delivered < *c {
                let next = self.streams[i].delivered + 1;
                let item = self.take(i, next);
                self.streams[i].delivered = next;
                self.moved = true;
                match item {
                    Some(Item::Sequence { .. }) | None => {}
                    Some(item) => out.push(Delivered {
                        origin: i,
                        seq: next,
                        item,
                    }),
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::wire::Order;

    fn app(order: Order, tag: u8) -> Item {
        Item::App {
            group: "g".into(),
            order,
            payload: vec![tag],
        }
    }

    fn tags(d: &[Delivered]) -> Vec<u8> {
        d.iter()
            .map(|d| match &d.item {
                Item::App { payload, .. } => payload[0],
                _ => 255,
            })
            .collect()
    }

    #[test]
    fn members_whose_acknowledgements_lag_are_listed() {
        // Member 1 of four holds two items of member 2.
        let mut v = ViewStreams::new(4, 1, 16, 1 << 20);
        assert!(v.lagging().is_empty(), "nothing held, nothing lags");
        v.receive(2, 1, app(Order::Fifo, 1));
        v.receive(2, 2, app(Order::Fifo, 2));
        assert_eq!(
            v.lagging(),
            vec![0, 3],
            "no one said so yet (the sender holds its own)"
        );
        v.on_acks(0, &[0, 0, 2, 0]);
        v.on_acks(2, &[0, 0, 2, 0]);
        assert_eq!(v.lagging(), vec![3]);
        v.on_acks(3, &[0, 0, 1, 0]);
        assert_eq!(v.lagging(), vec![3], "one item short");
        v.on_acks(3, &[0, 0, 2, 0]);
        assert!(v.lagging().is_empty());
    }

    #[test]
    fn fifo_waits_for_gaps_and_drops_duplicates() {
        let mut v = ViewStreams::new(2, 0, 16, 1 << 20);
        assert_eq!(v.receive(1, 2, app(Order::Fifo, 2)), Received::New);
        assert!(v.deliver(true).0.is_empty());
        assert_eq!(v.gaps(8), vec![(1, 1, 1)]);
        assert_eq!(v.receive(1, 1, app(Order::Fifo, 1)), Received::New);
        assert_eq!(v.receive(1, 1, app(Order::Fifo, 1)), Received::Duplicate);
        assert_eq!(tags(&v.deliver(true).0), vec![1, 2]);
        assert_eq!(v.receive(1, 40, app(Order::Fifo, 1)), Received::Full);
    }

    #[test]
    fn safe_items_wait_for_every_member_and_hold_up_the_order() {
        // Member 1 of three; member 2 sends a safe item then an agreed one.
        let mut v = ViewStreams::new(3, 1, 16, 1 << 20);
        v.receive(2, 1, app(Order::Safe, 1));
        v.receive(2, 2, app(Order::Agreed, 2));
        let seq = |seq| Item::Sequence { origin: 2, seq };
        v.receive(0, 1, seq(1));
        v.receive(0, 2, seq(2));
        assert!(
            v.deliver(false).0.is_empty(),
            "the leader's acknowledgement is missing: the safe item and what follows wait"
        );
        // The leader holds member 2's first item: it is stable (the sender holds its own).
        v.on_acks(0, &[2, 0, 1]);
        assert_eq!(tags(&v.deliver(false).0), vec![1, 2]);
    }

    #[test]
    fn the_leaders_own_safe_item_waits_too_and_a_cut_delivers_it() {
        // Member 1 of three: the leader's own safe item, then a FIFO one behind it.
        let mut v = ViewStreams::new(3, 1, 16, 1 << 20);
        v.receive(0, 1, app(Order::Safe, 7));
        v.receive(0, 2, app(Order::Fifo, 8));
        assert!(
            v.deliver(false).0.is_empty(),
            "the leader and this member hold it; member 2 has not said so"
        );
        let mut w = v.clone();
        v.on_acks(2, &[1, 0, 0]);
        assert_eq!(tags(&v.deliver(false).0), vec![7, 8]);
        // A flush instead delivers everything up to the cut: every survivor holds it.
        assert_eq!(tags(&w.deliver_to_cut(&[2, 0, 0])), vec![7, 8]);
    }

    #[test]
    fn agreed_items_wait_for_the_leaders_sequence() {
        // Member 1's view: the leader (0) sequences member 2's agreed item.
        let mut v = ViewStreams::new(3, 1, 16, 1 << 20);
        v.receive(2, 1, app(Order::Agreed, 7));
        v.receive(2, 2, app(Order::Fifo, 8));
        assert!(v.deliver(true).0.is_empty(), "not the leader: waits");
        v.receive(0, 1, Item::Sequence { origin: 2, seq: 1 });
        assert_eq!(tags(&v.deliver(false).0), vec![7, 8]);
    }

    #[test]
    fn leader_sequences_in_sender_order() {
        let mut v = ViewStreams::new(2, 0, 16, 1 << 20);
        v.receive(1, 1, app(Order::Agreed, 1));
        v.receive(1, 2, app(Order::Agreed, 2));
        let (d, own) = v.deliver(true);
        assert_eq!(tags(&d), vec![1, 2]);
        assert_eq!(own.len(), 2);
        assert_eq!(own[0].1, Item::Sequence { origin: 1, seq: 1 });
    }

    #[test]
    fn cut_delivers_exactly_up_to_it() {
        let mut v = ViewStreams::new(3, 1, 16, 1 << 20);
        v.receive(2, 1, app(Order::Agreed, 1));
        v.receive(2, 2, app(Order::Fifo, 2));
        v.receive(2, 3, app(Order::Fifo, 3));
        v.receive(0, 1, app(Order::Agreed, 9));
        let d = v.deliver_to_cut(&[1, 0, 2]);
        assert_eq!(tags(&d), vec![9, 1, 2]);
    }

    fn pieces(order: Order, len: usize, cap: usize) -> Vec<Item> {
        let mut f = crate::group::fragment::Fragmenter::new("g".into(), order, vec![5; len], cap);
        std::iter::from_fn(|| f.next_fragment())
            .map(Item::Fragment)
            .collect()
    }

    #[test]
    fn a_large_message_is_delivered_whole_at_its_last_piece() {
        let mut v = ViewStreams::new(2, 0, 16, 1 << 20);
        let p = pieces(Order::Fifo, 300, 100);
        for (k, it) in p.iter().enumerate() {
            v.receive(1, k as u64 + 1, it.clone());
        }
        v.receive(1, 4, app(Order::Fifo, 4));
        let d = v.deliver(true).0;
        assert_eq!(d.len(), 2);
        assert!(matches!(&d[0].item, Item::App { payload, .. } if payload.len() == 300));
        assert_eq!(d[0].seq, 3, "delivered at the place of its last piece");
        assert_eq!(v.take_fragment_stats().reassembled, 1);
    }

    #[test]
    fn an_agreed_large_message_is_sequenced_once_by_its_last_piece() {
        let mut v = ViewStreams::new(3, 0, 16, 1 << 20);
        for (k, it) in pieces(Order::Agreed, 300, 100).into_iter().enumerate() {
            v.receive(2, k as u64 + 1, it);
        }
        let (d, own) = v.deliver(true);
        assert_eq!(own, vec![(1, Item::Sequence { origin: 2, seq: 3 })]);
        assert!(matches!(
            &d[..],
            [Delivered {
                origin: 2,
                seq: 3,
                item: Item::App { .. }
            }]
        ));
    }

    #[test]
    fn a_message_cut_short_by_the_flush_is_delivered_to_no_one() {
        let mut v = ViewStreams::new(2, 1, 16, 1 << 20);
        let p = pieces(Order::Fifo, 300, 100);
        v.receive(0, 1, p[0].clone());
        v.receive(0, 2, p[1].clone());
        assert!(v.deliver_to_cut(&[2, 0]).is_empty());
        assert_eq!(
            v.reassembly_bytes(),
            200,
            "held only until the view's streams go"
        );
    }

    #[test]
    fn a_message_above_max_message_size_is_refused_and_counted() {
        let mut v = ViewStreams::new(2, 0, 16, 250);
        for (k, it) in pieces(Order::Fifo, 300, 100).into_iter().enumerate() {
            v.receive(1, k as u64 + 1, it);
        }
        v.receive(1, 4, app(Order::Fifo, 4));
        assert_eq!(tags(&v.deliver(true).0), vec![4]);
        assert_eq!(v.take_fragment_stats().refused, 1);
    }

    #[test]
    fn stability_frees_the_window() {
        let mut v = ViewStreams::new(2, 0, 16, 1 << 20);
        v.push_own(app(Order::Fifo, 1));
        v.deliver(true);
        assert!(v.unstable_bytes() > 0);
        v.on_acks(1, &[1, 0]);
        assert_eq!(v.unstable_bytes(), 0);
        assert!(v.get(0, 1).is_none());
    }
}
