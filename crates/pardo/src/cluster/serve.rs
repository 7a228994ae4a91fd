//! [`serve`]: a program serving its own [`task_fn!`](crate::task_fn) registry to the
//! [`ClusterPool`](super::ClusterPool)s of a Redis, in batches.
//!
//! One thread reads entries (`XREADGROUP … COUNT n` over every task run, `XAUTOCLAIM` of
//! silent workers' ones) and starts them all with one call of `STEP`, the script a command
//! worker ends and starts its jobs with; `slots` threads run them; one thread sends the
//! results back with one more `STEP` call per run for everything finished meanwhile; one thread renews the leases of every entry held
//! (running or waiting for a slot). How far the reader reads ahead of the slots follows the
//! tasks' mean run time: about [`AHEAD_NS`] of work per slot, between one entry per slot and
//! [`MAX_BATCH`], so a worker never sits on slow tasks another could run, and no-op tasks
//! still move hundreds per round trip.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::lease::{Leases, Taker};
use super::protocol::{
    self, client, encode, scripts, Entry, Finish, Keys, Link, Settings, TaskResult, GROUP,
    TASK_RUNS,
};
use super::ClusterError;
use crate::clock::{rusage, ThreadCpu};
use crate::pool::processes::wire::{self, Reply, Request};
use crate::pool::processes::worker::run_items;
use crate::sync::{lock, wait_timeout};

/// Read ahead about this much work per slot (by the tasks' mean run time so far).
pub const AHEAD_NS: u64 = 2_000_000;
/// Entries read, started or answered in one call at most.
pub const MAX_BATCH: usize = 512;
/// The idle time an entry handed back gets: past any lease, so the next sweep takes it.
const HANDED_BACK_IDLE_MS: u64 = 86_400_000;

/// How a serving worker works. Fields can be set one by one on the default:
///
/// ```
/// let mut opts = pardo::cluster::ServeOptions::default();
/// opts.slots = 4;
/// opts.name = Some("render-box-1".into());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Tasks at once (threads), at least 1; by default one per available core.
    pub slots: usize,
    /// The consumer name; by default `host-pid-random`.
    pub name: Option<String>,
    /// Use a Redis off this machine without credentials.
    pub insecure: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            slots: crate::monitor::available_cores(),
            name: None,
            insecure: false,
        }
    }
}

/// What a serving worker did, counted since it started.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeStats {
    /// Task entries run (a `map` chunk is one entry).
    pub tasks: u64,
    /// Results Redis accepted from this worker.
    pub accepted: u64,
    /// Results dropped because another worker's was first (this worker's lease ran out).
    pub dropped: u64,
    /// Entries taken over from workers that went silent.
    pub reclaimed: u64,
    /// Entries found taken by another worker when renewing.
    pub lost: u64,
}

/// Stops a [`Server`] from another thread (or a signal handler's thread): it takes no more
/// entries, hands back those it took but had not started (another worker takes them at its
/// next sweep, as the same attempt), finishes the tasks running (still renewing their leases),
/// sends their results, and [`Server::serve`] returns.
#[derive(Clone, Debug)]
pub struct Stopper(Arc<AtomicBool>);

impl Stopper {
    /// Asks the server to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A serving worker: runs the tasks of every [`ClusterPool`](super::ClusterPool) on one Redis
/// with this binary's [`task_fn!`](crate::task_fn) registry, until stopped.
///
/// It works in batches: one thread reads entries (new ones with `XREADGROUP … COUNT n`,
/// silent workers' ones with `XAUTOCLAIM`) and starts each batch with one script call;
/// `slots` threads run the tasks; one thread sends everything finished meanwhile with one call
/// per pool; one renews the lease of every entry held, running or waiting for a slot. It reads
/// ahead of its slots by about [`AHEAD_NS`] of work per slot at the tasks' mean run time so
/// far (at least one entry per slot, at most [`MAX_BATCH`]): slow tasks stay where another
/// worker can take them, no-op tasks move hundreds per round trip. A task that panics is an
/// error for that task only; the worker goes on. Tasks run on the worker's own threads, so a
/// task that aborts or is killed takes the worker with it: its tasks then run elsewhere once
/// their lease runs out (see [`ClusterPool`](super::ClusterPool)).
///
/// ```no_run
/// use pardo::cluster::{Server, ServeOptions};
///
/// pardo::task_fn! {
///     /// x².
///     pub Square(x: u64) -> u64 { x * x }
/// }
///
/// let mut opts = ServeOptions::default();
/// opts.slots = 4;
/// let server = Server::new("redis://127.0.0.1:6379/0", opts)?;
/// let stopper = server.stopper(); // stopper.stop() from another thread ends serve()
/// # drop(stopper);
/// let stats = server.serve()?;
/// eprintln!("{} tasks", stats.tasks);
/// # Ok::<(), pardo::cluster::ClusterError>(())
/// ```
#[derive(Debug)]
pub struct Server {
    client: redis::Client,
    slots: usize,
    name: String,
    /// This machine's name, in every result (the records' `host`).
    host: String,
    stop: Arc<AtomicBool>,
}

/// Serves the task runs on the Redis at `url` with the default [`ServeOptions`] until the
/// process ends: the one line a worker binary needs.
///
/// ```no_run
/// pardo::task_fn! {
///     /// x².
///     pub Square(x: u64) -> u64 { x * x }
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let url = std::env::args().nth(1).unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
///     pardo::cluster::serve(&url)?;
///     Ok(())
/// }
/// ```
pub fn serve(url: &str) -> Result<ServeStats, ClusterError> {
    Server::new(url, ServeOptions::default())?.serve()
}

/// One entry taken and started, waiting for a slot.
struct Taken {
    keys: Keys,
    id: String,
    seq: u64,
    attempt: u32,
    /// The entry's `job` field: a postcard [`Request`].
    payload: Vec<u8>,
}

/// One answer waiting to be sent.
struct Answer {
    keys: Keys,
    id: String,
    how: Finish,
}

struct Shared {
    queue: Mutex<VecDeque<Taken>>,
    /// Signalled when entries are queued, a slot frees up, and when the worker stops.
    moved: Condvar,
    busy: AtomicUsize,
    outbox: Mutex<Vec<Answer>>,
    /// Signalled when an answer is queued and when a slot thread ends.
    answered: Condvar,
    slots_alive: AtomicUsize,
    stop: Arc<AtomicBool>,
    /// Set once the last answer is sent: until then the tasks still running keep their leases
    /// (a stopping worker finishes what it runs, and must not lose it meanwhile).
    renewed: AtomicBool,
    leases: Leases,
    /// Mean run time of an entry so far (ns; 0 until the first one ends).
    mean_ns: AtomicU64,
    tasks: AtomicU64,
    accepted: AtomicU64,
    dropped: AtomicU64,
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Server {
    /// A serving worker for the Redis at `url`.
    pub fn new(url: &str, opts: ServeOptions) -> Result<Server, ClusterError> {
        let client = client(url, opts.insecure)?;
        let host = crate::monitor::record::host_name();
        let name = opts
            .name
            .clone()
            .unwrap_or_else(|| super::worker::default_name(&host));
        Ok(Server {
            client,
            slots: opts.slots.max(1),
            name,
            host,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The consumer name this worker reads under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A handle that stops [`serve`](Server::serve) from elsewhere.
    pub fn stopper(&self) -> Stopper {
        Stopper(Arc::clone(&self.stop))
    }

    fn link(&self) -> Link {
        // A worker waits for Redis as long as it takes, unless it is told to stop.
        Link::new(self.client.clone(), Duration::from_secs(365 * 86400))
            .until(Arc::clone(&self.stop))
    }

    /// Serves until stopped (see [`Stopper`]); returns what it did. An error is Redis
    /// answering with one (Redis out of reach is waited for, however long).
    pub fn serve(&self) -> Result<ServeStats, ClusterError> {
        let shared = Shared {
            queue: Mutex::new(VecDeque::new()),
            moved: Condvar::new(),
            busy: AtomicUsize::new(0),
            outbox: Mutex::new(Vec::new()),
            answered: Condvar::new(),
            slots_alive: AtomicUsize::new(self.slots),
            stop: Arc::clone(&self.stop),
            renewed: AtomicBool::new(false),
            leases: Leases::default(),
            mean_ns: AtomicU64::new(0),
            tasks: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        };
        let mut reclaimed = 0;
        let result = std::thread::scope(|s| {
            let shared = &shared;
            let spawned = (|| -> std::io::Result<()> {
                let renew = self.link();
                std::thread::Builder::new()
                    .name("pardo-serve-renew".into())
                    .spawn_scoped(s, move || {
                        shared
                            .leases
                            .keep_renewing(renew, &self.name, &shared.renewed)
                    })?;
                let send = self.link();
                let sender = std::thread::Builder::new()
                    .name("pardo-serve-send".into())
                    .spawn_scoped(s, move || {
                        self.send_loop(send, shared);
                        shared.renewed.store(true, Ordering::SeqCst);
                    });
                if let Err(e) = sender {
                    shared.renewed.store(true, Ordering::SeqCst);
                    return Err(e);
                }
                for slot in 1..=self.slots as u32 {
                    let started = std::thread::Builder::new()
                        .name(format!("pardo-serve-{slot}"))
                        .spawn_scoped(s, move || self.slot_loop(slot, shared));
                    if let Err(e) = started {
                        // The sender waits for every slot thread to end: count the missing.
                        let missing = self.slots - slot as usize + 1;
                        shared.slots_alive.fetch_sub(missing, Ordering::SeqCst);
                        return Err(e);
                    }
                }
                Ok(())
            })();
            // A thread that cannot start stops the others (they end once `stop` is set).
            let r = match spawned {
                Ok(()) => self.fetch_loop(shared, &mut reclaimed),
                Err(e) => Err(e.into()),
            };
            shared.stop.store(true, Ordering::SeqCst);
            shared.moved.notify_all();
            shared.answered.notify_all();
            self.hand_back(shared);
            r
        });
        protocol::leave(&self.client, TASK_RUNS, &self.name);
        result?;
        Ok(ServeStats {
            tasks: shared.tasks.load(Ordering::Relaxed),
            accepted: shared.accepted.load(Ordering::Relaxed),
            dropped: shared.dropped.load(Ordering::Relaxed),
            reclaimed,
            lost: shared.leases.lost.load(Ordering::Relaxed),
        })
    }

    /// Hands back the entries started here but not run (waiting for a slot when the worker
    /// stopped): another worker takes them at its next sweep, as the same attempt, instead of
    /// after the lease as an attempt lost. Redis away: they come back after the lease anyway.
    fn hand_back(&self, shared: &Shared) {
        let waiting: Vec<Taken> = lock(&shared.queue).drain(..).collect();
        if waiting.is_empty() {
            return;
        }
        let mut by_run: HashMap<String, Vec<Taken>> = HashMap::new();
        for t in waiting {
            shared.leases.release(&t.keys.run, &t.id);
            by_run.entry(t.keys.run.clone()).or_default().push(t);
        }
        let mut link = Link::new(self.client.clone(), Duration::from_secs(2));
        for (run, taken) in by_run {
            let keys = Keys::new(&run);
            let _ = link.call(|c| {
                let mut inv = scripts().release_many.prepare_invoke();
                inv.key(keys.jobs())
                    .key(keys.attempts())
                    .arg(GROUP)
                    .arg(&self.name)
                    .arg(HANDED_BACK_IDLE_MS);
                for t in &taken {
                    inv.arg(&t.id).arg(t.seq);
                }
                inv.invoke::<i64>(c)
            });
        }
    }

    /// Entries to hold at most (running and waiting): the slots, plus a read-ahead of about
    /// [`AHEAD_NS`] of work per slot by the mean so far.
    fn limit(&self, shared: &Shared) -> usize {
        let mean = shared.mean_ns.load(Ordering::Relaxed);
        let ahead = match AHEAD_NS.checked_div(mean) {
            None => self.slots,
            Some(per_slot) => usize::try_from(per_slot)
                .unwrap_or(MAX_BATCH)
                .saturating_mul(self.slots)
                .clamp(self.slots, MAX_BATCH),
        };
        self.slots + ahead
    }

    fn fetch_loop(&self, shared: &Shared, reclaimed: &mut u64) -> Result<(), ClusterError> {
        let mut link = self.link();
        let mut watch = protocol::Runs::new(TASK_RUNS);
        let mut taker = Taker::new();
        while !shared.stop.load(Ordering::SeqCst) {
            let runs = watch.now(&mut link)?;
            if runs.is_empty() {
                continue;
            }
            // Read when half the limit is left, so each read brings a batch, not a few.
            let want = {
                let mut q = lock(&shared.queue);
                loop {
                    let limit = self.limit(shared);
                    let have = q.len() + shared.busy.load(Ordering::SeqCst);
                    if have <= limit / 2 || shared.stop.load(Ordering::SeqCst) {
                        break (limit - have.min(limit)).min(MAX_BATCH);
                    }
                    q = wait_timeout(&shared.moved, q, Duration::from_millis(50));
                }
            };
            if want == 0 || shared.stop.load(Ordering::SeqCst) {
                continue;
            }
            let (got, mut gone) =
                taker.take(&mut link, &self.name, runs, &shared.leases, want, reclaimed)?;
            let mut by_run: HashMap<String, Vec<Entry>> = HashMap::new();
            for (run, e) in got {
                by_run.entry(run).or_default().push(e);
            }
            for (run, entries) in by_run {
                let Some(settings) = runs.get(&run) else {
                    continue;
                };
                match self.start(&mut link, &run, settings, entries, shared) {
                    Ok(()) => {}
                    Err(e) if protocol::run_gone(&e) => gone = true,
                    Err(e) => return Err(e),
                }
            }
            shared.moved.notify_all();
            if gone {
                watch.again();
            }
        }
        Ok(())
    }

    /// Starts a batch of one run's entries with one call; queues those started for the slots,
    /// answers those whose attempts were all lost with their workers as dead.
    fn start(
        &self,
        link: &mut Link,
        run: &str,
        settings: &Settings,
        entries: Vec<Entry>,
        shared: &Shared,
    ) -> Result<(), ClusterError> {
        let keys = Keys::new(run);
        // Entries without a sequence number or a payload are not ours: left pending.
        let entries: Vec<(Entry, u64)> = entries
            .into_iter()
            .filter(|e| e.get("job").is_some())
            .filter_map(|e| e.seq().map(|seq| (e, seq)))
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        let starts: Vec<(&str, u64)> = entries
            .iter()
            .map(|(e, seq)| (e.id.as_str(), *seq))
            .collect();
        let codes = protocol::step(link, &keys, &self.name, &[], &starts)?;
        let mut dead = Vec::new();
        {
            let mut q = lock(&shared.queue);
            for ((mut e, seq), code) in entries.into_iter().zip(codes) {
                let Ok(attempt) = u32::try_from(code) else {
                    continue; // -1: it has a result or the run is over; -2: another holds it
                };
                if attempt.saturating_sub(1) > settings.lost {
                    // Every worker this task landed on was lost with it: report it, run it no more.
                    let res = TaskResult {
                        attempt,
                        worker: self.name.clone(),
                        host: self.host.clone(),
                        slot: 0,
                        start_unix_ns: unix_ns(),
                        reply: None,
                    };
                    dead.push(Answer {
                        keys: keys.clone(),
                        id: e.id,
                        how: Finish::Result {
                            seq,
                            payload: encode(&res)?,
                            dead: true,
                        },
                    });
                    continue;
                }
                let Some(at) = e.fields.iter().position(|(k, _)| k == b"job") else {
                    continue;
                };
                let (_, payload) = e.fields.swap_remove(at);
                shared.leases.hold(run, settings.lease, &e.id);
                q.push_back(Taken {
                    keys: keys.clone(),
                    id: e.id,
                    seq,
                    attempt,
                    payload,
                });
            }
        }
        if !dead.is_empty() {
            lock(&shared.outbox).extend(dead);
            shared.answered.notify_all();
        }
        Ok(())
    }

    fn slot_loop(&self, slot: u32, shared: &Shared) {
        loop {
            let task = {
                let mut q = lock(&shared.queue);
                loop {
                    if shared.stop.load(Ordering::SeqCst) {
                        drop(q);
                        shared.slots_alive.fetch_sub(1, Ordering::SeqCst);
                        shared.answered.notify_all();
                        return;
                    }
                    if let Some(t) = q.pop_front() {
                        shared.busy.fetch_add(1, Ordering::SeqCst);
                        break t;
                    }
                    q = wait_timeout(&shared.moved, q, Duration::from_millis(100));
                }
            };
            // A task whose lease ran out while it waited here is another worker's now.
            if shared.leases.holds(&task.keys.run, &task.id) {
                match self.run(slot, &task, shared) {
                    Ok(payload) => {
                        lock(&shared.outbox).push(Answer {
                            keys: task.keys,
                            id: task.id,
                            how: Finish::Result {
                                seq: task.seq,
                                payload,
                                dead: false,
                            },
                        });
                        shared.answered.notify_all();
                    }
                    // The result cannot be encoded (never for a Reply): leave the entry to
                    // come back to another worker.
                    Err(_) => shared.leases.release(&task.keys.run, &task.id),
                }
            } else {
                shared.leases.release(&task.keys.run, &task.id);
            }
            shared.busy.fetch_sub(1, Ordering::SeqCst);
            shared.moved.notify_all();
        }
    }

    /// Runs one entry and encodes its result.
    fn run(&self, slot: u32, task: &Taken, shared: &Shared) -> Result<Vec<u8>, ClusterError> {
        let start_unix_ns = unix_ns();
        let t0 = Instant::now();
        let before = ThreadCpu::now();
        let outputs = match wire::decode::<Request<'_>>(&task.payload) {
            Ok(req) => run_items(req.name, &req.inputs, || {
                format!(
                    "no task function named {} is registered in serving worker {} ({})",
                    req.name,
                    self.name,
                    std::env::current_exe()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|_| "this program".into())
                )
            }),
            // Not an entry this pardo can read: no item gets a value, so each fails.
            Err(_) => Vec::new(),
        };
        let after = ThreadCpu::now();
        let busy_ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let (cpu_user_ns, cpu_sys_ns) = after.since(&before);
        let old = shared.mean_ns.load(Ordering::Relaxed);
        let mean = if old == 0 {
            busy_ns.max(1)
        } else {
            (old - old / 8 + busy_ns / 8).max(1)
        };
        shared.mean_ns.store(mean, Ordering::Relaxed);
        shared.tasks.fetch_add(1, Ordering::Relaxed);
        let res = TaskResult {
            attempt: task.attempt,
            worker: self.name.clone(),
            host: self.host.clone(),
            slot,
            start_unix_ns,
            reply: Some(Reply {
                outputs,
                busy_ns,
                cpu_user_ns,
                cpu_sys_ns,
                cpu_wait_ns: after.waited_since(&before),
                max_rss_bytes: rusage(libc::RUSAGE_SELF).map_or(0, |r| r.ru_maxrss as u64 * 1024),
            }),
        };
        encode(&res)
    }

    /// Sends the answers in batches: everything finished while the last call was out goes in
    /// the next, one call per run.
    fn send_loop(&self, mut link: Link, shared: &Shared) {
        loop {
            let batch: Vec<Answer> = {
                let mut out = lock(&shared.outbox);
                loop {
                    if !out.is_empty() {
                        break std::mem::take(&mut *out);
                    }
                    if shared.stop.load(Ordering::SeqCst)
                        && shared.slots_alive.load(Ordering::SeqCst) == 0
                    {
                        return;
                    }
                    out = wait_timeout(&shared.answered, out, Duration::from_millis(100));
                }
            };
            let mut by_run: HashMap<String, Vec<Answer>> = HashMap::new();
            for a in batch {
                by_run.entry(a.keys.run.clone()).or_default().push(a);
            }
            for (run, answers) in by_run {
                for part in answers.chunks(MAX_BATCH) {
                    // Redis away past the patience (only when stopping) or the run gone: the
                    // entries stay pending and come back to another worker.
                    if let Ok(codes) = self.accept(&mut link, &part[0].keys, part) {
                        for c in codes {
                            let counter = if c == 1 {
                                &shared.accepted
                            } else {
                                &shared.dropped
                            };
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    for a in part {
                        shared.leases.release(&run, &a.id);
                    }
                }
            }
        }
    }

    fn accept(
        &self,
        link: &mut Link,
        keys: &Keys,
        answers: &[Answer],
    ) -> Result<Vec<i64>, ClusterError> {
        let ended: Vec<(&str, &Finish)> = answers.iter().map(|a| (a.id.as_str(), &a.how)).collect();
        protocol::step(link, keys, &self.name, &ended, &[])
    }
}
