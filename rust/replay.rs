//! The replay reducer (SPEC section 7), in pure Rust.
//!
//! [`Reducer::apply`] applies the checks of SPEC 7.2 in their stated order to
//! one decoded [`Record`]; [`Reducer::finish`] runs SPEC 7.3 and returns an
//! owned [`Outcome`] that the bindings turn into a `ReplayResult`. The reducer
//! keeps a 128-bit digest per applied record, never the record itself.
//!
//! Every string that ends up in a result is spelled exactly as the reference
//! (`python/replaycore/reference/replay.py`) spells it: results of both
//! backends compare equal.
//!
//! Below the reducer sits the sequential driver every caller shares (the
//! bindings, the PostgreSQL path through `ReplayReducer.apply_many`, the unit
//! tests): [`feed`] one event of a framed walk, [`apply_bytes`] one record's
//! bytes, [`reduce_framed`] a framed buffer, [`reduce_path`] a journal file,
//! and [`SharedReducer`], a reducer shared between threads until it is
//! finished. The two-thread replay and the pool of `replay_many` are in
//! [`crate::pipeline`].

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::{Arc, Mutex};

use hashbrown::HashTable;

use crate::error::{Choice, Error};
use crate::frames;
use crate::journal::{self, FileEvent};
use crate::jsonl::LineEvent;
use crate::records::{decode_msgpack, Payload, Record};
use crate::sync::lock;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// Strings stored end to end in one buffer (each behind its length as a
/// LEB128 varint) and a hash table of their offsets with a small value.
///
/// The reducer keeps one of these per applied record: no allocation per
/// record and one free at the end instead of a million. A slot is 8 bytes
/// plus the value: the arena offset (40 bits) and 24 bits of the key's hash,
/// from which the table hash is rebuilt, so growing the table never reads
/// the keys again (reading them back in table order misses the cache on
/// every one).
#[derive(Clone)]
struct StrTable<V: Copy> {
    arena: Vec<u8>,
    table: HashTable<(u64, V)>,
    hasher: foldhash::fast::RandomState,
}

const OFFSET_BITS: u32 = 40;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;

/// The table hash of a slot, from the 24 hash bits it stores.
fn slot_hash(packed: u64) -> u64 {
    (packed >> OFFSET_BITS).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl<V: Copy> StrTable<V> {
    fn new() -> Self {
        StrTable {
            arena: Vec::new(),
            table: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn key_at(arena: &[u8], packed: u64) -> &[u8] {
        let mut pos = (packed & OFFSET_MASK) as usize;
        let mut len = 0usize;
        let mut shift = 0;
        while let Some(&byte) = arena.get(pos) {
            pos += 1;
            len |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 || shift > 63 {
                break;
            }
        }
        arena.get(pos..pos.saturating_add(len)).unwrap_or(&[])
    }

    /// The 24 hash bits of `key`, placed above the offset bits.
    fn fragment(&self, key: &str) -> u64 {
        (self.hasher.hash_one(key.as_bytes()) >> OFFSET_BITS) << OFFSET_BITS
    }

    /// The value stored for `key`, with `key`'s hash fragment for a
    /// following [`StrTable::insert_new`].
    fn get(&self, key: &str) -> (u64, Option<V>) {
        let fragment = self.fragment(key);
        let arena = &self.arena;
        let found = self
            .table
            .find(slot_hash(fragment), |&(packed, _)| {
                packed & !OFFSET_MASK == fragment && Self::key_at(arena, packed) == key.as_bytes()
            })
            .map(|&(_, value)| value);
        (fragment, found)
    }

    fn contains(&self, key: &str) -> bool {
        self.get(key).1.is_some()
    }

    /// Store `value` for `key`, which `get` just reported absent.
    fn insert_new(&mut self, fragment: u64, key: &str, value: V) {
        let offset = self.arena.len() as u64 & OFFSET_MASK;
        let mut len = key.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                self.arena.push(byte);
                break;
            }
            self.arena.push(byte | 0x80);
        }
        self.arena.extend_from_slice(key.as_bytes());
        let packed = fragment | offset;
        self.table
            .insert_unique(slot_hash(packed), (packed, value), |&(p, _)| slot_hash(p));
    }

    /// Store `value` for `key`, replacing any earlier value.
    fn insert(&mut self, key: &str, value: V) {
        let (fragment, found) = self.get(key);
        if found.is_none() {
            self.insert_new(fragment, key, value);
            return;
        }
        let arena = &self.arena;
        if let Some(slot) = self.table.find_mut(slot_hash(fragment), |&(packed, _)| {
            packed & !OFFSET_MASK == fragment && Self::key_at(arena, packed) == key.as_bytes()
        }) {
            slot.1 = value;
        }
    }
}

/// An open intent (an effect without its result, or an output delivery
/// without its result) packed in one allocation: `text` holds the id, the
/// intent's record id and two optional keys, end to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    text: Box<str>,
    lens: [u32; 4],
    present: u8,
    journal_seq: i64,
}

impl Packed {
    const IDEMPOTENCY: u8 = 1;
    const DEDUPE: u8 = 2;

    fn new(
        id: &str,
        record_id: &str,
        journal_seq: i64,
        idempotency_key: Option<&str>,
        dedupe_key: Option<&str>,
    ) -> Self {
        let parts = [
            id,
            record_id,
            idempotency_key.unwrap_or(""),
            dedupe_key.unwrap_or(""),
        ];
        let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut lens = [0u32; 4];
        for (len, part) in lens.iter_mut().zip(parts) {
            text.push_str(part);
            *len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        }
        let present = u8::from(idempotency_key.is_some()) * Self::IDEMPOTENCY
            + u8::from(dedupe_key.is_some()) * Self::DEDUPE;
        Packed {
            text: text.into_boxed_str(),
            lens,
            present,
            journal_seq,
        }
    }

    fn part(&self, index: usize) -> &str {
        let start: usize = self.lens[..index].iter().map(|&l| l as usize).sum();
        let len = self.lens.get(index).map_or(0, |&l| l as usize);
        self.text.get(start..start + len).unwrap_or("")
    }

    fn id(&self) -> &str {
        self.part(0)
    }

    fn record_id(&self) -> &str {
        self.part(1)
    }

    fn key(&self, flag: u8) -> Option<&str> {
        let index = if flag == Self::IDEMPOTENCY { 2 } else { 3 };
        (self.present & flag != 0).then(|| self.part(index))
    }

    fn retry_allowed(&self) -> bool {
        self.present != 0
    }

    fn to_pending(&self) -> Pending {
        Pending {
            effect_id: self.id().to_owned(),
            intent_record_id: self.record_id().to_owned(),
            idempotency_key: owned(self.key(Self::IDEMPOTENCY)),
            dedupe_key: owned(self.key(Self::DEDUPE)),
            reason: PENDING_REASON.to_owned(),
            retry_allowed: self.retry_allowed(),
        }
    }
}

/// Open intents by id; a later intent with the same id replaces the earlier.
#[derive(Default)]
struct OpenIntents {
    table: HashTable<Packed>,
    hasher: foldhash::fast::RandomState,
}

impl OpenIntents {
    fn insert(&mut self, intent: Packed) {
        self.remove(intent.id());
        let hasher = &self.hasher;
        self.table
            .insert_unique(hasher.hash_one(intent.id().as_bytes()), intent, |p| {
                hasher.hash_one(p.id().as_bytes())
            });
    }

    fn remove(&mut self, id: &str) {
        let hash = self.hasher.hash_one(id.as_bytes());
        if let Ok(entry) = self.table.find_entry(hash, |p| p.id() == id) {
            entry.remove();
        }
    }

    /// Every open intent, sorted by id. Ids are unique here (`insert`
    /// replaces), so an unstable sort gives the one order, with fewer moves.
    ///
    /// Each intent is sorted by a key held beside it: the 8 bytes of its id
    /// that follow the prefix every id shares, big-endian, so most
    /// comparisons compare two integers instead of following two pointers to
    /// the texts (ids such as `dlv-0004aa71aaa3` share a prefix and then
    /// differ within 8 bytes). Equal keys fall back to the whole ids, so the
    /// order is exactly that of the ids' bytes (Python's order of `str`).
    fn into_sorted(self) -> Vec<Packed> {
        let all: Vec<Packed> = self.table.into_iter().collect();
        let shared = all.first().map_or(0, |first| {
            all.iter().fold(first.id().len(), |len, p| {
                let (a, b) = (&first.id().as_bytes()[..len], p.id().as_bytes());
                a.iter().zip(b).take_while(|(x, y)| x == y).count()
            })
        });
        let mut keyed: Vec<(u64, Packed)> = all
            .into_iter()
            .map(|p| (sort_key(p.id().as_bytes().get(shared..).unwrap_or(&[])), p))
            .collect();
        keyed.sort_unstable_by(|(ka, a), (kb, b)| ka.cmp(kb).then_with(|| a.id().cmp(b.id())));
        keyed.into_iter().map(|(_, p)| p).collect()
    }
}

/// The first 8 bytes of `rest` as a big-endian integer, zero-padded: keys
/// order as the bytes do, and equal keys need a look at the whole texts.
fn sort_key(rest: &[u8]) -> u64 {
    let mut key = [0u8; 8];
    for (slot, byte) in key.iter_mut().zip(rest) {
        *slot = *byte;
    }
    u64::from_be_bytes(key)
}

const PENDING_REASON: &str = "effect intent has no terminal result in replay";
const DEDUPE_PROOF_REASON: &str = "completed dedupe proof found for output delivery";
const UNSAFE_OUTPUT_REASON: &str = "cannot resend output delivery without completed dedupe proof";
const TERMINAL_LIFECYCLE: [&str; 6] = [
    "completed",
    "failed",
    "cancelled",
    "run_completed",
    "run_failed",
    "run_cancelled",
];

/// Computes the digest a reducer keeps per applied record: XXH3-64 of the
/// record's canonical bytes, seeded per reducer so that no one can prepare
/// colliding records in advance.
#[derive(Debug, Clone, Copy)]
pub struct Digester {
    seed: u64,
}

impl Digester {
    /// The digest of a record's canonical bytes.
    pub fn digest(self, canonical: &[u8]) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(canonical, self.seed)
    }
}

/// Replay mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    Audit,
    /// The default.
    #[default]
    Resume,
    Repair,
}

impl Mode {
    /// The mode's name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Audit => "audit",
            Mode::Resume => "resume",
            Mode::Repair => "repair",
        }
    }
}

impl Choice for Mode {
    const ARGUMENT: &'static str = "mode";
    const ALL: &'static [Self] = &[Mode::Audit, Mode::Resume, Mode::Repair];

    fn name(self) -> &'static str {
        Mode::name(self)
    }
}

/// What to do about content refs that are not available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The default.
    #[default]
    Fail,
    RecoverableReplayGap,
    RequestHostRepair,
    Placeholder,
}

impl Policy {
    /// The policy's name.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Fail => "fail",
            Policy::RecoverableReplayGap => "recoverable_replay_gap",
            Policy::RequestHostRepair => "request_host_repair",
            Policy::Placeholder => "placeholder",
        }
    }
}

impl Choice for Policy {
    const ARGUMENT: &'static str = "missing_content_policy";
    const ALL: &'static [Self] = &[
        Policy::Fail,
        Policy::RecoverableReplayGap,
        Policy::RequestHostRepair,
        Policy::Placeholder,
    ];

    fn name(self) -> &'static str {
        Policy::name(self)
    }
}

/// Options of one replay.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// Whether a violation stops the replay (else it becomes a repair) and
    /// damage in a framed journal stops the read (else it is skipped).
    pub strict: bool,
    pub policy: Policy,
    /// The content refs the host can supply; `None` turns the check off.
    pub available: Option<RefSet>,
    /// The largest frame body a framed journal may declare.
    pub max_frame: u64,
    /// The longest line a JSON-lines journal may hold.
    pub max_line: u64,
}

impl Options {
    /// Options with the SPEC's defaults for `mode`: strict unless auditing,
    /// policy `fail`, no content-ref check, the default frame limit.
    pub fn new(mode: Mode) -> Self {
        Options {
            mode,
            strict: mode != Mode::Audit,
            policy: Policy::default(),
            available: None,
            max_frame: frames::DEFAULT_MAX_FRAME,
            max_line: crate::jsonl::DEFAULT_MAX_LINE,
        }
    }
}

/// The content refs a host can supply (`available_content_refs`): kept end
/// to end in one buffer with a compact table of offsets ([`StrTable`]), so
/// building it allocates nothing per ref and a lookup touches the table and
/// the bytes of the one ref it finds, not a separate allocation per string.
/// Shared, not copied, by clones: the options of every job of a
/// `replay_many` hold the one set the caller gave (each job used to copy
/// all of it).
#[derive(Clone)]
pub struct RefSet(Arc<StrTable<()>>);

impl Default for RefSet {
    /// An empty set.
    fn default() -> Self {
        RefSet(Arc::new(StrTable::new()))
    }
}

impl RefSet {
    /// Add `r` (again is harmless).
    pub fn insert(&mut self, r: &str) {
        Arc::make_mut(&mut self.0).insert(r, ());
    }

    /// Whether `r` is in the set.
    pub fn contains(&self, r: &str) -> bool {
        self.0.contains(r)
    }
}

impl std::fmt::Debug for RefSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RefSet({} bytes of refs)", self.0.arena.len())
    }
}

impl Default for Options {
    /// The options of a replay given no arguments (mode `resume`).
    fn default() -> Self {
        Options::new(Mode::default())
    }
}

/// A repair the host must make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    pub kind: &'static str,
    pub record_id: String,
    pub journal_seq: i64,
    pub reason: String,
    pub retry: &'static str,
}

/// A side effect without a terminal result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub effect_id: String,
    pub intent_record_id: String,
    pub idempotency_key: Option<String>,
    pub dedupe_key: Option<String>,
    pub reason: String,
    pub retry_allowed: bool,
}

/// An owned checkpoint payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointState {
    pub checkpoint_seq: i64,
    pub covers_journal_seq: i64,
    pub loop_state: String,
    pub created_at_ms: i64,
    pub content_ref_manifest: Vec<String>,
}

impl CheckpointState {
    /// Become a copy of `c`, reusing the strings already held: a journal
    /// with a checkpoint every few records replaces the state each time,
    /// and allocating every manifest entry anew cost more than checking it.
    fn assign(&mut self, c: &crate::records::Checkpoint<'_>) {
        self.checkpoint_seq = c.checkpoint_seq;
        self.covers_journal_seq = c.covers_journal_seq;
        self.created_at_ms = c.created_at_ms;
        self.loop_state.clear();
        self.loop_state.push_str(c.loop_state);
        let manifest = &mut self.content_ref_manifest;
        let mut count = 0;
        for (i, r) in c.content_ref_manifest.iter().enumerate() {
            match manifest.get_mut(i) {
                Some(held) => {
                    held.clear();
                    held.push_str(r);
                }
                None => manifest.push(r.to_owned()),
            }
            count = i + 1;
        }
        manifest.truncate(count);
    }
}

/// An owned output reconciliation, as read from the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    pub delivery_id: String,
    pub intent_record_id: String,
    pub dedupe_key: String,
    pub idempotency_key: Option<String>,
    pub external_operation_id: Option<String>,
    pub terminal_status: String,
    pub reason: String,
    pub decision: String,
    pub resend_allowed: bool,
}

/// An output delivery repair of the outcome: a reconciliation read from the
/// journal, or one decided at the end for a delivery still open. A decided
/// one keeps the open intent (its id, record id and keys in one allocation)
/// and shares its dedupe proof's strings: copying the four strings out and
/// the proof's two, for every one of thousands, was most of `finish`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputRepair {
    /// Boxed: it is rare, and unboxed it would more than double the size of
    /// every repair in a list of thousands of decided ones.
    Recorded(Box<Reconciliation>),
    /// Completed by a dedupe proof of its key: the proof's external
    /// operation id and terminal status.
    Proven {
        intent: Packed,
        operation: Option<Arc<str>>,
        status: Arc<str>,
    },
    /// No dedupe proof: the delivery cannot be resent safely.
    Unsafe { intent: Packed },
}

impl OutputRepair {
    pub fn delivery_id(&self) -> &str {
        match self {
            Self::Recorded(r) => &r.delivery_id,
            Self::Proven { intent, .. } | Self::Unsafe { intent } => intent.id(),
        }
    }

    pub fn intent_record_id(&self) -> &str {
        match self {
            Self::Recorded(r) => &r.intent_record_id,
            Self::Proven { intent, .. } | Self::Unsafe { intent } => intent.record_id(),
        }
    }

    pub fn dedupe_key(&self) -> &str {
        match self {
            Self::Recorded(r) => &r.dedupe_key,
            Self::Proven { intent, .. } | Self::Unsafe { intent } => {
                intent.key(Packed::DEDUPE).unwrap_or("")
            }
        }
    }

    pub fn idempotency_key(&self) -> Option<&str> {
        match self {
            Self::Recorded(r) => r.idempotency_key.as_deref(),
            Self::Proven { intent, .. } | Self::Unsafe { intent } => {
                intent.key(Packed::IDEMPOTENCY)
            }
        }
    }

    pub fn external_operation_id(&self) -> Option<&str> {
        match self {
            Self::Recorded(r) => r.external_operation_id.as_deref(),
            Self::Proven { operation, .. } => operation.as_deref(),
            Self::Unsafe { .. } => None,
        }
    }

    pub fn terminal_status(&self) -> &str {
        match self {
            Self::Recorded(r) => &r.terminal_status,
            Self::Proven { status, .. } => status,
            Self::Unsafe { .. } => "reconciliation_needed",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Self::Recorded(r) => &r.reason,
            Self::Proven { .. } => DEDUPE_PROOF_REASON,
            Self::Unsafe { .. } => UNSAFE_OUTPUT_REASON,
        }
    }

    pub fn decision(&self) -> &str {
        match self {
            Self::Recorded(r) => &r.decision,
            Self::Proven { .. } => "completed_by_dedupe_proof",
            Self::Unsafe { .. } => "unsafe_pending",
        }
    }

    pub fn resend_allowed(&self) -> bool {
        match self {
            Self::Recorded(r) => r.resend_allowed,
            Self::Proven { .. } | Self::Unsafe { .. } => false,
        }
    }
}

/// A record that breaks an invariant while replaying strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: &'static str,
    pub record_id: String,
    pub journal_seq: i64,
    pub message: String,
}

/// The result of a replay, as owned Rust data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub mode: Mode,
    pub complete: bool,
    pub resume_allowed: bool,
    pub latest_journal_seq: i64,
    pub terminal_status: Option<String>,
    pub unsafe_pending_side_effects: Vec<Pending>,
    pub missing_content_refs: Vec<String>,
    pub repair_needed: Vec<Repair>,
    pub output_delivery_repairs: Vec<OutputRepair>,
    pub latest_checkpoint: Option<CheckpointState>,
    pub torn_tail_bytes: u64,
    pub skipped_lines: u64,
    pub records_applied: u64,
    pub sequence_gaps: Vec<(i64, i64)>,
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

fn pending_kind(retry_allowed: bool) -> &'static str {
    if retry_allowed {
        "unsafe_pending_side_effect"
    } else {
        "non_idempotent_pending_side_effect"
    }
}

/// Folds one run's records into an [`Outcome`].
pub struct Reducer {
    options: Options,
    /// Per applied record id: XXH3-64 of its canonical bytes, seeded per
    /// reducer (so no one can prepare colliding records in advance).
    digests: StrTable<u64>,
    seed: u64,
    last_seq: i64,
    applied: u64,
    terminal: Option<String>,
    checkpoint: Option<CheckpointState>,
    pending: OpenIntents,
    unsafe_pending: Vec<Pending>,
    missing: FastSet<String>,
    repairs: Vec<Repair>,
    intents: OpenIntents,
    delivered: StrTable<()>,
    /// Dedupe proofs by key (an index into `proofs`; a later proof of a key
    /// takes the earlier one's place there).
    dedupes: StrTable<usize>,
    /// External operation id and terminal status of each proof. A status is
    /// shared with the proof before it when they are equal (most are).
    proofs: Vec<(Option<Arc<str>>, Arc<str>)>,
    reconciliations: FastMap<String, Box<Reconciliation>>,
    gaps: Vec<(i64, i64)>,
    torn_tail_bytes: u64,
    skipped_lines: u64,
}

impl Reducer {
    /// A fresh reducer.
    pub fn new(options: Options) -> Self {
        Reducer {
            options,
            digests: StrTable::new(),
            seed: foldhash::fast::RandomState::default().hash_one(0x7265_706c_6179u64),
            last_seq: 0,
            applied: 0,
            terminal: None,
            checkpoint: None,
            pending: OpenIntents::default(),
            unsafe_pending: Vec::new(),
            missing: FastSet::default(),
            repairs: Vec::new(),
            intents: OpenIntents::default(),
            delivered: StrTable::new(),
            dedupes: StrTable::new(),
            proofs: Vec::new(),
            reconciliations: FastMap::default(),
            gaps: Vec::new(),
            torn_tail_bytes: 0,
            skipped_lines: 0,
        }
    }

    /// The options this reducer runs with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Records applied so far.
    pub fn records_applied(&self) -> u64 {
        self.applied
    }

    /// The `journal_seq` of the last applied record (0 before any).
    pub fn latest_journal_seq(&self) -> i64 {
        self.last_seq
    }

    fn repair(&mut self, kind: &'static str, record_id: &str, seq: i64, reason: String) {
        self.repairs.push(Repair {
            kind,
            record_id: record_id.to_owned(),
            journal_seq: seq,
            reason,
            retry: "repair_needed",
        });
    }

    fn violation(
        &mut self,
        kind: &'static str,
        record: &Record<'_>,
        message: String,
    ) -> Result<(), Violation> {
        if self.options.strict {
            return Err(Violation {
                kind,
                record_id: record.record_id.to_owned(),
                journal_seq: record.journal_seq,
                message,
            });
        }
        self.repair(
            "replay_invariant_violation",
            record.record_id,
            record.journal_seq,
            message,
        );
        Ok(())
    }

    fn check_refs<'r>(&mut self, record: &Record<'_>, refs: impl Iterator<Item = &'r str>) {
        let Some(available) = &self.options.available else {
            return;
        };
        let mut found = Vec::new();
        for r in refs {
            if !available.contains(r) && !self.missing.contains(r) {
                self.missing.insert(r.to_owned());
                found.push(r);
            }
        }
        if self.options.policy == Policy::Placeholder {
            return;
        }
        for r in found {
            self.repairs.push(Repair {
                kind: "missing_content_ref",
                record_id: record.record_id.to_owned(),
                journal_seq: record.journal_seq,
                reason: format!(
                    "content ref {r} is not available (policy {})",
                    self.options.policy.name()
                ),
                retry: "user_action_needed",
            });
        }
    }

    /// Apply one record whose canonical encoding is `canonical`.
    ///
    /// A strict violation is returned as `Err` and leaves the state as it was
    /// (except an invalid checkpoint's own repair and missing refs, which the
    /// SPEC records before raising).
    pub fn apply(&mut self, record: &Record<'_>, canonical: &[u8]) -> Result<(), Violation> {
        let digest = self.digester().digest(canonical);
        self.apply_digested(record, digest)
    }

    /// What computes this reducer's record digests (it can run on another
    /// thread, ahead of [`Reducer::apply_digested`]).
    pub fn digester(&self) -> Digester {
        Digester { seed: self.seed }
    }

    /// [`Reducer::apply`] for a record whose digest was already computed by
    /// this reducer's [`Digester`].
    pub fn apply_digested(&mut self, record: &Record<'_>, digest: u64) -> Result<(), Violation> {
        let record_id = record.record_id;
        let seq = record.journal_seq;
        let payload = &record.payload;
        let sealed_ok = matches!(payload, Payload::Checkpoint(_) | Payload::Recovery { .. });
        let (id_fragment, prior) = self.digests.get(record_id);
        // 1. an idempotent duplicate is ignored, whatever its journal_seq
        if prior == Some(digest)
            && (record.idempotency_key.is_some() || record.dedupe_key.is_some() || sealed_ok)
        {
            return Ok(());
        }
        // 2. schema
        if record.schema != 1 {
            let message = format!("unsupported journal schema {}", record.schema);
            return self.violation("recovery_repair_needed", record, message);
        }
        // 3. any other reuse of a record_id
        if prior.is_some() {
            let message = "duplicate non-idempotent journal record".to_owned();
            return self.violation("invalid_state_transition", record, message);
        }
        // 4. order
        if seq <= self.last_seq {
            let message = "journal records must be strictly increasing".to_owned();
            return self.violation("invalid_state_transition", record, message);
        }
        // 5. sealed
        if self.terminal.is_some() && !sealed_ok {
            let message = "record after sealed terminal state".to_owned();
            return self.violation("invalid_state_transition", record, message);
        }
        // 6. content refs
        if !record.content_refs.is_empty() {
            self.check_refs(record, record.content_refs.iter());
        }
        // 7. kind effects
        match payload {
            Payload::Checkpoint(c) => {
                if !(0 <= c.covers_journal_seq && c.covers_journal_seq < seq) {
                    let message = format!(
                        "checkpoint covers journal_seq {}, outside 0..{}",
                        c.covers_journal_seq,
                        seq.saturating_sub(1)
                    );
                    self.repair("checkpoint_invalid", record_id, seq, message.clone());
                    if self.options.strict {
                        return Err(Violation {
                            kind: "checkpoint_invalid",
                            record_id: record_id.to_owned(),
                            journal_seq: seq,
                            message,
                        });
                    }
                    return Ok(());
                }
                self.check_refs(record, c.content_ref_manifest.iter());
                let newer = match &self.checkpoint {
                    None => true,
                    Some(l) => {
                        (c.covers_journal_seq, c.checkpoint_seq, c.created_at_ms)
                            > (l.covers_journal_seq, l.checkpoint_seq, l.created_at_ms)
                    }
                };
                if newer {
                    self.checkpoint.get_or_insert_default().assign(c);
                }
            }
            Payload::Recovery { unsafe_pending } => {
                for effect in unsafe_pending {
                    let retry_allowed =
                        effect.idempotency_key.is_some() || effect.dedupe_key.is_some();
                    self.unsafe_pending.push(Pending {
                        effect_id: effect.effect_id.to_owned(),
                        intent_record_id: effect.intent_record_id.to_owned(),
                        idempotency_key: owned(effect.idempotency_key),
                        dedupe_key: owned(effect.dedupe_key),
                        reason: effect.reason.to_owned(),
                        retry_allowed,
                    });
                    self.repair(
                        pending_kind(retry_allowed),
                        record_id,
                        seq,
                        effect.reason.to_owned(),
                    );
                }
            }
            Payload::EffectIntent {
                effect_id,
                idempotency_key,
                dedupe_key,
                ..
            } => {
                self.pending.insert(Packed::new(
                    effect_id,
                    record_id,
                    seq,
                    *idempotency_key,
                    *dedupe_key,
                ));
            }
            Payload::EffectResult { effect_id, .. } => {
                self.pending.remove(effect_id);
            }
            Payload::OutputIntent {
                delivery_id,
                dedupe_key,
                idempotency_key,
                ..
            } => {
                // An intent whose delivery already has a result never matters.
                if !self.delivered.contains(delivery_id) {
                    self.intents.insert(Packed::new(
                        delivery_id,
                        record_id,
                        seq,
                        *idempotency_key,
                        Some(dedupe_key),
                    ));
                }
            }
            Payload::OutputResult { delivery_id, .. } => {
                // A delivered intent needs no reconciliation: forget it now
                // instead of carrying it to the end of the journal.
                self.intents.remove(delivery_id);
                self.delivered.insert(delivery_id, ());
            }
            Payload::OutputDedupe {
                dedupe_key,
                prior_external_operation_id,
                prior_terminal_status,
            } => {
                let status = match self.proofs.last() {
                    Some((_, last)) if **last == **prior_terminal_status => Arc::clone(last),
                    _ => Arc::from(*prior_terminal_status),
                };
                let proof = (prior_external_operation_id.map(Arc::from), status);
                match self.dedupes.get(dedupe_key) {
                    (_, Some(held)) => {
                        if let Some(slot) = self.proofs.get_mut(held) {
                            *slot = proof;
                        }
                    }
                    (fragment, None) => {
                        self.dedupes
                            .insert_new(fragment, dedupe_key, self.proofs.len());
                        self.proofs.push(proof);
                    }
                }
            }
            Payload::OutputReconciliation(o) => {
                self.reconciliations.insert(
                    o.delivery_id.to_owned(),
                    Box::new(Reconciliation {
                        delivery_id: o.delivery_id.to_owned(),
                        intent_record_id: o.intent_record_id.to_owned(),
                        dedupe_key: o.dedupe_key.to_owned(),
                        idempotency_key: owned(o.idempotency_key),
                        external_operation_id: owned(o.external_operation_id),
                        terminal_status: o.terminal_status.to_owned(),
                        reason: o.reason.to_owned(),
                        decision: o.decision.to_owned(),
                        resend_allowed: o.resend_allowed,
                    }),
                );
                self.repair(
                    "output_delivery_reconciliation",
                    record_id,
                    seq,
                    o.reason.to_owned(),
                );
            }
            Payload::RunLifecycle { status } => {
                if TERMINAL_LIFECYCLE.contains(status) {
                    self.terminal = Some((*status).to_owned());
                }
            }
            Payload::TerminalResult {
                effect_id,
                terminal_status,
            } => {
                self.pending.remove(effect_id);
                self.terminal = Some((*terminal_status).to_owned());
            }
            Payload::OutputEvent { .. } | Payload::Custom { .. } => {}
        }
        // 8. remember the record
        if self.applied > 0 && seq > self.last_seq.saturating_add(1) {
            self.gaps.push((self.last_seq, seq));
        }
        self.last_seq = seq;
        self.digests.insert_new(id_fragment, record_id, digest);
        self.applied += 1;
        Ok(())
    }

    /// Record damaged bytes `start..end` that a non-strict reader skipped.
    pub fn corruption(&mut self, start: u64, end: u64, reason: &str) {
        let seq = self.last_seq;
        self.repair(
            "journal_corruption",
            "",
            seq,
            format!("{reason}; skipped bytes {start}..{end}"),
        );
    }

    /// Count a torn tail of `bytes` bytes.
    pub fn torn_tail(&mut self, bytes: u64) {
        self.torn_tail_bytes += bytes;
    }

    /// Count one JSON line that was blank or corrupt.
    pub fn skipped_line(&mut self) {
        self.skipped_lines += 1;
    }

    /// Run the finishing rules of SPEC 7.3 and return the outcome.
    pub fn finish(mut self) -> Outcome {
        let mut unsafe_pending = std::mem::take(&mut self.unsafe_pending);
        let pending: Vec<Pending> = std::mem::take(&mut self.pending)
            .into_sorted()
            .iter()
            .map(Packed::to_pending)
            .collect();
        for effect in pending {
            let (kind, record_id, reason) = (
                pending_kind(effect.retry_allowed),
                effect.intent_record_id.clone(),
                effect.reason.clone(),
            );
            unsafe_pending.push(effect);
            let seq = self.last_seq;
            self.repair(kind, &record_id, seq, reason);
        }
        let open_deliveries = std::mem::take(&mut self.intents).into_sorted();
        let mut output_repairs = Vec::with_capacity(open_deliveries.len());
        for intent in open_deliveries {
            if let Some(known) = self.reconciliations.remove(intent.id()) {
                output_repairs.push(OutputRepair::Recorded(known));
                continue;
            }
            let dedupe_key = intent.key(Packed::DEDUPE).unwrap_or("");
            let proof = self.dedupes.get(dedupe_key).1;
            if let Some((operation, status)) = proof.and_then(|i| self.proofs.get(i)) {
                output_repairs.push(OutputRepair::Proven {
                    operation: operation.clone(),
                    status: Arc::clone(status),
                    intent,
                });
                continue;
            }
            self.repair(
                "output_delivery_reconciliation",
                intent.record_id(),
                intent.journal_seq,
                UNSAFE_OUTPUT_REASON.to_owned(),
            );
            output_repairs.push(OutputRepair::Unsafe { intent });
        }
        let complete = self.repairs.is_empty()
            && self.missing.is_empty()
            && unsafe_pending.iter().all(|p| p.retry_allowed);
        let mut missing: Vec<String> = std::mem::take(&mut self.missing).into_iter().collect();
        missing.sort_unstable();
        let mode = self.options.mode;
        Outcome {
            mode,
            complete,
            resume_allowed: mode != Mode::Resume || complete,
            latest_journal_seq: self.last_seq,
            terminal_status: self.terminal,
            unsafe_pending_side_effects: unsafe_pending,
            missing_content_refs: missing,
            repair_needed: self.repairs,
            output_delivery_repairs: output_repairs,
            latest_checkpoint: self.checkpoint,
            torn_tail_bytes: self.torn_tail_bytes,
            skipped_lines: self.skipped_lines,
            records_applied: self.applied,
            sequence_gaps: self.gaps,
        }
    }
}

// -- the sequential driver -----------------------------------------------------

/// Apply one event of a framed journal walk: a record, a damaged range that
/// a non-strict walk skipped, or the torn tail.
pub fn feed(reducer: &mut Reducer, event: frames::Event<'_>) -> Result<(), Violation> {
    match event {
        frames::Event::Record { body, record, .. } => reducer.apply(&record, body),
        frames::Event::Corrupt { start, end, reason } => {
            reducer.corruption(start, end, &reason);
            Ok(())
        }
        frames::Event::Torn { bytes } => {
            reducer.torn_tail(bytes);
            Ok(())
        }
    }
}

/// Apply one record given as its canonical msgpack bytes (decode, digest,
/// reduce): `Error::Decode` for bytes that are not a record,
/// `Error::Violation` for a strict violation (the record is not applied).
pub fn apply_bytes(reducer: &mut Reducer, data: &[u8]) -> Result<(), Error> {
    let record = decode_msgpack(data)?;
    reducer.apply(&record, data)?;
    Ok(())
}

/// Feed a framed journal held in memory (starting with the magic) to
/// `reducer`, on this thread, with the reducer's `strict` and `max_frame`.
pub fn reduce_framed(reducer: &mut Reducer, data: &[u8]) -> Result<(), Error> {
    let Options {
        strict, max_frame, ..
    } = *reducer.options();
    frames::walk_slice(data, strict, max_frame, |event| feed(reducer, event))?;
    Ok(())
}

/// The error of a JSON line that decodes but has no canonical encoding (an
/// integer in `Custom.data` beyond 64 bits), as the reference raises it.
pub fn unencodable_line() -> Error {
    Error::value_error(
        "value",
        "value cannot be encoded canonically: an integer in a JSON line does not fit in 64 bits",
    )
}

/// Replay the journal file at `path` into `reducer` (the format by its
/// extension), streaming it on this thread.
///
/// In a JSON-lines journal a blank line is counted in `skipped_lines`, a torn
/// last line in `torn_tail_bytes`, and a corrupt line (SPEC 6.2) raises
/// `Error::Corruption` (its offset, its line number in the reason) when
/// strict, else becomes a `journal_corruption` repair and counts in
/// `skipped_lines`.
pub fn reduce_path(reducer: &mut Reducer, path: &Path) -> Result<(), Error> {
    let Options {
        strict,
        max_frame,
        max_line,
        ..
    } = *reducer.options();
    journal::walk_path(path, strict, max_frame, max_line, |event| match event {
        FileEvent::Frame(event) => feed(reducer, event).map_err(Error::from),
        FileEvent::Line(LineEvent::Record { record, canonical }) => {
            reducer.apply(&record, canonical).map_err(Error::from)
        }
        FileEvent::Line(LineEvent::Blank) => {
            reducer.skipped_line();
            Ok(())
        }
        FileEvent::Line(LineEvent::Corrupt { start, end, reason }) => {
            if strict {
                return Err(Error::Corruption {
                    offset: start,
                    reason,
                });
            }
            reducer.corruption(start, end, &reason);
            reducer.skipped_line();
            Ok(())
        }
        FileEvent::Line(LineEvent::Torn { bytes }) => {
            reducer.torn_tail(bytes);
            Ok(())
        }
        FileEvent::Line(LineEvent::Unencodable { .. }) => Err(unencodable_line()),
    })?;
    Ok(())
}

/// A reducer shared between threads until it is finished: every use after
/// [`SharedReducer::finish`] is `Error::Finished`.
pub struct SharedReducer {
    state: Mutex<Option<Reducer>>,
}

impl SharedReducer {
    /// A fresh reducer with `options`.
    pub fn new(options: Options) -> Self {
        SharedReducer {
            state: Mutex::new(Some(Reducer::new(options))),
        }
    }

    /// Run `f` on the live reducer (holding its lock), or `Error::Finished`.
    pub fn with<R>(&self, f: impl FnOnce(&mut Reducer) -> R) -> Result<R, Error> {
        match lock(&self.state).as_mut() {
            Some(reducer) => Ok(f(reducer)),
            None => Err(Error::Finished),
        }
    }

    /// [`SharedReducer::with`] for an `f` that can fail itself.
    pub fn try_with<R>(
        &self,
        f: impl FnOnce(&mut Reducer) -> Result<R, Error>,
    ) -> Result<R, Error> {
        self.with(f)?
    }

    /// Close the replay and return its outcome; the reducer is spent.
    pub fn finish(&self) -> Result<Outcome, Error> {
        let reducer = lock(&self.state).take().ok_or(Error::Finished)?;
        Ok(reducer.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{decode_msgpack, encode_canonical, StrList};

    fn record<'a>(id: &'a str, seq: i64, payload: Payload<'a>) -> Record<'a> {
        Record {
            schema: 1,
            record_id: id,
            journal_seq: seq,
            run_id: "run",
            at_ms: 0,
            idempotency_key: None,
            dedupe_key: None,
            content_refs: StrList::default(),
            payload,
        }
    }

    fn apply(reducer: &mut Reducer, record: &Record<'_>) -> Result<(), Violation> {
        let bytes = encode_canonical(record);
        let decoded = decode_msgpack(&bytes).expect("canonical bytes decode");
        reducer.apply(&decoded, &bytes)
    }

    fn intent(id: &str) -> Payload<'_> {
        Payload::EffectIntent {
            effect_id: id,
            effect_kind: "payment",
            idempotency_key: None,
            dedupe_key: None,
        }
    }

    #[test]
    fn pending_effect_needs_repair_at_finish() {
        let mut reducer = Reducer::new(Options::new(Mode::Resume));
        apply(&mut reducer, &record("r1", 1, intent("pay"))).unwrap();
        apply(&mut reducer, &record("r2", 2, intent("ok"))).unwrap();
        let result = Payload::EffectResult {
            effect_id: "ok",
            status: "done",
            output_ref: None,
        };
        apply(&mut reducer, &record("r3", 3, result)).unwrap();
        let outcome = reducer.finish();
        assert!(!outcome.complete);
        assert!(!outcome.resume_allowed);
        assert_eq!(outcome.unsafe_pending_side_effects.len(), 1);
        assert_eq!(outcome.unsafe_pending_side_effects[0].effect_id, "pay");
        assert_eq!(
            outcome.repair_needed[0].kind,
            "non_idempotent_pending_side_effect"
        );
        assert_eq!(outcome.repair_needed[0].journal_seq, 3);
    }

    #[test]
    fn open_deliveries_are_decided_from_their_packed_intents() {
        let mut reducer = Reducer::new(Options::new(Mode::Resume));
        let delivery = |id, key, idem| Payload::OutputIntent {
            delivery_id: id,
            sink_ref: "sink",
            dedupe_key: key,
            idempotency_key: idem,
        };
        let proof = Payload::OutputDedupe {
            dedupe_key: "k-proven",
            prior_external_operation_id: Some("op-7"),
            prior_terminal_status: "sent",
        };
        apply(
            &mut reducer,
            &record("r1", 1, delivery("d-b", "k-open", None)),
        )
        .unwrap();
        apply(
            &mut reducer,
            &record("r2", 2, delivery("d-a", "k-proven", Some("i-1"))),
        )
        .unwrap();
        apply(&mut reducer, &record("r3", 3, proof)).unwrap();
        let repairs = reducer.finish().output_delivery_repairs;
        let fields = |r: &OutputRepair| {
            (
                r.delivery_id().to_owned(),
                r.intent_record_id().to_owned(),
                r.dedupe_key().to_owned(),
                r.idempotency_key().map(str::to_owned),
                r.external_operation_id().map(str::to_owned),
                r.terminal_status().to_owned(),
                r.decision().to_owned(),
                r.resend_allowed(),
            )
        };
        let own = |s: &str| s.to_owned();
        assert_eq!(
            repairs.iter().map(fields).collect::<Vec<_>>(),
            vec![
                (
                    own("d-a"),
                    own("r2"),
                    own("k-proven"),
                    Some(own("i-1")),
                    Some(own("op-7")),
                    own("sent"),
                    own("completed_by_dedupe_proof"),
                    false
                ),
                (
                    own("d-b"),
                    own("r1"),
                    own("k-open"),
                    None,
                    None,
                    own("reconciliation_needed"),
                    own("unsafe_pending"),
                    false
                ),
            ]
        );
        assert_eq!(repairs[0].reason(), DEDUPE_PROOF_REASON);
        assert_eq!(repairs[1].reason(), UNSAFE_OUTPUT_REASON);
    }

    #[test]
    fn open_intents_come_out_in_the_byte_order_of_their_ids() {
        // Shared prefixes, ids equal in the 8 bytes after the prefix, ids
        // that are prefixes of others, NUL bytes (the key's padding), an
        // empty id and multi-byte UTF-8.
        let ids = [
            "dlv-0004aa71aaa3",
            "dlv-0004aa71aaa30",
            "dlv-0004aa71aaa2",
            "dlv-0004aa71",
            "dlv-0004aa71\0",
            "dlv-0004aa71\0\0x",
            "dlv-",
            "dlv-\u{e9}t\u{e9}",
            "dlv-\u{10348}",
            "dlv-zzzzzzzzzzzzzzzzzz1",
            "dlv-zzzzzzzzzzzzzzzzzz0",
            "",
        ];
        // With the empty id no prefix is shared; without it, "dlv-" is.
        for ids in [&ids[..], &ids[..ids.len() - 1]] {
            let mut open = OpenIntents::default();
            for (seq, id) in (1..).zip(ids) {
                open.insert(Packed::new(id, "r", seq, None, None));
            }
            let sorted: Vec<String> = open
                .into_sorted()
                .iter()
                .map(|p| p.id().to_owned())
                .collect();
            let mut expected: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
            expected.sort();
            assert_eq!(sorted, expected);
        }
        assert!(OpenIntents::default().into_sorted().is_empty());
        let mut one = OpenIntents::default();
        one.insert(Packed::new("only", "r", 1, None, None));
        assert_eq!(one.into_sorted()[0].id(), "only");
    }

    #[test]
    fn a_later_dedupe_proof_of_a_key_replaces_the_earlier() {
        let mut reducer = Reducer::new(Options::new(Mode::Audit));
        let proof = |key, operation, status| Payload::OutputDedupe {
            dedupe_key: key,
            prior_external_operation_id: operation,
            prior_terminal_status: status,
        };
        let delivery = |id, key| Payload::OutputIntent {
            delivery_id: id,
            sink_ref: "sink",
            dedupe_key: key,
            idempotency_key: None,
        };
        let records = [
            record("r1", 1, proof("k1", Some("op-old"), "sent")),
            record("r2", 2, proof("k2", None, "sent")),
            record("r3", 3, delivery("d1", "k1")),
            record("r4", 4, delivery("d2", "k2")),
            record("r5", 5, proof("k1", Some("op-new"), "confirmed")),
            record("r6", 6, proof("k2", Some("op-2"), "confirmed")),
            record("r7", 7, delivery("d3", "k3")),
        ];
        for r in &records {
            apply(&mut reducer, r).unwrap();
        }
        let repairs = reducer.finish().output_delivery_repairs;
        let seen: Vec<_> = repairs
            .iter()
            .map(|r| {
                (
                    r.delivery_id(),
                    r.external_operation_id(),
                    r.terminal_status(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("d1", Some("op-new"), "confirmed"),
                ("d2", Some("op-2"), "confirmed"),
                ("d3", None, "reconciliation_needed"),
            ]
        );
    }

    #[test]
    fn duplicates_strict_and_not() {
        let first = record("r1", 1, intent("a"));
        let mut strict = Reducer::new(Options::new(Mode::Resume));
        apply(&mut strict, &first).unwrap();
        let again = apply(&mut strict, &record("r1", 2, intent("b"))).unwrap_err();
        assert_eq!(again.message, "duplicate non-idempotent journal record");
        assert_eq!(strict.records_applied(), 1);

        let mut audit = Reducer::new(Options::new(Mode::Audit));
        apply(&mut audit, &first).unwrap();
        apply(&mut audit, &record("r1", 2, intent("b"))).unwrap();
        let mut keyed = first.clone();
        keyed.record_id = "k";
        keyed.journal_seq = 3;
        keyed.idempotency_key = Some("i");
        apply(&mut audit, &keyed).unwrap();
        apply(&mut audit, &keyed).unwrap(); // idempotent duplicate: ignored
        let outcome = audit.finish();
        assert_eq!(outcome.records_applied, 2);
        assert_eq!(outcome.repair_needed[0].kind, "replay_invariant_violation");
        assert_eq!(outcome.sequence_gaps, vec![(1, 3)]);
    }

    #[test]
    fn id_table_survives_growth() {
        let mut table: StrTable<u64> = StrTable::new();
        let ids: Vec<String> = (0..50_000).map(|i| format!("rec-{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            let (fragment, found) = table.get(id);
            assert!(found.is_none());
            table.insert_new(fragment, id, i as u64);
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(table.get(id).1, Some(i as u64));
        }
        assert_eq!(table.get("rec-x").1, None);
        let long = "x".repeat(300);
        table.insert(&long, 7);
        table.insert(&long, 9);
        assert_eq!(table.get(&long).1, Some(9));
    }

    // -- the sequential driver ---------------------------------------------

    fn custom(id: &str, seq: i64) -> Vec<u8> {
        let payload = Payload::Custom {
            name: "step",
            data: &[],
        };
        encode_canonical(&record(id, seq, payload))
    }

    fn framed(bodies: &[Vec<u8>]) -> Vec<u8> {
        let mut out = frames::MAGIC.to_vec();
        for body in bodies {
            frames::encode_frame(body, &mut out).expect("frame fits");
        }
        out
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("replaycore-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn options_take_the_spec_defaults_once() {
        for (mode, strict) in [
            (Mode::Audit, false),
            (Mode::Resume, true),
            (Mode::Repair, true),
        ] {
            let options = Options::new(mode);
            assert_eq!((options.mode, options.strict), (mode, strict));
            assert_eq!(options.policy, Policy::Fail);
            assert_eq!(options.max_frame, 64 * 1024 * 1024);
            assert!(options.available.is_none());
        }
        let default = Options::default();
        assert_eq!((default.mode, default.strict), (Mode::Resume, true));
    }

    #[test]
    fn mode_and_policy_parse_their_names_and_list_them_when_refusing() {
        for mode in Mode::ALL {
            assert_eq!(<Mode as Choice>::parse(mode.name()), Some(*mode));
        }
        for policy in Policy::ALL {
            assert_eq!(<Policy as Choice>::parse(policy.name()), Some(*policy));
        }
        assert_eq!(<Mode as Choice>::parse("Audit"), None);
        let err = Mode::refused("'fast'");
        assert_eq!(err.argument(), Some("mode"));
        assert_eq!(
            err.message(),
            "mode must be one of audit, resume, repair, got 'fast'"
        );
        let err = Policy::refused("None");
        assert_eq!(err.argument(), Some("missing_content_policy"));
        assert_eq!(
            err.message(),
            "missing_content_policy must be one of fail, recoverable_replay_gap, \
             request_host_repair, placeholder, got None"
        );
    }

    #[test]
    fn apply_bytes_decodes_digests_and_reduces() {
        let mut reducer = Reducer::new(Options::new(Mode::Resume));
        apply_bytes(&mut reducer, &custom("r1", 1)).unwrap();
        assert_eq!(reducer.records_applied(), 1);
        // An idempotent duplicate? No: a custom record without keys is not.
        let again = apply_bytes(&mut reducer, &custom("r1", 2)).unwrap_err();
        let Error::Violation(v) = &again else {
            panic!("{again:?}")
        };
        assert_eq!(
            (v.kind, v.record_id.as_str(), v.journal_seq),
            ("invalid_state_transition", "r1", 2)
        );
        let garbage = apply_bytes(&mut reducer, b"\x93\x01\x02\x03").unwrap_err();
        assert!(matches!(garbage, Error::Decode(_)), "{garbage:?}");
        // Neither failure was applied.
        assert_eq!(reducer.records_applied(), 1);
        assert_eq!(reducer.latest_journal_seq(), 1);
    }

    #[test]
    fn feed_applies_records_damage_and_a_torn_tail() {
        let bodies = [custom("a", 1), custom("b", 2), custom("c", 3)];
        let mut data = framed(&bodies);
        let second = 4 + 12 + bodies[0].len();
        data[second + 12] ^= 0xff; // the second body's first byte: CRC mismatch
        data.extend_from_slice(&[1, 2, 3, 4, 5]); // a torn tail
        let mut audit = Reducer::new(Options::new(Mode::Audit));
        reduce_framed(&mut audit, &data).unwrap();
        let outcome = audit.finish();
        assert_eq!(outcome.records_applied, 2);
        assert_eq!(outcome.latest_journal_seq, 3);
        assert_eq!(outcome.torn_tail_bytes, 5);
        assert_eq!(outcome.repair_needed.len(), 1);
        let repair = &outcome.repair_needed[0];
        assert_eq!(repair.kind, "journal_corruption");
        assert_eq!(repair.journal_seq, 1);
        let end = second + 12 + bodies[1].len();
        assert_eq!(
            repair.reason,
            format!("body CRC mismatch; skipped bytes {second}..{end}")
        );
        // Strictly, the damage stops the replay with its offset.
        let mut strict = Reducer::new(Options::new(Mode::Resume));
        let err = reduce_framed(&mut strict, &data).unwrap_err();
        assert_eq!(
            err,
            Error::Corruption {
                offset: second as u64,
                reason: "body CRC mismatch".to_owned(),
            }
        );
        assert_eq!(strict.records_applied(), 1);
    }

    #[test]
    fn reduce_framed_uses_the_reducers_frame_limit() {
        let data = framed(&[custom("a", 1)]);
        let mut options = Options::new(Mode::Resume);
        options.max_frame = 8;
        let mut reducer = Reducer::new(options);
        let err = reduce_framed(&mut reducer, &data).unwrap_err();
        let Error::Corruption { offset, reason } = err else {
            panic!("{err:?}")
        };
        assert_eq!(offset, 4);
        assert_eq!(reason, frames::too_long(custom("a", 1).len() as u64, 8));
    }

    #[test]
    fn reduce_path_reads_either_format_and_names_what_fails() {
        let rcj = tmp("driver.rcj");
        std::fs::write(&rcj, framed(&[custom("a", 1), custom("b", 2)])).unwrap();
        let jsonl = tmp("driver.jsonl");
        let line = |id: &str, seq: i64, data: &str| {
            format!(
                "{{\"record_id\":\"{id}\",\"journal_seq\":{seq},\"run_id\":\"run\",\
                 \"payload\":{{\"kind\":\"custom\",\"name\":\"step\",\"data\":{data}}}}}\n"
            )
        };
        let text = format!("{}\n{}", line("a", 1, "null"), line("b", 2, "null"));
        std::fs::write(&jsonl, text).unwrap();
        let mut from_rcj = Reducer::new(Options::new(Mode::Resume));
        reduce_path(&mut from_rcj, &rcj).unwrap();
        let mut from_jsonl = Reducer::new(Options::new(Mode::Resume));
        reduce_path(&mut from_jsonl, &jsonl).unwrap();
        let (from_rcj, from_jsonl) = (from_rcj.finish(), from_jsonl.finish());
        assert_eq!(from_rcj.records_applied, 2);
        assert_eq!(from_jsonl.skipped_lines, 1);
        assert_eq!(
            Outcome {
                skipped_lines: 0,
                ..from_jsonl
            },
            from_rcj
        );
        // A line with no canonical encoding is the reference's InvalidArgument.
        std::fs::write(&jsonl, line("a", 1, "99999999999999999999999")).unwrap();
        let err = reduce_path(&mut Reducer::new(Options::new(Mode::Audit)), &jsonl).unwrap_err();
        assert_eq!(err, unencodable_line());
        assert_eq!(err.argument(), Some("value"));
        // A missing file is the OS's error.
        let missing = tmp("missing.rcj");
        let err = reduce_path(&mut Reducer::new(Options::new(Mode::Audit)), &missing).unwrap_err();
        let Error::Io(io) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        std::fs::remove_file(&rcj).unwrap();
        std::fs::remove_file(&jsonl).unwrap();
    }

    #[test]
    fn a_shared_reducer_is_spent_by_finish() {
        let shared = SharedReducer::new(Options::new(Mode::Resume));
        shared
            .try_with(|reducer| apply_bytes(reducer, &custom("a", 1)))
            .unwrap();
        assert_eq!(shared.with(|r| r.records_applied()), Ok(1));
        let err = shared
            .try_with(|reducer| apply_bytes(reducer, b"junk"))
            .unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err:?}");
        let outcome = shared.finish().unwrap();
        assert_eq!(outcome.records_applied, 1);
        assert_eq!(shared.with(|r| r.records_applied()), Err(Error::Finished));
        assert_eq!(shared.finish().unwrap_err(), Error::Finished);
        assert_eq!(
            Error::Finished.to_string(),
            "the reducer is spent: finish() was already called"
        );
    }

    #[test]
    fn clones_of_a_ref_set_share_it_until_one_is_changed() {
        let mut set = RefSet::default();
        set.insert("a");
        let shared = set.clone();
        assert!(Arc::ptr_eq(&set.0, &shared.0));
        let mut grown = set.clone();
        grown.insert("c");
        assert!(!Arc::ptr_eq(&set.0, &grown.0));
        assert!(grown.contains("c") && grown.contains("a"));
        assert!(!set.contains("c") && !shared.contains("c") && shared.contains("a"));
    }
}
