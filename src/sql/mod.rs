//! SQL files users write in `queries/` and `reports/` ([`file`]: headers and body), the
//! templating that renders them for one run ([`template`]), turning a command's or step's
//! file-or-text argument into the SQL to run ([`render`]), and printing results
//! ([`output`]). The GoogleSQL front end is its own crate (`mailroom-googlesql`); queries
//! run on the configured warehouse through [`crate::warehouse::QueryEngine`].

pub mod file;
pub mod output;
pub mod render;
pub mod template;

pub use file::{ChangeUnit, ChartSpec, KeyFigure, SqlFile, SqlFileKind, SqlHeader};
pub use render::{RenderError, render_query};
