//! What the thread pool records, and that exports carry it faithfully.

mod support;

use pardo::monitor::export::{Csv, Export, Json};
use pardo::monitor::TaskRecord;
use pardo::monitor::Workload;
use pardo::{Outcome, ShutdownMode, ThreadPool};

#[test]
fn cpu_work_is_measured_as_cpu_time_and_waiting_is_not() {
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    let burn = pool.submit(|| support::spin(20_000_000));
    let wait = pool.submit(|| std::thread::sleep(std::time::Duration::from_millis(30)));
    burn.wait().unwrap();
    wait.wait().unwrap();
    let records = pool.recorder().records();
    let burn = &records[0];
    let wait = &records[1];
    assert!(burn.cpu_ns() > 0, "{burn:?}");
    assert!(
        burn.cpu_ns() <= burn.wall_ns() + 1_000_000,
        "CPU time cannot exceed wall time much: {burn:?}"
    );
    // The waiting task used a small fraction of its wall time on the CPU.
    assert!(wait.cpu_ns() * 10 < wait.wall_ns(), "{wait:?}");
    assert!(burn.started_ns >= burn.submitted_ns && burn.finished_ns >= burn.started_ns);
}

#[test]
fn a_cpu_bound_run_is_called_cpu_bound_and_a_waiting_run_io_bound() {
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    pool.map(0..8u64, |_| support::spin(5_000_000))
        .chunk_size(1)
        .for_each(|r| {
            r.unwrap();
        });
    let r = pool.shutdown(ShutdownMode::Wait);
    assert_eq!(r.workload, Workload::CpuBound, "{r:#?}");

    // Long enough waits that, even on a crowded machine, waiting for a core after each wake-up
    // is a small share of the task.
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    pool.map(0..8u64, |_| {
        std::thread::sleep(std::time::Duration::from_millis(40))
    })
    .chunk_size(1)
    .for_each(|r| r.unwrap());
    let r = pool.shutdown(ShutdownMode::Wait);
    assert_eq!(r.workload, Workload::IoBound, "{r:#?}");
}

#[test]
fn live_counters_match_the_records() {
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    let hs: Vec<_> = (0..50)
        .map(|i| pool.submit(move || assert!(i % 10 != 0)))
        .collect();
    let failed = hs
        .into_iter()
        .filter(|_| true)
        .map(|h| h.wait())
        .filter(Result::is_err)
        .count();
    let c = pool.counters();
    assert_eq!(c.submitted, 50);
    assert_eq!(c.done, 50);
    assert_eq!(c.failed as usize, failed);
    assert_eq!(failed, 5);
    assert_eq!(c.running, 0);
    assert_eq!(c.queued(), 0);
}

#[test]
fn json_export_round_trips_the_records() {
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    pool.map(0..20u32, |x| x).chunk_size(1).for_each(|r| {
        r.unwrap();
    });
    let report = pool.report();
    let records = pool.recorder().records();
    let mut out = Vec::new();
    Json.write(&report, &records, &mut out).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let back: Vec<TaskRecord> = serde_json::from_value(doc["records"].clone()).unwrap();
    assert_eq!(back, records);
    assert_eq!(doc["report"]["tasks"], 20);
    assert!(doc["report"]["workload"].as_str().is_some());
    assert!(back.iter().all(|r| r.outcome == Outcome::Ok));

    let mut csv = Vec::new();
    Csv.write(&report, &records, &mut csv).unwrap();
    assert_eq!(
        String::from_utf8(csv).unwrap().lines().count(),
        21,
        "header and one row per record"
    );
}
