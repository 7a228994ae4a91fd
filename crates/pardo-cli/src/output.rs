//! What the runner's events become: grouped output (each job's stdout and stderr written whole,
//! never interleaved with another job's), `-k` reordering, `--tag` and `--tagstring`, `-v`,
//! `--line-buffer` and `--ungroup`, the joblog, `--results` and the progress bar.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::sync::Mutex;

use indicatif::ProgressBar;
use pardo::command::joblog::{Joblog, JoblogEntry};
use pardo::command::{Events, JobArgs, JobDone, OutputStream, Spool, Template};

use crate::results::{self, Results, Sources};

/// Output settings.
#[derive(Debug, Default)]
pub struct OutputOptions {
    pub keep_order: bool,
    /// `--tag` (the template `{}`) or `--tagstring`: each line's prefix, before a tab.
    pub tag: Option<Template>,
    /// `-v`: each job's command first.
    pub verbose: bool,
    /// Output is handed over while jobs run (`--line-buffer`, `-u`), not grouped per job.
    pub streaming: bool,
    pub joblog: Option<Joblog>,
    /// `--results`; the jobs' output then goes there only.
    pub results: Option<Results>,
    /// How many input sources each job's values cycle through (for the `--results` tree).
    pub sources: Option<usize>,
    pub bar: Option<ProgressBar>,
}

/// The runner's [`Events`] for the command line.
#[derive(Debug)]
pub struct Output {
    state: Mutex<State>,
}

/// A finished job's stdout and stderr, ready to print (large ones in temporary files), and the
/// `--tag` prefix for each of their lines.
#[derive(Debug)]
struct Grouped {
    tag: Option<Vec<u8>>,
    /// `-v`: the command and a newline, printed before the job's output.
    command: Option<Vec<u8>>,
    /// With `--results x.csv` (`.tsv`, `.json`): the job's row, written instead of its output.
    row: Option<results::Row>,
    stdout: Spool,
    stderr: Spool,
}

#[derive(Debug)]
struct State {
    opts: OutputOptions,
    /// With `-k`: the next job number to print, and finished jobs waiting for their turn
    /// (`None` for a job skipped by `--resume`).
    next: u64,
    pending: BTreeMap<u64, Option<Grouped>>,
    /// With streamed output and a tag: the slot of each running job (`{%}` in its lines).
    slots: std::collections::HashMap<u64, u32>,
}

impl Output {
    pub fn new(opts: OutputOptions) -> Output {
        Output {
            state: Mutex::new(State {
                opts,
                next: 1,
                pending: BTreeMap::new(),
                slots: Default::default(),
            }),
        }
    }

    /// Prints what `-k` still holds, in order — jobs that never ran (a spawn error, a halt,
    /// an interrupt) leave gaps that would otherwise hold back every later job's output — and
    /// clears the progress bar.
    pub fn finish(&self) -> io::Result<()> {
        let mut st = self.lock();
        if let Some(bar) = &st.opts.bar {
            bar.finish_and_clear();
        }
        for (_, entry) in std::mem::take(&mut st.pending) {
            if let Some(g) = entry {
                st.emit(&g)?;
            }
        }
        if let Some(r) = &mut st.opts.results {
            r.finish()?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn tagged(tag: Option<&[u8]>, data: &[u8]) -> Vec<u8> {
    let Some(tag) = tag else { return data.to_vec() };
    let mut out = Vec::with_capacity(data.len() + tag.len() * 4);
    for line in data.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(tag);
        out.extend_from_slice(line);
    }
    out
}

/// The prefix of a job's lines: its tag template rendered, then a tab.
fn tag_of(tag: &Template, seq: u64, slot: u32, args: &[Vec<u8>]) -> Vec<u8> {
    let mut t = tag.render_text(&JobArgs { seq, slot, args });
    t.push(b'\t');
    t
}

fn emit_bytes(stdout: &[u8], stderr: &[u8]) -> io::Result<()> {
    if !stdout.is_empty() {
        let mut o = io::stdout().lock();
        o.write_all(stdout)?;
        o.flush()?;
    }
    if !stderr.is_empty() {
        let mut e = io::stderr().lock();
        e.write_all(stderr)?;
        e.flush()?;
    }
    Ok(())
}

/// Prints a grouped job, streaming from its spools (a spilled one is never read whole).
fn emit(g: &Grouped) -> io::Result<()> {
    if g.command.is_some() || !g.stdout.is_empty() {
        let mut o = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
        if let Some(c) = &g.command {
            // -v: the command is an output line like the others, tagged too.
            if let Some(t) = &g.tag {
                o.write_all(t)?;
            }
            o.write_all(c)?;
        }
        write_tagged(g.tag.as_deref(), &g.stdout, &mut o)?;
        o.flush()?;
    }
    if !g.stderr.is_empty() {
        let mut e = BufWriter::with_capacity(64 * 1024, io::stderr().lock());
        write_tagged(g.tag.as_deref(), &g.stderr, &mut e)?;
        e.flush()?;
    }
    Ok(())
}

fn write_tagged(tag: Option<&[u8]>, src: &Spool, w: &mut dyn Write) -> io::Result<()> {
    let Some(tag) = tag else {
        return src.copy_to(w);
    };
    let mut r = BufReader::with_capacity(64 * 1024, src.reader()?);
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        w.write_all(tag)?;
        w.write_all(&line)?;
    }
}

impl State {
    fn flush_in_order(&mut self) -> io::Result<()> {
        while let Some(entry) = self.pending.remove(&self.next) {
            if let Some(g) = entry {
                self.emit(&g)?;
            }
            self.next += 1;
        }
        Ok(())
    }

    /// Prints a job's output, or writes its results row in its place.
    fn emit(&mut self, g: &Grouped) -> io::Result<()> {
        match (&g.row, &mut self.opts.results) {
            (Some(row), Some(r)) => r.write_row(row),
            (None, Some(_)) => Ok(()),
            _ => emit(g),
        }
    }
}

impl Events for Output {
    fn command(&self, seq: u64, slot: u32, args: &[Vec<u8>], command: &[u8]) {
        let mut st = self.lock();
        if !st.opts.streaming || st.opts.results.is_some() {
            return;
        }
        if st.opts.tag.is_some() {
            st.slots.insert(seq, slot);
        }
        if !st.opts.verbose {
            return;
        }
        let mut line = st
            .opts
            .tag
            .as_ref()
            .map(|t| tag_of(t, seq, slot, args))
            .unwrap_or_default();
        line.extend_from_slice(command);
        line.push(b'\n');
        drop(st);
        let _ = emit_bytes(&line, b"");
    }

    fn line(&self, seq: u64, args: &[Vec<u8>], stream: OutputStream, data: &[u8]) {
        let tag = {
            let st = self.lock();
            let slot = st.slots.get(&seq).copied().unwrap_or(0);
            st.opts.tag.as_ref().map(|t| tag_of(t, seq, slot, args))
        };
        let data = tagged(tag.as_deref(), data);
        let _ = match stream {
            OutputStream::Stdout => emit_bytes(&data, b""),
            OutputStream::Stderr => emit_bytes(b"", &data),
        };
    }

    fn done(&self, d: JobDone<'_>) -> io::Result<()> {
        let mut st = self.lock();
        st.slots.remove(&d.seq);
        let f = &d.finished;
        // A job pardo itself stopped (Ctrl-C, TERM, --halt now) did not finish: as GNU parallel
        // does, it stays out of the joblog, so --resume runs it again.
        if let (Some(log), false) = (&mut st.opts.joblog, f.stopped) {
            log.write(&JoblogEntry {
                seq: d.seq,
                host: d.host,
                start_unix_s: d.start_unix_s,
                runtime_s: d.runtime.as_secs_f64(),
                stdout_bytes: f.stdout_bytes,
                exit_code: results::exit_value(&d),
                signal: f.signal.unwrap_or(0),
                command: d.command,
            })
            .map_err(|e| io::Error::new(e.kind(), format!("cannot write the joblog: {e}")))?;
        }
        let sources = Sources(st.opts.sources);
        let row = match &mut st.opts.results {
            Some(r) => r.save(&d, sources)?,
            None => None,
        };
        if let Some(bar) = &st.opts.bar {
            bar.inc(1);
        }
        // As GNU parallel: with --results the output goes there and nowhere else.
        let printed = st.opts.results.is_none();
        let g = Grouped {
            tag: st
                .opts
                .tag
                .as_ref()
                .map(|t| tag_of(t, d.seq, d.slot, d.args)),
            command: (st.opts.verbose && !st.opts.streaming).then(|| {
                let mut c = d.command.to_vec();
                c.push(b'\n');
                c
            }),
            stdout: d.finished.stdout,
            stderr: d.finished.stderr,
            row,
        };
        if !printed && g.row.is_none() {
            if st.opts.keep_order {
                // Nothing to print, but later rows must not wait for this one.
                st.pending.insert(d.seq, None);
                return st.flush_in_order();
            }
            return Ok(());
        }
        if st.opts.keep_order {
            st.pending.insert(d.seq, Some(g));
            st.flush_in_order()
        } else {
            st.emit(&g)
        }
    }

    fn skipped(&self, seq: u64) {
        let mut st = self.lock();
        if st.opts.keep_order {
            st.pending.insert(seq, None);
            let _ = st.flush_in_order();
        }
    }
}
