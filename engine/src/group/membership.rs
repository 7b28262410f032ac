//! The view change with flush, which gives virtual synchrony.
//!
//! 1. A coordinator sends `Propose(id, members)`; ids only grow (`epoch` above any seen).
//! 2. Each proposed member stops sending and delivering in its current (old) view and answers
//!    `Flush` with, per old-view sender, the highest item it holds contiguously, plus the groups it
//!    wants to be in.
//! 3. Once every member answered, the coordinator fixes, for every old view among them, the cut:
//!    per sender, the highest item any of them holds, and who holds it ([`Coordination::cuts`]).
//! 4. Each member fetches what it lacks up to its old view's cut from the holders, then says
//!    `Ready`. Once all are ready the coordinator sends `Install`: each member delivers exactly up to
//!    the cut, installs the view and resumes sending.
//!
//! A member delivers nothing between its `Flush` and the `Install`, and every member installing a
//! view delivers the same cut of its old view: members that move together from one view to the next
//! have delivered the same messages in the old one. A proposal that stalls (a member died, or moved
//! to a higher proposal) is replaced by a higher one without the silent members; a participant whose
//! coordinator dies hands the change to the next oldest member.

use crate::group::member::MemberId;
use crate::group::time::Time;
use crate::group::view::ViewId;
use crate::group::wire::OldViewCut;

/// A proposed view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Its id.
    pub id: ViewId,
    /// Its members, oldest first.
    pub members: Vec<MemberId>,
    /// Who proposed it.
    pub coordinator: MemberId,
}

/// A member's answer to a proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushReport {
    /// The view it is leaving.
    pub old_view: ViewId,
    /// Per old-view sender, the highest item it holds contiguously.
    pub received: Vec<u64>,
    /// The named groups it wants to be in.
    pub groups: Vec<String>,
}

/// A coordinator's state for the proposal it drives.
#[derive(Debug, Clone)]
pub struct Coordination {
    /// The proposal.
    pub proposal: Proposal,
    /// When it was proposed.
    pub started: Time,
    /// Per proposed member, its flush report once received.
    pub flushes: Vec<Option<FlushReport>>,
    /// The cuts, once every member flushed.
    pub cuts: Option<Vec<OldViewCut>>,
    /// Per proposed member, whether it is ready.
    pub ready: Vec<bool>,
    /// Whether the install was sent.
    pub installed: bool,
}

impl Coordination {
    /// Starts coordinating `proposal` at `now`.
    pub fn new(proposal: Proposal, now: Time) -> Coordination {
        let n = proposal.members.len();
        Coordination {
            proposal,
            started: now,
            flushes: vec![None; n],
            cuts: None,
            ready: vec![false; n],
            installed: false,
        }
    }

    /// Records `from`'s flush report; true when it is the last one missing.
    pub fn on_flush(&mut self, from: &MemberId, report: FlushReport) -> bool {
        let Ok(i) = self.proposal.members.binary_search(from) else {
            return false;
        };
        if self.flushes[i].is_some() || self.cuts.is_some() {
            return false;
        }
        self.flushes[i] = Some(report);
        self.flushes.iter().all(Option::is_some)
    }

    /// Records that `from` is ready; true when it is the last one missing.
    pub fn on_ready(&mut self, from: &MemberId) -> bool {
        let Ok(i) = self.proposal.members.binary_search(from) else {
            return false;
        };
        if self.cuts.is_none() || self.ready[i] {
            return false;
        }
        self.ready[i] = true;
        self.ready.iter().all(|r| *r)
    }

    /// Members that have not answered the current phase.
    pub fn silent(&self) -> Vec<MemberId> {
        let missing: Vec<bool> = if self.cuts.is_none() {
            self.flushes.iter().map(Option::is_none).collect()
        } else {
            self.ready.iter().map(|r| !r).collect()
        };
        self.proposal
            .members
            .iter()
            .zip(missing)
            .filter(|(_, m)| *m)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Fixes the cut of every old view: per sender, the highest item any member from that view
    /// holds, and the first such member as holder. Call once every member has flushed.
    pub fn cuts(&self) -> Vec<OldViewCut> {
        let mut out: Vec<OldViewCut> = Vec::new();
        for (i, f) in self.flushes.iter().enumerate() {
            let Some(f) = f else { continue };
            let holder = u16::try_from(i).unwrap_or(u16::MAX);
            match out.iter_mut().find(|c| c.view == f.old_view) {
                None => out.push(OldViewCut {
                    view: f.old_view,
                    upto: f.received.clone(),
                    holders: vec![holder; f.received.len()],
                }),
                Some(c) => {
                    for (k, r) in f.received.iter().enumerate().take(c.upto.len()) {
                        if *r > c.upto[k] {
                            c.upto[k] = *r;
                            c.holders[k] = holder;
                        }
                    }
                }
            }
        }
        out
    }

    /// Per proposed member, its groups, for the install message.
    pub fn groups(&self) -> Vec<Vec<String>> {
        self.flushes
            .iter()
            .map(|f| f.as_ref().map(|f| f.groups.clone()).unwrap_or_default())
            .collect()
    }
}

/// A member's state while it takes part in a view change.
#[derive(Debug, Clone)]
pub struct Participation {
    /// The proposal it answered.
    pub proposal: Proposal,
    /// When it answered.
    pub started: Time,
    /// Its old view's cut, once the coordinator sent it.
    pub cut: Option<OldViewCut>,
    /// Whether it said ready (it then repeats it on every tick until the install).
    pub ready_sent: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_takes_the_highest_holder_per_old_view() {
        let (a, b, c) = (
            MemberId::new("a", 1),
            MemberId::new("b", 2),
            MemberId::new("c", 3),
        );
        let v1 = ViewId {
            epoch: 1,
            coordinator: 1,
        };
        let v2 = ViewId {
            epoch: 2,
            coordinator: 2,
        };
        let p = Proposal {
            id: ViewId {
                epoch: 3,
                coordinator: 1,
            },
            members: vec![a.clone(), b.clone(), c.clone()],
            coordinator: a.clone(),
        };
        let mut co = Coordination::new(p, Time::ZERO);
        let rep = |v, r: Vec<u64>| FlushReport {
            old_view: v,
            received: r,
            groups: vec![],
        };
        assert!(!co.on_flush(&a, rep(v1, vec![3, 1])));
        assert!(!co.on_flush(&b, rep(v1, vec![2, 5])));
        assert_eq!(co.silent(), vec![c.clone()]);
        assert!(co.on_flush(&c, rep(v2, vec![7])));
        let cuts = co.cuts();
        assert_eq!(cuts.len(), 2);
        assert_eq!(cuts[0].upto, vec![3, 5]);
        assert_eq!(cuts[0].holders, vec![0, 1]);
        assert_eq!(cuts[1].upto, vec![7]);
        assert_eq!(cuts[1].holders, vec![2]);
    }
}
