//! Runs a job's steps in order: the [`Executor`] the scheduler and `run-job` drive.
//!
//! Each step kind belongs to a stage of the data flow (extract → normalize → load, sql,
//! deliver, activate). A step whose stage this build does not have yet fails the run with
//! a terminal error that says so before anything is sent anywhere: it is never skipped
//! silently or counted as a success.

use std::sync::Arc;

use crate::config::{Config, JobConfig, Step};
use crate::error::ErrorKind;
use crate::scheduler::{Executor, RunContext, RunError};
use crate::state::Counters;

/// Runs steps against the configured sources, warehouse and destinations.
pub struct Pipeline {
    config: Arc<Config>,
}

impl Pipeline {
    /// A pipeline over `config`.
    pub fn new(config: Arc<Config>) -> Self {
        Pipeline { config }
    }

    async fn run_step(
        &self,
        step: &Step,
        _run: &RunContext,
        _counters: &mut Counters,
    ) -> Result<(), RunError> {
        match step {
            Step::Extract { .. }
            | Step::Sql { .. }
            | Step::Deliver { .. }
            | Step::Activate { .. } => Err(RunError::new(
                ErrorKind::Terminal,
                format!(
                    "the {} stage is not part of this build of mailroom yet; nothing was extracted, loaded or sent",
                    step.kind()
                ),
            )),
        }
    }
}

impl Executor for Pipeline {
    async fn execute(&self, job: &JobConfig, run: &RunContext) -> Result<Counters, RunError> {
        let mut counters = Counters::new();
        for (index, step) in job.steps.iter().enumerate() {
            tracing::info!(job = %job.name, run_id = %run.run_id, step = index + 1, what = %step.describe(), "step started");
            self.run_step(step, run, &mut counters)
                .await
                .map_err(|err| {
                    RunError::new(
                        err.kind,
                        format!("step {}, {}: {}", index + 1, step.describe(), err.message),
                    )
                })?;
        }
        tracing::debug!(job = %job.name, data_dir = %self.config.data_dir.display(), "all steps done");
        Ok(counters)
    }
}
