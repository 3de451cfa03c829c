//! `replaycore._core`: the Rust core of replaycore.
//!
//! Pure modules (`keys`, `digest`, `sequence`, `store`, `error`) hold the
//! logic and are unit-tested with `cargo test`; `py` holds the thin bindings.
//! This file only declares the Python module.

pub mod digest;
pub mod error;
pub mod keys;
pub mod py;
pub mod sequence;
pub mod store;

use pyo3::prelude::*;

/// The Rust core of replaycore: idempotency keys, sequence counters and the
/// content-equality store. Use it through the `replaycore` facade.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(py::keys::legacy_key, m)?)?;
    m.add_function(wrap_pyfunction!(py::keys::key_from_intent, m)?)?;
    m.add_function(wrap_pyfunction!(py::keys::parse_key, m)?)?;
    m.add_function(wrap_pyfunction!(py::keys::derive_key, m)?)?;
    m.add_function(wrap_pyfunction!(py::keys::legacy_keys, m)?)?;
    m.add_function(wrap_pyfunction!(py::keys::derive_keys, m)?)?;
    m.add_function(wrap_pyfunction!(py::digest::content_digest, m)?)?;
    m.add_class::<py::sequence::SequenceGenerator>()?;
    m.add_class::<py::store::IdempotencyStore>()?;
    Ok(())
}
