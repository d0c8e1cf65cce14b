//! `Status`: the `u16` outcome every response carries after its `seq`.
//!
//! A newtype over the wire value rather than a closed enum, so a client decodes a status a
//! newer server added instead of refusing the whole response. Only OK responses carry a body.

use std::fmt;

/// A response's outcome code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Status(u16);

impl Status {
    /// 0: the request succeeded; the response carries the command's body.
    pub const OK: Status = Status(0);
    /// 1: the payload does not parse (truncated, trailing bytes, bad UTF-8, a length or count
    /// outside its limit). A payload too short to hold a `seq` is answered with seq 0.
    pub const MALFORMED: Status = Status(1);
    /// 2: the command number is not a request this server knows.
    pub const UNKNOWN_COMMAND: Status = Status(2);
    /// 3: a request other than LOGIN before a successful login; the server then closes.
    pub const NOT_LOGGED_IN: Status = Status(3);
    /// 4: LOGIN on a connection that is already logged in; the connection stays as it was.
    pub const ALREADY_LOGGED_IN: Status = Status(4);
    /// 5: the token's signature, header or claims are wrong (bad `sub` or `dev`, no `exp`);
    /// the server then closes.
    pub const INVALID_TOKEN: Status = Status(5);
    /// 6: the token's `exp` has passed; the server then closes. Get a new token and reconnect.
    pub const TOKEN_EXPIRED: Status = Status(6);
    /// 7: the group does not exist (GROUP_SEND, GROUP_JOIN, GROUP_QUIT, GROUP_DETAIL).
    pub const NOT_FOUND: Status = Status(7);
    /// 8: GROUP_SEND or GROUP_QUIT by a user who is not a member of the group.
    pub const NOT_MEMBER: Status = Status(8);
    /// 9: GROUP_CREATE or GROUP_JOIN would take the group over its member limit.
    pub const GROUP_FULL: Status = Status(9);
    /// 10: a message body longer than the server's maximum (LOGIN's `max_body`).
    pub const TOO_LARGE: Status = Status(10);
    /// 11: the server is overloaded (its store queue is full). Nothing was stored; retry later,
    /// a message with the same `client_msg_id`.
    pub const BUSY: Status = Status(11);
    /// 12: the server failed (e.g. a store error). A message may or may not be stored; resend
    /// it with the same `client_msg_id`, which never stores it twice.
    pub const INTERNAL: Status = Status(12);
    /// 13: a SYNC_LIST or SYNC_CONFIRM cursor this inbox never gave out (past its last entry,
    /// e.g. a msg_id kept from SYNC_INDEX, or a cursor from another server's database).
    /// Nothing changed; sync again from cursor 0.
    pub const BAD_CURSOR: Status = Status(13);
    /// 14: the connection sends requests faster than the server's message rate (its
    /// `--message-burst` at once, `--message-rate` a second on average). The request was not
    /// carried out; the connection stays open. Wait, then send it again (a message with the
    /// same `client_msg_id`). A connection that sends another burst's worth without waiting is
    /// closed (docs/protocol.md §5).
    pub const RATE_LIMITED: Status = Status(14);

    /// The status with wire code `code`, known to this crate or not.
    pub const fn from_code(code: u16) -> Self {
        Status(code)
    }

    /// The wire code.
    pub const fn code(self) -> u16 {
        self.0
    }

    /// Whether this is [`Status::OK`].
    pub const fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// The name used in docs/protocol.md, or `None` for a code this crate does not know.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "OK",
            1 => "MALFORMED",
            2 => "UNKNOWN_COMMAND",
            3 => "NOT_LOGGED_IN",
            4 => "ALREADY_LOGGED_IN",
            5 => "INVALID_TOKEN",
            6 => "TOKEN_EXPIRED",
            7 => "NOT_FOUND",
            8 => "NOT_MEMBER",
            9 => "GROUP_FULL",
            10 => "TOO_LARGE",
            11 => "BUSY",
            12 => "INTERNAL",
            13 => "BAD_CURSOR",
            14 => "RATE_LIMITED",
            _ => return None,
        })
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}({})", self.0),
            None => write!(f, "Status({})", self.0),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "status {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_numbered_without_gaps() {
        let known = [
            Status::OK,
            Status::MALFORMED,
            Status::UNKNOWN_COMMAND,
            Status::NOT_LOGGED_IN,
            Status::ALREADY_LOGGED_IN,
            Status::INVALID_TOKEN,
            Status::TOKEN_EXPIRED,
            Status::NOT_FOUND,
            Status::NOT_MEMBER,
            Status::GROUP_FULL,
            Status::TOO_LARGE,
            Status::BUSY,
            Status::INTERNAL,
            Status::BAD_CURSOR,
            Status::RATE_LIMITED,
        ];
        for (code, status) in known.into_iter().enumerate() {
            assert_eq!(usize::from(status.code()), code);
            assert!(status.name().is_some());
        }
        assert_eq!(Status::from_code(15).name(), None);
    }

    #[test]
    fn formats_by_name_and_keeps_unknown_codes() {
        assert_eq!(format!("{:?}", Status::BUSY), "BUSY(11)");
        assert_eq!(Status::TOKEN_EXPIRED.to_string(), "TOKEN_EXPIRED");
        assert_eq!(format!("{:?}", Status::from_code(300)), "Status(300)");
        assert!(Status::OK.is_ok() && !Status::INTERNAL.is_ok());
    }
}
