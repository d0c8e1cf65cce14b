//! The server under measurement: a fresh `switchboard echo` on two free loopback ports, its
//! listening lines awaited, stopped with SIGTERM then SIGKILL when dropped, so no run leaves a
//! server behind.

use std::io::{self, BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{os, read_kernel_memory, read_proc_memory, tls, BoxError, Reading};

pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) ws_addr: SocketAddr,
    pub(crate) tcp_addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `switchboard echo` on two free loopback ports and waits for both listening lines.
    /// The child inherits this process's raised RLIMIT_NOFILE.
    pub(crate) fn start(
        bin: &PathBuf,
        workers: Option<usize>,
        tls: Option<&tls::TlsSetup>,
    ) -> Result<ServerProcess, BoxError> {
        let ws_addr = free_loopback_port()?;
        let tcp_addr = free_loopback_port()?;
        let mut command = Command::new(bin);
        command
            .arg("echo")
            .arg("--ws")
            .arg(ws_addr.to_string())
            .arg("--tcp")
            .arg(tcp_addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(workers) = workers {
            command.arg("--workers").arg(workers.to_string());
        }
        if let Some(tls) = tls {
            command
                .arg("--tls-cert")
                .arg(&tls.cert)
                .arg("--tls-key")
                .arg(&tls.key);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let (lines_tx, lines_rx) = mpsc::channel();
        // The reader thread ends when the server closes its stdout (it exits).
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = ServerProcess {
            child,
            ws_addr,
            tcp_addr,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut ws_ready, mut tcp_ready) = (false, false);
        while !(ws_ready && tcp_ready) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines_rx
                .recv_timeout(left)
                .map_err(|_| "the server did not report both listeners within 10 s")?;
            ws_ready |= line.starts_with("switchboard echo: WebSocket on");
            tcp_ready |= line.starts_with("switchboard echo: framed TCP on");
        }
        if server.child.try_wait()?.is_some() {
            server.stop();
            return Err("the server exited right after starting".into());
        }
        Ok(server)
    }

    /// Starts `template` (see --server-cmd) through `sh -c exec`, so the child is the server,
    /// and waits for its "listening on" line.
    pub(crate) fn start_command(template: &str) -> Result<ServerProcess, BoxError> {
        let ws_addr = free_loopback_port()?;
        let tcp_addr = free_loopback_port()?;
        let command_line = template
            .replace("{ws_port}", &ws_addr.port().to_string())
            .replace("{tcp_port}", &tcp_addr.port().to_string());
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {command_line}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {command_line}: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let mut server = ServerProcess {
            child,
            ws_addr,
            tcp_addr,
        };
        let (lines_tx, lines_rx) = mpsc::channel();
        // Keeps draining after the ready line: a server writing to a closed pipe would die.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines_rx
                .recv_timeout(left)
                .map_err(|_| format!("{command_line}: no \"listening on\" line within 10 s"))?;
            if line.starts_with("listening on") {
                break;
            }
        }
        if server.child.try_wait()?.is_some() {
            server.stop();
            return Err("the server exited right after starting".into());
        }
        Ok(server)
    }

    pub(crate) fn reading(&self) -> Result<Reading, BoxError> {
        Ok(Reading {
            server: read_proc_memory(self.child.id())?,
            kernel: read_kernel_memory()?,
        })
    }

    /// SIGTERM, then SIGKILL if it has not exited within 15 s (its drain timeout is 10 s).
    pub(crate) fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        os::terminate(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("idle_memory: the server ignored SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_loopback_port() -> io::Result<SocketAddr> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()
}
