//! `MERGE` in query jobs, applied atomically when the job completes: `WHEN MATCHED THEN
//! UPDATE SET …` and `WHEN NOT MATCHED [BY TARGET] THEN INSERT (…) VALUES (…) | INSERT ROW`,
//! with an `ON` condition over a target table and a source table or subquery. The new table
//! is the unmatched target rows, the updated matched rows and the inserted source rows, each
//! computed by a query through the GoogleSQL front end. As on BigQuery, a target row that
//! matches more than one source row fails the job.

use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Value, json};
use sqlparser::ast::{
    AssignmentTarget, Merge, MergeAction, MergeClauseKind, MergeInsertKind, ObjectNamePart,
    Statement, TableFactor,
};

use super::*;
use mailroom_googlesql as googlesql;

type JobError = (String, String);

fn invalid(message: impl Into<String>) -> JobError {
    ("invalidQuery".to_string(), message.into())
}

/// The statement, when `sql` is one `MERGE`.
pub(super) fn parse_merge(sql: &str) -> Option<Merge> {
    match googlesql::parse(sql).ok()?.as_slice() {
        [Statement::Merge(merge)] => Some(merge.clone()),
        _ => None,
    }
}

fn last_name(name: &sqlparser::ast::ObjectName) -> String {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(ident)) => ident.value.clone(),
        _ => String::new(),
    }
}

impl BigQueryState {
    /// Applies a `MERGE`; the job's statistics on success.
    pub(super) async fn apply_merge(
        &mut self,
        merge: &Merge,
        default_dataset: Option<&str>,
    ) -> Result<Value, JobError> {
        let TableFactor::Table { name, alias, .. } = &merge.table else {
            return Err(invalid("MERGE needs a table as its target"));
        };
        // `p.d.t` in one backtick identifier, or separate parts.
        let path: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| match p {
                ObjectNamePart::Identifier(i) => Some(i.value.clone()),
                ObjectNamePart::Function(_) => None,
            })
            .flat_map(|v| v.split('.').map(str::to_string).collect::<Vec<_>>())
            .collect();
        let (dataset, table) = match path.as_slice() {
            [_, d, t] | [d, t] => (d.clone(), t.clone()),
            [t] => (default_dataset.unwrap_or_default().to_string(), t.clone()),
            _ => return Err(invalid(format!("MERGE target {name} is not a table name"))),
        };
        let stored = self
            .datasets
            .get(&dataset)
            .and_then(|ds| ds.tables.get(&table))
            .cloned()
            .ok_or_else(|| {
                (
                    "notFound".to_string(),
                    format!("Not found: Table {PROJECT_ID}:{dataset}.{table}"),
                )
            })?;
        let target_alias = alias
            .as_ref()
            .map_or(table.clone(), |a| a.name.value.clone());
        let target = format!("`{PROJECT_ID}.{dataset}.{table}` AS {target_alias}");
        let source = match &merge.source {
            TableFactor::Derived {
                subquery,
                alias: Some(alias),
                ..
            } => format!("({subquery}) AS {}", alias.name.value),
            TableFactor::Table { name, alias, .. } => match alias {
                Some(alias) => format!("{name} AS {}", alias.name.value),
                None => name.to_string(),
            },
            _ => {
                return Err(invalid(
                    "MERGE needs a table or an aliased subquery as its source",
                ));
            }
        };
        let on = merge.on.to_string();
        let columns: Vec<String> = stored
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();

        let mut update: Option<Vec<String>> = None;
        let mut insert: Option<Vec<String>> = None;
        for clause in &merge.clauses {
            if clause.predicate.is_some() {
                return Err(invalid(
                    "the sandbox runs MERGE clauses without AND conditions",
                ));
            }
            match (&clause.clause_kind, &clause.action) {
                (MergeClauseKind::Matched, MergeAction::Update(set)) => {
                    let mut values: Vec<String> = columns
                        .iter()
                        .map(|c| format!("{target_alias}.{c}"))
                        .collect();
                    for assignment in &set.assignments {
                        let AssignmentTarget::ColumnName(column) = &assignment.target else {
                            return Err(invalid("UPDATE SET takes one column per assignment"));
                        };
                        let column = last_name(column);
                        let index = columns.iter().position(|c| *c == column).ok_or_else(|| {
                            invalid(format!("Unrecognized name: {column} in UPDATE SET"))
                        })?;
                        values[index] = assignment.value.to_string();
                    }
                    update = Some(values);
                }
                (
                    MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget,
                    MergeAction::Insert(insert_expr),
                ) => {
                    let values = match &insert_expr.kind {
                        MergeInsertKind::Row => columns.clone(),
                        MergeInsertKind::Values(values) => {
                            let [row] = values.rows.as_slice() else {
                                return Err(invalid("INSERT VALUES takes one row in MERGE"));
                            };
                            let mut out = vec!["NULL".to_string(); columns.len()];
                            for (column, value) in insert_expr.columns.iter().zip(&row.content) {
                                let column = last_name(column);
                                let index =
                                    columns.iter().position(|c| *c == column).ok_or_else(|| {
                                        invalid(format!("Unrecognized name: {column} in INSERT"))
                                    })?;
                                out[index] = value.to_string();
                            }
                            out
                        }
                    };
                    insert = Some(values);
                }
                _ => {
                    return Err(invalid(
                        "the sandbox runs MERGE with WHEN MATCHED THEN UPDATE and WHEN NOT MATCHED THEN INSERT",
                    ));
                }
            }
        }

        let ctx = self.context(default_dataset)?;
        let run = |sql: String| {
            let ctx = ctx.clone();
            async move {
                googlesql::run(&ctx, &sql)
                    .await
                    .map(|(_, batches)| batches)
                    .map_err(|e| invalid(e.to_string()))
            }
        };
        let count =
            |batches: &[RecordBatch]| batches.iter().map(RecordBatch::num_rows).sum::<usize>();
        let matched = format!("EXISTS (SELECT 1 FROM {source} WHERE {on})");
        let mut parts: Vec<RecordBatch> = Vec::new();
        let mut updated = 0;
        match &update {
            Some(values) => {
                let kept = run(format!(
                    "SELECT {target_alias}.* FROM {target} WHERE NOT {matched}"
                ))
                .await?;
                let matched_rows = run(format!(
                    "SELECT {target_alias}.* FROM {target} WHERE {matched}"
                ))
                .await?;
                let new_rows = run(format!(
                    "SELECT {} FROM {target} JOIN {source} ON {on}",
                    aliased(values, &columns)
                ))
                .await?;
                if count(&new_rows) > count(&matched_rows) {
                    return Err((
                        "invalidQuery".into(),
                        "UPDATE/MERGE must match at most one source row for each target row".into(),
                    ));
                }
                updated = count(&new_rows);
                parts.extend(kept);
                parts.extend(new_rows);
            }
            None => parts.extend(run(format!("SELECT * FROM {target}")).await?),
        }
        let mut inserted = 0;
        if let Some(values) = &insert {
            let rows = run(format!(
                "SELECT {} FROM {source} WHERE NOT EXISTS (SELECT 1 FROM {target} WHERE {on})",
                aliased(values, &columns)
            ))
            .await?;
            inserted = count(&rows);
            parts.extend(rows);
        }
        let qualified = format!("{PROJECT_ID}:{dataset}.{table}");
        let batches = conform_rows(&stored.schema, parts, &qualified)?;
        if let Some(entry) = self
            .datasets
            .get_mut(&dataset)
            .and_then(|ds| ds.tables.get_mut(&table))
        {
            entry.batches = batches;
            entry.modified = now_ms();
        }
        let affected = (updated + inserted).to_string();
        Ok(json!({
            "query": { "statementType": "MERGE", "numDmlAffectedRows": affected, "totalBytesProcessed": "0" },
            "numDmlAffectedRows": affected,
        }))
    }
}

/// `expr AS column, …` in the table's column order.
fn aliased(values: &[String], columns: &[String]) -> String {
    values
        .iter()
        .zip(columns)
        .map(|(v, c)| format!("{v} AS {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Casts each part's columns to the table's types (a NULL literal has no type of its own).
fn conform_rows(
    schema: &datafusion::arrow::datatypes::SchemaRef,
    parts: Vec<RecordBatch>,
    table: &str,
) -> Result<Vec<RecordBatch>, JobError> {
    jobs::conform(schema, parts, table).map_err(|m| ("invalid".to_string(), m))
}
