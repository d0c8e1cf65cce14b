//! `switchboard serve`: the chat server (gateway, logic core, store, admin listener) from its
//! options, on the sockets it binds, takes over (`--handover`) or is passed (systemd), until a
//! drain ends it.

use std::process::ExitCode;

use tracing::info;

use super::lifecycle::{activated, drain_requests, serve_handover, take_over};
use super::{ServeArgs, StoreLocation, DEFAULT_TCP, DEFAULT_WS, MIN_ADMIN_TOKEN};
use crate::admin::{DrainCause, DrainTrigger};

pub(super) fn run_serve(args: ServeArgs) -> ExitCode {
    let mut gateway = match args.gateway.to_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("switchboard serve: {e}");
            return ExitCode::from(2);
        }
    };
    if gateway.tcp.is_none() && gateway.ws.is_none() {
        gateway.ws = Some(DEFAULT_WS);
        gateway.tcp = Some(DEFAULT_TCP);
    }
    gateway.message_limit = args.request_limit();
    let secret = match args.jwt_secret.filter(|secret| !secret.is_empty()) {
        Some(secret) => secret.into_bytes(),
        None => match crate::serve::load_or_create_secret(&args.data) {
            Ok(secret) => secret,
            Err(e) => {
                eprintln!("switchboard serve: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let logic = crate::logic::LogicConfig {
        node_id: args.node_id,
        jwt_secret: secret,
        login_timeout: args.login_timeout,
        max_body: args.max_body,
        group_member_limit: args.group_member_limit,
        retention: args.retention,
        ping_limit: crate::logic::PingLimit {
            burst: args.gateway.control_burst,
            per_second: args.gateway.control_rate,
        },
        drain_reconnect_delay: args.drain_reconnect_delay,
        thread: args.logic_thread.parse().unwrap_or_default(),
        ..crate::logic::LogicConfig::default()
    };
    let store = crate::serve::StoreConfigPatch {
        retention: Some(args.retention),
        synchronous: Some(if args.synchronous == "normal" {
            crate::store::Synchronous::Normal
        } else {
            crate::store::Synchronous::Full
        }),
        commit_delay: Some(args.commit_delay),
        checkpoint_pages: Some(args.checkpoint_pages),
        postgres: match &args.store {
            StoreLocation::Sqlite => None,
            StoreLocation::Postgres(url) => Some(url.clone()),
        },
    };
    let token = args.admin_token.filter(|token| !token.is_empty());
    if token
        .as_ref()
        .is_some_and(|t| t.chars().count() < MIN_ADMIN_TOKEN)
    {
        eprintln!("switchboard serve: --admin-token must be at least {MIN_ADMIN_TOKEN} characters");
        return ExitCode::from(2);
    }
    let admin = args.admin.0.map(|addr| crate::admin::AdminConfig {
        addr,
        token,
        advertise: args.advertise.clone(),
        max_request_body: crate::admin::request_body_limit(args.max_body),
        io_timeout: crate::admin::IO_TIMEOUT,
    });
    let tls = gateway.tls.clone();
    let (drain_sender, drain) = match drain_requests(tls.clone()) {
        Ok(drain) => drain,
        Err(e) => {
            eprintln!("switchboard: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let data = args.data.clone();
    let mut taken = match take_over(args.process.handover.as_deref()) {
        Ok(taken) => taken,
        Err(code) => return code,
    };
    let mut logic = logic;
    if let Some(taken) = &taken {
        // Beside the old process until it exits: the other half of the id sequence, after
        // its last millisecond, and no group changes (docs/architecture.md, "Handover").
        logic.id_lane = taken.offer.kept_lane.other();
        logic.ids_after_unix_ms = Some(taken.offer.last_id_unix_ms);
        logic.groups_frozen = true;
    }
    let inherited = match taken.as_mut() {
        Some(t) => Some(crate::serve::Inherited {
            listeners: std::mem::take(&mut t.listeners),
            admin: t.admin.take(),
        }),
        None => {
            let wanted = crate::socket_activation::Wanted {
                tcp: gateway.tcp,
                ws: gateway.ws,
                admin: args.admin.0,
                has_admin: args.admin.0.is_some(),
            };
            match activated(wanted, gateway.workers) {
                Ok(passed) => {
                    passed.map(|(listeners, admin)| crate::serve::Inherited { listeners, admin })
                }
                Err(code) => return code,
            }
        }
    };
    let server = match crate::serve::ChatServer::start_inheriting(
        gateway, logic, data, store, admin, inherited,
    ) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("switchboard serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (ws, tcp) = if tls.is_some() {
        ("wss", " (TLS)")
    } else {
        ("ws", "")
    };
    if let Some(addr) = server.gateway().ws_addr() {
        println!("switchboard serve: WebSocket on {ws}://{addr}/");
    }
    if let Some(addr) = server.gateway().tcp_addr() {
        println!("switchboard serve: framed TCP on {addr}{tcp}");
    }
    if let Some(addr) = server.admin_addr() {
        println!("switchboard serve: admin on http://{addr}/");
    }
    if let StoreLocation::Postgres(url) = &args.store {
        println!(
            "switchboard serve: store {}",
            crate::store::postgres::redacted(url)
        );
    }
    println!(
        "switchboard serve: logic core {}",
        match server.logic_thread() {
            crate::logic::LogicThread::Reactor => "on the reactor's thread",
            _ => "on a thread of its own",
        }
    );
    println!("switchboard serve: data in {}", args.data.display());
    let (grace, period) = (args.gateway.drain_grace, args.gateway.drain_period);
    server.on_drain_request(DrainTrigger {
        requests: drain_sender.clone(),
        grace,
        period,
    });
    if let Some(path) = &args.process.handover {
        match serve_handover(path, server.offering(), &drain_sender, taken) {
            Ok(Some(wait)) => server.reload_groups_after(wait),
            Ok(None) => {}
            Err(code) => return code,
        }
    }
    drop(drain_sender);
    let Ok(cause) = drain.recv() else {
        return ExitCode::FAILURE;
    };
    info!(
        ?cause,
        ?grace,
        ?period,
        "draining: /readyz 503, listeners close after the grace"
    );
    server.drain(cause == DrainCause::Handover, grace, period);
    info!("drained; exiting");
    ExitCode::SUCCESS
}
