//! Bindings of the replay reducer (SPEC section 7): `ReplayReducer`,
//! `replay`, `replay_many` and the cursor helpers of 7.4.
//!
//! Journals given as paths or buffers are read, decoded and reduced with the
//! GIL released; only the final `ReplayResult` is built with it held.
//! Records given as Structs are encoded with `records.encode_canonical` (so
//! their digest is the one the reference computes) and decoded in Rust.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyMemoryView, PyString, PyTuple};

use crate::pipeline::{self, Job};
use crate::py::args::{int_in_range, type_error, Arg, Given, MaxFrameBytes, MaxLineBytes, Strict};
use crate::py::cache;
use crate::py::construct::construct;
use crate::py::digest::encode_canonical;
use crate::py::errors::{to_pyerr, unexpected_keyword};
use crate::replay::{
    apply_bytes, reduce_framed, CheckpointState, Options, Outcome, OutputRepair, Pending, Reducer,
    Repair, SharedReducer,
};

/// The options of a replay, converted in the order the reference checks
/// them (`mode`, `missing_content_policy`, `strict`, `max_frame_bytes`, then
/// `available_content_refs`); the defaults are the core's ([`Options::new`]).
fn replay_options(
    mode: &Given<'_>,
    available: Option<&Bound<'_, PyAny>>,
    policy: &Given<'_>,
    strict: Option<&Bound<'_, PyAny>>,
    max_frame_bytes: &Given<'_>,
) -> PyResult<Options> {
    let mut options = Options::new(mode.or_default()?);
    options.policy = policy.or_default()?;
    if let Some(strict) = strict {
        options.strict = strict.extract::<Strict>()?.0;
    }
    options.max_frame = max_frame_bytes.or_default::<MaxFrameBytes>()?.0;
    if let Some(refs) = available {
        options.available = Some(ref_set(refs)?);
    }
    Ok(options)
}

fn ref_set(refs: &Bound<'_, PyAny>) -> PyResult<crate::replay::RefSet> {
    let arg = Arg::Name("available_content_refs");
    if refs.is_instance_of::<PyString>() || refs.is_instance_of::<PyBytes>() {
        return Err(type_error(refs, arg, "an iterable of str"));
    }
    let iter = refs
        .try_iter()
        .map_err(|_| type_error(refs, arg, "an iterable of str"))?;
    let mut set = crate::replay::RefSet::default();
    for item in iter {
        let item = item?;
        let Ok(text) = item.cast::<PyString>() else {
            return Err(type_error(&item, arg, "an iterable of str"));
        };
        set.insert(&text.to_cow()?);
    }
    Ok(set)
}

/// A path (`str` or `os.PathLike`) as a `PathBuf`, or None for anything else.
fn as_path(source: &Bound<'_, PyAny>) -> PyResult<Option<PathBuf>> {
    if source.is_instance_of::<PyString>()
        || source.hasattr(pyo3::intern!(source.py(), "__fspath__"))?
    {
        return Ok(Some(source.extract::<PathBuf>()?));
    }
    Ok(None)
}

/// The bytes of a `bytes`, `bytearray` or `memoryview`, or None.
fn as_buffer(source: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
    if let Ok(bytes) = source.cast::<PyBytes>() {
        return Ok(Some(bytes.as_bytes().to_vec()));
    }
    if let Ok(array) = source.cast::<PyByteArray>() {
        return Ok(Some(array.to_vec()));
    }
    if source.is_instance_of::<PyMemoryView>() {
        let raw = source.call_method0(pyo3::intern!(source.py(), "tobytes"))?;
        return Ok(Some(raw.cast::<PyBytes>()?.as_bytes().to_vec()));
    }
    Ok(None)
}

/// The canonical bytes of one record given from Python (a Struct or its bytes).
fn record_bytes(record: &Bound<'_, PyAny>, arg: Arg<'_>) -> PyResult<Vec<u8>> {
    let py = record.py();
    if record.is_instance(cache::journal_record_type(py)?)? {
        return Ok(encode_canonical(record)?.as_bytes().to_vec());
    }
    match as_buffer(record)? {
        Some(data) => Ok(data),
        None => Err(type_error(record, arg, "a JournalRecord or bytes")),
    }
}

/// Replay an iterable of records (Structs or bytes) on this thread.
fn reduce_iterable(reducer: &mut Reducer, items: &Bound<'_, PyAny>) -> PyResult<()> {
    for item in items.try_iter()? {
        let data = record_bytes(&item?, Arg::Name("record"))?;
        apply_bytes(reducer, &data)?;
    }
    Ok(())
}

// -- building the ReplayResult ------------------------------------------------
//
// Each object is built with `construct!` (keyword arguments through
// vectorcall, the names made once per call site): a result can hold tens of
// thousands of repairs.

fn repair_obj<'py>(py: Python<'py>, r: Repair) -> PyResult<Bound<'py, PyAny>> {
    construct!(py, cache::repair_needed_type(py), {
        kind: r.kind,
        record_id: &r.record_id,
        journal_seq: r.journal_seq,
        reason: &r.reason,
        retry: r.retry,
    })
}

fn pending_obj<'py>(py: Python<'py>, p: Pending) -> PyResult<Bound<'py, PyAny>> {
    construct!(py, cache::pending_effect_type(py), {
        effect_id: &p.effect_id,
        intent_record_id: &p.intent_record_id,
        idempotency_key: p.idempotency_key.as_deref(),
        dedupe_key: p.dedupe_key.as_deref(),
        reason: &p.reason,
        retry_allowed: p.retry_allowed,
    })
}

/// One field's last string object, handed out again while the field keeps
/// its value: the output repairs of a result share a few statuses, reasons
/// and decisions.
#[derive(Default)]
struct Repeated<'py> {
    last: Option<(String, Bound<'py, PyAny>)>,
}

impl<'py> Repeated<'py> {
    fn get(&mut self, py: Python<'py>, value: &str) -> Bound<'py, PyAny> {
        match &self.last {
            Some((text, object)) if text == value => object.clone(),
            _ => {
                let object = PyString::new(py, value).into_any();
                self.last = Some((value.to_owned(), object.clone()));
                object
            }
        }
    }
}

/// The repeated fields of a list of output repairs ([`Repeated`]).
#[derive(Default)]
struct RepairTexts<'py> {
    terminal_status: Repeated<'py>,
    reason: Repeated<'py>,
    decision: Repeated<'py>,
}

fn output_repair_obj<'py>(
    py: Python<'py>,
    o: OutputRepair,
    texts: &mut RepairTexts<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    construct!(py, cache::output_reconciliation_type(py), {
        delivery_id: o.delivery_id(),
        intent_record_id: o.intent_record_id(),
        dedupe_key: o.dedupe_key(),
        idempotency_key: o.idempotency_key(),
        external_operation_id: o.external_operation_id(),
        terminal_status: texts.terminal_status.get(py, o.terminal_status()),
        reason: texts.reason.get(py, o.reason()),
        decision: texts.decision.get(py, o.decision()),
        resend_allowed: o.resend_allowed(),
    })
}

fn checkpoint_obj<'py>(py: Python<'py>, c: &CheckpointState) -> PyResult<Bound<'py, PyAny>> {
    construct!(py, cache::checkpoint_type(py), {
        checkpoint_seq: c.checkpoint_seq,
        covers_journal_seq: c.covers_journal_seq,
        loop_state: &c.loop_state,
        created_at_ms: c.created_at_ms,
        content_ref_manifest: PyList::new(py, &c.content_ref_manifest)?,
    })
}

/// A list of the objects `build` makes of `items`, each item freed as soon
/// as its object is built: while its bytes are still in the cache, instead
/// of in a pass of its own over tens of thousands of them afterwards.
fn list_of<'py, T>(
    py: Python<'py>,
    items: Vec<T>,
    mut build: impl FnMut(Python<'py>, T) -> PyResult<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for item in items {
        list.append(build(py, item)?)?;
    }
    Ok(list)
}

/// The `ReplayResult` of `o`, which it consumes (see [`list_of`]).
fn result_obj<'py>(py: Python<'py>, o: Outcome) -> PyResult<Bound<'py, PyAny>> {
    let gaps = PyList::empty(py);
    for (a, b) in &o.sequence_gaps {
        gaps.append(PyTuple::new(py, [a, b])?)?;
    }
    let mut texts = RepairTexts::default();
    construct!(py, cache::replay_result_type(py), {
        mode: o.mode.name(),
        status: if o.complete { "complete" } else { "repair_needed" },
        resume_allowed: o.resume_allowed,
        latest_journal_seq: o.latest_journal_seq,
        terminal_status: o.terminal_status.as_deref(),
        next_loop_state: o.latest_checkpoint.as_ref().map(|c| c.loop_state.as_str()),
        unsafe_pending_side_effects: list_of(py, o.unsafe_pending_side_effects, pending_obj)?,
        missing_content_refs: PyList::new(py, &o.missing_content_refs)?,
        repair_needed: list_of(py, o.repair_needed, repair_obj)?,
        output_delivery_repairs: list_of(py, o.output_delivery_repairs, |py, r| {
            output_repair_obj(py, r, &mut texts)
        })?,
        latest_checkpoint: match &o.latest_checkpoint {
            Some(c) => Some(checkpoint_obj(py, c)?),
            None => None,
        },
        torn_tail_bytes: o.torn_tail_bytes,
        skipped_lines: o.skipped_lines,
        records_applied: o.records_applied,
        sequence_gaps: gaps,
    })
}

// -- the Python API -----------------------------------------------------------

/// Folds a run's journal into a `ReplayResult` (SPEC 7).
///
/// `mode` is "audit", "resume" (default) or "repair"; `strict` defaults to
/// True for resume and repair, False for audit. Strictly, a record that breaks
/// an invariant raises ReplayViolation and is not applied (the reducer stays
/// usable); otherwise it becomes a `replay_invariant_violation` repair and is
/// skipped. `available_content_refs` turns the content-ref check on.
/// Thread-safe; `finish()` spends the reducer.
#[pyclass(frozen, module = "replaycore._core")]
pub struct ReplayReducer {
    reducer: SharedReducer,
}

#[pymethods]
impl ReplayReducer {
    #[new]
    #[pyo3(
        signature = (mode = Given(None), available_content_refs = None, missing_content_policy = Given(None), strict = None, *, max_frame_bytes = Given(None)),
        text_signature = "(mode='resume', available_content_refs=None, missing_content_policy='fail', strict=None, *, max_frame_bytes=67108864)"
    )]
    fn new(
        mode: Given<'_>,
        available_content_refs: Option<&Bound<'_, PyAny>>,
        missing_content_policy: Given<'_>,
        strict: Option<&Bound<'_, PyAny>>,
        max_frame_bytes: Given<'_>,
    ) -> PyResult<Self> {
        let options = replay_options(
            &mode,
            available_content_refs,
            &missing_content_policy,
            strict,
            &max_frame_bytes,
        )?;
        Ok(ReplayReducer {
            reducer: SharedReducer::new(options),
        })
    }

    /// Apply one record: a JournalRecord or the msgpack bytes of one.
    ///
    /// Raises ReplayViolation (strict), RecordDecodeError for bytes that are
    /// not a record, ReducerFinished after `finish()`.
    fn apply(&self, record: &Bound<'_, PyAny>) -> PyResult<()> {
        self.reducer.with(|_| ())?;
        let data = record_bytes(record, Arg::Name("record"))?;
        Ok(self
            .reducer
            .try_with(|reducer| apply_bytes(reducer, &data))?)
    }

    /// Apply records in order: an iterable of records (or their bytes), or a
    /// framed journal buffer (bytes starting with `RCJ1`).
    fn apply_many(&self, py: Python<'_>, records: &Bound<'_, PyAny>) -> PyResult<()> {
        self.reducer.with(|_| ())?;
        if let Some(data) = as_buffer(records)? {
            let reduced = py.detach(|| {
                self.reducer
                    .try_with(|reducer| reduce_framed(reducer, &data))
            });
            return Ok(reduced?);
        }
        let iter = records.try_iter().map_err(|_| {
            type_error(
                records,
                Arg::Name("records"),
                "an iterable of records or a framed buffer",
            )
        })?;
        for item in iter {
            self.apply(&item?)?;
        }
        Ok(())
    }

    /// Close the replay and return its ReplayResult; the reducer is spent.
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let outcome = self.reducer.finish()?;
        result_obj(py, outcome)
    }

    /// Records applied so far (not counting ignored duplicates or skipped violations).
    #[getter]
    fn records_applied(&self) -> PyResult<u64> {
        Ok(self.reducer.with(|r| r.records_applied())?)
    }

    /// The `journal_seq` of the last applied record (0 before any).
    #[getter]
    fn latest_journal_seq(&self) -> PyResult<i64> {
        Ok(self.reducer.with(|r| r.latest_journal_seq())?)
    }
}

/// Replay one journal and return its ReplayResult.
///
/// `source` is a path (`.jsonl` for JSON lines, anything else framed `.rcj`,
/// streamed with bounded memory), the bytes of a framed journal, or an
/// iterable of records (or their msgpack bytes). Paths and buffers are read
/// and reduced with the GIL released. A JSON line longer than
/// `max_line_bytes` is corruption (SPEC 6.2), found without holding it.
#[pyfunction]
#[pyo3(
    signature = (source, mode = Given(None), available_content_refs = None, missing_content_policy = Given(None), strict = None, *, max_frame_bytes = Given(None), max_line_bytes = Given(None)),
    text_signature = "(source, mode='resume', available_content_refs=None, missing_content_policy='fail', strict=None, *, max_frame_bytes=67108864, max_line_bytes=67108864)"
)]
#[allow(clippy::too_many_arguments)] // the Python signature's arguments
pub fn replay<'py>(
    py: Python<'py>,
    source: &Bound<'py, PyAny>,
    mode: Given<'py>,
    available_content_refs: Option<&Bound<'py, PyAny>>,
    missing_content_policy: Given<'py>,
    strict: Option<&Bound<'py, PyAny>>,
    max_frame_bytes: Given<'py>,
    max_line_bytes: Given<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut options = replay_options(
        &mode,
        available_content_refs,
        &missing_content_policy,
        strict,
        &max_frame_bytes,
    )?;
    options.max_line = max_line_bytes.or_default::<MaxLineBytes>()?.0;
    match prepare(source)? {
        Some(job) => {
            let outcome = py.detach(|| job.replay(&options))?;
            result_obj(py, outcome)
        }
        None => {
            let mut reducer = Reducer::new(options);
            reduce_iterable(&mut reducer, source)?;
            result_obj(py, reducer.finish())
        }
    }
}

/// A path or buffer source as a job; None for an iterable of records.
fn prepare(source: &Bound<'_, PyAny>) -> PyResult<Option<Job>> {
    if let Some(path) = as_path(source)? {
        return Ok(Some(Job::Path(path)));
    }
    if let Some(data) = as_buffer(source)? {
        return Ok(Some(Job::Buffer(data)));
    }
    if source.try_iter().is_err() {
        return Err(type_error(
            source,
            Arg::Name("source"),
            "a path, a framed buffer or an iterable of records",
        ));
    }
    Ok(None)
}

/// The options of `replay_many`, given as keywords: those of `replay`
/// (None for `available_content_refs` or `strict` is as good as leaving it
/// out). A keyword `replay` does not take is refused as `replay` refuses it.
fn options_from_kwargs(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Options> {
    const NAMES: [&str; 6] = [
        "mode",
        "available_content_refs",
        "missing_content_policy",
        "strict",
        "max_frame_bytes",
        "max_line_bytes",
    ];
    let mut given: [Option<Bound<'_, PyAny>>; 6] = Default::default();
    if let Some(kwargs) = kwargs {
        for (key, value) in kwargs.iter() {
            let name: String = key.extract()?;
            match NAMES.iter().position(|n| *n == name) {
                Some(i) => given[i] = Some(value),
                None => return Err(unexpected_keyword("replay", &name)),
            }
        }
    }
    let [mode, available, policy, strict, max_frame, max_line] = given;
    let available = available.filter(|v| !v.is_none());
    let strict = strict.filter(|v| !v.is_none());
    let mut options = replay_options(
        &Given(mode),
        available.as_ref(),
        &Given(policy),
        strict.as_ref(),
        &Given(max_frame),
    )?;
    options.max_line = Given(max_line).or_default::<MaxLineBytes>()?.0;
    Ok(options)
}

/// Replay many journals in parallel (GIL released); results in source order.
///
/// `options` are those of `replay`, for every source. Paths and buffers are
/// spread over `threads` worker threads (default: the number of CPUs);
/// iterables of records are replayed on the calling thread. The first
/// failure in source order is raised, or with `return_exceptions=True` each
/// failure is returned in its place.
#[pyfunction]
#[pyo3(signature = (sources, threads = None, return_exceptions = false, **options))]
pub fn replay_many<'py>(
    py: Python<'py>,
    sources: &Bound<'py, PyAny>,
    threads: Option<&Bound<'py, PyAny>>,
    return_exceptions: bool,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyList>> {
    let items: Vec<Bound<'py, PyAny>> = sources.try_iter()?.collect::<PyResult<_>>()?;
    let threads = match threads {
        None => None,
        Some(value) => Some(int_in_range(value, Arg::Name("threads"), 1, 1024)? as usize),
    };
    let results = PyList::empty(py);
    if items.is_empty() {
        return Ok(results);
    }
    let options = match options_from_kwargs(options) {
        Ok(options) => options,
        Err(err) if return_exceptions => {
            for _ in &items {
                results.append(err.clone_ref(py).into_value(py))?;
            }
            return Ok(results);
        }
        Err(err) => return Err(err),
    };
    // Prepare every source with the GIL; a source that cannot be prepared
    // fails in its place.
    let mut jobs: Vec<Option<Job>> = Vec::with_capacity(items.len());
    let mut early: Vec<Option<PyErr>> = Vec::with_capacity(items.len());
    for item in &items {
        match prepare(item) {
            Ok(job) => {
                jobs.push(job);
                early.push(None);
            }
            Err(err) => {
                jobs.push(None);
                early.push(Some(err));
            }
        }
    }
    let workers = pipeline::workers(threads, pipeline::cpus(), jobs.len());
    let outcomes = py.detach(|| pipeline::replay_jobs(&jobs, &options, workers));
    for ((item, early), outcome) in items.iter().zip(early).zip(outcomes) {
        let result = match (early, outcome) {
            (Some(err), _) => Err(err),
            (None, Some(Ok(outcome))) => result_obj(py, outcome),
            (None, Some(Err(err))) => Err(to_pyerr(py, err, None)),
            (None, None) => {
                let mut reducer = Reducer::new(options.clone());
                reduce_iterable(&mut reducer, item).and_then(|()| result_obj(py, reducer.finish()))
            }
        };
        match result {
            Ok(value) => results.append(value)?,
            Err(err) if return_exceptions => results.append(err.into_value(py))?,
            Err(err) => return Err(err),
        }
    }
    Ok(results)
}

// -- cursors and scopes (SPEC 7.4) ---------------------------------------------

fn check_stream_scope(scope: &Bound<'_, PyAny>) -> PyResult<()> {
    if scope.is_instance(cache::stream_scope_type(scope.py())?)? {
        Ok(())
    } else {
        Err(type_error(scope, Arg::Name("scope"), "a StreamScope"))
    }
}

/// The cursor position of a journal sequence number: `"journal.<seq>"`.
#[pyfunction]
#[pyo3(signature = (seq))]
pub fn journal_cursor_for_seq(seq: &Bound<'_, PyAny>) -> PyResult<String> {
    let seq = int_in_range(seq, Arg::Name("seq"), 0, i64::MAX)?;
    Ok(format!("journal.{seq}"))
}

/// `"run_journal"` for a run scope (its journal can replay it), else
/// `"host_archive_required"`.
#[pyfunction]
#[pyo3(signature = (scope))]
pub fn durable_replay_support(scope: &Bound<'_, PyAny>) -> PyResult<&'static str> {
    check_stream_scope(scope)?;
    let kind = scope.getattr(pyo3::intern!(scope.py(), "kind"))?;
    Ok(if kind.eq("run")? {
        "run_journal"
    } else {
        "host_archive_required"
    })
}

/// `"compatible"` when `cursor` is None or was issued for `scope`, else
/// `"scope_mismatch"`.
#[pyfunction]
#[pyo3(signature = (scope, cursor))]
pub fn check_cursor_compatibility(
    scope: &Bound<'_, PyAny>,
    cursor: &Bound<'_, PyAny>,
) -> PyResult<&'static str> {
    check_stream_scope(scope)?;
    if cursor.is_none() {
        return Ok("compatible");
    }
    if !cursor.is_instance(cache::event_cursor_type(scope.py())?)? {
        return Err(type_error(
            cursor,
            Arg::Name("cursor"),
            "an EventCursor or None",
        ));
    }
    let issued_for = cursor.getattr(pyo3::intern!(scope.py(), "scope"))?;
    Ok(if issued_for.eq(scope)? {
        "compatible"
    } else {
        "scope_mismatch"
    })
}
