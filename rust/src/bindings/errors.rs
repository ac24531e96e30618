//! The one place core errors become Python exceptions. Every variant of `Error` maps onto a
//! class of the hierarchy in `pynenc/errors.py` (rooted at `PynencError`), with the variant's
//! fields set as attributes so callers never parse messages.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use crate::error::{Error, Report};

static ERRORS_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

pub(crate) fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let module =
        ERRORS_MODULE.get_or_try_init(py, || py.import("pynenc.errors").map(|m| m.unbind()))?;
    module.bind(py).getattr(name)
}

/// Convert a core error into the matching `pynenc.errors` exception.
pub fn to_pyerr(err: Error) -> PyErr {
    Python::attach(|py| match build(py, &err) {
        Ok(e) => e,
        Err(e) => e,
    })
}

fn build(py: Python<'_>, err: &Error) -> PyResult<PyErr> {
    let message = err.to_string();
    let attrs = PyDict::new(py);
    let name = match err {
        Error::NonDeterminism {
            workflow_id,
            invocation_id,
            position,
            recorded,
            requested,
        } => {
            // Worded in Python, which decodes the recorded values.
            let exc = class(py, "NonDeterminismError")?.call_method1(
                "from_report",
                (
                    workflow_id,
                    invocation_id,
                    position,
                    report_dict(py, recorded)?,
                    report_dict(py, requested)?,
                ),
            )?;
            return Ok(PyErr::from_value(exc));
        }
        Error::CorruptEntry {
            path,
            invocation_id,
            position,
            detail,
        } => {
            attrs.set_item("path", path.display().to_string())?;
            attrs.set_item("invocation_id", invocation_id)?;
            attrs.set_item("position", position)?;
            attrs.set_item("table", "journal")?;
            attrs.set_item(
                "key",
                format!("invocation {invocation_id}, position {position}"),
            )?;
            attrs.set_item("detail", detail)?;
            "CorruptEntryError"
        }
        Error::StoreCorrupt {
            path,
            table,
            key,
            detail,
        } => {
            attrs.set_item("path", path.display().to_string())?;
            attrs.set_item("table", table)?;
            attrs.set_item("key", key)?;
            attrs.set_item("detail", detail)?;
            "StoreCorruptError"
        }
        Error::CorruptStore { path, .. } => {
            attrs.set_item("path", path.display().to_string())?;
            "CorruptStoreError"
        }
        Error::FormatVersion {
            path,
            found,
            supported,
        } => {
            attrs.set_item("path", path.display().to_string())?;
            attrs.set_item("found", found)?;
            attrs.set_item("supported", supported)?;
            "StoreFormatError"
        }
        Error::StoreAccess { path, .. } => {
            attrs.set_item("path", path.display().to_string())?;
            "StoreAccessError"
        }
        Error::ReadOnly { path } => {
            attrs.set_item("path", path.display().to_string())?;
            "StoreReadOnlyError"
        }
        Error::Io { path, .. } | Error::Lmdb { path, .. } => {
            attrs.set_item("path", path.display().to_string())?;
            "StoreIOError"
        }
        Error::StoreFull {
            path,
            needed,
            available,
            ..
        } => {
            attrs.set_item("path", path.display().to_string())?;
            attrs.set_item("needed", needed)?;
            attrs.set_item("available", available)?;
            "StoreFullError"
        }
        Error::StoreLock { path, .. } => {
            attrs.set_item("path", path.display().to_string())?;
            "StoreLockError"
        }
        Error::StaleLease {
            invocation_id,
            token,
            current,
        } => {
            attrs.set_item("invocation_id", invocation_id)?;
            attrs.set_item("token", token)?;
            attrs.set_item("current", current)?;
            "LeaseLostError"
        }
        Error::StoreUnavailable { location, .. } => {
            attrs.set_item("path", location)?;
            "StoreUnavailableError"
        }
        Error::Postgres { location, .. } => {
            attrs.set_item("path", location)?;
            "StoreIOError"
        }
        Error::InvalidArgument(_) => "InvalidArgumentError",
    };
    let exc = class(py, name)?.call1((message,))?;
    for (k, v) in attrs.iter() {
        exc.setattr(k.cast::<pyo3::types::PyString>()?, v)?;
    }
    Ok(PyErr::from_value(exc))
}

/// One side of a divergence as the dict `NonDeterminismError.from_report` reads.
fn report_dict<'py>(py: Python<'py>, r: &Report) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("kind", r.kind)?;
    d.set_item("description", &r.description)?;
    d.set_item("name", &r.name)?;
    d.set_item("value", &r.value)?;
    d.set_item(
        "data",
        r.data.as_deref().map(|b| pyo3::types::PyBytes::new(py, b)),
    )?;
    let site = r.site.as_ref();
    d.set_item("file", site.map(|s| &*s.code.file))?;
    d.set_item("line", site.map(|s| s.line))?;
    d.set_item(
        "function",
        site.map(|s| &*s.code.function).filter(|f| !f.is_empty()),
    )?;
    Ok(d)
}

/// `?`-friendly conversion for binding code.
pub trait IntoPy<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for Result<T, Error> {
    #[inline]
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_pyerr)
    }
}
