//! The in-memory content-equality store (SPEC section 4).
//!
//! An entry is the canonical bytes of a value plus the index of its type (0
//! is `bytes`; the bindings number the Struct types they meet). Python
//! objects never enter this module, so a million entries are a million byte
//! strings, invisible to the garbage collector.
//!
//! The layout is CPython's compact dict: an index of positions into an
//! insertion-ordered entry list, the bytes in an append-only arena. Entries
//! put in order are read back in memory order, inserting allocates nothing
//! per entry, and dropping a store frees a few chunks.

use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use crate::error::Error;

/// Type index of raw `bytes` values.
pub const BYTES_TYPE: u32 = 0;

/// Scope keys up to this size are built on the stack.
pub const INLINE: usize = 128;

/// Write `len` as LEB128 (7 bits per byte, high bit set on all but the
/// last) at `out[at..]`; returns the position after it.
fn put_len(out: &mut [u8], at: usize, mut len: usize) -> usize {
    let mut at = at;
    loop {
        let low = (len & 0x7f) as u8;
        len >>= 7;
        if let Some(slot) = out.get_mut(at) {
            *slot = if len == 0 { low } else { low | 0x80 };
        }
        at += 1;
        if len == 0 {
            return at;
        }
    }
}

fn put_bytes(out: &mut [u8], at: usize, data: &[u8]) -> usize {
    let end = at + data.len();
    if let Some(slot) = out.get_mut(at..end) {
        slot.copy_from_slice(data);
    }
    end
}

/// Room for the two LEB128 lengths of a scope key.
const LEN_ROOM: usize = 20;

fn write_scope_key(out: &mut [u8], [client, adapter, key_part]: [&[u8]; 3]) -> usize {
    let at = put_len(out, 0, client.len());
    let at = put_bytes(out, at, client);
    let at = put_len(out, at, adapter.len());
    let at = put_bytes(out, at, adapter);
    put_bytes(out, at, key_part)
}

/// Call `f` with the map key of a scope `(client_id, adapter_id,
/// idempotency_key)`: the first two parts each preceded by its length
/// (LEB128), then the last part, so no two different triples share a key.
/// Short keys are built on the stack.
pub fn with_scope_key<R>(parts: [&[u8]; 3], f: impl FnOnce(&[u8]) -> R) -> R {
    let room = LEN_ROOM + parts.iter().map(|part| part.len()).sum::<usize>();
    if room <= INLINE {
        let mut buf = [0u8; INLINE];
        let len = write_scope_key(&mut buf, parts);
        f(buf.get(..len).unwrap_or_default())
    } else {
        let mut buf = vec![0u8; room];
        let len = write_scope_key(&mut buf, parts);
        f(buf.get(..len).unwrap_or_default())
    }
}

/// The map key of a scope, as an owned vector (see [`with_scope_key`]).
pub fn scope_key(parts: [&[u8]; 3]) -> Vec<u8> {
    with_scope_key(parts, <[u8]>::to_vec)
}

/// Where an entry is: entries are never moved, replaced or removed, so a
/// position stays valid for the life of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Position in insertion order.
    pub position: usize,
    /// Which type the bytes decode to.
    pub type_idx: u32,
    /// Length of the stored bytes.
    pub len: usize,
}

/// What [`Store::put`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// No entry: the value is stored now.
    Inserted,
    /// An entry with equal bytes (so the prior bytes are the offered ones);
    /// `type_idx` is the stored type, which may differ from the offered one.
    Replay { type_idx: u32 },
    /// An entry with different bytes, copied out; nothing was overwritten.
    Conflict { type_idx: u32, prior: Vec<u8> },
}

/// Counters of a store since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    pub inserts: u64,
    pub replays: u64,
    pub conflicts: u64,
}

/// Most entries a store holds (positions in its index are `u32`, which
/// halves the index and keeps more of it in cache).
pub const MAX_ENTRIES: u32 = u32::MAX;

/// Size of the first arena chunk; later chunks double up to [`MAX_CHUNK`].
const FIRST_CHUNK: usize = 4 * 1024;
/// Largest regular arena chunk (a bigger entry gets a chunk of its own).
const MAX_CHUNK: usize = 1024 * 1024;

/// Append-only storage of every entry's `key || value` bytes, in chunks
/// that never reallocate: one allocation per chunk, not per entry.
#[derive(Debug, Default)]
struct Arena {
    chunks: Vec<Vec<u8>>,
}

impl Arena {
    /// Store `key || value`; returns (chunk, start) of the copy.
    fn push(&mut self, key: &[u8], value: &[u8]) -> (usize, usize) {
        let need = key.len() + value.len();
        let fits = self
            .chunks
            .last()
            .is_some_and(|chunk| chunk.capacity() - chunk.len() >= need);
        if !fits {
            let next = self
                .chunks
                .last()
                .map_or(FIRST_CHUNK, |chunk| (chunk.capacity() * 2).min(MAX_CHUNK));
            self.chunks.push(Vec::with_capacity(next.max(need)));
        }
        let index = self.chunks.len() - 1;
        match self.chunks.last_mut() {
            Some(chunk) => {
                let start = chunk.len();
                chunk.extend_from_slice(key);
                chunk.extend_from_slice(value);
                (index, start)
            }
            None => (0, 0),
        }
    }

    fn bytes(&self, chunk: usize, range: std::ops::Range<usize>) -> &[u8] {
        self.chunks
            .get(chunk)
            .and_then(|chunk| chunk.get(range))
            .unwrap_or_default()
    }

    fn key(&self, meta: &Meta) -> &[u8] {
        self.bytes(meta.chunk, meta.start..meta.start + meta.key_len)
    }

    fn value(&self, meta: &Meta) -> &[u8] {
        let start = meta.start + meta.key_len;
        self.bytes(meta.chunk, start..start + meta.value_len)
    }
}

/// Where one entry lives, and what it is.
#[derive(Debug, Clone, Copy)]
struct Meta {
    hash: u64,
    chunk: usize,
    start: usize,
    key_len: usize,
    value_len: usize,
    type_idx: u32,
}

/// Entries keyed by [`scope_key`], with outcome counters.
///
/// Laid out like CPython's compact dict: a hash index of positions into an
/// insertion-ordered list of entries, whose bytes sit back to back in an
/// arena. Entries are never removed or replaced.
#[derive(Debug, Default)]
pub struct Store {
    index: HashTable<u32>,
    entries: Vec<Meta>,
    arena: Arena,
    hasher: foldhash::fast::RandomState,
    inserts: u64,
    replays: u64,
    conflicts: u64,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Store::default()
    }

    /// The entry at `position` when its key is `key` (and its hash `hash`).
    fn holds(entries: &[Meta], arena: &Arena, position: u32, hash: u64, key: &[u8]) -> bool {
        entries
            .get(position as usize)
            .is_some_and(|meta| meta.hash == hash && arena.key(meta) == key)
    }

    fn hash_at(entries: &[Meta], position: u32) -> u64 {
        entries.get(position as usize).map_or(0, |meta| meta.hash)
    }

    /// Insert, replay (equal bytes) or report a conflict; counts the outcome.
    ///
    /// Fails only when the store already holds [`MAX_ENTRIES`] entries.
    pub fn put(&mut self, key: &[u8], type_idx: u32, bytes: &[u8]) -> Result<PutOutcome, Error> {
        let hash = self.hasher.hash_one(key);
        let (entries, arena) = (&self.entries, &self.arena);
        let slot = self.index.entry(
            hash,
            |&position| Self::holds(entries, arena, position, hash, key),
            |&position| Self::hash_at(entries, position),
        );
        match slot {
            Entry::Vacant(slot) => {
                let position = u32::try_from(self.entries.len())
                    .ok()
                    .filter(|&position| position < MAX_ENTRIES)
                    .ok_or_else(|| Error::Internal {
                        message: format!("the store is full ({MAX_ENTRIES} entries)"),
                    })?;
                let (chunk, start) = self.arena.push(key, bytes);
                self.entries.push(Meta {
                    hash,
                    chunk,
                    start,
                    key_len: key.len(),
                    value_len: bytes.len(),
                    type_idx,
                });
                slot.insert(position);
                self.inserts += 1;
                Ok(PutOutcome::Inserted)
            }
            Entry::Occupied(slot) => {
                let meta = entries.get(*slot.get() as usize).copied();
                let Some(meta) = meta else {
                    return Err(Error::Internal {
                        message: "index points past the entries".into(),
                    });
                };
                let prior = arena.value(&meta);
                if prior == bytes {
                    self.replays += 1;
                    Ok(PutOutcome::Replay {
                        type_idx: meta.type_idx,
                    })
                } else {
                    let prior = prior.to_vec();
                    self.conflicts += 1;
                    Ok(PutOutcome::Conflict {
                        type_idx: meta.type_idx,
                        prior,
                    })
                }
            }
        }
    }

    /// The entry stored under `key`, if any.
    pub fn find_entry(&self, key: &[u8]) -> Option<Found> {
        let hash = self.hasher.hash_one(key);
        let position = *self.index.find(hash, |&position| {
            Self::holds(&self.entries, &self.arena, position, hash, key)
        })?;
        let meta = self.entries.get(position as usize)?;
        Some(Found {
            position: position as usize,
            type_idx: meta.type_idx,
            len: meta.value_len,
        })
    }

    /// The bytes of the entry at `position` (as given by [`Store::find_entry`]).
    pub fn value_at(&self, position: usize) -> Option<&[u8]> {
        self.entries
            .get(position)
            .map(|meta| self.arena.value(meta))
    }

    /// Copy the bytes of the entry at `position` into `out`, which must have
    /// exactly their length; false (and nothing copied) otherwise.
    pub fn copy_value(&self, position: usize, out: &mut [u8]) -> bool {
        match self.value_at(position) {
            Some(value) if value.len() == out.len() => {
                out.copy_from_slice(value);
                true
            }
            _ => false,
        }
    }

    /// The type index and a copy of the bytes stored under `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<(u32, Vec<u8>)> {
        let found = self.find_entry(key)?;
        Some((found.type_idx, self.value_at(found.position)?.to_vec()))
    }

    /// True when `key` holds an entry.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.find_entry(key).is_some()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        Stats {
            entries: self.entries.len() as u64,
            inserts: self.inserts,
            replays: self.replays,
            conflicts: self.conflicts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: [&[u8]; 3]) -> Vec<u8> {
        scope_key(parts)
    }

    #[test]
    fn scope_keys_do_not_alias() {
        assert_ne!(key([b"ab", b"c", b"d"]), key([b"a", b"bc", b"d"]));
        assert_ne!(key([b"a", b"b", b"cd"]), key([b"a", b"bc", b"d"]));
        assert_ne!(key([b"", b"ab", b"c"]), key([b"a", b"b", b"c"]));
        assert_eq!(key([b"a", b"b", b"c"]), key([b"a", b"b", b"c"]));
        assert_eq!(key([b"ab", b"c", b"d"]), [2, b'a', b'b', 1, b'c', b'd']);
    }

    #[test]
    fn long_parts_are_built_on_the_heap() {
        let long = vec![b'x'; 300];
        let k = scope_key([&long, b"a", &long]);
        assert_eq!(&k[..2], &[0xac, 0x02], "300 in LEB128");
        assert_eq!(k.len(), 2 + 300 + 1 + 1 + 300);
        assert_eq!(&k[302..304], &[1, b'a']);
    }

    #[test]
    fn insert_replay_conflict() {
        let mut store = Store::new();
        let k = scope_key([b"c", b"a", b"k"]);
        assert_eq!(store.put(&k, 3, b"v1").unwrap(), PutOutcome::Inserted);
        assert_eq!(
            store.put(&k, BYTES_TYPE, b"v1").unwrap(),
            PutOutcome::Replay { type_idx: 3 }
        );
        assert_eq!(
            store.put(&k, 3, b"v2").unwrap(),
            PutOutcome::Conflict {
                type_idx: 3,
                prior: b"v1".to_vec()
            }
        );
        let (type_idx, bytes) = store.get(&k).unwrap();
        assert_eq!((type_idx, &*bytes), (3, &b"v1"[..]));
        let found = store.find_entry(&k).unwrap();
        assert_eq!(
            found,
            Found {
                position: 0,
                type_idx: 3,
                len: 2
            }
        );
        let mut out = [0u8; 2];
        assert!(store.copy_value(found.position, &mut out));
        assert_eq!(&out, b"v1");
        assert!(!store.copy_value(found.position, &mut [0u8; 3]));
        assert!(!store.copy_value(1, &mut []));
        assert!(store.contains(&k));
        assert!(!store.contains(&scope_key([b"c", b"a", b"other"])));
        assert_eq!(
            store.stats(),
            Stats {
                entries: 1,
                inserts: 1,
                replays: 1,
                conflicts: 1
            }
        );
    }

    #[test]
    fn empty_values_and_large_values() {
        let mut store = Store::new();
        let k = scope_key([b"c", b"a", b"k"]);
        assert_eq!(
            store.put(&k, BYTES_TYPE, b"").unwrap(),
            PutOutcome::Inserted
        );
        assert_eq!(&*store.get(&k).unwrap().1, b"");
        let big = vec![7u8; 10_000];
        let k2 = scope_key([b"c", b"a", b"k2"]);
        store.put(&k2, BYTES_TYPE, &big).unwrap();
        assert_eq!(&*store.get(&k2).unwrap().1, &big[..]);
    }

    #[test]
    fn many_entries_span_arena_chunks() {
        let mut store = Store::new();
        let big = vec![9u8; 3 * MAX_CHUNK / 2];
        for i in 0..20_000u32 {
            let k = scope_key([b"c", b"a", i.to_string().as_bytes()]);
            let value: &[u8] = if i == 7 { &big } else { &i.to_le_bytes() };
            assert_eq!(store.put(&k, i % 3, value).unwrap(), PutOutcome::Inserted);
        }
        assert!(store.arena.chunks.len() > 2);
        for i in (0..20_000u32).rev() {
            let k = scope_key([b"c", b"a", i.to_string().as_bytes()]);
            let (type_idx, bytes) = store.get(&k).unwrap();
            assert_eq!(type_idx, i % 3);
            if i == 7 {
                assert_eq!(&*bytes, &big[..]);
            } else {
                assert_eq!(&*bytes, &i.to_le_bytes());
                assert_eq!(
                    store.put(&k, 0, &i.to_le_bytes()).unwrap(),
                    PutOutcome::Replay { type_idx: i % 3 }
                );
            }
        }
        assert_eq!(store.len(), 20_000);
        assert!(!store.contains(&scope_key([b"c", b"a", b"20000"])));
    }

    #[test]
    fn empty_store() {
        let store = Store::new();
        assert!(store.is_empty());
        assert!(store.get(b"x").is_none());
        assert_eq!(store.stats(), Stats::default());
    }
}
