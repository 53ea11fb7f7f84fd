//! What the benchmarks share: reading the `name=value` figures a child process prints.

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
