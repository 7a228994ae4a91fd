//! Views of the data model as files: one module per format behind [`Export`].
//!
//! Formats are contracts: the JSON document and the CSV columns are the field names of
//! [`TaskRecord`] and [`Report`], documented there field by field.

mod csv;
mod json;

pub use self::csv::Csv;
pub use self::json::Json;

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
