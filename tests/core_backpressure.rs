//! A logic core that falls behind, over real sockets: the reactor stops reading (the kernel's
//! flow control holds the flooding client back) but keeps delivering pushes and running its
//! timers, the queue to the core stays within its bytes, and once the core catches up every
//! packet the flooder sent arrives. The bridge is the chat server's own ([`ChatHandler`] over a
//! [`CoreQueue`]); the core is this test, which stops taking batches for a while.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use socket2::SockRef;
use switchboard::core_queue::CoreQueue;
use switchboard::gateway::{
    Admission, ConnId, ConnInfo, Disconnect, GatewayConfig, Handler, Message, Outbox, SocketOptions,
};
use switchboard::logic::Inbound;
use switchboard::serve::ChatHandler;
use switchboard_codec::ws::{self as ws, CloseCode};

use common::{
    connect, packet, read_until_closed, test_config, wait_until, TcpClient, TestGateway, WsClient,
};

/// The bound on the queue to the core.
const QUEUE_BYTES: usize = 256 << 10;
/// What the flooder sends: 16 MiB in 1 KiB packets.
const FLOOD_PACKETS: usize = 16 << 10;
const FLOOD_PAYLOAD: usize = 1 << 10;
/// The most the queue may hold: its bound, or one batch when empty (a handler hands over at
/// 256 KiB, plus what one connection's turn decoded: 64 KiB).
const QUEUE_CEILING: usize = QUEUE_BYTES + (256 << 10) + (64 << 10) + (16 << 10);
/// The most the flooder may get written while the core takes nothing: the socket buffers
/// (both set to 64 KiB below; the kernel doubles them), the queue, the handler's batch.
const WRITTEN_CEILING: usize = 4 << 20;

/// The heartbeat: the stall outlasts it, and connections whose input waits unread are not
/// silent.
const READ_WAIT: Duration = Duration::from_secs(2);

/// What the test's core saw.
#[derive(Default)]
struct Seen {
    opened: Vec<u64>,
    packets_from: Vec<(u64, usize)>,
}

impl Seen {
    fn packets(&self, conn: u64) -> usize {
        self.packets_from
            .iter()
            .find(|(c, _)| *c == conn)
            .map_or(0, |(_, n)| *n)
    }
}

#[test]
fn a_stalled_core_pauses_reading_while_pushes_and_timers_go_on_and_nothing_is_lost() {
    let config = GatewayConfig {
        workers: 1,
        handshake_timeout: Duration::from_secs(1),
        read_wait: READ_WAIT,
        socket: SocketOptions {
            recv_buffer: Some(64 << 10),
            ..test_config().socket
        },
        ..test_config()
    };
    let (queue, inbound) = CoreQueue::new(QUEUE_BYTES);
    let gateway = TestGateway::start(config, {
        let queue = queue.clone();
        move |reactor, _| ChatHandler::new(reactor, queue.clone())
    });
    queue.attach(gateway.handle());

    // The core: takes batches unless stalled; exits when the gateway's handlers are gone.
    let stalled = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let core = thread::spawn({
        let stalled = stalled.clone();
        let seen = seen.clone();
        move || loop {
            if Arc::strong_count(&seen) == 1 {
                return; // the test is over
            }
            if stalled.load(Ordering::Acquire) {
                thread::sleep(Duration::from_millis(5));
                continue;
            }
            let batch = match inbound.recv_timeout(Duration::from_millis(5)) {
                Ok(batch) => batch,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut seen = seen.lock().unwrap();
            for event in batch {
                match event {
                    Inbound::Opened(conn, _) => seen.opened.push(conn),
                    Inbound::Packet(conn, _) => {
                        match seen.packets_from.iter_mut().find(|(c, _)| *c == conn) {
                            Some((_, n)) => *n += 1,
                            None => seen.packets_from.push((conn, 1)),
                        }
                    }
                    _ => {}
                }
            }
        }
    });
    let opened = |n: usize| {
        wait_until(Duration::from_secs(5), || {
            seen.lock().unwrap().opened.len() == n
        })
    };

    let mut reader = TcpClient::connect(gateway.tcp_addr());
    assert!(opened(1));
    let reader_id = ConnId::from_u64(seen.lock().unwrap().opened[0]);
    let flooder = connect(gateway.tcp_addr());
    SockRef::from(&flooder)
        .set_send_buffer_size(64 << 10)
        .unwrap();
    assert!(opened(2));
    let flooder_id = seen.lock().unwrap().opened[1];
    // A WebSocket client that never sends its upgrade: only the handshake timer closes it.
    let mut silent = connect(gateway.ws_addr());
    gateway.wait_for_open_connections(3, Duration::from_secs(5));

    stalled.store(true, Ordering::Release);
    let written = Arc::new(AtomicUsize::new(0));
    let flood = thread::spawn({
        let written = written.clone();
        let mut flooder = flooder;
        flooder
            .set_write_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        move || {
            let one = packet(7, &vec![0x5a; FLOOD_PAYLOAD]);
            for _ in 0..FLOOD_PACKETS {
                flooder.write_all(&one).expect("the flood is written");
                written.fetch_add(one.len(), Ordering::AcqRel);
            }
            flooder
        }
    });

    // The flooder is held back: what it got written stops growing, well short of the flood.
    // (Unchanged over three looks 300 ms apart, so a flooder thread the scheduler merely
    // skipped for a moment is not taken for a held one.)
    let mut last = usize::MAX;
    let mut unchanged = 0;
    let held = wait_until(Duration::from_secs(30), || {
        thread::sleep(Duration::from_millis(300));
        let now = written.load(Ordering::Acquire);
        unchanged = if now == last { unchanged + 1 } else { 0 };
        last = now;
        unchanged >= 3
    });
    assert!(held, "the flooder was never held back");
    let flood_bytes = FLOOD_PACKETS * (FLOOD_PAYLOAD + 10);
    let held_at = written.load(Ordering::Acquire);
    assert!(
        held_at <= WRITTEN_CEILING && held_at < flood_bytes,
        "{held_at} bytes written while the core took nothing"
    );
    eprintln!(
        "held back at {held_at} of {flood_bytes} bytes written; {} bytes queued for the core",
        queue.queued_bytes()
    );
    assert!(
        queue.queued_bytes() <= QUEUE_CEILING,
        "the queue to the core holds {} bytes, over {QUEUE_CEILING}",
        queue.queued_bytes()
    );

    // Reading is paused now: the reader's request waits unread through the rest of the stall,
    // longer than the read-wait.
    let paused_at = Instant::now();
    reader.send_packet(9, b"during");

    // Pushes still flow while reading is paused.
    let handle = gateway.handle();
    for i in 0..50u16 {
        let push = packet(100 + i, &i.to_be_bytes());
        handle.push(reader_id, push.clone().into());
        assert_eq!(
            &reader.read_packet()[..],
            &push[..],
            "push {i} during the stall"
        );
    }
    // Timers still fire: the silent client is closed by its handshake timeout.
    let ending = read_until_closed(&mut silent, Duration::from_secs(5));
    assert_eq!(ending.discarded, 0, "nothing but the close");
    // All of that while the core took nothing and the flooder stayed held.
    assert!(stalled.load(Ordering::Acquire));
    assert_eq!(written.load(Ordering::Acquire), held_at);
    assert!(queue.queued_bytes() <= QUEUE_CEILING);
    assert!(seen.lock().unwrap().packets(flooder_id) * (FLOOD_PAYLOAD + 10) < held_at);

    // The stall outlasts the read-wait: input waiting unread is not silence.
    thread::sleep(
        (paused_at + READ_WAIT + Duration::from_millis(500))
            .saturating_duration_since(Instant::now()),
    );
    assert_eq!(written.load(Ordering::Acquire), held_at);
    gateway.wait_for_open_connections(2, Duration::from_secs(1));

    // The core catches up: the flood finishes and every packet of it arrives.
    stalled.store(false, Ordering::Release);
    let flooder = flood
        .join()
        .expect("the flooder finishes once the core catches up");
    let all = wait_until(Duration::from_secs(60), || {
        seen.lock().unwrap().packets(flooder_id) == FLOOD_PACKETS
    });
    assert!(
        all,
        "the core got {} of {FLOOD_PACKETS} packets",
        seen.lock().unwrap().packets(flooder_id)
    );
    assert_eq!(queue.queued_bytes(), 0);
    // Reading resumed for everyone: the reader's request sent during the stall, and one
    // after, reach the core.
    reader.send_packet(9, b"after");
    assert!(wait_until(Duration::from_secs(5), || {
        seen.lock().unwrap().packets(reader_id.as_u64()) == 2
    }));

    drop(flooder);
    drop(reader);
    drop(gateway);
    drop(queue);
    drop(seen);
    core.join().expect("the core thread ends");
}

/// Reports each connection it admits and, on any message, holds its reactor's thread for
/// [`HOLD`]: a reactor starved of CPU, as far as its inbox can tell. (It breaks the handler
/// contract on purpose, to stand for what no handler can prevent.)
struct Starved {
    opened: crossbeam_channel::Sender<ConnId>,
    holding: Arc<AtomicBool>,
}

const HOLD: Duration = Duration::from_millis(500);

impl Handler for Starved {
    fn open(&mut self, _out: &mut Outbox<'_>, conn: ConnId, _info: &ConnInfo<'_>) -> Admission {
        let _ = self.opened.send(conn);
        Admission::ACCEPT
    }

    fn message(&mut self, _out: &mut Outbox<'_>, _conn: ConnId, _message: Message) {
        self.holding.store(true, Ordering::Release);
        thread::sleep(HOLD);
        self.holding.store(false, Ordering::Release);
    }

    fn disconnect(&mut self, _out: &mut Outbox<'_>, _conn: ConnId, _reason: &Disconnect) {}
}

#[test]
fn pushes_that_overflow_a_reactors_inbox_close_their_connection_and_never_wait() {
    let config = GatewayConfig {
        workers: 1,
        inbox_bytes: 8 << 10,
        ..test_config()
    };
    let (opened, ids) = crossbeam_channel::unbounded();
    let holding = Arc::new(AtomicBool::new(false));
    let gateway = TestGateway::start(config, {
        let holding = holding.clone();
        move |_, _| Starved {
            opened: opened.clone(),
            holding: holding.clone(),
        }
    });
    let mut target = WsClient::connect(gateway.ws_addr());
    let target_id = ids.recv_timeout(Duration::from_secs(5)).unwrap();
    let mut staller = TcpClient::connect(gateway.tcp_addr());
    let staller_id = ids.recv_timeout(Duration::from_secs(5)).unwrap();
    staller.send_packet(1, b"hold");
    assert!(wait_until(Duration::from_secs(5), || holding.load(Ordering::Acquire)));

    // 100 KiB of pushes into an 8 KiB inbox while its reactor is held: none waits for it.
    let handle = gateway.handle();
    for i in 0..100u8 {
        handle.push(target_id, vec![i; 1 << 10].into());
    }
    assert!(
        holding.load(Ordering::Acquire),
        "the pushes waited for the reactor"
    );

    // The connection that lost pushes is closed first, with 1013, and gets nothing after
    // the gap.
    match target.read_message() {
        ws::Message::Close(frame) => {
            assert_eq!(frame.map(|f| f.code), Some(CloseCode::TRY_AGAIN_LATER))
        }
        ws::Message::Binary(payload) => {
            panic!("expected the close, got a {}-byte push", payload.len())
        }
        _ => panic!("expected the close, got a control frame"),
    }
    // Everyone else is served.
    let push = packet(2, b"still here");
    handle.push(staller_id, push.clone().into());
    assert_eq!(&staller.read_packet()[..], &push[..]);
}
