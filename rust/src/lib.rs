//! pynenc-replay core: seeded streams, recorded clock, the replay Recorder and the LMDB store.
//!
//! The modules are plain Rust, tested by `cargo test` without Python. The PyO3 binding layer
//! lives in `bindings/` and is compiled only with the `python` feature (turned on by maturin);
//! this file only declares the modules and registers the Python module `pynenc._core`.

pub mod canonical;
pub mod clock;
pub mod entry;
pub mod error;
pub mod ids;
pub mod recorder;
pub mod report;
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

/// The extension's Rust allocations go through mimalloc: a recorded operation allocates its
/// journal entry, which lives until the commit frees a whole batch of them at once, and glibc's
/// allocator serves that pattern from its slow path (about 170 instructions a `malloc`). With
/// mimalloc a `set_data` + `get_data` pair costs 10% fewer instructions and a durable step 3%
/// (`docs/performance.md`). Its thread-local state uses the local-dynamic TLS model, which a
/// library loaded with `dlopen` needs. Python's own objects are not affected.
#[cfg(feature = "python")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
