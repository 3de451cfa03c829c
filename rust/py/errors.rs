//! The one mapping from the core's [`Error`] onto Python exceptions: the
//! classes of `replaycore.errors`, Python's `OSError` family for I/O errors
//! from the OS, and `RuntimeError` for a broken internal invariant (never an
//! `OSError`). Every exception the bindings raise is built here.
//!
//! The exception classes are imported once and cached. `pyo3::import_exception!`
//! is not used because it panics when the import fails; here a failed import
//! surfaces as the `ImportError` itself.

use std::io;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyType};
use pyo3::PyErrArguments;

use crate::error::Error;
use crate::journal::OpenFailed;
use crate::records::DecodeError;

const ERRORS_MODULE: &str = "replaycore.errors";

/// One class of `replaycore.errors`, imported on first use.
struct Class {
    name: &'static str,
    cell: PyOnceLock<Py<PyType>>,
}

impl Class {
    const fn new(name: &'static str) -> Self {
        Class {
            name,
            cell: PyOnceLock::new(),
        }
    }

    /// An instance made from `args`, or the error of importing the class.
    fn raise<A>(&'static self, py: Python<'_>, args: A) -> PyErr
    where
        A: PyErrArguments + Send + Sync + 'static,
    {
        match self.cell.import(py, ERRORS_MODULE, self.name) {
            Ok(ty) => PyErr::from_type(ty.clone(), args),
            Err(import_error) => import_error,
        }
    }
}

static INVALID_ARGUMENT: Class = Class::new("InvalidArgument");
static INVALID_ARGUMENT_TYPE: Class = Class::new("InvalidArgumentType");
static INVALID_KEY_FORMAT: Class = Class::new("InvalidKeyFormat");
static IDEMPOTENCY_CONFLICT: Class = Class::new("IdempotencyConflict");
static RECORD_DECODE_ERROR: Class = Class::new("RecordDecodeError");
static JOURNAL_CORRUPTION: Class = Class::new("JournalCorruption");
static JOURNAL_LOCKED: Class = Class::new("JournalLocked");
static REPLAY_VIOLATION: Class = Class::new("ReplayViolation");
static REDUCER_FINISHED: Class = Class::new("ReducerFinished");

/// `err` as its Python exception; `value` is the rejected value of an
/// argument error (its `value` attribute; None when there is none to show,
/// and unused by every other error).
pub(crate) fn to_pyerr(py: Python<'_>, err: Error, value: Option<&Bound<'_, PyAny>>) -> PyErr {
    let argument_error = |class: &'static Class, message: String, argument: String| {
        let value: Py<PyAny> = match value {
            Some(value) => value.clone().unbind(),
            None => py.None(),
        };
        class.raise(py, (message, argument, value))
    };
    match err {
        Error::Type { argument, message } => {
            argument_error(&INVALID_ARGUMENT_TYPE, message, argument)
        }
        Error::Value { argument, message } => argument_error(&INVALID_ARGUMENT, message, argument),
        Error::KeyFormat { argument, message } => {
            argument_error(&INVALID_KEY_FORMAT, message, argument)
        }
        Error::Decode(err) => decode_error(py, &err),
        Error::Corruption { offset, reason } => JOURNAL_CORRUPTION.raise(py, (offset, reason)),
        Error::Violation(v) => REPLAY_VIOLATION.raise(
            py,
            (
                v.kind,
                v.record_id,
                v.journal_seq,
                v.message,
                "repair_needed",
            ),
        ),
        Error::Locked { message } => JOURNAL_LOCKED.raise(py, (message,)),
        Error::Finished => REDUCER_FINISHED.raise(py, (crate::error::FINISHED,)),
        // Through `From` once more: even an `Error::Io` built around an
        // internal error by hand is never raised as an OSError.
        Error::Io(err) => match Error::from(err) {
            Error::Io(err) => os_error(py, err),
            other => to_pyerr(py, other, None),
        },
        internal @ Error::Internal { .. } => PyRuntimeError::new_err(internal.to_string()),
    }
}

impl From<Error> for PyErr {
    /// The mapped exception without a value (an argument error's `value`
    /// attribute is None).
    fn from(err: Error) -> PyErr {
        Python::attach(|py| to_pyerr(py, err, None))
    }
}

/// `RecordDecodeError(message, kind, offset)`: `kind` names an unknown payload
/// kind (the message then reads `unknown record kind '<kind>'`, as the
/// reference's, with Python's `repr`); the offset of the record is not known
/// here (None).
fn decode_error(py: Python<'_>, err: &DecodeError) -> PyErr {
    let message = match &err.unknown_kind {
        Some(kind) => {
            let shown = PyString::new(py, kind)
                .repr()
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_else(|_| format!("{kind:?}"));
            format!("unknown record kind {shown}")
        }
        None => err.to_string(),
    };
    RECORD_DECODE_ERROR.raise(py, (message, err.unknown_kind.clone(), None::<u64>))
}

/// The `OSError` subclass Python raises for `err` (`FileNotFoundError`,
/// `PermissionError` ...), as `OSError(errno, strerror[, filename])`: a
/// failure to open a journal names the file, as `open()` does. An error
/// without an errno keeps pyo3's mapping by kind.
fn os_error(py: Python<'_>, err: io::Error) -> PyErr {
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
}

/// `IdempotencyConflict(scope, prior_digest, new_digest, differing_fields)`:
/// not an error of the core (whose store reports a conflict as an outcome),
/// built from the Python objects involved.
pub(crate) fn conflict(
    py: Python<'_>,
    scope: &Bound<'_, PyAny>,
    prior_digest: String,
    new_digest: String,
    differing_fields: Bound<'_, PyAny>,
) -> PyErr {
    IDEMPOTENCY_CONFLICT.raise(
        py,
        (
            scope.clone().unbind(),
            prior_digest,
            new_digest,
            differing_fields.unbind(),
        ),
    )
}

/// The `ValueError` of an iterator entered again while it runs, as a
/// generator's "generator already executing".
pub(crate) fn already_executing(what: &str) -> PyErr {
    PyValueError::new_err(format!("{what} iterator already executing"))
}

/// The `TypeError` of a keyword argument `function` does not take, as
/// Python words it.
pub(crate) fn unexpected_keyword(function: &str, name: &str) -> PyErr {
    PyTypeError::new_err(format!(
        "{function}() got an unexpected keyword argument '{name}'"
    ))
}
