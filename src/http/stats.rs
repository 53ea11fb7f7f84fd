//! What the client did, per service, for the process's life: requests sent, answers that
//! were 429, and retries. Read by the status server's `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// One service's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceCalls {
    /// Requests sent (every attempt).
    pub requests: u64,
    /// Answers that were 429.
    pub throttled: u64,
    /// Attempts that were retries.
    pub retries: u64,
}

static CALLS: Mutex<BTreeMap<&'static str, ServiceCalls>> = Mutex::new(BTreeMap::new());

fn with(service: &'static str, f: impl FnOnce(&mut ServiceCalls)) {
    let mut calls = CALLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    f(calls.entry(service).or_default());
}

/// Counts one request to `service`.
pub fn request(service: &'static str) {
    with(service, |c| c.requests += 1);
}

/// Counts a 429 from `service`.
pub fn throttled(service: &'static str) {
    with(service, |c| c.throttled += 1);
}

/// Counts a retry of a call to `service`.
pub fn retry(service: &'static str) {
    with(service, |c| c.retries += 1);
}

/// Every service's counts so far.
pub fn snapshot() -> BTreeMap<&'static str, ServiceCalls> {
    CALLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}
