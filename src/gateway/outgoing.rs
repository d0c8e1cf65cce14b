//! Outgoing bytes of one reactor, written with `writev`.
//!
//! Pushes made during one pass of the event loop go into a per-reactor arena and are chained
//! per connection (head/tail indices in the connection), so a connection that receives ten
//! messages in a pass gets one `writev`, and no connection owns a queue while it is idle.
//! Only bytes the kernel refused (send buffer full) move into a per-connection backlog,
//! which exists only until it drains. The backlog's size is what the slow-consumer cap
//! measures. Invariant: if a backlog exists, new bytes go behind it, never around it: pushes
//! to a backlogged connection go straight into its backlog, so the cap sees them at once
//! rather than at the end of the pass.
//!
//! The backlog owns what it counts: a slice under [`COPY_BELOW`] bytes is copied into it, as
//! it may be a small share of a large read buffer that it would otherwise keep alive (a 20-byte
//! echo pinning a 64 KiB read chunk). Larger slices are whole frames with at most a read's
//! worth of buffer around them, and shared by every connection a message fans out to.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::{Buf, Bytes, BytesMut};

const NIL: u32 = u32::MAX;
/// Slices per `writev`; well under IOV_MAX (1024) and enough to batch a pass's pushes.
const MAX_IOV: usize = 64;
/// Slices shorter than this are copied when they enter a backlog (see the module comment).
const COPY_BELOW: usize = 64 << 10;

struct Entry {
    bytes: Bytes,
    next: u32,
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

/// The per-connection part: a chain into the arena and, under backpressure, a backlog.
/// 16 bytes while idle.
pub(crate) struct Outgoing {
    head: u32,
    tail: u32,
    backlog: Option<Box<Backlog>>,
}

struct Backlog {
    queue: VecDeque<Bytes>,
    /// Small slices copied together, to be queued after `queue` (see [`Backlog::push`]).
    small: BytesMut,
    bytes: usize,
}

impl Backlog {
    fn new() -> Box<Backlog> {
        Box::new(Backlog {
            queue: VecDeque::new(),
            small: BytesMut::new(),
            bytes: 0,
        })
    }

    fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.bytes += bytes.len();
        if bytes.len() < COPY_BELOW {
            // Gathered into one buffer: a flood of small frames costs its bytes, not a queue
            // entry and an allocation each.
            self.small.extend_from_slice(&bytes);
            if self.small.len() >= COPY_BELOW {
                self.seal();
            }
        } else {
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
            tail: NIL,
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
        arena.entries.push(Entry { bytes, next: NIL });
        if self.tail == NIL {
            self.head = index;
            self.tail = index;
            true
        } else {
            arena.entries[self.tail as usize].next = index;
            self.tail = index;
            false
        }
    }

    /// Whether nothing waits to be written, in the arena or the backlog.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.head == NIL && self.backlog.is_none()
    }

    /// Bytes waiting in the backlog.
    pub(crate) fn backlog_bytes(&self) -> usize {
        self.backlog.as_ref().map_or(0, |b| b.bytes)
    }

    /// Forgets the chain and the backlog (the connection is going away).
    pub(crate) fn discard(&mut self) {
        *self = Outgoing::default();
    }

    /// Writes as much as the socket takes: the backlog first, then this pass's chain.
    pub(crate) fn flush(
        &mut self,
        socket: &mut impl Write,
        arena: &mut PushArena,
    ) -> io::Result<Flushed> {
        if self.backlog.is_some() {
            self.chain_into_backlog(arena);
            return self.flush_backlog(socket);
        }
        while self.head != NIL {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            let mut cursor = self.head;
            while cursor != NIL && count < MAX_IOV {
                let entry = &arena.entries[cursor as usize];
                if !entry.bytes.is_empty() {
                    slices[count] = IoSlice::new(&entry.bytes);
                    count += 1;
                }
                cursor = entry.next;
            }
            let written = match write_vectored(socket, &slices[..count]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            let wrote_all_gathered = self.consume_chain(arena, written, cursor);
            if !wrote_all_gathered {
                self.chain_into_backlog(arena);
                return Ok(Flushed::Backlogged(self.backlog_bytes()));
            }
        }
        self.tail = NIL;
        Ok(Flushed::All)
    }

    /// Advances the chain by `written` bytes. Returns true if every gathered slice (up to
    /// `stop`) was written in full.
    fn consume_chain(&mut self, arena: &mut PushArena, mut written: usize, stop: u32) -> bool {
        while self.head != stop {
            let entry = &mut arena.entries[self.head as usize];
            let len = entry.bytes.len();
            if written < len {
                entry.bytes.advance(written);
                return false;
            }
            written -= len;
            entry.bytes = Bytes::new();
            self.head = entry.next;
        }
        true
    }

    fn chain_into_backlog(&mut self, arena: &mut PushArena) {
        let backlog = self.backlog.get_or_insert_with(Backlog::new);
        while self.head != NIL {
            let entry = &mut arena.entries[self.head as usize];
            backlog.push(std::mem::take(&mut entry.bytes));
            self.head = entry.next;
        }
        self.tail = NIL;
    }

    fn flush_backlog(&mut self, socket: &mut impl Write) -> io::Result<Flushed> {
        let Some(backlog) = self.backlog.as_mut() else {
            return Ok(Flushed::All);
        };
        backlog.seal();
        while !backlog.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let count = backlog.queue.len().min(MAX_IOV);
            for (slot, bytes) in slices.iter_mut().zip(backlog.queue.iter()) {
                *slot = IoSlice::new(bytes);
            }
            let mut written = match write_vectored(socket, &slices[..count]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Flushed::Backlogged(backlog.bytes))
                }
                Err(e) => return Err(e),
            };
            backlog.bytes -= written;
            while written > 0 {
                let front = backlog
                    .queue
                    .front_mut()
                    .expect("written bytes came from the queue");
                if written < front.len() {
                    front.advance(written);
                    break;
                }
                written -= front.len();
                backlog.queue.pop_front();
            }
        }
        // Drained: free the backlog so an idle connection holds no queue.
        self.backlog = None;
        Ok(Flushed::All)
    }
}

/// One `writev`, retried on EINTR. A zero-length write of a non-empty batch means the socket
/// cannot take more, which we report as WouldBlock.
fn write_vectored(socket: &mut impl Write, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    loop {
        match socket.write_vectored(slices) {
            Ok(0) if slices.iter().any(|s| !s.is_empty()) => {
                return Err(io::ErrorKind::WriteZero.into())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(out.flush(&mut socket, &mut arena).unwrap(), Flushed::All);
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
            out.flush(&mut socket, &mut arena).unwrap(),
            Flushed::Backlogged(8)
        );
        arena.clear();
        // Later pushes queue behind the backlog, never around it.
        push_all(&mut out, &mut arena, &[b"!"]);
        socket.per_call = vec![3, 2, 4];
        socket.calls = 0;
        assert_eq!(out.flush(&mut socket, &mut arena).unwrap(), Flushed::All);
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
            out.flush(&mut socket, &mut arena).unwrap(),
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
        assert_eq!(out.flush(&mut socket, &mut arena).unwrap(), Flushed::All);
        assert_eq!(socket.written, expected);
        assert_eq!(socket.calls, 3);
    }

    #[test]
    fn pushes_to_a_backlogged_connection_count_at_once_and_own_their_bytes() {
        let mut arena = PushArena::default();
        let mut out = Outgoing::default();
        push_all(&mut out, &mut arena, &[b"abcdef"]);
        let mut socket = Throttled {
            written: vec![],
            per_call: vec![2],
            calls: 0,
        };
        assert_eq!(
            out.flush(&mut socket, &mut arena).unwrap(),
            Flushed::Backlogged(4)
        );
        arena.clear();
        // A small slice of a big shared buffer: counted before any flush, and copied, so the
        // backlog does not keep the big buffer alive.
        let big = Bytes::from(vec![9u8; 256 << 10]);
        assert!(!out.push(&mut arena, big.slice(0..10)));
        assert_eq!(out.backlog_bytes(), 14);
        assert!(big.is_unique(), "the backlog holds a copy, not a share");
        // A large slice is kept as it is (a whole frame, maybe shared by a fan-out).
        out.push(&mut arena, big.slice(..COPY_BELOW));
        assert_eq!(out.backlog_bytes(), 14 + COPY_BELOW);
        assert!(!big.is_unique());
        socket.per_call = vec![usize::MAX];
        socket.calls = 0;
        assert_eq!(out.flush(&mut socket, &mut arena).unwrap(), Flushed::All);
        let mut expected = b"cdef".to_vec();
        expected.extend_from_slice(&[9u8; 10]);
        expected.extend_from_slice(&vec![9u8; COPY_BELOW]);
        assert_eq!(socket.written[2..], expected[..]);
        assert!(out.is_empty());
    }

    #[test]
    fn idle_outgoing_is_small() {
        assert!(std::mem::size_of::<Outgoing>() <= 16);
    }
}
