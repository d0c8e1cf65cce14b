//! Many concurrent connections over real sockets: 5,000 clients, half framed TCP and half
//! WebSocket, all held open at once, each gets back exactly what it sent (not a neighbour's
//! bytes), and the gateway's count returns to zero when they leave.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_codec::ws::{Message, OpCode};

use common::{packet, raise_fd_limit, test_config, TcpClient, TestGateway, WsClient};

const CONNECTIONS: usize = 5_000;
/// Client threads; each opens and drives its share one connection after another.
const THREADS: usize = 4;
/// How long any phase may take before the test gives up.
const PHASE: Duration = Duration::from_secs(30);

enum AnyClient {
    Tcp(TcpClient),
    Ws(WsClient),
}

/// The packet connection `index` sends: its index in the command and the payload.
fn message_of(index: usize) -> Vec<u8> {
    let tag = format!("connection {index}");
    packet(index as u16, tag.as_bytes())
}

#[test]
fn five_thousand_concurrent_connections_each_echo_their_own_messages() {
    // Each connection costs this process two descriptors: the client end and the gateway's.
    let limit = raise_fd_limit();
    assert!(
        limit >= (2 * CONNECTIONS + 256) as libc::rlim_t,
        "RLIMIT_NOFILE {limit} is too low for {CONNECTIONS} loopback connections"
    );
    let gateway = TestGateway::echo(test_config());
    let (tcp_addr, ws_addr) = (gateway.tcp_addr(), gateway.ws_addr());

    let (opened_tx, opened_rx) = mpsc::channel::<usize>();
    let (done_tx, done_rx) = mpsc::channel::<usize>();
    let mut go_senders = Vec::new();
    let mut leave_senders = Vec::new();
    let mut threads = Vec::new();
    for thread in 0..THREADS {
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (leave_tx, leave_rx) = mpsc::channel::<()>();
        go_senders.push(go_tx);
        leave_senders.push(leave_tx);
        let (opened_tx, done_tx) = (opened_tx.clone(), done_tx.clone());
        threads.push(std::thread::spawn(move || {
            let indices = (thread..CONNECTIONS).step_by(THREADS);
            let mut clients: Vec<(usize, AnyClient)> = indices
                .map(|index| {
                    let client = if index % 2 == 0 {
                        AnyClient::Tcp(TcpClient::connect(tcp_addr))
                    } else {
                        AnyClient::Ws(WsClient::connect(ws_addr))
                    };
                    (index, client)
                })
                .collect();
            opened_tx.send(clients.len()).unwrap();
            go_rx.recv_timeout(PHASE).expect("the go signal");
            // All sends first, then all reads: every connection has a message in flight at once.
            for (index, client) in &mut clients {
                let message = message_of(*index);
                match client {
                    AnyClient::Tcp(c) => c.send(&message),
                    AnyClient::Ws(c) => c.send_frame(OpCode::Binary, true, &message),
                }
            }
            for (index, client) in &mut clients {
                let message = message_of(*index);
                match client {
                    AnyClient::Tcp(c) => assert_eq!(&c.read_packet()[..], &message[..]),
                    AnyClient::Ws(c) => {
                        assert_eq!(c.read_message(), Message::Binary(Bytes::from(message)))
                    }
                }
            }
            done_tx.send(clients.len()).unwrap();
            leave_rx.recv_timeout(PHASE).expect("the leave signal");
            // Dropping the clients closes them.
        }));
    }
    drop((opened_tx, done_tx));

    let mut opened = 0;
    for _ in 0..THREADS {
        opened += opened_rx
            .recv_timeout(PHASE)
            .expect("a client thread opened its share");
    }
    assert_eq!(opened, CONNECTIONS);
    gateway.wait_for_open_connections(CONNECTIONS, Duration::from_secs(10));

    for go in &go_senders {
        go.send(()).unwrap();
    }
    let mut echoed = 0;
    for _ in 0..THREADS {
        echoed += done_rx
            .recv_timeout(PHASE)
            .expect("a client thread checked its echoes");
    }
    assert_eq!(echoed, CONNECTIONS);
    assert_eq!(gateway.open_connections(), CONNECTIONS, "all held at once");

    for leave in &leave_senders {
        leave.send(()).unwrap();
    }
    for thread in threads {
        thread.join().expect("client thread");
    }
    gateway.wait_for_open_connections(0, Duration::from_secs(10));
}
