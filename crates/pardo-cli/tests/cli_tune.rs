//! `pardo tune` on real commands: the shape of its table and JSON, and that sleeping jobs are
//! advised more than one at a time. No timing is asserted beyond that inequality.

mod support;

use predicates::prelude::*;
use support::pardo;

fn sleeps(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let f = dir.join("inputs");
    std::fs::write(&f, "0.02\n".repeat(n)).unwrap();
    f
}

#[test]
fn sleeping_jobs_are_best_run_many_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = sleeps(dir.path(), 40);
    let out = pardo()
        .args(["tune", "--max-jobs", "16", "--json", "sleep", "{}", "::::"])
        .arg(&inputs)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let levels = v["levels"].as_array().unwrap();
    let counts: Vec<u64> = levels
        .iter()
        .map(|l| l["jobs_at_once"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [1, 2, 4, 8, 16]);
    for l in levels {
        let n = l["jobs_at_once"].as_u64().unwrap();
        // Whole rounds of the level, at least two.
        assert!(l["jobs"].as_u64().unwrap() >= 2 * n, "{l}");
        assert_eq!(l["jobs"].as_u64().unwrap() % n, 0, "{l}");
        assert_eq!(l["failed"], 0);
        assert!(l["throughput_per_s"].as_f64().unwrap() > 0.0);
    }
    assert!(v["best_jobs"].as_u64().unwrap() > 1, "{v}");
    assert!(v["best_jobs"].as_u64() <= v["peak_jobs"].as_u64(), "{v}");
    assert!(["fit", "measured"].contains(&v["best_from"].as_str().unwrap()));
    // A usable fit comes with parameters; an unusable one says why.
    assert!(v["fit"].is_object() || v["fit_error"].is_string(), "{v}");
}

#[test]
fn the_table_has_a_row_per_level_and_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = sleeps(dir.path(), 8);
    let out = pardo()
        .args(["tune", "--levels", "1,2,4", "sleep", "{}", "::::"])
        .arg(&inputs)
        .assert()
        .success()
        .stderr(predicate::str::contains("4 at once"))
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    for (row, n) in rows.iter().zip(["1", "2", "4"]) {
        assert_eq!(row.split_whitespace().next(), Some(n), "{text}");
        assert!(row.contains('█'), "{text}");
    }
    assert!(
        text.contains("best: -j ") || text.contains("best measured: -j "),
        "{text}"
    );
}

#[test]
fn tune_refuses_what_it_cannot_measure() {
    pardo()
        .args(["tune", "sleep", "{}", ":::"])
        .assert()
        .code(255)
        .stderr(predicate::str::contains("no inputs"));
    pardo()
        .args(["tune", "--levels", "1,0", "true", ":::", "a"])
        .assert()
        .code(255)
        .stderr(predicate::str::contains("--levels value 0"));
    pardo()
        .args(["tune", "--max-jobs", "0", "true", ":::", "a"])
        .assert()
        .code(255)
        .stderr(predicate::str::contains("--max-jobs 0"));
}
