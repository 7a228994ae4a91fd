//! [`Runner`]: a stream of jobs on a number of slots, fixed or steered while the run goes
//! ([`RunOptions::auto`]).

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::guard::Guard;
use super::inbox::Inbox;
use super::job::{self, Capture, Finished, Limits, OutputStream, Program, Stdin, StopSignal};
use super::starts::{self, StartGates, Turns};
use super::template::{JobArgs, Template};
use super::timeout::RelativeTimeout;
use super::CommandError;
use crate::monitor::{Recorder, TaskRecord};
use crate::pool::PoolError;
use crate::sync::{lock, wait};
use crate::task::{Outcome, TaskId};
use crate::tune::controller::ControllerConfig;
use crate::tune::steer::{Steerable, Steering, DEFAULT_INTERVAL};

/// When a `--halt` condition stops the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaltWhen {
    /// Stop running jobs at once (TERM, then KILL after the grace).
    Now,
    /// Start nothing new; let running jobs finish.
    Soon,
}

/// The `--halt` condition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HaltOn {
    /// After this many failed jobs.
    Fail(u64),
    /// After this many successful jobs.
    Success(u64),
    /// When the failed jobs reach this percentage (0–100) of all the jobs
    /// ([`RunOptions::jobs_total`]), or of the jobs finished so far when the total is not known.
    FailPercent(f64),
    /// When the successful jobs reach this percentage (0–100), counted as for `FailPercent`.
    SuccessPercent(f64),
}

/// GNU parallel's `--halt when,condition`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Halt {
    /// Now or soon.
    pub when: HaltWhen,
    /// The condition.
    pub on: HaltOn,
}

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Jobs at once, at least 1; with [`auto`](RunOptions::auto), the most at once.
    pub slots: usize,
    /// Let the concurrency controller choose the number of jobs at once and steer it while
    /// the run goes (`-j auto`), between 1 and `slots`. The changes and their reasons go into
    /// the recorder ([`Recorder::changes`]).
    pub auto: Option<ControllerConfig>,
    /// Per-attempt time limit.
    pub timeout: Option<Duration>,
    /// Time between TERM and KILL when stopping a job.
    pub grace: Duration,
    /// Tries per job (GNU parallel's `--retries`; 0 and 1 both mean one try).
    pub tries: u32,
    /// Stop the run on a condition.
    pub halt: Option<Halt>,
    /// Hand output over a line at a time ([`Events::line`]) instead of whole per job.
    pub line_buffer: bool,
    /// Job numbers not to run (`--resume`); they are reported to [`Events::skipped`].
    pub skip: HashSet<u64>,
    /// A [`Guard`] to tell of every job's process group, so the jobs die with the runner even
    /// when it is killed with SIGKILL.
    pub guard: Option<Arc<Guard>>,
    /// When a job may start: `--load`, `--memfree`, `--delay` ([`StartGates`]).
    pub gates: StartGates,
    /// Hand output over as it arrives, in the pieces the job wrote ([`Events::line`]; wins
    /// over [`line_buffer`](RunOptions::line_buffer)), as GNU parallel's `--ungroup`.
    pub ungroup: bool,
    /// The niceness the jobs run at (`--nice`), as GNU parallel: set, not added to pardo's;
    /// where the system refuses it (lowering it needs the right to), the jobs keep pardo's.
    pub nice: Option<i32>,
    /// `--timeout P%`: stop an attempt after P% of the median time of the attempts finished so
    /// far (none until one has); takes the place of [`timeout`](RunOptions::timeout).
    pub timeout_percent: Option<f64>,
    /// How many jobs the run has, when known before it starts: [`HaltOn::FailPercent`] then
    /// counts against all of them, as GNU parallel does.
    pub jobs_total: Option<u64>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            slots: 1,
            auto: None,
            timeout: None,
            grace: Duration::from_millis(500),
            tries: 1,
            halt: None,
            line_buffer: false,
            skip: HashSet::new(),
            guard: None,
            gates: StartGates::default(),
            ungroup: false,
            nice: None,
            timeout_percent: None,
            jobs_total: None,
        }
    }
}

/// One finished job, after its last attempt.
#[derive(Debug)]
pub struct JobDone<'a> {
    /// Job number (`{#}`).
    pub seq: u64,
    /// Slot that ran the last attempt (`{%}`).
    pub slot: u32,
    /// The host that ran the last attempt, when not this machine (a cluster run).
    pub host: Option<&'a str>,
    /// The job's arguments.
    pub args: &'a [Vec<u8>],
    /// The command as shell code.
    pub command: &'a [u8],
    /// Start of the last attempt, seconds since the Unix epoch.
    pub start_unix_s: f64,
    /// Run time of the last attempt.
    pub runtime: Duration,
    /// Attempts made.
    pub attempts: u32,
    /// How the last attempt ended, with its output when grouped.
    pub finished: Finished,
}

impl JobDone<'_> {
    /// Exit code 0, no signal, and not stopped for running out of time (a job that traps TERM
    /// and exits 0 still timed out).
    pub fn ok(&self) -> bool {
        finished_ok(&self.finished)
    }
}

fn finished_ok(fin: &Finished) -> bool {
    fin.exit_code == Some(0) && !fin.timed_out
}

/// What the runner tells its caller. Called from the slots' threads.
pub trait Events: Sync {
    /// A complete line of output (only with [`RunOptions::line_buffer`]).
    fn line(&self, seq: u64, args: &[Vec<u8>], stream: OutputStream, data: &[u8]) {
        let _ = (seq, args, stream, data);
    }
    /// A job ended for good. An error stops the run.
    fn done(&self, done: JobDone<'_>) -> io::Result<()>;
    /// A job was skipped because [`RunOptions::skip`] names it.
    fn skipped(&self, seq: u64) {
        let _ = seq;
    }
    /// A job was taken from the input and will run.
    fn started(&self, seq: u64) {
        let _ = seq;
    }
    /// A job's command, as shell code, just before its first attempt starts (for GNU
    /// parallel's `-v` with output that is not grouped).
    fn command(&self, seq: u64, slot: u32, args: &[Vec<u8>], command: &[u8]) {
        let _ = (seq, slot, args, command);
    }
}

/// Stops a run from outside: from a signal handler or another thread.
///
/// Waiting jobs learn of a new level through a pipe per level that becomes readable when the
/// level is reached and stays so. One pipe for both levels would stay readable after the first
/// interrupt, and jobs waiting for the second would wake at once, again and again (a busy loop
/// on every core until they ended).
#[derive(Debug)]
pub struct RunControl {
    level: AtomicU8,
    /// `(read, write)` ends of the pipe for levels 1 and 2.
    wake: [(OwnedFd, OwnedFd); 2],
}

fn wake_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    Ok(unsafe {
        (
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[0]),
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[1]),
        )
    })
}

impl RunControl {
    /// A control for one run.
    pub fn new() -> io::Result<RunControl> {
        Ok(RunControl {
            level: AtomicU8::new(0),
            wake: [wake_pipe()?, wake_pipe()?],
        })
    }

    /// First call: start nothing new and stop running jobs (TERM, KILL after the grace).
    /// Second call: KILL running jobs at once. Async-signal-safe (an atomic and a `write`).
    pub fn interrupt(&self) {
        let _ = self
            .level
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| Some((l + 1).min(2)));
        self.wake();
    }

    /// The level as the job runner reads it.
    #[cfg(feature = "cluster")]
    pub(crate) fn level_cell(&self) -> &AtomicU8 {
        &self.level
    }

    /// How many times [`RunControl::interrupt`] was called, at most 2.
    pub fn level(&self) -> u8 {
        self.level.load(Ordering::SeqCst)
    }

    fn raise_to(&self, level: u8) {
        self.level.fetch_max(level, Ordering::SeqCst);
        self.wake();
    }

    /// The descriptors that become readable at level 1 and at level 2.
    pub(crate) fn wake_fds(&self) -> [std::os::fd::RawFd; 2] {
        [self.wake[0].0.as_raw_fd(), self.wake[1].0.as_raw_fd()]
    }

    fn wake(&self) {
        let level = usize::from(self.level());
        for (_, w) in self.wake.iter().take(level) {
            // SAFETY: writing one byte from a valid buffer to our own pipe; a full pipe is
            // fine (it is already readable, which is all the waiters look at).
            unsafe {
                libc::write(w.as_raw_fd(), b"x".as_ptr().cast(), 1);
            }
        }
    }
}

/// The job whose end met the `--halt` condition.
///
/// ```
/// use pardo::command::{Events, Halt, HaltOn, HaltWhen, JobDone, RunControl, RunOptions, Runner, Template};
/// use pardo::monitor::{Recorder, RunRecord, Retention};
///
/// struct Quiet;
/// impl Events for Quiet {
///     fn done(&self, _: JobDone<'_>) -> std::io::Result<()> { Ok(()) }
/// }
/// let halt = Halt { when: HaltWhen::Soon, on: HaltOn::Fail(1) };
/// let opts = RunOptions { slots: 1, halt: Some(halt), ..RunOptions::default() };
/// let recorder = Recorder::new(RunRecord::now("command", 1), true, Retention::SummaryOnly);
/// let runner = Runner::new(Template::parse(&["exit".into()]), opts, recorder);
/// let inputs = ["0", "3", "0"].map(|s| Ok(vec![s.as_bytes().to_vec()]));
/// let outcome = runner.run(inputs.into_iter(), &Quiet, &RunControl::new()?)?;
/// // A single failure was enough: the run ends with that job's own status.
/// assert_eq!(outcome.halted, Some(3));
/// let by = outcome.halted_by.expect("the run was halted");
/// assert_eq!((by.seq, by.exit_code, by.done, by.failed), (2, Some(3), 2, 1));
/// assert_eq!(by.command, b"exit 3");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaltedBy {
    /// Its job number.
    pub seq: u64,
    /// Its command as shell code.
    pub command: Vec<u8>,
    /// It succeeded (a `success=` condition).
    pub ok: bool,
    /// Its exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it.
    pub signal: Option<i32>,
    /// It was stopped for running out of time.
    pub timed_out: bool,
    /// Jobs finished and failed when the condition was met.
    pub done: u64,
    /// Of which failed.
    pub failed: u64,
}

/// How a run ended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// Jobs that ran (skipped ones not counted).
    pub jobs: u64,
    /// Jobs whose last attempt did not exit 0.
    pub failed: u64,
    /// The run was halted by `--halt`; holds the exit code GNU parallel gives (that of the job
    /// that met the condition, or 0 for `success=`).
    pub halted: Option<i32>,
    /// The job that met the `--halt` condition.
    pub halted_by: Option<HaltedBy>,
    /// The run was interrupted by [`RunControl::interrupt`].
    pub interrupted: bool,
}

/// Runs jobs from a stream of argument lists; see the [module docs](super).
///
/// ```
/// use pardo::command::{Events, JobDone, RunControl, RunOptions, Runner, Template};
/// use pardo::monitor::{Recorder, RunRecord, Retention};
/// use std::sync::Mutex;
///
/// struct Collect(Mutex<Vec<Vec<u8>>>);
/// impl Events for Collect {
///     fn done(&self, d: JobDone<'_>) -> std::io::Result<()> {
///         self.0.lock().unwrap().push(d.finished.stdout.to_vec()?);
///         Ok(())
///     }
/// }
/// let template = Template::parse(&["echo".into()]);
/// let recorder = Recorder::new(RunRecord::now("command", 2), true, Retention::All);
/// let runner = Runner::new(template, RunOptions { slots: 2, ..RunOptions::default() }, recorder.clone());
/// let out = Collect(Mutex::new(Vec::new()));
/// let control = RunControl::new()?;
/// let inputs = ["a", "b"].map(|s| Ok(vec![s.as_bytes().to_vec()]));
/// let outcome = runner.run(inputs.into_iter(), &out, &control)?;
/// assert_eq!((outcome.jobs, outcome.failed), (2, 0));
/// let mut lines = out.0.into_inner().unwrap();
/// lines.sort();
/// assert_eq!(lines, [b"a\n".to_vec(), b"b\n".to_vec()]);
/// assert_eq!(recorder.report().tasks, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Runner {
    template: Template,
    opts: RunOptions,
    recorder: Recorder,
}

struct Job {
    seq: u64,
    args: Vec<Vec<u8>>,
    stdin: Stdin,
    submitted_ns: u64,
}

#[derive(Default)]
struct Tally {
    done: u64,
    failed: u64,
    halted: Option<i32>,
    halted_by: Option<HaltedBy>,
    error: Option<CommandError>,
}

/// Argument lists read ahead at least, whatever the slot count: the input thread then wakes
/// once per half of them (a few dozen bytes each), not once per job or two.
const ARGS_AHEAD: usize = 32;

/// One input: a job's arguments and standard input.
type Input = io::Result<(Vec<Vec<u8>>, Stdin)>;

/// Ends the inbox however the input thread ends, a panicking iterator included, so no slot
/// waits for an input that cannot come.
struct EndOnDrop(Arc<Inbox<Input>>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}

struct Shared<'a> {
    /// The inputs, read ahead by the input thread; slots take them in turn.
    inbox: Arc<Inbox<Input>>,
    gate: Arc<Gate>,
    no_more: AtomicBool,
    /// The first input error; it ends the run like `no_more`.
    input_error: Mutex<Option<CommandError>>,
    tally: Mutex<Tally>,
    control: &'a RunControl,
    events: &'a dyn Events,
    turns: Turns,
    /// One per slot with `--memfree`, none without.
    evict: Vec<SlotEvict>,
    /// Slots whose loop has not returned yet.
    live_slots: AtomicUsize,
    /// `--timeout P%`.
    relative: Option<RelativeTimeout>,
}

/// What the memory watcher knows of a slot's running attempt, and the pipe that tells the
/// attempt to stop.
struct SlotEvict {
    state: Mutex<EvictState>,
    pipe: (OwnedFd, OwnedFd),
}

#[derive(Default)]
struct EvictState {
    /// Start of the attempt running now (recorder clock), `None` while idle.
    started: Option<u64>,
    /// The attempt was told to stop and has not ended yet.
    evicting: bool,
}

impl SlotEvict {
    /// Marks the attempt ended and drains the pipe, under the lock the watcher writes under,
    /// so no stale byte can reach the slot's next attempt.
    fn ended(&self) {
        let mut st = lock(&self.state);
        st.started = None;
        st.evicting = false;
        let mut buf = [0u8; 16];
        // SAFETY: reading into a valid buffer from our own non-blocking pipe.
        while unsafe { libc::read(self.pipe.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0
        {
        }
    }
}

/// Counts a slot's loop as ended however it returns.
struct SlotAlive<'a>(&'a AtomicUsize);

impl Drop for SlotAlive<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Which slots may take a job: those numbered up to the target. A steered run moves the
/// target; a slot above it finishes its job and waits here until the target rises again or the
/// run's jobs run out.
struct Gate {
    state: Mutex<GateState>,
    moved: Condvar,
}

struct GateState {
    target: usize,
    /// Nothing is left for a slot to take, now or later: a slot found the inputs ended and
    /// the inbox empty, or the run is over.
    closed: bool,
}

impl Gate {
    fn new(target: usize) -> Gate {
        Gate {
            state: Mutex::new(GateState {
                target,
                closed: false,
            }),
            moved: Condvar::new(),
        }
    }

    /// Waits until `slot` may take a job; false once the run has no more jobs for it.
    ///
    /// A slot above the target waits while jobs are still queued even after the last input
    /// was read: all 200 inputs of `::: $(seq 200)` are read at once, and the target rises
    /// only later (ending those slots then kept a steered run at its starting count). That is
    /// why the gate closes only when a slot finds nothing left to take.
    fn admit(&self, slot: u32) -> bool {
        let mut st = lock(&self.state);
        while slot as usize > st.target && !st.closed {
            st = wait(&self.moved, st);
        }
        slot as usize <= st.target
    }

    /// Waits until the target is above `n`; None once the gate is closed.
    fn wait_above(&self, n: usize) -> Option<usize> {
        let mut st = lock(&self.state);
        while st.target <= n && !st.closed {
            st = wait(&self.moved, st);
        }
        (!st.closed).then_some(st.target)
    }

    fn set(&self, target: usize) {
        lock(&self.state).target = target;
        self.moved.notify_all();
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.moved.notify_all();
    }
}

/// The runner's slots as the steering loop sees them.
struct SlotSteer {
    gate: Arc<Gate>,
    inbox: Arc<Inbox<Input>>,
    recorder: Recorder,
    max: usize,
}

impl Steerable for SlotSteer {
    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn live(&self) -> usize {
        lock(&self.gate.state).target
    }

    fn set_target(&self, n: usize) -> Result<(), PoolError> {
        let n = n.clamp(1, self.max);
        self.gate.set(n);
        self.recorder.set_capacity(n);
        Ok(())
    }

    /// Known once every input was read: the jobs still in the inbox plus those running.
    fn tasks_left(&self) -> Option<u64> {
        let queued = self.inbox.left_after_end()? as u64;
        Some(queued.saturating_add(self.recorder.counters().running))
    }
}

impl Shared<'_> {
    fn start_nothing_new(&self) {
        self.no_more.store(true, Ordering::SeqCst);
        self.inbox.nudge();
    }
}

/// Blocks until one of `fds` is readable or hung up; returns its index (None on a poll error).
fn wait_readable(fds: &[std::os::fd::RawFd]) -> Option<usize> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structs.
        let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
        if rc < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return None;
        }
        return pfds.iter().position(|p| p.revents != 0);
    }
}

impl Runner {
    /// A runner for `template` that writes its records to `recorder`.
    pub fn new(template: Template, opts: RunOptions, recorder: Recorder) -> Runner {
        Runner {
            template,
            opts,
            recorder,
        }
    }

    /// Runs every argument list from `inputs` (job numbers count from 1 in input order) and
    /// returns when all started jobs have ended. An input error, an over-long command line or
    /// an [`Events::done`] error stops the run and is returned once running jobs have ended.
    ///
    /// `inputs` is read on a thread of its own, a few items ahead (twice the slots, and at
    /// least 32), so that an interrupt stops the run even while the next input is
    /// slow to come.
    /// If the run stops while that thread is blocked inside `inputs`, the thread is left to
    /// end by itself when `inputs` returns (or with the process).
    pub fn run(
        &self,
        inputs: impl Iterator<Item = io::Result<Vec<Vec<u8>>>> + Send + 'static,
        events: &dyn Events,
        control: &RunControl,
    ) -> Result<RunOutcome, CommandError> {
        let ahead = (2 * self.opts.slots).max(ARGS_AHEAD);
        self.run_jobs(
            inputs.map(|a| a.map(|a| (a, Stdin::Null))),
            ahead,
            events,
            control,
        )
    }

    /// Runs one job per standard input from `inputs` (`--pipe`, `--pipepart`): the template
    /// is rendered with no arguments (`{}` is empty, `{#}` is the job number). Otherwise as
    /// [`Runner::run`]; the inputs are pulled as slots free up, so the blocks in memory are
    /// at most about twice the slot count.
    ///
    /// ```
    /// use pardo::command::{Block, Events, JobDone, RunControl, RunOptions, Runner, Stdin, Template};
    /// use pardo::monitor::{Recorder, RunRecord, Retention};
    /// use std::sync::{Arc, Mutex};
    ///
    /// struct Collect(Mutex<Vec<Vec<u8>>>);
    /// impl Events for Collect {
    ///     fn done(&self, d: JobDone<'_>) -> std::io::Result<()> {
    ///         self.0.lock().unwrap().push(d.finished.stdout.to_vec()?);
    ///         Ok(())
    ///     }
    /// }
    /// let template = Template::parse_piped(&["wc".into(), "-l".into()]);
    /// let recorder = Recorder::new(RunRecord::now("command", 2), true, Retention::All);
    /// let runner = Runner::new(template, RunOptions { slots: 2, ..RunOptions::default() }, recorder);
    /// let out = Collect(Mutex::new(Vec::new()));
    /// let blocks = ["a\nb\n", "c\n"].map(|s| Ok(Stdin::Bytes(Block::new(s.as_bytes().to_vec()))));
    /// let outcome = runner.run_piped(blocks.into_iter(), &out, &RunControl::new()?)?;
    /// assert_eq!(outcome.jobs, 2);
    /// let mut counts = out.0.into_inner().unwrap();
    /// counts.sort();
    /// assert_eq!(counts, [b"1\n".to_vec(), b"2\n".to_vec()]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run_piped(
        &self,
        inputs: impl Iterator<Item = io::Result<Stdin>> + Send + 'static,
        events: &dyn Events,
        control: &RunControl,
    ) -> Result<RunOutcome, CommandError> {
        let ahead = 2 * self.opts.slots;
        self.run_jobs(
            inputs.map(|s| s.map(|s| (Vec::new(), s))),
            ahead,
            events,
            control,
        )
    }

    fn run_jobs(
        &self,
        inputs: impl Iterator<Item = io::Result<(Vec<Vec<u8>>, Stdin)>> + Send + 'static,
        ahead: usize,
        events: &dyn Events,
        control: &RunControl,
    ) -> Result<RunOutcome, CommandError> {
        let slots = self.opts.slots.max(1);
        let first = match &self.opts.auto {
            Some(c) => c.cores.clamp(c.min.max(1), slots),
            None => slots,
        };
        let gate = Arc::new(Gate::new(first));
        // The slots take inputs from the inbox directly; it holds `ahead` items at most (a
        // small multiple of the slot count), so memory follows concurrency.
        let inbox: Arc<Inbox<Input>> = Arc::new(Inbox::new(ahead));
        let steering = match &self.opts.auto {
            Some(c) => {
                self.recorder.set_capacity(first);
                let mut c = c.clone();
                c.max = slots;
                let target = SlotSteer {
                    gate: Arc::clone(&gate),
                    inbox: Arc::clone(&inbox),
                    recorder: self.recorder.clone(),
                    max: slots,
                };
                Some(Steering::start(target, c, DEFAULT_INTERVAL).map_err(CommandError::Setup)?)
            }
            // A fixed run is sampled too, so its report can draw running, queued and CPU use
            // over time like a steered one.
            None => Some(
                Steering::sample_only(
                    SlotSteer {
                        gate: Arc::clone(&gate),
                        inbox: Arc::clone(&inbox),
                        recorder: self.recorder.clone(),
                        max: slots,
                    },
                    DEFAULT_INTERVAL,
                )
                .map_err(CommandError::Setup)?,
            ),
        };
        // Inputs are read on a thread of their own, so that waiting for input that may never
        // come (a pipe nobody writes to) cannot keep an interrupt from stopping the run.
        let reader = EndOnDrop(Arc::clone(&inbox));
        std::thread::Builder::new()
            .name("pardo-inputs".into())
            .spawn(move || {
                for item in inputs {
                    if !reader.0.push(item) {
                        return; // the run is over
                    }
                }
            })
            .map_err(CommandError::Setup)?;
        // Closed once every slot has ended, which ends the interrupt watcher below.
        let (over_r, over_w) = wake_pipe().map_err(CommandError::Setup)?;
        let evict = if self.opts.gates.memfree.is_some() {
            (0..slots)
                .map(|_| {
                    Ok(SlotEvict {
                        state: Mutex::new(EvictState::default()),
                        pipe: wake_pipe()?,
                    })
                })
                .collect::<io::Result<Vec<_>>>()
                .map_err(CommandError::Setup)?
        } else {
            Vec::new()
        };
        let shared = Shared {
            inbox,
            gate: Arc::clone(&gate),
            no_more: AtomicBool::new(false),
            input_error: Mutex::new(None),
            tally: Mutex::new(Tally::default()),
            control,
            events,
            turns: Turns::new(self.opts.gates.clone()),
            evict,
            // The slot spawner's, until every slot it spawned has ended.
            live_slots: AtomicUsize::new(1),
            relative: self.opts.timeout_percent.map(RelativeTimeout::new),
        };
        std::thread::scope(|s| {
            if !shared.evict.is_empty() {
                let shared = &shared;
                s.spawn(move || watch_memory(shared));
            }
            let shared = &shared;
            // Slots are spawned as the target reaches them, not all at the start: a steered
            // run may go up to hundreds, and hundreds of idle threads woken by every move of
            // the gate cost a short run's start what its first jobs need.
            let spawner = s.spawn(move || {
                let _alive = SlotAlive(&shared.live_slots);
                let mut handles = Vec::new();
                let mut spawned = 0;
                while spawned < slots {
                    let Some(target) = shared.gate.wait_above(spawned) else {
                        break;
                    };
                    let upto = target.min(slots);
                    for slot in spawned + 1..=upto {
                        shared.live_slots.fetch_add(1, Ordering::SeqCst);
                        let slot = slot as u32;
                        handles.push(s.spawn(move || self.slot_loop(slot, shared)));
                    }
                    spawned = upto;
                }
                for h in handles {
                    // A slot's panic is the scope's to report; it ends the run all the same.
                    let _ = h.join();
                }
            });
            let over_r = &over_r;
            // Turns the interrupt pipe into a nudge for the slots waiting for input.
            s.spawn(move || {
                if wait_readable(&[control.wake_fds()[0], over_r.as_raw_fd()]) == Some(0) {
                    shared.inbox.nudge();
                }
            });
            let _ = spawner.join();
            // Ends the input thread at its next item, and the interrupt watcher.
            shared.inbox.close();
            drop(over_w);
            gate.close();
        });
        drop(steering);
        // A reader blocked on input that never comes stays blocked (its thread is detached)
        // until the input closes or the process exits.
        let input_error = shared
            .input_error
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        let tally = shared.tally.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = input_error.or(tally.error) {
            return Err(e);
        }
        Ok(RunOutcome {
            jobs: tally.done,
            failed: tally.failed,
            halted: tally.halted,
            halted_by: tally.halted_by,
            interrupted: control.level() > 0 && tally.halted.is_none(),
        })
    }

    fn slot_loop(&self, slot: u32, shared: &Shared<'_>) {
        let _alive = SlotAlive(&shared.live_slots);
        let writer = self.recorder.worker(slot);
        let stopped = || shared.no_more.load(Ordering::SeqCst) || shared.control.level() > 0;
        loop {
            if !shared.gate.admit(slot) {
                return;
            }
            let Some((seq, item)) = shared.inbox.take(&stopped) else {
                // The inputs ended or the run stops: slots waiting above the target learn
                // that there is nothing more for them.
                shared.gate.close();
                return;
            };
            let (args, stdin) = match item {
                Ok(a) => a,
                Err(e) => {
                    lock(&shared.input_error).get_or_insert(CommandError::Input(e));
                    shared.start_nothing_new();
                    continue;
                }
            };
            if self.opts.skip.contains(&seq) {
                shared.events.skipped(seq);
                continue;
            }
            self.recorder.submit(1);
            let job = Job {
                seq,
                args,
                stdin,
                submitted_ns: self.recorder.now_ns(),
            };
            if !shared
                .turns
                .wait_turn(&stopped, shared.control.wake_fds()[0])
            {
                writer.cancelled(TaskId(job.seq), job.submitted_ns, 1);
                continue;
            }
            shared.events.started(job.seq);
            if let Err(e) = self.run_job(slot, &job, shared, &writer) {
                lock(&shared.tally).error.get_or_insert(e);
                shared.start_nothing_new();
            }
        }
    }

    fn run_job(
        &self,
        slot: u32,
        job: &Job,
        shared: &Shared<'_>,
        writer: &crate::monitor::WorkerRecorder,
    ) -> Result<(), CommandError> {
        let line = self
            .template
            .render(&JobArgs {
                seq: job.seq,
                slot,
                args: &job.args,
            })
            .map_err(|why| CommandError::Quote { seq: job.seq, why })?;
        shared.events.command(job.seq, slot, &job.args, &line.shell);
        let program = match line.argv {
            Some(argv) if !argv.is_empty() => Program::Direct(argv),
            _ => Program::Shell(line.shell.clone()),
        };
        let limits = Limits {
            timeout: self.opts.timeout,
            grace: self.opts.grace,
            nice: self.opts.nice,
        };
        let stop = StopSignal {
            wake: shared.control.wake_fds(),
            level: &shared.control.level,
            guard: self.opts.guard.as_deref(),
            evict: None,
            relative: shared.relative.as_ref(),
            go_ahead: None,
        };
        let evict = shared.evict.get(slot as usize - 1);
        let stop = StopSignal {
            evict: evict.map(|e| e.pipe.0.as_raw_fd()),
            ..stop
        };
        let tries = self.opts.tries.max(1);
        let interrupted = || shared.control.level() > 0;
        let mut attempt = 0;
        // Attempts that count against `tries`: one stopped to free memory does not.
        let mut counted = 0;
        loop {
            attempt += 1;
            writer.set_running(true);
            let start_wall = SystemTime::now();
            let started_ns = self.recorder.now_ns();
            if let Some(e) = evict {
                lock(&e.state).started = Some(started_ns);
            }
            let t0 = Instant::now();
            let mut on_line = |stream: OutputStream, data: &[u8]| {
                shared.events.line(job.seq, &job.args, stream, data);
            };
            let capture = if self.opts.ungroup {
                Capture::Raw(&mut on_line)
            } else if self.opts.line_buffer {
                Capture::Lines(&mut on_line)
            } else {
                Capture::Group
            };
            let fin = job::run(&program, &job.stdin, limits, &stop, capture);
            if let Some(e) = evict {
                e.ended();
            }
            writer.set_running(false);
            let fin = fin.map_err(|e| {
                if e.raw_os_error() == Some(libc::E2BIG) {
                    CommandError::TooLong {
                        seq: job.seq,
                        bytes: line.shell.len(),
                    }
                } else {
                    CommandError::Spawn {
                        seq: job.seq,
                        error: e,
                    }
                }
            })?;
            let runtime = t0.elapsed();
            if let (Some(r), false) = (&shared.relative, fin.stopped || fin.evicted) {
                r.finished(runtime);
            }
            writer.write(TaskRecord {
                id: TaskId(job.seq),
                attempt,
                items: 1,
                input: display_input(&job.args),
                worker: slot,
                submitted_ns: job.submitted_ns,
                started_ns,
                finished_ns: self.recorder.now_ns(),
                cpu_user_ns: fin.cpu_user_ns,
                cpu_sys_ns: fin.cpu_sys_ns,
                cpu_wait_ns: None,
                max_rss_bytes: Some(fin.max_rss_bytes),
                exit_code: fin.exit_code,
                signal: fin.signal,
                output_bytes: Some(fin.output_bytes),
                outcome: outcome_of(&fin),
                host: None,
            });
            let ok = finished_ok(&fin);
            if !fin.evicted {
                counted += 1;
            }
            let again = !ok && !fin.stopped && !interrupted() && (fin.evicted || counted < tries);
            // The next attempt takes its turn at the gates like any start; an interrupt while
            // it waits makes this attempt the last.
            if !again
                || !shared
                    .turns
                    .wait_turn(&interrupted, shared.control.wake_fds()[0])
            {
                let start_unix_s = start_wall
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                let ended = HaltedBy {
                    seq: job.seq,
                    command: line.shell.clone(),
                    ok,
                    exit_code: fin.exit_code,
                    signal: fin.signal,
                    timed_out: fin.timed_out,
                    done: 0,
                    failed: 0,
                };
                shared
                    .events
                    .done(JobDone {
                        seq: job.seq,
                        slot,
                        host: None,
                        args: &job.args,
                        command: &line.shell,
                        start_unix_s,
                        runtime,
                        attempts: attempt,
                        finished: fin,
                    })
                    .map_err(CommandError::Events)?;
                self.count(ended, shared);
                return Ok(());
            }
        }
    }

    /// Counts a job that ended and checks the `--halt` condition, GNU parallel's way:
    /// `fail=N` and `fail=P%` count failures (P% of all the jobs when their number is
    /// known); the run then ends with the failed count (at most 101), the failed percentage
    /// rounded up, or — when a single failure was enough — the job's own status.
    fn count(&self, mut ended: HaltedBy, shared: &Shared<'_>) {
        let ok = ended.ok;
        let mut t = lock(&shared.tally);
        t.done += 1;
        if !ok {
            t.failed += 1;
        }
        let Some(halt) = self.opts.halt else { return };
        if t.halted.is_some() {
            return;
        }
        // Failures needed, and what the percentages are of.
        let of = self.opts.jobs_total.unwrap_or(t.done).max(1) as f64;
        let (met, needed) = match halt.on {
            HaltOn::Fail(n) => (!ok && t.failed >= n, n as f64),
            HaltOn::Success(n) => (ok && t.done - t.failed >= n, n as f64),
            HaltOn::FailPercent(p) => {
                let needed = of * p / 100.0;
                (!ok && t.failed as f64 >= needed, needed)
            }
            HaltOn::SuccessPercent(p) => (ok && (t.done - t.failed) as f64 >= of * p / 100.0, 0.0),
        };
        if !met {
            return;
        }
        // The job's own status as a shell reports it: its exit code, 128 + a signal; a job
        // stopped for running out of time gives 255 (GNU parallel's exit value -1).
        let own = if ended.timed_out {
            255
        } else {
            ended
                .exit_code
                .filter(|&c| c != 0)
                .or(ended.signal.map(|s| 128 + s))
                .unwrap_or(1)
        };
        t.halted = Some(match halt.on {
            HaltOn::Success(_) | HaltOn::SuccessPercent(_) => 0,
            _ if needed == 1.0 => own,
            HaltOn::Fail(_) => t.failed.min(101) as i32,
            HaltOn::FailPercent(_) => (t.failed as f64 * 100.0 / of).ceil() as i32,
        });
        ended.done = t.done;
        ended.failed = t.failed;
        t.halted_by = Some(ended);
        shared.start_nothing_new();
        if halt.when == HaltWhen::Now {
            shared.control.raise_to(1);
        }
    }
}

/// With `--memfree`: while memory available is under half of it, stops the youngest running
/// attempt (one at a time, the next once the last has ended), until the slots are done.
fn watch_memory(shared: &Shared<'_>) {
    let gates = shared.turns.gates();
    while shared.live_slots.load(Ordering::SeqCst) > 0 && shared.control.level() == 0 {
        let busy = shared.evict.iter().any(|e| lock(&e.state).evicting);
        if !busy && gates.must_evict() {
            let started: Vec<Option<u64>> = shared
                .evict
                .iter()
                .map(|e| lock(&e.state).started)
                .collect();
            if let Some(i) = starts::youngest(&started) {
                let mut st = lock(&shared.evict[i].state);
                // Still the same attempt: it may have ended since the look above.
                if st.started.is_some() && st.started == started[i] {
                    st.evicting = true;
                    // SAFETY: one byte from a valid buffer to our own pipe.
                    unsafe {
                        libc::write(shared.evict[i].pipe.1.as_raw_fd(), b"x".as_ptr().cast(), 1);
                    }
                }
            }
        }
        starts::sleep_unless_woken(shared.control.wake_fds()[0], gates.poll);
    }
}

pub(crate) fn outcome_of(fin: &Finished) -> Outcome {
    if fin.timed_out {
        Outcome::TimedOut
    } else if fin.signal.is_some() {
        Outcome::Killed
    } else if fin.exit_code == Some(0) {
        Outcome::Ok
    } else {
        Outcome::Failed
    }
}

pub(crate) fn display_input(args: &[Vec<u8>]) -> String {
    let mut s = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&String::from_utf8_lossy(a));
        if s.len() > 200 {
            let mut cut = 200;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push('…');
            break;
        }
    }
    s
}
