//! Helpers both end-to-end suites use (the gateway's `tests/common` and the chat server's
//! `tests/chat_common`): the loopback gateway setup, waiting for a condition, test
//! randomness, and the submodules for sockets, WebSocket and the `switchboard` child process.

pub mod http;
pub mod process;
pub mod socket;
pub mod ws;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchboard::gateway::{Backend, GatewayConfig, SocketOptions};
use switchboard_codec::packet::PacketHeader;

/// How long one expected packet, message or blocking read or write may take before the test
/// fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// `127.0.0.1:0`: the kernel picks a free port.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A gateway configuration for tests with `workers` reactors: both transports on free
/// loopback ports, short linger and drain so a test's teardown takes milliseconds, and no
/// kernel keepalive (tests are much shorter than its timers). The backend is epoll unless
/// `SWITCHBOARD_BACKEND` names another (as it does for the child processes the tests start).
pub fn gateway_config(workers: usize) -> GatewayConfig {
    GatewayConfig {
        backend: backend(),
        tcp: Some(loopback()),
        ws: Some(loopback()),
        workers,
        close_linger: Duration::from_millis(500),
        drain_timeout: Duration::from_secs(2),
        socket: SocketOptions {
            keepalive: None,
            user_timeout: None,
            ..SocketOptions::default()
        },
        ..GatewayConfig::default()
    }
}

/// The backend the gateway under test runs on: `SWITCHBOARD_BACKEND` if set, else io_uring
/// in the test binaries whose name ends in `_uring` (Cargo.toml builds the end-to-end suites a
/// second time under such names, so `cargo test` runs them on both backends), else epoll.
pub fn backend() -> Backend {
    if let Ok(name) = std::env::var("SWITCHBOARD_BACKEND") {
        return name.parse().expect("SWITCHBOARD_BACKEND is epoll or uring");
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or("");
    // Cargo names a test binary NAME-HASH.
    let target = name.rsplit_once('-').map_or(name, |(target, _)| target);
    if target.ends_with("_uring") {
        Backend::Uring
    } else {
        Backend::Epoll
    }
}

/// One whole Switchboard packet: header then payload.
pub fn packet(command: u16, payload: &[u8]) -> Vec<u8> {
    let header = PacketHeader::for_payload(command, payload.len()).expect("payload fits u32");
    let mut bytes = header.to_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

/// Polls `condition` every few milliseconds until it holds (true) or `within` passes (false).
pub fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Well-mixed pseudo-random numbers (splitmix64 over a shared counter): masking keys,
/// handshake nonces, client_msg_ids. Tests need variety, not secrecy.
pub fn random_u64() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0x5357_4231_0000_0001);
    let mut z = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
