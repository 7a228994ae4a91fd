//! `pardo report RUN.jsonl [-o REPORT.html] [--trace FILE]`: the HTML report (and, if asked,
//! the Chrome trace) of a run saved with `--json`, drawn afterwards — also from a run that was
//! killed half-way, from the jobs it finished.

use std::ffi::OsString;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pardo::monitor::export::read_json_lines;

use crate::see::write_file;

/// `pardo report RUN.jsonl [-o REPORT.html] [--trace FILE]`
#[derive(Debug, Parser)]
#[command(
    name = "pardo report",
    about = "Draw the HTML report of a run saved with --json (a killed run too: from the jobs \
             it finished)",
    after_help = "Exit status: 0 when the report was written, 255 on a bad option or a file \
                  that cannot be read or written."
)]
pub struct ReportArgs {
    /// The JSON Lines file a run wrote with --json.
    #[arg(value_name = "RUN.jsonl")]
    pub input: PathBuf,
    /// Where to write the HTML report (default: the input's name with `.html`).
    #[arg(short = 'o', long = "output", value_name = "REPORT.html")]
    pub output: Option<PathBuf>,
    /// Also write the run as a Chrome trace to FILE.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
}

pub fn run(argv: Vec<OsString>) -> anyhow::Result<ExitCode> {
    let a = match ReportArgs::try_parse_from(argv.iter().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 255 } else { 0 };
            let _ = e.print();
            return Ok(ExitCode::from(code));
        }
    };
    let file = std::fs::File::open(&a.input)
        .with_context(|| format!("cannot read {}", a.input.display()))?;
    let log = read_json_lines(BufReader::new(file))
        .with_context(|| format!("cannot read {}", a.input.display()))?;
    if log.run.is_none() {
        anyhow::bail!(
            "{} has no run header line: is it a file written by pardo --json?",
            a.input.display()
        );
    }
    let output = a.output.unwrap_or_else(|| a.input.with_extension("html"));
    write_file(&output, "the report to", |out| log.write_html(out))?;
    eprintln!(
        "pardo: report of {} jobs written to {}{}",
        log.records.len(),
        output.display(),
        if log.summary.is_none() {
            " (the run did not end cleanly: drawn from the jobs it finished)"
        } else {
            ""
        }
    );
    if let Some(trace) = &a.trace {
        write_file(trace, "--trace", |out| log.write_trace(out))?;
        eprintln!("pardo: trace written to {}", trace.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_clap_definition_is_consistent() {
        ReportArgs::command().debug_assert();
    }
}
