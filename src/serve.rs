//! `switchboard serve`: the gateway, the logic core and the store in one process.
//!
//! This file is the only place that knows both the gateway and the logic core. Each reactor's
//! [`ChatHandler`] collects its connections' events during one pass of its event loop and hands
//! them to the logic core as one batch; the logic core answers through [`GatewayOutlet`], whose
//! pushes go to the reactors' inboxes (one wake-up per reactor per batch, not per message).
//!
//! Neither side waits on the other. The way in is a [`CoreQueue`], bounded in bytes: when it is
//! full, a handler keeps its batch and tells its reactor to stop reading
//! ([`Handler::wants_input`]) until the core has made room and woken it; the kernel's flow
//! control then holds the clients back, while the reactor keeps delivering pushes and running
//! its timers. The way out is the reactors' inboxes, bounded in bytes too: a push that does not
//! fit closes its connection as a slow consumer (see `gateway::handle`), never blocks the core.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::{Bytes, BytesMut};
use switchboard_codec::packet::{PacketRef, HEADER_LEN};
use switchboard_codec::ws::CloseCode;
use switchboard_codec::Decoded;
use switchboard_protocol::command::is_request;
use switchboard_protocol::{encode_error, Status};

use crate::admin::{AdminConfig, AdminError, AdminServer, Readiness, Sources};
use crate::core_queue::{event_bytes, CoreQueue};
use crate::handover::{OfferSources, Offering};

use crate::gateway::{
    Admission, ConnId, ConnInfo, Disconnect, Gateway, GatewayConfig, GatewayHandle, Handler,
    Message, Outbox,
};
use crate::logic::snowflake::NodeIdOutOfRange;
use crate::logic::{CloseWhy, Inbound, LogicConfig, LogicCore, Outlet};
use crate::store::{
    Engine, PostgresConfig, PostgresStore, SqliteConfig, SqliteStore, StoreError, StoreMetrics,
    StoreThread,
};

/// Bytes of events (packets and their envelopes) that may wait for the logic core, from all
/// reactors together: at the core's pace of small requests (docs/performance.md) well under
/// a second of work, and small beside the write queues.
pub const CORE_QUEUE_BYTES: usize = 16 << 20;

/// A handler hands its batch over in the middle of a pass once it holds this many bytes, so a
/// pass over many busy connections does not build one huge batch (and, when the core's queue
/// is full, reading stops here).
const BATCH_BYTES: usize = 256 << 10;

/// The gateway side of the bridge: one per reactor.
pub struct ChatHandler {
    reactor: usize,
    to_core: CoreQueue,
    batch: Vec<Inbound>,
    batch_bytes: usize,
    /// The core's queue refused the batch: hold input until it takes it.
    refused: bool,
}

impl ChatHandler {
    /// The handler of reactor `reactor`, handing its events to the core through `to_core`.
    pub fn new(reactor: usize, to_core: CoreQueue) -> ChatHandler {
        ChatHandler {
            reactor,
            to_core,
            batch: Vec::new(),
            batch_bytes: 0,
            refused: false,
        }
    }

    fn add(&mut self, event: Inbound) {
        self.batch_bytes += event_bytes(&event);
        self.batch.push(event);
    }

    /// Offers the batch to the core; if its queue is full, keeps it (and the reactor stops
    /// reading until the core wakes it).
    fn hand_over(&mut self) {
        if self.batch.is_empty() {
            self.refused = false;
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        match self.to_core.try_send(self.reactor, batch, self.batch_bytes) {
            Ok(()) => {
                self.batch_bytes = 0;
                self.refused = false;
            }
            Err(batch) => {
                self.batch = batch;
                self.refused = true;
            }
        }
    }
}

impl Handler for ChatHandler {
    fn open(&mut self, _out: &mut Outbox<'_>, conn: ConnId, info: &ConnInfo<'_>) -> Admission {
        self.add(Inbound::Opened(conn.as_u64(), info.peer));
        Admission::ACCEPT
    }

    fn message(&mut self, _out: &mut Outbox<'_>, conn: ConnId, message: Message) {
        // Text never arrives: the gateway refuses it with 1003 when `ws_text` is off.
        if let Message::Binary(packet) = message {
            self.add(Inbound::Packet(conn.as_u64(), packet));
        }
    }

    /// A request past the connection's message rate (docs/protocol.md §4, RATE_LIMITED) is
    /// answered here, on the reactor, and never reaches the logic core: a flood costs the
    /// core nothing. Anything that is not one request packet goes to the core as usual, which
    /// closes the connection for it.
    fn over_rate(&mut self, out: &mut Outbox<'_>, conn: ConnId, message: Message) {
        if let Message::Binary(packet) = message {
            match rate_limited_answer(&packet) {
                Some(answer) => out.push(conn, answer),
                None => self.add(Inbound::Packet(conn.as_u64(), packet)),
            }
        }
    }

    /// A drain reached the connection: the core says goodbye (RECONNECT_AFTER and KICKED
    /// to a logged-in client) and closes it with 1012.
    fn drain(&mut self, _out: &mut Outbox<'_>, conn: ConnId) {
        self.add(Inbound::Drain(conn.as_u64()));
    }

    fn disconnect(&mut self, _out: &mut Outbox<'_>, conn: ConnId, _reason: &Disconnect) {
        // Kept even when the core's queue is full: one per connection at most.
        self.add(Inbound::Closed(conn.as_u64()));
    }

    fn end_of_batch(&mut self, _out: &mut Outbox<'_>) {
        self.hand_over();
    }

    fn wants_input(&mut self) -> bool {
        if self.refused || self.batch_bytes >= BATCH_BYTES {
            self.hand_over();
        }
        !self.refused
    }
}

/// RATE_LIMITED for the request `packet` holds, on its `seq` (0 when the payload is too short
/// to hold one, as for MALFORMED); `None` when `packet` is not exactly one request packet.
fn rate_limited_answer(packet: &[u8]) -> Option<Bytes> {
    let (request, used) = match PacketRef::parse(packet, u32::MAX) {
        Ok(Decoded::Complete(parsed)) => parsed,
        _ => return None,
    };
    if used != packet.len() || !is_request(request.command) {
        return None;
    }
    let seq = request
        .payload
        .first_chunk::<4>()
        .map_or(0, |seq| u32::from_be_bytes(*seq));
    let mut answer = BytesMut::with_capacity(HEADER_LEN + 6);
    encode_error(request.command, seq, Status::RATE_LIMITED, &mut answer).ok()?;
    Some(answer.freeze())
}

/// The logic core's side of the bridge: pushes and closes through the gateway's handle. A
/// push wakes its reactor only at the end of the core's turn, once for all of the turn's
/// pushes to it (a commit's acks arrive together), or once [`WAKE_AFTER_PUSHES`] are waiting,
/// so that a large fan-out is written while the core is still pushing.
pub struct GatewayOutlet {
    handle: GatewayHandle,
    /// By reactor: pushed to since the last flush, to be woken then.
    to_wake: Vec<bool>,
    unwoken: usize,
}

/// Pushes held back from the reactors at most: enough to cover a turn of ordinary traffic,
/// few enough that a group message's fan-out starts going out at once.
const WAKE_AFTER_PUSHES: usize = 64;

impl GatewayOutlet {
    fn new(handle: GatewayHandle) -> GatewayOutlet {
        let to_wake = vec![false; handle.reactors()];
        GatewayOutlet {
            handle,
            to_wake,
            unwoken: 0,
        }
    }
}

impl Outlet for GatewayOutlet {
    fn push(&mut self, conn: u64, packet: Bytes) {
        if let Some(reactor) = self.handle.push_unwoken(ConnId::from_u64(conn), packet) {
            if let Some(wake) = self.to_wake.get_mut(reactor) {
                *wake = true;
                self.unwoken += 1;
            }
        }
        if self.unwoken >= WAKE_AFTER_PUSHES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.unwoken = 0;
        for (reactor, wake) in self.to_wake.iter_mut().enumerate() {
            if std::mem::take(wake) {
                self.handle.wake(reactor);
            }
        }
    }

    fn close(&mut self, conn: u64, why: CloseWhy) {
        let code = match why {
            CloseWhy::Logout => CloseCode::NORMAL,
            CloseWhy::Garbage => CloseCode::PROTOCOL_ERROR,
            CloseWhy::PolicyViolation => CloseCode::POLICY_VIOLATION,
            CloseWhy::Draining => CloseCode::SERVICE_RESTART,
            // Application codes (RFC 6455 §7.4.2: 4000-4999 are ours to define).
            CloseWhy::LoginFailed => CloseCode(4001),
            CloseWhy::LoginTimeout => CloseCode(4002),
            CloseWhy::Kicked => CloseCode(4003),
        };
        self.handle.close(ConnId::from_u64(conn), code);
    }
}

/// Why the chat server did not start, one variant per step that can fail.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Limits(LimitError),
    #[error("cannot open the store: {0}")]
    OpenStore(#[source] StoreError),
    #[error("cannot load groups: {0}")]
    LoadGroups(#[source] StoreError),
    #[error("cannot start the gateway: {0}")]
    Gateway(#[source] std::io::Error),
    #[error("cannot start the logic core: {0}")]
    Logic(#[source] NodeIdOutOfRange),
    #[error("cannot start the logic core's thread: {0}")]
    SpawnLogic(#[source] std::io::Error),
    #[error("cannot start the admin listener: {0}")]
    Admin(#[source] AdminError),
}

/// Settings whose largest packet would not fit in `--max-packet` (docs/protocol.md §1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "--max-body {max_body} does not fit in --max-packet {max_packet}: a message and its \
         envelope would make packets larger than clients may accept (at most {largest_body})"
    )]
    BodyOverPacket {
        max_body: u32,
        max_packet: usize,
        largest_body: usize,
    },
    #[error(
        "--group-member-limit {member_limit} does not fit in --max-packet {max_packet}: \
         GROUP_DETAIL's member list would make packets larger than clients may accept"
    )]
    GroupOverPacket {
        member_limit: usize,
        max_packet: usize,
    },
}

/// Why the login-token secret could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{} is empty", path.display())]
    Empty { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no randomness for a secret: {0}")]
    Random(getrandom::Error),
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A running chat server: gateway, logic core and store.
pub struct ChatServer {
    gateway: Gateway,
    admin: Option<AdminServer>,
    /// The server's own way into the core, for the shutdown notice; dropped before the core
    /// is joined (the core runs until every sender is gone).
    to_core: CoreQueue,
    core: JoinHandle<()>,
    store: StoreThread,
    /// What a new process started with `--handover` is given.
    offering: Offering,
    /// After a takeover: the store and the core, to reload the groups with once the process
    /// taken over from has exited; emptied by then or by the drain.
    reload: Arc<std::sync::Mutex<Option<(Engine, CoreQueue)>>>,
}

/// What a process started with `--handover` took over from the one before it.
#[derive(Debug, Default)]
pub struct Inherited {
    /// The gateway's listening sockets.
    pub listeners: crate::gateway::Listeners,
    /// The admin listener's socket.
    pub admin: Option<std::net::TcpListener>,
}

impl ChatServer {
    /// Opens the store in `data`, loads the groups, starts the logic core and the gateway.
    pub fn start(
        gateway: GatewayConfig,
        logic: LogicConfig,
        data: PathBuf,
        store: StoreConfigPatch,
    ) -> Result<ChatServer, StartError> {
        ChatServer::start_with_admin(gateway, logic, data, store, None)
    }

    /// [`ChatServer::start`], with the admin listener when `admin` is given. It listens
    /// first, so `/healthz` answers and `/readyz` says 503 while the store opens.
    pub fn start_with_admin(
        gateway: GatewayConfig,
        logic: LogicConfig,
        data: PathBuf,
        store: StoreConfigPatch,
        admin: Option<AdminConfig>,
    ) -> Result<ChatServer, StartError> {
        ChatServer::start_inheriting(gateway, logic, data, store, admin, None)
    }

    /// [`ChatServer::start_with_admin`], on the sockets another process handed over when
    /// `inherited` holds them (`--handover`; `logic` then carries the id lane and frozen
    /// groups, see `LogicConfig`).
    pub fn start_inheriting(
        gateway: GatewayConfig,
        mut logic: LogicConfig,
        data: PathBuf,
        store: StoreConfigPatch,
        admin: Option<AdminConfig>,
        inherited: Option<Inherited>,
    ) -> Result<ChatServer, StartError> {
        let gateway = one_packet_limit(gateway, &mut logic).map_err(StartError::Limits)?;
        let (listeners, admin_socket) = match inherited {
            Some(inherited) => (Some(inherited.listeners), inherited.admin),
            None => (None, None),
        };
        let max_body = logic.max_body as usize;
        let admin = admin
            .map(|config| match admin_socket {
                Some(socket) => AdminServer::start_on(config, socket, max_body),
                None => AdminServer::start(config, max_body),
            })
            .transpose()
            .map_err(StartError::Admin)?;
        let took_over = listeners.is_some();
        let (completions_tx, completions_rx) = crossbeam_channel::unbounded();
        // Both engines' writers count their commits into this one block.
        let store_metrics = Arc::new(StoreMetrics::default());
        let (store, store_thread) = store.open(data, completions_tx, store_metrics.clone())?;
        let groups = store.load_groups().map_err(StartError::LoadGroups)?;
        logic.idle_timeout = gateway.read_wait;
        // Bounded in bytes: when the logic core falls behind, the reactors stop reading their
        // sockets (never block) until it catches up, so the kernel's flow control pushes back
        // on clients instead of this queue growing. The core never waits on a reactor either
        // (its pushes go to inboxes bounded in bytes that never block), so no deadlock.
        let (to_core, inbound) = CoreQueue::new(CORE_QUEUE_BYTES);
        let gateway = Gateway::start_on(gateway, listeners, |reactor, _| {
            ChatHandler::new(reactor, to_core.clone())
        })
        .map_err(StartError::Gateway)?;
        let reload = took_over.then(|| (store.clone(), to_core.clone()));
        to_core.attach(gateway.handle());
        let outlet = GatewayOutlet::new(gateway.handle());
        let core = LogicCore::new(logic, store, groups, outlet).map_err(StartError::Logic)?;
        let logic_metrics = core.metrics();
        let core = std::thread::Builder::new()
            .name("logic".into())
            .spawn(move || core.run(inbound, completions_rx))
            .map_err(StartError::SpawnLogic)?;
        if let Some(admin) = &admin {
            let sources = Sources {
                gateway: gateway.probe(),
                logic: logic_metrics,
                store: store_metrics,
                tcp: gateway.tcp_addr(),
                ws: gateway.ws_addr(),
            };
            admin.attach(sources, to_core.clone());
        }
        let offering = Offering::new(OfferSources {
            gateway: gateway.listener_copies(),
            admin: admin.as_ref().map(AdminServer::listener_copy),
            core: Some(to_core.clone()),
        });
        Ok(ChatServer {
            gateway,
            admin,
            to_core,
            core,
            store: store_thread,
            offering,
            reload: Arc::new(std::sync::Mutex::new(reload)),
        })
    }

    /// The admin listener's address, if it runs.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().map(AdminServer::addr)
    }

    /// What to hand a new process started with `--handover` (see `handover::listen`).
    pub fn offering(&self) -> Offering {
        self.offering.clone()
    }

    /// After a takeover: runs `wait_for_predecessor` (it returns when the process taken
    /// over from has exited) on a thread, then reloads the groups from the store, which only
    /// this process writes from then on, and lets group changes through again.
    pub fn reload_groups_after(&self, wait_for_predecessor: impl FnOnce() + Send + 'static) {
        let reload = self.reload.clone();
        let spawned = std::thread::Builder::new()
            .name("handover-wait".into())
            .spawn(move || {
                wait_for_predecessor();
                let taken = reload.lock().unwrap_or_else(|e| e.into_inner()).take();
                let Some((store, core)) = taken else { return };
                match store.load_groups() {
                    Ok(groups) => {
                        tracing::info!(groups = groups.len(), "handover: the old process exited; groups reloaded");
                        core.send_unmetered(vec![Inbound::ReloadGroups(groups)]);
                    }
                    Err(e) => tracing::error!(error = %e, "handover: cannot reload the groups; group changes stay refused (BUSY)"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "handover: cannot start the thread that waits for the old process");
        }
    }

    /// The readiness `/readyz` reports, if the admin listener runs (a drain sets it).
    pub fn readiness(&self) -> Option<Arc<Readiness>> {
        self.admin.as_ref().map(AdminServer::readiness)
    }

    /// The gateway (addresses, handle).
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// Lets `POST /admin/drain` (if the admin listener runs) start a drain through `trigger`.
    pub fn on_drain_request(&self, trigger: crate::admin::DrainTrigger) {
        if let Some(admin) = &self.admin {
            admin.on_drain(trigger);
        }
    }

    /// The drain without a reconnect storm (README, "Operations"): `/readyz` turns 503 at
    /// once; after `grace` (the balancer's health check interval, so it stops sending new
    /// connections here) the listeners stop accepting; then the connections are closed evenly
    /// over `period`, each logged-in client told RECONNECT_AFTER and KICKED(SERVER_SHUTDOWN),
    /// 1012 on WebSocket. Returns once every connection is gone (or the gateway's drain timeout
    /// after the period passed), the logic core has handled what it was given and the store
    /// has committed it: nothing acknowledged is lost.
    ///
    /// After a handover (`handed_over`) there is no grace: the sockets stay open in the new
    /// process, which serves them already; the admin listener stops at once, so the
    /// balancer's health checks reach only the new process.
    pub fn drain(
        mut self,
        handed_over: bool,
        grace: std::time::Duration,
        period: std::time::Duration,
    ) {
        self.offering.close();
        self.reload.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(readiness) = self.readiness() {
            readiness.set_draining();
        }
        if handed_over {
            if let Some(admin) = self.admin.take() {
                admin.shutdown();
            }
        } else {
            std::thread::sleep(grace);
        }
        tracing::info!(?period, "drain: listeners closed, spreading closes");
        self.gateway.handle().drain(period);
        let ChatServer {
            gateway,
            admin,
            to_core,
            core,
            store,
            ..
        } = self;
        gateway.join();
        finish(admin, to_core, core, store);
    }

    /// Drains the gateway, then lets the logic core and the store finish what is queued.
    pub fn shutdown(self) {
        self.offering.close();
        self.reload.lock().unwrap_or_else(|e| e.into_inner()).take();
        let ChatServer {
            gateway,
            admin,
            to_core,
            core,
            store,
            ..
        } = self;
        // /readyz turns 503 first, and the API lets go of the core's queue.
        if let Some(admin) = &admin {
            admin.detach_core();
        }
        // KICKED(SERVER_SHUTDOWN) first, so clients reconnect elsewhere instead of waiting
        // out a backoff. The pushes reach each reactor's inbox before its drain command.
        let (done, kicked) = crossbeam_channel::bounded(1);
        if to_core.send_unmetered(vec![Inbound::Shutdown(done)]) {
            let _ = kicked.recv_timeout(std::time::Duration::from_secs(1));
        }
        gateway.shutdown();
        finish(admin, to_core, core, store);
    }
}

/// After the reactors are gone (so their handlers dropped their senders): lets go of the
/// core's queue, so its inbound channel closes, it returns and drops its store handle, and
/// the store commits what it holds and exits; then stops the admin listener.
fn finish(
    admin: Option<AdminServer>,
    to_core: CoreQueue,
    core: JoinHandle<()>,
    store: StoreThread,
) {
    if let Some(admin) = &admin {
        admin.detach_core();
    }
    drop(to_core);
    let _ = core.join();
    if let Err(e) = store.join() {
        tracing::warn!(error = %e, "store thread ended with an error");
    }
    if let Some(admin) = admin {
        admin.shutdown();
    }
}

/// docs/protocol.md §1 and §11: one limit, `max_packet`, on a packet's payload, in both
/// directions and on both transports. A WebSocket message carries one whole packet, so the
/// gateway accepts messages of `max_packet` plus the 10-byte header and never sends larger
/// ones; and no response or push the logic core builds may pass `max_packet` either, so a body
/// limit or group size whose largest packet would not fit is refused at start.
fn one_packet_limit(
    mut gateway: GatewayConfig,
    logic: &mut LogicConfig,
) -> Result<GatewayConfig, LimitError> {
    use switchboard_protocol::limits::{group_detail_max_payload, max_body_within};
    let max_packet = gateway.max_packet;
    let largest_body = max_body_within(max_packet);
    if logic.max_body as usize > largest_body {
        return Err(LimitError::BodyOverPacket {
            max_body: logic.max_body,
            max_packet,
            largest_body,
        });
    }
    if group_detail_max_payload(logic.group_member_limit) > max_packet {
        return Err(LimitError::GroupOverPacket {
            member_limit: logic.group_member_limit,
            max_packet,
        });
    }
    gateway.max_message = max_packet + switchboard_codec::packet::HEADER_LEN;
    logic.max_packet = max_packet;
    Ok(gateway)
}

/// The login-token secret kept in the data directory when none is configured: 32 random bytes,
/// hex-encoded, in `DIR/jwt-secret` (mode 0600), created on first start. A first run then
/// needs no setup, and `switchboard token --data DIR` mints tokens that this server accepts.
pub fn load_or_create_secret(dir: &Path) -> Result<Vec<u8>, SecretError> {
    let path = dir.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().as_bytes().to_vec()),
        Ok(_) => return Err(SecretError::Empty { path }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(SecretError::Read { path, source }),
    }
    std::fs::create_dir_all(dir).map_err(|source| SecretError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(SecretError::Random)?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(&path) {
        Ok(file) => file,
        Err(source) => return Err(SecretError::Create { path, source }),
    };
    if let Err(source) = std::io::Write::write_all(&mut file, hex.as_bytes()) {
        return Err(SecretError::Write { path, source });
    }
    tracing::warn!(path = %path.display(), "no --jwt-secret: generated one; mint tokens with `switchboard token --data DIR`");
    Ok(hex.into_bytes())
}

/// The secret's file name inside the data directory.
pub const SECRET_FILE: &str = "jwt-secret";

/// Store settings the command line may change.
#[derive(Debug, Clone, Default)]
pub struct StoreConfigPatch {
    /// Messages older than this are purged and never synced.
    pub retention: Option<std::time::Duration>,
    /// SQLite's `synchronous=FULL` (default) or `NORMAL`.
    pub synchronous: Option<crate::store::Synchronous>,
    /// How long a small batch waits for more before its commit, on either engine
    /// [default: `store::DEFAULT_COMMIT_DELAY`].
    pub commit_delay: Option<std::time::Duration>,
    /// `--store postgres://...`: PostgreSQL at this location instead of SQLite in the data
    /// directory.
    pub postgres: Option<String>,
}

impl StoreConfigPatch {
    /// Opens the engine chosen: PostgreSQL when a location is given, else SQLite in `data`.
    fn open(
        &self,
        data: PathBuf,
        completions: crossbeam_channel::Sender<crate::store::Completion>,
        metrics: Arc<StoreMetrics>,
    ) -> Result<(Engine, StoreThread), StartError> {
        if let Some(url) = &self.postgres {
            let mut config = PostgresConfig::new(url.clone());
            config.metrics = metrics;
            if let Some(retention) = self.retention {
                config.retention = retention;
            }
            if let Some(delay) = self.commit_delay {
                config.commit_delay = delay;
            }
            let (store, thread) =
                PostgresStore::open(config, completions).map_err(StartError::OpenStore)?;
            return Ok((Engine::Postgres(store), thread));
        }
        let mut config = SqliteConfig::new(data);
        config.metrics = metrics;
        if let Some(retention) = self.retention {
            config.retention = retention;
        }
        if let Some(synchronous) = self.synchronous {
            config.synchronous = synchronous;
        }
        if let Some(delay) = self.commit_delay {
            config.commit_delay = delay;
        }
        let (store, thread) =
            SqliteStore::open(config, completions).map_err(StartError::OpenStore)?;
        Ok((Engine::Sqlite(store), thread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core_queue::CoreBatch;

    fn with_outbox(f: impl FnOnce(&mut Outbox<'_>)) {
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let (handle, _receivers) =
            GatewayHandle::new(vec![crate::gateway::handle::Waker::Mio(waker)], 1 << 20);
        let mut local = Vec::new();
        let mut out = Outbox {
            reactor: 0,
            local: &mut local,
            handle: &handle,
        };
        f(&mut out);
    }

    fn packets(batch: CoreBatch) -> usize {
        batch
            .into_iter()
            .filter(|e| matches!(e, Inbound::Packet(..)))
            .count()
    }

    #[test]
    fn the_outlet_wakes_each_reactor_it_pushed_to_once_at_the_end_of_the_turn() {
        let mut polls: Vec<mio::Poll> = (0..2).map(|_| mio::Poll::new().unwrap()).collect();
        let wakers = polls
            .iter()
            .map(|poll| mio::Waker::new(poll.registry(), mio::Token(0)).unwrap())
            .map(crate::gateway::handle::Waker::Mio)
            .collect();
        let (handle, receivers) = GatewayHandle::new(wakers, 1 << 20);
        let mut outlet = GatewayOutlet::new(handle);
        for key in 1..=3 {
            outlet.push(ConnId::new(1, key, 0).as_u64(), Bytes::from_static(b"ack"));
        }
        let mut events = mio::Events::with_capacity(4);
        let mut woken = |poll: &mut mio::Poll| {
            poll.poll(&mut events, Some(std::time::Duration::from_millis(50)))
                .unwrap();
            events.iter().count()
        };
        assert_eq!(woken(&mut polls[1]), 0, "no wake-up before the flush");
        outlet.flush();
        assert_eq!(woken(&mut polls[1]), 1);
        assert_eq!(woken(&mut polls[0]), 0, "nothing was pushed to reactor 0");
        let mut taken = 0;
        while receivers[1].take().is_some() {
            taken += 1;
        }
        assert_eq!(taken, 3);
        outlet.flush();
        receivers[1].rearm();
        assert_eq!(
            woken(&mut polls[1]),
            0,
            "a flush with nothing pushed wakes nobody"
        );
        // A fan-out does not wait for the end of the turn.
        for key in 0..WAKE_AFTER_PUSHES as u32 {
            outlet.push(ConnId::new(1, key, 0).as_u64(), Bytes::from_static(b"msg"));
        }
        assert_eq!(woken(&mut polls[1]), 1);
    }

    #[test]
    fn a_full_core_queue_keeps_the_batch_and_pauses_input_until_the_core_takes_one() {
        let (queue, inbound) = CoreQueue::new(1 << 10);
        let mut handler = ChatHandler::new(0, queue.clone());
        let conn = ConnId::new(0, 1, 0);
        let message = || Message::Binary(Bytes::from(vec![1u8; 800]));
        with_outbox(|out| {
            handler.message(out, conn, message());
            handler.end_of_batch(out); // into the empty queue
            assert!(handler.wants_input());
            handler.message(out, conn, message());
            handler.message(out, conn, message());
            handler.end_of_batch(out); // does not fit: kept
            assert!(!handler.wants_input());
            assert_eq!(inbound.len(), 1);
            // Events that still come while paused (a disconnect) join the kept batch.
            handler.disconnect(out, conn, &Disconnect::ReadTimeout);
            // The core handles its batch: room, and the kept batch goes in whole.
            assert_eq!(packets(inbound.try_recv().unwrap()), 1);
            assert!(handler.wants_input());
            let kept = inbound.try_recv().unwrap();
            assert_eq!(kept.events().len(), 3);
            assert_eq!(packets(kept), 2);
            assert_eq!(queue.queued_bytes(), 0);
        });
    }

    #[test]
    fn a_request_over_the_rate_is_answered_rate_limited_on_its_seq() {
        let mut packet = BytesMut::new();
        switchboard_protocol::Request::Ping
            .encode(77, &mut packet)
            .unwrap();
        let answer = rate_limited_answer(&packet).expect("a request");
        let command = u16::from_be_bytes([answer[4], answer[5]]);
        let payload = answer.slice(HEADER_LEN..);
        let decoded = switchboard_protocol::ServerPacket::decode(command, payload).unwrap();
        let switchboard_protocol::ServerPacket::Response(response) = decoded else {
            panic!("not a response: {decoded:?}");
        };
        assert_eq!(response.seq, 77);
        assert_eq!(response.result, Err(Status::RATE_LIMITED));
        // Not one request packet: left to the core.
        assert_eq!(rate_limited_answer(&packet[..packet.len() - 1]), None);
        let mut two = packet.clone();
        two.extend_from_slice(&packet);
        assert_eq!(rate_limited_answer(&two), None);
        let mut push = BytesMut::new();
        switchboard_codec::packet::PacketEncoder::new()
            .encode_into(0x4001, b"x", &mut push)
            .unwrap();
        assert_eq!(rate_limited_answer(&push), None);
    }

    #[test]
    fn a_large_batch_is_handed_over_in_the_middle_of_a_pass() {
        let (queue, inbound) = CoreQueue::new(64 << 20);
        let mut handler = ChatHandler::new(0, queue);
        let conn = ConnId::new(0, 1, 0);
        with_outbox(|out| {
            while handler.batch_bytes < BATCH_BYTES {
                handler.message(out, conn, Message::Binary(Bytes::from(vec![0u8; 4096])));
            }
            assert!(inbound.is_empty());
            assert!(handler.wants_input());
            assert_eq!(inbound.len(), 1);
            assert!(handler.batch.is_empty());
        });
    }
}
