//! docs/api.md against the real binary: every `sh` example runs, in order, with `curl`
//! against a `switchboard serve` set up as the document says, and its output must match the
//! block that follows it: text exactly; JSON with the same keys and array lengths, the same
//! strings and booleans, and numbers (and the `msg_id` and `conn` ids) of the same type. An
//! example that drifts from the server fails here.

mod chat_common;

use std::process::Command;

use chat_common::process::ServeProcess;
use chat_common::{Transport, ADMIN_TOKEN};
use serde_json::Value;

/// Values that differ from run to run even as strings.
const VARYING: [&str; 2] = ["msg_id", "conn"];

/// The (info string, body) of every fenced block in `doc`, in order.
fn fenced_blocks(doc: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        blocks.push((info.trim().to_owned(), body.join("\n")));
    }
    blocks
}

fn same_shape(expected: &Value, actual: &Value, key: &str) -> Result<(), String> {
    let differ = || Err(format!("at `{key}`: expected {expected}, got {actual}"));
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let (mut ek, mut ak): (Vec<_>, Vec<_>) = (e.keys().collect(), a.keys().collect());
            ek.sort();
            ak.sort();
            if ek != ak {
                return differ();
            }
            e.iter().try_for_each(|(k, v)| same_shape(v, &a[k], k))
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            e.iter().zip(a).try_for_each(|(e, a)| same_shape(e, a, key))
        }
        (Value::Number(_), Value::Number(_)) => Ok(()),
        (Value::String(_), Value::String(_)) if VARYING.contains(&key) => Ok(()),
        _ if expected == actual => Ok(()),
        _ => differ(),
    }
}

#[test]
fn every_curl_example_runs_as_documented() {
    let curl = Command::new("curl").arg("--version").output();
    assert!(
        curl.is_ok_and(|o| o.status.success()),
        "curl is installed (.ci/run installs it)"
    );
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md"))
        .expect("docs/api.md");
    let data = tempfile::tempdir().expect("a data directory");
    let advertise = "ws://chat.example.com/,tcp://chat.example.com:9000";
    let server = ServeProcess::spawn_with_env(
        data.path(),
        &["--advertise", advertise],
        &[("SWITCHBOARD_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    let admin = server.admin.expect("an admin listener");
    // As the document says: alice and bob on a phone, and a group `team` of both.
    let mut alice = server.login(Transport::Tcp, "alice", Some("phone"));
    let _bob = server.login(Transport::Ws, "bob", Some("phone"));
    let group = alice.group_create("team", &["bob"]).expect("a group");

    let blocks = fenced_blocks(&doc);
    let mut ran = 0;
    for (index, (info, script)) in blocks.iter().enumerate() {
        if info != "sh" {
            continue;
        }
        let (kind, expected) = blocks
            .get(index + 1)
            .unwrap_or_else(|| panic!("an output block after:\n{script}"));
        let output = Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .env("ADMIN", admin.to_string())
            .env("TOKEN", ADMIN_TOKEN)
            .env("GROUP", group.to_string())
            .output()
            .expect("run bash");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{script}\nfailed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        match kind.as_str() {
            "json" => {
                let expected: Value = serde_json::from_str(expected)
                    .unwrap_or_else(|e| panic!("the documented answer is JSON ({e}): {expected}"));
                let actual: Value = serde_json::from_str(&stdout)
                    .unwrap_or_else(|e| panic!("{script}\nanswered non-JSON ({e}): {stdout}"));
                if let Err(difference) = same_shape(&expected, &actual, "") {
                    panic!("{script}\nanswered {actual}\n{difference}");
                }
            }
            "text" => assert_eq!(stdout.trim_end(), expected.trim_end(), "{script}"),
            other => panic!("the block after an example is json or text, not {other:?}"),
        }
        ran += 1;
    }
    // The drain (docs/api.md's last examples) ends the server's readiness.
    assert!(ran >= 16, "docs/api.md runs {ran} examples");
}

#[test]
fn shapes_are_compared_strictly_where_they_should_be() {
    let doc: Value = serde_json::json!({"msg_id": "1", "n": 1, "error": "busy", "l": [1]});
    let same = serde_json::json!({"msg_id": "2", "n": 9, "error": "busy", "l": [5]});
    assert!(same_shape(&doc, &same, "").is_ok());
    for different in [
        serde_json::json!({"msg_id": "2", "n": 9, "error": "timeout", "l": [5]}),
        serde_json::json!({"msg_id": "2", "n": 9, "error": "busy", "l": []}),
        serde_json::json!({"msg_id": "2", "n": 9, "error": "busy"}),
        serde_json::json!({"msg_id": 2, "n": 9, "error": "busy", "l": [5]}),
    ] {
        assert!(same_shape(&doc, &different, "").is_err(), "{different}");
    }
}
