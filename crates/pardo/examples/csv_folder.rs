//! A folder of CSV files processed one file per task in the process pool: each worker parses
//! its file with the `csv` crate and returns the file's row count and total; the parent adds
//! them up and checks the grand total against what it generated.
//!
//! Run: `cargo run -p pardo --example csv_folder`

use std::path::PathBuf;

use pardo::{ProcessPool, ShutdownMode};

pardo::task_fn! {
    /// Parses one CSV file (`id,amount`) and returns (rows, sum of amount).
    pub SumCsv(path: PathBuf) -> Result<(u64, u64), String> {
        let mut reader = csv::Reader::from_path(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut rows = 0;
        let mut total = 0;
        for record in reader.records() {
            let record = record.map_err(|e| format!("{}: {e}", path.display()))?;
            let amount: u64 = record
                .get(1)
                .ok_or_else(|| format!("{}: row {rows} has no amount", path.display()))?
                .parse()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            rows += 1;
            total += amount;
        }
        Ok((rows, total))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    pardo::worker_hook(); // workers are this binary: they take over here
    let dir = std::env::temp_dir().join(format!("pardo-csv-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut files = Vec::new();
    let mut expected = 0u64;
    for f in 0..24u64 {
        let path = dir.join(format!("part-{f:02}.csv"));
        let mut w = csv::Writer::from_path(&path)?;
        w.write_record(["id", "amount"])?;
        for row in 0..5_000u64 {
            let amount = (f * 7919 + row * 31) % 1000;
            expected += amount;
            w.write_record([row.to_string(), amount.to_string()])?;
        }
        w.flush()?;
        files.push(path);
    }

    let pool = ProcessPool::builder().workers(2).build()?;
    let (mut rows, mut total) = (0, 0);
    for result in pool.map(files, SumCsv) {
        let (r, t) = result??;
        rows += r;
        total += t;
    }
    let report = pool.shutdown(ShutdownMode::Wait);
    std::fs::remove_dir_all(&dir)?;
    println!(
        "{rows} rows in {} files, total {total} (expected {expected})",
        report.tasks
    );
    println!(
        "wall {}, speedup {:.2}, cpu/wall {}, peak worker RSS {} KiB",
        pardo::monitor::format_duration(report.wall_ns),
        report.speedup,
        report
            .cpu_ratio
            .map_or("-".to_owned(), |c| format!("{c:.2}")),
        report.max_rss_bytes.unwrap_or(0) >> 10
    );
    assert_eq!(total, expected);
    assert_eq!(rows, 24 * 5_000);
    Ok(())
}
