//! The `loadtest` binary end to end: `--processes 2` against an in-process echo gateway on
//! 127.0.0.1, the workers' summaries merged into one `--json` file; and a bad target refused
//! before anything is dialed.

use std::process::Command;
use std::time::{Duration, Instant};

use switchboard::echo::EchoHandler;
use switchboard::gateway::{Gateway, GatewayConfig};

#[test]
fn two_worker_processes_merge_into_one_summary() {
    let config = GatewayConfig {
        ws: Some("127.0.0.1:0".parse().unwrap()),
        workers: 1,
        drain_timeout: Duration::from_secs(1),
        ..GatewayConfig::default()
    };
    let gateway = Gateway::start(config, |_, _| EchoHandler).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("summary.json");
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["echo", "--target"])
        .arg(format!("ws://{}/", gateway.ws_addr().unwrap()))
        .args(["--conns", "101", "--processes", "2", "--duration", "2s"])
        .args(["--rate", "1000", "--quiet", "--server-pid"])
        .arg(std::process::id().to_string())
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(summary["scenario"], "echo");
    assert_eq!(summary["connected"], 101);
    assert_eq!(summary["lost"], 0);
    assert_eq!(summary["sent"], summary["received"]);
    assert!(summary["received"].as_u64().unwrap() > 0);
    assert!(summary["latency_us"]["p99"].as_u64().unwrap() > 0);
    assert!(summary["server_rss_bytes"].as_u64().unwrap() > 0);
    gateway.shutdown();
}

#[test]
fn a_bad_target_is_refused_before_any_connection() {
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "idle",
            "--target",
            "http://127.0.0.1:1/",
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad target"), "{stderr}");
}
