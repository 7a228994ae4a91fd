//! "See the run": the files and endpoints a run can leave behind besides its output —
//! `--json` (JSON Lines as jobs end). Set up before the run, fed while it goes, finished after.

use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use pardo::command::{Events, JobDone, OutputStream};
use pardo::monitor::export::{JsonLines, StderrTail, STDERR_TAIL_BYTES};
use pardo::monitor::{Recorder, Report};
use pardo::TaskId;

use crate::args::Args;
use crate::run::create_no_follow;

/// How many failed attempts' stderr tails are kept in memory for the report: the first ones
/// are usually the telling ones, and the bound keeps memory flat however many jobs fail.
const TAILS_KEPT: usize = 100;

/// What the run writes besides its output.
pub struct Views {
    jsonl: Option<(Arc<JsonLines>, String)>,
    tails: Mutex<Vec<StderrTail>>,
}

impl Views {
    /// Checks the options and opens what must exist before the first job ends.
    pub fn open(a: &Args, recorder: &Recorder) -> anyhow::Result<Views> {
        let jsonl = match &a.json {
            Some(p) if is_stdout(p) => bail!(
                "--json -: job output goes to standard output, so the records cannot go there \
                 too; give --json a file name"
            ),
            Some(p) => {
                let file = create_no_follow(p)
                    .with_context(|| format!("cannot write --json {}", p.display()))?;
                let sink = JsonLines::attach(recorder, file)
                    .with_context(|| format!("cannot write --json {}", p.display()))?;
                Some((sink, p.display().to_string()))
            }
            None => None,
        };
        Ok(Views {
            jsonl,
            tails: Mutex::new(Vec::new()),
        })
    }

    /// Whether anything needs every record kept in memory until the end.
    pub fn needs_records(_a: &Args) -> bool {
        false
    }

    /// Wraps the output so failed jobs' stderr tails are kept.
    pub fn events<'a>(&'a self, inner: &'a dyn Events) -> Tee<'a> {
        Tee { inner, views: self }
    }

    /// Writes the summary and whatever is drawn at the end.
    pub fn finish(&self, report: &Report) -> anyhow::Result<()> {
        if let Some((sink, path)) = &self.jsonl {
            sink.finish(report)
                .with_context(|| format!("cannot write --json {path}"))?;
        }
        Ok(())
    }

    fn failed(&self, id: TaskId, attempt: u32, stderr: &pardo::command::Spool) {
        if self.jsonl.is_none() {
            return;
        }
        let tail = match tail_of(stderr) {
            Ok(t) => StderrTail::of(id, attempt, &t),
            Err(_) => return,
        };
        if let Some((sink, _)) = &self.jsonl {
            sink.stderr_tail(&tail);
        }
        let mut tails = self.tails.lock().unwrap_or_else(|p| p.into_inner());
        if tails.len() < TAILS_KEPT {
            tails.push(tail);
        }
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
}

/// Whether `path` is the standard-output marker `-`.
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}
