//! `OfflineSync`: the offline-message sync after every login, as a state machine without I/O.
//!
//! SYNC_INDEX pages (500 ids) from the acknowledged position; each page's ids are fetched in
//! SYNC_FETCH chunks of at most 100 (asking again for what a response did not cover); once a
//! page is delivered, SYNC_ACK up to its last id; then the next page while `more` is true.
//! It never acknowledges an id it has not delivered, and never loops on a response that makes
//! no progress (a fetch covering nothing is an error).

use std::collections::VecDeque;

use switchboard_protocol::limits::{MAX_SYNC_FETCH_IDS, MAX_SYNC_INDEX_LIMIT};
use switchboard_protocol::{ChatMessage, Command, Request, SyncFetchOk, SyncIndexOk};

use crate::error::LinkError;

/// Where a sync stands.
#[derive(Debug, Default)]
enum State {
    /// Not started on this connection.
    #[default]
    Idle,
    /// Waiting for a SYNC_INDEX answer.
    Indexing,
    /// Fetching one page: `asked` ids of `remaining` are in the SYNC_FETCH on the wire.
    Fetching {
        page_last: u64,
        more: bool,
        remaining: VecDeque<u64>,
        asked: usize,
    },
    /// Finished.
    Done,
}

/// What to do after an answer: requests to send, in order, and whether the sync just ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Next {
    /// Requests to send now, in this order.
    pub requests: Vec<Request>,
    /// `Some(delivered)` when the sync just finished.
    pub done: Option<usize>,
}

/// One connection's offline sync.
#[derive(Debug, Default)]
pub struct OfflineSync {
    state: State,
    delivered: usize,
}

impl OfflineSync {
    /// A sync not started yet.
    pub fn new() -> Self {
        OfflineSync::default()
    }

    /// Starts over (after a login): the first SYNC_INDEX, from the acknowledged position.
    pub fn start(&mut self) -> Request {
        self.state = State::Indexing;
        self.delivered = 0;
        index_after(0)
    }

    /// Whether the sync has finished on this connection.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// A SYNC_INDEX answer.
    pub fn on_index(&mut self, ok: SyncIndexOk) -> Result<Next, LinkError> {
        if !matches!(self.state, State::Indexing) {
            return Err(unexpected(Command::SyncIndex));
        }
        let Some(&page_last) = ok.ids.last() else {
            // An empty page ends the sync even if `more` claims otherwise: there is no id to
            // continue after.
            return Ok(self.finish(Vec::new()));
        };
        let remaining = VecDeque::from(ok.ids);
        let first = next_chunk(&remaining);
        let asked = first_len(&first);
        self.state = State::Fetching {
            page_last,
            more: ok.more,
            remaining,
            asked,
        };
        Ok(Next {
            requests: vec![first],
            done: None,
        })
    }

    /// A SYNC_FETCH answer; `deliver` gets each message (it deduplicates).
    pub fn on_fetch(
        &mut self,
        ok: SyncFetchOk,
        mut deliver: impl FnMut(ChatMessage) -> bool,
    ) -> Result<Next, LinkError> {
        let State::Fetching {
            page_last,
            more,
            remaining,
            asked,
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
        if !remaining.is_empty() {
            let chunk = next_chunk(remaining);
            *asked = first_len(&chunk);
            return Ok(Next {
                requests: vec![chunk],
                done: None,
            });
        }
        let ack = Request::SyncAck { upto: *page_last };
        if *more {
            let after = *page_last;
            self.state = State::Indexing;
            return Ok(Next {
                requests: vec![ack, index_after(after)],
                done: None,
            });
        }
        Ok(self.finish(vec![ack]))
    }

    fn finish(&mut self, requests: Vec<Request>) -> Next {
        self.state = State::Done;
        Next {
            requests,
            done: Some(self.delivered),
        }
    }
}

fn index_after(after: u64) -> Request {
    Request::SyncIndex {
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
        assert_eq!(sync.start(), index_after(0));
        let next = sync
            .on_index(SyncIndexOk {
                ids: vec![],
                more: false,
            })
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
            .on_index(SyncIndexOk {
                ids: page.clone(),
                more: true,
            })
            .unwrap();
        assert_eq!(fetch_ids(&next.requests[0]), (1..=100).collect::<Vec<_>>());
        let (delivered, next) = serve_fetches(&mut sync, next, 100);
        assert_eq!(delivered, page);
        assert_eq!(
            next.requests,
            vec![Request::SyncAck { upto: 250 }, index_after(250)]
        );
        assert_eq!(next.done, None);
        let next = sync
            .on_index(SyncIndexOk {
                ids: vec![300],
                more: false,
            })
            .unwrap();
        let (delivered, next) = serve_fetches(&mut sync, next, 100);
        assert_eq!(delivered, [300]);
        assert_eq!(next.requests, vec![Request::SyncAck { upto: 300 }]);
        assert_eq!(next.done, Some(251));
    }

    #[test]
    fn a_partly_covered_fetch_asks_again_for_the_rest() {
        let mut sync = OfflineSync::new();
        sync.start();
        let next = sync
            .on_index(SyncIndexOk {
                ids: (10..20).collect(),
                more: false,
            })
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
        assert_eq!(next.requests, vec![Request::SyncAck { upto: 19 }]);
    }

    #[test]
    fn repeats_and_skipped_ids_are_not_counted() {
        let mut sync = OfflineSync::new();
        sync.start();
        sync.on_index(SyncIndexOk {
            ids: vec![1, 2, 3],
            more: false,
        })
        .unwrap();
        // Id 2 was purged (skipped by the server); id 3 was already pushed live.
        let ok = SyncFetchOk {
            covered: 3,
            messages: vec![message(1), message(3)],
        };
        let next = sync.on_fetch(ok, |m| m.msg_id != 3).unwrap();
        assert_eq!(next.done, Some(1));
        assert_eq!(next.requests, vec![Request::SyncAck { upto: 3 }]);
    }

    #[test]
    fn answers_that_make_no_progress_or_come_unasked_are_errors() {
        let mut sync = OfflineSync::new();
        let unasked = sync.on_index(SyncIndexOk {
            ids: vec![1],
            more: false,
        });
        assert!(matches!(unasked, Err(LinkError::UnexpectedResponse { .. })));
        sync.start();
        sync.on_index(SyncIndexOk {
            ids: vec![1, 2],
            more: false,
        })
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
}
