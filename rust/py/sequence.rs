//! Binding of `SequenceGenerator` (SPEC section 3).

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyMapping, PyRange, PyString, PyType};
use pyo3::PyTypeInfo;

use crate::error::Error;
use crate::py::args::{self, int_in_range, int_shown, key_bytes, key_str, raise, type_error, Arg};
use crate::py::lock;
use crate::sequence::{Counters, MAX_COUNTER};

const MAX: i64 = i64::MAX;

/// Hands out 1, 2, 3 ... independently per run id (any `str`).
///
/// Counters never go backwards and never reset while the object lives; they
/// hold at most `2**63 - 1`. Every method is thread-safe: N threads calling
/// `next` on one run get each value exactly once. A non-`str` run id raises
/// InvalidArgumentType (argument `run_id`).
#[pyclass(frozen, module = "replaycore._core")]
pub struct SequenceGenerator {
    counters: Mutex<Counters>,
}

#[pymethods]
impl SequenceGenerator {
    /// A generator with no counters.
    #[new]
    fn new() -> Self {
        SequenceGenerator {
            counters: Mutex::new(Counters::new()),
        }
    }

    fn __repr__(&self) -> String {
        format!("SequenceGenerator(runs={})", lock(&self.counters).len())
    }

    /// The next value for `run_id` (1 for an unseen run), stored.
    ///
    /// At `2**63 - 1` it raises InvalidArgument (argument `run_id`) and
    /// changes nothing.
    #[pyo3(signature = (run_id))]
    fn next(&self, run_id: &Bound<'_, PyAny>) -> PyResult<u64> {
        let key = key_bytes(run_id, Arg::Name("run_id"))?;
        let result = lock(&self.counters).next(&key);
        result.map_err(|err| raise(err, run_id))
    }

    /// The last value handed out for `run_id`, 0 when unseen. Advances
    /// nothing and creates no entry.
    #[pyo3(signature = (run_id))]
    fn peek(&self, run_id: &Bound<'_, PyAny>) -> PyResult<u64> {
        let key = key_bytes(run_id, Arg::Name("run_id"))?;
        let value = lock(&self.counters).peek(&key);
        Ok(value)
    }

    /// Reserve `n` consecutive values at once: `range(last + 1, last + 1 + n)`.
    ///
    /// `n == 0` returns an empty range and creates nothing. A non-int `n`
    /// raises InvalidArgumentType; `n < 0` or a counter that would pass
    /// `2**63 - 1` raises InvalidArgument (argument `n`), changing nothing.
    #[pyo3(signature = (run_id, n))]
    fn next_block<'py>(
        &self,
        run_id: &Bound<'py, PyAny>,
        n: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = key_bytes(run_id, Arg::Name("run_id"))?;
        let result = match args::int(n, Arg::Name("n"))? {
            Some(count) => lock(&self.counters).next_block(&key, count),
            None => Err(Error::value_error(
                "n",
                format!(
                    "n must be >= 0 and keep the counter <= {MAX_COUNTER}, got {}",
                    int_shown(n)
                ),
            )),
        };
        let (start, stop) = result.map_err(|err| raise(err, n))?;
        PyRange::type_object(n.py()).call1((start, stop))
    }

    /// Raise the counter of `run_id` to at least `seq` (never lowers it;
    /// records the run even for 0). `seq` must be an int in `0..=2**63 - 1`.
    #[pyo3(signature = (run_id, seq))]
    fn observe(&self, run_id: &Bound<'_, PyAny>, seq: &Bound<'_, PyAny>) -> PyResult<()> {
        let key = key_bytes(run_id, Arg::Name("run_id"))?;
        let value = int_in_range(seq, Arg::Name("seq"), 0, MAX)?;
        let result = lock(&self.counters).observe(&key, value);
        result.map_err(|err| raise(err, seq))
    }

    /// A new dict `{run_id: counter}` of every counter, to persist and later
    /// pass to `from_snapshot`.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let entries: Vec<(Box<[u8]>, u64)> = lock(&self.counters)
            .iter()
            .map(|(key, value)| (Box::from(key), value))
            .collect();
        let dict = PyDict::new(py);
        for (key, value) in entries {
            dict.set_item(key_str(py, &key)?, value)?;
        }
        Ok(dict)
    }

    /// A generator whose counters start from `snapshot`, a mapping of `str`
    /// to ints in `0..=2**63 - 1`.
    ///
    /// Raises InvalidArgumentType for a non-mapping or a non-`str` key
    /// (argument `snapshot`) or a non-int value (argument `snapshot[key]`),
    /// and InvalidArgument for a value out of range.
    #[classmethod]
    #[pyo3(signature = (snapshot, /))]
    fn from_snapshot(_cls: &Bound<'_, PyType>, snapshot: &Bound<'_, PyAny>) -> PyResult<Self> {
        let items: Bound<'_, PyList> = if let Ok(dict) = snapshot.cast::<PyDict>() {
            // A copy, so nothing can change the dict while it is read.
            dict.items()
        } else if let Ok(mapping) = snapshot.cast::<PyMapping>() {
            mapping.items()?
        } else {
            return Err(type_error(
                snapshot,
                Arg::Name("snapshot"),
                "a mapping of str to int",
            ));
        };
        let mut entries = Vec::with_capacity(items.len());
        for item in items.iter() {
            let (run_id, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
            if !run_id.is_instance_of::<PyString>() {
                return Err(type_error(
                    &run_id,
                    Arg::Name("snapshot"),
                    "a mapping with str keys",
                ));
            }
            let key = key_bytes(&run_id, Arg::Name("snapshot"))?;
            let name = || format!("snapshot[{}]", args::repr(&run_id));
            let counter = if args::is_int(&value) {
                value
                    .extract::<i64>()
                    .ok()
                    .and_then(|v| u64::try_from(v).ok())
            } else {
                let name = name();
                return Err(type_error(&value, Arg::Name(&name), "an int"));
            };
            let Some(counter) = counter else {
                return Err(raise(
                    Error::out_of_range(name(), 0, i128::from(MAX), int_shown(&value)),
                    &value,
                ));
            };
            entries.push((key.into_owned().into_boxed_slice(), counter));
        }
        let counters = Counters::from_entries(entries).map_err(|err| raise(err, snapshot))?;
        Ok(SequenceGenerator {
            counters: Mutex::new(counters),
        })
    }
}
