//! Bindings of journal files (SPEC 6.2): `JournalWriter`, `read_journal`,
//! `inspect_journal`.
//!
//! File work (reading, scanning, writing, `fsync`) runs with the GIL
//! released; records are encoded and decoded with msgspec, called from here,
//! exactly as the reference does (`python/replaycore/reference/journal.py`),
//! so both backends write identical bytes and return equal Structs.

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Mutex, TryLockError};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyInt, PyList, PyString, PyTuple};

use crate::error::Error;
use crate::frames::{self, Event, FrameReader, WalkError};
use crate::journal::{self, Format, Fsync, OpenError};
use crate::jsonl::{self, LineReader};
use crate::py::args::{int_in_range, raise, repr, type_error, Arg, Given};
use crate::py::{cache, lock};

// `decode_error` is for `py::replay` and `py::records`.
use crate::py::errors::locked_error;
#[allow(unused_imports)]
pub(crate) use crate::py::errors::{corruption_error, decode_error, io_error};

/// The default limit on a frame's declared body length (64 MiB).
const DEFAULT_MAX_FRAME_BYTES: u64 = frames::DEFAULT_MAX_FRAME;
const MAX_FRAME_LIMIT: i64 = (1 << 32) - 1;

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
    /// `msgspec.structs.replace`.
    struct_replace = |py| py.import("msgspec.structs")?.getattr("replace")
);
cached_object!(
    /// `pathlib.Path`.
    path_type = |py| py.import("pathlib")?.getattr("Path")
);

/// The optional `max_frame_bytes` argument: an int in 1..=2**32-1.
fn max_frame(value: &Given<'_>) -> PyResult<u64> {
    match &value.0 {
        None => Ok(DEFAULT_MAX_FRAME_BYTES),
        Some(value) => {
            int_in_range(value, Arg::Name("max_frame_bytes"), 1, MAX_FRAME_LIMIT).map(|n| n as u64)
        }
    }
}

/// A path argument as the OS path (`os.fspath`), and its journal format.
fn os_path(path: &Bound<'_, PyAny>) -> PyResult<(PathBuf, Format)> {
    let os_path: PathBuf = path.extract()?;
    let format = Format::of(&os_path);
    Ok((os_path, format))
}

/// A `WalkError` as the Python exception: JournalCorruption, an OSError, or
/// what `stop` makes of the visitor's own error.
pub(crate) fn walk_error<E>(
    py: Python<'_>,
    err: WalkError<E>,
    stop: impl FnOnce(E) -> PyErr,
) -> PyErr {
    match err {
        WalkError::Corruption { offset, reason } => corruption_error(py, offset, &reason),
        WalkError::Io(err) => io_error(err),
        WalkError::Stop(err) => stop(err),
    }
}

// -- JournalWriter ---------------------------------------------------------------

struct WriterState {
    /// None once closed.
    file: Option<journal::Writer>,
    /// Bumped by every append, so an append prepared against an older state
    /// is prepared again.
    generation: u64,
}

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
#[pyclass(frozen, module = "replaycore._core")]
pub struct JournalWriter {
    path: Py<PyAny>,
    format: Format,
    fsync: Fsync,
    state: Mutex<WriterState>,
}

/// What `append_many` prepared against a state's generation.
struct Prepared<'py> {
    generation: u64,
    bytes: Vec<u8>,
    last: i64,
    written: Vec<Bound<'py, PyAny>>,
}

enum Commit {
    Done,
    Stale,
    Closed,
}

impl JournalWriter {
    fn closed_error(&self, py: Python<'_>) -> PyErr {
        raise(
            Error::value_error("self", "the journal writer is closed"),
            self.path.bind(py),
        )
    }

    /// The last written seq and the state's generation, or the closed error.
    fn snapshot(&self, py: Python<'_>) -> PyResult<(i64, u64)> {
        let state = lock(&self.state);
        match &state.file {
            Some(file) => Ok((file.last_seq(), state.generation)),
            None => {
                drop(state);
                Err(self.closed_error(py))
            }
        }
    }

    /// Encode one record as its file bytes, appended to `out`.
    fn encode(&self, record: &Bound<'_, PyAny>, index: usize, out: &mut Vec<u8>) -> PyResult<()> {
        let py = record.py();
        match self.format {
            Format::Rcj => {
                let body = cache::encode_canonical(py)?.call1((record,))?;
                let body = body.cast::<PyBytes>()?;
                frames::encode_frame(body.as_bytes(), out).ok_or_else(|| {
                    let argument = format!("records[{index}]");
                    let message = format!(
                        "{argument} encodes to {} bytes, more than a frame can hold",
                        body.as_bytes().len()
                    );
                    raise(Error::value_error(argument, message), record)
                })
            }
            Format::Jsonl => {
                let line = json_encode(py)?.call1((record,))?;
                out.extend_from_slice(line.cast::<PyBytes>()?.as_bytes());
                out.push(b'\n');
                Ok(())
            }
        }
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
        let (mut last, generation) = self.snapshot(py)?;
        let record_type = cache::journal_record_type(py)?;
        let mut bytes = Vec::new();
        let mut written = Vec::new();
        let seq_name = pyo3::intern!(py, "journal_seq");
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
            let argument = format!("records[{index}]");
            if !record.is_instance(record_type)? {
                return Err(type_error(&record, Arg::Name(&argument), "a JournalRecord"));
            }
            let seq_obj = record.getattr(seq_name)?;
            let seq_argument = format!("{argument}.journal_seq");
            if !seq_obj.is_instance_of::<PyInt>() {
                return Err(type_error(&seq_obj, Arg::Name(&seq_argument), "an int"));
            }
            let seq = seq_obj.extract::<i64>().ok();
            let record = if seq == Some(0) {
                let next = last.checked_add(1).ok_or_else(|| {
                    let message = format!("{seq_argument} cannot follow journal_seq {last}");
                    raise(Error::value_error(&seq_argument, message), &seq_obj)
                })?;
                let kwargs = PyDict::new(py);
                kwargs.set_item(seq_name, next)?;
                last = next;
                struct_replace(py)?.call((&record,), Some(&kwargs))?
            } else {
                match seq {
                    Some(seq) if seq > last => last = seq,
                    _ if seq_obj.gt(last)? => {
                        // Above i64: msgpack would carry it, the schema cannot.
                        return Err(raise(
                            Error::out_of_range(
                                &seq_argument,
                                i128::from(last) + 1,
                                i128::from(i64::MAX),
                                crate::py::args::int_shown(&seq_obj),
                            ),
                            &seq_obj,
                        ));
                    }
                    _ => {
                        let message = format!(
                            "{seq_argument} must be above the last written ({last}), got {}",
                            crate::py::args::int_shown(&seq_obj)
                        );
                        return Err(raise(Error::value_error(seq_argument, message), &seq_obj));
                    }
                }
                record
            };
            self.encode(&record, index, &mut bytes)?;
            written.push(record);
        }
        Ok(Prepared {
            generation,
            bytes,
            last,
            written,
        })
    }

    /// Write prepared bytes if the state is still the one they were prepared
    /// against (GIL released by the caller).
    fn commit(&self, prepared: &[u8], generation: u64, last: i64) -> std::io::Result<Commit> {
        let mut state = lock(&self.state);
        if state.file.is_none() {
            return Ok(Commit::Closed);
        }
        if state.generation != generation {
            return Ok(Commit::Stale);
        }
        if let Some(file) = state.file.as_mut() {
            file.append(prepared, last)?;
        }
        state.generation += 1;
        Ok(Commit::Done)
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
        let fsync = match &fsync.0 {
            None => Fsync::Always,
            Some(value) => {
                let parsed = value
                    .cast::<PyString>()
                    .ok()
                    .and_then(|s| s.to_str().ok().and_then(Fsync::parse));
                parsed.ok_or_else(|| {
                    let message = format!(
                        "fsync must be 'always', 'batch' or 'never', got {}",
                        repr(value)
                    );
                    raise(Error::value_error("fsync", message), value)
                })?
            }
        };
        let limit = max_frame(&max_frame_bytes)?;
        let path_obj = path_type(py)?.call1((path,))?;
        let (os_path, format) = os_path(path)?;
        let opened = py.detach(|| journal::Writer::open(&os_path, fsync, limit));
        let file = match opened {
            Ok(file) => file,
            Err(OpenError::Locked) => {
                let message = format!("{} is open in another JournalWriter", path_obj.str()?);
                return Err(locked_error(py, message));
            }
            Err(OpenError::Corruption { offset, reason }) => {
                return Err(corruption_error(py, offset, &reason))
            }
            Err(OpenError::Io(err)) => return Err(io_error(err)),
        };
        Ok(JournalWriter {
            path: path_obj.unbind(),
            format,
            fsync,
            state: Mutex::new(WriterState {
                file: Some(file),
                generation: 0,
            }),
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
        let state = lock(&self.state);
        state.file.as_ref().map_or(0, |file| file.last_seq())
    }

    /// Append one record and return it as written (with its `journal_seq`).
    fn append<'py>(
        &self,
        py: Python<'py>,
        record: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let records = PyList::new(py, [record])?;
        let written = self.append_many(py, records.as_any())?;
        written.get_item(0)
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
        let mut iter = Some(records.try_iter()?);
        let mut items = Vec::new();
        loop {
            let prepared = self.prepare(py, &mut items, &mut iter)?;
            if prepared.written.is_empty() {
                return PyList::new(py, prepared.written);
            }
            let (bytes, generation, last) = (&prepared.bytes, prepared.generation, prepared.last);
            match py.detach(|| self.commit(bytes, generation, last)) {
                Ok(Commit::Done) => return PyList::new(py, prepared.written),
                Ok(Commit::Stale) => continue, // another thread appended meanwhile
                Ok(Commit::Closed) => return Err(self.closed_error(py)),
                Err(err) => return Err(io_error(err)),
            }
        }
    }

    /// Make every appended record durable (`fsync`) unless `fsync="never"`.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| match &lock(&self.state).file {
            Some(file) => file.sync(),
            None => Ok(()),
        })
        .map_err(io_error)
    }

    /// Flush and close the file (releasing its lock); further appends raise.
    /// Closing twice is harmless.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            let mut state = lock(&self.state);
            if let Some(file) = &state.file {
                file.sync()?;
            }
            match state.file.take() {
                Some(file) => {
                    state.generation += 1;
                    drop(state);
                    file.close()
                }
                None => Ok(()),
            }
        })
        .map_err(io_error)
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

/// Bodies (framed) or lines (JSON) gathered without the GIL, decoded one per
/// `__next__`.
#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    /// Ranges of `data`, in file order.
    items: VecDeque<(usize, usize)>,
}

impl Batch {
    const MAX_ITEMS: usize = 1024;
    const MAX_BYTES: usize = 4 << 20;

    fn push(&mut self, bytes: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        self.items.push_back((start, self.data.len()));
    }

    fn full(&self) -> bool {
        self.items.len() >= Self::MAX_ITEMS || self.data.len() >= Self::MAX_BYTES
    }

    fn pop(&mut self) -> Option<&[u8]> {
        let (start, end) = self.items.pop_front()?;
        self.data.get(start..end)
    }

    fn reset(&mut self) {
        self.data.clear();
        self.items.clear();
    }
}

enum Source {
    Framed(FrameReader<File>),
    Lines(LineReader<File>),
}

enum ReaderState {
    /// Not started: the arguments, looked at on the first `__next__` (the
    /// reference is a generator, which does nothing before that).
    Pending {
        path: Py<PyAny>,
        strict: Py<PyAny>,
        max_frame_bytes: Option<Py<PyAny>>,
    },
    Reading {
        source: Source,
        batch: Batch,
        /// Where reading stopped: None while more may follow.
        end: Option<Result<(), WalkError<std::convert::Infallible>>>,
    },
    Done,
}

impl ReaderState {
    fn start(py: Python<'_>, pending: &ReaderState) -> PyResult<ReaderState> {
        let ReaderState::Pending {
            path,
            strict,
            max_frame_bytes,
        } = pending
        else {
            return Ok(ReaderState::Done);
        };
        let path = path.bind(py);
        path_type(py)?.call1((path,))?; // the reference's `Path(path)` checks
        let (os_path, format) = os_path(path)?;
        let strict = strict.bind(py).is_truthy()?;
        let limit = max_frame(&Given(max_frame_bytes.as_ref().map(|v| v.bind(py).clone())))?;
        let file = py
            .detach(|| journal::open_read(&os_path))
            .map_err(io_error)?;
        let source = match format {
            Format::Rcj => Source::Framed(FrameReader::new(file, strict, limit)),
            Format::Jsonl => Source::Lines(LineReader::new(file)),
        };
        Ok(ReaderState::Reading {
            source,
            batch: Batch::default(),
            end: None,
        })
    }
}

/// Fill `batch` from `source` (no GIL): record bodies, or non-blank lines.
fn refill(
    source: &mut Source,
    batch: &mut Batch,
) -> Option<Result<(), WalkError<std::convert::Infallible>>> {
    batch.reset();
    while !batch.full() {
        let step = match source {
            Source::Framed(frames) => frames.next_event(|event| {
                if let Event::Record { body, .. } = event {
                    batch.push(body);
                }
                Ok(())
            }),
            Source::Lines(lines) => match lines.next_line() {
                Ok(Some(line)) => {
                    if !jsonl::is_blank(line) {
                        batch.push(line);
                    }
                    Ok(true)
                }
                Ok(None) => Ok(false),
                Err(err) => Err(WalkError::Io(err)),
            },
        };
        match step {
            Ok(true) => {}
            Ok(false) => return Some(Ok(())),
            Err(err) => return Some(Err(err)),
        }
    }
    None
}

/// Iterator returned by `read_journal`.
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
            Err(TryLockError::WouldBlock) => {
                return Err(PyValueError::new_err(
                    "read_journal iterator already executing",
                ))
            }
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
            let ReaderState::Reading { source, batch, end } = state else {
                return Ok(None);
            };
            if let Some(item) = batch.pop() {
                let item = PyBytes::new(py, item);
                match source {
                    Source::Framed(_) => return msgpack_decode(py)?.call1((item,)).map(Some),
                    Source::Lines(_) => match json_decode(py)?.call1((item,)) {
                        Ok(record) => return Ok(Some(record)),
                        // msgspec.DecodeError, or UnicodeDecodeError: not a record
                        Err(err) if err.is_instance_of::<PyValueError>(py) => continue,
                        Err(err) => return Err(err),
                    },
                }
            }
            match end.take() {
                Some(Ok(())) => {
                    *state = ReaderState::Done;
                    return Ok(None);
                }
                Some(Err(err)) => {
                    *state = ReaderState::Done;
                    return Err(walk_error(py, err, |never| match never {}));
                }
                None => *end = py.detach(|| refill(source, batch)),
            }
        }
    }
}

/// Iterate the records of a journal file, in file order (JournalRecord
/// Structs).
///
/// Nothing is read before the first `next()`, where argument and file errors
/// are raised (as from the reference's generator). Torn tails are ignored;
/// in `.rcj` files damage raises JournalCorruption (or is skipped when
/// `strict` is false); undecodable `.jsonl` lines are skipped. The file is
/// streamed (GIL released while reading), never held whole.
#[pyfunction]
#[pyo3(
    signature = (path, *, strict = Given(None), max_frame_bytes = Given(None)),
    text_signature = "(path, *, strict=True, max_frame_bytes=67108864)"
)]
pub fn read_journal(
    py: Python<'_>,
    path: &Bound<'_, PyAny>,
    strict: Given<'_>,
    max_frame_bytes: Given<'_>,
) -> JournalReader {
    // Only the truth of `strict` matters, as in the reference's `if strict:`.
    let strict = match strict.0 {
        Some(value) => value.unbind(),
        None => pyo3::types::PyBool::new(py, true)
            .to_owned()
            .into_any()
            .unbind(),
    };
    JournalReader {
        state: Mutex::new(ReaderState::Pending {
            path: path.clone().unbind(),
            strict,
            max_frame_bytes: max_frame_bytes.0.map(Bound::unbind),
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
    signature = (path, *, max_frame_bytes = Given(None)),
    text_signature = "(path, *, max_frame_bytes=67108864)"
)]
pub fn inspect_journal<'py>(
    py: Python<'py>,
    path: &Bound<'py, PyAny>,
    max_frame_bytes: Given<'py>,
) -> PyResult<Bound<'py, PyDict>> {
    let limit = max_frame(&max_frame_bytes)?;
    path_type(py)?.call1((path,))?;
    let (os_path, _) = os_path(path)?;
    let found = py
        .detach(|| journal::inspect_path(&os_path, limit))
        .map_err(|err| walk_error(py, err, |never| match never {}))?;
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
