//! Workload analysis and, later, concurrency control.

pub mod classify;
