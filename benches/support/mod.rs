//! What the benchmarks share: reading the `name=value` figures a child process prints, and
//! a process's own CPU time and peak memory.

use std::process::Output;

/// The figure `name` in a child's `name=value` output; a missing one stops the benchmark
/// with what the child printed.
pub fn figure(output: &Output, name: &str) -> f64 {
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no {name} in the output: {text} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

/// CPU time this process has used, user and system (Linux `/proc/self/stat`).
#[allow(dead_code, reason = "not every benchmark reports CPU time")]
pub fn cpu_seconds() -> f64 {
    let ticks_per_second = 100.0;
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let after_name = stat.rsplit(')').next()?.to_string();
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) / ticks_per_second)
        })
        .unwrap_or(0.0)
}

/// This process's peak resident memory (Linux `VmHWM`), in KiB.
#[allow(dead_code, reason = "not every benchmark reports memory")]
pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
