//! The SQL files the shipped config's jobs run, compiled in beside [`super::DEFAULT_CONFIG`],
//! so the built-in config works in any folder: a file it names that is not on disk is read
//! from here. A config file of the user's own always reads its files from disk.

use std::path::Path;

/// Each shipped SQL file by its path relative to the config's folder.
const SHIPPED_SQL: [(&str, &str); 4] = [
    (
        "reports/weekly_email_performance.sql",
        include_str!("../../reports/weekly_email_performance.sql"),
    ),
    (
        "reports/loyalty_overview.sql",
        include_str!("../../reports/loyalty_overview.sql"),
    ),
    (
        "reports/winback_results.sql",
        include_str!("../../reports/winback_results.sql"),
    ),
    (
        "queries/lapsed_customers.sql",
        include_str!("../../queries/lapsed_customers.sql"),
    ),
];

/// The shipped copy of the SQL file at `path` (a path ending in one of the shipped files'
/// relative paths).
pub fn shipped_sql(path: &Path) -> Option<&'static str> {
    SHIPPED_SQL
        .iter()
        .find(|(relative, _)| path.ends_with(relative))
        .map(|(_, text)| *text)
}
