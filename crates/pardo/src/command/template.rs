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

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

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
        Template::parse_as(words, true)
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
        Template::parse_as(words, false)
    }

    fn parse_as(words: &[OsString], append: bool) -> Template {
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
            };
        }
        let mut text = Vec::new();
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                text.push(b' ');
            }
            text.extend_from_slice(w.as_encoded_bytes());
        }
        let mut lexed = quote::lex(&text, replacement);
        if append && !lexed.pieces.iter().any(|p| matches!(p, Piece::Repl(..))) {
            // Appended as GNU parallel does, then read in place like any other: after a
            // comment or inside a here-document it lands there, and is quoted for it.
            text.extend_from_slice(b" {}");
            lexed = quote::lex(&text, replacement);
        }
        let Lexed {
            mut pieces,
            bodies,
            uncertain,
        } = lexed;
        if uncertain {
            for p in &mut pieces {
                if let Piece::Repl(_, ctx) = p {
                    ctx.base = Base::Strict;
                }
            }
        }
        let direct = is_direct(&pieces);
        Template {
            parts: pieces,
            bodies,
            direct,
            raw: false,
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
        let mut shell = Vec::new();
        let mut bodies: Vec<Vec<u8>> = vec![Vec::new(); self.bodies.len()];
        let mut words: Vec<Vec<u8>> = Vec::new();
        let mut cur: Option<Vec<u8>> = None;
        let mut out = Rendered {
            shell: &mut shell,
            bodies: &mut bodies,
            cur: &mut cur,
        };
        for part in &self.parts {
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
                Piece::Repl(Repl::Arg { pos: Some(p), form }, ctx) => {
                    let v = job.args.get(p - 1).map(Vec::as_slice).unwrap_or(b"");
                    out.value(&apply(*form, v), ctx)?;
                }
                Piece::Repl(Repl::Arg { pos: None, form }, ctx) => {
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
                        out.value(&apply(*form, v), ctx)?;
                    }
                    if job.args.is_empty() {
                        out.value(b"", ctx)?;
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

/// The replacement string `{…}` at the start of `text`, if it is one, and its length.
fn replacement(text: &[u8]) -> Option<(Repl, usize)> {
    let len = text.iter().position(|&b| b == b'}')?;
    let inner = &text[1..len];
    let r = match inner {
        b"#" => Repl::Seq,
        b"%" => Repl::Slot,
        _ => {
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
            let form = match &inner[digits..] {
                b"" => Form::Whole,
                b"." => Form::NoExt,
                b"/" => Form::Base,
                b"//" => Form::Dir,
                b"/." => Form::BaseNoExt,
                _ => return None,
            };
            Repl::Arg { pos, form }
        }
    };
    Some((r, len + 1))
}

/// The form of `v` a replacement string asks for, as GNU parallel computes it.
pub fn apply(form: Form, v: &[u8]) -> Vec<u8> {
    match form {
        Form::Whole => v.to_vec(),
        Form::NoExt => strip_ext(v).to_vec(),
        Form::Base => base(v).to_vec(),
        Form::Dir => dir(v),
        Form::BaseNoExt => strip_ext(base(v)).to_vec(),
    }
}

fn base(v: &[u8]) -> &[u8] {
    match v.iter().rposition(|&b| b == b'/') {
        Some(i) => &v[i + 1..],
        None => v,
    }
}

fn strip_ext(v: &[u8]) -> &[u8] {
    match v.iter().rposition(|&b| b == b'.' || b == b'/') {
        Some(i) if v[i] == b'.' => &v[..i],
        _ => v,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
