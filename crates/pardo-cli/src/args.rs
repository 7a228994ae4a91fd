//! Command-line arguments: the clap definition (parsing and validation only) and the split of
//! the trailing words into the command and its `:::` / `::::` input sources.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// How the exit status is chosen; shown at the end of `--help`.
pub const EXIT_STATUS: &str = "\
Exit status (as GNU parallel):
  0        every job succeeded (also: no input at all)
  1-100    that many jobs failed (exited non-zero, were killed or timed out)
  101      more than 100 jobs failed
  255      any other error: bad option, unreadable input file, command line too long,
           interrupted (Ctrl-C), a joblog that cannot be written
  With --halt: fail=1 gives the exit status of the job that met it, fail=N the number
           failed, fail=P% the failed percentage of all jobs (rounded up), success=... 0.

A job whose command does not exist fails with exit code 127, as under a shell.
To run a program literally named `demo`, `tune`, `report` or `worker`, write `pardo -- demo ...`
(`pardo demo` runs the demo, `pardo tune COMMAND ::: ...` finds the best -j for COMMAND, `pardo
report RUN.jsonl` draws the HTML report of a run saved with --json, `pardo worker URL` serves
--cluster runs).";

/// `pardo [OPTIONS] [COMMAND...] [::: ARGS... | :::: FILES...]...`
#[derive(Debug, Parser)]
#[command(
    name = "pardo",
    version,
    about = "Run a command over many inputs in parallel (GNU parallel syntax), every job measured",
    override_usage = "pardo [OPTIONS] [COMMAND [ARG...]] [::: VALUES... | :::: FILES... | :::+ ... | ::::+ ...]...\n       \
                      ... | pardo [OPTIONS] COMMAND   (one input a line on stdin)\n       \
                      pardo tune [OPTIONS] COMMAND ::: VALUES...   (pardo tune --help)\n       \
                      pardo report RUN.jsonl [-o REPORT.html] [--trace FILE]   (from --json)\n       \
                      pardo worker redis://HOST:PORT/DB [-j N]   (pardo worker --help)\n       \
                      pardo demo",
    after_help = EXIT_STATUS
)]
pub struct Args {
    /// Jobs at once: N, N% of the cores, +N or -N cores, or `auto` (the default): pardo starts
    /// at one per core and steers the count while the run goes, up to --max-jobs.
    #[arg(
        short = 'j',
        long = "jobs",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub jobs: Option<String>,
    /// Print output in input order.
    #[arg(short = 'k', long = "keep-order")]
    pub keep_order: bool,
    /// Print output a whole line at a time as it comes (lines of jobs may interleave).
    #[arg(long = "line-buffer")]
    pub line_buffer: bool,
    /// Prefix each output line with the job's arguments (joined with a space) and a tab.
    #[arg(long)]
    pub tag: bool,
    /// Print the commands instead of running them.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Stop a job (its whole process group) after SECS seconds: TERM, then KILL after --grace.
    /// `P%`: after P% of the median run time of the jobs finished so far (as GNU parallel).
    #[arg(long, value_name = "SECS|P%", value_parser = parse_timeout)]
    pub timeout: Option<Timeout>,
    /// Seconds between TERM and KILL when stopping jobs.
    #[arg(long, value_name = "SECS", default_value = "0.5", value_parser = parse_secs)]
    pub grace: Duration,
    /// Run a failing job up to N times in all.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retries: u32,
    /// Stop the run: now|soon,fail=N|success=N|fail=P%|success=P% (and never, the default;
    /// GNU's short forms 0, 1, 2, -1, -2 and P% too).
    #[arg(long, value_name = "WHEN,COND", allow_hyphen_values = true)]
    pub halt: Option<String>,
    /// Write GNU parallel's joblog to FILE, a line per job as it ends.
    #[arg(long, value_name = "FILE")]
    pub joblog: Option<PathBuf>,
    /// With --joblog: skip the jobs the joblog lists, append to it. With --cluster,
    /// `--resume=RUN` takes up run RUN again after its pardo stopped (nothing finished is lost).
    #[arg(
        long,
        value_name = "RUN",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = ""
    )]
    pub resume: Option<String>,
    /// Run the jobs on the workers of a Redis instead of here: `pardo worker URL` on each
    /// machine, then `pardo --cluster URL COMMAND ::: ...` (`redis://[user:password@]host:port/db`).
    #[arg(long, value_name = "URL")]
    pub cluster: Option<String>,
    /// With --cluster: use a Redis off this machine without credentials (whoever can write to
    /// it runs commands on every worker).
    #[arg(long = "cluster-insecure")]
    pub cluster_insecure: bool,
    /// With --cluster: seconds a worker may go silent (killed, cut off) before its job is
    /// taken by another worker.
    #[arg(long = "cluster-lease", value_name = "SECS", default_value = "1", value_parser = parse_secs)]
    pub cluster_lease: Duration,
    /// With --joblog: skip the jobs the joblog lists as succeeded, run the rest again.
    #[arg(long = "resume-failed")]
    pub resume_failed: bool,
    /// Save each job's output, not printing it (as GNU parallel): in the tree
    /// `DIR/1/<value>/2/<value>/stdout|stderr|seq`, or with a name ending in .csv, .tsv or
    /// .json, in that one file, a row per job (`-.csv` etc. is standard output).
    #[arg(long, value_name = "DIR|FILE", allow_hyphen_values = true)]
    pub results: Option<PathBuf>,
    /// Progress bar on stderr (only when stderr is a terminal).
    #[arg(long)]
    pub bar: bool,
    /// Same as --bar.
    #[arg(long)]
    pub progress: bool,
    /// Same as --bar (the bar shows the ETA when the number of jobs is known).
    #[arg(long)]
    pub eta: bool,
    /// Print the run's summary and findings on stderr at the end.
    #[arg(long)]
    pub stats: bool,
    /// Write the run to FILE as JSON Lines while it goes: a header line, a line per job
    /// attempt as it ends, samples, and the summary last (a killed run keeps what finished).
    /// `-` is refused: job output goes to standard output.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the run to FILE as a Chrome trace when it ends (open it in Perfetto UI or
    /// chrome://tracing): a track per job slot, a slice per job, counters for running, queued,
    /// jobs at once and CPU use. Keeps every job's record in memory until the end (about half
    /// a KiB a job).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Write an HTML report of the run to FILE when it ends: one self-contained page (no
    /// script, nothing fetched) with the summary, findings, a timeline per slot, concurrency
    /// and CPU over time, durations, and the failed jobs with the end of their stderr. Keeps
    /// every job's record in memory until the end (about half a KiB a job; for runs of
    /// millions, use --json and `pardo report` afterwards).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Serve live metrics in the Prometheus text format at http://ADDR/metrics while the run
    /// goes (IP:PORT, e.g. 127.0.0.1:9184; port 0 picks one, printed on stderr): jobs by
    /// outcome, running, queued, jobs at once, a duration histogram, CPU seconds. Only a
    /// loopback address unless --metrics-public.
    #[arg(long = "metrics-addr", value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Let --metrics-addr bind an address other than loopback (anyone who can reach it sees
    /// the run's metrics).
    #[arg(long = "metrics-public")]
    pub metrics_public: bool,
    /// Put N arguments on each command line.
    #[arg(short = 'n', long = "max-args", value_name = "N")]
    pub max_args: Option<usize>,
    /// With automatic job count (no -j, or -j auto): never more than N jobs at once.
    #[arg(long = "max-jobs", value_name = "N", default_value_t = DEFAULT_MAX_JOBS,
          value_parser = clap::value_parser!(usize))]
    pub max_jobs: usize,
    /// Start no job while the one-minute load average is above MAX: a number, N% of the cores,
    /// or +N / -N cores (as -j; 0 means 0.01).
    #[arg(long = "load", value_name = "MAX", allow_hyphen_values = true)]
    pub load: Option<String>,
    /// Start no job while less than SIZE memory is available (K M G T P ×1024, k m g t p
    /// ×1000); below half of it, stop the youngest job and run it again later.
    #[arg(long = "memfree", value_name = "SIZE", value_parser = pardo::command::parse_size)]
    pub memfree: Option<u64>,
    /// Wait at least DURATION between two job starts (seconds, or 0.5s, 2m, 1h, 1d).
    #[arg(long = "delay", value_name = "DURATION", value_parser = pardo::command::parse_duration)]
    pub delay: Option<Duration>,
    /// Split each input line into columns at REGEX ({1}, {2}, ...).
    #[arg(long, value_name = "REGEX")]
    pub colsep: Option<String>,
    /// Read input from FILE, one argument a line (with --pipepart: the file to split).
    #[arg(short = 'a', long = "arg-file", value_name = "FILE")]
    pub arg_file: Vec<PathBuf>,
    /// With --pipe/--pipepart: the first N lines (`:` is 1) go in front of every block.
    #[arg(long, value_name = "REGEX")]
    pub header: Option<String>,
    /// Split standard input into blocks of whole records (--block, --recend, --recstart, -N);
    /// each block is the standard input of one job.
    #[arg(long)]
    pub pipe: bool,
    /// As --pipe, but split the regular file given with -a by seeking: pardo reads only a
    /// little around each block edge, and the jobs get their bytes straight from the file.
    #[arg(long)]
    pub pipepart: bool,
    /// With --pipe/--pipepart: blocks of about SIZE bytes (default 1M; K M G T are powers of
    /// 1024, k m g t of 1000, as GNU parallel).
    #[arg(long, alias = "block-size", value_name = "SIZE",
          value_parser = pardo::command::pipe::parse_size)]
    pub block: Option<usize>,
    /// With --pipe/--pipepart: records end with STR (default `\n`; `\t`, `\0`, `\xHH` work;
    /// empty when only --recstart is given).
    #[arg(long, value_name = "STR")]
    pub recend: Option<String>,
    /// With --pipe/--pipepart: records start with STR; blocks are cut only where --recend is
    /// followed by STR.
    #[arg(long, value_name = "STR")]
    pub recstart: Option<String>,
    /// With --pipe: exactly N records per job (the last may have fewer); --block is ignored.
    #[arg(short = 'N', value_name = "N")]
    pub max_records: Option<usize>,
    /// With --pipe: start one job per job slot and hand each block to whichever job is ready.
    #[arg(long = "round-robin")]
    pub round_robin: bool,
    // Inputs and replacement strings as GNU parallel reads them (issue 10).
    /// Records in files and stdin end with a NUL byte instead of a newline (as `-d '\0'`).
    #[arg(short = '0', long = "null")]
    pub null: bool,
    /// Records in files and stdin end with STR instead of a newline (several characters
    /// allowed; `\n`, `\t`, `\r`, `\0` and `\NNN` in octal are read as GNU parallel does).
    #[arg(short = 'd', long = "delimiter", value_name = "STR")]
    pub delimiter: Option<String>,
    /// End-of-file string: a value equal to STR ends its input source (every source).
    #[arg(short = 'E', value_name = "STR")]
    pub eof: Option<String>,
    /// Remove white space from each argument: n (none), l (start), r (end), lr or rl (both).
    /// Default: lr with --colsep, n without (as GNU parallel).
    #[arg(long, value_name = "n|l|r|lr|rl")]
    pub trim: Option<String>,
    /// Run the jobs in random order (reads every input first).
    #[arg(long)]
    pub shuf: bool,
    /// Use STR instead of `{}` for the argument (`{}` and `{N}` are then plain text).
    #[arg(short = 'I', long = "replace", value_name = "STR")]
    pub replace: Option<String>,
    /// More replacement strings: {..} {...} {/..} {/...} {+/} {+.} {+..} {+...}.
    #[arg(long)]
    pub plus: bool,
    /// Quote the command: each word is passed as one literal word (no shell syntax).
    #[arg(short = 'q', long = "quote")]
    pub quote: bool,
    /// As many arguments per command line as fit, `{}` repeating the whole word around it for
    /// each (`pre{}post` becomes `pre1post pre2post`); spread evenly over the job slots.
    #[arg(short = 'X', conflicts_with = "multi")]
    pub context: bool,
    /// As many arguments per command line as fit, `{}` standing for all of them separated by
    /// spaces; spread evenly over the job slots.
    #[arg(short = 'm')]
    pub multi: bool,
    /// With -X or -m: every command line shorter than N bytes (K M G ×1024, k m g ×1000);
    /// at most, and by default, 131072 (the most one exec argument may hold on Linux).
    #[arg(short = 's', long = "max-chars", value_name = "N")]
    pub max_chars: Option<String>,
    // Output and control options of GNU parallel (issue 10); kept together.
    /// Print each job's output as it comes, unbuffered (lines of jobs may mix).
    #[arg(short = 'u', long = "ungroup")]
    pub ungroup: bool,
    /// Print each job's command on standard output before its output.
    #[arg(short = 'v')]
    pub verbose: bool,
    /// Prefix each output line with STR and a tab; STR may hold replacement strings ({}, {1},
    /// {#}, ...). Implies --tag.
    #[arg(long, value_name = "STR")]
    pub tagstring: Option<String>,
    /// Run the jobs at niceness N (set, as in GNU parallel, not added to pardo's own).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub nice: Option<i32>,
    /// Accepted and ignored (GNU parallel's citation notice; pardo prints none).
    #[arg(long = "will-cite")]
    pub will_cite: bool,
    /// Accepted and ignored (GNU parallel's citation notice; pardo prints none).
    #[arg(long)]
    pub citation: bool,
    /// Accepted: jobs run here, with the whole environment of pardo, NAME included.
    #[arg(long = "env", value_name = "NAME")]
    pub env: Vec<String>,
    /// Not supported (exit 255): pardo runs jobs on other machines with --cluster instead.
    /// `-S :` (this machine) is accepted.
    #[arg(short = 'S', long = "sshlogin", value_name = "LOGIN", aliases = ["sshloginfile", "slf"])]
    pub sshlogin: Vec<String>,
    /// The command, then its input sources.
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    pub rest: Vec<OsString>,
}

/// One input source after the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `::: a b c`
    Values(Vec<OsString>),
    /// `:::: FILE` (`-` is stdin)
    File(PathBuf),
}

/// An input source and whether it is linked to the one before (`:::+`, `::::+`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Where the values come from.
    pub source: Source,
    /// Paired with the previous source instead of crossed.
    pub linked: bool,
}

/// Splits the trailing words into the command and its input sources.
pub fn split_rest(rest: &[OsString]) -> (Vec<OsString>, Vec<Group>) {
    let is_sep = |w: &OsStr| matches!(w.as_encoded_bytes(), b":::" | b"::::" | b":::+" | b"::::+");
    let cut = rest.iter().position(|w| is_sep(w)).unwrap_or(rest.len());
    let command = rest[..cut].to_vec();
    let mut groups = Vec::new();
    let mut i = cut;
    while i < rest.len() {
        let sep = rest[i].as_encoded_bytes().to_vec();
        let end = rest[i + 1..]
            .iter()
            .position(|w| is_sep(w))
            .map_or(rest.len(), |p| i + 1 + p);
        let words = &rest[i + 1..end];
        let linked = sep.ends_with(b"+");
        if sep.starts_with(b"::::") {
            for (k, f) in words.iter().enumerate() {
                groups.push(Group {
                    source: Source::File(PathBuf::from(f)),
                    linked: linked && k == 0,
                });
            }
        } else {
            groups.push(Group {
                source: Source::Values(words.to_vec()),
                linked,
            });
        }
        i = end;
    }
    (command, groups)
}

/// How replacement strings are spelled for this run: `-I`, `--plus`, `-q` and the column
/// names `--header` read.
pub fn syntax(a: &Args, names: Vec<Vec<u8>>) -> anyhow::Result<pardo::command::Syntax> {
    if a.replace.as_deref() == Some("") {
        anyhow::bail!("invalid -I \"\": the replacement string cannot be empty");
    }
    Ok(pardo::command::Syntax {
        replace: a.replace.clone().map(String::into_bytes),
        names,
        plus: a.plus,
        quote: a.quote,
        context: a.context,
    })
}

/// Parses `-j`: N, N%, +N, -N (cores ± N); 0 means as many as the system allows (256 here).
pub fn parse_jobs(spec: Option<&str>, cores: usize) -> Result<usize, String> {
    let Some(spec) = spec else { return Ok(cores) };
    let bad = || format!("invalid -j {spec:?}: expected N, N%, +N or -N");
    let cores = cores as i64;
    let n = if let Some(p) = spec.strip_suffix('%') {
        let p: f64 = p.parse().map_err(|_| bad())?;
        if !p.is_finite() {
            return Err(bad());
        }
        (cores as f64 * p / 100.0)
            .floor()
            .clamp(i64::MIN as f64, i64::MAX as f64) as i64
    } else if let Some(n) = spec.strip_prefix('+') {
        n.parse::<i64>()
            .ok()
            .and_then(|n| cores.checked_add(n))
            .ok_or_else(bad)?
    } else if spec.starts_with('-') {
        spec.parse::<i64>()
            .ok()
            .and_then(|n| cores.checked_add(n))
            .ok_or_else(bad)?
    } else {
        match spec.parse::<i64>().map_err(|_| bad())? {
            0 => 256,
            n => n,
        }
    };
    if n > MAX_JOBS as i64 {
        return Err(format!(
            "invalid -j {spec:?}: {n} jobs at once is more than pardo runs ({MAX_JOBS}); each \
             job slot is a thread with its own pipes"
        ));
    }
    Ok(n.max(1) as usize)
}

/// The most jobs `-j` may ask for at once.
pub const MAX_JOBS: usize = 4096;

/// How many jobs automatic concurrency may run at once unless `--max-jobs` says otherwise.
pub const DEFAULT_MAX_JOBS: usize = 256;

/// How many jobs at once: a count, or pardo's own choice up to a maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jobs {
    /// Exactly this many (`-j N`).
    Fixed(usize),
    /// Chosen and steered while the run goes, never more than this (`-j auto`, the default).
    Auto { max: usize },
}

/// Parses `-j` with `--max-jobs`: absent or `auto` is automatic; anything else as [`parse_jobs`].
pub fn parse_concurrency(
    spec: Option<&str>,
    max_jobs: usize,
    cores: usize,
) -> Result<Jobs, String> {
    match spec {
        None | Some("auto") => {
            if max_jobs == 0 || max_jobs > MAX_JOBS {
                return Err(format!(
                    "invalid --max-jobs {max_jobs}: expected 1 to {MAX_JOBS}"
                ));
            }
            Ok(Jobs::Auto { max: max_jobs })
        }
        Some(_) => parse_jobs(spec, cores).map(Jobs::Fixed),
    }
}

/// Parses `--load`: a load average, N% of the cores, or +N / -N cores; 0 is 0.01 (GNU
/// parallel's reading: 0 would never start anything).
pub fn parse_load(spec: &str, cores: usize) -> Result<f64, String> {
    let bad = || format!("invalid --load {spec:?}: expected a number, N%, +N or -N");
    let num = |t: &str| -> Result<f64, String> {
        t.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(bad)
    };
    let cores = cores as f64;
    let max = if let Some(p) = spec.strip_suffix('%') {
        cores * num(p)? / 100.0
    } else if let Some(n) = spec.strip_prefix('+') {
        cores + num(n)?
    } else if spec.starts_with('-') {
        cores + num(spec)?
    } else {
        num(spec)?
    };
    if max < 0.0 {
        return Err(bad());
    }
    Ok(if max == 0.0 { 0.01 } else { max })
}

/// Parses a number of seconds (`--timeout`, `--grace`): finite, not negative, and no more than a
/// [`Duration`] holds. `Duration::from_secs_f64` panics on the others; this says what is wrong.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?}: expected a finite number of seconds >= 0"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?}: too many seconds"))
}

/// `--timeout`: a fixed time, or a percentage of the median run time of the jobs so far.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Timeout {
    /// Stop a job after this long.
    Fixed(Duration),
    /// Stop a job after this percentage of the median job time (none until a job finished).
    Percent(f64),
}

/// Parses `--timeout`: seconds, or `P%` (GNU parallel's median-relative form).
pub fn parse_timeout(s: &str) -> Result<Timeout, String> {
    match s.trim().strip_suffix('%') {
        Some(p) => match p.parse::<f64>() {
            Ok(p) if p.is_finite() && p > 0.0 => Ok(Timeout::Percent(p)),
            _ => Err(format!("{s:?}: expected P% with P a number above 0")),
        },
        // Seconds, or GNU's units (2m, 1h, 1d...).
        None => parse_secs(s)
            .or_else(|_| pardo::command::parse_duration(s))
            .map(Timeout::Fixed),
    }
}

/// Parses `--halt`: `never`, `now|soon,fail=N|success=N|fail=P%|success=P%`, and GNU
/// parallel's short forms (`0` never, `1`/`2` soon/now,fail=1, `-1`/`-2` soon/now,success=1,
/// `P%` soon,fail=P%).
pub fn parse_halt(spec: &str) -> Result<Option<pardo::command::Halt>, String> {
    use pardo::command::{Halt, HaltOn, HaltWhen};
    let long = match spec {
        "never" | "0" => return Ok(None),
        "1" => "soon,fail=1",
        "2" => "now,fail=1",
        "-1" => "soon,success=1",
        "-2" => "now,success=1",
        s if s.ends_with('%') && !s.contains(',') => &format!("soon,fail={s}"),
        s => s,
    };
    let bad = || {
        format!(
            "invalid --halt {spec:?}: expected never, or now|soon,fail=N|success=N|fail=P%|success=P%"
        )
    };
    let (when, cond) = long.split_once(',').ok_or_else(bad)?;
    let when = match when {
        "now" => HaltWhen::Now,
        "soon" => HaltWhen::Soon,
        _ => return Err(bad()),
    };
    let (kind, value) = cond.split_once('=').ok_or_else(bad)?;
    let percent = |p: &str| match p.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(bad()),
    };
    let on = match (kind, value.strip_suffix('%')) {
        ("fail", Some(p)) => HaltOn::FailPercent(percent(p)?),
        ("success", Some(p)) => HaltOn::SuccessPercent(percent(p)?),
        ("fail", None) => HaltOn::Fail(value.parse().map_err(|_| bad())?),
        ("success", None) => HaltOn::Success(value.parse().map_err(|_| bad())?),
        _ => return Err(bad()),
    };
    Ok(Some(Halt { when, on }))
}

/// Parses `-s/--max-chars` for -X and -m: a size below [`pardo::command::MAX_LINE`]; larger
/// values are lowered to it with a warning, as GNU parallel does.
pub fn max_chars(spec: Option<&str>) -> anyhow::Result<usize> {
    let max = pardo::command::MAX_LINE;
    let Some(spec) = spec else { return Ok(max) };
    let n = pardo::command::parse_size(spec)
        .map_err(|e| anyhow::anyhow!("invalid -s/--max-chars {spec:?}: {e}"))?;
    if n == 0 {
        anyhow::bail!("invalid -s/--max-chars {spec:?}: must be at least 1");
    }
    match usize::try_from(n) {
        Ok(n) if n <= max => Ok(n),
        _ => {
            eprintln!("pardo: warning: -s/--max-chars {spec}: lowered to {max}, the most a command line may hold");
            Ok(max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn jobs_forms() {
        assert_eq!(parse_jobs(Some("3"), 2), Ok(3));
        assert_eq!(parse_jobs(Some("50%"), 4), Ok(2));
        assert_eq!(parse_jobs(Some("+1"), 2), Ok(3));
        assert_eq!(parse_jobs(Some("-5"), 2), Ok(1));
        assert_eq!(parse_jobs(None, 2), Ok(2));
        assert!(parse_jobs(Some("x"), 2).is_err());
        // Regression: these panicked (thread spawn failure, integer overflow).
        assert!(parse_jobs(Some("100000000"), 2).is_err());
        assert!(parse_jobs(Some("+9223372036854775807"), 2).is_err());
        assert!(parse_jobs(Some("inf%"), 2).is_err());
        assert_eq!(parse_jobs(Some("4096"), 2), Ok(MAX_JOBS));
        assert_eq!(parse_concurrency(None, 256, 2), Ok(Jobs::Auto { max: 256 }));
        assert_eq!(
            parse_concurrency(Some("auto"), 8, 2),
            Ok(Jobs::Auto { max: 8 })
        );
        assert_eq!(parse_concurrency(Some("3"), 8, 2), Ok(Jobs::Fixed(3)));
        assert!(parse_concurrency(None, 0, 2).is_err());
        assert!(parse_concurrency(Some("auto"), MAX_JOBS + 1, 2).is_err());
    }

    #[test]
    fn seconds_reject_what_a_duration_cannot_hold() {
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_secs("0"), Ok(Duration::ZERO));
        for bad in ["1e20", "1e300", "NaN", "inf", "-inf", "-1", "x", ""] {
            assert!(parse_secs(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn load_forms() {
        assert_eq!(parse_load("1.5", 4), Ok(1.5));
        assert_eq!(parse_load("50%", 4), Ok(2.0));
        assert_eq!(parse_load("+1", 4), Ok(5.0));
        assert_eq!(parse_load("-1", 4), Ok(3.0));
        assert_eq!(parse_load("0", 4), Ok(0.01));
        for bad in ["x", "-5", "inf", "NaN%", ""] {
            assert!(parse_load(bad, 4).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn halt_percent_must_be_a_percentage() {
        use pardo::command::{HaltOn, HaltWhen};
        assert!(parse_halt("now,fail=50%").is_ok());
        let short = |s| parse_halt(s).unwrap().map(|h| (h.when, h.on));
        assert_eq!(short("0"), None);
        assert_eq!(short("2"), Some((HaltWhen::Now, HaltOn::Fail(1))));
        assert_eq!(short("-1"), Some((HaltWhen::Soon, HaltOn::Success(1))));
        assert_eq!(
            short("5%"),
            Some((HaltWhen::Soon, HaltOn::FailPercent(5.0)))
        );
        for bad in [
            "now,fail=NaN%",
            "now,fail=inf%",
            "now,fail=-1%",
            "now,fail=101%",
            "now,success=x%",
            "3",
            "later,fail=1",
        ] {
            assert!(parse_halt(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn sources_split_and_link() {
        let w = |s: &str| s.split(' ').map(OsString::from).collect::<Vec<_>>();
        let (cmd, groups) = split_rest(&w("echo {} ::: a b :::+ 1 2 :::: f"));
        assert_eq!(cmd, w("echo {}"));
        assert_eq!(groups.len(), 3);
        assert!(groups[1].linked && !groups[2].linked);
        assert_eq!(groups[2].source, Source::File("f".into()));
    }
}
