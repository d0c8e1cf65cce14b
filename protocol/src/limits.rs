//! The protocol's limits: what decoding enforces and what the server's configuration defaults to.
//!
//! Lengths and counts marked "enforced while decoding" are checked by both the decoder and the
//! encoder, so a value this crate encodes is always one it decodes. The `DEFAULT_*` values are
//! server settings a client learns (LOGIN's response) or must live with; docs/protocol.md lists them.

/// Shortest user id in bytes (enforced while decoding).
pub const MIN_USER_ID_LEN: usize = 1;
/// Longest user id in bytes of UTF-8 (enforced while decoding, with "no control characters";
/// the server also refuses a token whose `sub` breaks either).
pub const MAX_USER_ID_LEN: usize = 64;

/// Shortest device kind in bytes.
pub const MIN_DEVICE_LEN: usize = 1;
/// Longest device kind (the token's `dev` claim, e.g. "phone") in bytes; a device kind is
/// `[a-z0-9_-]`.
pub const MAX_DEVICE_LEN: usize = 32;
/// The device kind of a token without a `dev` claim.
pub const DEFAULT_DEVICE: &str = "default";

/// Shortest group name in bytes (enforced while decoding).
pub const MIN_GROUP_NAME_LEN: usize = 1;
/// Longest group name in bytes of UTF-8 (enforced while decoding).
pub const MAX_GROUP_NAME_LEN: usize = 64;

/// Longest LOGIN token (a JWT) in bytes (enforced while decoding).
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest LOGIN client version string in bytes; it may be empty (enforced while decoding).
pub const MAX_CLIENT_VERSION_LEN: usize = 64;
/// Longest KICKED text in bytes (enforced while decoding).
pub const MAX_KICK_TEXT_LEN: usize = 256;

/// Most ids one SYNC_FETCH may ask for (enforced while decoding: more is MALFORMED).
pub const MAX_SYNC_FETCH_IDS: usize = 100;
/// Most ids one SYNC_INDEX response carries; a larger `limit`, or 0, is served as this.
pub const MAX_SYNC_INDEX_LIMIT: u16 = 500;

/// Default longest message body in bytes; the server's `--max-body` may change it (it is sent
/// in LOGIN's response). A longer body gets TOO_LARGE.
pub const DEFAULT_MAX_BODY: u32 = 64 * 1024;
/// Default most members of a group, the owner included; more gets GROUP_FULL.
pub const DEFAULT_GROUP_MEMBER_LIMIT: usize = 1000;

/// Malformed requests in a row (requests that parse reset the count) after which the server
/// kicks a connection with PROTOCOL_VIOLATION. Only MALFORMED counts: an unknown command never
/// does, so a newer client can probe for commands this server lacks (docs/protocol.md §5).
pub const MALFORMED_IN_A_ROW_LIMIT: u8 = 10;

/// The most a `Message` (docs/protocol.md §7) takes beyond its body: longest `from` and `to`
/// user ids, every fixed field, and the body's length prefix.
pub const MESSAGE_MAX_OVERHEAD: usize =
    8 + 8 + (2 + MAX_USER_ID_LEN) + 1 + (2 + MAX_USER_ID_LEN) + 8 + 4;

/// The longest body a server with packet payloads of at most `max_packet` bytes can carry in
/// every packet that holds one: a MESSAGE push and a SYNC_FETCH response of one message (its
/// 10 bytes of seq, status, `covered` and count, then the `Message`). A larger `max_body`
/// would make the server send packets larger than it accepts.
pub const fn max_body_within(max_packet: usize) -> usize {
    max_packet.saturating_sub(crate::SyncFetchOk::EMPTY_PAYLOAD_LEN + MESSAGE_MAX_OVERHEAD)
}

/// The longest GROUP_DETAIL response payload for a group of `members` members: seq, status,
/// the longest name and owner, the list count, and the longest user id per member.
pub const fn group_detail_max_payload(members: usize) -> usize {
    4 + 2 + (2 + MAX_GROUP_NAME_LEN) + (2 + MAX_USER_ID_LEN) + 2 + members * (2 + MAX_USER_ID_LEN)
}

/// Default time a new connection has to log in before the server closes it, in milliseconds.
pub const DEFAULT_LOGIN_DEADLINE_MS: u32 = 10_000;
/// Default time a connection may stay silent before the server closes it, in milliseconds
/// (sent in LOGIN's response; clients PING at least every half of it).
pub const DEFAULT_IDLE_TIMEOUT_MS: u32 = 180_000;

/// The number of ids a SYNC_INDEX with `limit` is served: `limit`, capped at
/// [`MAX_SYNC_INDEX_LIMIT`], with 0 meaning the cap.
pub const fn sync_index_limit(limit: u16) -> u16 {
    if limit == 0 || limit > MAX_SYNC_INDEX_LIMIT {
        MAX_SYNC_INDEX_LIMIT
    } else {
        limit
    }
}

/// Whether `id` is a well-formed user id: 1..=64 bytes without control characters, which is
/// what decoding enforces on every user id field.
///
/// The server checks a token's `sub` with this, so every id it sees obeys the wire's rule.
pub fn is_valid_user_id(id: &str) -> bool {
    (MIN_USER_ID_LEN..=MAX_USER_ID_LEN).contains(&id.len()) && !id.chars().any(char::is_control)
}

/// Whether `device` is a well-formed device kind: 1..=32 bytes of `[a-z0-9_-]`.
pub fn is_valid_device(device: &str) -> bool {
    (MIN_DEVICE_LEN..=MAX_DEVICE_LEN).contains(&device.len())
        && device
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_index_limit_caps_and_maps_zero_to_the_cap() {
        assert_eq!(sync_index_limit(0), MAX_SYNC_INDEX_LIMIT);
        assert_eq!(sync_index_limit(1), 1);
        assert_eq!(sync_index_limit(500), 500);
        assert_eq!(sync_index_limit(501), 500);
        assert_eq!(sync_index_limit(u16::MAX), 500);
    }

    #[test]
    fn the_largest_packets_holding_a_body_or_a_member_list_meet_their_bounds() {
        use crate::{ChatMessage, GroupDetailOk, ResponseBody, SyncFetchOk, Target, Text};
        use bytes::{Bytes, BytesMut};
        use switchboard_codec::packet::HEADER_LEN;

        let id = Text::from("x".repeat(MAX_USER_ID_LEN));
        let max_packet = 4096;
        let message = ChatMessage {
            msg_id: u64::MAX,
            server_time_ms: u64::MAX,
            from: id.clone(),
            target: Target::Direct(id.clone()),
            client_msg_id: u64::MAX,
            body: Bytes::from(vec![7u8; max_body_within(max_packet)]),
        };
        assert_eq!(
            message.encoded_len(),
            MESSAGE_MAX_OVERHEAD + message.body.len()
        );
        let push = message.encode_push().expect("encode");
        assert!(push.len() - HEADER_LEN <= max_packet, "{}", push.len());
        let mut page = BytesMut::new();
        ResponseBody::SyncFetch(SyncFetchOk {
            covered: 1,
            messages: vec![message],
        })
        .encode(u32::MAX, &mut page)
        .expect("encode");
        assert_eq!(page.len() - HEADER_LEN, max_packet, "exactly at the bound");

        let members = vec![id.clone(); 100];
        let mut detail = BytesMut::new();
        ResponseBody::GroupDetail(GroupDetailOk {
            name: Text::from("g".repeat(MAX_GROUP_NAME_LEN)),
            owner: id,
            members,
        })
        .encode(1, &mut detail)
        .expect("encode");
        assert_eq!(detail.len() - HEADER_LEN, group_detail_max_payload(100));
    }

    #[test]
    fn id_and_device_bounds() {
        assert!(!is_valid_user_id(""));
        assert!(is_valid_user_id("a"));
        assert!(is_valid_user_id(&"x".repeat(64)));
        assert!(!is_valid_user_id(&"x".repeat(65)));
        assert!(!is_valid_user_id("a\tb"));
        assert!(!is_valid_device("Phone"));
        assert!(is_valid_device(DEFAULT_DEVICE));
        assert!(!is_valid_device(&"d".repeat(33)));
    }
}
