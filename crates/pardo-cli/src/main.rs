//! `pardo`: run commands in parallel and see how it went.

use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pardo: {e:#}");
            ExitCode::from(255)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}
