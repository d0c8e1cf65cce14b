//! The admin listener: a small HTTP/1.1 server for operators, load balancers and the
//! application's backend, on threads of its own. Never on the hot path: it reads counters the
//! other threads publish and talks to the logic core through the core's queue, like a reactor.
//!
//! - `GET /healthz`: 200 while the process serves requests at all (liveness).
//! - `GET /readyz`: 200 once the store is open and the gateway and logic core run; 503 before,
//!   and while draining (a load balancer stops sending new connections).
//! - `GET /metrics`: Prometheus text (see [`page`]).
//! - `GET /router`: the gateway addresses a client should try (the seed's Router).
//! - `/api/v1/...`: the backend API, behind a bearer token (see [`api`]).
//!
//! The server is `tiny_http` (docs/api.md says why): it parses requests on its own small pool
//! of threads and hands them to [`WORKERS`] threads here, which answer them one at a time.
//! Invariant: the only way into the logic core is a [`CoreQueue`] held in a slot the shutdown
//! empties before the core is joined, so the listener can stay up through a drain without
//! keeping the core alive.

pub mod api;
pub mod page;
pub mod router;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use tiny_http::{Header, Method, Request, Response};
use tracing::{info, warn};

use crate::core_queue::CoreQueue;
use crate::gateway::GatewayProbe;
use crate::logic::metrics::LogicMetrics;
use crate::store::StoreMetrics;

/// Threads answering admin requests: a health check is not stuck behind one API call
/// waiting for a commit.
pub const WORKERS: usize = 2;

/// What the admin listener is told at start.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where it listens (loopback by default: it is for the operator's side of the network).
    pub addr: SocketAddr,
    /// The bearer token of the backend API; `None` turns the API off.
    pub token: Option<String>,
    /// What `/router` lists; empty: the gateway's own listeners.
    pub advertise: Vec<String>,
    /// The largest request body accepted, in bytes (413 past it).
    pub max_request_body: usize,
}

/// The largest API request body for a `--max-body` of `max_body` bytes: the body as base64
/// (4/3) or as JSON-escaped text (at most 6 bytes per byte, `\u0000`), plus the envelope.
pub fn request_body_limit(max_body: u32) -> usize {
    6 * max_body as usize + (16 << 10)
}

/// Whether the process is ready for new connections. `ready` is set once everything is up;
/// `draining` by a drain (SIGTERM now; `POST /admin/drain` later), and never cleared.
#[derive(Debug, Default)]
pub struct Readiness {
    ready: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    /// Marks the process draining: `/readyz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether a drain has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Ready and not draining.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.is_draining()
    }
}

/// What the admin listener reads once the server runs.
pub struct Sources {
    /// The gateway's counters and gauges.
    pub gateway: GatewayProbe,
    /// The logic core's counters.
    pub logic: Arc<LogicMetrics>,
    /// The store's commit counters.
    pub store: Arc<StoreMetrics>,
    /// The gateway's listeners, for `/router`.
    pub tcp: Option<SocketAddr>,
    /// The WebSocket listener.
    pub ws: Option<SocketAddr>,
}

/// Everything a request handler needs, shared by the worker threads.
pub struct Context {
    config: AdminConfig,
    readiness: Arc<Readiness>,
    sources: OnceLock<Sources>,
    /// The way into the logic core; emptied by the shutdown.
    core: Mutex<Option<CoreQueue>>,
    started: Instant,
    /// The API's own counters (several threads, rare): calls by answer class.
    api_calls: api::ApiCounters,
    /// The largest message body, for the API's checks (from the logic core's settings).
    max_body: usize,
}

impl Context {
    fn core(&self) -> Option<CoreQueue> {
        self.core.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A running admin listener.
pub struct AdminServer {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
    context: Arc<Context>,
    stopping: Arc<AtomicBool>,
}

/// Why the admin listener did not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on {addr}: {detail}")]
    Bind { addr: SocketAddr, detail: String },
    #[error("cannot start an admin thread: {0}")]
    Spawn(#[source] std::io::Error),
}

impl AdminServer {
    /// Binds `config.addr` and starts answering: `/healthz` at once, `/readyz` 503 until
    /// [`AdminServer::attach`].
    pub fn start(config: AdminConfig, max_body: usize) -> Result<AdminServer, AdminError> {
        let bind_error = |detail: String| AdminError::Bind {
            addr: config.addr,
            detail,
        };
        let server = tiny_http::Server::http(config.addr).map_err(|e| bind_error(e.to_string()))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| bind_error("not an IP listener".into()))?;
        if config.token.is_none() {
            warn!("the backend API is off: no --admin-token (or SWITCHBOARD_ADMIN_TOKEN)");
        }
        let context = Arc::new(Context {
            config,
            readiness: Arc::default(),
            sources: OnceLock::new(),
            core: Mutex::new(None),
            started: Instant::now(),
            api_calls: api::ApiCounters::default(),
            max_body,
        });
        let server = Arc::new(server);
        let stopping = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(WORKERS);
        for index in 0..WORKERS {
            let (server, context, stopping) = (server.clone(), context.clone(), stopping.clone());
            let thread = std::thread::Builder::new()
                .name(format!("admin-{index}"))
                .spawn(move || serve(&server, &context, &stopping))
                .map_err(AdminError::Spawn)?;
            threads.push(thread);
        }
        info!(%addr, "admin listener up");
        Ok(AdminServer {
            addr,
            server,
            threads,
            context,
            stopping,
        })
    }

    /// The bound address (with the port the kernel chose for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The readiness flags (`/readyz`), e.g. for a drain to set.
    pub fn readiness(&self) -> Arc<Readiness> {
        self.context.readiness.clone()
    }

    /// Everything is up: metrics and the API have their sources, `/readyz` turns 200.
    pub fn attach(&self, sources: Sources, core: CoreQueue) {
        let _ = self.context.sources.set(sources);
        *self.context.core.lock().unwrap_or_else(|e| e.into_inner()) = Some(core);
        self.context.readiness.ready.store(true, Ordering::SeqCst);
    }

    /// Lets go of the logic core: API calls answer 503 from now on. Call before the core is
    /// joined (the core runs until every sender of its queue is gone).
    pub fn detach_core(&self) {
        self.context.readiness.set_draining();
        self.context
            .core
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// Stops answering and joins the threads.
    pub fn shutdown(self) {
        self.detach_core();
        self.stopping.store(true, Ordering::SeqCst);
        for _ in &self.threads {
            self.server.unblock();
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

fn serve(server: &tiny_http::Server, context: &Context, stopping: &AtomicBool) {
    while !stopping.load(Ordering::SeqCst) {
        match server.recv() {
            Ok(request) => answer(context, request),
            Err(e) => {
                warn!(error = %e, "admin listener: receiving a request failed");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

/// An answer: status, content type, body.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
    /// A `WWW-Authenticate` challenge (401 only).
    pub challenge: bool,
}

impl Reply {
    /// Plain text.
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            challenge: false,
        }
    }

    /// A JSON value.
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: format!("{value}\n"),
            challenge: false,
        }
    }
}

fn answer(context: &Context, mut request: Request) {
    let peer = request.remote_addr().copied();
    let path = request.url().split('?').next().unwrap_or("").to_owned();
    let reply = match (request.method(), path.as_str()) {
        (Method::Get, "/healthz") => Reply::text(200, "ok\n"),
        (Method::Get, "/readyz") => readyz(context),
        (Method::Get, "/metrics") => page::metrics(context),
        (Method::Get, "/router") => router::router(context, &request),
        (_, api) if api.starts_with("/api/") => api::handle(context, &mut request, peer),
        (_, "/healthz" | "/readyz" | "/metrics" | "/router") => {
            Reply::text(405, "method not allowed: use GET\n")
        }
        _ => Reply::text(404, "not found: /healthz /readyz /metrics /router /api/v1/...\n"),
    };
    let content_type = Header::from_bytes("Content-Type", reply.content_type)
        .expect("a valid header");
    let mut response = Response::from_string(reply.body)
        .with_status_code(reply.status)
        .with_header(content_type);
    if reply.challenge {
        let challenge = Header::from_bytes("WWW-Authenticate", "Bearer realm=\"switchboard\"")
            .expect("a valid header");
        response.add_header(challenge);
    }
    if let Err(e) = request.respond(response) {
        info!(peer = ?peer, error = %e, "admin listener: the answer could not be written");
    }
}

fn readyz(context: &Context) -> Reply {
    let readiness = &context.readiness;
    if readiness.is_ready() {
        Reply::text(200, "ready\n")
    } else if readiness.is_draining() {
        Reply::text(503, "not ready: draining\n")
    } else {
        Reply::text(503, "not ready: starting (the store is not open yet)\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_waits_for_ready_and_ends_with_a_drain() {
        let readiness = Readiness::default();
        assert!(!readiness.is_ready(), "not before start-up finished");
        readiness.ready.store(true, Ordering::SeqCst);
        assert!(readiness.is_ready());
        readiness.set_draining();
        assert!(!readiness.is_ready() && readiness.is_draining());
    }
}
