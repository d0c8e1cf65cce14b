//! The operations surface of the real binary: `switchboard config` prints a file that
//! `--config` runs on unchanged, a value edited in that file takes effect, and
//! `--log-format json` writes one JSON object per log line.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::EchoProcess;
use common::TcpClient;

fn switchboard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
}

fn printed_defaults() -> String {
    let output = switchboard()
        .arg("config")
        .output()
        .expect("run switchboard");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[test]
fn echo_runs_on_the_printed_defaults_with_one_value_edited() {
    let defaults = printed_defaults();
    let edited = defaults.replace("\nmax-conns = 1000000\n", "\nmax-conns = 1\n");
    assert_ne!(edited, defaults, "the defaults set max-conns");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, edited).expect("write the config file");

    // The command line's loopback ports win over the file's (unset) listeners.
    let process = EchoProcess::spawn(&["--config", path.to_str().unwrap()]);
    let mut held = TcpClient::connect(process.tcp);
    held.echo(1, b"the one place");
    // Past the file's max-conns of one: accepted and closed without an answer.
    let mut extra = TcpClient::connect(process.tcp);
    extra.send_packet(1, b"let me in");
    let ending = extra.read_until_closed(Duration::from_secs(2));
    assert_eq!(ending.discarded, 0, "the second connection was served");
    held.echo(2, b"still served");
}

#[test]
fn json_log_lines_are_json_objects() {
    let mut child = switchboard()
        .args(["echo", "--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
        .args(["--log-format", "json", "--drain-timeout", "2s"])
        .args(["--drain-grace", "0s", "--drain-period", "0s"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchboard echo");
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    for line in stdout.lines() {
        if line
            .expect("stdout")
            .starts_with("switchboard echo: framed TCP on")
        {
            break;
        }
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("switchboard echo did not exit on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");

    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("stderr");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect();
    let draining = events
        .iter()
        .find(|event| {
            event["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("draining"))
        })
        .unwrap_or_else(|| panic!("no drain event in {stderr}"));
    assert_eq!(draining["level"], "INFO");
    assert_eq!(draining["fields"]["signal"], libc::SIGTERM);
    assert!(draining["timestamp"].is_string(), "{draining}");
}
