//! The invariants, checked after every step of the simulation.

use std::collections::{BTreeMap, HashMap};

use cohort_engine::group::{Event, GroupChange, MemberId, Order, ViewId};

/// A message's identity in the simulation: (sender node index, sender incarnation, counter).
pub type MsgId = (u32, u64, u64);

/// A message of `len` bytes (at least 20): its id, then filler that depends on the id and the
/// position, so that a message put back together wrongly (a piece lost, doubled, swapped or taken
/// from another message) fails [`decode_payload`].
/// A message of `len` bytes (at least 20): its id, then filler that depends on the id and the
/// position, so that a message put back together wrongly (a piece lost, doubled, swapped or taken
/// from another message) fails [`decode_payload`].
pub fn encode_payload(id: MsgId, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len.max(20));
    v.extend_from_slice(&id.0.to_be_bytes());
    v.extend_from_slice(&id.1.to_be_bytes());
    v.extend_from_slice(&id.2.to_be_bytes());
    let salt = filler_salt(id);
    let rest = len.saturating_sub(20);
    for w in 0..rest.div_ceil(8) {
        let word = filler(salt, w).to_le_bytes();
        let take = (rest - w * 8).min(8);
        v.extend_from_slice(&word[..take]);
    }
    v
}

fn filler_salt(id: MsgId) -> u64 {
    (u64::from(id.0) << 48) ^ id.1.rotate_left(17) ^ id.2.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Word `w` of a message's filler (splitmix64 of the salt and the position).
fn filler(salt: u64, w: usize) -> u64 {
    let mut z = salt.wrapping_add((w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn decode_payload(p: &[u8]) -> Option<MsgId> {
    if p.len() < 20 {
        return None;
    }
    let id = (
        u32::from_be_bytes(p[0..4].try_into().ok()?),
        u64::from_be_bytes(p[4..12].try_into().ok()?),
        u64::from_be_bytes(p[12..20].try_into().ok()?),
    );
    let salt = filler_salt(id);
    let body = &p[20..];
    let words = body.chunks_exact(8);
    let tail = words.remainder();
    let whole = words.len();
    (words
        .enumerate()
        .all(|(w, c)| u64::from_le_bytes(c.try_into().unwrap_or_default()) == filler(salt, w))
        && filler(salt, whole).to_le_bytes()[..tail.len()] == *tail)
        .then_some(id)
}

/// A join or leave as one member saw it: group, who, joined (true) or left, members after it.
type GroupOp = (String, MemberId, bool, Vec<MemberId>);

/// What one member delivered in a view: every message, the agreed ones, and the group joins and
/// leaves, in order.
type Delivery = (MemberId, Vec<MsgId>, Vec<MsgId>, Vec<GroupOp>);

#[derive(Default)]
struct InView {
    view: Option<(ViewId, Vec<MemberId>)>,
    /// Every message delivered in the current view, in order.
    all: Vec<MsgId>,
    /// Agreed messages delivered in the current view, in order.
    agreed: Vec<MsgId>,
    /// Group joins and leaves applied in the current view, in order.
    group_ops: Vec<GroupOp>,
    last_from: HashMap<MemberId, u64>,
    last_in_view_from: HashMap<MemberId, u64>,
}

/// Records what every member saw and fails on the first broken invariant.
#[derive(Default)]
pub struct Checker {
    views: HashMap<ViewId, Vec<MemberId>>,
    members: HashMap<MemberId, InView>,
    /// (old view, new view) → what the first member to make that move delivered in the old view.
    transitions: HashMap<(ViewId, ViewId), Delivery>,
    /// The agreed order of each view as delivered outside flushes.
    agreed_order: HashMap<ViewId, Vec<MsgId>>,
    /// The order of group joins and leaves in each view, outside flushes.
    group_order: HashMap<ViewId, Vec<GroupOp>>,
    /// The view each message was delivered in.
    delivered_in: HashMap<MsgId, ViewId>,
    /// View installs per member (for the no-flapping check).
    pub installs: BTreeMap<MemberId, u64>,
    pub delivered: u64,
    pub group_ops: u64,
}

impl Checker {
    /// Checks one batch of events that member `m` produced in one call.
    pub fn batch(&mut self, m: &MemberId, events: &[Event]) -> Result<(), String> {
        // Deliveries just before a view change in the same call come from the flush.
        let last_view_change = events
            .iter()
            .rposition(|e| matches!(e, Event::ViewChanged(_)));
        for (i, e) in events.iter().enumerate() {
            let in_flush = last_view_change.is_some_and(|v| i < v);
            match e {
                Event::ViewChanged(v) => self.view_changed(m, v.id, &v.members)?,
                Event::Message {
                    sender,
                    order,
                    payload,
                    view,
                    ..
                } => self.message(m, sender, *order, payload, *view, in_flush)?,
                Event::GroupChanged {
                    group,
                    members,
                    change,
                } => {
                    let op = match change {
                        GroupChange::Joined(who) => {
                            (group.clone(), who.clone(), true, members.clone())
                        }
                        GroupChange::Left(who) => {
                            (group.clone(), who.clone(), false, members.clone())
                        }
                        GroupChange::View => continue,
                    };
                    self.group_op(m, op, in_flush)?;
                }
                Event::LeftCluster => {}
            }
        }
        Ok(())
    }

    fn view_changed(
        &mut self,
        m: &MemberId,
        id: ViewId,
        members: &[MemberId],
    ) -> Result<(), String> {
        if !members.contains(m) {
            return Err(format!("{m} installed view {id:?} without itself"));
        }
        match self.views.get(&id) {
            Some(known) if known != members => {
                return Err(format!(
                    "view agreement: {m} installed {id:?} as {members:?}, another member as {known:?}"
                ));
            }
            Some(_) => {}
            None => {
                self.views.insert(id, members.to_vec());
            }
        }
        *self.installs.entry(m.clone()).or_default() += 1;
        let st = self.members.entry(m.clone()).or_default();
        if let Some((old, _)) = &st.view {
            let old = *old;
            if id <= old {
                return Err(format!(
                    "view ids must grow: {m} went from {old:?} to {id:?}"
                ));
            }
            let all = std::mem::take(&mut st.all);
            let agreed = std::mem::take(&mut st.agreed);
            let ops = std::mem::take(&mut st.group_ops);
            match self.transitions.get(&(old, id)) {
                None => {
                    self.transitions
                        .insert((old, id), (m.clone(), all, agreed, ops));
                }
                Some((other, oall, oagreed, oops)) => {
                    if ops != *oops {
                        return Err(format!(
                            "group joins and leaves: {m} and {other} moved {old:?} -> {id:?} having applied different ones in {old:?}: {ops:?} vs {oops:?}"
                        ));
                    }
                    let mut a = all.clone();
                    let mut b = oall.clone();
                    a.sort_unstable();
                    b.sort_unstable();
                    if a != b {
                        let only_me: Vec<_> = a.iter().filter(|x| !b.contains(x)).take(5).collect();
                        let only_other: Vec<_> =
                            b.iter().filter(|x| !a.contains(x)).take(5).collect();
                        return Err(format!(
                            "virtual synchrony: {m} and {other} moved {old:?} -> {id:?} having delivered different messages in {old:?} (only {m}: {only_me:?}, only {other}: {only_other:?})"
                        ));
                    }
                    if agreed != *oagreed {
                        return Err(format!(
                            "agreed order: {m} and {other} moved {old:?} -> {id:?} with different agreed orders in {old:?}"
                        ));
                    }
                }
            }
        }
        st.view = Some((id, members.to_vec()));
        st.last_in_view_from.clear();
        Ok(())
    }

    fn message(
        &mut self,
        m: &MemberId,
        sender: &MemberId,
        order: Order,
        payload: &[u8],
        view: ViewId,
        in_flush: bool,
    ) -> Result<(), String> {
        self.delivered += 1;
        let id = decode_payload(payload).ok_or_else(|| {
            format!(
                "{m}: a message of {} bytes from {sender} did not decode whole",
                payload.len()
            )
        })?;
        if sender.incarnation != id.1 || sender.name != format!("n{}", id.0) {
            return Err(format!("{m}: message {id:?} attributed to {sender}"));
        }
        let st = self.members.entry(m.clone()).or_default();
        let Some((cur, members)) = &st.view else {
            return Err(format!("{m}: delivery before any view"));
        };
        if *cur != view {
            return Err(format!(
                "{m}: delivered {id:?} tagged {view:?} while in {cur:?}"
            ));
        }
        if !members.contains(sender) {
            return Err(format!(
                "{m}: delivered {id:?} from {sender}, not a member of {view:?}"
            ));
        }
        if let Some(prev) = st.last_from.get(sender)
            && id.2 <= *prev
        {
            return Err(format!(
                "FIFO: {m} delivered {sender}'s {} after {prev}",
                id.2
            ));
        }
        if let Some(prev) = st.last_in_view_from.get(sender)
            && id.2 != prev + 1
        {
            return Err(format!(
                "reliable FIFO: {m} delivered {sender}'s {} right after {prev} in {view:?}",
                id.2
            ));
        }
        st.last_from.insert(sender.clone(), id.2);
        st.last_in_view_from.insert(sender.clone(), id.2);
        st.all.push(id);
        // Safe messages are agreed too: one total order with the agreed ones.
        if order != Order::Fifo {
            st.agreed.push(id);
            if !in_flush {
                let k = st.agreed.len() - 1;
                let global = self.agreed_order.entry(view).or_default();
                match global.get(k) {
                    Some(g) if *g != id => {
                        return Err(format!(
                            "agreed order: {m}'s agreed delivery #{k} in {view:?} is {id:?}, another member's is {g:?}"
                        ));
                    }
                    Some(_) => {}
                    None if k == global.len() => global.push(id),
                    None => return Err(format!("agreed order: {m} skipped ahead in {view:?}")),
                }
            }
        }
        match self.delivered_in.get(&id) {
            Some(v) if *v != view => {
                return Err(format!(
                    "{m} delivered {id:?} in {view:?}, another member in {v:?}"
                ));
            }
            Some(_) => {}
            None => {
                self.delivered_in.insert(id, view);
            }
        }
        Ok(())
    }

    fn group_op(&mut self, m: &MemberId, op: GroupOp, in_flush: bool) -> Result<(), String> {
        self.group_ops += 1;
        let st = self.members.entry(m.clone()).or_default();
        let Some((view, members)) = &st.view else {
            return Err(format!("{m}: group change before any view"));
        };
        let view = *view;
        if !members.contains(&op.1) {
            return Err(format!(
                "{m}: {} joined or left {} in {view:?} without being a member",
                op.1, op.0
            ));
        }
        st.group_ops.push(op.clone());
        if in_flush {
            return Ok(());
        }
        let k = st.group_ops.len() - 1;
        let global = self.group_order.entry(view).or_default();
        match global.get(k) {
            Some(g) if *g != op => Err(format!(
                "group joins and leaves: {m}'s #{k} in {view:?} is {op:?}, another member's is {g:?}"
            )),
            Some(_) => Ok(()),
            None if k == global.len() => {
                global.push(op);
                Ok(())
            }
            None => Err(format!(
                "group joins and leaves: {m} skipped ahead in {view:?}"
            )),
        }
    }

    /// Whether any member delivered message `id`.
    pub fn was_delivered(&self, id: &MsgId) -> bool {
        self.delivered_in.contains_key(id)
    }

    /// Forgets a member that crashed or left (it is a fresh incarnation if it returns).
    pub fn forget(&mut self, m: &MemberId) {
        self.members.remove(m);
    }
}
