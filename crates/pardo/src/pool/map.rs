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

use crate::handle::{CompletionSet, Handle};
use crate::task::{TaskError, TaskId};

/// Aim for chunks of about this much work.
pub const BATCH_TARGET_NS: u64 = 100_000;
/// Items taking this long or more are never batched.
pub const SOLO_ITEM_NS: u64 = 10_000;
/// The largest automatic chunk.
pub const MAX_CHUNK: usize = 1 << 16;

/// What a worker sends back for one chunk.
#[derive(Debug)]
pub(crate) struct Chunk<R> {
    /// Values of the items that succeeded, in input order.
    pub(crate) values: Vec<R>,
    /// Items that failed: position in the chunk and why, in input order.
    pub(crate) errors: Vec<(u32, TaskError)>,
    /// Time spent running the items, to size later chunks.
    pub(crate) busy_ns: u64,
}

/// Submits one chunk: its first task id and its items.
pub(crate) type SubmitChunk<'a, T, R> = Box<dyn Fn(Vec<T>) -> (TaskId, Handle<Chunk<R>>) + 'a>;

struct ChunkSizer {
    fixed: Option<usize>,
    next: usize,
}

impl ChunkSizer {
    fn size(&self) -> usize {
        self.fixed.unwrap_or(self.next)
    }

    fn observe<R>(&mut self, chunk: &Chunk<R>, items: usize) {
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
struct Cursor<R> {
    first: TaskId,
    values: std::vec::IntoIter<R>,
    errors: VecDeque<(u32, TaskError)>,
    pos: u32,
    len: u32,
}

impl<R> Cursor<R> {
    fn new(first: TaskId, len: usize, result: Result<Chunk<R>, TaskError>) -> Self {
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        match result {
            Ok(chunk) => Cursor {
                first,
                values: chunk.values.into_iter(),
                errors: chunk.errors.into(),
                pos: 0,
                len,
            },
            // The whole chunk failed (cancelled): every item gets the error, under its own id.
            Err(e) => Cursor {
                first,
                values: Vec::new().into_iter(),
                errors: (0..len)
                    .map(|i| (i, retarget(&e, TaskId(first.0 + u64::from(i)))))
                    .collect(),
                pos: 0,
                len,
            },
        }
    }

    fn empty() -> Self {
        Cursor::new(
            TaskId(0),
            0,
            Ok(Chunk {
                values: Vec::new(),
                errors: Vec::new(),
                busy_ns: 0,
            }),
        )
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

impl<R> Iterator for Cursor<R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.len {
            return None;
        }
        let here = self.pos;
        self.pos += 1;
        if self.errors.front().is_some_and(|(p, _)| *p == here) {
            return self.errors.pop_front().map(|(_, e)| Err(e));
        }
        match self.values.next() {
            Some(v) => Some(Ok(v)),
            None => Some(Err(TaskError::Failed {
                id: TaskId(self.first.0 + u64::from(here)),
                message: "the executor returned fewer values than items".to_owned(),
            })),
        }
    }
}

/// Results of `map`, in input order; see [`ThreadPool::map`](crate::ThreadPool::map).
///
/// Nothing is submitted until the first call to `next`; then at most `in_flight` chunks are
/// ahead of the consumer.
pub struct Map<'a, I: Iterator, R> {
    inputs: std::iter::Fuse<I>,
    submit: SubmitChunk<'a, I::Item, R>,
    in_flight: VecDeque<(TaskId, usize, Handle<Chunk<R>>)>,
    current: Cursor<R>,
    window: usize,
    sizer: ChunkSizer,
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
            window: window.max(1),
            sizer: ChunkSizer {
                fixed: None,
                next: 1,
            },
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
        self.window = n.max(1);
        self
    }

    fn fill(&mut self) {
        while self.in_flight.len() < self.window {
            let chunk: Vec<I::Item> = self.inputs.by_ref().take(self.sizer.size()).collect();
            if chunk.is_empty() {
                break;
            }
            let len = chunk.len();
            let (first, handle) = (self.submit)(chunk);
            self.in_flight.push_back((first, len, handle));
        }
    }
}

impl<I: Iterator, R> Iterator for Map<'_, I, R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.current.next() {
                return Some(item);
            }
            self.fill();
            let (first, len, handle) = self.in_flight.pop_front()?;
            let result = handle.wait();
            if let Ok(chunk) = &result {
                self.sizer.observe(chunk, len);
            }
            self.current = Cursor::new(first, len, result);
            // Refill before handing out items so workers stay busy while the consumer works.
            self.fill();
        }
    }
}

/// Results of `map_unordered`, in completion order, each paired with its task id.
pub struct MapUnordered<'a, I: Iterator, R> {
    inputs: std::iter::Fuse<I>,
    submit: SubmitChunk<'a, I::Item, R>,
    running: CompletionSet<Chunk<R>>,
    lens: std::collections::HashMap<TaskId, usize>,
    current: Cursor<R>,
    window: usize,
    sizer: ChunkSizer,
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
            window: window.max(1),
            sizer: ChunkSizer {
                fixed: None,
                next: 1,
            },
        }
    }

    /// As [`Map::chunk_size`].
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.sizer.fixed = Some(n.max(1));
        self
    }

    /// As [`Map::in_flight`].
    pub fn in_flight(mut self, n: usize) -> Self {
        self.window = n.max(1);
        self
    }

    fn fill(&mut self) {
        while self.running.len() < self.window {
            let chunk: Vec<I::Item> = self.inputs.by_ref().take(self.sizer.size()).collect();
            if chunk.is_empty() {
                break;
            }
            let len = chunk.len();
            let (first, handle) = (self.submit)(chunk);
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
            let (first, result) = self.running.next_ready()?;
            let len = self.lens.remove(&first).unwrap_or(0);
            if let Ok(chunk) = &result {
                self.sizer.observe(chunk, len);
            }
            self.current = Cursor::new(first, len, result);
            self.fill();
        }
    }
}
