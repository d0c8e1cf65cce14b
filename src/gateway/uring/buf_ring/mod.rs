//! The provided-buffer ring: receive buffers shared by every connection of one reactor, which
//! the kernel picks from only when data arrives, so an idle connection holds no buffer.
//!
//! Invariants:
//! - The ring's entry array and the buffers are our own anonymous mappings; the kernel reads
//!   entries up to the tail we publish and writes into a buffer only while it owns it (from
//!   the moment its entry is published until a completion consumed all of it).
//! - The kernel takes entries strictly in ring order, and every completion consumes from the
//!   entry at its head: `queue` mirrors the ring (its front is the kernel's head), so a
//!   completion of `len` bytes is accounted by walking `queue` from the front, whatever the
//!   mode. The completion's buffer id must be the front's: if it is not, our copy and the
//!   kernel's ring disagree, and that is a bug we stop on rather than hand out wrong bytes.
//!   - Whole buffers (the default): each buffer a completion touches is used up; a plain
//!     receive touches one, a bundle (`IORING_RECVSEND_BUNDLE`) several, all full but the last.
//!   - Incremental consumption (`IOU_PBUF_RING_INC`, Linux 6.12): a buffer serves many
//!     receives, of any connection; each one's bytes start where the previous ended
//!     (`consumed`), and the buffer stays at the head until a receive fills it to the end.
//!     The kernel says so with `IORING_CQE_F_BUF_MORE`, but for a bundle retried inside the
//!     kernel that flag describes its first round only: the walk, not the flag, decides.
//! - Bytes are lent to the caller as a `Filled` (one slice per buffer touched) and the buffers
//!   used up go back into the ring when it is dropped: nothing is copied, and nothing reads a
//!   buffer the kernel may be writing (a partly used buffer is read only below `consumed`).
//! - The memory is unmapped only after `unregister`; a ring dropped without it is leaked, not
//!   freed under the kernel.
//! - Buffers in service are in the ring or lent out; the rest were never used (`fresh..count`)
//!   or were taken out of service (`parked`). The kernel takes buffers first in, first out, so
//!   every buffer in service gets written in turn and its first page becomes resident:
//!   starting with few, growing on demand ([`BufRing::grow`], when a receive finds the ring
//!   empty) and shrinking after a burst ([`BufRing::shrink_to`]: buffers coming back are parked
//!   until few enough are in service) keeps a quiet reactor's buffers at a few pages.
//! - [`BufRing::release_pages`] hands the buffers' pages back (`MADV_DONTNEED`: they read as
//!   zeros and fault in again when next written). No buffer is lent out then (`&mut self`);
//!   the caller makes sure the kernel is not filling one at that moment (see its doc). A
//!   partly used incremental buffer loses only bytes already read; the kernel writes the rest
//!   later, into a fresh page.

use std::collections::VecDeque;
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
    /// The buffers in the ring, in ring order: the front is the one the kernel fills next.
    queue: VecDeque<u16>,
    /// Buffers in service: in the ring, or lent out in a `Filled`.
    in_service: u16,
    /// At most this many in service: buffers coming back past it are parked.
    cap: u16,
    /// Buffers `0..fresh` have been in service at some point; the rest were never touched.
    fresh: u16,
    /// Buffers taken out of service, put back first when the ring grows.
    parked: Vec<u16>,
    /// Bytes of each buffer already handed out (incremental consumption only).
    consumed: Box<[u32]>,
    incremental: bool,
    registered: bool,
    /// A buffer was lent out since the pages were last released.
    used_since_release: bool,
    /// Buffers used up since [`BufRing::end_batch`], and the most in one batch since
    /// [`BufRing::take_peak`].
    used_in_batch: u16,
    peak: u16,
    /// Where the last `Filled` points (reused: no allocation per completion).
    pieces: Vec<Piece>,
}

/// One buffer's part of a completion.
#[derive(Debug, Clone, Copy)]
struct Piece {
    bid: u16,
    start: u32,
    len: u32,
    /// The completion used the buffer up: it goes back into the ring once read.
    used_up: bool,
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
            queue: VecDeque::with_capacity(usize::from(count)),
            in_service: 0,
            cap: 0,
            fresh: 0,
            parked: Vec::new(),
            consumed: vec![0; usize::from(count)].into_boxed_slice(),
            incremental: false,
            registered: false,
            used_since_release: false,
            used_in_batch: 0,
            peak: 0,
            pieces: Vec::new(),
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

    /// How many buffers are in service (in the ring or lent out).
    pub fn in_service(&self) -> u16 {
        self.in_service
    }

    /// How many buffers have ever been in service (the rest were never touched).
    pub fn published(&self) -> u16 {
        self.fresh
    }

    /// Doubles the buffers in service (at most to the ring's size), after a receive found it
    /// empty. Returns how many were added: none once every buffer is in.
    pub fn grow(&mut self) -> u16 {
        let added = self.in_service.min(self.count - self.in_service);
        self.add_buffers(added);
        added
    }

    /// Takes buffers out of service until at most `target` (at least one) are in it: those
    /// in the ring stay there until the kernel has used them, and are parked when they come
    /// back instead of going into the ring again. Returns the buffers in service now.
    pub fn shrink_to(&mut self, target: u16) -> u16 {
        self.cap = target.max(1).min(self.in_service);
        self.in_service
    }

    /// Puts `n` buffers in the ring, parked ones first (the lowest ids), then never-used ones,
    /// and publishes them.
    fn add_buffers(&mut self, n: u16) {
        if n == 0 {
            return;
        }
        // Parked buffers were in service before: their pages are the ones most likely still
        // resident, and taking the lowest keeps the buffers in use packed at the start.
        self.parked.sort_unstable_by(|a, b| b.cmp(a));
        for _ in 0..n {
            let bid = match self.parked.pop() {
                Some(bid) => bid,
                None => {
                    self.fresh += 1;
                    self.fresh - 1
                }
            };
            self.push(bid);
        }
        self.in_service += n;
        self.cap = self.in_service;
        self.publish();
    }

    /// Whether a buffer was lent out since the pages were last released.
    pub fn used_since_release(&self) -> bool {
        self.used_since_release
    }

    /// Ends a batch of completions: the most buffers used up by one batch is what
    /// [`BufRing::take_peak`] reports.
    pub fn end_batch(&mut self) {
        self.peak = self.peak.max(self.used_in_batch);
        self.used_in_batch = 0;
    }

    /// Checks our copy of the ring against the kernel's: with incremental buffers the kernel
    /// writes the head entry's address and length back as it consumes it, so once every
    /// completion it posted has been taken through [`BufRing::filled`], the head entry must
    /// start at `consumed` of the buffer at our front. A completion read without being
    /// accounted would leave us behind, and the next one's bytes read from the wrong offset
    /// of the same buffer, which the buffer id alone cannot show. Returns the mismatch, if any.
    ///
    /// Call only between two `io_uring_enter`s with no completion waiting (the kernel writes
    /// entries only inside them, with `DEFER_TASKRUN`).
    pub fn head_mismatch(&self) -> Option<String> {
        if !self.incremental {
            return None;
        }
        let &bid = self.queue.front()?;
        let slot = usize::from(self.tail.wrapping_sub(self.queue.len() as u16) & (self.count - 1));
        // SAFETY: `slot` < `count`, inside the entry mapping; the kernel does not write entries
        // outside `io_uring_enter` (see the doc), so this read races with nothing.
        let entry = unsafe {
            std::ptr::read_volatile(self.entries.ptr.as_ptr().cast::<BufRingEntry>().add(slot))
        };
        let consumed = self.consumed[usize::from(bid)];
        let base = self.buffers.ptr.as_ptr() as u64 + u64::from(bid) * u64::from(self.buf_len);
        let expected = (bid, base + u64::from(consumed), self.buf_len - consumed);
        let found = (entry.bid(), entry.addr(), entry.len());
        (found != expected).then(|| {
            format!(
                "the kernel's head entry is (bid, addr, len) {found:?}, ours {expected:?} \
                 (buffer {bid} consumed to {consumed})"
            )
        })
    }

    /// The most buffers one batch of completions used up since the last call.
    pub fn take_peak(&mut self) -> u16 {
        std::mem::take(&mut self.peak)
    }

    /// Hands the pages of every buffer back to the kernel: what was resident is freed, and a
    /// buffer's page faults in again (zeroed) when the kernel next writes into it.
    ///
    /// Call only when no completion that carries a buffer is waiting to be reaped and the
    /// kernel cannot be filling one: with `DEFER_TASKRUN`, between two `io_uring_enter`s of
    /// the ring's thread, once its completion queue is empty (and has not overflowed).
    /// Otherwise received bytes not yet read may be zeroed.
    pub fn release_pages(&mut self) -> io::Result<()> {
        let len = usize::from(self.fresh) * self.buf_len as usize;
        if len > 0 {
            // SAFETY: the range is inside our own anonymous mapping (`fresh` buffers of
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

    /// The `len` bytes a completion delivered, starting in buffer `bid` (the CQE's buffer id)
    /// and, for a bundle, going on in the buffers behind it in the ring. The buffers it used
    /// up go back into the ring (or are parked) when the returned `Filled` is dropped.
    ///
    /// Panics if `bid` is not the buffer at the ring's head, or `len` runs past the buffers in
    /// the ring: the kernel's ring and ours would disagree.
    pub fn filled(&mut self, bid: u16, len: usize) -> Filled<'_> {
        assert_eq!(
            self.queue.front().copied(),
            Some(bid),
            "a completion in buffer {bid}, but the ring's head is {:?}",
            self.queue.front()
        );
        self.pieces.clear();
        let mut left = len;
        while left > 0 {
            let Some(&bid) = self.queue.front() else {
                panic!("a completion of {len} bytes runs past the buffers in the ring");
            };
            let index = usize::from(bid);
            let start = if self.incremental {
                self.consumed[index]
            } else {
                0
            };
            let room = (self.buf_len - start) as usize;
            let take = left.min(room);
            // Whole buffers are used up by any receive; incremental ones when filled.
            let used_up = !self.incremental || take == room;
            if used_up {
                self.queue.pop_front();
                self.consumed[index] = 0;
                self.used_in_batch = self.used_in_batch.saturating_add(1);
            } else {
                self.consumed[index] += take as u32;
            }
            self.pieces.push(Piece {
                bid,
                start,
                len: take as u32,
                used_up,
            });
            left -= take;
        }
        self.used_since_release = true;
        let left = self.queue.len();
        Filled {
            ring: self,
            len,
            left,
        }
    }

    /// Unregisters the group and frees the memory. Call only once no receive that selects from
    /// this group is in flight (or the ring has been told to cancel them and they completed).
    pub fn unregister(mut self, submitter: &Submitter<'_>) -> io::Result<()> {
        submitter.unregister_buf_ring(self.group)?;
        self.registered = false;
        Ok(())
    }

    /// A buffer used up and read: back into the ring, or parked if over the cap.
    fn give_back(&mut self, bid: u16) {
        if self.in_service > self.cap {
            self.in_service -= 1;
            self.parked.push(bid);
        } else {
            self.push(bid);
        }
    }

    /// Writes buffer `bid` into the next free entry; the kernel sees it after `publish`.
    fn push(&mut self, bid: u16) {
        // At most `in_service` <= `count` buffers are ever in the ring, each once, so the
        // entry written is never one the kernel has not consumed (with incremental buffers
        // the kernel writes the head entry's address and length back: that entry is in use,
        // so it is not this one).
        debug_assert!(self.queue.len() < usize::from(self.count));
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
        self.queue.push_back(bid);
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

/// Received bytes lent from the ring, one slice per buffer they landed in; the buffers they
/// used up go back when this is dropped.
#[derive(Debug)]
pub struct Filled<'a> {
    ring: &'a mut BufRing,
    len: usize,
    /// Buffers left in the ring behind these bytes.
    left: usize,
}

impl Filled<'_> {
    /// The bytes, in the order they arrived.
    pub fn slices(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.ring.pieces.iter().map(|piece| {
            let offset = usize::from(piece.bid) * self.ring.buf_len as usize + piece.start as usize;
            // SAFETY: `filled` cut each piece inside its buffer (`start + len <= buf_len`), and
            // the buffer inside the mapping; the kernel wrote these bytes before posting the
            // completion and does not write them again: a used-up buffer is not back in the
            // ring until this is dropped, and a partly used one's later receives land after
            // `start + len`.
            unsafe {
                std::slice::from_raw_parts(
                    self.ring.buffers.ptr.as_ptr().add(offset),
                    piece.len as usize,
                )
            }
        })
    }

    /// How many bytes in all.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte came (never, for a completion that selected a buffer).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether these bytes took the last buffer in the ring. A bundle that empties the ring
    /// ends its multishot receive with them (not with ENOBUFS, as a plain receive does on
    /// its next try): the ring ran dry all the same.
    pub fn emptied_ring(&self) -> bool {
        self.left == 0
    }

    /// How many buffers were left in the ring behind these bytes (a partly used one counts).
    pub fn left_in_ring(&self) -> usize {
        self.left
    }

    /// How many buffers the bytes span.
    pub fn buffers(&self) -> usize {
        self.ring.pieces.len()
    }
}

impl Drop for Filled<'_> {
    fn drop(&mut self) {
        let mut gave_back = false;
        for i in 0..self.ring.pieces.len() {
            let piece = self.ring.pieces[i];
            if piece.used_up {
                self.ring.give_back(piece.bid);
                gave_back = true;
            }
        }
        self.ring.pieces.clear();
        if gave_back {
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
mod tests;
