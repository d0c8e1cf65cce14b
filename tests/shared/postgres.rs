//! A real PostgreSQL for tests: Debian's `postgresql` binaries, started once per test binary
//! on a temporary data directory and a free loopback port (as the unprivileged `postgres` user
//! when the tests run as root, since PostgreSQL refuses to run as root), with a fresh database
//! per test. Without PostgreSQL installed every test that needs it fails with a message saying
//! what to install: CI installs it (`.ci/run`), a skip would hide a broken store.
//!
//! The server is watched by a small shell supervisor that holds the read end of a pipe whose
//! write end only this process has: when the test binary exits, however it exits, the
//! supervisor reads end-of-file, stops PostgreSQL (immediate mode) and removes the directory.
//! Std only, so the library's unit tests can include this file too (`#[path]`).

#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// A running PostgreSQL for this test binary.
pub struct PgServer {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// The supervisor; its stdin (our end of the pipe) closes only when this process ends.
    _supervisor: Mutex<(Child, BufReader<ChildStdout>)>,
}

const SUPERVISOR: &str = r#"
set -u
dir=$1; port=$2; bin=$3
run() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if ! run "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 >"$dir/initdb.log" 2>&1; then
    echo "initdb failed: $(tail -n 5 "$dir/initdb.log" | tr '\n' ' ')"; exit 1
fi
if ! run "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-k $dir -p $port -h 127.0.0.1 -c max_connections=300" start >/dev/null 2>&1; then
    echo "postgres did not start: $(tail -n 5 "$dir/server.log" | tr '\n' ' ')"; exit 1
fi
echo ready
cat >/dev/null
run "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1
rm -rf "$dir"
"#;

/// This test binary's server, started on first use.
pub fn server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(PgServer::start)
}

/// A fresh, empty database on this binary's server: its `postgres://` location.
pub fn fresh_database() -> String {
    server().create_database()
}

/// The directory with Debian's PostgreSQL binaries (the newest version installed), or
/// `SWITCHBOARD_PG_BIN`; panics with what to install when there is none.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SWITCHBOARD_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed, and these tests run the store against a real one: \
             install Debian's `postgresql` package (apt-get install -y postgresql, as .ci/run \
             does) or set SWITCHBOARD_PG_BIN to a directory holding initdb, pg_ctl and psql"
        ),
    }
}

/// Whether this process runs as root (then PostgreSQL runs as `postgres`).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| out.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// A command run as the owner of the data directory (`postgres` when we are root).
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl PgServer {
    fn start() -> PgServer {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!(
            "switchboard-pg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("a directory for PostgreSQL");
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown postgres {}", dir.display());
        }
        let port = free_port();
        let mut child = Command::new("sh")
            .args(["-c", SUPERVISOR, "sh"])
            .arg(&dir)
            .arg(port.to_string())
            .arg(&bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sh starts the PostgreSQL supervisor");
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("the supervisor answers");
        assert_eq!(
            line.trim(),
            "ready",
            "PostgreSQL for the tests did not start (binaries in {})",
            bin.display()
        );
        PgServer {
            port,
            dir,
            bin,
            _supervisor: Mutex::new((child, out)),
        }
    }

    /// `postgres://` location of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs one SQL command as the superuser on database `db`; panics with psql's words.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .args(["-d", db, "-c", sql])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn create_database(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Stops PostgreSQL (fast mode: connections are cut, what was committed stays).
    pub fn stop(&self) {
        let status = as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        assert!(status.success(), "pg_ctl stop");
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&self) {
        let status = as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-k {} -p {} -h 127.0.0.1 -c max_connections=300",
                self.dir.display(),
                self.port
            ))
            .arg("start")
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        assert!(status.success(), "pg_ctl start");
    }

    /// Waits up to `within` for `condition` on the server's answers to `sql`.
    pub fn wait_for(&self, db: &str, sql: &str, within: Duration, want: &str) -> bool {
        let deadline = std::time::Instant::now() + within;
        loop {
            if self.psql(db, sql) == want {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl PgServer {
    /// User + system CPU clock ticks of this server so far: the postmaster and every process
    /// it started (backends, WAL writer, checkpointer), read from /proc. For benchmarks,
    /// where a store's cost includes the database server's.
    pub fn cpu_ticks(&self) -> u64 {
        let pid_file = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .expect("postmaster.pid of a running server");
        let postmaster: u32 = pid_file
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("a pid");
        let mut ticks = 0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the command's closing parenthesis: state ppid ... utime(14) stime(15).
            let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ppid: u32 = fields.get(1).and_then(|f| f.parse().ok()).unwrap_or(0);
            if pid == postmaster || ppid == postmaster {
                let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
                ticks += field(11).unwrap_or(0) + field(12).unwrap_or(0);
            }
        }
        ticks
    }
}

/// The database name at the end of a location from [`fresh_database`].
pub fn database_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}
