//! `{= perl =}`: one perl process for the whole run, evaluating each job's expressions.
//!
//! GNU parallel evaluates `{= expr =}` with `$_` set to the argument and keeps what `expr`
//! leaves in `$_`. pardo starts one `perl` when the run starts, sends it the expressions once
//! (it compiles each into a sub, and a syntax error ends the run before any job), then asks it
//! for one value at a time over a pipe. The protocol is lengths and bytes, so values may hold
//! any byte, newlines included:
//!
//! - start: `N\n`, then N times `LEN\n` + the expression's bytes; perl answers `OK\n`, or
//!   `E` + `LEN\n` + the compile error.
//! - each value: `ID SEQ SLOT NARGS\n`, NARGS times `LEN\n` + an argument (perl's `@arg`, from
//!   `$arg[1]`), then `LEN\n` + the value for `$_`; perl answers `LEN\n` + the new `$_`, or
//!   `E` + `LEN\n` + the error the expression died with.
//!
//! Inside an expression `$job->seq()`, `$job->slot()`, `seq()`, `slot()` and `@arg` are there,
//! as in GNU parallel.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use crate::sync::lock;

/// Why the perl that evaluates `{= … =}` could not start or answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PerlError {
    /// No `perl` program could be run.
    #[error(
        "the command uses {{= … =}}, which perl evaluates, and perl cannot be run ({0}); \
         install perl (e.g. apt-get install perl)"
    )]
    Missing(io::Error),
    /// An expression does not compile.
    #[error("perl cannot compile the {{= … =}} expression: {0}")]
    Compile(String),
    /// An expression died on one job's value.
    #[error("the {{= … =}} expression failed: {0}")]
    Died(String),
    /// The pipe to perl broke (perl exited or was killed).
    #[error("lost the perl process evaluating {{= … =}}: {0}")]
    Lost(io::Error),
}

const SCRIPT: &str = r#"
use strict; binmode STDIN; binmode STDOUT; $| = 1;
sub rd { my $n = <STDIN>; defined $n or exit 0; chomp $n; my $b = '';
  while (length($b) < $n) { read(STDIN, $b, $n - length($b), length($b)) or exit 1; } $b }
sub err { my $m = shift; print "E", length($m), "\n", $m; }
# Makes every quantifier of a regexp lazy (`a+` becomes `a+?`), outside classes and escapes.
sub pardo_ungreedy {
  my ($re, $out, $esc, $class, $quant) = (shift, '', 0, 0, 0);
  for my $c (split //, $re) {
    $out .= '?' if $quant && $c ne '?';
    $quant = 0; $out .= $c;
    if ($esc) { $esc = 0 } elsif ($c eq "\\") { $esc = 1 }
    elsif ($class) { $class = 0 if $c eq ']' } elsif ($c eq '[') { $class = 1 }
    elsif ($c =~ /[*+}]/) { $quant = 1 }
  }
  $quant ? "$out?" : $out
}
package Pardo::Job; sub seq { $_[0]{seq} } sub slot { $_[0]{slot} }
package main;
our ($pardo_seq, $pardo_slot, @arg);
sub seq { $pardo_seq } sub slot { $pardo_slot }
my @subs;
my $count = <STDIN>; defined $count or exit 0; chomp $count;
for (1 .. $count) {
  my $e = rd();
  my $s = eval("sub { no strict; no warnings; my \$job = shift; $e\n}");
  if (!$s) { err($@); exit 1; }
  push @subs, $s;
}
print "OK\n";
while (1) {
  my $h = <STDIN>; defined $h or exit 0; chomp $h;
  my ($id, $seq, $slot, $n) = split / /, $h;
  @arg = (undef, map { rd() } 1 .. $n);
  my $v = rd();
  ($pardo_seq, $pardo_slot) = ($seq, $slot);
  my $job = bless { seq => $seq, slot => $slot }, 'Pardo::Job';
  my $ok = eval { local $_ = $v; $subs[$id]->($job); $v = defined $_ ? "$_" : ''; 1 };
  if ($ok) { utf8::encode($v) if utf8::is_utf8($v); print length($v), "\n", $v; }
  else { err($@ || 'died'); }
}
"#;

struct Pipes {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
}

/// A running perl that evaluates a template's `{= … =}` expressions, shared by every job.
pub(crate) struct Perl {
    pipes: Mutex<Pipes>,
}

impl std::fmt::Debug for Perl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Perl")
    }
}

/// One value to evaluate: which expression, on what, for which job.
pub(crate) struct Eval<'a> {
    pub expr: usize,
    pub seq: u64,
    pub slot: u32,
    pub args: &'a [Vec<u8>],
    pub value: &'a [u8],
}

fn put(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    writeln!(out, "{}", bytes.len())?;
    out.write_all(bytes)
}

/// Reads `LEN\n` + bytes, or `E` + `LEN\n` + an error message (returned as `Err(message)`).
fn take(from: &mut impl BufRead) -> io::Result<Result<Vec<u8>, String>> {
    let mut head = String::new();
    if from.read_line(&mut head)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "perl exited"));
    }
    let (failed, len) = match head.trim_end().strip_prefix('E') {
        Some(n) => (true, n),
        None => (false, head.trim_end()),
    };
    let len: usize = len.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("perl answered {head:?}"),
        )
    })?;
    let mut buf = vec![0; len];
    from.read_exact(&mut buf)?;
    Ok(if failed {
        Err(String::from_utf8_lossy(&buf).trim_end().to_string())
    } else {
        Ok(buf)
    })
}

impl Perl {
    /// Starts `perl` and has it compile `exprs`.
    pub(crate) fn start(exprs: &[Vec<u8>]) -> Result<Perl, PerlError> {
        let mut child = Command::new("perl")
            .arg("-e")
            .arg(SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(PerlError::Missing)?;
        let (Some(to), Some(from)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(PerlError::Lost(io::Error::other("no pipes to perl")));
        };
        let mut pipes = Pipes {
            child,
            to,
            from: BufReader::new(from),
        };
        let sent = (|| {
            let mut msg = format!("{}\n", exprs.len()).into_bytes();
            for e in exprs {
                put(&mut msg, e)?;
            }
            pipes.to.write_all(&msg)?;
            pipes.to.flush()
        })();
        let mut line = String::new();
        let answer = sent.and_then(|()| {
            let n = pipes.from.read_line(&mut line)?;
            if n > 0 && line != "OK\n" {
                // An `E` answer: the rest is the error's length and text.
                let mut rest = line.as_bytes()[..].chain(&mut pipes.from);
                return take(&mut rest).map(|r| r.map(|_| ()));
            }
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "perl exited"));
            }
            Ok(Ok(()))
        });
        match answer {
            Ok(Ok(())) => Ok(Perl {
                pipes: Mutex::new(pipes),
            }),
            Ok(Err(msg)) => {
                let _ = pipes.child.wait();
                Err(PerlError::Compile(msg))
            }
            Err(e) => {
                let _ = pipes.child.kill();
                let _ = pipes.child.wait();
                Err(PerlError::Lost(e))
            }
        }
    }

    /// What expression `e.expr` leaves in `$_` when `$_` starts as `e.value`.
    pub(crate) fn eval(&self, e: &Eval<'_>) -> Result<Vec<u8>, PerlError> {
        let mut p = lock(&self.pipes);
        let mut msg = format!("{} {} {} {}\n", e.expr, e.seq, e.slot, e.args.len()).into_bytes();
        for a in e.args {
            let _ = put(&mut msg, a);
        }
        let _ = put(&mut msg, e.value);
        let p = &mut *p;
        p.to.write_all(&msg)
            .and_then(|()| p.to.flush())
            .map_err(PerlError::Lost)?;
        match take(&mut p.from).map_err(PerlError::Lost)? {
            Ok(v) => Ok(v),
            Err(msg) => Err(PerlError::Died(msg)),
        }
    }
}

impl Drop for Perl {
    fn drop(&mut self) {
        let p = self.pipes.get_mut().unwrap_or_else(|e| e.into_inner());
        // Closing its stdin ends perl's loop; it holds nothing worth waiting long for.
        let _ = p.to.flush();
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_perl_evaluates_every_value_and_reports_errors() {
        let exprs = [
            b"s/a/b/g".to_vec(),
            b"$_ = $arg[2] . seq() . $job->slot()".to_vec(),
        ];
        let perl = Perl::start(&exprs).expect("perl is installed (apt-get install perl)");
        let args = [b"x".to_vec(), b"y\nz".to_vec()];
        let e = |expr, value: &'static [u8]| Eval {
            expr,
            seq: 7,
            slot: 3,
            args: &args,
            value,
        };
        assert_eq!(perl.eval(&e(0, b"banana\n")).unwrap(), b"bbnbnb\n");
        assert_eq!(perl.eval(&e(1, b"")).unwrap(), b"y\nz73");
        let bad = Perl::start(&[b"s/(/".to_vec()]);
        assert!(matches!(bad, Err(PerlError::Compile(_))), "{bad:?}");
        let dies = Perl::start(&[b"die 'no'".to_vec()]).unwrap();
        assert!(matches!(dies.eval(&e(0, b"")), Err(PerlError::Died(m)) if m.contains("no")));
    }
}
