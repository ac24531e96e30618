//! pynenc-replay core: seeded streams, recorded clock, the replay Recorder and the LMDB store.
//!
//! The modules are plain Rust, tested by `cargo test` without Python. The PyO3 binding layer
//! lives in `bindings/` and is compiled only with the `python` feature (turned on by maturin).

pub mod clock;
pub mod entry;
pub mod error;
pub mod ids;
pub mod recorder;
pub mod store;
pub mod stream;

#[cfg(feature = "python")]
mod bindings;
