//! Bytes waiting to be sent on one connection, without sockets: a readiness driver gathers
//! them as slices ([`Outgoing::gather`]) and reports what the kernel took
//! ([`Outgoing::consume`]); a completion driver takes them over ([`Outgoing::hand_over`]) and
//! gives back what its send did not take ([`Outgoing::completed`]).
//!
//! Pushes made during one pass of the driver go into a per-driver arena and are chained
//! per connection (head/tail indices in the connection), so a connection that receives ten
//! messages in a pass gets one `writev`, and no connection owns a queue while it is idle.
//! Only bytes the kernel refused (send buffer full) move into a per-connection backlog,
//! which exists only until it drains. The backlog's size is what the slow-consumer cap
//! measures. Invariant: if a backlog exists, new bytes go behind it, never around it: pushes
//! to a backlogged connection go straight into its backlog, so the cap sees them at once
//! rather than at the end of the pass.
//!
//! The backlog bounds what it keeps alive beyond what it counts. A slice under
//! [`COPY_BELOW`] bytes may be a small share of a large read buffer (a 20-byte echo pinning a
//! 64 KiB read chunk), so a backlog keeps at most [`SHARED_SMALL`] of them shared (one send's
//! worth, what its next send takes) and copies the small slices after those into a buffer of
//! its own. Larger slices are whole frames with at most a read's worth of buffer around them,
//! and shared by every connection a message fans out to: always kept shared. The shared
//! allowance is what spares a completion driver a copy: its connections get a backlog whenever
//! a pass pushes to them while their send is in flight (a fan-out to readers a little slower
//! than the reactor), and those pushes now wait there as they came, for the next send.
//!
//! A completion driver's send in flight owns its `Bytes` (they are moved out, not copied or
//! shared), and its length is counted as in flight: queued bytes for the cap like the
//! backlog's, until the completion. Only what the kernel did not take comes back, to the
//! front of the backlog, still shared. So a connection keeps at most 2 × [`SHARED_SMALL`]
//! small slices shared at any time (in flight and in the backlog together), and what the cap
//! counts is the same on both kinds of driver: the bytes, never the buffers around them.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes, BytesMut};

const NIL: u32 = u32::MAX;
/// Slices per `writev`; well under IOV_MAX (1024) and enough to batch a pass's pushes.
pub(crate) const MAX_IOV: usize = 64;
/// Slices shorter than this are copied when they enter a backlog that already keeps
/// [`SHARED_SMALL`] of them shared (see the module comment).
const COPY_BELOW: usize = 64 << 10;
/// Small slices a backlog keeps shared before it copies them: one send's worth.
const SHARED_SMALL: usize = MAX_IOV;

struct Entry {
    bytes: Bytes,
    next: u32,
    /// In a chain's first entry: the chain's last (it fits in the padding, which keeps the
    /// connection's part at 16 bytes).
    tail: u32,
}

/// This pass's pushes, chained per connection. Cleared after every flush.
#[derive(Default)]
pub(crate) struct PushArena {
    entries: Vec<Entry>,
}

impl PushArena {
    /// Drops every entry (the chains were all taken by the flush of this pass).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}

/// The per-connection part: a chain into the arena, the bytes a completion driver's send in
/// flight holds, and, under backpressure, a backlog. 16 bytes.
pub(crate) struct Outgoing {
    head: u32,
    in_flight: u32,
    backlog: Option<Box<Backlog>>,
}

struct Backlog {
    queue: VecDeque<Bytes>,
    /// Small slices copied together, to be queued after `queue` (see [`Backlog::push`]).
    small: BytesMut,
    bytes: usize,
    /// Small slices this backlog took shared, not copied, since it was made (never
    /// decreased: an upper bound of how many it holds).
    shared: usize,
}

impl Backlog {
    fn new() -> Box<Backlog> {
        Box::new(Backlog {
            queue: VecDeque::new(),
            small: BytesMut::new(),
            bytes: 0,
            shared: 0,
        })
    }

    fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.bytes += bytes.len();
        let small = bytes.len() < COPY_BELOW;
        if small && self.shared >= SHARED_SMALL {
            // Gathered into one buffer: a flood of small frames costs its bytes, not a queue
            // entry and an allocation each, and keeps no one else's buffer alive.
            self.small.extend_from_slice(&bytes);
            if self.small.len() >= COPY_BELOW {
                self.seal();
            }
        } else {
            self.shared += usize::from(small);
            self.seal();
            self.queue.push_back(bytes);
        }
    }

    /// Moves the gathered small slices to the queue, in order.
    fn seal(&mut self) {
        if !self.small.is_empty() {
            self.queue
                .push_back(std::mem::take(&mut self.small).freeze());
        }
    }
}

/// What a flush left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Everything is in the kernel.
    All,
    /// This many bytes wait for the socket to become writable.
    Backlogged(usize),
}

impl Default for Outgoing {
    fn default() -> Self {
        Outgoing {
            head: NIL,
            in_flight: 0,
            backlog: None,
        }
    }
}

impl Outgoing {
    /// Appends `bytes` to this connection's chain. Returns true if the chain was empty
    /// (the caller then marks the connection dirty for this pass's flush).
    pub(crate) fn push(&mut self, arena: &mut PushArena, bytes: Bytes) -> bool {
        if let Some(backlog) = self.backlog.as_mut() {
            backlog.push(bytes);
            return false;
        }
        let index = arena.entries.len() as u32;
        arena.entries.push(Entry {
            bytes,
            next: NIL,
            tail: index,
        });
        if self.head == NIL {
            self.head = index;
            true
        } else {
            let head = &mut arena.entries[self.head as usize];
            let tail = std::mem::replace(&mut head.tail, index);
            arena.entries[tail as usize].next = index;
            false
        }
    }

    /// Moves the chain's head to the next entry (the chain's tail goes with it).
    fn advance_head(&mut self, arena: &mut PushArena) {
        let entry = &arena.entries[self.head as usize];
        let (next, tail) = (entry.next, entry.tail);
        self.head = next;
        if next != NIL {
            arena.entries[next as usize].tail = tail;
        }
    }

    /// Whether nothing waits to be written, in the arena or the backlog.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.head == NIL && self.backlog.is_none() && self.in_flight == 0
    }

    /// Bytes waiting in the backlog.
    pub(crate) fn backlog_bytes(&self) -> usize {
        self.backlog.as_ref().map_or(0, |b| b.bytes)
    }

    /// Bytes the connection holds beyond this pass: the backlog and a send in flight.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.backlog_bytes() + self.in_flight as usize
    }

    /// Forgets the chain and the backlog (the connection is going away).
    pub(crate) fn discard(&mut self) {
        *self = Outgoing::default();
    }

    /// Sends what waits through `write` (one `writev`, say) until everything is out or the
    /// kernel takes less than it was offered; what is left stays queued, in order.
    pub(crate) fn send_with(
        &mut self,
        arena: &mut PushArena,
        mut write: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<Flushed> {
        loop {
            self.prepare(arena);
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let count = self.gather(arena, &mut slices);
            if count == 0 {
                return Ok(Flushed::All);
            }
            let offered: usize = slices[..count].iter().map(|s| s.len()).sum();
            let written = match write(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            self.consume(arena, written);
            if written < offered {
                return Ok(Flushed::Backlogged(self.park(arena)));
            }
        }
    }

    /// Makes [`Outgoing::gather`] see everything in order: with a backlog, this pass's chain
    /// joins it (new bytes never go around a backlog) and its small slices are sealed.
    pub(crate) fn prepare(&mut self, arena: &mut PushArena) {
        if self.backlog.is_some() {
            self.chain_into_backlog(arena);
            if let Some(backlog) = self.backlog.as_mut() {
                backlog.seal();
            }
        }
    }

    /// The next bytes to send, oldest first: up to `slices.len()` non-empty slices from the
    /// backlog, or else from this pass's chain. Returns how many were filled; zero when nothing
    /// waits. Call [`Outgoing::prepare`] first.
    pub(crate) fn gather<'a>(&'a self, arena: &'a PushArena, slices: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        self.for_each_pending(arena, slices.len(), |bytes| {
            slices[count] = IoSlice::new(bytes);
            count += 1;
        });
        count
    }

    fn for_each_pending<'a>(
        &'a self,
        arena: &'a PushArena,
        max: usize,
        mut f: impl FnMut(&'a Bytes),
    ) {
        if let Some(backlog) = self.backlog.as_ref() {
            backlog.queue.iter().take(max).for_each(f);
            return;
        }
        let mut taken = 0;
        let mut cursor = self.head;
        while cursor != NIL && taken < max {
            let entry = &arena.entries[cursor as usize];
            if !entry.bytes.is_empty() {
                f(&entry.bytes);
                taken += 1;
            }
            cursor = entry.next;
        }
    }

    /// The kernel took `written` bytes of what was gathered last.
    pub(crate) fn consume(&mut self, arena: &mut PushArena, mut written: usize) {
        if let Some(backlog) = self.backlog.as_mut() {
            backlog.bytes -= written;
            while written > 0 {
                let front = backlog
                    .queue
                    .front_mut()
                    .expect("written bytes came from the queue");
                if written < front.len() {
                    front.advance(written);
                    return;
                }
                written -= front.len();
                backlog.queue.pop_front();
            }
            if backlog.queue.is_empty() && backlog.small.is_empty() {
                // Drained: free the backlog so an idle connection holds no queue.
                self.backlog = None;
            }
            return;
        }
        while self.head != NIL {
            let entry = &mut arena.entries[self.head as usize];
            let len = entry.bytes.len();
            if written < len {
                entry.bytes.advance(written);
                return;
            }
            written -= len;
            entry.bytes = Bytes::new();
            self.advance_head(arena);
        }
    }

    /// The kernel takes no more for now: what is left of this pass's chain moves into the
    /// backlog (the arena is cleared at the end of the pass). Returns the backlog's bytes.
    pub(crate) fn park(&mut self, arena: &mut PushArena) -> usize {
        if self.head != NIL {
            self.chain_into_backlog(arena);
        }
        if let Some(backlog) = self.backlog.as_mut() {
            backlog.seal();
        }
        self.backlog_bytes()
    }

    fn chain_into_backlog(&mut self, arena: &mut PushArena) {
        let backlog = self.backlog.get_or_insert_with(Backlog::new);
        while self.head != NIL {
            let entry = &mut arena.entries[self.head as usize];
            backlog.push(std::mem::take(&mut entry.bytes));
            self.head = entry.next;
        }
    }

    // ---- a completion driver ---------------------------------------------------------------

    /// Moves the next bytes to send into `out` (at most `max` non-empty slices, oldest first):
    /// the driver owns them until the send's completion, and they count as in flight. What is
    /// left of this pass's chain beyond `max` slices joins the backlog. Only when no send is in
    /// flight.
    pub(crate) fn hand_over(&mut self, arena: &mut PushArena, max: usize, out: &mut Vec<Bytes>) {
        debug_assert_eq!(self.in_flight, 0, "one send in flight at a time");
        let mut taken = 0;
        if self.backlog.is_some() {
            self.chain_into_backlog(arena); // empty but for pushes made before it existed
        }
        if let Some(backlog) = self.backlog.as_mut() {
            backlog.seal();
            while out.len() < max {
                let Some(bytes) = backlog.queue.pop_front() else {
                    break;
                };
                taken += bytes.len();
                out.push(bytes);
            }
            backlog.bytes -= taken;
            if backlog.queue.is_empty() {
                self.backlog = None;
            }
        } else {
            while self.head != NIL && out.len() < max {
                let bytes = std::mem::take(&mut arena.entries[self.head as usize].bytes);
                self.advance_head(arena);
                if !bytes.is_empty() {
                    taken += bytes.len();
                    out.push(bytes);
                }
            }
            if self.head != NIL {
                self.chain_into_backlog(arena);
                if let Some(backlog) = self.backlog.as_mut() {
                    backlog.seal();
                }
            }
        }
        self.in_flight = u32::try_from(taken).expect("a send of at most 64 messages fits in u32");
    }

    /// The send of what [`Outgoing::hand_over`] gave out completed and the kernel took
    /// `written` bytes of `held` (the bytes the driver held, in order; left empty). What it
    /// did not take goes back to the front of the backlog, before anything queued since
    /// (in the backlog, then in this pass's chain, which joins it).
    pub(crate) fn completed(
        &mut self,
        arena: &mut PushArena,
        mut written: usize,
        held: &mut Vec<Bytes>,
    ) {
        self.in_flight = 0;
        let mut rest = held.drain(..);
        let mut first = loop {
            match rest.next() {
                None => return,
                Some(bytes) if bytes.len() <= written => written -= bytes.len(),
                Some(bytes) => break bytes,
            }
        };
        first.advance(written);
        let mut front = Backlog::new();
        front.push(first);
        rest.for_each(|bytes| front.push(bytes));
        front.seal();
        if let Some(mut later) = self.backlog.take() {
            // Sealed: the small slices gathered since keep their place, behind.
            later.seal();
            front.bytes += later.bytes;
            // At most 2 × SHARED_SMALL, and no more small slices are taken shared until the
            // backlog drains: the send it came back from held the rest.
            front.shared += later.shared;
            front.queue.extend(later.queue.drain(..));
        }
        self.backlog = Some(front);
        if self.head != NIL {
            self.chain_into_backlog(arena);
        }
    }

    /// The send in flight ended in an error: its bytes are not coming back.
    pub(crate) fn send_failed(&mut self) {
        self.in_flight = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A socket that accepts a fixed number of bytes per call, then would block.
    struct Throttled {
        written: Vec<u8>,
        per_call: Vec<usize>,
        calls: usize,
    }

    impl Write for Throttled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let Some(&allow) = self.per_call.get(self.calls) else {
                return Err(io::ErrorKind::WouldBlock.into());
            };
            self.calls += 1;
            let mut left = allow;
            for buf in bufs {
                let take = left.min(buf.len());
                self.written.extend_from_slice(&buf[..take]);
                left -= take;
            }
            Ok(allow - left)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What the epoll driver does: one `writev` per gathered batch.
    fn send(
        out: &mut Outgoing,
        socket: &mut Throttled,
        arena: &mut PushArena,
    ) -> io::Result<Flushed> {
        out.send_with(arena, |slices| socket.write_vectored(slices))
    }

    fn push_all(out: &mut Outgoing, arena: &mut PushArena, parts: &[&'static [u8]]) {
        for part in parts {
            out.push(arena, Bytes::from_static(part));
        }
    }

    #[test]
    fn whole_chain_goes_out_in_one_writev() {
        let mut arena = PushArena::default();
        let mut out = Outgoing::default();
        assert!(
            out.push(&mut arena, Bytes::from_static(b"ab")),
            "first push marks dirty"
        );
        assert!(!out.push(&mut arena, Bytes::from_static(b"cd")));
        let mut socket = Throttled {
            written: vec![],
            per_call: vec![usize::MAX],
            calls: 0,
        };
        assert_eq!(
            send(&mut out, &mut socket, &mut arena).unwrap(),
            Flushed::All
        );
        assert_eq!(socket.written, b"abcd");
        assert_eq!(socket.calls, 1);
        assert!(out.is_empty());
    }

    #[test]
    fn partial_write_backlogs_the_rest_in_order() {
        let mut arena = PushArena::default();
        let mut out = Outgoing::default();
        push_all(&mut out, &mut arena, &[b"hello", b" ", b"world"]);
        let mut socket = Throttled {
            written: vec![],
            per_call: vec![3],
            calls: 0,
        };
        assert_eq!(
            send(&mut out, &mut socket, &mut arena).unwrap(),
            Flushed::Backlogged(8)
        );
        arena.clear();
        // Later pushes queue behind the backlog, never around it.
        push_all(&mut out, &mut arena, &[b"!"]);
        socket.per_call = vec![3, 2, 4];
        socket.calls = 0;
        // A short write means the kernel is full: each flush stops there, the next writable
        // event resumes it.
        assert_eq!(
            send(&mut out, &mut socket, &mut arena).unwrap(),
            Flushed::Backlogged(6)
        );
        assert_eq!(
            send(&mut out, &mut socket, &mut arena).unwrap(),
            Flushed::Backlogged(4)
        );
        assert_eq!(
            send(&mut out, &mut socket, &mut arena).unwrap(),
            Flushed::All
        );
        assert_eq!(socket.written, b"hello world!");
        assert!(out.is_empty(), "a drained backlog is freed");
    }

    #[test]
    fn would_block_at_once_keeps_everything() {
        let mut arena = PushArena::default();
        let mut out = Outgoing::default();
        push_all(&mut out, &mut arena, &[b"abc", b"", b"de"]);
        let mut socket = Throttled {
            written: vec![],
            per_call: vec![],
            calls: 0,
        };
        assert_eq!(
            send(&mut out, &mut socket, &mut arena).unwrap(),
            Flushed::Backlogged(5)
        );
        assert_eq!(out.backlog_bytes(), 5);
    }

    #[test]
    fn more_than_one_iov_batch() {
        let mut arena = PushArena::default();
        let mut out = Outgoing::default();
        let mut expected = Vec::new();
        for i in 0..(MAX_IOV * 2 + 5) {
            let byte = (i % 251) as u8;
            out.push(&mut arena, Bytes::from(vec![byte; 3]));
            expected.extend_from_slice(&[byte; 3]);
        }
        let mut socket = Throttled {
            written: vec![],
            per_call: vec![usize::MAX; 4],
            calls: 0,
        };
        assert_eq!(
            send(&mut out, &mut socket, &mut arena).unwrap(),
            Flushed::All
        );
        assert_eq!(socket.written, expected);
        assert_eq!(socket.calls, 3);
    }

    /// `count` small slices, each of a buffer of its own that is far larger (as a read chunk
    /// is): the slices, and the buffers to ask whether a backlog still shares them.
    fn slices_of_big_buffers(count: usize, first: u8) -> (Vec<Bytes>, Vec<Bytes>) {
        let bigs: Vec<Bytes> = (0..count)
            .map(|i| Bytes::from(vec![first.wrapping_add(i as u8); 64 << 10]))
            .collect();
        let slices = bigs.iter().map(|big| big.slice(0..10)).collect();
        (slices, bigs)
    }

    fn shared_count(bigs: &[Bytes]) -> usize {
        bigs.iter().filter(|big| !big.is_unique()).count()
    }

    #[test]
    fn a_backlog_keeps_one_sends_worth_of_small_slices_shared_and_copies_the_rest() {
        let mut arena = PushArena::default();
        let mut out = Outgoing::default();
        push_all(&mut out, &mut arena, &[b"abcdef"]);
        let mut socket = Throttled {
            written: vec![],
            per_call: vec![2],
            calls: 0,
        };
        assert_eq!(
            send(&mut out, &mut socket, &mut arena).unwrap(),
            Flushed::Backlogged(4)
        );
        arena.clear();
        // "cdef" is the backlog's first shared small slice; room for SHARED_SMALL - 1 more.
        let (slices, bigs) = slices_of_big_buffers(SHARED_SMALL + 2, 1);
        for (i, slice) in slices.iter().enumerate() {
            assert!(!out.push(&mut arena, slice.clone()));
            assert_eq!(out.backlog_bytes(), 4 + 10 * (i + 1), "counted at once");
        }
        drop(slices);
        assert!(
            bigs[..SHARED_SMALL - 1].iter().all(|big| !big.is_unique()),
            "one send's worth waits as it came, not copied"
        );
        assert!(
            bigs[SHARED_SMALL - 1..].iter().all(Bytes::is_unique),
            "the small slices past it are copied: they keep no big buffer alive"
        );
        // A large slice is kept as it is (a whole frame, maybe shared by a fan-out).
        let large = Bytes::from(vec![9u8; COPY_BELOW]);
        out.push(&mut arena, large.clone());
        assert!(!large.is_unique());
        let queued = 4 + 10 * bigs.len() + COPY_BELOW;
        assert_eq!(out.backlog_bytes(), queued);
        socket.per_call = vec![usize::MAX; 8];
        socket.calls = 0;
        assert_eq!(
            send(&mut out, &mut socket, &mut arena).unwrap(),
            Flushed::All
        );
        let mut expected = b"cdef".to_vec();
        bigs.iter()
            .for_each(|big| expected.extend_from_slice(&big[..10]));
        expected.extend_from_slice(&large);
        assert_eq!(socket.written[2..], expected[..]);
        assert!(out.is_empty());
        assert_eq!(shared_count(&bigs), 0);
    }

    /// The fan-out case on a completion driver: what a pass pushes while the connection's send
    /// is in flight is parked at the end of the pass, and goes out in the next send as it was
    /// pushed (the same buffer, not a copy of it).
    #[test]
    fn pushes_while_a_send_is_in_flight_wait_uncopied_for_the_next_send() {
        let mut arena = PushArena::default();
        let mut out = Outgoing::default();
        push_all(&mut out, &mut arena, &[b"first"]);
        let mut held = Vec::new();
        out.hand_over(&mut arena, MAX_IOV, &mut held);
        arena.clear();
        // Next pass: a fan-out frame (a buffer of its own, shared by other connections) and a
        // small share of a big buffer, both pushed while the send is in flight.
        let frame = Bytes::from(vec![7u8; 100]);
        let (slices, bigs) = slices_of_big_buffers(1, 3);
        assert!(out.push(&mut arena, frame.clone()));
        out.push(&mut arena, slices[0].clone());
        drop(slices);
        assert_eq!(out.park(&mut arena), 110);
        arena.clear();
        assert_eq!(
            out.queued_bytes(),
            115,
            "in flight and waiting, both counted"
        );
        out.completed(&mut arena, 5, &mut held);
        out.hand_over(&mut arena, MAX_IOV, &mut held);
        assert_eq!(held.len(), 2);
        assert_eq!(
            held[0].as_ptr(),
            frame.as_ptr(),
            "the frame itself, not a copy"
        );
        assert_eq!(
            held[1].as_ptr(),
            bigs[0].as_ptr(),
            "the slice itself, not a copy"
        );
        out.completed(&mut arena, 110, &mut held);
        assert!(out.is_empty());
        assert!(frame.is_unique() && bigs[0].is_unique(), "let go once sent");
    }

    /// However the sends complete (here: the kernel takes nothing), a connection keeps at most
    /// two sends' worth of small slices shared; the rest are copied, and all go out in order.
    #[test]
    fn a_connection_keeps_at_most_two_sends_of_small_slices_shared() {
        let mut arena = PushArena::default();
        let mut out = Outgoing::default();
        let (slices, bigs) = slices_of_big_buffers(SHARED_SMALL * 4, 0);
        drop(slices); // each made again as it is pushed: an unpushed one keeps its buffer
        let mut expected = Vec::new();
        let mut pushed = bigs.iter().map(|big| big.slice(0..10));
        for slice in pushed.by_ref().take(MAX_IOV) {
            expected.extend_from_slice(&slice);
            out.push(&mut arena, slice);
        }
        let mut held = Vec::new();
        out.hand_over(&mut arena, MAX_IOV, &mut held);
        assert_eq!(held.len(), MAX_IOV);
        for round in 0..3 {
            arena.clear();
            for slice in pushed.by_ref().take(SHARED_SMALL) {
                expected.extend_from_slice(&slice);
                out.push(&mut arena, slice);
            }
            out.park(&mut arena);
            assert!(
                shared_count(&bigs) <= 2 * SHARED_SMALL,
                "round {round}: {} buffers kept alive",
                shared_count(&bigs)
            );
            out.completed(&mut arena, 0, &mut held);
            assert!(shared_count(&bigs) <= 2 * SHARED_SMALL);
            out.hand_over(&mut arena, MAX_IOV, &mut held);
        }
        assert_eq!(shared_count(&bigs), 2 * SHARED_SMALL);
        let mut written = Vec::new();
        while !held.is_empty() {
            written.extend_from_slice(&held.concat());
            let all = held.iter().map(Bytes::len).sum();
            out.completed(&mut arena, all, &mut held);
            out.hand_over(&mut arena, MAX_IOV, &mut held);
        }
        assert_eq!(written, expected);
        assert!(out.is_empty());
        assert_eq!(shared_count(&bigs), 0);
    }

    #[test]
    fn a_completion_driver_owns_what_it_sends_and_gives_back_what_was_not_taken() {
        let mut arena = PushArena::default();
        let mut out = Outgoing::default();
        let big = Bytes::from(vec![9u8; 256 << 10]);
        out.push(&mut arena, Bytes::from_static(b"abc"));
        out.push(&mut arena, Bytes::new());
        out.push(&mut arena, big.slice(0..4));
        let mut held = Vec::new();
        out.hand_over(&mut arena, MAX_IOV, &mut held);
        assert_eq!(held, [&b"abc"[..], &[9u8; 4][..]]);
        // Moved, not copied or shared: the send holds the only other share of `big`.
        assert_eq!(out.queued_bytes(), 7, "in flight counts as queued");
        assert_eq!(out.backlog_bytes(), 0);
        arena.clear(); // the pass ends before the completion
                       // Pushed while the send is in flight (the driver parks them at the end of the pass).
        out.push(&mut arena, Bytes::from_static(b"hi"));
        assert_eq!(out.park(&mut arena), 2);
        arena.clear();
        // The kernel took 5 of 7 bytes: the rest goes before what was queued since, as it was
        // (within the backlog's allowance of small slices kept shared).
        out.completed(&mut arena, 5, &mut held);
        assert!(held.is_empty());
        assert_eq!(out.queued_bytes(), 4);
        assert!(
            !big.is_unique(),
            "the backlog holds the rest itself, not a copy"
        );
        out.hand_over(&mut arena, MAX_IOV, &mut held);
        assert_eq!(held.concat(), [9, 9, b'h', b'i']);
        out.completed(&mut arena, 4, &mut held);
        assert!(out.is_empty(), "a drained backlog is freed");
    }

    #[test]
    fn a_completion_puts_the_rest_before_this_pass_chain() {
        let mut arena = PushArena::default();
        let mut out = Outgoing::default();
        push_all(&mut out, &mut arena, &[b"abcd"]);
        let mut held = Vec::new();
        out.hand_over(&mut arena, MAX_IOV, &mut held);
        arena.clear();
        // Next pass: a push lands in the chain, then the short completion arrives.
        assert!(out.push(&mut arena, Bytes::from_static(b"ef")));
        out.completed(&mut arena, 1, &mut held);
        out.hand_over(&mut arena, MAX_IOV, &mut held);
        assert_eq!(held.concat(), b"bcdef");
        arena.clear();
        out.completed(&mut arena, 5, &mut held);
        assert!(out.is_empty());
    }

    #[test]
    fn a_hand_over_is_at_most_max_slices_and_the_rest_waits_in_order() {
        let mut arena = PushArena::default();
        let mut out = Outgoing::default();
        for i in 0..5u8 {
            out.push(&mut arena, Bytes::from(vec![i; 2]));
        }
        let mut held = Vec::new();
        out.hand_over(&mut arena, 2, &mut held);
        assert_eq!(held.concat(), [0, 0, 1, 1]);
        assert_eq!(out.queued_bytes(), 10);
        arena.clear();
        out.completed(&mut arena, 4, &mut held);
        out.hand_over(&mut arena, 64, &mut held);
        assert_eq!(held.concat(), [2, 2, 3, 3, 4, 4]);
        out.completed(&mut arena, 6, &mut held);
        assert!(out.is_empty());
    }

    #[test]
    fn idle_outgoing_is_small() {
        assert!(std::mem::size_of::<Outgoing>() <= 16);
    }
}
