//! The admin listener: a small HTTP/1.1 server for operators, load balancers and the
//! application's backend, on a thread of its own. Never on the hot path: it reads counters the
//! other threads publish and talks to the logic core through the core's queue, like a reactor.
//!
//! - `GET /healthz`: 200 while the process serves requests at all (liveness).
//! - `GET /readyz`: 200 once the store is open and the gateway and logic core run; 503 before,
//!   and while draining (a load balancer stops sending new connections).
//! - `GET /metrics`: Prometheus text (see [`page`]).
//! - `GET /router`: the gateway addresses a client should try (the seed's Router).
//! - `/api/v1/...`: the backend API, behind a bearer token (see [`api`]).
//!
//! The server is hyper on a current-thread tokio runtime (docs/api.md says why). Every
//! connection carries one request (no keep-alive), whose head must arrive within the I/O
//! timeout and whose body within another; at most [`MAX_CONNECTIONS`] are open at once, later
//! ones are closed at accept. An API call that waits for the logic core waits on one of a
//! few blocking threads, so `/healthz` is never stuck behind a commit.
//!
//! Invariant: the only way into the logic core is a [`CoreQueue`] held in a slot the shutdown
//! empties before the core is joined, so the listener can stay up through a drain without
//! keeping the core alive.

pub mod api;
pub mod page;
pub mod router;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tracing::{debug, info, warn};

use crate::core_queue::CoreQueue;
use crate::gateway::GatewayProbe;
use crate::logic::metrics::LogicMetrics;
use crate::store::StoreMetrics;

/// Connections open at once; later ones are closed at accept (and logged).
pub const MAX_CONNECTIONS: usize = 64;

/// Threads an API call may wait on for the logic core.
const BLOCKING_THREADS: usize = 4;

/// The default [`AdminConfig::io_timeout`].
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// A request's head, and then its body, must arrive within this time, or the connection
    /// is closed.
    pub io_timeout: Duration,
}

/// The largest API request body for a `--max-body` of `max_body` bytes: the body as
/// JSON-escaped text (at most 6 bytes per byte, `\u0000`) or base64 (4/3), plus the envelope.
pub fn request_body_limit(max_body: u32) -> usize {
    6 * max_body as usize + (16 << 10)
}

/// Whether the process is ready for new connections. `ready` is set once everything is up;
/// `draining` by a drain (SIGTERM, SIGINT, `POST /admin/drain`), and never cleared.
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

/// Everything a request handler needs.
pub struct Context {
    config: AdminConfig,
    readiness: Arc<Readiness>,
    sources: OnceLock<Sources>,
    /// The way into the logic core; emptied by the shutdown.
    core: Mutex<Option<CoreQueue>>,
    started: Instant,
    /// The API's own counters: calls by answer.
    api_calls: api::ApiCounters,
    /// The largest message body, for the API's checks (from the logic core's settings).
    max_body: usize,
    /// Connections open now.
    open: AtomicUsize,
    /// Where `POST /admin/drain` asks the process to drain, once it runs.
    drain: OnceLock<DrainTrigger>,
}

/// How `POST /admin/drain` starts a drain: a message to the thread that runs it (the same
/// that a SIGTERM starts), and the plan it reports back.
#[derive(Debug, Clone)]
pub struct DrainTrigger {
    /// The process's drain requests.
    pub requests: crossbeam_channel::Sender<DrainCause>,
    /// `--drain-grace`: `/readyz` says 503 this long before the listeners close.
    pub grace: Duration,
    /// `--drain-period`: the connections are closed evenly over this.
    pub period: Duration,
}

/// What started a drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainCause {
    /// SIGTERM or SIGINT.
    Signal,
    /// `POST /admin/drain`.
    Api,
    /// A new process took the listeners over (`--handover`).
    Handover,
}

impl Context {
    fn core(&self) -> Option<CoreQueue> {
        self.core.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What a handler reads of a request, besides its body.
#[derive(Debug)]
pub struct Head {
    /// The method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The `Host` header.
    pub host: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// Who sent it.
    pub peer: SocketAddr,
}

/// A running admin listener.
pub struct AdminServer {
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
    context: Arc<Context>,
    stop: Arc<tokio::sync::Notify>,
    /// A copy of the listening socket for a handover, until it stops.
    copy: Arc<Mutex<Option<std::net::TcpListener>>>,
}

/// Why the admin listener did not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the admin thread: {0}")]
    Spawn(#[source] std::io::Error),
}

impl AdminServer {
    /// Binds `config.addr` and starts answering: `/healthz` at once, `/readyz` 503 until
    /// [`AdminServer::attach`].
    pub fn start(config: AdminConfig, max_body: usize) -> Result<AdminServer, AdminError> {
        let listener =
            std::net::TcpListener::bind(config.addr).map_err(|source| AdminError::Bind {
                addr: config.addr,
                source,
            })?;
        AdminServer::start_on(config, listener, max_body)
    }

    /// [`AdminServer::start`] on a listening socket another process handed over
    /// (`--handover`); `config.addr` is not bound.
    pub fn start_on(
        config: AdminConfig,
        listener: std::net::TcpListener,
        max_body: usize,
    ) -> Result<AdminServer, AdminError> {
        let bind_error = |source| AdminError::Bind {
            addr: config.addr,
            source,
        };
        listener.set_nonblocking(true).map_err(bind_error)?;
        let copy = listener.try_clone().map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .max_blocking_threads(BLOCKING_THREADS)
            .thread_name("admin-call")
            .build()
            .map_err(AdminError::Spawn)?;
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
            open: AtomicUsize::new(0),
            drain: OnceLock::new(),
        });
        let stop = Arc::new(tokio::sync::Notify::new());
        let (thread_context, thread_stop) = (context.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || runtime.block_on(accept_loop(listener, thread_context, thread_stop)))
            .map_err(AdminError::Spawn)?;
        info!(%addr, "admin listener up");
        Ok(AdminServer {
            addr,
            thread: Some(thread),
            context,
            stop,
            copy: Arc::new(Mutex::new(Some(copy))),
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

    /// Lets `POST /admin/drain` start a drain through `trigger`.
    pub fn on_drain(&self, trigger: DrainTrigger) {
        let _ = self.context.drain.set(trigger);
    }

    /// Everything is up: metrics and the API have their sources, `/readyz` turns 200.
    pub fn attach(&self, sources: Sources, core: CoreQueue) {
        let _ = self.context.sources.set(sources);
        *self.context.core.lock().unwrap_or_else(|e| e.into_inner()) = Some(core);
        self.context.readiness.ready.store(true, Ordering::SeqCst);
    }

    /// Lets go of the logic core: `/readyz` says draining and API calls answer 503 from now
    /// on. Call before the core is joined (it runs until every sender of its queue is gone).
    pub fn detach_core(&self) {
        self.context.readiness.set_draining();
        self.context
            .core
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// Stops answering and joins the thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    /// Where a copy of the listening socket can be had for a handover (`None` once stopped).
    pub fn listener_copy(&self) -> Arc<Mutex<Option<std::net::TcpListener>>> {
        self.copy.clone()
    }

    fn stop_and_join(&mut self) {
        self.copy.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.detach_core();
        self.stop.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    context: Arc<Context>,
    stop: Arc<tokio::sync::Notify>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => return warn!(error = %e, "admin listener: cannot register the socket"),
    };
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, most likely: try again shortly rather than spin.
                    warn!(error = %e, "admin listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stop.notified() => return,
        };
        if context.open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            context.open.fetch_sub(1, Ordering::SeqCst);
            warn!(%peer, "admin listener: connection refused, {MAX_CONNECTIONS} already open");
            continue;
        }
        let context = context.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, &context).await;
            context.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, peer: SocketAddr, context: &Arc<Context>) {
    let io_timeout = context.config.io_timeout;
    let service = hyper::service::service_fn(|request| {
        let context = context.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(context, request, peer).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(io_timeout)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    // Head, body, the longest API call and the answer, all bounded.
    let limit = io_timeout * 3 + api::CALL_TIMEOUT;
    match tokio::time::timeout(limit, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(%peer, error = %e, "admin listener: connection ended"),
        Err(_) => info!(%peer, "admin listener: connection closed after {limit:?}"),
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

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(self.body)));
        *response.status_mut() =
            hyper::StatusCode::from_u16(self.status).unwrap_or(hyper::StatusCode::OK);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        if self.challenge {
            let challenge = HeaderValue::from_static("Bearer realm=\"switchboard\"");
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

fn header(request: &Request<Incoming>, name: hyper::header::HeaderName) -> Option<String> {
    let value = request.headers().get(name)?;
    value.to_str().ok().map(str::to_owned)
}

async fn answer(
    context: Arc<Context>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let head = Head {
        method: request.method().clone(),
        path: request.uri().path().to_owned(),
        host: header(&request, HOST),
        authorization: header(&request, AUTHORIZATION),
        peer,
    };
    let reply = match (&head.method, head.path.as_str()) {
        (&Method::GET, "/healthz") => Reply::text(200, "ok\n"),
        (&Method::GET, "/readyz") => readyz(&context),
        (&Method::GET, "/metrics") => page::metrics(&context),
        (&Method::GET, "/router") => router::router(&context, &head),
        (_, api) if api.starts_with("/api/") => api_call(context, head, request).await,
        (&Method::POST, "/admin/drain") => api::drain(&context, &head),
        (_, "/admin/drain") => Reply::text(405, "method not allowed: use POST\n"),
        (_, "/healthz" | "/readyz" | "/metrics" | "/router") => {
            Reply::text(405, "method not allowed: use GET\n")
        }
        _ => Reply::text(
            404,
            "not found: /healthz /readyz /metrics /router /api/v1/...\n",
        ),
    };
    reply.into_response()
}

/// An API call: checked (on, token, route) before its body is read, then run on a blocking
/// thread, since it waits for the logic core.
async fn api_call(context: Arc<Context>, head: Head, request: Request<Incoming>) -> Reply {
    let route = match api::check(&context, &head) {
        Ok(route) => route,
        Err(error) => return api::refused(&context, &head, error),
    };
    let body = match read_body(&context, request).await {
        Ok(body) => body,
        Err(error) => return api::refused(&context, &head, error),
    };
    let blocking_context = context.clone();
    let run = tokio::task::spawn_blocking(move || api::run(&blocking_context, route, &body));
    match run.await {
        Ok(Ok(value)) => api::done(&context, &head, value),
        Ok(Err(error)) => api::refused(&context, &head, error),
        Err(e) => {
            let error = api::ApiError::internal(format!("the call failed: {e}"));
            api::refused(&context, &head, error)
        }
    }
}

/// The whole body, at most `max_request_body` bytes, within the I/O timeout.
async fn read_body(context: &Context, request: Request<Incoming>) -> Result<Bytes, api::ApiError> {
    let limit = context.config.max_request_body;
    let too_large = || api::ApiError::body_too_large(limit);
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let collect = Limited::new(request.into_body(), limit).collect();
    match tokio::time::timeout(context.config.io_timeout, collect).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(api::ApiError::bad_request(format!(
            "cannot read the body: {e}"
        ))),
        Err(_) => Err(api::ApiError::new(
            408,
            "timeout",
            "the body did not arrive within the I/O timeout",
        )),
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
