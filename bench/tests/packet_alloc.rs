//! Checks with a counting global allocator that packet decoding and header encoding allocate
//! nothing per packet in steady state.
//!
//! It lives here, not beside the codec, because the codec forbids `unsafe` and a global
//! allocator needs it. The counter is per thread, so the test harness's threads do not count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use switchboard_codec::packet::{PacketDecoder, PacketEncoder};
use switchboard_codec::Decoded;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct CountingAllocator;

fn count_one() {
    // `try_with`: the allocator also runs while this thread's locals are being torn down.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is exactly `System`'s; the only addition is a thread-local counter,
// which neither allocates nor unwinds.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn wire(count: usize) -> Vec<u8> {
    let mut encoder = PacketEncoder::new();
    let mut out = BytesMut::new();
    for n in 0..count {
        let payload = vec![n as u8; (n + 1) % 200];
        encoder.encode_into(n as u16, &payload, &mut out).unwrap();
    }
    out.to_vec()
}

/// Decodes every whole packet in `src`, dropping each, and returns how many there were.
fn drain(decoder: &mut PacketDecoder, src: &mut BytesMut) -> usize {
    let mut count = 0;
    while let Ok(Decoded::Complete(packet)) = decoder.decode(src) {
        std::hint::black_box(&packet.payload);
        count += 1;
    }
    count
}

#[test]
fn counting_allocator_sees_an_allocation() {
    let counted = allocations_during(|| {
        std::hint::black_box(Vec::<u8>::with_capacity(16));
    });
    assert_eq!(counted, 1);
}

#[test]
fn decoding_a_buffer_of_packets_allocates_only_once_for_the_buffer() {
    let mut src = BytesMut::from(&wire(1000)[..]);
    let mut decoder = PacketDecoder::default();
    // The first split promotes the buffer to a shared one: one allocation per read buffer.
    let first = allocations_during(|| assert_eq!(drain_one(&mut decoder, &mut src), 1));
    assert_eq!(first, 1);
    let rest = allocations_during(|| assert_eq!(drain(&mut decoder, &mut src), 999));
    assert_eq!(rest, 0, "allocations while decoding 999 packets");
}

fn drain_one(decoder: &mut PacketDecoder, src: &mut BytesMut) -> usize {
    match decoder.decode(src) {
        Ok(Decoded::Complete(_)) => 1,
        _ => 0,
    }
}

#[test]
fn a_read_loop_with_packets_split_across_reads_allocates_nothing_in_steady_state() {
    let stream = wire(600);
    // Reads of an odd size, so packets straddle reads and the unfinished tail is carried over.
    let reads: Vec<&[u8]> = stream.chunks(1237).collect();
    let mut src = BytesMut::with_capacity(8 * 1024);
    let mut decoder = PacketDecoder::default();
    let mut round = |src: &mut BytesMut| {
        let mut decoded = 0;
        for read in &reads {
            src.extend_from_slice(read);
            decoded += drain(&mut decoder, src);
        }
        assert_eq!(decoded, 600);
    };
    round(&mut src);
    let steady = allocations_during(|| {
        for _ in 0..10 {
            round(&mut src);
        }
    });
    assert_eq!(steady, 0, "allocations over 6,000 packets in steady state");
}

#[test]
fn header_encoding_allocates_nothing_once_headers_are_written_out() {
    let mut encoder = PacketEncoder::new();
    let payload = Bytes::from_static(b"shared push");
    let (header, _) = encoder.encode(1, payload.clone()).unwrap();
    drop(header);
    let steady = allocations_during(|| {
        for n in 0..10_000u16 {
            let (header, body) = encoder.encode(n, payload.clone()).unwrap();
            std::hint::black_box((&header, &body));
        }
    });
    assert_eq!(steady, 0, "allocations over 10,000 headers");
}
