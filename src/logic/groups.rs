//! GROUP_CREATE, GROUP_JOIN, GROUP_QUIT and GROUP_DETAIL, answered from the group cache and
//! committed through the store.
//!
//! The cache changes only on a committed completion. A join counts against the member limit
//! from the moment it is submitted until its completion (see `group_cache.rs`), so joins in
//! flight together can never commit a group past the limit.

use std::sync::Arc;

use switchboard_protocol::{GroupCreated, GroupDetailOk, ResponseBody, Status, Text};

use super::core::LogicCore;
use super::group_cache::Group;
use super::messaging::refusal_status;
use super::outlet::Outlet;
use super::tickets::{Asker, Then};
use crate::store::{Completion, GroupRecord, Store, StoreRequest};

impl<S: Store, O: Outlet> LogicCore<S, O> {
    pub(super) fn group_create(
        &mut self,
        asker: Asker,
        owner: Arc<str>,
        name: &Text,
        members: &[Text],
    ) {
        let mut all: Vec<Arc<str>> = Vec::with_capacity(members.len() + 1);
        all.push(owner.clone());
        for member in members {
            if !all.iter().any(|m| **m == *member.as_str()) {
                all.push(Arc::from(member.as_str()));
            }
        }
        if all.len() > self.groups.member_limit() {
            return self.refuse(asker, Status::GROUP_FULL);
        }
        let Ok(id) = self.ids.next_id(self.now_ms) else {
            return self.refuse(asker, Status::INTERNAL);
        };
        let group = GroupRecord {
            id,
            name: Box::from(name.as_str()),
            owner: Box::from(&*owner),
            members: all.iter().map(|m| Box::from(&**m)).collect(),
        };
        let cached = Group {
            name: Arc::from(name.as_str()),
            owner,
            members: all.into_iter().collect(),
        };
        let then = Then::Created { id, group: cached };
        self.ask_store(asker, then, |ticket| StoreRequest::GroupCreate {
            ticket,
            group,
        });
    }

    pub(super) fn group_join(&mut self, asker: Asker, user: Arc<str>, group_id: u64) {
        if let Err(refusal) = self.groups.begin_join(group_id, &user) {
            return self.refuse(asker, refusal_status(refusal));
        }
        let stored_user = Box::from(&*user);
        let then = Then::Joined {
            id: group_id,
            user: user.clone(),
        };
        let join = |ticket| StoreRequest::GroupJoin {
            ticket,
            group_id,
            user: stored_user,
        };
        if !self.ask_store(asker, then, join) {
            self.groups.finish_join(group_id, &user, false);
        }
    }

    pub(super) fn group_quit(&mut self, asker: Asker, user: Arc<str>, group_id: u64) {
        if let Err(refusal) = self.groups.check_member(group_id, &user) {
            return self.refuse(asker, refusal_status(refusal));
        }
        let stored_user = Box::from(&*user);
        let then = Then::Quit { id: group_id, user };
        self.ask_store(asker, then, |ticket| StoreRequest::GroupQuit {
            ticket,
            group_id,
            user: stored_user,
        });
    }

    pub(super) fn group_detail(&mut self, asker: Asker, group_id: u64) {
        let Some(group) = self.groups.get(group_id) else {
            return self.refuse(asker, Status::NOT_FOUND);
        };
        let mut members: Vec<Text> = group.members.iter().map(|m| Text::from(&**m)).collect();
        members.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        let body = ResponseBody::GroupDetail(GroupDetailOk {
            name: Text::from(&*group.name),
            owner: Text::from(&*group.owner),
            members,
        });
        self.reply(asker, body);
    }

    pub(super) fn on_created(&mut self, asker: Asker, id: u64, group: Group, done: Completion) {
        match done {
            Completion::Done { .. } => {
                self.groups.insert(id, group);
                let created = GroupCreated { group_id: id };
                self.reply(asker, ResponseBody::GroupCreate(created));
            }
            other => self.store_failed(asker, &other),
        }
    }

    pub(super) fn on_joined(&mut self, asker: Asker, id: u64, user: Arc<str>, done: Completion) {
        let committed = matches!(done, Completion::Done { .. });
        self.groups.finish_join(id, &user, committed);
        if committed {
            self.reply(asker, ResponseBody::GroupJoin);
        } else {
            self.store_failed(asker, &done);
        }
    }

    pub(super) fn on_quit(&mut self, asker: Asker, id: u64, user: Arc<str>, done: Completion) {
        match done {
            Completion::Done { .. } => {
                self.groups.quit(id, &user);
                self.reply(asker, ResponseBody::GroupQuit);
            }
            other => self.store_failed(asker, &other),
        }
    }
}
