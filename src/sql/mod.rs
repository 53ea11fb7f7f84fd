//! SQL files users write in `queries/` and `reports/` ([`file`]: headers and body), and the
//! templating that renders them for one run ([`template`]) and the GoogleSQL front end that
//! runs them on DataFusion ([`googlesql`]); [`engine`] runs them on the configured warehouse and
//! [`output`] prints results.

pub mod engine;
pub mod file;
pub mod functions;
pub mod googlesql;
pub mod output;
pub mod template;

pub use file::{SqlFile, SqlFileKind, SqlHeader};
