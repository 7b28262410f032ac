//! Views: an id that only grows and the ordered list of members every member installs identically.

use crate::group::member::MemberId;

/// Identifies a view. Ordered by epoch, then by the tag of the coordinator that proposed it, so two
/// coordinators proposing at the same epoch still produce distinct, ordered ids.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ViewId {
    /// Grows by at least one at every proposal.
    pub epoch: u64,
    /// [`MemberId::tag`] of the proposing coordinator.
    pub coordinator: u64,
}

impl ViewId {
    /// The id as one `u64` that keeps the ids' order, for layers that carry a view id in 64 bits
    /// (DuraVIP): the epoch (far below 2^32 in any real run) above the top 32 bits of the
    /// coordinator's tag. Two views of one epoch keep their order unless their coordinators' tags
    /// agree on 32 bits (odds 2^-32).
    pub fn as_u64(&self) -> u64 {
        (self.epoch << 32) | (self.coordinator >> 32)
    }
}

/// An agreed view: every member that installs `id` installs exactly these members in this order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// The view id.
    pub id: ViewId,
    /// Members, oldest first (see [`MemberId`]'s ordering). Never empty.
    pub members: Vec<MemberId>,
}

impl View {
    /// A view of these members, sorted oldest first and deduplicated.
    pub fn new(id: ViewId, mut members: Vec<MemberId>) -> View {
        members.sort();
        members.dedup();
        View { id, members }
    }

    /// The leader: the oldest member. It sequences agreed messages.
    pub fn leader(&self) -> &MemberId {
        &self.members[0]
    }

    /// Position of `m` in the member list.
    pub fn index_of(&self, m: &MemberId) -> Option<usize> {
        self.members.binary_search(m).ok()
    }

    /// Whether `m` is a member.
    pub fn contains(&self, m: &MemberId) -> bool {
        self.index_of(m).is_some()
    }

    /// Position of the member named `name`, whatever its incarnation.
    pub fn index_of_name(&self, name: &str) -> Option<usize> {
        self.members.iter().position(|m| m.name == name)
    }
}
