//! The real `switchboard serve` binary as a child process: started on free loopback ports
//! with the tests' secret, its listeners read from the lines it prints, killed with SIGKILL
//! on demand, and killed and reaped when dropped, so no child outlives the test run.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use super::shared::process::{self as child_process, spawn_announced};

use super::{ChatClient, Transport, SECRET};

/// A running `switchboard serve`.
pub struct ServeProcess {
    child: Child,
    /// Its framed-TCP address.
    pub tcp: SocketAddr,
    /// Its WebSocket address.
    pub ws: SocketAddr,
    /// Its admin listener (on a free loopback port unless `args` chose `--admin`).
    pub admin: Option<SocketAddr>,
}

impl ServeProcess {
    /// Starts `switchboard serve --data DATA` on free loopback ports, with `args` added.
    pub fn spawn(data: &Path, args: &[&str]) -> ServeProcess {
        ServeProcess::spawn_with_env(data, args, &[])
    }

    /// [`ServeProcess::spawn`] with environment variables added.
    pub fn spawn_with_env(data: &Path, args: &[&str], env: &[(&str, &str)]) -> ServeProcess {
        let secret = std::str::from_utf8(SECRET).expect("an ASCII secret");
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .args(["serve", "--tcp", "127.0.0.1:0", "--ws", "127.0.0.1:0"])
            .arg("--data")
            .arg(data)
            .args(suite_mode(args))
            .args(args)
            .env_remove("SWITCHBOARD_STORE");
        // The running test's store (see `with_postgres`); the same database on every restart.
        if let Some(url) = super::postgres() {
            command.args(["--store", &url]);
        }
        command
            .env("SWITCHBOARD_JWT_SECRET", secret)
            .envs(env.iter().copied());
        if !args.iter().any(|arg| arg.starts_with("--admin")) {
            command.args(["--admin", "127.0.0.1:0"]);
        }
        // The data line is the last of the start-up announcements: after it, the server is up.
        let (child, listeners) = spawn_announced(command, "serve", &["data in "]);
        ServeProcess {
            child,
            tcp: listeners.tcp,
            ws: listeners.ws,
            admin: listeners.admin,
        }
    }

    /// The process id, to look at its threads in /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
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
        child_process::signal(&self.child, libc::SIGTERM);
    }

    /// Waits for the exit; panics if the process still runs after `within`.
    pub fn wait_exit(mut self, within: Duration) -> ExitStatus {
        child_process::wait_exit(&mut self.child, within)
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

/// The reactors and logic thread of the test binary's mode (`super::logic_thread`), unless
/// `args` name them: by default one reactor and no `--logic-thread`, what a user's
/// `serve --workers 1` gets.
fn suite_mode(args: &[&str]) -> Vec<String> {
    let mode = super::logic_thread();
    let mut added = Vec::new();
    if !args.iter().any(|arg| arg.starts_with("--workers")) {
        added.extend(["--workers".into(), super::workers_for(mode).to_string()]);
    }
    if !args.iter().any(|arg| arg.starts_with("--logic-thread")) {
        if let Some(mode) = mode {
            let name = match mode {
                switchboard::logic::LogicThread::Auto => "auto",
                switchboard::logic::LogicThread::Own => "own",
                switchboard::logic::LogicThread::Reactor => "reactor",
            };
            added.extend(["--logic-thread".into(), name.into()]);
        }
    }
    added
}
