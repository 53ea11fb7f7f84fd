//! SQL files users write in `queries/` and `reports/` ([`file`]: headers and body), and the
//! GoogleSQL front end that runs them on DataFusion ([`googlesql`]).

pub mod file;
pub mod googlesql;

pub use file::{SqlFile, SqlFileKind, SqlHeader};
