//! Views of the data model as files: one module per format.
//!
//! Formats are contracts: the JSON document, the JSON Lines objects and the CSV columns are the
//! field names of [`TaskRecord`] and [`Report`], documented there field by field.
//!
//! - [`Json`] and [`Csv`]: the whole run at the end, behind the [`Export`] trait.
//! - [`JsonLines`]: the run as it happens (a [`RecordSink`](crate::monitor::RecordSink)), and
//!   [`read_json_lines`] to read it back into a [`RunLog`].
//! - [`write_trace`]: a [`RunLog`] as a Chrome trace (Perfetto, `chrome://tracing`).
//! - [`write_html`]: a [`RunLog`] as a self-contained HTML report (inline SVG, no script).

mod csv;
mod html;
mod json;
mod jsonl;
mod run_log;
mod svg;
mod trace;

pub use self::csv::Csv;
pub use self::html::{write_html, REPORT_CHARTS, REPORT_SECTIONS};
pub use self::json::Json;
pub use self::jsonl::{read_json_lines, JsonLines};
pub use self::run_log::{RunLog, StderrTail, STDERR_TAIL_BYTES};
pub use self::trace::{assign_tracks, running_steps, write_trace, Track, LANE_STRIDE};

use std::io::Write;

use crate::monitor::{Report, TaskRecord};

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing failed.
    #[error("cannot write the export: {0}")]
    Io(#[from] std::io::Error),
    /// Encoding JSON failed.
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A line of a JSON Lines file is not one pardo writes.
    #[error("line {line} is not a pardo JSON Lines record: {source}")]
    Line {
        /// The line number, from 1.
        line: usize,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// Encoding CSV failed.
    #[error("cannot encode CSV: {0}")]
    Csv(#[from] ::csv::Error),
}

/// A file format for a run's report and records.
///
/// ```
/// use pardo::monitor::export::{Export, Json};
/// let pool = pardo::ThreadPool::builder().workers(2).build().unwrap();
/// pool.submit(|| 1).wait().unwrap();
/// let mut out = Vec::new();
/// Json.write(&pool.report(), &pool.recorder().records(), &mut out).unwrap();
/// assert!(String::from_utf8(out).unwrap().contains("\"records\""));
/// ```
pub trait Export {
    /// Writes the report and the records to `out`.
    fn write(
        &self,
        report: &Report,
        records: &[TaskRecord],
        out: &mut dyn Write,
    ) -> Result<(), ExportError>;
}
