//! The application's own requests (`Client::request`): queued while the session is not live,
//! sent in order once it is, and each answered exactly once, by the server, by a refusal to
//! encode, or by its deadline, whatever happens to the connection.

use std::time::Instant;

use bytes::BytesMut;
use crossbeam_channel::Sender;
use switchboard_protocol::{Command as ProtoCommand, Request, ResponseBody};

use super::{Flow, InFlight, Phase, QueuedRequest, Session};
use crate::error::{RequestError, StopReason};

#[derive(Debug)]
pub(super) struct AppRequest {
    pub(super) command: ProtoCommand,
    pub(super) reply: Sender<Result<ResponseBody, RequestError>>,
    pub(super) deadline: Instant,
}

impl Session {
    pub(super) fn on_app_request(
        &mut self,
        request: Request,
        reply: Sender<Result<ResponseBody, RequestError>>,
        deadline: Instant,
        now: Instant,
    ) -> Flow {
        match self.phase {
            Phase::Live => {
                self.send_app(request, reply, deadline, now);
                Flow::Continue
            }
            // Logged out already, in effect: nothing to tell the server.
            _ if request == Request::Logout => {
                let _ = reply.send(Ok(ResponseBody::Logout));
                Flow::Stop(StopReason::Closed)
            }
            _ => {
                if let Err(error) = request.encode(0, &mut BytesMut::new()) {
                    let _ = reply.send(Err(RequestError::Invalid(error)));
                } else {
                    self.queued.push_back(QueuedRequest {
                        request,
                        reply,
                        deadline,
                    });
                }
                Flow::Continue
            }
        }
    }

    pub(super) fn send_app(
        &mut self,
        request: Request,
        reply: Sender<Result<ResponseBody, RequestError>>,
        deadline: Instant,
        now: Instant,
    ) {
        match self.wire.send(&request, now) {
            Ok(seq) => {
                let app = AppRequest {
                    command: request.command(),
                    reply,
                    deadline,
                };
                self.in_flight.insert(seq, InFlight::App(app));
            }
            Err(error) => {
                let _ = reply.send(Err(RequestError::Invalid(error)));
            }
        }
    }

    pub(super) fn app_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        let queued = self.queued.iter().map(|app| app.deadline);
        let sent = self.in_flight.values().filter_map(|f| match f {
            InFlight::App(app) => Some(app.deadline),
            _ => None,
        });
        queued.chain(sent)
    }

    pub(super) fn expire_app_requests(&mut self, now: Instant) {
        let timeout = RequestError::Timeout(self.config.request_timeout);
        self.queued.retain(|app| {
            let keep = app.deadline > now;
            if !keep {
                let _ = app.reply.send(Err(timeout.clone()));
            }
            keep
        });
        self.in_flight.retain(|_, in_flight| match in_flight {
            InFlight::App(app) if app.deadline <= now => {
                let _ = app.reply.send(Err(timeout.clone()));
                false
            }
            _ => true,
        });
    }
}
