//! The real `switchboard` binary as a child process, for both suites: spawned with a piped
//! stdout, the listeners it announces there parsed, signalled, and waited for with a bound.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The addresses a `switchboard` subcommand announced on stdout.
#[derive(Debug, Clone, Copy)]
pub struct Listeners {
    /// Its WebSocket address.
    pub ws: SocketAddr,
    /// Its framed-TCP address.
    pub tcp: SocketAddr,
    /// Its admin listener, if it announced one before the lines waited for (`serve`).
    pub admin: Option<SocketAddr>,
}

/// Spawns `command` (the binary with `subcommand` and its arguments already added) and waits
/// until it has announced both listeners and printed a line starting with each of `also`
/// (after the `switchboard SUBCOMMAND: ` prefix), so the test starts on a server that is ready.
pub fn spawn_announced(
    mut command: Command,
    subcommand: &str,
    also: &[&str],
) -> (Child, Listeners) {
    let mut child = command
        // Errors still show; the warnings the tests provoke on purpose do not.
        .env("RUST_LOG", "error")
        .env("SWITCHBOARD_BACKEND", super::backend().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn switchboard {subcommand}: {e}"));
    let lines = stdout_lines(&mut child);
    let listeners = read_listeners(&lines, subcommand, also);
    (child, listeners)
}

/// Reads `lines` until `switchboard SUBCOMMAND` has announced its WebSocket and framed-TCP
/// listeners and a line starting with each of `also`; panics if that takes over 10 seconds.
pub fn read_listeners(
    lines: &mpsc::Receiver<String>,
    subcommand: &str,
    also: &[&str],
) -> Listeners {
    let prefix = format!("switchboard {subcommand}: ");
    let (mut ws, mut tcp, mut admin) = (None, None, None);
    let mut unseen: Vec<&str> = also.to_vec();
    while ws.is_none() || tcp.is_none() || !unseen.is_empty() {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("switchboard {subcommand} announces its listeners"));
        let Some(said) = line.strip_prefix(&prefix) else {
            continue;
        };
        let said = said.trim_end_matches(" (TLS)");
        let ws_address = said
            .strip_prefix("WebSocket on ws://")
            .or_else(|| said.strip_prefix("WebSocket on wss://"));
        if let Some(rest) = ws_address {
            ws = Some(
                rest.trim_end_matches('/')
                    .parse()
                    .expect("a WebSocket address"),
            );
        } else if let Some(rest) = said.strip_prefix("framed TCP on ") {
            tcp = Some(rest.parse().expect("a TCP address"));
        } else if let Some(rest) = said.strip_prefix("admin on http://") {
            admin = Some(
                rest.trim_end_matches('/')
                    .parse()
                    .expect("an admin address"),
            );
        } else {
            unseen.retain(|start| !said.starts_with(start));
        }
    }
    Listeners {
        ws: ws.expect("seen"),
        tcp: tcp.expect("seen"),
        admin,
    }
}

/// The child's stdout, line by line, read on a thread of its own so a test can wait for an
/// announcement with a timeout. The child must have been spawned with a piped stdout.
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

/// Sends `signal` to `child`, which must not have been reaped yet.
pub fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    // SAFETY: kill(2) takes plain integers; the pid is the caller's own child, not yet reaped
    // (the callers reap it only in wait_exit, kill or Drop), so it cannot name another process.
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0, "kill: {}", io::Error::last_os_error());
}

/// Waits for `child` to exit; panics if it still runs after `within`.
pub fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "still running after {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
