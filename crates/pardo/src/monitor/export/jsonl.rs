//! JSON Lines: the run as it happens, one JSON object a line, each written as soon as it is
//! known, so a run killed half-way (even by `kill -9`) leaves the lines of what it finished.
//!
//! [`read_json_lines`] folds such a file back into a [`RunLog`], whose
//! [`report`](RunLog::report) gives the same numbers as the live run's.
//!
//! [`JsonLines`] gives the format line by line and says exactly when a line reaches the file.

use std::io::{BufRead, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// A [`RecordSink`] that writes the run as JSON Lines while it goes.
///
/// The format (every line has a `"type"`; the other keys are the fields of the type named):
///
/// ```text
/// {"type":"run", …RunRecord}                        first line
/// {"type":"task", …TaskRecord}                      one per attempt, as it ends
/// {"type":"sample", …Sample}                        about every 100 ms
/// {"type":"capacity","at_ns":…,"workers":…}         the worker count changed
/// {"type":"change", …ConcurrencyChange}             the controller changed it, and why
/// {"type":"stderr","id":…,"attempt":…,"tail":"…"}   the end of a failed attempt's stderr
/// {"type":"summary", …Report}                       last line, when the run ended cleanly
/// ```
///
/// **When a line reaches the file.** The header is written by [`JsonLines::new`] itself. Every
/// later line is handed (as a copy of its record) to a writer thread of the sink's own: the
/// thread that ran the task only appends it to a list and goes on to its next task, with no
/// system call and, as a rule, without waking anyone. The first line into an empty list wakes
/// the writer, which lets lines gather for at most [`JsonLines::LINGER`], then encodes them
/// all and writes them with one `write` call per [`JsonLines::BATCH_BYTES`], flushing after
/// each batch. So every line reaches the kernel within [`JsonLines::LINGER`] of its task's
/// end (plus the time to write the batch ahead of it, which a slow disk can stretch), never
/// at the end of the run or when a buffer fills. What the kernel has been given survives the
/// process being killed: a run killed half-way, even by `kill -9`, keeps every line but those
/// of the attempts that ended in its last [`JsonLines::LINGER`] or so. Lines are not
/// `fsync`ed: a crash of the machine itself may lose what the kernel had not yet put on disk.
/// [`JsonLines::flush`] writes everything handed over so far and waits until it is written;
/// [`JsonLines::finish`] writes the summary and waits for the writer to end.
///
/// Why a list and a short linger rather than a channel that wakes the writer for each line:
/// on the command runner's path (`-j 2`, trivial jobs) waking another thread per line cost
/// more than the `write` it saved (a futex wake and two context switches per job).
///
/// A write error does not stop the run; the first one is kept and returned by
/// [`JsonLines::finish`].
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
    shared: Arc<Shared>,
    /// Returns the first error it met; taken by `finish` or by `drop`.
    writer: Mutex<Option<JoinHandle<Option<ExportError>>>>,
}

/// What the sink and its writer thread share.
struct Shared {
    pending: Mutex<Pending>,
    /// The writer waits here for lines, or for its linger to be cut short.
    wake: Condvar,
    /// Senders wait here while the list is full; flushers wait here for their batch.
    written: Condvar,
}

#[derive(Default)]
struct Pending {
    lines: Vec<Line>,
    /// Flushes asked for, and flushes done (a flush is done once every line handed over
    /// before it was asked is written).
    flush_asked: u64,
    flush_done: u64,
    /// Write what is left and end.
    end: bool,
    /// The writer has ended (or died): nothing more will be written.
    gone: bool,
}

impl Pending {
    /// Whether the writer should write now rather than linger.
    fn urgent(&self) -> bool {
        self.end
            || self.flush_asked != self.flush_done
            || self.lines.len() >= JsonLines::QUEUE_LINES
    }
}

impl std::fmt::Debug for JsonLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLines").finish_non_exhaustive()
    }
}

impl JsonLines {
    /// Most lines waiting for the writer thread. A run that outpaces its disk by more than
    /// this waits for the disk (as it did when every line was written on the worker's
    /// thread), so memory stays bounded however long the run.
    pub const QUEUE_LINES: usize = 4096;

    /// The most the writer puts in one `write` call.
    pub const BATCH_BYTES: usize = 64 * 1024;

    /// How long the writer lets lines gather once the first has come, at most.
    pub const LINGER: Duration = Duration::from_millis(10);

    /// A writer to `out` that has written the header line for `run`.
    ///
    /// The header is written (and flushed) before this returns, so an output that cannot be
    /// written is an error here, before the run starts.
    pub fn new(
        out: impl Write + Send + 'static,
        run: &RunRecord,
    ) -> Result<JsonLines, ExportError> {
        let mut out: Box<dyn Write + Send> = Box::new(out);
        let mut buf = Vec::with_capacity(JsonLines::BATCH_BYTES);
        encode(&Line::Run(run.clone()), &mut buf)?;
        out.write_all(&buf)?;
        out.flush()?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            written: Condvar::new(),
        });
        let theirs = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("pardo-jsonl".into())
            .spawn(move || write_lines(out, &theirs))?;
        Ok(JsonLines {
            shared,
            writer: Mutex::new(Some(writer)),
        })
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
        self.send(Line::Stderr(tail.clone()));
    }

    /// Writes every line handed over so far, without waiting for [`JsonLines::LINGER`], and
    /// returns once they are written to the output (and the output flushed). Returns at once
    /// after [`finish`](JsonLines::finish).
    ///
    /// ```
    /// use pardo::monitor::{export::JsonLines, RecordSink, RunRecord, TaskRecord};
    /// let file = tempfile::NamedTempFile::new().unwrap();
    /// let sink = JsonLines::new(file.reopen().unwrap(), &RunRecord::now("command", 1)).unwrap();
    /// sink.on_record(&TaskRecord::new(pardo::TaskId(1), 1, 0, 1, 2));
    /// sink.flush();
    /// let text = std::fs::read_to_string(file.path()).unwrap();
    /// assert_eq!(text.lines().count(), 2);
    /// ```
    pub fn flush(&self) {
        let mut p = lock(&self.shared.pending);
        p.flush_asked += 1;
        let ticket = p.flush_asked;
        self.shared.wake.notify_one();
        while p.flush_done < ticket && !p.gone {
            p = wait(&self.shared.written, p);
        }
    }

    /// Writes the summary line, waits until everything is written and returns the first error
    /// any line met. Call it once, at the end: lines handed over later are not written.
    pub fn finish(&self, report: &Report) -> Result<(), ExportError> {
        self.send(Line::Summary(Box::new(report.clone())));
        self.end();
        let Some(writer) = lock(&self.writer).take() else {
            return Ok(());
        };
        match writer.join() {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(e),
            Err(_) => Err(ExportError::Io(std::io::Error::other(
                "the JSON Lines writer thread panicked",
            ))),
        }
    }

    /// Hands `line` to the writer, waiting while the list is full; drops it once the writer
    /// has ended.
    fn send(&self, line: Line) {
        let mut p = lock(&self.shared.pending);
        while p.lines.len() >= JsonLines::QUEUE_LINES && !p.gone {
            p = wait(&self.shared.written, p);
        }
        if p.gone || p.end {
            return;
        }
        p.lines.push(line);
        // Only the first line wakes the writer (it lingers for the others), and a full list
        // cuts the linger short.
        if p.lines.len() == 1 || p.lines.len() == JsonLines::QUEUE_LINES {
            self.shared.wake.notify_one();
        }
    }

    /// Tells the writer to write what is left and end.
    fn end(&self) {
        lock(&self.shared.pending).end = true;
        self.shared.wake.notify_one();
    }
}

impl Drop for JsonLines {
    /// Lets the writer write what it was handed, and waits for it: dropping the sink without
    /// [`finish`](JsonLines::finish) loses no line (and writes no summary).
    fn drop(&mut self) {
        self.end();
        if let Some(writer) = lock(&self.writer).take() {
            let _ = writer.join();
        }
    }
}

impl RecordSink for JsonLines {
    fn on_record(&self, record: &TaskRecord) {
        self.send(Line::Task(record.clone()));
    }
    fn on_sample(&self, sample: &Sample) {
        self.send(Line::Sample(*sample));
    }
    fn on_change(&self, change: &ConcurrencyChange) {
        self.send(Line::Change(change.clone()));
    }
    fn on_capacity(&self, at_ns: u64, workers: usize) {
        self.send(Line::Capacity { at_ns, workers });
    }
}

fn wait<'a>(cv: &Condvar, guard: MutexGuard<'a, Pending>) -> MutexGuard<'a, Pending> {
    cv.wait(guard).unwrap_or_else(|p| p.into_inner())
}

/// Appends `line` and its newline to `buf`, or nothing when it cannot be encoded.
fn encode(line: &Line, buf: &mut Vec<u8>) -> Result<(), ExportError> {
    let len = buf.len();
    if let Err(e) = serde_json::to_writer(&mut *buf, line) {
        buf.truncate(len);
        return Err(e.into());
    }
    buf.push(b'\n');
    Ok(())
}

/// Marks the writer gone however it ends (a panicking `Write` included), so that no sender
/// or flusher waits for it forever.
struct Gone<'a>(&'a Shared);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        let mut p = lock(&self.0.pending);
        p.gone = true;
        p.lines.clear();
        drop(p);
        self.0.written.notify_all();
    }
}

/// The writer thread: waits for a first line, lets others gather for at most
/// [`JsonLines::LINGER`], writes them all, and again, until told to end. Returns the first
/// error.
fn write_lines(mut out: Box<dyn Write + Send>, shared: &Shared) -> Option<ExportError> {
    let _gone = Gone(shared);
    let mut error: Option<ExportError> = None;
    let mut buf = Vec::with_capacity(JsonLines::BATCH_BYTES);
    let mut batch: Vec<Line> = Vec::new();
    loop {
        let (ticket, end) = {
            let mut p = lock(&shared.pending);
            while p.lines.is_empty() && !p.urgent() {
                p = wait(&shared.wake, p);
            }
            let until = Instant::now() + JsonLines::LINGER;
            while !p.urgent() {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                p = shared
                    .wake
                    .wait_timeout(p, left)
                    .map_or_else(|e| e.into_inner().0, |(g, _)| g);
            }
            std::mem::swap(&mut batch, &mut p.lines);
            (p.flush_asked, p.end)
        };
        // The list has room again.
        shared.written.notify_all();
        for line in batch.drain(..) {
            if let Err(e) = encode(&line, &mut buf) {
                error.get_or_insert(e);
            }
            if buf.len() >= JsonLines::BATCH_BYTES {
                write_out(&mut out, &mut buf, &mut error);
            }
        }
        write_out(&mut out, &mut buf, &mut error);
        lock(&shared.pending).flush_done = ticket;
        shared.written.notify_all();
        if end {
            return error;
        }
    }
}

/// Writes and flushes `buf` (when it holds anything), keeping the first error.
fn write_out(out: &mut Box<dyn Write + Send>, buf: &mut Vec<u8>, error: &mut Option<ExportError>) {
    if buf.is_empty() {
        return;
    }
    if let Err(e) = out.write_all(buf).and_then(|()| out.flush()) {
        error.get_or_insert(e.into());
    }
    buf.clear();
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
        // Visible before the run ends, with nobody asking for it: a kill now keeps both
        // lines. (The wait is a hang detector, not a timing assertion.)
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while lock(&out.0).iter().filter(|&&b| b == b'\n').count() < 2 {
            assert!(
                std::time::Instant::now() < until,
                "the task line was never written"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
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
                 \"signal\":null,\"output_bytes\":null,\"outcome\":\"failed\",\"host\":null}",
            ]
        );
        sink.on_capacity(40, 3);
        sink.stderr_tail(&StderrTail::of(TaskId(1), 1, b"boom\n"));
        sink.flush();
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

    /// A `Write` that keeps each `write` call's bytes and holds the second call (the first
    /// after the header) until released.
    struct Held {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
        entered: std::sync::mpsc::Sender<()>,
        release: Arc<std::sync::Barrier>,
    }

    impl Write for Held {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let n = {
                let mut w = lock(&self.writes);
                w.push(b.to_vec());
                w.len()
            };
            if n == 2 {
                let _ = self.entered.send(());
                self.release.wait();
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_is_written_alone_and_lines_that_wait_share_one_write() {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let (entered, writing) = std::sync::mpsc::channel();
        let release = Arc::new(std::sync::Barrier::new(2));
        let held = Held {
            writes: writes.clone(),
            entered,
            release: release.clone(),
        };
        let sink = JsonLines::new(held, &run()).unwrap();
        assert_eq!(lock(&writes).len(), 1, "the header, written by new");
        // Task 1 alone: written once the linger is over, with no other line to wait for.
        sink.on_record(&TaskRecord::new(TaskId(1), 1, 0, 1, 2));
        writing.recv().unwrap();
        // While that write is held, nine more end; they go out together in one write.
        for i in 2..=10 {
            sink.on_record(&TaskRecord::new(TaskId(i), 1, 0, i, i + 1));
        }
        release.wait();
        sink.flush();
        let writes = lock(&writes).clone();
        let lines = |b: &Vec<u8>| b.iter().filter(|&&c| c == b'\n').count();
        assert_eq!(
            writes.iter().map(lines).collect::<Vec<_>>(),
            [1, 1, 9],
            "the header, the first line alone, the nine that waited together"
        );
        let text = String::from_utf8(writes.concat()).unwrap();
        let log = read_json_lines(text.as_bytes()).unwrap();
        let ids: Vec<u64> = log.records.iter().map(|r| r.id.0).collect();
        assert_eq!(ids, (1..=10).collect::<Vec<_>>(), "in the order they ended");
    }

    #[test]
    fn a_cut_last_line_is_dropped_and_a_bad_middle_line_is_named() {
        let out = Shared::default();
        let sink = JsonLines::new(out.clone(), &run()).unwrap();
        sink.on_record(&TaskRecord::new(TaskId(1), 1, 0, 1, 2));
        sink.on_record(&TaskRecord::new(TaskId(2), 1, 0, 2, 3));
        sink.flush();
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
