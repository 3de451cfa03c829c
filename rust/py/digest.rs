//! Binding of `content_digest` (SPEC section 2).

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

use crate::digest;
use crate::error::Error;
use crate::py::args::raise;
use crate::py::cache;

/// Inputs at least this large are hashed with the GIL released.
const DETACH_MIN_BYTES: usize = 64 * 1024;

/// `"sha256:"` + hex SHA-256 of `data`, without the GIL for large inputs.
pub(crate) fn digest_of(py: Python<'_>, data: &[u8]) -> String {
    if data.len() >= DETACH_MIN_BYTES {
        py.detach(|| digest::content_digest(data))
    } else {
        digest::content_digest(data)
    }
}

/// `records.encode_canonical(value)`; msgspec's TypeError becomes
/// InvalidArgumentType about `value`, other errors pass through.
pub(crate) fn encode_canonical<'py>(value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let py = value.py();
    match cache::encode_canonical(py)?.call1((value,)) {
        Ok(encoded) => Ok(encoded.cast_into::<PyBytes>()?),
        Err(err) if err.is_instance_of::<PyTypeError>(py) => {
            let detail = err
                .value(py)
                .str()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Err(raise(
                Error::type_error(
                    "value",
                    format!("value cannot be encoded canonically: {detail}"),
                ),
                value,
            ))
        }
        Err(err) => Err(err),
    }
}

/// `"sha256:"` + 64 lowercase hex chars of SHA-256 over the canonical
/// encoding of `value`.
///
/// `bytes`, `bytearray` and `memoryview` values are hashed as given (a
/// strided view over its logical bytes); anything else is first encoded with
/// `replaycore.records.encode_canonical`. Raises InvalidArgumentType when
/// msgspec cannot encode `value`. Large inputs are hashed without the GIL.
#[pyfunction]
#[pyo3(signature = (value))]
pub fn content_digest(value: &Bound<'_, PyAny>) -> PyResult<String> {
    let py = value.py();
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return Ok(digest_of(py, bytes.as_bytes()));
    }
    if let Ok(array) = value.cast::<PyByteArray>() {
        // A bytearray may change under us once the GIL is released: copy it.
        return Ok(digest_of(py, &array.to_vec()));
    }
    if value.is_instance_of::<PyMemoryView>() {
        // `tobytes()` gives the view's logical bytes, strided or not.
        let raw = value.call_method0(pyo3::intern!(py, "tobytes"))?;
        return Ok(digest_of(py, raw.cast::<PyBytes>()?.as_bytes()));
    }
    let encoded = encode_canonical(value)?;
    Ok(digest_of(py, encoded.as_bytes()))
}
