//! `mailroom check`: every problem in the config, its environment and its SQL files at
//! once, or a summary of what the config sets up.

use std::process::ExitCode;

use mailroom::config::{self, ConfigErrors, ProcessEnvironment};
use mailroom::error::ErrorKind;
use mailroom::sql::file::{SqlFile, SqlFileError, discover};

use super::{load_config, print};
use crate::cli::Cli;

/// `mailroom check`: every problem in the config, its environment and its SQL files.
pub fn check(cli: &Cli) -> ExitCode {
    let config = match load_config(cli) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ErrorKind::Config.exit_code();
        }
    };
    let mut problems = config.environment_problems(&ProcessEnvironment);
    let mut sql_files = match discover(&config.base_dir) {
        Ok(files) => files,
        Err(err) => {
            eprintln!(
                "cannot list the SQL folders under {}: {err}",
                config.base_dir.display()
            );
            return ErrorKind::Config.exit_code();
        }
    };
    for job in &config.jobs {
        for step in &job.steps {
            if let config::Step::Sql { file, .. } = step
                && !sql_files.contains(file)
            {
                sql_files.push(file.clone());
            }
        }
    }
    for path in &sql_files {
        match SqlFile::read(path) {
            Ok(file) => problems.extend(file.check_body()),
            Err(SqlFileError::Invalid(errors)) => problems.extend(errors.0),
            Err(err @ SqlFileError::Read { .. }) => {
                eprintln!("{err}");
                return ErrorKind::Config.exit_code();
            }
        }
    }
    if !problems.is_empty() {
        eprintln!("{}", ConfigErrors(problems));
        return ErrorKind::Config.exit_code();
    }
    show!("{}", print::config_summary(&config, sql_files.len()));
    ExitCode::SUCCESS
}
