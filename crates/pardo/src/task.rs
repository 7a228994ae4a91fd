//! Task identity, outcomes and the error a task can end with.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The sequence number of a task within a run, starting at 1 (GNU parallel's `{#}`).
///
/// ```
/// let id = pardo::TaskId(7);
/// assert_eq!(id.to_string(), "#7");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub u64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// How one attempt of a task ended. Every executor records one of these per attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Returned normally (for commands: exit code 0).
    Ok,
    /// Returned an error (for commands: a non-zero exit code; for a process pool: the worker
    /// exited under the task).
    Failed,
    /// Panicked; the panic was caught at the task boundary.
    Panicked,
    /// Ran past its time limit and was stopped.
    TimedOut,
    /// Ended by a signal, or its worker process was killed (or vanished) under it.
    Killed,
    /// Never started: cancelled while queued, or dropped by a cancelling shutdown.
    Cancelled,
}

impl Outcome {
    /// True for [`Outcome::Ok`] only.
    pub fn is_ok(self) -> bool {
        self == Outcome::Ok
    }

    /// The lower-case name used in exports (`ok`, `failed`, `panicked`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Panicked => "panicked",
            Outcome::TimedOut => "timed_out",
            Outcome::Killed => "killed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a task produced no value. Shaped like tokio's `JoinError`: it names the task and can be
/// asked what happened.
///
/// ```
/// use pardo::{ThreadPool, TaskError};
/// let pool = ThreadPool::builder().workers(1).build().unwrap();
/// let err = pool.submit(|| -> u32 { panic!("boom") }).wait().unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(err.panic_message(), Some("boom"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; `message` is the panic payload when it was a string.
    #[error("task {id} panicked: {message}")]
    Panicked {
        /// The task.
        id: TaskId,
        /// The panic message.
        message: String,
    },
    /// The task was cancelled before it started.
    #[error("task {id} was cancelled before it started")]
    Cancelled {
        /// The task.
        id: TaskId,
    },
    /// The task ran longer than its time limit and was stopped.
    #[error("task {id} timed out after {after:?}")]
    TimedOut {
        /// The task.
        id: TaskId,
        /// The limit it exceeded.
        after: Duration,
    },
    /// The worker process running the task died (abort, segfault, SIGKILL, OOM killer) or exited
    /// (the task called `exit`); `signal` and `exit_code` say which.
    #[error("task {id} lost its worker process ({})", describe_death(*.signal, *.exit_code))]
    WorkerDied {
        /// The task.
        id: TaskId,
        /// The signal that ended the worker, if a signal did.
        signal: Option<i32>,
        /// The worker's exit code, if it exited.
        exit_code: Option<i32>,
    },
    /// The task returned an error, or its arguments or result could not be carried.
    #[error("task {id} failed: {message}")]
    Failed {
        /// The task.
        id: TaskId,
        /// What went wrong.
        message: String,
    },
}

fn describe_death(signal: Option<i32>, exit_code: Option<i32>) -> String {
    match (signal, exit_code) {
        (Some(s), _) => format!("killed by signal {s}"),
        (None, Some(c)) => format!("exited with code {c}"),
        (None, None) => "vanished".to_owned(),
    }
}

impl TaskError {
    /// The task this error belongs to.
    pub fn id(&self) -> TaskId {
        match self {
            TaskError::Panicked { id, .. }
            | TaskError::Cancelled { id }
            | TaskError::TimedOut { id, .. }
            | TaskError::WorkerDied { id, .. }
            | TaskError::Failed { id, .. } => *id,
        }
    }

    /// True when the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, TaskError::Panicked { .. })
    }

    /// True when the task was cancelled before it started.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled { .. })
    }

    /// True when the task ran out of time.
    pub fn is_timed_out(&self) -> bool {
        matches!(self, TaskError::TimedOut { .. })
    }

    /// The panic message, when the task panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            TaskError::Panicked { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The panic message by value, or the error back when it was not a panic.
    pub fn into_panic(self) -> Result<String, TaskError> {
        match self {
            TaskError::Panicked { message, .. } => Ok(message),
            other => Err(other),
        }
    }

    /// The [`Outcome`] recorded for a task that ended with this error.
    pub fn outcome(&self) -> Outcome {
        match self {
            TaskError::Panicked { .. } => Outcome::Panicked,
            TaskError::Cancelled { .. } => Outcome::Cancelled,
            TaskError::TimedOut { .. } => Outcome::TimedOut,
            // A worker that exited (rather than being killed) failed, as a command would.
            TaskError::WorkerDied {
                signal: None,
                exit_code: Some(_),
                ..
            } => Outcome::Failed,
            TaskError::WorkerDied { .. } => Outcome::Killed,
            TaskError::Failed { .. } => Outcome::Failed,
        }
    }
}

/// The text of a caught panic payload: the `&str` or `String` it carried, or a placeholder.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_names_the_task() {
        let e = TaskError::WorkerDied {
            id: TaskId(3),
            signal: Some(9),
            exit_code: None,
        };
        assert_eq!(
            e.to_string(),
            "task #3 lost its worker process (killed by signal 9)"
        );
        assert_eq!(e.outcome(), Outcome::Killed);
        assert_eq!(e.id(), TaskId(3));
    }

    #[test]
    fn panic_payloads_become_messages() {
        let s: Box<dyn std::any::Any + Send> = Box::new("static");
        assert_eq!(panic_message(s.as_ref()), "static");
        let s: Box<dyn std::any::Any + Send> = Box::new(String::from("owned"));
        assert_eq!(panic_message(s.as_ref()), "owned");
        let s: Box<dyn std::any::Any + Send> = Box::new(42u8);
        assert_eq!(panic_message(s.as_ref()), "(non-string panic payload)");
    }
}
