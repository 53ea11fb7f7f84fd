//! mailroom: extracts email, loyalty and order data into a warehouse on a schedule, runs the
//! SQL reports users write, and pushes the answers to Sheets, Slack and email platforms.
//!
//! Modules follow the data flow: [`config`] → [`scheduler`] → [`pipeline`] (sources →
//! normalize → warehouse → [`sql`] → deliver / activate), with [`state`] as the ledger
//! every stage records into. `ARCHITECTURE.md` traces one job through them.

pub mod app;
pub mod cli;
pub mod config;
pub mod error;
pub mod extract;
pub mod http;
pub mod normalize;
pub mod pipeline;
pub mod sandbox;
pub mod scheduler;
pub mod sources;
pub mod sql;
pub mod state;
pub mod telemetry;
pub mod warehouse;
