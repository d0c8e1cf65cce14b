//! The real `switchboard echo` binary as a child process: spawned on free loopback ports,
//! its announced addresses parsed from stdout, signalled, and killed (SIGKILL) and reaped
//! when dropped if a test ends while it still runs, so no child outlives the test run.

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use super::shared::process::{self as child_process, spawn_announced};

/// A running `switchboard echo`.
pub struct EchoProcess {
    child: Child,
    /// Its WebSocket address.
    pub ws: SocketAddr,
    /// Its framed-TCP address.
    pub tcp: SocketAddr,
}

impl EchoProcess {
    /// Starts `switchboard echo` on free loopback ports with `args` added.
    pub fn spawn(args: &[&str]) -> EchoProcess {
        EchoProcess::start(Command::new(env!("CARGO_BIN_EXE_switchboard")), args)
    }

    /// Like [`EchoProcess::spawn`], with the process's open-descriptor limit set to `limit`
    /// (through the shell's `ulimit`, then `exec`, so the child is the binary itself).
    pub fn spawn_with_fd_limit(limit: u32, args: &[&str]) -> EchoProcess {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_switchboard"));
        EchoProcess::start(command, args)
    }

    /// Like [`EchoProcess::spawn`], logging at `filter` (`RUST_LOG`) into the file `log`
    /// (through the shell, then `exec`, so the child is the binary itself).
    pub fn spawn_logging_to(log: &std::path::Path, filter: &str, args: &[&str]) -> EchoProcess {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!(
                "RUST_LOG='{filter}' exec \"$0\" \"$@\" 2>>'{}'",
                log.display()
            ))
            .arg(env!("CARGO_BIN_EXE_switchboard"));
        EchoProcess::start(command, args)
    }

    /// Starts `switchboard echo` with the listening sockets `tcp` and `ws` passed the way
    /// systemd's socket activation passes them (see [`activated_command`]). `args` are all the
    /// arguments after `echo`.
    pub fn spawn_activated(
        tcp: &std::net::TcpListener,
        ws: &std::net::TcpListener,
        names: Option<&str>,
        args: &[&str],
    ) -> EchoProcess {
        let mut command = activated_command(tcp, ws, names);
        command.arg("echo").args(args);
        EchoProcess::launch(command)
    }

    fn start(mut command: Command, args: &[&str]) -> EchoProcess {
        command
            .args(["echo", "--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
            .args(args);
        EchoProcess::launch(command)
    }

    fn launch(command: Command) -> EchoProcess {
        let (child, listeners) = spawn_announced(command, "echo", &[]);
        EchoProcess {
            child,
            ws: listeners.ws,
            tcp: listeners.tcp,
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        child_process::signal(&self.child, signal);
    }

    /// Waits for the exit; panics if the process still runs after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        child_process::wait_exit(&mut self.child, within)
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// CPU time the process has used so far (user + system), from /proc/PID/stat.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("read /proc/PID/stat");
        // Fields after the parenthesised command name, which may itself hold spaces.
        let rest = &stat[stat.rfind(')').expect("comm field") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 of `rest`.
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        assert!(per_second > 0, "sysconf(_SC_CLK_TCK)");
        Duration::from_millis(ticks * 1000 / per_second as u64)
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The switchboard binary as systemd's socket activation starts it: `tcp` and `ws` at
/// descriptors 3 and 4 (through bash, which moves them there and sets LISTEN_PID to its own
/// pid before `exec`), with `LISTEN_FDS=2` and `LISTEN_FDNAMES=names` when given. The caller
/// adds the subcommand and its arguments.
pub fn activated_command(
    tcp: &std::net::TcpListener,
    ws: &std::net::TcpListener,
    names: Option<&str>,
) -> Command {
    use std::os::fd::AsRawFd;
    for socket in [tcp, ws] {
        // Inherited by the child (std opens every descriptor close-on-exec).
        socket2::SockRef::from(socket)
            .set_cloexec(false)
            .expect("clear FD_CLOEXEC");
    }
    let mut command = Command::new("bash");
    command
        .arg("-c")
        // Through 20 and 21 first, so that neither move clobbers the other's source.
        .arg(
            "exec 20<&\"$1\" 21<&\"$2\"; export LISTEN_PID=$$; \
             exec \"$0\" \"${@:3}\" 3<&20 4<&21 20<&- 21<&-",
        )
        .arg(env!("CARGO_BIN_EXE_switchboard"))
        .arg(tcp.as_raw_fd().to_string())
        .arg(ws.as_raw_fd().to_string())
        .env("LISTEN_FDS", "2");
    match names {
        Some(names) => command.env("LISTEN_FDNAMES", names),
        None => command.env_remove("LISTEN_FDNAMES"),
    };
    command
}
