//! `pynenc._core.Store`: the LMDB store, seen from Python. Twin: `pynenc/store/lmdb.py`.

use std::sync::Arc;

use pyo3::prelude::*;

use crate::store::Store;

#[pyclass(name = "Store", module = "pynenc._core", frozen)]
pub struct PyStore {
    pub inner: Arc<Store>,
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyStore>()?;
    Ok(())
}
