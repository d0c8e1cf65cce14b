//! What both peer echo servers share and nothing else: the command line (`--addr`, `--threads`),
//! the tokio runtime it asks for, and the SIGTERM that ends the server. The echo loops stay in
//! the binaries, each written the way that crate's own README and examples write it.
//! Never put protocol code here: the point is to measure each crate as its users run it.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

/// `--addr HOST:PORT` (default 127.0.0.1:9001) and `--threads N` (tokio worker threads;
/// default: tokio's, one per core).
pub struct PeerArgs {
    pub addr: SocketAddr,
    pub threads: Option<usize>,
}

impl PeerArgs {
    /// Parses the process arguments; exits with a usage line on anything else.
    pub fn from_env(name: &str) -> PeerArgs {
        let usage = || -> ! {
            eprintln!("usage: {name} [--addr 127.0.0.1:PORT] [--threads N]");
            std::process::exit(2)
        };
        let mut parsed = PeerArgs {
            addr: SocketAddr::from(([127, 0, 0, 1], 9001)),
            threads: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let value = args.next().unwrap_or_else(|| usage());
            match flag.as_str() {
                "--addr" => parsed.addr = value.parse().unwrap_or_else(|_| usage()),
                "--threads" => {
                    parsed.threads = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|&n| n > 0)
                            .unwrap_or_else(|| usage()),
                    )
                }
                _ => usage(),
            }
        }
        parsed
    }
}

/// Binds, prints "listening on ADDR" (what bench/compare.sh waits for), and runs `serve` on a
/// multi-thread runtime until SIGTERM or SIGINT; connections still open are dropped then.
pub fn run<F, Fut>(name: &str, serve: F)
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: Future<Output = ()>,
{
    let args = PeerArgs::from_env(name);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = args.threads {
        builder.worker_threads(threads);
    }
    let runtime = builder.build().expect("tokio runtime");
    runtime.block_on(async {
        let listener = match TcpListener::bind(args.addr).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("{name}: cannot listen on {}: {e}", args.addr);
                std::process::exit(1);
            }
        };
        let local = listener.local_addr().expect("bound address");
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        println!("listening on {local}");
        tokio::select! {
            _ = serve(listener) => {}
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    });
    runtime.shutdown_background();
}
