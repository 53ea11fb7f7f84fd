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

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo draws progress bars and a summary; its logs are only warnings and errors.
    let level = match cli.command {
        cli::Command::Demo { .. } => "warn",
        _ => "info",
    };
    telemetry::init(cli.log_format, level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ErrorKind::Bug.exit_code();
        }
    };
    match runtime.block_on(app::execute(cli)) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {failure}");
            failure.kind.exit_code()
        }
    }
}
