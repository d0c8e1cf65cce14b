//! The cost of counting, in one criterion run: how the reactors bump their counters
//! (`switchboard::metrics::Counter`, one block per thread, a relaxed load and store) beside a
//! locked add on each thread's own cache line, and beside one atomic shared by all threads (what
//! the metrics design rules out: every message would bounce its cache line between cores).
//!
//! Each iteration is `THREADS` threads bumping `BUMPS` times each, measured from the start
//! signal to the last thread's end (`iter_custom`), so thread start-up is not counted.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use switchboard::metrics::Counter;

const THREADS: usize = 2;
const BUMPS: u64 = 1_000_000;

#[repr(align(128))]
#[derive(Default)]
struct OwnLine<T>(T);

/// Runs `bump(thread)` `BUMPS` times on each of `THREADS` threads, `iters` rounds; the time
/// from the start signal to the last thread's end, summed over the rounds.
fn timed(iters: u64, bump: impl Fn(usize) + Sync + Send + Copy + 'static) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Arc::new(Barrier::new(THREADS + 1));
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..BUMPS {
                        bump(thread);
                    }
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        for thread in threads {
            thread.join().expect("a bumping thread");
        }
        total += began.elapsed();
    }
    total
}

fn counting(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics/2_threads_x_1M_bumps");
    group.sample_size(20);
    let own: &'static [OwnLine<Counter>] =
        Box::leak((0..THREADS).map(|_| OwnLine::default()).collect());
    group.bench_function("single_writer_counter_per_thread", |b| {
        b.iter_custom(|iters| timed(iters, move |t| black_box(&own[t].0).inc()))
    });
    let own_atomic: &'static [OwnLine<AtomicU64>] =
        Box::leak((0..THREADS).map(|_| OwnLine::default()).collect());
    group.bench_function("fetch_add_per_thread", |b| {
        b.iter_custom(|iters| {
            timed(iters, move |t| {
                black_box(&own_atomic[t].0).fetch_add(1, Ordering::Relaxed);
            })
        })
    });
    let shared: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    group.bench_function("fetch_add_one_shared_atomic", |b| {
        b.iter_custom(|iters| {
            timed(iters, move |_| {
                black_box(shared).fetch_add(1, Ordering::Relaxed);
            })
        })
    });
    group.finish();
}

criterion_group!(benches, counting);
criterion_main!(benches);
