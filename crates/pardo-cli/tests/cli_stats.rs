//! What `--stats` says: findings worded for the command line, numbers by their definitions.

mod support;

use support::pardo;

#[test]
fn stats_findings_speak_in_jobs_not_library_workers() {
    let out = pardo()
        .args(["-j", "4", "--stats", "true", ":::", "only-one"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pardo: - only 1 task(s) for 4 jobs: some had nothing to do"),
        "{err}"
    );
    assert!(!err.contains("workers"), "library wording leaked: {err}");
}

#[test]
fn automatic_jobs_never_exceed_max_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // A job that finds another one running leaves a mark.
    let script = format!(
        "mkdir {d}/running 2>/dev/null || touch {d}/overlap; sleep 0.01; rmdir {d}/running; : {{}}"
    );
    let inputs: Vec<String> = (1..=40).map(|i| i.to_string()).collect();
    let out = pardo()
        .args(["--max-jobs", "1", "--stats", &script, ":::"])
        .args(&inputs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!dir.path().join("overlap").exists(), "two jobs ran at once");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pardo: 40 jobs (40 ok"), "{err}");
}

#[test]
fn auto_is_the_default_and_can_be_named_and_bad_maxima_are_refused() {
    for args in [
        &["-j", "auto", "true", ":::", "a"][..],
        &["true", ":::", "a"],
    ] {
        pardo().args(args).assert().success();
    }
    let out = pardo()
        .args(["--max-jobs", "0", "true", ":::", "a"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid --max-jobs 0"));
}
