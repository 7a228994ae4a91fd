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
