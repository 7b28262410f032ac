//! A concurrent patricia (radix) tree over IPv4 and IPv6 prefixes whose nodes carry subtree sums.
//!
//! This is the structure behind `inbound_cidr` and `outbound_cidr`: every node of `/12` or longer
//! (`/32` for IPv6) counts the connections of every prefix beneath it, so the count for any such
//! netblock is one walk from the root and one load. The few shorter nodes near the root keep only
//! their own count and are summed from the nodes below them when read: every increment would
//! otherwise write the same handful of counters, and increments would not scale with threads.
//!
//! # Concurrency
//!
//! - Readers never wait and never write: a lookup is a walk of atomic pointer loads.
//! - Increments and decrements of an existing path are compare-and-swap additions on the counters
//!   of the summing nodes along it; there is no lock anywhere, global or per node.
//! - A new prefix is either hung in an empty child slot (one CAS) or, when it falls inside a
//!   compressed edge, spliced above an existing node `C`. Splicing cannot simply put a new node
//!   `B` above `C` and copy `C`'s count into it: an increment that had already read the old edge
//!   would add to `C` after the copy and be missing from `B`. So a splice *freezes* `C` first: a
//!   CAS sets the frozen bit of `C`'s counter word (the count it held at that instant is the
//!   snapshot), then both child slots of `C` are tagged frozen. After that nobody can change `C`:
//!   an addition that finds the bit set fails and is retried against `C`'s replacement, and an
//!   insertion into a tagged slot fails likewise. The splicer links `B` (holding the snapshot plus
//!   its own delta) over a fresh copy `C'` of `C` that shares `C`'s children. Any thread that meets
//!   a frozen node may finish the job by replacing it with a plain copy, so no thread ever waits
//!   for another (lock-free).
//! - [`CidrTree::prune`] removes, while other threads add and count, the childless nodes whose
//!   count is zero and through which no addition can be under way: host prefixes (`/32`,
//!   `/128`: nothing lies below them) and the short prefixes that do not sum (an addition passes
//!   them without writing). It freezes such a node at exactly zero with one CAS (an addition that
//!   finds it frozen retries against the slot, which is then empty or holds a live copy), tags
//!   its child slots so nothing can be hung below it, and unlinks it with one CAS. A summing
//!   branch point between them is not pruned: its count may hold additions still on their way
//!   to a prefix below it, indistinguishable from its own count, so it stays as a zero remnant
//!   (these are what the Momentum console shows too: branch points such as `10.0.0.0/8` above a
//!   single `/24`) until the tree is rebuilt.
//!
//! # Reclamation
//!
//! A frozen node that has been replaced or pruned is retired with crossbeam-epoch's
//! `defer_destroy` by the one thread whose CAS unlinked it. Every operation runs pinned, so a node is freed only after
//! every thread that could have loaded a pointer to it has unpinned. Only the node itself is
//! freed; its children are shared with the copy that replaced it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

pub use crossbeam_epoch::Guard;
use crossbeam_epoch::{self as epoch, Atomic, Owned, Shared};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Set in a counter word when its node has been frozen for replacement.
const FROZEN: u64 = 1 << 63;
/// Counts are stored biased so that signed additions never touch the frozen bit.
const BIAS: u64 = 1 << 62;
/// Tag on a child slot of a frozen node.
const SLOT_FROZEN: usize = 1;

fn pack(count: i64) -> u64 {
    BIAS.wrapping_add(count as u64)
}

fn unpack(word: u64) -> i64 {
    (word & !FROZEN).wrapping_sub(BIAS) as i64
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
    /// Frozen bit plus biased count: the subtree sum when `sums`, else the node's own count.
    word: AtomicU64,
    /// Whether `word` holds the subtree sum. Short prefixes (the few nodes every increment would
    /// otherwise hit, see [`SUMS_FROM_V4`]) hold only their own count and are summed on read.
    sums: bool,
    children: [Atomic<Node>; 2],
}

/// IPv4 nodes at least this long carry subtree sums; shorter ones are summed when read.
///
/// Every increment adds to every summing node above it, so the nodes near the root are hit by
/// every thread: keeping them out of the write path is what lets increments scale with threads.
/// A lookup of a block shorter than this walks the (few) summing nodes below it instead.
pub const SUMS_FROM_V4: u8 = 12;
/// The IPv6 counterpart of [`SUMS_FROM_V4`].
pub const SUMS_FROM_V6: u8 = 32;

impl Node {
    fn new(key: u128, len: u8, count: i64, sums: bool) -> Self {
        Node {
            key,
            len,
            word: AtomicU64::new(pack(count)),
            sums,
            children: [Atomic::null(), Atomic::null()],
        }
    }

    fn count(&self) -> i64 {
        unpack(self.word.load(Ordering::Acquire))
    }

    /// Adds `delta` unless the node is frozen; `false` means the addition did not happen.
    fn try_add(&self, delta: i64) -> bool {
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            if word & FROZEN != 0 {
                return false;
            }
            match self.word.compare_exchange_weak(
                word,
                word.wrapping_add(delta as u64),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => word = seen,
            }
        }
    }

    /// Sets the frozen bit; returns the word it replaced, or `None` if someone else froze it.
    fn freeze(&self) -> Option<u64> {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            if word & FROZEN != 0 {
                return None;
            }
            match self.word.compare_exchange_weak(
                word,
                word | FROZEN,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(word),
                Err(seen) => word = seen,
            }
        }
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

fn sums_from(family: Family) -> u8 {
    match family {
        Family::V4 => SUMS_FROM_V4,
        Family::V6 => SUMS_FROM_V6,
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

/// Concurrent CIDR tree of signed counts with subtree sums (see the module documentation).
///
/// `CidrTree` is `Send + Sync`; share it behind an `Arc` and call [`CidrTree::add`] and
/// [`CidrTree::count`] from any number of threads. Counts must stay within ±2^61.
pub struct CidrTree {
    /// Sentinel roots (`0.0.0.0/0`, `::/0`); never frozen, their own counter unused.
    roots: [Node; 2],
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
            roots: [Node::new(0, 0, 0, false), Node::new(0, 0, 0, false)],
        }
    }

    fn root(&self, family: Family) -> &Node {
        match family {
            Family::V4 => &self.roots[0],
            Family::V6 => &self.roots[1],
        }
    }

    /// Adds `delta` to `net` and to every node above it (creating the prefix if needed).
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
        let root = self.root(family);
        let from = sums_from(family);
        // The deepest node on the path that our delta has been added to or passed (the root
        // stands for "none yet"); every summing node above it holds the delta.
        let mut parent: &Node = root;
        loop {
            if parent.len == len && !std::ptr::eq(parent, root) {
                return;
            }
            if len == 0 {
                // The /0 netblock is the sentinel: it holds only its own count (never frozen).
                root.try_add(delta);
                return;
            }
            let slot = &parent.children[bit(key, parent.len)];
            let current = slot.load(Ordering::Acquire, guard);
            if current.tag() == SLOT_FROZEN {
                // `parent` is being replaced; its snapshot holds our delta (or it does not sum and
                // holds nothing of ours), carry on in the copy.
                parent = match find_live(root, parent.key, parent.len, guard) {
                    Some(live) => live,
                    // Pruned: only nodes no addition writes while passing are pruned (see
                    // `prune`), and every node above one of those is one too, so nothing holds
                    // our delta yet; start again from the root.
                    None => root,
                };
                continue;
            }
            // SAFETY: `current` was loaded under `guard`; retired nodes outlive every pin.
            let Some(child) = (unsafe { current.as_ref() }) else {
                let leaf = Owned::new(Node::new(key, len, delta, len >= from));
                if slot
                    .compare_exchange(current, leaf, Ordering::AcqRel, Ordering::Acquire, guard)
                    .is_ok()
                {
                    return;
                }
                continue;
            };
            if covers(child.key, child.len, key, len) {
                if !child.sums && child.len < len {
                    // Not summing and not the target: nothing to add here, pass through.
                    parent = child;
                } else if child.try_add(delta) {
                    parent = child;
                } else {
                    help_replace(slot, current, guard);
                }
                continue;
            }
            // `net` lies inside the compressed edge above `child`: splice a node in.
            let Some(word) = child.freeze() else {
                help_replace(slot, current, guard);
                continue;
            };
            let kids = child.freeze_children(guard);
            let copy = Owned::new(Node {
                key: child.key,
                len: child.len,
                word: AtomicU64::new(word),
                sums: child.sums,
                children: [Atomic::from(kids[0]), Atomic::from(kids[1])],
            })
            .into_shared(guard);
            let split = common_len(child.key, key, len.min(child.len));
            // A summing middle node holds everything below it; `child` then sums too, since
            // summing depends only on the length.
            let summing = split >= from;
            let below = if summing { unpack(word) } else { 0 };
            let (middle, leaf) = if split == len {
                let middle = Node::new(key, len, below + delta, summing);
                middle.children[bit(child.key, len)].store(copy, Ordering::Relaxed);
                (middle, Shared::null())
            } else {
                let leaf = Owned::new(Node::new(key, len, delta, len >= from)).into_shared(guard);
                let through = if summing { below + delta } else { 0 };
                let middle = Node::new(mask(key, split), split, through, summing);
                middle.children[bit(child.key, split)].store(copy, Ordering::Relaxed);
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
                Ok(_) => {
                    // SAFETY: `child` is now unreachable from the tree; pinned readers keep it alive.
                    unsafe { guard.defer_destroy(current) };
                    return;
                }
                Err(_) => {
                    // Someone replaced `child` first. Our nodes were never shared: free them.
                    // SAFETY: `copy` and `leaf` were allocated above and never published.
                    unsafe {
                        drop(copy.into_owned());
                        if !leaf.is_null() {
                            drop(leaf.into_owned());
                        }
                    }
                }
            }
        }
    }

    /// Adds `delta` to the host prefix of `addr` (`/32` or `/128`).
    pub fn add_addr(&self, addr: IpAddr, delta: i64) {
        self.add(IpNet::from(addr), delta);
    }

    /// The sum of every count inside `net`: one walk, lock-free.
    pub fn count(&self, net: IpNet) -> i64 {
        self.count_with(net, &epoch::pin())
    }

    /// [`CidrTree::count`] under a guard the caller holds (see [`pin`]): a thread doing many
    /// lookups in a row pins once for all of them.
    pub fn count_with(&self, net: IpNet, guard: &Guard) -> i64 {
        let (family, key, len) = encode(net);
        let root = self.root(family);
        let mut node: &Node = root;
        if len == 0 {
            return subtree_sum(root, guard);
        }
        loop {
            let slot = &node.children[bit(key, node.len)];
            // SAFETY: loaded under `guard`.
            let Some(child) = (unsafe { slot.load(Ordering::Acquire, guard).with_tag(0).as_ref() })
            else {
                return 0;
            };
            // Both keys are masked to their lengths: the leading equal bits decide everything.
            let same = (child.key ^ key).leading_zeros();
            if child.len >= len {
                // `net` covers `child` or misses it. If it covers it, everything under `net` is
                // under `child`, the only node on that side of `node`.
                return if same >= u32::from(len) {
                    subtree_sum(child, guard)
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

    /// Each node's own count (its sum minus its children's), where non-zero.
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

    /// Removes the zero-count nodes that can go while other threads use the tree (see the module
    /// documentation): childless host prefixes and childless short (non-summing) prefixes, over
    /// and over until none is left. Counts are unchanged. Returns the number of nodes removed.
    pub fn prune(&self) -> usize {
        let guard = &epoch::pin();
        let mut removed = 0;
        loop {
            let pass: usize = [(&self.roots[0], 32), (&self.roots[1], 128)]
                .into_iter()
                .map(|(root, host_len)| prune_below(root, host_len, guard))
                .sum();
            if pass == 0 {
                return removed;
            }
            removed += pass;
        }
    }

    /// Number of nodes (including zero-count remnants), for memory accounting.
    pub fn node_count(&self) -> usize {
        let mut nodes = 0;
        self.walk(|_, _, _| nodes += 1);
        nodes
    }

    fn walk(&self, mut visit: impl FnMut(IpNet, i64, i64)) {
        let guard = &epoch::pin();
        for (family, root) in [(Family::V4, &self.roots[0]), (Family::V6, &self.roots[1])] {
            let mut stack: Vec<&Node> = Vec::new();
            let own = root.count();
            if own != 0 {
                visit(decode(family, 0, 0), subtree_sum(root, guard), own);
            }
            push_children(root, &mut stack, guard);
            while let Some(node) = stack.pop() {
                let count = subtree_sum(node, guard);
                let own = count - child_counts(node, guard);
                visit(decode(family, node.key, node.len), count, own);
                push_children(node, &mut stack, guard);
            }
        }
    }
}

/// Pins the current thread for [`CidrTree::count_with`] and [`CidrTree::add_with`]. Holding a
/// guard delays the reclamation of replaced nodes, so hold it for a batch, not forever.
pub fn pin() -> Guard {
    epoch::pin()
}

/// The sum of every count in `node`'s subtree: stored if `node` sums, else added up from its
/// children (which, past [`SUMS_FROM_V4`] / [`SUMS_FROM_V6`], store theirs).
fn subtree_sum(node: &Node, guard: &Guard) -> i64 {
    if node.sums {
        node.count()
    } else {
        node.count() + child_counts(node, guard)
    }
}

fn child_counts(node: &Node, guard: &Guard) -> i64 {
    node.children
        .iter()
        // SAFETY: loaded under `guard`.
        .filter_map(|slot| unsafe { slot.load(Ordering::Acquire, guard).with_tag(0).as_ref() })
        .map(|child| subtree_sum(child, guard))
        .sum()
}

fn push_children<'g>(node: &Node, stack: &mut Vec<&'g Node>, guard: &'g Guard) {
    // Pushed high child first so that the low child is visited first.
    for slot in node.children.iter().rev() {
        // SAFETY: loaded under `guard`.
        if let Some(child) = unsafe { slot.load(Ordering::Acquire, guard).with_tag(0).as_ref() } {
            stack.push(child);
        }
    }
}

/// Prunes below `node`, children first (see [`CidrTree::prune`]), in a family whose host
/// prefixes are `host_len` long; returns the nodes removed.
fn prune_below(node: &Node, host_len: u8, guard: &Guard) -> usize {
    let mut removed = 0;
    for slot in &node.children {
        let current = slot.load(Ordering::Acquire, guard);
        if current.tag() == SLOT_FROZEN {
            // `node` is being replaced; its copy is pruned another time.
            continue;
        }
        // SAFETY: loaded under `guard`.
        let Some(child) = (unsafe { current.as_ref() }) else {
            continue;
        };
        removed += prune_below(child, host_len, guard);
        if try_unlink(slot, current, child, child.len == host_len, guard) {
            removed += 1;
        }
    }
    removed
}

/// Unlinks `child` (in `slot` as `current`) if it is childless, at zero, and no addition can be
/// passing through it: a host prefix or a node that does not sum.
fn try_unlink<'g>(
    slot: &Atomic<Node>,
    current: Shared<'g, Node>,
    child: &Node,
    host: bool,
    guard: &'g Guard,
) -> bool {
    if (!host && child.sums)
        || child
            .children
            .iter()
            .any(|c| !c.load(Ordering::Acquire, guard).is_null())
    {
        return false;
    }
    // Frozen at exactly zero: from now on no addition changes it.
    if child
        .word
        .compare_exchange(
            pack(0),
            pack(0) | FROZEN,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        return false;
    }
    let kids = child.freeze_children(guard);
    if kids.iter().any(|k| !k.is_null()) {
        // A prefix was hung below it meanwhile: keep it, as a live copy.
        help_replace(slot, current, guard);
        return false;
    }
    if slot
        .compare_exchange(
            current,
            Shared::null(),
            Ordering::AcqRel,
            Ordering::Acquire,
            guard,
        )
        .is_ok()
    {
        // SAFETY: `child` is unreachable from the tree now; pinned readers keep it alive.
        unsafe { guard.defer_destroy(current) };
        true
    } else {
        // A helper replaced it by a live copy first (or the parent is being replaced); the
        // copy holds zero and goes another time.
        false
    }
}

/// Replaces the frozen node `current` in `slot` by an unfrozen copy sharing its children.
fn help_replace(slot: &Atomic<Node>, current: Shared<'_, Node>, guard: &Guard) {
    // SAFETY: `current` was loaded under `guard`.
    let Some(frozen) = (unsafe { current.as_ref() }) else {
        return;
    };
    let kids = frozen.freeze_children(guard);
    let copy = Owned::new(Node {
        key: frozen.key,
        len: frozen.len,
        word: AtomicU64::new(frozen.word.load(Ordering::Acquire) & !FROZEN),
        sums: frozen.sums,
        children: [Atomic::from(kids[0]), Atomic::from(kids[1])],
    });
    if slot
        .compare_exchange(current, copy, Ordering::AcqRel, Ordering::Acquire, guard)
        .is_ok()
    {
        // SAFETY: `current` is unreachable from the tree now; pinned readers keep it alive.
        unsafe { guard.defer_destroy(current) };
    }
}

/// The live (unfrozen, linked) node for exactly `(key, len)`, helping frozen nodes on the way.
fn find_live<'g>(root: &'g Node, key: u128, len: u8, guard: &'g Guard) -> Option<&'g Node> {
    'restart: loop {
        let mut node = root;
        loop {
            let slot = &node.children[bit(key, node.len)];
            let current = slot.load(Ordering::Acquire, guard);
            // SAFETY: loaded under `guard`.
            let child = unsafe { current.with_tag(0).as_ref() }?;
            if !covers(child.key, child.len, key, len) {
                return None;
            }
            if child.word.load(Ordering::Acquire) & FROZEN != 0 {
                // Replace frozen nodes top-down; a tagged slot means `node` itself froze since we
                // passed it, and the restart will meet it first.
                if current.tag() == 0 {
                    help_replace(slot, current, guard);
                }
                continue 'restart;
            }
            if child.len == len {
                return Some(child);
            }
            node = child;
        }
    }
}

impl Drop for CidrTree {
    fn drop(&mut self) {
        // `&mut self`: no other thread can reach the tree. Free every linked node once.
        // SAFETY: exclusive access; retired nodes are not linked and are freed by the epoch.
        let guard = unsafe { epoch::unprotected() };
        let mut stack = Vec::new();
        for root in &self.roots {
            for slot in &root.children {
                stack.push(slot.load(Ordering::Relaxed, guard).with_tag(0));
            }
        }
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
                "2000::/4",
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
    fn prune_removes_zero_hosts_and_short_prefixes_only() {
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
        // A summing branch point at zero stays: it may hold additions on their way below.
        tree.add_addr(ip("10.0.0.2"), -2);
        tree.add_addr(ip("10.0.1.1"), -2);
        assert_eq!(tree.prune(), 2);
        assert!(tree.entries().is_empty());
        assert_eq!(tree.node_count(), 2, "the /23 and /30 branch points");
        // The tree keeps working.
        tree.add_addr(ip("10.0.0.1"), 5);
        assert_eq!(tree.count(net("10.0.0.0/24")), 5);
    }

    #[test]
    fn prune_while_writers_add_keeps_exact_sums() {
        let tree = Arc::new(CidrTree::new());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pruner = {
            let (tree, stop) = (Arc::clone(&tree), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut removed = 0;
                while !stop.load(Ordering::Relaxed) {
                    removed += tree.prune();
                }
                removed
            })
        };
        let threads = 6;
        let ops = 10_000;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let tree = Arc::clone(&tree);
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
        let removed = pruner.join().unwrap();
        assert!(removed > 0, "the pruner met zero nodes");
        assert_exact(&tree, &expected);
        // Everything withdrawn: every host and short prefix goes; only summing branch points
        // (at zero) may stay.
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
