//! Restart with no refused or reset connection (`--handover PATH`): a new process takes the
//! listening sockets over from the running one before the old one drains.
//!
//! Closing an SO_REUSEPORT listener resets the connections waiting in its accept queue, and a
//! new process that binds its own sockets joins the port's group only beside the old ones, so
//! the descriptors themselves change hands. Every process started with `--handover PATH`
//! listens on the unix socket PATH. A new process started with the same PATH connects to it
//! first and asks; the old one answers with copies of its listening sockets (every reactor's,
//! both transports, and the admin listener) passed as SCM_RIGHTS, and what the new one must
//! know of its message ids. The new process starts serving on them, binds PATH itself, and
//! says READY; only then does the old one stop accepting (closing its descriptors, not the
//! sockets, which the new process holds) and drain. It keeps the connection open until it
//! exits, so the new process learns when it is alone on the store.
//!
//! The exchange, on one unix stream connection:
//!
//! ```text
//! new -> old   "SWHO TAKE 1\n"
//! old -> new   Offer (19 bytes, below) + SCM_RIGHTS [tcp..., ws..., admin?]
//! new -> old   "READY\n"
//! old          drains; the connection ends when it exits
//! ```
//!
//! An old process that gets no READY (the new one failed to start) goes on serving, and
//! withdraws the offer: group changes go through again (it only keeps to its half of the id
//! sequence), and it says so in its log.
//! The only `unsafe` is taking ownership of the descriptors the kernel installed for a
//! received SCM_RIGHTS message ([`receive_offer`]).

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use tracing::{info, warn};

use std::sync::{Arc, Mutex};

use crate::core_queue::CoreQueue;
use crate::gateway::{ListenerCopies, Listeners};
use crate::logic::core::IdHandover;
use crate::logic::snowflake::IdLane;
use crate::logic::Inbound;

/// What the new process sends first.
pub const TAKE: &[u8] = b"SWHO TAKE 1\n";
/// What the new process sends once it serves on the sockets.
pub const READY: &[u8] = b"READY\n";
/// The longest a step of the exchange may take before the side waiting gives up.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);
const MAGIC: &[u8; 4] = b"SWHO";
const VERSION: u8 = 1;
/// The offer's length on the wire.
pub const OFFER_LEN: usize = 19;
/// The most descriptors one offer carries: 256 reactors' two listeners and the admin one.
const MAX_FDS: usize = 2 * crate::gateway::conn_id::MAX_REACTORS + 1;

/// What the old process hands over besides the sockets, and how many of each it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// Framed-TCP listening sockets (the first descriptors).
    pub tcp: u16,
    /// WebSocket listening sockets (after those).
    pub ws: u16,
    /// Whether the admin listener's socket comes last.
    pub admin: bool,
    /// The half of the id sequence the old process keeps (the new one takes the other).
    pub kept_lane: IdLane,
    /// The last millisecond (since the Unix epoch) the old process made an id in.
    pub last_id_unix_ms: u64,
}

/// Why a handover failed.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("handover socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "handover: the process on {} handed nothing over (it is draining, or failed to \
         prepare; see its log)", path.display()
    )]
    Refused { path: PathBuf },
    #[error("handover: the old process sent a malformed offer ({0})")]
    Malformed(&'static str),
    #[error("handover: the old process sent {got} descriptors for {expected} sockets")]
    Descriptors { expected: usize, got: usize },
    #[error("handover: a descriptor the old process sent is not a listening TCP socket")]
    NotAListener,
}

impl Offer {
    /// The offer's bytes: `"SWHO" version(u8) tcp(u16) ws(u16) admin(u8) lane(u8)
    /// last_id_unix_ms(u64)`, big-endian.
    pub fn encode(&self) -> [u8; OFFER_LEN] {
        let mut out = [0u8; OFFER_LEN];
        out[..4].copy_from_slice(MAGIC);
        out[4] = VERSION;
        out[5..7].copy_from_slice(&self.tcp.to_be_bytes());
        out[7..9].copy_from_slice(&self.ws.to_be_bytes());
        out[9] = u8::from(self.admin);
        out[10] = self.kept_lane.code();
        out[11..].copy_from_slice(&self.last_id_unix_ms.to_be_bytes());
        out
    }

    /// An offer from its bytes.
    pub fn decode(bytes: &[u8]) -> Result<Offer, HandoverError> {
        let bytes: &[u8; OFFER_LEN] = bytes
            .try_into()
            .map_err(|_| HandoverError::Malformed("length"))?;
        if &bytes[..4] != MAGIC || bytes[4] != VERSION {
            return Err(HandoverError::Malformed("magic or version"));
        }
        let admin = match bytes[9] {
            0 => false,
            1 => true,
            _ => return Err(HandoverError::Malformed("admin flag")),
        };
        let kept_lane = IdLane::from_code(bytes[10]).ok_or(HandoverError::Malformed("lane"))?;
        let u16_at = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        let mut ms = [0u8; 8];
        ms.copy_from_slice(&bytes[11..]);
        if usize::from(u16_at(5)).max(usize::from(u16_at(7)))
            > crate::gateway::conn_id::MAX_REACTORS
        {
            return Err(HandoverError::Malformed("more sockets than reactors"));
        }
        Ok(Offer {
            tcp: u16_at(5),
            ws: u16_at(7),
            admin,
            kept_lane,
            last_id_unix_ms: u64::from_be_bytes(ms),
        })
    }

    /// How many descriptors come with the offer.
    pub fn descriptors(&self) -> usize {
        usize::from(self.tcp) + usize::from(self.ws) + usize::from(self.admin)
    }
}

/// What a new process got from the old one.
#[derive(Debug)]
pub struct TakenOver {
    /// The offer.
    pub offer: Offer,
    /// The gateway's listening sockets.
    pub listeners: Listeners,
    /// The admin listener's socket, if the old process had one.
    pub admin: Option<TcpListener>,
    stream: UnixStream,
    path: PathBuf,
}

/// Asks the process listening on `path` for its sockets. `Ok(None)` when nobody listens
/// there (no file, or a stale one): a first start.
pub fn take_over(path: &Path) -> Result<Option<TakenOver>, HandoverError> {
    let io_error = |source| HandoverError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = match UnixStream::connect(path) {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(io_error(e)),
    };
    stream
        .set_read_timeout(Some(STEP_TIMEOUT))
        .map_err(io_error)?;
    stream
        .set_write_timeout(Some(STEP_TIMEOUT))
        .map_err(io_error)?;
    stream.write_all(TAKE).map_err(io_error)?;
    let (bytes, fds) = receive_offer(&stream).map_err(io_error)?;
    if bytes.is_empty() {
        return Err(HandoverError::Refused {
            path: path.to_path_buf(),
        });
    }
    let offer = Offer::decode(&bytes)?;
    if fds.len() != offer.descriptors() {
        return Err(HandoverError::Descriptors {
            expected: offer.descriptors(),
            got: fds.len(),
        });
    }
    let mut sockets = fds.into_iter().map(|fd| {
        let socket = socket2::Socket::from(fd);
        match socket.is_listener() {
            Ok(true) => Ok(TcpListener::from(socket)),
            _ => Err(HandoverError::NotAListener),
        }
    });
    let mut take = |n: u16| -> Result<Vec<TcpListener>, HandoverError> {
        sockets.by_ref().take(usize::from(n)).collect()
    };
    let listeners = Listeners {
        tcp: take(offer.tcp)?,
        ws: take(offer.ws)?,
    };
    let admin = match offer.admin {
        true => take(1)?.pop(),
        false => None,
    };
    info!(path = %path.display(), tcp = offer.tcp, ws = offer.ws, "handover: took the listening sockets over");
    Ok(Some(TakenOver {
        offer,
        listeners,
        admin,
        stream,
        path: path.to_path_buf(),
    }))
}

impl TakenOver {
    /// Tells the old process this one serves now (it drains), and returns a wait for its
    /// exit: call it on a thread of its own.
    pub fn ready(mut self) -> Result<impl FnOnce() + Send, HandoverError> {
        let path = self.path.clone();
        self.stream
            .write_all(READY)
            .map_err(|source| HandoverError::Io { path, source })?;
        let mut stream = self.stream;
        Ok(move || {
            let _ = stream.set_read_timeout(None);
            let mut byte = [0u8; 1];
            // The old process sends nothing more: this returns when it has exited.
            while matches!(stream.read(&mut byte), Ok(n) if n > 0) {}
        })
    }
}

/// Listens on `path` (replacing a stale socket file, or the one a process this one took
/// over from listens on: that one's listener lives on unnamed) for a new process, and on
/// each asks `offer` for what to send; then `ready` once the new one serves (it should start
/// the drain), or `withdrawn` if the new one went away after the offer without READY. Runs
/// on a thread of its own for the process's life.
pub fn listen(
    path: &Path,
    offer: impl Fn() -> io::Result<(Offer, Vec<OwnedFd>)> + Send + 'static,
    withdrawn: impl Fn() + Send + 'static,
    ready: impl Fn() + Send + 'static,
) -> Result<(), HandoverError> {
    let io_error = |source| HandoverError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_error)?;
    let shown = path.display().to_string();
    std::thread::Builder::new()
        .name("handover".into())
        .spawn(move || {
            // The connection of the process that took over is kept open until this one exits.
            let mut successor = None;
            for stream in listener.incoming() {
                let stream = match stream {
                    Ok(stream) => stream,
                    Err(e) => {
                        warn!(path = shown, error = %e, "handover: accept failed");
                        continue;
                    }
                };
                let mut offered = false;
                match hand_over(stream, &offer, &mut offered) {
                    Ok(stream) => {
                        info!(path = shown, "handover: the new process serves; draining");
                        successor = Some(stream);
                        ready();
                    }
                    Err(e) => {
                        warn!(path = shown, error = %e, "handover: not handed over; serving on");
                        if offered {
                            withdrawn();
                        }
                    }
                }
                if successor.is_some() {
                    // One successor: further requests wait for it (it listens on the path).
                    break;
                }
            }
            if let Some(stream) = successor {
                let mut stream = stream;
                let mut byte = [0u8; 1];
                let _ = stream.set_read_timeout(None);
                while matches!(stream.read(&mut byte), Ok(n) if n > 0) {}
            }
        })
        .map_err(io_error)?;
    Ok(())
}

/// One exchange with a new process: its request, the offer and sockets, its READY.
fn hand_over(
    mut stream: UnixStream,
    offer: &impl Fn() -> io::Result<(Offer, Vec<OwnedFd>)>,
    offered: &mut bool,
) -> io::Result<UnixStream> {
    stream.set_read_timeout(Some(STEP_TIMEOUT))?;
    stream.set_write_timeout(Some(STEP_TIMEOUT))?;
    let mut request = [0u8; TAKE.len()];
    stream.read_exact(&mut request)?;
    if request != TAKE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a handover request",
        ));
    }
    let (offer, fds) = offer()?;
    *offered = true;
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let payload = offer.encode();
    let rights = [ControlMessage::ScmRights(&raw)];
    sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(&payload)],
        &rights,
        MsgFlags::empty(),
        None,
    )
    .map_err(io::Error::from)?;
    // Our copies go now: the new process holds its own.
    drop(fds);
    let mut ready = [0u8; READY.len()];
    stream.read_exact(&mut ready)?;
    if ready != READY {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no READY"));
    }
    Ok(stream)
}

/// What a running process hands over, readable from the handover thread until the process
/// drains ([`Offering::close`]): the gateway's socket copies, the admin listener's, and the
/// way to the logic core (which keeps to half of the id sequence and stops group changes
/// before the sockets go, and says where its ids are).
#[derive(Clone, Default)]
pub struct Offering(Arc<Mutex<Option<OfferSources>>>);

/// See [`Offering`].
pub struct OfferSources {
    /// The gateway's listening sockets.
    pub gateway: ListenerCopies,
    /// The admin listener's socket (from `AdminServer::listener_copy`).
    pub admin: Option<Arc<Mutex<Option<TcpListener>>>>,
    /// The logic core (`serve`; none for `echo`).
    pub core: Option<CoreQueue>,
}

impl Offering {
    /// An offering of `sources`.
    pub fn new(sources: OfferSources) -> Offering {
        Offering(Arc::new(Mutex::new(Some(sources))))
    }

    /// The offer and descriptors for a new process; an error once the process drains.
    pub fn offer(&self) -> io::Result<(Offer, Vec<OwnedFd>)> {
        let held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let draining = || io::Error::other("this process is draining: nothing to hand over");
        let sources = held.as_ref().ok_or_else(draining)?;
        let listeners = sources.gateway.duplicate()?.ok_or_else(draining)?;
        let admin = match &sources.admin {
            Some(copy) => {
                let copy = copy.lock().unwrap_or_else(|e| e.into_inner());
                copy.as_ref().map(TcpListener::try_clone).transpose()?
            }
            None => None,
        };
        let ids = match &sources.core {
            Some(core) => {
                let (answer, ids) = crossbeam_channel::bounded(1);
                if !core.send_unmetered(vec![Inbound::HandOver(answer)]) {
                    return Err(draining());
                }
                ids.recv_timeout(STEP_TIMEOUT)
                    .map_err(|_| io::Error::other("the logic core did not answer"))?
            }
            None => IdHandover {
                kept: IdLane::Whole,
                last_unix_ms: 0,
            },
        };
        let count = |all: &[TcpListener]| u16::try_from(all.len()).unwrap_or(u16::MAX);
        let offer = Offer {
            tcp: count(&listeners.tcp),
            ws: count(&listeners.ws),
            admin: admin.is_some(),
            kept_lane: ids.kept,
            last_id_unix_ms: ids.last_unix_ms,
        };
        let fds = listeners
            .tcp
            .into_iter()
            .chain(listeners.ws)
            .chain(admin)
            .map(OwnedFd::from)
            .collect();
        Ok((offer, fds))
    }

    /// The new process went away without READY: this one goes on alone, and lets group
    /// changes through again (its cache missed nothing: nobody else wrote).
    pub fn withdraw(&self) {
        let held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(core) = held.as_ref().and_then(|sources| sources.core.as_ref()) {
            core.send_unmetered(vec![Inbound::HandOverWithdrawn]);
        }
    }

    /// The process drains: nothing is handed over any more, and the copies and the way to
    /// the core are let go (the sockets close with the reactors' descriptors, the core can
    /// end).
    pub fn close(&self) {
        if let Some(sources) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            sources.gateway.release();
            if let Some(admin) = sources.admin {
                admin.lock().unwrap_or_else(|e| e.into_inner()).take();
            }
        }
    }
}

/// Reads the offer and the descriptors that came with it.
fn receive_offer(stream: &UnixStream) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut bytes = vec![0u8; OFFER_LEN];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(&mut bytes)];
    let message = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let received = message.bytes;
    let mut fds = Vec::new();
    for control in message.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raw) = control {
            // SAFETY: the kernel installed these descriptors in this process for the
            // SCM_RIGHTS message just received; nothing else knows or owns them, so each is
            // owned exactly once, here.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    if message.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "descriptors cut short",
        ));
    }
    bytes.truncate(received);
    Ok((bytes, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> Offer {
        Offer {
            tcp: 2,
            ws: 2,
            admin: true,
            kept_lane: IdLane::Low,
            last_id_unix_ms: 1_780_000_000_123,
        }
    }

    #[test]
    fn an_offer_reads_back_and_a_damaged_one_is_refused() {
        let bytes = offer().encode();
        assert_eq!(Offer::decode(&bytes).unwrap(), offer());
        assert_eq!(offer().descriptors(), 5);
        assert!(Offer::decode(&bytes[..18]).is_err());
        for (at, value) in [(0, b'X'), (4, 2), (5, 9), (9, 2), (10, 9)] {
            let mut bad = bytes;
            bad[at] = value;
            assert!(Offer::decode(&bad).is_err(), "byte {at} = {value}");
        }
    }

    #[test]
    fn listening_sockets_change_hands_and_keep_their_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handover.sock");
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        // A client whose connection waits in the old process's accept queue.
        let mut waiting = std::net::TcpStream::connect(addr).unwrap();
        let copy = tcp.try_clone().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (withdrawn_tx, withdrawn_rx) = std::sync::mpsc::channel();
        listen(
            &path,
            move || {
                let offer = Offer {
                    tcp: 1,
                    ws: 0,
                    admin: false,
                    kept_lane: IdLane::Low,
                    last_id_unix_ms: 42,
                };
                Ok((offer, vec![OwnedFd::from(copy.try_clone()?)]))
            },
            move || withdrawn_tx.send(()).unwrap(),
            move || ready_tx.send(()).unwrap(),
        )
        .unwrap();
        // A new process that takes the offer and dies before READY: the offer is withdrawn,
        // and the old one still answers the next.
        let failed = take_over(&path).unwrap().expect("someone listens");
        drop(failed);
        withdrawn_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(ready_rx.try_recv().is_err());
        let taken = take_over(&path).unwrap().expect("someone listens");
        assert_eq!(taken.offer.last_id_unix_ms, 42);
        let mut listeners = taken.listeners.tcp;
        let wait_for_old = {
            let taken = TakenOver {
                listeners: Listeners::default(),
                ..taken
            };
            taken.ready().unwrap()
        };
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        // The old process closes its own descriptor: the socket and its queue live on.
        drop(tcp);
        let new = listeners.pop().unwrap();
        let (mut accepted, _) = new.accept().unwrap();
        waiting.write_all(b"hi").unwrap();
        let mut got = [0u8; 2];
        accepted.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
        drop(wait_for_old);
        // Nobody listens on a path without a socket.
        assert!(take_over(&dir.path().join("none")).unwrap().is_none());
    }

    #[test]
    fn a_draining_process_hands_nothing_over_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handover.sock");
        listen(
            &path,
            || Err(io::Error::other("draining")),
            || panic!("nothing was offered"),
            || panic!("nothing was handed over"),
        )
        .unwrap();
        let refused = take_over(&path).unwrap_err();
        assert!(
            matches!(refused, HandoverError::Refused { .. }),
            "{refused}"
        );
    }
}
