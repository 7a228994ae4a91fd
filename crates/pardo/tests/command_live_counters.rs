//! The command runner keeps the recorder's live counters: `running` counts the jobs running
//! now. Jobs are held by files, never by timers.

use pardo::command::{Events, JobDone, RunControl, RunOptions, Runner};
use pardo::monitor::{Recorder, Retention, RunRecord};
use support::eventually;

mod support;

struct Quiet;
impl Events for Quiet {
    fn done(&self, _d: JobDone<'_>) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn running_counts_the_jobs_running_now() {
    let dir = tempfile::tempdir().unwrap();
    // Each job says it started, then waits until the test lets it go.
    let template = support::held_jobs(dir.path());
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
    eventually("both jobs to start", || {
        dir.path().join("started.1").exists() && dir.path().join("started.2").exists()
    });
    eventually("running == 2", || recorder.counters().running == 2);
    std::fs::write(dir.path().join("go"), "").unwrap();
    let outcome = run.join().unwrap();
    assert_eq!((outcome.jobs, outcome.failed), (2, 0));
    let c = recorder.counters();
    assert_eq!((c.running, c.done), (0, 2));
}
