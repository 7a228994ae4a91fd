//! Workload analysis and concurrency control.
//!
//! - [`classify`]: the CPU-bound / I/O-bound verdict.
//! - [`controller`]: the controller that picks and steers the worker count while a run goes.
//! - [`usl`]: the Universal Scalability Law fitted to throughput measured at several counts.
//! - [`sampler`]: the machine's CPU, memory and load, and the cores this process may use.
//! - [`sim`]: a simulated workload and clock to test controllers deterministically.

pub mod classify;
pub mod controller;
pub mod sampler;
pub mod sim;
pub mod usl;
