//! Input options (`-a`, `-0`, `-d`, `-E`, `--header`, `--colsep` with `--trim`, `--shuf`) and
//! replacement options (`-I`, `--plus`, `-q`, `-X`, `-m`, `-s`) against GNU parallel on the same input, and their
//! error paths. Needs GNU parallel: fails naming it when it is missing.

mod support;

use std::path::Path;

use support::{gnu, gnu_parallel, pardo, same_as_gnu};

/// Files the cases read: `{dir}` in a case's arguments is this directory.
fn fixtures(dir: &Path) {
    let files: &[(&str, &[u8])] = &[
        ("ab", b"a\nb\n"),
        ("12", b"1\n2\n"),
        ("nul", b"a\0b c\0\0d"),
        ("semi", b"a,;b,;c,;"),
        ("tabs", b"a\tb\tc"),
        ("stop", b"a\nb\nSTOP\nc\n"),
        ("h.csv", b"n1,n2\n1,2\n3,4\n"),
        ("h.tsv", b"name\tsize\nx.gz\t9\n"),
        ("spaces", b" a , b \n\tc,d\t\n"),
        ("octal", b"aAbAc"),
    ];
    for (name, data) in files {
        std::fs::write(dir.join(name), data).unwrap();
    }
}

fn check(cases: &[&str], stdin: &[u8]) {
    gnu_parallel();
    let dir = tempfile::tempdir().unwrap();
    fixtures(dir.path());
    let d = dir.path().to_str().unwrap();
    for case in cases {
        let case = case.replace("{dir}", d);
        let args: Vec<&str> = case.split('|').collect();
        same_as_gnu(&args, stdin);
    }
}

// Each case is its arguments separated by `|` (so arguments may hold spaces).

#[test]
fn arg_files_are_sources_that_come_first() {
    check(
        &[
            "-k|-a|{dir}/ab|echo",
            "-k|-a|{dir}/ab|-a|{dir}/12|echo",
            "-k|--arg-file|{dir}/ab|echo|:::|x|y",
            "-k|-a|{dir}/ab|echo|{2}-{1}|::::|{dir}/12",
            "-k|-a|-|echo",
        ],
        b"s1\ns2\n",
    );
}

#[test]
fn record_separators_null_and_delimiter() {
    check(
        &[
            "-k|-0|-a|{dir}/nul|echo|<{}>",
            "-k|--null|-a|{dir}/nul|echo|<{}>",
            "-k|-d|,;|-a|{dir}/semi|echo",
            "-k|--delimiter|\\t|-a|{dir}/tabs|echo",
            "-k|-d|\\101|-a|{dir}/octal|echo",
            "-k|-d|\\n|-a|{dir}/ab|echo",
            "-k|-0|echo|<{}>",
            "-k|-d|,|echo|[{}]|:::|x,|,y|a,,b",
            "-k|-d|,|echo|:::|x,y|z|:::|1",
        ],
        b"x\0y z\0",
    );
}

#[test]
fn end_of_file_string_cuts_every_source() {
    check(
        &[
            "-k|-E|STOP|-a|{dir}/stop|echo",
            "-k|-E|b|echo|:::|a|b|c|:::|1|b|2",
            "-k|-E|STOP|echo",
            "-k|-E||echo|:::|a||b",
        ],
        b"1\nSTOP\n2\n",
    );
}

#[test]
fn header_names_the_columns() {
    check(
        &[
            "-k|--header|:|echo|{a}|{b}|:::|a|1|2|:::|b|x|y",
            "-k|--header|:|echo|{a.}-{b/}|:::|a|p.q|:::|b|d/e",
            "-k|--header|:|--colsep|,|echo|{n2}|{n1}|::::|{dir}/h.csv",
            "-k|--header|:|-a|{dir}/h.csv|echo|{1}",
            "-k|--header|:|-a|{dir}/h.tsv|echo|{size}|{name.}",
            "-k|--header|:|echo|{a}-{2}-{b}|:::|a|x\ty|:::|b|1",
        ],
        b"",
    );
}

#[test]
fn colsep_trims_both_ends_unless_trim_says_otherwise() {
    let mut cases = vec!["-k|--colsep|,|-a|{dir}/spaces|echo|x{1}x|x{2}x".to_string()];
    for t in ["n", "l", "r", "lr", "rl"] {
        cases.push(format!(
            "-k|--colsep|,|--trim|{t}|-a|{{dir}}/spaces|echo|x{{1}}x|x{{2}}x"
        ));
        cases.push(format!("-k|--trim|{t}|-a|{{dir}}/spaces|echo|x{{}}x"));
    }
    let cases: Vec<&str> = cases.iter().map(String::as_str).collect();
    check(&cases, b"");
}

#[test]
fn shuf_runs_the_same_jobs_in_some_order() {
    let args = ["--shuf", "echo", ":::", "a", "b", "c", ":::", "1", "2", "3"];
    let ours = pardo().args(args).output().unwrap();
    let theirs = gnu(&args, b"");
    assert!(ours.status.success(), "{ours:?}");
    let sorted = |out: &[u8]| {
        let mut lines: Vec<String> = String::from_utf8_lossy(out)
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&ours.stdout), sorted(&theirs.stdout));
    assert_eq!(sorted(&ours.stdout).len(), 9);
}

#[test]
fn replace_string_plus_forms_and_quote() {
    check(
        &[
            "-k|-I|XX|echo|{}|XX|{.}|:::|a.b",
            "-k|-I|XX|echo|:::|a.b",
            "-k|--replace|XX|echo|{1.}|{2.}|XX|:::|a.b|:::|c.d",
            "-k|-I|%|echo|pre%post|:::|it's",
            "-k|--plus|echo|{+/}|{+.}|{+..}|{+...}|{..}|{...}|{/..}|{/...}|:::|a/b.c.d.e|a.b|b/c|x/y.z/w|a..",
            "-k|--plus|echo|{1+.}|{2..}|{2/...}|:::|a.b|:::|c.d.e",
            "-k|echo|{.}|{/.}|:::|a.|.b|a.b/c|a..",
            "-k|-q|echo|a;b|{}|:::|x y",
            "-k|-q|sh|-c|echo \"$0\"|{}|:::|x y|$(echo no)",
        ],
        b"",
    );
}

#[test]
fn several_arguments_per_line_with_x_and_m() {
    check(
        &[
            // -X repeats the word around {}; -m puts all arguments where {} is.
            "-X|-j1|echo|pre{}post|:::|a|b|c",
            "-m|-j1|echo|pre{}post|:::|a|b|c",
            "-X|-j1|echo|{}|{1}|{#}|x{.}y|:::|a.x|b.y",
            "-X|-j1|-k|echo|x{}|{}y|:::|a b|c'd",
            "-X|-j1|-I|,,|echo|p,,q|:::|1|2",
            "-m|-j1|echo|'{}'|:::|a b|c",
            "-X|-j1|sh|-c|echo \"$@\"|_|f{/}|:::|/a/b|/c/d",
            // -s bounds each line (shorter than N bytes); -n caps the arguments.
            "-X|-j1|-s|20|echo|:::|aaaa|bbbb|cccc|dddd|eeee",
            "-m|-j1|-s|19|echo|:::|1|2|3|4|5|6|7|8|9",
            "-m|-j1|-n|2|echo|:::|a|b|c|d|e",
            "-m|-j1|-n|2|-s|15|echo|:::|1|2|3|4|5|6|7|8|9|10|11|12",
            // A short input is spread evenly over the job slots.
            "-k|-m|-j2|echo|:::|1|2|3|4|5|6|7",
            "-k|-X|-j4|echo|:::|1|2|3|4|5|6|7",
            "-k|-m|-j3|echo|::::|{dir}/ab",
            "-X|-j1|echo|:::",
        ],
        b"",
    );
}

#[test]
fn long_inputs_fill_lines_under_the_limit_and_keep_every_argument() {
    // GNU parallel's default limit depends on the environment's size, so compare the words.
    let input: String = (1..=30000).map(|i| format!("{i}\n")).collect();
    for args in [
        &["-X", "-j1", "echo", "x{}y"][..],
        &["-m", "-j2", "echo"][..],
    ] {
        let ours = pardo()
            .args(args)
            .write_stdin(input.as_bytes())
            .output()
            .unwrap();
        let theirs = gnu(args, input.as_bytes());
        assert_eq!(ours.status.code(), Some(0), "{args:?}");
        assert_eq!(theirs.status.code(), Some(0), "{args:?}");
        let words = |out: &[u8]| {
            let mut w: Vec<String> = String::from_utf8_lossy(out)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            w.sort_unstable();
            w
        };
        let ours_words = words(&ours.stdout);
        assert_eq!(ours_words.len(), 30000, "{args:?}");
        assert_eq!(ours_words, words(&theirs.stdout), "{args:?}");
        let lines = ours
            .stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        assert!(
            lines > 1,
            "{args:?}: 30000 arguments cannot fit on one line"
        );
    }
}

#[test]
fn bad_input_and_replacement_options_are_refused_with_255() {
    for (args, says) in [
        (&["--trim", "x", "echo", ":::", "a"][..], "--trim"),
        (&["-d", "", "echo", ":::", "a"][..], "-d"),
        (&["-d", "\\9", "echo", ":::", "a"][..], "-d"),
        (&["-I", "", "echo", ":::", "a"][..], "-I"),
        (
            &["--tagstring", "{= $_ =}", "echo", ":::", "a"][..],
            "--tagstring",
        ),
        (&["--header", "0", "echo", ":::", "a"][..], "--header"),
        (&["-a", "/nonexistent/x", "echo"][..], "/nonexistent/x"),
        (&["--pipe", "-0", "cat"][..], "-0"),
        (&["--pipe", "--shuf", "cat"][..], "--shuf"),
        (&["-X", "-m", "echo", ":::", "a"][..], "-X"),
        (&["-m", "-s", "0", "echo", ":::", "a"][..], "-s/--max-chars"),
        (
            &["-X", "-s", "lots", "echo", ":::", "a"][..],
            "-s/--max-chars",
        ),
        (
            &["-X", "-s", "5", "echo", ":::", "aaaaaaaa"][..],
            "pardo: command line too long (13 >= 5) at input 0: aaaaaaaa",
        ),
        (&["--plus", "echo", "{##}", ":::", "a"][..], "{##}"),
        (&["--plus", "echo", "{0#}", ":::", "a"][..], "{0#}"),
    ] {
        let out = pardo().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(255), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn perl_expressions_give_what_gnu_parallel_gives() {
    check(
        &[
            "-k|echo|{= s/a/b/g =}|:::|banana|a b|it's",
            "-k|echo|{=2 $_ .= \"x\" =}|{1}|:::|a|b|:::|c|d",
            "-k|echo|{= $_ = $job->seq() . \"-\" . $arg[1] =}|:::|a|b",
            "-k|-n|2|echo|{= $_=uc =}|:::|a|b|c",
            "-k|--dry-run|echo|{= s/a/b/ =}|:::|a",
            "-k|echo {= s/\\.gz$// =} | tr a-z A-Z|:::|x.gz|y",
            "-k|--plus|echo|{:-def}|{:2}|{:1:2}|{#a*b}|{##a*b}|{%c*d}|{%%c*d}|:::|aabbccdd||abcd",
            "-k|--plus|echo|{/b/X}|{//b/X}|{/#a/Y}|{/%d/Z}|{^a}|{^^b}|:::|aabbccdd|abcd",
            "-k|--plus|echo|{,A}|{,,B}|{1:-x}|{2#*.}|{2%.*}|:::|ABAB|:::|a.b.c|",
        ],
        b"",
    );
}

#[test]
fn one_perl_serves_the_whole_run() {
    // Each job prints perl's pid as seen from the expression: one pid for every job.
    let out = pardo()
        .args(["-j", "4", "echo", "{= $_ = $$ =}", ":::"])
        .args((0..40).map(|i| i.to_string()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(pids.len(), 40);
    pids.dedup();
    assert_eq!(pids.len(), 1, "more than one perl: {pids:?}");
}

#[test]
fn perl_mistakes_are_refused_before_any_job_and_never_printed_as_text() {
    let dir = tempfile::tempdir().unwrap();
    // No perl on PATH (the jobs would run echo by its full path).
    let out = pardo()
        .env("PATH", dir.path())
        .args(["/bin/echo", "{= s/a/b/ =}", ":::", "a"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert!(err.contains("perl"), "{err}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let out = pardo()
        .args(["echo", "{= s/(/ =}", ":::", "a"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert!(err.contains("cannot compile"), "{err}");
    assert!(out.stdout.is_empty(), "{out:?}");
}
