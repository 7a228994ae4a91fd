//! "See the run": the files and endpoints a run can leave behind besides its output —
//! `--json` (JSON Lines as jobs end), `--trace` (a Chrome trace at the end), `--report`
//! (an HTML page at the end) and `--metrics-addr` (Prometheus metrics while it goes). Set up before the run, fed while it goes, finished after.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use pardo::command::{Events, JobDone, OutputStream};
use pardo::monitor::export::{
    read_json_lines, ExportError, JsonLines, RunLog, StderrTail, STDERR_TAIL_BYTES,
};
use pardo::monitor::metrics::{Exposure, MetricsError, MetricsServer};
use pardo::monitor::{Recorder, Report};
use pardo::TaskId;

use crate::args::Args;
use crate::run::create_no_follow;

/// How many failed attempts' stderr tails the report shows: the first ones are usually the
/// telling ones.
const TAILS_KEPT: usize = 100;

/// What the run writes besides its output.
///
/// The trace and the report are drawn at the end from every record, but the records are not
/// kept in memory while the run goes (memory follows concurrency, not the number of jobs):
/// they go, as JSON Lines, to an unnamed temporary file — the spool — through the same
/// writer (and in the same `write` calls) as `--json`'s file, and are read back once the run
/// has ended. Only then, for drawing, are they all in memory at once.
pub struct Views {
    /// The one JSON Lines writer: to `--json`'s file, to the spool, or to both.
    jsonl: Option<Arc<JsonLines>>,
    /// What a write error of `jsonl` is reported as.
    jsonl_what: String,
    /// The records for the trace and the report, when either is asked for.
    spool: Option<File>,
    /// Drawn from the spool at the end, into files opened before the run.
    trace: Option<Drawn>,
    report: Option<Drawn>,
    /// Served until the run ends.
    metrics: Mutex<Option<MetricsServer>>,
}

impl Views {
    /// Checks the options and opens what must exist before the first job ends.
    pub fn open(a: &Args, recorder: &Recorder) -> anyhow::Result<Views> {
        let json = match &a.json {
            Some(p) if is_stdout(p) => bail!(
                "--json -: job output goes to standard output, so the records cannot go there \
                 too; give --json a file name"
            ),
            Some(p) => Some((
                create_no_follow(p)
                    .with_context(|| format!("cannot write --json {}", p.display()))?,
                p.display().to_string(),
            )),
            None => None,
        };
        let trace = a
            .trace
            .as_deref()
            .map(|p| Drawn::open(p, "--trace"))
            .transpose()?;
        let report = a
            .report
            .as_deref()
            .map(|p| Drawn::open(p, "--report"))
            .transpose()?;
        let spool = if trace.is_some() || report.is_some() {
            Some(tempfile::tempfile().context(
                "cannot create the temporary file that keeps the records for --trace and --report",
            )?)
        } else {
            None
        };
        let spooled = "the temporary file that keeps the records for --trace and --report";
        let (out, jsonl_what): (Option<Box<dyn Write + Send>>, String) = match (json, &spool) {
            (Some((file, path)), Some(spool)) => (
                Some(Box::new(Both(file, spool.try_clone()?))),
                format!("cannot write --json {path} or {spooled}"),
            ),
            (Some((file, path)), None) => {
                (Some(Box::new(file)), format!("cannot write --json {path}"))
            }
            (None, Some(spool)) => (
                Some(Box::new(spool.try_clone()?)),
                format!("cannot write {spooled}"),
            ),
            (None, None) => (None, String::new()),
        };
        let jsonl = out
            .map(|out| JsonLines::attach(recorder, out))
            .transpose()
            .with_context(|| jsonl_what.clone())?;
        let metrics = match a.metrics_addr {
            Some(addr) => {
                let exposure = if a.metrics_public {
                    Exposure::Public
                } else {
                    Exposure::LoopbackOnly
                };
                let server =
                    MetricsServer::start(recorder, addr, exposure).map_err(|e| match e {
                        MetricsError::NotLoopback(_) => anyhow::anyhow!(
                            "--metrics-addr {addr}: not a loopback address, so anyone on the \
                             network could read the run's metrics; add --metrics-public to \
                             allow it"
                        ),
                        e => anyhow::Error::new(e).context(format!("--metrics-addr {addr}")),
                    })?;
                eprintln!("pardo: metrics at http://{}/metrics", server.local_addr());
                Some(server)
            }
            None => None,
        };
        Ok(Views {
            jsonl,
            jsonl_what,
            spool,
            trace,
            report,
            metrics: Mutex::new(metrics),
        })
    }

    /// Wraps the output so failed jobs' stderr tails are kept.
    pub fn events<'a>(&'a self, inner: &'a dyn Events) -> Tee<'a> {
        Tee { inner, views: self }
    }

    /// Writes the summary and whatever is drawn at the end.
    pub fn finish(&self, report: &Report) -> anyhow::Result<()> {
        if let Some(server) = self
            .metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            server.stop();
        }
        if let Some(sink) = &self.jsonl {
            sink.finish(report)
                .with_context(|| self.jsonl_what.clone())?;
        }
        let Some(spool) = &self.spool else {
            return Ok(());
        };
        let mut log = read_spool(spool)
            .context("cannot read back the records kept for --trace and --report")?;
        // In the order the recorder gives them (task, then attempt), as the views always had.
        log.records.sort_by_key(|r| (r.id, r.attempt));
        log.stderr.truncate(TAILS_KEPT);
        log.summary = Some(report.clone());
        if let Some(t) = &self.trace {
            t.write(|out| log.write_trace(out))?;
        }
        if let Some(r) = &self.report {
            r.write(|out| log.write_html(out))?;
        }
        Ok(())
    }

    fn failed(&self, id: TaskId, attempt: u32, stderr: &pardo::command::Spool) {
        let Some(sink) = &self.jsonl else { return };
        if let Ok(t) = tail_of(stderr) {
            sink.stderr_tail(&StderrTail::of(id, attempt, &t));
        }
    }
}

/// Reads the spool from its start; its writer has ended.
fn read_spool(spool: &File) -> anyhow::Result<RunLog> {
    let mut f = spool.try_clone()?;
    f.rewind()?;
    Ok(read_json_lines(io::BufReader::new(f))?)
}

/// Writes every byte to both files: `--json`'s and the spool.
struct Both(File, File);

impl Write for Both {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.write_all(b)?;
        self.1.write_all(b)?;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

/// The last [`STDERR_TAIL_BYTES`] of a job's stderr, read through without holding it all.
fn tail_of(spool: &pardo::command::Spool) -> io::Result<Vec<u8>> {
    let mut r = spool.reader()?;
    let mut tail = Vec::with_capacity(STDERR_TAIL_BYTES * 2);
    let mut buf = [0u8; 8192];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(tail);
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > STDERR_TAIL_BYTES * 2 {
            tail.drain(..tail.len() - STDERR_TAIL_BYTES);
        }
    }
}

/// The runner's events, passed on to the output, with failed jobs' stderr noted on the way.
pub struct Tee<'a> {
    inner: &'a dyn Events,
    views: &'a Views,
}

impl Events for Tee<'_> {
    fn line(&self, seq: u64, args: &[Vec<u8>], stream: OutputStream, data: &[u8]) {
        self.inner.line(seq, args, stream, data);
    }
    fn done(&self, d: JobDone<'_>) -> io::Result<()> {
        if !d.ok() {
            self.views
                .failed(TaskId(d.seq), d.attempts, &d.finished.stderr);
        }
        self.inner.done(d)
    }
    fn skipped(&self, seq: u64) {
        self.inner.skipped(seq);
    }
    fn started(&self, seq: u64) {
        self.inner.started(seq);
    }
    fn command(&self, seq: u64, slot: u32, args: &[Vec<u8>], command: &[u8]) {
        self.inner.command(seq, slot, args, command);
    }
}

/// A file drawn at the end of the run, created before it starts so that a path that cannot be
/// written is an error before any job runs, not after all of them.
struct Drawn {
    path: std::path::PathBuf,
    option: &'static str,
    file: Mutex<Option<File>>,
}

impl Drawn {
    fn open(path: &Path, option: &'static str) -> anyhow::Result<Drawn> {
        let file = create_no_follow(path)
            .with_context(|| format!("cannot write {option} {}", path.display()))?;
        Ok(Drawn {
            path: path.to_owned(),
            option,
            file: Mutex::new(Some(file)),
        })
    }

    fn write(
        &self,
        draw: impl FnOnce(&mut io::BufWriter<std::fs::File>) -> Result<(), ExportError>,
    ) -> anyhow::Result<()> {
        let what = || format!("cannot write {} {}", self.option, self.path.display());
        let Some(file) = self.file.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        let mut out = io::BufWriter::new(file);
        draw(&mut out).with_context(what)?;
        out.flush().with_context(what)
    }
}

/// Writes a file drawn at the end of the run through a buffer, naming the option on error.
pub(crate) fn write_file(
    path: &Path,
    option: &str,
    draw: impl FnOnce(&mut io::BufWriter<std::fs::File>) -> Result<(), ExportError>,
) -> anyhow::Result<()> {
    let what = || format!("cannot write {option} {}", path.display());
    let file = create_no_follow(path).with_context(what)?;
    let mut out = io::BufWriter::new(file);
    draw(&mut out).with_context(what)?;
    out.flush().with_context(what)
}

/// Whether `path` is the standard-output marker `-`.
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}
