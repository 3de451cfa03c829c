//! The one mapping from the core's errors ([`crate::error::Error`], record
//! decoding, journal corruption and locking, I/O) onto `replaycore.errors` and
//! Python's `OSError` family.
//!
//! The exception classes are imported once and cached. `pyo3::import_exception!`
//! is not used because it panics when the import fails; here a failed import
//! surfaces as the `ImportError` itself.

use std::io;

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyType};
use pyo3::PyErrArguments;

use crate::error::Error;
use crate::journal::OpenFailed;
use crate::records::DecodeError;

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

// Used by the replay and schema bindings (`py::replay`, `py::records`).
#[allow(dead_code)]
static RECORD_DECODE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static JOURNAL_CORRUPTION: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static JOURNAL_LOCKED: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn raise_as<A>(py: Python<'_>, cell: &'static PyOnceLock<Py<PyType>>, name: &str, args: A) -> PyErr
where
    A: PyErrArguments + Send + Sync + 'static,
{
    match class(py, cell, name) {
        Ok(ty) => PyErr::from_type(ty, args),
        Err(import_error) => import_error,
    }
}

/// `RecordDecodeError(message, kind, offset)`: `kind` names an unknown payload
/// kind (the message then reads `unknown record kind '<kind>'`, as the
/// reference's); `offset` is the record's byte offset when known.
#[allow(dead_code)] // see RECORD_DECODE_ERROR
pub(crate) fn decode_error(py: Python<'_>, err: &DecodeError, offset: Option<u64>) -> PyErr {
    let message = match &err.unknown_kind {
        Some(kind) => {
            let shown = PyString::new(py, kind)
                .repr()
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_else(|_| format!("{kind:?}"));
            format!("unknown record kind {shown}")
        }
        None => format!("not a record: {} at byte {}", err.message, err.offset),
    };
    raise_as(
        py,
        &RECORD_DECODE_ERROR,
        "RecordDecodeError",
        (message, err.unknown_kind.clone(), offset),
    )
}

/// `JournalCorruption(offset, reason)`.
pub(crate) fn corruption_error(py: Python<'_>, offset: u64, reason: &str) -> PyErr {
    raise_as(
        py,
        &JOURNAL_CORRUPTION,
        "JournalCorruption",
        (offset, reason.to_owned()),
    )
}

/// `JournalLocked(message)`.
pub(crate) fn locked_error(py: Python<'_>, message: String) -> PyErr {
    raise_as(py, &JOURNAL_LOCKED, "JournalLocked", (message,))
}

/// The `OSError` subclass Python raises for `err` (`FileNotFoundError`,
/// `PermissionError` ...), as `OSError(errno, strerror[, filename])`: a
/// failure to open a journal names the file, as `open()` does.
pub(crate) fn io_error(err: io::Error) -> PyErr {
    Python::attach(|py| {
        let opened = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<OpenFailed>());
        let (code, filename) = match opened {
            Some(open) => (open.source.raw_os_error(), Some(open.path.as_os_str())),
            None => (err.raw_os_error(), None),
        };
        let Some(code) = code else {
            return PyErr::from(err);
        };
        let strerror = py
            .import("os")
            .and_then(|os| os.call_method1("strerror", (code,)))
            .and_then(|s| s.extract::<String>())
            .unwrap_or_else(|_| err.to_string());
        // OSError(errno, ...) builds the subclass matching errno.
        match filename {
            Some(name) => {
                let Ok(name) = name.into_pyobject(py);
                PyOSError::new_err((code, strerror, name.unbind()))
            }
            None => PyOSError::new_err((code, strerror)),
        }
    })
}
