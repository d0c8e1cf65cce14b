//! TLS handshakes per second against one server (bench/tls_handshakes.sh runs it against
//! `switchboard echo` and bench/peers' `rustls_echo` in turn, same certificate, same client):
//! `--threads` client threads each connect, make a full handshake (no resumption, unless
//! `--resume`), echo one framed-TCP packet through the session, and drop the connection with an
//! RST, over and over for `--duration`. Prints one JSON line: handshakes done, per second, and
//! the server's CPU time per handshake (utime + stime of `--pid` from /proc over the run). A
//! benchmark, not a test: a failed handshake or echo is counted, never retried. Loopback only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

#[derive(Parser, Debug)]
#[command(
    name = "tls_handshakes",
    about = "TLS handshakes per second against one server"
)]
struct Args {
    /// The server's TLS framed-TCP (or byte echo) address; loopback only.
    #[arg(long)]
    addr: SocketAddr,
    /// The server's PID, for its CPU time.
    #[arg(long)]
    pid: u32,
    /// The CA (here: the self-signed certificate) the server's certificate must verify with.
    #[arg(long)]
    ca: PathBuf,
    /// Client threads, each one connection at a time.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seconds of handshakes.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Resume sessions (TLS 1.3 tickets) instead of full handshakes.
    #[arg(long)]
    resume: bool,
    /// TLS 1.2 instead of 1.3.
    #[arg(long)]
    tls12: bool,
    /// A label for the JSON line.
    #[arg(long, default_value = "server")]
    server: String,
}

/// One framed-TCP packet (command 1, payload "ping"), which both echo servers return as is.
const PACKET: &[u8] = b"SWB1\x00\x01\x00\x00\x00\x04ping";

fn main() {
    let args = Args::parse();
    assert!(args.addr.ip().is_loopback(), "loopback addresses only");
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&args.ca).expect("the CA file") {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a usable CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if args.tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !args.resume {
        config.resumption = Resumption::disabled();
    }
    let config = Arc::new(config);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let cpu_before = server_cpu_seconds(args.pid);
    let started = Instant::now();
    let threads: Vec<_> = (0..args.threads)
        .map(|_| {
            let (config, stop, done, failed) =
                (config.clone(), stop.clone(), done.clone(), failed.clone());
            let addr = args.addr;
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match one_handshake(addr, &config) {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("tls_handshakes: first failure: {e}");
                            }
                            0
                        }
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(args.duration));
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = server_cpu_seconds(args.pid) - cpu_before;
    let done = done.load(Ordering::Relaxed);
    println!(
        "{{\"bench\":\"tls_handshakes\",\"server\":\"{}\",\"threads\":{},\"resume\":{},\"tls12\":{},\"handshakes\":{done},\"failed\":{},\"per_s\":{:.1},\"server_cpu_us_per_handshake\":{:.1}}}",
        args.server,
        args.threads,
        args.resume,
        args.tls12,
        failed.load(Ordering::Relaxed),
        done as f64 / seconds,
        cpu * 1e6 / done.max(1) as f64,
    );
}

fn one_handshake(addr: SocketAddr, config: &Arc<ClientConfig>) -> std::io::Result<()> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let name = ServerName::try_from("localhost").expect("a name");
    let conn = ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut tls = StreamOwned::new(conn, stream);
    tls.write_all(PACKET)?;
    let mut echo = [0u8; PACKET.len()];
    tls.read_exact(&mut echo)?;
    // An RST, not a FIN: no TIME_WAIT left behind for the next thousand connections.
    socket2::SockRef::from(&tls.sock).set_linger(Some(Duration::ZERO))?;
    if echo != PACKET {
        return Err(std::io::Error::other("echo differs"));
    }
    Ok(())
}

/// utime + stime of `pid`, in seconds.
fn server_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the server runs");
    let after_name = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the line; the state (field 3) is the first after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / switchboard_loadtest::os::clock_ticks_per_second()
}
