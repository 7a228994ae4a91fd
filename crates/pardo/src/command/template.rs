//! Command templates: GNU parallel's replacement strings and safe quoting.
//!
//! A template is the command's words joined with spaces, read as shell code, with replacement
//! strings cut out of it once at parse time. Rendering a job inserts every value as **one
//! quoted shell word**, so a value such as `a; rm -rf ~` or `$(reboot)` is text, never code.
//!
//! Where the template itself quotes a replacement string (`'{}'`, `"{}"`, `"$(cat {})"`, or
//! anywhere in a template with a here-document), single quotes around the value would end the
//! template's quoting instead, so such a value has every byte with shell meaning escaped with a
//! backslash, as GNU parallel does: inert in any quoting context, though inside quotes the
//! backslashes may show. `\{}` is a literal `{}`, as in the shell.
//!
//! When the template's own text has no shell syntax, the job is run directly (argv built
//! word by word, no shell); the result is the same as running the quoted form under `sh -c`,
//! only faster. Values are bytes, so non-UTF-8 file names pass through byte-exact.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

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

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(Vec<u8>),
    /// `pos` is 1-based (`{1}`); `None` means every argument of the job. `quoted`: the
    /// template's own quoting surrounds it (see the module docs).
    Arg {
        pos: Option<usize>,
        form: Form,
        quoted: bool,
    },
    Seq,
    Slot,
}

/// A parsed command template.
///
/// ```
/// use pardo::command::{Template, JobArgs};
/// let t = Template::parse(&["gzip".into(), "-9".into(), "{}".into()]);
/// let line = t.render(&JobArgs { seq: 1, slot: 1, args: &[b"my file.txt".to_vec()] });
/// assert_eq!(line.shell, b"gzip -9 'my file.txt'");
/// // No shell syntax in the template: run directly, the value stays one word.
/// assert_eq!(line.argv.unwrap()[2], "my file.txt");
/// ```
#[derive(Clone, Debug)]
pub struct Template {
    parts: Vec<Part>,
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

/// A rendered job: its shell form (for `sh -c`, `--dry-run` and the joblog) and, when no shell
/// is needed, the argv to run directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine {
    /// The command as shell code, every value quoted.
    pub shell: Vec<u8>,
    /// The words to execute directly, when the command needs no shell.
    pub argv: Option<Vec<OsString>>,
}

impl Template {
    /// Parses command words (joined with single spaces, as GNU parallel does). With no
    /// replacement string, `{}` is appended; with no words at all, each argument is the command.
    pub fn parse(words: &[OsString]) -> Template {
        if words.is_empty() {
            return Template {
                parts: vec![Part::Arg {
                    pos: None,
                    form: Form::Whole,
                    quoted: false,
                }],
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
        let mut parts = split_parts(&text);
        if !parts.iter().any(|p| !matches!(p, Part::Lit(_))) {
            parts.push(Part::Lit(b" ".to_vec()));
            parts.push(Part::Arg {
                pos: None,
                form: Form::Whole,
                quoted: false,
            });
        }
        let direct = is_direct(&parts);
        Template {
            parts,
            direct,
            raw: false,
        }
    }

    /// True when jobs from this template run without a shell.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Renders one job.
    pub fn render(&self, job: &JobArgs<'_>) -> CommandLine {
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
            return CommandLine { shell, argv };
        }
        let mut shell = Vec::new();
        let mut words: Vec<Vec<u8>> = Vec::new();
        let mut cur: Option<Vec<u8>> = None;
        let push_value =
            |v: &[u8], quoted: bool, shell: &mut Vec<u8>, cur: &mut Option<Vec<u8>>| {
                if quoted {
                    escape_into(v, shell);
                } else {
                    quote_into(v, shell);
                }
                cur.get_or_insert_with(Vec::new).extend_from_slice(v);
            };
        for part in &self.parts {
            match part {
                Part::Lit(lit) => {
                    shell.extend_from_slice(lit);
                    for &b in lit {
                        if is_blank(b) {
                            words.extend(cur.take());
                        } else {
                            cur.get_or_insert_with(Vec::new).push(b);
                        }
                    }
                }
                // Digits only: the same text in any quoting context.
                Part::Seq => {
                    push_value(job.seq.to_string().as_bytes(), false, &mut shell, &mut cur)
                }
                Part::Slot => {
                    push_value(job.slot.to_string().as_bytes(), false, &mut shell, &mut cur)
                }
                Part::Arg {
                    pos: Some(p),
                    form,
                    quoted,
                } => {
                    let v = job.args.get(p - 1).map(Vec::as_slice).unwrap_or(b"");
                    push_value(&apply(*form, v), *quoted, &mut shell, &mut cur);
                }
                Part::Arg {
                    pos: None,
                    form,
                    quoted,
                } => {
                    for (i, v) in job.args.iter().enumerate() {
                        if i > 0 {
                            shell.push(b' ');
                            words.extend(cur.take());
                        }
                        push_value(&apply(*form, v), *quoted, &mut shell, &mut cur);
                    }
                    if job.args.is_empty() {
                        push_value(b"", *quoted, &mut shell, &mut cur);
                    }
                }
            }
        }
        words.extend(cur);
        let argv = self
            .direct
            .then(|| words.into_iter().map(OsString::from_vec).collect());
        CommandLine { shell, argv }
    }
}

fn split_words(code: &[u8]) -> Vec<OsString> {
    code.split(|&b| is_blank(b))
        .filter(|w| !w.is_empty())
        .map(|w| OsString::from_vec(w.to_vec()))
        .collect()
}

/// Cuts replacement strings out of the template text, noting for each whether the template's
/// own quoting surrounds it. The quoting is tracked the way `sh` reads it at the top level:
/// `'…'` (no escapes inside), `"…"` (backslash escapes), and a backslash outside quotes. Deeper
/// structure (`$(…)` inside quotes, here-documents) is not parsed; it only ever makes a value
/// count as quoted, which is the safe side.
fn split_parts(text: &[u8]) -> Vec<Part> {
    #[derive(Clone, Copy, PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    // In a here-document body, quotes mean nothing and `$(…)` expands: treat every value as
    // quoted so it is escaped byte by byte.
    let heredoc = text.windows(2).any(|w| w == b"<<");
    let mut parts = Vec::new();
    let mut lit = Vec::new();
    let mut state = Quote::None;
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        match (state, b) {
            (Quote::None | Quote::Double, b'\\') => {
                // The escaped byte is literal; in particular `\{` starts no replacement.
                lit.push(b);
                if let Some(&next) = text.get(i + 1) {
                    lit.push(next);
                }
                i += 2;
                continue;
            }
            (Quote::None, b'\'') => state = Quote::Single,
            (Quote::Single, b'\'') => state = Quote::None,
            (Quote::None, b'"') => state = Quote::Double,
            (Quote::Double, b'"') => state = Quote::None,
            (_, b'{') => {
                if let Some(len) = text[i..].iter().position(|&b| b == b'}') {
                    if let Some(mut p) = replacement(&text[i + 1..i + len]) {
                        if let Part::Arg { quoted, .. } = &mut p {
                            *quoted = heredoc || state != Quote::None;
                        }
                        if !lit.is_empty() {
                            parts.push(Part::Lit(std::mem::take(&mut lit)));
                        }
                        parts.push(p);
                        i += len + 1;
                        continue;
                    }
                }
            }
            _ => {}
        }
        lit.push(b);
        i += 1;
    }
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    parts
}

/// The replacement string inside `{…}`, if `inner` is one.
fn replacement(inner: &[u8]) -> Option<Part> {
    match inner {
        b"#" => return Some(Part::Seq),
        b"%" => return Some(Part::Slot),
        _ => {}
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
    let form = match &inner[digits..] {
        b"" => Form::Whole,
        b"." => Form::NoExt,
        b"/" => Form::Base,
        b"//" => Form::Dir,
        b"/." => Form::BaseNoExt,
        _ => return None,
    };
    Some(Part::Arg {
        pos,
        form,
        quoted: false,
    })
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

/// Appends `v` with a backslash before every byte that is not harmless, for a value the
/// template itself quotes. Whatever the surrounding context — unquoted, `"…"`, `'…'` followed by
/// the rest of the line, `$(…)`, a here-document — no byte of `v` can start an expansion or end a
/// quote and go on as code. Inside quotes the backslashes may show, and an escaped newline is
/// removed by the shell: the price of safety where the template does its own quoting.
///
/// ```
/// let mut out = Vec::new();
/// pardo::command::escape_into(b"$(id) it's", &mut out);
/// assert_eq!(out, b"\\$\\(id\\)\\ it\\'s");
/// ```
pub fn escape_into(v: &[u8], out: &mut Vec<u8>) {
    for &b in v {
        if !is_safe_byte(b) {
            out.push(b'\\');
        }
        out.push(b);
    }
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
    let Some(Part::Lit(first)) = parts.first() else {
        return false;
    };
    let mut head = first.clone();
    if let Some(p) = parts.get(1) {
        if !matches!(p, Part::Lit(_)) && !first.last().is_some_and(|&b| is_blank(b)) {
            return false;
        }
    }
    head.push(b' ');
    parts.iter().all(|p| match p {
        Part::Lit(l) => !needs_shell_literal(l),
        _ => true,
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

    fn render(words: &[&str], args: &[&str]) -> CommandLine {
        let words: Vec<OsString> = words.iter().map(|w| OsString::from(*w)).collect();
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        Template::parse(&words).render(&JobArgs {
            seq: 7,
            slot: 2,
            args: &args,
        })
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
