//! `pardo tune [OPTIONS] COMMAND ::: inputs`: runs a sample of the inputs at a ladder of job
//! counts, fits the Universal Scalability Law to the throughput measured at each, and says
//! which count is best, with the measured and fitted throughput side by side.

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use pardo::command::{Events, JobDone, RunControl, RunOptions, Runner, Template};
use pardo::monitor::{Recorder, Retention, RunRecord};
use pardo::tune::usl::{fit, UslError, UslFit};
use serde::Serialize;

use crate::args;
use crate::inputs;

/// `pardo tune [OPTIONS] COMMAND [ARG...] ::: VALUES... | :::: FILES...`
#[derive(Debug, Parser)]
#[command(
    name = "pardo tune",
    about = "Find the best number of jobs at once: run a sample of the inputs at 1, 2, 4, ... \
             jobs, fit the Universal Scalability Law, print the best count",
    after_help = "The command runs many times on the same sample of inputs (a level that \
                  needs more jobs than there are inputs reuses them): tune only commands that \
                  may be repeated.\n\nExit status: 0 when every level was measured (also when \
                  the data do not fit the law: that is an answer), 255 on a bad option, \
                  unreadable input, no input, or an interrupt."
)]
pub struct TuneArgs {
    /// Job counts to measure, comma-separated (default: powers of two up to --max-jobs).
    #[arg(long, value_name = "N,N,...", value_delimiter = ',')]
    pub levels: Vec<usize>,
    /// Largest job count of the default ladder.
    #[arg(long = "max-jobs", value_name = "N", default_value_t = 64)]
    pub max_jobs: usize,
    /// Jobs per level: at least this many, and at least two per slot (rounded up to whole
    /// rounds of the level, so every slot stays busy to the end of the level).
    #[arg(long = "jobs-per-level", value_name = "N", default_value_t = 8)]
    pub per_level: usize,
    /// Print the result as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Put N arguments on each command line.
    #[arg(short = 'n', long = "max-args", value_name = "N")]
    pub max_args: Option<usize>,
    /// Split each input line into columns at REGEX ({1}, {2}, ...).
    #[arg(long, value_name = "REGEX")]
    pub colsep: Option<String>,
    /// The command, then its input sources.
    #[arg(trailing_var_arg = true, value_name = "COMMAND", required = true)]
    pub rest: Vec<OsString>,
}

/// Throughput measured at one job count.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Level {
    /// Jobs at once.
    pub jobs_at_once: usize,
    /// Jobs run at this level.
    pub jobs: u64,
    /// Of them, how many did not exit 0.
    pub failed: u64,
    /// Wall time of the level, seconds.
    pub seconds: f64,
    /// Completions per second.
    pub throughput_per_s: f64,
}

/// What `pardo tune` found; also its JSON form.
#[derive(Debug, Serialize)]
pub struct Tuning {
    /// Each level measured, in order.
    pub levels: Vec<Level>,
    /// The fit, also when it is too poor to use (then `fit_error` says so).
    pub fit: Option<UslFit>,
    /// Why the fit is not used, in words.
    pub fit_error: Option<String>,
    /// The job count with the highest throughput (fitted when the fit holds, else measured).
    pub peak_jobs: usize,
    /// Throughput at `peak_jobs`.
    pub peak_per_s: f64,
    /// The advice: the fewest jobs at once that reach [`NEAR_PEAK`] of the peak (more jobs for
    /// the last few percent only add switching and memory, and the measurements' noise).
    pub best_jobs: usize,
    /// Throughput at `best_jobs`.
    pub best_per_s: f64,
    /// Where the figures come from: `fit` or `measured`.
    pub best_from: &'static str,
}

/// Share of the peak throughput that counts as reaching it.
pub const NEAR_PEAK: f64 = 0.95;

/// The default ladder: 1, 2, 4, … up to `max` (with `max` itself when it is not a power of 2).
pub fn ladder(max: usize) -> Vec<usize> {
    let max = max.max(1);
    let mut v: Vec<usize> = std::iter::successors(Some(1usize), |n| n.checked_mul(2))
        .take_while(|&n| n <= max)
        .collect();
    if v.last() != Some(&max) {
        v.push(max);
    }
    v
}

/// Jobs to run at `n` at once: at least `min` and two rounds, in whole rounds of `n`.
pub fn jobs_for_level(n: usize, min: usize) -> usize {
    let want = min.max(2 * n);
    want.div_ceil(n) * n
}

/// Picks the answer from the levels and the fit.
pub fn conclude(levels: Vec<Level>, max: usize) -> Tuning {
    let points: Vec<(f64, f64)> = levels
        .iter()
        .map(|l| (l.jobs_at_once as f64, l.throughput_per_s))
        .collect();
    let (fit, fit_error) = match fit(&points) {
        Ok(f) => (Some(f), None),
        Err(UslError::DoesNotFit { fit }) => (
            Some(*fit.clone()),
            Some(UslError::DoesNotFit { fit }.to_string()),
        ),
        Err(e) => (None, Some(e.to_string())),
    };
    let (peak_jobs, peak_per_s, best_jobs, best_per_s, best_from) = match (&fit, &fit_error) {
        (Some(f), None) => {
            let peak = f.best_workers(max);
            let peak_x = f.usl.throughput(peak as f64);
            let best = (1..=peak)
                .find(|&n| f.usl.throughput(n as f64) >= NEAR_PEAK * peak_x)
                .unwrap_or(peak);
            (peak, peak_x, best, f.usl.throughput(best as f64), "fit")
        }
        _ => {
            let peak = levels
                .iter()
                .max_by(|a, b| a.throughput_per_s.total_cmp(&b.throughput_per_s))
                .map_or((1, 0.0), |l| (l.jobs_at_once, l.throughput_per_s));
            let best = levels
                .iter()
                .filter(|l| l.throughput_per_s >= NEAR_PEAK * peak.1)
                .min_by_key(|l| l.jobs_at_once)
                .map_or(peak, |l| (l.jobs_at_once, l.throughput_per_s));
            (peak.0, peak.1, best.0, best.1, "measured")
        }
    };
    Tuning {
        levels,
        fit,
        fit_error,
        peak_jobs,
        peak_per_s,
        best_jobs,
        best_per_s,
        best_from,
    }
}

/// Counts a level's jobs and throws their output away.
struct Count;

impl Events for Count {
    fn done(&self, _d: JobDone<'_>) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `pardo tune …`; `argv` starts with the program name, then `tune`.
pub fn run(argv: Vec<OsString>) -> anyhow::Result<ExitCode> {
    let a = match TuneArgs::try_parse_from(argv.iter().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 255 } else { 0 };
            let _ = e.print();
            return Ok(ExitCode::from(code));
        }
    };
    let levels = if a.levels.is_empty() {
        if a.max_jobs == 0 || a.max_jobs > args::MAX_JOBS {
            anyhow::bail!(
                "invalid --max-jobs {}: expected 1 to {}",
                a.max_jobs,
                args::MAX_JOBS
            );
        }
        ladder(a.max_jobs)
    } else {
        if let Some(bad) = a.levels.iter().find(|&&n| n == 0 || n > args::MAX_JOBS) {
            anyhow::bail!(
                "invalid --levels value {bad}: expected 1 to {}",
                args::MAX_JOBS
            );
        }
        a.levels.clone()
    };
    let (command, groups) = args::split_rest(&a.rest);
    if command.is_empty() {
        anyhow::bail!("pardo tune needs a command to measure, then its inputs (::: or ::::)");
    }
    let per_level: Vec<usize> = levels
        .iter()
        .map(|&n| jobs_for_level(n, a.per_level.max(1)))
        .collect();
    let need = per_level.iter().copied().max().unwrap_or(1);
    // The sample: as many inputs as the largest level runs, no more, so memory follows the
    // ladder, not the input.
    let shape = inputs::Shape {
        colsep: a.colsep.as_deref(),
        max_args: a.max_args,
        ..Default::default()
    };
    let source = inputs::build(groups, &shape)?.inputs;
    let sample: Vec<Vec<Vec<u8>>> = source
        .take(need)
        .collect::<io::Result<_>>()
        .context("cannot read the inputs")?;
    if sample.is_empty() {
        anyhow::bail!("pardo tune has no inputs to sample: give some with ::: or ::::");
    }
    let control = std::sync::Arc::new(RunControl::new().context("cannot set up the run")?);
    crate::run::install_interrupt_handler(control.clone());

    let mut template = Template::parse(&command);
    template.start_perl()?;
    let mut measured = Vec::with_capacity(levels.len());
    for (&n, &jobs) in levels.iter().zip(&per_level) {
        let recorder = Recorder::new(RunRecord::now("tune", n), true, Retention::SummaryOnly);
        let runner = Runner::new(
            template.clone(),
            RunOptions {
                slots: n,
                ..RunOptions::default()
            },
            recorder,
        );
        let items: Vec<io::Result<Vec<Vec<u8>>>> = sample
            .iter()
            .cycle()
            .take(jobs)
            .map(|args| Ok(args.clone()))
            .collect();
        let t0 = Instant::now();
        let outcome = runner.run(items.into_iter(), &Count, &control)?;
        let seconds = t0.elapsed().as_secs_f64();
        if outcome.interrupted {
            anyhow::bail!("interrupted while measuring {n} jobs at once");
        }
        measured.push(Level {
            jobs_at_once: n,
            jobs: outcome.jobs,
            failed: outcome.failed,
            seconds,
            throughput_per_s: outcome.jobs as f64 / seconds.max(1e-9),
        });
        if !a.json {
            eprintln!(
                "pardo tune: {n:>4} at once: {} jobs in {seconds:.2} s",
                outcome.jobs
            );
        }
    }
    let max = levels.iter().copied().max().unwrap_or(1);
    let tuning = conclude(measured, max);
    let mut out = io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &tuning)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", render(&tuning, sample.len()))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Width of the chart's bars.
const BAR: usize = 40;

/// The table, chart and verdict, as printed.
pub fn render(t: &Tuning, sample: usize) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let top = t
        .levels
        .iter()
        .map(|l| l.throughput_per_s)
        .chain(t.fit.iter().flat_map(|f| {
            t.levels
                .iter()
                .map(|l| f.usl.throughput(l.jobs_at_once as f64))
        }))
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let _ = writeln!(
        s,
        "{:>6}  {:>12}  {:>12}  measured █, fitted ┃ (sample of {sample} inputs)",
        "jobs", "measured/s", "fitted/s"
    );
    for l in &t.levels {
        let fitted = t
            .fit
            .as_ref()
            .map(|f| f.usl.throughput(l.jobs_at_once as f64));
        let bar_len = ((l.throughput_per_s / top) * BAR as f64).round() as usize;
        let mut bar: Vec<char> = std::iter::repeat_n('█', bar_len.min(BAR))
            .chain(std::iter::repeat_n(' ', BAR - bar_len.min(BAR)))
            .collect();
        if let Some(f) = fitted {
            let at = (((f / top) * BAR as f64).round() as usize).clamp(1, BAR) - 1;
            bar[at] = '┃';
        }
        let failed = if l.failed > 0 {
            format!("  ({} failed)", l.failed)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "{:>6}  {:>12.2}  {:>12}  {}{failed}",
            l.jobs_at_once,
            l.throughput_per_s,
            fitted.map_or("-".to_owned(), |f| format!("{f:.2}")),
            bar.into_iter().collect::<String>().trim_end()
        );
    }
    if let Some(f) = &t.fit {
        let _ = writeln!(
            s,
            "USL fit: λ {:.3}/s per job, σ (contention) {:.4}, κ (coherence) {:.3e}, R² {:.3}",
            f.usl.lambda, f.usl.sigma, f.usl.kappa, f.r_squared
        );
    }
    let near = if t.best_jobs < t.peak_jobs {
        format!(
            " ({:.0}% of the peak {:.2}/s at -j {}; more jobs add little)",
            NEAR_PEAK * 100.0,
            t.peak_per_s,
            t.peak_jobs
        )
    } else {
        String::new()
    };
    if let Some(why) = &t.fit_error {
        let _ = writeln!(s, "USL: {why}");
        let _ = writeln!(
            s,
            "best measured: -j {} at {:.2} jobs/s{near}; no prediction beyond the levels measured",
            t.best_jobs, t.best_per_s
        );
        return s;
    }
    let max_measured = t.levels.iter().map(|l| l.jobs_at_once).max().unwrap_or(1);
    let why = match t.fit.as_ref().and_then(|f| f.usl.peak_n()) {
        Some(p) if p <= max_measured as f64 => {
            format!("throughput peaks at about {p:.1} and falls after it")
        }
        Some(p) => format!(
            "the law puts the peak at about {p:.0}, above the largest count measured; measure \
             higher (--max-jobs) to confirm"
        ),
        None => "throughput still rises at the largest count measured; measure higher \
                 (--max-jobs)"
            .to_owned(),
    };
    let _ = writeln!(
        s,
        "best: -j {} (predicted {:.2} jobs/s){near}: {why}",
        t.best_jobs, t.best_per_s
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use pardo::tune::usl::Usl;

    fn levels_from(usl: &Usl, ns: &[usize]) -> Vec<Level> {
        ns.iter()
            .map(|&n| Level {
                jobs_at_once: n,
                jobs: 10,
                failed: 0,
                seconds: 1.0,
                throughput_per_s: usl.throughput(n as f64),
            })
            .collect()
    }

    #[test]
    fn ladder_is_powers_of_two_then_the_maximum() {
        assert_eq!(ladder(64), [1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(ladder(10), [1, 2, 4, 8, 10]);
        assert_eq!(ladder(1), [1]);
        assert_eq!(ladder(0), [1]);
    }

    #[test]
    fn levels_run_whole_rounds() {
        assert_eq!(jobs_for_level(1, 8), 8);
        assert_eq!(jobs_for_level(3, 8), 9);
        assert_eq!(jobs_for_level(64, 8), 128);
    }

    #[test]
    fn a_peaked_curve_gives_its_peak_and_says_so() {
        let usl = Usl {
            lambda: 10.0,
            sigma: 0.02,
            kappa: 0.001,
        };
        let t = conclude(levels_from(&usl, &[1, 2, 4, 8, 16, 32, 64]), 64);
        assert_eq!(t.best_from, "fit");
        // √(0.98 / 0.001) ≈ 31.3
        assert!((30..=32).contains(&t.peak_jobs), "{t:?}");
        // The advice is the fewest jobs within 5 % of that peak.
        let usl_at = |n: usize| usl.throughput(n as f64);
        assert!(usl_at(t.best_jobs) >= NEAR_PEAK * usl_at(t.peak_jobs));
        assert!(usl_at(t.best_jobs - 1) < NEAR_PEAK * usl_at(t.peak_jobs));
        let text = render(&t, 128);
        assert!(text.contains("peaks at about 31"), "{text}");
        assert!(
            text.contains(&format!("best: -j {}", t.best_jobs)),
            "{text}"
        );
        assert_eq!(
            text.lines().skip(1).filter(|l| l.contains('┃')).count(),
            7,
            "{text}"
        );
    }

    #[test]
    fn rising_throughput_says_measure_higher() {
        let usl = Usl {
            lambda: 20.0,
            sigma: 0.0,
            kappa: 0.0,
        };
        let t = conclude(levels_from(&usl, &[1, 2, 4, 8]), 8);
        assert_eq!((t.best_jobs, t.peak_jobs), (8, 8));
        assert!(render(&t, 16).contains("still rises"));
    }

    #[test]
    fn a_plateau_advises_its_start_not_its_noisy_maximum() {
        // CPU-bound on two cores: doubles to 2, then flat with noise.
        let mut levels = levels_from(
            &Usl {
                lambda: 1.0,
                sigma: 0.0,
                kappa: 0.0,
            },
            &[1, 2, 4, 8, 16],
        );
        for (l, x) in levels.iter_mut().zip([27.0, 53.5, 50.4, 53.9, 52.9]) {
            l.throughput_per_s = x;
        }
        let t = conclude(levels, 16);
        assert_eq!(t.best_jobs, 2, "{t:?}");
        assert!(render(&t, 12).contains("-j 2"));
    }

    #[test]
    fn data_that_do_not_fit_are_called_so_and_the_best_measured_is_given() {
        let mut levels = levels_from(
            &Usl {
                lambda: 1.0,
                sigma: 0.0,
                kappa: 0.0,
            },
            &[1, 2, 3, 4, 5, 6],
        );
        for (l, x) in levels.iter_mut().zip([10.0, 80.0, 5.0, 90.0, 2.0, 70.0]) {
            l.throughput_per_s = x;
        }
        let t = conclude(levels, 6);
        assert_eq!((t.best_from, t.best_jobs), ("measured", 4));
        let text = render(&t, 6);
        assert!(text.contains("do not fit"), "{text}");
        assert!(text.contains("best measured: -j 4"), "{text}");
    }
}
