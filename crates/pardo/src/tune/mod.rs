//! Workload analysis and concurrency control.
//!
//! - [`classify`]: the CPU-bound / I/O-bound verdict.
//! - [`controller`]: the controller that picks and steers the worker count while a run goes.
//! - [`sim`]: a simulated workload and clock to test controllers deterministically.

pub mod classify;
pub mod controller;
pub mod sim;
