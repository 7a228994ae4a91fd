//! `pardo`: run commands in parallel and see how it went.
//!
//! `pardo demo` runs the demo, `pardo tune` finds the best number of jobs, `pardo report`
//! draws a saved `--json` run and `pardo worker` serves `--cluster` runs; anything else is GNU
//! parallel's syntax (`pardo --help`). To run a program literally named `demo`, `tune`,
//! `report` or `worker`, write `pardo -- demo …` or `pardo ./demo …`.

mod args;
mod cluster;
mod demo;
mod inputs;
mod output;
mod pipe;
mod report;
mod results;
mod run;
mod see;
mod tune;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Process-pool workers are this binary re-executed: in one, the hook serves tasks and exits.
    pardo::worker_hook();
    match run() {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("pardo: {e:#}");
            ExitCode::from(255)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run() -> anyhow::Result<ExitCode> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match args.get(1).and_then(|a| a.to_str()) {
        Some("demo") => demo::run(),
        Some("tune") => tune::run(args),
        Some("worker") => cluster::worker(args),
        Some("report") => report::run(args),
        Some(run::GUARD_ARG) => {
            pardo::command::guard::serve(std::io::stdin().lock());
            Ok(ExitCode::SUCCESS)
        }
        _ => run::main(args),
    }
}
