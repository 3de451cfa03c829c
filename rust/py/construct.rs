//! Building keyword-only msgspec Structs from Rust without a kwargs dict.
//!
//! `cls(**kwargs)` through `PyObject_Call` fills a dict, which the
//! interpreter then unpacks into a tuple of names and an array of values for
//! the class's vectorcall. [`construct!`] makes that tuple of names once per
//! call site and hands the values over as they are: for the output repairs of
//! a replay this was about half of the cost of each object.
//!
//! `PyObject_Vectorcall` is public C API since CPython 3.9 and in the stable
//! ABI since 3.12. It is outside 3.11's limited API, which the abi3 wheels
//! target, so it is declared here: every CPython 3.11 and later exports it,
//! and on Linux and macOS an extension module resolves it from the
//! interpreter when it is loaded. On Windows an abi3 module links against
//! `python3.dll`, which lists 3.11's stable ABI only, so there the call takes
//! a kwargs dict as before (the release workflow's Windows job runs the test
//! suite over it).

use pyo3::prelude::*;
use pyo3::types::PyTuple;

#[cfg(not(windows))]
extern "C" {
    fn PyObject_Vectorcall(
        callable: *mut pyo3::ffi::PyObject,
        args: *const *mut pyo3::ffi::PyObject,
        nargsf: usize,
        kwnames: *mut pyo3::ffi::PyObject,
    ) -> *mut pyo3::ffi::PyObject;
}

/// The most arguments one call passes (ReplayResult's 15 fields).
#[cfg(not(windows))]
const MAX_ARGS: usize = 16;

/// Call `callable` with the `positional` arguments, then `values[i]` for
/// keyword `names[i]`: through `PyObject_Vectorcall`, or a kwargs dict where
/// it cannot be linked (Windows).
pub(crate) fn call_with_keywords<'py, const P: usize, const N: usize>(
    callable: &Bound<'py, PyAny>,
    positional: [&Bound<'py, PyAny>; P],
    names: &Bound<'py, PyTuple>,
    values: [Bound<'py, PyAny>; N],
) -> PyResult<Bound<'py, PyAny>> {
    #[cfg(not(windows))]
    {
        // Both hold by construction (the macro makes one name per value and
        // every call site passes a handful): the count is checked when
        // compiled.
        const { assert!(P + N <= MAX_ARGS, "too many arguments for construct!") };
        debug_assert_eq!(names.len(), N, "one keyword name per value");
        let mut args = [std::ptr::null_mut(); MAX_ARGS];
        for (slot, arg) in args
            .iter_mut()
            .zip(positional.into_iter().chain(values.iter()))
        {
            *slot = arg.as_ptr();
        }
        // SAFETY: the GIL is held (the Bound values); the first P + N slots
        // of `args` hold borrowed references that outlive the call (P
        // positional ones, then one per name of `names`, a tuple of
        // strings); the result is a new reference or NULL with an exception
        // set.
        unsafe {
            let result = PyObject_Vectorcall(callable.as_ptr(), args.as_ptr(), P, names.as_ptr());
            Bound::from_owned_ptr_or_err(callable.py(), result)
        }
    }
    #[cfg(windows)]
    {
        let py = callable.py();
        let kwargs = pyo3::types::PyDict::new(py);
        for (name, value) in names.iter().zip(values) {
            kwargs.set_item(name, value)?;
        }
        callable.call(PyTuple::new(py, positional)?, Some(&kwargs))
    }
}

/// `construct!(py, class, { field: value, ... })` calls `class` (a
/// `PyResult<&Bound<PyAny or PyType>>`) with each field as a keyword
/// argument; `construct!(py, callable, (arg, ...), { field: value, ... })`
/// passes `&Bound` positional arguments first. The tuple of the interned
/// field names is made once per call site.
macro_rules! construct {
    ($py:expr, $class:expr, { $($field:ident: $value:expr),+ $(,)? }) => {
        $crate::py::construct::construct!($py, $class, (), { $($field: $value),+ })
    };
    ($py:expr, $class:expr, ($($arg:expr),* $(,)?), { $($field:ident: $value:expr),+ $(,)? }) => {{
        static NAMES: ::pyo3::sync::PyOnceLock<::pyo3::Py<::pyo3::types::PyTuple>> =
            ::pyo3::sync::PyOnceLock::new();
        let py: ::pyo3::Python<'_> = $py;
        let names = NAMES.get_or_try_init(py, || {
            ::pyo3::types::PyTuple::new(
                py,
                [$(::pyo3::types::PyString::intern(py, stringify!($field))),+],
            )
            .map(::pyo3::Bound::unbind)
        })?;
        let class = $class?;
        $crate::py::construct::call_with_keywords(
            class.as_any(),
            [$(::pyo3::Bound::as_any($arg)),*],
            names.bind(py),
            [$(::pyo3::IntoPyObjectExt::into_bound_py_any($value, py)?),+],
        )
    }};
}

pub(crate) use construct;
