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

#[test]
fn a_steered_run_starts_its_slots_as_the_count_reaches_them() {
    // Each job counts pardo's threads (the shell's parent is pardo). The first jobs run at
    // the core count, so pardo has a few threads per core, not one per possible slot.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let out = pardo()
        .args([
            "--max-jobs",
            "500",
            "-k",
            "ls /proc/$PPID/task | wc -l; : {}",
            ":::",
            "a",
            "b",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let counts: Vec<usize> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(counts.len(), 2, "{text}");
    assert!(
        counts.iter().all(|&n| n < cores + 20),
        "threads {counts:?} on {cores} cores"
    );
}

#[test]
fn automatic_jobs_grow_past_the_cores_when_every_input_is_queued_at_once() {
    // `::: inputs` queues every job before the first ends; the slots above the starting count
    // must still be there when the controller raises it. Four quick jobs show it that the jobs
    // wait; the others each wait (bounded) until `want` jobs run at once.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let want = 2 * cores + 2;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let script = format!(
        "case {{}} in 1|2|3|4) sleep 0.05 ;; *) touch {d}/in.{{}}; i=0; \
         while :; do set -- {d}/in.*; [ $# -ge {want} ] && break; i=$((i+1)); \
         [ $i -ge 400 ] && {{ touch {d}/gave_up; break; }}; sleep 0.05; done ;; esac"
    );
    let inputs: Vec<String> = (1..=4 + 2 * want).map(|i| i.to_string()).collect();
    let out = pardo()
        .args(["--stats", &script, ":::"])
        .args(&inputs)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !dir.path().join("gave_up").exists(),
        "never {want} jobs at once on {cores} cores: {err}"
    );
    // Started at the cores and went up from there.
    let line = format!("pardo: automatic j: {cores} → ");
    assert!(err.contains(&line), "{err}");
}
