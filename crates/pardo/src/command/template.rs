//! Command templates: GNU parallel's replacement strings and quoting by context.
//!
//! A template is the command's words joined with spaces, read as shell code, with replacement
//! strings cut out of it once at parse time. While cutting, the template is read the way `sh`
//! reads it, so each replacement string knows the context it sits in: a plain word, `'…'`,
//! `"…"`, `$(…)` or backquotes (nested to any depth, e.g. `"…$(… "{}" …)…"`), `${…}`, or a
//! here-document body with a quoted or an unquoted delimiter. Each value is written for exactly
//! that context. The guarantee, for every shell pardo runs templates under (see
//! [`shell`](super::shell)):
//!
//! - **no value ever runs as code**, whatever the template and the value;
//! - a value reaches the command **byte for byte** as a plain word, inside `'{}'` and inside
//!   `"{}"` (also inside `$(…)`, `${…}` and here-documents);
//! - where no encoding is read back alike by every such shell (arithmetic `$((…))`, bash's
//!   `$'…'`, backquotes inside `"…"` or nested backquotes, `case` inside `$(…)`, an
//!   unterminated quote, a `'` in a value inside `"${…}"`), only values made of letters, digits and `_-+./:,@%` go in; any other
//!   value is refused with [`QuoteError`] and its job does not run;
//! - a value that would put a line equal to a here-document's delimiter into its body (and so
//!   end it early) is refused, as is a value inside a comment holding a newline, and a value
//!   with a NUL byte (no command line can hold one).
//!
//! `\{}` is a literal `{}`, as in the shell. When the template's own text has no shell syntax,
//! the job is run directly (argv built word by word, no shell); the result is the same as
//! running the quoted form under the shell, only faster. Values are bytes, so non-UTF-8 file
//! names pass through byte-exact.

use std::cell::RefCell;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;

use super::perl::{Eval, Perl, PerlError};

use super::quote::{self, Base, Ctx, Lexed, Piece, Refusal};

/// Which form of an argument a replacement string inserts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `{}`: the argument as it is.
    Whole,
    /// `{.}`: without its extension.
    NoExt,
    /// `{/}`: the base name.
    Base,
    /// `{//}`: the directory name.
    Dir,
    /// `{/.}`: the base name without its extension.
    BaseNoExt,
    /// `{..}` (`--plus`): without its last two extensions; `{...}`: three. The count is 2 or 3.
    NoExts(u8),
    /// `{/..}`, `{/...}` (`--plus`): the base name without its last two or three extensions.
    BaseNoExts(u8),
    /// `{+/}` (`--plus`): everything before the last `/` (empty without one).
    DirPart,
    /// `{+.}` (`--plus`): everything after the last `.` (empty without one).
    Ext,
    /// `{+..}`, `{+...}` (`--plus`): the last two or three extensions (empty without them).
    Exts(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repl {
    /// `pos` is 1-based (`{1}`); `None` means every argument of the job.
    Arg {
        pos: Option<usize>,
        form: Form,
    },
    Seq,
    Slot,
    /// `{= expr =}`: the argument as perl expression number `expr` leaves `$_`.
    Perl {
        pos: Option<usize>,
        expr: usize,
    },
}

/// How replacement strings are spelled: the options of GNU parallel that change them.
///
/// ```
/// use pardo::command::{JobArgs, Syntax, Template};
/// // `-I %`: `%` stands for the argument, `{}` is plain text.
/// let syntax = Syntax { replace: Some(b"%".to_vec()), ..Syntax::default() };
/// let t = Template::parse_with(&["echo".into(), "%.txt".into(), "{}".into()], &syntax)?;
/// let line = t.render(&JobArgs { seq: 1, slot: 1, args: &[b"a".to_vec()] })?;
/// assert_eq!(line.shell, b"echo a.txt {}");
///
/// // `--header`: columns by name.
/// let syntax = Syntax { names: vec![b"name".to_vec(), b"size".to_vec()], ..Syntax::default() };
/// let t = Template::parse_with(&["echo".into(), "{size}".into(), "{name.}".into()], &syntax)?;
/// let line = t.render(&JobArgs { seq: 1, slot: 1, args: &[b"f.gz".to_vec(), b"9".to_vec()] })?;
/// assert_eq!(line.shell, b"echo 9 f");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Syntax {
    /// `-I STR`: the string that stands for `{}` (then `{}` and `{N}` are plain text, as in
    /// GNU parallel; `{.}`, `{1.}` and the other forms still work).
    pub replace: Option<Vec<u8>>,
    /// `--header`: the names of the columns; `{name}` (and `{name.}`, `{name/}`, …) is the
    /// column's argument, the first name being `{1}`.
    pub names: Vec<Vec<u8>>,
    /// `--plus`: the extra forms `{..}` `{...}` `{/..}` `{/...}` `{+/}` `{+.}` `{+..}`
    /// `{+...}`.
    pub plus: bool,
    /// `-q`: each command word is one literal word (shell syntax in it is plain text).
    pub quote: bool,
    /// `-X`: with several arguments, the shell word around `{}` is repeated for each one
    /// (`pre{}post` becomes `preapost prebpost`) instead of `{}` becoming them all. Words end
    /// where the shell ends them (unquoted blanks and `;&|()<>`), so a copy never starts a
    /// new command.
    ///
    /// ```
    /// use pardo::command::{JobArgs, Syntax, Template};
    /// let syntax = Syntax { context: true, ..Syntax::default() };
    /// let t = Template::parse_with(&["echo".into(), "x{}.gz".into()], &syntax)?;
    /// let line = t.render(&JobArgs { seq: 1, slot: 1, args: &[b"a".to_vec(), b"b c".to_vec()] })?;
    /// assert_eq!(line.shell, b"echo xa.gz x'b c'.gz");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub context: bool,
}

/// Why a command template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyntaxError {
    /// `-I` was given an empty string.
    #[error("the replacement string given with -I is empty")]
    EmptyReplace,
    /// A `--plus` replacement string pardo does not provide.
    #[error("{string} is not supported by pardo (it needs the total number of jobs or job slots before the run)")]
    Unsupported {
        /// The replacement string.
        string: String,
    },
}

type Part = Piece<Repl>;

/// Why a job's values cannot be put into its template; the job is not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteError {
    /// A value holds a NUL byte.
    #[error("input {value:?} contains a NUL byte, which no command line can hold")]
    Nul {
        /// The value, lossily decoded.
        value: String,
    },
    /// The template puts the value where only letters, digits and `_-+./:,@%` are safe.
    #[error(
        "input {value:?} cannot be quoted safely where the template puts it (arithmetic, \
         $'…', backquotes inside \"…\" or nested, case inside $(…), a ' inside \"${{…}}\", \
         or an unterminated quote); there only letters, digits and _-+./:,@% can go: rewrite the template, \
         e.g. with $(…) and \"{{}}\""
    )]
    Unsafe {
        /// The value, lossily decoded.
        value: String,
    },
    /// The value sits in a comment and holds a newline, which would end the comment.
    #[error("input {value:?} holds a newline and the template puts it in a comment")]
    Comment {
        /// The value, lossily decoded.
        value: String,
    },
    /// A line of the here-document body would equal its delimiter and end it early.
    #[error(
        "the inputs {inputs} would end the here-document early: its body would hold a line \
         equal to its delimiter {delim:?}"
    )]
    Heredoc {
        /// The delimiter, lossily decoded.
        delim: String,
        /// The job's inputs, lossily decoded and quoted.
        inputs: String,
    },
    /// A `{= … =}` expression could not be evaluated (perl not started, the expression died,
    /// or perl went away); the expression is never inserted as text.
    #[error("{why}")]
    Perl {
        /// What went wrong.
        why: String,
    },
}

/// A parsed command template.
///
/// ```
/// use pardo::command::{Template, JobArgs};
/// let t = Template::parse(&["gzip".into(), "-9".into(), "{}".into()]);
/// let line = t.render(&JobArgs { seq: 1, slot: 1, args: &[b"my file.txt".to_vec()] })?;
/// assert_eq!(line.shell, b"gzip -9 'my file.txt'");
/// // No shell syntax in the template: run directly, the value stays one word.
/// assert_eq!(line.argv.unwrap()[2], "my file.txt");
///
/// // Inside the template's own quotes the value arrives byte for byte, and stays data.
/// let t = Template::parse(&["echo '{}' \"{}\"".into()]);
/// let line = t.render(&JobArgs { seq: 1, slot: 1, args: &[b"$(x)'".to_vec()] })?;
/// assert_eq!(line.shell, br#"echo '$(x)'\''' "\$(x)'""#);
/// # Ok::<(), pardo::command::QuoteError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Template {
    parts: Vec<Part>,
    bodies: Vec<quote::Heredoc>,
    /// The template's text has no shell syntax, so jobs can run without a shell.
    direct: bool,
    /// With no command, each argument is itself shell code (GNU parallel's `parallel ::: 'cmd'`).
    raw: bool,
    /// The `{= … =}` expressions, in the order `Repl::Perl::expr` numbers them.
    exprs: Vec<Vec<u8>>,
    /// The perl evaluating them, once [`Template::start_perl`] started it.
    perl: Option<Arc<Perl>>,
    /// `-X`: the parts cut at every top-level blank, and the ranges of them (shell words)
    /// repeated once per argument. Empty without `-X`.
    context: Option<Context>,
}

/// A template's parts for `-X`: cut into shell words, and the words holding `{}`.
#[derive(Clone, Debug)]
struct Context {
    parts: Vec<Part>,
    words: Vec<std::ops::Range<usize>>,
}

/// What one job inserts into a template.
#[derive(Clone, Copy, Debug)]
pub struct JobArgs<'a> {
    /// The job number (`{#}`), from 1.
    pub seq: u64,
    /// The slot running it (`{%}`), from 1.
    pub slot: u32,
    /// The job's arguments, in order (`{1}`, `{2}`, …).
    pub args: &'a [Vec<u8>],
}

/// A rendered job: its shell form (for the shell's `-c`, `--dry-run` and the joblog) and,
/// when no shell is needed, the argv to run directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine {
    /// The command as shell code, every value quoted for its context.
    pub shell: Vec<u8>,
    /// The words to execute directly, when the command needs no shell.
    pub argv: Option<Vec<OsString>>,
}

const PLAIN: Ctx = Ctx {
    base: Base::Plain,
    backquotes: 0,
};

impl Template {
    /// Parses command words (joined with single spaces, as GNU parallel does). With no
    /// replacement string, `{}` is appended; with no words at all, each argument is the command.
    pub fn parse(words: &[OsString]) -> Template {
        Template::parse_as(words, true, &Syntax::default())
    }

    /// As [`Template::parse`], with replacement strings spelled as `syntax` says (`-I`,
    /// `--header` names, `--plus`, `-q`).
    ///
    /// # Errors
    ///
    /// [`SyntaxError`] when `syntax` itself cannot be used (an empty `-I` string).
    pub fn parse_with(words: &[OsString], syntax: &Syntax) -> Result<Template, SyntaxError> {
        if syntax.replace.as_ref().is_some_and(Vec::is_empty) {
            return Err(SyntaxError::EmptyReplace);
        }
        if syntax.plus {
            for w in words {
                let w = w.as_encoded_bytes();
                for s in ["{##}", "{0#}", "{0%}"] {
                    if w.windows(s.len()).any(|x| x == s.as_bytes()) {
                        return Err(SyntaxError::Unsupported { string: s.into() });
                    }
                }
            }
        }
        Ok(Template::parse_as(words, true, syntax))
    }

    /// As [`Template::parse`] but never appends `{}`: for jobs whose input is their standard
    /// input (`--pipe`), which get no arguments.
    ///
    /// ```
    /// use pardo::command::{JobArgs, Template};
    /// let t = Template::parse_piped(&["wc".into(), "-l".into()]);
    /// let line = t.render(&JobArgs { seq: 1, slot: 1, args: &[] })?;
    /// assert_eq!(line.shell, b"wc -l");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parse_piped(words: &[OsString]) -> Template {
        Template::parse_as(words, false, &Syntax::default())
    }

    fn parse_as(words: &[OsString], append: bool, syntax: &Syntax) -> Template {
        let all = Repl::Arg {
            pos: None,
            form: Form::Whole,
        };
        if words.is_empty() {
            return Template {
                parts: vec![Piece::Repl(all, PLAIN)],
                bodies: Vec::new(),
                direct: false,
                raw: true,
                exprs: Vec::new(),
                perl: None,
                context: None,
            };
        }
        let mut text = Vec::new();
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                text.push(b' ');
            }
            if syntax.quote {
                // -q: the word is literal text; replacement strings inside it still count
                // (the single quotes make each value arrive byte for byte).
                quote_into(w.as_encoded_bytes(), &mut text);
            } else {
                text.extend_from_slice(w.as_encoded_bytes());
            }
        }
        let exprs = RefCell::new(Vec::new());
        let repl = |t: &[u8]| replacement(t, syntax, &exprs);
        let mut lexed = quote::lex(&text, repl);
        if append && !lexed.pieces.iter().any(|p| matches!(p, Piece::Repl(..))) {
            // Appended as GNU parallel does, then read in place like any other: after a
            // comment or inside a here-document it lands there, and is quoted for it.
            text.push(b' ');
            text.extend_from_slice(syntax.replace.as_deref().unwrap_or(b"{}"));
            lexed = quote::lex(&text, repl);
        }
        let Lexed {
            mut pieces,
            bodies,
            uncertain,
            breaks,
        } = lexed;
        if uncertain {
            for p in &mut pieces {
                if let Piece::Repl(_, ctx) = p {
                    ctx.base = Base::Strict;
                }
            }
        }
        let direct = is_direct(&pieces);
        let context = syntax.context.then(|| Context::new(&pieces, &breaks));
        Template {
            parts: pieces,
            bodies,
            direct,
            raw: false,
            exprs: exprs.into_inner(),
            perl: None,
            context,
        }
    }

    /// True when the template holds `{= … =}` expressions, which need
    /// [`Template::start_perl`] before any job renders.
    pub fn uses_perl(&self) -> bool {
        !self.exprs.is_empty()
    }

    /// Starts the one perl process that evaluates this template's `{= … =}` expressions for
    /// every job (and every clone of the template); does nothing without expressions.
    ///
    /// ```
    /// use pardo::command::{JobArgs, Template};
    /// let mut t = Template::parse(&["echo".into(), r"{= s/\.gz$// =}".into()]);
    /// t.start_perl()?;
    /// let line = t.render(&JobArgs { seq: 1, slot: 1, args: &[b"a b.gz".to_vec()] })?;
    /// assert_eq!(line.shell, b"echo 'a b'");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`PerlError`] when perl cannot be run or an expression does not compile.
    pub fn start_perl(&mut self) -> Result<(), PerlError> {
        if self.exprs.is_empty() || self.perl.is_some() {
            return Ok(());
        }
        self.perl = Some(Arc::new(Perl::start(&self.exprs)?));
        Ok(())
    }

    fn perl_value(&self, expr: usize, job: &JobArgs<'_>, v: &[u8]) -> Result<Vec<u8>, QuoteError> {
        let Some(perl) = &self.perl else {
            return Err(QuoteError::Perl {
                why: "the {= … =} expressions need perl, which was not started".into(),
            });
        };
        perl.eval(&Eval {
            expr,
            seq: job.seq,
            slot: job.slot,
            args: job.args,
            value: v,
        })
        .map_err(|e| QuoteError::Perl { why: e.to_string() })
    }

    /// The value replacement string `r` inserts for argument `v`.
    fn value_of(&self, r: Repl, job: &JobArgs<'_>, v: &[u8]) -> Result<Vec<u8>, QuoteError> {
        match r {
            Repl::Arg { form, .. } => Ok(apply(form, v)),
            Repl::Perl { expr, .. } => self.perl_value(expr, job, v),
            Repl::Seq => Ok(job.seq.to_string().into_bytes()),
            Repl::Slot => Ok(job.slot.to_string().into_bytes()),
        }
    }

    /// True when jobs from this template run without a shell.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Renders one job, each value written for the context it sits in (see the module docs).
    ///
    /// # Errors
    ///
    /// [`QuoteError`] when a value cannot be put where the template puts it without the risk of
    /// running as code or ending a here-document early, or holds a NUL byte.
    pub fn render(&self, job: &JobArgs<'_>) -> Result<CommandLine, QuoteError> {
        for v in job.args {
            if v.contains(&0) {
                return Err(QuoteError::Nul { value: lossy(v) });
            }
        }
        if self.raw {
            let mut shell = Vec::new();
            for (i, a) in job.args.iter().enumerate() {
                if i > 0 {
                    shell.push(b' ');
                }
                shell.extend_from_slice(a);
            }
            let argv = if needs_shell_code(&shell) {
                None
            } else {
                Some(split_words(&shell))
            };
            return Ok(CommandLine { shell, argv });
        }
        match &self.context {
            Some(c) if !c.words.is_empty() => self.render_parts(&c.expand(job.args.len()), job),
            _ => self.render_parts(&self.parts, job),
        }
    }

    fn render_parts(&self, parts: &[Part], job: &JobArgs<'_>) -> Result<CommandLine, QuoteError> {
        let mut shell = Vec::new();
        let mut bodies: Vec<Vec<u8>> = vec![Vec::new(); self.bodies.len()];
        let mut words: Vec<Vec<u8>> = Vec::new();
        let mut cur: Option<Vec<u8>> = None;
        let mut out = Rendered {
            shell: &mut shell,
            bodies: &mut bodies,
            cur: &mut cur,
        };
        for part in parts {
            match part {
                Piece::Lit(lit, body) => {
                    out.shell.extend_from_slice(lit);
                    if let Some(b) = body.and_then(|id| out.bodies.get_mut(id)) {
                        b.extend_from_slice(lit);
                    }
                    for &b in lit {
                        if is_blank(b) {
                            words.extend(out.cur.take());
                        } else {
                            out.cur.get_or_insert_with(Vec::new).push(b);
                        }
                    }
                }
                // Digits only: the same text in any context.
                Piece::Repl(Repl::Seq, ctx) => out.value(job.seq.to_string().as_bytes(), ctx)?,
                Piece::Repl(Repl::Slot, ctx) => out.value(job.slot.to_string().as_bytes(), ctx)?,
                Piece::Repl(
                    r @ (Repl::Arg { pos: Some(p), .. } | Repl::Perl { pos: Some(p), .. }),
                    ctx,
                ) => {
                    let v = job.args.get(p - 1).map(Vec::as_slice).unwrap_or(b"");
                    out.value(&self.value_of(*r, job, v)?, ctx)?;
                }
                Piece::Repl(
                    r @ (Repl::Arg { pos: None, .. } | Repl::Perl { pos: None, .. }),
                    ctx,
                ) => {
                    for (i, v) in job.args.iter().enumerate() {
                        if i > 0 {
                            // A raw space means the same in every context: a word break outside
                            // quotes, a space inside them or in a body.
                            out.shell.push(b' ');
                            if let Base::Body { id, .. } = ctx.base {
                                out.bodies[id].push(b' ');
                            }
                            words.extend(out.cur.take());
                        }
                        out.value(&self.value_of(*r, job, v)?, ctx)?;
                    }
                    if job.args.is_empty() {
                        out.value(&self.value_of(*r, job, b"")?, ctx)?;
                    }
                }
            }
        }
        for (doc, body) in self.bodies.iter().zip(&bodies) {
            if quote::early_end(body, doc).is_some() {
                return Err(QuoteError::Heredoc {
                    delim: lossy(&doc.delim),
                    inputs: job
                        .args
                        .iter()
                        .map(|a| format!("{:?}", lossy(a)))
                        .collect::<Vec<_>>()
                        .join(" "),
                });
            }
        }
        words.extend(cur);
        let argv = self
            .direct
            .then(|| words.into_iter().map(OsString::from_vec).collect());
        Ok(CommandLine { shell, argv })
    }
}

impl Context {
    /// Cuts `pieces` at the lexer's top-level `breaks` and finds the words to repeat: those
    /// holding a replacement string for every argument, made only of plain text and values
    /// (a word holding a here-document or a comment is left whole, its `{}` all arguments).
    fn new(pieces: &[Part], breaks: &[(usize, usize)]) -> Context {
        let mut parts = Vec::new();
        let mut blanks = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            let Piece::Lit(lit, body) = p else {
                parts.push(p.clone());
                continue;
            };
            let mut from = 0;
            for &(_, at) in breaks.iter().filter(|(pi, _)| *pi == i) {
                if at > from {
                    parts.push(Piece::Lit(lit[from..at].to_vec(), *body));
                }
                blanks.push(parts.len());
                parts.push(Piece::Lit(lit[at..at + 1].to_vec(), *body));
                from = at + 1;
            }
            if from < lit.len() {
                parts.push(Piece::Lit(lit[from..].to_vec(), *body));
            }
        }
        let mut words = Vec::new();
        let mut start = 0;
        for end in blanks.iter().copied().chain([parts.len()]) {
            let word = &parts[start..end];
            let all = word.iter().any(|p| {
                matches!(
                    p,
                    Piece::Repl(
                        Repl::Arg { pos: None, .. } | Repl::Perl { pos: None, .. },
                        _
                    )
                )
            });
            let plain = word.iter().all(|p| match p {
                Piece::Lit(l, body) => {
                    body.is_none() && !l.contains(&b'\n') && !l.windows(2).any(|w| w == b"<<")
                }
                Piece::Repl(_, ctx) => !matches!(ctx.base, Base::Comment | Base::Body { .. }),
            });
            if all && plain {
                words.push(start..end);
            }
            start = end + 1;
        }
        Context { parts, words }
    }

    /// The parts for a job of `n` arguments: each repeated word once per argument (joined by
    /// spaces), its `{}` standing for that argument alone.
    fn expand(&self, n: usize) -> Vec<Part> {
        let mut out = Vec::with_capacity(self.parts.len() + n);
        let mut i = 0;
        let mut words = self.words.iter().peekable();
        while i < self.parts.len() {
            let Some(w) = words.next_if(|w| w.start == i) else {
                out.push(self.parts[i].clone());
                i += 1;
                continue;
            };
            for k in 0..n.max(1) {
                if k > 0 {
                    out.push(Piece::Lit(b" ".to_vec(), None));
                }
                for p in &self.parts[w.clone()] {
                    out.push(match p {
                        Piece::Repl(Repl::Arg { pos: None, form }, ctx) => Piece::Repl(
                            Repl::Arg {
                                pos: Some(k + 1),
                                form: *form,
                            },
                            ctx.clone(),
                        ),
                        Piece::Repl(Repl::Perl { pos: None, expr }, ctx) => Piece::Repl(
                            Repl::Perl {
                                pos: Some(k + 1),
                                expr: *expr,
                            },
                            ctx.clone(),
                        ),
                        other => other.clone(),
                    });
                }
            }
            i = w.end;
        }
        out
    }
}

/// The job being rendered: its shell code, each here-document body as written, and the
/// current direct-run word.
struct Rendered<'a> {
    shell: &'a mut Vec<u8>,
    bodies: &'a mut [Vec<u8>],
    cur: &'a mut Option<Vec<u8>>,
}

impl Rendered<'_> {
    fn value(&mut self, v: &[u8], ctx: &Ctx) -> Result<(), QuoteError> {
        let at = self.shell.len();
        quote::encode(v, ctx, self.shell).map_err(|r| match r {
            Refusal::Strict => QuoteError::Unsafe { value: lossy(v) },
            Refusal::Comment => QuoteError::Comment { value: lossy(v) },
        })?;
        if let Base::Body { id, .. } = ctx.base {
            self.bodies[id].extend_from_slice(&self.shell[at..]);
        }
        self.cur.get_or_insert_with(Vec::new).extend_from_slice(v);
        Ok(())
    }
}

fn lossy(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

fn split_words(code: &[u8]) -> Vec<OsString> {
    code.split(|&b| is_blank(b))
        .filter(|w| !w.is_empty())
        .map(|w| OsString::from_vec(w.to_vec()))
        .collect()
}

/// The replacement string at the start of `text`, if it is one, and its length.
fn replacement(
    text: &[u8],
    syntax: &Syntax,
    exprs: &RefCell<Vec<Vec<u8>>>,
) -> Option<(Repl, usize)> {
    if let Some(r) = syntax.replace.as_deref().filter(|r| !r.is_empty()) {
        if text.starts_with(r) {
            let all = Repl::Arg {
                pos: None,
                form: Form::Whole,
            };
            return Some((all, r.len()));
        }
    }
    if text.first() != Some(&b'{') {
        return None;
    }
    if let Some(rest) = text.strip_prefix(b"{=") {
        // `{=N expr =}`: perl code up to the first `=}`, N an optional argument position.
        let end = rest.windows(2).position(|w| w == b"=}")?;
        let inner = &rest[..end];
        let digits = inner.iter().take_while(|b| b.is_ascii_digit()).count();
        let pos = match std::str::from_utf8(&inner[..digits]).ok()?.parse::<usize>() {
            Ok(0) => return None,
            Ok(n) => Some(n),
            Err(_) => None,
        };
        let expr = intern(exprs, inner[digits..].trim_ascii_start().to_vec());
        return Some((Repl::Perl { pos, expr }, 2 + end + 2));
    }
    let len = text.iter().position(|&b| b == b'}')?;
    let inner = &text[1..len];
    let r = match inner {
        b"#" => Repl::Seq,
        b"%" => Repl::Slot,
        _ => {
            let named = syntax.names.iter().enumerate().find_map(|(i, name)| {
                let rest = inner.strip_prefix(name.as_slice())?;
                Some((i + 1, form_of(rest, syntax.plus)?))
            });
            if let Some((pos, form)) = named {
                return Some((
                    Repl::Arg {
                        pos: Some(pos),
                        form,
                    },
                    len + 1,
                ));
            }
            let digits = inner.iter().take_while(|b| b.is_ascii_digit()).count();
            let pos = if digits > 0 {
                let n: usize = std::str::from_utf8(&inner[..digits]).ok()?.parse().ok()?;
                if n == 0 {
                    return None;
                }
                Some(n)
            } else {
                None
            };
            let Some(form) = form_of(&inner[digits..], syntax.plus) else {
                let code = syntax.plus.then(|| plus_perl(&inner[digits..])).flatten()?;
                let expr = intern(exprs, code);
                return Some((Repl::Perl { pos, expr }, len + 1));
            };
            if form == Form::Whole && syntax.replace.is_some() {
                // -I renames `{}`, and `{N}` with it (as GNU parallel).
                return None;
            }
            Repl::Arg { pos, form }
        }
    };
    Some((r, len + 1))
}

/// The index of perl expression `code`, added when new.
fn intern(exprs: &RefCell<Vec<Vec<u8>>>, code: Vec<u8>) -> usize {
    let mut exprs = exprs.borrow_mut();
    match exprs.iter().position(|e| *e == code) {
        Some(i) => i,
        None => {
            exprs.push(code);
            exprs.len() - 1
        }
    }
}

/// The `--plus` strings modelled on bash's parameter expansion (`{:-str}`, `{#re}`, `{/re/s}`,
/// `{^str}`, …; `inner` is the text between the braces) as the perl code GNU parallel defines
/// them by, with each captured part set as a perl string first.
fn plus_perl(inner: &[u8]) -> Option<Vec<u8>> {
    let non_empty = |b: &[u8]| (!b.is_empty()).then(|| vec![b.to_vec()]);
    let two = |b: &[u8], first_ok: &dyn Fn(&[u8]) -> bool| {
        let cut = (1..b.len()).find(|&i| b[i] == b'/' && first_ok(&b[..i]))?;
        Some(vec![b[..cut].to_vec(), b[cut + 1..].to_vec()])
    };
    let digits = |b: &[u8]| !b.is_empty() && b.iter().all(u8::is_ascii_digit);
    let (groups, code): (Vec<Vec<u8>>, &str) = if let Some(r) = inner.strip_prefix(b":-") {
        (non_empty(r)?, "$_ ||= $G1;")
    } else if let Some(r) = inner.strip_prefix(b":") {
        match r.iter().position(|&b| b == b':') {
            Some(i) if digits(&r[..i]) && digits(&r[i + 1..]) => (
                vec![r[..i].to_vec(), r[i + 1..].to_vec()],
                "$_ = substr($_,$G1,$G2);",
            ),
            None if digits(r) => (vec![r.to_vec()], "substr($_,0,$G1) = \"\";"),
            _ => return None,
        }
    } else if let Some(r) = inner.strip_prefix(b"##") {
        (non_empty(r)?, "s/^$G1//;")
    } else if let Some(r) = inner.strip_prefix(b"#") {
        (non_empty(r)?, "$ng = pardo_ungreedy($G1); s/^$ng(.*)/$1/;")
    } else if let Some(r) = inner.strip_prefix(b"%%") {
        (non_empty(r)?, "s/$G1$//;")
    } else if let Some(r) = inner.strip_prefix(b"%") {
        (non_empty(r)?, "$ng = pardo_ungreedy($G1); s/(.*)$ng$/$1/;")
    } else if let Some(r) = inner.strip_prefix(b"/#") {
        (two(r, &|_| true)?, "s/^$G1/$G2/g;")
    } else if let Some(r) = inner.strip_prefix(b"/%") {
        (two(r, &|_| true)?, "s/$G1$/$G2/g;")
    } else if let Some(r) = inner.strip_prefix(b"//") {
        (two(r, &|_| true)?, "s/$G1/$G2/g;")
    } else if let Some(r) = inner.strip_prefix(b"/") {
        let plain = |re: &[u8]| !re.iter().any(|b| b"#%/".contains(b));
        (two(r, &plain)?, "s/$G1/$G2/;")
    } else if let Some(r) = inner.strip_prefix(b"^^") {
        (non_empty(r)?, "s/($G1)/uc($1)/eg;")
    } else if let Some(r) = inner.strip_prefix(b"^") {
        (non_empty(r)?, "s/^($G1)/uc($1)/e;")
    } else if let Some(r) = inner.strip_prefix(b",,") {
        (non_empty(r)?, "s/($G1)/lc($1)/eg;")
    } else if let Some(r) = inner.strip_prefix(b",") {
        (non_empty(r)?, "s/^($G1)/lc($1)/e;")
    } else {
        return None;
    };
    let mut out = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        out.extend_from_slice(format!("$G{} = \"", i + 1).as_bytes());
        for &b in g {
            if b"\\\"$@".contains(&b) {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.extend_from_slice(b"\"; ");
    }
    out.extend_from_slice(code.as_bytes());
    Some(out)
}

/// The form a replacement string's suffix names (`.` in `{.}` or `{2.}`).
fn form_of(suffix: &[u8], plus: bool) -> Option<Form> {
    Some(match suffix {
        b"" => Form::Whole,
        b"." => Form::NoExt,
        b"/" => Form::Base,
        b"//" => Form::Dir,
        b"/." => Form::BaseNoExt,
        _ if !plus => return None,
        b".." => Form::NoExts(2),
        b"..." => Form::NoExts(3),
        b"/.." => Form::BaseNoExts(2),
        b"/..." => Form::BaseNoExts(3),
        b"+/" => Form::DirPart,
        b"+." => Form::Ext,
        b"+.." => Form::Exts(2),
        b"+..." => Form::Exts(3),
        _ => return None,
    })
}

/// The form of `v` a replacement string asks for, as GNU parallel computes it.
pub fn apply(form: Form, v: &[u8]) -> Vec<u8> {
    match form {
        Form::Whole => v.to_vec(),
        Form::NoExt => strip_exts(v, 1).to_vec(),
        Form::Base => base(v).to_vec(),
        Form::Dir => dir(v),
        Form::BaseNoExt => strip_exts(base(v), 1).to_vec(),
        Form::NoExts(n) => strip_exts(v, n.into()).to_vec(),
        Form::BaseNoExts(n) => strip_exts(base(v), n.into()).to_vec(),
        Form::DirPart => match v.iter().rposition(|&b| b == b'/') {
            Some(i) => v[..i].to_vec(),
            None => Vec::new(),
        },
        Form::Ext => match v.iter().rposition(|&b| b == b'.') {
            Some(i) => v[i + 1..].to_vec(),
            None => Vec::new(),
        },
        Form::Exts(n) => match ext_start(v, n.into()) {
            Some(i) => v[i + 1..].to_vec(),
            None => Vec::new(),
        },
    }
}

fn base(v: &[u8]) -> &[u8] {
    match v.iter().rposition(|&b| b == b'/') {
        Some(i) => &v[i + 1..],
        None => v,
    }
}

/// Where the last `n` extensions of `v` start (GNU's `(\.[^/.]*){n}$`): the index of their
/// first `.`, or `None` when `v` does not end in `n` of them.
fn ext_start(v: &[u8], n: usize) -> Option<usize> {
    let mut end = v.len();
    for _ in 0..n {
        let dot = v[..end].iter().rposition(|&b| b == b'.' || b == b'/')?;
        if v[dot] != b'.' {
            return None;
        }
        end = dot;
    }
    Some(end)
}

/// `v` without its last `n` extensions, or all of `v` when it does not end in `n` of them.
fn strip_exts(v: &[u8], n: usize) -> &[u8] {
    ext_start(v, n).map_or(v, |i| &v[..i])
}

/// `dirname(3)`: `a` → `.`, `/a` → `/`, `a/b/` → `a`.
fn dir(v: &[u8]) -> Vec<u8> {
    let trimmed = trim_slashes(v);
    if trimmed.is_empty() {
        return if v.is_empty() {
            b".".to_vec()
        } else {
            b"/".to_vec()
        };
    }
    match trimmed.iter().rposition(|&b| b == b'/') {
        None => b".".to_vec(),
        Some(i) => {
            let d = trim_slashes(&trimmed[..i]);
            if d.is_empty() {
                b"/".to_vec()
            } else {
                d.to_vec()
            }
        }
    }
}

fn trim_slashes(v: &[u8]) -> &[u8] {
    let end = v.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    &v[..end]
}

/// The bytes that separate words where `sh` would: space and tab. A newline separates commands
/// and `\r` is an ordinary byte to `sh`, so a template holding either goes to the shell.
fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_safe_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_-+./:,@%^".contains(&b)
}

/// Appends `v` to `out` as one shell word: unchanged when every byte is harmless, otherwise in
/// single quotes with each `'` written as `'\''`. The empty string becomes `''`.
///
/// ```
/// let mut out = Vec::new();
/// pardo::command::quote_into(b"it's $(x)", &mut out);
/// assert_eq!(out, b"'it'\\''s $(x)'");
/// ```
pub fn quote_into(v: &[u8], out: &mut Vec<u8>) {
    if !v.is_empty() && v.iter().all(|&b| is_safe_byte(b)) {
        out.extend_from_slice(v);
        return;
    }
    out.push(b'\'');
    for &b in v {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
}

/// Words that mean something only to a shell: keywords and builtins with no program behind them.
const SHELL_ONLY: &[&[u8]] = &[
    b"!",
    b".",
    b":",
    b"[[",
    b"{",
    b"}",
    b"alias",
    b"bg",
    b"break",
    b"case",
    b"cd",
    b"command",
    b"continue",
    b"declare",
    b"do",
    b"done",
    b"elif",
    b"else",
    b"esac",
    b"eval",
    b"exec",
    b"exit",
    b"export",
    b"fg",
    b"fi",
    b"for",
    b"function",
    b"getopts",
    b"hash",
    b"if",
    b"jobs",
    b"let",
    b"local",
    b"read",
    b"readonly",
    b"return",
    b"select",
    b"set",
    b"shift",
    b"source",
    b"then",
    b"time",
    b"times",
    b"trap",
    b"type",
    b"typeset",
    b"ulimit",
    b"umask",
    b"unalias",
    b"unset",
    b"until",
    b"wait",
    b"while",
];

/// True when `code` must go to a shell: it has a byte with shell meaning, an assignment or
/// keyword as its first word, or no words at all.
pub fn needs_shell_code(code: &[u8]) -> bool {
    let literal_ok = code
        .iter()
        .all(|&b| is_safe_byte(b) || b == b'=' || is_blank(b));
    !literal_ok || first_word_needs_shell(code)
}

fn first_word_needs_shell(code: &[u8]) -> bool {
    match code.split(|&b| is_blank(b)).find(|w| !w.is_empty()) {
        None => true,
        Some(w) => w.contains(&b'=') || SHELL_ONLY.contains(&w),
    }
}

fn is_direct(parts: &[Part]) -> bool {
    // Replacement strings become quoted words, so only the literal text can need a shell; the
    // first word must be literal text (a program name taken from input is shell code).
    let Some(Piece::Lit(first, _)) = parts.first() else {
        return false;
    };
    let mut head = first.clone();
    if let Some(p) = parts.get(1) {
        if !matches!(p, Piece::Lit(..)) && !first.last().is_some_and(|&b| is_blank(b)) {
            return false;
        }
    }
    head.push(b' ');
    parts.iter().all(|p| match p {
        Piece::Lit(l, _) => !needs_shell_literal(l),
        Piece::Repl(_, ctx) => ctx.base == Base::Plain && ctx.backquotes == 0,
    }) && !first_word_needs_shell(&head)
}

fn needs_shell_literal(l: &[u8]) -> bool {
    !l.iter()
        .all(|&b| is_safe_byte(b) || b == b'=' || is_blank(b))
}

/// Text with replacement strings that is not shell code (`--tagstring`): values go in as they
/// are, unquoted.
impl Template {
    /// Parses `text`, cutting out the replacement strings `{}`, `{1}`, `{.}`, `{#}`, … and
    /// leaving everything else as it is. Nothing is appended.
    ///
    /// ```
    /// use pardo::command::{JobArgs, Template};
    /// let t = Template::parse_text(b"{#}:{2}-{1.}");
    /// let text = t.render_text(&JobArgs { seq: 7, slot: 1, args: &[b"a.txt".to_vec(), b"b c".to_vec()] });
    /// assert_eq!(text, b"7:b c-a");
    /// ```
    pub fn parse_text(text: &[u8]) -> Template {
        let mut parts = Vec::new();
        let mut lit = Vec::new();
        let mut i = 0;
        let (syntax, exprs) = (Syntax::default(), RefCell::new(Vec::new()));
        while i < text.len() {
            if text[i] == b'{' {
                // `{= … =}` is not evaluated in such text (no perl runs for it).
                let found = replacement(&text[i..], &syntax, &exprs)
                    .filter(|(r, _)| !matches!(r, Repl::Perl { .. }));
                if let Some((r, n)) = found {
                    if !lit.is_empty() {
                        parts.push(Piece::Lit(std::mem::take(&mut lit), None));
                    }
                    parts.push(Piece::Repl(r, PLAIN));
                    i += n;
                    continue;
                }
            }
            lit.push(text[i]);
            i += 1;
        }
        if !lit.is_empty() {
            parts.push(Piece::Lit(lit, None));
        }
        Template {
            parts,
            bodies: Vec::new(),
            direct: false,
            raw: false,
            exprs: Vec::new(),
            perl: None,
            context: None,
        }
    }

    /// Renders a template from [`Template::parse_text`] for one job: values unquoted, several
    /// arguments of `{}` joined with a space.
    ///
    /// ```
    /// use pardo::command::{JobArgs, Template};
    /// let t = Template::parse_text(b"[{}] {nope}");
    /// let args = [b"$(x)".to_vec(), b"y".to_vec()];
    /// assert_eq!(t.render_text(&JobArgs { seq: 1, slot: 2, args: &args }), b"[$(x) y] {nope}");
    /// ```
    pub fn render_text(&self, job: &JobArgs<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        for part in &self.parts {
            match part {
                Piece::Lit(lit, _) => out.extend_from_slice(lit),
                Piece::Repl(Repl::Seq, _) => out.extend_from_slice(job.seq.to_string().as_bytes()),
                Piece::Repl(Repl::Slot, _) => {
                    out.extend_from_slice(job.slot.to_string().as_bytes())
                }
                Piece::Repl(Repl::Arg { pos: Some(p), form }, _) => {
                    let v = job.args.get(p - 1).map(Vec::as_slice).unwrap_or(b"");
                    out.extend_from_slice(&apply(*form, v));
                }
                Piece::Repl(Repl::Arg { pos: None, form }, _) => {
                    for (i, v) in job.args.iter().enumerate() {
                        if i > 0 {
                            out.push(b' ');
                        }
                        out.extend_from_slice(&apply(*form, v));
                    }
                }
                Piece::Repl(Repl::Perl { .. }, _) => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context_shell(text: &str, args: &[&str]) -> String {
        let syntax = Syntax {
            context: true,
            ..Syntax::default()
        };
        let t = Template::parse_with(&[text.into()], &syntax).unwrap();
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        let line = t
            .render(&JobArgs {
                seq: 1,
                slot: 1,
                args: &args,
            })
            .unwrap();
        String::from_utf8(line.shell).unwrap()
    }

    #[test]
    fn context_repeats_shell_words_and_quotes_each_value_for_its_place() {
        // Quoted blanks and $(…) stay inside the word; each copy keeps its contexts.
        assert_eq!(
            context_shell("echo \"a {}\" '{}x' $(echo {})", &["v w", "it's"]),
            r#"echo "a v w" "a it's" 'v wx' 'it'\''sx' $(echo 'v w') $(echo 'it'\''s')"#
        );
        // {1} stays the first argument; {#} is the job's.
        assert_eq!(
            context_shell("echo {1}:{}:{#}", &["a", "b"]),
            "echo a:a:1 a:b:1"
        );
        // Words end where the shell ends them: a value never lands in command position.
        assert_eq!(
            context_shell("echo $(echo {});echo x{}|cat", &["a", "b"]),
            "echo $(echo a) $(echo b);echo xa xb|cat"
        );
        // A word inside a here-document is not cut: there {} is all the arguments.
        assert_eq!(
            context_shell("cat <<E\n{}\nE", &["a", "b"]),
            "cat <<E\na b\nE"
        );
    }

    #[test]
    fn only_spaces_and_tabs_split_words_without_a_shell() {
        // A newline separates commands and \r is part of a word: both need the shell.
        assert!(render(&["echo a\necho", "{}"], &["b"]).argv.is_none());
        assert!(render(&["echo", "a\r"], &[]).argv.is_none());
        assert!(needs_shell_code(b"echo a\r"));
        assert_eq!(
            render(&["echo\ta", "{}"], &["b"]).argv,
            Some(vec!["echo".into(), "a".into(), "b".into()])
        );
    }

    fn try_render(words: &[&str], args: &[&str]) -> Result<CommandLine, QuoteError> {
        let words: Vec<OsString> = words.iter().map(|w| OsString::from(*w)).collect();
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        Template::parse(&words).render(&JobArgs {
            seq: 7,
            slot: 2,
            args: &args,
        })
    }

    fn render(words: &[&str], args: &[&str]) -> CommandLine {
        match try_render(words, args) {
            Ok(l) => l,
            Err(e) => panic!("{words:?}: {e}"),
        }
    }

    fn shell_of(words: &[&str], args: &[&str]) -> String {
        String::from_utf8_lossy(&render(words, args).shell).into_owned()
    }

    #[test]
    fn each_context_gets_its_own_encoding() {
        let v = "$(x)'\"`\\";
        assert_eq!(
            shell_of(&["echo '{}' {}"], &[v]),
            r#"echo '$(x)'\''"`\' '$(x)'\''"`\'"#
        );
        assert_eq!(shell_of(&["echo \"{}\""], &[v]), r#"echo "\$(x)'\"\`\\""#);
        assert_eq!(
            shell_of(&["echo \"$(echo \"{}\")\""], &["a\"b"]),
            r#"echo "$(echo "a\"b")""#
        );
        assert_eq!(
            shell_of(&["echo \"$(echo {})\""], &["a'b"]),
            r#"echo "$(echo 'a'\''b')""#
        );
        assert_eq!(
            shell_of(&["echo `echo {}`"], &["$a"]),
            r#"echo `echo '\$a'`"#
        );
        assert_eq!(shell_of(&["echo ${x:-{}}"], &["a b"]), "echo ${x:-'a b'}");
        assert_eq!(
            shell_of(&["echo \"${x:-{}}\""], &["}$"]),
            r#"echo "${x:-\}\$}""#
        );
        assert_eq!(
            shell_of(&["cat <<'E'\n{}\nE\n"], &["$(x) \\"]),
            "cat <<'E'\n$(x) \\\nE\n"
        );
        assert_eq!(
            shell_of(&["cat <<E\n{}\nE\necho {}"], &["$x"]),
            "cat <<E\n\\$x\nE\necho '$x'"
        );
    }

    #[test]
    fn refuses_what_it_cannot_keep_inert() {
        let early = try_render(&["cat <<'E'\na{}\nE"], &["\nE\n$(x)"]);
        assert!(
            matches!(early, Err(QuoteError::Heredoc { .. })),
            "{early:?}"
        );
        let split = try_render(&["cat <<E\nE{}\nE"], &["\n$(x)"]);
        assert!(
            matches!(split, Err(QuoteError::Heredoc { .. })),
            "{split:?}"
        );
        assert!(matches!(
            try_render(&["echo $(({}))"], &["a[$(x)]"]),
            Err(QuoteError::Unsafe { .. })
        ));
        assert_eq!(shell_of(&["echo $(({}+1))"], &["41"]), "echo $((41+1))");
        assert!(matches!(
            try_render(&["echo \"`echo {}`\""], &["a b"]),
            Err(QuoteError::Unsafe { .. })
        ));
        assert!(matches!(
            try_render(&["echo a # {}"], &["\nx"]),
            Err(QuoteError::Comment { .. })
        ));
        assert!(matches!(
            try_render(&["echo", "{}"], &["a\0b"]),
            Err(QuoteError::Nul { .. })
        ));
    }

    #[test]
    fn forms_match_gnu_parallel() {
        let cases: &[(Form, &str, &str)] = &[
            (Form::NoExt, "dir.x/a.tar.gz", "dir.x/a.tar"),
            (Form::NoExt, "dir.x/file", "dir.x/file"),
            (Form::Base, "a/b/c.txt", "c.txt"),
            (Form::Dir, "a/b/c.txt", "a/b"),
            (Form::Dir, "c.txt", "."),
            (Form::Dir, "/c.txt", "/"),
            (Form::BaseNoExt, "a/b/c.txt", "c"),
        ];
        for (form, input, want) in cases {
            assert_eq!(
                apply(*form, input.as_bytes()),
                want.as_bytes(),
                "{form:?} {input}"
            );
        }
    }

    #[test]
    fn appends_when_no_placeholder_and_runs_directly() {
        let l = render(&["echo", "x"], &["a b"]);
        assert_eq!(l.shell, b"echo x 'a b'");
        assert_eq!(l.argv.unwrap(), ["echo", "x", "a b"]);
    }

    #[test]
    fn shell_syntax_goes_to_the_shell() {
        let l = render(&["echo {} | tr a b"], &["a"]);
        assert_eq!(l.shell, b"echo a | tr a b");
        assert!(l.argv.is_none());
        assert!(render(&["exit", "{}"], &["3"]).argv.is_none());
        assert!(render(&["X=1", "env"], &["3"]).argv.is_none());
    }

    #[test]
    fn glued_and_positional_values() {
        let l = render(&["cp", "{1}", "out/{2/.}.{#}-{%}"], &["a", "x/y.txt"]);
        assert_eq!(l.shell, b"cp a out/y.7-2");
        assert_eq!(l.argv.unwrap(), ["cp", "a", "out/y.7-2"]);
    }

    #[test]
    fn unknown_braces_stay_literal() {
        let l = render(&["echo", "{x}"], &["a"]);
        assert_eq!(l.shell, b"echo {x} a");
        assert!(l.argv.is_none());
    }
}
