//! `switchboard echo`: the gateway with the echo handler, until a drain ends it.

use std::process::ExitCode;

use tracing::{error, info};

use super::lifecycle::{activated, drain_requests, serve_handover, take_over};
use super::{EchoArgs, DEFAULT_TCP, DEFAULT_WS};
use crate::admin::DrainCause;
use crate::echo::EchoHandler;
use crate::gateway::Gateway;
use crate::handover::{OfferSources, Offering};

pub(super) fn run_echo(args: EchoArgs) -> ExitCode {
    let mut config = match args.gateway.to_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("switchboard echo: {e}");
            return ExitCode::from(2);
        }
    };
    config.max_message = args.max_message;
    config.message_limit = args.message_limit();
    if config.tcp.is_none() && config.ws.is_none() {
        config.ws = Some(DEFAULT_WS);
        config.tcp = Some(DEFAULT_TCP);
    }
    // Echo serves any WebSocket client, so text messages are echoed rather than refused.
    config.ws_text = true;
    let tls = config.tls.clone();
    let drain = match drain_requests(tls.clone()) {
        Ok(drain) => drain,
        Err(e) => {
            eprintln!("switchboard: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let plan = (args.gateway.drain_grace, args.gateway.drain_period);
    let mut taken = match take_over(args.process.handover.as_deref()) {
        Ok(taken) => taken,
        Err(code) => return code,
    };
    let listeners = match taken.as_mut() {
        Some(taken) => Some(std::mem::take(&mut taken.listeners)),
        None => {
            let wanted = crate::socket_activation::Wanted {
                tcp: config.tcp,
                ws: config.ws,
                admin: None,
                has_admin: false,
            };
            match activated(wanted, config.workers) {
                Ok(passed) => passed.map(|(listeners, _)| listeners),
                Err(code) => return code,
            }
        }
    };
    let gateway = match Gateway::start_on(config, listeners, |_, _| EchoHandler) {
        Ok(gateway) => gateway,
        Err(e) => {
            eprintln!("switchboard: cannot start the gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let offering = Offering::new(OfferSources {
        gateway: gateway.listener_copies(),
        admin: None,
        core: None,
    });
    let (ws, tcp) = if tls.is_some() {
        ("wss", " (TLS)")
    } else {
        ("ws", "")
    };
    if let Some(addr) = gateway.ws_addr() {
        println!("switchboard echo: WebSocket on {ws}://{addr}/");
    }
    if let Some(addr) = gateway.tcp_addr() {
        println!("switchboard echo: framed TCP on {addr}{tcp}");
    }
    if let Some(path) = &args.process.handover {
        if let Err(code) = serve_handover(path, offering.clone(), &drain.0, taken) {
            return code;
        }
    }
    let Ok(cause) = drain.1.recv() else {
        error!("the drain requests ended unexpectedly");
        return ExitCode::FAILURE;
    };
    let (grace, period) = plan;
    info!(
        ?cause,
        ?grace,
        ?period,
        "draining: listeners close after the grace"
    );
    offering.close();
    if cause != DrainCause::Handover {
        std::thread::sleep(grace);
    }
    gateway.handle().drain(period);
    gateway.join();
    info!("drained; exiting");
    ExitCode::SUCCESS
}
