//! Workload analysis and concurrency control.
//!
//! - [`classify`]: the CPU-bound / I/O-bound verdict.
//! - [`controller`]: the controller that picks and steers the worker count while a run goes.
//! - [`usl`]: the Universal Scalability Law fitted to throughput measured at several counts.
//! - [`sim`]: a simulated workload and clock to test controllers deterministically.

pub mod classify;
pub mod controller;
pub mod sim;
pub mod usl;
