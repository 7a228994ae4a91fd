//! `--results`: each job's output saved as GNU parallel saves it. A directory gets GNU's tree
//! (`DIR/1/<value>/2/<value>/stdout`, `stderr`, `seq`); a name ending in `.csv`, `.tsv` or
//! `.json` gets one file with a row per job (GNU's columns), `-.csv` etc. on standard output.
//! Either way the jobs' output is not also printed, as in GNU parallel.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use pardo::command::JobDone;

/// Where `--results` puts the output.
#[derive(Debug)]
pub enum Results {
    /// GNU's directory tree under this directory.
    Dir(PathBuf),
    /// One file (or standard output) with a row per job.
    Table(Table),
}

/// The file with a row per job, and its format.
pub struct Table {
    out: BufWriter<Box<dyn Write + Send>>,
    format: Format,
    header_done: bool,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("format", &self.format)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// Values separated by this byte (`,` or a tab), quoted where needed.
    Separated(u8),
    Json,
}

/// One job's row of a results table.
#[derive(Debug)]
pub struct Row {
    /// How many values the job had (the header's V1, V2, ...).
    values: usize,
    bytes: Vec<u8>,
}

/// How to number the values of a job in the tree: the input source of each position.
#[derive(Clone, Copy, Debug)]
pub struct Sources(pub Option<usize>);

impl Results {
    /// Opens the destination named by `--results NAME`.
    pub fn open(name: &Path) -> anyhow::Result<Results> {
        let lower = name.as_os_str().as_bytes().to_ascii_lowercase();
        let format = if lower.ends_with(b".csv") {
            Format::Separated(b',')
        } else if lower.ends_with(b".tsv") {
            Format::Separated(b'\t')
        } else if lower.ends_with(b".json") {
            Format::Json
        } else {
            if has_replacement_string(name.as_os_str().as_bytes()) {
                anyhow::bail!(
                    "--results {}: names with replacement strings are not supported; give a \
                     directory (GNU's tree DIR/1/<value>/stdout) or a .csv, .tsv or .json file",
                    name.display()
                );
            }
            return Ok(Results::Dir(name.to_path_buf()));
        };
        let stem = name.as_os_str().as_bytes();
        let out: Box<dyn Write + Send> = if stem.starts_with(b"-.") && !stem[2..].contains(&b'/') {
            Box::new(io::stdout())
        } else {
            Box::new(crate::run::create_no_follow(name).map_err(|e| {
                anyhow::anyhow!("cannot write the results file {}: {e}", name.display())
            })?)
        };
        Ok(Results::Table(Table {
            out: BufWriter::new(out),
            format,
            header_done: false,
        }))
    }

    /// Saves one finished job in the tree, or returns its row for [`Results::write_row`]
    /// (rows wait for their turn with `-k`).
    pub fn save(&mut self, d: &JobDone<'_>, sources: Sources) -> io::Result<Option<Row>> {
        match self {
            Results::Dir(dir) => save_in_tree(dir, d, sources).map(|()| None),
            Results::Table(t) => t.row(d).map(Some),
        }
    }

    /// Writes a row from [`Results::save`], after the header if it is the first.
    pub fn write_row(&mut self, row: &Row) -> io::Result<()> {
        let Results::Table(t) = self else {
            return Ok(());
        };
        if let (Format::Separated(sep), false) = (t.format, t.header_done) {
            let mut names: Vec<Vec<u8>> = [
                "Seq",
                "Host",
                "Starttime",
                "JobRuntime",
                "Send",
                "Receive",
                "Exitval",
                "Signal",
                "Command",
            ]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
            names.extend((1..=row.values).map(|i| format!("V{i}").into_bytes()));
            names.extend([b"Stdout".to_vec(), b"Stderr".to_vec()]);
            let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
            write_fields(&mut t.out, sep, &names)?;
        }
        t.header_done = true;
        t.out.write_all(&row.bytes)
    }

    /// Flushes what is buffered.
    pub fn finish(&mut self) -> io::Result<()> {
        match self {
            Results::Dir(_) => Ok(()),
            Results::Table(t) => t.out.flush(),
        }
    }
}

fn has_replacement_string(name: &[u8]) -> bool {
    let t = pardo::command::Template::parse_text(name);
    let probe = pardo::command::JobArgs {
        seq: 1,
        slot: 1,
        args: &[b"\x01".to_vec()],
    };
    t.render_text(&probe) != name
}

/// GNU's exit value for a job: -1 when it was stopped for running out of time.
pub fn exit_value(d: &JobDone<'_>) -> i32 {
    if d.finished.timed_out {
        -1
    } else {
        d.finished.exit_code.unwrap_or(0)
    }
}

/// A value as one directory name in GNU's tree: `\` `\t` NUL `/` written `\\` `\t` `\0` `\_`.
/// Unlike GNU, `.` and `..` become `\.` and `\.\.` (GNU would write outside the job's place),
/// and a name longer than the system allows is cut to 255 bytes.
fn dir_name(v: &[u8]) -> Vec<u8> {
    if v == b"." || v == b".." {
        return v.iter().flat_map(|_| *b"\\.").collect();
    }
    let mut out = Vec::with_capacity(v.len());
    for &b in v {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0 => out.extend_from_slice(b"\\0"),
            b'/' => out.extend_from_slice(b"\\_"),
            b => out.push(b),
        }
    }
    out.truncate(255);
    out
}

fn save_in_tree(dir: &Path, d: &JobDone<'_>, sources: Sources) -> io::Result<()> {
    let mut job_dir = dir.to_path_buf();
    make_dir(&job_dir).map_err(|e| with_path(&job_dir, e))?;
    for (i, v) in d.args.iter().enumerate() {
        let source = match sources.0 {
            Some(n) if n > 0 => i % n + 1,
            _ => i + 1,
        };
        for part in [source.to_string().into_bytes(), dir_name(v)] {
            // An empty value names no directory of its own (as in GNU parallel).
            if part.is_empty() {
                continue;
            }
            job_dir.push(std::ffi::OsStr::from_bytes(&part));
            make_dir(&job_dir).map_err(|e| with_path(&job_dir, e))?;
        }
    }
    write_new(&job_dir.join("seq"), |f| write!(f, "{}", d.seq))
        .and_then(|()| write_new(&job_dir.join("stdout"), |f| d.finished.stdout.copy_to(f)))
        .and_then(|()| write_new(&job_dir.join("stderr"), |f| d.finished.stderr.copy_to(f)))
        .map_err(|e| with_path(&job_dir, e))
}

fn with_path(p: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cannot write {}: {e}", p.display()))
}

/// Creates one directory of the tree, or takes the one there; a symbolic link in its place
/// (planted to send the files elsewhere) is refused.
fn make_dir(p: &Path) -> io::Result<()> {
    match std::fs::create_dir(p) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            if e.kind() == io::ErrorKind::NotFound {
                std::fs::create_dir_all(p)?;
            } else {
                return Err(e);
            }
        }
        _ => {}
    }
    let meta = std::fs::symlink_metadata(p)?;
    if meta.file_type().is_symlink() {
        return Err(io::Error::other("is a symbolic link, not a directory"));
    }
    if !meta.is_dir() {
        return Err(io::Error::other("is not a directory"));
    }
    Ok(())
}

/// Writes a results file as a new file: an old one (a regular file or a planted symlink) is
/// unlinked first, and the new one is created with `O_EXCL`, which never follows a symlink,
/// so whatever a link points to is never written.
fn write_new(path: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    fill(&mut f)
}

impl Table {
    fn row(&mut self, d: &JobDone<'_>) -> io::Result<Row> {
        let stdout = d.finished.stdout.to_vec()?;
        let stderr = d.finished.stderr.to_vec()?;
        let numbers = [
            d.seq.to_string(),
            pardo::command::joblog::host_field(d.host),
            format!("{:.3}", d.start_unix_s),
            format!("{:.3}", d.runtime.as_secs_f64()),
            "0".to_owned(),
            d.finished.stdout_bytes.to_string(),
            exit_value(d).to_string(),
            d.finished.signal.unwrap_or(0).to_string(),
        ];
        let mut o = Vec::new();
        match self.format {
            Format::Separated(sep) => {
                let mut fields: Vec<&[u8]> = numbers.iter().map(|s| s.as_bytes()).collect();
                fields.push(d.command);
                fields.extend(d.args.iter().map(Vec::as_slice));
                fields.extend([stdout.as_slice(), stderr.as_slice()]);
                write_fields(&mut o, sep, &fields)?;
            }
            Format::Json => {
                let o = &mut o;
                write!(
                    o,
                    "{{ \"Seq\": {}, \"Host\": \"{}\", \"Starttime\": {}, \"JobRuntime\": {}, \
                     \"Send\": {}, \"Receive\": {}, \"Exitval\": {}, \"Signal\": {}, \"Command\": \"",
                    numbers[0],
                    numbers[1],
                    numbers[2],
                    numbers[3],
                    numbers[4],
                    numbers[5],
                    numbers[6],
                    numbers[7]
                )?;
                json_text(o, d.command)?;
                o.write_all(b"\", \"V\": [ ")?;
                for (i, v) in d.args.iter().enumerate() {
                    if i > 0 {
                        o.write_all(b",")?;
                    }
                    o.write_all(b"\"")?;
                    json_text(o, v)?;
                    o.write_all(b"\"")?;
                }
                o.write_all(b" ], \"Stdout\": \"")?;
                json_text(o, &stdout)?;
                o.write_all(b"\", \"Stderr\": \"")?;
                json_text(o, &stderr)?;
                o.write_all(b"\" }\n")?;
            }
        }
        Ok(Row {
            values: d.args.len(),
            bytes: o,
        })
    }
}

/// One row: a field is put in quotes (inner quotes doubled) when it holds a quote, white
/// space, the separator or a NUL byte, as GNU parallel writes them.
fn write_fields(w: &mut dyn Write, sep: u8, fields: &[&[u8]]) -> io::Result<()> {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            w.write_all(&[sep])?;
        }
        let quote = f
            .iter()
            .any(|&b| b == b'"' || b == sep || b == 0 || b.is_ascii_whitespace() || b == 0x0b);
        if !quote {
            w.write_all(f)?;
            continue;
        }
        w.write_all(b"\"")?;
        for part in f.split_inclusive(|&b| b == b'"') {
            w.write_all(part)?;
            if part.ends_with(b"\"") {
                w.write_all(b"\"")?;
            }
        }
        w.write_all(b"\"")?;
    }
    w.write_all(b"\n")
}

/// Text inside a JSON string as GNU parallel writes it: `\` and `"` escaped, bytes below 32
/// as `\u00XX`, everything else as it is.
fn json_text(w: &mut dyn Write, v: &[u8]) -> io::Result<()> {
    for &b in v {
        match b {
            b'\\' => w.write_all(b"\\\\")?,
            b'"' => w.write_all(b"\\\"")?,
            0..=31 => write!(w, "\\u{:04x}", b)?,
            b => w.write_all(&[b])?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_names_escape_as_gnu_and_never_climb() {
        assert_eq!(dir_name(b"a/b"), b"a\\_b");
        assert_eq!(dir_name(b"a\\b"), b"a\\\\b");
        assert_eq!(dir_name(b"a\tb"), b"a\\tb");
        assert_eq!(dir_name(b".."), b"\\.\\.");
        assert_eq!(dir_name(b"."), b"\\.");
        assert_eq!(dir_name(&[b'x'; 300]).len(), 255);
    }

    #[test]
    fn fields_are_quoted_where_gnu_quotes_them() {
        let mut out = Vec::new();
        write_fields(&mut out, b',', &[b"a", b"b c", b"x\"y", b"1,2", b"n\n"]).unwrap();
        assert_eq!(out, b"a,\"b c\",\"x\"\"y\",\"1,2\",\"n\n\"\n");
    }

    #[test]
    fn json_text_escapes_controls() {
        let mut out = Vec::new();
        json_text(&mut out, b"a\"\\\n\x01").unwrap();
        assert_eq!(out, b"a\\\"\\\\\\u000a\\u0001");
    }
}
