//! Binding of `IdempotencyStore` (SPEC section 4).
//!
//! Python work (checking the scope, encoding, decoding, building results,
//! raising) happens before the store's lock is taken or after it is released;
//! the critical sections are pure Rust, so no thread can hold the lock while
//! it waits for the GIL.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyType};

use crate::error::Error;
use crate::py::args::{key_bytes, type_error, Arg};
use crate::py::construct::construct;
use crate::py::digest::{digest_of, encode_canonical};
use crate::py::errors::{conflict, to_pyerr};
use crate::py::{cache, lock};
use crate::store::{with_scope_key, Found, PutOutcome, Store, BYTES_TYPE};

/// A Struct type met by the store, with its cached `Decoder(type).decode`.
struct StoredType {
    ty: Py<PyType>,
    decode: Py<PyAny>,
}

/// Remembers one value per `Scope` and detects conflicting content.
///
/// `put` stores a value the first time a scope is seen; a later `put` with
/// equal content (equal canonical bytes) is a replay returning the stored
/// value; different content raises IdempotencyConflict and changes nothing.
/// Values are msgspec Structs or `bytes`; only their canonical bytes and type
/// are kept, and `get` decodes a fresh value of the stored type. Thread-safe:
/// of N threads racing to `put` one scope, exactly one inserts.
#[pyclass(frozen, module = "replaycore._core")]
pub struct IdempotencyStore {
    store: Mutex<Store>,
    types: Mutex<Vec<StoredType>>,
}

fn is_scope(scope: &Bound<'_, PyAny>) -> PyResult<bool> {
    let scope_type = cache::scope_type(scope.py())?;
    if scope.get_type().is(scope_type) {
        return Ok(true);
    }
    scope.is_instance(scope_type)
}

/// The type error of anything that is not a `Scope`.
fn check_scope(scope: &Bound<'_, PyAny>) -> PyResult<()> {
    if is_scope(scope)? {
        Ok(())
    } else {
        Err(type_error(scope, Arg::Name("scope"), "a Scope"))
    }
}

/// Call `f` with the store key of `scope` (already checked to be a `Scope`).
fn with_key<R>(scope: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    let py = scope.py();
    let client = scope.getattr(pyo3::intern!(py, "client_id"))?;
    let adapter = scope.getattr(pyo3::intern!(py, "adapter_id"))?;
    let key = scope.getattr(pyo3::intern!(py, "idempotency_key"))?;
    let arg = Arg::Name("scope");
    let parts = [
        key_bytes(&client, arg)?,
        key_bytes(&adapter, arg)?,
        key_bytes(&key, arg)?,
    ];
    let [client, adapter, key] = &parts;
    Ok(with_scope_key([client, adapter, key], f))
}

impl IdempotencyStore {
    /// The index of Struct type `ty`, registering it (and its decoder) on first sight.
    fn type_index(&self, ty: Bound<'_, PyType>) -> PyResult<u32> {
        let known = lock(&self.types)
            .iter()
            .position(|stored| stored.ty.as_ptr() == ty.as_ptr());
        if let Some(position) = known {
            return index_of(position);
        }
        let py = ty.py();
        let decode = cache::decoder_type(py)?
            .call1((&ty,))?
            .getattr(pyo3::intern!(py, "decode"))?
            .unbind();
        let ty = ty.unbind();
        let mut types = lock(&self.types);
        // Another thread may have registered it meanwhile.
        let (position, unused) = match types
            .iter()
            .position(|stored| stored.ty.as_ptr() == ty.as_ptr())
        {
            Some(position) => (position, Some(StoredType { ty, decode })),
            None => {
                types.push(StoredType { ty, decode });
                (types.len() - 1, None)
            }
        };
        drop(types);
        // Dropped only now, with the lock released.
        drop(unused);
        index_of(position)
    }

    /// A fresh value of stored type `type_idx` from its canonical bytes.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        type_idx: u32,
        data: &[u8],
    ) -> PyResult<Bound<'py, PyAny>> {
        self.decode_bytes(type_idx, PyBytes::new(py, data))
    }

    /// The value of the entry `found`, its bytes copied straight from the
    /// store into a new `bytes` (the lock is held only for the copy).
    fn read<'py>(&self, py: Python<'py>, found: Found) -> PyResult<Bound<'py, PyAny>> {
        let bytes = PyBytes::new_with(py, found.len, |buf| {
            let copied = lock(&self.store).copy_value(found.position, buf);
            if copied {
                Ok(())
            } else {
                Err(internal("stored entry changed size"))
            }
        })?;
        self.decode_bytes(found.type_idx, bytes)
    }

    /// `bytes` itself for raw values, else decoded to stored type `type_idx`.
    fn decode_bytes<'py>(
        &self,
        type_idx: u32,
        bytes: Bound<'py, PyBytes>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if type_idx == BYTES_TYPE {
            return Ok(bytes.into_any());
        }
        let py = bytes.py();
        let decode = usize::try_from(type_idx - 1).ok().and_then(|position| {
            lock(&self.types)
                .get(position)
                .map(|stored| stored.decode.clone_ref(py))
        });
        match decode {
            Some(decode) => decode.bind(py).call1((bytes,)),
            None => Err(internal(&format!("unknown stored type {type_idx}"))),
        }
    }
}

fn internal(message: &str) -> PyErr {
    Error::internal(message).into()
}

fn index_of(position: usize) -> PyResult<u32> {
    u32::try_from(position + 1).map_err(|_| internal("too many stored types"))
}

#[pymethods]
impl IdempotencyStore {
    /// An empty store.
    #[new]
    fn new() -> Self {
        IdempotencyStore {
            store: Mutex::new(Store::new()),
            types: Mutex::new(Vec::new()),
        }
    }

    fn __repr__(&self) -> String {
        format!("IdempotencyStore(entries={})", lock(&self.store).len())
    }

    /// Store `value` under `scope`, or replay, or raise a conflict.
    ///
    /// `scope` must be a `Scope` and `value` a `bytes` (stored as is) or a
    /// msgspec Struct (stored as its canonical encoding); otherwise
    /// InvalidArgumentType. Returns `PutOutcome(True, value)` for a new scope
    /// and `PutOutcome(False, prior)` when the stored content is equal (prior
    /// decoded to the type stored first). Different content raises
    /// IdempotencyConflict with both digests and, for Structs, the dotted
    /// paths of the differing fields; nothing is overwritten.
    #[pyo3(signature = (scope, value))]
    fn put<'py>(
        &self,
        scope: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = scope.py();
        check_scope(scope)?;
        let encoded;
        let (type_idx, data) = if let Ok(bytes) = value.cast::<PyBytes>() {
            (BYTES_TYPE, bytes.as_bytes())
        } else if value.is_instance(cache::struct_type(py)?)? {
            encoded = encode_canonical(value)?;
            (self.type_index(value.get_type())?, encoded.as_bytes())
        } else {
            return Err(type_error(
                value,
                Arg::Name("value"),
                "a msgspec Struct or bytes",
            ));
        };
        let outcome = with_key(scope, |key| lock(&self.store).put(key, type_idx, data))?
            .map_err(|err| to_pyerr(py, err, None))?;
        let put_outcome = cache::put_outcome_type(py)?;
        match outcome {
            PutOutcome::Inserted => put_outcome.call1((true, value)),
            PutOutcome::Replay { type_idx: stored } => {
                // Equal content: the stored bytes are `data`.
                let prior = if stored == BYTES_TYPE && value.is_exact_instance_of::<PyBytes>() {
                    value.clone()
                } else {
                    self.decode(py, stored, data)?
                };
                put_outcome.call1((false, prior))
            }
            PutOutcome::Conflict {
                type_idx: stored,
                prior,
            } => {
                let prior_value = self.decode(py, stored, &prior)?;
                let prior_digest = digest_of(py, &prior);
                let new_digest = digest_of(py, data);
                let fields = cache::differing_fields(py)?.call1((&prior_value, value))?;
                Err(conflict(py, scope, prior_digest, new_digest, fields))
            }
        }
    }

    /// The value stored under `scope` (a fresh object of the stored type),
    /// or None. A non-`Scope` raises InvalidArgumentType.
    #[pyo3(signature = (scope))]
    fn get<'py>(&self, scope: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        check_scope(scope)?;
        let found = with_key(scope, |key| lock(&self.store).find_entry(key))?;
        match found {
            Some(found) => Ok(Some(self.read(scope.py(), found)?)),
            None => Ok(None),
        }
    }

    /// `StoreStats(entries=, inserts=, replays=, conflicts=)`: counters since
    /// the store was created.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stats = lock(&self.store).stats();
        construct!(py, cache::store_stats_type(py), {
            entries: stats.entries,
            inserts: stats.inserts,
            replays: stats.replays,
            conflicts: stats.conflicts,
        })
    }

    /// Number of stored scopes.
    fn __len__(&self) -> usize {
        lock(&self.store).len()
    }

    /// False for anything that is not a `Scope`; else whether it is stored.
    fn __contains__(&self, scope: &Bound<'_, PyAny>) -> PyResult<bool> {
        if !is_scope(scope)? {
            return Ok(false);
        }
        with_key(scope, |key| lock(&self.store).contains(key))
    }
}
