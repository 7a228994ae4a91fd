//! A record sink that panics must not cost the task its result or the pool its worker.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pardo::monitor::{RecordSink, TaskRecord};
use pardo::{Outcome, ShutdownMode, ThreadPool};
use support::within;

/// Panics on its first record, counts every call.
#[derive(Default)]
struct Exploding {
    calls: AtomicUsize,
}

impl RecordSink for Exploding {
    fn on_record(&self, _record: &TaskRecord) {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("sink exploded");
        }
    }
}

#[test]
fn a_panicking_sink_is_dropped_and_counted_and_the_task_keeps_its_value() {
    let (first, rest, report, sink, failures) = within("pool with a panicking sink", 30, || {
        let pool = ThreadPool::builder().workers(1).build().unwrap();
        let sink = Arc::new(Exploding::default());
        pool.recorder()
            .add_sink(Arc::clone(&sink) as Arc<dyn RecordSink>);
        let first = pool.submit(|| 41).wait();
        let rest: Vec<_> = (0..3).map(|i| pool.submit(move || i).wait()).collect();
        let failures = pool.recorder().sink_failures();
        let report = pool.shutdown(ShutdownMode::Wait);
        (first, rest, report, sink, failures)
    });
    assert_eq!(first, Ok(41), "the task ran, so it has its value");
    assert_eq!(rest, vec![Ok(0), Ok(1), Ok(2)], "the worker lived on");
    assert_eq!(failures, 1);
    assert_eq!(
        sink.calls.load(Ordering::SeqCst),
        1,
        "a failed sink is not called again"
    );
    assert_eq!(report.tasks, 4, "the record the sink failed on is kept");
    assert_eq!(report.outcomes.get(&Outcome::Ok), Some(&4));
}
