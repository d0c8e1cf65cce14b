//! `ClientMsgIds`: the `client_msg_id`s one client gives its messages.
//!
//! An id is `prefix << 32 | counter`: a random 32-bit prefix drawn when the client is made and
//! a counter from 1. The counter is shared by every thread sending on the client (an atomic),
//! so ids never repeat within one client; when it has handed out 2^32 ids the prefix moves on
//! by one. Across clients of the same user (other devices, app restarts) ids differ unless two
//! prefixes collide: with `n` clients of one user inside the server's retention window the odds
//! are about `n^2 / 2^33` (1 in 8,600 for 1,000 clients). A resend reuses its id; nothing else does.

use std::sync::atomic::{AtomicU64, Ordering};

/// Hands out `client_msg_id`s, from any thread.
#[derive(Debug)]
pub struct ClientMsgIds {
    prefix: u32,
    /// How many ids were handed out; the next id's counter is this plus one.
    issued: AtomicU64,
}

impl ClientMsgIds {
    /// A generator with a random prefix.
    pub fn new() -> Self {
        ClientMsgIds::with_prefix(rand::random())
    }

    /// A generator with a chosen prefix (tests, or an app that persists its own).
    pub fn with_prefix(prefix: u32) -> Self {
        ClientMsgIds {
            prefix,
            issued: AtomicU64::new(0),
        }
    }

    /// The next id.
    pub fn next_id(&self) -> u64 {
        let n = self.issued.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        id_for(self.prefix, n)
    }
}

impl Default for ClientMsgIds {
    fn default() -> Self {
        ClientMsgIds::new()
    }
}

/// The id numbered `n` (from 1) of a generator with `prefix`: the counter is `n`'s low 32 bits
/// and every wrap of it moves the prefix on by one, so ids stay distinct past 2^32.
fn id_for(prefix: u32, n: u64) -> u64 {
    let epoch = (n >> 32) as u32;
    (u64::from(prefix.wrapping_add(epoch)) << 32) | (n & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    #[test]
    fn ids_carry_the_prefix_and_count_from_one() {
        let ids = ClientMsgIds::with_prefix(0xabcd_0123);
        assert_eq!(ids.next_id(), 0xabcd_0123_0000_0001);
        assert_eq!(ids.next_id(), 0xabcd_0123_0000_0002);
    }

    #[test]
    fn ids_are_unique_across_threads() {
        let ids = Arc::new(ClientMsgIds::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let ids = Arc::clone(&ids);
                std::thread::spawn(move || (0..10_000).map(|_| ids.next_id()).collect::<Vec<_>>())
            })
            .collect();
        let mut seen = HashSet::new();
        for thread in threads {
            for id in thread.join().unwrap() {
                assert!(seen.insert(id), "duplicate client_msg_id {id:#x}");
            }
        }
        assert_eq!(seen.len(), 40_000);
    }

    #[test]
    fn the_counter_wrap_moves_the_prefix_on() {
        assert_eq!(id_for(7, 0xffff_ffff), 0x0000_0007_ffff_ffff);
        assert_eq!(id_for(7, 0x1_0000_0000), 0x0000_0008_0000_0000);
        assert_eq!(id_for(u32::MAX, 0x1_0000_0001), 0x0000_0000_0000_0001);
        let around_wrap: HashSet<u64> =
            (0xffff_fff0..0x1_0000_0010).map(|n| id_for(7, n)).collect();
        assert_eq!(around_wrap.len(), 0x20);
    }

    #[test]
    fn generators_draw_different_prefixes() {
        let prefixes: HashSet<u64> = (0..64)
            .map(|_| ClientMsgIds::new().next_id() >> 32)
            .collect();
        assert!(prefixes.len() > 60, "random prefixes: {}", prefixes.len());
    }
}
