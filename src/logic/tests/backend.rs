//! Backend calls (the admin API) in the harness: a send shares the clients' path (pushed once
//! queued, answered only after the commit, one message per key, BUSY when the store is full),
//! kicks by kind or all, devices, stats.

use bytes::Bytes;
use crossbeam_channel::{Receiver, TryRecvError};
use switchboard_protocol::{KickReason, Push, Status, Target, Text};

use super::Harness;
use crate::logic::backend::{BackendAnswer, BackendCall, BackendRequest};
use crate::logic::{CloseWhy, Inbound};
use crate::store::{AppendOutcome, Completion, StoreRequest};

fn call(h: &mut Harness, request: BackendRequest) -> Receiver<BackendAnswer> {
    let (reply, answer) = crossbeam_channel::bounded(1);
    let event = Inbound::Backend(Box::new(BackendCall { request, reply }));
    h.core.handle_inbound(event, h.now_ms);
    answer
}

fn send(from: &str, to: &str, key: u64) -> BackendRequest {
    BackendRequest::Send {
        from: from.into(),
        target: Target::Direct(Text::from(to)),
        client_msg_id: key,
        body: Bytes::from_static(b"from the backend"),
    }
}

#[test]
fn a_send_is_pushed_at_once_and_answered_after_the_commit_once_per_key() {
    let mut h = Harness::new();
    let bob = h.login("bob", "phone");
    let shop_phone = h.login("shop", "phone");
    let answer = call(&mut h, send("shop", "bob", 7));
    let Push::Message(message) = h.push(bob) else {
        panic!("a MESSAGE");
    };
    assert_eq!(message.from.as_str(), "shop");
    // The named sender's own devices get it too, as with a client's SEND.
    assert!(matches!(h.push(shop_phone), Push::Message(_)));
    assert_eq!(
        answer.try_recv(),
        Err(TryRecvError::Empty),
        "not before the commit"
    );
    // The same key again while the first is in flight: waits for the same commit.
    let again = call(&mut h, send("shop", "bob", 7));
    let request = h.take();
    assert!(matches!(request, StoreRequest::Append { .. }));
    h.complete(Completion::Appended {
        ticket: request.ticket(),
        outcome: AppendOutcome::Stored,
    });
    let first = answer.try_recv().expect("answered after the commit");
    assert_eq!(again.try_recv().expect("the repeat too"), first);
    let BackendAnswer::Sent(ok) = first else {
        panic!("Sent, got {first:?}");
    };
    assert_eq!(ok.msg_id, message.msg_id);
    // Once committed, a repeat is answered from the window: nothing stored or pushed.
    let later = call(&mut h, send("shop", "bob", 7));
    assert_eq!(later.try_recv(), Ok(BackendAnswer::Sent(ok)));
    assert_eq!(h.queued(), 0);
    h.expect_nothing();
}

#[test]
fn a_full_store_refuses_with_busy_and_pushes_nothing() {
    let mut h = Harness::new();
    h.login("bob", "phone");
    h.set_store_capacity(0);
    let answer = call(&mut h, send("shop", "bob", 1));
    assert_eq!(answer.try_recv(), Ok(BackendAnswer::Refused(Status::BUSY)));
    h.expect_nothing();
}

#[test]
fn kicks_take_one_kind_or_every_device_and_devices_are_listed() {
    let mut h = Harness::new();
    let phone = h.login("bob", "phone");
    let desktop = h.login("bob", "desktop");
    let devices = call(&mut h, BackendRequest::Devices { user: "bob".into() });
    let Ok(BackendAnswer::Devices(listed)) = devices.try_recv() else {
        panic!("devices");
    };
    let mut kinds: Vec<&str> = listed.iter().map(|d| d.kind.as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, ["desktop", "phone"]);
    let kick = BackendRequest::Kick {
        user: "bob".into(),
        device: Some("phone".into()),
    };
    let answer = call(&mut h, kick);
    assert_eq!(
        answer.try_recv(),
        Ok(BackendAnswer::Kicked(vec!["phone".into()]))
    );
    h.kicked(phone, KickReason::ENDED_BY_SERVICE, CloseWhy::Kicked);
    h.expect_nothing();
    let all = BackendRequest::Kick {
        user: "bob".into(),
        device: None,
    };
    assert_eq!(
        call(&mut h, all).try_recv(),
        Ok(BackendAnswer::Kicked(vec!["desktop".into()]))
    );
    h.kicked(desktop, KickReason::ENDED_BY_SERVICE, CloseWhy::Kicked);
    let stats = call(&mut h, BackendRequest::Stats).try_recv();
    let Ok(BackendAnswer::Stats(stats)) = stats else {
        panic!("stats");
    };
    assert_eq!((stats.online_users, stats.connections), (0, 0));
    h.expect_nothing();
}

/// PostgreSQL away (reconnecting): a backend send is refused BUSY (the API's 503, retry), not
/// INTERNAL, like a client's SEND; the same key later is stored.
#[test]
fn a_send_failed_by_an_unavailable_store_is_busy_and_a_retry_is_stored() {
    let mut h = Harness::new();
    let answer = call(&mut h, send("shop", "bob", 8));
    let ticket = h.take().ticket();
    let error = crate::store::StoreError::Unavailable {
        detail: "connection lost".into(),
    };
    h.complete(Completion::Failed { ticket, error });
    assert!(
        matches!(answer.try_recv(), Ok(BackendAnswer::Refused(Status::BUSY))),
        "BUSY"
    );
    let retry = call(&mut h, send("shop", "bob", 8));
    let request = h.take();
    assert!(
        matches!(request, StoreRequest::Append { .. }),
        "tried again"
    );
    h.complete(Completion::Appended {
        ticket: request.ticket(),
        outcome: AppendOutcome::Stored,
    });
    assert!(matches!(retry.try_recv(), Ok(BackendAnswer::Sent(_))));
}
