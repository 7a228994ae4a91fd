//! `-X` and `-m`: as many arguments on each command line as its length limit allows.
//!
//! [`Pack`] reads argument lists (one per input record) and joins consecutive ones into one
//! job each, while the rendered command stays shorter than the limit (and, with `-n N`, holds
//! at most N records). Only one job's arguments and one record more are held at a time, so
//! memory follows the line length, not the input. When the whole input fits on the first
//! line and several jobs run at once, the records are spread evenly over that many jobs, as
//! GNU parallel does.

use std::collections::VecDeque;
use std::io;

use super::template::{JobArgs, QuoteError, Template};

/// The most bytes one argument of `exec` may hold on Linux (`MAX_ARG_STRLEN`); a job run by a
/// shell gets its whole command line as one such argument, so no line may reach it.
pub const MAX_LINE: usize = 128 * 1024;

/// Why a job could not be packed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// One record alone makes a command line at least as long as the limit.
    #[error("command line too long ({len} >= {max}) at input {input}: {value}")]
    TooLong {
        /// The length of the line with that record alone.
        len: usize,
        /// The limit.
        max: usize,
        /// The record's number, from 0.
        input: u64,
        /// The record's arguments, joined by spaces.
        value: String,
    },
    /// A value could not be put into the template.
    #[error(transparent)]
    Quote(#[from] QuoteError),
    /// The input could not be read.
    #[error("cannot read the inputs: {0}")]
    Read(#[from] io::Error),
}

/// How full each command line may get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `-s N`: every rendered command line is shorter than this many bytes.
    pub max_chars: usize,
    /// `-n N`: at most this many records per line.
    pub max_args: Option<usize>,
    /// Jobs run at once: a short input is spread over this many lines.
    pub slots: usize,
}

/// The job stream of `-X`/`-m`: groups of records, each group one job's arguments.
///
/// ```
/// use pardo::command::{Limits, Pack, Template};
/// let t = Template::parse(&["echo".into()]);
/// let records = ["a", "b", "c"].map(|v| Ok(vec![v.as_bytes().to_vec()]));
/// // "echo a b" is 8 bytes: under a limit of 9, c goes on a second line.
/// let limits = Limits { max_chars: 9, max_args: None, slots: 1 };
/// let jobs: Vec<_> = Pack::new(t, records.into_iter(), limits).collect::<Result<_, _>>()?;
/// assert_eq!(jobs, [vec![b"a".to_vec(), b"b".to_vec()], vec![b"c".to_vec()]]);
/// # Ok::<(), pardo::command::PackError>(())
/// ```
#[derive(Debug)]
pub struct Pack<I> {
    template: Template,
    inner: I,
    limits: Limits,
    /// The record that did not fit on the last line.
    pending: Option<Vec<Vec<u8>>>,
    /// Lines ready to go (the spread first line).
    ready: VecDeque<Vec<Vec<u8>>>,
    /// Records read so far.
    read: u64,
    /// Jobs handed out so far.
    jobs: u64,
    done: bool,
}

impl<I: Iterator<Item = io::Result<Vec<Vec<u8>>>>> Pack<I> {
    /// Packs `records` for `template` within `limits`.
    pub fn new(template: Template, records: I, limits: Limits) -> Pack<I> {
        Pack {
            template,
            inner: records,
            limits,
            pending: None,
            ready: VecDeque::new(),
            read: 0,
            jobs: 0,
            done: false,
        }
    }

    fn len(&self, args: &[Vec<u8>]) -> Result<usize, QuoteError> {
        let job = JobArgs {
            seq: self.jobs + 1,
            slot: 1,
            args,
        };
        Ok(self.template.render(&job)?.shell.len())
    }

    /// What the record's arguments add to a line that already holds some: each value, quoted,
    /// where the template puts all arguments, and a space before each.
    fn cost(&self, record: &[Vec<u8>]) -> Result<usize, QuoteError> {
        let mut total = 0;
        for v in record {
            let one = std::slice::from_ref(v);
            let two = [v.clone(), v.clone()];
            total += self.len(&two)?.saturating_sub(self.len(one)?);
        }
        Ok(total)
    }

    fn next_record(&mut self) -> Option<io::Result<Vec<Vec<u8>>>> {
        if let Some(r) = self.pending.take() {
            return Some(Ok(r));
        }
        let r = self.inner.next();
        if r.is_none() {
            self.done = true;
        }
        r
    }

    /// The next line's records, or `None` at the end of the input.
    fn fill(&mut self) -> Result<Option<Vec<Vec<Vec<u8>>>>, PackError> {
        let mut line: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut len = 0;
        while let Some(record) = self.next_record() {
            let record = record?;
            if line.is_empty() {
                len = self.len(&record)?;
                if len >= self.limits.max_chars {
                    return Err(PackError::TooLong {
                        len,
                        max: self.limits.max_chars,
                        input: self.read,
                        value: record
                            .iter()
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .collect::<Vec<_>>()
                            .join(" "),
                    });
                }
                self.read += 1;
                line.push(record);
                continue;
            }
            if self.limits.max_args.is_some_and(|n| line.len() >= n) {
                self.pending = Some(record);
                break;
            }
            let more = self.cost(&record)?;
            if len + more >= self.limits.max_chars {
                self.pending = Some(record);
                break;
            }
            len += more;
            self.read += 1;
            line.push(record);
        }
        Ok((!line.is_empty()).then_some(line))
    }
}

impl<I: Iterator<Item = io::Result<Vec<Vec<u8>>>>> Iterator for Pack<I> {
    type Item = Result<Vec<Vec<u8>>, PackError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(line) = self.ready.pop_front() {
            self.jobs += 1;
            return Some(Ok(line));
        }
        let first = self.jobs == 0;
        let line = match self.fill() {
            Ok(Some(line)) => line,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        if first && self.done && self.limits.slots > 1 {
            // The whole input is known and fits on one line: one line per job slot.
            let per = line.len().div_ceil(self.limits.slots);
            let mut records = line.into_iter();
            loop {
                let part: Vec<Vec<u8>> = records.by_ref().take(per).flatten().collect();
                if part.is_empty() {
                    break;
                }
                self.ready.push_back(part);
            }
            return self.next();
        }
        self.jobs += 1;
        Some(Ok(line.into_iter().flatten().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Syntax;

    fn records(xs: &[&str]) -> Vec<io::Result<Vec<Vec<u8>>>> {
        xs.iter().map(|x| Ok(vec![x.as_bytes().to_vec()])).collect()
    }

    fn lines(t: Template, xs: &[&str], limits: Limits) -> Vec<Vec<u8>> {
        Pack::new(t.clone(), records(xs).into_iter(), limits)
            .map(|args| {
                let args = args.unwrap();
                t.render(&JobArgs {
                    seq: 1,
                    slot: 1,
                    args: &args,
                })
                .unwrap()
                .shell
            })
            .collect()
    }

    fn limits(max_chars: usize, max_args: Option<usize>, slots: usize) -> Limits {
        Limits {
            max_chars,
            max_args,
            slots,
        }
    }

    #[test]
    fn lines_stay_under_the_limit_counting_quotes() {
        let t = Template::parse(&["echo".into()]);
        // "echo 'a b' c" is 12 bytes: allowed under 13, not under 12.
        let got = lines(t.clone(), &["a b", "c", "d"], limits(13, None, 1));
        assert_eq!(got, [b"echo 'a b' c".to_vec(), b"echo d".to_vec()]);
        let got = lines(t, &["a b", "c"], limits(12, None, 1));
        assert_eq!(got, [b"echo 'a b'".to_vec(), b"echo c".to_vec()]);
    }

    #[test]
    fn context_words_count_once_per_argument() {
        let syntax = Syntax {
            context: true,
            ..Syntax::default()
        };
        let t = Template::parse_with(&["echo".into(), "x{}y".into()], &syntax).unwrap();
        // "echo xay xby" is 12 bytes.
        let got = lines(t, &["a", "b", "c"], limits(13, None, 1));
        assert_eq!(got, [b"echo xay xby".to_vec(), b"echo xcy".to_vec()]);
    }

    #[test]
    fn max_args_caps_and_short_inputs_spread_over_slots() {
        let t = Template::parse(&["echo".into()]);
        let seven = ["1", "2", "3", "4", "5", "6", "7"];
        let got = lines(t.clone(), &seven, limits(MAX_LINE, Some(2), 1));
        assert_eq!(got.len(), 4);
        assert_eq!(got[3], b"echo 7");
        let got = lines(t.clone(), &seven, limits(MAX_LINE, None, 3));
        assert_eq!(
            got,
            [
                b"echo 1 2 3".to_vec(),
                b"echo 4 5 6".to_vec(),
                b"echo 7".to_vec()
            ]
        );
        // An input longer than one line is not spread.
        let got = lines(t, &seven, limits(11, None, 3));
        assert_eq!(got[0], b"echo 1 2 3");
    }

    #[test]
    fn a_record_too_long_alone_is_an_error_naming_it() {
        let t = Template::parse(&["echo".into()]);
        let mut p = Pack::new(t, records(&["aaaaaaaa"]).into_iter(), limits(5, None, 1));
        let e = p.next().unwrap().unwrap_err();
        assert_eq!(
            e.to_string(),
            "command line too long (13 >= 5) at input 0: aaaaaaaa"
        );
    }

    #[test]
    fn packing_reads_no_further_than_the_line_needs() {
        let t = Template::parse(&["echo".into()]);
        let endless = (0u64..).map(|i| Ok(vec![i.to_string().into_bytes()]));
        let mut p = Pack::new(t, endless, limits(100, None, 4));
        let first = p.next().unwrap().unwrap();
        assert!(first.len() > 10, "{first:?}");
        assert_eq!(first[0], b"0");
    }
}
