//! The backend API: `/api/v1/...` on the admin listener, JSON in and out, for the
//! application's own servers (docs/api.md).
//!
//! Order of checks, so a refused request does nothing: the API must be on (a token
//! configured, else 403), the bearer token must match (else 401), the route must exist (404),
//! the body must fit (413) and parse (400); only then is the logic core asked, through its
//! queue (503 if full), and the answer awaited on this admin thread (504 past
//! [`CALL_TIMEOUT`]), never on a reactor. Every refusal is logged with the peer.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use switchboard_protocol::{Status, Target, Text};
use tracing::{info, warn};

use super::{Context, Head, Reply};
use crate::logic::backend::{BackendAnswer, BackendCall, BackendRequest};
use crate::logic::token::{is_valid_device, is_valid_user_id};
use crate::logic::Inbound;

/// How long an API call waits for the logic core (a send: for the store's commit).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest idempotency key, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// A refused call: its status, a stable code and a sentence for humans.
#[derive(Debug)]
pub struct ApiError {
    status: u16,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with its status, code and message.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400, `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "bad_request", message)
    }

    /// 500, `internal`.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "internal", message)
    }

    /// 413, `body_too_large`.
    pub fn body_too_large(limit: usize) -> ApiError {
        ApiError::new(
            413,
            "body_too_large",
            format!("the request body is over {limit} bytes"),
        )
    }
}

/// Calls by answer: "ok" or the error code. Several admin threads bump it, rarely: a mutex.
#[derive(Debug, Default)]
pub struct ApiCounters {
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

impl ApiCounters {
    fn count(&self, result: &'static str) {
        *self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(result)
            .or_default() += 1;
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

/// A call the checks let through, waiting for its body.
#[derive(Debug)]
pub enum Route {
    /// `POST /api/v1/messages`.
    Send,
    /// `POST /api/v1/users/{user}/kick`.
    Kick(String),
    /// `GET /api/v1/users/{user}/devices`.
    Devices(String),
    /// `GET /api/v1/stats`.
    Stats,
}

/// The checks made before the body is read: the API is on, the token matches, the call
/// exists.
pub fn check(context: &Context, head: &Head) -> Result<Route, ApiError> {
    authenticate(context, head)?;
    let segments: Vec<&str> = match head.path.strip_prefix("/api/v1/") {
        Some(rest) => rest.split('/').collect(),
        None => Vec::new(),
    };
    match (&head.method, segments.as_slice()) {
        (&Method::POST, ["messages"]) => Ok(Route::Send),
        (&Method::POST, ["users", user, "kick"]) => Ok(Route::Kick(path_user(user)?)),
        (&Method::GET, ["users", user, "devices"]) => Ok(Route::Devices(path_user(user)?)),
        (&Method::GET, ["stats"]) => Ok(Route::Stats),
        _ => Err(ApiError::new(
            404,
            "not_found",
            format!(
                "no API call {} {} (see docs/api.md)",
                head.method, head.path
            ),
        )),
    }
}

/// The API is on and the request carries its bearer token: 403 or 401 otherwise.
fn authenticate(context: &Context, head: &Head) -> Result<(), ApiError> {
    let Some(token) = &context.config.token else {
        return Err(ApiError::new(
            403,
            "api_disabled",
            "the backend API is off: start the server with --admin-token or \
             SWITCHBOARD_ADMIN_TOKEN",
        ));
    };
    if !authorized(head.authorization.as_deref(), token) {
        return Err(ApiError::new(
            401,
            "unauthorized",
            "missing or wrong bearer token (Authorization: Bearer TOKEN)",
        ));
    }
    Ok(())
}

/// `POST /admin/drain`: starts the drain a SIGTERM starts (202); `/readyz` turns 503 at
/// once. Asking again changes nothing and answers the same.
pub fn drain(context: &Context, head: &Head) -> Reply {
    if let Err(error) = authenticate(context, head) {
        return refused(context, head, error);
    }
    let Some(trigger) = context.drain.get() else {
        let error = ApiError::new(503, "unavailable", "the server is still starting");
        return refused(context, head, error);
    };
    context.readiness.set_draining();
    let _ = trigger.requests.send(super::DrainCause::Api);
    context.api_calls.count("ok");
    warn!(peer = %head.peer, "drain requested through the admin API");
    Reply::json(
        202,
        &json!({
            "draining": true,
            "grace_ms": trigger.grace.as_millis() as u64,
            "period_ms": trigger.period.as_millis() as u64,
        }),
    )
}

/// Runs a checked call with its body; waits for the logic core (a blocking thread).
pub fn run(context: &Context, route: Route, body: &[u8]) -> Result<Value, ApiError> {
    match route {
        Route::Send => send(context, parse(body)?.unwrap_or_default()),
        Route::Kick(user) => kick(context, user, parse(body)?.unwrap_or_default()),
        Route::Devices(user) => devices(context, user),
        Route::Stats => stats(context),
    }
}

/// The answer to a call that succeeded, counted and logged.
pub fn done(context: &Context, head: &Head, value: Value) -> Reply {
    context.api_calls.count("ok");
    info!(peer = %head.peer, method = %head.method, path = head.path, "backend API call");
    Reply::json(200, &value)
}

/// The answer to a refused call, counted and logged with the peer.
pub fn refused(context: &Context, head: &Head, error: ApiError) -> Reply {
    context.api_calls.count(error.code);
    warn!(
        peer = %head.peer, method = %head.method, path = head.path, status = error.status,
        error = error.code, detail = %error.message, "backend API call refused"
    );
    let body = json!({ "error": error.code, "message": error.message });
    let mut reply = Reply::json(error.status, &body);
    reply.challenge = error.status == 401;
    reply
}

/// Compares the `Authorization: Bearer` token with `token` in time independent of where they
/// differ (both hashed first, so their lengths do not show either).
fn authorized(authorization: Option<&str>, token: &str) -> bool {
    let Some(given) = authorization.and_then(|value| value.strip_prefix("Bearer ")) else {
        return false;
    };
    let (given, expected) = (Sha1::digest(given.trim()), Sha1::digest(token));
    given
        .iter()
        .zip(expected.iter())
        .fold(0u8, |diff, (a, b)| diff | (a ^ b))
        == 0
}

/// The body as JSON of the expected shape, `None` if it is empty.
fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| ApiError::new(400, "malformed_json", format!("the body is not valid: {e}")))
}

/// A user id from a path segment, percent-decoded and checked like a token's `sub`.
fn path_user(segment: &str) -> Result<String, ApiError> {
    let user = percent_decode(segment)
        .ok_or_else(|| ApiError::bad_request("the user id in the path is not valid UTF-8"))?;
    if !is_valid_user_id(&user) {
        return Err(ApiError::bad_request(
            "a user id is 1..=64 bytes without control characters",
        ));
    }
    Ok(user)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Asks the logic core and waits for its answer on this thread.
fn call(context: &Context, request: BackendRequest) -> Result<BackendAnswer, ApiError> {
    let shutting_down = || {
        ApiError::new(
            503,
            "unavailable",
            "the server is not serving (starting or draining)",
        )
    };
    let core = context.core().ok_or_else(shutting_down)?;
    let (reply, answer) = crossbeam_channel::bounded(1);
    let call = Inbound::Backend(Box::new(BackendCall { request, reply }));
    if core.try_send_one(call).is_err() {
        return Err(ApiError::new(
            503,
            "busy",
            "the logic core's queue is full; try again",
        ));
    }
    // Not held while waiting: a drain must be able to let the core go.
    drop(core);
    match answer.recv_timeout(CALL_TIMEOUT) {
        Ok(answer) => Ok(answer),
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(ApiError::new(
            504,
            "timeout",
            format!("no answer from the logic core within {CALL_TIMEOUT:?}; a send may still commit (repeat it with the same key)"),
        )),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(shutting_down()),
    }
}

fn unexpected(answer: BackendAnswer) -> ApiError {
    ApiError::internal(format!("unexpected answer {answer:?}"))
}

/// `POST /api/v1/messages`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    from: String,
    to: Option<String>,
    group_id: Option<GroupId>,
    body: Option<String>,
    body_base64: Option<String>,
    idempotency_key: String,
}

/// A group id as a JSON number or, since ids pass 2^53 (JavaScript's exact integers), a
/// decimal string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum GroupId {
    Number(u64),
    Text(String),
}

fn send(context: &Context, body: SendBody) -> Result<Value, ApiError> {
    if !is_valid_user_id(&body.from) {
        return Err(ApiError::bad_request(
            "`from` must be a user id: 1..=64 bytes without control characters",
        ));
    }
    let target = match (body.to, body.group_id) {
        (Some(to), None) if is_valid_user_id(&to) => Target::Direct(Text::from(to.as_str())),
        (Some(_), None) => return Err(ApiError::bad_request("`to` must be a user id")),
        (None, Some(GroupId::Number(id))) => Target::Group(id),
        (None, Some(GroupId::Text(id))) => Target::Group(id.parse().map_err(|_| {
            ApiError::bad_request("`group_id` must be a number or a decimal string")
        })?),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `to` (a user) and `group_id`",
            ))
        }
    };
    let message = match (body.body, body.body_base64) {
        (Some(text), None) => Bytes::from(text),
        (None, Some(encoded)) => {
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(encoded.as_bytes())
                .map_err(|e| ApiError::bad_request(format!("`body_base64` is not base64: {e}")))?;
            Bytes::from(raw)
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `body` (text) and `body_base64`",
            ))
        }
    };
    if message.len() > context.max_body {
        return Err(ApiError::new(
            413,
            "message_too_large",
            format!(
                "the message body is over --max-body ({} bytes)",
                context.max_body
            ),
        ));
    }
    let key = body.idempotency_key;
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(ApiError::bad_request(format!(
            "`idempotency_key` must be 1..={MAX_KEY_LEN} bytes"
        )));
    }
    let request = BackendRequest::Send {
        from: body.from,
        target,
        client_msg_id: client_msg_id(&key),
        body: message,
    };
    match call(context, request)? {
        BackendAnswer::Sent(ok) => Ok(json!({
            "msg_id": ok.msg_id.to_string(),
            "server_time_ms": ok.server_time_ms,
        })),
        BackendAnswer::Refused(status) => Err(refusal(status)),
        other => Err(unexpected(other)),
    }
}

/// The client_msg_id an idempotency key stands for: the first 8 bytes of its SHA-1, in the
/// sender's client_msg_id space, so the logic core's (sender, client_msg_id) dedupe and the
/// store's unique index make a repeated key one message.
pub fn client_msg_id(key: &str) -> u64 {
    let digest = Sha1::new()
        .chain_update(b"switchboard backend API idempotency key\0")
        .chain_update(key.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

fn refusal(status: Status) -> ApiError {
    match status {
        Status::TOO_LARGE => ApiError::new(
            413,
            "message_too_large",
            "the message body is over --max-body",
        ),
        Status::NOT_FOUND => ApiError::new(404, "group_not_found", "no such group"),
        Status::NOT_MEMBER => {
            ApiError::new(403, "not_member", "the sender is not a member of the group")
        }
        Status::BUSY => ApiError::new(
            503,
            "busy",
            "the store's queue is full; try again with the same key",
        ),
        other => ApiError::new(
            500,
            "internal",
            format!("the server failed the call ({other:?}); try again with the same key"),
        ),
    }
}

/// `POST /api/v1/users/{user}/kick`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KickBody {
    device: Option<String>,
}

fn kick(context: &Context, user: String, body: KickBody) -> Result<Value, ApiError> {
    if let Some(device) = &body.device {
        if !is_valid_device(device) {
            return Err(ApiError::bad_request(
                "`device` must be a device kind: 1..=32 bytes of [a-z0-9_-]",
            ));
        }
    }
    let request = BackendRequest::Kick {
        user: user.clone(),
        device: body.device,
    };
    match call(context, request)? {
        BackendAnswer::Kicked(devices) => Ok(json!({ "user": user, "kicked": devices })),
        other => Err(unexpected(other)),
    }
}

/// `GET /api/v1/users/{user}/devices`.
fn devices(context: &Context, user: String) -> Result<Value, ApiError> {
    let request = BackendRequest::Devices { user: user.clone() };
    match call(context, request)? {
        BackendAnswer::Devices(devices) => {
            let devices: Vec<Value> = devices
                .into_iter()
                .map(|d| json!({ "device": d.kind, "conn": d.conn.to_string() }))
                .collect();
            Ok(json!({ "user": user, "devices": devices }))
        }
        other => Err(unexpected(other)),
    }
}

/// `GET /api/v1/stats`.
fn stats(context: &Context) -> Result<Value, ApiError> {
    let core = match call(context, BackendRequest::Stats)? {
        BackendAnswer::Stats(stats) => stats,
        other => return Err(unexpected(other)),
    };
    let mut value = json!({
        "uptime_seconds": context.started.elapsed().as_secs(),
        "ready": context.readiness.is_ready(),
        "draining": context.readiness.is_draining(),
        "sessions": core.connections,
        "online_users": core.online_users,
        "groups": core.groups,
        "store_requests_in_flight": core.store_requests_in_flight,
        "dedupe_window": core.dedupe_window,
        "core_queue_bytes": context.core().map_or(0, |queue| queue.queued_bytes()),
    });
    if let Some(sources) = context.sources.get() {
        value["connections_open"] = json!(sources.gateway.open_connections());
        value["queued_bytes"] = json!(sources.gateway.queued_bytes());
        value["messages_accepted"] = json!(sources.logic.messages_accepted.get());
        value["logins"] = json!(sources.logic.logins.get());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_one_id_and_keys_differ() {
        assert_eq!(client_msg_id("order-42"), client_msg_id("order-42"));
        assert_ne!(client_msg_id("order-42"), client_msg_id("order-43"));
    }

    #[test]
    fn path_users_are_percent_decoded_and_checked() {
        assert_eq!(path_user("alice").unwrap(), "alice");
        assert_eq!(path_user("al%20ice").unwrap(), "al ice");
        assert!(path_user("%zz").is_err());
        assert!(path_user("%0a").is_err(), "a control character");
        assert!(path_user("").is_err());
    }
}
