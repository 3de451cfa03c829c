//! Bindings of journal files (SPEC 6.2): `JournalWriter`, `read_journal`,
//! `inspect_journal`.
//!
//! File work (reading, scanning, writing, `fsync`) runs with the GIL
//! released; records are encoded and decoded with msgspec, called from here,
//! exactly as the reference does (`python/replaycore/reference/journal.py`),
//! so both backends write identical bytes and return equal Structs.

use std::path::PathBuf;
use std::sync::{Mutex, TryLockError};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyInt, PyList, PyTuple};

use crate::journal::{
    self, BatchReader, Commit, Format, Fsync, GivenSeq, Numbering, ReadOptions, SharedWriter,
    Snapshot,
};
use crate::py::args::{int_shown, raise, type_error, Arg, Given, MaxFrameBytes, MaxLineBytes};
use crate::py::cache;
use crate::py::construct::construct;
use crate::py::errors::{already_executing, to_pyerr};

macro_rules! cached_object {
    ($(#[$doc:meta])* $fn:ident = $make:expr) => {
        $(#[$doc])*
        fn $fn(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
            static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            CELL.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
                let make: fn(Python<'_>) -> PyResult<Bound<'_, PyAny>> = $make;
                Ok(make(py)?.unbind())
            })
            .map(|obj| obj.bind(py))
        }
    };
}

cached_object!(
    /// `msgspec.msgpack.Decoder(JournalRecord).decode`.
    msgpack_decode = |py| {
        let ty = cache::journal_record_type(py)?;
        py.import("msgspec.msgpack")?
            .getattr("Decoder")?
            .call1((ty,))?
            .getattr("decode")
    }
);
cached_object!(
    /// `msgspec.json.Decoder(JournalRecord).decode`.
    json_decode = |py| {
        let ty = cache::journal_record_type(py)?;
        py.import("msgspec.json")?
            .getattr("Decoder")?
            .call1((ty,))?
            .getattr("decode")
    }
);
cached_object!(
    /// `msgspec.json.Encoder(order="deterministic").encode`.
    json_encode = |py| {
        let kwargs = PyDict::new(py);
        kwargs.set_item("order", "deterministic")?;
        py.import("msgspec.json")?
            .getattr("Encoder")?
            .call((), Some(&kwargs))?
            .getattr("encode")
    }
);
cached_object!(
    /// `replaycore.records._CANONICAL_ENCODER.encode`: what
    /// `records.encode_canonical` calls, without its Python frame (that
    /// function runs only to raise its typed error when this one fails).
    canonical_encode = |py| {
        py.import("replaycore.records")?
            .getattr("_CANONICAL_ENCODER")?
            .getattr("encode")
    }
);
cached_object!(
    /// `msgspec.structs.replace`.
    struct_replace = |py| py.import("msgspec.structs")?.getattr("replace")
);
cached_object!(
    /// `pathlib.Path`.
    path_type = |py| py.import("pathlib")?.getattr("Path")
);

/// A path argument as the OS path (`os.fspath`), and its journal format.
fn os_path(path: &Bound<'_, PyAny>) -> PyResult<(PathBuf, Format)> {
    let os_path: PathBuf = path.extract()?;
    let format = Format::of(&os_path);
    Ok((os_path, format))
}

// -- JournalWriter ---------------------------------------------------------------

/// Appends records to a journal file, crash-safely.
///
/// The format follows the extension: `.jsonl` for JSON lines, anything else
/// for framed msgpack (`.rcj`). Opening an existing journal finds its last
/// record without decoding every record (only frame headers are walked),
/// truncates a torn tail left by a crash, and continues `journal_seq` after
/// it. A record appended with `journal_seq == 0` gets the next number; a
/// record with its own `journal_seq` must be above the last one written (else
/// InvalidArgument and nothing is written).
///
/// `fsync`: "always" syncs after every append (a returned append is on disk);
/// "batch" syncs on `flush` and `close`; "never" leaves it to the OS. One
/// writer per file: a second writer on the same file (any process, either
/// backend) raises JournalLocked. Thread-safe; file I/O runs with the GIL
/// released.
///
/// A path whose last component is a symbolic link is refused with
/// InvalidArgument (argument `path`) and nothing is created or written: a
/// journal never appends into a file it did not create. Directories above it
/// may be links.
#[pyclass(frozen, module = "replaycore._core")]
pub struct JournalWriter {
    path: Py<PyAny>,
    format: Format,
    fsync: Fsync,
    writer: SharedWriter,
}

/// What `append_many` prepared against a snapshot of the writer.
struct Prepared<'py> {
    snapshot: Snapshot,
    bytes: Vec<u8>,
    last: i64,
    written: Vec<Bound<'py, PyAny>>,
}

impl JournalWriter {
    /// `err` as its exception; an argument error (the closed writer's) shows
    /// the journal's path as its value.
    fn error(&self, py: Python<'_>, err: crate::error::Error) -> PyErr {
        to_pyerr(py, err, Some(self.path.bind(py)))
    }

    /// Encode one record as its file bytes, appended to `out`.
    fn encode(&self, record: &Bound<'_, PyAny>, index: usize, out: &mut Vec<u8>) -> PyResult<()> {
        let py = record.py();
        let encoded = match self.format {
            Format::Rcj => match canonical_encode(py)?.call1((record,)) {
                Ok(encoded) => encoded,
                Err(_) => cache::encode_canonical(py)?.call1((record,))?,
            },
            Format::Jsonl => match json_encode(py)?.call1((record,)) {
                Ok(encoded) => encoded,
                Err(_) => cache::encode_json(py)?.call1((record,))?,
            },
        };
        let encoded = encoded.cast::<PyBytes>()?;
        journal::push_record(self.format, index, encoded.as_bytes(), out)
            .map_err(|err| raise(err, record))
    }

    /// Check, number and encode `records` against the writer's state now.
    /// Items are pulled from `iter` lazily (as the reference does) and kept in
    /// `items` for a second preparation.
    fn prepare<'py>(
        &self,
        py: Python<'py>,
        items: &mut Vec<Bound<'py, PyAny>>,
        iter: &mut Option<Bound<'py, pyo3::types::PyIterator>>,
    ) -> PyResult<Prepared<'py>> {
        let snapshot = self.writer.snapshot().map_err(|err| self.error(py, err))?;
        let mut numbering = Numbering::after(snapshot.last_seq);
        let mut bytes = Vec::new();
        let mut written = Vec::new();
        for index in 0.. {
            let record = match items.get(index) {
                Some(record) => record.clone(),
                None => match iter.as_mut().and_then(|it| it.next()) {
                    Some(record) => {
                        let record = record?;
                        items.push(record.clone());
                        record
                    }
                    None => {
                        *iter = None;
                        break;
                    }
                },
            };
            written.push(self.prepare_record(record, index, &mut numbering, &mut bytes)?);
        }
        Ok(Prepared {
            snapshot,
            bytes,
            last: numbering.last(),
            written,
        })
    }

    /// Check and number `records[index]` and encode it onto `bytes`; the
    /// record as it will be written (a copy with its `journal_seq` when it is
    /// numbered here).
    fn prepare_record<'py>(
        &self,
        record: Bound<'py, PyAny>,
        index: usize,
        numbering: &mut Numbering,
        bytes: &mut Vec<u8>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = record.py();
        if !record.is_instance(cache::journal_record_type(py)?)? {
            let argument = format!("records[{index}]");
            return Err(type_error(&record, Arg::Name(&argument), "a JournalRecord"));
        }
        let seq_name = pyo3::intern!(py, "journal_seq");
        let seq_obj = record.getattr(seq_name)?;
        if !seq_obj.is_instance_of::<PyInt>() {
            let argument = format!("records[{index}].journal_seq");
            return Err(type_error(&seq_obj, Arg::Name(&argument), "an int"));
        }
        let given = match seq_obj.extract::<i64>() {
            Ok(seq) => GivenSeq::Int(seq),
            Err(_) => GivenSeq::Beyond(int_shown(&seq_obj)),
        };
        let record = match numbering
            .number(index, &given)
            .map_err(|err| raise(err, &seq_obj))?
        {
            Some(seq) => construct!(py, struct_replace(py), (&record), { journal_seq: seq })?,
            None => record,
        };
        self.encode(&record, index, bytes)?;
        Ok(record)
    }

    /// Append `items`, then what `iter` yields, with one write (the work of
    /// `append` and `append_many`); returns the records as written. When
    /// another thread appended meanwhile, the records are numbered again.
    fn append_items<'py>(
        &self,
        py: Python<'py>,
        mut items: Vec<Bound<'py, PyAny>>,
        mut iter: Option<Bound<'py, pyo3::types::PyIterator>>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        loop {
            let prepared = self.prepare(py, &mut items, &mut iter)?;
            if prepared.written.is_empty() {
                return Ok(prepared.written);
            }
            let (bytes, snapshot, last) = (&prepared.bytes, prepared.snapshot, prepared.last);
            match py.detach(|| self.writer.commit(bytes, snapshot, last)) {
                Ok(Commit::Done) => return Ok(prepared.written),
                Ok(Commit::Stale) => continue, // another thread appended meanwhile
                Err(err) => return Err(self.error(py, err)),
            }
        }
    }
}

#[pymethods]
impl JournalWriter {
    /// Open (creating it) and lock the journal at `path`.
    ///
    /// Raises InvalidArgument for a bad `fsync` or `max_frame_bytes`,
    /// JournalLocked when another writer holds the file, JournalCorruption
    /// when a framed file's magic or last frames are damaged, and OSError
    /// when the file cannot be opened.
    #[new]
    #[pyo3(
        signature = (path, fsync = Given(None), *, max_frame_bytes = Given(None)),
        text_signature = "(path, fsync='always', *, max_frame_bytes=67108864)"
    )]
    fn new(
        py: Python<'_>,
        path: &Bound<'_, PyAny>,
        fsync: Given<'_>,
        max_frame_bytes: Given<'_>,
    ) -> PyResult<Self> {
        let fsync: Fsync = fsync.or_default()?;
        let MaxFrameBytes(limit) = max_frame_bytes.or_default()?;
        let path_obj = path_type(py)?.call1((path,))?;
        let (os_path, format) = os_path(path)?;
        let writer = match py.detach(|| SharedWriter::open(&os_path, fsync, limit)) {
            Ok(writer) => writer,
            Err(err) => {
                let shown = path_obj.str()?;
                return Err(err.into_error(&shown.to_string_lossy()).into());
            }
        };
        Ok(JournalWriter {
            path: path_obj.unbind(),
            format,
            fsync,
            writer,
        })
    }

    /// The journal's path (a `pathlib.Path`).
    #[getter]
    fn path(&self, py: Python<'_>) -> Py<PyAny> {
        self.path.clone_ref(py)
    }

    /// `"rcj"` or `"jsonl"`.
    #[getter]
    fn format(&self) -> &'static str {
        self.format.name()
    }

    /// `"always"`, `"batch"` or `"never"`.
    #[getter]
    fn fsync(&self) -> &'static str {
        self.fsync.name()
    }

    /// The `journal_seq` of the file's last record (its highest; 0 when empty).
    #[getter]
    fn last_journal_seq(&self) -> i64 {
        self.writer.last_seq()
    }

    /// Append one record and return it as written (with its `journal_seq`).
    fn append<'py>(
        &self,
        py: Python<'py>,
        record: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // append_many of one record, without making a list for it.
        let written = self.append_items(py, vec![record], None)?;
        written
            .into_iter()
            .next()
            .ok_or_else(|| self.error(py, crate::error::Error::internal("append wrote no record")))
    }

    /// Append records in order with one write; returns them as written.
    ///
    /// Records with `journal_seq == 0` are numbered after the last one
    /// written; others must be above it. A record that is not a
    /// JournalRecord raises InvalidArgumentType (`records[i]`), a
    /// `journal_seq` at or below the last raises InvalidArgument
    /// (`records[i].journal_seq`); either way nothing is written.
    fn append_many<'py>(
        &self,
        py: Python<'py>,
        records: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let written = self.append_items(py, Vec::new(), Some(records.try_iter()?))?;
        PyList::new(py, written)
    }

    /// Make every appended record durable (`fsync`) unless `fsync="never"`.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        Ok(py.detach(|| self.writer.flush())?)
    }

    /// Flush and close the file (releasing its lock); further appends raise.
    /// Closing twice is harmless.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        Ok(py.detach(|| self.writer.close())?)
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(&self, py: Python<'_>, _exc_info: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.close(py)
    }
}

// -- read_journal ----------------------------------------------------------------

enum ReaderState {
    /// Not started: the arguments, looked at on the first `__next__` (the
    /// reference is a generator, which does nothing before that).
    Pending {
        path: Py<PyAny>,
        /// None: left out (the core's default).
        strict: Option<Py<PyAny>>,
        max_frame_bytes: Option<Py<PyAny>>,
        max_line_bytes: Option<Py<PyAny>>,
    },
    Reading(BatchReader),
    Done,
}

impl ReaderState {
    fn start(py: Python<'_>, pending: &ReaderState) -> PyResult<ReaderState> {
        let ReaderState::Pending {
            path,
            strict,
            max_frame_bytes,
            max_line_bytes,
        } = pending
        else {
            return Ok(ReaderState::Done);
        };
        let path = path.bind(py);
        path_type(py)?.call1((path,))?; // the reference's `Path(path)` checks
        let (os_path, _) = os_path(path)?;
        let mut options = ReadOptions::default();
        if let Some(strict) = strict {
            // Only its truth matters, as in the reference's `if strict:`.
            options.strict = strict.bind(py).is_truthy()?;
        }
        let given = Given(max_frame_bytes.as_ref().map(|v| v.bind(py).clone()));
        options.max_frame = given.or_default::<MaxFrameBytes>()?.0;
        let given = Given(max_line_bytes.as_ref().map(|v| v.bind(py).clone()));
        options.max_line = given.or_default::<MaxLineBytes>()?.0;
        let reader = py.detach(|| BatchReader::open(&os_path, options))?;
        Ok(ReaderState::Reading(reader))
    }
}

/// Iterator returned by `read_journal`: batches are read with the GIL
/// released, their items decoded one per `__next__`.
#[pyclass(frozen, module = "replaycore._core")]
pub struct JournalReader {
    state: Mutex<ReaderState>,
}

#[pymethods]
impl JournalReader {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let mut guard = match self.state.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(already_executing("read_journal")),
        };
        let state = &mut *guard;
        if let ReaderState::Pending { .. } = state {
            match ReaderState::start(py, state) {
                Ok(started) => *state = started,
                Err(err) => {
                    *state = ReaderState::Done;
                    return Err(err);
                }
            }
        }
        loop {
            let ReaderState::Reading(reader) = state else {
                return Ok(None);
            };
            let format = reader.format();
            if let Some(item) = reader.pop() {
                let item = PyBytes::new(py, item);
                let decode = match format {
                    Format::Rcj => msgpack_decode(py)?,
                    Format::Jsonl => json_decode(py)?,
                };
                // The core checked the item decodes (SPEC 6.1: the same bytes
                // decode everywhere); should msgspec still refuse it, the
                // caller gets a RecordDecodeError, never msgspec's own.
                return match decode.call1((item,)) {
                    Ok(record) => Ok(Some(record)),
                    Err(err) if err.is_instance_of::<PyValueError>(py) => {
                        *state = ReaderState::Done;
                        Err(to_pyerr(
                            py,
                            crate::error::Error::Decode(crate::records::DecodeError {
                                offset: 0,
                                message: err.value(py).to_string(),
                                unknown_kind: None,
                            }),
                            None,
                        ))
                    }
                    Err(err) => Err(err),
                };
            }
            match py.detach(|| reader.refill()) {
                Ok(true) => {}
                Ok(false) => {
                    *state = ReaderState::Done;
                    return Ok(None);
                }
                Err(err) => {
                    *state = ReaderState::Done;
                    return Err(err.into());
                }
            }
        }
    }
}

/// Iterate the records of a journal file, in file order (JournalRecord
/// Structs).
///
/// Nothing is read before the first `next()`, where argument and file errors
/// are raised (as from the reference's generator). Torn tails are ignored;
/// damage (a damaged frame, a corrupt JSON line: SPEC 6.2) raises
/// JournalCorruption, or is skipped when `strict` is false. The file is
/// streamed (GIL released while reading), never held whole.
#[pyfunction]
#[pyo3(
    signature = (path, *, strict = Given(None), max_frame_bytes = Given(None), max_line_bytes = Given(None)),
    text_signature = "(path, *, strict=True, max_frame_bytes=67108864, max_line_bytes=67108864)"
)]
pub fn read_journal(
    path: &Bound<'_, PyAny>,
    strict: Given<'_>,
    max_frame_bytes: Given<'_>,
    max_line_bytes: Given<'_>,
) -> JournalReader {
    JournalReader {
        state: Mutex::new(ReaderState::Pending {
            path: path.clone().unbind(),
            strict: strict.0.map(Bound::unbind),
            max_frame_bytes: max_frame_bytes.0.map(Bound::unbind),
            max_line_bytes: max_line_bytes.0.map(Bound::unbind),
        }),
    }
}

// -- inspect_journal -------------------------------------------------------------

/// Count what a journal holds without replaying it: every record is decoded
/// (in Rust, GIL released, streaming), nothing is reduced.
///
/// Returns `{"format", "records", "kinds": {kind: count}, "first_journal_seq",
/// "last_journal_seq", "torn_tail_bytes", "skipped_lines", "corrupt_ranges":
/// [(start, end, reason)], "bytes"}`. Damage in a framed file is listed, not
/// raised (a missing magic raises JournalCorruption); a JSON line counts as a
/// record when msgspec decodes it.
#[pyfunction]
#[pyo3(
    signature = (path, *, max_frame_bytes = Given(None), max_line_bytes = Given(None)),
    text_signature = "(path, *, max_frame_bytes=67108864, max_line_bytes=67108864)"
)]
pub fn inspect_journal<'py>(
    py: Python<'py>,
    path: &Bound<'py, PyAny>,
    max_frame_bytes: Given<'py>,
    max_line_bytes: Given<'py>,
) -> PyResult<Bound<'py, PyDict>> {
    let MaxFrameBytes(limit) = max_frame_bytes.or_default()?;
    let MaxLineBytes(line_limit) = max_line_bytes.or_default()?;
    path_type(py)?.call1((path,))?;
    let (os_path, _) = os_path(path)?;
    let found = py
        .detach(|| journal::inspect_path(&os_path, limit, line_limit))
        .map_err(crate::error::Error::from)?;
    let kinds = PyDict::new(py);
    for (kind, count) in &found.kinds {
        kinds.set_item(kind, count)?;
    }
    let ranges = PyList::empty(py);
    for (start, end, reason) in &found.corrupt_ranges {
        ranges.append((start, end, reason))?;
    }
    let out = PyDict::new(py);
    out.set_item("format", found.format.unwrap_or(Format::Rcj).name())?;
    out.set_item("records", found.records)?;
    out.set_item("kinds", kinds)?;
    out.set_item("first_journal_seq", found.first_journal_seq)?;
    out.set_item("last_journal_seq", found.last_journal_seq)?;
    out.set_item("torn_tail_bytes", found.torn_tail_bytes)?;
    out.set_item("skipped_lines", found.skipped_lines)?;
    out.set_item("corrupt_ranges", ranges)?;
    out.set_item("bytes", found.bytes)?;
    Ok(out)
}

/// Convert the journal at `source` into a new file at `target` (which must
/// not exist; its extension picks the format), streaming, GIL released, and
/// without building the records as Python objects: the number of records
/// written (synced), or None when this fast path leaves the conversion to
/// `read_journal` + `JournalWriter` (a damaged source, a `journal_seq` the
/// writer would number or refuse, or `Custom.data` it does not copy byte for
/// byte: see `rust/convert.rs`); `target` is then removed. Signals are
/// looked at after each chunk written: Ctrl-C raises KeyboardInterrupt.
#[pyfunction]
#[pyo3(
    signature = (source, target, *, max_frame_bytes = Given(None), max_line_bytes = Given(None)),
    text_signature = "(source, target, *, max_frame_bytes=67108864, max_line_bytes=67108864)"
)]
pub fn convert_journal<'py>(
    py: Python<'py>,
    source: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    max_frame_bytes: Given<'py>,
    max_line_bytes: Given<'py>,
) -> PyResult<Option<u64>> {
    let MaxFrameBytes(limit) = max_frame_bytes.or_default()?;
    let MaxLineBytes(line_limit) = max_line_bytes.or_default()?;
    path_type(py)?.call1((source,))?;
    path_type(py)?.call1((target,))?;
    let (src, _) = os_path(source)?;
    let (dst, _) = os_path(target)?;
    let mut interrupted = None;
    let mut go_on = || match Python::attach(|py| py.check_signals()) {
        Ok(()) => true,
        Err(err) => {
            interrupted = Some(err);
            false
        }
    };
    let converted =
        py.detach(|| crate::convert::convert_path(&src, &dst, limit, line_limit, &mut go_on));
    match (converted, interrupted) {
        (_, Some(err)) => Err(err), // Ctrl-C: the caller's KeyboardInterrupt
        (converted, None) => Ok(converted.ok()),
    }
}
