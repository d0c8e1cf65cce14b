//! Store requests in flight: who asked, and what their completion means.
//!
//! Every request the core submits gets a fresh ticket and one [`Pending`] entry, removed by
//! its completion (exactly one per ticket, by the [`Store`] contract). A request the store
//! does not take is never remembered: its asker is answered with BUSY or INTERNAL at once.

use std::collections::HashMap;
use std::sync::Arc;

use switchboard_protocol::{Command, Status};
use tracing::warn;

use super::group_cache::Group;
use super::session::ConnKey;
use crate::store::{Store, StoreRequest, SubmitError, Ticket};

/// Who asked: the connection and its request, to answer later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asker {
    /// The connection.
    pub conn: ConnKey,
    /// The request's seq.
    pub seq: u32,
    /// The request's command.
    pub command: Command,
}

/// What a completion means, by the request it answers.
pub(super) enum Then {
    /// Answer every waiter of this (sender, client_msg_id) with the message's id and time.
    Stored {
        key: (Arc<str>, u64),
        msg_id: u64,
        time_ms: u64,
    },
    /// Answer with the ids (SYNC_LIST: and the cursor, for this inbox's user).
    Index { inbox: Option<Arc<str>> },
    /// Answer with the messages, in the order of these requested ids.
    Fetch { ids: Vec<u64> },
    /// Answer with an empty body.
    Acked,
    /// Cache the group, answer with its id.
    Created { id: u64, group: Group },
    /// End the join in the cache (a member more if committed), answer with an empty body.
    Joined { id: u64, user: Arc<str> },
    /// Record the quit in the cache, answer with an empty body.
    Quit { id: u64, user: Arc<str> },
}

/// A store request in flight.
pub(super) struct Pending {
    /// The request to answer; `None` for an append, whose waiters the dedupe window holds.
    pub(super) asker: Option<Asker>,
    pub(super) then: Then,
}

/// The store and the requests submitted to it.
pub(super) struct Tickets<S> {
    store: S,
    pending: HashMap<Ticket, Pending>,
    next: Ticket,
}

impl<S: Store> Tickets<S> {
    pub(super) fn new(store: S) -> Self {
        Tickets {
            store,
            pending: HashMap::new(),
            next: 1,
        }
    }

    /// Submits the request `make` builds under a fresh ticket and remembers `asker` and
    /// `then` for its completion. A request not taken comes back as the status to refuse the
    /// asker with: BUSY for a full queue (push back, buffer nothing), INTERNAL for a store
    /// that has stopped.
    pub(super) fn submit(
        &mut self,
        asker: Option<Asker>,
        then: Then,
        make: impl FnOnce(Ticket) -> StoreRequest,
    ) -> Result<(), Status> {
        let ticket = self.next;
        self.next += 1;
        match self.store.submit(make(ticket)) {
            Ok(()) => {
                self.pending.insert(ticket, Pending { asker, then });
                Ok(())
            }
            Err(SubmitError::Busy(_)) => Err(Status::BUSY),
            Err(SubmitError::Stopped(_)) => {
                warn!(command = ?asker.map(|a| a.command), "the store has stopped");
                Err(Status::INTERNAL)
            }
        }
    }

    /// The request a completion answers; `None` for a ticket the core never issued (a purge
    /// the store ran on its own).
    pub(super) fn take(&mut self, ticket: Ticket) -> Option<Pending> {
        self.pending.remove(&ticket)
    }

    /// Requests submitted and not yet completed.
    pub(super) fn in_flight(&self) -> usize {
        self.pending.len()
    }
}
