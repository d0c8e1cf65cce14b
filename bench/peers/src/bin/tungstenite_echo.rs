//! Echo server on tokio + tokio-tungstenite, as that crate's users write one: accept loop,
//! `accept_async` per connection in its own task, the stream split and every text or binary
//! message forwarded back unchanged (pings are answered and closes echoed by tungstenite itself).
//! Default WebSocket configuration: measuring the crate as shipped is the point.

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};

async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(echo(stream));
    }
}

async fn echo(stream: TcpStream) {
    // Latency-minded users turn Nagle off; Switchboard does too, so p99 compares servers.
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (sink, source) = ws.split();
    let data_only =
        source.try_filter(|message| future::ready(message.is_text() || message.is_binary()));
    // An error here is the peer's doing (reset, protocol violation); the task just ends.
    let _ = data_only.forward(sink).await;
}

fn main() {
    switchboard_peers::run("tungstenite_echo", serve);
}
