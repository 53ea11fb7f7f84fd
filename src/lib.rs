//! mailroom: extracts email, loyalty and order data into a warehouse on a schedule, runs the
//! SQL reports users write, and pushes the answers to Sheets, Slack and email platforms.
//!
//! Modules follow the data flow: [`config`] → [`scheduler`] → [`pipeline`] ([`sources`] →
//! [`normalize`] → [`warehouse`] → [`sql`] → deliver / activate), with [`state`] as the
//! ledger every stage records into and [`services`] as the one home of each external
//! service (reads and writes share its connection and budget). The command layer
//! (`src/main.rs` and its `app` and `cli` modules) is the binary's own: it alone starts
//! or reaches a sandbox, and hands this library plain overrides. `ARCHITECTURE.md` traces
//! one job through the modules.

pub mod activate;
pub mod chart;
pub mod config;
pub mod deliver;
pub mod error;
pub mod extract;
pub mod http;
pub mod normalize;
pub mod ops;
pub mod pipeline;
pub mod schedule;
pub mod scheduler;
pub mod secret;
pub mod services;
pub mod sources;
pub mod sql;
pub mod state;
pub mod telemetry;
pub mod warehouse;
