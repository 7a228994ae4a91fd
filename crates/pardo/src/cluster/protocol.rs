//! The wire: key names, the entries on the streams, the Lua scripts that make each step atomic,
//! and a connection that reconnects. The protocol itself is described in the [module
//! docs](super).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Connection, RedisResult, Script, Value};
use serde::{Deserialize, Serialize};

use super::ClusterError;

/// Version of the entries and scripts below; a worker refuses a run of another version.
/// 2: attempts name their host; a worker ends and starts attempts in one script call.
pub(crate) const VERSION: u32 = 2;
/// The consumer group every worker reads a run's jobs through.
pub(crate) const GROUP: &str = "pardo";
/// The set of runs that have jobs for workers.
pub(crate) const RUNS: &str = "pardo:runs";
/// Deletes the news once no run is left to announce. KEYS: runs, task runs, news. A run
/// announced meanwhile is in its set before its news goes out, so it keeps them.
const QUIET_NEWS: &str = r#"
if redis.call('SCARD', KEYS[1]) == 0 and redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[3])
end
"#;
/// One entry per run announced (in `pardo:runs` or `pardo:tasks`): idle workers block on it,
/// so a new run starts at once instead of at their next look at the sets.
pub(crate) const NEWS: &str = "pardo:news";
/// Entries kept on [`NEWS`]: a worker that misses some only looks at the sets again.
const NEWS_KEPT: usize = 64;
/// The set of task runs (cluster pools) that have tasks for serving workers. Command workers
/// read [`RUNS`] only and serving workers this set only: neither takes the other's entries.
pub(crate) const TASK_RUNS: &str = "pardo:tasks";
/// Output past this many bytes per stream goes in chunks of this size beside the result.
pub(crate) const CHUNK: usize = 1 << 20;

/// The keys of one run. All share the hash tag `{run}`, so a run lives in one slot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Keys {
    pub run: String,
}

impl Keys {
    pub fn new(run: &str) -> Keys {
        Keys { run: run.into() }
    }
    fn key(&self, what: &str) -> String {
        format!("pardo:{{{}}}:{what}", self.run)
    }
    /// HASH: the run's settings and the submitter's cursor.
    pub fn meta(&self) -> String {
        self.key("meta")
    }
    /// STREAM (+ group [`GROUP`]): jobs waiting or running.
    pub fn jobs(&self) -> String {
        self.key("jobs")
    }
    /// BITMAP: bit `seq` set once job `seq` was submitted (the idempotent-submit guard).
    pub fn submitted(&self) -> String {
        self.key("submitted")
    }
    /// BITMAP: bit `seq` set once a result of job `seq` was accepted (the first wins).
    pub fn done(&self) -> String {
        self.key("done")
    }
    /// BITMAP: bit `seq` set once the submitter handed the result on (printed it).
    pub fn handled(&self) -> String {
        self.key("handled")
    }
    /// HASH: `seq` → attempts started, while the job has no accepted result.
    pub fn attempts(&self) -> String {
        self.key("attempts")
    }
    /// STREAM: accepted results, read by the submitter.
    pub fn results(&self) -> String {
        self.key("results")
    }
    /// HASH: counters (`accepted`, `dropped`, `retried`, `dead`).
    pub fn stats(&self) -> String {
        self.key("stats")
    }
    /// LIST: job numbers that went to the dead-letter list.
    pub fn dead(&self) -> String {
        self.key("dead")
    }
    /// LIST: the chunks of one attempt's large output.
    pub fn chunks(&self, seq: u64, attempt: u32, stream: u8) -> String {
        self.key(&format!("out:{seq}:{attempt}:{stream}"))
    }
    /// Every key of the run but the chunk lists (which their readers delete).
    pub fn all(&self) -> [String; 9] {
        [
            self.meta(),
            self.jobs(),
            self.submitted(),
            self.done(),
            self.handled(),
            self.attempts(),
            self.results(),
            self.stats(),
            self.dead(),
        ]
    }
}

/// The settings of a run, kept in its meta hash for the workers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Settings {
    /// Tries per job that ended badly (GNU parallel's `--retries`).
    pub tries: u32,
    /// Attempts lost with their worker (killed, cut off) before the job goes dead.
    pub lost: u32,
    /// Per-attempt time limit.
    pub timeout: Option<Duration>,
    /// TERM → KILL grace.
    pub grace: Duration,
    /// A job held this long without renewal may be taken by another worker.
    pub lease: Duration,
}

impl Settings {
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("v", VERSION.to_string()),
            ("tries", self.tries.to_string()),
            ("lost", self.lost.to_string()),
            (
                "timeout_ms",
                self.timeout.map_or(0, |t| t.as_millis() as u64).to_string(),
            ),
            ("grace_ms", (self.grace.as_millis() as u64).to_string()),
            ("lease_ms", (self.lease.as_millis() as u64).to_string()),
        ]
    }

    pub fn from_fields(run: &str, fields: &[(String, String)]) -> Result<Settings, ClusterError> {
        let get = |name: &str| -> Result<u64, ClusterError> {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse().ok())
                .ok_or_else(|| ClusterError::Protocol(format!("run {run}: no valid `{name}`")))
        };
        let v = get("v")?;
        if v != u64::from(VERSION) {
            return Err(ClusterError::Protocol(format!(
                "run {run} uses protocol version {v}; this pardo speaks {VERSION}"
            )));
        }
        let timeout_ms = get("timeout_ms")?;
        Ok(Settings {
            tries: get("tries")?.clamp(1, u64::from(u32::MAX)) as u32,
            lost: get("lost")?.min(u64::from(u32::MAX)) as u32,
            timeout: (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms)),
            grace: Duration::from_millis(get("grace_ms")?),
            lease: Duration::from_millis(get("lease_ms")?.max(10)),
        })
    }
}

/// What a worker runs: one entry of the jobs stream (field `job`, postcard).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct JobEntry {
    pub seq: u64,
    /// The job's arguments (for `--tag`, the joblog and the record's input).
    pub args: Vec<Vec<u8>>,
    /// The command as shell code.
    pub shell: Vec<u8>,
    /// Run directly with this argv when the template needs no shell.
    pub argv: Option<Vec<Vec<u8>>>,
    /// When the submitter put it on the stream.
    pub submitted_unix_ns: u64,
    /// Tries already used up by attempts that ended badly.
    pub failed: u32,
    /// The records of those attempts, so the submitter records every attempt.
    pub history: Vec<Attempt>,
}

/// One attempt as the submitter records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Attempt {
    pub attempt: u32,
    pub worker: String,
    /// The host name of the machine the worker ran on.
    pub host: String,
    pub slot: u32,
    pub start_unix_ns: u64,
    pub runtime_ns: u64,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub cpu_user_ns: u64,
    pub cpu_sys_ns: u64,
    pub max_rss_bytes: u64,
    pub output_bytes: u64,
    pub stdout_bytes: u64,
}

/// Where one stream of output is: inline, or in a chunk list beside the result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Output {
    Inline(Vec<u8>),
    Chunks { key: String, count: u64 },
}

/// A job's accepted result (field `res` of the results stream, postcard).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ResultEntry {
    pub seq: u64,
    pub args: Vec<Vec<u8>>,
    pub shell: Vec<u8>,
    /// When the submitter put it on the stream.
    pub submitted_unix_ns: u64,
    /// Every attempt, the last one last. Empty for a job that went dead without one ending.
    pub attempts: Vec<Attempt>,
    pub stdout: Output,
    pub stderr: Output,
    /// The job went to the dead-letter list: its attempts were lost with their workers.
    pub dead: bool,
    /// Attempts started in all, lost ones included.
    pub started: u32,
}

/// What a serving worker sends back for one task entry of a cluster pool (field `res` of the
/// results stream, postcard). The entry itself (field `job`) is the process pool's
/// [`Request`](crate::pool::processes::wire::Request): a task function's name and its
/// postcard inputs.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TaskResult {
    /// The number of this attempt among all started (earlier ones were lost with their worker).
    pub attempt: u32,
    /// The consumer name of the worker that ran it.
    pub worker: String,
    /// The host it runs on.
    pub host: String,
    /// Its slot there, from 1.
    pub slot: u32,
    /// When the attempt started, on the worker's clock.
    pub start_unix_ns: u64,
    /// The items' results and what they cost; `None` for a task sent to the dead-letter list
    /// (every attempt it had was lost with its worker).
    pub reply: Option<crate::pool::processes::wire::Reply>,
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, ClusterError> {
    postcard::to_allocvec(v).map_err(|e| ClusterError::Protocol(format!("cannot encode: {e}")))
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, ClusterError> {
    postcard::from_bytes(b).map_err(|e| ClusterError::Protocol(format!("bad entry: {e}")))
}

/// Submit jobs that were never submitted. KEYS: submitted, jobs, handled.
/// ARGV: seq, payload, seq, payload, … Returns one code per job: 0 added now, 1 submitted
/// before and not handed on yet, 2 handed on already (a resumed run skips it).
pub(crate) const SUBMIT: &str = r#"
local out = {}
for i = 1, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  if redis.call('GETBIT', KEYS[3], seq) == 1 then
    out[#out + 1] = 2
  elseif redis.call('SETBIT', KEYS[1], seq, 1) == 0 then
    redis.call('XADD', KEYS[2], '*', 'seq', ARGV[i], 'job', ARGV[i + 1])
    out[#out + 1] = 0
  else
    out[#out + 1] = 1
  end
end
return out
"#;

/// One call per worker round trip: the attempts that ended, then the attempts that start, all
/// of one run. KEYS: done, results, jobs, stats, attempts, dead, meta. ARGV: group, consumer,
/// n, then n × (kind, entry id, seq, payload) for the attempts that ended, then (entry id, seq)
/// for each attempt that starts.
///
/// An ended attempt of kind `a` (a result) or `d` (a dead-letter result) acks its entry, and
/// the first for its job is accepted: it sets `done` and goes on `results` (1); a later one is
/// dropped and counted (0). One of kind `r` (tries left) puts the job back on `jobs` with its
/// payload if this worker still holds the entry and the job has no result (1), else is dropped
/// and counted (0).
///
/// A start returns -1 when the job has a result already (its entry is acked and nothing runs),
/// -2 when this worker no longer holds the entry (another took it while it waited here), else
/// the number of this attempt among all started.
///
/// Everything is -1 when the run is over, and nothing is written: no key of an ended run comes
/// back.
pub(crate) const STEP: &str = r#"
local n = tonumber(ARGV[3])
local first_start = 4 + 4 * n
local out = {}
if redis.call('EXISTS', KEYS[7]) == 0 then
  for i = 1, n + (#ARGV - first_start + 1) / 2 do
    out[i] = -1
  end
  return out
end
local accepted, dropped, retried, dead = 0, 0, 0, 0
for i = 4, first_start - 1, 4 do
  local kind, id, seq, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if kind == 'r' then
    local held = redis.call('XPENDING', KEYS[3], ARGV[1], id, id, 1, ARGV[2])
    if #held == 0 or redis.call('GETBIT', KEYS[1], seq) == 1 then
      dropped = dropped + 1
      out[#out + 1] = 0
    else
      redis.call('XADD', KEYS[3], '*', 'seq', seq, 'job', payload)
      redis.call('XACK', KEYS[3], ARGV[1], id)
      retried = retried + 1
      out[#out + 1] = 1
    end
  else
    redis.call('XACK', KEYS[3], ARGV[1], id)
    if redis.call('SETBIT', KEYS[1], seq, 1) == 1 then
      dropped = dropped + 1
      out[#out + 1] = 0
    else
      redis.call('XADD', KEYS[2], '*', 'seq', seq, 'res', payload)
      redis.call('HDEL', KEYS[5], seq)
      accepted = accepted + 1
      if kind == 'd' then
        redis.call('RPUSH', KEYS[6], seq)
        dead = dead + 1
      end
      out[#out + 1] = 1
    end
  end
end
for name, count in pairs({accepted = accepted, dropped = dropped, retried = retried, dead = dead}) do
  if count > 0 then
    redis.call('HINCRBY', KEYS[4], name, count)
  end
end
for i = first_start, #ARGV, 2 do
  local id, seq = ARGV[i], ARGV[i + 1]
  if redis.call('GETBIT', KEYS[1], seq) == 1 then
    redis.call('XACK', KEYS[3], ARGV[1], id)
    out[#out + 1] = -1
  elseif #redis.call('XPENDING', KEYS[3], ARGV[1], id, id, 1, ARGV[2]) == 0 then
    out[#out + 1] = -2
  else
    out[#out + 1] = redis.call('HINCRBY', KEYS[5], seq, 1)
  end
end
return out
"#;

/// Renew the leases a worker still holds (reset their idle time), never taking one from
/// another worker: one scan of the worker's pending entries and one `XCLAIM`, however many
/// it holds. KEYS: jobs. ARGV: group, consumer, id, id, … (oldest first). Returns the ids no
/// longer held.
pub(crate) const RENEW: &str = r#"
if #ARGV < 3 then
  return {}
end
local wanted = {}
for i = 3, #ARGV do
  wanted[ARGV[i]] = true
end
local owned = {}
local from, to, page_size = ARGV[3], ARGV[#ARGV], 500
while true do
  local page = redis.call('XPENDING', KEYS[1], ARGV[1], from, to, page_size, ARGV[2])
  for _, e in ipairs(page) do
    if wanted[e[1]] then
      owned[#owned + 1] = e[1]
      wanted[e[1]] = nil
    end
  end
  if #page < page_size then
    break
  end
  from = '(' .. page[#page][1]
end
for i = 1, #owned, 100 do
  local args = {KEYS[1], ARGV[1], ARGV[2], 0}
  for j = i, math.min(i + 99, #owned) do
    args[#args + 1] = owned[j]
  end
  args[#args + 1] = 'JUSTID'
  redis.call('XCLAIM', unpack(args))
end
local lost = {}
for id in pairs(wanted) do
  lost[#lost + 1] = id
end
return lost
"#;

/// A worker that stops hands back entries it started but never ran: each one it still holds
/// has its attempt taken back and its idle time set past any lease, so the next sweep of
/// another worker takes it at once, as the same attempt. KEYS: jobs, attempts. ARGV: group,
/// consumer, idle ms, then id, seq for each entry. Returns how many were handed back.
pub(crate) const RELEASE_MANY: &str = r#"
local n = 0
for i = 4, #ARGV, 2 do
  local id, seq = ARGV[i], ARGV[i + 1]
  if #redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2]) == 1 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'IDLE', ARGV[3], 'JUSTID')
    if redis.call('HINCRBY', KEYS[2], seq, -1) <= 0 then
      redis.call('HDEL', KEYS[2], seq)
    end
    n = n + 1
  end
end
return n
"#;

/// The scripts, loaded once per process.
pub(crate) struct Scripts {
    pub submit: Script,
    pub step: Script,
    pub renew: Script,
    pub release_many: Script,
    pub quiet_news: Script,
}

pub(crate) fn scripts() -> &'static Scripts {
    static S: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    S.get_or_init(|| Scripts {
        submit: Script::new(SUBMIT),
        step: Script::new(STEP),
        renew: Script::new(RENEW),
        release_many: Script::new(RELEASE_MANY),
        quiet_news: Script::new(QUIET_NEWS),
    })
}

/// How an attempt's entry leaves a worker, in a [`STEP`] call.
#[derive(Debug)]
pub(crate) enum Finish {
    /// The attempt's result, accepted if it is its job's first; `dead` also sends the job to
    /// the dead-letter list.
    Result {
        seq: u64,
        payload: Vec<u8>,
        dead: bool,
    },
    /// The attempt ended badly with tries left: the job goes back on the stream.
    Retry { seq: u64, payload: Vec<u8> },
}

/// Ends the attempts `ended` (entry id, how) and starts the attempts `starts` (entry id, seq)
/// of one run, in one round trip. Returns one code per ended attempt, then one per start, as
/// [`STEP`] says.
pub(crate) fn step(
    link: &mut Link,
    keys: &Keys,
    consumer: &str,
    ended: &[(&str, &Finish)],
    starts: &[(&str, u64)],
) -> Result<Vec<i64>, ClusterError> {
    let cmd = step_cmd(keys, consumer, ended, starts);
    link.call(|c| match cmd.query(c) {
        Err(e) if no_script(&e) => {
            scripts().step.load(c)?;
            cmd.query(c)
        }
        r => r,
    })
}

/// The codes of a [`STEP`] answer read with [`Link::recv`].
pub(crate) fn codes(v: Value) -> Result<Vec<i64>, ClusterError> {
    redis::from_redis_value(v).map_err(|e| ClusterError::Redis(e.into()))
}

/// True when Redis did not know the script it was asked to run (it restarted since).
pub(crate) fn no_script(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// The `EVALSHA` of [`STEP`] that [`step`] sends, for a caller that sends it and reads the
/// answer later ([`Link::send`], [`Link::recv`]). Redis without the script loaded answers
/// `NOSCRIPT`; [`step`] loads it.
pub(crate) fn step_cmd(
    keys: &Keys,
    consumer: &str,
    ended: &[(&str, &Finish)],
    starts: &[(&str, u64)],
) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(scripts().step.get_hash())
        .arg(7)
        .arg(keys.done())
        .arg(keys.results())
        .arg(keys.jobs())
        .arg(keys.stats())
        .arg(keys.attempts())
        .arg(keys.dead())
        .arg(keys.meta())
        .arg(GROUP)
        .arg(consumer)
        .arg(ended.len());
    for (id, how) in ended {
        let (kind, seq, payload) = match how {
            Finish::Result { seq, payload, dead } => (if *dead { "d" } else { "a" }, seq, payload),
            Finish::Retry { seq, payload } => ("r", seq, payload),
        };
        cmd.arg(kind).arg(*id).arg(*seq).arg(payload.as_slice());
    }
    for (id, seq) in starts {
        cmd.arg(*id).arg(*seq);
    }
    cmd
}

/// True when `url` names a loopback host or a Unix socket.
pub(crate) fn is_loopback(info: &redis::ConnectionInfo) -> bool {
    match info.addr() {
        redis::ConnectionAddr::Tcp(host, _) | redis::ConnectionAddr::TcpTls { host, .. } => {
            let h = host.trim_start_matches('[').trim_end_matches(']');
            h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        _ => true,
    }
}

/// Opens a client for `url`, refusing a Redis off this machine without credentials unless
/// `insecure` says the user knows (whoever can write to the queue runs commands on the workers).
pub(crate) fn client(url: &str, insecure: bool) -> Result<redis::Client, ClusterError> {
    let client = redis::Client::open(url).map_err(|e| ClusterError::Url {
        url: redact(url),
        why: e.to_string(),
    })?;
    let info = client.get_connection_info();
    let has_auth = info.redis_settings().password().is_some();
    if !insecure && !has_auth && !is_loopback(info) {
        return Err(ClusterError::Untrusted { url: redact(url) });
    }
    Ok(client)
}

/// `url` with any password replaced by `***`, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A connection that comes back: every call that fails for the connection's sake (Redis gone,
/// restarting, loading its AOF) is retried on a new connection until `patience` has passed.
pub(crate) struct Link {
    client: redis::Client,
    conn: Option<Connection>,
    patience: Duration,
    /// Once set, a call stops retrying and returns its error: a worker told to stop must not
    /// wait out its patience (a year) for a Redis that is gone.
    give_up: Option<Arc<AtomicBool>>,
    /// Connections dropped for a transient error so far.
    pub reconnects: u64,
    /// Whether a connection was ever made (see [`transient`]).
    connected: bool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

/// True when `e` says the call may succeed on a new connection or a little later.
///
/// Until a link has connected once, only a refusal, a timeout or a dropped connection counts
/// (Redis not up yet); any other I/O error then is the setup's — a TLS handshake that fails
/// (unknown issuer, wrong name, a server that does not speak TLS), a host that does not
/// resolve — and would fail the same way after the whole patience.
fn transient(e: &redis::RedisError, connected_before: bool) -> bool {
    (e.is_io_error() && connected_before)
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(e.code(), Some("LOADING" | "TRYAGAIN" | "MASTERDOWN"))
}

impl Link {
    pub fn new(client: redis::Client, patience: Duration) -> Link {
        Link {
            client,
            conn: None,
            patience,
            give_up: None,
            reconnects: 0,
            connected: false,
        }
    }

    /// The same link, retrying only until `stop` is set.
    pub fn until(mut self, stop: Arc<AtomicBool>) -> Link {
        self.give_up = Some(stop);
        self
    }

    fn giving_up(&self) -> bool {
        self.give_up
            .as_ref()
            .is_some_and(|s| s.load(Ordering::SeqCst))
    }

    /// Runs `f` on a live connection, reconnecting and retrying on transient errors.
    pub fn call<T>(
        &mut self,
        mut f: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, ClusterError> {
        let begun = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            let r = match self.conn.as_mut() {
                Some(c) => f(c),
                None => match self
                    .client
                    .get_connection_with_timeout(Duration::from_secs(2))
                {
                    Ok(c) => {
                        // No read timeout: with one, a signal handled with SA_RESTART (the
                        // CLI's SIGINT/SIGTERM, glibc's own) still ends a blocked read with
                        // EINTR, and the reply to a non-idempotent call is lost with it.
                        let _ = c.set_read_timeout(None);
                        self.conn = Some(c);
                        self.connected = true;
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            match r {
                Ok(v) => return Ok(v),
                Err(e)
                    if transient(&e, self.connected)
                        && begun.elapsed() < self.patience
                        && !self.giving_up() =>
                {
                    self.conn = None;
                    self.reconnects += 1;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) => {
                    if transient(&e, self.connected) {
                        self.conn = None;
                    }
                    return Err(ClusterError::Redis(e));
                }
            }
        }
    }
}

impl Link {
    /// Sends `cmd` on the live connection without waiting for its answer, which [`Link::recv`]
    /// reads: the caller works while Redis runs it. Nothing is retried, and without a live
    /// connection nothing is sent: a caller that must get through uses [`Link::call`].
    pub fn send(&mut self, cmd: &redis::Cmd) -> Result<(), ClusterError> {
        self.once(|c| c.send_packed_command(&cmd.get_packed_command()))
    }

    /// The answer to what [`Link::send`] sent. A failure for the connection's sake drops it
    /// (the next call connects again); the command may or may not have run.
    pub fn recv(&mut self) -> Result<Value, ClusterError> {
        self.once(|c| c.recv_response().and_then(Value::extract_error))
    }

    /// `f` once on the live connection, if there is one.
    fn once<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, ClusterError> {
        let Some(c) = self.conn.as_mut() else {
            return Err(ClusterError::Redis(redis::RedisError::from((
                redis::ErrorKind::Io,
                "no live connection",
            ))));
        };
        let r = f(c);
        r.map_err(|e| self.failed(e))
    }

    fn failed(&mut self, e: redis::RedisError) -> ClusterError {
        if transient(&e, self.connected) {
            self.conn = None;
            self.reconnects += 1;
        }
        ClusterError::Redis(e)
    }
}

/// Makes the run's consumer group (and stream), then announces the run in `runs` (the set
/// its workers read): the group first, so no worker reads a stream without one.
pub(crate) fn announce(link: &mut Link, runs: &str, keys: &Keys) -> Result<(), ClusterError> {
    let made = link.call(|c| {
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(keys.jobs())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query::<()>(c)
    });
    match made {
        Err(ClusterError::Redis(e)) if e.code() == Some("BUSYGROUP") => {}
        r => r?,
    }
    link.call(|c| {
        // The set first: a worker woken by the news finds the run in it.
        redis::pipe()
            .cmd("SADD")
            .arg(runs)
            .arg(&keys.run)
            .ignore()
            .cmd("XADD")
            .arg(NEWS)
            .arg("MAXLEN")
            .arg("~")
            .arg(NEWS_KEPT)
            .arg("*")
            .arg("run")
            .arg(&keys.run)
            .ignore()
            .query::<()>(c)
    })
}

/// How an idle worker waits for a run to be announced: on the [`NEWS`] stream, from the last
/// entry it saw.
#[derive(Debug, Default)]
struct News {
    /// The last entry seen; None until looked up (and again after a reconnect: a Redis that
    /// restarted may have a new stream with lower ids).
    seen: Option<String>,
    reconnects: u64,
}

impl News {
    /// Notes the newest announcement, before the caller reads the sets of runs: one made
    /// after this wakes [`News::wait`], one made before is in the sets already.
    fn mark(&mut self, link: &mut Link) -> Result<(), ClusterError> {
        if self.seen.is_some() && self.reconnects == link.reconnects {
            return Ok(());
        }
        let last: Value = link.call(|c| {
            redis::cmd("XREVRANGE")
                .arg(NEWS)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query(c)
        })?;
        let newest = entries(&last).into_iter().next().map(|e| e.id);
        self.seen = Some(newest.unwrap_or_else(|| "0-0".into()));
        self.reconnects = link.reconnects;
        Ok(())
    }

    /// Waits up to `timeout` for a run announced after the last one seen.
    fn wait(&mut self, link: &mut Link, timeout: Duration) -> Result<(), ClusterError> {
        let from = self.seen.clone().unwrap_or_else(|| "$".into());
        let v: Value = link.call(|c| {
            redis::cmd("XREAD")
                .arg("BLOCK")
                .arg(timeout.as_millis().max(1) as u64)
                .arg("STREAMS")
                .arg(NEWS)
                .arg(from.as_str())
                .query(c)
        })?;
        if let Some(last) = streams(&v).into_iter().flat_map(|(_, e)| e).last() {
            self.seen = Some(last.id);
        }
        Ok(())
    }
}

/// Takes the run out of `runs` and deletes its keys; the last run to end deletes [`NEWS`]
/// too, so a Redis whose runs have all ended holds no key of pardo's.
pub(crate) fn end_run(link: &mut Link, runs: &str, keys: &Keys) -> Result<(), ClusterError> {
    link.call(|c| {
        redis::pipe()
            .cmd("SREM")
            .arg(runs)
            .arg(&keys.run)
            .ignore()
            .cmd("DEL")
            .arg(&keys.all()[..])
            .ignore()
            .query::<()>(c)
    })?;
    link.call(|c| {
        scripts()
            .quiet_news
            .key(RUNS)
            .key(TASK_RUNS)
            .key(NEWS)
            .invoke::<()>(c)
    })
}

/// The runs of one set ([`RUNS`] or [`TASK_RUNS`]) a worker serves, with their settings: the
/// set is read again every 500 ms, or at the next look after [`Runs::again`]; a worker that
/// has none blocks on [`NEWS`] meanwhile, so a new run starts at once. Both kinds of worker
/// take their runs from here.
#[derive(Debug)]
pub(crate) struct Runs {
    set: &'static str,
    known: std::collections::HashMap<String, Arc<Settings>>,
    read: Option<Instant>,
    news: News,
}

impl Runs {
    /// Nothing read yet from `set`.
    pub fn new(set: &'static str) -> Runs {
        Runs {
            set,
            known: std::collections::HashMap::new(),
            read: None,
            news: News::default(),
        }
    }

    /// The runs to serve now. Empty when there are none, after waiting up to 100 ms for
    /// news of one (as long as the sleep this replaced, so a stop is seen as soon).
    pub fn now(
        &mut self,
        link: &mut Link,
    ) -> Result<&std::collections::HashMap<String, Arc<Settings>>, ClusterError> {
        if self
            .read
            .is_none_or(|t| t.elapsed() > Duration::from_millis(500))
        {
            self.news.mark(link)?;
            refresh(link, self.set, &mut self.known)?;
            self.read = Some(Instant::now());
        }
        if self.known.is_empty() {
            self.news.wait(link, Duration::from_millis(100))?;
            self.read = None;
        }
        Ok(&self.known)
    }

    /// Reads the set again at the next look: a run's stream was gone (the run ended).
    pub fn again(&mut self) {
        self.read = None;
    }
}

/// Brings `known` up to date with the set `runs`: runs that left are dropped, new ones are
/// added with their settings (a run whose settings this pardo cannot read is left out).
fn refresh(
    link: &mut Link,
    runs: &str,
    known: &mut std::collections::HashMap<String, Arc<Settings>>,
) -> Result<(), ClusterError> {
    let now: Vec<String> =
        link.call(|c| redis::cmd("SMEMBERS").arg(runs).query::<Vec<String>>(c))?;
    known.retain(|r, _| now.contains(r));
    for run in now {
        if known.contains_key(&run) || !valid_run_id(&run) {
            continue;
        }
        let keys = Keys::new(&run);
        let fields: Vec<(String, String)> =
            link.call(|c| redis::cmd("HGETALL").arg(keys.meta()).query(c))?;
        if let Ok(s) = Settings::from_fields(&run, &fields) {
            known.insert(run, Arc::new(s));
        }
    }
    Ok(())
}

/// Removes consumer `name` from every run of the set `runs` where it holds nothing.
pub(crate) fn leave(client: &redis::Client, runs: &str, name: &str) {
    let mut link = Link::new(client.clone(), Duration::from_secs(2));
    let Ok(runs) = link.call(|c| redis::cmd("SMEMBERS").arg(runs).query::<Vec<String>>(c)) else {
        return;
    };
    for run in runs {
        let keys = Keys::new(&run);
        let held = link.call(|c| {
            redis::cmd("XPENDING")
                .arg(keys.jobs())
                .arg(GROUP)
                .arg("-")
                .arg("+")
                .arg(1)
                .arg(name)
                .query::<Vec<Value>>(c)
        });
        if matches!(held, Ok(ref h) if h.is_empty()) {
            let _ = link.call(|c| {
                redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(keys.jobs())
                    .arg(GROUP)
                    .arg(name)
                    .query::<i64>(c)
            });
        }
    }
}

/// `XREADGROUP` of up to `count` entries per run of `runs` for consumer `consumer`, waiting
/// up to 100 ms when none is there; `from` is `>` (new entries) or `0` (this consumer's own
/// pending ones). Returns the entries by run.
pub(crate) fn read_group(
    link: &mut Link,
    consumer: &str,
    runs: &[&String],
    count: usize,
    from: &str,
) -> Result<Vec<(String, Vec<Entry>)>, ClusterError> {
    let v: Value = link.call(|c| {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(100)
            .arg("STREAMS");
        for r in runs {
            cmd.arg(Keys::new(r).jobs());
        }
        for _ in runs {
            cmd.arg(from);
        }
        cmd.query(c)
    })?;
    Ok(streams(&v)
        .into_iter()
        .filter_map(|(stream, entries)| {
            let run = runs.iter().find(|r| Keys::new(r).jobs() == stream)?;
            Some(((*run).clone(), entries))
        })
        .collect())
}

/// True when `e` says the run's stream or group is gone (the run ended meanwhile).
pub(crate) fn run_gone(e: &ClusterError) -> bool {
    matches!(e, ClusterError::Redis(e) if matches!(e.code(), Some("NOGROUP" | "UNBLOCKED")))
}

/// A stream id (`ms-seq`) as numbers, which order as the stream does.
pub(crate) fn id_order(id: &str) -> (u64, u64) {
    let mut it = id.splitn(2, '-');
    let a = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let b = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    (a, b)
}

/// The fields of one stream entry by name.
pub(crate) struct Entry {
    pub id: String,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }
    pub fn seq(&self) -> Option<u64> {
        std::str::from_utf8(self.get("seq")?).ok()?.parse().ok()
    }
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn list(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

/// Entries from `[[id, [k, v, …]], …]` (XRANGE, XAUTOCLAIM, one stream of XREAD).
pub(crate) fn entries(v: &Value) -> Vec<Entry> {
    list(v)
        .iter()
        .filter_map(|e| {
            let [id, kv] = list(e) else { return None };
            let id = String::from_utf8(bytes(id)?).ok()?;
            let kv = list(kv);
            let fields = kv
                .chunks(2)
                .filter_map(|p| Some((bytes(p.first()?)?, bytes(p.get(1)?)?)))
                .collect();
            Some(Entry { id, fields })
        })
        .collect()
}

/// `(stream key, entries)` from XREAD / XREADGROUP (RESP2 array or RESP3 map); nil is none.
pub(crate) fn streams(v: &Value) -> Vec<(String, Vec<Entry>)> {
    let pairs: Vec<(&Value, &Value)> = match v {
        Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
        _ => list(v)
            .iter()
            .filter_map(|s| match list(s) {
                [k, e] => Some((k, e)),
                _ => None,
            })
            .collect(),
    };
    pairs
        .into_iter()
        .filter_map(|(k, e)| Some((String::from_utf8(bytes(k)?).ok()?, entries(e))))
        .collect()
}

/// `(next cursor, entries)` from XAUTOCLAIM.
pub(crate) fn autoclaimed(v: &Value) -> (String, Vec<Entry>) {
    let l = list(v);
    let cursor = l
        .first()
        .and_then(bytes)
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| "0-0".into());
    let got = l.get(1).map(entries).unwrap_or_default();
    (cursor, got)
}

/// Strings from an array reply.
pub(crate) fn strings(v: &Value) -> Vec<String> {
    list(v)
        .iter()
        .filter_map(|x| String::from_utf8(bytes(x)?).ok())
        .collect()
}

/// A new run id: time and randomness enough that two submitters never pick the same one.
pub(crate) fn new_run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut rnd = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut rnd);
    }
    format!(
        "{:x}{:08x}",
        now.as_secs() ^ u64::from(std::process::id()) << 32,
        u32::from_le_bytes(rnd) ^ now.subsec_nanos()
    )
}

/// A run id is what [`new_run_id`] makes, or at least safe inside a key.
pub(crate) fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_kept_out_of_messages() {
        assert_eq!(
            redact("redis://u:secret@h:1/0"),
            "redis://u:***@h:1/0".to_string()
        );
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
    }

    #[test]
    fn a_remote_redis_without_credentials_is_refused_unless_allowed() {
        assert!(matches!(
            client("redis://10.1.2.3:6379/0", false),
            Err(ClusterError::Untrusted { .. })
        ));
        assert!(client("redis://10.1.2.3:6379/0", true).is_ok());
        assert!(client("redis://:pw@10.1.2.3:6379/0", false).is_ok());
        assert!(client("redis://127.0.0.1:6379/0", false).is_ok());
        assert!(client("redis://localhost:6379/0", false).is_ok());
        assert!(client("redis://[::1]:6379/0", false).is_ok());
    }

    #[test]
    fn settings_round_trip_through_the_meta_hash() {
        let s = Settings {
            tries: 3,
            lost: 2,
            timeout: Some(Duration::from_millis(1500)),
            grace: Duration::from_millis(200),
            lease: Duration::from_millis(1000),
        };
        let fields: Vec<(String, String)> = s
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(Settings::from_fields("r", &fields).ok(), Some(s));
    }

    #[test]
    fn run_ids_are_fit_for_keys_and_differ() {
        let (a, b) = (new_run_id(), new_run_id());
        assert!(valid_run_id(&a) && valid_run_id(&b), "{a} {b}");
        assert_ne!(a, b);
        assert!(!valid_run_id("a}b"));
    }
}
