//! `GET /metrics`: every counter and gauge of the process in the Prometheus text format,
//! read at scrape time from the blocks each thread writes (the reactors' summed here).
//! docs/api.md lists the families.

use super::{Context, Reply};
use crate::gateway::metrics::{Refusal, CLOSE_REASONS, TLS_RESULTS};
use crate::metrics::{Kind, PrometheusText};

/// The page, or only the process's own lines before the server is up.
pub fn metrics(context: &Context) -> Reply {
    let mut text = PrometheusText::default();
    let readiness = &context.readiness;
    text.gauge(
        "switchboard_ready",
        "1 when /readyz answers 200.",
        u64::from(readiness.is_ready()),
    );
    text.gauge(
        "switchboard_draining",
        "1 once a drain has started.",
        u64::from(readiness.is_draining()),
    );
    text.gauge(
        "switchboard_uptime_seconds",
        "Seconds since the admin listener started.",
        context.started.elapsed().as_secs(),
    );
    api_families(context, &mut text);
    if let Some(sources) = context.sources.get() {
        gateway_families(sources, &mut text);
        core_families(context, sources, &mut text);
    }
    Reply {
        status: 200,
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        body: text.finish(),
        challenge: false,
    }
}

/// `name="value"` pairs for a labelled family.
fn labelled<'a>(
    label: &str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> Vec<(String, u64)> {
    values
        .into_iter()
        .map(|(value, count)| (format!("{label}=\"{value}\""), count))
        .collect()
}

fn family(
    text: &mut PrometheusText,
    name: &str,
    help: &str,
    kind: Kind,
    samples: &[(String, u64)],
) {
    let samples: Vec<(&str, u64)> = samples.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    text.family(name, help, kind, &samples);
}

fn api_families(context: &Context, text: &mut PrometheusText) {
    let calls = context.api_calls.snapshot();
    family(
        text,
        "switchboard_api_requests_total",
        "Backend API requests by answer (ok, or the error code).",
        Kind::Counter,
        &labelled("result", calls),
    );
}

fn gateway_families(sources: &super::Sources, text: &mut PrometheusText) {
    let gateway = &sources.gateway;
    let totals = gateway.totals();
    text.gauge(
        "switchboard_connections_open",
        "Client connections open now.",
        gateway.open_connections() as u64,
    );
    family(
        text,
        "switchboard_connections_accepted_total",
        "Client connections admitted, by transport.",
        Kind::Counter,
        &labelled(
            "transport",
            [("tcp", totals.accepted[0]), ("ws", totals.accepted[1])],
        ),
    );
    let open = gateway.open_connections() as u64;
    let tls = gateway.tls();
    family(
        text,
        "switchboard_connections_open_by_tls",
        "Client connections open now, by whether they speak TLS (both listeners do, or neither).",
        Kind::Gauge,
        &labelled(
            "tls",
            [
                ("true", if tls { open } else { 0 }),
                ("false", if tls { 0 } else { open }),
            ],
        ),
    );
    family(
        text,
        "switchboard_tls_handshakes_total",
        "TLS handshakes by result (failed: a TLS error, the handshake timeout, or the client's end of stream or reset during its handshake).",
        Kind::Counter,
        &labelled(
            "result",
            [
                (TLS_RESULTS[0], totals.tls_handshakes[0]),
                (TLS_RESULTS[1], totals.tls_handshakes[1]),
            ],
        ),
    );
    text.counter(
        "switchboard_websocket_handshakes_total",
        "WebSocket upgrades completed.",
        totals.handshakes,
    );
    text.counter(
        "switchboard_messages_in_total",
        "Whole messages (packets) read from clients.",
        totals.messages_in,
    );
    text.counter(
        "switchboard_bytes_in_total",
        "Bytes read from client sockets.",
        totals.bytes_in,
    );
    text.counter(
        "switchboard_messages_out_total",
        "Messages queued for clients.",
        totals.messages_out,
    );
    text.counter(
        "switchboard_bytes_out_total",
        "Bytes written to client sockets.",
        totals.bytes_out,
    );
    let closes = CLOSE_REASONS.iter().copied().zip(totals.closes);
    family(
        text,
        "switchboard_closes_total",
        "Connections closed, by reason.",
        Kind::Counter,
        &labelled("reason", closes),
    );
    let slow = [
        ("write_queue", totals.closes[3]),
        ("inbox_overflow", totals.inbox_overflow_closes),
    ];
    family(
        text,
        "switchboard_slow_consumer_closes_total",
        "Connections closed as slow consumers: over the write-queue cap or the process's \
         queued-bytes budget (write_queue), or their pushes overflowing a reactor's inbox.",
        Kind::Counter,
        &labelled("cause", slow),
    );
    text.counter(
        "switchboard_recv_buffers_empty_total",
        "io_uring: receives that found their reactor's buffer ring empty (ENOBUFS); the bytes \
         waited in the socket until buffers came back. Always 0 on epoll.",
        totals.recv_buffers_empty,
    );
    text.counter(
        "switchboard_queued_bytes_budget_closes_total",
        "Of the write_queue slow-consumer closes, those made for --max-queued-bytes.",
        gateway.budget_closes(),
    );
    text.gauge(
        "switchboard_syn_blocked_sources",
        "Sources (IPv4 addresses, IPv6 /64s) whose SYNs the listeners drop now: they kept going \
         over the per-IP limits (--syn-filter).",
        gateway.syn_blocked_sources(),
    );
    text.counter(
        "switchboard_syn_blocks_total",
        "Blocks given to sources that kept going over the per-IP limits (--syn-filter).",
        gateway.syn_blocks(),
    );
    let refusals = Refusal::ALL.iter().map(|r| r.label()).zip(totals.refusals);
    family(
        text,
        "switchboard_refusals_total",
        "Connections refused before the application saw them, by reason.",
        Kind::Counter,
        &labelled("reason", refusals),
    );
    text.histogram(
        "switchboard_reactor_loop_seconds",
        "Time of one pass of a reactor's event loop, waiting excluded.",
        &totals.loop_seconds,
    );
    text.gauge(
        "switchboard_queued_bytes",
        "Bytes queued for writing to clients, all reactors (as of their last pass).",
        gateway.queued_bytes() as u64,
    );
    let inboxes: Vec<(String, u64)> = gateway
        .inbox_bytes()
        .into_iter()
        .enumerate()
        .map(|(index, bytes)| (format!("reactor=\"{index}\""), bytes as u64))
        .collect();
    family(
        text,
        "switchboard_reactor_inbox_bytes",
        "Bytes of pushes waiting in each reactor's inbox.",
        Kind::Gauge,
        &inboxes,
    );
}

fn core_families(context: &Context, sources: &super::Sources, text: &mut PrometheusText) {
    let core_queue = context.core().map_or(0, |queue| queue.queued_bytes());
    text.gauge(
        "switchboard_core_queue_bytes",
        "Bytes of events waiting for the logic core.",
        core_queue as u64,
    );
    let logic = &sources.logic;
    let counters = [
        (
            "switchboard_logins_total",
            "Successful LOGINs.",
            &logic.logins,
        ),
        (
            "switchboard_logins_replacing_total",
            "LOGINs that replaced an older connection of the same device kind.",
            &logic.logins_replacing,
        ),
        (
            "switchboard_logins_refused_total",
            "LOGINs refused (invalid or expired token).",
            &logic.logins_refused,
        ),
        (
            "switchboard_login_timeouts_total",
            "Connections closed for not logging in within the login timeout.",
            &logic.login_timeouts,
        ),
        (
            "switchboard_messages_accepted_total",
            "Messages taken by the store to commit (clients' and the backend's).",
            &logic.messages_accepted,
        ),
        (
            "switchboard_sends_repeated_total",
            "Sends answered from the dedupe window (a repeated client_msg_id or API key).",
            &logic.sends_repeated,
        ),
        (
            "switchboard_sends_busy_total",
            "Sends refused because the store's queue was full.",
            &logic.sends_busy,
        ),
        (
            "switchboard_pushes_total",
            "Message pushes to connections.",
            &logic.pushes,
        ),
        (
            "switchboard_backend_calls_total",
            "Backend API calls the logic core handled.",
            &logic.backend_calls,
        ),
    ];
    for (name, help, counter) in counters {
        text.counter(name, help, counter.get());
    }
    text.gauge(
        "switchboard_sessions",
        "Connections the logic core knows (logged in or not yet).",
        logic.connections.get(),
    );
    text.gauge(
        "switchboard_online_users",
        "Users with a device online.",
        logic.online_users.get(),
    );
    text.gauge(
        "switchboard_store_requests_in_flight",
        "Store requests submitted and not yet completed.",
        logic.store_requests_in_flight.get(),
    );
    let store = &sources.store;
    text.histogram(
        "switchboard_store_commit_seconds",
        "Time of one store transaction, BEGIN to the end of COMMIT.",
        &store.commit_seconds.snapshot(),
    );
    text.histogram(
        "switchboard_store_batch_requests",
        "Requests committed in one transaction.",
        &store.batch_requests.snapshot(),
    );
    text.counter(
        "switchboard_store_batches_failed_total",
        "Store transactions that failed as a whole.",
        store.batches_failed.get(),
    );
    text.gauge(
        "switchboard_store_queued_requests",
        "Requests waiting for the store thread when it took its last batch.",
        store.queued_requests.get(),
    );
    text.histogram(
        "switchboard_store_checkpoint_seconds",
        "Time of one WAL checkpoint run by the SQLite checkpoint thread, beside the commits.",
        &store.checkpoint_seconds.snapshot(),
    );
    text.histogram(
        "switchboard_store_checkpoint_writeback_seconds",
        "Time the SQLite checkpoint thread spent writing out one pass's pages, slice by slice.",
        &store.checkpoint_writeback_seconds.snapshot(),
    );
    text.histogram(
        "switchboard_store_thread_checkpoint_seconds",
        "Time of one WAL checkpoint the SQLite store thread ran itself (finishing the log).",
        &store.store_thread_checkpoint_seconds.snapshot(),
    );
}
