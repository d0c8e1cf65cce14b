//! The SYN filter over real loopback sockets (issues #10 and #12): a source that keeps
//! connecting past its per-IP connect rate is blocked in the kernel (its connects go
//! unanswered), another source connects at once throughout, the blocked source's open
//! connection keeps working (only bare SYNs are dropped), and after the penalty the source
//! connects again. `tests/syn_filter_uring.rs` runs the same on io_uring.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use switchboard::gateway::{GatewayConfig, PerIpLimit, SynFilterConfig};

use common::{configure, test_config, wait_until, TcpClient, TestGateway};

const FLOODER: [u8; 4] = [127, 0, 0, 3];
const BYSTANDER: [u8; 4] = [127, 0, 0, 4];
/// A connect not answered within this time counts as dropped (a SYN's first retransmit is
/// at 1 s; a served connect on loopback takes well under a millisecond).
const UNANSWERED: Duration = Duration::from_millis(300);
const PENALTY: Duration = Duration::from_secs(3);

fn config(enabled: bool) -> GatewayConfig {
    GatewayConfig {
        per_ip: PerIpLimit {
            max_conns: 0,
            connect_burst: 5,
            connect_per_second: 2,
        },
        syn_filter: SynFilterConfig {
            enabled,
            penalty: PENALTY,
            exempt: None,
        },
        ..test_config()
    }
}

/// A connect from the loopback address `from`: the stream, or `None` when the kernel did not
/// answer within [`UNANSWERED`].
fn try_connect(from: [u8; 4], addr: SocketAddr) -> Option<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((from, 0)).into())
        .expect("bind the client's address");
    match socket.connect_timeout(&addr.into(), UNANSWERED) {
        Ok(()) => {
            let stream: TcpStream = socket.into();
            configure(&stream);
            Some(stream)
        }
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => None,
        Err(e) => panic!("connect from {from:?}: {e}"),
    }
}

/// A connection from `from` that is accepted and served: one packet echoed.
fn served(from: [u8; 4], addr: SocketAddr) -> bool {
    let Some(stream) = try_connect(from, addr) else {
        return false;
    };
    let mut client = TcpClient::from_stream(stream);
    client.echo(7, b"knock");
    true
}

/// Connects from `from` as fast as it can until one goes unanswered; the attempts it took,
/// or `None` if every attempt within 3 s was answered (accepted, and closed by the limits).
/// Time, not a count, bounds it: the kernel completes handshakes on its own, so a slow
/// reactor may find hundreds of them queued before it refuses the twentieth.
fn flood_until_unanswered(from: [u8; 4], addr: SocketAddr) -> Option<usize> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut attempts = 0;
    while Instant::now() < deadline {
        attempts += 1;
        if try_connect(from, addr).is_none() {
            return Some(attempts);
        }
    }
    None
}

#[test]
fn a_source_over_its_connect_rate_loses_its_syns_until_the_penalty_ends() {
    let gateway = TestGateway::echo(config(true));
    let addr = gateway.tcp_addr();
    let mut open = TcpClient::from_stream(try_connect(FLOODER, addr).expect("first connect"));
    open.echo(7, b"before");

    let attempts = flood_until_unanswered(FLOODER, addr);
    let attempts = attempts.unwrap_or_else(|| {
        panic!(
            "the flooder was never blocked: every connect was accepted ({} blocks, refusals {:?})",
            gateway.probe().syn_blocks(),
            gateway.refusals()
        )
    });
    assert!(attempts > 20, "blocked after {attempts} connects: too soon");
    let blocked_at = Instant::now();
    let probe = gateway.probe();
    assert_eq!(probe.syn_blocked_sources(), 1);
    assert_eq!(probe.syn_blocks(), 1);

    // Every reactor's listener gets the program at once (they are woken for it); a connect
    // that landed on one still to take it is answered and refused at accept, so two in a row
    // unanswered, not every one, is what can be asked of a loaded machine.
    let mut unanswered_in_a_row = 0;
    for _ in 0..6 {
        match try_connect(FLOODER, addr) {
            None => unanswered_in_a_row += 1,
            Some(_) => unanswered_in_a_row = 0,
        }
        if unanswered_in_a_row == 2 {
            break;
        }
    }
    assert_eq!(
        unanswered_in_a_row, 2,
        "a blocked source's connects were answered"
    );
    assert!(served(BYSTANDER, addr), "another source was not served");
    open.echo(7, b"during the block");
    assert!(
        blocked_at.elapsed() < PENALTY,
        "the checks took longer than the penalty; the test proves nothing"
    );

    let released = wait_until(PENALTY * 3, || served(FLOODER, addr));
    assert!(released, "the source was never released");
    assert!(blocked_at.elapsed() >= PENALTY - UNANSWERED);
    assert!(wait_until(Duration::from_secs(1), || probe
        .syn_blocked_sources()
        == 0));
    open.echo(7, b"after");
}

#[test]
fn with_the_filter_off_the_flooder_is_refused_at_accept_only() {
    let gateway = TestGateway::echo(config(false));
    let addr = gateway.tcp_addr();
    for _ in 0..60 {
        assert!(try_connect(FLOODER, addr).is_some());
    }
    assert_eq!(gateway.probe().syn_blocks(), 0);
    assert!(served(BYSTANDER, addr));
}

#[test]
fn listeners_handed_over_lose_the_program_of_the_process_before() {
    // A listener as a process that blocked sources hands it over: here, a program dropping
    // every bare SYN.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let drop_every_syn = [
        socket2::SockFilter::new(0x30, 0, 0, 13),   // A = TCP flags
        socket2::SockFilter::new(0x54, 0, 0, 0x12), // A &= SYN | ACK
        socket2::SockFilter::new(0x15, 0, 1, 0x02), // bare SYN?
        socket2::SockFilter::new(0x06, 0, 0, 0),    // drop
        socket2::SockFilter::new(0x06, 0, 0, u32::MAX), // pass
    ];
    socket2::SockRef::from(&listener)
        .attach_filter(&drop_every_syn)
        .expect("attach");
    let addr = listener.local_addr().unwrap();
    assert!(
        try_connect(BYSTANDER, addr).is_none(),
        "the program drops SYNs"
    );
    let taken = switchboard::gateway::Listeners {
        tcp: vec![listener],
        ws: Vec::new(),
    };
    let config = GatewayConfig {
        tcp: Some(addr),
        ws: None,
        ..config(true)
    };
    let gateway = switchboard::gateway::Gateway::start_on(config, Some(taken), |_, _| {
        switchboard::echo::EchoHandler
    })
    .expect("gateway starts on the listener");
    let served_now = served(BYSTANDER, addr);
    gateway.shutdown();
    assert!(served_now, "the old program still drops SYNs");
}
