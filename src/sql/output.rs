//! Prints a query's result for `mailroom query`: an aligned table for people, CSV with a
//! header row or a JSON array of objects for other programs.

use std::io::Write;

use arrow::error::ArrowError;
use arrow::util::pretty::pretty_format_batches;

use crate::warehouse::QueryResult;

/// How `mailroom query` prints rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned table, then the row count.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects, one per row.
    Json,
}

fn column_names(result: &QueryResult) -> Vec<&str> {
    result
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect()
}

/// Writes `result` to `out` in `format`.
pub fn write(
    result: &QueryResult,
    format: OutputFormat,
    out: &mut impl Write,
) -> Result<(), ArrowError> {
    match format {
        OutputFormat::Table => {
            let rows = result.num_rows();
            if rows > 0 {
                writeln!(out, "{}", pretty_format_batches(&result.batches)?)?;
            } else {
                writeln!(out, "columns: {}", column_names(result).join(", "))?;
            }
            writeln!(out, "({rows} row{})", if rows == 1 { "" } else { "s" })?;
        }
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            if result.batches.is_empty() {
                drop(writer);
                writeln!(out, "{}", column_names(result).join(","))?;
            } else {
                for batch in &result.batches {
                    writer.write(batch)?;
                }
            }
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::ArrayWriter::new(&mut *out);
            for batch in &result.batches {
                writer.write(batch)?;
            }
            writer.finish()?;
            writeln!(out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    use super::*;

    fn result(rows: usize) -> QueryResult {
        let schema = Arc::new(Schema::new(vec![
            Field::new("email", DataType::Utf8, true),
            Field::new("orders", DataType::Int64, true),
        ]));
        let emails: Vec<String> = (0..rows).map(|i| format!("c{i}@example.com")).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(emails)),
                Arc::new(Int64Array::from_iter_values(0..rows as i64)),
            ],
        )
        .expect("batch");
        QueryResult {
            schema,
            batches: if rows == 0 { Vec::new() } else { vec![batch] },
        }
    }

    fn printed(result: &QueryResult, format: OutputFormat) -> String {
        let mut out = Vec::new();
        write(result, format, &mut out).expect("write");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn every_format_prints_rows_and_names_columns_when_there_are_none() {
        let two = result(2);
        assert!(printed(&two, OutputFormat::Table).ends_with("(2 rows)\n"));
        assert_eq!(
            printed(&two, OutputFormat::Csv),
            "email,orders\nc0@example.com,0\nc1@example.com,1\n"
        );
        assert_eq!(
            printed(&two, OutputFormat::Json),
            "[{\"email\":\"c0@example.com\",\"orders\":0},{\"email\":\"c1@example.com\",\"orders\":1}]\n"
        );
        let none = result(0);
        assert_eq!(
            printed(&none, OutputFormat::Table),
            "columns: email, orders\n(0 rows)\n"
        );
        assert_eq!(printed(&none, OutputFormat::Csv), "email,orders\n");
        assert_eq!(printed(&none, OutputFormat::Json), "[]\n");
    }
}
