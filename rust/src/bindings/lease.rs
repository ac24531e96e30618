//! `pynenc._core.Claim` and `pynenc._core.Lease`: the queue's values as typed objects, not
//! bare tuples. Twin: the `Claim`/`Lease` classes in `pynenc/_core.pyi`.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// A claimed invocation and the lease taken on it.
#[pyclass(name = "Claim", module = "pynenc._core", frozen, eq)]
#[derive(PartialEq)]
pub struct PyClaim {
    pub invocation: Vec<u8>,
    /// The fencing token every write of this execution carries.
    #[pyo3(get)]
    pub token: u64,
    /// When the lease runs out, in ms of the store's clock.
    #[pyo3(get)]
    pub expires_ms: u64,
    /// Its last holder never gave it back (died): this execution is a resumption.
    #[pyo3(get)]
    pub taken_over: bool,
}

#[pymethods]
impl PyClaim {
    /// The invocation id (16 bytes).
    #[getter]
    fn invocation<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.invocation)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Claim(invocation={}, token={}, expires_ms={}, taken_over={})",
            repr_bytes(py, &self.invocation),
            self.token,
            self.expires_ms,
            if self.taken_over { "True" } else { "False" }
        )
    }
}

/// The lease of an invocation (expired and released leases included: their owner is empty).
#[pyclass(name = "Lease", module = "pynenc._core", frozen, eq)]
#[derive(PartialEq)]
pub struct PyLease {
    pub invocation: Vec<u8>,
    pub owner: Vec<u8>,
    /// When it runs out, in ms of the store's clock.
    #[pyo3(get)]
    pub expires_ms: u64,
    /// The fencing token of its holder.
    #[pyo3(get)]
    pub token: u64,
}

#[pymethods]
impl PyLease {
    /// The invocation id (16 bytes).
    #[getter]
    fn invocation<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.invocation)
    }

    /// Who holds it (`HOST:pid=PID:start=...`), empty when released or completed.
    #[getter]
    fn owner<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.owner)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Lease(invocation={}, owner={}, expires_ms={}, token={})",
            repr_bytes(py, &self.invocation),
            repr_bytes(py, &self.owner),
            self.expires_ms,
            self.token
        )
    }
}

impl PyClaim {
    pub fn new(c: &crate::store::Claim) -> Self {
        PyClaim {
            invocation: c.invocation.to_vec(),
            token: c.token,
            expires_ms: c.expires_ms,
            taken_over: c.taken_over,
        }
    }
}

impl PyLease {
    pub fn new(invocation: &[u8; 16], l: &crate::store::Lease) -> Self {
        PyLease {
            invocation: invocation.to_vec(),
            owner: l.owner.clone(),
            expires_ms: l.expires_ms,
            token: l.token,
        }
    }
}

fn repr_bytes(py: Python<'_>, b: &[u8]) -> String {
    PyBytes::new(py, b)
        .repr()
        .map_or_else(|_| format!("{b:?}"), |r| r.to_string())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyClaim>()?;
    m.add_class::<PyLease>()?;
    Ok(())
}
