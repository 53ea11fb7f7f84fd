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
//! - `sql_golden`: the shipped SQL files on fixture tables, rows compared with
//!   `tests/golden/expected/`.
//! - `sandbox_smile`, `sandbox_smartrmail`, `sandbox_iterable`, `sandbox_dotdigital`,
//!   `sandbox_shopify`, `sandbox_slack`, `sandbox_google`, `sandbox_bigquery`:
//!   contract tests of each simulated service
//!   against `api-reference/`: auth, envelopes, pagination to the last page, rate limits,
//!   error shapes.
//! - `sandbox_faults`: the fault plan, inspection, reset, and same-seed determinism.
//! - `support`: a scripted executor and helpers shared by the above.

// The tests talk to the sandbox as independent clients would, with reqwest directly.
#![allow(clippy::disallowed_methods)]

mod cli;
mod config;
mod extract_email;
mod extract_faults;
mod extract_shopify;
mod extract_smile;
mod http;
mod retry;
mod sandbox_bigquery;
mod sandbox_dotdigital;
mod sandbox_faults;
mod sandbox_google;
mod sandbox_iterable;
mod sandbox_shopify;
mod sandbox_slack;
mod sandbox_smartrmail;
mod sandbox_smile;
mod scheduler;
mod sql_golden;
mod support;
mod warehouse_bigquery;
mod warehouse_local;
