//! The PyO3 binding layer: the only code that knows about Python. Each file here has one
//! Python twin that gives its raw objects a typed, documented face.

use std::borrow::Cow;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

pub mod context;
pub mod errors;
pub mod execution;
mod lease;
mod raw_entry;
mod scalar;
mod site;
pub mod store;
mod verify;

/// The key of the journal of attempt `attempt` of an invocation (see `ids::journal_id`).
#[pyfunction]
fn journal_id<'py>(
    py: Python<'py>,
    invocation: &[u8],
    attempt: u32,
) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    let inv = bytes16("an invocation id", invocation)?;
    Ok(pyo3::types::PyBytes::new(
        py,
        &crate::ids::journal_id(&inv, attempt),
    ))
}

/// A 16-byte id as a UUID string (`str(uuid.UUID(bytes=id))`).
#[pyfunction]
fn format_id(id: &[u8]) -> PyResult<String> {
    Ok(crate::ids::format(&bytes16("an id", id)?))
}

/// The codec's fast path: the CBOR of plain values (see `scalar.rs`), or None when
/// `pynenc.codec` must encode it.
#[pyfunction]
fn fast_encode<'py>(
    py: Python<'py>,
    value: &Bound<'py, PyAny>,
    limit: usize,
) -> Option<Bound<'py, pyo3::types::PyBytes>> {
    scalar::try_encode(value, limit).map(|b| pyo3::types::PyBytes::new(py, &b))
}

/// The codec's fast path: `(True, value)` for plain values, `(False, None)` when
/// `pynenc.codec` must decode it.
#[pyfunction]
fn fast_decode<'py>(py: Python<'py>, data: &[u8]) -> (bool, Option<Bound<'py, PyAny>>) {
    match scalar::try_decode(py, data) {
        Some(v) => (true, Some(v)),
        None => (false, None),
    }
}

/// The canonical form of codec bytes (maps sorted by key, see `canonical.rs`), which digests
/// are taken over; `data` itself when it is already in that form (or is not CBOR).
#[pyfunction]
fn canonical_form<'py>(py: Python<'py>, data: &Bound<'py, PyBytes>) -> Bound<'py, PyBytes> {
    match crate::canonical::canonical(data.as_bytes()) {
        Some(Cow::Owned(sorted)) => PyBytes::new(py, &sorted),
        _ => data.clone(),
    }
}

/// A 16-byte value (an id or a digest) crossing from Python; `what` names it in the error.
pub(crate) fn bytes16(what: &str, bytes: &[u8]) -> PyResult<[u8; 16]> {
    bytes.try_into().map_err(|_| {
        errors::to_pyerr(crate::error::Error::InvalidArgument(format!(
            "{what} is 16 bytes, got {}",
            bytes.len()
        )))
    })
}

/// Register every class and function of `pynenc._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("FORMAT_VERSION", crate::entry::SEGMENT_VERSION)?;
    m.add_function(wrap_pyfunction!(journal_id, m)?)?;
    m.add_function(wrap_pyfunction!(format_id, m)?)?;
    m.add_function(wrap_pyfunction!(fast_encode, m)?)?;
    m.add_function(wrap_pyfunction!(fast_decode, m)?)?;
    m.add_function(wrap_pyfunction!(canonical_form, m)?)?;
    store::register(m)?;
    lease::register(m)?;
    verify::register(m)?;
    execution::register(m)?;
    context::register(m)?;
    Ok(())
}
