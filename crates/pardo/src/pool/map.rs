//! The lazy `map` driver shared by executors: it pulls inputs only as results are consumed,
//! keeps a bounded window of chunks in flight, and sizes chunks from what it measures.
//!
//! Memory follows concurrency: at most `window` chunks are submitted and not yet consumed, so
//! `map` over ten million inputs holds only `window × chunk` of them at a time.
//!
//! Batching: unless a chunk size is given, the first chunks hold one item each; every finished
//! chunk reports its mean time per item, and the next chunks are sized to take about
//! [`BATCH_TARGET_NS`]. Items whose mean is [`SOLO_ITEM_NS`] or more are never batched, so they
//! always get a record of their own. (An item that is slow among fast ones in one batch is
//! accounted inside that batch's record.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::handle::{CompletionSet, Handle, Next};
use crate::task::{panic_message, Outcome, TaskError, TaskId};

/// Aim for chunks of about this much work.
pub const BATCH_TARGET_NS: u64 = 100_000;
/// Items taking this long or more are never batched.
pub const SOLO_ITEM_NS: u64 = 10_000;
/// The largest automatic chunk. Small enough that a window of chunk buffers is reused many times
/// over a long input instead of being allocated (and faulted in) afresh.
pub const MAX_CHUNK: usize = 1 << 14;

/// What a worker sends back for one chunk.
#[derive(Debug)]
pub(crate) struct Chunk<T, R> {
    /// Values of the items that succeeded, in input order (written into the buffer the chunk
    /// was submitted with).
    pub(crate) values: Vec<R>,
    /// Items that failed: position in the chunk and why, in input order.
    pub(crate) errors: Vec<(u32, TaskError)>,
    /// Time spent running the items, to size later chunks.
    pub(crate) busy_ns: u64,
    /// The chunk's input buffer, emptied, handed back for the next chunk.
    pub(crate) spare: Vec<T>,
}

/// A chunk's record outcome: that of its first failed item, or `Ok`.
pub(crate) fn chunk_outcome<T, R>(c: &Chunk<T, R>) -> Outcome {
    c.errors.first().map_or(Outcome::Ok, |(_, e)| e.outcome())
}

/// Runs a chunk of `map` items in the calling thread, each under its own `catch_unwind`, and
/// packs the results the way the map driver expects. Used by every executor that runs a chunk
/// as one unit of its own (a worker thread, an async task).
pub(crate) fn run_items<T, R>(
    first: TaskId,
    mut items: Vec<T>,
    mut values: Vec<R>,
    f: &(dyn Fn(T) -> R + Send + Sync),
) -> Chunk<T, R> {
    let t0 = Instant::now();
    values.reserve(items.len());
    let mut errors = Vec::new();
    for (pos, item) in items.drain(..).enumerate() {
        match catch_unwind(AssertUnwindSafe(|| f(item))) {
            Ok(v) => values.push(v),
            Err(payload) => {
                let id = TaskId(first.0 + pos as u64);
                let message = panic_message(payload.as_ref());
                errors.push((pos as u32, TaskError::Panicked { id, message }));
            }
        }
    }
    Chunk {
        values,
        errors,
        busy_ns: u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX),
        spare: items,
    }
}

/// Submits one chunk: its items and an empty buffer for its results; returns the chunk's first
/// task id and its handle.
pub(crate) type SubmitChunk<'a, T, R> =
    Box<dyn Fn(Vec<T>, Vec<R>) -> (TaskId, Handle<Chunk<T, R>>) + 'a>;

/// What an automatic pool shares with its maps, so that steering sees them.
///
/// A map's window follows the pool's worker count as the controller changes it (a window fixed
/// at the starting count would keep a pool grown to 64 workers at 8 tasks in flight), and maps
/// over inputs of known length say how many they have not submitted yet, so the controller
/// never adds workers above the tasks left.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    /// Inputs of known-length maps not submitted yet.
    unsubmitted: AtomicU64,
    /// Maps alive whose inputs' length is known.
    known: AtomicUsize,
    /// Maps alive whose inputs' length is not known.
    unknown: AtomicUsize,
    /// The pool's worker count is steered, so it may grow while a map waits for a result.
    steered: AtomicBool,
}

impl Backlog {
    /// Says that the pool's worker count is steered: its maps then look at their window
    /// while they wait for a result (see [`RECHECK_FIRST`]).
    pub(crate) fn set_steered(&self) {
        self.steered.store(true, Ordering::Release);
    }

    /// Inputs not submitted yet, when every map alive knows its length and at least one is
    /// alive; `None` otherwise (the pool then knows no bound on the tasks left).
    pub(crate) fn unsubmitted(&self) -> Option<u64> {
        let known = self.known.load(Ordering::Acquire) > 0;
        let unknown = self.unknown.load(Ordering::Acquire) > 0;
        (known && !unknown).then(|| self.unsubmitted.load(Ordering::Acquire))
    }

    /// Tasks not finished yet — submitted ones that have no record plus the inputs maps still
    /// hold — when that is known (see [`Backlog::unsubmitted`]).
    pub(crate) fn tasks_left(&self, recorder: &crate::monitor::Recorder) -> Option<u64> {
        let unsubmitted = self.unsubmitted()?;
        let c = recorder.counters();
        Some(unsubmitted.saturating_add(c.submitted.saturating_sub(c.done)))
    }
}

/// One map's part in a [`Backlog`]: the worker count its window follows and the inputs it still
/// counts there, given back when the map is dropped.
pub(crate) struct Follow<'a> {
    workers: &'a AtomicUsize,
    backlog: &'a Backlog,
    /// This map's inputs counted in `backlog.unsubmitted`; `None` for unknown length.
    counted: Option<u64>,
}

impl<'a> Follow<'a> {
    /// Registers a map over inputs whose `size_hint` is `hint`; the window is `4 × workers`.
    pub(crate) fn new(
        workers: &'a AtomicUsize,
        backlog: &'a Backlog,
        hint: (usize, Option<usize>),
    ) -> Self {
        let counted = match hint {
            (lo, Some(hi)) if lo == hi => Some(lo as u64),
            _ => None,
        };
        match counted {
            Some(n) => {
                backlog.unsubmitted.fetch_add(n, Ordering::AcqRel);
                backlog.known.fetch_add(1, Ordering::AcqRel);
            }
            None => {
                backlog.unknown.fetch_add(1, Ordering::AcqRel);
            }
        }
        Follow {
            workers,
            backlog,
            counted,
        }
    }

    fn window(&self) -> usize {
        4 * self.workers.load(Ordering::Relaxed).max(1)
    }

    fn submitted(&mut self, n: usize) {
        if let Some(c) = self.counted.as_mut() {
            let n = (n as u64).min(*c);
            *c -= n;
            self.backlog.unsubmitted.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

impl Drop for Follow<'_> {
    fn drop(&mut self) {
        match self.counted {
            Some(c) => {
                self.backlog.unsubmitted.fetch_sub(c, Ordering::AcqRel);
                self.backlog.known.fetch_sub(1, Ordering::AcqRel);
            }
            None => {
                self.backlog.unknown.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// The window of a map: the pool's default, or following a steered pool's worker count, until
/// [`Map::in_flight`] fixes it.
struct Window<'a> {
    default: usize,
    fixed: Option<usize>,
    follow: Option<Follow<'a>>,
}

impl<'a> Window<'a> {
    fn new(default: usize) -> Self {
        Window {
            default: default.max(1),
            fixed: None,
            follow: None,
        }
    }

    fn get(&self) -> usize {
        self.fixed
            .unwrap_or_else(|| self.follow.as_ref().map_or(self.default, Follow::window))
    }

    fn submitted(&mut self, n: usize) {
        if let Some(f) = self.follow.as_mut() {
            f.submitted(n);
        }
    }

    /// The window follows a steered pool, so it may grow while the map waits for a result.
    fn follows(&self) -> bool {
        self.fixed.is_none()
            && self
                .follow
                .as_ref()
                .is_some_and(|f| f.backlog.steered.load(Ordering::Acquire))
    }
}

/// While a map whose window follows a steered pool waits for a result, it looks this often
/// whether the window grew, for the first [`RECHECK_FAST_FOR`] of the wait (the controller
/// moves fastest early), then twice as late each time up to [`RECHECK_MAX`]. The inputs are
/// the consumer's, so only its thread can submit them: waiting on the first result alone, 64
/// waits of 20 ms kept the 8 tasks of a 2-worker window in flight for their first 20 ms while
/// the pool had already grown to 32 workers.
const RECHECK_FIRST: Duration = Duration::from_millis(2);
/// See [`RECHECK_FIRST`].
const RECHECK_FAST_FOR: Duration = Duration::from_millis(100);
/// See [`RECHECK_FIRST`]: a consumer that waits long wakes at most 20 times a second.
const RECHECK_MAX: Duration = Duration::from_millis(50);

/// How long a waiting map lets pass before its next look at the window (see [`RECHECK_FIRST`]).
struct Recheck {
    every: Duration,
    since: Instant,
}

impl Recheck {
    /// For a wait that begins now.
    fn start() -> Recheck {
        Recheck {
            every: RECHECK_FIRST,
            since: Instant::now(),
        }
    }

    /// After a look that found nothing finished.
    fn back_off(&mut self) {
        if self.since.elapsed() >= RECHECK_FAST_FOR {
            self.every = (self.every * 2).min(RECHECK_MAX);
        }
    }
}

impl std::fmt::Debug for Window<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.get())
    }
}

/// Input and output buffers kept between chunks. Chunks of tens of thousands of items are
/// hundreds of KiB each; allocating them fresh made the kernel map, fault in and unmap that
/// memory for every chunk (page faults were 40 % of the time of a `map` over a million
/// trivial items). At most `window` of each kind exist, so memory still follows concurrency.
struct Buffers<T, R> {
    inputs: Vec<Vec<T>>,
    outputs: Vec<Vec<R>>,
}

impl<T, R> Buffers<T, R> {
    fn new() -> Self {
        Buffers {
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Takes up to `n` items from `from` into a recycled (or new) buffer.
    fn take_chunk<I: Iterator<Item = T>>(&mut self, from: &mut I, n: usize) -> Vec<T> {
        let mut chunk = self.inputs.pop().unwrap_or_default();
        chunk.reserve(n);
        chunk.extend(from.take(n));
        chunk
    }

    fn output(&mut self) -> Vec<R> {
        self.outputs.pop().unwrap_or_default()
    }

    /// Keeps what a finished chunk and an exhausted cursor leave behind.
    fn recycle(&mut self, spare_in: Option<Vec<T>>, spare_out: Vec<R>) {
        if let Some(mut v) = spare_in {
            v.clear();
            self.inputs.push(v);
        }
        if spare_out.capacity() > 0 {
            self.outputs.push(spare_out);
        }
    }
}

struct ChunkSizer {
    fixed: Option<usize>,
    next: usize,
}

impl ChunkSizer {
    fn size(&self) -> usize {
        self.fixed.unwrap_or(self.next)
    }

    fn observe<T, R>(&mut self, chunk: &Chunk<T, R>, items: usize) {
        if self.fixed.is_some() || items == 0 {
            return;
        }
        let per_item = (chunk.busy_ns / items as u64).max(1);
        self.next = if per_item >= SOLO_ITEM_NS {
            1
        } else {
            usize::try_from(BATCH_TARGET_NS / per_item)
                .unwrap_or(MAX_CHUNK)
                .clamp(1, MAX_CHUNK)
        };
    }
}

/// Yields one chunk's items as `Result`s in input order.
///
/// The hot path — an item before the next error — is one comparison and one read from the
/// values vector; everything else (errors, the chunk's end) is in `next_slow`.
struct Cursor<R> {
    first: TaskId,
    values: VecDeque<R>,
    errors: VecDeque<(u32, TaskError)>,
    pos: u32,
    len: u32,
    /// Position of the next error, or `len` when there is none.
    stop: u32,
}

impl<R> Cursor<R> {
    /// A cursor over a chunk's results, and the chunk's emptied input buffer.
    fn new<T>(
        first: TaskId,
        len: usize,
        result: Result<Chunk<T, R>, TaskError>,
    ) -> (Self, Option<Vec<T>>) {
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        let mut spare = None;
        let (values, errors): (Vec<R>, VecDeque<(u32, TaskError)>) = match result {
            Ok(chunk) => {
                spare = Some(chunk.spare);
                (chunk.values, chunk.errors.into())
            }
            // The whole chunk failed (cancelled): every item gets the error, under its own id.
            Err(e) => (
                Vec::new(),
                (0..len)
                    .map(|i| (i, retarget(&e, TaskId(first.0 + u64::from(i)))))
                    .collect(),
            ),
        };
        let stop = errors.front().map_or(len, |(p, _)| *p);
        // VecDeque::from(Vec) reuses the allocation, and popping from the front keeps it, so
        // the buffer can go back for another chunk once this cursor is done.
        let cursor = Cursor {
            first,
            values: values.into(),
            errors,
            pos: 0,
            len,
            stop,
        };
        (cursor, spare)
    }

    fn empty() -> Self {
        Cursor {
            first: TaskId(0),
            values: VecDeque::new(),
            errors: VecDeque::new(),
            pos: 0,
            len: 0,
            stop: 0,
        }
    }

    fn remaining(&self) -> usize {
        (self.len - self.pos) as usize
    }

    /// The emptied value buffer, for reuse.
    fn into_buffer(self) -> Vec<R> {
        let mut v = Vec::from(self.values);
        v.clear();
        v
    }

    #[inline]
    fn next(&mut self) -> Option<Result<R, TaskError>> {
        if self.pos < self.stop {
            if let Some(v) = self.values.pop_front() {
                self.pos += 1;
                return Some(Ok(v));
            }
        }
        self.next_slow()
    }

    #[cold]
    fn next_slow(&mut self) -> Option<Result<R, TaskError>> {
        if self.pos >= self.len {
            return None;
        }
        let here = self.pos;
        self.pos += 1;
        if self.errors.front().is_some_and(|(p, _)| *p == here) {
            let e = self.errors.pop_front().map(|(_, e)| e);
            self.stop = self.errors.front().map_or(self.len, |(p, _)| *p);
            return e.map(Err);
        }
        Some(Err(TaskError::Failed {
            id: TaskId(self.first.0 + u64::from(here)),
            message: "the executor returned fewer values than items".to_owned(),
        }))
    }
}

fn retarget(e: &TaskError, id: TaskId) -> TaskError {
    match e.clone() {
        TaskError::Panicked { message, .. } => TaskError::Panicked { id, message },
        TaskError::Cancelled { .. } => TaskError::Cancelled { id },
        TaskError::TimedOut { after, .. } => TaskError::TimedOut { id, after },
        TaskError::WorkerDied {
            signal, exit_code, ..
        } => TaskError::WorkerDied {
            id,
            signal,
            exit_code,
        },
        TaskError::Failed { message, .. } => TaskError::Failed { id, message },
    }
}

/// A submitted chunk: its first task id, its length and its handle.
type InFlight<T, R> = (TaskId, usize, Handle<Chunk<T, R>>);
/// A finished chunk, or why it has no items.
type ChunkResult<T, R> = Result<Chunk<T, R>, TaskError>;

/// Results of `map`, in input order; see [`ThreadPool::map`](crate::ThreadPool::map).
///
/// Nothing is submitted until the first call to `next`; then at most `in_flight` chunks are
/// ahead of the consumer. So a `map` that is never iterated runs nothing, and the compiler says
/// so:
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// let pool = pardo::ThreadPool::builder().workers(1).build().unwrap();
/// pool.map(0..3u32, |x| x + 1);
/// ```
#[must_use = "a Map does nothing until it is iterated"]
pub struct Map<'a, I: Iterator, R> {
    inputs: std::iter::Fuse<I>,
    submit: SubmitChunk<'a, I::Item, R>,
    in_flight: VecDeque<InFlight<I::Item, R>>,
    current: Cursor<R>,
    window: Window<'a>,
    sizer: ChunkSizer,
    buffers: Buffers<I::Item, R>,
}

impl<I: Iterator, R> std::fmt::Debug for Map<'_, I, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Map")
            .field("in_flight", &self.in_flight.len())
            .field("window", &self.window)
            .finish()
    }
}

impl<'a, I: Iterator, R> Map<'a, I, R> {
    pub(crate) fn new(inputs: I, window: usize, submit: SubmitChunk<'a, I::Item, R>) -> Self {
        Map {
            inputs: inputs.fuse(),
            submit,
            in_flight: VecDeque::new(),
            current: Cursor::empty(),
            window: Window::new(window),
            sizer: ChunkSizer {
                fixed: None,
                next: 1,
            },
            buffers: Buffers::new(),
        }
    }

    /// Puts exactly `n` items in each task (the last may have fewer) instead of sizing chunks
    /// automatically. One record is written per chunk.
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.sizer.fixed = Some(n.max(1));
        self
    }

    /// Keeps at most `n` chunks submitted ahead of the consumer (default: four per worker).
    pub fn in_flight(mut self, n: usize) -> Self {
        self.window.fixed = Some(n.max(1));
        self
    }

    /// Lets the window follow a steered pool's worker count and counts the inputs in its
    /// backlog (see [`Backlog`]).
    pub(crate) fn follow(mut self, workers: &'a AtomicUsize, backlog: &'a Backlog) -> Self {
        self.window.follow = Some(Follow::new(workers, backlog, self.inputs.size_hint()));
        self
    }

    fn fill(&mut self) {
        while self.in_flight.len() < self.window.get() {
            let chunk = self.buffers.take_chunk(&mut self.inputs, self.sizer.size());
            if chunk.is_empty() {
                self.buffers.recycle(Some(chunk), Vec::new());
                break;
            }
            let len = chunk.len();
            self.window.submitted(len);
            let (first, handle) = (self.submit)(chunk, self.buffers.output());
            self.in_flight.push_back((first, len, handle));
        }
    }
}

impl<I: Iterator, R> Iterator for Map<'_, I, R> {
    type Item = Result<R, TaskError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self.current.next() {
            Some(item) => Some(item),
            None => self.next_chunk(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let known =
            self.current.remaining() + self.in_flight.iter().map(|(_, n, _)| n).sum::<usize>();
        let (lo, hi) = self.inputs.size_hint();
        (
            known.saturating_add(lo),
            hi.and_then(|h| h.checked_add(known)),
        )
    }
}

impl<I: Iterator, R> Map<'_, I, R> {
    /// Moves on to the next chunk: waits for it, learns from its timing, refills the window.
    fn next_chunk(&mut self) -> Option<Result<R, TaskError>> {
        loop {
            if let Some(item) = self.current.next() {
                return Some(item);
            }
            self.fill();
            let (first, len, result) = if self.window.follows() {
                self.wait_head_filling()?
            } else {
                let (first, len, handle) = self.in_flight.pop_front()?;
                (first, len, handle.wait())
            };
            if let Ok(chunk) = &result {
                self.sizer.observe(chunk, len);
            }
            let (cursor, spare) = Cursor::new(first, len, result);
            let done = std::mem::replace(&mut self.current, cursor);
            self.buffers.recycle(spare, done.into_buffer());
            // Refill before handing out items so workers stay busy while the consumer works.
            self.fill();
        }
    }

    /// Waits for the oldest chunk while the window may grow: between looks, submits up to it.
    fn wait_head_filling(&mut self) -> Option<(TaskId, usize, ChunkResult<I::Item, R>)> {
        let mut recheck = Recheck::start();
        loop {
            let (first, len, handle) = self.in_flight.pop_front()?;
            match handle.wait_within(recheck.every) {
                Ok(r) => return Some((first, len, r)),
                Err(handle) => {
                    self.in_flight.push_front((first, len, handle));
                    self.fill();
                    recheck.back_off();
                }
            }
        }
    }
}

/// Results of `map_unordered`, in completion order, each paired with its task id.
#[must_use = "a MapUnordered does nothing until it is iterated"]
pub struct MapUnordered<'a, I: Iterator, R> {
    inputs: std::iter::Fuse<I>,
    submit: SubmitChunk<'a, I::Item, R>,
    running: CompletionSet<Chunk<I::Item, R>>,
    lens: std::collections::HashMap<TaskId, usize>,
    current: Cursor<R>,
    window: Window<'a>,
    sizer: ChunkSizer,
    buffers: Buffers<I::Item, R>,
}

impl<I: Iterator, R> std::fmt::Debug for MapUnordered<'_, I, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapUnordered")
            .field("in_flight", &self.running.len())
            .finish()
    }
}

impl<'a, I: Iterator, R> MapUnordered<'a, I, R> {
    pub(crate) fn new(inputs: I, window: usize, submit: SubmitChunk<'a, I::Item, R>) -> Self {
        MapUnordered {
            inputs: inputs.fuse(),
            submit,
            running: CompletionSet::new(),
            lens: std::collections::HashMap::new(),
            current: Cursor::empty(),
            window: Window::new(window),
            sizer: ChunkSizer {
                fixed: None,
                next: 1,
            },
            buffers: Buffers::new(),
        }
    }

    /// As [`Map::chunk_size`].
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.sizer.fixed = Some(n.max(1));
        self
    }

    /// As [`Map::in_flight`].
    pub fn in_flight(mut self, n: usize) -> Self {
        self.window.fixed = Some(n.max(1));
        self
    }

    /// Lets the window follow a steered pool's worker count and counts the inputs in its
    /// backlog (see [`Backlog`]).
    pub(crate) fn follow(mut self, workers: &'a AtomicUsize, backlog: &'a Backlog) -> Self {
        self.window.follow = Some(Follow::new(workers, backlog, self.inputs.size_hint()));
        self
    }

    /// The next finished chunk while the window may grow: between looks, submits up to it.
    fn next_ready_filling(&mut self) -> Option<(TaskId, ChunkResult<I::Item, R>)> {
        let mut recheck = Recheck::start();
        loop {
            match self.running.next_ready_within(recheck.every) {
                Next::Ready(id, r) => return Some((id, r)),
                Next::Empty => return None,
                Next::Later => {
                    self.fill();
                    recheck.back_off();
                }
            }
        }
    }

    fn fill(&mut self) {
        while self.running.len() < self.window.get() {
            let chunk = self.buffers.take_chunk(&mut self.inputs, self.sizer.size());
            if chunk.is_empty() {
                self.buffers.recycle(Some(chunk), Vec::new());
                break;
            }
            let len = chunk.len();
            self.window.submitted(len);
            let (first, handle) = (self.submit)(chunk, self.buffers.output());
            self.lens.insert(first, len);
            self.running.push(handle);
        }
    }
}

impl<I: Iterator, R> Iterator for MapUnordered<'_, I, R> {
    type Item = (TaskId, Result<R, TaskError>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let pos = self.current.pos;
            if let Some(item) = self.current.next() {
                return Some((TaskId(self.current.first.0 + u64::from(pos)), item));
            }
            self.fill();
            let (first, result) = if self.window.follows() {
                self.next_ready_filling()?
            } else {
                self.running.next_ready()?
            };
            let len = self.lens.remove(&first).unwrap_or(0);
            if let Ok(chunk) = &result {
                self.sizer.observe(chunk, len);
            }
            let (cursor, spare) = Cursor::new(first, len, result);
            let done = std::mem::replace(&mut self.current, cursor);
            self.buffers.recycle(spare, done.into_buffer());
            self.fill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handle::Promise;
    use std::cell::RefCell;

    /// A submitter that keeps every chunk pending, so only the window limits submissions.
    fn pending<'a>(kept: &'a RefCell<Vec<Promise<Chunk<u32, u32>>>>) -> SubmitChunk<'a, u32, u32> {
        Box::new(move |_items, _out| {
            let id = TaskId(kept.borrow().len() as u64 + 1);
            let (promise, handle) = Promise::new(id);
            kept.borrow_mut().push(promise);
            (id, handle)
        })
    }

    #[test]
    fn a_followed_window_grows_with_the_workers_and_the_backlog_counts_down() {
        let kept = RefCell::new(Vec::new());
        let workers = AtomicUsize::new(2);
        let backlog = Backlog::default();
        assert_eq!(backlog.unsubmitted(), None, "no map, nothing known");
        let mut m = Map::new(0..100u32, 8, pending(&kept))
            .chunk_size(1)
            .follow(&workers, &backlog);
        assert_eq!(backlog.unsubmitted(), Some(100));
        assert!(
            !m.window.follows(),
            "a pool nobody steers: waits take the plain path"
        );
        backlog.set_steered();
        assert!(m.window.follows());
        m.fill();
        assert_eq!(m.in_flight.len(), 8, "4 per worker");
        assert_eq!(backlog.unsubmitted(), Some(92));
        // The controller grew the pool: the same map now keeps 4 × 16 in flight.
        workers.store(16, Ordering::Relaxed);
        m.fill();
        assert_eq!(m.in_flight.len(), 64);
        assert_eq!(backlog.unsubmitted(), Some(36));
        drop(m);
        assert_eq!(
            backlog.unsubmitted(),
            None,
            "a dropped map gives its inputs back"
        );
    }

    /// The pool grows while the consumer waits for its first result: the map submits up to
    /// the new window without waiting for that result (the one thread that may submit is
    /// the waiting consumer's). A helper thread plays the pool: it grows the workers once the
    /// first window is in flight and ends the tasks only once the grown window is.
    #[test]
    fn a_followed_window_grows_while_the_consumer_waits() {
        type Kept = std::sync::Mutex<Vec<Promise<Chunk<u32, u32>>>>;
        let kept: std::sync::Arc<Kept> = std::sync::Arc::default();
        let workers = AtomicUsize::new(2);
        let backlog = Backlog::default();
        backlog.set_steered();
        let finished = AtomicBool::new(false);
        let seen = std::thread::scope(|scope| {
            let pool = scope.spawn(|| {
                let count = || kept.lock().unwrap().len();
                while count() < 8 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                workers.store(16, Ordering::Relaxed);
                // A bound only so that a map that never refills fails instead of hanging.
                let give_up = Instant::now() + Duration::from_secs(10);
                while count() < 64 && Instant::now() < give_up {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let seen = count();
                // End every task, the ones submitted from now on too, until the map is done.
                while !finished.load(Ordering::Acquire) {
                    for p in kept.lock().unwrap().drain(..) {
                        p.complete(Ok(Chunk {
                            values: vec![7],
                            errors: Vec::new(),
                            busy_ns: 0,
                            spare: Vec::new(),
                        }));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                seen
            });
            let submit: SubmitChunk<'_, u32, u32> = Box::new(|_items, _out| {
                let mut k = kept.lock().unwrap();
                let id = TaskId(k.len() as u64 + 1);
                let (promise, handle) = Promise::new(id);
                k.push(promise);
                (id, handle)
            });
            // Released on a panic too, so a failing map never leaves the helper waiting.
            struct Release<'a>(&'a AtomicBool);
            impl Drop for Release<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Release);
                }
            }
            let release = Release(&finished);
            let results: Vec<_> = Map::new(0..64u32, 8, submit)
                .chunk_size(1)
                .follow(&workers, &backlog)
                .collect();
            drop(release);
            assert_eq!(results.len(), 64);
            assert!(results.iter().all(|r| r == &Ok(7)));
            pool.join().unwrap()
        });
        assert_eq!(
            seen, 64,
            "tasks in flight before the first result came back"
        );
    }

    #[test]
    fn a_map_of_unknown_length_hides_the_backlog_and_a_fixed_window_stays() {
        let kept = RefCell::new(Vec::new());
        let workers = AtomicUsize::new(2);
        let backlog = Backlog::default();
        let known = Map::new(0..10u32, 8, pending(&kept)).follow(&workers, &backlog);
        let mut unknown = MapUnordered::new((0..10u32).filter(|x| x % 2 == 0), 8, pending(&kept))
            .follow(&workers, &backlog)
            .in_flight(3);
        assert_eq!(backlog.unsubmitted(), None);
        workers.store(16, Ordering::Relaxed);
        unknown.fill();
        assert_eq!(
            unknown.running.len(),
            3,
            "in_flight(3) is kept whatever the workers"
        );
        drop(unknown);
        assert_eq!(backlog.unsubmitted(), Some(10));
        drop(known);
    }
}
