//! The pipe protocol between the pool and a worker process.
//!
//! Every message is a frame: a little-endian `u32` length, then that many bytes of postcard.
//! The conversation is strictly alternating, so neither side ever needs to buffer ahead:
//!
//! ```text
//! worker → pool   Hello { pid, protocol }            once, right after start
//! pool → worker   Request { name, inputs }           one task (or one map chunk)
//! worker → pool   Reply { outputs, cpu, rss, … }     its results, one per input
//! ...
//! pool closes the pipe                               the worker exits 0
//! ```
//!
//! Inputs and outputs are themselves postcard bytes of the task function's types: the frame
//! layer never needs to know them, and a value that cannot be decoded fails only its own item.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Bumped whenever a message changes shape; a worker from another build is refused.
pub(crate) const PROTOCOL: u32 = 1;

/// The largest frame either side accepts (1 GiB): a corrupt length must not become an
/// allocation of 4 GiB.
const MAX_FRAME: usize = 1 << 30;

/// The worker's first words.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) pid: u32,
    pub(crate) protocol: u32,
}

/// One task, or one chunk of a `map`, for the worker to run.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request<'a> {
    pub(crate) name: &'a str,
    #[serde(borrow)]
    pub(crate) inputs: Vec<&'a [u8]>,
}

/// How one input fared in the worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ItemResult {
    /// The function returned; its encoded output.
    Ok(Vec<u8>),
    /// The function panicked; the message.
    Panicked(String),
    /// The input could not be decoded, the output not encoded, or the name is unknown.
    Failed(String),
}

/// The results of one request, with what it cost the worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub(crate) outputs: Vec<ItemResult>,
    /// Time spent inside the task functions.
    pub(crate) busy_ns: u64,
    pub(crate) cpu_user_ns: u64,
    pub(crate) cpu_sys_ns: u64,
    /// Time the serving thread waited for a core while the tasks ran, when the kernel says.
    pub(crate) cpu_wait_ns: Option<u64>,
    /// The worker process's peak resident set so far.
    pub(crate) max_rss_bytes: u64,
}

/// Writes `msg` as one frame with one `write` call, reusing `buf`.
pub(crate) fn write_frame<W: Write>(
    w: &mut W,
    msg: &impl Serialize,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    buf.clear();
    buf.extend_from_slice(&[0; 4]);
    let mut out = postcard::to_extend(msg, std::mem::take(buf)).map_err(invalid)?;
    let len = u32::try_from(out.len() - 4)
        .ok()
        .filter(|&n| (n as usize) <= MAX_FRAME)
        .ok_or_else(|| invalid("frame larger than 1 GiB"))?;
    out[..4].copy_from_slice(&len.to_le_bytes());
    let written = w.write_all(&out);
    *buf = out;
    written
}

/// Reads one frame into `buf`. `Ok(false)` is a clean end of stream before a frame began.
pub(crate) fn read_frame<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(invalid("frame larger than 1 GiB"));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf)?;
    Ok(true)
}

/// Decodes a frame's payload.
pub(crate) fn decode<'a, T: Deserialize<'a>>(buf: &'a [u8]) -> io::Result<T> {
    postcard::from_bytes(buf).map_err(invalid)
}

/// Waits until `fd` has something to read (or hit end of stream); false when `limit` passed.
/// A limit too far away to be an instant (`Duration::MAX`) means no limit.
pub(crate) fn readable_within(fd: &impl AsRawFd, limit: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = std::time::Instant::now().checked_add(limit);
    loop {
        let ms = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX)
            }
            None => -1,
        };
        // SAFETY: one valid pollfd, and its count is 1.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        match rc {
            0 if deadline.is_some_and(|d| std::time::Instant::now() >= d) => return Ok(false),
            0 => {}
            n if n > 0 => return Ok(true),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

fn invalid(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut pipe = Vec::new();
        let mut buf = Vec::new();
        let input = [1u8, 2, 3];
        let req = Request {
            name: "t::Square",
            inputs: vec![&input[..]],
        };
        write_frame(&mut pipe, &req, &mut buf).unwrap();
        let mut reader = &pipe[..];
        let mut got = Vec::new();
        assert!(read_frame(&mut reader, &mut got).unwrap());
        let back: Request<'_> = decode(&got).unwrap();
        assert_eq!(back.name, "t::Square");
        assert_eq!(back.inputs, vec![&[1u8, 2, 3][..]]);
        assert!(!read_frame(&mut reader, &mut got).unwrap());
    }

    #[test]
    fn a_truncated_frame_is_an_error_not_a_clean_end() {
        let mut pipe = Vec::new();
        write_frame(
            &mut pipe,
            &Hello {
                pid: 1,
                protocol: 1,
            },
            &mut Vec::new(),
        )
        .unwrap();
        pipe.pop();
        let mut reader = &pipe[..];
        assert!(read_frame(&mut reader, &mut Vec::new()).is_err());
        let mut short = &[7u8, 0][..];
        assert!(read_frame(&mut short, &mut Vec::new()).is_err());
    }

    #[test]
    fn an_unbounded_wait_does_not_overflow() {
        let (r, w) = std::os::unix::net::UnixStream::pair().unwrap();
        (&w).write_all(b"x").unwrap();
        assert!(readable_within(&r, Duration::MAX).unwrap());
        assert!(!readable_within(&w, Duration::from_millis(1)).unwrap());
    }

    #[test]
    fn a_huge_length_is_refused_before_allocating() {
        let mut reader = &u32::MAX.to_le_bytes()[..];
        let err = read_frame(&mut reader, &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
