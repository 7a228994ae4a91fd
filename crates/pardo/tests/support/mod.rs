//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod redis;

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A gate tasks wait at until the test opens it.
#[derive(Default)]
pub struct Latch {
    open: Mutex<bool>,
    cond: Condvar,
}

impl Latch {
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cond.notify_all();
    }

    pub fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cond.wait(open).unwrap();
        }
    }
}

/// Submits a task that holds its worker until `gate` opens, and returns once it is running.
pub fn occupy_worker(pool: &pardo::ThreadPool, gate: &Arc<Latch>) -> pardo::Handle<&'static str> {
    let started = Arc::new(Latch::default());
    let (gate, running) = (Arc::clone(gate), Arc::clone(&started));
    let h = pool.submit(move || {
        running.open();
        gate.wait();
        "blocker"
    });
    started.wait();
    h
}

/// Waits for a condition that must become true. This is a liveness guard, not a timing check:
/// the limit is far above anything a correct pool needs, and hitting it fails the test.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let limit = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < limit, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A command template whose jobs create `DIR/started.<value>` and then wait until `DIR/go`
/// exists: the test sees which jobs run and decides when they end.
pub fn held_jobs(dir: &std::path::Path) -> pardo::command::Template {
    let d = dir.display();
    pardo::command::Template::parse(&[format!(
        "touch {d}/started.{{}}; while [ ! -e {d}/go ]; do sleep 0.01; done"
    )
    .into()])
}

/// Burns roughly `n` iterations of CPU in a way the optimiser cannot remove.
pub fn spin(n: u64) -> u64 {
    let mut x = n;
    for i in 0..n {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

/// Runs `f` on a thread of its own and returns its value; fails the test if `f` has not
/// finished within `secs` seconds. A hang detector for deadlock regressions, not a timing check:
/// a correct pool needs a tiny fraction of the limit. A hung thread is left behind (the test
/// binary ends with the failure anyway).
pub fn within<T: Send + 'static>(
    what: &str,
    secs: u64,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("hung: {what}"),
        // The closure panicked; its own message is already printed.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("panicked: {what}"),
    }
}

/// The names of this process's pardo threads now (every pool names its threads `pardo…`).
///
/// Only these are counted: the test harness starts a thread per test whenever it likes (under
/// load, one model test's thread appeared while another counted, and looked like a thread
/// the pool had left behind).
pub fn pardo_threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
                .map(|n| n.trim_end().to_string())
                .filter(|n| n.starts_with("pardo"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
