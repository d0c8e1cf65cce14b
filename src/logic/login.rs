//! Logins and sessions: opening, LOGIN, LOGOUT, the login deadline, kicks, and the rules that
//! drop connections breaking the protocol (malformed requests, commands outside the request
//! range, messages that are not one packet).
//!
//! Every path that ends a connection here removes it from the session table before telling
//! the outlet, so a late packet or completion for it finds nothing and does nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use switchboard_protocol::{
    limits, KickReason, LoginOk, Request, RequestError, ResponseBody, Status,
};
use tracing::{debug, info};

use super::core::LogicCore;
use super::outlet::{CloseWhy, Outlet};
use super::session::{ConnKey, ConnState, Login};
use super::tickets::Asker;
use crate::store::Store;

impl<S: Store, O: Outlet> LogicCore<S, O> {
    pub(super) fn on_opened(&mut self, conn: ConnKey, peer: SocketAddr) {
        info!(conn, %peer, "connection opened");
        let deadline = self.now_ms + self.config.login_timeout.as_millis() as u64;
        self.sessions.open(conn, deadline);
        self.login_deadlines.push_back((deadline, conn));
    }

    pub(super) fn on_closed(&mut self, conn: ConnKey) {
        self.sessions.remove(conn);
    }

    /// KICKED(SERVER_SHUTDOWN) to every logged-in connection, then the answer on `done`.
    pub(super) fn on_shutdown(&mut self, done: crossbeam_channel::Sender<()>) {
        let text = "server shutting down";
        if let Some(packet) = self.replies.kicked(KickReason::SERVER_SHUTDOWN, text) {
            for conn in self.sessions.logged_in() {
                self.replies.push(conn, packet.clone());
            }
        }
        let _ = done.send(());
    }

    /// A drain reached `conn`: RECONNECT_AFTER with a delay spread over
    /// `drain_reconnect_delay` and KICKED(SERVER_SHUTDOWN) if it is logged in, then the close.
    pub(super) fn on_drain(&mut self, conn: ConnKey) {
        if let Some(ConnState::LoggedIn { .. }) = self.sessions.state(conn) {
            let delay_ms = reconnect_delay_ms(conn, self.now_ms, self.config.drain_reconnect_delay);
            self.replies.push_reconnect_after(conn, delay_ms);
            self.replies
                .push_kicked(conn, KickReason::SERVER_SHUTDOWN, "server draining");
        }
        self.drop_connection(conn, CloseWhy::Draining);
    }

    /// Closes the connections whose login deadline has passed without a LOGIN.
    pub(super) fn expire_logins(&mut self) {
        while let Some(&(deadline, conn)) = self.login_deadlines.front() {
            if deadline > self.now_ms {
                break;
            }
            self.login_deadlines.pop_front();
            // A reused key or a logged-in connection has another state: leave it alone.
            if let Some(ConnState::AwaitingLogin { deadline_ms }) = self.sessions.state(conn) {
                if *deadline_ms == deadline {
                    debug!(conn, "no LOGIN within the login timeout");
                    self.metrics.login_timeouts.inc();
                    self.drop_connection(conn, CloseWhy::LoginTimeout);
                }
            }
        }
    }

    /// A request on a connection not logged in: LOGIN, or a refusal and the close.
    pub(super) fn before_login(&mut self, asker: Asker, request: Request) {
        match request {
            Request::Login { token, .. } => self.login(asker, token.as_str()),
            _ => {
                self.refuse(asker, Status::NOT_LOGGED_IN);
                self.drop_connection(asker.conn, CloseWhy::LoginFailed);
            }
        }
    }

    fn login(&mut self, asker: Asker, token: &str) {
        let conn = asker.conn;
        let identity = match self.tokens.verify(token, self.now_ms / 1000) {
            Ok(identity) => identity,
            Err(error) => {
                let status = if error.is_expired() {
                    Status::TOKEN_EXPIRED
                } else {
                    Status::INVALID_TOKEN
                };
                info!(conn, %error, "login refused");
                self.metrics.logins_refused.inc();
                self.refuse(asker, status);
                return self.drop_connection(conn, CloseWhy::LoginFailed);
            }
        };
        let user: Arc<str> = Arc::from(identity.user.as_str());
        let device: Arc<str> = Arc::from(identity.device.as_str());
        if let Some(Login::Replaced { previous }) =
            self.sessions.login(conn, user.clone(), device.clone())
        {
            info!(user = %user, device = %device, "same device kind logged in again: kicking the older connection");
            let text = "logged in elsewhere with the same device kind";
            self.replies
                .push_kicked(previous, KickReason::LOGGED_IN_ELSEWHERE, text);
            self.replies.close(previous, CloseWhy::Kicked);
            self.metrics.logins_replacing.inc();
        }
        self.metrics.logins.inc();
        let body = ResponseBody::Login(LoginOk {
            user: (&*user).into(),
            device: (&*device).into(),
            server_time_ms: self.now_ms,
            idle_timeout_ms: u32::try_from(self.config.idle_timeout.as_millis())
                .unwrap_or(u32::MAX),
            max_body: self.config.max_body,
        });
        self.reply(asker, body);
    }

    pub(super) fn logout(&mut self, asker: Asker) {
        self.reply(asker, ResponseBody::Logout);
        self.drop_connection(asker.conn, CloseWhy::Logout);
    }

    /// A WebSocket message that is not exactly one Switchboard packet.
    pub(super) fn on_not_one_packet(&mut self, conn: ConnKey) {
        info!(
            conn,
            "closing: a message that is not exactly one Switchboard packet"
        );
        self.drop_connection(conn, CloseWhy::Garbage);
    }

    /// A request that did not decode: answered (MALFORMED or UNKNOWN_COMMAND). An unknown
    /// command never counts toward a kick (docs/protocol.md §5: newer clients can fall back);
    /// a malformed one drops the connection at once before login, and after it on the
    /// `MALFORMED_IN_A_ROW_LIMIT`th in a row.
    pub(super) fn on_undecodable(&mut self, conn: ConnKey, error: RequestError) {
        self.replies.refuse_undecodable(conn, &error);
        if let RequestError::UnknownCommand { .. } = error {
            return;
        }
        let logged_in = self.sessions.user_of(conn).is_some();
        let strikes = self.sessions.note_garbage(conn);
        if logged_in && strikes < limits::MALFORMED_IN_A_ROW_LIMIT {
            return;
        }
        info!(conn, %error, strikes, "closing: requests that do not parse");
        self.drop_violator(conn, "too many malformed requests in a row");
    }

    /// Closes a connection that broke the protocol; a logged-in one hears why first
    /// (docs/protocol.md §5: KICKED, PROTOCOL_VIOLATION).
    pub(super) fn drop_violator(&mut self, conn: ConnKey, text: &'static str) {
        if self.sessions.user_of(conn).is_some() {
            self.replies
                .push_kicked(conn, KickReason::PROTOCOL_VIOLATION, text);
        }
        self.drop_connection(conn, CloseWhy::Garbage);
    }

    /// Closes a connection that sent PING faster than allowed: KICKED (PROTOCOL_VIOLATION),
    /// then a close the gateway maps to 1008 on WebSocket.
    pub(super) fn drop_flooder(&mut self, conn: ConnKey, text: &'static str) {
        self.replies
            .push_kicked(conn, KickReason::PROTOCOL_VIOLATION, text);
        self.drop_connection(conn, CloseWhy::PolicyViolation);
    }

    /// Forgets the connection, then asks the gateway to close it.
    pub(super) fn drop_connection(&mut self, conn: ConnKey, why: CloseWhy) {
        self.sessions.remove(conn);
        self.replies.close(conn, why);
    }
}

/// A delay in `[0, max]` for `conn` at `now_ms`, spread evenly over the range: a hash
/// (splitmix64) of both, so the core needs no random source and tests can repeat it.
fn reconnect_delay_ms(conn: ConnKey, now_ms: u64, max: std::time::Duration) -> u32 {
    let max = u64::try_from(max.as_millis())
        .unwrap_or(u64::MAX)
        .min(u64::from(u32::MAX));
    let mut z = conn ^ now_ms.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % (max + 1)) as u32
}

#[cfg(test)]
mod drain_delay_tests {
    use super::reconnect_delay_ms;
    use std::time::Duration;

    #[test]
    fn reconnect_delays_stay_within_the_maximum_and_spread_over_it() {
        let max = Duration::from_millis(1000);
        let mut tenths = [0u32; 10];
        for conn in 0..10_000u64 {
            let delay = reconnect_delay_ms(conn, 1_234, max);
            assert!(delay <= 1000);
            tenths[(delay.min(999) / 100) as usize] += 1;
        }
        for (tenth, count) in tenths.iter().enumerate() {
            assert!((800..1200).contains(count), "tenth {tenth}: {count}");
        }
        assert_eq!(reconnect_delay_ms(7, 9, Duration::ZERO), 0);
    }
}
