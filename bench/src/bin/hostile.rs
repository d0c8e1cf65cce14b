//! Hostile clients against a running server (issue #10), for `bench/hostile.sh`: one attack
//! per run, from `--conns` connections for at most `--duration`, then a one-line JSON summary
//! of how the server cut them (close codes, resets, ends of stream) and when. A benchmark
//! tool, not a test: it fails only when it cannot connect at all. Loopback only by intent
//! (`--target` is the one address dialed); every thread stops by itself at the deadline.
//!
//! Attacks:
//! - `ping-flood`: WebSocket pings with 125-byte payloads as fast as the socket takes them,
//!   pongs read on a second thread;
//! - `slow-readers`: a 4 KiB receive buffer, `--messages` binary messages of `--size` bytes
//!   sent, nothing ever read (the server echoes into a queue the client never drains);
//! - `pong-flood`: unsolicited WebSocket pongs as fast as the socket takes them;
//! - `ws-data-flood`: 125-byte binary messages as fast as the socket takes them, echoes read
//!   (legitimate-looking traffic, only too much of it: the WebSocket twin of
//!   `tcp-ping-flood`, and an attack every echo server can be given);
//! - `tcp-ping-flood`: Switchboard PING packets on framed TCP without logging in (a chat
//!   server closes such a connection at its first request; an echo server echoes them);
//! - `slowloris`: half an upgrade request, then one header byte a second;
//! - `reconnect-flood`: `tcp-ping-flood` from attackers that connect again as soon as they are
//!   cut (or refused), until the deadline: what per-connection limits alone cannot stop. The
//!   summary counts every connection made, and how each ended (`refused`: closed before a
//!   single echo came back).
//!
//! `--bind` sets the attackers' source address (127.0.0.2, ...), so a victim on 127.0.0.1 is
//! a different client as far as the server's per-IP limits are concerned.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use clap::{Parser, ValueEnum};
use socket2::{Domain, Protocol, Socket, Type};
use switchboard_codec::packet::PacketEncoder;
use switchboard_codec::ws::handshake::{ClientHandshake, ClientRequest};
use switchboard_codec::ws::{Client, FrameEncoder, Message, MessageReader, OpCode, ReaderConfig};
use switchboard_codec::Decoded;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Attack {
    PingFlood,
    SlowReaders,
    PongFlood,
    WsDataFlood,
    TcpPingFlood,
    Slowloris,
    ReconnectFlood,
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "hostile",
    about = "One hostile-client attack against a server; JSON summary"
)]
struct Args {
    #[arg(value_enum)]
    attack: Attack,
    /// The server's address (WebSocket port, or the framed-TCP port for tcp-ping-flood).
    #[arg(long)]
    target: SocketAddr,
    /// Attacking connections.
    #[arg(long, default_value_t = 100)]
    conns: usize,
    /// The attack stops after this many seconds (connections the server did not cut are
    /// counted as uncut and closed).
    #[arg(long, default_value_t = 6.0)]
    duration: f64,
    /// slow-readers: bytes per message.
    #[arg(long, default_value_t = 1 << 20)]
    size: usize,
    /// slow-readers: messages per connection.
    #[arg(long, default_value_t = 20)]
    messages: usize,
    /// The attackers' source address (the kernel picks one when unset).
    #[arg(long)]
    bind: Option<std::net::IpAddr>,
    /// reconnect-flood: give up a connect the server does not answer after this many
    /// milliseconds and try again at once (unset: wait as `connect` does, until the end of
    /// the attack at most). A server that drops the SYNs of a flooder (`--syn-filter`) leaves
    /// a naive one waiting on retransmits; an impatient one keeps sending SYNs.
    #[arg(long)]
    connect_timeout_ms: Option<u64>,
}

/// How one attacking connection ended.
#[derive(Debug, Clone)]
struct End {
    how: String,
    /// Seconds from the start of the attack; `None`: still open at the deadline.
    at: Option<f64>,
}

fn main() {
    let args = Args::parse();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    if args.attack == Attack::ReconnectFlood {
        return reconnect_flood(&args, start, deadline);
    }
    let threads: Vec<_> = (0..args.conns)
        .map(|i| {
            let args = args.clone();
            thread::spawn(move || attacker(i, &args, start, deadline))
        })
        .collect();
    let ends: Vec<End> = threads
        .into_iter()
        .map(|t| {
            t.join().unwrap_or(End {
                how: "panic".into(),
                at: None,
            })
        })
        .collect();
    summarize(&args, &ends, start.elapsed().as_secs_f64(), "");
}

/// Prints the JSON summary; `extra` is more fields (`,"name":value...`) or empty.
fn summarize(args: &Args, ends: &[End], elapsed: f64, extra: &str) {
    let mut hows: Vec<(String, usize)> = Vec::new();
    for end in ends {
        match hows.iter_mut().find(|(h, _)| *h == end.how) {
            Some((_, n)) => *n += 1,
            None => hows.push((end.how.clone(), 1)),
        }
    }
    let mut times: Vec<f64> = ends.iter().filter_map(|e| e.at).collect();
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| -> String {
        if times.is_empty() {
            "null".into()
        } else {
            let i = ((times.len() - 1) as f64 * q).round() as usize;
            format!("{:.3}", times[i])
        }
    };
    let how_json: Vec<String> = hows.iter().map(|(h, n)| format!("\"{h}\":{n}")).collect();
    println!(
        "{{\"attack\":\"{:?}\",\"conns\":{},\"cut\":{},\"uncut\":{},\"how\":{{{}}},\"first_cut_s\":{},\"median_cut_s\":{},\"last_cut_s\":{},\"elapsed_s\":{:.3},\"connections\":{}{}}}",
        args.attack,
        args.conns,
        times.len(),
        ends.len() - times.len(),
        how_json.join(","),
        pick(0.0),
        pick(0.5),
        pick(1.0),
        elapsed,
        ends.len(),
        extra
    );
}

fn attacker(index: usize, args: &Args, start: Instant, deadline: Instant) -> End {
    let at = || Some(start.elapsed().as_secs_f64());
    let stream = match connect(
        args.target,
        args.bind,
        args.attack == Attack::SlowReaders,
        None,
    ) {
        Ok(s) => s,
        Err(e) => {
            return End {
                how: format!("connect_{:?}", e.kind()),
                at: None,
            }
        }
    };
    let result = match args.attack {
        Attack::PingFlood => flood(stream, OpCode::Ping, deadline),
        Attack::PongFlood => flood(stream, OpCode::Pong, deadline),
        Attack::WsDataFlood => flood(stream, OpCode::Binary, deadline),
        Attack::SlowReaders => slow_reader(stream, args, deadline),
        Attack::TcpPingFlood => tcp_ping_flood(stream, deadline).map(|(end, _)| end),
        Attack::Slowloris => slowloris(stream, index, deadline),
        Attack::ReconnectFlood => unreachable!("run by reconnect_flood"),
    };
    match result {
        Ok(Some(how)) => End { how, at: at() },
        Ok(None) => End {
            how: "uncut".into(),
            at: None,
        },
        Err(e) => End {
            how: format!("error_{:?}", e.kind()),
            at: at(),
        },
    }
}

fn connect(
    target: SocketAddr,
    bind: Option<std::net::IpAddr>,
    small_receive_buffer: bool,
    timeout: Option<Duration>,
) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if let Some(ip) = bind {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    if small_receive_buffer {
        socket.set_recv_buffer_size(4 << 10)?;
    }
    socket.set_tcp_nodelay(true)?;
    match timeout {
        Some(timeout) => {
            socket.connect_timeout(&target.into(), timeout.max(Duration::from_millis(1)))?
        }
        None => socket.connect(&target.into())?,
    }
    // RST on close: no TIME_WAIT left for the next run.
    socket.set_linger(Some(Duration::ZERO))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    stream.set_write_timeout(Some(Duration::from_millis(500)))?;
    Ok(stream)
}

fn upgrade(stream: &mut TcpStream, target: SocketAddr) -> io::Result<BytesMut> {
    let host = target.to_string();
    let request = ClientRequest::new(&host, "/");
    let mut out = BytesMut::new();
    let mut handshake = ClientHandshake::start(&request, rand_key(), &mut out)
        .map_err(|e| io::Error::other(e.to_string()))?;
    stream.write_all(&out)?;
    let mut inbound = BytesMut::new();
    let mut buf = [0u8; 4096];
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        match handshake.decode(&mut inbound) {
            Ok(Decoded::Complete(_)) => return Ok(inbound),
            Ok(Decoded::NeedMore) => {}
            Err(e) => return Err(io::Error::other(e.to_string())),
        }
        if Instant::now() > give_up {
            return Err(io::ErrorKind::TimedOut.into());
        }
        match stream.read(&mut buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => inbound.extend_from_slice(&buf[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

fn rand_key() -> [u8; 16] {
    let mut key = [0u8; 16];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 32);
    for (i, b) in key.iter_mut().enumerate() {
        *b = (nanos >> ((i % 8) * 8)) as u8 ^ i as u8;
    }
    key
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Frames of `opcode` as fast as the socket takes them; a reader thread watches for the end.
fn flood(mut stream: TcpStream, opcode: OpCode, deadline: Instant) -> io::Result<Option<String>> {
    let target = stream.peer_addr()?;
    let inbound = upgrade(&mut stream, target)?;
    let mut batch = BytesMut::new();
    let mut encoder = FrameEncoder::<Client>::new();
    for i in 0..500u32 {
        encoder.encode_masked(opcode, true, &[i as u8; 125], i.to_be_bytes(), &mut batch);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut writer = stream.try_clone()?;
    let writing = {
        let stop = stop.clone();
        thread::spawn(move || write_repeatedly(&mut writer, &batch, &stop, deadline))
    };
    let end = read_until_end(&mut stream, inbound, deadline);
    stop.store(true, Ordering::Relaxed);
    let _ = writing.join();
    end
}

/// Writes `batch` over and over until `stop`, the deadline or a write error. A partial write
/// goes on from where it stopped, so the stream stays well framed.
fn write_repeatedly(writer: &mut TcpStream, batch: &[u8], stop: &AtomicBool, deadline: Instant) {
    let mut at = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match writer.write(&batch[at..]) {
            Ok(n) => at = (at + n) % batch.len(),
            Err(e) if is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}

/// Reads (discarding data, pongs) until a close frame, the end of the stream or the deadline.
fn read_until_end(
    stream: &mut TcpStream,
    mut inbound: BytesMut,
    deadline: Instant,
) -> io::Result<Option<String>> {
    let mut reader = MessageReader::<Client>::new(ReaderConfig {
        max_message: 64 << 20,
        ..ReaderConfig::default()
    });
    let mut buf = vec![0u8; 64 << 10];
    loop {
        loop {
            match reader.read(&mut inbound) {
                Ok(Decoded::Complete(Message::Close(frame))) => {
                    let code = frame.map_or(0, |f| f.code.0);
                    return Ok(Some(format!("close_{code}")));
                }
                Ok(Decoded::Complete(_)) => {}
                Ok(Decoded::NeedMore) => break,
                Err(_) => return Ok(Some("bad_frame".into())),
            }
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        match stream.read(&mut buf) {
            Ok(0) => return Ok(Some("eof".into())),
            Ok(n) => inbound.extend_from_slice(&buf[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Ok(Some("reset".into()))
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sends big messages and never reads; the end shows as a failed write.
fn slow_reader(
    mut stream: TcpStream,
    args: &Args,
    deadline: Instant,
) -> io::Result<Option<String>> {
    let target = stream.peer_addr()?;
    upgrade(&mut stream, target)?;
    let mut message = BytesMut::new();
    FrameEncoder::<Client>::new().encode_masked(
        OpCode::Binary,
        true,
        &vec![7u8; args.size],
        [1, 2, 3, 4],
        &mut message,
    );
    let mut sent = 0;
    let mut left = args.messages * message.len();
    while left > 0 && Instant::now() < deadline {
        let from = sent % message.len();
        let upto = message.len().min(from + left);
        match stream.write(&message[from..upto]) {
            Ok(0) => return Ok(Some("write_zero".into())),
            Ok(n) => {
                sent += n;
                left -= n;
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Ok(Some("reset".into()))
            }
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(Some("eof".into())),
            Err(e) => return Err(e),
        }
    }
    // Everything sent: wait for the cut without reading data (a zero-byte peek shows the end).
    while Instant::now() < deadline {
        let mut byte = [0u8; 1];
        match stream.peek(&mut byte) {
            Ok(0) => return Ok(Some("eof".into())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Ok(Some("reset".into()))
            }
            _ => thread::sleep(Duration::from_millis(50)),
        }
    }
    Ok(None)
}

/// Floods one framed-TCP connection until it is cut or the deadline; also returns the bytes
/// of echoes read.
fn tcp_ping_flood(stream: TcpStream, deadline: Instant) -> io::Result<(Option<String>, usize)> {
    let mut batch = BytesMut::new();
    let mut encoder = PacketEncoder::new();
    for seq in 0..2000u32 {
        encoder
            .encode_into(1, &seq.to_be_bytes(), &mut batch)
            .map_err(|e| io::Error::other(e.to_string()))?;
    }
    let mut writer = stream.try_clone()?;
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let stop = stop.clone();
        thread::spawn(move || write_repeatedly(&mut writer, &batch, &stop, deadline))
    };
    let mut stream = stream;
    let mut buf = vec![0u8; 64 << 10];
    let mut echoed = 0;
    let end = loop {
        if Instant::now() > deadline {
            break None;
        }
        match stream.read(&mut buf) {
            Ok(0) => break Some("eof".to_string()),
            Ok(n) => echoed += n,
            Err(e) if is_timeout(&e) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break Some("reset".into()),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                let _ = writing.join();
                return Err(e);
            }
        }
    };
    stop.store(true, Ordering::Relaxed);
    let _ = writing.join();
    Ok((end, echoed))
}

/// `tcp-ping-flood` from `--conns` threads that each connect again as soon as a connection
/// ends, until the deadline; prints one JSON line like `summarize`, with every connection.
fn reconnect_flood(args: &Args, start: Instant, deadline: Instant) {
    let threads: Vec<_> = (0..args.conns)
        .map(|_| {
            let args = args.clone();
            thread::spawn(move || {
                let mut ends = Vec::new();
                let mut echoed_total = 0usize;
                while Instant::now() < deadline {
                    // Never past the end of the attack: a dropped SYN is retried for minutes.
                    let left = deadline.saturating_duration_since(Instant::now());
                    let patience = args.connect_timeout_ms.map(Duration::from_millis);
                    let timeout = patience.map_or(left, |p| p.min(left));
                    let stream = match connect(args.target, args.bind, false, Some(timeout)) {
                        Ok(s) => s,
                        Err(e) => {
                            ends.push(End {
                                how: format!("connect_{:?}", e.kind()),
                                at: Some(start.elapsed().as_secs_f64()),
                            });
                            if e.kind() != io::ErrorKind::TimedOut {
                                thread::sleep(Duration::from_millis(10));
                            }
                            continue;
                        }
                    };
                    let (how, echoed) = match tcp_ping_flood(stream, deadline) {
                        Ok((Some(how), echoed)) => (how, echoed),
                        Ok((None, echoed)) => ("uncut".to_string(), echoed),
                        Err(e) => (format!("error_{:?}", e.kind()), 0),
                    };
                    echoed_total += echoed;
                    let how = if echoed == 0 && how != "uncut" {
                        "refused".to_string()
                    } else {
                        how
                    };
                    let at = (how != "uncut").then(|| start.elapsed().as_secs_f64());
                    ends.push(End { how, at });
                }
                (ends, echoed_total)
            })
        })
        .collect();
    let mut ends = Vec::new();
    let mut echoed = 0;
    for thread in threads {
        if let Ok((mine, bytes)) = thread.join() {
            ends.extend(mine);
            echoed += bytes;
        }
    }
    let served = ends
        .iter()
        .filter(|e| e.how != "refused" && !e.how.starts_with("connect_"))
        .count();
    let extra = format!(",\"served\":{served},\"echoed_packets\":{}", echoed / 14);
    summarize(args, &ends, start.elapsed().as_secs_f64(), &extra);
}

fn slowloris(mut stream: TcpStream, index: usize, deadline: Instant) -> io::Result<Option<String>> {
    let head = format!(
        "GET /{index} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    );
    stream.write_all(head.as_bytes())?;
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        if let Err(e) = stream.write_all(b"X") {
            return Ok(Some(match e.kind() {
                io::ErrorKind::ConnectionReset => "reset".into(),
                _ => "eof".into(),
            }));
        }
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            match stream.read(&mut buf) {
                Ok(0) => return Ok(Some("eof".into())),
                Ok(_) => return Ok(Some("refused".into())),
                Err(e) if is_timeout(&e) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Ok(Some("reset".into()))
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(None)
}
