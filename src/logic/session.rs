//! Who is online where: every open connection, and each user's logged-in devices.
//!
//! Invariants: a connection is in `users` exactly when it is logged in; a user has at most one
//! connection per device kind (a second login of the same kind replaces the first, which the
//! caller kicks); a user with no device left is removed, so the table holds nothing for
//! users who went offline. Every disconnect path ends in [`SessionTable::remove`].

use std::collections::HashMap;
use std::sync::Arc;

/// A connection as the logic core names it: the gateway's `ConnId`, opaque here.
pub type ConnKey = u64;

/// A logged-in device of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The device kind from the token (`phone`, `desktop`, ...).
    pub kind: Arc<str>,
    /// Its connection.
    pub conn: ConnKey,
}

/// What the logic core knows of one open connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// Opened; must log in before `deadline_ms`.
    AwaitingLogin {
        /// Milliseconds (logic-core clock) by which a LOGIN must have arrived.
        deadline_ms: u64,
    },
    /// Logged in as `user` on a device of kind `device`.
    LoggedIn {
        /// The user id, taken from the verified token.
        user: Arc<str>,
        /// The device kind.
        device: Arc<str>,
    },
}

/// The outcome of a login for the caller to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// The device was not online before.
    Fresh,
    /// The same user was already online with the same device kind on `previous`: kick it.
    Replaced {
        /// The older connection, now out of the table.
        previous: ConnKey,
    },
}

/// Sessions of one logic core.
#[derive(Debug, Default)]
pub struct SessionTable {
    conns: HashMap<ConnKey, Entry>,
    users: HashMap<Arc<str>, Vec<Device>>,
}

#[derive(Debug)]
struct Entry {
    state: ConnState,
    /// Consecutive requests that did not parse; too many and the connection is dropped.
    garbage: u8,
    /// When the next PING is due at the documented pace (see [`PingLimit`]); earlier ones
    /// spend the burst.
    ping_due_ms: u64,
}

/// How often a connection may send PING (docs/protocol.md §6.1): `burst` at once and
/// `per_second` on average. The gateway applies the same numbers to WebSocket control
/// frames (`--control-burst`, `--control-rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingLimit {
    /// PINGs a connection may send at once after a quiet period.
    pub burst: u32,
    /// PINGs per second on average, indefinitely (0: no limit).
    pub per_second: u32,
}

impl Default for PingLimit {
    fn default() -> Self {
        PingLimit {
            burst: 20,
            per_second: 5,
        }
    }
}

impl SessionTable {
    /// A new connection that must log in by `deadline_ms`.
    pub fn open(&mut self, conn: ConnKey, deadline_ms: u64) {
        self.conns.insert(
            conn,
            Entry {
                state: ConnState::AwaitingLogin { deadline_ms },
                garbage: 0,
                ping_due_ms: 0,
            },
        );
    }

    /// The state of a connection, if it is open.
    pub fn state(&self, conn: ConnKey) -> Option<&ConnState> {
        self.conns.get(&conn).map(|entry| &entry.state)
    }

    /// The user a connection is logged in as.
    pub fn user_of(&self, conn: ConnKey) -> Option<(&Arc<str>, &Arc<str>)> {
        match self.state(conn)? {
            ConnState::LoggedIn { user, device } => Some((user, device)),
            ConnState::AwaitingLogin { .. } => None,
        }
    }

    /// Logs `conn` in. If the user was online with the same device kind elsewhere, that
    /// connection leaves the table and is returned for the caller to kick. Returns `None` if
    /// `conn` is not open or already logged in.
    pub fn login(&mut self, conn: ConnKey, user: Arc<str>, device: Arc<str>) -> Option<Login> {
        let entry = self.conns.get_mut(&conn)?;
        if matches!(entry.state, ConnState::LoggedIn { .. }) {
            return None;
        }
        entry.state = ConnState::LoggedIn {
            user: user.clone(),
            device: device.clone(),
        };
        let devices = self.users.entry(user).or_default();
        let outcome = match devices.iter().position(|d| d.kind == device) {
            Some(index) => {
                let previous = std::mem::replace(&mut devices[index].conn, conn);
                self.conns.remove(&previous);
                Login::Replaced { previous }
            }
            None => {
                devices.push(Device { kind: device, conn });
                Login::Fresh
            }
        };
        Some(outcome)
    }

    /// Forgets a connection on any disconnect path (close, kick, logout, error, timeout).
    pub fn remove(&mut self, conn: ConnKey) -> Option<ConnState> {
        let entry = self.conns.remove(&conn)?;
        if let ConnState::LoggedIn { user, .. } = &entry.state {
            if let Some(devices) = self.users.get_mut(user) {
                devices.retain(|d| d.conn != conn);
                if devices.is_empty() {
                    self.users.remove(user);
                }
            }
        }
        Some(entry.state)
    }

    /// The online devices of a user (empty if offline).
    pub fn devices(&self, user: &str) -> &[Device] {
        self.users.get(user).map_or(&[], Vec::as_slice)
    }

    /// Counts one unparseable request from `conn`; returns the consecutive count.
    pub fn note_garbage(&mut self, conn: ConnKey) -> u8 {
        match self.conns.get_mut(&conn) {
            Some(entry) => {
                entry.garbage = entry.garbage.saturating_add(1);
                entry.garbage
            }
            None => 0,
        }
    }

    /// A PING at `now_ms`: false if it is over `limit` (the connection is to be dropped).
    /// A generic cell-rate check: each PING moves the due time one interval on, and a PING
    /// may come early by at most `burst - 1` intervals.
    pub fn note_ping(&mut self, conn: ConnKey, now_ms: u64, limit: PingLimit) -> bool {
        let Some(entry) = self.conns.get_mut(&conn) else {
            return true;
        };
        if limit.per_second == 0 {
            return true;
        }
        let interval = 1000 / u64::from(limit.per_second).min(1000);
        let tolerance = interval * u64::from(limit.burst.saturating_sub(1));
        let mut due = entry.ping_due_ms.max(now_ms);
        if due - now_ms > tolerance + interval {
            // Refused PINGs do not move the due time, so only a wall clock stepped back gets
            // here: start again from now rather than punish the client for it.
            due = now_ms;
        }
        if due - now_ms > tolerance {
            return false;
        }
        entry.ping_due_ms = due + interval;
        true
    }

    /// A request parsed: the garbage count starts again.
    pub fn note_good(&mut self, conn: ConnKey) {
        if let Some(entry) = self.conns.get_mut(&conn) {
            entry.garbage = 0;
        }
    }

    /// Every logged-in connection.
    pub fn logged_in(&self) -> impl Iterator<Item = ConnKey> + '_ {
        self.users
            .values()
            .flat_map(|devices| devices.iter().map(|d| d.conn))
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Users with at least one device online.
    pub fn online_users(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    #[test]
    fn login_then_lookup_then_remove_cleans_everything() {
        let mut table = SessionTable::default();
        table.open(1, 10_000);
        assert_eq!(
            table.state(1),
            Some(&ConnState::AwaitingLogin {
                deadline_ms: 10_000
            })
        );
        assert_eq!(table.login(1, s("alice"), s("phone")), Some(Login::Fresh));
        assert_eq!(
            table.user_of(1).map(|(u, d)| (&**u, &**d)),
            Some(("alice", "phone"))
        );
        assert_eq!(table.devices("alice").len(), 1);
        assert!(table.remove(1).is_some());
        assert!(table.devices("alice").is_empty());
        assert_eq!((table.connections(), table.online_users()), (0, 0));
    }

    #[test]
    fn same_device_kind_replaces_and_reports_the_old_connection() {
        let mut table = SessionTable::default();
        table.open(1, 0);
        table.open(2, 0);
        table.login(1, s("alice"), s("phone"));
        assert_eq!(
            table.login(2, s("alice"), s("phone")),
            Some(Login::Replaced { previous: 1 })
        );
        assert_eq!(
            table.devices("alice"),
            &[Device {
                kind: s("phone"),
                conn: 2
            }]
        );
        assert_eq!(table.state(1), None, "the kicked connection left the table");
        // Its later close must not take the new device offline.
        assert_eq!(table.remove(1), None);
        assert_eq!(table.devices("alice").len(), 1);
    }

    #[test]
    fn different_device_kinds_stay_online_together() {
        let mut table = SessionTable::default();
        for conn in 1..=3 {
            table.open(conn, 0);
        }
        table.login(1, s("alice"), s("phone"));
        table.login(2, s("alice"), s("desktop"));
        table.login(3, s("bob"), s("phone"));
        assert_eq!(table.devices("alice").len(), 2);
        table.remove(1);
        assert_eq!(
            table.devices("alice"),
            &[Device {
                kind: s("desktop"),
                conn: 2
            }]
        );
        assert_eq!(table.online_users(), 2);
    }

    #[test]
    fn a_second_login_on_one_connection_is_refused() {
        let mut table = SessionTable::default();
        table.open(1, 0);
        table.login(1, s("alice"), s("phone"));
        assert_eq!(table.login(1, s("bob"), s("phone")), None);
        assert_eq!(
            table.login(9, s("bob"), s("phone")),
            None,
            "unknown connection"
        );
    }

    #[test]
    fn garbage_counts_reset_on_a_good_request() {
        let mut table = SessionTable::default();
        table.open(1, 0);
        assert_eq!(table.note_garbage(1), 1);
        assert_eq!(table.note_garbage(1), 2);
        table.note_good(1);
        assert_eq!(table.note_garbage(1), 1);
        assert_eq!(table.note_garbage(7), 0);
    }

    #[test]
    fn pings_past_the_burst_and_rate_are_refused() {
        let limit = PingLimit {
            burst: 3,
            per_second: 2,
        };
        let mut table = SessionTable::default();
        table.open(1, 10_000);
        let at_once = (0..10)
            .take_while(|_| table.note_ping(1, 5_000, limit))
            .count();
        assert_eq!(at_once, 3, "the burst");
        assert!(!table.note_ping(1, 5_499, limit));
        assert!(table.note_ping(1, 5_500, limit), "one interval later");
        // A client at the rate is never refused.
        for i in 1..1000 {
            assert!(table.note_ping(1, 5_500 + i * 500, limit));
        }
        assert!(
            table.note_ping(7, 0, limit),
            "unknown connections are not judged here"
        );
        // The wall clock stepped back a minute: not the client's fault.
        assert!(table.note_ping(1, 100_000, limit));
        assert!(table.note_ping(1, 40_000, limit));
    }
}
