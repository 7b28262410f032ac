//! Named groups: which view members belong to which group.
//!
//! Joins and leaves travel as agreed-order items, so every member applies them at the same point of
//! the agreed order and holds the same table. At a view change each member reports the groups it
//! wants to be in, and the coordinator's install message carries them: the new view starts from one
//! table on every member, newcomers included.

use std::collections::BTreeMap;

use crate::group::member::MemberId;
use crate::group::wire::MAX_GROUP_LEN;

/// The cluster group (`cluster_group`): every node and the manager.
pub const CLUSTER_GROUP: &str = "ec_cluster";
/// The control group (`control_group`): console traffic.
pub const CONTROL_GROUP: &str = "ec_console";

/// The group of one subcluster: `ec_sc_<subcluster>`.
pub fn subcluster_group(subcluster: &str) -> String {
    format!("ec_sc_{subcluster}")
}

/// Whether `name` can be a group name on the wire: 1 to 64 bytes.
pub fn valid_group_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_GROUP_LEN
}

/// The members of every named group, each list oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupTable {
    groups: BTreeMap<String, Vec<MemberId>>,
}

impl GroupTable {
    /// A table built from each member's groups (as carried in an install message).
    pub fn from_members(members: &[MemberId], groups: &[Vec<String>]) -> GroupTable {
        let mut t = GroupTable::default();
        for (m, gs) in members.iter().zip(groups) {
            for g in gs {
                t.join(g, m);
            }
        }
        t
    }

    /// Adds `m` to `group`; false if it was already there.
    pub fn join(&mut self, group: &str, m: &MemberId) -> bool {
        let list = self.groups.entry(group.to_owned()).or_default();
        match list.binary_search(m) {
            Ok(_) => false,
            Err(at) => {
                list.insert(at, m.clone());
                true
            }
        }
    }

    /// Removes `m` from `group`; false if it was not there.
    pub fn leave(&mut self, group: &str, m: &MemberId) -> bool {
        let Some(list) = self.groups.get_mut(group) else {
            return false;
        };
        let Ok(at) = list.binary_search(m) else {
            return false;
        };
        list.remove(at);
        if list.is_empty() {
            self.groups.remove(group);
        }
        true
    }

    /// The members of `group`, oldest first.
    pub fn members(&self, group: &str) -> &[MemberId] {
        self.groups.get(group).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether `m` is in `group`.
    pub fn contains(&self, group: &str, m: &MemberId) -> bool {
        self.members(group).binary_search(m).is_ok()
    }

    /// Every group name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_leave_keep_age_order() {
        let (a, b) = (MemberId::new("a", 1), MemberId::new("b", 2));
        let mut t = GroupTable::default();
        assert!(t.join(CLUSTER_GROUP, &b));
        assert!(t.join(CLUSTER_GROUP, &a));
        assert!(!t.join(CLUSTER_GROUP, &a));
        assert_eq!(t.members(CLUSTER_GROUP), &[a.clone(), b.clone()]);
        assert!(t.leave(CLUSTER_GROUP, &a));
        assert!(!t.contains(CLUSTER_GROUP, &a));
        assert_eq!(subcluster_group("default"), "ec_sc_default");
        let t2 = GroupTable::from_members(&[a.clone(), b.clone()], &[vec!["x".into()], vec![]]);
        assert_eq!(t2.members("x"), &[a]);
    }
}
