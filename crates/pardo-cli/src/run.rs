//! From parsed arguments to a run: builds the library's [`Runner`], the inputs and the output,
//! installs the Ctrl-C handler, and maps how the run ended to an exit status.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use pardo::command::joblog::{self, Joblog};
use pardo::command::{CommandError, JobArgs, RunControl, RunOptions, Runner, Template};
use pardo::monitor::export::{Export, Json};
use pardo::monitor::{format_duration, Recorder, Report, Retention, RunRecord};

use crate::args::{self, Args};
use crate::inputs;
use crate::output::{Output, OutputOptions};

/// The exit statuses `--help` documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Every job succeeded.
    Ok,
    /// This many jobs failed (1–100; more is 101).
    Failed(u64),
    /// `--halt` stopped the run with this status.
    Halted(i32),
    /// Anything else (255).
    Error,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        ExitCode::from(match s {
            Status::Ok => 0,
            Status::Failed(n) => n.min(101) as u8,
            Status::Halted(c) => c.clamp(0, 255) as u8,
            Status::Error => 255,
        })
    }
}

static CONTROL: OnceLock<Arc<RunControl>> = OnceLock::new();

extern "C" fn on_interrupt(_sig: libc::c_int) {
    if let Some(c) = CONTROL.get() {
        c.interrupt();
    }
}

fn install_interrupt_handler(control: Arc<RunControl>) {
    let _ = CONTROL.set(control);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only does async-signal-safe work (an atomic and `write`).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_interrupt as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Runs `pardo [OPTIONS] …` with the process's arguments (program name first).
pub fn main(argv: Vec<OsString>) -> anyhow::Result<ExitCode> {
    let a = match Args::try_parse_from(&argv) {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 255 } else { 0 };
            let _ = e.print();
            return Ok(ExitCode::from(code));
        }
    };
    let cores = pardo::monitor::available_cores();
    let slots = args::parse_jobs(a.jobs.as_deref(), cores).map_err(anyhow::Error::msg)?;
    let halt = match &a.halt {
        Some(h) => args::parse_halt(h).map_err(anyhow::Error::msg)?,
        None => None,
    };
    if (a.resume || a.resume_failed) && a.joblog.is_none() {
        bail!("--resume and --resume-failed need --joblog FILE");
    }
    let duration = |what: &str, s: f64| {
        if s.is_finite() && s >= 0.0 {
            Ok(Duration::from_secs_f64(s))
        } else {
            Err(anyhow::anyhow!("invalid {what} {s}: expected seconds >= 0"))
        }
    };
    let timeout = a.timeout.map(|t| duration("--timeout", t)).transpose()?;
    let grace = duration("--grace", a.grace)?;

    let (command, groups) = args::split_rest(&a.rest);
    let template = Template::parse(&command);
    let (inputs, total) = inputs::build(groups, a.colsep.as_deref(), a.max_args)?;

    if a.dry_run {
        return dry_run(&template, inputs, slots);
    }

    let skip = match &a.joblog {
        Some(path) if a.resume || a.resume_failed => joblog::done_jobs(path, a.resume_failed)
            .with_context(|| format!("cannot read the joblog {}", path.display()))?,
        _ => Default::default(),
    };
    let joblog = a
        .joblog
        .as_deref()
        .map(|p| {
            Joblog::open(p, a.resume || a.resume_failed)
                .with_context(|| format!("cannot write the joblog {}", p.display()))
        })
        .transpose()?;
    let show_bar = (a.bar || a.progress || a.eta) && std::io::stderr().is_terminal();
    let bar = show_bar.then(|| progress_bar(total));

    let mut run = RunRecord::now("command", slots);
    run.settings.push(("jobs".into(), slots.to_string()));
    let retention = if a.json.is_some() {
        Retention::All
    } else {
        Retention::SummaryOnly
    };
    let recorder = Recorder::new(run, true, retention);
    let runner = Runner::new(
        template,
        RunOptions {
            slots,
            timeout,
            grace,
            tries: a.retries.max(1),
            halt,
            line_buffer: a.line_buffer && !a.keep_order,
            skip,
        },
        recorder.clone(),
    );
    let output = Output::new(OutputOptions {
        keep_order: a.keep_order,
        tag: a.tag,
        joblog,
        results: a.results.clone(),
        bar,
    });
    let control = Arc::new(RunControl::new().context("cannot set up the run")?);
    install_interrupt_handler(control.clone());

    let result = runner.run(inputs, &output, &control);
    output.finish().context("cannot write the output")?;
    let report = recorder.report();
    if let Some(path) = &a.json {
        write_json(path, &report, &recorder)?;
    }
    if a.stats {
        print_stats(&report);
    }
    let outcome = match result {
        Ok(o) => o,
        Err(CommandError::Events(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            return Ok(ExitCode::SUCCESS)
        }
        Err(e) => return Err(e.into()),
    };
    let status = if let Some(code) = outcome.halted {
        Status::Halted(code)
    } else if outcome.interrupted {
        eprintln!(
            "pardo: interrupted: {} jobs ran, {} failed; nothing new was started",
            outcome.jobs, outcome.failed
        );
        Status::Error
    } else if outcome.failed > 0 {
        Status::Failed(outcome.failed)
    } else {
        Status::Ok
    };
    Ok(status.into())
}

fn dry_run(template: &Template, inputs: inputs::Inputs, slots: usize) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    for (i, args) in inputs.enumerate() {
        let args = args.context("cannot read the inputs")?;
        let seq = i as u64 + 1;
        let line = template.render(&JobArgs {
            seq,
            slot: ((seq - 1) % slots as u64) as u32 + 1,
            args: &args,
        })?;
        out.write_all(&line.shell)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(total: Option<u64>) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let (bar, template) = match total {
        Some(n) => (
            ProgressBar::new(n),
            "{bar:30} {pos}/{len} jobs  {per_sec}  ETA {eta}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{spinner} {pos} jobs  {per_sec}  {elapsed}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar
}

fn write_json(path: &std::path::Path, report: &Report, recorder: &Recorder) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?,
    );
    Json.write(report, &recorder.records(), &mut file)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn print_stats(r: &Report) {
    let mut e = std::io::stderr().lock();
    let rss = r
        .max_rss_bytes
        .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
        .unwrap_or_else(|| "-".into());
    let _ = writeln!(
        e,
        "pardo: {} jobs ({} ok, {} not ok) in {} on {:.0} slots: {:.1} jobs/s, utilisation {:.0}%, speedup {:.2}",
        r.tasks,
        r.ok,
        r.not_ok,
        format_duration(r.wall_ns),
        r.workers,
        r.throughput_per_s,
        r.utilisation * 100.0,
        r.speedup
    );
    let _ = writeln!(
        e,
        "pardo: job time p50 {} p99 {} max {}; CPU user {} sys {}; peak RSS {}",
        format_duration(r.duration.p50_ns),
        format_duration(r.duration.p99_ns),
        format_duration(r.duration.max_ns),
        format_duration(r.cpu_user_ns),
        format_duration(r.cpu_sys_ns),
        rss
    );
    // SAFETY: zeroed rusage is valid; getrusage fills it for this process.
    let own = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    let _ = writeln!(
        e,
        "pardo: the runner itself used {} CPU, {} per job",
        format_duration(own),
        format_duration(own / r.tasks.max(1))
    );
    for f in &r.findings {
        let _ = writeln!(e, "pardo: - {f}");
    }
}
