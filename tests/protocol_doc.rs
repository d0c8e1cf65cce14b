//! docs/protocol.md against the real binary: every server setting the document gives a
//! default for names the command-line option that changes it, and every option it names
//! exists (in `switchboard serve --help` or, for minting test tokens, `switchboard token
//! --help`). A client author reads the document, not our code, so a setting without its name
//! there is a setting nobody can find.

use std::process::Command;

fn protocol_doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md");
    std::fs::read_to_string(path).expect("docs/protocol.md")
}

fn help(subcommand: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([subcommand, "--help"])
        .output()
        .expect("run switchboard --help");
    assert!(output.status.success(), "{subcommand} --help failed");
    String::from_utf8(output.stdout).expect("UTF-8 help")
}

/// Every `--option` in `text`.
fn options(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("`--") {
        let tail = &rest[at + 1..];
        let end = tail[2..]
            .find(|c: char| !(c.is_ascii_lowercase() || c == '-'))
            .map_or(tail.len(), |n| n + 2);
        found.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    found
}

#[test]
fn every_option_the_protocol_names_exists() {
    let doc = protocol_doc();
    let known = format!("{}{}", help("serve"), help("token"));
    let named = options(&doc);
    for option in [
        "--max-packet",
        "--read-wait",
        "--login-timeout",
        "--max-body",
    ] {
        assert!(
            named.iter().any(|o| o == option),
            "docs/protocol.md names {option}"
        );
    }
    for option in &named {
        assert!(
            known.contains(&format!("{option} ")) || known.contains(&format!("{option}\n")),
            "docs/protocol.md names {option}, which `switchboard serve|token --help` lacks"
        );
    }
}

#[test]
fn every_default_in_the_limits_table_names_its_option() {
    let doc = protocol_doc();
    let limits = doc
        .split("## 11. Limits")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("section 11");
    let mut rows = 0;
    for row in limits.lines().filter(|l| l.contains("by default")) {
        rows += 1;
        assert!(
            !options(row).is_empty(),
            "a default without the option that sets it: {row}"
        );
    }
    assert!(
        rows >= 6,
        "the table lists the server's defaults ({rows} rows)"
    );
    assert!(
        !doc.contains("a server setting"),
        "\"a server setting\" without its option"
    );
}
