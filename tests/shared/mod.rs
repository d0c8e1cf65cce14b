//! Helpers both end-to-end suites use (the gateway's `tests/common` and the chat server's
//! `tests/chat_common`): waiting for a condition, test randomness, and reading a child
//! process's announcements.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

/// The child's stdout, line by line, read on a thread of its own so a test can wait for an
/// announcement with a timeout. The child must have been spawned with a piped stdout.
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    lines
}
