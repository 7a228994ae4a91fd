//! `--pipe` and `--pipepart`: cutting a stream or a file into blocks of whole records, each the
//! standard input of one job.
//!
//! A record boundary is where `recend` is immediately followed by `recstart`; the cut goes
//! between the two. [`Blocks`] reads a stream and hands out owned blocks, never holding more
//! than one block plus the partial record after it. [`Parts`] finds the same boundaries in a
//! regular file by reading a little around each block edge with `pread`, and hands out byte
//! ranges that the job's feeder copies file → pipe in the kernel ([`feed_range`]).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use memchr::memmem;

/// The default `--block`: 1 MiB, as GNU parallel.
pub const DEFAULT_BLOCK: usize = 1 << 20;

/// How much of the file [`Parts`] reads at a time while looking for a boundary.
const PROBE: usize = 64 * 1024;

/// How a stream is cut into blocks.
///
/// ```
/// use pardo::command::pipe::{Blocks, Split};
/// let split = Split { block: 4, ..Split::default() };
/// let blocks: Vec<Vec<u8>> = Blocks::new(&b"a\nb\nc\n"[..], split)?
///     .collect::<Result<_, _>>()?;
/// assert_eq!(blocks, [b"a\nb\n".to_vec(), b"c\n".to_vec()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Aim for blocks of about this many bytes (not counting the header); a block ends at the
    /// last record boundary within this size, or at the first one after it when a single
    /// record is larger.
    pub block: usize,
    /// The bytes that end a record (`--recend`, default a newline).
    pub recend: Vec<u8>,
    /// The bytes that start a record (`--recstart`, default none).
    pub recstart: Vec<u8>,
    /// Exactly this many records per block, the last one excepted (`-N`); `block` is ignored.
    pub records: Option<usize>,
    /// Lines at the start of the input that are put in front of every block (`--header N`).
    pub header_lines: usize,
}

impl Default for Split {
    fn default() -> Self {
        Split {
            block: DEFAULT_BLOCK,
            recend: b"\n".to_vec(),
            recstart: Vec::new(),
            records: None,
            header_lines: 0,
        }
    }
}

/// Why a [`Split`] cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SplitError {
    /// Neither a record end nor a record start: no place to cut.
    #[error("--recend and --recstart are both empty: there is no record boundary to cut at")]
    NoBoundary,
    /// `--block 0`.
    #[error("--block must be at least 1 byte")]
    ZeroBlock,
    /// `-N 0`.
    #[error("-N must be at least 1 record per job")]
    ZeroRecords,
}

impl Split {
    fn check(&self) -> Result<(), SplitError> {
        if self.recend.is_empty() && self.recstart.is_empty() {
            return Err(SplitError::NoBoundary);
        }
        if self.block == 0 {
            return Err(SplitError::ZeroBlock);
        }
        if self.records == Some(0) {
            return Err(SplitError::ZeroRecords);
        }
        Ok(())
    }

    /// `recend` then `recstart`: what a boundary looks like.
    fn pattern(&self) -> Vec<u8> {
        let mut p = self.recend.clone();
        p.extend_from_slice(&self.recstart);
        p
    }
}

/// Parses a `--block` size as GNU parallel: a number with an optional suffix, `K`, `M`, `G`,
/// `T` for powers of 1024 and `k`, `m`, `g`, `t` for powers of 1000 (`b` is bytes).
///
/// ```
/// assert_eq!(pardo::command::pipe::parse_size("10K"), Ok(10 * 1024));
/// assert_eq!(pardo::command::pipe::parse_size("10k"), Ok(10_000));
/// assert_eq!(pardo::command::pipe::parse_size("1M"), Ok(1 << 20));
/// assert!(pardo::command::pipe::parse_size("lots").is_err());
/// ```
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult: u64 = match c {
                'b' | 'B' => 1,
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'k' => 1_000,
                'm' => 1_000_000,
                'g' => 1_000_000_000,
                't' => 1_000_000_000_000,
                _ => {
                    return Err(format!(
                    "{s:?}: unknown size suffix {c:?} (K M G T: powers of 1024; k m g t: of 1000)"
                ))
                }
            };
            (&t[..i], mult)
        }
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 1M, 512k, 65536)"))?;
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > (usize::MAX / 2) as f64 {
        return Err(format!("{s:?}: expected a size of at least 1 byte"));
    }
    Ok(bytes as usize)
}

/// Cuts a stream into blocks of whole records; see [`Split`]. Each block carries the header in
/// front. Memory: one block plus the partial record after it.
#[derive(Debug)]
pub struct Blocks<R> {
    reader: R,
    split: Split,
    pattern: Vec<u8>,
    /// Read but not yet handed out.
    buf: Vec<u8>,
    header: Vec<u8>,
    started: bool,
    eof: bool,
}

impl<R: Read> Blocks<R> {
    /// Blocks of `reader` cut as `split` says.
    pub fn new(reader: R, split: Split) -> Result<Blocks<R>, SplitError> {
        split.check()?;
        Ok(Blocks {
            reader,
            pattern: split.pattern(),
            split,
            buf: Vec::new(),
            header: Vec::new(),
            started: false,
            eof: false,
        })
    }

    /// Reads until `buf` holds at least `want` bytes or the input ends.
    fn fill(&mut self, want: usize) -> io::Result<()> {
        let len = self.buf.len();
        if self.eof || len >= want {
            return Ok(());
        }
        let need = want - len;
        // `read_to_end` reads into spare capacity without zeroing it first, and stops at
        // `need` bytes: a block costs one pass over its bytes.
        self.buf.reserve(need);
        let got = (&mut self.reader)
            .take(need as u64)
            .read_to_end(&mut self.buf)?;
        if got < need {
            self.eof = true;
        }
        Ok(())
    }

    fn take_header(&mut self) -> io::Result<()> {
        let mut end = 0;
        for _ in 0..self.split.header_lines {
            loop {
                if let Some(p) = memchr::memchr(b'\n', &self.buf[end..]) {
                    end += p + 1;
                    break;
                }
                if self.eof {
                    end = self.buf.len();
                    break;
                }
                let want = self.buf.len() + PROBE;
                self.fill(want)?;
            }
        }
        self.header = self.buf.drain(..end).collect();
        Ok(())
    }

    /// Where the next block ends in `buf`, reading more as needed; None at the end of input.
    fn next_cut(&mut self) -> io::Result<Option<usize>> {
        let split_at = self.split.recend.len();
        if let Some(n) = self.split.records {
            // The n-th boundary after the start.
            let mut from = 0;
            let mut found = 0;
            loop {
                while let Some(p) = boundary_from(&self.buf, &self.pattern, split_at, from) {
                    found += 1;
                    from = p;
                    if found == n {
                        return Ok(Some(p));
                    }
                }
                if self.eof {
                    return Ok((!self.buf.is_empty()).then_some(self.buf.len()));
                }
                let want = self.buf.len() + PROBE;
                self.fill(want)?;
            }
        }
        let block = self.split.block;
        // One byte past the block, so a boundary that ends exactly at the edge is seen whole
        // (its recstart lies past the edge).
        self.fill(block + self.pattern.len())?;
        if self.eof && self.buf.len() <= block {
            return Ok((!self.buf.is_empty()).then_some(self.buf.len()));
        }
        if let Some(p) = last_boundary_upto(&self.buf, &self.pattern, split_at, block) {
            return Ok(Some(p));
        }
        // One record longer than a block: it goes whole.
        let mut from = block.saturating_sub(self.pattern.len());
        loop {
            if let Some(p) = boundary_from(&self.buf, &self.pattern, split_at, from) {
                return Ok(Some(p));
            }
            if self.eof {
                return Ok((!self.buf.is_empty()).then_some(self.buf.len()));
            }
            from = self.buf.len().saturating_sub(self.pattern.len());
            let want = self.buf.len() * 2;
            self.fill(want)?;
        }
    }
}

/// The first boundary (cut position) strictly after `from`, if the data holds one.
fn boundary_from(buf: &[u8], pattern: &[u8], split_at: usize, from: usize) -> Option<usize> {
    // A cut at `from` itself was already taken; a cut at 0 would make an empty block.
    let start = (from + 1).saturating_sub(split_at);
    let mut at = start;
    while at < buf.len() {
        let m = memmem::find(&buf[at..], pattern)? + at;
        let cut = m + split_at;
        if cut > from && cut > 0 {
            return Some(cut);
        }
        at = m + 1;
    }
    None
}

/// The last boundary at or before `limit` (cut position > 0).
fn last_boundary_upto(buf: &[u8], pattern: &[u8], split_at: usize, limit: usize) -> Option<usize> {
    // Matches must start at or before `limit - split_at` and lie within the data.
    let end = (limit - split_at.min(limit) + pattern.len()).min(buf.len());
    let m = memmem::rfind(&buf[..end], pattern)?;
    let cut = m + split_at;
    // A cut at 0 (a recstart at the very beginning) is no boundary, and nothing is before it.
    (cut > 0).then_some(cut)
}

impl<R: Read> Iterator for Blocks<R> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<io::Result<Vec<u8>>> {
        if !self.started {
            self.started = true;
            if let Err(e) = self.take_header() {
                return Some(Err(e));
            }
        }
        let cut = match self.next_cut() {
            Ok(Some(c)) => c,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        let rest = self.buf.split_off(cut);
        let body = std::mem::replace(&mut self.buf, rest);
        if self.header.is_empty() {
            return Some(Ok(body));
        }
        let mut block = Vec::with_capacity(self.header.len() + body.len());
        block.extend_from_slice(&self.header);
        block.extend_from_slice(&body);
        Some(Ok(block))
    }
}

/// One job's share of a file: `header` then bytes `offset..offset + len` of `file`.
#[derive(Clone, Debug)]
pub struct Range {
    /// The file, shared by all the ranges.
    pub file: Arc<File>,
    /// First byte.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// The header lines, put in front.
    pub header: Arc<[u8]>,
}

/// Cuts a regular file into [`Range`]s at record boundaries, reading only near each block edge.
///
/// ```
/// use pardo::command::pipe::{Parts, Split};
/// use std::io::Write;
/// let mut f = tempfile::tempfile()?;
/// f.write_all(b"a\nbb\nc\n")?;
/// let parts: Vec<(u64, u64)> = Parts::new(f, Split { block: 3, ..Split::default() })?
///     .map(|r| r.map(|r| (r.offset, r.len)))
///     .collect::<Result<_, _>>()?;
/// assert_eq!(parts, [(0, 5), (5, 2)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Parts {
    file: Arc<File>,
    size: u64,
    next: u64,
    split: Split,
    pattern: Vec<u8>,
    header: Arc<[u8]>,
}

/// Why a file cannot be cut into parts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PartsError {
    /// The split itself is wrong.
    #[error(transparent)]
    Split(#[from] SplitError),
    /// `-N` counts records, which needs reading them all.
    #[error("-N cannot be used with --pipepart (it would read the whole file); use --block")]
    Records,
    /// Not a regular file: there is nothing to seek in.
    #[error("--pipepart needs a regular file (seekable), not a pipe or device; use --pipe")]
    NotRegular,
    /// Reading the file failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Parts {
    /// Parts of `file` cut as `split` says (`split.records` must be `None`).
    pub fn new(file: File, split: Split) -> Result<Parts, PartsError> {
        split.check()?;
        if split.records.is_some() {
            return Err(PartsError::Records);
        }
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(PartsError::NotRegular);
        }
        let size = meta.len();
        let mut header = Vec::new();
        let mut next = 0u64;
        for _ in 0..split.header_lines {
            match find_in_file(&file, b"\n", next, size)? {
                Some(p) => next = p + 1,
                None => next = size,
            }
        }
        if next > 0 {
            header.resize(next as usize, 0);
            file.read_exact_at(&mut header, 0)?;
        }
        Ok(Parts {
            file: Arc::new(file),
            size,
            next,
            pattern: split.pattern(),
            split,
            header: header.into(),
        })
    }

    fn cut_after(&self, edge: u64) -> io::Result<u64> {
        // As GNU parallel does, the block runs on to the first boundary whose match starts at
        // or after the edge: a record that ends exactly at the edge takes the next one along.
        let split_at = self.split.recend.len() as u64;
        match find_in_file(&self.file, &self.pattern, edge, self.size)? {
            Some(m) => Ok(m + split_at),
            None => Ok(self.size),
        }
    }
}

/// The offset of the first `pattern` at or after `from` in the first `size` bytes of `file`.
fn find_in_file(file: &File, pattern: &[u8], from: u64, size: u64) -> io::Result<Option<u64>> {
    let mut buf = vec![0u8; PROBE.max(pattern.len() * 2)];
    let mut at = from;
    while at < size {
        let want = ((size - at) as usize).min(buf.len());
        let n = read_at_full(file, &mut buf[..want], at)?;
        if n == 0 {
            return Ok(None);
        }
        if let Some(p) = memmem::find(&buf[..n], pattern) {
            return Ok(Some(at + p as u64));
        }
        if at + n as u64 >= size {
            return Ok(None);
        }
        // Overlap by the pattern's length less one, so a match across the chunk edge is found.
        at += (n - (pattern.len() - 1).min(n - 1)) as u64;
    }
    Ok(None)
}

fn read_at_full(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], at + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl Iterator for Parts {
    type Item = io::Result<Range>;

    fn next(&mut self) -> Option<io::Result<Range>> {
        if self.next >= self.size {
            return None;
        }
        let edge = self.next.saturating_add(self.split.block as u64);
        let end = if edge >= self.size {
            self.size
        } else {
            match self.cut_after(edge) {
                Ok(e) => e,
                Err(e) => return Some(Err(e)),
            }
        };
        let r = Range {
            file: Arc::clone(&self.file),
            offset: self.next,
            len: end - self.next,
            header: Arc::clone(&self.header),
        };
        self.next = end;
        Some(Ok(r))
    }
}

/// Writes `range` (header, then its bytes of the file) to `out`, file to pipe inside the kernel
/// with `sendfile` where the system allows, else through a small buffer.
pub fn feed_range(range: &Range, out: RawFd) -> io::Result<()> {
    write_all_fd(out, &range.header)?;
    let mut off = range.offset as libc::off_t;
    let end = range.offset + range.len;
    let fd = range.file.as_raw_fd();
    while (off as u64) < end {
        let left = (end - off as u64).min(1 << 30) as usize;
        // SAFETY: both descriptors are open; `off` is a valid out-parameter.
        let n = unsafe { libc::sendfile(out, fd, &mut off, left) };
        if n > 0 {
            continue;
        }
        if n == 0 {
            // The file shrank under us: what is left is gone.
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
            Some(libc::EINVAL) | Some(libc::ENOSYS) => {
                return copy_through_buffer(&range.file, off as u64, end, out)
            }
            _ => return Err(e),
        }
    }
    Ok(())
}

fn copy_through_buffer(file: &File, mut at: u64, end: u64, out: RawFd) -> io::Result<()> {
    let mut buf = vec![0u8; PROBE];
    while at < end {
        let want = ((end - at) as usize).min(buf.len());
        let n = read_at_full(file, &mut buf[..want], at)?;
        if n == 0 {
            return Ok(());
        }
        write_all_fd(out, &buf[..n])?;
        at += n as u64;
    }
    Ok(())
}

/// `write` until all of `data` is out (a pipe takes it in pieces).
pub(crate) fn write_all_fd(fd: RawFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: `data` is valid for reads of its length; `fd` is open.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        data = &data[n as usize..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(input: &[u8], split: Split) -> Vec<Vec<u8>> {
        Blocks::new(input, split)
            .unwrap()
            .collect::<io::Result<_>>()
            .unwrap()
    }

    #[test]
    fn a_record_longer_than_a_block_goes_whole() {
        let split = Split {
            block: 5,
            ..Split::default()
        };
        assert_eq!(
            blocks(b"a\nbbbbbbbb\nc\nd\n", split),
            [b"a\n".to_vec(), b"bbbbbbbb\n".to_vec(), b"c\nd\n".to_vec()]
        );
    }

    #[test]
    fn recstart_cuts_before_the_start() {
        let split = Split {
            block: 3,
            recend: Vec::new(),
            recstart: b">".to_vec(),
            ..Split::default()
        };
        assert_eq!(
            blocks(b">a\nx\n>b\n>c", split),
            [b">a\nx\n".to_vec(), b">b\n".to_vec(), b">c".to_vec()]
        );
    }

    #[test]
    fn header_lines_lead_every_block_and_n_counts_records() {
        let split = Split {
            records: Some(2),
            header_lines: 1,
            ..Split::default()
        };
        assert_eq!(
            blocks(b"h\na\nb\nc\n", split),
            [b"h\na\nb\n".to_vec(), b"h\nc\n".to_vec()]
        );
    }

    #[test]
    fn bad_splits_are_refused() {
        let none = Split {
            recend: Vec::new(),
            ..Split::default()
        };
        assert_eq!(
            Blocks::new(&b""[..], none).err(),
            Some(SplitError::NoBoundary)
        );
        for bad in ["0", "-1", "x", "1q", "inf"] {
            assert!(parse_size(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(parse_size("2G"), Ok(2 << 30));
    }
}
