//! [`Worker`]: takes jobs from every run on a Redis and runs them with the local job runner.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::lease::{Leases, Taker};
use super::protocol::{
    self, client, decode, encode, Attempt, Finish, JobEntry, Keys, Link, Output, ResultEntry,
    Settings, CHUNK, RUNS,
};
use super::ClusterError;
use crate::command::job::{self, Capture, Finished, Limits, StopSignal};
use crate::command::{Guard, Program, RunControl, Spool, Stdin};
use crate::sync::{lock, wait_timeout};

/// How a worker works.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Jobs at once (`-j`), at least 1.
    pub slots: usize,
    /// Use a Redis off this machine without credentials.
    pub insecure: bool,
    /// The consumer name; by default `host-pid-random`.
    pub name: Option<String>,
    /// Told of every job's process group, so jobs die with the worker even on SIGKILL.
    pub guard: Option<Arc<Guard>>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            slots: 1,
            insecure: false,
            name: None,
            guard: None,
        }
    }
}

/// What a worker did, counted since it started.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WorkerStats {
    /// Attempts run to their end.
    pub attempts: u64,
    /// Results Redis accepted from this worker.
    pub accepted: u64,
    /// Results dropped because another worker's was first (this worker's lease ran out).
    pub dropped: u64,
    /// Entries taken over from workers that went silent.
    pub reclaimed: u64,
    /// Entries found taken by another worker when renewing.
    pub lost: u64,
}

/// A worker process: serves every run on one Redis until told to stop.
///
/// ```no_run
/// use pardo::cluster::{Worker, WorkerOptions};
/// use pardo::command::RunControl;
///
/// let worker = Worker::new("redis://127.0.0.1:6379/0", WorkerOptions { slots: 4, ..Default::default() })?;
/// let control = RunControl::new()?; // interrupt() it (e.g. from a signal handler) to stop
/// let stats = worker.serve(&control)?;
/// eprintln!("{} attempts", stats.attempts);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Worker {
    client: redis::Client,
    opts: WorkerOptions,
    name: String,
    /// This machine's name, in every attempt's record.
    host: String,
}

/// One entry taken, waiting for a slot.
struct Task {
    keys: Keys,
    settings: Arc<Settings>,
    id: String,
    job: JobEntry,
}

impl Task {
    /// This task's attempt ended `how`, with the chunk lists of its output.
    fn ended(&self, how: Finish, chunks: Vec<String>) -> Ended {
        Ended {
            keys: self.keys.clone(),
            id: self.id.clone(),
            how,
            chunks,
        }
    }
}

/// What Redis said to a slot's script that ends one attempt and starts the next.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Run it: this is its attempt number.
    Start(u32),
    /// Not this worker's to run (or Redis out of reach: the entry stays pending).
    Refused,
    /// Redis did not have the script (it restarted): nothing was done.
    Unsent,
}

/// An attempt that ended, sent with its slot's next start (one round trip for both).
struct Ended {
    keys: Keys,
    id: String,
    how: Finish,
    /// Chunk lists of its output, deleted if the result is dropped.
    chunks: Vec<String>,
}

/// Entries taken ahead of the slots cover about this much of their work: enough that a slot
/// finds its next job queued instead of waiting for a read, little enough that a worker never
/// sits on more work than this that an idle worker could have done.
const AHEAD_FOR: Duration = Duration::from_millis(20);
/// At most this many entries ahead per slot, however short the jobs.
const AHEAD_MAX_PER_SLOT: usize = 32;

/// The start of `t`'s attempt, as [`protocol::step`] takes it.
fn start_of(t: &Task) -> [(&str, u64); 1] {
    [(t.id.as_str(), t.job.seq)]
}

/// Entries to take ahead per slot when a slot spends `cycle_ns` on each.
fn ahead_per_slot(cycle_ns: u64) -> usize {
    let n = AHEAD_FOR.as_nanos() as u64 / cycle_ns.max(1);
    n.clamp(1, AHEAD_MAX_PER_SLOT as u64) as usize
}

struct Shared<'a> {
    queue: Mutex<VecDeque<Task>>,
    /// Signalled when a task is queued, when the queue runs low and when the worker stops.
    moved: Condvar,
    busy: AtomicUsize,
    slots: usize,
    /// Entries to hold beyond the slots (see [`AHEAD_FOR`]).
    ahead: AtomicUsize,
    /// A slot's time per entry (start, run, end), smoothed: what `ahead` follows.
    cycle_ns: AtomicU64,
    /// Shared with every link, so that a stop ends their retries while Redis is away.
    stop: Arc<AtomicBool>,
    leases: Leases,
    control: &'a RunControl,
    attempts: AtomicU64,
    accepted: AtomicU64,
    dropped: AtomicU64,
}

impl Shared<'_> {
    /// Entries held (queued or running) at or below which the fetcher reads more.
    fn low_water(&self) -> usize {
        self.slots + self.ahead.load(Ordering::Relaxed) / 2
    }

    /// Wakes the fetcher when the entries held ran low; `queued` read under the queue lock.
    fn note_taken(&self, queued: usize) {
        if queued + self.busy.load(Ordering::SeqCst) <= self.low_water() {
            self.moved.notify_all();
        }
    }

    /// Folds a slot's time for one entry into the smoothed time per entry, and sets the
    /// entries to take ahead from it.
    fn note_cycle(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        let old = self.cycle_ns.load(Ordering::Relaxed);
        let now = if old == 0 { ns } else { old - old / 8 + ns / 8 };
        self.cycle_ns.store(now, Ordering::Relaxed);
        self.ahead
            .store(self.slots * ahead_per_slot(now), Ordering::Relaxed);
    }

    /// The next queued task, counted busy; with `wait`, waits for one. None when there is
    /// none (without `wait`) or the worker stops.
    fn take(&self, wait: bool) -> Option<Task> {
        let mut q = lock(&self.queue);
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return None;
            }
            if let Some(t) = q.pop_front() {
                self.busy.fetch_add(1, Ordering::SeqCst);
                self.note_taken(q.len());
                return Some(t);
            }
            if !wait {
                return None;
            }
            q = wait_timeout(&self.moved, q, Duration::from_millis(100));
        }
    }
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub(super) fn default_name(host: &str) -> String {
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &protocol::new_run_id()[..6]
    )
}

impl Worker {
    /// A worker for the Redis at `url`.
    pub fn new(url: &str, opts: WorkerOptions) -> Result<Worker, ClusterError> {
        let client = client(url, opts.insecure)?;
        let host = crate::monitor::record::host_name();
        let name = opts.name.clone().unwrap_or_else(|| default_name(&host));
        Ok(Worker {
            client,
            opts,
            name,
            host,
        })
    }

    /// The consumer name this worker reads under.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn link(&self, stop: &Arc<AtomicBool>) -> Link {
        // A worker waits for Redis as long as it takes (a restart, a network cut), unless it
        // is told to stop.
        Link::new(self.client.clone(), Duration::from_secs(365 * 86400)).until(Arc::clone(stop))
    }

    /// Serves until `control` is interrupted: running jobs are then stopped (TERM, KILL after
    /// the grace) and left to other workers, who take them up once the lease runs out.
    pub fn serve(&self, control: &RunControl) -> Result<WorkerStats, ClusterError> {
        let slots = self.opts.slots.max(1);
        let shared = Shared {
            queue: Mutex::new(VecDeque::new()),
            moved: Condvar::new(),
            busy: AtomicUsize::new(0),
            slots,
            ahead: AtomicUsize::new(slots),
            cycle_ns: AtomicU64::new(0),
            stop: Arc::new(AtomicBool::new(false)),
            leases: Leases::default(),
            control,
            attempts: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        };
        let mut reclaimed = 0;
        let result = std::thread::scope(|s| {
            let shared = &shared;
            s.spawn(move || {
                while !shared.stop.load(Ordering::SeqCst) {
                    if control.level() > 0 {
                        shared.stop.store(true, Ordering::SeqCst);
                        shared.moved.notify_all();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            let renew = self.link(&shared.stop);
            s.spawn(move || shared.leases.keep_renewing(renew, &self.name, &shared.stop));
            for slot in 1..=slots as u32 {
                let link = self.link(&shared.stop);
                s.spawn(move || self.slot_loop(slot, link, shared));
            }
            let r = self.fetch_loop(slots, shared, &mut reclaimed);
            shared.stop.store(true, Ordering::SeqCst);
            shared.moved.notify_all();
            r
        });
        self.leave();
        result?;
        Ok(WorkerStats {
            attempts: shared.attempts.load(Ordering::Relaxed),
            accepted: shared.accepted.load(Ordering::Relaxed),
            dropped: shared.dropped.load(Ordering::Relaxed),
            reclaimed,
            lost: shared.leases.lost.load(Ordering::Relaxed),
        })
    }

    /// Removes this worker's consumer from every run where it holds nothing.
    fn leave(&self) {
        protocol::leave(&self.client, RUNS, &self.name);
    }

    fn fetch_loop(
        &self,
        slots: usize,
        shared: &Shared<'_>,
        reclaimed: &mut u64,
    ) -> Result<(), ClusterError> {
        let mut link = self.link(&shared.stop);
        let mut watch = protocol::Runs::new(RUNS);
        let mut taker = Taker::new();
        while !shared.stop.load(Ordering::SeqCst) {
            let runs = watch.now(&mut link)?;
            if runs.is_empty() {
                continue;
            }
            let want = {
                let mut q = lock(&shared.queue);
                loop {
                    // Refill once half the entries ahead are used: one read brings many.
                    let have = q.len() + shared.busy.load(Ordering::SeqCst);
                    if have <= shared.low_water() || shared.stop.load(Ordering::SeqCst) {
                        break (slots + shared.ahead.load(Ordering::Relaxed)).saturating_sub(have);
                    }
                    q = wait_timeout(&shared.moved, q, Duration::from_millis(50));
                }
            };
            if want == 0 {
                continue;
            }
            let (got, gone) =
                taker.take(&mut link, &self.name, runs, &shared.leases, want, reclaimed)?;
            let mut q = lock(&shared.queue);
            for (run, entry) in got {
                let Some(settings) = runs.get(&run) else {
                    continue;
                };
                let job = match entry.get("job").map(decode::<JobEntry>) {
                    Some(Ok(j)) => j,
                    // Not ours to run: leave it pending for a pardo that understands it.
                    _ => continue,
                };
                shared.leases.hold(&run, settings.lease, &entry.id);
                q.push_back(Task {
                    keys: Keys::new(&run),
                    settings: Arc::clone(settings),
                    id: entry.id,
                    job,
                });
            }
            drop(q);
            shared.moved.notify_all();
            if gone {
                watch.again();
            }
        }
        Ok(())
    }

    fn slot_loop(&self, slot: u32, mut link: Link, shared: &Shared<'_>) {
        // The attempt this slot ended last, not yet told to Redis: it goes with the next
        // start, or alone when no job is queued.
        let mut ended: Option<Ended> = None;
        loop {
            let task = match shared.take(false) {
                Some(t) => Some(t),
                None => {
                    if let Some(e) = ended.take() {
                        self.send(&mut link, Some(e), None, shared);
                    }
                    shared.take(true)
                }
            };
            let Some(task) = task else { return };
            let t0 = Instant::now();
            // A task whose lease ran out while it waited here is another worker's now. Redis
            // out of reach past the patience: the entry stays pending and comes back.
            if shared.leases.holds(&task.keys.run, &task.id) {
                ended = match ended.take() {
                    Some(e) if e.keys == task.keys => {
                        self.run_ahead(slot, &mut link, e, &task, shared)
                    }
                    e => self.start_and_run(slot, &mut link, e, &task, shared),
                };
            } else if let Some(e) = ended.take() {
                self.send(&mut link, Some(e), None, shared);
            }
            if ended.is_none() {
                shared.leases.release(&task.keys.run, &task.id);
            }
            shared.note_cycle(t0.elapsed());
            shared.busy.fetch_sub(1, Ordering::SeqCst);
            let q = lock(&shared.queue);
            shared.note_taken(q.len());
        }
    }

    /// Tells Redis that `ended` ended and that `start` starts, in one round trip when both
    /// are of one run, and lets `ended`'s entry go. Returns the attempt number `start` runs
    /// as, or None when it must not run (it has a result, another worker holds it, the run
    /// is over, or Redis is out of reach).
    fn send(
        &self,
        link: &mut Link,
        ended: Option<Ended>,
        start: Option<&Task>,
        shared: &Shared<'_>,
    ) -> Option<u32> {
        let mut started = None;
        if let Some(e) = &ended {
            let together = start.filter(|t| t.keys == e.keys);
            let starts = together.map(start_of);
            let codes = protocol::step(
                link,
                &e.keys,
                &self.name,
                &[(e.id.as_str(), &e.how)],
                starts.as_ref().map_or(&[][..], |s| &s[..]),
            );
            let codes = codes.unwrap_or_default();
            self.ended(link, e, codes.first().copied(), shared);
            if together.is_some() {
                started = Some(codes.get(1).copied());
            }
        }
        if let Some(e) = &ended {
            shared.leases.release(&e.keys.run, &e.id);
        }
        let code = match (start, started) {
            (None, _) => return None,
            (Some(_), Some(code)) => code,
            (Some(t), None) => protocol::step(link, &t.keys, &self.name, &[], &start_of(t))
                .ok()
                .and_then(|c| c.first().copied()),
        };
        code.filter(|&n| n > 0)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Counts what Redis made of an ended attempt (`code`: 1 taken, 0 dropped, -1 run over,
    /// None when the call failed) and deletes the chunk lists of a result that was dropped.
    fn ended(&self, link: &mut Link, e: &Ended, code: Option<i64>, shared: &Shared<'_>) {
        match (code, &e.how) {
            (Some(1), Finish::Result { .. }) => {
                shared.accepted.fetch_add(1, Ordering::Relaxed);
            }
            (Some(1), Finish::Retry { .. }) => {}
            // Out of reach: the entry stays pending, and its lease runs out.
            (None, _) => {}
            _ => {
                shared.dropped.fetch_add(1, Ordering::Relaxed);
                if !e.chunks.is_empty() {
                    let _ = link.call(|c| redis::cmd("DEL").arg(&e.chunks).query::<()>(c));
                }
            }
        }
    }

    /// Tells Redis that `ended` ended and that `task` starts, and runs it once Redis said it
    /// may: two steps, one after the other.
    fn start_and_run(
        &self,
        slot: u32,
        link: &mut Link,
        ended: Option<Ended>,
        task: &Task,
        shared: &Shared<'_>,
    ) -> Option<Ended> {
        let started = self.send(link, ended, Some(task), shared)?;
        if let Some(dead) = self.dead_letter(task, started) {
            return dead.ok();
        }
        let (start_unix_ns, t0) = (unix_ns(), Instant::now());
        let fin = self.execute(task, None, shared);
        self.record(
            slot,
            link,
            task,
            started,
            &fin,
            start_unix_ns,
            t0.elapsed(),
            shared,
        )
        .unwrap_or(None)
    }

    /// [`start_and_run`](Self::start_and_run) without waiting: the script that ends `ended`
    /// and starts `task` is sent, the job spawned, and Redis's answer read while it runs. A
    /// job Redis says is not this worker's to run (it has a result, another worker holds it,
    /// the run is over) is killed at once and reported by no one; one past its lost
    /// attempts ends in the dead-letter list as it would have. Taking that round trip off the
    /// path between two jobs is what lets a slot run jobs back to back: at `-j 1` it was a
    /// third of a short job's time. The script reaches Redis before the job starts, so a
    /// job that kills its worker still has its attempt counted.
    fn run_ahead(
        &self,
        slot: u32,
        link: &mut Link,
        ended: Ended,
        task: &Task,
        shared: &Shared<'_>,
    ) -> Option<Ended> {
        let how = [(ended.id.as_str(), &ended.how)];
        let cmd = protocol::step_cmd(&ended.keys, &self.name, &how, &start_of(task));
        if link.send(&cmd).is_err() {
            return self.start_and_run(slot, link, Some(ended), task, shared);
        }
        let answer: Cell<Option<Answer>> = Cell::new(None);
        let link = RefCell::new(link);
        let hear = || {
            if let Some(a) = answer.get() {
                return a;
            }
            let codes = link.borrow_mut().recv().and_then(protocol::codes);
            let a = match codes {
                Err(ClusterError::Redis(e)) if protocol::no_script(&e) => Answer::Unsent,
                Err(_) => {
                    self.ended(&mut link.borrow_mut(), &ended, None, shared);
                    Answer::Refused
                }
                Ok(codes) => {
                    self.ended(
                        &mut link.borrow_mut(),
                        &ended,
                        codes.first().copied(),
                        shared,
                    );
                    match codes.get(1) {
                        Some(&n) if n > 0 => Answer::Start(u32::try_from(n).unwrap_or(u32::MAX)),
                        _ => Answer::Refused,
                    }
                }
            };
            answer.set(Some(a));
            a
        };
        let go_ahead = || matches!(hear(), Answer::Start(n) if !self.past_lost(task, n));
        let (start_unix_ns, t0) = (unix_ns(), Instant::now());
        let fin = self.execute(task, Some(&go_ahead), shared);
        let runtime = t0.elapsed();
        // A job that could not be spawned never asked.
        let heard = hear();
        let link = link.into_inner();
        shared.leases.release(&ended.keys.run, &ended.id);
        match heard {
            Answer::Unsent => self.start_and_run(slot, link, Some(ended), task, shared),
            Answer::Refused => None,
            Answer::Start(n) => match self.dead_letter(task, n) {
                Some(dead) => dead.ok(),
                None => self
                    .record(slot, link, task, n, &fin, start_unix_ns, runtime, shared)
                    .unwrap_or(None),
            },
        }
    }

    /// Whether attempt `started` of `task` comes after more lost ones than its run allows.
    fn past_lost(&self, task: &Task, started: u32) -> bool {
        started.saturating_sub(1).saturating_sub(task.job.failed) > task.settings.lost
    }

    /// The dead-letter result of a job whose every worker was lost with it, when attempt
    /// `started` is past the lost ones its run allows: it runs no more.
    fn dead_letter(&self, task: &Task, started: u32) -> Option<Result<Ended, ClusterError>> {
        if !self.past_lost(task, started) {
            return None;
        }
        let job = &task.job;
        let res = ResultEntry {
            seq: job.seq,
            args: job.args.clone(),
            shell: job.shell.clone(),
            submitted_unix_ns: job.submitted_unix_ns,
            attempts: job.history.clone(),
            stdout: Output::Inline(Vec::new()),
            stderr: Output::Inline(Vec::new()),
            dead: true,
            started: started - 1,
        };
        Some(encode(&res).map(|payload| {
            task.ended(
                Finish::Result {
                    seq: job.seq,
                    payload,
                    dead: true,
                },
                Vec::new(),
            )
        }))
    }

    /// Runs `task`'s job to its end with the local job runner.
    fn execute(
        &self,
        task: &Task,
        go_ahead: Option<&dyn Fn() -> bool>,
        shared: &Shared<'_>,
    ) -> Finished {
        let (job, settings) = (&task.job, &task.settings);
        let program = match &job.argv {
            Some(argv) => Program::Direct(argv.iter().cloned().map(OsString::from_vec).collect()),
            None => Program::Shell(job.shell.clone()),
        };
        let limits = Limits {
            timeout: settings.timeout,
            grace: settings.grace,
            nice: None,
        };
        let stop = StopSignal {
            wake: shared.control.wake_fds(),
            level: shared.control.level_cell(),
            guard: self.opts.guard.as_deref(),
            evict: None,
            relative: None,
            go_ahead,
        };
        job::run(&program, &Stdin::Null, limits, &stop, Capture::Group)
            .unwrap_or_else(|e| cannot_start(&e))
    }

    /// How attempt `started` of `task` ended, as it goes to Redis: a result, or the job back
    /// on the stream with its tries left; None when the job was stopped (this worker is
    /// stopping, and leaves the job to another one).
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        slot: u32,
        link: &mut Link,
        task: &Task,
        started: u32,
        fin: &Finished,
        start_unix_ns: u64,
        runtime: Duration,
        shared: &Shared<'_>,
    ) -> Result<Option<Ended>, ClusterError> {
        let (keys, job, settings) = (&task.keys, &task.job, &task.settings);
        shared.attempts.fetch_add(1, Ordering::Relaxed);
        if fin.stopped {
            return Ok(None);
        }
        let attempt = Attempt {
            attempt: started,
            worker: self.name.clone(),
            host: self.host.clone(),
            slot,
            start_unix_ns,
            runtime_ns: u64::try_from(runtime.as_nanos()).unwrap_or(u64::MAX),
            exit_code: fin.exit_code,
            signal: fin.signal,
            timed_out: fin.timed_out,
            cpu_user_ns: fin.cpu_user_ns,
            cpu_sys_ns: fin.cpu_sys_ns,
            max_rss_bytes: fin.max_rss_bytes,
            output_bytes: fin.output_bytes,
            stdout_bytes: fin.stdout_bytes,
        };
        let ok = fin.exit_code == Some(0) && !fin.timed_out;
        if !ok && job.failed + 1 < settings.tries {
            let mut again = job.clone();
            again.failed += 1;
            again.history.push(attempt);
            let how = Finish::Retry {
                seq: job.seq,
                payload: encode(&again)?,
            };
            return Ok(Some(task.ended(how, Vec::new())));
        }
        let mut chunks = Vec::new();
        let stdout = self.output(link, keys, job.seq, started, 1, &fin.stdout, &mut chunks)?;
        let stderr = self.output(link, keys, job.seq, started, 2, &fin.stderr, &mut chunks)?;
        let mut attempts = job.history.clone();
        attempts.push(attempt);
        let res = ResultEntry {
            seq: job.seq,
            args: job.args.clone(),
            shell: job.shell.clone(),
            submitted_unix_ns: job.submitted_unix_ns,
            attempts,
            stdout,
            stderr,
            dead: false,
            started,
        };
        let how = Finish::Result {
            seq: job.seq,
            payload: encode(&res)?,
            dead: false,
        };
        Ok(Some(task.ended(how, chunks)))
    }

    /// One stream of output: inline when small, else pushed in chunks to a list of its own.
    #[allow(clippy::too_many_arguments)]
    fn output(
        &self,
        link: &mut Link,
        keys: &Keys,
        seq: u64,
        attempt: u32,
        stream: u8,
        spool: &Spool,
        chunk_keys: &mut Vec<String>,
    ) -> Result<Output, ClusterError> {
        if spool.len() <= CHUNK as u64 {
            return Ok(Output::Inline(spool.to_vec()?));
        }
        let key = keys.chunks(seq, attempt, stream);
        let mut r = spool.reader()?;
        let mut count = 0u64;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                let n = std::io::Read::read(&mut r, &mut buf[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            let part = &buf[..filled];
            link.call(|c| redis::cmd("RPUSH").arg(&key).arg(part).query::<()>(c))?;
            count += 1;
        }
        chunk_keys.push(key.clone());
        Ok(Output::Chunks { key, count })
    }
}

/// A job that could not be started ends as under a shell that could not run it.
fn cannot_start(e: &std::io::Error) -> Finished {
    let msg = format!("pardo worker: cannot start the job: {e}\n");
    Finished {
        exit_code: Some(if e.raw_os_error() == Some(libc::E2BIG) {
            126
        } else {
            127
        }),
        output_bytes: msg.len() as u64,
        stderr: Spool::from(msg.into_bytes()),
        ..Finished::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_jobs_are_taken_many_ahead_and_long_ones_one() {
        let ms = 1_000_000;
        let cover = AHEAD_FOR.as_nanos() as u64;
        // 1 ms jobs: as many as fill AHEAD_FOR; tinier ones: the cap.
        assert_eq!(ahead_per_slot(ms) as u64, cover / ms);
        assert_eq!(ahead_per_slot(1_000), AHEAD_MAX_PER_SLOT);
        assert_eq!(ahead_per_slot(0), AHEAD_MAX_PER_SLOT);
        // Jobs as long as AHEAD_FOR or longer: one ahead, never none.
        assert_eq!(ahead_per_slot(cover), 1);
        assert_eq!(ahead_per_slot(1000 * cover), 1);
    }
}
