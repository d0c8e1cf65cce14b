//! The real `switchboard serve` binary as a child process: started on free loopback ports
//! with the tests' secret, its listeners read from the lines it prints, killed with SIGKILL
//! on demand, and killed and reaped when dropped, so no child outlives the test run.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::shared::stdout_lines;

use super::{ChatClient, Transport, SECRET};

/// A running `switchboard serve`.
pub struct ServeProcess {
    child: Child,
    /// Its framed-TCP address.
    pub tcp: SocketAddr,
    /// Its WebSocket address.
    pub ws: SocketAddr,
}

impl ServeProcess {
    /// Starts `switchboard serve --data DATA` on free loopback ports, with `args` added.
    pub fn spawn(data: &Path, args: &[&str]) -> ServeProcess {
        let secret = std::str::from_utf8(SECRET).expect("an ASCII secret");
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["serve", "--tcp", "127.0.0.1:0", "--ws", "127.0.0.1:0"])
            .arg("--data")
            .arg(data)
            .args(["--workers", "2"])
            .args(args)
            .env("SWITCHBOARD_JWT_SECRET", secret)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn switchboard serve");
        let lines = stdout_lines(&mut child);
        let (mut tcp, mut ws, mut data_line) = (None, None, false);
        while tcp.is_none() || ws.is_none() || !data_line {
            let line: String = lines
                .recv_timeout(Duration::from_secs(10))
                .expect("switchboard serve announces its listeners and data dir");
            if let Some(rest) = line.strip_prefix("switchboard serve: WebSocket on ws://") {
                ws = Some(
                    rest.trim_end_matches('/')
                        .parse()
                        .expect("a WebSocket address"),
                );
            } else if let Some(rest) = line.strip_prefix("switchboard serve: framed TCP on ") {
                tcp = Some(rest.parse().expect("a TCP address"));
            } else if line.starts_with("switchboard serve: data in ") {
                data_line = true;
            }
        }
        ServeProcess {
            child,
            tcp: tcp.expect("seen"),
            ws: ws.expect("seen"),
        }
    }

    /// The listener of `transport`.
    pub fn addr(&self, transport: Transport) -> SocketAddr {
        match transport {
            Transport::Tcp => self.tcp,
            Transport::Ws => self.ws,
        }
    }

    /// A client logged in as `user` on `device`; panics if refused.
    pub fn login(&self, transport: Transport, user: &str, device: Option<&str>) -> ChatClient {
        let mut client = ChatClient::connect(transport, self.addr(transport));
        client
            .login(&super::token(user, device))
            .unwrap_or_else(|status| panic!("login of {user} refused: {status:?}"));
        client
    }

    /// Sends SIGTERM: the server drains and exits.
    pub fn signal_term(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) takes plain integers; the pid is our own child, not yet reaped
        // (it is reaped only in wait_exit, kill or Drop), so it cannot name another process.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits for the exit; panics if the process still runs after `within`.
    pub fn wait_exit(mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "still running after {within:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, then reap: the process gets no chance to flush or drain anything.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL switchboard serve");
        self.child.wait().expect("reap switchboard serve");
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
