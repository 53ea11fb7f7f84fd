//! Whether any merge key repeats among a load's staged rows, learned without reading the rows
//! again and in bounded memory.
//!
//! A 64-bit hash of each staged row's key is kept; equal hashes may be a collision, which only
//! costs the sort that keeps the last row per key, never a wrong answer. Hashes are held in
//! memory [`RUN_HASHES`] at a time; each full run is sorted, checked and written to disk, and
//! at commit the runs are merged, smallest hash first, so a repeat across runs is found with
//! one reader per run in memory. A load of any size checks its keys in a few megabytes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use arrow::record_batch::RecordBatch;
use datafusion::common::hash_utils::{QualityRandomState, create_hashes};

use crate::normalize::{TableSchema, WriteDisposition};
use crate::warehouse::WarehouseError;

/// Hashes held in memory (8 bytes each) before a sorted run of them goes to disk.
const RUN_HASHES: usize = 256 << 10;

/// The key hashes of one table's staged rows.
#[derive(Debug, Default)]
pub(super) enum KeyHashes {
    /// The table has no key, or is not merged: nothing to check.
    #[default]
    Unkeyed,
    /// The hashes so far: sorted runs on disk, and the newest in memory.
    Kept(Runs),
    /// Two rows of one run share a hash: the keys may repeat, nothing more to keep.
    Repeated,
}

#[derive(Debug)]
pub(super) struct Runs {
    /// Where the runs are written.
    dir: PathBuf,
    /// Hashes per run.
    run_hashes: usize,
    /// The newest hashes, not sorted yet.
    current: Vec<u64>,
    /// Runs on disk, each sorted and free of repeats.
    written: Vec<PathBuf>,
}

impl KeyHashes {
    /// Hashes for `table`'s staged rows, their runs written under `dir`.
    pub(super) fn for_table(table: &TableSchema, dir: PathBuf) -> Self {
        Self::with_runs_of(table, dir, RUN_HASHES)
    }

    fn with_runs_of(table: &TableSchema, dir: PathBuf, run_hashes: usize) -> Self {
        if table.disposition == WriteDisposition::Merge && !table.key.is_empty() {
            KeyHashes::Kept(Runs {
                dir,
                run_hashes,
                current: Vec::new(),
                written: Vec::new(),
            })
        } else {
            KeyHashes::Unkeyed
        }
    }

    /// Adds the hashes of `batch`'s key columns.
    pub(super) fn add(
        &mut self,
        table: &TableSchema,
        batch: &RecordBatch,
    ) -> Result<(), WarehouseError> {
        let KeyHashes::Kept(runs) = self else {
            return Ok(());
        };
        let columns = table
            .key
            .iter()
            .map(|key| {
                batch.column_by_name(key).cloned().ok_or_else(|| {
                    WarehouseError::storage(
                        table.name,
                        "cannot stage",
                        format!("key column {key} is missing"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let start = runs.current.len();
        runs.current.resize(start + batch.num_rows(), 0);
        create_hashes(
            &columns,
            &QualityRandomState::with_seed(0),
            &mut runs.current[start..],
        )
        .map_err(|e| WarehouseError::storage(table.name, "cannot stage", e))?;
        if runs.current.len() >= runs.run_hashes && runs.write(table.name)? {
            *self = KeyHashes::Repeated;
        }
        Ok(())
    }

    /// Whether some key may appear in more than one staged row.
    pub(super) fn may_repeat(self, table: &str) -> Result<bool, WarehouseError> {
        match self {
            KeyHashes::Unkeyed => Ok(false),
            KeyHashes::Repeated => Ok(true),
            KeyHashes::Kept(runs) => runs.may_repeat(table),
        }
    }
}

impl Runs {
    /// Sorts the hashes in memory and writes them as a run; whether two of them are equal
    /// (then nothing is written).
    fn write(&mut self, table: &str) -> Result<bool, WarehouseError> {
        if sort_and_find_repeat(&mut self.current) {
            return Ok(true);
        }
        let failed =
            |e: std::io::Error| WarehouseError::storage(table, "cannot stage key hashes", e);
        std::fs::create_dir_all(&self.dir).map_err(failed)?;
        let path = self.dir.join(format!("keys-{:05}.bin", self.written.len()));
        let mut out = BufWriter::new(File::create(&path).map_err(failed)?);
        for hash in &self.current {
            out.write_all(&hash.to_le_bytes()).map_err(failed)?;
        }
        out.flush().map_err(failed)?;
        self.written.push(path);
        self.current.clear();
        Ok(false)
    }

    /// Whether two hashes are equal, within the newest hashes or across any runs: the runs
    /// merged smallest first, each read a buffer at a time.
    fn may_repeat(mut self, table: &str) -> Result<bool, WarehouseError> {
        if sort_and_find_repeat(&mut self.current) {
            return Ok(true);
        }
        if self.written.is_empty() {
            return Ok(false);
        }
        let failed =
            |e: std::io::Error| WarehouseError::storage(table, "cannot read key hashes", e);
        let mut readers = self
            .written
            .iter()
            .map(|path| File::open(path).map(BufReader::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        let mut current = self.current.iter().copied();
        // (hash, source): source 0 is the newest hashes, n + 1 the nth run.
        let mut heads = BinaryHeap::new();
        if let Some(hash) = current.next() {
            heads.push(Reverse((hash, 0)));
        }
        for (i, reader) in readers.iter_mut().enumerate() {
            if let Some(hash) = next_hash(reader).map_err(failed)? {
                heads.push(Reverse((hash, i + 1)));
            }
        }
        let mut previous = None;
        while let Some(Reverse((hash, source))) = heads.pop() {
            if previous == Some(hash) {
                return Ok(true);
            }
            previous = Some(hash);
            let next = match source {
                0 => current.next(),
                run => next_hash(&mut readers[run - 1]).map_err(failed)?,
            };
            if let Some(next) = next {
                heads.push(Reverse((next, source)));
            }
        }
        Ok(false)
    }
}

/// Sorts `hashes`; whether two are equal.
fn sort_and_find_repeat(hashes: &mut [u64]) -> bool {
    hashes.sort_unstable();
    hashes.windows(2).any(|pair| pair[0] == pair[1])
}

/// The next hash of a run, or `None` at its end.
fn next_hash(reader: &mut BufReader<File>) -> std::io::Result<Option<u64>> {
    let mut bytes = [0; 8];
    match reader.read_exact(&mut bytes) {
        Ok(()) => Ok(Some(u64::from_le_bytes(bytes))),
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;

    use super::*;
    use crate::normalize::{Column, ColumnType};

    fn table() -> TableSchema {
        TableSchema::new(
            "events",
            vec![Column::named("id", ColumnType::Int64).required()],
        )
        .merge_on(&["id"])
    }

    /// Whether the keys of `batches` repeat, with runs of three hashes.
    fn repeats(batches: &[&[i64]]) -> bool {
        let table = table();
        let dir = tempfile::tempdir().unwrap();
        let mut hashes = KeyHashes::with_runs_of(&table, dir.path().join("keys"), 3);
        for ids in batches {
            // The hashes read only the key columns.
            let id: arrow::array::ArrayRef = Arc::new(Int64Array::from(ids.to_vec()));
            let batch = RecordBatch::try_from_iter([("id", id)]).unwrap();
            hashes.add(&table, &batch).unwrap();
        }
        hashes.may_repeat("events").unwrap()
    }

    #[test]
    fn a_key_repeated_anywhere_is_found_and_distinct_keys_are_not() {
        // Distinct keys over three runs on disk and the newest in memory.
        assert!(!repeats(&[&[5, 1, 9], &[2, 8, 3], &[7, 4, 6], &[0, 10]]));
        // Within one run, caught as it is written.
        assert!(repeats(&[&[5, 1, 5], &[2, 8, 3]]));
        // Across two runs on disk.
        assert!(repeats(&[&[5, 1, 9], &[2, 8, 3], &[7, 1, 6]]));
        // Between a run on disk and the newest hashes.
        assert!(repeats(&[&[5, 1, 9], &[2, 8, 3], &[9]]));
        // Within the newest hashes only.
        assert!(repeats(&[&[4, 4]]));
        // Nothing staged, and a single key.
        assert!(!repeats(&[]));
        assert!(!repeats(&[&[1]]));
    }

    #[test]
    fn tables_without_a_merge_key_never_repeat() {
        let table = TableSchema::new(
            "log",
            vec![Column::named("id", ColumnType::Int64).required()],
        );
        let hashes = KeyHashes::for_table(&table, PathBuf::from("unused"));
        assert!(!hashes.may_repeat("log").unwrap());
    }
}
