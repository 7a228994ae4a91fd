//! Concurrency control: reads what `monitor` measured and steers an executor's worker count.
//!
//! - [`controller`]: the controller that picks and steers the worker count while a run goes.
//! - [`usl`]: the Universal Scalability Law fitted to throughput measured at several counts.
//! - [`steer`]: the loop that samples a running executor and applies the controller's target.
//! - [`sim`]: a simulated workload and clock to test controllers deterministically.
//!
//! The CPU-bound / I/O-bound verdict is a description, not a decision, so it lives in
//! [`monitor`](crate::monitor) ([`Workload`](crate::monitor::Workload)), and so does the machine
//! sampler ([`monitor::sampler`](crate::monitor::sampler)): both describe, this module acts.

pub mod controller;
pub mod sim;
pub mod steer;
pub mod usl;
