//! A queue bounded in bytes, shared by senders on many threads: the one admission rule of the
//! reactors' inboxes and of the queue into the logic core. An empty queue takes one item of
//! any size (so a large one is never refused forever); otherwise the total stays under the
//! limit. A compare-exchange, so a refused sender never shows others a total it did not keep.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Adds `bytes` to `queued` if the rule allows it; false (and nothing added) if not.
pub(crate) fn try_reserve(queued: &AtomicUsize, bytes: usize, limit: usize) -> bool {
    let mut current = queued.load(Ordering::SeqCst);
    loop {
        if current > 0 && current.saturating_add(bytes) > limit {
            return false;
        }
        match queued.compare_exchange_weak(
            current,
            current + bytes,
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
            Ok(_) => return true,
            Err(now) => current = now,
        }
    }
}

/// A poisoned lock only means a panic elsewhere; what it guards is still whole.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_queue_takes_any_size_then_the_limit_holds() {
        let queued = AtomicUsize::new(0);
        assert!(try_reserve(&queued, 100, 10), "empty: any size");
        assert!(!try_reserve(&queued, 1, 10), "over the limit");
        assert_eq!(queued.load(Ordering::SeqCst), 100, "a refusal adds nothing");
        queued.store(4, Ordering::SeqCst);
        assert!(try_reserve(&queued, 6, 10), "exactly the limit");
        assert!(!try_reserve(&queued, 1, 10));
    }
}
