//! The one mapping from [`crate::error::Error`] onto `replaycore.errors`.
//!
//! The exception classes are imported once and cached. `pyo3::import_exception!`
//! is not used because it panics when the import fails; here a failed import
//! surfaces as the `ImportError` itself.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::error::Error;

const ERRORS_MODULE: &str = "replaycore.errors";

static INVALID_ARGUMENT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static INVALID_ARGUMENT_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static INVALID_KEY_FORMAT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static IDEMPOTENCY_CONFLICT: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn class<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
) -> PyResult<Bound<'py, PyType>> {
    cell.import(py, ERRORS_MODULE, name).cloned()
}

/// `err` as the matching `replaycore.errors` exception; `value` is the
/// rejected value (None when there is none to show).
pub(crate) fn to_pyerr(py: Python<'_>, err: Error, value: Option<&Bound<'_, PyAny>>) -> PyErr {
    let value: Py<PyAny> = match value {
        Some(value) => value.clone().unbind(),
        None => py.None(),
    };
    let (cell, name, message, argument) = match err {
        Error::Type { argument, message } => (
            &INVALID_ARGUMENT_TYPE,
            "InvalidArgumentType",
            message,
            argument,
        ),
        Error::Value { argument, message } => {
            (&INVALID_ARGUMENT, "InvalidArgument", message, argument)
        }
        Error::KeyFormat { argument, message } => {
            (&INVALID_KEY_FORMAT, "InvalidKeyFormat", message, argument)
        }
        Error::Internal { message } => {
            return PyRuntimeError::new_err(format!("replaycore internal error: {message}"))
        }
    };
    match class(py, cell, name) {
        Ok(ty) => PyErr::from_type(ty, (message, argument, value)),
        Err(import_error) => import_error,
    }
}

impl From<Error> for PyErr {
    /// The mapped exception without a value (its `value` attribute is None).
    fn from(err: Error) -> PyErr {
        Python::attach(|py| to_pyerr(py, err, None))
    }
}

/// `IdempotencyConflict(scope, prior_digest, new_digest, differing_fields)`.
pub(crate) fn conflict(
    py: Python<'_>,
    scope: &Bound<'_, PyAny>,
    prior_digest: String,
    new_digest: String,
    differing_fields: Bound<'_, PyAny>,
) -> PyErr {
    match class(py, &IDEMPOTENCY_CONFLICT, "IdempotencyConflict") {
        Ok(ty) => PyErr::from_type(
            ty,
            (
                scope.clone().unbind(),
                prior_digest,
                new_digest,
                differing_fields.unbind(),
            ),
        ),
        Err(import_error) => import_error,
    }
}
