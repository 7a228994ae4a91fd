//! The runner's resource gates with a machine the test controls: a start waits while memory
//! is short, and the youngest job is stopped and run again when memory falls under half of
//! `--memfree`. Jobs are held by files and the machine by a flag, never by timers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pardo::command::{Events, JobDone, Machine, RunControl, RunOptions, Runner, StartGates};
use pardo::monitor::{Recorder, Retention, RunRecord};
use pardo::Outcome;
use support::eventually;

mod support;

struct Quiet;
impl Events for Quiet {
    fn done(&self, _d: JobDone<'_>) -> std::io::Result<()> {
        Ok(())
    }
}

const GIB: u64 = 1 << 30;

/// Plenty of memory, or (squeezed) a quarter of what `--memfree` asks for.
#[derive(Debug, Default)]
struct Squeezable(Arc<AtomicBool>);

impl Machine for Squeezable {
    fn load_avg(&self) -> Option<f64> {
        None
    }
    fn mem_available_bytes(&self) -> Option<u64> {
        Some(if self.0.load(Ordering::SeqCst) {
            GIB / 4
        } else {
            8 * GIB
        })
    }
}

#[test]
fn short_memory_stops_the_youngest_job_and_runs_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let template = support::held_jobs(dir.path());
    let squeeze = Arc::new(AtomicBool::new(false));
    let gates = StartGates {
        memfree: Some(GIB),
        poll: Duration::from_millis(5),
        ..StartGates::default()
    }
    .with_machine(Squeezable(Arc::clone(&squeeze)));
    let recorder = Recorder::new(RunRecord::now("command", 2), true, Retention::All);
    let runner = Runner::new(
        template,
        RunOptions {
            slots: 2,
            gates,
            grace: Duration::from_millis(100),
            ..RunOptions::default()
        },
        recorder.clone(),
    );
    let run = std::thread::spawn(move || {
        let control = RunControl::new().unwrap();
        let inputs = ["1", "2"].map(|s| Ok(vec![s.as_bytes().to_vec()]));
        runner.run(inputs.into_iter(), &Quiet, &control).unwrap()
    });
    eventually("both jobs to run", || recorder.counters().running == 2);
    squeeze.store(true, Ordering::SeqCst);
    eventually("a job to be stopped", || {
        recorder
            .records()
            .iter()
            .any(|r| r.outcome == Outcome::Killed)
    });
    // While memory is short the stopped job may not start again, and the oldest runs on.
    assert_eq!(recorder.counters().running, 1);
    squeeze.store(false, Ordering::SeqCst);
    eventually("the stopped job to run again", || {
        recorder.counters().running == 2
    });
    std::fs::write(dir.path().join("go"), "").unwrap();
    let outcome = run.join().unwrap();
    assert_eq!((outcome.jobs, outcome.failed), (2, 0));

    let mut records = recorder.records();
    records.sort_by_key(|r| (r.id.0, r.attempt));
    let stopped: Vec<_> = records
        .iter()
        .filter(|r| r.outcome == Outcome::Killed)
        .collect();
    assert_eq!(stopped.len(), 1, "{records:#?}");
    let victim = stopped[0].id;
    // The youngest was stopped: it started after the other job's (only) attempt.
    let other = records.iter().find(|r| r.id != victim).unwrap();
    assert!(stopped[0].started_ns >= other.started_ns);
    assert_eq!(stopped[0].attempt, 1);
    let again = records
        .iter()
        .find(|r| r.id == victim && r.attempt == 2)
        .expect("the stopped job ran again as a second attempt");
    assert_eq!(again.outcome, Outcome::Ok);
    assert_eq!(records.len(), 3, "{records:#?}");
}
