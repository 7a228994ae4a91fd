//! [`Handle`]: the one result slot every executor hands back from `submit`.
//!
//! A slot moves `Queued → Running → Done`, or `Queued → Cancelled`. The queued-to-running and
//! queued-to-cancelled steps are compare-and-swaps on one atomic, so a task is either started or
//! cancelled, never both. The value itself sits behind a mutex that is held only to store or take
//! it — never while the task runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::sync::{lock, wait, wait_timeout};
use crate::task::{TaskError, TaskId};

/// How a thread that waits for a handle helps the executor it works for: it is given `done`
/// and a function to hand a waker to (`arm`), returns false at once when it cannot help, and
/// otherwise runs the executor's queued work until `done()` holds. An executor installs one on
/// its own threads ([`set_helper`]), so a task waiting on work of its own pool never holds up
/// the worker that work needs; handles know nothing of the pools.
pub(crate) type Helper = fn(done: &dyn Fn() -> bool, arm: &dyn Fn(Waker)) -> bool;

thread_local! {
    static HELPER: std::cell::Cell<Option<Helper>> = const { std::cell::Cell::new(None) };
}

/// Installs (or with `None` removes) the calling thread's [`Helper`].
pub(crate) fn set_helper(helper: Option<Helper>) {
    HELPER.with(|h| h.set(helper));
}

/// True when the calling thread has a [`Helper`]: its waits help its executor.
fn can_help() -> bool {
    HELPER.with(|h| h.get()).is_some()
}

/// Helps this thread's executor until `done()`, if the thread has a [`Helper`]; false if not.
fn help_until(done: &dyn Fn() -> bool, arm: &dyn Fn(Waker)) -> bool {
    HELPER.with(|h| h.get()).is_some_and(|help| help(done, arm))
}

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
const CANCELLED: u8 = 3;

/// How many times `wait` looks for the result before it sleeps on the condition variable.
const WAIT_SPINS: usize = 64;

struct Slot<T> {
    state: AtomicU8,
    inner: Mutex<Inner<T>>,
    ready: Condvar,
}

struct Inner<T> {
    result: Option<Result<T, TaskError>>,
    waker: Option<Waker>,
    /// A thread sleeps (or is about to) on `ready`. A condition variable's notify is a system
    /// call even with nobody waiting, so a task whose handle is polled, helped or never waited
    /// on completes without one.
    sleeping: bool,
}

impl<T> Slot<T> {
    fn new() -> Arc<Self> {
        Arc::new(Slot {
            state: AtomicU8::new(QUEUED),
            inner: Mutex::new(Inner {
                result: None,
                waker: None,
                sleeping: false,
            }),
            ready: Condvar::new(),
        })
    }

    fn try_start(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn is_cancelled(&self) -> bool {
        self.state.load(Ordering::Acquire) == CANCELLED
    }

    /// Stores the outcome and wakes whoever waits.
    fn complete(&self, result: Result<T, TaskError>) {
        let (waker, sleeping) = {
            let mut inner = lock(&self.inner);
            inner.result = Some(result);
            // Cancelled stays cancelled; anything else is now done.
            let _ = self
                .state
                .compare_exchange(RUNNING, DONE, Ordering::AcqRel, Ordering::Acquire);
            let _ = self
                .state
                .compare_exchange(QUEUED, DONE, Ordering::AcqRel, Ordering::Acquire);
            (inner.waker.take(), inner.sleeping)
        };
        if sleeping {
            self.ready.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn cancel(&self, id: TaskId) -> bool {
        let won = self
            .state
            .compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if won {
            self.complete(Err(TaskError::Cancelled { id }));
        }
        won
    }
}

/// The executor's end of a slot: completes it exactly once. A promise dropped without being
/// completed (its job was discarded unrun) completes the slot as cancelled, so nobody waits
/// forever on a task that will never run.
pub(crate) struct Promise<T> {
    id: TaskId,
    slot: Option<Arc<Slot<T>>>,
}

impl<T> Promise<T> {
    /// A new slot, its promise for the executor and its handle for the caller.
    pub(crate) fn new(id: TaskId) -> (Promise<T>, Handle<T>) {
        let slot = Slot::new();
        (
            Promise {
                id,
                slot: Some(Arc::clone(&slot)),
            },
            Handle { id, slot },
        )
    }

    /// Claims the task for running; false when it was cancelled first.
    pub(crate) fn try_start(&self) -> bool {
        self.slot.as_ref().is_some_and(|s| s.try_start())
    }

    pub(crate) fn complete(mut self, result: Result<T, TaskError>) {
        if let Some(slot) = self.slot.take() {
            slot.complete(result);
        }
    }
}

impl<T> Drop for Promise<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            if !slot.is_cancelled() {
                slot.complete(Err(TaskError::Cancelled { id: self.id }));
            }
        }
    }
}

/// The future result of one submitted task.
///
/// `wait` blocks the calling thread; `.await` suspends an async task instead — `Handle` is a
/// [`std::future::Future`]. Dropping a handle detaches the task: it still runs and is still
/// recorded, its value is dropped.
///
/// ```
/// let pool = pardo::ThreadPool::builder().workers(2).build().unwrap();
/// let h = pool.submit(|| 6 * 7);
/// assert_eq!(h.wait(), Ok(42));
/// ```
pub struct Handle<T> {
    id: TaskId,
    slot: Arc<Slot<T>>,
}

impl<T> std::fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("id", &self.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> Handle<T> {
    /// The task's sequence number.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// True once the task has a result (value, error or cancellation) waiting.
    pub fn is_finished(&self) -> bool {
        lock(&self.slot.inner).result.is_some()
    }

    /// Blocks until the task ends and returns its value or why there is none.
    ///
    /// Called on a worker thread of a [`ThreadPool`](crate::ThreadPool) (from inside one of its
    /// tasks), the wait is not idle: the worker runs queued tasks of its pool until this one
    /// ends, so tasks may wait on tasks of their own pool without deadlocking it, however many
    /// do so at once. A task it runs meanwhile runs on the waiting task's stack: don't wait
    /// while holding a lock that other tasks of the pool take.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let pool = Arc::new(pardo::ThreadPool::builder().workers(1).build().unwrap());
    /// let same = Arc::clone(&pool);
    /// // The only worker waits inside the outer task, so it runs the inner one itself.
    /// let outer = pool.submit(move || same.submit(|| 21).wait().unwrap() * 2);
    /// assert_eq!(outer.wait(), Ok(42));
    /// ```
    pub fn wait(self) -> Result<T, TaskError> {
        self.spin_a_little();
        if !self.is_done() {
            help_until(&|| self.is_done(), &|w| self.arm(w));
        }
        let mut inner = lock(&self.slot.inner);
        loop {
            if let Some(r) = inner.result.take() {
                return r;
            }
            inner.sleeping = true;
            inner = wait(&self.slot.ready, inner);
        }
    }

    /// As [`wait`](Self::wait), but gives the handle back after `timeout`, for a caller that
    /// has something to do meanwhile. A pool worker, whose wait helps its pool, waits as
    /// `wait` does, for as long as it takes: giving up would stop the helping.
    pub(crate) fn wait_within(self, timeout: Duration) -> Result<Result<T, TaskError>, Self> {
        if can_help() {
            return Ok(self.wait());
        }
        self.spin_a_little();
        self.wait_timeout(timeout)
    }

    /// Short tasks often finish within microseconds: looking a few times before sleeping saves
    /// a futex sleep and wake-up on the common fast path.
    fn spin_a_little(&self) {
        for _ in 0..WAIT_SPINS {
            if self.is_done() {
                break;
            }
            std::thread::yield_now();
        }
    }

    /// Done or cancelled: the result is stored or about to be (a cancel stores it right after).
    fn is_done(&self) -> bool {
        self.slot.state.load(Ordering::Acquire) >= DONE
    }

    /// Asks for `waker` to be woken when the task ends (at once if it has).
    fn arm(&self, waker: Waker) {
        let mut inner = lock(&self.slot.inner);
        if inner.result.is_some() {
            drop(inner);
            waker.wake();
        } else {
            inner.waker = Some(waker);
        }
    }

    /// Waits at most `timeout`; gives the handle back if the task has not ended by then.
    pub fn wait_timeout(self, timeout: Duration) -> Result<Result<T, TaskError>, Self> {
        let deadline = Instant::now() + timeout;
        {
            let mut inner = lock(&self.slot.inner);
            loop {
                if let Some(r) = inner.result.take() {
                    return Ok(r);
                }
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                inner.sleeping = true;
                inner = wait_timeout(&self.slot.ready, inner, deadline - now);
            }
        }
        Err(self)
    }

    /// The result if the task has ended, without blocking; otherwise the handle back.
    pub fn try_wait(self) -> Result<Result<T, TaskError>, Self> {
        let taken = lock(&self.slot.inner).result.take();
        match taken {
            Some(r) => Ok(r),
            None => Err(self),
        }
    }

    /// Cancels the task if it has not started. Returns true if this call cancelled it; the
    /// handle then yields [`TaskError::Cancelled`]. A running or finished task is not affected.
    pub fn cancel(&self) -> bool {
        self.slot.cancel(self.id)
    }
}

impl<T> Future for Handle<T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut inner = lock(&self.slot.inner);
        match inner.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                match &inner.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => inner.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

/// Yields each handle's result as soon as its task ends, in completion order, each exactly once
/// (Python's `concurrent.futures.as_completed`). Works with handles from any executor.
///
/// ```
/// let pool = pardo::ThreadPool::builder().workers(2).build().unwrap();
/// let handles: Vec<_> = (0..4u64).map(|i| pool.submit(move || i * i)).collect();
/// let mut squares: Vec<u64> = pardo::as_completed(handles).map(|(_, r)| r.unwrap()).collect();
/// squares.sort();
/// assert_eq!(squares, vec![0, 1, 4, 9]);
/// ```
pub fn as_completed<T, I>(handles: I) -> AsCompleted<T>
where
    I: IntoIterator<Item = Handle<T>>,
{
    let mut set = CompletionSet::new();
    for h in handles {
        set.push(h);
    }
    AsCompleted { set }
}

/// Iterator returned by [`as_completed`]: `(task id, result)` pairs in completion order.
#[derive(Debug)]
pub struct AsCompleted<T> {
    set: CompletionSet<T>,
}

impl<T> Iterator for AsCompleted<T> {
    type Item = (TaskId, Result<T, TaskError>);

    fn next(&mut self) -> Option<Self::Item> {
        self.set.next_ready()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.set.len(), Some(self.set.len()))
    }
}

/// What [`CompletionSet::next_ready_within`] found.
pub(crate) enum Next<T> {
    /// A finished handle's id and result.
    Ready(TaskId, Result<T, TaskError>),
    /// The set holds no handle.
    Empty,
    /// None finished within the time given.
    Later,
}

/// Handles waiting to finish, handed back in the order they finish. Each handle gets a waker
/// that posts its index on a channel; `next_ready` blocks on that channel.
pub(crate) struct CompletionSet<T> {
    pending: Vec<Option<Handle<T>>>,
    free: Vec<usize>,
    left: usize,
    tx: std::sync::mpsc::Sender<usize>,
    rx: std::sync::mpsc::Receiver<usize>,
    /// Set while a pool worker waits in `next_ready` helping its pool: woken on every
    /// completion so it looks at the channel again.
    helper: Arc<Mutex<Option<Waker>>>,
}

impl<T> std::fmt::Debug for CompletionSet<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompletionSet")
            .field("left", &self.left)
            .finish()
    }
}

impl<T> CompletionSet<T> {
    pub(crate) fn new() -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        CompletionSet {
            pending: Vec::new(),
            free: Vec::new(),
            left: 0,
            tx,
            rx,
            helper: Arc::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.left
    }

    pub(crate) fn push(&mut self, h: Handle<T>) {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.pending.push(None);
                self.pending.len() - 1
            }
        };
        {
            let mut inner = lock(&h.slot.inner);
            if inner.result.is_some() {
                let _ = self.tx.send(index);
            } else {
                let notice = ReadyNotice {
                    index,
                    tx: Mutex::new(self.tx.clone()),
                    helper: Arc::clone(&self.helper),
                };
                inner.waker = Some(Waker::from(Arc::new(notice)));
            }
        }
        self.pending[index] = Some(h);
        self.left += 1;
    }

    /// Blocks until some handle has finished and returns its result; `None` when empty.
    pub(crate) fn next_ready(&mut self) -> Option<(TaskId, Result<T, TaskError>)> {
        while self.left > 0 {
            let index = self.recv()?;
            if let Some(ready) = self.take(index) {
                return Some(ready);
            }
        }
        None
    }

    /// The result of the handle whose notice said `index`, taken out of the set; None for a
    /// notice of a handle already taken.
    fn take(&mut self, index: usize) -> Option<(TaskId, Result<T, TaskError>)> {
        let h = self.pending.get_mut(index).and_then(Option::take)?;
        self.left -= 1;
        self.free.push(index);
        // A notice is posted only once the result is stored: this wait returns at once.
        Some((h.id(), h.wait()))
    }

    /// As [`next_ready`](Self::next_ready), but [`Next::Later`] once `timeout` has passed with
    /// nothing finished (a pool worker, whose wait helps its pool, waits as long as it takes).
    pub(crate) fn next_ready_within(&mut self, timeout: Duration) -> Next<T> {
        if can_help() {
            return match self.next_ready() {
                Some((id, r)) => Next::Ready(id, r),
                None => Next::Empty,
            };
        }
        let deadline = Instant::now() + timeout;
        while self.left > 0 {
            let index = match self.rx.try_recv() {
                Ok(i) => i,
                Err(_) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match self.rx.recv_timeout(left) {
                        Ok(i) => i,
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Next::Later,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Next::Empty,
                    }
                }
            };
            if let Some((id, r)) = self.take(index) {
                return Next::Ready(id, r);
            }
        }
        Next::Empty
    }

    /// The async `next_ready`: a finished handle's result, or `Pending` with `cx`'s waker kept
    /// to be woken by the next completion; `Ready(None)` when empty.
    #[cfg(feature = "async")]
    pub(crate) fn poll_next_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<(TaskId, Result<T, TaskError>)>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        // Armed before looking, so a completion between the look and `Pending` still wakes us.
        {
            let mut helper = lock(&self.helper);
            if !helper.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *helper = Some(cx.waker().clone());
            }
        }
        while let Ok(index) = self.rx.try_recv() {
            let Some(h) = self.pending.get_mut(index).and_then(Option::take) else {
                continue;
            };
            self.left -= 1;
            self.free.push(index);
            let id = h.id();
            // A notice is posted only once the result is stored.
            match h.try_wait() {
                Ok(r) => return Poll::Ready(Some((id, r))),
                Err(h) => self.push(h),
            }
        }
        Poll::Pending
    }
}

impl<T> CompletionSet<T> {
    /// The next finished index; on a pool worker, helping its pool while none is there.
    fn recv(&self) -> Option<usize> {
        if let Ok(i) = self.rx.try_recv() {
            return Some(i);
        }
        let got = std::cell::Cell::new(None);
        let done = || {
            if got.get().is_none() {
                got.set(self.rx.try_recv().ok());
            }
            got.get().is_some()
        };
        let helped = help_until(&done, &|w| *lock(&self.helper) = Some(w));
        if helped {
            *lock(&self.helper) = None;
        }
        match got.get() {
            Some(i) => Some(i),
            None => self.rx.recv().ok(),
        }
    }
}

struct ReadyNotice {
    index: usize,
    tx: Mutex<std::sync::mpsc::Sender<usize>>,
    helper: Arc<Mutex<Option<Waker>>>,
}

impl std::task::Wake for ReadyNotice {
    fn wake(self: Arc<Self>) {
        let _ = lock(&self.tx).send(self.index);
        // Cloned out first: the helper's waker takes its pool's sleep lock.
        let helper = lock(&self.helper).clone();
        if let Some(w) = helper {
            w.wake();
        }
    }
}
