//! The PyO3 binding layer: the only code that knows about Python. Each file here has one
//! Python twin that gives its raw objects a typed, documented face.

use pyo3::prelude::*;

pub mod errors;
pub mod execution;
mod scalar;
pub mod store;

/// The key of the journal of attempt `attempt` of an invocation (see `ids::journal_id`).
#[pyfunction]
fn journal_id<'py>(
    py: Python<'py>,
    invocation: &[u8],
    attempt: u32,
) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    let inv: [u8; 16] = invocation.try_into().map_err(|_| {
        errors::to_pyerr(crate::error::Error::InvalidArgument(format!(
            "invocation id must be 16 bytes, got {}",
            invocation.len()
        )))
    })?;
    Ok(pyo3::types::PyBytes::new(
        py,
        &crate::ids::journal_id(&inv, attempt),
    ))
}

/// Register every class and function of `pynenc._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("FORMAT_VERSION", crate::entry::SEGMENT_VERSION)?;
    m.add_function(wrap_pyfunction!(journal_id, m)?)?;
    store::register(m)?;
    execution::register(m)?;
    Ok(())
}
