//! pardo's output against GNU parallel's on the same commands: everyday ones, the output
//! options (`--tag`, `--tagstring`, `-v`, `-u`, `--results`) and the control options
//! (`--halt`, `--timeout`, `--nice`). Needs GNU parallel: fails naming it when it is missing.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use support::{gnu, gnu_parallel, pardo, same_as_gnu};

#[rustfmt::skip]
const CASES: &[&[&str]] = &[
    &["-k", "echo", "{}", "{.}", "{/}", "{//}", "{/.}", "{#}", ":::", "a/b.c", "d.e", "f"],
    &["-k", "echo", "{2}", "{1}", ":::", "a", "b", ":::", "1", "2"],
    &["-k", "echo", ":::", "a", "b", ":::+", "1", "2"],
    &["-k", "--tag", "echo", "x", ":::", "a", "b"],
    &["-k", "-n", "2", "echo", ":::", "1", "2", "3", "4", "5"],
    &["-k", "printf '%s\\n' {}", ":::", "it's", "$(echo no)", "a b", "`echo no`"],
    &["-k", "gzip -c {} | wc -c", ":::", "/dev/null"],
    &["-k", "--colsep", ",", "echo", "{2}", "{1}", ":::", "a,b", "c,d"],
    &["-k", ":::", "echo a; echo b", "echo c"],
    // --tag with several sources: the values joined with a space, then a tab.
    &["-k", "--tag", "echo", ":::", "a", "b", ":::", "1", "2"],
    &["-k", "--tag", "-n", "2", "echo", ":::", "a", "b", "c"],
    &["-k", "--tagstring", "{}-x", "echo", ":::", "a", "b"],
    &["-k", "--tagstring", "{2}:{1}/{#}", "printf 'l1\\nl2\\n'; echo", ":::", "a.txt", "b", ":::", "1"],
    &["-k", "--tagstring", "[{1.}]", "echo", ":::", "x.gz", "y"],
    // -v: each command on stdout before its output.
    &["-k", "-v", "echo", ":::", "a", "b c"],
    &["-k", "-v", "echo {} | tr a b", ":::", "a", "aa"],
    &["-k", "--tag", "-v", "echo", ":::", "a"],
    // -u: unbuffered; one job at a time keeps the order fixed.
    &["-u", "-j", "1", "printf 'x\\ny'; echo {}", ":::", "a", "b"],
    &["--ungroup", "-j", "1", "echo", ":::", "a", "b"],
    // -v with output that is not grouped: the command as the job starts, tagged too.
    &["-u", "-v", "-j", "1", "echo", ":::", "a", "b"],
    &["--line-buffer", "--tag", "-v", "-j", "1", "echo", ":::", "a", "b"],
    &["--line-buffer", "--tagstring", "{%}/{#}", "-j", "1", "echo", ":::", "a", "b"],
    // --timeout in GNU's units.
    &["-k", "--timeout", "1m", "echo", ":::", "a"],
    // --nice: the jobs' niceness goes up by N.
    &["-k", "--nice", "7", "nice; echo {}", ":::", "a"],
    // Accepted, no effect on a local run.
    &["-k", "--env", "HOME", "echo", ":::", "a"],
    &["-k", "--will-cite", "echo", ":::", "a"],
];

#[test]
fn same_output_as_gnu_parallel() {
    for case in CASES {
        let ours = same_as_gnu(case, b"");
        assert_eq!(String::from_utf8_lossy(&ours.stderr), "", "{case:?}");
    }
}

#[test]
fn same_exit_status_as_gnu_parallel() {
    for case in [
        &["exit {}", ":::", "0", "1", "2"][..],
        &["true", ":::", "a"][..],
    ] {
        same_as_gnu(case, b"");
    }
}

/// `--halt`: which jobs run, and the exit status: the job's own for a single failure, the
/// number failed for `fail=N`, the failed percentage of all jobs (rounded up) for `fail=P%`.
#[test]
fn halt_exit_status_is_gnu_parallels() {
    // (options, command, values): run one job at a time so the order is fixed.
    let cases = [
        ("--halt now,fail=1", "exit {}", "0 3 0"),
        ("--halt soon,fail=1", "exit {}", "0 2 3"),
        ("--halt soon,fail=2", "echo {}; exit {}", "0 2 3 4"),
        ("--halt now,success=1", "exit {}", "1 0 3"),
        ("--halt now,success=50%", "echo {}; exit {}", "1 0 0 1"),
        ("--halt soon,success=30%", "echo {}; exit {}", "1 0 0 1 0 0"),
        ("--halt now,fail=50%", "echo {}; exit {}", "0 0 4 5 6 0"),
        (
            "--halt soon,fail=30%",
            "echo {}; exit {}",
            "0 0 0 0 4 5 6 0",
        ),
        ("--halt now,fail=25%", "echo {}; exit {}", "0 7 0 0"),
        ("--halt 2", "echo {}; exit {}", "0 9 0"),
        ("--halt 1", "exit {}", "3"),
        ("--halt -1", "echo {}; exit {}", "1 0 0"),
        ("--halt 20%", "echo {}; exit {}", "1 0 0 1 1"),
        ("--halt now,fail=1", "kill -9 $$", "a"),
        ("--halt now,fail=1 --timeout 0.3", "sleep", "5"),
    ];
    for (options, command, values) in cases {
        let mut args = vec!["-j1"];
        args.extend(options.split(' '));
        args.extend([command, ":::"]);
        args.extend(values.split(' '));
        same_as_gnu(&args, b"");
    }
}

#[test]
fn halt_says_on_stderr_why_it_stopped() {
    let out = pardo()
        .args([
            "-j1",
            "--halt",
            "soon,fail=50%",
            "exit {}",
            ":::",
            "0",
            "5",
            "6",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(50));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "pardo: --halt soon,fail=50% stopped the run: job 3 failed with exit code 6 \
             (exit 6); 2 of 3 finished jobs failed; no new job was started"
        ),
        "{err}"
    );
}

#[test]
fn halt_percent_over_a_stream_says_what_it_counts() {
    let out = pardo()
        .args(["-j1", "--halt", "now,fail=50%", "exit"])
        .write_stdin("0\n3\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the percentage is of the jobs finished so far"),
        "{err}"
    );
}

/// Every file under `dir`, by its path relative to `dir`, with its contents.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, at: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(at).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn results_dir_is_gnu_parallels_tree_and_nothing_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (dir.path().join("ours"), dir.path().join("theirs"));
    let rest = [
        "echo {}; echo err {} >&2",
        ":::",
        "a",
        "x/y",
        "b\\c",
        "",
        "sp ace",
        ":::",
        "1",
        "2",
    ];
    fn with_dir<'a>(d: &'a Path, rest: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--results", d.to_str().unwrap()];
        args.extend(rest);
        args
    }
    let mine = pardo().args(with_dir(&ours, &rest)).output().unwrap();
    let gnus = gnu(&with_dir(&theirs, &rest), b"");
    assert_eq!(mine.status.code(), Some(0));
    assert_eq!(gnus.status.code(), Some(0));
    for (who, out) in [("pardo", &mine), ("GNU parallel", &gnus)] {
        let printed = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert_eq!(printed, "", "{who} printed something under --results");
    }
    let (a, b) = (tree(&ours), tree(&theirs));
    assert_eq!(a.len(), 30, "{:?}", a.keys());
    let differ: Vec<_> = a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |t: &BTreeMap<String, Vec<u8>>| {
                t.get(k).map(|v| String::from_utf8_lossy(v).into_owned())
            };
            format!("{k}: pardo {:?}, GNU {:?}", show(&a), show(&b))
        })
        .collect();
    assert!(
        differ.is_empty(),
        "the trees differ:\n{}",
        differ.join("\n")
    );
    assert_eq!(a["1/x\\_y/2/2/stdout"], b"x/y 2\n");
    assert_eq!(a["1/a/2/1/stderr"], b"err a 1\n");
}

#[test]
fn results_get_the_whole_output_under_ungroup_and_line_buffer() {
    let dir = tempfile::tempdir().unwrap();
    for flag in ["-u", "--line-buffer"] {
        let res = dir.path().join(flag);
        let out = pardo()
            .arg(flag)
            .arg("--results")
            .arg(&res)
            .args(["printf 'x\\ny'; echo {}", ":::", "a"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{flag}");
        assert_eq!(out.stdout, b"", "{flag}: nothing printed");
        assert_eq!(
            std::fs::read(res.join("1/a/stdout")).unwrap(),
            b"x\nya\n",
            "{flag}"
        );
    }
    // GNU parallel too saves the whole output under -u.
    let res = dir.path().join("gnu");
    let out = gnu(
        &[
            "-u",
            "--results",
            res.to_str().unwrap(),
            "printf 'x\\ny'; echo {}",
            ":::",
            "a",
        ],
        b"",
    );
    assert_eq!(out.stdout, b"");
    assert_eq!(std::fs::read(res.join("1/a/stdout")).unwrap(), b"x\nya\n");
}

#[test]
fn results_tree_never_leaves_the_directory() {
    // GNU parallel would write `..`'s files in the directory above; pardo names it `\.\.`.
    let dir = tempfile::tempdir().unwrap();
    let res = dir.path().join("res");
    pardo()
        .arg("--results")
        .arg(&res)
        .args(["echo", ":::", "..", "."])
        .assert()
        .success()
        .stdout("");
    let files = tree(dir.path());
    assert_eq!(
        files.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "res/1/\\./seq",
            "res/1/\\./stderr",
            "res/1/\\./stdout",
            "res/1/\\.\\./seq",
            "res/1/\\.\\./stderr",
            "res/1/\\.\\./stdout",
        ]
    );
    assert_eq!(files["res/1/\\.\\./stdout"], b"..\n");
}

/// A results table with the columns that vary from run to run (start and run time) blanked.
fn masked(table: &[u8], sep: char) -> String {
    let text = String::from_utf8_lossy(table);
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("{ ") {
            // JSON: blank "Starttime": ..., "JobRuntime": ...,
            let start = rest.find("\"Starttime\"").unwrap();
            let end = rest.find("\"Send\"").unwrap();
            out.push_str(&rest[..start]);
            out.push_str(&rest[end..]);
            continue;
        }
        let fields: Vec<&str> = line.splitn(5, sep).collect();
        if fields.len() == 5 && fields[0].parse::<u64>().is_ok() {
            out.push_str(&format!(
                "{}{sep}{}{sep}-{sep}-{sep}{}",
                fields[0], fields[1], fields[4]
            ));
        } else {
            out.push_str(line);
        }
    }
    out
}

#[test]
fn results_csv_tsv_and_json_have_gnu_parallels_rows() {
    let dir = tempfile::tempdir().unwrap();
    for (name, sep) in [("r.csv", ','), ("r.tsv", '\t'), ("r.json", ',')] {
        let file = dir.path().join(name);
        let file = file.to_str().unwrap();
        let args = [
            "-k",
            "--results",
            file,
            "echo {},x; echo \"q\\\"\" >&2; exit {2}",
            ":::",
            "a",
            "b c",
            ":::",
            "0",
            "3",
        ];
        let ours = pardo().args(args).output().unwrap();
        assert_eq!(ours.stdout, b"", "{name}: nothing printed");
        let mine = std::fs::read(file).unwrap();
        let theirs = gnu(&args, b"");
        assert_eq!(ours.status.code(), theirs.status.code(), "{name}");
        let gnus = std::fs::read(file).unwrap();
        assert_eq!(masked(&mine, sep), masked(&gnus, sep), "{name}");
        assert!(String::from_utf8_lossy(&mine).contains("b c 3,x"), "{name}");
    }
    // `-.tsv`: the table on standard output, and nothing else there.
    let out = pardo()
        .args(["-k", "--results", "-.tsv", "echo", ":::", "a"])
        .output()
        .unwrap();
    let gnus = gnu(&["-k", "--results", "-.tsv", "echo", ":::", "a"], b"");
    assert_eq!(masked(&out.stdout, '\t'), masked(&gnus.stdout, '\t'));
    assert!(out.stdout.starts_with(b"Seq\tHost"));
}

fn joblog_exit_and_signal(log: &Path) -> BTreeMap<String, (String, String)> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[8].to_owned(), (f[6].to_owned(), f[7].to_owned()))
        })
        .collect()
}

/// Runs `args` under pardo and under GNU parallel, each with a joblog of its own; checks
/// that both exit with 1 (one job failed) and that the joblogs agree, and returns pardo's.
fn joblogs_agree_with_one_failure(args: &[&str]) -> BTreeMap<String, (String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let mut logs = Vec::new();
    for who in ["pardo", "gnu"] {
        let log = dir.path().join(who);
        let mut all = vec!["--joblog", log.to_str().unwrap()];
        all.extend(args);
        let code = if who == "pardo" {
            pardo().args(&all).output().unwrap().status.code()
        } else {
            gnu(&all, b"").status.code()
        };
        assert_eq!(code, Some(1), "{who}: one job fails");
        logs.push(joblog_exit_and_signal(&log));
    }
    assert_eq!(logs[0], logs[1]);
    logs.swap_remove(0)
}

#[test]
fn a_job_stopped_by_timeout_is_logged_with_exit_value_minus_one() {
    let log = joblogs_agree_with_one_failure(&["--timeout", "0.5", "sleep", ":::", "30", "0"]);
    assert_eq!(log["sleep 30"], ("-1".into(), "15".into()));
    assert_eq!(log["sleep 0"], ("0".into(), "0".into()));
}

/// `--timeout P%`: the limit is P% of the median time of the jobs done so far, and applies
/// to a job already running when the median becomes known (the first job here).
#[test]
fn timeout_percent_follows_the_median_job_time() {
    let log = joblogs_agree_with_one_failure(&[
        "-j",
        "2",
        "--timeout",
        "300%",
        "sleep",
        ":::",
        "60",
        "0.1",
        "0.1",
        "0.1",
        "0.1",
    ]);
    assert_eq!(log["sleep 60"], ("-1".into(), "15".into()));
    assert_eq!(log["sleep 0.1"], ("0".into(), "0".into()));
}

/// `--nice N` sets the jobs' niceness to N, as GNU parallel does, whatever pardo's own.
#[test]
fn nice_sets_the_niceness_rather_than_adding_to_it() {
    let mut outs = Vec::new();
    for program in [env!("CARGO_BIN_EXE_pardo"), gnu_parallel()] {
        let out = std::process::Command::new("nice")
            .args(["-n", "4", program, "--will-cite", "-k", "--nice", "9"])
            .args(["nice; echo {}", ":::", "a"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{program}");
        outs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    assert_eq!(outs[0], "9\na\n");
    assert_eq!(outs[0], outs[1]);
}

#[test]
fn options_for_other_machines_are_refused_pointing_at_cluster() {
    for flag in ["-S", "--sshlogin", "--sshloginfile", "--slf"] {
        let out = pardo()
            .args([flag, "server1", "echo", ":::", "a"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(255), "{flag}");
        assert_eq!(out.stdout, b"", "{flag}: nothing ran");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("-S/--sshlogin server1") && err.contains("--cluster"),
            "{flag}: {err}"
        );
    }
    // `:` is this machine in GNU parallel: the jobs run here, as they would there.
    same_as_gnu(&["-k", "-S", ":", "echo", ":::", "a", "b"], b"");
    let out = pardo()
        .args(["-S", ":", "-S", "server1", "echo", ":::", "a"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
}

#[test]
fn bad_values_of_the_output_and_control_options_exit_255() {
    for args in [
        &["--nice", "x", "echo", ":::", "a"][..],
        &["--timeout", "0%", "echo", ":::", "a"],
        &["--timeout", "x%", "echo", ":::", "a"],
        &["--halt", "3", "echo", ":::", "a"],
        &["--halt", "soon,done=x", "echo", ":::", "a"],
        &["--results", "out_{}", "echo", ":::", "a"],
        &["--tagstring"],
    ] {
        let out = pardo().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(255), "{args:?}");
        assert_eq!(out.stdout, b"", "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: says what was wrong");
    }
    // GNU parallel refuses the same values with 255.
    for args in [
        &["--halt", "3", "echo", ":::", "a"][..],
        &["--timeout", "x%", "echo", ":::", "a"],
    ] {
        assert_eq!(gnu(args, b"").status.code(), Some(255), "{args:?}");
    }
}

#[test]
fn citation_flags_are_accepted_and_ignored() {
    gnu_parallel();
    pardo()
        .args(["--citation", "--will-cite", "-k", "echo", ":::", "a"])
        .assert()
        .success()
        .stdout("a\n")
        .stderr("");
}
