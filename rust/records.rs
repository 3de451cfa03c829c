//! The Rust mirror of the journal record schema (`python/replaycore/records.py`).
//!
//! Records borrow their strings from the bytes they were decoded from, so
//! decoding a frame allocates nothing but the `content_refs` list. Decoding
//! follows msgspec's rules for the Python Structs: unknown fields are ignored,
//! a missing required field, a value of the wrong type or an unknown payload
//! kind is an error, and integers must fit in an `i64` (the Structs say so
//! too). A test in `tests/` round-trips every kind through both sides.

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
    pub content_ref_manifest: Vec<&'a str>,
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
    pub content_refs: Vec<&'a str>,
    pub payload: Payload<'a>,
}

fn missing(r: &Reader<'_>, name: &str) -> DecodeError {
    DecodeError::from(r.error(format!("object is missing required field `{name}`")))
}

fn required<T>(r: &Reader<'_>, value: Option<T>, name: &str) -> Result<T, DecodeError> {
    value.ok_or_else(|| missing(r, name))
}

fn read_str_list<'a>(r: &mut Reader<'a>) -> Result<Vec<&'a str>, Malformed> {
    let len = r.read_array_len()?;
    // Each item takes at least one byte: never reserve more than what is left.
    let mut out = Vec::with_capacity(len.min(64));
    for _ in 0..len {
        out.push(r.read_str()?);
    }
    Ok(out)
}

/// Fields of every payload kind, collected in one pass over the payload map.
#[derive(Default)]
struct Fields<'a> {
    s: [Option<&'a str>; 14],
    o: [Option<Option<&'a str>>; 6],
    i: [Option<i64>; 3],
    resend_allowed: Option<bool>,
    manifest: Option<Vec<&'a str>>,
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

fn slot(kind: &str, key: &str) -> Slot {
    use Slot::*;
    match (kind, key) {
        ("checkpoint", "checkpoint_seq") => Int(I_CHECKPOINT_SEQ),
        ("checkpoint", "covers_journal_seq") => Int(I_COVERS_JOURNAL_SEQ),
        ("checkpoint", "loop_state") => Str(S_LOOP_STATE),
        ("checkpoint", "created_at_ms") => Int(I_CREATED_AT_MS),
        ("checkpoint", "content_ref_manifest") => Manifest,
        ("recovery", "unsafe_pending") => Pending,
        ("effect_intent" | "effect_result" | "terminal_result", "effect_id") => Str(S_EFFECT_ID),
        ("effect_intent", "effect_kind") => Str(S_EFFECT_KIND),
        ("effect_intent" | "output_intent" | "output_reconciliation", "idempotency_key") => {
            OptStr(O_IDEMPOTENCY_KEY)
        }
        ("effect_intent", "dedupe_key") => OptStr(O_DEDUPE_KEY),
        ("effect_result" | "output_result" | "run_lifecycle", "status") => Str(S_STATUS),
        ("effect_result", "output_ref") => OptStr(O_OUTPUT_REF),
        (
            "output_intent" | "output_result" | "output_reconciliation" | "output_event",
            "delivery_id",
        ) => Str(S_DELIVERY_ID),
        ("output_intent", "sink_ref") => Str(S_SINK_REF),
        ("output_intent" | "output_dedupe" | "output_reconciliation", "dedupe_key") => {
            Str(S_DEDUPE_KEY)
        }
        ("output_result" | "output_reconciliation", "external_operation_id") => {
            OptStr(O_EXTERNAL_OPERATION_ID)
        }
        ("output_dedupe", "prior_external_operation_id") => OptStr(O_PRIOR_EXTERNAL_OPERATION_ID),
        ("output_dedupe", "prior_terminal_status") => Str(S_PRIOR_TERMINAL_STATUS),
        ("output_reconciliation", "intent_record_id") => Str(S_INTENT_RECORD_ID),
        ("output_reconciliation" | "terminal_result", "terminal_status") => Str(S_TERMINAL_STATUS),
        ("output_reconciliation", "reason") => Str(S_REASON),
        ("output_reconciliation", "decision") => Str(S_DECISION),
        ("output_reconciliation", "resend_allowed") => Bool,
        ("output_event", "event") => Str(S_EVENT),
        ("custom", "name") => Str(S_NAME),
        ("custom", "data") => Data,
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
            match r.read_str()? {
                "effect_id" => effect_id = Some(r.read_str()?),
                "intent_record_id" => intent_record_id = Some(r.read_str()?),
                "reason" => reason = Some(r.read_str()?),
                "idempotency_key" => idempotency_key = r.read_opt_str()?,
                "dedupe_key" => dedupe_key = r.read_opt_str()?,
                _ => r.skip()?,
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

/// Find the payload's `kind` tag without decoding anything else.
fn find_kind<'a>(r: &mut Reader<'a>) -> Result<&'a str, DecodeError> {
    let entries = r.read_map_len()?;
    let mut kind = None;
    for _ in 0..entries {
        if r.read_str()? == "kind" {
            kind = Some(r.read_str()?);
        } else {
            r.skip()?;
        }
    }
    let kind = kind.ok_or_else(|| missing(r, "kind"))?;
    if !KINDS.contains(&kind) {
        return Err(DecodeError {
            offset: r.pos(),
            message: format!("unknown record kind {kind:?}"),
            unknown_kind: Some(kind.to_owned()),
        });
    }
    Ok(kind)
}

fn decode_payload<'a>(buf: &'a [u8], start: usize) -> Result<Payload<'a>, DecodeError> {
    let kind = find_kind(&mut Reader::at(buf, start))?;
    let mut r = Reader::at(buf, start);
    let entries = r.read_map_len()?;
    let mut f = Fields::default();
    for _ in 0..entries {
        let key = r.read_str()?;
        match slot(kind, key) {
            Slot::Str(i) => f.s[i] = Some(r.read_str()?),
            Slot::OptStr(i) => f.o[i] = Some(r.read_opt_str()?),
            Slot::Int(i) => f.i[i] = Some(r.read_int()?),
            Slot::Bool => f.resend_allowed = Some(r.read_bool()?),
            Slot::Manifest => f.manifest = Some(read_str_list(&mut r)?),
            Slot::Pending => f.pending = Some(read_pending(&mut r)?),
            Slot::Data => {
                let from = r.pos();
                r.skip()?;
                f.data = Some(r.slice(from, r.pos()));
            }
            Slot::Ignore => r.skip()?,
        }
    }
    let manifest = f.manifest.take().unwrap_or_default();
    let unsafe_pending = f.pending.take().unwrap_or_default();
    let r = &r;
    let s = |i: usize, name: &str| required(r, f.s[i], name);
    let o = |i: usize| f.o[i].flatten();
    let int = |i: usize, name: &str| required(r, f.i[i], name);
    Ok(match kind {
        "checkpoint" => Payload::Checkpoint(Checkpoint {
            checkpoint_seq: int(I_CHECKPOINT_SEQ, "checkpoint_seq")?,
            covers_journal_seq: int(I_COVERS_JOURNAL_SEQ, "covers_journal_seq")?,
            loop_state: s(S_LOOP_STATE, "loop_state")?,
            created_at_ms: int(I_CREATED_AT_MS, "created_at_ms")?,
            content_ref_manifest: manifest,
        }),
        "recovery" => Payload::Recovery { unsafe_pending },
        "effect_intent" => Payload::EffectIntent {
            effect_id: s(S_EFFECT_ID, "effect_id")?,
            effect_kind: s(S_EFFECT_KIND, "effect_kind")?,
            idempotency_key: o(O_IDEMPOTENCY_KEY),
            dedupe_key: o(O_DEDUPE_KEY),
        },
        "effect_result" => Payload::EffectResult {
            effect_id: s(S_EFFECT_ID, "effect_id")?,
            status: s(S_STATUS, "status")?,
            output_ref: o(O_OUTPUT_REF),
        },
        "output_intent" => Payload::OutputIntent {
            delivery_id: s(S_DELIVERY_ID, "delivery_id")?,
            sink_ref: s(S_SINK_REF, "sink_ref")?,
            dedupe_key: s(S_DEDUPE_KEY, "dedupe_key")?,
            idempotency_key: o(O_IDEMPOTENCY_KEY),
        },
        "output_result" => Payload::OutputResult {
            delivery_id: s(S_DELIVERY_ID, "delivery_id")?,
            status: s(S_STATUS, "status")?,
            external_operation_id: o(O_EXTERNAL_OPERATION_ID),
        },
        "output_dedupe" => Payload::OutputDedupe {
            dedupe_key: s(S_DEDUPE_KEY, "dedupe_key")?,
            prior_external_operation_id: o(O_PRIOR_EXTERNAL_OPERATION_ID),
            prior_terminal_status: s(S_PRIOR_TERMINAL_STATUS, "prior_terminal_status")?,
        },
        "output_reconciliation" => Payload::OutputReconciliation(OutputReconciliation {
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
        "output_event" => Payload::OutputEvent {
            delivery_id: s(S_DELIVERY_ID, "delivery_id")?,
            event: s(S_EVENT, "event")?,
        },
        "run_lifecycle" => Payload::RunLifecycle {
            status: s(S_STATUS, "status")?,
        },
        "terminal_result" => Payload::TerminalResult {
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
    let mut r = Reader::new(buf);
    let mut payload_at = None;
    for _ in 0..r.read_map_len().ok()? {
        let is_payload = match r.clone().read_str() {
            Ok(key) => {
                r.read_str().ok()?;
                key == "payload"
            }
            Err(_) => {
                r.skip().ok()?;
                false
            }
        };
        if is_payload {
            payload_at = Some(r.pos());
        }
        r.skip().ok()?;
    }
    if !r.at_end() {
        return None;
    }
    let mut p = Reader::at(buf, payload_at?);
    let mut kind = None;
    for _ in 0..p.read_map_len().ok()? {
        let key = p.read_str().ok()?;
        if key == "kind" {
            kind = Some(p.read_str().ok()?);
        } else {
            p.skip().ok()?;
        }
    }
    kind.filter(|k| !KINDS.contains(k)).map(str::to_owned)
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
    let mut content_refs = Vec::new();
    let mut payload_at = None;
    for _ in 0..entries {
        match r.read_str()? {
            "schema" => schema = r.read_int()?,
            "record_id" => record_id = Some(r.read_str()?),
            "journal_seq" => journal_seq = Some(r.read_int()?),
            "run_id" => run_id = Some(r.read_str()?),
            "at_ms" => at_ms = r.read_int()?,
            "idempotency_key" => idempotency_key = r.read_opt_str()?,
            "dedupe_key" => dedupe_key = r.read_opt_str()?,
            "content_refs" => content_refs = read_str_list(&mut r)?,
            "payload" => {
                payload_at = Some(r.pos());
                r.skip()?;
            }
            _ => r.skip()?,
        }
    }
    if !r.at_end() {
        return Err(r.error("trailing bytes after the record").into());
    }
    let record_id = required(&r, record_id, "record_id")?;
    let journal_seq = required(&r, journal_seq, "journal_seq")?;
    let run_id = required(&r, run_id, "run_id")?;
    let payload_at = required(&r, payload_at, "payload")?;
    Ok(Record {
        schema,
        record_id,
        journal_seq,
        run_id,
        at_ms,
        idempotency_key,
        dedupe_key,
        content_refs,
        payload: decode_payload(buf, payload_at)?,
    })
}

fn write_str_list(w: &mut Writer, items: &[&str]) {
    w.array(items.len());
    for item in items {
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
