//! Binding of the Rust record schema, for the schema drift test.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::error::Error;
use crate::records;

/// Decode `data` (one msgpack record) with the Rust mirror of the schema and
/// encode it again canonically from that mirror.
///
/// Equal bytes back mean both sides agree on every field name, type, default
/// and order: the test suite runs every record kind through it so the Rust
/// and Python schemas cannot drift apart. Raises RecordDecodeError.
#[pyfunction]
#[pyo3(signature = (data, /))]
pub fn _canonical_roundtrip<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyBytes>,
) -> PyResult<Bound<'py, PyBytes>> {
    let record = records::decode_msgpack(data.as_bytes()).map_err(Error::from)?;
    Ok(PyBytes::new(py, &records::encode_canonical(&record)))
}
