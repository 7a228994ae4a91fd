//! What the runner's events become: grouped output (each job's stdout and stderr written whole,
//! never interleaved with another job's), `-k` reordering, `--tag`, `--line-buffer`, the joblog,
//! `--results` files and the progress bar.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use indicatif::ProgressBar;
use pardo::command::joblog::{Joblog, JoblogEntry};
use pardo::command::{Events, JobDone, Stream};

/// Output settings.
#[derive(Debug, Default)]
pub struct OutputOptions {
    pub keep_order: bool,
    pub tag: bool,
    pub joblog: Option<Joblog>,
    pub results: Option<PathBuf>,
    pub bar: Option<ProgressBar>,
}

/// The runner's [`Events`] for the command line.
#[derive(Debug)]
pub struct Output {
    state: Mutex<State>,
}

/// A finished job's stdout and stderr, ready to print.
type Grouped = (Vec<u8>, Vec<u8>);

#[derive(Debug)]
struct State {
    opts: OutputOptions,
    /// With `-k`: the next job number to print, and finished jobs waiting for their turn
    /// (`None` for a job skipped by `--resume`).
    next: u64,
    pending: BTreeMap<u64, Option<Grouped>>,
}

impl Output {
    pub fn new(opts: OutputOptions) -> Output {
        Output {
            state: Mutex::new(State {
                opts,
                next: 1,
                pending: BTreeMap::new(),
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
            if let Some((out, err)) = entry {
                emit(&out, &err)?;
            }
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

fn tag_of(args: &[Vec<u8>]) -> Vec<u8> {
    let mut t = args.join(&b"\t"[..]);
    t.push(b'\t');
    t
}

fn emit(stdout: &[u8], stderr: &[u8]) -> io::Result<()> {
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

impl State {
    fn flush_in_order(&mut self) -> io::Result<()> {
        while let Some(entry) = self.pending.remove(&self.next) {
            if let Some((out, err)) = entry {
                emit(&out, &err)?;
            }
            self.next += 1;
        }
        Ok(())
    }
}

impl Events for Output {
    fn line(&self, _seq: u64, args: &[Vec<u8>], stream: Stream, data: &[u8]) {
        let tag = self.lock().opts.tag.then(|| tag_of(args));
        let data = tagged(tag.as_deref(), data);
        let _ = match stream {
            Stream::Stdout => emit(&data, b""),
            Stream::Stderr => emit(b"", &data),
        };
    }

    fn done(&self, d: JobDone<'_>) -> io::Result<()> {
        let mut st = self.lock();
        let f = &d.finished;
        if let Some(log) = &mut st.opts.joblog {
            log.write(&JoblogEntry {
                seq: d.seq,
                start_unix_s: d.start_unix_s,
                runtime_s: d.runtime.as_secs_f64(),
                stdout_bytes: f.stdout_bytes,
                exit_code: f.exit_code.unwrap_or(0),
                signal: f.signal.unwrap_or(0),
                command: d.command,
            })
            .map_err(|e| io::Error::new(e.kind(), format!("cannot write the joblog: {e}")))?;
        }
        if let Some(dir) = &st.opts.results {
            let job_dir = dir.join(d.seq.to_string());
            std::fs::create_dir_all(&job_dir)
                .and_then(|()| std::fs::write(job_dir.join("stdout"), &f.stdout))
                .and_then(|()| std::fs::write(job_dir.join("stderr"), &f.stderr))
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot write {}: {e}", job_dir.display()))
                })?;
        }
        if let Some(bar) = &st.opts.bar {
            bar.inc(1);
        }
        let tag = st.opts.tag.then(|| tag_of(d.args));
        let out = tagged(tag.as_deref(), &f.stdout);
        let err = tagged(tag.as_deref(), &f.stderr);
        if st.opts.keep_order {
            st.pending.insert(d.seq, Some((out, err)));
            st.flush_in_order()
        } else {
            emit(&out, &err)
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
