//! pynenc-replay core: seeded streams, recorded clock, the replay Recorder and the LMDB store.
//!
//! The modules are plain Rust, tested by `cargo test` without Python. The PyO3 binding layer
//! lives in `bindings/` and is compiled only with the `python` feature (turned on by maturin);
//! this file only declares the modules and registers the Python module `pynenc._core`.

pub mod clock;
pub mod entry;
pub mod error;
pub mod ids;
pub mod recorder;
pub mod store;
pub mod stream;

#[cfg(feature = "python")]
mod bindings;

#[cfg(feature = "python")]
#[pyo3::pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    bindings::register(m)
}
