//! The PyO3 binding layer: the only code that knows about Python. Each file here has one
//! Python twin that gives its raw objects a typed, documented face.

use pyo3::prelude::*;

pub mod errors;
pub mod execution;
pub mod store;

/// Register every class and function of `pynenc._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("FORMAT_VERSION", crate::entry::SEGMENT_VERSION)?;
    store::register(m)?;
    execution::register(m)?;
    Ok(())
}
