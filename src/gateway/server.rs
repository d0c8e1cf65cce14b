//! Starting and stopping the reactor threads.
//!
//! Every listener is bound before any thread starts, so a bad address or a port in use is an
//! error from `Gateway::start`, not a log line from a thread. Port 0 is resolved by the first
//! reactor's bind, and the others bind the port it got (SO_REUSEPORT).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::thread::JoinHandle;

use mio::net::TcpListener;
use mio::Poll;
use tracing::warn;

use super::clock::TICK_MS;
use super::config::{Backend, GatewayConfig};
use super::conn_id::MAX_REACTORS;
use super::driver_core::Shared;
use super::epoll::{Reactor, WAKER};
use super::handle::{GatewayHandle, InboxReceiver, Waker};
use super::handler::Handler;
use super::limits::per_ip::PerIpTable;
use super::limits::syn_filter::SynFilter;
use super::listener::{bind_listener, ListenerCopies, Listeners};
use super::metrics::{GatewayProbe, RefusalCounts};

/// A running gateway: its reactor threads and the handle that reaches them.
pub struct Gateway {
    handle: GatewayHandle,
    threads: Vec<JoinHandle<()>>,
    tcp_addr: Option<SocketAddr>,
    ws_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    /// Copies of the listening sockets, kept for a handover; released when a drain begins,
    /// so that closing the reactors' listeners closes the sockets.
    copies: ListenerCopies,
    backend: Backend,
}

/// Whether a reactor thread could open its ring. Asked on a thread of its own (which inherits
/// the caller's seccomp filter, as the reactors will): a ring torn down on the caller's thread
/// leaves it a task-work notification that fails its next blocking system call with EINTR.
fn probe_uring() -> io::Result<Result<(), super::uring::Unavailable>> {
    std::thread::Builder::new()
        .name("uring-probe".into())
        .spawn(|| super::uring::open(8).map(drop))?
        .join()
        .map_err(|_| io::Error::other("the io_uring probe panicked"))
}

fn start_epoll<H: Handler>(
    polls: Vec<Poll>,
    listeners: Vec<ListenerPair>,
    inboxes: Vec<InboxReceiver>,
    make_handler: &mut impl FnMut(usize, GatewayHandle) -> H,
    handle: &GatewayHandle,
    shared: &Arc<Shared>,
) -> io::Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::with_capacity(polls.len());
    for (index, ((poll, (tcp, ws)), inbox)) in
        polls.into_iter().zip(listeners).zip(inboxes).enumerate()
    {
        let handler = make_handler(index, handle.clone());
        let reactor = Reactor::new(
            index,
            poll,
            tcp,
            ws,
            inbox,
            handler,
            handle.clone(),
            shared.clone(),
        )?;
        let thread = std::thread::Builder::new()
            .name(format!("reactor-{index}"))
            .spawn(move || reactor.run())?;
        threads.push(thread);
    }
    Ok(threads)
}

/// Starts the io_uring reactors; each opens its ring on its own thread (a ring has a single
/// issuer) and says whether it could before this returns.
fn start_uring<H: Handler>(
    eventfds: Vec<Arc<std::fs::File>>,
    listeners: Vec<ListenerPair>,
    inboxes: Vec<InboxReceiver>,
    make_handler: &mut impl FnMut(usize, GatewayHandle) -> H,
    handle: &GatewayHandle,
    shared: &Arc<Shared>,
) -> io::Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::with_capacity(eventfds.len());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
    for (index, ((eventfd, (tcp, ws)), inbox)) in
        eventfds.into_iter().zip(listeners).zip(inboxes).enumerate()
    {
        let handler = make_handler(index, handle.clone());
        let handle = handle.clone();
        let shared = shared.clone();
        let ready = ready_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("reactor-{index}"))
            .spawn(move || {
                let ring = super::uring::open(super::uring::driver::RING_ENTRIES)
                    .map_err(|why| io::Error::other(why.to_string()));
                let reactor = ring.and_then(|ring| {
                    super::uring::driver::Reactor::new(
                        index,
                        ring,
                        tcp.map(Into::into),
                        ws.map(Into::into),
                        eventfd,
                        inbox,
                        handler,
                        handle,
                        shared,
                    )
                });
                match reactor {
                    Ok(reactor) => {
                        let _ = ready.send(Ok(()));
                        reactor.run();
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
            })?;
        threads.push(thread);
    }
    drop(ready_tx);
    let mut failed = None;
    for result in ready_rx.iter().take(threads.len()) {
        if let Err(e) = result {
            failed.get_or_insert(e);
        }
    }
    if let Some(e) = failed {
        handle.shutdown();
        for thread in threads {
            let _ = thread.join();
        }
        return Err(e);
    }
    Ok(threads)
}

impl Gateway {
    /// Binds the listeners and starts `config.workers` reactor threads, each with the handler
    /// `make_handler(reactor_index, handle)` returns.
    pub fn start<H, F>(config: GatewayConfig, make_handler: F) -> io::Result<Gateway>
    where
        H: Handler,
        F: FnMut(usize, GatewayHandle) -> H,
    {
        Gateway::start_on(config, None, make_handler)
    }

    /// [`Gateway::start`], on the listening sockets another process handed over when `taken`
    /// holds them (`--handover`): one reactor per socket of a transport, whatever
    /// `config.workers` says, so every socket of the port's SO_REUSEPORT group is served.
    pub fn start_on<H, F>(
        config: GatewayConfig,
        taken: Option<Listeners>,
        mut make_handler: F,
    ) -> io::Result<Gateway>
    where
        H: Handler,
        F: FnMut(usize, GatewayHandle) -> H,
    {
        let backend = match config.backend {
            Backend::Uring => match probe_uring()? {
                Ok(()) => Backend::Uring,
                Err(why) => {
                    warn!("io_uring is unavailable, running on epoll: {why}");
                    Backend::Epoll
                }
            },
            Backend::Epoll => Backend::Epoll,
        };
        let listeners = match taken {
            Some(taken) => adopt(taken)?,
            None => bind_all(&config)?,
        };
        let workers = listeners.len();
        let tcp_addr = first_addr(listeners.iter().map(|pair| pair.0.as_ref()))?;
        let ws_addr = first_addr(listeners.iter().map(|pair| pair.1.as_ref()))?;
        let copies = ListenerCopies::of(&listeners)?;
        let mut polls = Vec::with_capacity(workers);
        let mut eventfds = Vec::with_capacity(workers);
        let mut wakers = Vec::with_capacity(workers);
        for _ in 0..workers {
            match backend {
                Backend::Epoll => {
                    let poll = Poll::new()?;
                    wakers.push(Waker::Mio(mio::Waker::new(poll.registry(), WAKER)?));
                    polls.push(poll);
                }
                Backend::Uring => {
                    let eventfd = Arc::new(super::uring::eventfd()?);
                    wakers.push(Waker::EventFd(eventfd.clone()));
                    eventfds.push(eventfd);
                }
            }
        }
        let (mut handle, inboxes) = GatewayHandle::new(wakers, config.inbox_bytes);
        handle.keep_copies(copies.clone());
        let shared = Arc::new(Shared {
            open_conns: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            budget_closes: AtomicU64::new(0),
            metrics: (0..workers).map(|_| Default::default()).collect(),
            per_ip: Arc::new(PerIpTable::new(config.per_ip, TICK_MS)),
            syn_filter: SynFilter::new(config.syn_filter.clone(), TICK_MS),
            config,
        });
        let threads = match backend {
            Backend::Epoll => start_epoll(
                polls,
                listeners,
                inboxes,
                &mut make_handler,
                &handle,
                &shared,
            )?,
            Backend::Uring => start_uring(
                eventfds,
                listeners,
                inboxes,
                &mut make_handler,
                &handle,
                &shared,
            )?,
        };
        Ok(Gateway {
            handle,
            threads,
            backend,
            tcp_addr,
            ws_addr,
            shared,
            copies,
        })
    }

    /// Copies of the listening sockets, for handing them to a new process (`--handover`)
    /// until [`ListenerCopies::release`].
    pub fn listener_copies(&self) -> ListenerCopies {
        self.copies.clone()
    }

    /// The backend the reactors run on: the one configured, or epoll where the kernel
    /// refused io_uring.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The handle for pushing to and closing connections from any thread.
    pub fn handle(&self) -> GatewayHandle {
        self.handle.clone()
    }

    /// The bound framed-TCP address (with the port the kernel chose for port 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The bound WebSocket address.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    /// Connections open right now, across all reactors.
    pub fn open_connections(&self) -> usize {
        self.shared
            .open_conns
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The gateway's counters and gauges, readable from any thread (the admin listener).
    pub fn probe(&self) -> GatewayProbe {
        GatewayProbe {
            shared: self.shared.clone(),
            handle: self.handle.clone(),
        }
    }

    /// Bytes queued for writing across all reactors, as of the end of each one's last pass.
    pub fn queued_bytes(&self) -> usize {
        self.shared
            .queued_bytes
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Connections closed so far because the process was over `--max-queued-bytes`.
    pub fn budget_closes(&self) -> u64 {
        self.shared
            .budget_closes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What was refused so far, by reason (`--max-conns`, the per-IP limits, the Origin
    /// allowlist, the message rate, bad handshakes...): the reactors' counters summed, as
    /// `/metrics` shows them. Each reactor publishes its machines' counts once per pass.
    pub fn refusals(&self) -> RefusalCounts {
        RefusalCounts(self.probe().totals().refusals)
    }

    /// Stops accepting, closes every connection (WebSocket with 1001) and waits for the
    /// reactors to drain, at most the configured drain timeout (plus one close linger).
    pub fn shutdown(self) {
        self.handle.shutdown();
        self.join();
    }

    /// Waits for the reactor threads to exit (after a shutdown through the handle).
    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// One reactor's framed-TCP and WebSocket listeners.
type ListenerPair = (Option<TcpListener>, Option<TcpListener>);

/// The address of the first of `listeners` there is.
fn first_addr<'a>(
    mut listeners: impl Iterator<Item = Option<&'a TcpListener>>,
) -> io::Result<Option<SocketAddr>> {
    listeners
        .find_map(|listener| listener)
        .map(TcpListener::local_addr)
        .transpose()
}

/// Each reactor's (framed TCP, WebSocket) listeners, bound here. Port 0 is resolved by the
/// first bind, and the others bind the port it got (SO_REUSEPORT).
fn bind_all(config: &GatewayConfig) -> io::Result<Vec<ListenerPair>> {
    let workers = config.workers.clamp(1, MAX_REACTORS);
    let mut tcp_addr = config.tcp;
    let mut ws_addr = config.ws;
    let mut listeners = Vec::with_capacity(workers);
    for _ in 0..workers {
        let tcp = match tcp_addr {
            Some(addr) => {
                let listener = bind_listener(addr, &config.socket)?;
                tcp_addr = Some(listener.local_addr()?);
                Some(listener)
            }
            None => None,
        };
        let ws = match ws_addr {
            Some(addr) => {
                let listener = bind_listener(addr, &config.socket)?;
                ws_addr = Some(listener.local_addr()?);
                Some(listener)
            }
            None => None,
        };
        listeners.push((tcp, ws));
    }
    Ok(listeners)
}

/// Sockets another process handed over, paired up one per reactor. Any past
/// [`MAX_REACTORS`] per transport are refused rather than closed (closing one would reset
/// the connections in its accept queue).
fn adopt(taken: Listeners) -> io::Result<Vec<ListenerPair>> {
    let workers = taken.reactors();
    if workers == 0 || workers > MAX_REACTORS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{workers} listening sockets per transport handed over (1..={MAX_REACTORS})"),
        ));
    }
    let mut tcp = taken.tcp.into_iter();
    let mut ws = taken.ws.into_iter();
    let mio = |listener: std::net::TcpListener| -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Ok(TcpListener::from_std(listener))
    };
    (0..workers)
        .map(|_| {
            Ok((
                tcp.next().map(mio).transpose()?,
                ws.next().map(mio).transpose()?,
            ))
        })
        .collect()
}
