//! Outgoing's unit tests: the readiness driver's `writev` against a throttled socket, the
//! completion driver's hand-over and completion, and what a backlog keeps alive.

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
fn send(out: &mut Outgoing, socket: &mut Throttled, arena: &mut PushArena) -> io::Result<Flushed> {
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

/// A completion driver makes and drains a backlog per send of a connection pushed to while
/// its send is in flight: the drained one is kept for the next, not freed and made again.
#[test]
fn a_drained_backlog_is_kept_for_the_next_one() {
    let mut arena = PushArena::default();
    let mut out = Outgoing::default();
    let mut held = Vec::new();
    push_all(&mut out, &mut arena, &[b"ab"]);
    out.hand_over(&mut arena, MAX_IOV, &mut held);
    let mut first: Option<*const Backlog> = None;
    for (pass, part) in [&b"cd"[..], b"ef", b"gh"].into_iter().enumerate() {
        arena.clear();
        out.push(&mut arena, Bytes::from_static(part));
        out.park(&mut arena);
        let backlog: *const Backlog = &**out.backlog.as_ref().expect("parked");
        assert_eq!(
            *first.get_or_insert(backlog),
            backlog,
            "pass {pass}: the same box"
        );
        assert!(arena.spare.is_empty());
        assert_eq!(out.queued_bytes(), 4);
        out.completed(&mut arena, 2, &mut held);
        out.hand_over(&mut arena, MAX_IOV, &mut held);
        assert_eq!(held.concat(), part);
        assert!(out.backlog.is_none(), "drained into the send");
        assert_eq!(arena.spare.len(), 1, "kept");
    }
    out.completed(&mut arena, 2, &mut held);
    assert!(out.is_empty());
}

/// A backlog whose queue grew past two sends' worth (a slow consumer's) gives its memory back.
#[test]
fn a_large_drained_backlog_is_not_kept() {
    static FRAME: [u8; COPY_BELOW] = [5; COPY_BELOW];
    let mut arena = PushArena::default();
    let mut out = Outgoing::default();
    let mut held = Vec::new();
    out.push(&mut arena, Bytes::from_static(b"ab"));
    out.hand_over(&mut arena, MAX_IOV, &mut held);
    arena.clear();
    for _ in 0..3 * MAX_IOV {
        out.push(&mut arena, Bytes::from_static(&FRAME));
    }
    out.park(&mut arena);
    let mut sent = 0;
    while !held.is_empty() {
        let all = held.iter().map(Bytes::len).sum::<usize>();
        sent += all;
        out.completed(&mut arena, all, &mut held);
        out.hand_over(&mut arena, MAX_IOV, &mut held);
    }
    assert_eq!(sent, 2 + 3 * MAX_IOV * COPY_BELOW);
    assert!(out.is_empty());
    assert!(
        arena.spare.is_empty(),
        "its queue held {} entries",
        3 * MAX_IOV
    );
}
