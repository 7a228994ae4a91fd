//! The HTML report in a real browser: headless Chromium loads the `--report` of a real run.
//!
//! What is checked, and how:
//! - **the charts are drawn**: `--dump-dom` prints the document as Chromium parsed it; every
//!   chart is an `<svg>` there, with one bar and one point per job, and lines with points;
//! - **no network request**: Chromium's own net log (`--log-net-log`) lists every request the
//!   browser made. The browser makes some for itself even with background networking off
//!   (update and time checks); those have no page behind them (`"initiator": "not an origin"`).
//!   A request made *for the page* carries the page's `file://` network isolation key, and there
//!   must be none. A control page with a remote image proves the check sees such a request.
//!   (The page also forbids any with a `default-src 'none'` Content-Security-Policy.)
//!
//! Chromium must be installed (`.ci/run` installs it); without it the test fails naming it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pardo::monitor::export::REPORT_CHARTS;
use support::pardo;

/// A hang detector, not a timing assertion: reaching it fails the test.
const HANG: Duration = Duration::from_secs(120);

fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!(
        "chromium is not installed (looked for /usr/bin/chromium): the HTML report test needs a \
         real browser; install it with `apt-get install -y chromium` (.ci/run does)"
    );
}

/// Loads `page` in headless Chromium; returns the DOM it dumped and the requests its net log
/// recorded as `(url, network isolation key)`.
fn load(page: &Path, scratch: &Path) -> (String, Vec<(String, String)>) {
    let netlog = scratch.join("netlog.json");
    let profile = scratch.join("profile");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut dom).map(|_| dom)
    });
    let until = Instant::now() + HANG;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("chromium did not finish loading {}", page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "chromium failed: {status}");
    let dom = reader.join().unwrap().expect("chromium's DOM is text");

    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&netlog).expect("chromium wrote its net log"))
            .expect("the net log is JSON");
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_u64()
        .expect("the net log names URL_REQUEST_START_JOB");
    let requests = log["events"]
        .as_array()
        .expect("net log events")
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .filter_map(|e| {
            let p = &e["params"];
            Some((
                p["url"].as_str()?.to_owned(),
                p["network_isolation_key"].as_str().unwrap_or("").to_owned(),
            ))
        })
        .collect();
    (dom, requests)
}

/// Requests made on behalf of a page loaded from a file.
fn page_requests(requests: &[(String, String)]) -> Vec<&str> {
    requests
        .iter()
        .filter(|(_, key)| key.contains("file://"))
        .map(|(url, _)| url.as_str())
        .collect()
}

/// The markup of the `<svg id="id">` element in `dom`.
fn chart<'a>(dom: &'a str, id: &str) -> &'a str {
    let open = format!("<svg id=\"{id}\"");
    let at = dom
        .find(&open)
        .unwrap_or_else(|| panic!("chart {id} missing from the DOM"));
    let len = dom[at..].find("</svg>").expect("the chart closes");
    &dom[at..at + len]
}

#[test]
fn the_report_of_a_real_run_draws_its_charts_in_chromium_and_fetches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    pardo()
        .arg("--report")
        .arg(&html)
        .args([
            "-j",
            "2",
            "if [ {} = 4 ]; then echo 'cannot open {}' >&2; exit 9; fi; echo {}",
            ":::",
            "1",
            "2",
            "3",
            "4",
            "5",
            "6",
        ])
        .assert()
        .code(1);
    let (dom, requests) = load(&html, dir.path());

    for id in REPORT_CHARTS {
        let svg = chart(&dom, id);
        assert!(svg.len() > 200, "chart {id} is empty: {svg}");
    }
    let gantt = chart(&dom, "gantt");
    assert_eq!(
        gantt.matches("<rect class=\"task\"").count(),
        6,
        "a bar per job"
    );
    assert!(!gantt.contains("width=\"0.00\""), "every bar has a width");
    assert_eq!(
        chart(&dom, "scatter")
            .matches("<circle class=\"pt\"")
            .count(),
        6,
        "a point per job"
    );
    assert!(chart(&dom, "histogram").contains("<rect class=\"bar\""));
    for id in ["concurrency", "cpu"] {
        let svg = chart(&dom, id);
        let d = svg
            .split("<path class=\"series\" d=\"")
            .nth(1)
            .unwrap_or_else(|| panic!("no line in {id}"));
        assert!(d.matches(" L").count() > 10, "{id}'s line has points");
    }
    assert!(
        dom.contains("cannot open 4"),
        "the failed job's stderr is on the page"
    );
    assert!(dom.contains("default-src 'none'"));
    assert_eq!(
        page_requests(&requests),
        Vec::<&str>::new(),
        "the page fetched something"
    );
}

#[test]
fn the_network_check_sees_a_page_that_fetches() {
    // The control: the same check on a page that does fetch must find the request, or the
    // check above proves nothing.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("fetches.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><img src=\"http://127.0.0.1:9/canary.png\"></body></html>",
    )
    .unwrap();
    let (_, requests) = load(&page, dir.path());
    assert_eq!(page_requests(&requests), ["http://127.0.0.1:9/canary.png"]);
}
