//! `pynenc verify`'s core functions: an embedded store's file and tables checked without
//! opening it through LMDB (`store/lmdb/verify.rs`, `store/lmdb/pages.rs`).

use std::path::PathBuf;

use pyo3::prelude::*;

use super::errors::IntoPy;

/// Walk every page and row of the data file of the store in directory `path` with plain reads,
/// never through LMDB: `([(table, key, what is wrong)], rows walked)`. Opens nothing.
#[pyfunction]
fn verify_file(py: Python<'_>, path: PathBuf) -> (Vec<(String, String, String)>, u64) {
    let (findings, rows) = py.detach(|| crate::store::lmdb::verify_file(&path));
    let findings = findings
        .into_iter()
        .map(|f| (f.table, f.key, f.detail))
        .collect();
    (findings, rows)
}

/// Walk table `table` of the store in directory `path` through LMDB, opened read-only:
/// `[(table, key, what is wrong)]`. Damage LMDB trips over may crash the calling process: run
/// it in a child process (`pynenc verify` does).
#[pyfunction]
fn verify_table(
    py: Python<'_>,
    path: PathBuf,
    table: &str,
) -> PyResult<Vec<(String, String, String)>> {
    let findings = py
        .detach(|| crate::store::lmdb::verify_table(&path, table))
        .py_err()?;
    Ok(findings
        .into_iter()
        .map(|f| (f.table, f.key, f.detail))
        .collect())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(verify_table, m)?)?;
    m.add_function(wrap_pyfunction!(verify_file, m)?)?;
    Ok(())
}
