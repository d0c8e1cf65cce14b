//! systemd socket activation (sd_listen_fds(3)): started by systemd with its listening sockets,
//! the process serves on them instead of binding its own. The sockets then outlive the
//! process: a `systemctl restart` refuses no connection (they wait in the socket's backlog
//! while no process accepts), and the ports need no privilege of the service.
//!
//! The protocol: `LISTEN_PID` is this process (anything else means the variables were meant
//! for a parent and are ignored), `LISTEN_FDS` counts the descriptors from 3 on, and
//! `LISTEN_FDNAMES` (colon-separated, from `FileDescriptorName=` in the socket unit) may name
//! each `tcp`, `ws` or `admin`. A descriptor with another name (systemd's default is
//! `unknown`) is placed by its address: the one `--tcp`, `--ws` or `--admin` gives.
//!
//! Invariants: each descriptor is checked to be a listening TCP socket before it is used, at
//! most one per role is taken, and the descriptors are replaced by close-on-exec copies. The
//! only `unsafe` is taking ownership of the descriptors systemd left open ([`take_listener`]).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::gateway::Listeners;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
pub const FIRST_FD: RawFd = 3;
/// More than this many descriptors is a malformed `LISTEN_FDS`, not a configuration.
const MAX_FDS: usize = 64;

/// What a passed socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The framed-TCP listener.
    Tcp,
    /// The WebSocket listener.
    Ws,
    /// The admin HTTP listener (`serve` only).
    Admin,
}

impl Role {
    fn named(name: &str) -> Option<Role> {
        match name {
            "tcp" => Some(Role::Tcp),
            "ws" => Some(Role::Ws),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Why the passed sockets cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// `LISTEN_PID`, `LISTEN_FDS` or `LISTEN_FDNAMES` is malformed.
    #[error("socket activation: {0}")]
    Environment(String),
    /// A descriptor is closed, not a socket, not TCP, or not listening.
    #[error("socket activation: descriptor {fd} is not a listening TCP socket")]
    NotAListener {
        /// The descriptor.
        fd: RawFd,
    },
    /// A descriptor with no role of its own whose address is none of the listeners'.
    #[error(
        "socket activation: descriptor {fd} ({addr}) is at none of the --tcp, --ws, --admin \
         addresses; name it tcp, ws or admin (FileDescriptorName= in the socket unit)"
    )]
    Unplaced {
        /// The descriptor.
        fd: RawFd,
        /// The address it listens on.
        addr: SocketAddr,
    },
    /// Two descriptors for one role.
    #[error("socket activation: two sockets for the {0:?} listener")]
    Twice(Role),
    /// A role this subcommand has no listener for (`admin` given to `echo`).
    #[error(
        "socket activation: a socket for the {0:?} listener, which this command does not have"
    )]
    Unwanted(Role),
}

/// A passed descriptor and the role its name gives (none: placed by its address).
pub type Passed = (RawFd, Option<Role>);

/// The descriptors the environment passes to process `me`, each with the role its name gives
/// (none: placed by address). `Ok(None)` when the process was not socket-activated.
pub fn passed(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    me: u32,
) -> Result<Option<Vec<Passed>>, ActivationError> {
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    let bad = |what: String| ActivationError::Environment(what);
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| bad(format!("LISTEN_PID={pid:?} is not a process id")))?;
    if pid != me {
        return Ok(None);
    }
    let count: usize = fds
        .trim()
        .parse()
        .ok()
        .filter(|&n| n <= MAX_FDS)
        .ok_or_else(|| bad(format!("LISTEN_FDS={fds:?} is not a count up to {MAX_FDS}")))?;
    if count == 0 {
        return Ok(None);
    }
    let names: Vec<&str> = match names {
        Some(names) => names.split(':').collect(),
        None => vec![""; count],
    };
    if names.len() != count {
        return Err(bad(format!(
            "LISTEN_FDNAMES names {} descriptors, LISTEN_FDS says {count}",
            names.len()
        )));
    }
    Ok(Some(
        names
            .iter()
            .enumerate()
            .map(|(i, name)| (FIRST_FD + i as RawFd, Role::named(name)))
            .collect(),
    ))
}

/// The addresses the subcommand would bind, to place unnamed sockets by; `None`: no such
/// listener (a socket for it is refused).
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted {
    /// `--tcp`.
    pub tcp: Option<SocketAddr>,
    /// `--ws`.
    pub ws: Option<SocketAddr>,
    /// `--admin` (`serve`), or `None`.
    pub admin: Option<SocketAddr>,
    /// Whether the subcommand has an admin listener at all.
    pub has_admin: bool,
}

/// The sockets systemd passed, by role.
#[derive(Debug, Default)]
pub struct Activated {
    /// The framed-TCP listener.
    pub tcp: Option<TcpListener>,
    /// The WebSocket listener.
    pub ws: Option<TcpListener>,
    /// The admin listener.
    pub admin: Option<TcpListener>,
}

impl Activated {
    /// The gateway's sockets as `workers` reactors take them: each reactor a copy of each
    /// socket (one socket shared, where binding would give each its own SO_REUSEPORT one).
    pub fn gateway_listeners(&self, workers: usize) -> io::Result<Listeners> {
        let copies = |listener: &Option<TcpListener>| -> io::Result<Vec<TcpListener>> {
            match listener {
                Some(listener) => (0..workers.max(1)).map(|_| listener.try_clone()).collect(),
                None => Ok(Vec::new()),
            }
        };
        Ok(Listeners {
            tcp: copies(&self.tcp)?,
            ws: copies(&self.ws)?,
        })
    }
}

/// Reads the environment of this process and takes the sockets it was passed, placing each
/// by its name or its address. `Ok(None)`: not socket-activated (bind as usual). Call once,
/// before anything else could take descriptors 3 and on for its own.
pub fn from_env(wanted: Wanted) -> Result<Option<Activated>, ActivationError> {
    let var = |name| std::env::var(name).ok();
    let Some(passed) = passed(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    )?
    else {
        return Ok(None);
    };
    let mut activated = Activated::default();
    for (fd, named) in passed {
        let listener = take_listener(fd)?;
        let addr = listener
            .local_addr()
            .map_err(|_| ActivationError::NotAListener { fd })?;
        let role = named
            .or_else(|| place(addr, &wanted))
            .ok_or(ActivationError::Unplaced { fd, addr })?;
        let slot = match role {
            Role::Tcp => &mut activated.tcp,
            Role::Ws => &mut activated.ws,
            Role::Admin if wanted.has_admin => &mut activated.admin,
            Role::Admin => return Err(ActivationError::Unwanted(role)),
        };
        if slot.replace(listener).is_some() {
            return Err(ActivationError::Twice(role));
        }
    }
    Ok(Some(activated))
}

/// The role of an unnamed socket listening on `addr`: the listener configured there.
fn place(addr: SocketAddr, wanted: &Wanted) -> Option<Role> {
    [
        (wanted.tcp, Role::Tcp),
        (wanted.ws, Role::Ws),
        (wanted.admin, Role::Admin),
    ]
    .into_iter()
    .find(|(want, _)| *want == Some(addr))
    .map(|(_, role)| role)
}

/// Takes descriptor `fd`, which must be a listening TCP socket, replacing it by a
/// close-on-exec copy (systemd passes them inheritable; a child must not keep them open).
fn take_listener(fd: RawFd) -> Result<TcpListener, ActivationError> {
    let not_a_listener = || ActivationError::NotAListener { fd };
    // Asked on the bare number first: an error here means no socket is open at `fd`, and then
    // it must not be owned.
    let name: nix::sys::socket::SockaddrStorage =
        nix::sys::socket::getsockname(fd).map_err(|_| not_a_listener())?;
    use nix::sys::socket::{AddressFamily, SockaddrLike};
    if !matches!(
        name.family(),
        Some(AddressFamily::Inet | AddressFamily::Inet6)
    ) {
        return Err(not_a_listener());
    }
    // SAFETY: `fd` is open (getsockname on it just succeeded) and, per LISTEN_PID/LISTEN_FDS,
    // was passed to this process to own: nothing else in the process refers to it (the
    // descriptors from 3 on were taken when the process started, so nothing opened since got
    // their numbers, and this function runs once per descriptor). Owning it closes it once.
    let passed = unsafe { OwnedFd::from_raw_fd(fd) };
    let socket = socket2::Socket::from(passed.try_clone().map_err(|_| not_a_listener())?);
    drop(passed);
    match (socket.is_listener(), socket.r#type()) {
        (Ok(true), Ok(socket2::Type::STREAM)) => Ok(TcpListener::from(socket)),
        _ => Err(not_a_listener()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_activated_without_the_variables_or_for_another_process() {
        assert!(passed(None, None, None, 10).unwrap().is_none());
        assert!(passed(Some("10"), None, None, 10).unwrap().is_none());
        assert!(passed(None, Some("2"), None, 10).unwrap().is_none());
        assert!(passed(Some("11"), Some("2"), None, 10).unwrap().is_none());
        assert!(passed(Some("10"), Some("0"), None, 10).unwrap().is_none());
    }

    #[test]
    fn descriptors_from_3_with_the_roles_their_names_give() {
        assert_eq!(
            passed(Some("10"), Some("3"), Some("ws:tcp:admin"), 10).unwrap(),
            Some(vec![
                (3, Some(Role::Ws)),
                (4, Some(Role::Tcp)),
                (5, Some(Role::Admin))
            ])
        );
        assert_eq!(
            passed(Some("10"), Some("2"), Some("unknown:tcp"), 10).unwrap(),
            Some(vec![(3, None), (4, Some(Role::Tcp))])
        );
        assert_eq!(
            passed(Some("10"), Some("2"), None, 10).unwrap(),
            Some(vec![(3, None), (4, None)])
        );
    }

    #[test]
    fn malformed_variables_are_errors() {
        for (pid, fds, names) in [
            ("ten", "2", None),
            ("10", "two", None),
            ("10", "-1", None),
            ("10", "100000", None),
            ("10", "2", Some("tcp")),
            ("10", "1", Some("tcp:ws")),
        ] {
            assert!(
                passed(Some(pid), Some(fds), names, 10).is_err(),
                "{pid} {fds} {names:?}"
            );
        }
    }

    #[test]
    fn unnamed_sockets_are_placed_by_address() {
        let wanted = Wanted {
            tcp: Some("127.0.0.1:9000".parse().unwrap()),
            ws: Some("[::]:9001".parse().unwrap()),
            admin: None,
            has_admin: true,
        };
        assert_eq!(
            place("127.0.0.1:9000".parse().unwrap(), &wanted),
            Some(Role::Tcp)
        );
        assert_eq!(place("[::]:9001".parse().unwrap(), &wanted), Some(Role::Ws));
        assert_eq!(place("127.0.0.1:9001".parse().unwrap(), &wanted), None);
    }

    #[test]
    fn a_closed_descriptor_is_refused() {
        // Far above anything this test process opens.
        assert!(matches!(
            take_listener(4000),
            Err(ActivationError::NotAListener { fd: 4000 })
        ));
    }
}
