//! `mailroom check`: every problem in the config, its environment and its SQL files at
//! once, or a summary of what the config sets up.

use std::process::ExitCode;

use mailroom::config::{self, Config, ConfigErrors, ProcessEnvironment, WarehouseConfig};
use mailroom::error::ErrorKind;
use mailroom::sql::file::{SqlFile, SqlFileError, discover};

use super::load_config;
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
    print!("{}", check_summary(&config, sql_files.len()));
    ExitCode::SUCCESS
}

fn check_summary(config: &Config, sql_files: usize) -> String {
    let names = |list: Vec<&str>| {
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    };
    let warehouse = match &config.warehouse {
        WarehouseConfig::Local { .. } => {
            let dir = config.local_warehouse_dir().unwrap_or_default();
            format!("local Delta tables in {}", dir.display())
        }
        WarehouseConfig::BigQuery {
            project,
            dataset,
            location,
            ..
        } => {
            format!("BigQuery {project}.{dataset} ({location})")
        }
    };
    let sandbox = match (&config.sandbox.enabled, &config.sandbox.url) {
        (false, _) => "off: real services".to_string(),
        (true, Some(url)) => format!("on, using the sandbox at {url}"),
        (true, None) => format!(
            "on, in-process (seed {}, {} customers)",
            config.sandbox.seed, config.sandbox.customers
        ),
    };
    let jobs: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
    format!(
        "config ok\n  data dir:     {}\n  warehouse:    {warehouse}\n  sandbox:      {sandbox}\n  sources:      {}\n  destinations: {}\n  jobs:         {} ({})\n  SQL files:    {sql_files} ok\n",
        config.data_dir.display(),
        names(config.sources.services.keys().map(|k| k.name()).collect()),
        names(
            config
                .destinations
                .services
                .keys()
                .map(|k| k.name())
                .collect()
        ),
        jobs.len(),
        names(jobs.clone()),
    )
}
