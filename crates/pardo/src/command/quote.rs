//! The `sh` lexical context of every replacement string, and how a value is written for it.
//!
//! The template's text is read once the way a POSIX shell reads it, keeping a stack of open
//! constructs: `'…'`, `"…"`, `$(…)`, backquotes, `${…}`, `$((…))`, `$'…'`, comments and
//! here-document bodies. Each replacement string records the construct it sits in
//! ([`Base`]) and the backquotes around it ([`Ctx::backquotes`]); rendering writes the value so
//! that the shell reads back exactly its bytes, as data. Where the shells pardo accepts
//! disagree on how to read the template (backquotes inside `"…"`, nested backquotes, `$'…'`,
//! `case` inside `$(…)`, `'` inside `"${…}"`), the template is marked uncertain and its values
//! may only hold bytes that mean nothing in any context ([`Base::Strict`]).

/// The construct a replacement string sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Base {
    /// An unquoted word (also inside `$(…)` and unquoted `${…}`): written single-quoted.
    Plain,
    /// Inside `'…'`: each `'` becomes `'\''` (close, escaped quote, reopen).
    Single,
    /// Inside `"…"`: `$`, `` ` ``, `"` and `\` get a backslash.
    Double,
    /// Inside `"${…}"`: as [`Base::Double`], and `}` too.
    DoubleParam,
    /// Inside a comment: literal, but a newline would end the comment.
    Comment,
    /// A here-document body; `quoted` when its delimiter is quoted (no expansion at all).
    Body {
        /// Index of the here-document in [`Lexed::bodies`].
        id: usize,
        /// The delimiter was quoted.
        quoted: bool,
    },
    /// Somewhere no encoding is known to be read back the same by every shell (arithmetic,
    /// `$'…'`, an uncertain template): only bytes inert everywhere may go there.
    Strict,
}

/// Where a replacement string sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ctx {
    pub base: Base,
    /// How many backquote levels (outside `"…"`) enclose it: each removes one level of
    /// backslashes before `\`, `` ` `` and `$`.
    pub backquotes: usize,
}

/// A here-document, for checking that no rendered line ends it early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Heredoc {
    pub delim: Vec<u8>,
    /// `<<-`: leading tabs are stripped before comparing.
    pub strip_tabs: bool,
    /// The delimiter was quoted: the body is not expanded.
    pub quoted: bool,
}

/// One piece of the template text: literal bytes or a replacement string, and which
/// here-document body (if any) it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Piece<R> {
    Lit(Vec<u8>, Option<usize>),
    Repl(R, Ctx),
}

/// The template cut into pieces.
#[derive(Clone, Debug)]
pub(crate) struct Lexed<R> {
    pub pieces: Vec<Piece<R>>,
    pub bodies: Vec<Heredoc>,
    /// Every shell pardo accepts may not read the template alike: see the module docs.
    pub uncertain: bool,
    /// The bytes that end top-level shell words (blanks, newlines and `;&|()<>`, outside any
    /// quote, substitution or here-document), each as (index of the literal piece holding it, offset in that piece).
    pub breaks: Vec<(usize, usize)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    Top,
    /// `$(…)` or `(…)` inside it; `depth` counts bare parentheses.
    Sub {
        depth: u32,
    },
    Back,
    Single,
    Double,
    DollarSingle,
    Param {
        in_dq: bool,
    },
    Arith {
        depth: u32,
    },
    Comment,
    Body(usize),
}

fn is_word_break(b: u8) -> bool {
    b" \t\n;&|()<>".contains(&b)
}

/// Reads `text` as `sh` would, cutting out replacement strings; `repl` recognises one at
/// the start of its argument and returns it with its length.
pub(crate) fn lex<R>(text: &[u8], repl: impl Fn(&[u8]) -> Option<(R, usize)>) -> Lexed<R> {
    let mut out = Lexed {
        pieces: Vec::new(),
        bodies: Vec::new(),
        uncertain: false,
        breaks: Vec::new(),
    };
    let mut stack = vec![Frame::Top];
    let mut lit: Vec<u8> = Vec::new();
    let mut pending: Vec<usize> = Vec::new();
    let mut line_start = true;
    let mut i = 0;
    let body_of = |stack: &[Frame]| {
        stack.iter().rev().find_map(|f| match f {
            Frame::Body(id) => Some(*id),
            _ => None,
        })
    };
    macro_rules! flush {
        () => {
            if !lit.is_empty() {
                out.pieces
                    .push(Piece::Lit(std::mem::take(&mut lit), body_of(&stack)));
            }
        };
    }
    while i < text.len() {
        let top = *stack.last().unwrap_or(&Frame::Top);
        let b = text[i];
        if let (Frame::Body(id), true) = (top, line_start) {
            let end = text[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(text.len(), |n| i + n);
            let mut line = &text[i..end];
            let doc = &out.bodies[id];
            if doc.strip_tabs {
                while let [b'\t', rest @ ..] = line {
                    line = rest;
                }
            }
            if line == doc.delim.as_slice() {
                flush!();
                stack.pop();
                let stop = (end + 1).min(text.len());
                lit.extend_from_slice(&text[i..stop]);
                i = stop;
                if !pending.is_empty() {
                    flush!();
                    stack.push(Frame::Body(pending.remove(0)));
                }
                continue;
            }
        }
        line_start = false;
        if let Some((r, len)) = repl(&text[i..]) {
            flush!();
            let backquotes = stack.iter().filter(|f| **f == Frame::Back).count();
            let base = match top {
                Frame::Top | Frame::Sub { .. } | Frame::Back | Frame::Param { in_dq: false } => {
                    Base::Plain
                }
                Frame::Single => Base::Single,
                Frame::Double => Base::Double,
                Frame::Param { in_dq: true } => Base::DoubleParam,
                Frame::Comment => Base::Comment,
                Frame::Body(id) => Base::Body {
                    id,
                    quoted: out.bodies[id].quoted,
                },
                Frame::DollarSingle | Frame::Arith { .. } => Base::Strict,
            };
            out.pieces.push(Piece::Repl(r, Ctx { base, backquotes }));
            i += len;
            continue;
        }
        let next = text.get(i + 1).copied();
        let at_word_start = i == 0 || is_word_break(text[i - 1]);
        let command = matches!(top, Frame::Top | Frame::Sub { .. } | Frame::Back);
        let expands = command
            || matches!(top, Frame::Double | Frame::Param { .. })
            || matches!(top, Frame::Body(id) if !out.bodies[id].quoted);
        let mut step = 1;
        if stack.len() == 1 && is_word_break(b) {
            out.breaks.push((out.pieces.len(), lit.len()));
        }
        match (top, b) {
            (Frame::Single, b'\'') | (Frame::DollarSingle, b'\'') | (Frame::Double, b'"') => {
                stack.pop();
            }
            (Frame::Single, _) => {}
            (Frame::DollarSingle, b'\\') => {
                // bash reads `\'` as a quote, dash ends the string there.
                out.uncertain = true;
            }
            (Frame::DollarSingle, _) => {}
            (Frame::Comment, b'\n') => {
                stack.pop();
                step = 0;
            }
            (Frame::Comment, _) => {}
            (Frame::Body(id), _) if out.bodies[id].quoted => {}
            (_, b'\\') if expands => {
                if top == Frame::Back && next == Some(b'`') {
                    out.uncertain = true;
                }
                step = 2;
            }
            (_, b'$') if expands && next == Some(b'(') => {
                if text.get(i + 2) == Some(&b'(') {
                    stack.push(Frame::Arith { depth: 0 });
                    step = 3;
                } else {
                    stack.push(Frame::Sub { depth: 0 });
                    step = 2;
                }
            }
            (_, b'$') if expands && next == Some(b'{') => {
                let in_dq = !matches!(top, Frame::Param { in_dq: false }) && !command;
                stack.push(Frame::Param { in_dq });
                step = 2;
            }
            (_, b'$') if command && next == Some(b'\'') => {
                stack.push(Frame::DollarSingle);
                step = 2;
            }
            (_, b'`') if expands => {
                if top == Frame::Back {
                    stack.pop();
                } else {
                    if !command || stack.contains(&Frame::Double) {
                        // dash and bash read `\"` inside "`…`" differently.
                        out.uncertain = true;
                    }
                    stack.push(Frame::Back);
                }
            }
            (Frame::Param { .. }, b'}') => {
                stack.pop();
            }
            (Frame::Param { in_dq: true }, b'\'') => out.uncertain = true,
            (Frame::Param { .. }, b'"') => stack.push(Frame::Double),
            (Frame::Param { in_dq: false }, b'\'') => stack.push(Frame::Single),
            (Frame::Arith { depth }, b'(') => {
                stack.pop();
                stack.push(Frame::Arith { depth: depth + 1 });
            }
            (Frame::Arith { depth }, b')') => {
                stack.pop();
                if depth == 0 {
                    step = 2;
                } else {
                    stack.push(Frame::Arith { depth: depth - 1 });
                }
            }
            (_, b'\'') if command => stack.push(Frame::Single),
            (_, b'"') if command => stack.push(Frame::Double),
            (Frame::Sub { depth }, b'(') => {
                stack.pop();
                stack.push(Frame::Sub { depth: depth + 1 });
            }
            (Frame::Sub { depth }, b')') => {
                stack.pop();
                if depth > 0 {
                    stack.push(Frame::Sub { depth: depth - 1 });
                }
            }
            (_, b'#') if command && at_word_start => stack.push(Frame::Comment),
            // `case x in a)` closes no `$(`: pardo does not follow case patterns.
            (_, b'c')
                if command
                    && at_word_start
                    && text[i..].starts_with(b"case")
                    && text[i + 4..].first().is_none_or(|&c| is_word_break(c))
                    && stack
                        .iter()
                        .any(|f| matches!(f, Frame::Sub { .. } | Frame::Back)) =>
            {
                out.uncertain = true;
            }
            (_, b'<') if command && next == Some(b'<') && text.get(i + 2) != Some(&b'<') => {
                let (doc, len) = heredoc_operator(&text[i..]);
                if doc.delim.contains(&b'{') {
                    out.uncertain = true;
                }
                pending.push(out.bodies.len());
                out.bodies.push(doc);
                step = len;
            }
            _ => {}
        }
        if step == 0 {
            continue;
        }
        let stop = (i + step).min(text.len());
        lit.extend_from_slice(&text[i..stop]);
        if text[i..stop].last() == Some(&b'\n') {
            line_start = true;
            let top = *stack.last().unwrap_or(&Frame::Top);
            if matches!(top, Frame::Top | Frame::Sub { .. } | Frame::Back) && !pending.is_empty() {
                flush!();
                stack.push(Frame::Body(pending.remove(0)));
            }
        }
        i = stop;
    }
    flush!();
    if stack.last() == Some(&Frame::Comment) {
        stack.pop();
    }
    // An unterminated construct leaves the shell to complain; values in it stay inert only if
    // strict, since pardo cannot know how the shell recovers.
    if stack.len() > 1 || !pending.is_empty() {
        out.uncertain = true;
    }
    out
}

/// Reads `<<WORD` / `<<-WORD` at the start of `s`: the here-document and the length consumed.
fn heredoc_operator(s: &[u8]) -> (Heredoc, usize) {
    let mut i = 2;
    let strip_tabs = s.get(i) == Some(&b'-');
    if strip_tabs {
        i += 1;
    }
    while s.get(i).is_some_and(|&b| b == b' ' || b == b'\t') {
        i += 1;
    }
    let mut delim = Vec::new();
    let mut quoted = false;
    let mut q: Option<u8> = None;
    while let Some(&b) = s.get(i) {
        match (q, b) {
            (None, b'\'' | b'"') => {
                quoted = true;
                q = Some(b);
            }
            (Some(c), _) if b == c => q = None,
            (None, b'\\') => {
                quoted = true;
                i += 1;
                if let Some(&n) = s.get(i) {
                    delim.push(n);
                }
            }
            (None, _) if is_word_break(b) => break,
            _ => delim.push(b),
        }
        i += 1;
    }
    (
        Heredoc {
            delim,
            strip_tabs,
            quoted,
        },
        i.min(s.len()),
    )
}

/// Bytes that mean nothing to any shell in any context pardo tracks.
pub(crate) fn is_inert(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_-+./:,@%".contains(&b)
}

/// Why a value cannot be written where the template puts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Only inert bytes may go there.
    Strict,
    /// A newline would end the comment the value sits in.
    Comment,
}

/// Appends `v` written for `ctx` to `out`: the shell reads it back as exactly `v`, as data.
pub(crate) fn encode(v: &[u8], ctx: &Ctx, out: &mut Vec<u8>) -> Result<(), Refusal> {
    let mut word = Vec::with_capacity(v.len() + 2);
    match ctx.base {
        Base::Plain => super::template::quote_into(v, &mut word),
        Base::Single => {
            for &b in v {
                if b == b'\'' {
                    word.extend_from_slice(b"'\\''");
                } else {
                    word.push(b);
                }
            }
        }
        // bash reads a `'` inside `"${…}"` as a quote when finding the `}`; dash does not.
        Base::DoubleParam if v.contains(&b'\'') => return Err(Refusal::Strict),
        Base::Double | Base::DoubleParam => {
            let special: &[u8] = if ctx.base == Base::Double {
                b"$`\"\\"
            } else {
                b"$`\"\\}"
            };
            backslash(v, special, &mut word);
        }
        Base::Comment => {
            if v.contains(&b'\n') {
                return Err(Refusal::Comment);
            }
            word.extend_from_slice(v);
        }
        Base::Body { quoted: true, .. } => word.extend_from_slice(v),
        Base::Body { quoted: false, .. } => backslash(v, b"$`\\", &mut word),
        Base::Strict => {
            if !v.iter().all(|&b| is_inert(b)) {
                return Err(Refusal::Strict);
            }
            word.extend_from_slice(v);
        }
    }
    for _ in 0..ctx.backquotes {
        let inner = std::mem::take(&mut word);
        backslash(&inner, b"$`\\", &mut word);
    }
    out.extend_from_slice(&word);
    Ok(())
}

fn backslash(v: &[u8], special: &[u8], out: &mut Vec<u8>) {
    for &b in v {
        if special.contains(&b) {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// The first line of `body` that would end here-document `doc` early.
pub(crate) fn early_end<'a>(body: &'a [u8], doc: &Heredoc) -> Option<&'a [u8]> {
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    body.split(|&b| b == b'\n').find(|line| {
        let mut l: &[u8] = line;
        if doc.strip_tabs {
            while let [b'\t', rest @ ..] = l {
                l = rest;
            }
        }
        l == doc.delim.as_slice()
    })
}
