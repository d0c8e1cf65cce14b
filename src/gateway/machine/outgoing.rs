//! Bytes waiting to be sent on one connection, without sockets: a readiness driver gathers
//! them as slices ([`Outgoing::gather`]) and reports what the kernel took
//! ([`Outgoing::consume`]); a completion driver takes them over ([`Outgoing::hand_over`]) and
//! gives back what its send did not take ([`Outgoing::completed`]).
//!
//! Pushes made during one pass of the driver go into a per-driver arena and are chained
//! per connection (head/tail indices in the connection), so a connection that receives ten
//! messages in a pass gets one `writev`, and no connection owns a queue while it is idle.
//! Only bytes the kernel refused (send buffer full) move into a per-connection backlog,
//! which exists only until it drains (the driver keeps a few drained ones for reuse, in the
//! arena, not in the connection). The backlog's size is what the slow-consumer cap
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

/// Emptied backlogs a driver keeps for the next connection that needs one, at most.
const SPARE_BACKLOGS: usize = 64;

/// This pass's pushes, chained per connection (cleared after every flush), and the emptied
/// backlogs kept for reuse.
#[derive(Default)]
pub(crate) struct PushArena {
    entries: Vec<Entry>,
    /// A completion driver makes and drains a backlog per send of a connection pushed to
    /// while its send is in flight: reused, a box and a queue are not allocated each time.
    /// Boxed: a box moves between here and a connection (8 bytes there) as it is.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Backlog>>,
}

impl PushArena {
    /// Drops every entry (the chains were all taken by the flush of this pass).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    fn backlog(&mut self) -> Box<Backlog> {
        self.spare.pop().unwrap_or_else(Backlog::new)
    }

    /// Keeps an emptied backlog, unless enough are kept or its queue grew past two sends'
    /// worth (a slow consumer's: its memory goes back).
    fn recycle(&mut self, mut backlog: Box<Backlog>) {
        debug_assert!(backlog.queue.is_empty() && backlog.small.is_empty());
        if self.spare.len() < SPARE_BACKLOGS && backlog.queue.capacity() <= 2 * MAX_IOV {
            backlog.bytes = 0;
            backlog.shared = 0;
            self.spare.push(backlog);
        }
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
                arena.recycle(self.backlog.take().expect("drained above"));
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
        if self.backlog.is_none() {
            self.backlog = Some(arena.backlog());
        }
        let backlog = self.backlog.as_mut().expect("made above");
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
                arena.recycle(self.backlog.take().expect("drained above"));
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
        let mut front = arena.backlog();
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
            arena.recycle(later);
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
mod tests;
