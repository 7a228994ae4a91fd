//! The `pardo` binary's GNU parallel syntax: replacement strings, sources, options, exit codes.

mod support;

use predicates::prelude::*;
use support::pardo;

#[test]
fn every_replacement_string() {
    pardo()
        .args([
            "-k", "-j", "1", "echo", "{}", "{.}", "{/}", "{//}", "{/.}", "{#}", "{%}",
        ])
        .args([":::", "d.x/f.tar.gz", "e.txt"])
        .assert()
        .success()
        .stdout("d.x/f.tar.gz d.x/f.tar f.tar.gz d.x f.tar 1 1\ne.txt e e.txt . e 2 1\n")
        .stderr("");
}

#[test]
fn positional_forms_and_cross_product() {
    pardo()
        .args([
            "-k", "echo", "{2}-{1}", "{1.}", "{2/}", ":::", "a.c", "b", ":::", "x/1", "y/2",
        ])
        .assert()
        .success()
        .stdout("x/1-a.c a 1\ny/2-a.c a 2\nx/1-b b 1\ny/2-b b 2\n")
        .stderr("");
}

#[test]
fn linked_sources_pair_up() {
    pardo()
        .args([
            "-k",
            "echo",
            ":::",
            "a",
            "b",
            ":::+",
            "1",
            "2",
            "::::+",
            "/dev/null",
        ])
        .assert()
        .success()
        .stdout("")
        .stderr("");
    pardo()
        .args(["-k", "echo", ":::", "a", "b", ":::+", "1", "2"])
        .assert()
        .success()
        .stdout("a 1\nb 2\n")
        .stderr("");
}

#[test]
fn stdin_lines_max_args_and_colsep() {
    pardo()
        .args(["-k", "-n", "2", "echo"])
        .write_stdin("1\n2\n3\n4\n5\n")
        .assert()
        .success()
        .stdout("1 2\n3 4\n5\n")
        .stderr("");
    pardo()
        .args(["-k", "--colsep", ",+", "echo", "{2}:{1}"])
        .write_stdin("a,b\nc,,d\n")
        .assert()
        .success()
        .stdout("b:a\nd:c\n")
        .stderr("");
}

#[test]
fn arg_files_and_unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("in");
    std::fs::write(&f, "x\ny\n").unwrap();
    pardo()
        .args(["-k", "echo"])
        .arg("::::")
        .arg(&f)
        .assert()
        .success()
        .stdout("x\ny\n")
        .stderr("");
    pardo()
        .args(["echo", "::::", "/nonexistent/in"])
        .assert()
        .code(255)
        .stdout("")
        .stderr(predicate::str::contains(
            "cannot read input file /nonexistent/in",
        ));
}

#[test]
fn tag_prefixes_every_line() {
    pardo()
        .args(["-k", "--tag", "printf '%s\\n%s\\n' {} {}", ":::", "a", "b"])
        .assert()
        .success()
        .stdout("a\ta\na\ta\nb\tb\nb\tb\n")
        .stderr("");
}

#[test]
fn no_command_means_each_argument_is_the_command() {
    pardo()
        .args(["-k", ":::", "echo a; echo b", "echo c"])
        .assert()
        .success()
        .stdout("a\nb\nc\n")
        .stderr("");
}

#[test]
fn dry_run_prints_quoted_commands() {
    pardo()
        .args(["--dry-run", "gzip", "-9", ":::", "a b", "it's"])
        .assert()
        .success()
        .stdout("gzip -9 'a b'\ngzip -9 'it'\\''s'\n")
        .stderr("");
}

#[test]
fn exit_status_counts_failures() {
    pardo()
        .args(["-j", "2", "exit {}", ":::", "0", "1", "2", "0"])
        .assert()
        .code(2)
        .stdout("")
        .stderr("");
    let many: Vec<String> = (0..102).map(|i| i.to_string()).collect();
    pardo()
        .args(["-j", "2", "false", ":::"])
        .args(&many)
        .assert()
        .code(101)
        .stdout("")
        .stderr("");
}

#[test]
fn empty_input_is_success() {
    pardo()
        .arg("echo")
        .write_stdin("")
        .assert()
        .success()
        .stdout("")
        .stderr("");
}

#[test]
fn attached_option_values_parse_as_in_gnu_parallel() {
    // Regression: `-j2` and clustered `-kj2` were taken for the command.
    pardo()
        .args(["-kj2", "echo", "{}", ":::", "a", "b"])
        .assert()
        .success()
        .stdout("a\nb\n")
        .stderr("");
}

#[test]
fn unknown_option_is_255_with_a_message() {
    pardo()
        .args(["--bogus", "echo", ":::", "a"])
        .assert()
        .code(255)
        .stdout("")
        .stderr(predicate::str::contains("unexpected argument '--bogus'"));
    pardo()
        .args(["-j", "lots", "echo", ":::", "a"])
        .assert()
        .code(255)
        .stdout("")
        .stderr(predicate::str::contains("invalid -j"));
}

#[test]
fn missing_command_fails_like_a_shell() {
    pardo()
        .args(["no-such-command-pardo", ":::", "a"])
        .assert()
        .code(1)
        .stdout("")
        .stderr("pardo: no-such-command-pardo: command not found\n");
    // `--` lets a command named like the demo run.
    pardo()
        .args(["--", "demo", ":::", "a"])
        .assert()
        .code(1)
        .stdout("")
        .stderr("pardo: demo: command not found\n");
}

#[test]
fn over_long_argument_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::write(&input, "x".repeat(200_000) + "\n").unwrap();
    pardo()
        .args(["echo", "::::"])
        .arg(&input)
        .assert()
        .code(255)
        .stdout("")
        .stderr(predicate::str::contains("longer than the system allows"));
}

#[test]
fn help_documents_exit_status() {
    pardo()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "101      more than 100 jobs failed",
        ))
        .stderr("");
}

#[test]
fn no_progress_bar_when_stderr_is_not_a_terminal() {
    pardo()
        .args(["--bar", "--eta", "-k", "echo", ":::", "a", "b"])
        .assert()
        .success()
        .stdout("a\nb\n")
        .stderr("");
}

#[test]
fn stats_and_json_report_every_job() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    pardo()
        .args(["--stats", "--json"])
        .arg(&json)
        .args(["-j", "2", "exit {}", ":::", "0", "0", "3"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(
            predicate::str::contains("pardo: 3 jobs (2 ok, 1 not ok)")
                .and(predicate::str::contains("per job")),
        );
    // JSON Lines: a header, a line per job, samples, the summary last.
    let text = std::fs::read_to_string(&json).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "run");
    let records: Vec<_> = lines.iter().filter(|l| l["type"] == "task").collect();
    assert_eq!(records.len(), 3);
    assert!(records.iter().any(|r| r["exit_code"] == 3));
    let last = lines.last().unwrap();
    assert_eq!(
        (&last["type"], &last["tasks"]),
        (&"summary".into(), &3.into())
    );
}

#[test]
fn results_dir_holds_each_jobs_output() {
    let dir = tempfile::tempdir().unwrap();
    // As GNU parallel: the output goes to the files only.
    pardo()
        .arg("--results")
        .arg(dir.path())
        .args(["-k", "echo {}; echo err-{} >&2", ":::", "a", "b"])
        .assert()
        .success()
        .stdout("")
        .stderr("");
    assert_eq!(
        std::fs::read(dir.path().join("1/b/stdout")).unwrap(),
        b"b\n"
    );
    assert_eq!(
        std::fs::read(dir.path().join("1/b/stderr")).unwrap(),
        b"err-b\n"
    );
    assert_eq!(std::fs::read(dir.path().join("1/b/seq")).unwrap(), b"2");
}

/// Regression (security): single quotes around a value are only safe where the template does
/// not quote; `echo "{}"` once ran `$(…)` from the input.
#[test]
fn values_inside_the_templates_own_quotes_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 6] = [
        (r#"echo "{}""#, "$(touch PWNED)"),
        (r#"echo "{}""#, "`touch PWNED`"),
        ("echo '{}'", "a';touch PWNED;'"),
        (r#"echo "$(echo {})""#, "$(touch PWNED)"),
        (r#"echo "$(echo '{}')""#, "x';touch PWNED;'"),
        ("cat <<X\n{}\nX", "$(touch PWNED)"),
    ];
    for (template, value) in cases {
        // The job may fail (a quote in the value can leave the template's quote unbalanced);
        // what must never happen is the value running.
        let _ = pardo()
            .current_dir(dir.path())
            .args([template, ":::", value])
            .output()
            .unwrap();
        assert!(
            !dir.path().join("PWNED").exists(),
            "{template:?} ran {value:?}"
        );
    }
}

#[test]
fn a_value_in_the_templates_double_quotes_stays_one_inert_word() {
    pardo()
        .args(["-k", r#"printf '<%s>\n' "{}""#, ":::", "a b", "$(id)"])
        .assert()
        .success()
        // Byte for byte: only what `"…"` gives meaning to is escaped, and the shell drops it.
        .stdout("<a b>\n<$(id)>\n")
        .stderr("");
    // A backslash makes `{` literal, as in the shell; the value is then appended, quoted.
    pardo()
        .args([r"echo \{}", ":::", "x;y"])
        .assert()
        .success()
        .stdout("{} x;y\n");
}
