//! Contract tests of the simulated services against `api-reference/`: each module talks to
//! one service over HTTP as an independent client would (reqwest, no mailroom code) and
//! checks auth, envelopes, pagination to the last page, rate limits and error shapes.
//!
//! - `smile`, `smartrmail`, `iterable`, `dotdigital`, `shopify`, `slack`, `google` (OAuth
//!   and Sheets), `bigquery`: one service each.
//! - `faults`: the fault plan, inspection, reset, and same-seed determinism.
//! - `support`: starting sandboxes, the world they serve, JSON GETs, Google tokens.

// The tests talk to the sandbox as independent clients would, with reqwest directly.
#![allow(clippy::disallowed_methods)]

mod bigquery;
mod dotdigital;
mod faults;
mod google;
mod iterable;
mod shopify;
mod slack;
mod smartrmail;
mod smile;
mod support;
