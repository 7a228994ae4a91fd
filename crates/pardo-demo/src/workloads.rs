//! Small, exact workloads for demos, examples, benchmarks and tests: one that keeps a core busy
//! and one that waits. Each does a known amount of work, so runs can be compared.

use std::hash::{DefaultHasher, Hasher};
use std::time::Duration;

/// Generates `bytes` bytes of pseudo-random data from `seed` and hashes them (SipHash): pure CPU
/// work proportional to `bytes`, with a result that depends on every byte.
///
/// ```
/// let a = pardo_demo::workloads::hash_block(1, 4096);
/// assert_eq!(a, pardo_demo::workloads::hash_block(1, 4096));
/// assert_ne!(a, pardo_demo::workloads::hash_block(2, 4096));
/// ```
pub fn hash_block(seed: u64, bytes: usize) -> u64 {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut h = DefaultHasher::new();
    let mut left = bytes;
    while left > 0 {
        // xorshift64*: cheap, deterministic filler data.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let word = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let n = left.min(8);
        h.write(&word[..n]);
        left -= n;
    }
    h.finish()
}

/// Waits `d` without using the CPU: stands in for a network or disk round trip.
///
/// ```
/// pardo_demo::workloads::wait_for(std::time::Duration::from_millis(1));
/// ```
pub fn wait_for(d: Duration) {
    std::thread::sleep(d);
}
