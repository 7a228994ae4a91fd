//! From parsed arguments to a run: builds the library's [`Runner`], the inputs and the output,
//! installs the Ctrl-C handler, and maps how the run ended to an exit status.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context};
use clap::Parser;
use pardo::command::joblog::{self, Joblog};
use pardo::command::{CommandError, JobArgs, RunControl, RunOptions, Runner, Template};
use pardo::monitor::{format_duration, Recorder, Report, Retention, RunRecord};
use pardo::tune::controller::ControllerConfig;

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

pub(crate) fn install_interrupt_handler(control: Arc<RunControl>) {
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
    let jobs = args::parse_concurrency(a.jobs.as_deref(), a.max_jobs, cores)
        .map_err(anyhow::Error::msg)?;
    // Slots: the fixed count, or the most an automatic run may open; it starts at the cores.
    let (slots, start) = match jobs {
        args::Jobs::Fixed(n) => (n, n),
        args::Jobs::Auto { max } => (max, cores.min(max)),
    };
    let halt = match &a.halt {
        Some(h) => args::parse_halt(h).map_err(anyhow::Error::msg)?,
        None => None,
    };
    if (a.resume || a.resume_failed) && a.joblog.is_none() {
        bail!("--resume and --resume-failed need --joblog FILE");
    }
    let (timeout, grace) = (a.timeout, a.grace);
    let load = a
        .load
        .as_deref()
        .map(|l| args::parse_load(l, cores))
        .transpose()
        .map_err(anyhow::Error::msg)?;

    let (command, groups) = args::split_rest(&a.rest);
    let template = if a.pipe || a.pipepart {
        Template::parse_piped(&command)
    } else {
        Template::parse(&command)
    };
    if !template.is_direct() {
        // A shell pardo cannot quote for is refused before any job, once, not per job.
        pardo::command::shell::current()?;
    }
    let piped = crate::pipe::inputs(&a, !groups.is_empty(), start)?;
    let (inputs, total) = match piped {
        Some(_) => (Box::new(std::iter::empty()) as inputs::Inputs, None),
        None => inputs::build(groups, a.colsep.as_deref(), a.max_args)?,
    };

    if a.dry_run {
        return dry_run(&template, inputs, start);
    }

    // Before anything that can block or write (the joblog), so a signal from then on stops the
    // run cleanly; a caller that sees the joblog header knows signals are handled.
    let control = Arc::new(RunControl::new().context("cannot set up the run")?);
    install_interrupt_handler(control.clone());

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

    let mut run = RunRecord::now("command", start);
    run.settings.push((
        "jobs".into(),
        match jobs {
            args::Jobs::Fixed(n) => n.to_string(),
            args::Jobs::Auto { max } => format!("auto (at most {max})"),
        },
    ));
    // JSON Lines stream as jobs end; only views drawn at the end need every record kept.
    let retention = if crate::see::Views::needs_records(&a) {
        Retention::All
    } else {
        Retention::SummaryOnly
    };
    let recorder = Recorder::new(run, true, retention);
    let views = crate::see::Views::open(&a, &recorder)?;
    let guard = spawn_guard().map(Arc::new);
    let runner = Runner::new(
        template,
        RunOptions {
            slots,
            auto: match jobs {
                args::Jobs::Fixed(_) => None,
                args::Jobs::Auto { max } => Some(ControllerConfig::new(cores, max)),
            },
            timeout,
            grace,
            tries: a.retries.max(1),
            halt,
            line_buffer: a.line_buffer && !a.keep_order,
            skip,
            guard: guard.clone(),
            gates: pardo::command::StartGates {
                load,
                memfree: a.memfree,
                delay: a.delay,
                ..Default::default()
            },
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

    let mut read_failed = false;
    let result = match piped {
        Some(p) => {
            let r = runner.run_piped(p.stdins, &views.events(&output), &control);
            read_failed = p.read_failed.load(std::sync::atomic::Ordering::SeqCst);
            r
        }
        None => runner.run(inputs, &views.events(&output), &control),
    };
    drop(runner);
    // Every job has ended: tell the guard so, and let it go.
    if let Some(g) = guard.and_then(Arc::into_inner) {
        g.finish();
    }
    output.finish().context("cannot write the output")?;
    let report = recorder.report();
    views.finish(&report)?;
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
    let status = if read_failed {
        Status::Error
    } else if let Some(code) = outcome.halted {
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

/// The hidden first argument that makes this binary the guard of a run (see
/// [`pardo::command::guard`]). An option, so it can never be the name of a user's command.
pub const GUARD_ARG: &str = "--internal-guard";

/// Starts the process that kills the run's jobs should pardo die without stopping them (e.g.
/// `kill -9`). Without one (no /proc to find this binary, no process left) the run goes on as
/// before, with a warning.
fn spawn_guard() -> Option<pardo::command::Guard> {
    let started = std::env::current_exe().and_then(|exe| {
        let mut cmd = std::process::Command::new(exe);
        cmd.arg(GUARD_ARG);
        pardo::command::Guard::spawn(cmd)
    });
    match started {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!(
                "pardo: warning: cannot start the guard process ({e}); if pardo is killed \
                 with SIGKILL its jobs will run on"
            );
            None
        }
    }
}

/// Opens a file pardo writes (`--json`, `--trace`, `--report`): created or truncated, but never through a symlink
/// (someone else's link in a shared directory would make pardo overwrite its target).
pub(crate) fn create_no_follow(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(joblog::no_follow(path))
        .open(path)
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
    if let (Some(first), Some(last)) = (r.concurrency.first(), r.concurrency.last()) {
        let path: Vec<String> = std::iter::once(first.from)
            .chain(r.concurrency.iter().map(|c| c.to))
            .map(|n| n.to_string())
            .collect();
        let _ = writeln!(
            e,
            "pardo: jobs at once (automatic): {} ({})",
            path.join(" → "),
            last.reason
        );
    }
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
        let _ = writeln!(e, "pardo: - {}", f.for_command_line());
    }
}
