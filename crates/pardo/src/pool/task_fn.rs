//! Named task functions, and the one trait that lets the same workload run on any pool.
//!
//! A closure cannot cross into another process, so the process pool runs *named* functions: a
//! [`TaskFn`] is a unit type with an input type, an output type and a body, registered under a
//! name that the worker (the same binary, re-executed) looks up. The [`task_fn!`](crate::task_fn)
//! macro writes the type, the trait impl and the registration in one go.
//!
//! [`RunTask`] is implemented by [`ThreadPool`], [`ProcessPool`](crate::ProcessPool) and
//! [`AsyncPool`](crate::AsyncPool). Code written against it runs unchanged on all three, so moving
//! a workload from threads to processes to async is a change of the one line that builds the
//! pool (see the example on [`RunTask`]).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::executor::Executor;
use crate::handle::Handle;
use crate::pool::map::{Map, MapUnordered};
use crate::pool::threads::ThreadPool;

/// A function a pool can run by name: in-process on threads or async tasks, or in a worker
/// process after its input crossed a pipe. Write one with [`task_fn!`](crate::task_fn), which
/// also registers it so worker processes can find it.
///
/// Inputs and outputs are serde types because the process pool serializes them (postcard).
/// Take several arguments as a tuple.
pub trait TaskFn: Copy + Send + Sync + 'static {
    /// The argument.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// The result.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The name workers know it by: the module path and the type name.
    const NAME: &'static str;
    /// Runs the function.
    fn call(input: Self::Input) -> Self::Output;
}

/// Defines a [`TaskFn`] and registers it for worker processes.
///
/// ```
/// pardo::task_fn! {
///     /// Adds two numbers.
///     pub Add((a, b): (u64, u64)) -> u64 { a + b }
/// }
/// use pardo::TaskFn;
/// assert_eq!(Add::call((2, 3)), 5);
/// assert!(Add::NAME.ends_with("::Add"));
/// ```
///
/// The name is `module_path!()` plus the type name, so it is the same in the parent and in the
/// re-executed worker, and unique within a binary.
#[macro_export]
macro_rules! task_fn {
    ($(#[$meta:meta])* $vis:vis $name:ident ($arg:tt : $input:ty) -> $output:ty $body:block) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default)]
        $vis struct $name;

        impl $crate::TaskFn for $name {
            type Input = $input;
            type Output = $output;
            const NAME: &'static str = concat!(module_path!(), "::", stringify!($name));
            fn call($arg: $input) -> $output $body
        }

        $crate::__private::inventory::submit! {
            $crate::__private::Registered::new::<$name>()
        }
    };
}

/// Runs [`TaskFn`]s on any of pardo's pools: code written against this trait moves between
/// executors by changing the one line that builds the pool.
///
/// ```
/// use pardo::{RunTask, ShutdownMode, ThreadPool, ProcessPool};
///
/// pardo::task_fn! {
///     /// Mixes 64 Ki numbers into one: pure CPU work.
///     pub Mix(seed: u64) -> u64 { (0..64u64 << 10).fold(seed, |h, i| h.rotate_left(5) ^ i) }
/// }
///
/// /// The workload, written once against any executor.
/// fn checksum(pool: &impl RunTask) -> u64 {
///     pool.map_task(0..32u64, Mix).map(|r| r.unwrap()).fold(0, u64::wrapping_add)
/// }
///
/// fn main() -> Result<(), pardo::PoolError> {
///     pardo::worker_hook(); // a re-executed worker process takes over here and never returns
///
///     let pool = ThreadPool::builder().workers(2).build()?; // ← the one line to change:
///     // let pool = ProcessPool::builder().workers(2).build()?;
///     // let pool = pardo::AsyncPool::builder().runtime_threads(2).build()?;
///     let on_threads = checksum(&pool);
///
///     let processes = ProcessPool::builder().workers(2).build()?;
///     assert_eq!(checksum(&processes), on_threads);
///     let report = processes.shutdown(ShutdownMode::Wait);
///     assert_eq!(report.items, 32);
///
/// #   #[cfg(feature = "async")] // the async pool is behind the default-on `async` feature
/// #   {
///     let tasks = pardo::AsyncPool::builder().runtime_threads(2).build()?;
///     assert_eq!(checksum(&tasks), on_threads);
/// #   }
///     Ok(())
/// }
/// ```
///
/// Handles, `map` iterators, errors and records are the same whichever pool runs the tasks.
pub trait RunTask: Executor {
    /// Runs `f(input)` and returns a handle to its result.
    fn submit_task<F: TaskFn>(&self, f: F, input: F::Input) -> Handle<F::Output>;

    /// Applies `f` to every input and yields the results in input order, lazily, with a bounded
    /// number in flight (as [`ThreadPool::map`]).
    fn map_task<F, I>(&self, inputs: I, f: F) -> Map<'_, I::IntoIter, F::Output>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Input>;

    /// As [`map_task`](RunTask::map_task), in completion order with task ids.
    fn map_unordered_task<F, I>(&self, inputs: I, f: F) -> MapUnordered<'_, I::IntoIter, F::Output>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Input>;
}

impl RunTask for ThreadPool {
    fn submit_task<F: TaskFn>(&self, _f: F, input: F::Input) -> Handle<F::Output> {
        self.submit(move || F::call(input))
    }

    fn map_task<F, I>(&self, inputs: I, _f: F) -> Map<'_, I::IntoIter, F::Output>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Input>,
    {
        self.map(inputs, F::call)
    }

    fn map_unordered_task<F, I>(&self, inputs: I, _f: F) -> MapUnordered<'_, I::IntoIter, F::Output>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Input>,
    {
        self.map_unordered(inputs, F::call)
    }
}
