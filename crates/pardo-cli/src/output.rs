//! What the runner's events become: grouped output (each job's stdout and stderr written whole,
//! never interleaved with another job's), `-k` reordering, `--tag`, `--line-buffer`, the joblog,
//! `--results` files and the progress bar.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use indicatif::ProgressBar;
use pardo::command::joblog::{Joblog, JoblogEntry};
use pardo::command::{Events, JobDone, OutputStream, Spool};

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

/// A finished job's stdout and stderr, ready to print (large ones in temporary files), and the
/// `--tag` prefix for each of their lines.
#[derive(Debug)]
struct Grouped {
    tag: Option<Vec<u8>>,
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
            if let Some(g) = entry {
                emit(&g)?;
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
    if !g.stdout.is_empty() {
        let mut o = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
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

/// Writes a `--results` file as a new file: an old one (a regular file or a planted symlink)
/// is unlinked first, and the new one is created with `O_EXCL`, which never follows a symlink,
/// so whatever a link points to is never written.
fn write_new(path: &Path, data: &Spool) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    data.copy_to(&mut f)
}

impl State {
    fn flush_in_order(&mut self) -> io::Result<()> {
        while let Some(entry) = self.pending.remove(&self.next) {
            if let Some(g) = entry {
                emit(&g)?;
            }
            self.next += 1;
        }
        Ok(())
    }
}

impl Events for Output {
    fn line(&self, _seq: u64, args: &[Vec<u8>], stream: OutputStream, data: &[u8]) {
        let tag = self.lock().opts.tag.then(|| tag_of(args));
        let data = tagged(tag.as_deref(), data);
        let _ = match stream {
            OutputStream::Stdout => emit_bytes(&data, b""),
            OutputStream::Stderr => emit_bytes(b"", &data),
        };
    }

    fn done(&self, d: JobDone<'_>) -> io::Result<()> {
        let mut st = self.lock();
        let f = d.finished;
        // A job pardo itself stopped (Ctrl-C, TERM, --halt now) did not finish: as GNU parallel
        // does, it stays out of the joblog, so --resume runs it again.
        if let (Some(log), false) = (&mut st.opts.joblog, f.stopped) {
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
                .and_then(|()| {
                    // A planted symlink in place of the job's directory would send the files
                    // elsewhere.
                    if std::fs::symlink_metadata(&job_dir)?
                        .file_type()
                        .is_symlink()
                    {
                        return Err(io::Error::other("is a symbolic link, not a directory"));
                    }
                    Ok(())
                })
                .and_then(|()| write_new(&job_dir.join("stdout"), &f.stdout))
                .and_then(|()| write_new(&job_dir.join("stderr"), &f.stderr))
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot write {}: {e}", job_dir.display()))
                })?;
        }
        if let Some(bar) = &st.opts.bar {
            bar.inc(1);
        }
        let g = Grouped {
            tag: st.opts.tag.then(|| tag_of(d.args)),
            stdout: f.stdout,
            stderr: f.stderr,
        };
        if st.opts.keep_order {
            st.pending.insert(d.seq, Some(g));
            st.flush_in_order()
        } else {
            emit(&g)
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
