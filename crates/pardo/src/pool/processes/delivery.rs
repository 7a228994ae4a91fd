//! A job's typed end: decoding the worker's answer, writing the record before the handle
//! completes, and completing the handle.

use serde::de::DeserializeOwned;

use super::lifecycle::Exit;
use super::manager::Shared;
use super::wire::{ItemResult, Reply};
use crate::handle::Promise;
use crate::monitor::{TaskRecord, WorkerRecorder};
use crate::pool::map::Chunk;
use crate::pool::task_fn::{chunk_outcome, TaskFn};
use crate::task::{Outcome, TaskError, TaskId};

/// One task or one `map` chunk, encoded and waiting for a worker.
pub(super) struct Job {
    pub(super) id: TaskId,
    pub(super) items: u32,
    pub(super) submitted_ns: u64,
    pub(super) name: &'static str,
    pub(super) inputs: Vec<Vec<u8>>,
    pub(super) deliver: Box<dyn Deliver>,
}

/// The typed end of a job: decodes the worker's answer and completes the caller's handle.
pub(super) trait Deliver: Send {
    /// Claims the task for running; false when it was cancelled first.
    fn try_start(&self) -> bool;
    /// Decodes `result`, calls `record` with the outcome (the record is written before the
    /// handle completes), then completes the handle.
    fn deliver(
        self: Box<Self>,
        first: TaskId,
        result: Result<Reply, TaskError>,
        record: &mut dyn FnMut(Outcome),
    );
}

/// Decodes one item's result.
pub(super) fn decode_item<R: DeserializeOwned>(
    id: TaskId,
    name: &str,
    item: ItemResult,
) -> Result<R, TaskError> {
    match item {
        ItemResult::Ok(bytes) => postcard::from_bytes(&bytes).map_err(|e| TaskError::Failed {
            id,
            message: format!("cannot decode the result of {name}: {e}"),
        }),
        ItemResult::Panicked(message) => Err(TaskError::Panicked { id, message }),
        ItemResult::Failed(message) => Err(TaskError::Failed { id, message }),
    }
}

pub(super) struct OneTask<T> {
    pub(super) promise: Promise<T>,
    pub(super) name: &'static str,
}

impl<T: DeserializeOwned + Send> Deliver for OneTask<T> {
    fn try_start(&self) -> bool {
        self.promise.try_start()
    }

    fn deliver(
        self: Box<Self>,
        id: TaskId,
        result: Result<Reply, TaskError>,
        record: &mut dyn FnMut(Outcome),
    ) {
        let result = result.and_then(|reply| match reply.outputs.into_iter().next() {
            Some(item) => decode_item(id, self.name, item),
            None => Err(TaskError::Failed {
                id,
                message: "the worker answered with no result".to_owned(),
            }),
        });
        record(
            result
                .as_ref()
                .map_or_else(TaskError::outcome, |_| Outcome::Ok),
        );
        self.promise.complete(result);
    }
}

pub(super) struct ChunkTask<T, R> {
    pub(super) promise: Promise<Chunk<T, R>>,
    pub(super) name: &'static str,
    pub(super) values: Vec<R>,
    pub(super) spare: Vec<T>,
}

impl<T: Send, R: DeserializeOwned + Send> Deliver for ChunkTask<T, R> {
    fn try_start(&self) -> bool {
        self.promise.try_start()
    }

    fn deliver(
        self: Box<Self>,
        first: TaskId,
        result: Result<Reply, TaskError>,
        record: &mut dyn FnMut(Outcome),
    ) {
        let ChunkTask {
            promise,
            name,
            mut values,
            spare,
        } = *self;
        match result {
            Ok(reply) => {
                let mut errors = Vec::new();
                for (pos, item) in reply.outputs.into_iter().enumerate() {
                    let id = TaskId(first.0 + pos as u64);
                    match decode_item(id, name, item) {
                        Ok(v) => values.push(v),
                        Err(e) => errors.push((pos as u32, e)),
                    }
                }
                let chunk = Chunk {
                    values,
                    errors,
                    busy_ns: reply.busy_ns,
                    spare,
                };
                record(chunk_outcome(&chunk));
                promise.complete(Ok(chunk));
            }
            Err(e) => {
                record(e.outcome());
                promise.complete(Err(e));
            }
        }
    }
}

pub(super) fn encode_error<F: TaskFn>(id: TaskId, e: &postcard::Error) -> TaskError {
    TaskError::Failed {
        id,
        message: format!("cannot encode the input of {} for a worker: {e}", F::NAME),
    }
}

/// Writes the job's record and completes its handle.
pub(super) fn finish(
    w: &WorkerRecorder,
    job: Job,
    started_ns: u64,
    result: Result<Reply, TaskError>,
    exit: Exit,
) {
    let finished_ns = w.recorder().now_ns();
    let (cpu_user_ns, cpu_sys_ns, max_rss_bytes) = match &result {
        Ok(reply) => (
            reply.cpu_user_ns,
            reply.cpu_sys_ns,
            Some(reply.max_rss_bytes),
        ),
        Err(_) => (exit.cpu_user_ns, exit.cpu_sys_ns, exit.max_rss_bytes),
    };
    let Job {
        id,
        items,
        submitted_ns,
        deliver,
        ..
    } = job;
    let mut record = |outcome: Outcome| {
        let mut r = TaskRecord::new(id, w.worker(), submitted_ns, started_ns, finished_ns);
        r.items = items;
        r.cpu_user_ns = cpu_user_ns;
        r.cpu_sys_ns = cpu_sys_ns;
        r.max_rss_bytes = max_rss_bytes;
        r.signal = exit.signal;
        r.exit_code = exit.exit_code;
        r.outcome = outcome;
        // A panicking record sink must not take the manager down, nor turn a task that ran
        // into one that seems never to have run: the handle still gets the task's result.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.write(r)));
    };
    deliver.deliver(id, result, &mut record);
}

impl Shared {
    /// Records a task that never reached a worker (its input could not be encoded).
    pub(super) fn refuse(&self, id: TaskId, submitted_ns: u64, items: u32, err: &TaskError) {
        let now = self.recorder.now_ns();
        let mut r = TaskRecord::new(id, 1, submitted_ns, now, now);
        r.items = items;
        r.outcome = err.outcome();
        self.recorder.worker(1).write(r);
    }
}
