//! The HTML report: one self-contained file that shows a run — header, summary cards, verdict
//! and findings, a timeline per slot, concurrency and CPU over time, the distribution of task
//! durations, CPU against wall per task, the slowest tasks and the failed ones with the tail
//! of their stderr.
//!
//! **Why SVG drawn in Rust, and no JavaScript.** The charts are inline SVG strings generated
//! here, and hover details are SVG `<title>` elements, which every browser shows natively.
//! A chart library would have to be vendored (and kept up to date) inside the binary, would run
//! code in the reader's browser, and would need the records embedded as data and drawn on the
//! reader's machine, which for 100,000 tasks is slow to open. SVG drawn here costs nothing to
//! vendor, works with scripts disabled, prints, and lets the report decide the size of what it
//! draws: the timeline is aggregated into cells once tasks outnumber its pixels, and the scatter
//! is thinned, so a report of 100,000 tasks stays well under 5 MB.
//!
//! **Nothing is fetched.** The page carries a `Content-Security-Policy` of `default-src 'none'`
//! (inline styles only), has no script, no link, no image and no font: it opens offline and
//! cannot call home.

use std::fmt::Write as _;
use std::io::Write;

use super::svg::{self, esc, Line};
use super::{ExportError, RunLog};
use crate::monitor::{format_duration, Report, RunRecord, TaskRecord};

/// The `id`s of the page's parts, in page order: the run header, the summary cards, the
/// verdict, the five charts (each an `<svg>`: `gantt` the timeline per slot, `concurrency`,
/// `cpu`, `histogram` of durations, `scatter` of CPU against wall) and the two tables. Part of
/// the format: tests and scripts find the parts by these.
pub const REPORT_SECTIONS: [&str; 10] = [
    "header",
    "cards",
    "verdict",
    "gantt",
    "concurrency",
    "cpu",
    "histogram",
    "scatter",
    "slowest",
    "failed",
];

/// The sections of [`REPORT_SECTIONS`] that are charts (`<svg>` elements).
pub const REPORT_CHARTS: [&str; 5] = ["gantt", "concurrency", "cpu", "histogram", "scatter"];

/// Rows in the slowest-tasks table.
const SLOWEST: usize = 15;
/// Rows in the failed-tasks table; the count above it says how many there were in all.
const FAILED_ROWS: usize = 100;

const STYLE: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:16px 24px;color:#1d2125;background:#fbfbfc}
h1{font-size:22px;margin:8px 0}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e3e5e8;padding-bottom:4px}
.meta{color:#555;font-size:13px}.meta b{color:#1d2125;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{background:#fff;border:1px solid #e3e5e8;border-radius:8px;padding:10px 14px;min-width:120px}
.card .v{font-size:20px;font-weight:600}.card .k{color:#666;font-size:12px}
.verdict{font-size:16px;font-weight:600}.note{color:#8a5a00;background:#fff6e0;border-radius:6px;padding:6px 10px}
ul.findings li{margin:4px 0}
svg.chart{width:100%;height:auto;background:#fff;border:1px solid #e3e5e8;border-radius:6px}
svg .lbl{font:11px system-ui,sans-serif;fill:#555}svg .axis{stroke:#888}svg .tick,svg .grid{stroke:#eee}
svg .series{fill:none;stroke-width:1.6}svg .bar{fill:#4a78c2}svg .diag{stroke:#bbb;stroke-dasharray:4 3}
svg rect.task:hover,svg rect.cell:hover,svg rect.bar:hover,svg circle.pt:hover{stroke:#000;stroke-width:1}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border:1px solid #e3e5e8;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f3f4f6}
td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{margin:0;white-space:pre-wrap;word-break:break-all;max-height:12em;overflow:auto;font-size:12px}
.legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
";

/// Writes `log` as a self-contained HTML report to `out`.
///
/// The numbers are those of `log`'s summary when it has one, else of the report computed from
/// its records. The page draws from the records, so a log without records (a recorder that
/// kept only the summary) gives the header, the cards and the findings with empty charts.
///
/// ```
/// use pardo::monitor::export::{write_html, RunLog};
/// let pool = pardo::ThreadPool::builder().workers(2).build().unwrap();
/// pool.map(0..20u64, |x| x + 1).chunk_size(1).for_each(drop);
/// let mut out = Vec::new();
/// write_html(&RunLog::from_recorder(pool.recorder()), &mut out).unwrap();
/// let page = String::from_utf8(out).unwrap();
/// assert!(page.contains("<svg id=\"gantt\""));
/// assert!(!page.contains("<script"));
/// ```
pub fn write_html(log: &RunLog, out: &mut dyn Write) -> Result<(), ExportError> {
    let report = log.summary_or_report();
    let run = log.run.clone().unwrap_or_else(|| report.run.clone());
    let records = &log.records;
    let span_ns = records
        .iter()
        .map(|r| r.finished_ns)
        .max()
        .unwrap_or(0)
        .max(report.wall_ns)
        .max(1);
    let command_line = run.executor == "command";

    let mut p = String::with_capacity(64 * 1024 + records.len().min(svg::MAX_BARS) * 300);
    let title = setting(&run, "command").unwrap_or(&run.executor);
    let _ = write!(
        p,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>pardo report: {}</title><style>{STYLE}</style></head><body>\n",
        esc(title)
    );
    header(&mut p, &run, &report);
    cards(&mut p, &report);
    verdict(&mut p, &report, command_line);

    let _ = write!(p, "<h2>Timeline per slot</h2>");
    legend(&mut p);
    let timeline = svg::timeline(records, span_ns);
    if let Some(why) = &timeline.aggregated {
        let _ = write!(p, "<p class=\"note\" id=\"aggregated\">{}</p>", esc(why));
    } else {
        p.push_str("<p class=\"meta\">One bar per task attempt; hover for its details.</p>");
    }
    p.push_str(&timeline.svg);

    let (running, cpu) = svg::running_and_cpu(records, span_ns);
    let [queued, target, machine] = svg::from_samples(&log.samples, run.cores);
    let _ = write!(p, "<h2>Concurrency over time</h2>");
    if log.samples.is_empty() {
        p.push_str(
            "<p class=\"meta\">Running is computed from the records; the run was not sampled, \
             so queued and target are not shown.</p>",
        );
    }
    p.push_str(&svg::lines(
        "concurrency",
        "tasks running, queued and the target concurrency over time",
        span_ns,
        &[
            Line {
                name: "running",
                colour: "#3a7bd5",
                points: running,
            },
            Line {
                name: "queued",
                colour: "#e89a2c",
                points: queued,
            },
            Line {
                name: "target",
                colour: "#555555",
                points: target,
            },
        ],
        "tasks",
    ));
    let _ = write!(p, "<h2>CPU use over time</h2>");
    p.push_str(&svg::lines(
        "cpu",
        "CPU use over time in cores",
        span_ns,
        &[
            Line {
                name: "tasks",
                colour: "#3a9d5d",
                points: cpu,
            },
            Line {
                name: "machine",
                colour: "#9aa0a6",
                points: machine,
            },
        ],
        "cores",
    ));
    let _ = write!(
        p,
        "<p class=\"meta\">tasks: the CPU the tasks used, spread over their run time; \
         machine: the whole machine's busy share times its {} cores, where sampled.</p>",
        run.cores
    );

    let _ = write!(p, "<h2>Task durations</h2>");
    p.push_str(&svg::histogram(records));
    let (scatter, stride) = svg::scatter(records);
    let _ = write!(p, "<h2>CPU time against wall time</h2>");
    p.push_str(
        "<p class=\"meta\">On the diagonal a task kept one core busy the whole time it ran \
         (CPU-bound); near the bottom it waited (I/O, sleep, a lock).",
    );
    if stride > 1 {
        let _ = write!(p, " Showing one task in {stride}.");
    }
    p.push_str("</p>");
    p.push_str(&scatter);

    slowest(&mut p, records);
    failed(&mut p, log);
    let _ = writeln!(
        p,
        "<p class=\"meta\">Written by pardo {}. Every figure is computed from the run's \
         records.</p></body></html>",
        esc(&run.pardo_version)
    );
    out.write_all(p.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn setting<'a>(run: &'a RunRecord, key: &str) -> Option<&'a str> {
    run.settings
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn header(p: &mut String, run: &RunRecord, r: &Report) {
    let _ = write!(
        p,
        "<h1>pardo report: {}</h1><p class=\"meta\" id=\"header\">",
        esc(setting(run, "command").unwrap_or(&run.executor))
    );
    let mut items = vec![
        ("executor", run.executor.clone()),
        ("host", run.host.clone()),
        ("cores", run.cores.to_string()),
        ("pardo", run.pardo_version.clone()),
        ("started", utc(run.started_unix_ms)),
        ("wall time", format_duration(r.wall_ns)),
    ];
    items.extend(
        run.settings
            .iter()
            .filter(|(k, _)| k != "command")
            .map(|(k, v)| (k.as_str(), v.clone())),
    );
    for (i, (k, v)) in items.iter().enumerate() {
        let _ = write!(
            p,
            "{}{}: <b>{}</b>",
            if i == 0 { "" } else { " · " },
            esc(k),
            esc(v)
        );
    }
    p.push_str("</p>\n");
}

fn cards(p: &mut String, r: &Report) {
    let pct = |f: f64| format!("{:.0}%", f * 100.0);
    let cpu = format_duration(r.cpu_user_ns + r.cpu_sys_ns);
    let rss = r.max_rss_bytes.map_or_else(
        || "-".to_owned(),
        |b| format!("{:.1} MiB", b as f64 / 1048576.0),
    );
    let cards: [(&str, String); 10] = [
        ("tasks", r.tasks.to_string()),
        ("ok", r.ok.to_string()),
        ("not ok", r.not_ok.to_string()),
        ("wall time", format_duration(r.wall_ns)),
        ("throughput", format!("{:.1}/s", r.throughput_per_s)),
        ("workers (mean)", format!("{:.1}", r.workers)),
        ("utilisation", pct(r.utilisation)),
        ("speedup", format!("{:.2}×", r.speedup)),
        ("CPU time", cpu),
        ("peak RSS", rss),
    ];
    p.push_str("<div class=\"cards\" id=\"cards\">");
    for (k, v) in cards {
        let _ = write!(
            p,
            "<div class=\"card\"><div class=\"v\">{}</div><div class=\"k\">{k}</div></div>",
            esc(&v)
        );
    }
    let _ = writeln!(
        p,
        "<div class=\"card\"><div class=\"v\">{} / {}</div><div class=\"k\">task p50 / p99 \
         (max {})</div></div></div>",
        esc(&format_duration(r.duration.p50_ns)),
        esc(&format_duration(r.duration.p99_ns)),
        esc(&format_duration(r.duration.max_ns))
    );
}

fn verdict(p: &mut String, r: &Report, command_line: bool) {
    let ratio = r
        .cpu_ratio
        .map_or_else(String::new, |c| format!(" (CPU/wall {c:.2})"));
    let _ = write!(
        p,
        "<h2>Verdict</h2><p class=\"verdict\" id=\"verdict\">{}{}</p><ul class=\"findings\">",
        esc(&r.workload.to_string()),
        esc(&ratio)
    );
    for f in &r.findings {
        let text = if command_line {
            f.for_command_line().to_string()
        } else {
            f.to_string()
        };
        let _ = write!(p, "<li>{}</li>", esc(&text));
    }
    if r.findings.is_empty() {
        p.push_str("<li>Nothing stood out.</li>");
    }
    p.push_str("</ul>");
    if let Some(last) = r.concurrency.last() {
        let path: Vec<String> = std::iter::once(r.concurrency[0].from)
            .chain(r.concurrency.iter().map(|c| c.to))
            .map(|n| n.to_string())
            .collect();
        let _ = write!(
            p,
            "<p>Concurrency: {} ({})</p>",
            esc(&path.join(" → ")),
            esc(&last.reason)
        );
    }
    p.push('\n');
}

fn legend(p: &mut String) {
    p.push_str("<p class=\"legend\">");
    for o in svg::OUTCOMES {
        let _ = write!(
            p,
            "<span><i style=\"background:{}\"></i>{}</span>",
            svg::colour(o),
            o.as_str()
        );
    }
    p.push_str("</p>");
}

fn exit_of(r: &TaskRecord) -> String {
    match (r.exit_code, r.signal) {
        (_, Some(s)) => format!("signal {s}"),
        (Some(c), None) => c.to_string(),
        (None, None) => "-".to_owned(),
    }
}

fn slowest(p: &mut String, records: &[TaskRecord]) {
    let mut by_wall: Vec<&TaskRecord> = records.iter().filter(|r| r.ran()).collect();
    // The slowest few without sorting them all.
    let n = SLOWEST.min(by_wall.len());
    if n > 0 && n < by_wall.len() {
        by_wall.select_nth_unstable_by_key(n - 1, |r| std::cmp::Reverse(r.wall_ns()));
    }
    by_wall.truncate(n);
    by_wall.sort_by_key(|r| std::cmp::Reverse(r.wall_ns()));
    let _ = write!(
        p,
        "<h2>Slowest tasks</h2><table id=\"slowest\"><tr><th>task</th><th>input</th>\
         <th>slot</th><th>wall</th><th>CPU</th><th>outcome</th><th>exit</th></tr>"
    );
    for r in by_wall {
        let _ = write!(
            p,
            "<tr><td class=\"n\">{}{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            r.id.0,
            if r.attempt > 1 {
                format!(" (try {})", r.attempt)
            } else {
                String::new()
            },
            esc(&r.input),
            r.worker,
            esc(&format_duration(r.wall_ns())),
            esc(&format_duration(r.cpu_ns())),
            r.outcome.as_str(),
            exit_of(r)
        );
    }
    p.push_str("</table>\n");
}

fn failed(p: &mut String, log: &RunLog) {
    let bad: Vec<&TaskRecord> = log.records.iter().filter(|r| !r.outcome.is_ok()).collect();
    let _ = write!(p, "<h2>Failed tasks</h2>");
    if bad.is_empty() {
        p.push_str("<p id=\"failed\">None: every task succeeded.</p>\n");
        return;
    }
    if bad.len() > FAILED_ROWS {
        let _ = write!(
            p,
            "<p class=\"note\">{} attempts did not succeed; the first {FAILED_ROWS} are listed.</p>",
            bad.len()
        );
    }
    p.push_str(
        "<table id=\"failed\"><tr><th>task</th><th>input</th><th>outcome</th><th>exit</th>\
         <th>wall</th><th>end of stderr</th></tr>",
    );
    for r in bad.iter().take(FAILED_ROWS) {
        let tail = log
            .stderr
            .iter()
            .find(|t| t.id == r.id && t.attempt == r.attempt)
            .map_or("", |t| t.tail.as_str());
        let _ = write!(
            p,
            "<tr><td class=\"n\">{} (try {})</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"n\">{}</td><td><pre>{}</pre></td></tr>",
            r.id.0,
            r.attempt,
            esc(&r.input),
            r.outcome.as_str(),
            exit_of(r),
            esc(&format_duration(r.wall_ns())),
            esc(tail)
        );
    }
    p.push_str("</table>\n");
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (the proleptic Gregorian calendar, in 400-year eras).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl RunLog {
    /// Writes this run as a self-contained HTML report; see [`write_html`].
    ///
    /// ```
    /// use pardo::monitor::export::RunLog;
    /// let mut out = Vec::new();
    /// RunLog::default().write_html(&mut out).unwrap();
    /// assert!(String::from_utf8(out).unwrap().contains("default-src 'none'"));
    /// ```
    pub fn write_html(&self, mut out: impl Write) -> Result<(), ExportError> {
        write_html(self, &mut out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::export::StderrTail;
    use crate::task::{Outcome, TaskId};

    fn run() -> RunRecord {
        RunRecord {
            executor: "command".into(),
            started_unix_ms: 1_764_720_000_000,
            host: "host".into(),
            cores: 2,
            pardo_version: "0.1.0".into(),
            workers: 8,
            settings: vec![
                ("command".into(), "gzip <{}>".into()),
                ("jobs".into(), "8".into()),
            ],
        }
    }

    fn page(log: &RunLog) -> String {
        let mut out = Vec::new();
        log.write_html(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(
            utc(1_764_720_000_000 + 3_723_000),
            "2025-12-03 01:02:03 UTC"
        );
    }

    #[test]
    fn a_small_run_shows_every_part_with_its_failure_and_stderr() {
        let mut records: Vec<TaskRecord> = (0..10u64)
            .map(|i| {
                let mut r = TaskRecord::new(
                    TaskId(i + 1),
                    (i % 2) as u32 + 1,
                    0,
                    i * 1_000_000,
                    (i + 1) * 1_000_000,
                );
                r.input = format!("file{i}.txt");
                r.exit_code = Some(0);
                r
            })
            .collect();
        records[3].outcome = Outcome::Failed;
        records[3].exit_code = Some(2);
        let log = RunLog {
            run: Some(run()),
            stderr: vec![StderrTail::of(TaskId(4), 1, b"gzip: <no such file>\n")],
            records,
            ..RunLog::default()
        };
        let html = page(&log);
        assert!(
            html.contains("<h1>pardo report: gzip &lt;{}&gt;</h1>"),
            "escaped title"
        );
        assert!(html.contains("started: <b>2025-12-03 00:00:00 UTC</b>"));
        assert!(html.contains("jobs: <b>8</b>"));
        for id in REPORT_SECTIONS {
            assert!(html.contains(&format!("id=\"{id}\"")), "no {id}");
        }
        assert_eq!(html.matches("<rect class=\"task\"").count(), 10);
        assert_eq!(html.matches("<circle class=\"pt\"").count(), 10);
        assert!(html.contains("<pre>gzip: &lt;no such file&gt;\n</pre>"));
        assert!(html.contains("<td>failed</td><td>2</td>"));
        assert!(!html.contains("id=\"aggregated\""));
        assert!(
            !html.contains("<script") && !html.contains("http://") && !html.contains("https://")
        );
    }

    #[test]
    fn a_hundred_thousand_tasks_are_aggregated_and_stay_under_five_megabytes() {
        let records: Vec<TaskRecord> = (0..100_000u64)
            .map(|i| {
                let at = i / 8 * 1_000_000;
                let mut r = TaskRecord::new(
                    TaskId(i + 1),
                    (i % 8) as u32 + 1,
                    0,
                    at,
                    at + 900_000 + i % 7 * 10_000,
                );
                r.input = format!("/data/shard-{i:06}.csv");
                r.cpu_user_ns = 400_000 + i % 13 * 20_000;
                if i % 1000 == 0 {
                    r.outcome = Outcome::Failed;
                    r.exit_code = Some(1);
                }
                r
            })
            .collect();
        let log = RunLog {
            run: Some(run()),
            records,
            ..RunLog::default()
        };
        let html = page(&log);
        assert!(html.len() < 5_000_000, "{} bytes", html.len());
        assert!(html.contains("id=\"aggregated\""));
        assert!(html.contains("100000 tasks outnumber the timeline"));
        assert!(html.contains("Showing one task in 50."));
        assert_eq!(
            html.matches(" (try 1)</td>").count(),
            100,
            "every failure listed"
        );
    }
}
