//! JSON: one document `{"report": Report, "records": [TaskRecord, …]}`.

use std::io::Write;

use serde::Serialize;

use super::{Export, ExportError};
use crate::monitor::{Report, TaskRecord};

/// The whole run as one JSON document: `{"report": …, "records": […]}`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

#[derive(Serialize)]
struct Document<'a> {
    report: &'a Report,
    records: &'a [TaskRecord],
}

impl Export for Json {
    fn write(
        &self,
        report: &Report,
        records: &[TaskRecord],
        out: &mut dyn Write,
    ) -> Result<(), ExportError> {
        serde_json::to_writer_pretty(&mut *out, &Document { report, records })?;
        out.write_all(b"\n")?;
        Ok(())
    }
}
