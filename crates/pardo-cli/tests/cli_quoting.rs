//! Quoting by context: no value ever runs as code, and values in plain and quoted contexts
//! arrive byte for byte, under dash and under bash (`PARALLEL_SHELL`).

mod support;

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use pardo::command::{JobArgs, QuoteError, Template};
use proptest::prelude::*;
use support::pardo;

const SHELLS: [&str; 2] = ["/usr/bin/dash", "/usr/bin/bash"];

/// Both shells must be there: a missing one fails the test, it is never skipped.
fn shells() -> [&'static str; 2] {
    for sh in SHELLS {
        assert!(
            Path::new(sh).exists(),
            "{sh} is missing: install it (apt-get install dash bash) to run the quoting tests"
        );
    }
    SHELLS
}

/// Regression: `echo '{}' {}` with `$(touch X)'` created X: the value inside single quotes was
/// backslash-escaped, which single quotes do not honour.
#[test]
fn a_value_in_single_quotes_then_plain_never_runs() {
    for sh in shells() {
        let dir = tempfile::tempdir().unwrap();
        pardo()
            .current_dir(dir.path())
            .env("PARALLEL_SHELL", sh)
            .args(["echo '{}' {}", ":::", "$(touch X)'"])
            .assert()
            .success()
            .stdout("$(touch X)' $(touch X)'\n");
        assert!(!dir.path().join("X").exists(), "{sh} ran the value");
    }
}

/// Regression: `cat "{}"` read `my\ file`.
#[test]
fn a_value_in_double_quotes_arrives_byte_for_byte() {
    for sh in shells() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("my file"), "content\n").unwrap();
        pardo()
            .current_dir(dir.path())
            .env("PARALLEL_SHELL", sh)
            .args(["cat \"{}\"", ":::", "my file"])
            .assert()
            .success()
            .stdout("content\n");
    }
}

#[test]
fn bash_features_and_exported_functions_work_under_bash() {
    pardo()
        .env("PARALLEL_SHELL", "/usr/bin/bash")
        .args(["-k", "cat <(echo {})", ":::", "a b"])
        .assert()
        .success()
        .stdout("a b\n");
    pardo()
        .env("PARALLEL_SHELL", "/usr/bin/bash")
        .env("BASH_FUNC_myfunc%%", "() {  echo \"f:$1\"\n}")
        .args(["-k", "myfunc", ":::", "a", "b"])
        .assert()
        .success()
        .stdout("f:a\nf:b\n");
}

#[test]
fn an_explicit_unknown_shell_is_a_clear_error_before_any_job() {
    let dir = tempfile::tempdir().unwrap();
    let joblog = dir.path().join("log");
    let out = pardo()
        .env("PARALLEL_SHELL", "/usr/bin/fish")
        .arg("--joblog")
        .arg(&joblog)
        .args(["echo {} | cat", ":::", "a", "b"])
        .assert()
        .code(255)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("does not know how this shell quotes").count(),
        1,
        "said once: {err}"
    );
    assert!(
        !err.contains("job 1"),
        "refused up front, not per job: {err}"
    );
    assert!(!joblog.exists(), "no job ran, so no joblog was started");
}

#[test]
fn an_unknown_shell_does_not_matter_to_commands_run_without_one() {
    pardo()
        .env("PARALLEL_SHELL", "/usr/bin/fish")
        .args(["-k", "echo", ":::", "a", "b"])
        .assert()
        .success()
        .stdout("a\nb\n");
}

/// Without `PARALLEL_SHELL`, jobs run under the nearest shell among pardo's ancestors, as GNU
/// parallel's do: here pardo's parent is `timeout` (no shell), its grandparent dash or bash,
/// and `SHELL` is unset, so only the walk up the ancestors can find the shell.
#[test]
fn jobs_run_under_the_nearest_ancestor_shell() {
    let pardo_bin = env!("CARGO_BIN_EXE_pardo");
    for sh in shells() {
        let out = std::process::Command::new(sh)
            .arg("-c")
            .arg("timeout 60 \"$0\" 'readlink /proc/$$/exe; :' ::: x; echo done")
            .arg(pardo_bin)
            .env_remove("SHELL")
            .env_remove("PARALLEL_SHELL")
            .output()
            .unwrap();
        assert!(out.status.success(), "{sh}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{sh}\ndone\n")
        );
    }
}

#[test]
fn a_value_that_would_end_a_heredoc_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    pardo()
        .current_dir(dir.path())
        .args(["cat <<'E'\n{}\nE", ":::", "x\nE\ntouch X"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("here-document"));
    assert!(!dir.path().join("X").exists());
}

/// Contexts for the property test: a template fragment holding `{}` that, run, appends the
/// value's bytes to the file `out` (`exact`: the bytes must arrive unchanged).
const CONTEXTS: &[(&str, bool)] = &[
    ("printf %s {} >> out", true),
    ("printf %s '{}' >> out", true),
    ("printf %s \"{}\" >> out", true),
    ("printf %s x{}y >> out", false),
    ("printf %s 'a'{}'b' >> out", false),
    ("printf %s \"$(printf %s \"{}\")\" >> out", false),
    ("printf %s $(printf %s {}) >> out", false),
    ("printf %s \"${UNSET_VAR:-{}}\" >> out", false),
    ("printf %s ${UNSET_VAR:-{}} >> out", false),
    ("printf %s `printf %s {}` >> out", false),
    ("cat >> out <<'EOF'\n{}\nEOF", false),
    ("cat >> out <<EOF\n{}\nEOF", false),
    ("cat >> out <<-EOF\n\t{}\nEOF", false),
    ("true # {}", false),
];

/// Pieces of hostile values; each `touch`es the canary if it ever runs.
const HOSTILE: &[&[u8]] = &[
    b"$(touch CANARY)",
    b"`touch CANARY`",
    b"';touch CANARY;'",
    b"\";touch CANARY;\"",
    b"\\",
    b"\\'",
    b"\n",
    b"\nEOF\n",
    b"EOF",
    b"\ntouch CANARY\n",
    b"${IFS}",
    b"*",
    b"?",
    b"[a]",
    b"~",
    b"-n",
    b"--",
    b"}",
    b"{}",
    b"\xff\xfe",
    b" ",
    b"a",
    b"$((1+1))",
    b"<(touch CANARY)",
    b"|touch CANARY",
    b"#",
];

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(HOSTILE), 1..5).prop_map(|v| v.concat())
}

fn template() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..CONTEXTS.len(), 1..4)
}

fn run_in(dir: &Path, sh: &str, code: &[u8]) -> std::process::Output {
    std::process::Command::new(sh)
        .arg("-c")
        .arg(std::ffi::OsStr::from_bytes(code))
        .current_dir(dir)
        .output()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Rendered through the library and run by each real shell: the canary never appears,
    /// and in exact contexts the file holds exactly the value.
    #[test]
    fn no_value_runs_and_quoted_values_arrive_intact(ctxs in template(), v in value()) {
        let text = ctxs
            .iter()
            .map(|&c| CONTEXTS[c].0)
            .collect::<Vec<_>>()
            .join("\n");
        let t = Template::parse(&[OsString::from(text.clone())]);
        let line = match t.render(&JobArgs { seq: 1, slot: 1, args: std::slice::from_ref(&v) }) {
            Ok(line) => line,
            // Refusing is the safe answer; it must be for a reason the value explains.
            Err(QuoteError::Heredoc { .. } | QuoteError::Comment { .. } | QuoteError::Unsafe { .. }) => {
                return Ok(());
            }
            Err(e) => panic!("{text:?} {v:?}: {e}"),
        };
        let exact = ctxs.iter().all(|&c| CONTEXTS[c].1);
        for sh in shells() {
            let dir = tempfile::tempdir().unwrap();
            let out = run_in(dir.path(), sh, &line.shell);
            prop_assert!(
                !dir.path().join("CANARY").exists(),
                "{sh} ran the value: {:?} stderr {:?}",
                String::from_utf8_lossy(&line.shell),
                String::from_utf8_lossy(&out.stderr)
            );
            if exact {
                let got = std::fs::read(dir.path().join("out")).unwrap_or_default();
                prop_assert_eq!(&got, &v.repeat(ctxs.len()), "{} {:?}", sh, String::from_utf8_lossy(&line.shell));
            }
        }
    }
}

/// A few of the same through the real binary, invalid UTF-8 included.
#[test]
fn the_binary_passes_hostile_values_intact() {
    let values: [&[u8]; 3] = [
        b"a'b\"c$(touch CANARY)`touch CANARY`\\",
        b"\xff\n-n *",
        b"${IFS}~",
    ];
    for sh in shells() {
        for v in values {
            let dir = tempfile::tempdir().unwrap();
            pardo()
                .current_dir(dir.path())
                .env("PARALLEL_SHELL", sh)
                .arg("printf %s \"{}\" '{}' {} > out")
                .arg(":::")
                .arg(OsString::from_vec(v.to_vec()))
                .assert()
                .success();
            assert!(!dir.path().join("CANARY").exists(), "{sh} ran {v:?}");
            assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), v.repeat(3));
        }
    }
}
