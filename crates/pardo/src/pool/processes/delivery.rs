//! A job's typed end: decoding the worker's answer, writing the record before the handle
//! completes, and completing the handle. Shared with the cluster pool (feature `cluster`),
//! whose jobs are the same encoded inputs and whose answers are the same [`Reply`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::de::DeserializeOwned;

use super::lifecycle::Exit;
use super::wire::{ItemResult, Reply};
use crate::handle::{Handle, Promise};
use crate::monitor::{Recorder, TaskRecord, WorkerRecorder};
use crate::pool::map::chunk_outcome;
use crate::pool::map::{Backlog, Chunk, Map, MapUnordered, SubmitChunk};
use crate::pool::task_fn::TaskFn;
use crate::task::{Outcome, TaskError, TaskId};

/// One task or one `map` chunk, encoded and waiting for a worker.
pub(crate) struct Job {
    pub(crate) id: TaskId,
    pub(crate) items: u32,
    pub(crate) submitted_ns: u64,
    pub(crate) name: &'static str,
    pub(crate) inputs: Vec<Vec<u8>>,
    pub(crate) deliver: Box<dyn Deliver>,
}

/// Where a pool puts the jobs it makes: the process pool's queue, a cluster pool's.
pub(crate) trait Jobs {
    /// The pool's recorder (task ids, records of jobs refused before they were queued).
    fn recorder(&self) -> &Recorder;
    /// Queues `job`, or fails it (with its record) when the pool cannot run it any more.
    fn push(&self, job: Job);
    /// The worker count a `map`'s window follows (four chunks in flight per worker).
    fn target(&self) -> &AtomicUsize;
    /// What the pool's maps tell steering (see [`Backlog`]).
    fn backlog(&self) -> &Backlog;
}

/// A `map` of `F` over `inputs` on `jobs`: one input per job unless
/// [`Map::chunk_size`] says otherwise, the window following the pool's worker count.
pub(crate) fn map<F: TaskFn, I: Iterator<Item = F::Input>>(
    jobs: &impl Jobs,
    inputs: I,
) -> Map<'_, I, F::Output> {
    Map::new(inputs, window(jobs), chunk_submitter::<F>(jobs))
        .chunk_size(1)
        .follow(jobs.target(), jobs.backlog())
}

/// As [`map`], in completion order.
pub(crate) fn map_unordered<F: TaskFn, I: Iterator<Item = F::Input>>(
    jobs: &impl Jobs,
    inputs: I,
) -> MapUnordered<'_, I, F::Output> {
    MapUnordered::new(inputs, window(jobs), chunk_submitter::<F>(jobs))
        .chunk_size(1)
        .follow(jobs.target(), jobs.backlog())
}

fn window(jobs: &impl Jobs) -> usize {
    4 * jobs.target().load(Ordering::Relaxed).max(1)
}

fn chunk_submitter<F: TaskFn>(jobs: &impl Jobs) -> SubmitChunk<'_, F::Input, F::Output> {
    Box::new(move |items: Vec<F::Input>, values: Vec<F::Output>| {
        submit_chunk::<F>(jobs, items, values)
    })
}

/// Submits `f(input)`: encodes the input and queues the job, or fails the handle (with a
/// record) when the input cannot be encoded.
pub(crate) fn submit_one<F: TaskFn>(jobs: &impl Jobs, input: F::Input) -> Handle<F::Output> {
    let recorder = jobs.recorder();
    let id = recorder.submit(1);
    let submitted_ns = recorder.now_ns();
    let (promise, handle) = Promise::new(id);
    match postcard::to_allocvec(&input) {
        Ok(bytes) => jobs.push(Job {
            id,
            items: 1,
            submitted_ns,
            name: F::NAME,
            inputs: vec![bytes],
            deliver: Box::new(OneTask {
                promise,
                name: F::NAME,
            }),
        }),
        Err(e) => {
            let err = encode_error::<F>(id, &e);
            refuse(recorder, id, submitted_ns, 1, &err);
            promise.complete(Err(err));
        }
    }
    handle
}

/// The handle of one `map` chunk of `F`.
type ChunkHandle<F> = Handle<Chunk<<F as TaskFn>::Input, <F as TaskFn>::Output>>;

/// Submits one `map` chunk of `f` (see [`SubmitChunk`]).
fn submit_chunk<F: TaskFn>(
    jobs: &impl Jobs,
    mut items: Vec<F::Input>,
    values: Vec<F::Output>,
) -> (TaskId, ChunkHandle<F>) {
    let n = items.len();
    let recorder = jobs.recorder();
    let first = recorder.submit(n as u64);
    let submitted_ns = recorder.now_ns();
    let (promise, handle) = Promise::new(first);
    let encoded: Result<Vec<Vec<u8>>, _> = items.iter().map(postcard::to_allocvec).collect();
    items.clear();
    let count = u32::try_from(n).unwrap_or(u32::MAX);
    match encoded {
        Ok(inputs) => jobs.push(Job {
            id: first,
            items: count,
            submitted_ns,
            name: F::NAME,
            inputs,
            deliver: Box::new(ChunkTask {
                promise,
                name: F::NAME,
                values,
                spare: items,
            }),
        }),
        Err(e) => {
            let err = encode_error::<F>(first, &e);
            refuse(recorder, first, submitted_ns, count, &err);
            promise.complete(Err(err));
        }
    }
    (first, handle)
}

/// The typed end of a job: decodes the worker's answer and completes the caller's handle.
pub(crate) trait Deliver: Send {
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
pub(crate) fn decode_item<R: DeserializeOwned>(
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

struct ChunkTask<T, R> {
    promise: Promise<Chunk<T, R>>,
    name: &'static str,
    values: Vec<R>,
    spare: Vec<T>,
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

fn encode_error<F: TaskFn>(id: TaskId, e: &postcard::Error) -> TaskError {
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
    let (cpu_user_ns, cpu_sys_ns, cpu_wait_ns, max_rss_bytes) = match &result {
        Ok(reply) => (
            reply.cpu_user_ns,
            reply.cpu_sys_ns,
            reply.cpu_wait_ns,
            Some(reply.max_rss_bytes),
        ),
        Err(_) => (exit.cpu_user_ns, exit.cpu_sys_ns, None, exit.max_rss_bytes),
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
        r.cpu_wait_ns = cpu_wait_ns;
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

/// Records a task that never reached a worker (its input could not be encoded).
fn refuse(recorder: &Recorder, id: TaskId, submitted_ns: u64, items: u32, err: &TaskError) {
    let now = recorder.now_ns();
    let mut r = TaskRecord::new(id, 1, submitted_ns, now, now);
    r.items = items;
    r.outcome = err.outcome();
    recorder.worker(1).write(r);
}

/// Fails a job that never reached a worker, with a record, even if a record sink panics.
pub(crate) fn fail_unrun(recorder: &Recorder, job: Job, message: String) {
    let w = recorder.worker(1);
    let now = recorder.now_ns();
    let err = TaskError::Failed {
        id: job.id,
        message,
    };
    // If writing the record panics, the job's promise is dropped, which still completes the
    // handle (as cancelled).
    let _ = catch_unwind(AssertUnwindSafe(|| {
        finish(&w, job, now, Err(err), Exit::default())
    }));
}
