//! External commands as tasks: GNU parallel's job model in the library.
//!
//! - [`Template`] parses a command with replacement strings once and renders each job, writing
//!   every inserted value for the shell context it sits in so that no value runs as code (and
//!   running without a shell when it can); [`shell`] picks the shell.
//! - `job::run` spawns one job in its own process group, collects its output, reaps it with
//!   `wait4` for CPU and peak memory, and stops the whole group (TERM, then KILL after a grace)
//!   on a timeout or an interrupt.
//! - [`Runner`] runs a stream of jobs on a fixed number of slots with retries, `--halt`
//!   conditions and interrupts, writing one [`TaskRecord`](crate::monitor::TaskRecord) per
//!   attempt to a [`Recorder`](crate::monitor::Recorder) and handing each finished job to
//!   [`Events`] (output, joblog).
//! - [`starts`] holds starts back while the machine is busy or short of memory, spaces them
//!   (`--load`, `--memfree`, `--delay`), and has the youngest job stopped and run again when
//!   memory runs short.
//! - [`pipe`] cuts a stream ([`pipe::Blocks`], `--pipe`) or a file ([`pipe::Parts`],
//!   `--pipepart`) into blocks of whole records, each the [`Stdin`] of one job.
//! - [`joblog`] writes and reads GNU parallel's joblog format.
//! - [`Spool`] holds a job's grouped output: in memory up to [`SPILL_AT`] bytes per stream, in
//!   an unlinked temporary file past that.
//! - [`guard`] kills the jobs of a runner that died without stopping them (`kill -9`).
//!
//! What is promised: inputs are pulled from the iterator only as slots free up (memory follows
//! the slot count, not the input size); every job that started is reported to [`Events::done`]
//! exactly once, after its last attempt; a stopped run starts nothing new and leaves no process
//! of a job it stopped behind.

pub mod guard;
mod inbox;
pub(crate) mod job;
pub mod joblog;
pub mod multi;
mod perl;
pub mod pipe;
mod quote;
mod run;
pub mod shell;
mod spool;
pub mod starts;
mod template;
mod timeout;

pub use guard::Guard;
pub use job::{Block, Finished, OutputStream, Program, Stdin};
pub use multi::{Limits, Pack, PackError, MAX_LINE};
pub use perl::PerlError;
#[cfg(feature = "cluster")]
pub(crate) use run::{display_input, outcome_of};
pub use run::{
    Events, Halt, HaltOn, HaltWhen, HaltedBy, JobDone, RunControl, RunOptions, RunOutcome, Runner,
};
pub use spool::{Spool, SPILL_AT};
pub use starts::{parse_duration, parse_size, Blocked, Machine, ProcMachine, StartGates};
pub use template::{
    apply, needs_shell_code, quote_into, CommandLine, Form, JobArgs, QuoteError, Syntax,
    SyntaxError, Template,
};
pub use timeout::RelativeTimeout;

/// Why a run of commands could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The system refused the command line (E2BIG).
    #[error("job {seq}: the command line ({bytes} bytes) is longer than the system allows")]
    TooLong {
        /// The job number.
        seq: u64,
        /// Length of the command as shell code.
        bytes: usize,
    },
    /// Spawning or waiting for a job failed for a reason other than the command itself.
    // `error` is shown in the message, so it is not also a `source` (printed twice otherwise).
    #[error("job {seq}: {error}")]
    Spawn {
        /// The job number.
        seq: u64,
        /// What the system said.
        error: std::io::Error,
    },
    /// A job's values cannot be put into the template safely; nothing was run for it.
    // `why` is shown in the message, so it is not also a `source` (printed twice otherwise).
    #[error("job {seq}: {why}")]
    Quote {
        /// The job number.
        seq: u64,
        /// Why.
        why: template::QuoteError,
    },
    /// Reading the inputs failed.
    #[error("cannot read the inputs: {0}")]
    Input(std::io::Error),
    /// Reporting a finished job failed (e.g. the joblog could not be written).
    #[error("{0}")]
    Events(std::io::Error),
    /// The control pipe could not be created.
    #[error("cannot set up the run: {0}")]
    Setup(std::io::Error),
}
