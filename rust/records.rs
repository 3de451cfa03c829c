//! The Rust mirror of the journal record schema (`python/replaycore/records.py`).
//!
//! Records borrow their strings from the bytes they were decoded from, so
//! decoding a frame allocates nothing but the `content_refs` list. Decoding
//! follows msgspec's rules for the Python Structs: unknown fields are ignored,
//! a missing required field, a value of the wrong type or an unknown payload
//! kind is an error, and integers must fit in an `i64` (the Structs say so
//! too). What msgspec validates without the reducer reading it is validated
//! here too (SPEC 6.1): `Custom.data` as msgspec decodes `Any` (UTF-8 of
//! every string, hashable keys, timestamp extensions), unknown fields for
//! their syntax, and every value for nesting deeper than
//! [`MAX_DEPTH`](crate::msgpack::MAX_DEPTH). A test in `tests/` round-trips every kind through both sides.

use crate::msgpack::{Malformed, Reader, Writer};

/// The journal schema version this build understands.
pub const SCHEMA_VERSION: i64 = 1;

/// Every payload kind, as its wire tag.
pub const KINDS: [&str; 12] = [
    "checkpoint",
    "recovery",
    "effect_intent",
    "effect_result",
    "output_intent",
    "output_result",
    "output_dedupe",
    "output_reconciliation",
    "output_event",
    "run_lifecycle",
    "terminal_result",
    "custom",
];

/// Bytes that do not decode to a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Offset within the decoded bytes.
    pub offset: usize,
    /// What was wrong.
    pub message: String,
    /// The payload kind, when it is one this schema does not know.
    pub unknown_kind: Option<String>,
}

impl From<Malformed> for DecodeError {
    fn from(err: Malformed) -> Self {
        DecodeError {
            offset: err.offset,
            message: err.message,
            unknown_kind: None,
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.unknown_kind {
            Some(kind) => write!(f, "unknown record kind {kind:?}"),
            None => write!(f, "not a record: {} at byte {}", self.message, self.offset),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A list of strings left in its encoded form: checked when the record is
/// decoded (every item a valid UTF-8 string), read again when iterated, so
/// decoding a record allocates nothing for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StrList<'a> {
    /// The encoded items, after the array header.
    raw: &'a [u8],
    len: usize,
}

impl<'a> StrList<'a> {
    /// Read and check an array of strings at the reader's position.
    fn read(r: &mut Reader<'a>) -> Result<Self, Malformed> {
        let len = r.read_array_len()?;
        let start = r.pos();
        for _ in 0..len {
            r.read_str()?;
        }
        Ok(StrList {
            raw: r.slice(start, r.pos()),
            len,
        })
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is no item.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The items, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut r = Reader::new(self.raw);
        (0..self.len).map_while(move |_| r.read_str().ok())
    }
}

/// A side effect a recovery pass found started but not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSideEffect<'a> {
    pub effect_id: &'a str,
    pub intent_record_id: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub dedupe_key: Option<&'a str>,
    pub reason: &'a str,
}

/// A checkpoint payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint<'a> {
    pub checkpoint_seq: i64,
    pub covers_journal_seq: i64,
    pub loop_state: &'a str,
    pub created_at_ms: i64,
    pub content_ref_manifest: StrList<'a>,
}

/// An output reconciliation payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputReconciliation<'a> {
    pub delivery_id: &'a str,
    pub intent_record_id: &'a str,
    pub dedupe_key: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub external_operation_id: Option<&'a str>,
    pub terminal_status: &'a str,
    pub reason: &'a str,
    pub decision: &'a str,
    pub resend_allowed: bool,
}

/// The payload of a record, tagged on the wire by `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload<'a> {
    Checkpoint(Checkpoint<'a>),
    Recovery {
        unsafe_pending: Vec<PendingSideEffect<'a>>,
    },
    EffectIntent {
        effect_id: &'a str,
        effect_kind: &'a str,
        idempotency_key: Option<&'a str>,
        dedupe_key: Option<&'a str>,
    },
    EffectResult {
        effect_id: &'a str,
        status: &'a str,
        output_ref: Option<&'a str>,
    },
    OutputIntent {
        delivery_id: &'a str,
        sink_ref: &'a str,
        dedupe_key: &'a str,
        idempotency_key: Option<&'a str>,
    },
    OutputResult {
        delivery_id: &'a str,
        status: &'a str,
        external_operation_id: Option<&'a str>,
    },
    OutputDedupe {
        dedupe_key: &'a str,
        prior_external_operation_id: Option<&'a str>,
        prior_terminal_status: &'a str,
    },
    OutputReconciliation(OutputReconciliation<'a>),
    OutputEvent {
        delivery_id: &'a str,
        event: &'a str,
    },
    RunLifecycle {
        status: &'a str,
    },
    TerminalResult {
        effect_id: &'a str,
        terminal_status: &'a str,
    },
    /// Harness-defined data; `data` is the raw encoded value (empty when absent).
    Custom {
        name: &'a str,
        data: &'a [u8],
    },
}

impl Payload<'_> {
    /// The wire tag of this payload.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::Checkpoint(_) => "checkpoint",
            Payload::Recovery { .. } => "recovery",
            Payload::EffectIntent { .. } => "effect_intent",
            Payload::EffectResult { .. } => "effect_result",
            Payload::OutputIntent { .. } => "output_intent",
            Payload::OutputResult { .. } => "output_result",
            Payload::OutputDedupe { .. } => "output_dedupe",
            Payload::OutputReconciliation(_) => "output_reconciliation",
            Payload::OutputEvent { .. } => "output_event",
            Payload::RunLifecycle { .. } => "run_lifecycle",
            Payload::TerminalResult { .. } => "terminal_result",
            Payload::Custom { .. } => "custom",
        }
    }
}

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub schema: i64,
    pub record_id: &'a str,
    pub journal_seq: i64,
    pub run_id: &'a str,
    pub at_ms: i64,
    pub idempotency_key: Option<&'a str>,
    pub dedupe_key: Option<&'a str>,
    pub content_refs: StrList<'a>,
    pub payload: Payload<'a>,
}

fn missing(r: &Reader<'_>, name: &str) -> DecodeError {
    DecodeError::from(r.error(format!("object is missing required field `{name}`")))
}

fn required<T>(r: &Reader<'_>, value: Option<T>, name: &str) -> Result<T, DecodeError> {
    value.ok_or_else(|| missing(r, name))
}

/// Fields of every payload kind, collected in one pass over the payload map.
#[derive(Default)]
struct Fields<'a> {
    s: [Option<&'a str>; 14],
    o: [Option<Option<&'a str>>; 6],
    i: [Option<i64>; 3],
    resend_allowed: Option<bool>,
    manifest: Option<StrList<'a>>,
    pending: Option<Vec<PendingSideEffect<'a>>>,
    data: Option<&'a [u8]>,
}

// Slots of `Fields::s` (required strings) and `Fields::o` (optional strings).
const S_EFFECT_ID: usize = 0;
const S_EFFECT_KIND: usize = 1;
const S_STATUS: usize = 2;
const S_DELIVERY_ID: usize = 3;
const S_SINK_REF: usize = 4;
const S_DEDUPE_KEY: usize = 5;
const S_PRIOR_TERMINAL_STATUS: usize = 6;
const S_INTENT_RECORD_ID: usize = 7;
const S_TERMINAL_STATUS: usize = 8;
const S_REASON: usize = 9;
const S_DECISION: usize = 10;
const S_EVENT: usize = 11;
const S_NAME: usize = 12;
const S_LOOP_STATE: usize = 13;
const O_IDEMPOTENCY_KEY: usize = 0;
const O_DEDUPE_KEY: usize = 1;
const O_OUTPUT_REF: usize = 2;
const O_EXTERNAL_OPERATION_ID: usize = 3;
const O_PRIOR_EXTERNAL_OPERATION_ID: usize = 4;
const I_CHECKPOINT_SEQ: usize = 0;
const I_COVERS_JOURNAL_SEQ: usize = 1;
const I_CREATED_AT_MS: usize = 2;

/// What a payload field is, for the kind being decoded.
#[derive(Clone, Copy)]
enum Slot {
    Str(usize),
    OptStr(usize),
    Int(usize),
    Bool,
    Manifest,
    Pending,
    Data,
    Ignore,
}

// Kind indexes into KINDS.
const K_CHECKPOINT: usize = 0;
const K_RECOVERY: usize = 1;
const K_EFFECT_INTENT: usize = 2;
const K_EFFECT_RESULT: usize = 3;
const K_OUTPUT_INTENT: usize = 4;
const K_OUTPUT_RESULT: usize = 5;
const K_OUTPUT_DEDUPE: usize = 6;
const K_OUTPUT_RECONCILIATION: usize = 7;
const K_OUTPUT_EVENT: usize = 8;
const K_RUN_LIFECYCLE: usize = 9;
const K_TERMINAL_RESULT: usize = 10;
const K_CUSTOM: usize = 11;

/// Each kind's fields in declaration order (the order msgspec writes),
/// with their encoded keys, for the in-order fast path of `decode_payload`.
const FIELD_ORDER: [&[(&[u8], Slot)]; 12] = [
    // K_CHECKPOINT
    &[
        (b"\xaecheckpoint_seq", Slot::Int(I_CHECKPOINT_SEQ)),
        (b"\xb2covers_journal_seq", Slot::Int(I_COVERS_JOURNAL_SEQ)),
        (b"\xaaloop_state", Slot::Str(S_LOOP_STATE)),
        (b"\xadcreated_at_ms", Slot::Int(I_CREATED_AT_MS)),
        (b"\xb4content_ref_manifest", Slot::Manifest),
    ],
    // K_RECOVERY
    &[(b"\xaeunsafe_pending", Slot::Pending)],
    // K_EFFECT_INTENT
    &[
        (b"\xa9effect_id", Slot::Str(S_EFFECT_ID)),
        (b"\xabeffect_kind", Slot::Str(S_EFFECT_KIND)),
        (b"\xafidempotency_key", Slot::OptStr(O_IDEMPOTENCY_KEY)),
        (b"\xaadedupe_key", Slot::OptStr(O_DEDUPE_KEY)),
    ],
    // K_EFFECT_RESULT
    &[
        (b"\xa9effect_id", Slot::Str(S_EFFECT_ID)),
        (b"\xa6status", Slot::Str(S_STATUS)),
        (b"\xaaoutput_ref", Slot::OptStr(O_OUTPUT_REF)),
    ],
    // K_OUTPUT_INTENT
    &[
        (b"\xabdelivery_id", Slot::Str(S_DELIVERY_ID)),
        (b"\xa8sink_ref", Slot::Str(S_SINK_REF)),
        (b"\xaadedupe_key", Slot::Str(S_DEDUPE_KEY)),
        (b"\xafidempotency_key", Slot::OptStr(O_IDEMPOTENCY_KEY)),
    ],
    // K_OUTPUT_RESULT
    &[
        (b"\xabdelivery_id", Slot::Str(S_DELIVERY_ID)),
        (b"\xa6status", Slot::Str(S_STATUS)),
        (
            b"\xb5external_operation_id",
            Slot::OptStr(O_EXTERNAL_OPERATION_ID),
        ),
    ],
    // K_OUTPUT_DEDUPE
    &[
        (b"\xaadedupe_key", Slot::Str(S_DEDUPE_KEY)),
        (
            b"\xbbprior_external_operation_id",
            Slot::OptStr(O_PRIOR_EXTERNAL_OPERATION_ID),
        ),
        (
            b"\xb5prior_terminal_status",
            Slot::Str(S_PRIOR_TERMINAL_STATUS),
        ),
    ],
    // K_OUTPUT_RECONCILIATION
    &[
        (b"\xabdelivery_id", Slot::Str(S_DELIVERY_ID)),
        (b"\xb0intent_record_id", Slot::Str(S_INTENT_RECORD_ID)),
        (b"\xaadedupe_key", Slot::Str(S_DEDUPE_KEY)),
        (b"\xafidempotency_key", Slot::OptStr(O_IDEMPOTENCY_KEY)),
        (
            b"\xb5external_operation_id",
            Slot::OptStr(O_EXTERNAL_OPERATION_ID),
        ),
        (b"\xafterminal_status", Slot::Str(S_TERMINAL_STATUS)),
        (b"\xa6reason", Slot::Str(S_REASON)),
        (b"\xa8decision", Slot::Str(S_DECISION)),
        (b"\xaeresend_allowed", Slot::Bool),
    ],
    // K_OUTPUT_EVENT
    &[
        (b"\xabdelivery_id", Slot::Str(S_DELIVERY_ID)),
        (b"\xa5event", Slot::Str(S_EVENT)),
    ],
    // K_RUN_LIFECYCLE
    &[(b"\xa6status", Slot::Str(S_STATUS))],
    // K_TERMINAL_RESULT
    &[
        (b"\xa9effect_id", Slot::Str(S_EFFECT_ID)),
        (b"\xafterminal_status", Slot::Str(S_TERMINAL_STATUS)),
    ],
    // K_CUSTOM
    &[(b"\xa4name", Slot::Str(S_NAME)), (b"\xa4data", Slot::Data)],
];

/// The record's keys in declaration order, encoded (see `FIELD_ORDER`).
const RECORD_KEYS: [&[u8]; 9] = [
    b"\xa6schema",
    b"\xa9record_id",
    b"\xabjournal_seq",
    b"\xa6run_id",
    b"\xa5at_ms",
    b"\xafidempotency_key",
    b"\xaadedupe_key",
    b"\xaccontent_refs",
    b"\xa7payload",
];

/// The slot of payload field `key` for the kind at index `kind`: the key is
/// matched on its raw bytes (field names are ASCII; an unknown key is skipped
/// without looking further, as msgspec does).
fn slot(kind: usize, key: &[u8]) -> Slot {
    use Slot::*;
    let is = |kinds: &[usize]| kinds.contains(&kind);
    match key {
        b"effect_id" if is(&[K_EFFECT_INTENT, K_EFFECT_RESULT, K_TERMINAL_RESULT]) => {
            Str(S_EFFECT_ID)
        }
        b"effect_kind" if kind == K_EFFECT_INTENT => Str(S_EFFECT_KIND),
        b"idempotency_key" if is(&[K_EFFECT_INTENT, K_OUTPUT_INTENT, K_OUTPUT_RECONCILIATION]) => {
            OptStr(O_IDEMPOTENCY_KEY)
        }
        b"dedupe_key" if kind == K_EFFECT_INTENT => OptStr(O_DEDUPE_KEY),
        b"dedupe_key" if is(&[K_OUTPUT_INTENT, K_OUTPUT_DEDUPE, K_OUTPUT_RECONCILIATION]) => {
            Str(S_DEDUPE_KEY)
        }
        b"status" if is(&[K_EFFECT_RESULT, K_OUTPUT_RESULT, K_RUN_LIFECYCLE]) => Str(S_STATUS),
        b"output_ref" if kind == K_EFFECT_RESULT => OptStr(O_OUTPUT_REF),
        b"delivery_id"
            if is(&[
                K_OUTPUT_INTENT,
                K_OUTPUT_RESULT,
                K_OUTPUT_RECONCILIATION,
                K_OUTPUT_EVENT,
            ]) =>
        {
            Str(S_DELIVERY_ID)
        }
        b"sink_ref" if kind == K_OUTPUT_INTENT => Str(S_SINK_REF),
        b"external_operation_id" if is(&[K_OUTPUT_RESULT, K_OUTPUT_RECONCILIATION]) => {
            OptStr(O_EXTERNAL_OPERATION_ID)
        }
        b"prior_external_operation_id" if kind == K_OUTPUT_DEDUPE => {
            OptStr(O_PRIOR_EXTERNAL_OPERATION_ID)
        }
        b"prior_terminal_status" if kind == K_OUTPUT_DEDUPE => Str(S_PRIOR_TERMINAL_STATUS),
        b"intent_record_id" if kind == K_OUTPUT_RECONCILIATION => Str(S_INTENT_RECORD_ID),
        b"terminal_status" if is(&[K_OUTPUT_RECONCILIATION, K_TERMINAL_RESULT]) => {
            Str(S_TERMINAL_STATUS)
        }
        b"reason" if kind == K_OUTPUT_RECONCILIATION => Str(S_REASON),
        b"decision" if kind == K_OUTPUT_RECONCILIATION => Str(S_DECISION),
        b"resend_allowed" if kind == K_OUTPUT_RECONCILIATION => Bool,
        b"event" if kind == K_OUTPUT_EVENT => Str(S_EVENT),
        b"name" if kind == K_CUSTOM => Str(S_NAME),
        b"data" if kind == K_CUSTOM => Data,
        b"checkpoint_seq" if kind == K_CHECKPOINT => Int(I_CHECKPOINT_SEQ),
        b"covers_journal_seq" if kind == K_CHECKPOINT => Int(I_COVERS_JOURNAL_SEQ),
        b"loop_state" if kind == K_CHECKPOINT => Str(S_LOOP_STATE),
        b"created_at_ms" if kind == K_CHECKPOINT => Int(I_CREATED_AT_MS),
        b"content_ref_manifest" if kind == K_CHECKPOINT => Manifest,
        b"unsafe_pending" if kind == K_RECOVERY => Pending,
        _ => Ignore,
    }
}

fn read_pending<'a>(r: &mut Reader<'a>) -> Result<Vec<PendingSideEffect<'a>>, DecodeError> {
    let len = r.read_array_len()?;
    let mut out = Vec::with_capacity(len.min(16));
    for _ in 0..len {
        let entries = r.read_map_len()?;
        let (mut effect_id, mut intent_record_id, mut reason) = (None, None, None);
        let (mut idempotency_key, mut dedupe_key) = (None, None);
        for _ in 0..entries {
            match r.read_key()? {
                b"effect_id" => effect_id = Some(r.read_str()?),
                b"intent_record_id" => intent_record_id = Some(r.read_str()?),
                b"reason" => reason = Some(r.read_str()?),
                b"idempotency_key" => idempotency_key = r.read_opt_str()?,
                b"dedupe_key" => dedupe_key = r.read_opt_str()?,
                _ => r.skip(5)?,
            }
        }
        out.push(PendingSideEffect {
            effect_id: required(r, effect_id, "effect_id")?,
            intent_record_id: required(r, intent_record_id, "intent_record_id")?,
            idempotency_key,
            dedupe_key,
            reason: required(r, reason, "reason")?,
        });
    }
    Ok(out)
}

/// The index in [`KINDS`] of a payload tag, or the unknown-kind error.
fn kind_index(kind: &str, r: &Reader<'_>) -> Result<usize, DecodeError> {
    KINDS
        .iter()
        .position(|k| *k == kind)
        .ok_or_else(|| DecodeError {
            offset: r.pos(),
            message: format!("unknown record kind {kind:?}"),
            unknown_kind: Some(kind.to_owned()),
        })
}

/// Find the payload's `kind` tag without decoding anything else.
fn find_kind(r: &mut Reader<'_>) -> Result<usize, DecodeError> {
    let entries = r.read_map_len()?;
    let mut kind = None;
    for _ in 0..entries {
        if r.read_key()? == b"kind" {
            kind = Some(r.read_str()?);
        } else {
            r.skip(3)?;
        }
    }
    let kind = kind.ok_or_else(|| missing(r, "kind"))?;
    kind_index(kind, r)
}

/// Decode the payload map at the reader's position, leaving the reader
/// after it. msgspec writes the tag first, so one pass usually does; a tag
/// found later costs a second pass.
fn decode_payload<'a>(r: &mut Reader<'a>) -> Result<Payload<'a>, DecodeError> {
    let start = r.pos();
    let entries = r.read_map_len()?;
    let mut first_done = false;
    let kind = if entries > 0 && r.eat(b"\xa4kind") {
        let kind = r.read_str()?;
        first_done = true;
        kind_index(kind, r)?
    } else {
        let kind = find_kind(&mut Reader::at(r.buf(), start))?;
        *r = Reader::at(r.buf(), start);
        r.read_map_len()?;
        kind
    };
    let entries = entries - usize::from(first_done);
    let mut f = Fields::default();
    let order = FIELD_ORDER.get(kind).copied().unwrap_or(&[]);
    let mut next = 0;
    for _ in 0..entries {
        // Fast path: the field msgspec writes next, matched as encoded bytes.
        let found = match order.get(next) {
            Some(&(encoded, slot)) if r.eat(encoded) => {
                next += 1;
                slot
            }
            _ => {
                let key = r.read_key()?;
                if key == b"kind" {
                    // A repeated tag must name the same kind.
                    if kind_index(r.read_str()?, r)? != kind {
                        return Err(r.error("payload kind given twice, differently").into());
                    }
                    continue;
                }
                slot(kind, key)
            }
        };
        match found {
            Slot::Str(i) => f.s[i] = Some(r.read_str()?),
            Slot::OptStr(i) => f.o[i] = Some(r.read_opt_str()?),
            Slot::Int(i) => f.i[i] = Some(r.read_int()?),
            Slot::Bool => f.resend_allowed = Some(r.read_bool()?),
            Slot::Manifest => f.manifest = Some(StrList::read(r)?),
            Slot::Pending => f.pending = Some(read_pending(r)?),
            Slot::Data => {
                let from = r.pos();
                r.skip_any(3)?;
                f.data = Some(r.slice(from, r.pos()));
            }
            Slot::Ignore => r.skip(3)?,
        }
    }
    let manifest = f.manifest.take().unwrap_or_default();
    let unsafe_pending = f.pending.take().unwrap_or_default();
    let r = &*r;
    let s = |i: usize, name: &str| required(r, f.s[i], name);
    let o = |i: usize| f.o[i].flatten();
    let int = |i: usize, name: &str| required(r, f.i[i], name);
    Ok(match kind {
        K_CHECKPOINT => Payload::Checkpoint(Checkpoint {
            checkpoint_seq: int(I_CHECKPOINT_SEQ, "checkpoint_seq")?,
            covers_journal_seq: int(I_COVERS_JOURNAL_SEQ, "covers_journal_seq")?,
            loop_state: s(S_LOOP_STATE, "loop_state")?,
            created_at_ms: int(I_CREATED_AT_MS, "created_at_ms")?,
            content_ref_manifest: manifest,
        }),
        K_RECOVERY => Payload::Recovery { unsafe_pending },
        K_EFFECT_INTENT => Payload::EffectIntent {
            effect_id: s(S_EFFECT_ID, "effect_id")?,
            effect_kind: s(S_EFFECT_KIND, "effect_kind")?,
            idempotency_key: o(O_IDEMPOTENCY_KEY),
            dedupe_key: o(O_DEDUPE_KEY),
        },
        K_EFFECT_RESULT => Payload::EffectResult {
            effect_id: s(S_EFFECT_ID, "effect_id")?,
            status: s(S_STATUS, "status")?,
            output_ref: o(O_OUTPUT_REF),
        },
        K_OUTPUT_INTENT => Payload::OutputIntent {
            delivery_id: s(S_DELIVERY_ID, "delivery_id")?,
            sink_ref: s(S_SINK_REF, "sink_ref")?,
            dedupe_key: s(S_DEDUPE_KEY, "dedupe_key")?,
            idempotency_key: o(O_IDEMPOTENCY_KEY),
        },
        K_OUTPUT_RESULT => Payload::OutputResult {
            delivery_id: s(S_DELIVERY_ID, "delivery_id")?,
            status: s(S_STATUS, "status")?,
            external_operation_id: o(O_EXTERNAL_OPERATION_ID),
        },
        K_OUTPUT_DEDUPE => Payload::OutputDedupe {
            dedupe_key: s(S_DEDUPE_KEY, "dedupe_key")?,
            prior_external_operation_id: o(O_PRIOR_EXTERNAL_OPERATION_ID),
            prior_terminal_status: s(S_PRIOR_TERMINAL_STATUS, "prior_terminal_status")?,
        },
        K_OUTPUT_RECONCILIATION => Payload::OutputReconciliation(OutputReconciliation {
            delivery_id: s(S_DELIVERY_ID, "delivery_id")?,
            intent_record_id: s(S_INTENT_RECORD_ID, "intent_record_id")?,
            dedupe_key: s(S_DEDUPE_KEY, "dedupe_key")?,
            idempotency_key: o(O_IDEMPOTENCY_KEY),
            external_operation_id: o(O_EXTERNAL_OPERATION_ID),
            terminal_status: s(S_TERMINAL_STATUS, "terminal_status")?,
            reason: s(S_REASON, "reason")?,
            decision: s(S_DECISION, "decision")?,
            resend_allowed: required(r, f.resend_allowed, "resend_allowed")?,
        }),
        K_OUTPUT_EVENT => Payload::OutputEvent {
            delivery_id: s(S_DELIVERY_ID, "delivery_id")?,
            event: s(S_EVENT, "event")?,
        },
        K_RUN_LIFECYCLE => Payload::RunLifecycle {
            status: s(S_STATUS, "status")?,
        },
        K_TERMINAL_RESULT => Payload::TerminalResult {
            effect_id: s(S_EFFECT_ID, "effect_id")?,
            terminal_status: s(S_TERMINAL_STATUS, "terminal_status")?,
        },
        _ => Payload::Custom {
            name: s(S_NAME, "name")?,
            data: f.data.unwrap_or(&[]),
        },
    })
}

/// The payload kind of bytes that failed to decode, when it is a string this
/// schema does not know, whatever else is wrong with the record (the
/// reference reads it from a schema-less decode of the same bytes).
fn sniff_unknown_kind(buf: &[u8]) -> Option<String> {
    // The reference decodes the bytes as `Any`: every key and value is
    // validated as such, and the last of repeated keys wins.
    let mut r = Reader::new(buf);
    let mut payload_at = None;
    for _ in 0..r.read_map_len().ok()? {
        let is_payload = match r.clone().read_str() {
            Ok(key) => {
                r.read_str().ok()?;
                key == "payload"
            }
            Err(_) => {
                r.skip_any(2).ok()?;
                false
            }
        };
        let at = r.pos();
        r.skip_any(2).ok()?;
        if is_payload {
            payload_at = Some(at);
        }
    }
    if !r.at_end() {
        return None;
    }
    let mut p = Reader::at(buf, payload_at?);
    let mut kind = None;
    for _ in 0..p.read_map_len().ok()? {
        let is_kind = match p.clone().read_str() {
            Ok(key) => {
                p.read_str().ok()?;
                key == "kind"
            }
            Err(_) => {
                p.skip_any(3).ok()?;
                false
            }
        };
        if is_kind {
            kind = Some(p.clone().read_str().ok());
        }
        p.skip_any(3).ok()?;
    }
    kind.flatten()
        .filter(|k| !KINDS.contains(k))
        .map(str::to_owned)
}

/// Decode one msgpack-encoded record, borrowing its strings from `buf`.
///
/// The whole buffer must be the record: trailing bytes are an error, as they
/// are for msgspec. When the payload kind is unknown the error names it.
pub fn decode_msgpack(buf: &[u8]) -> Result<Record<'_>, DecodeError> {
    decode_record_fields(buf).map_err(|mut err| {
        if err.unknown_kind.is_none() {
            err.unknown_kind = sniff_unknown_kind(buf);
        }
        err
    })
}

fn decode_record_fields(buf: &[u8]) -> Result<Record<'_>, DecodeError> {
    let mut r = Reader::new(buf);
    let entries = r.read_map_len()?;
    let mut schema = SCHEMA_VERSION;
    let (mut record_id, mut journal_seq, mut run_id) = (None, None, None);
    let mut at_ms = 0;
    let (mut idempotency_key, mut dedupe_key) = (None, None);
    let mut content_refs = StrList::default();
    let mut payload = None;
    let mut next = 0;
    for _ in 0..entries {
        // Fast path: the key msgspec writes next, matched as encoded bytes.
        let field = match RECORD_KEYS.get(next) {
            Some(encoded) if r.eat(encoded) => {
                next += 1;
                next - 1
            }
            _ => match r.read_key()? {
                b"schema" => 0,
                b"record_id" => 1,
                b"journal_seq" => 2,
                b"run_id" => 3,
                b"at_ms" => 4,
                b"idempotency_key" => 5,
                b"dedupe_key" => 6,
                b"content_refs" => 7,
                b"payload" => 8,
                _ => usize::MAX,
            },
        };
        match field {
            0 => schema = r.read_int()?,
            1 => record_id = Some(r.read_str()?),
            2 => journal_seq = Some(r.read_int()?),
            3 => run_id = Some(r.read_str()?),
            4 => at_ms = r.read_int()?,
            5 => idempotency_key = r.read_opt_str()?,
            6 => dedupe_key = r.read_opt_str()?,
            7 => content_refs = StrList::read(&mut r)?,
            8 => payload = Some(decode_payload(&mut r)?),
            _ => r.skip(2)?,
        }
    }
    if !r.at_end() {
        return Err(r.error("trailing bytes after the record").into());
    }
    Ok(Record {
        schema,
        record_id: required(&r, record_id, "record_id")?,
        journal_seq: required(&r, journal_seq, "journal_seq")?,
        run_id: required(&r, run_id, "run_id")?,
        at_ms,
        idempotency_key,
        dedupe_key,
        content_refs,
        payload: required(&r, payload, "payload")?,
    })
}

fn write_str_list(w: &mut Writer, items: &StrList<'_>) {
    w.array(items.len());
    for item in items.iter() {
        w.str(item);
    }
}

fn write_payload(w: &mut Writer, payload: &Payload<'_>) {
    // msgspec writes the tag first, then the fields in declaration order.
    macro_rules! fields {
        ($n:expr) => {{
            w.map($n + 1);
            w.str("kind");
            w.str(payload.kind());
        }};
    }
    match payload {
        Payload::Checkpoint(c) => {
            fields!(5);
            w.str("checkpoint_seq");
            w.int(c.checkpoint_seq);
            w.str("covers_journal_seq");
            w.int(c.covers_journal_seq);
            w.str("loop_state");
            w.str(c.loop_state);
            w.str("created_at_ms");
            w.int(c.created_at_ms);
            w.str("content_ref_manifest");
            write_str_list(w, &c.content_ref_manifest);
        }
        Payload::Recovery { unsafe_pending } => {
            fields!(1);
            w.str("unsafe_pending");
            w.array(unsafe_pending.len());
            for p in unsafe_pending {
                w.map(5);
                w.str("effect_id");
                w.str(p.effect_id);
                w.str("intent_record_id");
                w.str(p.intent_record_id);
                w.str("idempotency_key");
                w.opt_str(p.idempotency_key);
                w.str("dedupe_key");
                w.opt_str(p.dedupe_key);
                w.str("reason");
                w.str(p.reason);
            }
        }
        Payload::EffectIntent {
            effect_id,
            effect_kind,
            idempotency_key,
            dedupe_key,
        } => {
            fields!(4);
            w.str("effect_id");
            w.str(effect_id);
            w.str("effect_kind");
            w.str(effect_kind);
            w.str("idempotency_key");
            w.opt_str(*idempotency_key);
            w.str("dedupe_key");
            w.opt_str(*dedupe_key);
        }
        Payload::EffectResult {
            effect_id,
            status,
            output_ref,
        } => {
            fields!(3);
            w.str("effect_id");
            w.str(effect_id);
            w.str("status");
            w.str(status);
            w.str("output_ref");
            w.opt_str(*output_ref);
        }
        Payload::OutputIntent {
            delivery_id,
            sink_ref,
            dedupe_key,
            idempotency_key,
        } => {
            fields!(4);
            w.str("delivery_id");
            w.str(delivery_id);
            w.str("sink_ref");
            w.str(sink_ref);
            w.str("dedupe_key");
            w.str(dedupe_key);
            w.str("idempotency_key");
            w.opt_str(*idempotency_key);
        }
        Payload::OutputResult {
            delivery_id,
            status,
            external_operation_id,
        } => {
            fields!(3);
            w.str("delivery_id");
            w.str(delivery_id);
            w.str("status");
            w.str(status);
            w.str("external_operation_id");
            w.opt_str(*external_operation_id);
        }
        Payload::OutputDedupe {
            dedupe_key,
            prior_external_operation_id,
            prior_terminal_status,
        } => {
            fields!(3);
            w.str("dedupe_key");
            w.str(dedupe_key);
            w.str("prior_external_operation_id");
            w.opt_str(*prior_external_operation_id);
            w.str("prior_terminal_status");
            w.str(prior_terminal_status);
        }
        Payload::OutputReconciliation(o) => {
            fields!(9);
            w.str("delivery_id");
            w.str(o.delivery_id);
            w.str("intent_record_id");
            w.str(o.intent_record_id);
            w.str("dedupe_key");
            w.str(o.dedupe_key);
            w.str("idempotency_key");
            w.opt_str(o.idempotency_key);
            w.str("external_operation_id");
            w.opt_str(o.external_operation_id);
            w.str("terminal_status");
            w.str(o.terminal_status);
            w.str("reason");
            w.str(o.reason);
            w.str("decision");
            w.str(o.decision);
            w.str("resend_allowed");
            w.bool(o.resend_allowed);
        }
        Payload::OutputEvent { delivery_id, event } => {
            fields!(2);
            w.str("delivery_id");
            w.str(delivery_id);
            w.str("event");
            w.str(event);
        }
        Payload::RunLifecycle { status } => {
            fields!(1);
            w.str("status");
            w.str(status);
        }
        Payload::TerminalResult {
            effect_id,
            terminal_status,
        } => {
            fields!(2);
            w.str("effect_id");
            w.str(effect_id);
            w.str("terminal_status");
            w.str(terminal_status);
        }
        Payload::Custom { name, data } => {
            fields!(2);
            w.str("name");
            w.str(name);
            w.str("data");
            if data.is_empty() {
                w.nil();
            } else {
                // Already msgpack; canonical when it came from a canonical body.
                w.out.extend_from_slice(data);
            }
        }
    }
}

/// The canonical encoding of `record`, byte for byte what
/// `replaycore.records.encode_canonical` gives for the same record (every
/// field, in declaration order, the payload's tag first). `Custom.data` is
/// copied as it was decoded.
pub fn encode_canonical(record: &Record<'_>) -> Vec<u8> {
    let mut w = Writer::new();
    w.map(9);
    w.str("schema");
    w.int(record.schema);
    w.str("record_id");
    w.str(record.record_id);
    w.str("journal_seq");
    w.int(record.journal_seq);
    w.str("run_id");
    w.str(record.run_id);
    w.str("at_ms");
    w.int(record.at_ms);
    w.str("idempotency_key");
    w.opt_str(record.idempotency_key);
    w.str("dedupe_key");
    w.opt_str(record.dedupe_key);
    w.str("content_refs");
    write_str_list(&mut w, &record.content_refs);
    w.str("payload");
    write_payload(&mut w, &record.payload);
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record with `payload_fields` (key, value writer) after `kind`.
    fn encode(record_id: &str, seq: i64, kind: &str, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut w = Writer::new();
        crate::test_support::envelope(&mut w, record_id, seq, &["blob:1", "blob:2"]);
        w.map(fields.len() + 1);
        w.str("kind");
        w.str(kind);
        for (key, value) in fields {
            w.str(key);
            w.str(value);
        }
        w.out
    }

    #[test]
    fn decodes_and_reencodes_canonically() {
        let bytes = encode(
            "r1",
            7,
            "effect_result",
            &[("effect_id", "e"), ("status", "ok")],
        );
        let record = decode_msgpack(&bytes).unwrap();
        assert_eq!(record.record_id, "r1");
        assert_eq!(record.journal_seq, 7);
        assert_eq!(
            record.content_refs.iter().collect::<Vec<_>>(),
            ["blob:1", "blob:2"]
        );
        assert_eq!(
            record.payload,
            Payload::EffectResult {
                effect_id: "e",
                status: "ok",
                output_ref: None
            }
        );
        // the canonical form adds the missing optional field, in order
        let canonical = encode_canonical(&record);
        assert_eq!(decode_msgpack(&canonical).unwrap(), record);
        assert_eq!(
            encode_canonical(&decode_msgpack(&canonical).unwrap()),
            canonical
        );
    }

    #[test]
    fn fields_in_any_order_and_unknown_fields() {
        let mut w = Writer::new();
        w.map(5);
        w.str("payload");
        w.map(3);
        w.str("status");
        w.str("completed");
        w.str("future");
        w.array(1);
        w.int(5);
        w.str("kind");
        w.str("run_lifecycle");
        w.str("run_id");
        w.str("run");
        w.str("novel");
        w.nil();
        w.str("journal_seq");
        w.int(3);
        w.str("record_id");
        w.str("r");
        let record = decode_msgpack(&w.out).unwrap();
        assert_eq!(
            record.payload,
            Payload::RunLifecycle {
                status: "completed"
            }
        );
        assert_eq!(record.schema, SCHEMA_VERSION);
    }

    #[test]
    fn unknown_kind_is_named_and_bad_records_are_errors() {
        let err = decode_msgpack(&encode("r", 1, "telepathy", &[])).unwrap_err();
        assert_eq!(err.unknown_kind.as_deref(), Some("telepathy"));
        let err =
            decode_msgpack(&encode("r", 1, "effect_result", &[("status", "ok")])).unwrap_err();
        assert!(err.message.contains("effect_id"), "{err}");
        let mut trailing = encode("r", 1, "run_lifecycle", &[("status", "x")]);
        trailing.push(0xc0);
        assert!(decode_msgpack(&trailing).is_err());
        for cut in 0..trailing.len() - 1 {
            assert!(decode_msgpack(&trailing[..cut]).is_err());
        }
    }
}
