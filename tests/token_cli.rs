//! `switchboard token` end to end: the binary prints one token that the verifier accepts, and
//! refuses to run without a secret.

use std::process::{Command, Output};

use switchboard::logic::token::{unix_now_secs, TokenVerifier, DEFAULT_DEVICE};

const SECRET: &str = "end-to-end secret";

fn switchboard(args: &[&str], env_secret: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.args(args).env_remove("SWITCHBOARD_JWT_SECRET");
    if let Some(secret) = env_secret {
        command.env("SWITCHBOARD_JWT_SECRET", secret);
    }
    command.output().expect("the switchboard binary runs")
}

/// The one line of stdout, checked to be exactly one line.
fn printed_token(output: &Output) -> &str {
    assert!(
        output.status.success(),
        "status {:?}, stderr {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = std::str::from_utf8(&output.stdout).expect("stdout is UTF-8");
    let token = stdout
        .strip_suffix('\n')
        .expect("stdout ends with a newline");
    assert!(!token.contains('\n'), "more than one line: {stdout:?}");
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token:?}");
    token
}

#[test]
fn prints_a_token_the_verifier_accepts() {
    let output = switchboard(
        &[
            "token",
            "--user",
            "alice",
            "--device",
            "phone",
            "--jwt-secret",
            SECRET,
        ],
        None,
    );
    let identity = TokenVerifier::new(SECRET.as_bytes())
        .verify_now(printed_token(&output))
        .unwrap();
    assert_eq!(
        (identity.user.as_str(), identity.device.as_str()),
        ("alice", "phone")
    );
}

#[test]
fn takes_the_secret_from_the_environment_and_defaults_the_device() {
    let output = switchboard(&["token", "--user", "bob"], Some(SECRET));
    let identity = TokenVerifier::new(SECRET.as_bytes())
        .verify_now(printed_token(&output))
        .unwrap();
    assert_eq!(identity.user, "bob");
    assert_eq!(identity.device, DEFAULT_DEVICE);
    let other = TokenVerifier::new(b"not the secret").verify_now(printed_token(&output));
    assert!(other.is_err());
}

#[test]
fn ttl_sets_the_expiry() {
    let verifier = TokenVerifier::new(SECRET.as_bytes());
    for (args, ttl) in [
        (&["token", "--user", "carol", "--ttl", "90s"][..], 90),
        (&["token", "--user", "carol"][..], 3600),
    ] {
        // The token is issued at some second in before..=after, so it expires in
        // before + ttl..=after + ttl: valid one second before the first, expired at the last.
        let before = unix_now_secs();
        let output = switchboard(args, Some(SECRET));
        let after = unix_now_secs();
        let token = printed_token(&output);
        assert!(verifier.verify(token, before + ttl - 1).is_ok(), "{args:?}");
        let refused = verifier.verify(token, after + ttl).unwrap_err();
        assert!(refused.is_expired(), "{args:?}: {refused:?}");
    }
}

#[test]
fn refuses_to_run_without_a_secret() {
    for env_secret in [None, Some("")] {
        let output = switchboard(&["token", "--user", "alice"], env_secret);
        assert_eq!(output.status.code(), Some(2), "{env_secret:?}");
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("no JWT secret")
                && stderr.contains("--jwt-secret")
                && stderr.contains("SWITCHBOARD_JWT_SECRET"),
            "{stderr}"
        );
    }
}

#[test]
fn refuses_a_bad_user_or_device() {
    for args in [
        &["token", "--user", "", "--jwt-secret", SECRET][..],
        &[
            "token",
            "--user",
            "alice",
            "--device",
            "Phone!",
            "--jwt-secret",
            SECRET,
        ][..],
    ] {
        let output = switchboard(args, None);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty());
        assert!(String::from_utf8_lossy(&output.stderr).starts_with("switchboard token: "));
    }
}
