//! Echo server on fastwebsockets behind a tokio + hyper HTTP/1 upgrade, as its README shows:
//! hyper serves each connection with upgrades on, the handler answers the upgrade and spawns the
//! WebSocket task, a FragmentCollector hands it whole messages, auto-pong and auto-close on.
//! Text and binary messages go back unchanged in one frame.

use fastwebsockets::upgrade::{upgrade, UpgradeFut};
use fastwebsockets::{FragmentCollector, Frame, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // Latency-minded users turn Nagle off; Switchboard does too, so p99 compares servers.
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer_upgrade))
                .with_upgrades();
            let _ = connection.await;
        });
    }
}

async fn answer_upgrade(
    mut request: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, websocket) = upgrade(&mut request)?;
    tokio::spawn(async move {
        // Errors are the peer's doing (reset, protocol violation); the task just ends.
        let _ = echo(websocket).await;
    });
    Ok(response)
}

async fn echo(websocket: UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = websocket.await?;
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => {
                ws.write_frame(Frame::new(true, frame.opcode, None, frame.payload))
                    .await?;
            }
            _ => {}
        }
    }
}

fn main() {
    switchboard_peers::run("fastwebsockets_echo", serve);
}
