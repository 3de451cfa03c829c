//! Argument conversions shared by the bindings: text, integers, argument
//! names, and the typed options (`FromPyObject` for the core's string options
//! [`Mode`], [`Policy`] and [`Fsync`], for [`Strict`], [`MaxFrameBytes`] and [`MaxLineBytes`]).
//!
//! They follow `notes/api.md`: a text argument is a `str` (subclasses
//! allowed) without lone surrogates; an integer argument is an `int` that is
//! not a `bool`. Each failure names the argument exactly as Python spells it.
//! Which values an option takes, its default and its error message are the
//! core's; only the conversion from Python objects is here.

use std::borrow::Cow;
use std::fmt;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyInt, PyString};

use crate::error::{Choice, Error};
use crate::frames;
use crate::journal::Fsync;
use crate::jsonl;
use crate::py::errors::to_pyerr;
use crate::replay::{Mode, Policy};

/// The name of an argument, formatted only when an error needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    /// A plain parameter: `"run_id"`.
    Name(&'a str),
    /// A row of a batch: `"rows[3]"`.
    Row(usize),
    /// A named item of a batch row: `"rows[3].episode"`.
    RowField(usize, &'a str),
    /// A part of a batch row: `"rows[3][1]"`.
    RowPart(usize, usize),
    /// A part of `derive_key`: `"parts[1]"`.
    Part(usize),
}

impl fmt::Display for Arg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Name(name) => f.write_str(name),
            Arg::Row(row) => write!(f, "rows[{row}]"),
            Arg::RowField(row, field) => write!(f, "rows[{row}].{field}"),
            Arg::RowPart(row, part) => write!(f, "rows[{row}][{part}]"),
            Arg::Part(part) => write!(f, "parts[{part}]"),
        }
    }
}

/// An optional argument whose default is not `None`: `Given(None)` when the
/// caller left it out, `Given(Some(obj))` for anything passed, `None` included
/// (which is then refused like any other wrong type).
pub struct Given<'py>(pub Option<Bound<'py, PyAny>>);

impl<'a, 'py> FromPyObject<'a, 'py> for Given<'py> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(Given(Some(obj.to_owned())))
    }
}

impl<'py> Given<'py> {
    /// The argument converted to `T`, or `T`'s default when it was left out.
    ///
    /// Converted here rather than in the `#[pyo3(signature)]`, so the error
    /// is exactly the core's (pyo3 would add a note to it) and is raised in
    /// the order the reference checks its arguments.
    pub fn or_default<T>(&self) -> PyResult<T>
    where
        T: Default + for<'a> FromPyObject<'a, 'py, Error = PyErr>,
    {
        match &self.0 {
            Some(value) => value.extract::<T>(),
            None => Ok(T::default()),
        }
    }
}

/// A string option: the core's value named by a `str`, else the core's
/// error about it (listing every value), carrying the rejected object.
fn choice<T: Choice>(value: &Bound<'_, PyAny>) -> PyResult<T> {
    let parsed = value
        .cast::<PyString>()
        .ok()
        .and_then(|text| text.to_str().ok())
        .and_then(T::parse);
    parsed.ok_or_else(|| raise(T::refused(&repr(value)), value))
}

macro_rules! choice_from_python {
    ($($ty:ty),*) => {$(
        impl<'a, 'py> FromPyObject<'a, 'py> for $ty {
            type Error = PyErr;

            fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
                choice(&obj)
            }
        }
    )*};
}

choice_from_python!(Mode, Policy, Fsync);

/// The `strict` argument of a replay: a `bool` (None, meaning the mode's
/// default, is left to `Option<Strict>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strict(pub bool);

impl<'a, 'py> FromPyObject<'a, 'py> for Strict {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match obj.cast::<PyBool>() {
            Ok(flag) => Ok(Strict(flag.is_true())),
            Err(_) => Err(type_error(&obj, Arg::Name("strict"), "a bool or None")),
        }
    }
}

/// The `max_frame_bytes` argument: an `int` in the core's range
/// ([`frames::max_frame_bytes`]); its default is the core's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxFrameBytes(pub u64);

impl Default for MaxFrameBytes {
    fn default() -> Self {
        MaxFrameBytes(frames::DEFAULT_MAX_FRAME)
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for MaxFrameBytes {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let limit = match int(&obj, Arg::Name("max_frame_bytes"))? {
            Some(limit) => frames::max_frame_bytes(Some(limit)),
            None => Err(frames::max_frame_out_of_range(int_shown(&obj))),
        };
        limit.map(MaxFrameBytes).map_err(|err| raise(err, &obj))
    }
}

/// The `max_line_bytes` argument: an `int` in the core's range
/// ([`jsonl::max_line_bytes`]); its default is the core's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxLineBytes(pub u64);

impl Default for MaxLineBytes {
    fn default() -> Self {
        MaxLineBytes(jsonl::DEFAULT_MAX_LINE)
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for MaxLineBytes {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let limit = match int(&obj, Arg::Name("max_line_bytes"))? {
            Some(limit) => jsonl::max_line_bytes(Some(limit)),
            None => Err(jsonl::max_line_out_of_range(int_shown(&obj))),
        };
        limit.map(MaxLineBytes).map_err(|err| raise(err, &obj))
    }
}

/// `repr(value)`, or a placeholder when `repr` itself fails.
pub(crate) fn repr(value: &Bound<'_, PyAny>) -> String {
    value
        .repr()
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "<unrepresentable>".to_owned())
}

/// `type(value).__name__`.
fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".to_owned())
}

/// Raise `err` about `value`.
pub(crate) fn raise(err: Error, value: &Bound<'_, PyAny>) -> PyErr {
    to_pyerr(value.py(), err, Some(value))
}

/// The type error "`arg` must be `expected`, not `<type>`" about `value`.
pub(crate) fn type_error(value: &Bound<'_, PyAny>, arg: Arg<'_>, expected: &str) -> PyErr {
    let message = format!("{arg} must be {expected}, not {}", type_name(value));
    raise(Error::type_error(arg.to_string(), message), value)
}

/// The value error of a `str` that `to_str` refused (a lone surrogate).
fn surrogate_error(value: &Bound<'_, PyAny>, arg: Arg<'_>, cause: PyErr) -> PyErr {
    let py = value.py();
    let start = cause
        .value(py)
        .getattr(pyo3::intern!(py, "start"))
        .and_then(|start| start.extract::<usize>());
    match start {
        Ok(index) => raise(
            Error::lone_surrogate(arg.to_string(), index, &repr(value)),
            value,
        ),
        Err(_) => cause,
    }
}

/// A text argument: a `str` without lone surrogates, as UTF-8.
#[inline]
pub(crate) fn text<'a>(value: &'a Bound<'_, PyAny>, arg: Arg<'_>) -> PyResult<&'a str> {
    let Ok(string) = value.cast::<PyString>() else {
        return Err(type_error(value, arg, "a str"));
    };
    string
        .to_str()
        .map_err(|cause| surrogate_error(value, arg, cause))
}

/// A `str` used as a dictionary key: its UTF-8 bytes, or for a string with
/// lone surrogates its `surrogatepass` encoding (never valid UTF-8, so the
/// two cannot collide). Anything but a `str` is a type error.
pub(crate) fn key_bytes<'a>(value: &'a Bound<'_, PyAny>, arg: Arg<'_>) -> PyResult<Cow<'a, [u8]>> {
    let Ok(string) = value.cast::<PyString>() else {
        return Err(type_error(value, arg, "a str"));
    };
    match string.to_str() {
        Ok(text) => Ok(Cow::Borrowed(text.as_bytes())),
        Err(_) => {
            let py = value.py();
            let encoded = py
                .get_type::<PyString>()
                .getattr(pyo3::intern!(py, "encode"))?
                .call1((value, "utf-8", "surrogatepass"))?;
            Ok(Cow::Owned(encoded.cast::<PyBytes>()?.as_bytes().to_vec()))
        }
    }
}

/// The `str` whose key bytes are `key` (inverse of [`key_bytes`]).
pub(crate) fn key_str<'py>(py: Python<'py>, key: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    match std::str::from_utf8(key) {
        Ok(text) => Ok(PyString::new(py, text).into_any()),
        Err(_) => PyBytes::new(py, key)
            .call_method1(pyo3::intern!(py, "decode"), ("utf-8", "surrogatepass")),
    }
}

/// True for an `int` that is not a `bool` (int subclasses such as `IntEnum` count).
#[inline]
pub(crate) fn is_int(value: &Bound<'_, PyAny>) -> bool {
    value.is_instance_of::<PyInt>() && !value.is_exact_instance_of::<PyBool>()
}

/// An `int` argument (not `bool`) as an `i64`; `Ok(None)` when it is an int
/// too large for `i64` (callers treat that as out of range).
#[inline]
pub(crate) fn int(value: &Bound<'_, PyAny>, arg: Arg<'_>) -> PyResult<Option<i64>> {
    if !is_int(value) {
        return Err(type_error(value, arg, "an int"));
    }
    Ok(value.extract::<i64>().ok())
}

/// How an out-of-range integer is shown in a message: its decimal value.
pub(crate) fn int_shown(value: &Bound<'_, PyAny>) -> String {
    let py = value.py();
    py.get_type::<PyInt>()
        .call1((value,))
        .and_then(|plain| plain.str())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| repr(value))
}

/// An `int` argument in `low..=high`.
pub(crate) fn int_in_range(
    value: &Bound<'_, PyAny>,
    arg: Arg<'_>,
    low: i64,
    high: i64,
) -> PyResult<i64> {
    match int(value, arg)? {
        Some(number) if (low..=high).contains(&number) => Ok(number),
        _ => Err(raise(
            Error::out_of_range(
                arg.to_string(),
                i128::from(low),
                i128::from(high),
                int_shown(value),
            ),
            value,
        )),
    }
}
