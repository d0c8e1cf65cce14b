//! The process's life around the gateway: where drain requests come from (signals, the
//! admin API, a successor), the handover to and from another process (`--handover`), and
//! the listening sockets systemd passes (socket activation).

use std::process::ExitCode;

use crossbeam_channel::{Receiver, Sender};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{error, info, warn};

use crate::admin::DrainCause;
use crate::gateway::{Listeners, TlsAcceptor};
use crate::handover::{Offering, TakenOver};

/// With `--handover PATH`: the sockets of the process listening there, if one does.
pub(super) fn take_over(path: Option<&std::path::Path>) -> Result<Option<TakenOver>, ExitCode> {
    let Some(path) = path else {
        return Ok(None);
    };
    match crate::handover::take_over(path) {
        Ok(taken) => Ok(taken),
        Err(e) => {
            eprintln!("switchboard: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// The sockets systemd passed, as `workers` reactors take them, and the admin listener's;
/// `None` when the process was not socket-activated. Not asked after a `--handover` took
/// sockets over: those are the ones to serve on.
pub(super) fn activated(
    wanted: crate::socket_activation::Wanted,
    workers: usize,
) -> Result<Option<(Listeners, Option<std::net::TcpListener>)>, ExitCode> {
    let activated = match crate::socket_activation::from_env(wanted) {
        Ok(Some(activated)) => activated,
        Ok(None) => return Ok(None),
        Err(e) => {
            eprintln!("switchboard: {e}");
            return Err(ExitCode::FAILURE);
        }
    };
    match activated.gateway_listeners(workers) {
        Ok(listeners) => {
            info!(
                tcp = activated.tcp.is_some(),
                ws = activated.ws.is_some(),
                admin = activated.admin.is_some(),
                "socket activation: serving on the sockets passed"
            );
            Ok(Some((listeners, activated.admin)))
        }
        Err(e) => {
            eprintln!("switchboard: socket activation: cannot copy a socket: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// The wait for the exit of the process this one took over from.
pub(super) type WaitForPredecessor = Box<dyn FnOnce() + Send>;

/// Listens on `path` for a process to hand over to (which then drains this one), and, if
/// this one took over from another, tells it to drain; returns the wait for its exit.
pub(super) fn serve_handover(
    path: &std::path::Path,
    offering: Offering,
    drain: &Sender<DrainCause>,
    taken: Option<TakenOver>,
) -> Result<Option<WaitForPredecessor>, ExitCode> {
    let drain = drain.clone();
    let withdrawing = offering.clone();
    let listening = crate::handover::listen(
        path,
        move || offering.offer(),
        move || withdrawing.withdraw(),
        move || {
            let _ = drain.send(DrainCause::Handover);
        },
    );
    if let Err(e) = listening {
        eprintln!("switchboard: {e}");
        return Err(ExitCode::FAILURE);
    }
    let Some(taken) = taken else {
        return Ok(None);
    };
    match taken.ready() {
        Ok(wait) => Ok(Some(Box::new(wait))),
        Err(e) => {
            eprintln!("switchboard: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Where drain requests arrive: the first SIGINT or SIGTERM (a thread waits for them), and
/// whoever else is given the sender (`POST /admin/drain`). A second signal exits at once.
/// SIGHUP, at any time, reads the TLS certificate and key of `tls` again.
pub(super) fn drain_requests(
    tls: Option<TlsAcceptor>,
) -> std::io::Result<(Sender<DrainCause>, Receiver<DrainCause>)> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let (requests, drain) = crossbeam_channel::unbounded();
    let from_signals = requests.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stops = signals.forever().filter(|&signal| {
                if signal == SIGHUP {
                    reload(tls.as_ref());
                }
                signal != SIGHUP
            });
            if let Some(signal) = stops.next() {
                info!(signal, "draining: signal received");
                let _ = from_signals.send(DrainCause::Signal);
            }
            if stops.next().is_some() {
                eprintln!("switchboard: second signal, exiting without draining");
                std::process::exit(130);
            }
        })?;
    Ok((requests, drain))
}

/// SIGHUP: new handshakes use the certificate the files hold now; a file that cannot be used
/// keeps the one in use (logged with the reason). Open connections are not touched.
fn reload(tls: Option<&TlsAcceptor>) {
    match tls {
        None => info!("SIGHUP: no TLS certificate to reload"),
        Some(tls) => match tls.reload() {
            Ok(()) => warn!("SIGHUP: TLS certificate reloaded; new handshakes use it"),
            Err(e) => error!(error = %e, "SIGHUP: TLS certificate not reloaded; the old one stays"),
        },
    }
}
