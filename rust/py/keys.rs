//! Bindings of the key functions (SPEC section 2).

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyInt, PyList, PyString, PyTuple};

use crate::error::Error;
use crate::keys::{self, KeyFormat, Materials, MAX_STEP};
use crate::py::args::{self, int_in_range, raise, text, type_error, Arg, Given};

/// Batches smaller than this are hashed without releasing the GIL (releasing
/// and re-acquiring it costs more than hashing a few rows).
const DETACH_MIN_BYTES: usize = 16 * 1024;

fn step(value: &Bound<'_, PyAny>, arg: Arg<'_>) -> PyResult<u32> {
    let number = int_in_range(value, arg, 0, i64::from(MAX_STEP))?;
    u32::try_from(number).map_err(|_| raise(keys::step_error(arg.to_string(), number), value))
}

/// The legacy key `"idem_"` + the first 16 lowercase hex chars of
/// SHA-256(UTF-8 of `run_id + "::" + episode + "::" + str(step_idx)`),
/// byte-compatible with existing systems using this scheme.
///
/// Raises InvalidArgumentType for a non-`str` id or a non-`int` (or `bool`)
/// step, and InvalidArgument for a lone surrogate or a step outside
/// `0 <= step_idx < 2**32`.
#[pyfunction]
#[pyo3(signature = (run_id, episode, step_idx))]
pub fn legacy_key(
    run_id: &Bound<'_, PyAny>,
    episode: &Bound<'_, PyAny>,
    step_idx: &Bound<'_, PyAny>,
) -> PyResult<String> {
    let run_id = text(run_id, Arg::Name("run_id"))?;
    let episode = text(episode, Arg::Name("episode"))?;
    let step_idx = step(step_idx, Arg::Name("step_idx"))?;
    Ok(keys::legacy_key(
        run_id.as_bytes(),
        episode.as_bytes(),
        step_idx,
    ))
}

/// `legacy_key(intent_id + ":" + actor, episode, step_idx or 0)`.
///
/// Checks `intent_id`, `actor`, `episode` (text) and `step_idx` (None or an
/// int in `0 <= step_idx < 2**32`) in that order; errors name them.
#[pyfunction]
#[pyo3(signature = (intent_id, actor, episode, step_idx = None))]
pub fn key_from_intent(
    intent_id: &Bound<'_, PyAny>,
    actor: &Bound<'_, PyAny>,
    episode: &Bound<'_, PyAny>,
    step_idx: Option<&Bound<'_, PyAny>>,
) -> PyResult<String> {
    let intent_id = text(intent_id, Arg::Name("intent_id"))?;
    let actor = text(actor, Arg::Name("actor"))?;
    let episode = text(episode, Arg::Name("episode"))?;
    let step_idx = match step_idx {
        Some(value) if !value.is_none() => step(value, Arg::Name("step_idx"))?,
        _ => 0,
    };
    Ok(keys::intent_key(
        intent_id.as_bytes(),
        actor.as_bytes(),
        episode.as_bytes(),
        step_idx,
    ))
}

/// Return `text` (as a plain `str`) when it is exactly `"idem_"` + 16 ASCII
/// hex digits (either case); anything else raises InvalidKeyFormat naming
/// the input. A non-`str` raises InvalidArgumentType.
#[pyfunction]
#[pyo3(signature = (text))]
pub fn parse_key<'py>(text: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    let Ok(string) = text.cast::<PyString>() else {
        return Err(type_error(text, Arg::Name("text"), "a str"));
    };
    let utf8 = string.to_str().unwrap_or("");
    match keys::parse_key(utf8.as_bytes(), "text", &args::repr(text)) {
        Ok(()) if text.is_exact_instance_of::<PyString>() => Ok(string.clone()),
        Ok(()) => Ok(PyString::new(text.py(), utf8)),
        Err(err) => Err(raise(err, text)),
    }
}

/// `prefix` (text, default `"idem_"`) and `hex_len` (int in 16..=64, default 32).
fn options<'a>(prefix: &'a Given<'_>, hex_len: &Given<'_>) -> PyResult<(&'a str, usize)> {
    let prefix = match &prefix.0 {
        Some(value) => text(value, Arg::Name("prefix"))?,
        None => keys::LEGACY_PREFIX,
    };
    let hex_len = match &hex_len.0 {
        Some(value) => {
            let number = int_in_range(
                value,
                Arg::Name("hex_len"),
                keys::MIN_HEX_LEN as i64,
                keys::MAX_HEX_LEN as i64,
            )?;
            keys::check_hex_len(number).map_err(|err| raise(err, value))?
        }
        None => 32,
    };
    Ok((prefix, hex_len))
}

/// Append one `derive_key` part: `str`, `bytes` (or subclass) or `int` (not `bool`).
fn push_part(materials: &mut Materials, part: &Bound<'_, PyAny>, arg: Arg<'_>) -> PyResult<()> {
    const EXPECTED: &str = "a str, bytes or int";
    if part.is_instance_of::<PyString>() {
        materials.push_str(text(part, arg)?.as_bytes());
    } else if let Ok(bytes) = part.cast::<PyBytes>() {
        materials.push_bytes(bytes.as_bytes());
    } else if args::is_int(part) {
        match part.extract::<i64>() {
            Ok(small) => materials.push_int(i128::from(small)),
            Err(_) => materials.push_int_encoded(big_int_bytes(part)?.as_bytes()),
        }
    } else {
        return Err(type_error(part, arg, EXPECTED));
    }
    Ok(())
}

/// `int.to_bytes(x, int.bit_length(x) // 8 + 1, "big", signed=True)`, for
/// integers beyond `i64`; the unbound `int` methods ignore subclass overrides.
fn big_int_bytes<'py>(value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let py = value.py();
    let int_type = py.get_type::<PyInt>();
    let bit_length: usize = int_type
        .getattr(pyo3::intern!(py, "bit_length"))?
        .call1((value,))?
        .extract()?;
    let kwargs = PyDict::new(py);
    kwargs.set_item(pyo3::intern!(py, "signed"), true)?;
    let encoded = int_type
        .getattr(pyo3::intern!(py, "to_bytes"))?
        .call((value, bit_length / 8 + 1, "big"), Some(&kwargs))?;
    Ok(encoded.cast_into::<PyBytes>()?)
}

/// Hash a batch, without the GIL when it is big enough to matter.
fn hash<'py>(
    py: Python<'py>,
    materials: &Materials,
    format: KeyFormat<'_>,
) -> PyResult<Bound<'py, PyList>> {
    let block = if materials.byte_len() >= DETACH_MIN_BYTES {
        py.detach(|| keys::hash_batch(materials, format))
    } else {
        keys::hash_batch(materials, format)
    };
    let block = block.map_err(|err| crate::py::errors::to_pyerr(py, err, None))?;
    PyList::new(py, block.iter())
}

/// The unambiguous key of a list of parts: `prefix` + the first `hex_len`
/// lowercase hex digits of SHA-256 over this byte layout (a wire format that
/// never changes silently):
///
/// ```text
/// b"replaycore/derive_key/v1\n"   25-byte domain header
/// u32 big-endian                  number of parts
/// per part: 1 tag byte            0x01 str, 0x02 bytes, 0x03 int
///           u64 big-endian L      length of the part's bytes
///           L bytes               str: UTF-8; bytes: as given; int: two's
///                                 complement big-endian, L = bit_length // 8 + 1
///                                 (0 -> 00, 128 -> 0080, -1 -> ff, -128 -> ff80)
/// ```
///
/// Checks `prefix` (text), `hex_len` (int in 16..=64), that there is at least
/// one part, then each part (`str`, `bytes` or `int`; `bool` and anything else
/// raise InvalidArgumentType naming `parts[i]`).
#[pyfunction]
#[pyo3(
    signature = (*parts, prefix = Given(None), hex_len = Given(None)),
    text_signature = "(*parts, prefix='idem_', hex_len=32)"
)]
pub fn derive_key(
    parts: &Bound<'_, PyTuple>,
    prefix: Given<'_>,
    hex_len: Given<'_>,
) -> PyResult<String> {
    let (prefix, hex_len) = options(&prefix, &hex_len)?;
    if parts.is_empty() {
        return Err(raise(
            Error::value_error("parts", "derive_key needs at least one part"),
            parts.as_any(),
        ));
    }
    let mut materials = Materials::default();
    materials.begin_row();
    for (index, part) in parts.iter().enumerate() {
        push_part(&mut materials, &part, Arg::Part(index))?;
    }
    materials.end_row();
    let format = KeyFormat::derive(prefix, hex_len);
    let row = materials.row(0);
    Ok(if row.len() >= DETACH_MIN_BYTES {
        parts.py().detach(|| keys::key_of(row, format))
    } else {
        keys::key_of(row, format)
    })
}

/// A batch row: a tuple or a list (subclasses included).
enum Row<'a, 'py> {
    Tuple(&'a Bound<'py, PyTuple>),
    List(&'a Bound<'py, PyList>),
}

impl<'a, 'py> Row<'a, 'py> {
    fn new(row: &'a Bound<'py, PyAny>, index: usize) -> PyResult<Self> {
        if let Ok(tuple) = row.cast::<PyTuple>() {
            Ok(Row::Tuple(tuple))
        } else if let Ok(list) = row.cast::<PyList>() {
            Ok(Row::List(list))
        } else {
            Err(type_error(row, Arg::Row(index), "a tuple or list"))
        }
    }

    fn len(&self) -> usize {
        match self {
            Row::Tuple(tuple) => tuple.len(),
            Row::List(list) => list.len(),
        }
    }

    fn item(&self, index: usize) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Row::Tuple(tuple) => tuple.get_item(index),
            Row::List(list) => list.get_item(index),
        }
    }
}

/// Call `each(index, row)` for every row of `rows`, a list, a tuple or any
/// iterable that is not `str`, `bytes` or `bytearray`.
fn for_each_row<'py>(
    rows: &Bound<'py, PyAny>,
    mut each: impl FnMut(usize, &Bound<'py, PyAny>) -> PyResult<()>,
) -> PyResult<()> {
    const EXPECTED: &str = "an iterable of rows";
    if let Ok(list) = rows.cast::<PyList>() {
        for (index, row) in list.iter().enumerate() {
            each(index, &row)?;
        }
    } else if let Ok(tuple) = rows.cast::<PyTuple>() {
        for (index, row) in tuple.iter().enumerate() {
            each(index, &row)?;
        }
    } else {
        if rows.is_instance_of::<PyString>()
            || rows.is_instance_of::<PyBytes>()
            || rows.is_instance_of::<PyByteArray>()
        {
            return Err(type_error(rows, Arg::Name("rows"), EXPECTED));
        }
        let iterator = rows.try_iter().map_err(|err| {
            if err.is_instance_of::<pyo3::exceptions::PyTypeError>(rows.py()) {
                type_error(rows, Arg::Name("rows"), EXPECTED)
            } else {
                err
            }
        })?;
        for (index, row) in iterator.enumerate() {
            each(index, &row?)?;
        }
    }
    Ok(())
}

fn size_hint(rows: &Bound<'_, PyAny>) -> usize {
    if let Ok(list) = rows.cast::<PyList>() {
        list.len()
    } else if let Ok(tuple) = rows.cast::<PyTuple>() {
        tuple.len()
    } else {
        0
    }
}

/// `legacy_key` of each `(run_id, episode, step_idx)` row, in order.
///
/// `rows` is any iterable (not a `str`/`bytes`) of tuples or lists of exactly
/// three items. Errors name the row (`rows[7]`) or item (`rows[7].step_idx`);
/// the first bad row raises and nothing is returned. Hashing releases the GIL
/// and uses several threads for large batches.
#[pyfunction]
#[pyo3(signature = (rows))]
pub fn legacy_keys<'py>(rows: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
    let mut materials = Materials::with_capacity(size_hint(rows));
    for_each_row(rows, |index, row| {
        let items = Row::new(row, index)?;
        if items.len() != 3 {
            return Err(raise(
                Error::value_error(
                    Arg::Row(index).to_string(),
                    format!(
                        "rows[{index}] must have 3 items (run_id, episode, step_idx), got {}",
                        items.len()
                    ),
                ),
                row,
            ));
        }
        let run_id = items.item(0)?;
        let episode = items.item(1)?;
        let step_idx = items.item(2)?;
        let run_id = text(&run_id, Arg::RowField(index, "run_id"))?;
        let episode = text(&episode, Arg::RowField(index, "episode"))?;
        let step_idx = step(&step_idx, Arg::RowField(index, "step_idx"))?;
        materials.push_legacy(run_id.as_bytes(), episode.as_bytes(), step_idx);
        Ok(())
    })?;
    hash(rows.py(), &materials, KeyFormat::LEGACY)
}

/// `derive_key(*row, prefix=prefix, hex_len=hex_len)` of each row, in order.
///
/// `prefix` and `hex_len` are checked first, then each row (a tuple or list
/// with at least one part); errors name the part as `rows[i][j]`. Hashing
/// releases the GIL and uses several threads for large batches.
#[pyfunction]
#[pyo3(
    signature = (rows, prefix = Given(None), hex_len = Given(None)),
    text_signature = "(rows, prefix='idem_', hex_len=32)"
)]
pub fn derive_keys<'py>(
    rows: &Bound<'py, PyAny>,
    prefix: Given<'py>,
    hex_len: Given<'py>,
) -> PyResult<Bound<'py, PyList>> {
    let (prefix, hex_len) = options(&prefix, &hex_len)?;
    let mut materials = Materials::with_capacity(size_hint(rows));
    for_each_row(rows, |index, row| {
        let items = Row::new(row, index)?;
        let count = items.len();
        if count == 0 {
            return Err(raise(
                Error::value_error(
                    Arg::Row(index).to_string(),
                    format!("rows[{index}] needs at least one part"),
                ),
                row,
            ));
        }
        materials.begin_row();
        for part_index in 0..count {
            let part = items.item(part_index)?;
            push_part(&mut materials, &part, Arg::RowPart(index, part_index))?;
        }
        materials.end_row();
        Ok(())
    })?;
    hash(rows.py(), &materials, KeyFormat::derive(prefix, hex_len))
}
