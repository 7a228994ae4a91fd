//! pardo's output against GNU parallel's on the same everyday commands. Skipped when `parallel`
//! is not installed, except under CI (env `CI` set), where a missing `parallel` fails.

mod support;

use std::process::Command;

use support::pardo;

fn gnu_parallel() -> Option<&'static str> {
    let found = Command::new("parallel")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var_os("CI").is_some() {
        panic!("GNU parallel is not installed, and CI requires the comparison (apt-get install -y parallel)");
    }
    found.then_some("parallel")
}

const CASES: &[&[&str]] = &[
    &[
        "-k", "echo", "{}", "{.}", "{/}", "{//}", "{/.}", "{#}", ":::", "a/b.c", "d.e", "f",
    ],
    &["-k", "echo", "{2}", "{1}", ":::", "a", "b", ":::", "1", "2"],
    &["-k", "echo", ":::", "a", "b", ":::+", "1", "2"],
    &["-k", "--tag", "echo", "x", ":::", "a", "b"],
    &["-k", "-n", "2", "echo", ":::", "1", "2", "3", "4", "5"],
    &[
        "-k",
        "printf '%s\\n' {}",
        ":::",
        "it's",
        "$(echo no)",
        "a b",
        "`echo no`",
    ],
    &["-k", "gzip -c {} | wc -c", ":::", "/dev/null"],
    &[
        "-k", "--colsep", ",", "echo", "{2}", "{1}", ":::", "a,b", "c,d",
    ],
    &["-k", ":::", "echo a; echo b", "echo c"],
];

#[test]
fn same_output_as_gnu_parallel() {
    let Some(parallel) = gnu_parallel() else {
        eprintln!("GNU parallel not installed: comparison skipped");
        return;
    };
    for case in CASES {
        let ours = pardo().args(*case).output().unwrap();
        let theirs = Command::new(parallel)
            .arg("--will-cite")
            .args(*case)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&theirs.stdout),
            "stdout differs for {case:?}"
        );
        assert_eq!(
            ours.status.code(),
            theirs.status.code(),
            "exit differs for {case:?}"
        );
        assert_eq!(String::from_utf8_lossy(&ours.stderr), "", "{case:?}");
    }
}

#[test]
fn same_exit_status_as_gnu_parallel() {
    let Some(parallel) = gnu_parallel() else {
        eprintln!("GNU parallel not installed: comparison skipped");
        return;
    };
    for case in [
        &["exit {}", ":::", "0", "1", "2"][..],
        &["true", ":::", "a"][..],
    ] {
        let ours = pardo().args(case).output().unwrap();
        let theirs = Command::new(parallel)
            .arg("--will-cite")
            .args(case)
            .output()
            .unwrap();
        assert_eq!(ours.status.code(), theirs.status.code(), "{case:?}");
        assert_eq!(ours.stdout, theirs.stdout, "{case:?}");
    }
}
