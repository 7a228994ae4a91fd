//! The joblog: GNU parallel's `--joblog` format, byte for byte, and reading one back for
//! `--resume`.
//!
//! A header line, then one line per finished job, tab-separated:
//! - `Seq`: the job number (`{#}`);
//! - `Host`: `:` (this machine), or the host name of the worker that ran the job on a cluster
//!   (where GNU parallel writes the `--sshlogin`);
//! - `Starttime`: Unix time the job started, seconds with three decimals;
//! - `JobRuntime`: seconds with three decimals, right-aligned in 10 columns (`%10.3f`);
//! - `Send`: bytes sent to a remote host: `0` here (all jobs are local);
//! - `Receive`: bytes the job wrote to standard output (as GNU parallel counts them);
//! - `Exitval`: the exit code (0 when a signal ended it);
//! - `Signal`: the signal number that ended it, else 0;
//! - `Command`: the command as shell code, every value quoted — except that a newline (in the
//!   template or a value) is written as a space, so each record stays one line and `--resume`
//!   can read it back. GNU parallel writes the newline as it is.
//!
//! Each line is written and flushed when its job ends, so a runner killed mid-run leaves a
//! joblog that names exactly the jobs that finished.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

/// The header line, without its newline.
pub const HEADER: &str =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand";

/// One joblog line.
#[derive(Clone, Debug, PartialEq)]
pub struct JoblogEntry<'a> {
    /// Job number.
    pub seq: u64,
    /// The host that ran it when that was not this machine; `None` writes `:`.
    pub host: Option<&'a str>,
    /// Start, in seconds since the Unix epoch.
    pub start_unix_s: f64,
    /// Run time in seconds.
    pub runtime_s: f64,
    /// Bytes the job wrote to standard output.
    pub stdout_bytes: u64,
    /// Exit code (0 when killed by a signal).
    pub exit_code: i32,
    /// Signal number, or 0.
    pub signal: i32,
    /// The command as shell code.
    pub command: &'a [u8],
}

/// Formats one line, newline included.
///
/// ```
/// use pardo::command::joblog::{format_line, JoblogEntry};
/// let line = format_line(&JoblogEntry {
///     seq: 3, host: None, start_unix_s: 1700000000.1234, runtime_s: 0.5, stdout_bytes: 12,
///     exit_code: 1, signal: 0, command: b"echo 'a b'",
/// });
/// assert_eq!(line, b"3\t:\t1700000000.123\t     0.500\t0\t12\t1\t0\techo 'a b'\n");
/// ```
pub fn format_line(e: &JoblogEntry<'_>) -> Vec<u8> {
    let mut line = format!(
        "{}\t{}\t{:.3}\t{:10.3}\t0\t{}\t{}\t{}\t",
        e.seq,
        host_field(e.host),
        e.start_unix_s,
        e.runtime_s,
        e.stdout_bytes,
        e.exit_code,
        e.signal
    )
    .into_bytes();
    // A newline inside the command would split the record; GNU parallel writes it as is, we
    // keep lines parseable for --resume.
    line.extend(e.command.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
    line.push(b'\n');
    line
}

/// The joblog's (and `--results`') `Host` field: `:` for this machine, else the host name
/// with any tab or line break (which would split the record) turned into a space.
pub fn host_field(host: Option<&str>) -> String {
    match host {
        None | Some("") => ":".to_owned(),
        Some(h) => h.replace(['\t', '\n', '\r'], " "),
    }
}

/// A joblog being written: one flushed line per finished job.
#[derive(Debug)]
pub struct Joblog {
    file: File,
}

impl Joblog {
    /// Creates (truncates) the joblog and writes the header, or with `append` opens it to add
    /// lines after those already there (writing the header if the file is empty).
    ///
    /// A symlink in the joblog's place is refused, not followed: in a shared directory someone
    /// else may have planted it to make the runner overwrite or append to its target.
    pub fn open(path: &Path, append: bool) -> io::Result<Joblog> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .custom_flags(no_follow(path))
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    io::Error::other("it is a symbolic link; pardo does not write through one")
                } else {
                    e
                }
            })?;

        if file.metadata()?.len() == 0 {
            file.write_all(format!("{HEADER}\n").as_bytes())?;
        }
        Ok(Joblog { file })
    }

    /// Appends one line with a single write, so a killed runner leaves whole lines only.
    pub fn write(&mut self, e: &JoblogEntry<'_>) -> io::Result<()> {
        self.file.write_all(&format_line(e))?;
        self.file.flush()
    }
}

/// `O_NOFOLLOW`, the open flag for a file the runner writes — except for the few system links
/// people pass on purpose (`--joblog /dev/stderr`), which live in a directory only root can
/// write to.
///
/// ```
/// use pardo::command::joblog::no_follow;
/// assert_eq!(no_follow("/tmp/log".as_ref()), libc::O_NOFOLLOW);
/// assert_eq!(no_follow("/dev/stderr".as_ref()), 0);
/// ```
pub fn no_follow(path: &Path) -> i32 {
    let system = ["/dev/stdout", "/dev/stderr", "/dev/null"];
    if system.iter().any(|s| path == Path::new(s)) {
        0
    } else {
        libc::O_NOFOLLOW
    }
}

/// The job numbers a joblog records as done: every line for `--resume`, or only the lines with
/// exit code 0 and no signal for `--resume-failed` (`only_ok`). A missing file means none.
pub fn done_jobs(path: &Path, only_ok: bool) -> io::Result<HashSet<u64>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(e),
    };
    let mut done = HashSet::new();
    for line in BufReader::new(file).split(b'\n') {
        let line = line?;
        let fields: Vec<&[u8]> = line.splitn(9, |&b| b == b'\t').collect();
        if fields.len() < 9 {
            continue;
        }
        let num = |f: &[u8]| std::str::from_utf8(f).ok()?.trim().parse::<i64>().ok();
        let (Some(seq), Some(exit), Some(sig)) = (num(fields[0]), num(fields[6]), num(fields[7]))
        else {
            continue; // the header, or a torn line
        };
        if !only_ok || (exit == 0 && sig == 0) {
            done.insert(seq as u64);
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_field_is_a_colon_here_and_one_field_elsewhere() {
        assert_eq!(super::host_field(None), ":");
        assert_eq!(super::host_field(Some("")), ":");
        assert_eq!(super::host_field(Some("node-7")), "node-7");
        assert_eq!(super::host_field(Some("a\tb\nc")), "a b c");
    }
}
