//! A concurrent CIDR tree of signed counts over IPv4 and IPv6 prefixes, answering the count of
//! any netblock (the sum of every count inside it).
//!
//! This is the structure behind `inbound_cidr` and `outbound_cidr`. Every local update and every
//! remote apply of a replicated CIDR object goes through it, so its hot paths are built to cost a
//! few cache lines each:
//!
//! - **A patricia (radix) tree for the shape.** Nodes hold a prefix and their *own* count only
//!   (no subtree sums), so an increment never walks the path or writes the nodes above it. The
//!   tree gives `cluster shared show` its order and its branch points (the remnants Momentum
//!   prints too, such as `10.0.0.0/8` above a single `/24`), and answers the rare blocks that
//!   fall between strides.
//! - **An exact-prefix index** (a lock-free hash table, [`papaya`]) from each prefix to its tree
//!   node: an increment of a prefix already in the tree is one probe and one CAS on the node; the
//!   count of a host (`/32`, `/128`) is one probe and one load.
//! - **Stride sums** in the same table: for each stride length `S` ([`STRIDES_V4`] `/16`, `/24`;
//!   [`STRIDES_V6`] `/32`, `/48`, `/64`) the sum of every count of length `S` or longer inside
//!   each `/S` block. An increment adds to its prefix's blocks (two for an IPv4 host), so the
//!   count of a `/16` or a `/24` is one probe. Shorter strides would put one counter in every
//!   increment's path (every thread would write it), so blocks shorter than the first stride
//!   are summed from the tree down to it.
//! - The count of a block between strides (a `/22`, a `/8`) walks the tree from the block down to
//!   the next stride, adding the own counts of the nodes above it and one stride sum per `/S`
//!   block below; with no stride below (an IPv4 `/26`), it adds the own counts of the subtree.
//!
//! # Concurrency
//!
//! - Readers never wait and never write: a probe, or a walk of atomic pointer loads.
//! - An increment of an existing prefix is a compare-and-swap addition on its node's counter and
//!   on its stride sums; there is no lock anywhere, global or per node. Nodes in different
//!   blocks share no counter, so increments scale with threads.
//! - A new prefix is hung in an empty child slot (one CAS) or, when it falls inside a compressed
//!   edge, spliced above the child `C` that edge leads to: a new node `B` whose children are `C`
//!   and, unless `B` is the prefix itself, a new leaf. Counts are not in the path, so `C` stays
//!   where it is, shared, and its counter keeps taking additions throughout.
//! - [`CidrTree::prune`] removes, while other threads add and count, childless nodes whose own
//!   count is zero. It *freezes* such a node with one CAS of its counter word from exactly zero to
//!   zero with the frozen bit (an addition that finds the bit set fails), tags its child slots (an
//!   insertion below it fails likewise), and unlinks it with one CAS of its parent's slot. If a
//!   child was hung below it before the tags, the node is replaced by an unfrozen copy that shares
//!   the children instead. Any thread that meets a frozen node or a tagged slot finishes that job
//!   itself and retries, so no thread ever waits for another (lock-free). Stride sums at zero are
//!   frozen and removed the same way.
//! - The index is kept exact for every live node with a count: an addition that went through the
//!   tree publishes its node (a compute on the index that refuses a frozen node), and the thread
//!   whose CAS unlinks a frozen node removes its entry (only if it still names that node) before
//!   retiring it. A node missing from the index holds zero.
//!
//! # Reclamation
//!
//! A node that has been unlinked or replaced is retired by the one thread whose CAS unlinked it,
//! in two grace periods of crossbeam-epoch. That thread removes its index entry, then defers a
//! second removal: a publish that began before the unlink may still insert the node (its
//! compute saw it unfrozen), and once every thread pinned at the unlink has unpinned no such
//! publish is left. Only then is the node handed to `defer_destroy`, which waits for the readers
//! that may have read the entry. Every operation runs pinned before it reads the index, so a
//! node is freed only after every thread that could have loaded a pointer to it has unpinned. Only the node itself is freed; its children are shared
//! with the copy that replaced it. The table reclaims its own entries (papaya's `seize`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

pub use crossbeam_epoch::Guard;
use crossbeam_epoch::{self as epoch, Atomic, Owned, Shared};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use papaya::{Compute, Operation};

/// Set in a counter word when it has been frozen (at zero) for removal.
pub(crate) const FROZEN: u64 = 1 << 63;
/// Counts are stored biased so that signed additions never touch the frozen bit.
const BIAS: u64 = 1 << 62;
/// Tag on a child slot of a frozen node.
const SLOT_FROZEN: usize = 1;

/// IPv4 stride lengths: each `/16` and `/24` block keeps the sum of the counts inside it.
pub const STRIDES_V4: &[u8] = &[16, 24];
/// IPv6 stride lengths (`/32` allocations, `/48` sites, `/64` subnets).
pub const STRIDES_V6: &[u8] = &[32, 48, 64];

/// Second half of a table key: the prefix length, plus this bit for a stride sum (without it,
/// the entry is the index entry of the node for that prefix).
const SUM: u16 = 1 << 8;

type Table = papaya::HashMap<(u128, u16), AtomicU64, foldhash::quality::RandomState>;

pub(crate) fn pack(count: i64) -> u64 {
    BIAS.wrapping_add(count as u64)
}

pub(crate) fn unpack(word: u64) -> i64 {
    (word & !FROZEN).wrapping_sub(BIAS) as i64
}

/// Adds `delta` to a counter word unless it is frozen; `false` means the addition did not happen.
pub(crate) fn try_add_word(word: &AtomicU64, delta: i64) -> bool {
    let mut seen = word.load(Ordering::Relaxed);
    loop {
        if seen & FROZEN != 0 {
            return false;
        }
        match word.compare_exchange_weak(
            seen,
            seen.wrapping_add(delta as u64),
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => return true,
            Err(now) => seen = now,
        }
    }
}

/// Freezes a counter word that holds exactly zero.
pub(crate) fn freeze_zero(word: &AtomicU64) -> bool {
    word.compare_exchange(
        pack(0),
        pack(0) | FROZEN,
        Ordering::AcqRel,
        Ordering::Acquire,
    )
    .is_ok()
}

/// Bits `0..len` of `key`, left-aligned in a `u128`.
fn mask(key: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        key & (!0u128 << (128 - u32::from(len)))
    }
}

/// Bit number `index` (0 = most significant) of `key`.
fn bit(key: u128, index: u8) -> usize {
    ((key >> (127 - u32::from(index))) & 1) as usize
}

/// Whether prefix `(outer, outer_len)` contains prefix `(inner, inner_len)`.
fn covers(outer: u128, outer_len: u8, inner: u128, inner_len: u8) -> bool {
    outer_len <= inner_len && mask(inner, outer_len) == outer
}

fn common_len(a: u128, b: u128, max: u8) -> u8 {
    let same = (a ^ b).leading_zeros().min(u32::from(max));
    same as u8
}

struct Node {
    /// Prefix bits, left-aligned and masked to `len`.
    key: u128,
    len: u8,
    /// Frozen bit plus the biased own count.
    word: AtomicU64,
    children: [Atomic<Node>; 2],
}

impl Node {
    fn new(key: u128, len: u8, count: i64) -> Self {
        Node {
            key,
            len,
            word: AtomicU64::new(pack(count)),
            children: [Atomic::null(), Atomic::null()],
        }
    }

    fn own(&self) -> i64 {
        unpack(self.word.load(Ordering::Acquire))
    }

    fn frozen(&self) -> bool {
        self.word.load(Ordering::Acquire) & FROZEN != 0
    }

    /// Tags both child slots frozen and returns their (stable from now on) contents.
    fn freeze_children<'g>(&self, guard: &'g Guard) -> [Shared<'g, Node>; 2] {
        let freeze = |slot: &Atomic<Node>| loop {
            let current = slot.load(Ordering::Acquire, guard);
            if current.tag() == SLOT_FROZEN {
                return current.with_tag(0);
            }
            if slot
                .compare_exchange(
                    current,
                    current.with_tag(SLOT_FROZEN),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                    guard,
                )
                .is_ok()
            {
                return current;
            }
        };
        [freeze(&self.children[0]), freeze(&self.children[1])]
    }

    fn child<'g>(&self, side: usize, guard: &'g Guard) -> Option<&'g Node> {
        // SAFETY: loaded under `guard`; retired nodes outlive every pin.
        unsafe {
            self.children[side]
                .load(Ordering::Acquire, guard)
                .with_tag(0)
                .as_ref()
        }
    }
}

/// A prefix family: IPv4 keys live in the top 32 bits of the `u128`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    V4,
    V6,
}

fn encode(net: IpNet) -> (Family, u128, u8) {
    match net {
        IpNet::V4(n) => {
            let key = u128::from(u32::from(n.network())) << 96;
            (Family::V4, key, n.prefix_len())
        }
        IpNet::V6(n) => (Family::V6, u128::from(n.network()), n.prefix_len()),
    }
}

fn decode(family: Family, key: u128, len: u8) -> IpNet {
    match family {
        Family::V4 => {
            let addr = Ipv4Addr::from((key >> 96) as u32);
            // The length was bounded to 32 when the key was encoded.
            IpNet::V4(Ipv4Net::new(addr, len).unwrap_or_else(|_| Ipv4Net::from(addr)))
        }
        Family::V6 => {
            let addr = Ipv6Addr::from(key);
            IpNet::V6(Ipv6Net::new(addr, len).unwrap_or_else(|_| Ipv6Net::from(addr)))
        }
    }
}

/// One family's tree, index and stride sums.
struct Tree {
    family: Family,
    /// Sentinel root (`0.0.0.0/0`, `::/0`): never frozen; its counter is the `/0` count.
    root: Node,
    /// Index entries (node pointers) and stride sums; shared with the deferred index cleanups of
    /// retired nodes (see `replace_frozen`), which may run after the tree is gone.
    table: std::sync::Arc<Table>,
    strides: &'static [u8],
    host: u8,
}

type Pinned<'m> = papaya::HashMapRef<
    'm,
    (u128, u16),
    AtomicU64,
    foldhash::quality::RandomState,
    papaya::LocalGuard<'m>,
>;

impl Tree {
    fn new(family: Family) -> Self {
        let (strides, host) = match family {
            Family::V4 => (STRIDES_V4, 32),
            Family::V6 => (STRIDES_V6, 128),
        };
        Tree {
            family,
            root: Node::new(0, 0, 0),
            // Blocking resizes: an incremental one moves entries only on writes, and a
            // table read far more than written would keep probing the old, full one.
            table: std::sync::Arc::new(
                papaya::HashMap::builder()
                    .hasher(foldhash::quality::RandomState::default())
                    .resize_mode(papaya::ResizeMode::Blocking)
                    .build(),
            ),
            strides,
            host,
        }
    }

    fn add(&self, key: u128, len: u8, delta: i64, guard: &Guard) {
        let table = self.table.pin();
        if len == 0 {
            // The /0 netblock is the sentinel (never frozen); no stride covers it.
            try_add_word(&self.root.word, delta);
            return;
        }
        // Every probe first, then the additions: a CAS is a full barrier on x86, so probing
        // between them would wait out each probe's cache misses one after the other.
        let entry = table.get(&(key, u16::from(len)));
        let mut sums: [Option<&AtomicU64>; 3] = [None; 3];
        for (at, &stride) in self.strides.iter().take_while(|&&s| s <= len).enumerate() {
            sums[at] = Some(self.sum_cell(key, stride, &table));
        }
        let fast = entry.is_some_and(|entry| {
            // SAFETY: an index entry names a node that is retired only after the entry is
            // removed; we were pinned before we read it.
            let node = unsafe { &*(entry.load(Ordering::Relaxed) as usize as *const Node) };
            try_add_word(&node.word, delta)
        });
        if !fast {
            self.add_through_tree(key, len, delta, guard, &table);
        }
        for (&stride, sum) in self.strides.iter().zip(sums) {
            let Some(mut sum) = sum else {
                break;
            };
            while !try_add_word(sum, delta) {
                // Frozen at zero by a prune: finish removing it and add to a fresh one.
                let sum_key = (mask(key, stride), u16::from(stride) | SUM);
                let _ = table.remove_if(&sum_key, |_, now| std::ptr::eq(now, sum));
                sum = self.sum_cell(key, stride, &table);
            }
        }
    }

    /// The stride sum of the `/stride` block holding `key`, created at zero if absent.
    fn sum_cell<'t>(&self, key: u128, stride: u8, table: &'t Pinned<'_>) -> &'t AtomicU64 {
        let sum_key = (mask(key, stride), u16::from(stride) | SUM);
        // A probe first: inserting is a write to the table even when the key is there.
        match table.get(&sum_key) {
            Some(sum) => sum,
            None => table.get_or_insert_with(sum_key, || AtomicU64::new(pack(0))),
        }
    }

    /// Adds `delta` to the node of `(key, len)`, hanging or splicing it into the tree first if
    /// needed, then publishes the node in the index.
    fn add_through_tree(&self, key: u128, len: u8, delta: i64, guard: &Guard, table: &Pinned<'_>) {
        'restart: loop {
            let mut parent = &self.root;
            // The slot `parent` was loaded from (none for the root) and what it held.
            let mut above: Option<(&Atomic<Node>, Shared<'_, Node>)> = None;
            loop {
                let slot = &parent.children[bit(key, parent.len)];
                let current = slot.load(Ordering::Acquire, guard);
                if current.tag() == SLOT_FROZEN {
                    // `parent` is frozen: finish its removal (or replacement), then start over.
                    if let Some((parent_slot, parent_shared)) = above {
                        self.replace_frozen(parent_slot, parent_shared, guard, table);
                    }
                    continue 'restart;
                }
                // SAFETY: `current` was loaded under `guard`.
                let Some(child) = (unsafe { current.as_ref() }) else {
                    let leaf = Owned::new(Node::new(key, len, delta));
                    if let Ok(linked) = slot.compare_exchange(
                        current,
                        leaf,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                        guard,
                    ) {
                        self.publish(linked, table);
                        return;
                    }
                    continue;
                };
                if covers(child.key, child.len, key, len) {
                    if child.len < len {
                        above = Some((slot, current));
                        parent = child;
                    } else if try_add_word(&child.word, delta) {
                        self.publish(current, table);
                        return;
                    } else {
                        self.replace_frozen(slot, current, guard, table);
                    }
                    continue;
                }
                // `(key, len)` lies inside the compressed edge above `child`: splice a node in.
                let split = common_len(child.key, key, len.min(child.len));
                let (middle, leaf) = if split == len {
                    let middle = Node::new(key, len, delta);
                    middle.children[bit(child.key, len)].store(current, Ordering::Relaxed);
                    (middle, Shared::null())
                } else {
                    let leaf = Owned::new(Node::new(key, len, delta)).into_shared(guard);
                    let middle = Node::new(mask(key, split), split, 0);
                    middle.children[bit(child.key, split)].store(current, Ordering::Relaxed);
                    middle.children[bit(key, split)].store(leaf, Ordering::Relaxed);
                    (middle, leaf)
                };
                match slot.compare_exchange(
                    current,
                    Owned::new(middle),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                    guard,
                ) {
                    Ok(linked) => {
                        self.publish(if leaf.is_null() { linked } else { leaf }, table);
                        return;
                    }
                    Err(_) => {
                        // The slot changed first; `middle` was dropped with the error. The
                        // leaf was never shared: free it.
                        if !leaf.is_null() {
                            // SAFETY: allocated above and never published.
                            unsafe { drop(leaf.into_owned()) };
                        }
                    }
                }
            }
        }
    }

    /// Makes the index name `node` unless it is frozen (then it holds zero and its unlinker
    /// removes whatever entry names it).
    fn publish(&self, node: Shared<'_, Node>, table: &Pinned<'_>) {
        // SAFETY: `node` is linked (or was, under the caller's pin).
        let Some(n) = (unsafe { node.as_ref() }) else {
            return;
        };
        let ptr = node.as_raw() as usize as u64;
        let _: Compute<'_, _, _, ()> =
            table.compute((n.key, u16::from(n.len)), |entry| match entry {
                Some((_, named)) if named.load(Ordering::Relaxed) == ptr => Operation::Abort(()),
                _ if n.frozen() => Operation::Abort(()),
                _ => Operation::Insert(AtomicU64::new(ptr)),
            });
    }

    /// Unlinks the frozen node `current` from `slot`, or replaces it by an unfrozen copy sharing
    /// its children if it has any; returns whether a node left the tree by this call.
    fn replace_frozen(
        &self,
        slot: &Atomic<Node>,
        current: Shared<'_, Node>,
        guard: &Guard,
        table: &Pinned<'_>,
    ) -> bool {
        // SAFETY: `current` was loaded under `guard`.
        let Some(frozen) = (unsafe { current.as_ref() }) else {
            return false;
        };
        if !frozen.frozen() {
            return false;
        }
        let kids = frozen.freeze_children(guard);
        let removed = kids.iter().all(|k| k.is_null());
        let replacement = if removed {
            Shared::null()
        } else {
            // Frozen at exactly zero: the copy starts at zero.
            Owned::new(Node {
                key: frozen.key,
                len: frozen.len,
                word: AtomicU64::new(pack(0)),
                children: [Atomic::from(kids[0]), Atomic::from(kids[1])],
            })
            .into_shared(guard)
        };
        if slot
            .compare_exchange(
                current,
                replacement,
                Ordering::AcqRel,
                Ordering::Acquire,
                guard,
            )
            .is_ok()
        {
            let ptr = current.as_raw() as usize as u64;
            let entry = (frozen.key, u16::from(frozen.len));
            let names_it =
                move |_: &(u128, u16), named: &AtomicU64| named.load(Ordering::Relaxed) == ptr;
            let _ = table.remove_if(&entry, names_it);
            // A publish that began before this unlink may still put the node in the index (its
            // compute saw the node unfrozen and inserts after). Once every thread pinned now
            // has unpinned, no such publish is left: remove the entry again then, and free the
            // node only after the readers that may have read that entry unpin in turn.
            let late = std::sync::Arc::clone(&self.table);
            guard.defer(move || {
                let again = epoch::pin();
                let _ = late.pin().remove_if(&entry, names_it);
                // SAFETY: unlinked from the tree, out of the index for good, and no thread can
                // reach it but those pinned now, which `defer_destroy` waits for.
                unsafe { again.defer_destroy(Shared::from(ptr as usize as *const Node)) };
            });
            removed
        } else {
            if !replacement.is_null() {
                // SAFETY: allocated above and never published.
                unsafe { drop(replacement.into_owned()) };
            }
            false
        }
    }

    fn count(&self, key: u128, len: u8, guard: &Guard) -> i64 {
        let table = self.table.pin();
        if len == self.host {
            return table.get(&(key, u16::from(len))).map_or(0, |entry| {
                // SAFETY: as in `add`: pinned before the entry was read.
                unsafe { &*(entry.load(Ordering::Relaxed) as usize as *const Node) }.own()
            });
        }
        if self.strides.contains(&len) {
            return table
                .get(&(key, u16::from(len) | SUM))
                .map_or(0, |sum| unpack(sum.load(Ordering::Acquire)));
        }
        let below = self.strides.iter().copied().find(|&s| s > len);
        if len == 0 {
            return self.sum_below(&self.root, below, guard, &table);
        }
        let mut node = &self.root;
        loop {
            let Some(child) = node.child(bit(key, node.len), guard) else {
                return 0;
            };
            // Both keys are masked to their lengths: the leading equal bits decide everything.
            let same = (child.key ^ key).leading_zeros();
            if child.len >= len {
                // The block covers `child` or misses it; if it covers it, everything in the
                // block is under `child`, the only node on that side of `node`.
                return if same >= u32::from(len) {
                    self.sum_below(child, below, guard, &table)
                } else {
                    0
                };
            }
            if same < u32::from(child.len) {
                return 0;
            }
            node = child;
        }
    }

    /// The sum of `node`'s subtree: own counts down to the stride `below`, then one stride sum
    /// per block. The first node of at least `below` bits on a path is the topmost node of its
    /// block (a patricia tree holds the branch point of any two prefixes), so no block is
    /// counted twice.
    fn sum_below(&self, node: &Node, below: Option<u8>, guard: &Guard, table: &Pinned<'_>) -> i64 {
        if let Some(stride) = below
            && node.len >= stride
        {
            return table
                .get(&(mask(node.key, stride), u16::from(stride) | SUM))
                .map_or(0, |sum| unpack(sum.load(Ordering::Acquire)));
        }
        node.own()
            + (0..2)
                .filter_map(|side| node.child(side, guard))
                .map(|child| self.sum_below(child, below, guard, table))
                .sum::<i64>()
    }

    /// Visits every node pre-order (lower addresses first) with its subtree sum and own count;
    /// the root only when its own count is not zero.
    fn walk(&self, guard: &Guard, visit: &mut impl FnMut(IpNet, i64, i64)) {
        let mut rows: Vec<(IpNet, i64, i64)> = Vec::new();
        let total = self.collect(&self.root, guard, &mut rows);
        let own = self.root.own();
        if own != 0 {
            visit(decode(self.family, 0, 0), total, own);
        }
        for (net, count, own) in rows {
            visit(net, count, own);
        }
    }

    /// Appends `node`'s descendants pre-order to `rows` and returns `node`'s subtree sum.
    fn collect(&self, node: &Node, guard: &Guard, rows: &mut Vec<(IpNet, i64, i64)>) -> i64 {
        let mut sum = node.own();
        for side in 0..2 {
            if let Some(child) = node.child(side, guard) {
                let at = rows.len();
                let own = child.own();
                rows.push((decode(self.family, child.key, child.len), 0, own));
                let below = self.collect(child, guard, rows);
                rows[at].1 = below;
                sum += below;
            }
        }
        sum
    }

    /// Prunes below `node`, children first; returns the nodes removed by this call.
    fn prune_below(&self, node: &Node, guard: &Guard, table: &Pinned<'_>) -> usize {
        let mut removed = 0;
        for slot in &node.children {
            let current = slot.load(Ordering::Acquire, guard);
            if current.tag() == SLOT_FROZEN {
                // `node` is being removed; what is below it goes another time.
                continue;
            }
            // SAFETY: loaded under `guard`.
            let Some(child) = (unsafe { current.as_ref() }) else {
                continue;
            };
            removed += self.prune_below(child, guard, table);
            let childless = child
                .children
                .iter()
                .all(|c| c.load(Ordering::Acquire, guard).is_null());
            if child.frozen() || (childless && freeze_zero(&child.word)) {
                removed += usize::from(self.replace_frozen(slot, current, guard, table));
            }
        }
        removed
    }

    fn prune_sums(&self) {
        let table = self.table.pin();
        for (key, sum) in table.iter() {
            if key.1 & SUM != 0 && freeze_zero(sum) {
                let _ = table.remove_if(key, |_, now| std::ptr::eq(now, sum));
            }
        }
    }

    fn free_nodes(&mut self) {
        // `&mut self`: no other thread can reach the tree. Free every linked node once.
        // SAFETY: exclusive access; retired nodes are not linked and are freed by the epoch.
        let guard = unsafe { epoch::unprotected() };
        let mut stack: Vec<Shared<'_, Node>> = self
            .root
            .children
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed, guard).with_tag(0))
            .collect();
        while let Some(shared) = stack.pop() {
            if shared.is_null() {
                continue;
            }
            // SAFETY: every linked node is owned by the tree and reachable exactly once.
            let node = unsafe { shared.into_owned() };
            for slot in &node.children {
                stack.push(slot.load(Ordering::Relaxed, guard).with_tag(0));
            }
        }
    }
}

/// Concurrent CIDR tree of signed counts (see the module documentation).
///
/// `CidrTree` is `Send + Sync`; share it behind an `Arc` and call [`CidrTree::add`] and
/// [`CidrTree::count`] from any number of threads. Counts must stay within ±2^61.
pub struct CidrTree {
    /// Boxed: two tables and two roots are large, and the tree sits in enums beside small types.
    trees: Box<[Tree; 2]>,
}

impl Default for CidrTree {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for CidrTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.entries()).finish()
    }
}

impl CidrTree {
    /// An empty tree.
    pub fn new() -> Self {
        CidrTree {
            trees: Box::new([Tree::new(Family::V4), Tree::new(Family::V6)]),
        }
    }

    fn tree(&self, family: Family) -> &Tree {
        match family {
            Family::V4 => &self.trees[0],
            Family::V6 => &self.trees[1],
        }
    }

    /// Adds `delta` to `net` (creating the prefix if needed).
    ///
    /// Linearizable: once `add` returns, every lookup of a netblock containing `net` reflects it.
    pub fn add(&self, net: IpNet, delta: i64) {
        self.add_with(net, delta, &epoch::pin());
    }

    /// [`CidrTree::add`] under a guard the caller holds (see [`pin`]), saving the pin.
    pub fn add_with(&self, net: IpNet, delta: i64, guard: &Guard) {
        if delta == 0 {
            return;
        }
        let (family, key, len) = encode(net);
        self.tree(family).add(key, len, delta, guard);
    }

    /// Adds `delta` to the host prefix of `addr` (`/32` or `/128`).
    pub fn add_addr(&self, addr: IpAddr, delta: i64) {
        self.add(IpNet::from(addr), delta);
    }

    /// The sum of every count inside `net`, lock-free: one probe for a host or a stride block,
    /// else a walk down to the next stride.
    pub fn count(&self, net: IpNet) -> i64 {
        self.count_with(net, &epoch::pin())
    }

    /// [`CidrTree::count`] under a guard the caller holds (see [`pin`]): a thread doing many
    /// lookups in a row pins once for all of them.
    pub fn count_with(&self, net: IpNet, guard: &Guard) -> i64 {
        let (family, key, len) = encode(net);
        self.tree(family).count(key, len, guard)
    }

    /// The count of the host prefix of `addr`.
    pub fn count_addr(&self, addr: IpAddr) -> i64 {
        self.count(IpNet::from(addr))
    }

    /// Every node with a non-zero count, in the console's order: IPv4 then IPv6, each pre-order
    /// (a prefix before the prefixes inside it, lower addresses first).
    pub fn entries(&self) -> Vec<(IpNet, i64)> {
        let mut out = Vec::new();
        self.walk(|net, count, _own| {
            if count != 0 {
                out.push((net, count));
            }
        });
        out
    }

    /// Each node's own count, where non-zero.
    ///
    /// Exact when no thread is writing; this is what a snapshot or a departure subtracts.
    pub fn own_entries(&self) -> Vec<(IpNet, i64)> {
        let mut out = Vec::new();
        self.walk(|net, _count, own| {
            if own != 0 {
                out.push((net, own));
            }
        });
        out
    }

    /// Removes, while other threads use the tree, every childless node whose own count is zero
    /// (children first, so a branch point left childless goes in the same pass; at most two
    /// passes) and every stride sum at zero.
    /// Counts are unchanged. Returns the number of tree nodes removed.
    pub fn prune(&self) -> usize {
        let guard = &epoch::pin();
        let mut removed = 0;
        // A pass removes a chain bottom-up already; a second takes what the first freed up by
        // racing writers. No more: under steady churn every pass finds new zero nodes, and the
        // caller (the replicator's compaction, under its lock) must return.
        for _ in 0..2 {
            let pass: usize = self
                .trees
                .iter()
                .map(|tree| tree.prune_below(&tree.root, guard, &tree.table.pin()))
                .sum();
            removed += pass;
            if pass == 0 {
                break;
            }
        }
        for tree in self.trees.iter() {
            tree.prune_sums();
        }
        removed
    }

    /// Number of tree nodes (including zero-count branch points), for memory accounting.
    pub fn node_count(&self) -> usize {
        let mut nodes = 0;
        self.walk(|_, _, _| nodes += 1);
        nodes
    }

    fn walk(&self, mut visit: impl FnMut(IpNet, i64, i64)) {
        let guard = &epoch::pin();
        for tree in self.trees.iter() {
            tree.walk(guard, &mut visit);
        }
    }
}

/// Pins the current thread for [`CidrTree::count_with`] and [`CidrTree::add_with`]. Holding a
/// guard delays the reclamation of replaced nodes, so hold it for a batch, not forever.
pub fn pin() -> Guard {
    epoch::pin()
}

impl Drop for CidrTree {
    fn drop(&mut self) {
        for tree in self.trees.iter_mut() {
            tree.free_nodes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Rebuilds the global tree of the `cluster shared show inbound_cidr` sample: the remnant
    /// branch points come from connections that have since closed.
    fn sample_global() -> CidrTree {
        let tree = CidrTree::new();
        for (addr, n) in [("10.0.0.103", 4), ("10.0.0.180", 14), ("10.0.0.181", 13)] {
            tree.add_addr(ip(addr), n);
        }
        // Closed connections whose branch points remain: /8 (10.128.x), /25 (10.0.0.1),
        // /27 (10.0.0.165) and /29 (10.0.0.176).
        for gone in ["10.128.0.1", "10.0.0.1", "10.0.0.165", "10.0.0.176"] {
            tree.add_addr(ip(gone), 1);
            tree.add_addr(ip(gone), -1);
        }
        tree
    }

    /// The `(prefix, count)` pairs of a Momentum `cluster shared show` sample (count, spaces,
    /// prefix per line); the console's renderer prints them back byte for byte
    /// (`console::render` tests).
    fn sample_entries(sample: &str) -> Vec<(IpNet, i64)> {
        sample
            .lines()
            .map(|l| {
                let mut w = l.split_whitespace();
                let count = w.next().and_then(|c| c.parse().ok()).expect("count");
                let prefix = w.next().and_then(|p| p.parse().ok()).expect("prefix");
                (prefix, count)
            })
            .collect()
    }

    #[test]
    fn holds_the_global_sample() {
        let sample = "     31                         10.0.0.0/8
     31                         10.0.0.0/24
      4                         10.0.0.0/25
      4                         10.0.0.103/32
     27                         10.0.0.160/27
     27                         10.0.0.176/29
     27                         10.0.0.180/31
     14                         10.0.0.180/32
     13                         10.0.0.181/32
";
        assert_eq!(sample_global().entries(), sample_entries(sample));
    }

    #[test]
    fn holds_the_member_sample() {
        let tree = CidrTree::new();
        tree.add_addr(ip("10.0.0.180"), 4);
        tree.add_addr(ip("10.0.0.181"), 1);
        for gone in ["10.200.0.1", "10.0.0.176", "10.0.0.165", "10.0.0.1"] {
            tree.add_addr(ip(gone), 1);
            tree.add_addr(ip(gone), -1);
        }
        let sample = "      5                         10.0.0.0/8
      5                         10.0.0.0/24
      5                         10.0.0.160/27
      5                         10.0.0.176/29
      5                         10.0.0.180/31
      4                         10.0.0.180/32
      1                         10.0.0.181/32
";
        assert_eq!(tree.entries(), sample_entries(sample));
    }

    #[test]
    fn counts_any_netblock_in_one_walk() {
        let tree = sample_global();
        assert_eq!(tree.count(net("10.0.0.0/8")), 31);
        assert_eq!(tree.count(net("10.0.0.0/16")), 31);
        assert_eq!(tree.count(net("10.0.0.0/26")), 0);
        assert_eq!(tree.count(net("10.0.0.64/26")), 4);
        assert_eq!(tree.count(net("10.0.0.128/25")), 27);
        assert_eq!(tree.count(net("10.0.0.180/31")), 27);
        assert_eq!(tree.count(net("10.0.0.181/32")), 13);
        assert_eq!(tree.count(net("11.0.0.0/8")), 0);
        assert_eq!(tree.count(net("0.0.0.0/0")), 31);
        assert_eq!(tree.count(net("::/0")), 0);
        tree.add(net("0.0.0.0/0"), 2);
        assert_eq!(tree.count(net("0.0.0.0/0")), 33);
        assert_eq!(tree.entries()[0], (net("0.0.0.0/0"), 33));
        assert_eq!(tree.own_entries()[0], (net("0.0.0.0/0"), 2));
        tree.add(net("0.0.0.0/0"), -2);
        assert_eq!(tree.count_addr(ip("10.0.0.176")), 0);
    }

    #[test]
    fn own_entries_are_the_leaf_deltas() {
        let tree = sample_global();
        tree.add(net("10.0.0.0/24"), 2);
        let own = tree.own_entries();
        assert_eq!(
            own,
            vec![
                (net("10.0.0.0/24"), 2),
                (net("10.0.0.103/32"), 4),
                (net("10.0.0.180/32"), 14),
                (net("10.0.0.181/32"), 13),
            ]
        );
        assert_eq!(tree.count(net("10.0.0.0/8")), 33);
    }

    #[test]
    fn ipv6_and_ipv4_are_separate_and_ordered() {
        let tree = CidrTree::new();
        tree.add_addr(ip("2001:db8::1"), 2);
        tree.add_addr(ip("2001:db8::2"), 3);
        tree.add_addr(ip("192.0.2.1"), 1);
        assert_eq!(tree.count(net("2001:db8::/32")), 5);
        assert_eq!(tree.count(net("2001:db8::/126")), 5);
        assert_eq!(tree.count(net("192.0.2.0/24")), 1);
        let entries = tree.entries();
        assert_eq!(entries[0], (net("192.0.2.1/32"), 1));
        assert_eq!(entries[1], (net("2001:db8::/126"), 5));
        assert_eq!(entries.len(), 4);
    }

    struct SplitMix(u64);
    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }

    fn random_net(rng: &mut SplitMix) -> IpNet {
        let r = rng.next();
        if r.is_multiple_of(5) {
            let addr = Ipv6Addr::from(u128::from(r) << 64 | 0x2001_0db8 << 96);
            IpNet::V6(Ipv6Net::new(addr, 64 + (r % 65) as u8).unwrap().trunc())
        } else {
            // A small address space so that threads collide on nodes and splices.
            let addr = Ipv4Addr::from(0x0a00_0000 | ((r >> 8) as u32 & 0x0000_0fff));
            let len = if r.is_multiple_of(7) {
                4 + (r % 16) as u8
            } else if r.is_multiple_of(3) {
                20 + (r % 13) as u8
            } else {
                32
            };
            IpNet::V4(Ipv4Net::new(addr, len).unwrap().trunc())
        }
    }

    #[test]
    fn concurrent_writers_reach_exact_sums() {
        let tree = Arc::new(CidrTree::new());
        let threads = 8;
        let ops = 10_000;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let tree = Arc::clone(&tree);
                std::thread::spawn(move || {
                    let mut rng = SplitMix(t as u64 * 7919 + 1);
                    let mut mine: HashMap<IpNet, i64> = HashMap::new();
                    for _ in 0..ops {
                        let net = random_net(&mut rng);
                        let delta = (rng.next() % 7) as i64 - 2;
                        tree.add(net, delta);
                        *mine.entry(net).or_default() += delta;
                    }
                    mine
                })
            })
            .collect();
        let mut expected: HashMap<IpNet, i64> = HashMap::new();
        for handle in handles {
            for (net, delta) in handle.join().unwrap() {
                *expected.entry(net).or_default() += delta;
            }
        }
        assert_exact(&tree, &expected);
    }

    /// Every inserted prefix and a few covering blocks hold the exact sum of the deltas of the
    /// prefixes they contain, and own counts add back up to the inserted deltas.
    fn assert_exact(tree: &CidrTree, expected: &HashMap<IpNet, i64>) {
        let mut queries: Vec<IpNet> = expected.keys().copied().step_by(40).collect();
        queries.extend(
            [
                "10.0.0.0/8",
                "10.0.0.0/22",
                "10.0.8.0/21",
                "2001:db8::/32",
                "0.0.0.0/0",
                "8.0.0.0/6",
                "10.0.0.0/12",
                "10.0.0.0/16",
                "10.0.1.0/24",
                "10.0.2.0/23",
                "10.0.3.0/25",
                "2000::/4",
                "2001:db8::/48",
                "2001:db8::/64",
                "2001:db8::/56",
            ]
            .map(net),
        );
        for query in queries {
            let want: i64 = expected
                .iter()
                .filter(|(n, _)| query.contains(*n))
                .map(|(_, d)| d)
                .sum();
            assert_eq!(tree.count(query), want, "{query}");
        }
        let own: HashMap<IpNet, i64> = tree.own_entries().into_iter().collect();
        for (net, delta) in expected {
            assert_eq!(own.get(net).copied().unwrap_or(0), *delta, "{net}");
        }
    }

    #[test]
    fn prune_removes_childless_zero_nodes() {
        let tree = CidrTree::new();
        for host in ["10.0.0.1", "10.0.0.2", "10.0.1.1", "2001:db8::1"] {
            tree.add_addr(ip(host), 2);
        }
        tree.add(net("172.16.0.0/11"), 1);
        let before = tree.node_count();
        assert_eq!(tree.prune(), 0, "nothing is at zero");
        tree.add_addr(ip("10.0.0.1"), -2);
        tree.add_addr(ip("2001:db8::1"), -2);
        tree.add(net("172.16.0.0/11"), -1);
        assert_eq!(tree.prune(), 3);
        assert_eq!(tree.node_count(), before - 3);
        assert_eq!(tree.count(net("10.0.0.0/8")), 4);
        assert_eq!(tree.count(net("10.0.0.0/30")), 2);
        assert_eq!(tree.count(net("::/0")), 0);
        // A branch point left childless goes in the same prune.
        tree.add_addr(ip("10.0.0.2"), -2);
        tree.add_addr(ip("10.0.1.1"), -2);
        assert_eq!(
            tree.prune(),
            4,
            "two hosts, then the /30 and /23 branch points"
        );
        assert!(tree.entries().is_empty());
        assert_eq!(tree.node_count(), 0);
        // The tree keeps working.
        tree.add_addr(ip("10.0.0.1"), 5);
        assert_eq!(tree.count(net("10.0.0.0/24")), 5);
    }

    #[test]
    fn prune_while_writers_add_keeps_exact_sums() {
        let tree = Arc::new(CidrTree::new());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // What the pruner removed so far: the writers go on (bounded) until it has met zero
        // nodes, so that a slow scheduler cannot let them finish before it ever ran.
        let pruned = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let pruner = {
            let (tree, stop, pruned) = (Arc::clone(&tree), Arc::clone(&stop), Arc::clone(&pruned));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    pruned.fetch_add(tree.prune(), Ordering::Relaxed);
                }
            })
        };
        let threads = 6;
        let ops = 10_000;
        let max_ops = 2_000_000;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (tree, pruned) = (Arc::clone(&tree), Arc::clone(&pruned));
                std::thread::spawn(move || {
                    let mut rng = SplitMix(t as u64 * 104_729 + 3);
                    let mut mine: HashMap<IpNet, i64> = HashMap::new();
                    for _ in 0..ops {
                        // Pairs that cancel, so that counts keep going back to zero.
                        let net = random_net(&mut rng);
                        let delta = (rng.next() % 3) as i64 + 1;
                        tree.add(net, delta);
                        if rng.next().is_multiple_of(4) {
                            *mine.entry(net).or_default() += delta;
                        } else {
                            tree.add(net, -delta);
                        }
                    }
                    // Pairs that cancel inside a bounded space (the tree does not grow) until
                    // the pruner has met zero nodes while writers run (bounded).
                    for _ in 0..max_ops {
                        if pruned.load(Ordering::Relaxed) > 0 {
                            break;
                        }
                        let r = rng.next();
                        let net = IpNet::V4(
                            Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | (r as u32 & 0xff)), 32)
                                .unwrap(),
                        );
                        tree.add(net, 1);
                        tree.add(net, -1);
                    }
                    mine
                })
            })
            .collect();
        let mut expected: HashMap<IpNet, i64> = HashMap::new();
        let mut mine_all = Vec::new();
        for handle in handles {
            let mine = handle.join().unwrap();
            for (net, delta) in &mine {
                *expected.entry(*net).or_default() += delta;
            }
            mine_all.push(mine);
        }
        stop.store(true, Ordering::Relaxed);
        pruner.join().unwrap();
        assert!(
            pruned.load(Ordering::Relaxed) > 0,
            "the pruner met zero nodes"
        );
        assert_exact(&tree, &expected);
        // Everything withdrawn: every node goes.
        for mine in mine_all {
            for (net, delta) in mine {
                tree.add(net, -delta);
            }
        }
        let nodes = tree.node_count();
        assert!(tree.prune() > 0);
        assert!(tree.entries().is_empty());
        let mut hosts = 0;
        tree.walk(|n, _, _| hosts += usize::from(n.prefix_len() == n.max_prefix_len()));
        assert_eq!(hosts, 0, "every host prefix is gone");
        assert!(tree.node_count() < nodes);
        assert_eq!(tree.node_count(), 0, "every node is gone");
    }

    #[test]
    fn readers_see_monotonic_counts_while_writers_splice() {
        let tree = Arc::new(CidrTree::new());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|t| {
                let tree = Arc::clone(&tree);
                std::thread::spawn(move || {
                    let mut rng = SplitMix(t + 100);
                    for _ in 0..20_000 {
                        tree.add(random_net(&mut rng), 1);
                    }
                })
            })
            .collect();
        let reader = {
            let tree = Arc::clone(&tree);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let blocks = ["10.0.0.0/8", "10.0.0.0/22", "10.0.4.0/22", "10.0.0.0/30"].map(net);
                let mut last = [0i64; 4];
                while !stop.load(Ordering::Relaxed) {
                    for (i, block) in blocks.iter().enumerate() {
                        let now = tree.count(*block);
                        assert!(now >= last[i], "{block} went from {} to {now}", last[i]);
                        last[i] = now;
                    }
                }
            })
        };
        for writer in writers {
            writer.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        let v4: i64 = tree.count(net("0.0.0.0/0"));
        let v6: i64 = tree.count(net("::/0"));
        assert_eq!(v4 + v6, 40_000);
    }
}
