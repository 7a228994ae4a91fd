//! "See the run" from the command line: `--json` JSON Lines as jobs end (and what a killed run
//! leaves), `--trace`, `--report`, `pardo report` and `--metrics-addr`. Waits here are hang
//! detectors: a test that reaches one fails.

mod support;

use std::io::BufReader;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pardo::monitor::export::read_json_lines;
use predicates::prelude::*;
use support::pardo;

const HANG: Duration = Duration::from_secs(60);

fn pardo_cmd() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("pardo"))
}

/// Polls `cond` until it holds; reaching [`HANG`] fails the test.
fn poll_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + HANG;
    while !cond() {
        assert!(Instant::now() < until, "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_log(path: &std::path::Path) -> pardo::monitor::export::RunLog {
    read_json_lines(BufReader::new(std::fs::File::open(path).unwrap())).unwrap()
}

#[test]
fn json_lines_fold_back_into_the_summary_and_keep_failed_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.jsonl");
    pardo()
        .arg("--json")
        .arg(&json)
        .args([
            "-j",
            "2",
            "echo out-{}; echo oops-{} >&2; exit {}",
            ":::",
            "0",
            "4",
            "0",
        ])
        .assert()
        .code(1);
    let log = read_log(&json);
    let run = log.run.as_ref().expect("a header line");
    assert_eq!(run.executor, "command");
    assert_eq!(log.records.len(), 3);
    let summary = log.summary.clone().expect("a summary line");
    assert_eq!(
        log.report(),
        summary,
        "the records give the summary's numbers"
    );
    assert_eq!(log.stderr.len(), 1, "{:?}", log.stderr);
    assert_eq!(log.stderr[0].id, pardo::TaskId(2));
    assert_eq!(log.stderr[0].tail, "oops-4\n");
}

#[test]
fn json_to_stdout_is_refused_because_job_output_goes_there() {
    pardo()
        .args(["--json", "-", "echo", ":::", "a"])
        .assert()
        .code(255)
        .stdout("")
        .stderr(predicates::str::contains("--json -").and(predicates::str::contains("file name")));
}

#[test]
fn a_run_killed_with_sigkill_keeps_the_records_of_the_jobs_that_ended() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.jsonl");
    // Jobs 1-3 end at once; job 4 waits for a file that never comes.
    let never = dir.path().join("never");
    let script = format!(
        "if [ {{}} = 4 ]; then while [ ! -e {} ]; do sleep 0.05; done; fi",
        never.display()
    );
    // The trace's spool takes the same lines: asking for it too must not hold any back.
    let mut child = pardo_cmd()
        .arg("--json")
        .arg(&json)
        .arg("--trace")
        .arg(dir.path().join("t.json"))
        .args(["-j", "4", &script, ":::", "1", "2", "3", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    poll_until("three task lines", || {
        std::fs::read_to_string(&json)
            .map(|t| t.matches("\"type\":\"task\"").count() == 3)
            .unwrap_or(false)
    });
    // SAFETY: sending a signal to a child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    assert_eq!(child.wait().unwrap().code(), None);
    let log = read_log(&json);
    assert_eq!(log.records.len(), 3);
    assert!(log.records.iter().all(|r| r.outcome.is_ok()));
    assert_eq!(log.summary, None, "killed: no summary line");
    assert_eq!(
        log.report().tasks,
        3,
        "a report is still made from what finished"
    );
    let html = dir.path().join("killed.html");
    pardo()
        .arg("report")
        .arg(&json)
        .arg("-o")
        .arg(&html)
        .assert()
        .success()
        .stderr(
            predicates::str::contains("report of 3 jobs written to")
                .and(predicates::str::contains("did not end cleanly")),
        );
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<rect class=\"task\"").count(), 3);
}

#[test]
fn the_trace_is_drawn_from_exactly_the_records_of_the_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.jsonl");
    let trace = dir.path().join("run.trace.json");
    pardo()
        .arg("--json")
        .arg(&json)
        .arg("--trace")
        .arg(&trace)
        .args(["-j", "2", "exit {}", ":::", "0", "1", "0", "2", "0", "0"])
        .assert()
        .code(2);
    let mut log = read_log(&json);
    assert_eq!(log.records.len(), 6);
    // Drawn from the records in task order, whatever order they ended in.
    log.records.sort_by_key(|r| (r.id, r.attempt));
    let mut expected = Vec::new();
    log.write_trace(&mut expected).unwrap();
    assert_eq!(
        std::fs::read_to_string(&trace).unwrap(),
        String::from_utf8(expected).unwrap()
    );
}

/// Starts `pardo --json … <extra>` on jobs 1..=4 at -j 2 where job 1 waits for a file, waits
/// until the run has been sampled at least once, lets job 1 end and returns the exit status.
/// Job 3 fails with a message on stderr.
fn sampled_run(dir: &std::path::Path, extra: &[&std::ffi::OsStr]) -> std::process::ExitStatus {
    let json = dir.join("run.jsonl");
    let go = dir.join("go");
    let script = format!(
        "if [ {{}} = 1 ]; then while [ ! -e {} ]; do sleep 0.01; done; fi; \
         if [ {{}} = 3 ]; then echo 'bad input {{}}' >&2; exit 7; fi; echo {{}}",
        go.display()
    );
    let mut child = pardo_cmd()
        .arg("--json")
        .arg(&json)
        .args(extra)
        .args(["-j", "2", &script, ":::", "1", "2", "3", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    poll_until("a sample line", || {
        std::fs::read_to_string(&json)
            .map(|t| t.contains("\"type\":\"sample\""))
            .unwrap_or(false)
    });
    std::fs::write(&go, "").unwrap();
    child.wait().unwrap()
}

#[test]
fn the_trace_has_a_named_track_per_slot_a_slice_per_job_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("run.trace.json");
    let status = sampled_run(dir.path(), &["--trace".as_ref(), trace.as_os_str()]);
    assert_eq!(status.code(), Some(1), "one job failed");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&trace).unwrap()).expect("the trace is JSON");
    let events = doc["traceEvents"].as_array().expect("traceEvents");
    let slices: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(slices.len(), 4, "one slice per job");
    // Every slice sits on a named track; -j 2 uses slots 1 and 2.
    let mut tids: Vec<u64> = slices.iter().map(|e| e["tid"].as_u64().unwrap()).collect();
    tids.sort_unstable();
    tids.dedup();
    assert_eq!(tids, [1, 2]);
    for tid in &tids {
        let name = events
            .iter()
            .find(|e| e["ph"] == "M" && e["name"] == "thread_name" && e["tid"] == *tid)
            .unwrap_or_else(|| panic!("no thread_name for track {tid}"));
        assert_eq!(name["args"]["name"], format!("slot {tid}"));
    }
    // No two slices on a track overlap (in ns, as written with three decimals of µs).
    let ns = |v: &serde_json::Value| (v.as_f64().unwrap() * 1000.0).round() as u64;
    for tid in &tids {
        let mut spans: Vec<(u64, u64)> = slices
            .iter()
            .filter(|e| e["tid"] == *tid)
            .map(|e| (ns(&e["ts"]), ns(&e["ts"]) + ns(&e["dur"])))
            .collect();
        spans.sort_unstable();
        for w in spans.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "track {tid}: {:?} overlaps {:?}",
                w[0],
                w[1]
            );
        }
    }
    let failed = slices
        .iter()
        .find(|e| e["args"]["input"] == "3")
        .expect("job 3's slice");
    assert_eq!(failed["args"]["outcome"], "failed");
    assert_eq!(failed["args"]["exit_code"], 7);
    assert!(failed["args"]["peak_rss_bytes"].as_u64().unwrap() > 0);
    for counter in ["running", "queued", "concurrency"] {
        assert!(
            events
                .iter()
                .any(|e| e["ph"] == "C" && e["name"] == counter),
            "no {counter} counter"
        );
    }
}

#[test]
fn report_writes_one_page_and_pardo_report_draws_the_same_from_the_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let status = sampled_run(dir.path(), &["--report".as_ref(), html.as_os_str()]);
    assert_eq!(status.code(), Some(1));
    let page = std::fs::read_to_string(&html).unwrap();
    for id in pardo::monitor::export::REPORT_SECTIONS {
        assert!(
            page.contains(&format!("id=\"{id}\"")),
            "no {id} in the page"
        );
    }
    assert_eq!(page.matches("<rect class=\"task\"").count(), 4);
    assert!(
        page.contains("<pre>bad input 3\n</pre>"),
        "job 3's stderr tail"
    );

    let again = dir.path().join("again.html");
    pardo()
        .arg("report")
        .arg(dir.path().join("run.jsonl"))
        .arg("-o")
        .arg(&again)
        .assert()
        .success()
        .stderr(predicates::str::contains("report of 4 jobs written to"));
    let redrawn = std::fs::read_to_string(&again).unwrap();
    assert_eq!(redrawn.matches("<rect class=\"task\"").count(), 4);
    assert!(redrawn.contains("<pre>bad input 3\n</pre>"));
    // The same run, the same cards.
    let cards = |p: &str| {
        let at = p.find("id=\"cards\"").unwrap();
        p[at..at + p[at..].find("</div></div></div>").unwrap()].to_owned()
    };
    assert_eq!(cards(&page), cards(&redrawn));
}

#[test]
fn pardo_report_names_a_file_that_is_not_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("notes.txt");
    std::fs::write(&bad, "hello\n").unwrap();
    pardo()
        .arg("report")
        .arg(&bad)
        .assert()
        .code(255)
        .stderr(predicates::str::contains("notes.txt").and(predicates::str::contains("line 1")));
    pardo()
        .args(["report", "/nonexistent/run.jsonl"])
        .assert()
        .code(255)
        .stderr(predicates::str::contains(
            "cannot read /nonexistent/run.jsonl",
        ));
}

/// `GET /metrics` from `addr`; the body of a 200 answer.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).expect("the metrics endpoint listens");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: pardo\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_owned()
}

/// Parses a scrape with a Prometheus text parser, strictly: every sample line must come back
/// (a histogram's bucket lines as the buckets of one sample).
fn parse_metrics(body: &str) -> prometheus_parse::Scrape {
    let lines: Vec<std::io::Result<String>> = body.lines().map(|l| Ok(l.to_owned())).collect();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).expect("Prometheus text");
    let values = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty());
    let (buckets, others) = values.fold((0, 0), |(b, o), l| {
        if l.contains("_bucket{") {
            (b + 1, o)
        } else {
            (b, o + 1)
        }
    });
    let mut parsed_buckets = 0;
    let mut parsed_others = 0;
    for s in &scrape.samples {
        match &s.value {
            prometheus_parse::Value::Histogram(h) => parsed_buckets += h.len(),
            _ => parsed_others += 1,
        }
    }
    assert_eq!(
        (parsed_buckets, parsed_others),
        (buckets, others),
        "a line the parser did not take:\n{body}"
    );
    scrape
}

fn metric(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    use prometheus_parse::Value;
    let s = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("no {name} {label:?}"));
    match s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{name} is {other:?}"),
    }
}

#[test]
fn live_metrics_are_scraped_during_a_run_and_parse_as_prometheus_text() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    // Job 1 holds slot 1 until the test has scraped; jobs 2-4 run on slot 2, job 3 fails.
    let script = format!(
        "if [ {{}} = 1 ]; then while [ ! -e {} ]; do sleep 0.01; done; fi; \
         if [ {{}} = 3 ]; then exit 5; fi",
        go.display()
    );
    let mut child = pardo_cmd()
        .args(["--metrics-addr", "127.0.0.1:0", "-j", "2", &script])
        .args([":::", "1", "2", "3", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("pardo: metrics at http://")
        .and_then(|s| s.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address on stderr: {first:?}"))
        .to_owned();

    let mut scrape = parse_metrics(&scrape(&addr));
    poll_until("three jobs counted", || {
        scrape = parse_metrics(&self::scrape(&addr));
        metric(&scrape, "pardo_task_duration_seconds_count", None) == 3.0
    });
    assert_eq!(
        metric(&scrape, "pardo_tasks_total", Some(("outcome", "ok"))),
        2.0
    );
    assert_eq!(
        metric(&scrape, "pardo_tasks_total", Some(("outcome", "failed"))),
        1.0
    );
    assert_eq!(
        metric(&scrape, "pardo_tasks_running", None),
        1.0,
        "job 1 holds its slot"
    );
    assert_eq!(metric(&scrape, "pardo_workers_live", None), 2.0);
    assert!(
        metric(
            &scrape,
            "pardo_task_cpu_seconds_total",
            Some(("mode", "user"))
        ) >= 0.0
    );
    let histogram = scrape
        .samples
        .iter()
        .find_map(|s| match &s.value {
            prometheus_parse::Value::Histogram(h) if s.metric == "pardo_task_duration_seconds" => {
                Some(h.clone())
            }
            _ => None,
        })
        .expect("a duration histogram");
    let counts: Vec<f64> = histogram.iter().map(|b| b.count).collect();
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]),
        "cumulative: {counts:?}"
    );
    assert_eq!(
        counts.last(),
        Some(&3.0),
        "+Inf counts every job that ended"
    );

    std::fs::write(&go, "").unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(1));
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "the endpoint closes with the run"
    );
}

#[test]
fn metrics_on_a_public_address_need_metrics_public() {
    pardo()
        .args(["--metrics-addr", "0.0.0.0:0", "echo", ":::", "a"])
        .assert()
        .code(255)
        .stdout("")
        .stderr(
            predicates::str::contains("--metrics-addr 0.0.0.0:0")
                .and(predicates::str::contains("--metrics-public")),
        );
    pardo()
        .args([
            "--metrics-addr",
            "0.0.0.0:0",
            "--metrics-public",
            "echo",
            ":::",
            "a",
        ])
        .assert()
        .success()
        .stdout("a\n")
        .stderr(predicates::str::contains(
            "pardo: metrics at http://0.0.0.0:",
        ));
    pardo()
        .args(["--metrics-addr", "localhost", "echo", ":::", "a"])
        .assert()
        .code(255)
        .stderr(predicates::str::contains("--metrics-addr"));
}

#[test]
fn an_unwritable_report_or_trace_is_refused_before_any_job_runs() {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran-a");
    let job = format!("{}-{{}}", dir.path().join("ran").display());
    for option in ["--report", "--trace"] {
        pardo()
            .args([option, "/nonexistent/dir/out", "touch", &job, ":::", "a"])
            .assert()
            .code(255)
            .stderr(predicates::str::contains(format!(
                "cannot write {option} /nonexistent/dir/out"
            )));
        assert!(!ran.exists(), "{option}: no job ran");
    }
}
