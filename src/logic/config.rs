//! The logic core's settings.

use std::time::Duration;

use switchboard_protocol::limits;

use super::session::PingLimit;

/// The logic core's settings.
#[derive(Debug, Clone)]
pub struct LogicConfig {
    /// Snowflake node id (0..=1023); distinct per node sharing a store.
    pub node_id: u16,
    /// The HS256 secret the application's backend signs login tokens with.
    pub jwt_secret: Vec<u8>,
    /// A new connection must log in within this time.
    pub login_timeout: Duration,
    /// Largest message body accepted.
    pub max_body: u32,
    /// The gateway's read-wait, told to clients so they can pace their heartbeats.
    pub idle_timeout: Duration,
    /// Largest group.
    pub group_member_limit: usize,
    /// Largest packet payload the gateway carries (SYNC_FETCH responses stay under it).
    pub max_packet: usize,
    /// Recent (sender, client_msg_id) pairs remembered to answer resends without the store.
    pub dedupe_window: usize,
    /// Messages older than this are never synced, even before the store's purge removes them.
    pub retention: Duration,
    /// How often a connection may PING before it is kicked (PROTOCOL_VIOLATION) and closed.
    pub ping_limit: PingLimit,
    /// In a drain, each logged-in client is told to wait a delay drawn evenly from zero to
    /// this before reconnecting (RECONNECT_AFTER, docs/protocol.md §8), so one batch of
    /// closes does not come back as one burst.
    pub drain_reconnect_delay: Duration,
    /// The half of each millisecond's id sequence to give out: the whole, unless this process
    /// took over from another of the same node (`--handover`), which keeps the other half.
    pub id_lane: crate::logic::snowflake::IdLane,
    /// Ids only after this millisecond (since the Unix epoch): the last the process this one
    /// took over from had used.
    pub ids_after_unix_ms: Option<u64>,
    /// Group changes (GROUP_CREATE, GROUP_JOIN, GROUP_QUIT) answered BUSY until the groups
    /// are reloaded (`Inbound::ReloadGroups`): while another process shares the store, each
    /// one's membership cache would miss the other's changes.
    pub groups_frozen: bool,
    /// Which thread runs the core (`serve --logic-thread`).
    pub thread: LogicThread,
}

/// Which thread runs the logic core. The core is the same either way; only who feeds it
/// and when differs (`driver.rs`). [`LogicThread::resolve`] turns the choice into the place,
/// once, when the server starts and knows how many reactors it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogicThread {
    /// The reactor's thread when there is one reactor, else a thread of its own. The default:
    /// on a quiet machine the reactor's thread lost no chat row against a thread of its own
    /// and cost less per message (docs/performance.md, "A quiet sitting").
    #[default]
    Auto,
    /// A thread of its own, woken by the gateway's batches and the store's completions on
    /// channels ([`LogicCore::run`](super::LogicCore::run)).
    Own,
    /// The one reactor's thread: the reactor hands it its events in its pass and is woken for
    /// the store's completions ([`LogicCore::turn`](super::LogicCore::turn)); no thread hop
    /// in, no wake-up out. It needs exactly one reactor: with more, a thread of its own (the
    /// server says so in a warning).
    Reactor,
}

impl LogicThread {
    /// Where the core runs beside `reactors` reactors: [`LogicThread::Reactor`] or
    /// [`LogicThread::Own`], never `Auto`.
    pub fn resolve(self, reactors: usize) -> LogicThread {
        match self {
            LogicThread::Auto | LogicThread::Reactor if reactors == 1 => LogicThread::Reactor,
            _ => LogicThread::Own,
        }
    }
}

impl std::str::FromStr for LogicThread {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(LogicThread::Auto),
            "own" => Ok(LogicThread::Own),
            "reactor" => Ok(LogicThread::Reactor),
            other => Err(format!("{other:?} is not auto, own or reactor")),
        }
    }
}

impl Default for LogicConfig {
    fn default() -> Self {
        LogicConfig {
            node_id: 1,
            jwt_secret: Vec::new(),
            login_timeout: Duration::from_millis(u64::from(limits::DEFAULT_LOGIN_DEADLINE_MS)),
            max_body: limits::DEFAULT_MAX_BODY,
            idle_timeout: Duration::from_millis(u64::from(limits::DEFAULT_IDLE_TIMEOUT_MS)),
            group_member_limit: limits::DEFAULT_GROUP_MEMBER_LIMIT,
            max_packet: switchboard_codec::packet::DEFAULT_MAX_PAYLOAD as usize,
            dedupe_window: 100_000,
            retention: Duration::from_secs(7 * 24 * 3600),
            ping_limit: PingLimit::default(),
            drain_reconnect_delay: Duration::from_secs(1),
            id_lane: crate::logic::snowflake::IdLane::Whole,
            ids_after_unix_ms: None,
            groups_frozen: false,
            thread: LogicThread::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LogicThread::{self, Auto, Own, Reactor};

    #[test]
    fn the_choice_resolves_to_the_reactors_thread_only_beside_one_reactor() {
        assert_eq!(LogicThread::default(), Auto);
        for (choice, one, two) in [
            (Auto, Reactor, Own),
            (Own, Own, Own),
            (Reactor, Reactor, Own),
        ] {
            assert_eq!(choice.resolve(1), one, "{choice:?} beside one reactor");
            assert_eq!(choice.resolve(2), two, "{choice:?} beside two");
            assert_eq!(choice.resolve(16), Own, "{choice:?} beside sixteen");
        }
        for (text, choice) in [("auto", Auto), ("own", Own), ("reactor", Reactor)] {
            assert_eq!(text.parse(), Ok(choice));
        }
        assert!("Reactor".parse::<LogicThread>().is_err());
    }
}
