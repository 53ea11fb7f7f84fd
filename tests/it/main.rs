//! mailroom's one integration test binary. Each module is one concern:
//!
//! - `config`: the shipped and example configs parse; bad configs report every problem at
//!   once with file, line, key path and hints; secrets resolve from the environment.
//! - `scheduler`: DST-correct firing with a fake clock, overlap, restart catch-up,
//!   shutdown with a grace period, and jobs that keep failing stay scheduled.
//! - `http`: the shared HTTP client against the sandbox: retries, `Retry-After` floors,
//!   errors that name what failed, redaction, rate budgets.
//! - `retry`: retry classification and backoff of one run, timeouts and dry runs.
//! - `cli`: the `mailroom` binary's commands, output and exit codes.
//! - `extract_smile`, `extract_email`, `extract_shopify`: every stream extracted from the
//!   sandbox, counts and sampled values against the world, cursors and the last page of
//!   every pagination scheme.
//! - `extract_faults`: extraction under the fault plan; bad records quarantined, nothing
//!   lost or duplicated, a failed stream commits nothing.
//! - `warehouse_local`: the local Delta warehouse: merge to one row per key, replace,
//!   replays, cursors across reopen, compaction, type changes refused, SIGKILL mid-load.
//! - `warehouse_bigquery`: the BigQuery warehouse against the sandbox: merges, replays
//!   finding their job ids, the journal on restart, golden SQL results.
//! - `deliver_sheets`: report rows into Sheets tabs against the sandbox, once per period
//!   (reruns, a lost ledger), `append` and `replace`, header checks, dry runs.
//! - `deliver_slack`: report messages and CSV files in Slack against the sandbox, once per
//!   period (reruns, a lost ledger found in the channel's history), channel errors.
//! - `activate`, `loyalty_sync`, `winback_results`: win-back enrollment (consent on the
//!   platform, holdouts, each person at most once, faults), loyalty fields kept current,
//!   and the intent-to-treat results report.
//! - `sql_golden`: the shipped SQL files on fixture tables, rows compared with
//!   `tests/golden/expected/`.
//! - `sql_steps`: SQL steps in jobs, rendered with the run's fire time and run on the
//!   warehouse, dry runs too; broken files fail as config errors naming the file.
//! - `ops`, `deploy`, `reference`: the status server (headless browser), the systemd unit
//!   and Dockerfile, and the reference docs against what the config reader accepts.
//! - `hardening`, `corruption`, `mutants`: what an adversarial run found (bad values,
//!   closed pipes, SIGTERM, a full disk, long SQL, secrets in URLs), damage on disk (Delta
//!   logs, `state.db`), and generated config and SQL mutants and closed pipes on every
//!   command that prints.
//! - `architecture`: the crate boundaries and the library's module graph (no module below
//!   the command layer names the sandbox; no import cycles).
//! - `support`: a scripted executor and helpers shared by the above; it includes the
//!   sandbox crate's client helpers (`crates/sandbox/tests/contract/support.rs`).
//!
//! The simulators' own contract tests are in `crates/sandbox/tests/contract/`.

// The tests talk to the sandbox as independent clients would, with reqwest directly.
#![allow(clippy::disallowed_methods)]

mod activate;
mod architecture;
mod cli;
mod config;
mod corruption;
mod deliver_sheets;
mod deliver_slack;
mod deploy;
mod extract_email;
mod extract_faults;
mod extract_shopify;
mod extract_smile;
mod hardening;
mod http;
mod loyalty_sync;
mod mutants;
mod ops;
mod reference;
mod retry;
mod scheduler;
mod sql_golden;
mod sql_steps;
mod support;
mod warehouse_bigquery;
mod warehouse_local;
mod winback_results;
