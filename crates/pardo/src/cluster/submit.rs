//! [`Submitter`]: puts a run's jobs on Redis and hands on their results as a local run would.

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::Value;

use super::protocol::{
    self, client, decode, encode, scripts, Attempt, Entry, JobEntry, Keys, Link, Output,
    ResultEntry, Settings, GROUP, RUNS,
};
use super::ClusterError;
use crate::command::{Events, Finished, JobArgs, JobDone, RunControl, RunOutcome, Spool, Template};
use crate::monitor::{Recorder, TaskRecord, WorkerRecorder};
use crate::task::TaskId;

/// How a cluster run runs.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Tries per job that ends badly, across workers (`--retries`; 0 and 1 mean one).
    pub tries: u32,
    /// Attempts a job may lose with their worker (killed, cut off past its lease) before it
    /// goes to the dead-letter list.
    pub lost: u32,
    /// Per-attempt time limit (`--timeout`).
    pub timeout: Option<Duration>,
    /// Time between TERM and KILL when a job is stopped.
    pub grace: Duration,
    /// How long a job's worker may go silent before another worker takes the job.
    pub lease: Duration,
    /// Jobs on the stream without a handed-on result at most: inputs are read as results come
    /// back, so neither the submitter nor Redis grows with the input.
    pub window: usize,
    /// Use a Redis off this machine without credentials.
    pub insecure: bool,
    /// How long to keep trying to reach Redis before giving up.
    pub patience: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            tries: 1,
            lost: 3,
            timeout: None,
            grace: Duration::from_millis(500),
            lease: Duration::from_secs(1),
            window: 20_000,
            insecure: false,
            patience: Duration::from_secs(60),
        }
    }
}

/// How a cluster run ended: the local runner's outcome and what the queue saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClusterOutcome {
    /// Jobs handed on and how many failed, as [`Runner`](crate::command::Runner) counts them.
    pub run: RunOutcome,
    /// Results accepted by Redis (one per job).
    pub accepted: u64,
    /// Results dropped because another was first (a worker that lost its lease).
    pub dropped: u64,
    /// Attempts put back for another try (`--retries`).
    pub retried: u64,
    /// Jobs sent to the dead-letter list.
    pub dead: Vec<u64>,
    /// Jobs skipped because an earlier submitter of this run handed them on already.
    pub skipped: u64,
    /// Every job of the run was handed on; its keys were deleted.
    pub finished: bool,
}

/// Runs a stream of jobs on the workers of a Redis; see the [module docs](super).
///
/// ```no_run
/// use pardo::cluster::{ClusterOptions, Submitter};
/// use pardo::command::{Events, JobDone, RunControl, Template};
/// use pardo::monitor::{Recorder, Retention, RunRecord};
///
/// struct Print;
/// impl Events for Print {
///     fn done(&self, d: JobDone<'_>) -> std::io::Result<()> {
///         d.finished.stdout.copy_to(&mut std::io::stdout())
///     }
/// }
/// let recorder = Recorder::new(RunRecord::now("command", 2), true, Retention::SummaryOnly);
/// let submitter = Submitter::new(
///     "redis://127.0.0.1:6379/0",
///     Template::parse(&["echo".into()]),
///     ClusterOptions::default(),
///     recorder,
/// )?;
/// eprintln!("run {}", submitter.run_id());
/// let inputs = ["a", "b"].map(|s| Ok(vec![s.as_bytes().to_vec()]));
/// let out = submitter.run(inputs.into_iter(), &Print, &RunControl::new()?)?;
/// assert_eq!(out.accepted, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Submitter {
    client: redis::Client,
    keys: Keys,
    template: Template,
    opts: ClusterOptions,
    recorder: Recorder,
    resumed: bool,
}

/// Results read at most per call.
const READ_BATCH: usize = 512;
/// How long to let results gather after a read that found few.
const LINGER: Duration = Duration::from_millis(5);

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Submitter {
    /// A new run on the Redis at `url` (`redis://[user:password@]host:port/db`).
    pub fn new(
        url: &str,
        template: Template,
        opts: ClusterOptions,
        recorder: Recorder,
    ) -> Result<Submitter, ClusterError> {
        Submitter::open(
            url,
            &protocol::new_run_id(),
            false,
            template,
            opts,
            recorder,
        )
    }

    /// Takes up run `run_id` again after its submitter stopped: submits what was never
    /// submitted and hands on every result not handed on before. The run's settings are the
    /// ones it was started with.
    pub fn resume(
        url: &str,
        run_id: &str,
        template: Template,
        opts: ClusterOptions,
        recorder: Recorder,
    ) -> Result<Submitter, ClusterError> {
        if !protocol::valid_run_id(run_id) {
            return Err(ClusterError::BadRunId(run_id.into()));
        }
        Submitter::open(url, run_id, true, template, opts, recorder)
    }

    fn open(
        url: &str,
        run_id: &str,
        resumed: bool,
        template: Template,
        opts: ClusterOptions,
        recorder: Recorder,
    ) -> Result<Submitter, ClusterError> {
        let client = client(url, opts.insecure)?;
        let s = Submitter {
            client,
            keys: Keys::new(run_id),
            template,
            opts,
            recorder,
            resumed,
        };
        let mut link = s.link();
        let keys = &s.keys;
        if resumed {
            let fields: Vec<(String, String)> =
                link.call(|c| redis::cmd("HGETALL").arg(keys.meta()).query(c))?;
            if fields.is_empty() {
                return Err(ClusterError::NoSuchRun(run_id.into()));
            }
            Settings::from_fields(run_id, &fields)?;
        } else {
            let settings = Settings {
                tries: s.opts.tries.max(1),
                lost: s.opts.lost,
                timeout: s.opts.timeout,
                grace: s.opts.grace,
                lease: s.opts.lease,
            };
            link.call(|c| {
                redis::cmd("HSET")
                    .arg(keys.meta())
                    .arg(settings.to_fields())
                    .query::<()>(c)
            })?;
        }
        protocol::announce(&mut link, RUNS, keys)?;
        Ok(s)
    }

    fn link(&self) -> Link {
        Link::new(self.client.clone(), self.opts.patience)
    }

    /// The run's id, for `--resume`.
    pub fn run_id(&self) -> &str {
        &self.keys.run
    }

    /// Submits every argument list from `inputs` (job numbers count from 1 in input order),
    /// hands each result to `events` as [`Runner`](crate::command::Runner) would, and returns
    /// when every job has a result handed on — or at the first interrupt, leaving the run on
    /// Redis for [`Submitter::resume`]. An input error stops the submission; it is returned
    /// once the jobs submitted before it are handed on.
    pub fn run(
        &self,
        mut inputs: impl Iterator<Item = io::Result<Vec<Vec<u8>>>>,
        events: &dyn Events,
        control: &RunControl,
    ) -> Result<ClusterOutcome, ClusterError> {
        let mut link = self.link();
        let keys = &self.keys;
        let mut out = ClusterOutcome::default();
        let mut hand = HandOn::new(&self.recorder);
        let mut cursor: String = link
            .call(|c| {
                redis::cmd("HGET")
                    .arg(keys.meta())
                    .arg("cursor")
                    .query::<Option<String>>(c)
            })?
            .unwrap_or_else(|| "0-0".into());
        let mut seq = 0u64;
        let mut inputs_done = false;
        let mut input_error = None;
        let mut outstanding = 0u64;
        let mut last_trim = Instant::now();
        let mut last_read = 0;
        // A resumed run submits everything before reading results, so that every job handed
        // on by an earlier submitter is known as skipped before any result arrives.
        let window = if self.resumed {
            u64::MAX
        } else {
            self.opts.window.max(1) as u64
        };
        loop {
            if control.level() > 0 {
                out.run.interrupted = true;
                break;
            }
            if !inputs_done && outstanding < window {
                let room = (window - outstanding).min(512) as usize;
                let mut batch: Vec<(u64, Vec<u8>)> = Vec::with_capacity(room);
                while batch.len() < room {
                    match inputs.next() {
                        Some(Ok(args)) => {
                            seq += 1;
                            batch.push((seq, self.entry(seq, args)?));
                        }
                        Some(Err(e)) => {
                            input_error = Some(crate::command::CommandError::Input(e));
                            inputs_done = true;
                            break;
                        }
                        None => {
                            inputs_done = true;
                            break;
                        }
                    }
                }
                if !batch.is_empty() {
                    let codes: Vec<i64> = link.call(|c| {
                        let mut inv = scripts().submit.prepare_invoke();
                        inv.key(keys.submitted())
                            .key(keys.jobs())
                            .key(keys.handled());
                        for (s, p) in &batch {
                            inv.arg(*s).arg(p.as_slice());
                        }
                        inv.invoke(c)
                    })?;
                    for ((s, _), code) in batch.iter().zip(codes) {
                        if code == 2 {
                            out.skipped += 1;
                            events.skipped(*s);
                        } else {
                            outstanding += 1;
                            self.recorder.submit(1);
                            events.started(*s);
                        }
                    }
                }
            }
            if inputs_done && outstanding == 0 {
                break;
            }
            let submitting = !inputs_done && outstanding < window;
            // Results come in one by one as jobs end: after a read that found only a few,
            // wait a moment so the next one takes many (reading, checking and marking cost a
            // round trip each, however many results they carry).
            if !submitting && (1..READ_BATCH / 4).contains(&last_read) {
                std::thread::sleep(LINGER);
            }
            let got: Value = link.call(|c| {
                let mut cmd = redis::cmd("XREAD");
                cmd.arg("COUNT").arg(READ_BATCH);
                if !submitting {
                    cmd.arg("BLOCK").arg(250);
                }
                cmd.arg("STREAMS").arg(keys.results()).arg(&cursor).query(c)
            })?;
            let batch: Vec<Entry> = protocol::streams(&got)
                .into_iter()
                .flat_map(|(_, e)| e)
                .collect();
            last_read = batch.len();
            if let Some(last) = batch.last() {
                let last = last.id.clone();
                let n = self.hand_on(&mut link, &batch, &last, events, &mut hand)?;
                outstanding = outstanding.saturating_sub(n);
                cursor = last;
            }
            if last_trim.elapsed() > Duration::from_secs(1) {
                last_trim = Instant::now();
                trim(&mut link, keys, &cursor)?;
            }
        }
        let stats: HashMap<String, u64> =
            link.call(|c| redis::cmd("HGETALL").arg(keys.stats()).query(c))?;
        out.accepted = stats.get("accepted").copied().unwrap_or(0);
        out.dropped = stats.get("dropped").copied().unwrap_or(0);
        out.retried = stats.get("retried").copied().unwrap_or(0);
        out.dead = link.call(|c| {
            redis::cmd("LRANGE")
                .arg(keys.dead())
                .arg(0)
                .arg(-1)
                .query(c)
        })?;
        out.run.jobs = hand.jobs;
        out.run.failed = hand.failed;
        if !out.run.interrupted && input_error.is_none() {
            protocol::end_run(&mut link, RUNS, keys)?;
            out.finished = true;
        }
        if let Some(e) = input_error {
            return Err(e.into());
        }
        Ok(out)
    }

    /// The stream entry for job `seq`.
    fn entry(&self, seq: u64, args: Vec<Vec<u8>>) -> Result<Vec<u8>, ClusterError> {
        let line = self
            .template
            .render(&JobArgs {
                seq,
                slot: 1,
                args: &args,
            })
            .map_err(|why| crate::command::CommandError::Quote { seq, why })?;
        let argv = line.argv.filter(|a| !a.is_empty()).map(|a| {
            a.into_iter()
                .map(std::os::unix::ffi::OsStringExt::into_vec)
                .collect()
        });
        encode(&JobEntry {
            seq,
            args,
            shell: line.shell,
            argv,
            submitted_unix_ns: unix_ns(),
            failed: 0,
            history: Vec::new(),
        })
    }

    /// Hands on the results in `batch` not handed on before, then marks them handled and
    /// moves the cursor to `last`. Returns how many were handed on now.
    fn hand_on(
        &self,
        link: &mut Link,
        batch: &[Entry],
        last: &str,
        events: &dyn Events,
        hand: &mut HandOn,
    ) -> Result<u64, ClusterError> {
        let keys = &self.keys;
        let seqs: Vec<u64> = batch.iter().map(|e| e.seq().unwrap_or(0)).collect();
        let seen: Vec<u8> = link.call(|c| {
            let mut p = redis::pipe();
            for s in &seqs {
                p.cmd("GETBIT").arg(keys.handled()).arg(*s);
            }
            p.query(c)
        })?;
        let mut chunks = Vec::new();
        let mut n = 0;
        for ((entry, &s), seen) in batch.iter().zip(&seqs).zip(seen) {
            if seen == 1 || s == 0 {
                continue;
            }
            let Some(res) = entry.get("res") else {
                continue;
            };
            let r: ResultEntry = decode(res)?;
            let stdout = read_output(link, &r.stdout, &mut chunks)?;
            let stderr = read_output(link, &r.stderr, &mut chunks)?;
            hand.one(&self.recorder, r, stdout, stderr, events)?;
            n += 1;
        }
        link.call(|c| {
            let mut p = redis::pipe();
            for s in &seqs {
                p.cmd("SETBIT").arg(keys.handled()).arg(*s).arg(1).ignore();
            }
            p.cmd("HSET")
                .arg(keys.meta())
                .arg("cursor")
                .arg(last)
                .ignore();
            if !chunks.is_empty() {
                p.cmd("DEL").arg(&chunks[..]).ignore();
            }
            p.query::<()>(c)
        })?;
        Ok(n)
    }
}

/// Trims `jobs` below the oldest entry still pending or not yet delivered, and `results`
/// below the cursor. Used by the submitter and the cluster pool.
pub(super) fn trim(link: &mut Link, keys: &Keys, cursor: &str) -> Result<(), ClusterError> {
    // The group's last delivered id first: anything delivered after this read is newer.
    let groups: Value =
        link.call(|c| redis::cmd("XINFO").arg("GROUPS").arg(keys.jobs()).query(c))?;
    let Some(delivered) = last_delivered(&groups) else {
        return Ok(());
    };
    let pending: Value =
        link.call(|c| redis::cmd("XPENDING").arg(keys.jobs()).arg(GROUP).query(c))?;
    let oldest = oldest_pending(&pending);
    let min = match oldest {
        Some(p) if id_less(&p, &delivered) => p,
        _ => delivered,
    };
    link.call(|c| {
        redis::pipe()
            .cmd("XTRIM")
            .arg(keys.jobs())
            .arg("MINID")
            .arg(&min)
            .ignore()
            .cmd("XTRIM")
            .arg(keys.results())
            .arg("MINID")
            .arg(cursor)
            .ignore()
            .query::<()>(c)
    })
}

fn id_less(a: &str, b: &str) -> bool {
    protocol::id_order(a) < protocol::id_order(b)
}

/// `last-delivered-id` of group [`GROUP`] in an `XINFO GROUPS` reply.
fn last_delivered(v: &Value) -> Option<String> {
    let groups: Vec<HashMap<String, Value>> = redis::from_redis_value(v.clone()).ok()?;
    let g = groups.iter().find(|g| {
        g.get("name")
            .and_then(|n| redis::from_redis_value::<String>(n.clone()).ok())
            .as_deref()
            == Some(GROUP)
    })?;
    redis::from_redis_value(g.get("last-delivered-id")?.clone()).ok()
}

/// The smallest pending id from the summary form of `XPENDING`, if any is pending.
fn oldest_pending(v: &Value) -> Option<String> {
    let Value::Array(a) = v else { return None };
    let count: i64 = redis::from_redis_value(a.first()?.clone()).ok()?;
    if count == 0 {
        return None;
    }
    redis::from_redis_value(a.get(1)?.clone()).ok()
}

/// Reads one stream of a result's output; chunk lists are noted for deletion.
fn read_output(
    link: &mut Link,
    o: &Output,
    chunks: &mut Vec<String>,
) -> Result<Spool, ClusterError> {
    match o {
        Output::Inline(b) => Ok(Spool::from(b.clone())),
        Output::Chunks { key, count } => {
            let mut s = Spool::new();
            for i in 0..*count {
                let part: Vec<u8> = link.call(|c| redis::cmd("LINDEX").arg(key).arg(i).query(c))?;
                s.write_all(&part)?;
            }
            chunks.push(key.clone());
            Ok(s)
        }
    }
}

/// What the submitter keeps while handing results on: one recorder writer per worker seen.
struct HandOn {
    workers: HashMap<String, u32>,
    writers: HashMap<u32, WorkerRecorder>,
    /// The recorder's clock and the Unix clock read at the same moment.
    base: (u64, u64),
    jobs: u64,
    failed: u64,
}

impl HandOn {
    fn new(recorder: &Recorder) -> HandOn {
        HandOn {
            workers: HashMap::new(),
            writers: HashMap::new(),
            base: (recorder.now_ns(), unix_ns()),
            jobs: 0,
            failed: 0,
        }
    }

    /// A Unix time in ns on the recorder's clock (never before the recorder started).
    fn clock(&self, unix: u64) -> u64 {
        (self.base.0 + unix).saturating_sub(self.base.1)
    }

    fn one(
        &mut self,
        recorder: &Recorder,
        r: ResultEntry,
        stdout: Spool,
        stderr: Spool,
        events: &dyn Events,
    ) -> Result<(), ClusterError> {
        let input = crate::command::display_input(&r.args);
        let submitted_ns = self.clock(r.submitted_unix_ns);
        for a in &r.attempts {
            let next = self.workers.len() as u32 + 1;
            let w = *self.workers.entry(a.worker.clone()).or_insert(next);
            let started_ns = self.clock(a.start_unix_ns).max(submitted_ns);
            let writer = self.writers.entry(w).or_insert_with(|| recorder.worker(w));
            writer.write(TaskRecord {
                id: TaskId(r.seq),
                attempt: a.attempt,
                items: 1,
                input: input.clone(),
                worker: w,
                submitted_ns,
                started_ns,
                finished_ns: started_ns + a.runtime_ns,
                cpu_user_ns: a.cpu_user_ns,
                cpu_sys_ns: a.cpu_sys_ns,
                cpu_wait_ns: None,
                max_rss_bytes: Some(a.max_rss_bytes),
                exit_code: a.exit_code,
                signal: a.signal,
                output_bytes: Some(a.output_bytes),
                outcome: crate::command::outcome_of(&finished(a, Spool::new(), Spool::new())),
                host: (!a.host.is_empty()).then(|| a.host.clone()),
            });
        }
        let (fin, slot, start_unix_s, runtime) = match r.attempts.last() {
            Some(a) => (
                finished(a, stdout, stderr),
                a.slot,
                a.start_unix_ns as f64 / 1e9,
                Duration::from_nanos(a.runtime_ns),
            ),
            // Dead without an attempt that ended: every worker it ran on was lost.
            None => (
                Finished {
                    signal: Some(libc::SIGKILL),
                    stdout,
                    stderr,
                    ..Finished::default()
                },
                0,
                r.submitted_unix_ns as f64 / 1e9,
                Duration::ZERO,
            ),
        };
        let host = r.attempts.last().map(|a| a.host.as_str());
        let done = JobDone {
            seq: r.seq,
            slot,
            host,
            args: &r.args,
            command: &r.shell,
            start_unix_s,
            runtime,
            attempts: r.started.max(1),
            finished: fin,
        };
        let ok = done.ok() && !r.dead;
        events
            .done(done)
            .map_err(crate::command::CommandError::Events)?;
        self.jobs += 1;
        if !ok {
            self.failed += 1;
        }
        Ok(())
    }
}

fn finished(a: &Attempt, stdout: Spool, stderr: Spool) -> Finished {
    Finished {
        exit_code: a.exit_code,
        signal: a.signal,
        timed_out: a.timed_out,
        cpu_user_ns: a.cpu_user_ns,
        cpu_sys_ns: a.cpu_sys_ns,
        max_rss_bytes: a.max_rss_bytes,
        stdout,
        stderr,
        output_bytes: a.output_bytes,
        stdout_bytes: a.stdout_bytes,
        ..Finished::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_compare_as_numbers() {
        assert!(id_less("9-0", "10-0"));
        assert!(id_less("10-2", "10-10"));
        assert!(!id_less("10-0", "10-0"));
    }
}
