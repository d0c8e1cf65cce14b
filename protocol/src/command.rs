//! Command numbers: requests in 0x0001..=0x3FFF, pushes in 0x4000..=0x7FFF, and a response's
//! command is its request's with the high bit (0x8000) set.
//!
//! The packet header's `command u16` is the only thing that says how to read a payload, so
//! every number here is fixed forever once published; new commands take new numbers.

/// Set on a response's command: `response = request | RESPONSE_BIT`.
pub const RESPONSE_BIT: u16 = 0x8000;

/// The lowest push command.
pub const PUSH_MIN: u16 = 0x4000;
/// The highest push command.
pub const PUSH_MAX: u16 = 0x7FFF;

/// A request a client sends (client -> server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Command {
    /// Application heartbeat; answered with the server's time.
    Ping = 0x0001,
    /// Authenticates the connection with a token; must be the first packet.
    Login = 0x0010,
    /// Ends the session; the server answers, then closes.
    Logout = 0x0011,
    /// A direct (1:1) message.
    Send = 0x0020,
    /// A message to a group.
    GroupSend = 0x0021,
    /// Lists the ids of stored messages after a position.
    SyncIndex = 0x0030,
    /// Fetches stored messages by id.
    SyncFetch = 0x0031,
    /// Acknowledges stored messages up to an id, so they are never synced again.
    SyncAck = 0x0032,
    /// Lists the ids of an inbox's entries after a cursor (the inbox's sequence), with the
    /// cursor of the last one: SYNC_INDEX's successor, safe with many writers.
    SyncList = 0x0033,
    /// Acknowledges an inbox up to a cursor from SYNC_LIST: SYNC_ACK's successor.
    SyncConfirm = 0x0034,
    /// Creates a group owned by the sender.
    GroupCreate = 0x0040,
    /// Joins a group.
    GroupJoin = 0x0041,
    /// Leaves a group.
    GroupQuit = 0x0042,
    /// Reads a group's name, owner and members.
    GroupDetail = 0x0043,
}

impl Command {
    /// Every request command, in numeric order.
    pub const ALL: [Command; 14] = [
        Command::Ping,
        Command::Login,
        Command::Logout,
        Command::Send,
        Command::GroupSend,
        Command::SyncIndex,
        Command::SyncFetch,
        Command::SyncAck,
        Command::SyncList,
        Command::SyncConfirm,
        Command::GroupCreate,
        Command::GroupJoin,
        Command::GroupQuit,
        Command::GroupDetail,
    ];

    /// The request command numbered `code`, if there is one.
    pub const fn from_code(code: u16) -> Option<Command> {
        Some(match code {
            0x0001 => Command::Ping,
            0x0010 => Command::Login,
            0x0011 => Command::Logout,
            0x0020 => Command::Send,
            0x0021 => Command::GroupSend,
            0x0030 => Command::SyncIndex,
            0x0031 => Command::SyncFetch,
            0x0032 => Command::SyncAck,
            0x0033 => Command::SyncList,
            0x0034 => Command::SyncConfirm,
            0x0040 => Command::GroupCreate,
            0x0041 => Command::GroupJoin,
            0x0042 => Command::GroupQuit,
            0x0043 => Command::GroupDetail,
            _ => return None,
        })
    }

    /// The wire number of the request.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The wire number of its response.
    pub const fn response_code(self) -> u16 {
        self as u16 | RESPONSE_BIT
    }

    /// The name used in docs/protocol.md.
    pub const fn name(self) -> &'static str {
        match self {
            Command::Ping => "PING",
            Command::Login => "LOGIN",
            Command::Logout => "LOGOUT",
            Command::Send => "SEND",
            Command::GroupSend => "GROUP_SEND",
            Command::SyncIndex => "SYNC_INDEX",
            Command::SyncFetch => "SYNC_FETCH",
            Command::SyncAck => "SYNC_ACK",
            Command::SyncList => "SYNC_LIST",
            Command::SyncConfirm => "SYNC_CONFIRM",
            Command::GroupCreate => "GROUP_CREATE",
            Command::GroupJoin => "GROUP_JOIN",
            Command::GroupQuit => "GROUP_QUIT",
            Command::GroupDetail => "GROUP_DETAIL",
        }
    }
}

/// A push the server sends unasked (server -> client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum PushCommand {
    /// A chat message for this connection's user.
    Message = 0x4001,
    /// The server is about to close this connection, and says why.
    Kicked = 0x4002,
    /// The server is about to close this connection (a drain) and suggests how long to wait
    /// before reconnecting; KICKED follows.
    ReconnectAfter = 0x4003,
}

impl PushCommand {
    /// The push command numbered `code`, if there is one.
    pub const fn from_code(code: u16) -> Option<PushCommand> {
        match code {
            0x4001 => Some(PushCommand::Message),
            0x4002 => Some(PushCommand::Kicked),
            0x4003 => Some(PushCommand::ReconnectAfter),
            _ => None,
        }
    }

    /// The wire number.
    pub const fn code(self) -> u16 {
        self as u16
    }
}

/// The lowest request command.
pub const REQUEST_MIN: u16 = 0x0001;
/// The highest request command.
pub const REQUEST_MAX: u16 = 0x3FFF;

/// Whether `code` lies in the request range (0x0001..=0x3FFF), known or not. A client packet
/// outside it (0x0000, a push or a response number) can never become a request in a later
/// version, so the server treats it as a protocol violation rather than UNKNOWN_COMMAND.
pub const fn is_request(code: u16) -> bool {
    code >= REQUEST_MIN && code <= REQUEST_MAX
}

/// Whether `code` lies in the push range (0x4000..=0x7FFF), known or not.
pub const fn is_push(code: u16) -> bool {
    code >= PUSH_MIN && code <= PUSH_MAX
}

/// Whether `code` is a response (its high bit is set).
pub const fn is_response(code: u16) -> bool {
    code & RESPONSE_BIT != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_round_trips_through_its_code_and_is_a_request() {
        for command in Command::ALL {
            assert_eq!(Command::from_code(command.code()), Some(command));
            assert!(command.code() > 0 && command.code() < PUSH_MIN);
            assert_eq!(command.response_code(), command.code() | 0x8000);
            assert!(is_response(command.response_code()));
            assert!(!is_push(command.code()) && !is_response(command.code()));
            assert!(is_request(command.code()));
        }
        let mut codes = Command::ALL.map(Command::code);
        codes.sort_unstable();
        assert_eq!(codes, Command::ALL.map(Command::code), "ALL is in order");
    }

    #[test]
    fn pushes_lie_in_the_push_range() {
        for push in [
            PushCommand::Message,
            PushCommand::Kicked,
            PushCommand::ReconnectAfter,
        ] {
            assert_eq!(PushCommand::from_code(push.code()), Some(push));
            assert!(is_push(push.code()));
            assert_eq!(Command::from_code(push.code()), None);
        }
        assert_eq!(Command::from_code(0), None);
        for code in [0x0000, 0x4000, 0x4001, 0x7fff, 0x8000, 0x8010, 0xffff] {
            assert!(!is_request(code), "{code:#06x}");
        }
        assert!(is_request(0x0001) && is_request(0x3fff));
        assert_eq!(Command::from_code(Command::Ping.response_code()), None);
    }
}
