//! # pardo-demo
//!
//! The workloads that `pardo demo`, the examples and the benchmarks run on pardo's executors —
//! not part of the library, so a user of `pardo` compiles neither the HTTP stack nor these
//! task functions.
//!
//! - [`workloads`]: exact CPU-bound and waiting work ([`workloads::hash_block`]).
//! - [`loopback`]: an HTTP server on 127.0.0.1 with a fixed latency, and two clients for it.
//! - [`compare`]: one workload on the thread, process and async pools, side by side.
//!
//! The task functions [`compare::HashBlock`] and [`loopback::Fetch`] are registered for the
//! process pool in every binary that links this crate.

#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod compare;
pub mod loopback;
pub mod workloads;
