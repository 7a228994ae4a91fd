//! Argument sources: `-a FILE`, `:::` values, `::::` files, stdin; cross product and linking;
//! `-0`/`-d` record separators, `-E`, `--header`, `--colsep` with `--trim`, `--shuf` and `-n`.
//! The first source is streamed a record at a time when it is a file or stdin (so memory stays
//! flat however long it is); the others are read whole first, since every value of the first
//! is crossed with all of them. `--shuf` reads everything (it must, to shuffle).

use std::fs::File;
use std::io::{self, BufRead, BufReader};

use anyhow::{bail, Context};
use regex::bytes::Regex;

use crate::args::{Group, Source};

/// A stream of argument lists, one per job.
/// `Send`: the runner reads its inputs on a thread of its own.
pub type Inputs = Box<dyn Iterator<Item = io::Result<Vec<Vec<u8>>>> + Send>;

/// A stream of single values (one source).
type Values = Box<dyn Iterator<Item = io::Result<Vec<u8>>> + Send>;

/// How values are cut out of files and shaped before they become arguments.
#[derive(Debug, Default)]
pub struct Shape<'a> {
    /// `--colsep REGEX`: split each value into columns.
    pub colsep: Option<&'a str>,
    /// `-n N`: arguments per job.
    pub max_args: Option<usize>,
    /// `-d`/`-0`: what ends a record in a file or stdin (newline when `None`).
    pub delimiter: Option<Vec<u8>>,
    /// `-E STR`: a value equal to it ends its source.
    pub eof: Option<Vec<u8>>,
    /// `--header`: the first value of each source names its columns.
    pub header: bool,
    /// `--trim`: white space removed from each argument.
    pub trim: Trim,
    /// `--shuf`: run the jobs in random order.
    pub shuf: bool,
}

/// `--trim`: which ends of each argument lose their white space (perl's `\s`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Trim {
    /// Nothing (`n`; the default without `--colsep`).
    #[default]
    None,
    /// The start (`l`).
    Left,
    /// The end (`r`).
    Right,
    /// Both (`lr` or `rl`; the default with `--colsep`, as GNU parallel).
    Both,
}

impl Trim {
    /// Parses `--trim`; absent, it is `lr` with `--colsep` and `n` without, as GNU parallel.
    pub fn parse(spec: Option<&str>, colsep: bool) -> anyhow::Result<Trim> {
        Ok(match spec {
            None if colsep => Trim::Both,
            None | Some("n") => Trim::None,
            Some("l") => Trim::Left,
            Some("r") => Trim::Right,
            Some("lr" | "rl") => Trim::Both,
            Some(other) => bail!("invalid --trim {other:?}: expected n, l, r, lr or rl"),
        })
    }

    fn apply(self, v: &mut Vec<u8>) {
        // perl's \s: space, \t, \n, \v, \f, \r.
        let ws = |b: &u8| b" \t\n\x0b\x0c\r".contains(b);
        if matches!(self, Trim::Right | Trim::Both) {
            let end = v.iter().rposition(|b| !ws(b)).map_or(0, |i| i + 1);
            v.truncate(end);
        }
        if matches!(self, Trim::Left | Trim::Both) {
            let start = v.iter().position(|b| !ws(b)).unwrap_or(v.len());
            v.drain(..start);
        }
    }
}

/// Reads `-d`'s argument as GNU parallel does: `\t`, `\n`, `\r`, then `\NNN` (octal) and
/// `\N`, each replaced in turn over the whole string.
pub fn unescape_delimiter(spec: &str) -> anyhow::Result<Vec<u8>> {
    let mut s = spec.as_bytes().to_vec();
    for (from, to) in [(b't', b'\t'), (b'n', b'\n'), (b'r', b'\r')] {
        s = replace_all(&s, &[b'\\', from], &[to]);
    }
    for width in [3, 1] {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            let digits = s.get(i + 1..i + 1 + width);
            match digits {
                Some(d) if s[i] == b'\\' && d.iter().all(u8::is_ascii_digit) => {
                    let n = d.iter().try_fold(0u32, |acc, &b| {
                        (b <= b'7').then_some(acc * 8 + u32::from(b - b'0'))
                    });
                    match n.and_then(|n| u8::try_from(n).ok()) {
                        Some(b) => out.push(b),
                        None => bail!(
                            "invalid -d {spec:?}: \\{} is not an octal byte (\\000 to \\377)",
                            String::from_utf8_lossy(d)
                        ),
                    }
                    i += 1 + width;
                }
                _ => {
                    out.push(s[i]);
                    i += 1;
                }
            }
        }
        s = out;
    }
    if s.is_empty() {
        bail!("invalid -d {spec:?}: the delimiter is empty");
    }
    Ok(s)
}

fn replace_all(s: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// The input options of `a`, checked.
pub fn shape(a: &crate::args::Args) -> anyhow::Result<Shape<'_>> {
    let delimiter = if a.null {
        Some(vec![0])
    } else {
        a.delimiter.as_deref().map(unescape_delimiter).transpose()?
    };
    let header = match a.header.as_deref() {
        None => false,
        Some("0") => bail!("--header 0 is not supported: use --header : to name the columns from the first value of each source"),
        Some(_) => true,
    };
    Ok(Shape {
        colsep: a.colsep.as_deref(),
        // -X and -m count -n themselves, as they fill each line.
        max_args: a.max_args.filter(|_| !(a.context || a.multi)),
        delimiter,
        eof: a
            .eof
            .clone()
            .filter(|e| !e.is_empty())
            .map(String::into_bytes),
        header,
        trim: Trim::parse(a.trim.as_deref(), a.colsep.is_some())?,
        shuf: a.shuf,
    })
}

/// The job stream, what is known of its length, and the column names `--header` read.
pub struct Built {
    /// One argument list per job.
    pub inputs: Inputs,
    /// The number of jobs when it is known without reading a stream (for the ETA).
    pub total: Option<u64>,
    /// With `--header`: the name of each column, in argument order (`{name}` is `{i+1}`).
    pub names: Vec<Vec<u8>>,
}

/// One source, opened.
enum Src {
    Values(Vec<Vec<u8>>),
    Stream(Values),
}

impl Src {
    fn first(&mut self) -> io::Result<Option<Vec<u8>>> {
        match self {
            Src::Values(v) => Ok((!v.is_empty()).then(|| v.remove(0))),
            Src::Stream(s) => s.next().transpose(),
        }
    }

    fn collect(self, what: &str) -> anyhow::Result<Vec<Vec<u8>>> {
        match self {
            Src::Values(v) => Ok(v),
            Src::Stream(s) => s
                .collect::<io::Result<Vec<_>>>()
                .with_context(|| format!("cannot read {what}")),
        }
    }
}

/// Builds the job stream from the sources in order (`-a` files first, as GNU parallel).
pub fn build(groups: Vec<Group>, shape: &Shape<'_>) -> anyhow::Result<Built> {
    // --header without --colsep splits at tabs, as GNU parallel does.
    let colsep = shape.colsep.or(shape.header.then_some("\t"));
    let colsep = colsep
        .map(|re| Regex::new(re).with_context(|| format!("invalid --colsep {re:?}")))
        .transpose()?;
    let delim = shape.delimiter.clone().unwrap_or_else(|| b"\n".to_vec());
    let groups = if groups.is_empty() {
        vec![Group {
            source: Source::File("-".into()),
            linked: false,
        }]
    } else {
        groups
    };
    let mut sources: Vec<(Src, bool, String)> = Vec::new();
    for g in groups {
        let (src, what) = match g.source {
            Source::Values(v) => {
                let mut v: Vec<Vec<u8>> = v.into_iter().map(|s| s.into_encoded_bytes()).collect();
                if let Some(d) = &shape.delimiter {
                    // GNU parallel reads ::: values as one input joined by the delimiter, so a
                    // value holding it is cut there too (`-d , ::: 'x,y'` is two jobs).
                    v = split_values(&v, d);
                }
                if let Some(eof) = &shape.eof {
                    if let Some(cut) = v.iter().position(|x| x == eof) {
                        v.truncate(cut);
                    }
                }
                (Src::Values(v), "the ::: values".to_string())
            }
            Source::File(path) => {
                let what = if path.as_os_str() == "-" {
                    "standard input".to_string()
                } else {
                    path.display().to_string()
                };
                let records = records(open(&path)?, delim.clone());
                let records: Values = match shape.eof.clone() {
                    Some(eof) => Box::new(
                        records.take_while(move |r| r.as_ref().map_or(true, |v| *v != eof)),
                    ),
                    None => records,
                };
                (Src::Stream(records), what)
            }
        };
        sources.push((src, g.linked, what));
    }
    let mut names = Vec::new();
    if shape.header {
        for (src, _, what) in &mut sources {
            let first = src
                .first()
                .with_context(|| format!("cannot read the header of {what}"))?
                .unwrap_or_default();
            match &colsep {
                Some(re) => names.extend(re.split(&first).map(<[u8]>::to_vec)),
                None => names.push(first),
            }
        }
    }
    let streams_first = matches!(sources.first(), Some((Src::Stream(_), _, _)))
        && !sources.get(1).is_some_and(|(_, linked, _)| *linked);
    let (records, total): (Inputs, Option<u64>) = if streams_first {
        let mut it = sources.into_iter();
        let Some((Src::Stream(first), _, _)) = it.next() else {
            unreachable!("checked above")
        };
        let mut sets = Vec::new();
        for (src, linked, what) in it {
            sets.push((src.collect(&what)?, linked));
        }
        if sets.is_empty() {
            (Box::new(first.map(|r| r.map(|v| vec![v]))), None)
        } else {
            let rest = Product::new(sets);
            (Box::new(Crossed::new(first, rest)), None)
        }
    } else {
        let mut sets = Vec::new();
        for (src, linked, what) in sources {
            sets.push((src.collect(&what)?, linked));
        }
        let product = Product::new(sets);
        let total = product.len();
        (Box::new(product.map(Ok)), Some(total))
    };
    let trim = shape.trim;
    let records: Inputs = if colsep.is_some() || trim != Trim::None {
        Box::new(records.map(move |r| {
            r.map(|vals| {
                let mut out: Vec<Vec<u8>> = Vec::with_capacity(vals.len());
                for v in vals {
                    match &colsep {
                        Some(re) => out.extend(re.split(&v).map(<[u8]>::to_vec)),
                        None => out.push(v),
                    }
                }
                for v in &mut out {
                    trim.apply(v);
                }
                out
            })
        }))
    } else {
        records
    };
    let records: Inputs = if shape.shuf {
        let mut all = records
            .collect::<io::Result<Vec<_>>>()
            .context("cannot read the inputs")?;
        fastrand::shuffle(&mut all);
        Box::new(all.into_iter().map(Ok))
    } else {
        records
    };
    let (inputs, total) = match shape.max_args {
        Some(n) if n > 1 => (
            Box::new(Chunks { inner: records, n }) as Inputs,
            total.map(|t| t.div_ceil(n as u64)),
        ),
        _ => (records, total),
    };
    Ok(Built {
        inputs,
        total,
        names,
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

/// `values` joined by `delim` and cut again at every `delim`, as records of a file are.
fn split_values(values: &[Vec<u8>], delim: &[u8]) -> Vec<Vec<u8>> {
    let joined = values.join(delim);
    let reader: Box<dyn BufRead + Send> = Box::new(io::Cursor::new(joined));
    records(reader, delim.to_vec()).flatten().collect()
}

/// One value per record, without the delimiter that ends it (the last record may lack one).
fn records(mut r: Box<dyn BufRead + Send>, delim: Vec<u8>) -> Values {
    let last = delim[delim.len() - 1];
    Box::new(std::iter::from_fn(move || {
        let mut rec = Vec::new();
        loop {
            match r.read_until(last, &mut rec) {
                Ok(0) => return (!rec.is_empty()).then_some(Ok(rec)),
                Ok(_) => {
                    if rec.ends_with(&delim) {
                        rec.truncate(rec.len() - delim.len());
                        return Some(Ok(rec));
                    }
                    if rec.last() != Some(&last) {
                        // End of input inside a record.
                        return Some(Ok(rec));
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }))
}

/// A streamed first source crossed with the product of the others: each value of the first,
/// then every combination of the rest.
struct Crossed {
    first: Values,
    rest: Product,
    current: Option<Vec<u8>>,
}

impl Crossed {
    fn new(first: Values, rest: Product) -> Crossed {
        Crossed {
            first,
            rest,
            current: None,
        }
    }
}

impl Iterator for Crossed {
    type Item = io::Result<Vec<Vec<u8>>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() == 0 {
            return None;
        }
        loop {
            if let Some(cur) = &self.current {
                if let Some(tail) = self.rest.next() {
                    let mut args = Vec::with_capacity(tail.len() + 1);
                    args.push(cur.clone());
                    args.extend(tail);
                    return Some(Ok(args));
                }
            }
            match self.first.next()? {
                Ok(v) => {
                    self.current = Some(v);
                    self.rest.next = 0;
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
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
    fn values_holding_the_delimiter_are_cut_as_gnu_cuts_them() {
        let v = |xs: &[&str]| xs.iter().map(|x| x.as_bytes().to_vec()).collect::<Vec<_>>();
        // parallel -d , echo '[{}]' ::: 'x,' ',y' 'a,,b' prints these seven.
        assert_eq!(
            split_values(&v(&["x,", ",y", "a,,b"]), b","),
            v(&["x", "", "", "y", "a", "", "b"])
        );
        assert_eq!(split_values(&v(&["x,"]), b","), v(&["x"]));
        assert_eq!(split_values(&v(&["plain"]), b"\0"), v(&["plain"]));
    }

    #[test]
    fn delimiters_read_escapes_in_gnu_order() {
        assert_eq!(unescape_delimiter("\\t").unwrap(), b"\t");
        assert_eq!(unescape_delimiter(",;").unwrap(), b",;");
        assert_eq!(unescape_delimiter("\\0").unwrap(), b"\0");
        assert_eq!(unescape_delimiter("\\101x").unwrap(), b"Ax");
        assert!(unescape_delimiter("").is_err());
        assert!(unescape_delimiter("\\9").is_err());
    }

    #[test]
    fn records_split_at_a_several_byte_delimiter_lazily() {
        let data: &[u8] = b"a;;b;c;;;;d";
        let got: Vec<_> = records(Box::new(data), b";;".to_vec())
            .collect::<io::Result<_>>()
            .unwrap();
        assert_eq!(got, v(&["a", "b;c", "", "d"]));
        // A stream is crossed with the rest without reading it all first.
        let endless: Values = Box::new((0u64..).map(|i| Ok(i.to_string().into_bytes())));
        let rest = Product::new(vec![(v(&["x", "y"]), false)]);
        let first: Vec<_> = Crossed::new(endless, rest)
            .take(3)
            .map(Result::unwrap)
            .collect();
        assert_eq!(first, [v(&["0", "x"]), v(&["0", "y"]), v(&["1", "x"])]);
    }

    #[test]
    fn trim_removes_perl_white_space() {
        let mut s = b" \t a b \r\n".to_vec();
        Trim::Right.apply(&mut s);
        assert_eq!(s, b" \t a b");
        Trim::Left.apply(&mut s);
        assert_eq!(s, b"a b");
        assert_eq!(Trim::parse(None, true).unwrap(), Trim::Both);
        assert_eq!(Trim::parse(None, false).unwrap(), Trim::None);
        assert!(Trim::parse(Some("x"), false).is_err());
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
