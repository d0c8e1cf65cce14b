//! `switchboard serve`: the gateway, the logic core and the store in one process.
//!
//! This module is the only place that knows both the gateway and the logic core. `bridge`
//! carries events between them (its own doc says how neither side waits on the other);
//! `local` runs the core on the one reactor's thread instead (`LogicThread::Reactor`); this
//! file starts, drains and stops the three parts, checks that their limits agree, and opens
//! the store and the token secret.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::admin::{AdminConfig, AdminError, AdminServer, Readiness, Sources};
use crate::core_queue::CoreQueue;
use crate::handover::{OfferSources, Offering};

use crate::gateway::{Gateway, GatewayConfig, GatewayHandle};
use crate::logic::snowflake::NodeIdOutOfRange;
use crate::logic::{Inbound, LogicConfig, LogicCore, LogicThread};
use crate::store::{
    CompletionWake, Engine, PostgresConfig, PostgresStore, SqliteConfig, SqliteStore, StoreError,
    StoreMetrics, StoreThread,
};

mod bridge;
mod local;

pub use bridge::{ChatHandler, GatewayOutlet, CORE_QUEUE_BYTES};
pub use local::{ReactorCore, ReactorOutlet};

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
    /// The core's own thread; `None` when it runs on the one reactor's (`LogicThread::Reactor`).
    core: Option<JoinHandle<()>>,
    store: StoreThread,
    /// What a new process started with `--handover` is given.
    offering: Offering,
    /// After a takeover: the store and the core, to reload the groups with once the process
    /// taken over from has exited; emptied by then or by the drain.
    reload: Arc<std::sync::Mutex<Option<(Engine, CoreQueue)>>>,
}

/// Resolves `--logic-thread` against the reactors the gateway will run (one per socket taken
/// over, whatever `--workers` says) and says where the core runs: `true` on the reactor's
/// thread. An explicit `reactor` beside several reactors is not an error (a handover may bring
/// more sockets than `--workers`), but a warning: the core gets a thread of its own.
fn logic_on_reactor(
    choice: LogicThread,
    gateway: &GatewayConfig,
    taken: Option<&crate::gateway::Listeners>,
) -> bool {
    let reactors = taken.map_or(gateway.workers, crate::gateway::Listeners::reactors);
    let on_reactor = choice.resolve(reactors) == LogicThread::Reactor;
    if choice == LogicThread::Reactor && !on_reactor {
        tracing::warn!(
            reactors,
            "--logic-thread reactor needs exactly one reactor (--workers 1): the logic core runs on a thread of its own"
        );
    } else if on_reactor {
        tracing::info!(?choice, "logic core on the reactor's thread");
    } else {
        tracing::info!(?choice, reactors, "logic core on a thread of its own");
    }
    on_reactor
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
        let on_reactor = logic_on_reactor(logic.thread, &gateway, listeners.as_ref());
        let (completions_tx, completions_rx) = crossbeam_channel::unbounded();
        // Both engines' writers count their commits into this one block.
        let store_metrics = Arc::new(StoreMetrics::default());
        // On the reactor's thread the core waits in the reactor's wait, not on the channel:
        // each commit's completions wake the reactor, once the gateway's handle exists (no
        // request reaches the store before that).
        let wake_reactor = Arc::new(std::sync::OnceLock::<GatewayHandle>::new());
        let completion_wake = match on_reactor {
            true => {
                let handle = wake_reactor.clone();
                CompletionWake::new(move || {
                    if let Some(handle) = handle.get() {
                        handle.wake(0);
                    }
                })
            }
            false => CompletionWake::default(),
        };
        let (store, store_thread) =
            store.open(data, completions_tx, store_metrics.clone(), completion_wake)?;
        let groups = store.load_groups().map_err(StartError::LoadGroups)?;
        logic.idle_timeout = gateway.read_wait;
        // Bounded in bytes: when the logic core falls behind, the reactors stop reading their
        // sockets (never block) until it catches up, so the kernel's flow control pushes back
        // on clients instead of this queue growing. The core never waits on a reactor either
        // (its pushes go to inboxes bounded in bytes that never block), so no deadlock.
        let (to_core, inbound) = CoreQueue::new(CORE_QUEUE_BYTES);
        let reload = took_over.then(|| (store.clone(), to_core.clone()));
        let (gateway, core, logic_metrics) = if on_reactor {
            let core = LogicCore::new(logic, store, groups, ReactorOutlet::new(0))
                .map_err(StartError::Logic)?;
            let logic_metrics = core.metrics();
            let mut core = Some(ReactorCore::new(core, completions_rx, inbound));
            to_core.core_on_reactor(0);
            let gateway = Gateway::start_on(gateway, listeners, |reactor, _| match core.take() {
                Some(core) => ChatHandler::with_core(reactor, to_core.clone(), core),
                None => ChatHandler::new(reactor, to_core.clone()),
            })
            .map_err(StartError::Gateway)?;
            let _ = wake_reactor.set(gateway.handle());
            gateway.handle().wake(0);
            (gateway, None, logic_metrics)
        } else {
            let gateway = Gateway::start_on(gateway, listeners, |reactor, _| {
                ChatHandler::new(reactor, to_core.clone())
            })
            .map_err(StartError::Gateway)?;
            let outlet = GatewayOutlet::new(gateway.handle());
            let core = LogicCore::new(logic, store, groups, outlet).map_err(StartError::Logic)?;
            let logic_metrics = core.metrics();
            let core = std::thread::Builder::new()
                .name("logic".into())
                .spawn(move || core.run(inbound, completions_rx))
                .map_err(StartError::SpawnLogic)?;
            (gateway, Some(core), logic_metrics)
        };
        to_core.attach(gateway.handle());
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

    /// Where the logic core runs, as resolved at the start: `Reactor` or `Own`.
    pub fn logic_thread(&self) -> LogicThread {
        match self.core {
            Some(_) => LogicThread::Own,
            None => LogicThread::Reactor,
        }
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
    core: Option<JoinHandle<()>>,
    store: StoreThread,
) {
    if let Some(admin) = &admin {
        admin.detach_core();
    }
    drop(to_core);
    if let Some(core) = core {
        let _ = core.join();
    }
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
    /// SQLite: WAL pages after which the checkpoint thread copies the log back (0:
    /// SQLite's autocheckpoint inside the commit) [default: `sqlite::DEFAULT_CHECKPOINT_PAGES`].
    pub checkpoint_pages: Option<u32>,
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
        completion_wake: CompletionWake,
    ) -> Result<(Engine, StoreThread), StartError> {
        if let Some(url) = &self.postgres {
            let mut config = PostgresConfig::new(url.clone());
            config.metrics = metrics;
            config.completion_wake = completion_wake;
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
        config.completion_wake = completion_wake;
        if let Some(retention) = self.retention {
            config.retention = retention;
        }
        if let Some(synchronous) = self.synchronous {
            config.synchronous = synchronous;
        }
        if let Some(delay) = self.commit_delay {
            config.commit_delay = delay;
        }
        if let Some(pages) = self.checkpoint_pages {
            config.checkpoint_pages = pages;
        }
        let (store, thread) =
            SqliteStore::open(config, completions).map_err(StartError::OpenStore)?;
        Ok((Engine::Sqlite(store), thread))
    }
}
