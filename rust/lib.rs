//! `replaycore._core`: the Rust core of replaycore.
//!
//! Pure modules (`keys`, `digest`, `sequence`, `store`, `msgpack`, `records`,
//! `frames`, `jsonl`, `journal`, `convert`, `replay`, `pipeline`, `error`,
//! `sync`) hold the logic and are unit-tested with `cargo test` (with the
//! builders of `test_support`); `py` holds the thin
//! bindings, which only convert. `py` and the Python module are compiled with
//! the `python` feature only (maturin enables it), so the pure core builds,
//! lints and tests without pyo3 or libpython.
//! This file only declares the modules and the Python module.

pub mod convert;
pub mod digest;
pub mod error;
pub mod frames;
pub mod journal;
pub mod jsonl;
pub mod keys;
pub mod msgpack;
pub mod pipeline;
#[cfg(feature = "python")]
pub mod py;
pub mod records;
pub mod replay;
pub mod sequence;
pub mod store;
pub mod sync;
#[cfg(test)]
pub mod test_support;

#[cfg(feature = "python")]
use pyo3::prelude::*;

/// The Rust core of replaycore: idempotency keys, sequence counters, the
/// content-equality store, journal files and the replay reducer. Use it
/// through the `replaycore` facade.
#[cfg(feature = "python")]
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
    m.add_class::<py::journal::JournalWriter>()?;
    m.add_function(wrap_pyfunction!(py::journal::read_journal, m)?)?;
    m.add_function(wrap_pyfunction!(py::journal::inspect_journal, m)?)?;
    m.add_function(wrap_pyfunction!(py::journal::convert_journal, m)?)?;
    m.add_class::<py::replay::ReplayReducer>()?;
    m.add_function(wrap_pyfunction!(py::replay::replay, m)?)?;
    m.add_function(wrap_pyfunction!(py::replay::replay_many, m)?)?;
    m.add_function(wrap_pyfunction!(py::replay::journal_cursor_for_seq, m)?)?;
    m.add_function(wrap_pyfunction!(py::replay::durable_replay_support, m)?)?;
    m.add_function(wrap_pyfunction!(py::replay::check_cursor_compatibility, m)?)?;
    m.add_function(wrap_pyfunction!(py::records::_canonical_roundtrip, m)?)?;
    Ok(())
}
