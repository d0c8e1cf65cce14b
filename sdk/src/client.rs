//! `Client`: the application's handle on one connection, and `SendHandle` for a message.
//!
//! Every method only queues a command for the background thread and wakes it, then waits on
//! a reply channel with a timeout, so a `Client` can be shared by reference between threads
//! (`&Client` is `Send + Sync`). Dropping it closes the connection and joins the thread.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender, TryRecvError};
use mio::{Poll, Waker};
use switchboard_protocol::{Request, ResponseBody, Target, Text};

use crate::config::ClientConfig;
use crate::driver::{connect_wait, Driver, WAKER};
use crate::error::{Ack, ConnectError, RequestError, SendError};
use crate::event::{Event, LoginInfo};
use crate::msg_id::ClientMsgIds;
use crate::outbox::Outgoing;
use crate::session::{Command, Session, SessionConfig};

/// Extra wait on a reply channel beyond the request timeout: the background thread answers
/// `Timeout` itself at the deadline, this only covers the hop.
const REPLY_SLACK: Duration = Duration::from_secs(1);

/// A group's name, owner and members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDetail {
    /// The group's name.
    pub name: String,
    /// The creator's user id.
    pub owner: String,
    /// Every member's user id, in no particular order.
    pub members: Vec<String>,
}

/// One logged-in connection to a Switchboard gateway, kept up by a background thread.
#[derive(Debug)]
pub struct Client {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    events: Receiver<Event>,
    ids: ClientMsgIds,
    login: LoginInfo,
    request_timeout: Duration,
    thread: Option<JoinHandle<()>>,
}

/// The outcome of one message, delivered once: an [`Ack`] or a [`SendError`].
#[derive(Debug)]
pub struct SendHandle {
    client_msg_id: u64,
    reply: Receiver<Result<Ack, SendError>>,
}

impl SendHandle {
    /// The id the SDK gave the message (resends reuse it).
    pub fn client_msg_id(&self) -> u64 {
        self.client_msg_id
    }

    /// Waits up to `timeout` for the outcome. On `Timeout` the message is still queued and the
    /// handle can be waited on again; any other result is final and is returned only once.
    pub fn wait(&self, timeout: Duration) -> Result<Ack, SendError> {
        match self.reply.recv_timeout(timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(SendError::Timeout(timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(SendError::Closed),
        }
    }

    /// The outcome if it has come, without waiting.
    pub fn try_result(&self) -> Option<Result<Ack, SendError>> {
        match self.reply.try_recv() {
            Ok(result) => Some(result),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(SendError::Closed)),
        }
    }

    /// The channel the outcome arrives on, for `crossbeam_channel::select!`.
    pub fn receiver(&self) -> &Receiver<Result<Ack, SendError>> {
        &self.reply
    }
}

impl Client {
    /// Connects to the first endpoint that answers (in list order, then around again with
    /// backoff, for at most `initial_connect_timeout`), logs in, and returns once logged in.
    /// The offline sync then runs in the background: messages arrive as events, then
    /// `SyncDone`. INVALID_TOKEN, TOKEN_EXPIRED and other final login refusals are returned
    /// at once, not retried.
    pub fn connect(config: ClientConfig) -> Result<Client, ConnectError> {
        if config.endpoints.is_empty() {
            return Err(ConnectError::NoEndpoints);
        }
        let thread_error = |e| ConnectError::Thread(Arc::new(e));
        let poll = Poll::new().map_err(thread_error)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(thread_error)?);
        let (commands, command_rx) = unbounded();
        let (events_tx, events) = unbounded();
        let (ready_tx, ready) = bounded(1);
        let session_config = SessionConfig {
            request_timeout: config.request_timeout,
            heartbeat: config.heartbeat_interval,
            backoff: config.backoff,
            dedupe_window: config.dedupe_window,
            client_version: config.client_version.clone(),
            max_packet: config.max_packet,
        };
        let session = Session::new(session_config, events_tx, ready_tx, Instant::now());
        let request_timeout = config.request_timeout;
        let wait = connect_wait(&config);
        let driver = Driver::new(config, poll, command_rx, session);
        let thread = std::thread::Builder::new()
            .name("switchboard-sdk".into())
            .spawn(move || driver.run())
            .map_err(thread_error)?;
        let mut client = Client {
            commands,
            waker,
            events,
            ids: ClientMsgIds::new(),
            login: LoginInfo {
                user: String::new(),
                device: String::new(),
                server_time_ms: 0,
                idle_timeout_ms: 0,
                max_body: 0,
                endpoint: crate::Endpoint::Tcp {
                    host: String::new(),
                    port: 0,
                    tls: false,
                },
            },
            request_timeout,
            thread: Some(thread),
        };
        match ready.recv_timeout(wait) {
            Ok(Ok(login)) => {
                client.login = login;
                Ok(client)
            }
            Ok(Err(error)) => Err(error),
            // Dropping `client` stops and joins the thread.
            Err(_) => Err(ConnectError::Stopped),
        }
    }

    /// What the server said at the first login.
    pub fn login(&self) -> &LoginInfo {
        &self.login
    }

    /// The events: messages, kicks, drops, reconnects, sync completions, and `Stopped` last.
    /// Read them: the channel is unbounded and holds what the application has not taken.
    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    /// Sends `body` to user `to` and waits up to the request timeout for the server's ack.
    pub fn send(&self, to: &str, body: impl Into<Bytes>) -> Result<Ack, SendError> {
        self.send_async(to, body).wait(self.request_timeout)
    }

    /// Queues `body` for user `to` and returns at once; the handle gives the outcome. The
    /// message is sent now if the client is logged in, else after the next login, and resent
    /// with the same `client_msg_id` after every reconnect until it is acknowledged.
    pub fn send_async(&self, to: &str, body: impl Into<Bytes>) -> SendHandle {
        self.queue_message(Target::Direct(Text::from(to)), body.into())
    }

    /// Sends `body` to group `group_id` and waits for the ack, like [`send`](Self::send).
    pub fn group_send(&self, group_id: u64, body: impl Into<Bytes>) -> Result<Ack, SendError> {
        self.group_send_async(group_id, body)
            .wait(self.request_timeout)
    }

    /// Queues `body` for group `group_id`, like [`send_async`](Self::send_async).
    pub fn group_send_async(&self, group_id: u64, body: impl Into<Bytes>) -> SendHandle {
        self.queue_message(Target::Group(group_id), body.into())
    }

    /// Creates a group named `name` with this user as owner and `members` besides; its id.
    pub fn create_group(&self, name: &str, members: &[&str]) -> Result<u64, RequestError> {
        let request = Request::GroupCreate {
            name: Text::from(name),
            members: members.iter().map(|m| Text::from(*m)).collect(),
        };
        match self.request(request)? {
            ResponseBody::GroupCreate(created) => Ok(created.group_id),
            _ => Err(RequestError::UnexpectedResponse),
        }
    }

    /// Joins group `group_id` (joining twice changes nothing).
    pub fn join_group(&self, group_id: u64) -> Result<(), RequestError> {
        self.request(Request::GroupJoin { group_id }).map(drop)
    }

    /// Leaves group `group_id`.
    pub fn quit_group(&self, group_id: u64) -> Result<(), RequestError> {
        self.request(Request::GroupQuit { group_id }).map(drop)
    }

    /// Group `group_id`'s name, owner and members.
    pub fn group_detail(&self, group_id: u64) -> Result<GroupDetail, RequestError> {
        match self.request(Request::GroupDetail { group_id })? {
            ResponseBody::GroupDetail(detail) => Ok(GroupDetail {
                name: detail.name.as_str().to_owned(),
                owner: detail.owner.as_str().to_owned(),
                members: detail
                    .members
                    .iter()
                    .map(|m| m.as_str().to_owned())
                    .collect(),
            }),
            _ => Err(RequestError::UnexpectedResponse),
        }
    }

    /// Logs out (the server ends the session and closes), then stops the client. Messages
    /// still unacknowledged fail with `SendError::Closed`.
    pub fn logout(mut self) -> Result<(), RequestError> {
        let result = self.request(Request::Logout).map(drop);
        self.shut_down();
        result
    }

    /// Closes the connection and stops the background thread (what dropping does).
    pub fn close(mut self) {
        self.shut_down();
    }

    fn queue_message(&self, target: Target, body: Bytes) -> SendHandle {
        let client_msg_id = self.ids.next_id();
        let (reply, reply_rx) = bounded(1);
        let message = Outgoing {
            client_msg_id,
            target,
            body,
            reply,
        };
        // If the thread is gone, the reply sender is dropped with the command: `Closed`.
        self.command(Command::Send(message));
        SendHandle {
            client_msg_id,
            reply: reply_rx,
        }
    }

    fn request(&self, request: Request) -> Result<ResponseBody, RequestError> {
        let (reply, reply_rx) = bounded(1);
        let deadline = Instant::now() + self.request_timeout;
        self.command(Command::Request {
            request,
            reply,
            deadline,
        });
        match reply_rx.recv_timeout(self.request_timeout + REPLY_SLACK) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(RequestError::Timeout(self.request_timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(RequestError::Closed),
        }
    }

    fn command(&self, command: Command) {
        if self.commands.send(command).is_ok() {
            // A failed wake means the poll is gone, and so is the thread.
            let _ = self.waker.wake();
        }
    }

    fn shut_down(&mut self) {
        self.command(Command::Close);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shut_down();
    }
}
