//! `OfflineSync`: the offline-message sync, as a state machine without I/O.
//!
//! A round lists the inbox by cursor (SYNC_LIST pages of 500 entries, docs/protocol.md §9);
//! each page's ids not delivered already are fetched in SYNC_FETCH chunks of at most 100
//! (asking again for what a response did not cover); once a page is delivered, SYNC_CONFIRM
//! its cursor; then the next page while `more` is true. The first round after a login starts
//! at the acknowledged position; a catch-up round starts at the last cursor confirmed, and is
//! how pushed messages get acknowledged: pushes carry no cursor (they leave before the commit
//! that numbers them), so the inbox itself says what is safe to confirm, and a push that was
//! lost on the way comes in with it. It never confirms a page it has not delivered, and never
//! loops on a response that makes no progress (a fetch covering nothing is an error).

use std::collections::VecDeque;

use switchboard_protocol::limits::{MAX_SYNC_FETCH_IDS, MAX_SYNC_INDEX_LIMIT};
use switchboard_protocol::{ChatMessage, Command, Request, SyncFetchOk, SyncListOk};

use crate::error::LinkError;

/// Where a sync stands.
#[derive(Debug, Default)]
enum State {
    /// Not started on this connection.
    #[default]
    Idle,
    /// Waiting for a SYNC_LIST answer.
    Listing,
    /// Fetching one page: `asked` ids of `remaining` are in the SYNC_FETCH on the wire.
    Fetching {
        cursor: u64,
        more: bool,
        remaining: VecDeque<u64>,
        asked: usize,
    },
    /// A round finished; a catch-up round may follow.
    Done,
}

/// What to do after an answer: requests to send, in order, and whether the sync just ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Next {
    /// Requests to send now, in this order.
    pub requests: Vec<Request>,
    /// `Some(delivered)` when the first round after the login just finished.
    pub done: Option<usize>,
}

/// One connection's offline sync.
#[derive(Debug, Default)]
pub struct OfflineSync {
    state: State,
    delivered: usize,
    /// The last cursor confirmed (or known to be at the position) on this connection.
    confirmed: u64,
    /// The first round after the login has finished.
    caught_up: bool,
}

impl OfflineSync {
    /// A sync not started yet.
    pub fn new() -> Self {
        OfflineSync::default()
    }

    /// Starts over (after a login): the first SYNC_LIST, from the acknowledged position.
    pub fn start(&mut self) -> Request {
        *self = OfflineSync::default();
        self.state = State::Listing;
        list_after(0)
    }

    /// Whether no round is under way and the first one has finished: the time for a catch-up.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// A catch-up round from the last cursor confirmed, to confirm what was pushed since.
    pub fn catch_up(&mut self) -> Option<Request> {
        if !self.is_done() {
            return None;
        }
        self.state = State::Listing;
        Some(list_after(self.confirmed))
    }

    /// A SYNC_LIST answer; `seen` tells the ids delivered already, which are not fetched.
    pub fn on_list(
        &mut self,
        ok: SyncListOk,
        seen: impl Fn(u64) -> bool,
    ) -> Result<Next, LinkError> {
        if !matches!(self.state, State::Listing) {
            return Err(unexpected(Command::SyncList));
        }
        if ok.ids.is_empty() {
            // Nothing listed: the cursor is where the listing started, nothing to confirm. An
            // empty page ends the round even if `more` claims otherwise.
            self.confirmed = self.confirmed.max(ok.cursor);
            return Ok(self.finish(Vec::new()));
        }
        let remaining: VecDeque<u64> = ok.ids.into_iter().filter(|&id| !seen(id)).collect();
        self.state = State::Fetching {
            cursor: ok.cursor,
            more: ok.more,
            remaining,
            asked: 0,
        };
        Ok(self.fetch_or_confirm())
    }

    /// A SYNC_FETCH answer; `deliver` gets each message (it deduplicates).
    pub fn on_fetch(
        &mut self,
        ok: SyncFetchOk,
        mut deliver: impl FnMut(ChatMessage) -> bool,
    ) -> Result<Next, LinkError> {
        let State::Fetching {
            remaining, asked, ..
        } = &mut self.state
        else {
            return Err(unexpected(Command::SyncFetch));
        };
        let covered = usize::from(ok.covered);
        if covered == 0 || covered > *asked {
            return Err(unexpected(Command::SyncFetch));
        }
        for message in ok.messages {
            if deliver(message) {
                self.delivered += 1;
            }
        }
        remaining.drain(..covered);
        Ok(self.fetch_or_confirm())
    }

    /// The page's next fetch, or, once it is all delivered, its confirm and the next page.
    fn fetch_or_confirm(&mut self) -> Next {
        let State::Fetching {
            cursor,
            more,
            remaining,
            asked,
        } = &mut self.state
        else {
            return Next::default();
        };
        if !remaining.is_empty() {
            let chunk = next_chunk(remaining);
            *asked = first_len(&chunk);
            return Next {
                requests: vec![chunk],
                done: None,
            };
        }
        let (cursor, more) = (*cursor, *more);
        self.confirmed = self.confirmed.max(cursor);
        let confirm = Request::SyncConfirm { upto: cursor };
        if more {
            self.state = State::Listing;
            return Next {
                requests: vec![confirm, list_after(cursor)],
                done: None,
            };
        }
        self.finish(vec![confirm])
    }

    fn finish(&mut self, requests: Vec<Request>) -> Next {
        self.state = State::Done;
        let first = !std::mem::replace(&mut self.caught_up, true);
        Next {
            requests,
            done: first.then_some(self.delivered),
        }
    }
}

fn list_after(after: u64) -> Request {
    Request::SyncList {
        after,
        limit: MAX_SYNC_INDEX_LIMIT,
    }
}

fn next_chunk(remaining: &VecDeque<u64>) -> Request {
    Request::SyncFetch {
        ids: remaining.iter().take(MAX_SYNC_FETCH_IDS).copied().collect(),
    }
}

fn first_len(fetch: &Request) -> usize {
    match fetch {
        Request::SyncFetch { ids } => ids.len(),
        _ => 0,
    }
}

fn unexpected(command: Command) -> LinkError {
    LinkError::UnexpectedResponse {
        command: command.code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use switchboard_protocol::{Target, Text};

    fn message(msg_id: u64) -> ChatMessage {
        ChatMessage {
            msg_id,
            server_time_ms: 1,
            from: Text::from("alice"),
            target: Target::Direct(Text::from("bob")),
            client_msg_id: msg_id,
            body: Bytes::new(),
        }
    }

    fn fetch_ids(request: &Request) -> Vec<u64> {
        match request {
            Request::SyncFetch { ids } => ids.clone(),
            other => panic!("expected SYNC_FETCH, got {other:?}"),
        }
    }

    /// Answers every fetch with all it asked for, or `cap` at most; returns the delivered ids.
    fn serve_fetches(sync: &mut OfflineSync, mut next: Next, cap: usize) -> (Vec<u64>, Next) {
        let mut delivered = Vec::new();
        while let Some(Request::SyncFetch { ids }) = next.requests.first() {
            let covered = ids.len().min(cap);
            let ok = SyncFetchOk {
                covered: covered as u16,
                messages: ids[..covered].iter().map(|&id| message(id)).collect(),
            };
            next = sync
                .on_fetch(ok, |m| {
                    delivered.push(m.msg_id);
                    true
                })
                .unwrap();
        }
        (delivered, next)
    }

    #[test]
    fn an_empty_inbox_finishes_at_once() {
        let mut sync = OfflineSync::new();
        assert_eq!(sync.start(), list_after(0));
        let next = sync
            .on_list(
                SyncListOk {
                    ids: vec![],
                    more: false,
                    cursor: 7,
                },
                |_| false,
            )
            .unwrap();
        assert_eq!(
            next,
            Next {
                requests: vec![],
                done: Some(0)
            }
        );
        assert!(sync.is_done());
    }

    #[test]
    fn pages_are_fetched_in_chunks_of_100_then_acked_then_the_next_page_is_asked() {
        let mut sync = OfflineSync::new();
        sync.start();
        let page: Vec<u64> = (1..=250).collect();
        let next = sync
            .on_list(
                SyncListOk {
                    ids: page.clone(),
                    more: true,
                    cursor: 1250,
                },
                |_| false,
            )
            .unwrap();
        assert_eq!(fetch_ids(&next.requests[0]), (1..=100).collect::<Vec<_>>());
        let (delivered, next) = serve_fetches(&mut sync, next, 100);
        assert_eq!(delivered, page);
        assert_eq!(
            next.requests,
            vec![Request::SyncConfirm { upto: 1250 }, list_after(1250)]
        );
        assert_eq!(next.done, None);
        let next = sync
            .on_list(
                SyncListOk {
                    ids: vec![300],
                    more: false,
                    cursor: 1251,
                },
                |_| false,
            )
            .unwrap();
        let (delivered, next) = serve_fetches(&mut sync, next, 100);
        assert_eq!(delivered, [300]);
        assert_eq!(next.requests, vec![Request::SyncConfirm { upto: 1251 }]);
        assert_eq!(next.done, Some(251));
    }

    #[test]
    fn a_partly_covered_fetch_asks_again_for_the_rest() {
        let mut sync = OfflineSync::new();
        sync.start();
        let next = sync
            .on_list(
                SyncListOk {
                    ids: (10..20).collect(),
                    more: false,
                    cursor: 19,
                },
                |_| false,
            )
            .unwrap();
        let mut asked = Vec::new();
        let mut next = next;
        while let Some(request @ Request::SyncFetch { .. }) = next.requests.first() {
            let ids = fetch_ids(request);
            asked.push(ids.clone());
            let ok = SyncFetchOk {
                covered: 3.min(ids.len()) as u16,
                messages: ids.iter().take(3).map(|&id| message(id)).collect(),
            };
            next = sync.on_fetch(ok, |_| true).unwrap();
        }
        assert_eq!(asked.len(), 4);
        assert_eq!(asked[1], (13..20).collect::<Vec<_>>());
        assert_eq!(next.requests, vec![Request::SyncConfirm { upto: 19 }]);
    }

    #[test]
    fn repeats_and_skipped_ids_are_not_counted() {
        let mut sync = OfflineSync::new();
        sync.start();
        sync.on_list(
            SyncListOk {
                ids: vec![1, 2, 3],
                more: false,
                cursor: 3,
            },
            |_| false,
        )
        .unwrap();
        // Id 2 was purged (skipped by the server); id 3 was already pushed live.
        let ok = SyncFetchOk {
            covered: 3,
            messages: vec![message(1), message(3)],
        };
        let next = sync.on_fetch(ok, |m| m.msg_id != 3).unwrap();
        assert_eq!(next.done, Some(1));
        assert_eq!(next.requests, vec![Request::SyncConfirm { upto: 3 }]);
    }

    #[test]
    fn answers_that_make_no_progress_or_come_unasked_are_errors() {
        let mut sync = OfflineSync::new();
        let unasked = sync.on_list(
            SyncListOk {
                ids: vec![1],
                more: false,
                cursor: 1,
            },
            |_| false,
        );
        assert!(matches!(unasked, Err(LinkError::UnexpectedResponse { .. })));
        sync.start();
        sync.on_list(
            SyncListOk {
                ids: vec![1, 2],
                more: false,
                cursor: 2,
            },
            |_| false,
        )
        .unwrap();
        let stalled = sync.on_fetch(
            SyncFetchOk {
                covered: 0,
                messages: vec![],
            },
            |_| true,
        );
        assert!(matches!(stalled, Err(LinkError::UnexpectedResponse { .. })));
        let overcovered = sync.on_fetch(
            SyncFetchOk {
                covered: 3,
                messages: vec![],
            },
            |_| true,
        );
        assert!(matches!(
            overcovered,
            Err(LinkError::UnexpectedResponse { .. })
        ));
    }

    #[test]
    fn ids_delivered_already_are_confirmed_without_a_fetch() {
        let mut sync = OfflineSync::new();
        sync.start();
        let next = sync
            .on_list(
                SyncListOk {
                    ids: vec![5, 6, 7],
                    more: false,
                    cursor: 30,
                },
                |id| id != 6,
            )
            .unwrap();
        assert_eq!(fetch_ids(&next.requests[0]), vec![6]);
        let (_, next) = serve_fetches(&mut sync, next, 100);
        assert_eq!(next.requests, vec![Request::SyncConfirm { upto: 30 }]);
        // All pushed already: confirmed at once.
        let next = sync.catch_up().expect("a catch-up round once done");
        assert_eq!(next, list_after(30));
        let next = sync
            .on_list(
                SyncListOk {
                    ids: vec![8, 9],
                    more: false,
                    cursor: 32,
                },
                |_| true,
            )
            .unwrap();
        assert_eq!(
            next,
            Next {
                requests: vec![Request::SyncConfirm { upto: 32 }],
                done: None,
            },
            "only the round after the login reports done"
        );
    }

    #[test]
    fn a_catch_up_waits_for_the_round_under_way_and_starts_at_the_last_cursor() {
        let mut sync = OfflineSync::new();
        assert_eq!(sync.catch_up(), None, "not before the first round");
        sync.start();
        assert_eq!(sync.catch_up(), None, "not during a round");
        let next = sync
            .on_list(
                SyncListOk {
                    ids: vec![],
                    more: false,
                    cursor: 12,
                },
                |_| false,
            )
            .unwrap();
        assert_eq!(next.done, Some(0));
        // The position the empty listing reported is where the catch-up starts.
        assert_eq!(sync.catch_up(), Some(list_after(12)));
    }
}
