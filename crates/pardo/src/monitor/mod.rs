//! Monitoring: the data model ([`TaskRecord`], [`RunRecord`], [`Sample`]), the [`Recorder`]
//! every executor writes to, the [`Report`] computed from it, and exports.
//!
//! Every pool records every task unless it was built with monitoring turned off (which exists to
//! measure what monitoring costs). Its cost per task is two reads of the monotonic clock, two of
//! the thread's CPU clock and one push into the worker's own buffer (an uncontended lock that
//! only a report-taking reader ever competes for).
//!
//! Arrows point down: `record` is the model; `fold` folds records; `classify` and `findings`
//! judge numbers; `report` puts them together; `recorder` is what executors write to; `export`
//! writes records out; `metrics` serves live counts over HTTP. Nothing here knows about
//! executors or concurrency control.

mod classify;
#[cfg(feature = "export")]
pub mod export;
mod findings;
mod fold;
pub mod metrics;
pub mod record;
mod recorder;
mod report;
pub mod sampler;

pub use classify::Workload;
pub use findings::{CommandLineFinding, Finding};
pub use fold::Straggler;
pub use record::{available_cores, ConcurrencyChange, RunRecord, Sample, TaskRecord};
pub use recorder::{Counters, RecordSink, Recorder, Retention};
pub(crate) use recorder::{Totals, WorkerRecorder};
pub use report::{HostStats, Percentiles, Report};

/// A duration in the unit a person reads best: `850 ns`, `12.3 µs`, `4.56 ms`, `1.23 s`.
///
/// ```
/// assert_eq!(pardo::monitor::format_duration(12_345), "12.3 µs");
/// assert_eq!(pardo::monitor::format_duration(1_234_000_000), "1.23 s");
/// ```
pub fn format_duration(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", f / 1e6)
    } else {
        format!("{:.2} s", f / 1e9)
    }
}
