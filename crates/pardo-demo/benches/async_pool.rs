//! Async pool under I/O, side by side with plain tokio: the same 1,000 HTTP GETs to the same
//! loopback server (127.0.0.1, answering at once, one new connection per request), 256 in
//! flight, 2 runtime threads each.
//!
//! - `tokio_joinset_semaphore`: what one writes without pardo — a `JoinSet`, and a
//!   `Semaphore(256)` permit taken before each spawn.
//! - `pardo_map_unordered`: `AsyncPool::map_unordered`, the same shape (results as they finish).
//! - `pardo_map`: the ordered `AsyncPool::map` with its default window.
//!
//! `bench/criterion_ratios.py` turns the results into the ratios recorded in BENCHMARKS.md.
//! Run: `cargo bench -p pardo-demo --bench async_pool`
//!
//! Every request opens a connection, and a closed one waits in TIME_WAIT for a minute; each
//! benchmark sends about 20,000 requests, which the ephemeral ports hold (Linux reuses
//! TIME_WAIT ports on loopback).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use pardo::{iter_stream, AsyncPool};
use pardo_demo::loopback::{get, LoopbackServer, BODY};

const REQUESTS: u64 = 1_000;
const IN_FLIGHT: usize = 256;
const RUNTIME_THREADS: usize = 2;

/// Panics unless a request brought back the server's body: a benchmark of failures is none.
fn check(got: std::io::Result<usize>) {
    match got {
        Ok(n) if n == BODY.len() => {}
        other => panic!("a request failed: {other:?}"),
    }
}

/// `REQUESTS` GETs with a `JoinSet`, at most `IN_FLIGHT` at once.
async fn tokio_joinset(addr: SocketAddr) {
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..REQUESTS {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        set.spawn(async move {
            let got = get(addr).await;
            drop(permit);
            got
        });
        // Reap what has finished as we go, as a long-running program must.
        while let Some(done) = set.try_join_next() {
            check(done.expect("no task panics"));
        }
    }
    while let Some(done) = set.join_next().await {
        check(done.expect("no task panics"));
    }
}

fn loopback_get(c: &mut Criterion) {
    let server = LoopbackServer::start(Duration::ZERO).expect("start the loopback server");
    let addr = server.addr();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_THREADS)
        .enable_all()
        .build()
        .expect("start a tokio runtime");
    let pool = AsyncPool::builder()
        .runtime_threads(RUNTIME_THREADS)
        .max_in_flight(IN_FLIGHT)
        .build()
        .expect("start the pool");

    let mut g = c.benchmark_group("loopback_get_1000_256_in_flight");
    g.throughput(Throughput::Elements(REQUESTS));
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("tokio_joinset_semaphore", |b| {
        b.iter(|| runtime.block_on(tokio_joinset(addr)))
    });
    g.bench_function("pardo_map_unordered", |b| {
        b.iter(|| {
            pool.block_on(async {
                let mut results = pool.map_unordered(iter_stream(0..REQUESTS), |_| get(addr));
                while let Some((_, r)) = results.next().await {
                    check(r.expect("no task panics"));
                }
            })
        })
    });
    g.bench_function("pardo_map", |b| {
        b.iter(|| {
            pool.block_on(async {
                let mut results = pool.map(iter_stream(0..REQUESTS), |_| get(addr));
                while let Some(r) = results.next().await {
                    check(r.expect("no task panics"));
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, loopback_get);
criterion_main!(benches);
