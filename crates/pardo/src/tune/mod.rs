//! Concurrency control: reads what `monitor` measured and steers an executor's worker count.
//!
//! - [`controller`]: the controller that picks and steers the worker count while a run goes.
//! - [`usl`]: the Universal Scalability Law fitted to throughput measured at several counts.
//! - [`sampler`]: the machine's CPU, memory and load, and the cores this process may use.
//! - [`sim`]: a simulated workload and clock to test controllers deterministically.
//!
//! The CPU-bound / I/O-bound verdict is a description, not a decision, so it lives in
//! [`monitor`](crate::monitor) ([`Workload`](crate::monitor::Workload)).

pub mod controller;
pub mod sampler;
pub mod sim;
pub mod usl;
