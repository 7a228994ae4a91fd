//! The command runner keeps the recorder's live counters: `running` counts the jobs running
//! now. Jobs are held by files, never by timers.

use std::time::{Duration, Instant};

use pardo::command::{Events, JobDone, RunControl, RunOptions, Runner, Template};
use pardo::monitor::{Recorder, Retention, RunRecord};

struct Quiet;
impl Events for Quiet {
    fn done(&self, _d: JobDone<'_>) -> std::io::Result<()> {
        Ok(())
    }
}

/// Far longer than the test needs; reaching it means the counter never moved.
const HANG: Duration = Duration::from_secs(60);

fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + HANG;
    while !done() {
        assert!(Instant::now() < until, "hang waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn running_counts_the_jobs_running_now() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    // Each job says it started, then waits until the test lets it go.
    let template = Template::parse(&[format!(
        "touch {d}/started.{{}}; while [ ! -e {d}/go ]; do sleep 0.01; done"
    )
    .into()]);
    let recorder = Recorder::new(RunRecord::now("command", 2), true, Retention::All);
    let runner = Runner::new(
        template,
        RunOptions {
            slots: 2,
            ..RunOptions::default()
        },
        recorder.clone(),
    );
    let run = std::thread::spawn(move || {
        let control = RunControl::new().unwrap();
        let inputs = ["1", "2"].map(|s| Ok(vec![s.as_bytes().to_vec()]));
        runner.run(inputs.into_iter(), &Quiet, &control).unwrap()
    });
    poll_until("both jobs to start", || {
        dir.path().join("started.1").exists() && dir.path().join("started.2").exists()
    });
    poll_until("running == 2", || recorder.counters().running == 2);
    std::fs::write(dir.path().join("go"), "").unwrap();
    let outcome = run.join().unwrap();
    assert_eq!((outcome.jobs, outcome.failed), (2, 0));
    let c = recorder.counters();
    assert_eq!((c.running, c.done), (0, 2));
}
