//! The logic core's cache of groups and their members.
//!
//! The store is the record; this cache answers "is the sender a member?" and "who gets this
//! message?" without a disk read per message (the design document's concern: a 1,000-member
//! group must not cost 1,000 lookups in a transactional database). It is loaded whole at
//! start-up and changed only after the store has committed the change, so it never shows a
//! membership the store does not have.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Display name.
    pub name: Arc<str>,
    /// The creator.
    pub owner: Arc<str>,
    /// Members, the owner included.
    pub members: HashSet<Arc<str>>,
}

/// Why a membership change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No group with that id.
    NotFound,
    /// The group already has the configured maximum of members.
    Full,
    /// The user is not a member (quitting, or sending).
    NotMember,
}

/// Every group, by id.
#[derive(Debug, Default)]
pub struct GroupDirectory {
    groups: HashMap<u64, Group>,
    member_limit: usize,
}

impl GroupDirectory {
    /// An empty directory that refuses groups above `member_limit` members.
    pub fn new(member_limit: usize) -> Self {
        GroupDirectory {
            groups: HashMap::new(),
            member_limit,
        }
    }

    /// The member limit.
    pub fn member_limit(&self) -> usize {
        self.member_limit
    }

    /// Adds a group the store has committed (or loaded).
    pub fn insert(&mut self, id: u64, group: Group) {
        self.groups.insert(id, group);
    }

    /// A group by id.
    pub fn get(&self, id: u64) -> Option<&Group> {
        self.groups.get(&id)
    }

    /// Whether `user` may send to group `id`.
    pub fn check_member(&self, id: u64, user: &str) -> Result<&Group, Refusal> {
        let group = self.groups.get(&id).ok_or(Refusal::NotFound)?;
        if group.members.contains(user) {
            Ok(group)
        } else {
            Err(Refusal::NotMember)
        }
    }

    /// Whether `user` may join group `id` (checked before asking the store).
    pub fn check_join(&self, id: u64, user: &str) -> Result<(), Refusal> {
        let group = self.groups.get(&id).ok_or(Refusal::NotFound)?;
        if !group.members.contains(user) && group.members.len() >= self.member_limit {
            return Err(Refusal::Full);
        }
        Ok(())
    }

    /// Records a join the store has committed.
    pub fn join(&mut self, id: u64, user: Arc<str>) {
        if let Some(group) = self.groups.get_mut(&id) {
            group.members.insert(user);
        }
    }

    /// Records a quit the store has committed.
    pub fn quit(&mut self, id: u64, user: &str) {
        if let Some(group) = self.groups.get_mut(&id) {
            group.members.remove(user);
        }
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether there are no groups.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(members: &[&str]) -> Group {
        Group {
            name: Arc::from("g"),
            owner: Arc::from(members[0]),
            members: members.iter().map(|m| Arc::from(*m)).collect(),
        }
    }

    #[test]
    fn membership_checks() {
        let mut dir = GroupDirectory::new(3);
        dir.insert(7, group(&["alice", "bob"]));
        assert!(dir.check_member(7, "alice").is_ok());
        assert_eq!(
            dir.check_member(7, "carol").unwrap_err(),
            Refusal::NotMember
        );
        assert_eq!(dir.check_member(8, "alice").unwrap_err(), Refusal::NotFound);
    }

    #[test]
    fn join_respects_the_limit_and_rejoining_is_not_growth() {
        let mut dir = GroupDirectory::new(3);
        dir.insert(7, group(&["alice", "bob"]));
        assert_eq!(dir.check_join(7, "carol"), Ok(()));
        dir.join(7, Arc::from("carol"));
        assert_eq!(dir.check_join(7, "dave"), Err(Refusal::Full));
        assert_eq!(
            dir.check_join(7, "bob"),
            Ok(()),
            "a member joining again adds nobody"
        );
        assert_eq!(dir.check_join(9, "bob"), Err(Refusal::NotFound));
        dir.quit(7, "carol");
        assert_eq!(dir.check_join(7, "dave"), Ok(()));
        assert_eq!(dir.get(7).unwrap().members.len(), 2);
    }
}
