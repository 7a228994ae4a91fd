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
    // `-S :` is GNU parallel's name for this machine, where pardo runs anyway.
    if let Some(login) = a.sshlogin.iter().find(|l| l.as_str() != ":") {
        bail!(
            "-S/--sshlogin {login}: pardo does not run jobs over ssh; to spread jobs over \
             machines use --cluster (see the README)"
        );
    }
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
    let resume = a.resume.is_some();
    if a.cluster.is_some() {
        crate::cluster::check_options(&a)?;
    } else if a.resume.as_deref().is_some_and(|r| !r.is_empty()) {
        bail!("--resume=RUN takes up a --cluster run; without --cluster, --resume needs --joblog FILE");
    } else if (resume || a.resume_failed) && a.joblog.is_none() {
        bail!("--resume and --resume-failed need --joblog FILE");
    }
    let (timeout, timeout_percent) = match a.timeout {
        Some(args::Timeout::Fixed(t)) => (Some(t), None),
        Some(args::Timeout::Percent(p)) => (None, Some(p)),
        None => (None, None),
    };
    let grace = a.grace;
    if let Some(n) = a.nice {
        // SAFETY: getpriority on this process and geteuid have no preconditions.
        let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        if n < own && unsafe { libc::geteuid() } != 0 {
            eprintln!(
                "pardo: warning: --nice {n}: lower than pardo's own niceness ({own}), which \
                 needs root; where the system refuses it, jobs run at {own}"
            );
        }
    }
    let load = a
        .load
        .as_deref()
        .map(|l| args::parse_load(l, cores))
        .transpose()
        .map_err(anyhow::Error::msg)?;

    let (command, groups) = args::split_rest(&a.rest);
    let piped = crate::pipe::inputs(&a, !groups.is_empty(), start)?;
    let groups = if piped.is_some() {
        groups
    } else {
        with_arg_files(&a, groups)
    };
    // How many sources each job's values cycle through: unknown once --colsep (or --header,
    // which splits at tabs) splits them.
    let sources = match (a.colsep.is_some() || a.header.is_some(), groups.len()) {
        (true, _) => None,
        (false, 0) => Some(1),
        (false, n) => Some(n),
    };
    let (inputs, total, template) = match piped {
        Some(_) => {
            refuse_with_pipe(&a)?;
            let none: inputs::Inputs = Box::new(std::iter::empty());
            (none, None, Template::parse_piped(&command))
        }
        None => {
            let built = inputs::build(groups, &inputs::shape(&a)?)?;
            let syntax = args::syntax(&a, built.names)?;
            let mut template =
                Template::parse_with(&command, &syntax).map_err(|e| anyhow::anyhow!("{e}"))?;
            if a.context || a.multi {
                // Lengths are measured by rendering, which needs perl for {= =}.
                template.start_perl()?;
                let limits = pardo::command::Limits {
                    max_chars: args::max_chars(a.max_chars.as_deref())?,
                    max_args: a.max_args,
                    slots: start,
                };
                let packed = pardo::command::Pack::new(template.clone(), built.inputs, limits)
                    .map(|r| r.map_err(std::io::Error::other));
                (Box::new(packed) as inputs::Inputs, None, template)
            } else {
                (built.inputs, built.total, template)
            }
        }
    };
    let mut template = template;
    // One perl for the whole run, started (and every expression compiled) before any job.
    template.start_perl()?;
    if !template.is_direct() {
        // A shell pardo cannot quote for is refused before any job, once, not per job.
        pardo::command::shell::current()?;
    }
    if let (
        Some(pardo::command::Halt {
            on: pardo::command::HaltOn::FailPercent(_) | pardo::command::HaltOn::SuccessPercent(_),
            ..
        }),
        None,
    ) = (halt, total)
    {
        eprintln!(
            "pardo: warning: --halt {}: the number of jobs is not known before the run (the \
             input is a stream), so the percentage is of the jobs finished so far",
            a.halt.as_deref().unwrap_or_default()
        );
    }
    let tag = match (&a.tagstring, a.tag) {
        // Said plainly rather than printed as text: the tag is drawn without perl.
        (Some(s), _) if s.contains("{=") => bail!(
            "--tagstring {s:?}: {{= =}} expressions are not evaluated in --tagstring; use \
             replacement strings such as {{}} {{.}} {{#}} there"
        ),
        (Some(s), _) => Some(Template::parse_text(s.as_bytes())),
        (None, true) => Some(Template::parse_text(b"{}")),
        (None, false) => None,
    };
    let results = a
        .results
        .as_deref()
        .map(crate::results::Results::open)
        .transpose()?;

    if a.dry_run {
        return dry_run(&template, inputs, start);
    }

    // Before anything that can block or write (the joblog), so a signal from then on stops the
    // run cleanly; a caller that sees the joblog header knows signals are handled.
    let control = Arc::new(RunControl::new().context("cannot set up the run")?);
    install_interrupt_handler(control.clone());

    let skip = match &a.joblog {
        Some(_) if a.cluster.is_some() => Default::default(),
        Some(path) if resume || a.resume_failed => joblog::done_jobs(path, a.resume_failed)
            .with_context(|| format!("cannot read the joblog {}", path.display()))?,
        _ => Default::default(),
    };
    let joblog = a
        .joblog
        .as_deref()
        .map(|p| {
            Joblog::open(p, resume || a.resume_failed)
                .with_context(|| format!("cannot write the joblog {}", p.display()))
        })
        .transpose()?;
    let show_bar = (a.bar || a.progress || a.eta) && std::io::stderr().is_terminal();
    let bar = show_bar.then(|| progress_bar(total));

    let mut run = RunRecord::now("command", start);
    // The reports' header shows what ran.
    let shown: Vec<String> = command
        .iter()
        .map(|w| w.to_string_lossy().into_owned())
        .collect();
    run.settings.push(("command".into(), shown.join(" ")));
    run.settings.push((
        "jobs".into(),
        match jobs {
            args::Jobs::Fixed(n) => n.to_string(),
            args::Jobs::Auto { max } => format!("auto (at most {max})"),
        },
    ));
    // No record is kept in memory: the views that draw every record read them back from
    // their spool at the end (see `see::Views`).
    let recorder = Recorder::new(run, true, Retention::SummaryOnly);
    let views = crate::see::Views::open(&a, &recorder)?;
    let guard = spawn_guard().map(Arc::new);
    let output = Output::new(OutputOptions {
        keep_order: a.keep_order,
        tag,
        verbose: a.verbose,
        streaming: a.results.is_none() && (a.ungroup || (a.line_buffer && !a.keep_order)),
        joblog,
        results,
        sources,
        bar,
    });
    if let Some(url) = &a.cluster {
        drop(guard);
        let outcome = crate::cluster::submit(
            &a,
            url,
            template,
            recorder.clone(),
            inputs,
            &views.events(&output),
            &control,
        );
        output.finish().context("cannot write the output")?;
        let report = recorder.report();
        views.finish(&report)?;
        if a.stats {
            print_stats(&report);
        }
        return Ok(status_of(outcome?, false, a.halt.as_deref()).into());
    }
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
            // --results needs each job's output whole, whatever -u or --line-buffer say.
            line_buffer: a.line_buffer && !a.keep_order && a.results.is_none(),
            ungroup: a.ungroup && a.results.is_none(),
            nice: a.nice,
            timeout_percent,
            jobs_total: total,
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
        // -X/-m: a record too long for any line is the user's input, not a read failure.
        Err(CommandError::Input(e))
            if e.get_ref()
                .is_some_and(|r| r.is::<pardo::command::PackError>()) =>
        {
            bail!("{e}")
        }
        Err(e) => return Err(e.into()),
    };
    Ok(status_of(outcome, read_failed, a.halt.as_deref()).into())
}

/// The exit status of a run that ended with `outcome`.
fn status_of(outcome: pardo::command::RunOutcome, read_failed: bool, halt: Option<&str>) -> Status {
    if read_failed {
        Status::Error
    } else if let Some(code) = outcome.halted {
        if let Some(by) = &outcome.halted_by {
            eprintln!("pardo: {}", halt_message(halt.unwrap_or_default(), by));
        }
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
    }
}

/// `-a FILE` sources go before the `:::` and `::::` ones, as in GNU parallel.
fn with_arg_files(a: &Args, groups: Vec<args::Group>) -> Vec<args::Group> {
    let files = a.arg_file.iter().map(|p| args::Group {
        source: args::Source::File(p.clone()),
        linked: false,
    });
    files.chain(groups).collect()
}

/// Options that shape argument lists mean nothing with `--pipe`: refused, not ignored.
fn refuse_with_pipe(a: &Args) -> anyhow::Result<()> {
    let given = [
        (a.null, "-0"),
        (a.delimiter.is_some(), "-d"),
        (a.eof.is_some(), "-E"),
        (a.trim.is_some(), "--trim"),
        (a.shuf, "--shuf"),
        (a.replace.is_some(), "-I"),
        (a.context, "-X"),
        (a.multi, "-m"),
        (a.quote, "-q"),
    ];
    if let Some((_, name)) = given.iter().find(|(g, _)| *g) {
        bail!("{name} cannot be used with --pipe or --pipepart (jobs get blocks of standard input, not arguments)");
    }
    Ok(())
}

/// Why `--halt` stopped the run, for stderr.
fn halt_message(spec: &str, by: &pardo::command::HaltedBy) -> String {
    let how = if by.ok {
        "succeeded".to_owned()
    } else if by.timed_out {
        "timed out".to_owned()
    } else if let Some(s) = by.signal {
        format!("was killed by signal {s}")
    } else {
        format!("failed with exit code {}", by.exit_code.unwrap_or(0))
    };
    let then = if spec.starts_with("now") || spec == "2" || spec == "-2" {
        "running jobs were stopped"
    } else {
        "no new job was started; running jobs were left to finish"
    };
    format!(
        "--halt {spec} stopped the run: job {} {how} ({}); {} of {} finished jobs failed; {then}",
        by.seq,
        String::from_utf8_lossy(&by.command),
        by.failed,
        by.done
    )
}

fn dry_run(template: &Template, inputs: inputs::Inputs, slots: usize) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    for (i, args) in inputs.enumerate() {
        let args = match args {
            Ok(args) => args,
            Err(e)
                if e.get_ref()
                    .is_some_and(|r| r.is::<pardo::command::PackError>()) =>
            {
                bail!("{e}")
            }
            Err(e) => return Err(anyhow::Error::new(e).context("cannot read the inputs")),
        };
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
pub(crate) fn spawn_guard() -> Option<pardo::command::Guard> {
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

/// How an automatic run's job count moved and why, in one line ("j: 2 → 45 → 114 (…)"); counts
/// held for less than a tenth of the run (at most a second) are probes and left out.
pub(crate) fn concurrency_line(r: &Report) -> Option<String> {
    let end = std::time::Duration::from_nanos(r.wall_ns);
    let min_hold = (end / 10).min(std::time::Duration::from_secs(1));
    pardo::tune::controller::report_timeline(&r.concurrency, end, min_hold)
}

pub(crate) fn print_stats(r: &Report) {
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
    if let Some(line) = concurrency_line(r) {
        let _ = writeln!(e, "pardo: automatic {line}");
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
    for h in &r.hosts {
        let _ = writeln!(
            e,
            "pardo: host {} ran {} jobs, {} each on average",
            h.host,
            h.tasks,
            format_duration(h.mean_ns)
        );
    }
    for f in &r.findings {
        let _ = writeln!(e, "pardo: - {}", f.for_command_line());
    }
}
