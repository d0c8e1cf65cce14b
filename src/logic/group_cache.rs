//! The logic core's cache of groups, their members, and the joins still in flight.
//!
//! The store is the record; this cache answers "is the sender a member?" and "who gets this
//! message?" without a disk read per message (the design document's concern: a 1,000-member
//! group must not cost 1,000 lookups in a transactional database). It is loaded whole at
//! start-up and changed only after the store has committed the change, so it never shows a
//! membership the store does not have.
//!
//! Invariant: members plus the joins in flight of users who are not members never exceed the
//! member limit, so no set of concurrent joins can commit a group past it. Every group carries
//! a version, bumped by each committed change applied here: the handle a cluster will use to
//! tell a stale copy from a current one. Today it counts this node's changes only; for nodes to
//! agree on it the store must assign it at commit (as the per-inbox sequence will be), which
//! comes with the cluster work.

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
    /// The group already has (or will have, once the joins in flight commit) the configured
    /// maximum of members.
    Full,
    /// The user is not a member (quitting, or sending).
    NotMember,
}

/// A cached group with what is under way for it.
#[derive(Debug)]
struct Entry {
    group: Group,
    /// Committed changes applied since the group was loaded or created (1 at that point).
    version: u64,
    /// Users with a GROUP_JOIN submitted to the store and not yet completed, with how many
    /// each has in flight (a client may resend before the first is answered).
    joining: HashMap<Arc<str>, u32>,
}

impl Entry {
    /// Members once every join in flight has committed.
    fn members_after_joins(&self) -> usize {
        let newcomers = self
            .joining
            .keys()
            .filter(|user| !self.group.members.contains(*user))
            .count();
        self.group.members.len() + newcomers
    }
}

/// Every group, by id.
#[derive(Debug, Default)]
pub struct GroupCache {
    entries: HashMap<u64, Entry>,
    member_limit: usize,
}

impl GroupCache {
    /// An empty cache that refuses groups above `member_limit` members.
    pub fn new(member_limit: usize) -> Self {
        GroupCache {
            entries: HashMap::new(),
            member_limit,
        }
    }

    /// The member limit.
    pub fn member_limit(&self) -> usize {
        self.member_limit
    }

    /// Adds a group the store has committed (or loaded), at version 1.
    pub fn insert(&mut self, id: u64, group: Group) {
        let entry = Entry {
            group,
            version: 1,
            joining: HashMap::new(),
        };
        self.entries.insert(id, entry);
    }

    /// A group by id.
    pub fn get(&self, id: u64) -> Option<&Group> {
        self.entries.get(&id).map(|entry| &entry.group)
    }

    /// The version of a cached group: 1 when loaded or created, one more per committed change.
    pub fn version(&self, id: u64) -> Option<u64> {
        self.entries.get(&id).map(|entry| entry.version)
    }

    /// Whether `user` may send to group `id`.
    pub fn check_member(&self, id: u64, user: &str) -> Result<&Group, Refusal> {
        let entry = self.entries.get(&id).ok_or(Refusal::NotFound)?;
        if entry.group.members.contains(user) {
            Ok(&entry.group)
        } else {
            Err(Refusal::NotMember)
        }
    }

    /// Starts a join of `user` to group `id`, before it is submitted to the store: refused if
    /// the group, counting the joins already in flight, has no room for one more; otherwise
    /// counted in flight until [`GroupCache::finish_join`]. A member joining again adds nobody.
    pub fn begin_join(&mut self, id: u64, user: &Arc<str>) -> Result<(), Refusal> {
        let entry = self.entries.get_mut(&id).ok_or(Refusal::NotFound)?;
        let newcomer = !entry.group.members.contains(user) && !entry.joining.contains_key(user);
        if newcomer && entry.members_after_joins() >= self.member_limit {
            return Err(Refusal::Full);
        }
        *entry.joining.entry(user.clone()).or_default() += 1;
        Ok(())
    }

    /// Ends a join begun with [`GroupCache::begin_join`]: `committed` adds the member (the
    /// store has committed it); otherwise (refused, failed, never queued) it only stops
    /// counting.
    pub fn finish_join(&mut self, id: u64, user: &Arc<str>, committed: bool) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if let Some(count) = entry.joining.get_mut(user) {
            *count -= 1;
            if *count == 0 {
                entry.joining.remove(user);
            }
        }
        if committed && entry.group.members.insert(user.clone()) {
            entry.version += 1;
        }
    }

    /// Records a quit the store has committed.
    pub fn quit(&mut self, id: u64, user: &str) {
        if let Some(entry) = self.entries.get_mut(&id) {
            if entry.group.members.remove(user) {
                entry.version += 1;
            }
        }
    }

    /// Joins in flight, over every group.
    pub fn joins_in_flight(&self) -> usize {
        let per_group = self.entries.values();
        per_group
            .map(|entry| entry.joining.values().sum::<u32>() as usize)
            .sum()
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no groups.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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

    fn user(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[test]
    fn membership_checks() {
        let mut cache = GroupCache::new(3);
        cache.insert(7, group(&["alice", "bob"]));
        assert!(cache.check_member(7, "alice").is_ok());
        assert_eq!(
            cache.check_member(7, "carol").unwrap_err(),
            Refusal::NotMember
        );
        assert_eq!(
            cache.check_member(8, "alice").unwrap_err(),
            Refusal::NotFound
        );
    }

    #[test]
    fn join_respects_the_limit_and_rejoining_is_not_growth() {
        let mut cache = GroupCache::new(3);
        cache.insert(7, group(&["alice", "bob"]));
        assert_eq!(cache.begin_join(7, &user("carol")), Ok(()));
        cache.finish_join(7, &user("carol"), true);
        assert_eq!(cache.begin_join(7, &user("dave")), Err(Refusal::Full));
        assert_eq!(
            cache.begin_join(7, &user("bob")),
            Ok(()),
            "a member joining again adds nobody"
        );
        cache.finish_join(7, &user("bob"), true);
        assert_eq!(cache.begin_join(9, &user("bob")), Err(Refusal::NotFound));
        cache.quit(7, "carol");
        assert_eq!(cache.begin_join(7, &user("dave")), Ok(()));
        cache.finish_join(7, &user("dave"), false);
        assert_eq!(cache.get(7).unwrap().members.len(), 2);
        assert_eq!(cache.joins_in_flight(), 0);
    }

    #[test]
    fn joins_in_flight_count_against_the_limit_until_they_finish() {
        let mut cache = GroupCache::new(3);
        cache.insert(7, group(&["alice", "bob"]));
        assert_eq!(cache.begin_join(7, &user("carol")), Ok(()));
        assert_eq!(cache.begin_join(7, &user("dave")), Err(Refusal::Full));
        assert_eq!(
            cache.begin_join(7, &user("carol")),
            Ok(()),
            "the same user resending is not a second newcomer"
        );
        assert_eq!(cache.joins_in_flight(), 2);
        cache.finish_join(7, &user("carol"), false);
        assert_eq!(cache.begin_join(7, &user("dave")), Err(Refusal::Full));
        cache.finish_join(7, &user("carol"), false);
        assert_eq!(
            cache.begin_join(7, &user("dave")),
            Ok(()),
            "a failed join frees its room"
        );
    }

    #[test]
    fn every_committed_change_bumps_the_version() {
        let mut cache = GroupCache::new(10);
        cache.insert(7, group(&["alice"]));
        assert_eq!(cache.version(7), Some(1));
        cache.begin_join(7, &user("bob")).unwrap();
        cache.finish_join(7, &user("bob"), true);
        assert_eq!(cache.version(7), Some(2));
        cache.begin_join(7, &user("bob")).unwrap();
        cache.finish_join(7, &user("bob"), true);
        assert_eq!(cache.version(7), Some(2), "joining again changes nothing");
        cache.quit(7, "bob");
        cache.quit(7, "bob");
        assert_eq!(cache.version(7), Some(3));
        assert_eq!(cache.version(8), None);
    }
}
