//! `pynenc._core.RunningContext`: the `Task.wf` descriptor. Twin: `pynenc/workflow/context.py`,
//! which owns the context variable it reads, and `pynenc/task.py`, which installs it.
//!
//! `task.wf` is read on every operation written in full (`task.wf.random()`). As a Python
//! `property` each read ran a Python frame, several times the cost of the operation itself.
//! Here the read is one slot call into Rust and one call of the context variable's `get`,
//! whose value CPython caches per thread and context: whatever sets or resets the variable
//! (another invocation, a nested one, `Context.run`, an `asyncio` task) moves the context's
//! version and so invalidates that cache. Nothing here keeps a context of its own, so nothing
//! can serve a stale one.

use pyo3::exceptions::PyAttributeError;
use pyo3::prelude::*;

/// `task.wf`: the workflow operations of the invocation now running, whichever task's `.wf`
/// is read; `WorkflowMembershipError` when none is running in this thread or context.
///
/// A read-only data descriptor: on an instance, `get()` (the running context), or what
/// `outside(instance)` returns or raises when `get()` gives None; on the class, itself.
#[pyclass(name = "RunningContext", module = "pynenc._core", frozen)]
pub struct RunningContext {
    /// The context variable's bound `get`: the running invocation's context, or None.
    get: Py<PyAny>,
    /// Called with the instance when no invocation is running (it raises).
    outside: Py<PyAny>,
}

#[pymethods]
impl RunningContext {
    #[new]
    fn new(get: Py<PyAny>, outside: Py<PyAny>) -> Self {
        RunningContext { get, outside }
    }

    fn __get__<'py>(
        slf: &Bound<'py, Self>,
        instance: &Bound<'py, PyAny>,
        _owner: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if instance.is_none() {
            return Ok(slf.clone().into_any());
        }
        let this = slf.get();
        let py = slf.py();
        let ctx = this.get.bind(py).call0()?;
        if ctx.is_none() {
            return this.outside.bind(py).call1((instance,));
        }
        Ok(ctx)
    }

    /// Read-only, as a `property` without a setter.
    fn __set__(&self, _instance: &Bound<'_, PyAny>, _value: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(PyAttributeError::new_err(
            "wf is read-only: it is the context of the invocation running now",
        ))
    }

    fn __delete__(&self, _instance: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(PyAttributeError::new_err(
            "wf is read-only: it is the context of the invocation running now",
        ))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RunningContext>()?;
    Ok(())
}
