//! The SQL to run for a file-or-text argument, as `mailroom query` and a job's `sql` step
//! give it: a SQL file (by path, or relative to the config's folder) rendered with its
//! header's parameters, or query text rendered as it is, for one run's `now` and the
//! engine's table names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::file::{SqlFile, SqlFileError};
use super::template::{self, RenderContext, TemplateError};
use crate::config::ParamValue;
use crate::error::{Classify, ErrorKind};
use crate::warehouse::TableNames;

/// Why a query could not be rendered; every case is the user's to fix.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The SQL file could not be read or its header is invalid.
    #[error(transparent)]
    File(#[from] SqlFileError),
    /// The file's body did not render.
    #[error("{}: {source}", path.display())]
    Template {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: TemplateError,
    },
    /// The argument names a `.sql` file that is not there.
    #[error("no SQL file at {argument} (nor under {})", base_dir.display())]
    NoFile {
        /// What was given.
        argument: String,
        /// The config's folder, also searched.
        base_dir: PathBuf,
    },
    /// Parameters were given for query text, which declares none.
    #[error("{0}; --param is for SQL files")]
    TextParams(TemplateError),
    /// The query text did not render.
    #[error("the query text: {0}")]
    Text(TemplateError),
}

impl Classify for RenderError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }
}

/// The SQL to run for `file_or_sql` (a file under `base_dir` or as given, else query
/// text), with `overrides` for the file's parameters, `now` as the run's time and table
/// names as `tables` says.
pub fn render_query(
    base_dir: &Path,
    file_or_sql: &str,
    overrides: &BTreeMap<String, ParamValue>,
    now: DateTime<Utc>,
    tables: &TableNames,
) -> Result<String, RenderError> {
    let as_path = Path::new(file_or_sql);
    let path = [as_path.to_path_buf(), base_dir.join(as_path)]
        .into_iter()
        .find(|p| p.is_file());
    match path {
        Some(path) => {
            let file = SqlFile::read(&path)?;
            file.render(now, overrides, tables)
                .map_err(|source| RenderError::Template { path, source })
        }
        None if file_or_sql.trim_end().ends_with(".sql") => Err(RenderError::NoFile {
            argument: file_or_sql.to_string(),
            base_dir: base_dir.to_path_buf(),
        }),
        None => {
            let params = template::resolve_params(&BTreeMap::new(), overrides)
                .map_err(RenderError::TextParams)?;
            template::render(
                file_or_sql,
                &RenderContext {
                    now,
                    params: &params,
                    tables,
                },
            )
            .map_err(RenderError::Text)
        }
    }
}
