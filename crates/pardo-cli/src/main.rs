//! `pardo`: run commands in parallel and see how it went.

mod demo;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Process-pool workers are this binary re-executed: in one, the hook serves tasks and exits.
    pardo::worker_hook();
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pardo: {e:#}");
            ExitCode::from(255)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match args.first().and_then(|a| a.to_str()) {
        Some("demo") => demo::run(),
        _ => anyhow::bail!("usage: pardo demo (running commands arrives with the command runner)"),
    }
}
