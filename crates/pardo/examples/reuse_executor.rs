//! Seed scenario 5: one executor value passed to several independent pieces of code, which share
//! its workers and its monitoring.
//!
//! Run: `cargo run --release -p pardo --example reuse_executor`

use pardo::{Executor, ShutdownMode, ThreadPool};

/// Counts the words of each text, on whatever pool it is given.
fn word_counts(pool: &ThreadPool, texts: Vec<String>) -> Result<Vec<usize>, pardo::TaskError> {
    pool.map(texts, |t| t.split_whitespace().count()).collect()
}

/// Checksums blocks of generated data, on any executor (only the shared trait is needed to
/// describe it afterwards).
fn checksums(pool: &ThreadPool, blocks: u64) -> Result<u64, pardo::TaskError> {
    let handles: Vec<_> = (0..blocks)
        .map(|b| pool.submit(move || block_digest(b)))
        .collect();
    handles
        .into_iter()
        .try_fold(0u64, |acc, h| h.wait().map(|d| acc ^ d))
}

/// A block of generated data, folded into one number: a little CPU work per block.
fn block_digest(block: u64) -> u64 {
    (0..64u64 << 10).fold(block, |h, i| (h ^ i).rotate_left(7).wrapping_mul(31))
}

fn describe(ex: &impl Executor) -> String {
    let r = ex.report();
    format!(
        "{} on {} workers: {} tasks, speedup {:.2}",
        ex.kind(),
        ex.workers(),
        r.tasks,
        r.speedup
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = ThreadPool::builder().workers(2).build()?;
    let texts = vec![
        "one two three".to_owned(),
        "four five".to_owned(),
        "six".to_owned(),
    ];
    let counts = word_counts(&pool, texts)?;
    assert_eq!(counts, [3, 2, 1]);
    println!("word counts: {counts:?}   [{}]", describe(&pool));
    let digest = checksums(&pool, 32)?;
    assert_eq!(digest, (0..32).map(block_digest).fold(0, |acc, d| acc ^ d));
    println!(
        "checksum of 32 blocks: {digest:016x}   [{}]",
        describe(&pool)
    );
    let report = pool.shutdown(ShutdownMode::Wait);
    println!(
        "one pool served both: {} tasks recorded in one report",
        report.tasks
    );
    Ok(())
}
