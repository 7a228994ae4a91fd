//! `--pipe` and `--pipepart`: from the options to the stream of job inputs the runner takes.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use anyhow::{bail, Context};
use pardo::command::pipe::{Blocks, Parts, Split};
use pardo::command::{Block, Stdin};

use crate::args::Args;

/// One standard input per job, pulled as job slots free up.
pub type Stdins = Box<dyn Iterator<Item = io::Result<Stdin>> + Send>;

/// The job inputs of a `--pipe` or `--pipepart` run.
pub struct Piped {
    /// One item per job.
    pub stdins: Stdins,
    /// Set when the reader of a `--round-robin` run failed (it printed why).
    pub read_failed: Arc<AtomicBool>,
}

/// The job inputs when `--pipe` or `--pipepart` is given, for `jobs` jobs at once; `None`
/// otherwise, after checking that no option that needs them was given on its own.
pub fn inputs(a: &Args, has_sources: bool, jobs: usize) -> anyhow::Result<Option<Piped>> {
    if !a.pipe && !a.pipepart {
        let alone = [
            (a.block.is_some(), "--block"),
            (a.recend.is_some(), "--recend"),
            (a.recstart.is_some(), "--recstart"),
            (a.max_records.is_some(), "-N"),
            (a.round_robin, "--round-robin"),
        ];
        if let Some((_, name)) = alone.iter().find(|(given, _)| *given) {
            bail!("{name} needs --pipe or --pipepart");
        }
        return Ok(None);
    }
    if a.pipe && a.pipepart {
        bail!("--pipe and --pipepart cannot be used together: --pipepart -a FILE splits a file, --pipe splits standard input");
    }
    if has_sources {
        bail!("--pipe and --pipepart take their input from standard input or -a FILE, not from ::: or ::::");
    }
    if a.dry_run {
        bail!("--dry-run cannot be used with --pipe or --pipepart (the blocks are the input, not the command line)");
    }
    let split = split_of(a)?;
    let read_failed = Arc::new(AtomicBool::new(false));
    if a.pipepart {
        if a.round_robin {
            bail!("--round-robin cannot be used with --pipepart; use --pipe --round-robin");
        }
        let path = match a.arg_file.as_slice() {
            [p] => p,
            [] => bail!("--pipepart needs the file to split: --pipepart -a FILE"),
            _ => bail!(
                "--pipepart splits one file; -a was given {} times",
                a.arg_file.len()
            ),
        };
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open {} for --pipepart", path.display()))?;
        let parts = Parts::new(file, split)
            .with_context(|| format!("cannot split {} for --pipepart", path.display()))?;
        return Ok(Some(Piped {
            stdins: Box::new(parts.map(|r| r.map(Stdin::Range))),
            read_failed,
        }));
    }
    if !a.arg_file.is_empty() {
        bail!("--pipe reads standard input; to split a file use --pipepart -a FILE (or `< FILE`)");
    }
    let blocks = Blocks::new(io::stdin(), split)?;
    let stdins: Stdins = if a.round_robin {
        // Bounded like the runner's own queue: memory follows the jobs, not the input.
        let (tx, rx) = mpsc::sync_channel::<Block>(jobs.max(1));
        let failed = Arc::clone(&read_failed);
        std::thread::Builder::new()
            .name("pardo-round-robin".into())
            .spawn(move || {
                for b in blocks {
                    match b {
                        Ok(b) => {
                            if tx.send(Arc::new(b)).is_err() {
                                return; // every job is gone
                            }
                        }
                        Err(e) => {
                            eprintln!("pardo: cannot read standard input: {e}");
                            failed.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            })
            .context("cannot start the --round-robin reader")?;
        let queue = Arc::new(Mutex::new(rx));
        Box::new((0..jobs.max(1)).map(move |_| Ok(Stdin::Shared(Arc::clone(&queue)))))
    } else {
        Box::new(blocks.map(|b| b.map(|b| Stdin::Bytes(Arc::new(b)))))
    };
    Ok(Some(Piped {
        stdins,
        read_failed,
    }))
}

fn split_of(a: &Args) -> anyhow::Result<Split> {
    let mut split = Split::default();
    if let Some(b) = a.block {
        split.block = b;
    }
    split.recstart = match &a.recstart {
        Some(s) => unescape(s).context("invalid --recstart")?,
        None => Vec::new(),
    };
    split.recend = match (&a.recend, &a.recstart) {
        (Some(s), _) => unescape(s).context("invalid --recend")?,
        // As GNU parallel: --recstart alone cuts before each record start, wherever it is.
        (None, Some(_)) => Vec::new(),
        (None, None) => b"\n".to_vec(),
    };
    if let Some(n) = a.max_records {
        if a.pipepart {
            bail!("-N cannot be used with --pipepart (it would read the whole file); use --block");
        }
        split.records = Some(n);
    }
    split.header_lines = match a.header.as_deref() {
        None => 0,
        Some(":") => 1,
        Some(h) => h.parse().map_err(|_| {
            anyhow::anyhow!(
                "--header {h:?} with --pipe/--pipepart: give the number of header lines (or `:` \
                 for one); a regular expression is not supported there"
            )
        })?,
    };
    Ok(split)
}

/// GNU parallel's escapes in --recend and --recstart: `\n`, `\t`, `\r`, `\0`, `\\`, `\xHH`.
fn unescape(s: &str) -> anyhow::Result<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let (byte, used) = match b[i + 1] {
            b'n' => (b'\n', 2),
            b't' => (b'\t', 2),
            b'r' => (b'\r', 2),
            b'0' => (0, 2),
            b'\\' => (b'\\', 2),
            b'x' => {
                let hex = s.get(i + 2..i + 4).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) if hex.len() == 2 => (v, 4),
                    _ => bail!("{s:?}: \\x needs two hex digits"),
                }
            }
            other => (other, 2),
        };
        out.push(byte);
        i += used;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn escapes_as_gnu_parallel() {
        assert_eq!(unescape(r"\n").unwrap(), b"\n");
        assert_eq!(unescape(r"a\tb\x41\\").unwrap(), b"a\tbA\\");
        assert_eq!(unescape(r"\0").unwrap(), b"\0");
        assert!(unescape(r"\xZ").is_err());
    }
}
