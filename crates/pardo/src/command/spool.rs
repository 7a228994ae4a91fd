//! [`Spool`]: a job's grouped output, in memory while small and in an anonymous temporary file
//! past a threshold, so a job that prints gigabytes does not grow the runner by gigabytes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Bytes of one stream kept in memory before the rest goes to a temporary file.
pub const SPILL_AT: usize = 1 << 20;

/// Output collected for later: bytes in memory, or an unlinked temporary file once more than
/// its threshold arrived.
///
/// The file comes from [`tempfile::tempfile`], which removes its name at creation: nothing is
/// left behind if the runner dies, and no other user of a shared `/tmp` can open or replace it.
///
/// ```
/// use pardo::command::Spool;
/// let mut s = Spool::with_threshold(4);
/// s.write_all(b"ab")?;
/// assert!(!s.is_spilled());
/// s.write_all(b"cdef")?;
/// assert!(s.is_spilled());
/// assert_eq!(s.len(), 6);
/// assert_eq!(s.to_vec()?, b"abcdef");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Default)]
pub struct Spool {
    mem: Vec<u8>,
    file: Option<File>,
    len: u64,
    /// 0 means the default, [`SPILL_AT`].
    threshold: usize,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("len", &self.len)
            .field("spilled", &self.is_spilled())
            .finish()
    }
}

impl From<Vec<u8>> for Spool {
    fn from(mem: Vec<u8>) -> Spool {
        Spool {
            len: mem.len() as u64,
            mem,
            ..Spool::default()
        }
    }
}

impl Spool {
    /// An empty spool that spills past [`SPILL_AT`] bytes.
    pub fn new() -> Spool {
        Spool::default()
    }

    /// An empty spool that spills past `threshold` bytes.
    pub fn with_threshold(threshold: usize) -> Spool {
        Spool {
            threshold: threshold.max(1),
            ..Spool::default()
        }
    }

    /// Appends `data`, moving everything to a temporary file when the threshold is passed.
    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let threshold = if self.threshold == 0 {
            SPILL_AT
        } else {
            self.threshold
        };
        if self.file.is_none() && self.mem.len() + data.len() > threshold {
            let mut f = tempfile::tempfile()?;
            f.write_all(&self.mem)?;
            self.mem = Vec::new();
            self.file = Some(f);
        }
        match &mut self.file {
            Some(f) => f.write_all(data)?,
            None => self.mem.extend_from_slice(data),
        }
        self.len += data.len() as u64;
        Ok(())
    }

    /// Bytes held.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes went to a temporary file.
    pub fn is_spilled(&self) -> bool {
        self.file.is_some()
    }

    /// A reader over everything held, from the start.
    pub fn reader(&self) -> io::Result<Box<dyn Read + '_>> {
        match &self.file {
            Some(f) => {
                let mut f: &File = f;
                f.seek(SeekFrom::Start(0))?;
                Ok(Box::new(f.take(self.len)))
            }
            None => Ok(Box::new(self.mem.as_slice())),
        }
    }

    /// Copies everything held to `w`.
    pub fn copy_to(&self, w: &mut dyn Write) -> io::Result<()> {
        match &self.file {
            Some(_) => io::copy(&mut self.reader()?, w).map(drop),
            None => w.write_all(&self.mem),
        }
    }

    /// Everything held, read into memory.
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        let mut v = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        self.copy_to(&mut v)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_stays_in_memory_large_output_spills_byte_exact() {
        let mut s = Spool::with_threshold(10);
        s.write_all(b"0123").unwrap();
        assert!(!s.is_spilled());
        let big: Vec<u8> = (0..100u8).collect();
        s.write_all(&big).unwrap();
        assert!(s.is_spilled());
        let mut want = b"0123".to_vec();
        want.extend_from_slice(&big);
        assert_eq!(s.to_vec().unwrap(), want);
        // Reading twice gives the same bytes: every reader starts over.
        let mut again = Vec::new();
        s.reader().unwrap().read_to_end(&mut again).unwrap();
        assert_eq!(again, want);
        assert_eq!(s.len(), want.len() as u64);
    }
}
