//! The packet limit over real sockets (docs/protocol.md §1 and §11): one limit on a packet's
//! payload, 1 MiB by default, with one meaning in both directions on both transports. A
//! WebSocket message is one packet, so it may be that limit plus the 10-byte header; the
//! server accepts such a message and never sends a larger one; and it refuses to start with a
//! body limit or group size whose packets would not fit.

mod chat_common;

use bytes::BytesMut;
use chat_common::{
    unique_user, ChatClient, ServerOptions, TestServer, Transport, BOTH, IO_TIMEOUT,
};
use switchboard::gateway::{GatewayConfig, RateLimit};
use switchboard::logic::LogicConfig;
use switchboard::serve::{ChatServer, LimitError, StartError, StoreConfigPatch};
use switchboard_codec::packet::{DEFAULT_MAX_PAYLOAD, HEADER_LEN};
use switchboard_codec::ws::CloseCode;
use switchboard_protocol::{limits, ChatMessage, Request, ServerPacket, Status, Target, Text};

const MAX_PACKET: usize = DEFAULT_MAX_PAYLOAD as usize;

/// A whole SEND packet from `to` whose payload is exactly `payload_len` bytes.
fn send_of_payload(seq: u32, to: &str, payload_len: usize) -> Vec<u8> {
    let fields = 4 + (2 + to.len()) + 8 + 4; // seq, to, client_msg_id, body length
    let request = Request::Send {
        to: Text::from(to),
        client_msg_id: 1,
        body: vec![b'x'; payload_len - fields].into(),
    };
    let mut bytes = BytesMut::new();
    request.encode(seq, &mut bytes).expect("encode");
    assert_eq!(bytes.len(), HEADER_LEN + payload_len);
    bytes.to_vec()
}

#[test]
fn a_payload_of_exactly_the_limit_is_read_on_both_transports_and_one_more_byte_closes() {
    let server = TestServer::start();
    for transport in BOTH {
        let mut client = server.login(transport, &unique_user("alice"), None);
        // At the limit the packet is read and its body judged: over max_body, so TOO_LARGE.
        client
            .send_unit(&send_of_payload(7, "bob", MAX_PACKET))
            .expect("send");
        let response = client.response(7);
        assert_eq!(response.result, Err(Status::TOO_LARGE), "{transport:?}");
        assert!(
            client.is_open(),
            "{transport:?}: a packet at the limit is fine"
        );

        // One byte over: the connection is closed unanswered (on WebSocket with 1009).
        let _ = client.send_unit(&send_of_payload(8, "bob", MAX_PACKET + 1));
        let (before, closure) = client.expect_closed(IO_TIMEOUT);
        assert!(
            !before
                .iter()
                .any(|p| matches!(p, ServerPacket::Response(r) if r.seq == 8)),
            "{transport:?}: not answered: {before:?}"
        );
        if transport == Transport::Ws {
            assert_eq!(closure.ws_close, Some(CloseCode::MESSAGE_TOO_BIG));
        }
    }
}

/// Direct messages from `from` to `to` whose SYNC_FETCH page, all of them, has a payload of
/// exactly `MAX_PACKET` bytes: 15 bodies of `max_body` and one that makes up the rest.
fn bodies_filling_one_page(from: &str, to: &str) -> Vec<Vec<u8>> {
    let envelope = |body: usize| {
        ChatMessage {
            msg_id: 1,
            server_time_ms: 1,
            from: Text::from(from),
            target: Target::Direct(Text::from(to)),
            client_msg_id: 1,
            body: vec![0; body].into(),
        }
        .encoded_len()
    };
    let max_body = limits::DEFAULT_MAX_BODY as usize;
    let mut left = MAX_PACKET - switchboard_protocol::SyncFetchOk::EMPTY_PAYLOAD_LEN;
    let mut bodies = Vec::new();
    for _ in 0..15 {
        left -= envelope(max_body);
        bodies.push(vec![b'a'; max_body]);
    }
    let last = left - envelope(0);
    assert!(last <= max_body, "the page needs more messages");
    bodies.push(vec![b'z'; last]);
    bodies
}

#[test]
fn a_sync_page_at_the_limit_reaches_a_client_with_the_documented_limit_and_never_more() {
    let server = TestServer::start();
    for transport in BOTH {
        let (alice, bob) = (unique_user("alice"), unique_user("bob"));
        let mut alice_conn = server.login(transport, &alice, None);
        let bodies = bodies_filling_one_page(&alice, &bob);
        let mut ids = Vec::new();
        for (n, body) in bodies.iter().enumerate() {
            let ok = alice_conn
                .send_direct(&bob, n as u64, body)
                .expect("stored");
            ids.push(ok.msg_id);
        }
        let extra = alice_conn.send_direct(&bob, 99, b"!").expect("stored");

        // Bob reads with exactly the limits the document tells client authors to set.
        let mut bob_conn = ChatClient::connect(transport, server.addr(transport))
            .with_documented_limit(MAX_PACKET as u32);
        bob_conn
            .login(&chat_common::token(&bob, None))
            .expect("bob logs in");
        let page = bob_conn.sync_fetch(&ids);
        assert_eq!(usize::from(page.covered), ids.len(), "{transport:?}");
        assert_eq!(
            bob_conn.largest_packet(),
            HEADER_LEN + MAX_PACKET,
            "{transport:?}: the page is exactly at the limit"
        );
        // One more message would pass it: the page stops before it, never over the limit.
        let mut all = ids.clone();
        all.push(extra.msg_id);
        let page = bob_conn.sync_fetch(&all);
        assert_eq!(usize::from(page.covered), ids.len(), "{transport:?}");
        assert_eq!(bob_conn.largest_packet(), HEADER_LEN + MAX_PACKET);
        let rest = bob_conn.sync_fetch(&all[ids.len()..]);
        assert_eq!(rest.messages.len(), 1);

        // And the server takes from a client what it sends: a message of the same size.
        bob_conn
            .send_unit(&send_of_payload(1000, &alice, MAX_PACKET))
            .expect("send");
        assert_eq!(
            bob_conn.response(1000).result,
            Err(Status::TOO_LARGE),
            "{transport:?}: read, not closed"
        );
        assert!(bob_conn.is_open(), "{transport:?}");
    }
}

#[test]
fn a_largest_push_fits_the_documented_client_limit() {
    // The largest body a 1 MiB server allows, between the longest user ids: its MESSAGE push is
    // within the limit (a server started with a larger --max-body is refused, below).
    let max_body = limits::max_body_within(MAX_PACKET);
    let server = TestServer::with_options(chat_common::ServerOptions {
        max_body: max_body as u32,
        ..Default::default()
    });
    for transport in BOTH {
        let suffix = format!("-{:08x}", chat_common::random_u64() as u32);
        let long_id = |c: &str| format!("{}{suffix}", c.repeat(limits::MAX_USER_ID_LEN - 9));
        let (alice, bob) = (long_id("a"), long_id("b"));
        let mut alice_conn = server.login(transport, &alice, None);
        let mut bob_conn = ChatClient::connect(transport, server.addr(transport))
            .with_documented_limit(MAX_PACKET as u32);
        bob_conn
            .login(&chat_common::token(&bob, None))
            .expect("bob logs in");
        let ok = alice_conn
            .send_direct(&bob, 1, &vec![b'm'; max_body])
            .expect("stored");
        let pushed = bob_conn.expect_message();
        assert_eq!(pushed.msg_id, ok.msg_id);
        assert!(bob_conn.largest_packet() <= HEADER_LEN + MAX_PACKET);
        let fetched = bob_conn.sync_fetch(&[ok.msg_id]);
        assert_eq!(fetched.messages.len(), 1, "{transport:?}");
        assert!(bob_conn.largest_packet() <= HEADER_LEN + MAX_PACKET);
    }
}

#[test]
fn limits_whose_packets_would_not_fit_are_refused_at_start() {
    let start = |max_body: usize, members: usize| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let gateway = GatewayConfig {
            tcp: Some(chat_common::loopback()),
            ws: None,
            workers: 1,
            ..GatewayConfig::default()
        };
        let logic = LogicConfig {
            jwt_secret: chat_common::SECRET.to_vec(),
            max_body: max_body as u32,
            group_member_limit: members,
            ..LogicConfig::default()
        };
        ChatServer::start(
            gateway,
            logic,
            dir.path().into(),
            StoreConfigPatch::default(),
        )
        .map(ChatServer::shutdown)
    };
    let largest = limits::max_body_within(MAX_PACKET);
    let members = limits::DEFAULT_GROUP_MEMBER_LIMIT;
    assert!(start(largest, members).is_ok());
    let error = start(largest + 1, members).expect_err("a body that cannot be pushed");
    assert!(
        matches!(error, StartError::Limits(LimitError::BodyOverPacket { .. })),
        "{error:?}"
    );
    assert!(error.to_string().contains("--max-body"), "{error}");
    let error = start(1024, 20_000).expect_err("a member list that cannot be sent");
    assert!(
        matches!(
            error,
            StartError::Limits(LimitError::GroupOverPacket { .. })
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("--group-member-limit"),
        "{error}"
    );
}

#[test]
fn a_response_that_would_pass_the_limit_is_internal_not_sent() {
    // Only data kept from larger limits can make one: a group of 1000 members created under
    // the defaults, then the server restarted with a 32 KiB packet limit.
    let dir = tempfile::tempdir().expect("a temp dir");
    let owner = unique_user("owner");
    let members: Vec<String> = (0..999).map(|n| format!("m{n:063}")).collect();
    let group = {
        let server = TestServer::start_in(dir.path(), chat_common::ServerOptions::default());
        let mut client = server.login(Transport::Tcp, &owner, None);
        let names: Vec<&str> = members.iter().map(String::as_str).collect();
        let group = client.group_create("big", &names).expect("created");
        server.stop();
        group
    };
    let small = 32 << 10;
    let server = TestServer::start_in(
        dir.path(),
        chat_common::ServerOptions {
            max_packet: small,
            max_body: 16 << 10,
            group_member_limit: 400,
            ..Default::default()
        },
    );
    for transport in BOTH {
        let mut client = ChatClient::connect(transport, server.addr(transport))
            .with_documented_limit(small as u32);
        client
            .login(&chat_common::token(&owner, None))
            .expect("logged in");
        assert_eq!(
            client.group_detail(group).err(),
            Some(Status::INTERNAL),
            "{transport:?}"
        );
        assert!(client.largest_packet() <= HEADER_LEN + small);
        assert!(client.is_open(), "{transport:?}");
    }
}

/// The request rate of the RATE_LIMITED tests: 10 at once, 10 a second, then 10 answered
/// RATE_LIMITED before the close.
const REQUEST_RATE: RateLimit = RateLimit {
    burst: 10,
    per_second: 10,
    grace: 10,
};

/// `request` encoded once per seq in `seqs`.
fn requests(request: &Request, seqs: std::ops::Range<u32>) -> Vec<Vec<u8>> {
    seqs.map(|seq| {
        let mut bytes = BytesMut::new();
        request.encode(seq, &mut bytes).expect("encode");
        bytes.to_vec()
    })
    .collect()
}

/// The statuses of the responses among `packets`, by seq.
fn statuses(packets: &[ServerPacket]) -> Vec<(u32, Status)> {
    packets
        .iter()
        .filter_map(|p| match p {
            ServerPacket::Response(r) => Some((
                r.seq,
                r.result.as_ref().err().copied().unwrap_or(Status::OK),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn requests_past_the_rate_are_answered_rate_limited_then_the_connection_closes_and_others_are_served(
) {
    let server = TestServer::with_options(ServerOptions {
        message_limit: REQUEST_RATE,
        ..ServerOptions::default()
    });
    for transport in BOTH {
        let mut quiet = server.login(transport, &unique_user("quiet"), None);
        let mut eager = server.login(transport, &unique_user("eager"), None);
        // LOGIN took one of the burst: 9 more are carried out, the next 10 answered
        // RATE_LIMITED (on the gateway, in order), and the 20th past the burst closes.
        let detail = Request::GroupDetail { group_id: 999_999 };
        eager.send_at_once(&requests(&detail, 100..130));
        let (packets, closure) = eager.expect_closed(IO_TIMEOUT);
        let answers = statuses(&packets);
        let limited: Vec<u32> = answers
            .iter()
            .filter(|(_, s)| *s == Status::RATE_LIMITED)
            .map(|(seq, _)| *seq)
            .collect();
        assert_eq!(
            limited,
            (109..119).collect::<Vec<_>>(),
            "{transport:?}: {answers:?}"
        );
        // The 9 carried out are answered by the core, unless the close overtook them.
        assert!(answers
            .iter()
            .all(|(seq, s)| *s == Status::RATE_LIMITED || (*seq < 109 && *s == Status::NOT_FOUND)));
        if transport == Transport::Ws {
            assert_eq!(closure.ws_close, Some(CloseCode::POLICY_VIOLATION));
        }
        // Another connection (another user, same address) is served throughout.
        assert!(quiet.is_open());
        assert_eq!(quiet.group_detail(999_999), Err(Status::NOT_FOUND));
    }
}

#[test]
fn a_client_that_waits_after_rate_limited_is_served_again() {
    let server = TestServer::with_options(ServerOptions {
        message_limit: REQUEST_RATE,
        ..ServerOptions::default()
    });
    for transport in BOTH {
        let mut client = server.login(transport, &unique_user("patient"), None);
        let detail = Request::GroupDetail { group_id: 999_999 };
        client.send_at_once(&requests(&detail, 200..212));
        let mut limited = 0;
        for seq in 200..212 {
            match client.response(seq).result {
                Err(Status::RATE_LIMITED) => limited += 1,
                Err(Status::NOT_FOUND) => {}
                other => panic!("{transport:?} seq {seq}: {other:?}"),
            }
        }
        assert_eq!(limited, 3, "{transport:?}");
        // Three over the rate cost three intervals on top: half a second later it is served.
        std::thread::sleep(std::time::Duration::from_millis(600));
        assert_eq!(client.group_detail(999_999), Err(Status::NOT_FOUND));
        assert!(client.is_open());
    }
}

crate::on_postgres_too!(
    a_payload_of_exactly_the_limit_is_read_on_both_transports_and_one_more_byte_closes,
    a_sync_page_at_the_limit_reaches_a_client_with_the_documented_limit_and_never_more,
    a_largest_push_fits_the_documented_client_limit,
    limits_whose_packets_would_not_fit_are_refused_at_start,
    a_response_that_would_pass_the_limit_is_internal_not_sent,
);
