//! JSON Lines: the run as it happens, one JSON object a line, each written and flushed the
//! moment it is known, so a run killed half-way (even by `kill -9`) leaves every line it
//! finished.
//!
//! The format (every line has a `"type"`; the other keys are the fields of the type named):
//!
//! ```text
//! {"type":"run", …RunRecord}                        first line
//! {"type":"task", …TaskRecord}                      one per attempt, as it ends
//! {"type":"sample", …Sample}                        about every 100 ms
//! {"type":"capacity","at_ns":…,"workers":…}         the worker count changed
//! {"type":"change", …ConcurrencyChange}             the controller changed it, and why
//! {"type":"stderr","id":…,"attempt":…,"tail":"…"}   the end of a failed attempt's stderr
//! {"type":"summary", …Report}                       last line, when the run ended cleanly
//! ```
//!
//! [`read_json_lines`] folds such a file back into a [`RunLog`], whose
//! [`report`](RunLog::report) gives the same numbers as the live run's.

use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::run_log::{RunLog, StderrTail};
use super::ExportError;
use crate::monitor::{
    ConcurrencyChange, RecordSink, Recorder, Report, RunRecord, Sample, TaskRecord,
};
use crate::sync::lock;

/// One line of the file.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Run(RunRecord),
    Task(TaskRecord),
    Sample(Sample),
    Capacity { at_ns: u64, workers: usize },
    Change(ConcurrencyChange),
    Stderr(StderrTail),
    Summary(Box<Report>),
}

/// The borrowing twin of [`Line`], so writing a record does not clone it.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum LineRef<'a> {
    Run(&'a RunRecord),
    Task(&'a TaskRecord),
    Sample(&'a Sample),
    Capacity { at_ns: u64, workers: usize },
    Change(&'a ConcurrencyChange),
    Stderr(&'a StderrTail),
    Summary(&'a Report),
}

/// A [`RecordSink`] that writes the run as JSON Lines while it goes.
///
/// Every line is flushed as it is written: a line costs one `write` call, and a killed run
/// keeps what it finished. A write error does not stop the run; the first one is kept and
/// returned by [`JsonLines::finish`].
///
/// ```
/// use pardo::monitor::export::{read_json_lines, JsonLines};
/// let pool = pardo::ThreadPool::builder().workers(2).build().unwrap();
/// let file = tempfile::NamedTempFile::new().unwrap();
/// let sink = JsonLines::attach(pool.recorder(), file.reopen().unwrap()).unwrap();
/// pool.map(0..5u64, |x| x * 2).for_each(drop);
/// sink.finish(&pool.report()).unwrap();
/// let log = read_json_lines(std::io::BufReader::new(file.reopen().unwrap())).unwrap();
/// assert_eq!(log.records.len(), 5);
/// assert_eq!(log.report().tasks, 5);
/// ```
pub struct JsonLines {
    state: Mutex<State>,
}

struct State {
    out: Box<dyn Write + Send>,
    buf: Vec<u8>,
    error: Option<ExportError>,
}

impl std::fmt::Debug for JsonLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLines").finish_non_exhaustive()
    }
}

impl JsonLines {
    /// A writer to `out` that has written the header line for `run`.
    pub fn new(
        out: impl Write + Send + 'static,
        run: &RunRecord,
    ) -> Result<JsonLines, ExportError> {
        let sink = JsonLines {
            state: Mutex::new(State {
                out: Box::new(out),
                buf: Vec::with_capacity(512),
                error: None,
            }),
        };
        sink.line(&LineRef::Run(run))?;
        Ok(sink)
    }

    /// Writes the header for `recorder`'s run to `out` and attaches the writer as a sink, so
    /// every record, sample and change from now on is written as it happens.
    pub fn attach(
        recorder: &Recorder,
        out: impl Write + Send + 'static,
    ) -> Result<Arc<JsonLines>, ExportError> {
        let sink = Arc::new(JsonLines::new(out, &recorder.run())?);
        recorder.add_sink(sink.clone());
        Ok(sink)
    }

    /// Writes the end of a failed attempt's stderr.
    pub fn stderr_tail(&self, tail: &StderrTail) {
        self.keep(self.line(&LineRef::Stderr(tail)));
    }

    /// Writes the summary line and returns the first error any line met.
    pub fn finish(&self, report: &Report) -> Result<(), ExportError> {
        self.keep(self.line(&LineRef::Summary(report)));
        match lock(&self.state).error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn keep(&self, r: Result<(), ExportError>) {
        if let Err(e) = r {
            lock(&self.state).error.get_or_insert(e);
        }
    }

    fn line(&self, line: &LineRef<'_>) -> Result<(), ExportError> {
        let mut st = lock(&self.state);
        let State { out, buf, .. } = &mut *st;
        buf.clear();
        serde_json::to_writer(&mut *buf, line)?;
        buf.push(b'\n');
        out.write_all(buf)?;
        out.flush()?;
        Ok(())
    }
}

impl RecordSink for JsonLines {
    fn on_record(&self, record: &TaskRecord) {
        self.keep(self.line(&LineRef::Task(record)));
    }
    fn on_sample(&self, sample: &Sample) {
        self.keep(self.line(&LineRef::Sample(sample)));
    }
    fn on_change(&self, change: &ConcurrencyChange) {
        self.keep(self.line(&LineRef::Change(change)));
    }
    fn on_capacity(&self, at_ns: u64, workers: usize) {
        self.keep(self.line(&LineRef::Capacity { at_ns, workers }));
    }
}

/// Reads a JSON Lines file written by [`JsonLines`] back into a [`RunLog`].
///
/// A last line cut short (the run was killed while writing it) is ignored; any other line that
/// is not one of the documented objects is an error naming its line number.
///
/// ```
/// use pardo::monitor::export::read_json_lines;
/// let text = "{\"type\":\"run\",\"executor\":\"command\",\"started_unix_ms\":0,\"host\":\"h\",\
///             \"cores\":2,\"pardo_version\":\"0.1.0\",\"workers\":2,\"settings\":[]}\n\
///             {\"type\":\"task\",\"id\":1,\"attempt\":1,\"it";
/// let log = read_json_lines(text.as_bytes()).unwrap();
/// assert_eq!(log.run.unwrap().workers, 2);
/// assert!(log.records.is_empty());
/// ```
pub fn read_json_lines(input: impl BufRead) -> Result<RunLog, ExportError> {
    let mut log = RunLog::default();
    let mut pending: Option<(usize, serde_json::Error)> = None;
    for (i, text) in input.lines().enumerate() {
        let text = text?;
        if let Some((line, source)) = pending.take() {
            // The bad line was not the last: the file is not ours or is damaged.
            return Err(ExportError::Line { line, source });
        }
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&text) {
            Ok(Line::Run(r)) => log.run = Some(r),
            Ok(Line::Task(r)) => log.records.push(r),
            Ok(Line::Sample(s)) => log.samples.push(s),
            Ok(Line::Capacity { at_ns, workers }) => log.capacity.push((at_ns, workers)),
            Ok(Line::Change(c)) => log.changes.push(c),
            Ok(Line::Stderr(t)) => log.stderr.push(t),
            Ok(Line::Summary(r)) => log.summary = Some(*r),
            Err(e) => pending = Some((i + 1, e)),
        }
    }
    if let (Some((line, source)), true) = (pending, log.run.is_none()) {
        // Nothing readable at all: say why rather than return an empty run.
        return Err(ExportError::Line { line, source });
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Outcome, TaskId};

    /// A `Write` whose bytes the test can read while the sink still holds it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn run() -> RunRecord {
        RunRecord {
            executor: "command".into(),
            started_unix_ms: 1_700_000_000_000,
            host: "host".into(),
            cores: 4,
            pardo_version: "0.1.0".into(),
            workers: 2,
            settings: vec![("jobs".into(), "2".into())],
        }
    }

    #[test]
    fn lines_are_written_as_they_happen_and_pin_the_format() {
        let out = Shared::default();
        let sink = JsonLines::new(out.clone(), &run()).unwrap();
        let mut r = TaskRecord::new(TaskId(1), 1, 5, 10, 30);
        r.exit_code = Some(3);
        r.outcome = Outcome::Failed;
        sink.on_record(&r);
        // Visible before the run ends: a kill now keeps both lines.
        let text = String::from_utf8(lock(&out.0).clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "{\"type\":\"run\",\"executor\":\"command\",\"started_unix_ms\":1700000000000,\
                 \"host\":\"host\",\"cores\":4,\"pardo_version\":\"0.1.0\",\"workers\":2,\
                 \"settings\":[[\"jobs\",\"2\"]]}",
                "{\"type\":\"task\",\"id\":1,\"attempt\":1,\"items\":1,\"input\":\"\",\"worker\":1,\
                 \"submitted_ns\":5,\"started_ns\":10,\"finished_ns\":30,\"cpu_user_ns\":0,\
                 \"cpu_sys_ns\":0,\"cpu_wait_ns\":null,\"max_rss_bytes\":null,\"exit_code\":3,\
                 \"signal\":null,\"output_bytes\":null,\"outcome\":\"failed\"}",
            ]
        );
        sink.on_capacity(40, 3);
        sink.stderr_tail(&StderrTail::of(TaskId(1), 1, b"boom\n"));
        let text = String::from_utf8(lock(&out.0).clone()).unwrap();
        assert!(text.ends_with(
            "{\"type\":\"capacity\",\"at_ns\":40,\"workers\":3}\n\
             {\"type\":\"stderr\",\"id\":1,\"attempt\":1,\"tail\":\"boom\\n\"}\n"
        ));
    }

    #[test]
    fn a_live_run_reads_back_into_the_same_report() {
        let rec = Recorder::new(run(), true, crate::monitor::Retention::SummaryOnly);
        let out = Shared::default();
        let sink = JsonLines::attach(&rec, out.clone()).unwrap();
        let w1 = rec.worker(1);
        let w2 = rec.worker(2);
        for i in 0..50u64 {
            let id = rec.submit(1);
            let w = if i % 2 == 0 { &w1 } else { &w2 };
            let mut r = TaskRecord::new(id, w.worker(), i * 10, i * 10 + 3, i * 10 + 3 + i * 7);
            r.cpu_user_ns = i * 3;
            r.input = format!("item {i}");
            if i % 9 == 0 {
                r.outcome = Outcome::Failed;
                r.exit_code = Some(1);
            }
            w.write(r);
        }
        rec.set_capacity(3);
        rec.note_change(2, 3, "throughput still rising".into());
        let live = rec.report();
        sink.finish(&live).unwrap();
        let bytes = lock(&out.0).clone();
        let log = read_json_lines(bytes.as_slice()).unwrap();
        assert_eq!(log.records.len(), 50);
        assert_eq!(log.summary.as_ref(), Some(&live));
        assert_eq!(log.report(), live, "the records fold into the same numbers");
    }

    #[test]
    fn a_cut_last_line_is_dropped_and_a_bad_middle_line_is_named() {
        let out = Shared::default();
        let sink = JsonLines::new(out.clone(), &run()).unwrap();
        sink.on_record(&TaskRecord::new(TaskId(1), 1, 0, 1, 2));
        sink.on_record(&TaskRecord::new(TaskId(2), 1, 0, 2, 3));
        let mut bytes = lock(&out.0).clone();
        bytes.truncate(bytes.len() - 20);
        let log = read_json_lines(bytes.as_slice()).unwrap();
        assert_eq!(log.records.len(), 1);
        assert_eq!(log.summary, None);

        let damaged = b"{\"type\":\"nope\"}\n{\"type\":\"sample\",\"at_ns\":1,\"running\":0,\"queued\":0,\"done\":0,\"target_workers\":1}\n";
        let err = read_json_lines(&damaged[..]).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
