//! CSV: one row per record, columns named after [`TaskRecord`]'s fields.

use std::io::Write;

use super::{Export, ExportError};
use crate::monitor::{Report, TaskRecord};

/// One row per task record; empty cells for fields a record does not have.
///
/// Columns: `id,attempt,items,input,worker,submitted_ns,started_ns,finished_ns,cpu_user_ns,
/// cpu_sys_ns,cpu_wait_ns,max_rss_bytes,exit_code,signal,output_bytes,outcome,host`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Csv;

impl Export for Csv {
    fn write(
        &self,
        _report: &Report,
        records: &[TaskRecord],
        out: &mut dyn Write,
    ) -> Result<(), ExportError> {
        let mut w = ::csv::Writer::from_writer(out);
        for r in records {
            w.serialize(r)?;
        }
        if records.is_empty() {
            w.write_record(HEADER)?;
        }
        w.flush()?;
        Ok(())
    }
}

const HEADER: [&str; 17] = [
    "id",
    "attempt",
    "items",
    "input",
    "worker",
    "submitted_ns",
    "started_ns",
    "finished_ns",
    "cpu_user_ns",
    "cpu_sys_ns",
    "cpu_wait_ns",
    "max_rss_bytes",
    "exit_code",
    "signal",
    "output_bytes",
    "outcome",
    "host",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::RunRecord;
    use crate::task::TaskId;

    #[test]
    fn rows_follow_the_documented_columns() {
        let mut r = TaskRecord::new(TaskId(1), 2, 5, 10, 30);
        r.cpu_user_ns = 7;
        r.input = "a,b".into();
        let report = Report::from_records(RunRecord::now("test", 1), std::slice::from_ref(&r));
        let mut out = Vec::new();
        Csv.write(&report, &[r], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(HEADER.join(",").as_str()));
        assert_eq!(lines.next(), Some("1,1,1,\"a,b\",2,5,10,30,7,0,,,,,,ok,"));
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn an_empty_run_still_has_the_header() {
        let report = Report::from_records(RunRecord::now("test", 1), &[]);
        let mut out = Vec::new();
        Csv.write(&report, &[], &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().trim_end(), HEADER.join(","));
    }
}
