//! The session driven by hand: packets in, packets and events out, time passed as a value.

use super::*;
use crossbeam_channel::{bounded, unbounded, Receiver};
use switchboard_codec::packet::PacketDecoder;
use switchboard_codec::Decoded;
use switchboard_protocol::{
    encode_error, GroupCreated, PongOk, SendOk, SyncFetchOk, SyncListOk, Target,
};

struct Harness {
    session: Session,
    events: Receiver<Event>,
    ready: Receiver<Result<LoginInfo, ConnectError>>,
    now: Instant,
}

fn config() -> SessionConfig {
    SessionConfig {
        request_timeout: Duration::from_secs(10),
        heartbeat: Duration::from_secs(30),
        backoff: Backoff::default(),
        dedupe_window: 100,
        client_version: "test".into(),
        max_packet: MAX_PACKET,
    }
}

const MAX_PACKET: u32 = 1000;

fn endpoint() -> Endpoint {
    Endpoint::Tcp {
        host: "127.0.0.1".into(),
        port: 9,
        tls: false,
    }
}

fn packet(bytes: &[u8]) -> Packet {
    let mut src = BytesMut::from(bytes);
    match PacketDecoder::default().decode(&mut src).unwrap() {
        Decoded::Complete(packet) => packet,
        Decoded::NeedMore => panic!("a whole packet"),
    }
}

fn message(msg_id: u64) -> ChatMessage {
    ChatMessage {
        msg_id,
        server_time_ms: 5,
        from: Text::from("alice"),
        target: Target::Direct(Text::from("bob")),
        client_msg_id: msg_id,
        body: Bytes::from_static(b"hi"),
    }
}

impl Harness {
    fn new() -> Self {
        let (events_tx, events) = unbounded();
        let (ready_tx, ready) = bounded(1);
        let now = Instant::now();
        Harness {
            session: Session::new(config(), events_tx, ready_tx, now),
            events,
            ready,
            now,
        }
    }

    /// The requests the session wrote, with their seqs.
    fn sent(&mut self) -> Vec<(u32, Request)> {
        self.session
            .take_packets()
            .map(|bytes| {
                let p = packet(&bytes);
                Request::decode(p.command, p.payload).unwrap()
            })
            .collect()
    }

    fn answer(&mut self, seq: u32, body: ResponseBody) -> Flow {
        let mut dst = BytesMut::new();
        body.encode(seq, &mut dst).unwrap();
        self.session.on_packet(packet(&dst), self.now)
    }

    fn refuse(&mut self, command: ProtoCommand, seq: u32, status: Status) -> Flow {
        let mut dst = BytesMut::new();
        encode_error(command.code(), seq, status, &mut dst).unwrap();
        self.session.on_packet(packet(&dst), self.now)
    }

    fn push(&mut self, push: Push) -> Flow {
        let mut dst = BytesMut::new();
        push.encode(&mut dst).unwrap();
        self.session.on_packet(packet(&dst), self.now)
    }

    /// Opens a connection and answers its LOGIN; returns what went out after the login.
    fn log_in(&mut self) -> Vec<(u32, Request)> {
        assert!(matches!(
            self.session.connection_opened(endpoint(), "jwt", self.now),
            Flow::Continue
        ));
        let sent = self.sent();
        let [(seq, Request::Login { token, .. })] = &sent[..] else {
            panic!("LOGIN goes first and alone: {sent:?}");
        };
        assert_eq!(token.as_str(), "jwt");
        let ok = LoginOk {
            user: Text::from("bob"),
            device: Text::from("phone"),
            server_time_ms: 1,
            idle_timeout_ms: 180_000,
            max_body: 65536,
        };
        assert!(matches!(
            self.answer(*seq, ResponseBody::Login(ok)),
            Flow::Continue
        ));
        self.sent()
    }

    /// Answers the first SYNC_LIST with an empty page.
    fn finish_empty_sync(&mut self, sent: &[(u32, Request)]) {
        let (seq, _) = sent
            .iter()
            .find(|(_, r)| matches!(r, Request::SyncList { .. }))
            .expect("a SYNC_LIST");
        let empty = SyncListOk {
            ids: vec![],
            more: false,
            cursor: 0,
        };
        self.answer(*seq, ResponseBody::SyncList(empty));
    }

    fn messages(&self) -> Vec<u64> {
        self.events
            .try_iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m.msg_id),
                _ => None,
            })
            .collect()
    }
}

fn outgoing(client_msg_id: u64, to: &str) -> (Outgoing, Receiver<Result<Ack, SendError>>) {
    let (reply, rx) = bounded(1);
    let message = Outgoing {
        client_msg_id,
        target: Target::Direct(Text::from(to)),
        body: Bytes::from_static(b"x"),
        reply,
    };
    (message, rx)
}

fn send_ids(sent: &[(u32, Request)]) -> Vec<u64> {
    sent.iter()
        .filter_map(|(_, r)| match r {
            Request::Send { client_msg_id, .. } => Some(*client_msg_id),
            _ => None,
        })
        .collect()
}

#[test]
fn login_answers_connect_then_syncs() {
    let mut h = Harness::new();
    let sent = h.log_in();
    assert_eq!(
        sent.iter().map(|(_, r)| r.command()).collect::<Vec<_>>(),
        [ProtoCommand::SyncList]
    );
    let info = h.ready.try_recv().unwrap().unwrap();
    assert_eq!((info.user.as_str(), info.device.as_str()), ("bob", "phone"));
    assert!(h.session.is_live());
    h.finish_empty_sync(&sent);
    let done = h
        .events
        .try_iter()
        .any(|e| matches!(e, Event::SyncDone { delivered: 0 }));
    assert!(done);
}

#[test]
fn unacked_sends_are_resent_with_their_ids_before_newer_ones_after_a_reconnect() {
    let mut h = Harness::new();
    // Queued before the first login: they go out right after it, in order.
    let (a, rx_a) = outgoing(1, "carol");
    let (b, _rx_b) = outgoing(2, "carol");
    h.session.on_command(Command::Send(a), h.now);
    h.session.on_command(Command::Send(b), h.now);
    let sent = h.log_in();
    assert_eq!(send_ids(&sent), [1, 2]);
    let (c, _rx_c) = outgoing(3, "carol");
    h.session.on_command(Command::Send(c), h.now);
    let sent_c = h.sent();
    assert_eq!(send_ids(&sent_c), [3]);
    // Only message 1 is acked before the drop.
    let seq_a = sent
        .iter()
        .find(|(_, r)| send_ids(&[(0, r.clone())]) == [1])
        .unwrap()
        .0;
    let ok = SendOk {
        msg_id: 900,
        server_time_ms: 7,
    };
    h.answer(seq_a, ResponseBody::Send(ok));
    let ack = rx_a.try_recv().unwrap().unwrap();
    assert_eq!((ack.client_msg_id, ack.msg_id), (1, 900));
    h.session.connection_lost(&LinkError::Closed);
    assert!(h
        .events
        .try_iter()
        .any(|e| matches!(e, Event::Disconnected { .. })));
    // Sent while offline: queued behind the unacked ones.
    let (d, _rx_d) = outgoing(4, "carol");
    h.session.on_command(Command::Send(d), h.now);
    assert!(h.sent().is_empty(), "nothing is written while offline");
    let sent = h.log_in();
    assert_eq!(send_ids(&sent), [2, 3, 4]);
    assert!(h
        .events
        .try_iter()
        .any(|e| matches!(e, Event::Reconnected { .. })));
}

#[test]
fn a_message_pushed_then_synced_is_delivered_once_and_acked_only_after_the_sync() {
    let mut h = Harness::new();
    let sent = h.log_in();
    let index_seq = sent[0].0;
    h.push(Push::Message(message(50)));
    h.now += Duration::from_secs(1);
    assert!(
        !matches!(
            h.session.on_timeout(h.now),
            Flow::Reconnect(_) | Flow::Stop(_)
        ),
        "alive"
    );
    assert!(
        h.sent()
            .iter()
            .all(|(_, r)| !matches!(r, Request::SyncConfirm { .. } | Request::SyncList { .. })),
        "no confirm of a push before the sync is done"
    );
    // Inbox order is commit order: 50, pushed already, is listed before 40.
    let page = SyncListOk {
        ids: vec![50, 40],
        more: false,
        cursor: 7,
    };
    h.answer(index_seq, ResponseBody::SyncList(page));
    let fetch = h.sent();
    assert!(
        matches!(&fetch[..], [(_, Request::SyncFetch { ids })] if ids == &[40]),
        "what was pushed is not fetched again: {fetch:?}"
    );
    let ok = SyncFetchOk {
        covered: 1,
        messages: vec![message(40)],
    };
    h.answer(fetch[0].0, ResponseBody::SyncFetch(ok));
    assert_eq!(
        h.sent().iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
        [Request::SyncConfirm { upto: 7 }]
    );
    let delivered = h.messages();
    assert_eq!(delivered, [50, 40]);
    // Pushes since are confirmed after the delay, once for a burst, by a catch-up listing
    // from the last cursor: pushes carry no cursor.
    h.push(Push::Message(message(60)));
    h.push(Push::Message(message(61)));
    h.push(Push::Message(message(61)));
    assert_eq!(h.messages(), [60, 61]);
    h.now += ACK_DELAY;
    h.session.on_timeout(h.now);
    let sent = h.sent();
    let [(list_seq, list)] = &sent[..] else {
        panic!("one catch-up listing: {sent:?}");
    };
    assert_eq!(
        list,
        &Request::SyncList {
            after: 7,
            limit: 500
        }
    );
    // The inbox also holds 59, whose push never came: fetched, then everything confirmed.
    let page = SyncListOk {
        ids: vec![60, 59, 61],
        more: false,
        cursor: 10,
    };
    h.answer(*list_seq, ResponseBody::SyncList(page));
    let fetch = h.sent();
    assert!(matches!(&fetch[..], [(_, Request::SyncFetch { ids })] if ids == &[59]));
    let ok = SyncFetchOk {
        covered: 1,
        messages: vec![message(59)],
    };
    h.answer(fetch[0].0, ResponseBody::SyncFetch(ok));
    assert_eq!(h.messages(), [59]);
    let confirm: Vec<Request> = h.sent().into_iter().map(|(_, r)| r).collect();
    assert_eq!(confirm, [Request::SyncConfirm { upto: 10 }]);
    h.now += ACK_DELAY;
    h.session.on_timeout(h.now);
    assert!(
        h.sent()
            .iter()
            .all(|(_, r)| !matches!(r, Request::SyncList { .. })),
        "nothing new, no other round"
    );
}

#[test]
fn busy_sends_retry_after_a_backoff_and_final_refusals_fail_the_send() {
    let mut h = Harness::new();
    h.log_in();
    let (busy, rx_busy) = outgoing(1, "carol");
    let (bad, rx_bad) = outgoing(2, "carol");
    h.session.on_command(Command::Send(busy), h.now);
    h.session.on_command(Command::Send(bad), h.now);
    let sent = h.sent();
    h.refuse(ProtoCommand::Send, sent[0].0, Status::BUSY);
    h.refuse(ProtoCommand::Send, sent[1].0, Status::TOO_LARGE);
    assert_eq!(
        rx_bad.try_recv().unwrap(),
        Err(SendError::Refused(Status::TOO_LARGE))
    );
    assert!(rx_busy.try_recv().is_err(), "a BUSY send is not over");
    let retry = h.session.poll_timeout().expect("a retry time");
    assert!(retry <= h.now + Backoff::default().initial);
    h.now = retry;
    h.session.on_timeout(h.now);
    assert_eq!(send_ids(&h.sent()), [1]);
}

#[test]
fn rate_limited_sends_retry_after_a_backoff_and_requests_get_a_typed_error() {
    let mut h = Harness::new();
    h.log_in();
    let (limited, rx_limited) = outgoing(1, "carol");
    h.session.on_command(Command::Send(limited), h.now);
    let (reply, rx_request) = bounded(1);
    h.session.on_command(
        Command::Request {
            request: Request::GroupJoin { group_id: 5 },
            reply,
            deadline: h.now + Duration::from_secs(10),
        },
        h.now,
    );
    let sent = h.sent();
    h.refuse(ProtoCommand::Send, sent[0].0, Status::RATE_LIMITED);
    h.refuse(ProtoCommand::GroupJoin, sent[1].0, Status::RATE_LIMITED);
    assert_eq!(
        rx_request.try_recv().unwrap(),
        Err(RequestError::RateLimited)
    );
    assert!(
        rx_limited.try_recv().is_err(),
        "a RATE_LIMITED send is not over"
    );
    assert!(h.sent().is_empty(), "nothing resent at once");
    let retry = h.session.poll_timeout().expect("a retry time");
    assert!(retry <= h.now + Backoff::default().initial);
    h.now = retry;
    h.session.on_timeout(h.now);
    assert_eq!(
        send_ids(&h.sent()),
        [1],
        "resent after the backoff, same id"
    );
}

#[test]
fn invalid_recipients_fail_at_once_online_or_not() {
    let mut h = Harness::new();
    let (offline, rx_offline) = outgoing(1, "");
    h.session.on_command(Command::Send(offline), h.now);
    assert!(matches!(
        rx_offline.try_recv().unwrap(),
        Err(SendError::Invalid(_))
    ));
    h.log_in();
    let (online, rx_online) = outgoing(2, "a\u{7}b");
    h.session.on_command(Command::Send(online), h.now);
    assert!(matches!(
        rx_online.try_recv().unwrap(),
        Err(SendError::Invalid(_))
    ));
}

#[test]
fn heartbeats_go_out_when_idle_and_silence_means_reconnect() {
    let mut h = Harness::new();
    h.log_in();
    h.now += Duration::from_secs(30);
    assert!(matches!(h.session.on_timeout(h.now), Flow::Continue));
    let sent = h.sent();
    assert!(matches!(&sent[..], [(_, Request::Ping)]));
    h.answer(sent[0].0, ResponseBody::Pong(PongOk { server_time_ms: 1 }));
    h.now += Duration::from_secs(45);
    assert!(matches!(
        h.session.on_timeout(h.now),
        Flow::Reconnect(LinkError::Silent(_))
    ));
}

#[test]
fn app_requests_wait_for_login_and_time_out_unsent() {
    let mut h = Harness::new();
    let (reply, rx) = bounded(1);
    let deadline = h.now + Duration::from_secs(10);
    let create = Request::GroupCreate {
        name: Text::from("team"),
        members: vec![],
    };
    h.session.on_command(
        Command::Request {
            request: create,
            reply,
            deadline,
        },
        h.now,
    );
    let sent = h.log_in();
    let (seq, _) = sent
        .iter()
        .find(|(_, r)| matches!(r, Request::GroupCreate { .. }))
        .expect("sent after login");
    h.answer(
        *seq,
        ResponseBody::GroupCreate(GroupCreated { group_id: 77 }),
    );
    assert_eq!(
        rx.try_recv().unwrap(),
        Ok(ResponseBody::GroupCreate(GroupCreated { group_id: 77 }))
    );
    // Offline, a request that outlives its deadline is answered Timeout and never sent.
    h.session.connection_lost(&LinkError::Closed);
    let (reply, rx) = bounded(1);
    let join = Request::GroupJoin { group_id: 77 };
    h.session.on_command(
        Command::Request {
            request: join,
            reply,
            deadline: h.now + Duration::from_secs(1),
        },
        h.now,
    );
    h.now += Duration::from_secs(1);
    h.session.on_timeout(h.now);
    assert!(matches!(
        rx.try_recv().unwrap(),
        Err(RequestError::Timeout(_))
    ));
    let sent = h.log_in();
    assert!(sent
        .iter()
        .all(|(_, r)| !matches!(r, Request::GroupJoin { .. })));
}

#[test]
fn a_sent_request_is_lost_with_its_connection() {
    let mut h = Harness::new();
    h.log_in();
    let (reply, rx) = bounded(1);
    let detail = Request::GroupDetail { group_id: 1 };
    h.session.on_command(
        Command::Request {
            request: detail,
            reply,
            deadline: h.now + Duration::from_secs(5),
        },
        h.now,
    );
    h.session.connection_lost(&LinkError::Closed);
    assert_eq!(rx.try_recv().unwrap(), Err(RequestError::ConnectionLost));
}

#[test]
fn a_draining_servers_suggested_reconnect_delay_is_kept_for_the_driver_once() {
    let mut h = Harness::new();
    h.log_in();
    assert_eq!(h.session.take_reconnect_after(), None);
    let flow = h.push(Push::ReconnectAfter { delay_ms: 750 });
    assert!(matches!(flow, Flow::Continue));
    let flow = h.push(Push::Kicked {
        reason: KickReason::SERVER_SHUTDOWN,
        text: Text::from("draining"),
    });
    assert!(matches!(
        flow,
        Flow::Reconnect(LinkError::ServerShutdown(_))
    ));
    assert_eq!(
        h.session.take_reconnect_after(),
        Some(Duration::from_millis(750))
    );
    assert_eq!(h.session.take_reconnect_after(), None);
}

#[test]
fn kicks_stop_unless_the_server_is_draining() {
    let mut h = Harness::new();
    h.log_in();
    let flow = h.push(Push::Kicked {
        reason: KickReason::SERVER_SHUTDOWN,
        text: Text::from("bye"),
    });
    assert!(matches!(
        flow,
        Flow::Reconnect(LinkError::ServerShutdown(_))
    ));
    let flow = h.push(Push::Kicked {
        reason: KickReason::LOGGED_IN_ELSEWHERE,
        text: Text::from("other phone"),
    });
    let Flow::Stop(reason) = flow else {
        panic!("kicked by another device: stop");
    };
    let (m, rx) = outgoing(1, "carol");
    h.session.on_command(Command::Send(m), h.now);
    h.session.stop(reason, None);
    assert_eq!(rx.try_recv().unwrap(), Err(SendError::Closed));
    let events: Vec<Event> = h.events.try_iter().collect();
    assert!(matches!(
        events.last(),
        Some(Event::Stopped {
            reason: StopReason::Kicked { .. }
        })
    ));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Kicked { .. }))
            .count(),
        2
    );
}

#[test]
fn a_refused_first_login_is_the_connect_error() {
    let mut h = Harness::new();
    h.session.connection_opened(endpoint(), "jwt", h.now);
    let seq = h.sent()[0].0;
    let Flow::Stop(reason) = h.refuse(ProtoCommand::Login, seq, Status::TOKEN_EXPIRED) else {
        panic!("an expired token is final");
    };
    h.session.stop(reason, None);
    assert!(matches!(
        h.ready.try_recv().unwrap(),
        Err(ConnectError::LoginRefused(Status::TOKEN_EXPIRED))
    ));
    // BUSY (or RATE_LIMITED) at login is worth another attempt.
    let mut h = Harness::new();
    h.session.connection_opened(endpoint(), "jwt", h.now);
    let seq = h.sent()[0].0;
    assert!(matches!(
        h.refuse(ProtoCommand::Login, seq, Status::BUSY),
        Flow::Reconnect(LinkError::LoginRefused(Status::BUSY))
    ));
    let mut h = Harness::new();
    h.session.connection_opened(endpoint(), "jwt", h.now);
    let seq = h.sent()[0].0;
    assert!(matches!(
        h.refuse(ProtoCommand::Login, seq, Status::RATE_LIMITED),
        Flow::Reconnect(LinkError::LoginRefused(Status::RATE_LIMITED))
    ));
}

#[test]
fn own_acked_messages_are_never_delivered_back() {
    let mut h = Harness::new();
    let sent = h.log_in();
    h.finish_empty_sync(&sent);
    let (m, _rx) = outgoing(1, "carol");
    h.session.on_command(Command::Send(m), h.now);
    let seq = h.sent()[0].0;
    let ok = SendOk {
        msg_id: 70,
        server_time_ms: 1,
    };
    h.answer(seq, ResponseBody::Send(ok));
    h.push(Push::Message(message(70)));
    assert!(h.messages().is_empty());
}

#[test]
fn an_own_message_synced_back_while_awaiting_its_ack_is_not_delivered() {
    let mut h = Harness::new();
    let (m, rx) = outgoing(42, "carol");
    h.session.on_command(Command::Send(m), h.now);
    let sent = h.log_in();
    let index_seq = sent[0].0;
    let send_seq = sent
        .iter()
        .find(|(_, r)| matches!(r, Request::Send { .. }))
        .expect("the send")
        .0;
    // Stored before an earlier drop, so the sync lists it before the resend's ack comes.
    let own = ChatMessage {
        from: Text::from("bob"),
        target: Target::Direct(Text::from("carol")),
        client_msg_id: 42,
        ..message(80)
    };
    let page = SyncListOk {
        ids: vec![80, 81],
        more: false,
        cursor: 2,
    };
    h.answer(index_seq, ResponseBody::SyncList(page));
    let fetch_seq = h.sent()[0].0;
    let ok = SyncFetchOk {
        covered: 2,
        messages: vec![own, message(81)],
    };
    h.answer(fetch_seq, ResponseBody::SyncFetch(ok));
    assert_eq!(h.messages(), [81]);
    let ok = SendOk {
        msg_id: 80,
        server_time_ms: 1,
    };
    h.answer(send_seq, ResponseBody::Send(ok));
    assert_eq!(rx.try_recv().unwrap().unwrap().msg_id, 80);
}

/// A SEND of `body_len` bytes to "carol".
fn outgoing_body(
    client_msg_id: u64,
    body_len: usize,
) -> (Outgoing, Receiver<Result<Ack, SendError>>) {
    let (mut message, rx) = outgoing(client_msg_id, "carol");
    message.body = Bytes::from(vec![b'x'; body_len]);
    (message, rx)
}

#[test]
fn a_message_over_the_packet_limit_is_refused_here_and_never_sent() {
    // SEND's payload: seq u32, `to` with its u16 length, client_msg_id u64, the body's u32
    // length, the body.
    let overhead = 4 + 2 + "carol".len() + 8 + 4;
    let fits = MAX_PACKET as usize - overhead;
    let mut h = Harness::new();
    // Before the first login (queued) and after it (sent at once): the same rule.
    let (early, rx_early) = outgoing_body(1, fits + 1);
    let (at_limit, rx_at_limit) = outgoing_body(2, fits);
    h.session.on_command(Command::Send(early), h.now);
    h.session.on_command(Command::Send(at_limit), h.now);
    let too_large = Err(SendError::TooLarge {
        payload: MAX_PACKET as usize + 1,
        max_packet: MAX_PACKET,
    });
    assert_eq!(rx_early.try_recv().unwrap(), too_large);
    let sent = h.log_in();
    assert_eq!(send_ids(&sent), [2], "the one at the limit goes out");
    assert!(rx_at_limit.try_recv().is_err(), "and waits for its ack");
    let (late, rx_late) = outgoing_body(3, fits + 1);
    h.session.on_command(Command::Send(late), h.now);
    assert_eq!(rx_late.try_recv().unwrap(), too_large);
    // Nothing over the limit comes back after a reconnect either.
    h.session.connection_lost(&LinkError::Closed);
    let sent = h.log_in();
    assert_eq!(send_ids(&sent), [2]);
}
