//! `pardo --cluster URL …` (the submitter) and `pardo worker URL` (a worker): the command line
//! around [`pardo::cluster`].

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use pardo::cluster::{ClusterOptions, Submitter, Worker, WorkerOptions};
use pardo::command::{Events, RunControl, RunOutcome, Template};
use pardo::monitor::Recorder;

use crate::args::Args;
use crate::inputs::Inputs;

/// Refuses the options a cluster run does not carry out, rather than ignoring them.
pub fn check_options(a: &Args) -> anyhow::Result<()> {
    let unsupported = [
        (a.pipe || a.pipepart, "--pipe/--pipepart"),
        (a.halt.is_some(), "--halt"),
        (a.line_buffer, "--line-buffer"),
        (a.load.is_some(), "--load"),
        (a.memfree.is_some(), "--memfree"),
        (a.delay.is_some(), "--delay"),
        (a.resume_failed, "--resume-failed"),
        (
            matches!(a.timeout, Some(crate::args::Timeout::Percent(_))),
            "--timeout P%",
        ),
    ];
    if let Some((_, name)) = unsupported.iter().find(|(on, _)| *on) {
        bail!("{name} is not supported with --cluster (yet)");
    }
    if a.resume.as_deref() == Some("") {
        bail!("with --cluster, --resume needs the run id: --resume=RUN (printed when the run started)");
    }
    Ok(())
}

/// Submits the run, hands results on to `events`, and says what the queue saw.
pub fn submit(
    a: &Args,
    url: &str,
    template: Template,
    recorder: Recorder,
    inputs: Inputs,
    events: &dyn Events,
    control: &RunControl,
) -> anyhow::Result<RunOutcome> {
    let opts = ClusterOptions {
        tries: a.retries.max(1),
        timeout: match a.timeout {
            Some(crate::args::Timeout::Fixed(d)) => Some(d),
            _ => None,
        },
        grace: a.grace,
        lease: a.cluster_lease,
        insecure: a.cluster_insecure,
        ..ClusterOptions::default()
    };
    let submitter = match a.resume.as_deref() {
        Some(run) => Submitter::resume(url, run, template, opts, recorder),
        None => Submitter::new(url, template, opts, recorder),
    }
    .with_context(|| format!("--cluster {}", redact(url)))?;
    let run = submitter.run_id().to_string();
    eprintln!(
        "pardo: cluster run {run} (if this pardo stops, take it up again with --resume={run})"
    );
    let out = submitter
        .run(inputs, events, control)
        .with_context(|| format!("cluster run {run}"))?;
    for seq in &out.dead {
        eprintln!(
            "pardo: job {seq} went to the dead-letter list: every worker it ran on was lost with it"
        );
    }
    eprintln!(
        "pardo: cluster run {run}: {} results accepted, {} late results dropped, {} attempts \
         retried, {} dead, {} skipped as done before",
        out.accepted,
        out.dropped,
        out.retried,
        out.dead.len(),
        out.skipped
    );
    if out.run.interrupted {
        eprintln!("pardo: interrupted; the run stays on Redis: --resume={run} takes it up again");
    }
    Ok(out.run)
}

/// `pardo worker URL [-j N]`.
#[derive(Debug, Parser)]
#[command(
    name = "pardo worker",
    about = "Run the jobs of every `pardo --cluster` run on a Redis, until Ctrl-C or TERM",
    after_help = "Exit status: 0 after Ctrl-C or TERM, 255 on a bad option or when Redis refuses \
                  pardo (bad URL, wrong password).\n\nThe queue is the trust boundary: a worker \
                  runs whatever command the Redis holds. Use a Redis only you can write to."
)]
struct WorkerArgs {
    /// The Redis: `redis://[user:password@]host:port/db`.
    url: String,
    /// Jobs at once (default: one per core).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    jobs: Option<usize>,
    /// Consumer name (default host-pid-random).
    #[arg(long)]
    name: Option<String>,
    /// Use a Redis off this machine without credentials.
    #[arg(long = "cluster-insecure")]
    cluster_insecure: bool,
}

/// Runs `pardo worker …` (program name and `worker` first).
pub fn worker(argv: Vec<OsString>) -> anyhow::Result<ExitCode> {
    let a = match WorkerArgs::try_parse_from(argv.into_iter().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 255 } else { 0 };
            let _ = e.print();
            return Ok(ExitCode::from(code));
        }
    };
    if a.jobs == Some(0) {
        bail!("-j 0: a worker needs at least one job at once");
    }
    let control = Arc::new(RunControl::new().context("cannot set up the worker")?);
    crate::run::install_interrupt_handler(control.clone());
    let guard = crate::run::spawn_guard().map(Arc::new);
    let worker = Worker::new(
        &a.url,
        WorkerOptions {
            slots: a.jobs.unwrap_or_else(pardo::monitor::available_cores),
            insecure: a.cluster_insecure,
            name: a.name,
            guard: guard.clone(),
        },
    )
    .context("pardo worker")?;
    eprintln!("pardo: worker {} serving {}", worker.name(), redact(&a.url));
    let stats = worker.serve(&control).context("pardo worker")?;
    if let Some(g) = guard.and_then(Arc::into_inner) {
        g.finish();
    }
    eprintln!(
        "pardo: worker {} stopped: {} attempts, {} results accepted, {} dropped (late), {} jobs \
         taken over from silent workers",
        worker.name(),
        stats.attempts,
        stats.accepted,
        stats.dropped,
        stats.reclaimed
    );
    Ok(ExitCode::SUCCESS)
}

/// The URL with its password hidden.
fn redact(url: &str) -> String {
    pardo::cluster::redact(url)
}
