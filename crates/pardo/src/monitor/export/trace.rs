//! Chrome trace: a run as trace-event JSON, which opens in Perfetto UI (ui.perfetto.dev, "Open
//! trace file") and in `chrome://tracing`.
//!
//! The document is `{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}`, with
//! times in microseconds since the run began (three decimals, so nanoseconds survive). One
//! process (`pid` 1) is the run; its threads are the tracks:
//!
//! - **one track per worker slot**, named `slot N` with `thread_name` metadata and ordered by
//!   `thread_sort_index`; slot 0 (`not started`) holds tasks cancelled before a worker took
//!   them;
//! - **one complete event (`"ph":"X"`) per attempt** on its slot's track, named after its input
//!   (or `task N`), with the category its outcome and `args`: `id`, `attempt`, `items`, `input`,
//!   `outcome`, `exit_code`, `signal`, `cpu_user_ms`, `cpu_sys_ms`, `cpu_time_ms`,
//!   `cpu_wait_ms`, `peak_rss_bytes`, `output_bytes`, `queued_ms` (`null` where not measured);
//! - **counter tracks (`"ph":"C"`)**: `running` (exact, from the records: a step at every start
//!   and finish), and from the run's samples `queued`, `concurrency` (`target` and `live`) and
//!   `CPU use` in cores (`tasks`: the finished tasks' CPU per second; `machine`: the whole
//!   machine's busy fraction times its cores);
//! - **instant events (`"ph":"i"`)** where the concurrency changed, with the reason.
//!
//! Slices on one track never overlap, which both viewers need to draw them. A slot runs one
//! task at a time, so its records never overlap unless the clocks disagree (a record measured
//! in another process, a retry re-stamped); a record that would overlap goes on a sub-track of
//! its slot, `slot N (overlap K)`, with its own thread id (`N + K × 100000`).

use std::io::Write;

use serde::Serialize;

use super::{ExportError, RunLog};
use crate::monitor::{Sample, TaskRecord};

/// Thread ids of a slot's sub-tracks are `slot + lane × LANE_STRIDE`.
pub const LANE_STRIDE: u64 = 100_000;

/// Longest event name, in characters; the whole input stays in `args`.
const NAME_CHARS: usize = 80;

/// Where a record goes in the trace: its slot and its lane within the slot (0 for the slot's
/// own track, 1 and up for the sub-tracks that take overlapping records).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Track {
    /// The worker slot.
    pub slot: u32,
    /// 0 for the slot's own track, K for its K-th overlap sub-track.
    pub lane: u32,
}

impl Track {
    /// The trace's thread id for this track.
    ///
    /// ```
    /// use pardo::monitor::export::Track;
    /// assert_eq!(Track { slot: 3, lane: 0 }.tid(), 3);
    /// assert_eq!(Track { slot: 3, lane: 1 }.tid(), 100_003);
    /// ```
    pub fn tid(self) -> u64 {
        u64::from(self.slot) + u64::from(self.lane) * LANE_STRIDE
    }

    fn name(self) -> String {
        match (self.slot, self.lane) {
            (0, 0) => "not started".to_owned(),
            (0, k) => format!("not started (overlap {k})"),
            (s, 0) => format!("slot {s}"),
            (s, k) => format!("slot {s} (overlap {k})"),
        }
    }
}

/// Assigns every record a track so that no two records on one track overlap: each slot's
/// records in order of start, each on the first lane that is free by then. Returns one track
/// per record, in the order given.
///
/// ```
/// use pardo::{TaskId, monitor::TaskRecord, monitor::export::{assign_tracks, Track}};
/// let a = TaskRecord::new(TaskId(1), 1, 0, 0, 10);
/// let b = TaskRecord::new(TaskId(2), 1, 0, 5, 20); // starts before `a` ends: clock skew
/// let c = TaskRecord::new(TaskId(3), 1, 0, 10, 30);
/// let t = assign_tracks(&[a, b, c]);
/// assert_eq!(t, [Track { slot: 1, lane: 0 }, Track { slot: 1, lane: 1 }, Track { slot: 1, lane: 0 }]);
/// ```
pub fn assign_tracks(records: &[TaskRecord]) -> Vec<Track> {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| {
        let r = &records[i];
        (r.worker, r.started_ns, r.finished_ns, r.id, r.attempt)
    });
    let mut tracks = vec![Track { slot: 0, lane: 0 }; records.len()];
    // The end of the last slice on each lane of the slot being assigned.
    let mut lanes: Vec<u64> = Vec::new();
    let mut slot = None;
    for i in order {
        let r = &records[i];
        if slot != Some(r.worker) {
            slot = Some(r.worker);
            lanes.clear();
        }
        let start = r.started_ns;
        let end = r.finished_ns.max(start);
        let lane = match lanes.iter().position(|&free_at| free_at <= start) {
            Some(k) => k,
            None => {
                lanes.push(0);
                lanes.len() - 1
            }
        };
        lanes[lane] = end;
        tracks[i] = Track {
            slot: r.worker,
            lane: lane as u32,
        };
    }
    tracks
}

/// Nanoseconds as the trace's microseconds, exact to the nanosecond.
fn us(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1_000_000.0
}

/// The event name of a record: its input, shortened, or `task N`.
pub(crate) fn label(r: &TaskRecord) -> String {
    if r.input.is_empty() {
        return format!("task {}", r.id.0);
    }
    let mut name: String = r.input.chars().take(NAME_CHARS).collect();
    if name.len() < r.input.len() {
        name.push('…');
    }
    name
}

// The events, as serde structs that borrow from the records: each is encoded straight into
// the output, with no `serde_json::Value` built per event. Fields are declared in alphabetical
// order, the order the format has always had (it was written from sorted JSON maps).

/// A complete event (`"ph":"X"`): one attempt on its track.
#[derive(Serialize)]
struct Slice<'a> {
    args: SliceArgs<'a>,
    cat: &'static str,
    dur: f64,
    name: &'a str,
    ph: &'static str,
    pid: u32,
    tid: u64,
    ts: f64,
}

/// What a slice shows when selected.
#[derive(Serialize)]
struct SliceArgs<'a> {
    attempt: u32,
    cpu_sys_ms: f64,
    cpu_time_ms: f64,
    cpu_user_ms: f64,
    cpu_wait_ms: Option<f64>,
    exit_code: Option<i32>,
    id: u64,
    input: &'a str,
    items: u32,
    outcome: &'static str,
    output_bytes: Option<u64>,
    peak_rss_bytes: Option<u64>,
    queued_ms: f64,
    signal: Option<i32>,
}

fn slice<'a>(r: &'a TaskRecord, track: Track, name: &'a str) -> Slice<'a> {
    Slice {
        args: SliceArgs {
            attempt: r.attempt,
            cpu_sys_ms: ms(r.cpu_sys_ns),
            cpu_time_ms: ms(r.cpu_ns()),
            cpu_user_ms: ms(r.cpu_user_ns),
            cpu_wait_ms: r.cpu_wait_ns.map(ms),
            exit_code: r.exit_code,
            id: r.id.0,
            input: &r.input,
            items: r.items,
            outcome: r.outcome.as_str(),
            output_bytes: r.output_bytes,
            peak_rss_bytes: r.max_rss_bytes,
            queued_ms: ms(r.queue_wait_ns()),
            signal: r.signal,
        },
        cat: r.outcome.as_str(),
        dur: us(r.wall_ns()),
        name,
        ph: "X",
        pid: 1,
        tid: track.tid(),
        ts: us(r.started_ns),
    }
}

/// A counter event (`"ph":"C"`) on the run's track; `A` is its values.
#[derive(Serialize)]
struct Counter<'a, A> {
    args: A,
    name: &'a str,
    ph: &'static str,
    pid: u32,
    tid: u64,
    ts: f64,
}

fn counter<A: Serialize>(name: &str, at_ns: u64, args: A) -> Counter<'_, A> {
    Counter {
        args,
        name,
        ph: "C",
        pid: 1,
        tid: 0,
        ts: us(at_ns),
    }
}

#[derive(Serialize)]
struct Running {
    running: u64,
}

#[derive(Serialize)]
struct Queued {
    queued: u64,
}

#[derive(Serialize)]
struct Concurrency {
    live: u64,
    target: u64,
}

#[derive(Serialize)]
struct CpuUse {
    #[serde(skip_serializing_if = "Option::is_none")]
    machine: Option<f64>,
    tasks: f64,
}

/// A metadata event (`"ph":"M"`): names and orders the process and its tracks.
#[derive(Serialize)]
struct Metadata<'a, A> {
    args: A,
    name: &'a str,
    ph: &'static str,
    pid: u32,
    tid: u64,
}

fn metadata<A: Serialize>(name: &str, tid: u64, args: A) -> Metadata<'_, A> {
    Metadata {
        args,
        name,
        ph: "M",
        pid: 1,
        tid,
    }
}

#[derive(Serialize)]
struct Name<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct SortIndex {
    sort_index: u64,
}

/// An instant event (`"ph":"i"`, global scope): a change of concurrency.
#[derive(Serialize)]
struct Change<'a> {
    args: ChangeArgs<'a>,
    name: &'a str,
    ph: &'static str,
    pid: u32,
    s: &'static str,
    tid: u64,
    ts: f64,
}

#[derive(Serialize)]
struct ChangeArgs<'a> {
    from: u64,
    reason: &'a str,
    to: u64,
}

/// The document's `otherData`: where the run ran.
#[derive(Serialize)]
struct OtherData<'a> {
    cores: usize,
    executor: &'a str,
    host: &'a str,
    pardo_version: &'a str,
    started_unix_ms: u64,
}

/// The number of tasks running over time, exactly, from the records: `(at_ns, running)` at
/// every moment it changed, oldest first. Tasks that never started are left out.
///
/// ```
/// use pardo::{TaskId, monitor::TaskRecord, monitor::export::running_steps};
/// let r = [TaskRecord::new(TaskId(1), 1, 0, 0, 10), TaskRecord::new(TaskId(2), 2, 0, 5, 10)];
/// assert_eq!(running_steps(&r), [(0, 1), (5, 2), (10, 0)]);
/// ```
pub fn running_steps(records: &[TaskRecord]) -> Vec<(u64, u64)> {
    let mut edges: Vec<(u64, i64)> = Vec::with_capacity(records.len() * 2);
    for r in records.iter().filter(|r| r.ran()) {
        edges.push((r.started_ns, 1));
        edges.push((r.finished_ns.max(r.started_ns), -1));
    }
    edges.sort_unstable();
    let mut steps: Vec<(u64, u64)> = Vec::new();
    let mut running: i64 = 0;
    for (at, delta) in edges {
        running += delta;
        let now = running.max(0) as u64;
        match steps.last_mut() {
            Some(last) if last.0 == at => last.1 = now,
            _ => steps.push((at, now)),
        }
    }
    steps
}

/// CPU use in cores between consecutive samples: `(at_ns, tasks, machine)`, where `tasks` is
/// the CPU finished tasks used per second of wall time and `machine` the machine's busy
/// fraction times `cores` (when read).
pub(crate) fn cpu_use(samples: &[Sample], cores: usize) -> Vec<(u64, f64, Option<f64>)> {
    samples
        .windows(2)
        .filter_map(|w| {
            let dt = w[1].at_ns.checked_sub(w[0].at_ns).filter(|&d| d > 0)?;
            let cpu = w[1].task_cpu_ns.saturating_sub(w[0].task_cpu_ns);
            let machine = w[1].machine_busy.map(|b| b * cores as f64);
            Some((w[1].at_ns, cpu as f64 / dt as f64, machine))
        })
        .collect()
}

/// Writes `log` as a Chrome trace to `out`, one event per line.
///
/// The format, track by track (also in the module source):
/// one `thread_name`d track per worker slot (`slot N`; overlapping records of a slot on
/// `slot N (overlap K)`, thread id `N + K × 100000`), one `X` event per attempt with its
/// measurements in `args`, counters `running` (from the records), `queued`, `concurrency` and
/// `CPU use (cores)` (from the samples), and an instant event at each change of concurrency.
///
/// ```
/// use pardo::monitor::export::RunLog;
/// let pool = pardo::ThreadPool::builder().workers(2).build().unwrap();
/// pool.map(0..10u64, |x| x + 1).chunk_size(1).for_each(drop);
/// let mut out = Vec::new();
/// RunLog::from_recorder(pool.recorder()).write_trace(&mut out).unwrap();
/// let trace: serde_json::Value = serde_json::from_slice(&out).unwrap();
/// assert!(trace["traceEvents"].as_array().unwrap().iter().any(|e| e["ph"] == "X"));
/// ```
pub fn write_trace(log: &RunLog, out: &mut dyn Write) -> Result<(), ExportError> {
    let run = log.run_or_default();
    let tracks = assign_tracks(&log.records);
    let mut w = Events::new(out)?;

    let process = format!("pardo {} on {}", run.executor, run.host);
    w.event(&metadata("process_name", 0, Name { name: &process }))?;
    w.event(&metadata(
        "process_sort_index",
        0,
        SortIndex { sort_index: 0 },
    ))?;
    w.event(&metadata("thread_name", 0, Name { name: "run" }))?;
    let mut named: Vec<Track> = tracks.clone();
    named.sort_unstable();
    named.dedup();
    for t in &named {
        w.event(&metadata("thread_name", t.tid(), Name { name: &t.name() }))?;
        // Each slot's sub-tracks right under it.
        let index = u64::from(t.slot) * 64 + u64::from(t.lane.min(63)) + 1;
        w.event(&metadata(
            "thread_sort_index",
            t.tid(),
            SortIndex { sort_index: index },
        ))?;
    }

    for (r, &t) in log.records.iter().zip(&tracks) {
        w.event(&slice(r, t, &label(r)))?;
    }

    for (at, running) in running_steps(&log.records) {
        w.event(&counter("running", at, Running { running }))?;
    }
    for s in &log.samples {
        w.event(&counter("queued", s.at_ns, Queued { queued: s.queued }))?;
        w.event(&counter(
            "concurrency",
            s.at_ns,
            Concurrency {
                live: s.live_workers,
                target: s.target_workers,
            },
        ))?;
    }
    for (at, tasks, machine) in cpu_use(&log.samples, run.cores) {
        w.event(&counter("CPU use (cores)", at, CpuUse { machine, tasks }))?;
    }
    for c in &log.changes {
        w.event(&Change {
            args: ChangeArgs {
                from: c.from,
                reason: &c.reason,
                to: c.to,
            },
            name: &format!("concurrency {} → {}", c.from, c.to),
            ph: "i",
            pid: 1,
            s: "g",
            tid: 0,
            ts: us(c.at_ns),
        })?;
    }

    w.finish(&OtherData {
        cores: run.cores,
        executor: &run.executor,
        host: &run.host,
        pardo_version: &run.pardo_version,
        started_unix_ms: run.started_unix_ms,
    })
}

/// The `traceEvents` array, written an event at a time.
struct Events<'a> {
    out: &'a mut dyn Write,
    first: bool,
}

impl<'a> Events<'a> {
    fn new(out: &'a mut dyn Write) -> Result<Events<'a>, ExportError> {
        out.write_all(b"{\"traceEvents\":[\n")?;
        Ok(Events { out, first: true })
    }

    fn event(&mut self, e: &impl Serialize) -> Result<(), ExportError> {
        if !self.first {
            self.out.write_all(b",\n")?;
        }
        self.first = false;
        serde_json::to_writer(&mut *self.out, e)?;
        Ok(())
    }

    fn finish(self, other: &OtherData<'_>) -> Result<(), ExportError> {
        self.out
            .write_all(b"\n],\"displayTimeUnit\":\"ms\",\"otherData\":")?;
        serde_json::to_writer(&mut *self.out, other)?;
        self.out.write_all(b"}\n")?;
        self.out.flush()?;
        Ok(())
    }
}

impl RunLog {
    /// Writes this run as a Chrome trace; see [`write_trace`] for the format.
    ///
    /// ```
    /// use pardo::monitor::export::RunLog;
    /// let mut out = Vec::new();
    /// RunLog::default().write_trace(&mut out).unwrap();
    /// assert!(String::from_utf8(out).unwrap().starts_with("{\"traceEvents\":["));
    /// ```
    pub fn write_trace(&self, mut out: impl Write) -> Result<(), ExportError> {
        write_trace(self, &mut out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::{ConcurrencyChange, RunRecord};
    use crate::task::{Outcome, TaskId};
    use serde_json::Value;

    fn log() -> RunLog {
        let mut a = TaskRecord::new(TaskId(1), 1, 0, 1_000, 5_000);
        a.input = "a".into();
        a.exit_code = Some(0);
        a.cpu_user_ns = 2_000_000;
        a.max_rss_bytes = Some(4096);
        let mut b = TaskRecord::new(TaskId(2), 1, 0, 4_000, 9_000); // overlaps `a`
        b.outcome = Outcome::Failed;
        b.exit_code = Some(3);
        let c = TaskRecord::new(TaskId(3), 2, 0, 2_500, 3_500);
        RunLog {
            run: Some(RunRecord {
                executor: "command".into(),
                started_unix_ms: 1_700_000_000_000,
                host: "h".into(),
                cores: 2,
                pardo_version: "0.1.0".into(),
                workers: 2,
                settings: vec![],
            }),
            records: vec![a, b, c],
            samples: vec![
                Sample {
                    at_ns: 0,
                    target_workers: 2,
                    live_workers: 2,
                    queued: 3,
                    ..Sample::default()
                },
                Sample {
                    at_ns: 10_000,
                    target_workers: 2,
                    live_workers: 2,
                    task_cpu_ns: 5_000,
                    machine_busy: Some(0.5),
                    ..Sample::default()
                },
            ],
            changes: vec![ConcurrencyChange {
                at_ns: 6_000,
                from: 2,
                to: 3,
                reason: "throughput still rising".into(),
            }],
            ..RunLog::default()
        }
    }

    fn events(log: &RunLog) -> Vec<Value> {
        let mut out = Vec::new();
        log.write_trace(&mut out).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        v["traceEvents"].as_array().unwrap().clone()
    }

    #[test]
    fn the_format_is_pinned() {
        let mut out = Vec::new();
        log().write_trace(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "{\"traceEvents\":[");
        assert_eq!(
            lines[1],
            "{\"args\":{\"name\":\"pardo command on h\"},\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0},"
        );
        assert!(lines.contains(
            &"{\"args\":{\"name\":\"slot 1 (overlap 1)\"},\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":100001},"
        ));
        assert!(lines.contains(
            &"{\"args\":{\"attempt\":1,\"cpu_sys_ms\":0.0,\"cpu_time_ms\":2.0,\"cpu_user_ms\":2.0,\
               \"cpu_wait_ms\":null,\"exit_code\":0,\"id\":1,\"input\":\"a\",\"items\":1,\
               \"outcome\":\"ok\",\"output_bytes\":null,\"peak_rss_bytes\":4096,\"queued_ms\":0.001,\
               \"signal\":null},\"cat\":\"ok\",\"dur\":4.0,\"name\":\"a\",\"ph\":\"X\",\"pid\":1,\
               \"tid\":1,\"ts\":1.0},"
        ));
        assert!(lines.contains(
            &"{\"args\":{\"machine\":1.0,\"tasks\":0.5},\"name\":\"CPU use (cores)\",\"ph\":\"C\",\"pid\":1,\"tid\":0,\"ts\":10.0},"
        ));
        assert_eq!(
            *lines.last().unwrap(),
            "],\"displayTimeUnit\":\"ms\",\"otherData\":{\"cores\":2,\"executor\":\"command\",\
             \"host\":\"h\",\"pardo_version\":\"0.1.0\",\"started_unix_ms\":1700000000000}}"
        );
    }

    #[test]
    fn overlapping_records_of_a_slot_go_on_a_sub_track_and_no_track_overlaps() {
        let ev = events(&log());
        let tid_of = |id: u64| {
            ev.iter()
                .find(|e| e["ph"] == "X" && e["args"]["id"] == id)
                .map(|e| e["tid"].as_u64().unwrap())
                .unwrap()
        };
        assert_eq!(tid_of(1), 1);
        assert_eq!(tid_of(2), LANE_STRIDE + 1, "skewed record nudged down");
        assert_eq!(tid_of(3), 2);
        // Every track with slices has a name.
        for e in ev.iter().filter(|e| e["ph"] == "X") {
            assert!(ev
                .iter()
                .any(|m| m["ph"] == "M" && m["name"] == "thread_name" && m["tid"] == e["tid"]));
        }
    }

    #[test]
    fn many_skewed_records_never_share_a_moment_on_a_track() {
        // A deterministic jumble of intervals on three slots.
        let mut records = Vec::new();
        let mut x: u64 = 7;
        for i in 0..500u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let start = (x >> 40) % 10_000;
            let len = (x >> 20) % 300;
            records.push(TaskRecord::new(
                TaskId(i + 1),
                (i % 3) as u32 + 1,
                0,
                start,
                start + len,
            ));
        }
        let tracks = assign_tracks(&records);
        let mut by_track: std::collections::BTreeMap<u64, Vec<(u64, u64)>> = Default::default();
        for (r, t) in records.iter().zip(&tracks) {
            assert_eq!(t.slot, r.worker);
            by_track
                .entry(t.tid())
                .or_default()
                .push((r.started_ns, r.finished_ns));
        }
        assert!(by_track.len() > 3, "the jumble needed sub-tracks");
        for spans in by_track.values_mut() {
            spans.sort_unstable();
            for w in spans.windows(2) {
                assert!(w[0].1 <= w[1].0, "{:?} overlaps {:?}", w[0], w[1]);
            }
        }
    }

    #[test]
    fn running_counts_starts_and_finishes_and_counters_come_from_samples() {
        let ev = events(&log());
        let running: Vec<(f64, u64)> = ev
            .iter()
            .filter(|e| e["ph"] == "C" && e["name"] == "running")
            .map(|e| {
                (
                    e["ts"].as_f64().unwrap(),
                    e["args"]["running"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            running,
            [(1.0, 1), (2.5, 2), (3.5, 1), (4.0, 2), (5.0, 1), (9.0, 0)]
        );
        assert_eq!(
            ev.iter()
                .filter(|e| e["ph"] == "C" && e["name"] == "queued")
                .count(),
            2
        );
        let change = ev.iter().find(|e| e["ph"] == "i").unwrap();
        assert_eq!(change["args"]["reason"], "throughput still rising");
    }
}
