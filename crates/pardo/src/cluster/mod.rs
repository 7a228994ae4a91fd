//! Many machines through Redis Streams (feature `cluster`): a submitter puts every job of a run
//! on a stream, workers anywhere take them through a consumer group, run them with the same job
//! runner as a local run, and send the results back.
//!
//! - [`Submitter`] is the command runner's counterpart: same [`Template`](crate::command::Template),
//!   same [`Events`](crate::command::Events), one [`TaskRecord`](crate::monitor::TaskRecord) per
//!   attempt in the same [`Recorder`](crate::monitor::Recorder).
//! - [`Worker`] serves every run on a Redis: `pardo worker URL` is one.
//! - [`ClusterPool`] is the library's: [`task_fn!`](crate::task_fn) tasks submitted by name
//!   with their postcard input, behind the same [`RunTask`](crate::RunTask) and
//!   [`Executor`](crate::Executor) as the local pools; [`serve`] (or a [`Server`]) runs them
//!   in the user's own binary, which registers the same functions. See
//!   [Library tasks](#library-tasks) below.
//!
//! # The protocol (version 2)
//!
//! A run has an id (printed by `pardo --cluster`, given back to `--resume`) and keys sharing
//! the hash tag `{run}` (`pardo:{run}:…`):
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `pardo:runs` | set | runs that have jobs for workers |
//! | `pardo:news` | stream | one entry per run announced; idle workers block on it (deleted when no run is left) |
//! | `meta` | hash | settings (`v`, `tries`, `lost`, `timeout_ms`, `grace_ms`, `lease_ms`), the submitter's `cursor` |
//! | `jobs` | stream, group `pardo` | one entry per job to run: fields `seq`, `job` (postcard) |
//! | `submitted` | bitmap | bit *seq*: job *seq* was put on `jobs` (idempotent submit) |
//! | `attempts` | hash | *seq* → attempts started, until the job has a result |
//! | `done` | bitmap | bit *seq*: a result of job *seq* was accepted (the first wins) |
//! | `results` | stream | accepted results: fields `seq`, `res` (postcard) |
//! | `handled` | bitmap | bit *seq*: the submitter has handed the result on (printed it) |
//! | `stats` | hash | `accepted`, `dropped` (late or lost-lease results), `retried`, `dead` |
//! | `dead` | list | job numbers sent to the dead-letter list |
//! | `out:{seq}:{attempt}:{stream}` | list | 1 MiB chunks of a large output |
//!
//! Each step that must be atomic is one Lua script (see `protocol.rs`):
//!
//! 1. **Submit.** For each job, `SETBIT submitted seq 1`; only when the bit was clear is the job
//!    `XADD`ed. Submitting again (a retried call, `--resume`) adds nothing twice. A job already
//!    `handled` is reported skipped.
//! 2. **Take.** A run is announced by adding it to `pardo:runs`, then an entry to
//!    `pardo:news`; a worker with no run blocks on `pardo:news` (`XREAD BLOCK`) from the last
//!    entry it saw, so it starts a new run's jobs at once. Workers `XREADGROUP` in batches: their free slots plus entries ahead, as many
//!    as cover about 20 ms of their slots' work (one ahead per slot for jobs longer than that,
//!    at most 32 per slot), read again once half of those are used. Starting an attempt is
//!    `HINCRBY attempts seq 1`, unless `done` is set already (then the entry is acked and
//!    nothing runs) or the worker no longer holds the entry; an entry taken but never started
//!    counts no attempt.
//! 3. **Lease.** While a worker holds entries (running or taken ahead) it renews them every
//!    quarter lease, one script call per run: `XPENDING` lists the entries it still owns and one
//!    `XCLAIM … JUSTID` resets their idle time. A renewal never takes a job back from the
//!    worker that claimed it meanwhile.
//! 4. **Recover.** Every worker runs `XAUTOCLAIM` for entries idle longer than the lease: a job
//!    whose worker was killed or cut off runs elsewhere within a lease plus a quarter (1 s and
//!    250 ms by default). Attempts started but never ended count as lost; past `lost` of them
//!    the job goes to the dead-letter list and is reported failed instead of killing more
//!    workers.
//! 5. **Finish.** The first result of a job sets `done` and is `XADD`ed to `results`; any later
//!    one (from a worker whose lease ran out) is dropped and counted. A failed attempt with
//!    tries left is put back on `jobs` with its record, for any worker (`--retries` across
//!    workers), only by a worker that still holds it. A slot ends its attempt and starts its
//!    next one in the same script call (`STEP`), so a job costs its worker one round trip;
//!    the entry stays held (and renewed) until that call is answered. A command worker does
//!    not wait for the answer to spawn the next job: the call is sent first (so a job that
//!    kills its worker still has its attempt counted), the job spawned, the answer read
//!    while it starts, and a job the answer refuses (it has a result, another worker holds
//!    it, the run is over, or it is past its lost attempts) is killed with its process group
//!    at once and reported by no one. It may have run for that moment, as a job whose
//!    worker was cut off may run on after its lease was taken: delivery is at least once,
//!    and results are accepted once.
//! 6. **Hand on.** The submitter reads `results` from its `cursor` in batches (after a read
//!    that found few, it lets results gather for 5 ms), hands on each result whose `handled`
//!    bit is clear, then sets the bits and the cursor: a submitter killed at any point and
//!    resumed prints every result at least once and loses none.
//! 7. **Trim and end.** `jobs` is trimmed below the oldest entry still pending or undelivered,
//!    `results` below the cursor; when every job is handled, the run's keys are deleted and the
//!    run leaves `pardo:runs` (the last run to end deletes `pardo:news`). A worker leaving removes its consumer only when it holds nothing.
//!
//! A Redis restart is survived by reconnecting; with `appendonly yes` and `appendfsync always`
//! nothing acknowledged is lost (with `everysec`, a crash may lose the last second of writes).
//!
//! # Library tasks
//!
//! A [`ClusterPool`] is a run of the same protocol, with these differences:
//!
//! - Its id is in the set `pardo:tasks` instead of `pardo:runs`, and its `meta` says
//!   `kind = tasks`: command workers never see its entries, serving workers see only these.
//! - A `jobs` entry is one task, or one `map` chunk: `seq` is its first task id, `job` the
//!   process pool's request (postcard: the task function's name, then each input's postcard
//!   bytes). Entries go on with the same idempotent `SUBMIT`, up to 512 per call.
//! - A `results` entry's `res` is the attempt (its number among those started, the worker and
//!   slot, its start) and the process pool's reply: per input, its postcard output, a caught
//!   panic's message, or a failure (an unknown name, an input that cannot be decoded), with the
//!   CPU time, run-queue wait and peak memory measured in the worker. A dead-letter result has
//!   no reply: the task ends as [`TaskError::WorkerDied`](crate::TaskError::WorkerDied).
//! - `tries` is 1: a task's panic or error is its result, not a reason to run it again. Only
//!   attempts lost with their worker are run again (step 4), `lost` times at most.
//! - Everything is batched: a serving worker reads `XREADGROUP … COUNT n` (how many follows
//!   the tasks' mean run time, see [`Server`]), starts the batch with one `STEP` call (the
//!   command workers' script, here with starts only), and sends everything finished meanwhile
//!   with one more (ends only); the pool reads results up to 1,024 at a time. The steps
//!   and their guarantees are those above: leases renewed while an entry is held (waiting for a
//!   slot or running), `XAUTOCLAIM` of silent workers' entries, the first result wins, the
//!   dead-letter list after `lost` lost attempts.
//! - A serving worker told to stop finishes the tasks it runs, renewing their leases until
//!   their results are sent, and hands back the entries it took but had not started with one
//!   `RELEASE_MANY` (each attempt taken back, each entry made idle past any lease): another
//!   worker takes them at its next sweep, as the same attempt, not as one lost.
//! - No `handled` bits and no resume: the pool is in the caller's process, and its handles end
//!   with it. The pool trims `jobs` and `results` as the submitter does, and deletes the run's
//!   keys when it shuts down.
//!
//! # Trust
//!
//! The queue is the trust boundary: a worker runs whatever command the stream holds. A Redis
//! that is not on loopback is refused without a password in the URL
//! (`redis://user:password@host:6379/0`) unless [`ClusterOptions::insecure`] is set.
//! A serving worker runs only the task functions compiled into it, but with whatever inputs
//! the stream holds; the same rule applies ([`ServeOptions::insecure`],
//! [`ClusterPoolBuilder::insecure`]).
//! `rediss://` speaks TLS (rustls with ring): the server's certificate is checked against the
//! system's authorities or the file `SSL_CERT_FILE` names. A link retries a refused or dropped
//! connection for its whole patience (Redis restarting), but a first connection that fails any
//! other way (a certificate that does not check out, a name that does not resolve) is an error
//! at once: trying again would fail the same way.

mod lease;
mod pool;
mod protocol;
mod serve;
mod submit;
mod worker;

pub use pool::{ClusterPool, ClusterPoolBuilder, DEFAULT_IN_FLIGHT, READ_BATCH, SUBMIT_BATCH};
pub use serve::{serve, ServeOptions, ServeStats, Server, Stopper, AHEAD_NS, MAX_BATCH};
pub use submit::{ClusterOptions, ClusterOutcome, Submitter};
pub use worker::{Worker, WorkerOptions, WorkerStats};

/// `url` with its password, if any, replaced by `***`, fit for messages and logs.
///
/// ```
/// assert_eq!(pardo::cluster::redact("redis://u:secret@h:6379/0"), "redis://u:***@h:6379/0");
/// ```
pub fn redact(url: &str) -> String {
    protocol::redact(url)
}
impl From<redis::RedisError> for ClusterError {
    fn from(e: redis::RedisError) -> Self {
        ClusterError::Redis(e)
    }
}

/// Why a cluster run or worker could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The Redis URL cannot be used.
    #[error("{url}: not a Redis URL pardo can use: {why}")]
    Url {
        /// The URL, password hidden.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// A Redis off this machine without credentials.
    #[error(
        "{url}: refusing a Redis that is not on this machine without a password: whoever can \
         write to it runs commands on every worker; put credentials in the URL \
         (redis://user:password@host:port/db) or pass --cluster-insecure"
    )]
    Untrusted {
        /// The URL.
        url: String,
    },
    /// Redis answered with an error, or stayed out of reach past the patience.
    ///
    /// Not a `source`: the redis error's message already says its cause, and a chain printed
    /// with its sources would say it once per layer.
    #[error("redis: {0}")]
    Redis(redis::RedisError),
    /// An entry or a run's settings are not what this pardo understands.
    #[error("{0}")]
    Protocol(String),
    /// `--resume` named a run that Redis does not have.
    #[error("run {0} is not on this Redis (finished, or never started here)")]
    NoSuchRun(String),
    /// A run id with characters that cannot be part of a key.
    #[error("{0:?} is not a run id (letters, digits, - and _, at most 64)")]
    BadRunId(String),
    /// The command runner failed (the output could not be written, a job could not be built).
    #[error(transparent)]
    Command(#[from] crate::command::CommandError),
    /// A local system call failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
