//! SQL files users write in `queries/` and `reports/`: their TOML headers now; templating
//! and the GoogleSQL front end for DataFusion join them here.

pub mod file;

pub use file::{SqlFile, SqlFileKind, SqlHeader};
