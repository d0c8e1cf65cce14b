//! Giving memory back to the kernel after queues drain.
//!
//! glibc's malloc keeps freed memory in its arenas: the 64 KiB read chunks sit below its mmap
//! threshold, and after a large buffer is freed the threshold rises to its size, so the
//! megabyte messages of the next attack land in the arena too. Without a trim, what an
//! attacker made the server allocate stays resident after the attacker is gone (measured in
//! docs/performance.md, "Hostile clients"). `malloc_trim(0)` hands the free pages of every
//! arena back (MADV_DONTNEED), which is what the reactor calls after it released many bytes.
//! Other C libraries: nothing to do here (musl returns large frees itself).

/// Returns free heap memory to the kernel, where the C library can.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers and only walks the allocator's own free
        // lists under its locks; it is safe to call from any thread at any time.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<usize>()
            .unwrap()
            * 1024
    }

    /// Freed blocks below the mmap threshold, kept from the top of the heap by one live
    /// block, stay resident until the trim.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn trimming_returns_freed_heap_pages() {
        // A thread of its own: a fresh arena that other tests do not allocate from.
        std::thread::spawn(|| {
            let mut blocks: Vec<Vec<u8>> = (0..1024).map(|_| vec![1u8; 60 << 10]).collect();
            let keep = blocks.pop();
            drop(blocks);
            let before = rss();
            release_free_memory();
            let after = rss();
            drop(keep);
            assert!(
                before.saturating_sub(after) >= 16 << 20,
                "RSS {} KiB before the trim, {} KiB after",
                before >> 10,
                after >> 10
            );
        })
        .join()
        .unwrap();
    }
}
