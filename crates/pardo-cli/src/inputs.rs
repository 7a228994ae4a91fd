//! Argument sources: `:::` values, `::::` files, stdin; cross product and linking; `--colsep`
//! and `-n`. A single file or stdin is streamed a line at a time, so memory stays flat however
//! long the input is; several sources are read whole first (their cross product needs them).

use std::fs::File;
use std::io::{self, BufRead, BufReader};

use anyhow::Context;
use regex::bytes::Regex;

use crate::args::{Group, Source};

/// A stream of argument lists, one per job.
/// `Send`: the runner reads its inputs on a thread of its own.
pub type Inputs = Box<dyn Iterator<Item = io::Result<Vec<Vec<u8>>>> + Send>;

/// Builds the job stream. Also returns the number of jobs when it is known without reading
/// a stream (for the progress bar's ETA).
pub fn build(
    groups: Vec<Group>,
    colsep: Option<&str>,
    max_args: Option<usize>,
) -> anyhow::Result<(Inputs, Option<u64>)> {
    let colsep = colsep
        .map(|re| Regex::new(re).with_context(|| format!("invalid --colsep {re:?}")))
        .transpose()?;
    let (records, total): (Inputs, Option<u64>) = match groups.as_slice() {
        [] => (lines(stdin()), None),
        [Group {
            source: Source::File(path),
            ..
        }] => (lines(open(path)?), None),
        _ => {
            let mut sets: Vec<(Vec<Vec<u8>>, bool)> = Vec::new();
            for g in groups {
                let values = match g.source {
                    Source::Values(v) => v.into_iter().map(|s| s.into_encoded_bytes()).collect(),
                    Source::File(path) => lines(open(&path)?)
                        .collect::<io::Result<Vec<_>>>()
                        .with_context(|| format!("cannot read {}", path.display()))?
                        .into_iter()
                        .flatten()
                        .collect(),
                };
                sets.push((values, g.linked));
            }
            let product = Product::new(sets);
            let total = product.len();
            (Box::new(product.map(Ok)), Some(total))
        }
    };
    let records: Inputs = match colsep {
        Some(re) => Box::new(records.map(move |r| {
            r.map(|vals| {
                vals.iter()
                    .flat_map(|v| re.split(v).map(<[u8]>::to_vec).collect::<Vec<_>>())
                    .collect()
            })
        })),
        None => records,
    };
    Ok(match max_args {
        Some(n) if n > 1 => (
            Box::new(Chunks { inner: records, n }),
            total.map(|t| t.div_ceil(n as u64)),
        ),
        _ => (records, total),
    })
}

/// Standard input through a buffer of our own: a `StdinLock` cannot move to another thread.
fn stdin() -> Box<dyn BufRead + Send> {
    Box::new(BufReader::with_capacity(64 * 1024, io::stdin()))
}

fn open(path: &std::path::Path) -> anyhow::Result<Box<dyn BufRead + Send>> {
    if path.as_os_str() == "-" {
        return Ok(stdin());
    }
    let f =
        File::open(path).with_context(|| format!("cannot read input file {}", path.display()))?;
    Ok(Box::new(BufReader::with_capacity(64 * 1024, f)))
}

/// One record (a single value) per line, without its newline.
fn lines(mut r: Box<dyn BufRead + Send>) -> Inputs {
    Box::new(std::iter::from_fn(move || {
        let mut line = Vec::new();
        match r.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                Some(Ok(vec![line]))
            }
            Err(e) => Some(Err(e)),
        }
    }))
}

/// `-n N`: N records per job.
struct Chunks {
    inner: Inputs,
    n: usize,
}

impl Iterator for Chunks {
    type Item = io::Result<Vec<Vec<u8>>>;
    fn next(&mut self) -> Option<Self::Item> {
        let mut args = Vec::new();
        for _ in 0..self.n {
            match self.inner.next() {
                Some(Ok(r)) => args.extend(r),
                Some(Err(e)) => return Some(Err(e)),
                None => break,
            }
        }
        (!args.is_empty()).then_some(Ok(args))
    }
}

/// The cross product of groups of linked sources, the last varying fastest. Within a group
/// the i-th values go together; a shorter source wraps around (as GNU parallel's `:::+`).
struct Product {
    groups: Vec<Vec<Vec<Vec<u8>>>>,
    group_len: Vec<u64>,
    next: u64,
    len: u64,
}

impl Product {
    fn new(sets: Vec<(Vec<Vec<u8>>, bool)>) -> Product {
        let mut groups: Vec<Vec<Vec<Vec<u8>>>> = Vec::new();
        for (values, linked) in sets {
            match groups.last_mut() {
                Some(g) if linked => g.push(values),
                _ => groups.push(vec![values]),
            }
        }
        let group_len: Vec<u64> = groups
            .iter()
            .map(|g| g.iter().map(|s| s.len() as u64).max().unwrap_or(0))
            .collect();
        let len = if groups.iter().flatten().any(Vec::is_empty) {
            0
        } else {
            // More combinations than a u64 counts can never all run; saturate rather than
            // wrap to a small, wrong count.
            group_len
                .iter()
                .try_fold(1u64, |acc, &n| acc.checked_mul(n))
                .unwrap_or(u64::MAX)
        };
        Product {
            groups,
            group_len,
            next: 0,
            len,
        }
    }

    fn len(&self) -> u64 {
        self.len
    }
}

impl Iterator for Product {
    type Item = Vec<Vec<u8>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.len {
            return None;
        }
        let mut rest = self.next;
        let mut picks = vec![0u64; self.groups.len()];
        for (i, n) in self.group_len.iter().enumerate().rev() {
            picks[i] = rest % n;
            rest /= n;
        }
        self.next += 1;
        let mut args = Vec::new();
        for (g, pick) in self.groups.iter().zip(picks) {
            for source in g {
                args.push(source[(pick % source.len() as u64) as usize].clone());
            }
        }
        Some(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<Vec<u8>> {
        xs.iter().map(|x| x.as_bytes().to_vec()).collect()
    }

    #[test]
    fn cross_product_last_fastest_and_linking_wraps() {
        let p: Vec<_> =
            Product::new(vec![(v(&["a", "b"]), false), (v(&["1", "2"]), false)]).collect();
        assert_eq!(
            p,
            [
                v(&["a", "1"]),
                v(&["a", "2"]),
                v(&["b", "1"]),
                v(&["b", "2"])
            ]
        );
        let p: Vec<_> =
            Product::new(vec![(v(&["a", "b", "c"]), false), (v(&["1"]), true)]).collect();
        assert_eq!(p, [v(&["a", "1"]), v(&["b", "1"]), v(&["c", "1"])]);
    }
}
