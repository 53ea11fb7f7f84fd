//! The `mailroom` binary: parses the command line ([`cli`]), sets up logging and hands
//! over to the command layer ([`app`]), which wires the library together. Exit codes are
//! documented in docs/reference.md ("Exit codes").

mod app;
mod cli;

use std::process::ExitCode;

use clap::Parser;
use mailroom::error::ErrorKind;
use mailroom::telemetry;

use crate::cli::Cli;

/// The stack of every runtime thread: room for queries with very long expressions.
const QUERY_STACK_BYTES: usize = 64 * 1024 * 1024;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo draws progress bars and a summary; its logs are only warnings and errors.
    let level = match cli.command {
        cli::Command::Demo { .. } => "warn",
        _ => "info",
    };
    // Before any other thread exists: `init` also sets the process's backtrace policy.
    telemetry::init(cli.log_format, level);
    // Parsing, rewriting and planning a query recurse over its expression tree: a report
    // with thousands of `OR` terms needs a deep stack, so every thread that may run one
    // gets one (and the command runs on such a thread, not on `main`'s 8 MB).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(QUERY_STACK_BYTES)
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ErrorKind::Bug.exit_code();
        }
    };
    let command = runtime.block_on(async { tokio::spawn(app::execute(cli)).await });
    let outcome = match command {
        Ok(outcome) => outcome,
        Err(err) => {
            eprintln!("error: the command stopped unexpectedly: {err}");
            return ErrorKind::Bug.exit_code();
        }
    };
    match outcome {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {failure}");
            failure.kind.exit_code()
        }
    }
}
