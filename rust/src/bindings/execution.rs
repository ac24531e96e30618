//! `pynenc._core.Execution`: one running attempt of an invocation, with its Recorder.
//! Twin: `pynenc/workflow/context.py`.

use pyo3::prelude::*;

pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
