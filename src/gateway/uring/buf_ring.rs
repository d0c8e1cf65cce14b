//! The provided-buffer ring: receive buffers shared by every connection of one reactor, which
//! the kernel picks from only when data arrives, so an idle connection holds no buffer.
//!
//! Invariants:
//! - The ring's entry array and the buffers are our own anonymous mappings; the kernel reads
//!   entries up to the tail we publish and writes into a buffer only while it owns it (from
//!   the moment its entry is published until a completion hands it back without
//!   `IORING_CQE_F_BUF_MORE`).
//! - A buffer handed back is lent to the caller as a `Filled` slice and goes back into the
//!   ring when that slice is dropped: nothing is copied, and nothing reads a buffer the kernel
//!   may be writing.
//! - With incremental consumption (`IOU_PBUF_RING_INC`, Linux 6.12) one buffer serves many
//!   receives: each completion's data starts where the previous one for that buffer ended.
//! - The memory is unmapped only after `unregister`; a ring dropped without it is leaked, not
//!   freed under the kernel.
//! - Only buffers `0..published` were ever handed to the kernel. The kernel takes buffers in
//!   ring order (first in, first out), so every published buffer gets written in turn and its
//!   first page becomes resident; publishing few and growing on demand ([`BufRing::grow`],
//!   when a receive finds the ring empty) keeps an idle reactor's buffers at a few pages
//!   instead of one page per buffer of the whole ring.
//! - [`BufRing::release_pages`] hands the buffers' pages back (`MADV_DONTNEED`: they read as
//!   zeros and fault in again when next written). No buffer is lent out then (`&mut self`);
//!   the caller makes sure the kernel is not filling one at that moment (see its doc).

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;

/// `IOU_PBUF_RING_INC`: buffers are consumed a receive at a time, not whole.
const PBUF_RING_INC: u16 = 2;

/// Receive buffers for one buffer group of one ring.
#[derive(Debug)]
pub struct BufRing {
    entries: Mapping,
    buffers: Mapping,
    count: u16,
    buf_len: u32,
    group: u16,
    /// Our copy of the tail: the kernel sees it only when published.
    tail: u16,
    /// Buffers `0..published` have been put in the ring; the rest were never touched.
    published: u16,
    /// Bytes of each buffer already handed out (incremental consumption only).
    consumed: Box<[u32]>,
    incremental: bool,
    registered: bool,
    /// A buffer was lent out since the pages were last released.
    used_since_release: bool,
}

/// How a completion's buffer ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// The kernel is done with the buffer: it goes back into the ring after use.
    Whole,
    /// The kernel keeps filling the rest of it (`IORING_CQE_F_BUF_MORE`).
    More,
}

impl BufRing {
    /// Maps `count` buffers of `buf_len` bytes, puts them all in the ring and registers it as
    /// buffer group `group`. With `incremental`, asks for incremental consumption and falls
    /// back to whole buffers where the kernel does not have it.
    pub fn register(
        submitter: &Submitter<'_>,
        group: u16,
        count: u16,
        buf_len: u32,
        incremental: bool,
    ) -> io::Result<BufRing> {
        Self::register_growing(submitter, group, count, count, buf_len, incremental)
    }

    /// As [`BufRing::register`], but only the first `initial` buffers go into the ring; the
    /// others are mapped (not faulted in) and join by [`BufRing::grow`].
    pub fn register_growing(
        submitter: &Submitter<'_>,
        group: u16,
        count: u16,
        initial: u16,
        buf_len: u32,
        incremental: bool,
    ) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 1 << 15 || buf_len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer count must be a power of two up to 32768, buffers not empty",
            ));
        }
        let entries = Mapping::new(usize::from(count) * size_of::<BufRingEntry>())?;
        let buffers = Mapping::new(usize::from(count) * buf_len as usize)?;
        let mut ring = BufRing {
            entries,
            buffers,
            count,
            buf_len,
            group,
            tail: 0,
            published: 0,
            consumed: vec![0; usize::from(count)].into_boxed_slice(),
            incremental: false,
            registered: false,
            used_since_release: false,
        };
        ring.add_buffers(initial.clamp(1, count));
        let addr = ring.entries.ptr.as_ptr() as u64;
        let flags = if incremental { PBUF_RING_INC } else { 0 };
        // SAFETY: `addr` is a page-aligned mapping of `count` entries that lives until
        // `unregister` (or forever, if that is never called: see `Drop`), and every entry
        // points into `buffers`, which lives as long.
        let registered =
            unsafe { submitter.register_buf_ring_with_flags(addr, count, group, flags) };
        match registered {
            Ok(()) => ring.incremental = incremental,
            // A kernel before 6.12 refuses the flag it does not know.
            Err(e) if incremental && e.raw_os_error() == Some(libc::EINVAL) => {
                // SAFETY: as above.
                unsafe { submitter.register_buf_ring_with_flags(addr, count, group, 0)? }
            }
            Err(e) => return Err(e),
        }
        ring.registered = true;
        Ok(ring)
    }

    /// The buffer group receives select from (`IOSQE_BUFFER_SELECT` with this group).
    pub fn group(&self) -> u16 {
        self.group
    }

    /// How many buffers have been put in the ring so far (the rest were never touched).
    pub fn published(&self) -> u16 {
        self.published
    }

    /// Doubles the buffers in the ring (at most to its size), after a receive found it empty.
    /// Returns how many were added: none once every buffer is in.
    pub fn grow(&mut self) -> u16 {
        let added = self.published.min(self.count - self.published);
        self.add_buffers(added);
        added
    }

    /// Puts the next `n` never-used buffers in the ring and publishes them.
    fn add_buffers(&mut self, n: u16) {
        if n == 0 {
            return;
        }
        // At most `published` entries are ever in the ring (each buffer once), and
        // `published` <= `count`, so the new entries never overwrite one the kernel has not
        // taken yet.
        for bid in self.published..self.published + n {
            self.push(bid);
        }
        self.published += n;
        self.publish();
    }

    /// Whether a buffer was lent out since the pages were last released.
    pub fn used_since_release(&self) -> bool {
        self.used_since_release
    }

    /// Hands the pages of every buffer back to the kernel: what was resident is freed, and a
    /// buffer's page faults in again (zeroed) when the kernel next writes into it.
    ///
    /// Call only when no completion that carries a buffer is waiting to be reaped and the
    /// kernel cannot be filling one: with `DEFER_TASKRUN`, between two `io_uring_enter`s of
    /// the ring's thread, once its completion queue is empty (and has not overflowed).
    /// Otherwise received bytes not yet read may be zeroed. Incremental buffers are never
    /// released (a partly consumed one holds bytes the kernel goes on filling behind).
    pub fn release_pages(&mut self) -> io::Result<()> {
        if self.incremental {
            return Ok(());
        }
        let len = usize::from(self.published) * self.buf_len as usize;
        if len > 0 {
            // SAFETY: the range is inside our own anonymous mapping (`published` buffers of
            // `buf_len` from its start). No reference into it is alive: `Filled` borrows the
            // ring, and this takes it by `&mut`. MADV_DONTNEED on a private anonymous mapping
            // only drops page contents (reads see zeros afterwards); it never unmaps, so the
            // addresses the kernel holds stay valid.
            let rc = unsafe {
                libc::madvise(self.buffers.ptr.as_ptr().cast(), len, libc::MADV_DONTNEED)
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        self.used_since_release = false;
        Ok(())
    }

    /// Whether buffers are consumed a receive at a time.
    pub fn is_incremental(&self) -> bool {
        self.incremental
    }

    /// The `len` bytes a completion delivered into buffer `bid`. The buffer goes back into the
    /// ring when the returned slice is dropped, unless the kernel keeps it (`More`).
    pub fn filled(&mut self, bid: u16, len: usize, returned: Returned) -> Filled<'_> {
        assert!(
            bid < self.published,
            "buffer id {bid} from the kernel was never put in the ring"
        );
        let index = usize::from(bid);
        let start = if self.incremental {
            self.consumed[index] as usize
        } else {
            0
        };
        assert!(
            start + len <= self.buf_len as usize,
            "completion of {len} bytes at {start} overruns a {}-byte buffer",
            self.buf_len
        );
        self.used_since_release = true;
        match returned {
            Returned::More => self.consumed[index] += len as u32,
            Returned::Whole => self.consumed[index] = 0,
        }
        Filled {
            ring: self,
            bid,
            start,
            len,
            give_back: returned == Returned::Whole,
        }
    }

    /// Unregisters the group and frees the memory. Call only once no receive that selects from
    /// this group is in flight (or the ring has been told to cancel them and they completed).
    pub fn unregister(mut self, submitter: &Submitter<'_>) -> io::Result<()> {
        submitter.unregister_buf_ring(self.group)?;
        self.registered = false;
        Ok(())
    }

    /// Writes buffer `bid` into the next free entry; the kernel sees it after `publish`.
    fn push(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        let addr = self.buffers.ptr.as_ptr() as u64 + u64::from(bid) * u64::from(self.buf_len);
        // SAFETY: `slot` < `count`, so the entry is inside the mapping; the kernel reads only
        // entries before the published tail, and this one is at or past it. The tail field
        // shares the first entry's memory (its `resv`), which these setters do not touch.
        let entry = unsafe { &mut *self.entries.ptr.as_ptr().cast::<BufRingEntry>().add(slot) };
        entry.set_addr(addr);
        entry.set_len(self.buf_len);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every entry pushed so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail is the `resv` field of entry 0, inside the mapping, and u16-aligned
        // (the mapping is page-aligned). The kernel reads it with an acquire load; the release
        // store orders the entry writes before it, as liburing's `io_uring_buf_ring_advance`.
        let tail = unsafe {
            &*BufRingEntry::tail(self.entries.ptr.as_ptr().cast::<BufRingEntry>())
                .cast::<AtomicU16>()
        };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.registered {
            // The kernel may still pick a buffer: better a leak than a write into freed memory.
            std::mem::forget(std::mem::replace(&mut self.entries, Mapping::empty()));
            std::mem::forget(std::mem::replace(&mut self.buffers, Mapping::empty()));
        }
    }
}

/// Received bytes lent from the ring; the buffer goes back when this is dropped.
#[derive(Debug)]
pub struct Filled<'a> {
    ring: &'a mut BufRing,
    bid: u16,
    start: usize,
    len: usize,
    give_back: bool,
}

impl std::ops::Deref for Filled<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let offset = usize::from(self.bid) * self.ring.buf_len as usize + self.start;
        // SAFETY: `filled` checked that `start + len` is inside buffer `bid`, which is inside
        // the mapping; the kernel wrote these bytes before posting the completion and does
        // not write them again: a `Whole` buffer is not back in the ring until this slice is
        // dropped, and a `More` buffer's later receives land after `start + len`.
        unsafe { std::slice::from_raw_parts(self.ring.buffers.ptr.as_ptr().add(offset), self.len) }
    }
}

impl Drop for Filled<'_> {
    fn drop(&mut self) {
        if self.give_back {
            self.ring.push(self.bid);
            self.ring.publish();
        }
    }
}

/// An anonymous private mapping: page-aligned, as the kernel requires of the entry array, and
/// faulted in only where touched, so buffers never used cost no memory.
#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh anonymous mapping touches no existing memory; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).expect("mmap returned null without failing");
        Ok(Mapping { ptr, len })
    }

    /// How many of the mapping's pages are resident (faulted in).
    #[cfg(test)]
    fn resident_pages(&self) -> usize {
        // SAFETY: sysconf takes no pointers.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let mut flags = vec![0u8; self.len.div_ceil(page)];
        // SAFETY: the range is our mapping (page-aligned), and `flags` has one byte per page
        // of it, which is what mincore writes.
        let rc = unsafe { libc::mincore(self.ptr.as_ptr().cast(), self.len, flags.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", io::Error::last_os_error());
        flags.iter().filter(|&&f| f & 1 != 0).count()
    }

    fn empty() -> Mapping {
        Mapping {
            ptr: NonNull::dangling(),
            len: 0,
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the mapping is ours and no reference into it outlives its owner.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use io_uring::{cqueue, opcode, types, IoUring};

    use super::*;

    const RECV: u64 = 7;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    fn arm(ring: &mut IoUring, fd: i32, group: u16) {
        let recv = opcode::RecvMulti::new(types::Fd(fd), group)
            .build()
            .user_data(RECV);
        // SAFETY: the receive selects its buffer from the group; it holds no pointer of ours.
        unsafe { ring.submission().push(&recv).unwrap() };
    }

    /// Reads completions until `want` bytes arrived, re-arming the multishot receive when the
    /// kernel ends it (ENOBUFS, or a full completion queue). Returns the bytes and how many
    /// times the receive ran out of buffers.
    fn receive(ring: &mut IoUring, bufs: &mut BufRing, fd: i32, want: usize) -> (Vec<u8>, usize) {
        receive_growing(ring, bufs, fd, want, false)
    }

    /// As `receive`; with `grow`, an empty ring grows as the driver grows it.
    fn receive_growing(
        ring: &mut IoUring,
        bufs: &mut BufRing,
        fd: i32,
        want: usize,
        grow: bool,
    ) -> (Vec<u8>, usize) {
        let (mut got, mut empty) = (Vec::new(), 0);
        arm(ring, fd, bufs.group());
        while got.len() < want {
            ring.submit_and_wait(1).unwrap();
            let cqes: Vec<cqueue::Entry> = ring.completion().collect();
            for cqe in cqes {
                assert_eq!(cqe.user_data(), RECV);
                let flags = cqe.flags();
                if cqe.result() == -libc::ENOBUFS {
                    empty += 1;
                    if grow {
                        bufs.grow();
                    }
                } else {
                    assert!(cqe.result() > 0, "receive failed: {}", cqe.result());
                    let bid = cqueue::buffer_select(flags).expect("a buffer was selected");
                    let returned = match cqueue::buffer_more(flags) {
                        true => Returned::More,
                        false => Returned::Whole,
                    };
                    got.extend_from_slice(&bufs.filled(bid, cqe.result() as usize, returned));
                }
                if !cqueue::more(flags) && got.len() < want {
                    arm(ring, fd, bufs.group());
                }
            }
        }
        (got, empty)
    }

    fn ring() -> IoUring {
        IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(8)
            .unwrap()
    }

    #[test]
    fn a_receive_lands_in_a_provided_buffer_that_comes_back_after_use() {
        let mut ring = ring();
        let mut bufs = BufRing::register(&ring.submitter(), 1, 4, 64, false).unwrap();
        let (mut client, server) = pair();
        // More rounds than buffers: each buffer must come back for the next round.
        for round in 0..10u8 {
            let message = [round; 40];
            client.write_all(&message).unwrap();
            let (got, empty) = receive(&mut ring, &mut bufs, server.as_raw_fd(), 40);
            assert_eq!((got.as_slice(), empty), (&message[..], 0));
        }
        bufs.unregister(&ring.submitter()).unwrap();
    }

    #[test]
    fn an_empty_ring_slows_the_receive_and_loses_no_byte() {
        let mut ring = ring();
        // Two 16-byte buffers for 1,000 bytes: the receive runs dry again and again.
        let mut bufs = BufRing::register(&ring.submitter(), 2, 2, 16, false).unwrap();
        let (mut client, server) = pair();
        let sent: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        client.write_all(&sent).unwrap();
        let (got, empty) = receive(&mut ring, &mut bufs, server.as_raw_fd(), sent.len());
        assert_eq!(got, sent);
        assert!(empty > 0, "the ring never ran dry: the test proves nothing");
        bufs.unregister(&ring.submitter()).unwrap();
    }

    #[test]
    fn incremental_buffers_serve_many_receives_each() {
        let mut ring = ring();
        let mut bufs = BufRing::register(&ring.submitter(), 3, 2, 4096, true).unwrap();
        assert!(
            bufs.is_incremental(),
            "Linux 6.12+ has incremental consumption"
        );
        let (mut client, server) = pair();
        let mut all = Vec::new();
        for round in 0..50u8 {
            let message = [round; 10];
            client.write_all(&message).unwrap();
            let (got, _) = receive(&mut ring, &mut bufs, server.as_raw_fd(), 10);
            all.extend(got);
        }
        // 500 bytes in 50 receives from two 4 KiB buffers: without incremental consumption
        // the second round would already need the first buffer back.
        let expected: Vec<u8> = (0..50u8).flat_map(|r| [r; 10]).collect();
        assert_eq!(all, expected);
        assert_eq!(
            bufs.consumed.iter().map(|&c| c as usize).sum::<usize>(),
            500
        );
        bufs.unregister(&ring.submitter()).unwrap();
    }

    #[test]
    fn a_ring_that_runs_dry_grows_and_loses_no_byte() {
        let mut ring = ring();
        let mut bufs = BufRing::register_growing(&ring.submitter(), 5, 8, 2, 16, false).unwrap();
        assert_eq!(bufs.published(), 2);
        let (mut client, server) = pair();
        let sent: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        client.write_all(&sent).unwrap();
        let (got, empty) = receive_growing(&mut ring, &mut bufs, server.as_raw_fd(), 1000, true);
        assert_eq!(got, sent);
        assert!(empty > 0, "the ring never ran dry: the test proves nothing");
        // 2 -> 4 -> 8, and no further: the ring holds 8.
        assert_eq!(bufs.published(), 8);
        assert_eq!(bufs.grow(), 0);
        bufs.unregister(&ring.submitter()).unwrap();
    }

    /// Resident pages of the buffers after `rounds` small receives, one at a time, from a
    /// ring of 64 buffers of 16 KiB with `initial` of them put in at first.
    fn resident_after_small_receives(initial: u16, rounds: u8) -> usize {
        let mut ring = ring();
        let mut bufs =
            BufRing::register_growing(&ring.submitter(), 6, 64, initial, 16 << 10, false).unwrap();
        let (mut client, server) = pair();
        for round in 0..rounds {
            let message = [round; 100];
            client.write_all(&message).unwrap();
            let (got, _) = receive_growing(&mut ring, &mut bufs, server.as_raw_fd(), 100, true);
            assert_eq!(got, message);
        }
        let resident = bufs.buffers.resident_pages();
        bufs.unregister(&ring.submitter()).unwrap();
        resident
    }

    #[test]
    fn a_quiet_ring_touches_only_the_buffers_it_put_in() {
        // 200 receives walk a full ring of 64 buffers three times over: each buffer's first
        // page is written. From a ring of 4 that never ran dry, only those 4 pages are.
        let full = resident_after_small_receives(64, 200);
        let growing = resident_after_small_receives(4, 200);
        assert!(full >= 64, "a full ring touched only {full} pages");
        assert!(growing <= 4, "a ring of 4 buffers touched {growing} pages");
    }

    #[test]
    fn released_pages_leave_the_ring_resident_in_nothing_and_working() {
        let mut ring = ring();
        let mut bufs = BufRing::register(&ring.submitter(), 7, 64, 16 << 10, false).unwrap();
        let (mut client, server) = pair();
        let mut round_trip = |bufs: &mut BufRing, round: u8| {
            let message = [round; 100];
            client.write_all(&message).unwrap();
            let (got, _) = receive(&mut ring, bufs, server.as_raw_fd(), 100);
            assert_eq!(got, message);
        };
        for round in 0..100 {
            round_trip(&mut bufs, round);
        }
        assert!(bufs.used_since_release());
        assert!(bufs.buffers.resident_pages() >= 64);
        bufs.release_pages().unwrap();
        assert_eq!(bufs.buffers.resident_pages(), 0);
        assert!(!bufs.used_since_release());
        // The ring still works: each buffer faults in again as the kernel fills it.
        for round in 100..200 {
            round_trip(&mut bufs, round);
        }
        assert!(bufs.buffers.resident_pages() >= 64);
        bufs.unregister(&ring.submitter()).unwrap();
    }

    #[test]
    fn odd_sizes_are_refused() {
        let ring = ring();
        let err = BufRing::register(&ring.submitter(), 4, 3, 64, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
