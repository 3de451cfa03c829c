//! Idempotency keys (SPEC section 2): the legacy scheme, the unambiguous
//! `derive_key` scheme, the legacy key check, and batch hashing.
//!
//! Pure Rust: the bindings validate Python arguments, copy their bytes into the
//! builders below while the GIL is held, and hash here with the GIL released.

use std::ops::Range;
use std::sync::OnceLock;
use std::thread;

use sha2::{Digest, Sha256};

use crate::digest::{hex_digits, write_hex};
use crate::error::Error;

/// Prefix of every legacy key.
pub const LEGACY_PREFIX: &str = "idem_";
/// Hex digits in a legacy key.
pub const LEGACY_HEX_LEN: usize = 16;
/// Largest `step_idx` a legacy key accepts (`2**32 - 1`).
pub const MAX_STEP: u32 = u32::MAX;

/// Domain header that starts every `derive_key` hash input (25 bytes).
pub const DERIVE_HEADER: &[u8; 25] = b"replaycore/derive_key/v1\n";
/// Part tag of a `str` (its UTF-8 bytes).
pub const TAG_STR: u8 = 0x01;
/// Part tag of a `bytes` (as given).
pub const TAG_BYTES: u8 = 0x02;
/// Part tag of an `int` (two's complement, big-endian).
pub const TAG_INT: u8 = 0x03;
/// Smallest accepted `hex_len`.
pub const MIN_HEX_LEN: usize = 16;
/// Largest accepted `hex_len` (all 64 digits of SHA-256).
pub const MAX_HEX_LEN: usize = 64;

/// Batches with more rows than this are hashed on several threads.
pub const PARALLEL_THRESHOLD: usize = 4096;

/// Decimal digits of `n`, without allocating.
struct Decimal {
    buf: [u8; 10],
    start: usize,
}

impl Decimal {
    fn new(mut n: u32) -> Self {
        let mut buf = [0u8; 10];
        let mut start = buf.len();
        loop {
            start -= 1;
            // `n % 10 < 10`, so the cast cannot truncate.
            buf[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Decimal { buf, start }
    }

    fn as_bytes(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }
}

/// The legacy key: `"idem_"` + the first 16 lowercase hex digits of
/// SHA-256(`run_id` + `"::"` + `episode` + `"::"` + decimal(`step_idx`)).
///
/// The hash input is fed to SHA-256 piece by piece; nothing is concatenated.
pub fn legacy_key(run_id: &[u8], episode: &[u8], step_idx: u32) -> String {
    let mut hasher = Sha256::new();
    hasher.update(run_id);
    finish_legacy(hasher, episode, step_idx)
}

fn finish_legacy(mut hasher: Sha256, episode: &[u8], step_idx: u32) -> String {
    hasher.update(b"::");
    hasher.update(episode);
    hasher.update(b"::");
    hasher.update(Decimal::new(step_idx).as_bytes());
    let digest: [u8; 32] = hasher.finalize().into();
    let mut key = String::with_capacity(LEGACY_PREFIX.len() + LEGACY_HEX_LEN);
    key.push_str(LEGACY_PREFIX);
    key.extend(hex_digits(&digest).take(LEGACY_HEX_LEN).map(char::from));
    key
}

/// `legacy_key(intent_id + ":" + actor, episode, step_idx)`, hashed without concatenating.
pub fn intent_key(intent_id: &[u8], actor: &[u8], episode: &[u8], step_idx: u32) -> String {
    let mut hasher = Sha256::new();
    hasher.update(intent_id);
    hasher.update(b":");
    hasher.update(actor);
    finish_legacy(hasher, episode, step_idx)
}

/// True when `text` is exactly `"idem_"` followed by 16 ASCII hex digits
/// (either case). Anything else, including non-ASCII digits, is refused.
pub fn is_legacy_key(text: &[u8]) -> bool {
    match text.strip_prefix(LEGACY_PREFIX.as_bytes()) {
        Some(digits) => digits.len() == LEGACY_HEX_LEN && digits.iter().all(u8::is_ascii_hexdigit),
        None => false,
    }
}

/// Check a legacy key; the error is `InvalidKeyFormat` about `argument`.
pub fn parse_key(text: &[u8], argument: &str, shown: &str) -> Result<(), Error> {
    if is_legacy_key(text) {
        Ok(())
    } else {
        Err(Error::key_format(
            argument,
            format!("{argument} is not an idempotency key ('idem_' + 16 hex chars): {shown}"),
        ))
    }
}

/// Check `hex_len` of `derive_key`: an integer in 16..=64.
pub fn check_hex_len(hex_len: i64) -> Result<usize, Error> {
    match usize::try_from(hex_len) {
        Ok(n) if (MIN_HEX_LEN..=MAX_HEX_LEN).contains(&n) => Ok(n),
        _ => Err(hex_len_error(hex_len)),
    }
}

/// The range error of `hex_len`, for any shown value.
pub fn hex_len_error(shown: impl std::fmt::Display) -> Error {
    Error::out_of_range("hex_len", MIN_HEX_LEN as i128, MAX_HEX_LEN as i128, shown)
}

/// The range error of a legacy `step_idx`, for any shown value.
pub fn step_error(argument: impl Into<String>, shown: impl std::fmt::Display) -> Error {
    Error::out_of_range(argument, 0, i128::from(MAX_STEP), shown)
}

/// Append the `derive_key` encoding of a signed integer: two's complement,
/// big-endian, `L = bit_length(|value|) // 8 + 1` bytes, so
/// 0 -> `00`, 127 -> `7f`, 128 -> `0080`, -1 -> `ff`, -128 -> `ff80`, -129 -> `ff7f`.
pub fn int_bytes(value: i128) -> ([u8; 17], usize) {
    let bit_length = 128 - value.unsigned_abs().leading_zeros() as usize;
    let len = bit_length / 8 + 1;
    let mut buf = [if value < 0 { 0xff } else { 0x00 }; 17];
    for (slot, byte) in buf.iter_mut().skip(1).zip(value.to_be_bytes()) {
        *slot = byte;
    }
    (buf, len)
}

/// The hash inputs of many keys, stored back to back in one buffer.
///
/// Built while the GIL is held (one copy of each row's bytes, no allocation
/// per row), hashed later by [`hash_batch`] without the GIL.
#[derive(Debug, Default, Clone)]
pub struct Materials {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    row_start: usize,
    count_at: Option<usize>,
    parts: u32,
}

impl Materials {
    /// An empty batch with room for `rows` rows.
    pub fn with_capacity(rows: usize) -> Self {
        Materials {
            bytes: Vec::with_capacity(rows.saturating_mul(32)),
            ends: Vec::with_capacity(rows),
            ..Materials::default()
        }
    }

    /// Number of finished rows.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when no row was finished.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Total size of the hash inputs, in bytes.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// The hash input of row `index`.
    pub fn row(&self, index: usize) -> &[u8] {
        let start = match index.checked_sub(1) {
            Some(prev) => self.ends.get(prev).copied().unwrap_or(0),
            None => 0,
        };
        let end = self.ends.get(index).copied().unwrap_or(start);
        self.bytes.get(start..end).unwrap_or_default()
    }

    /// Append one legacy row: `run_id::episode::step_idx`.
    pub fn push_legacy(&mut self, run_id: &[u8], episode: &[u8], step_idx: u32) {
        self.bytes.extend_from_slice(run_id);
        self.bytes.extend_from_slice(b"::");
        self.bytes.extend_from_slice(episode);
        self.bytes.extend_from_slice(b"::");
        self.bytes
            .extend_from_slice(Decimal::new(step_idx).as_bytes());
        self.finish_row();
    }

    /// Start a `derive_key` row: its part count (patched by [`Materials::end_row`]) goes first.
    pub fn begin_row(&mut self) {
        self.discard_row();
        self.count_at = Some(self.bytes.len());
        self.parts = 0;
        self.bytes.extend_from_slice(&[0; 4]);
    }

    /// Append a `str` part (its UTF-8 bytes).
    pub fn push_str(&mut self, utf8: &[u8]) {
        self.push_part(TAG_STR, utf8);
    }

    /// Append a `bytes` part.
    pub fn push_bytes(&mut self, data: &[u8]) {
        self.push_part(TAG_BYTES, data);
    }

    /// Append an `int` part that fits in an `i128`.
    pub fn push_int(&mut self, value: i128) {
        let (buf, len) = int_bytes(value);
        let encoded = buf.get(buf.len() - len..).unwrap_or_default();
        self.push_part(TAG_INT, encoded);
    }

    /// Append an `int` part already encoded as in [`int_bytes`] (for big integers).
    pub fn push_int_encoded(&mut self, twos_complement_be: &[u8]) {
        self.push_part(TAG_INT, twos_complement_be);
    }

    fn push_part(&mut self, tag: u8, data: &[u8]) {
        self.bytes.push(tag);
        self.bytes
            .extend_from_slice(&(data.len() as u64).to_be_bytes());
        self.bytes.extend_from_slice(data);
        self.parts = self.parts.saturating_add(1);
    }

    /// Finish the current `derive_key` row, writing its part count.
    pub fn end_row(&mut self) {
        if let Some(at) = self.count_at.take() {
            if let Some(slot) = self.bytes.get_mut(at..at + 4) {
                slot.copy_from_slice(&self.parts.to_be_bytes());
            }
        }
        self.finish_row();
    }

    /// Number of parts pushed to the current row.
    pub fn row_parts(&self) -> u32 {
        self.parts
    }

    /// Drop a row that was begun but not finished.
    pub fn discard_row(&mut self) {
        self.bytes.truncate(self.row_start);
        self.count_at = None;
        self.parts = 0;
    }

    fn finish_row(&mut self) {
        self.ends.push(self.bytes.len());
        self.row_start = self.bytes.len();
        self.parts = 0;
    }
}

/// Keys of equal width stored back to back in one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBlock {
    text: String,
    width: usize,
    count: usize,
}

impl KeyBlock {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the block holds no key.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Key `index`, if any.
    pub fn get(&self, index: usize) -> Option<&str> {
        let start = index.checked_mul(self.width)?;
        self.text.get(start..start.checked_add(self.width)?)
    }

    /// Every key, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.count).map(move |i| self.get(i).unwrap_or_default())
    }
}

/// How a batch is hashed: an optional domain header before each row's bytes,
/// then `prefix` + the first `hex_len` hex digits.
#[derive(Debug, Clone, Copy)]
pub struct KeyFormat<'a> {
    pub header: &'a [u8],
    pub prefix: &'a str,
    pub hex_len: usize,
}

impl KeyFormat<'static> {
    /// The legacy format: no header, `"idem_"`, 16 digits.
    pub const LEGACY: KeyFormat<'static> = KeyFormat {
        header: b"",
        prefix: LEGACY_PREFIX,
        hex_len: LEGACY_HEX_LEN,
    };
}

impl<'a> KeyFormat<'a> {
    /// The `derive_key` format with the given prefix and length.
    pub fn derive(prefix: &'a str, hex_len: usize) -> Self {
        KeyFormat {
            header: DERIVE_HEADER,
            prefix,
            hex_len: hex_len.min(MAX_HEX_LEN),
        }
    }

    fn width(&self) -> usize {
        self.prefix.len() + self.hex_len
    }
}

/// The key of one hash input.
pub fn key_of(material: &[u8], format: KeyFormat<'_>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format.header);
    hasher.update(material);
    let digest: [u8; 32] = hasher.finalize().into();
    let mut key = String::with_capacity(format.width());
    key.push_str(format.prefix);
    key.extend(hex_digits(&digest).take(format.hex_len).map(char::from));
    key
}

/// Number of cores this process may use, asked once (the answer may need
/// system calls and cgroup files).
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| thread::available_parallelism().map_or(1, usize::from))
}

/// Hash rows `rows` of `materials` into `out` (exactly `rows.len() * width` bytes).
fn fill(materials: &Materials, rows: Range<usize>, format: KeyFormat<'_>, out: &mut [u8]) {
    let mut base = Sha256::new();
    base.update(format.header);
    let width = format.width().max(1);
    for (index, slot) in rows.zip(out.chunks_exact_mut(width)) {
        let mut hasher = base.clone();
        hasher.update(materials.row(index));
        let digest: [u8; 32] = hasher.finalize().into();
        if let Some((prefix, hex)) = slot.split_at_mut_checked(format.prefix.len()) {
            prefix.copy_from_slice(format.prefix.as_bytes());
            write_hex(hex, &digest);
        }
    }
}

/// The key of every row of `materials`, in order.
///
/// More than [`PARALLEL_THRESHOLD`] rows are split across the available
/// cores with scoped threads (a thread that cannot be started is replaced by
/// work on the calling thread).
pub fn hash_batch(materials: &Materials, format: KeyFormat<'_>) -> Result<KeyBlock, Error> {
    let count = materials.len();
    let width = format.width();
    let total = count.checked_mul(width).ok_or_else(|| Error::Internal {
        message: "batch of keys too large".into(),
    })?;
    let mut out = vec![0u8; total];
    // Every thread gets at least PARALLEL_THRESHOLD rows.
    let wanted = count / PARALLEL_THRESHOLD;
    let threads = if wanted >= 2 { cores().min(wanted) } else { 1 };
    if threads == 1 || width == 0 {
        fill(materials, 0..count, format, &mut out);
    } else {
        let per_thread = count.div_ceil(threads);
        thread::scope(|scope| {
            let mut inline = Vec::new();
            for (chunk, slot) in out.chunks_mut(per_thread * width).enumerate() {
                let start = chunk * per_thread;
                let rows = start..(start + per_thread).min(count);
                let spawned = thread::Builder::new().spawn_scoped(scope, {
                    let rows = rows.clone();
                    move || fill(materials, rows, format, slot)
                });
                if let Err(_not_started) = spawned {
                    inline.push(rows);
                }
            }
            // Nothing left to do here unless a thread could not be started;
            // those chunks' slices were moved into the failed closures, so
            // their rows are recomputed below, after the scope.
            inline
        })
        .into_iter()
        .for_each(|rows| {
            let start = rows.start * width;
            let end = rows.end * width;
            if let Some(slot) = out.get_mut(start..end) {
                fill(materials, rows, format, slot);
            }
        });
    }
    let text = String::from_utf8(out).map_err(|_| Error::Internal {
        message: "batch keys are not UTF-8".into(),
    })?;
    Ok(KeyBlock { text, width, count })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256;

    fn hex(bytes: &[u8]) -> String {
        hex_digits(bytes).map(char::from).collect()
    }

    #[test]
    fn legacy_known_vector() {
        // hashlib.sha256(b"run-1::ep::3").hexdigest()[:16]
        let expected = format!("idem_{}", &hex(&sha256(b"run-1::ep::3"))[..16]);
        assert_eq!(legacy_key(b"run-1", b"ep", 3), expected);
        assert_eq!(legacy_key(b"run-1", b"ep", 3), "idem_c39968f2a9942f42");
        assert_eq!(
            legacy_key(b"run-1", b"episode-a", 3),
            "idem_855a8094f9a2b886"
        );
    }

    #[test]
    fn legacy_decimal_edges() {
        for step in [0u32, 9, 10, 4_294_967_295] {
            let material = format!("a::b::{step}");
            let expected = format!("idem_{}", &hex(&sha256(material.as_bytes()))[..16]);
            assert_eq!(legacy_key(b"a", b"b", step), expected);
        }
    }

    #[test]
    fn legacy_is_ambiguous_by_design() {
        assert_eq!(legacy_key(b"a::b", b"c", 1), legacy_key(b"a", b"b::c", 1));
    }

    #[test]
    fn int_encoding_examples() {
        let cases: [(i128, &[u8]); 9] = [
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0x00, 0x80]),
            (255, &[0x00, 0xff]),
            (256, &[0x01, 0x00]),
            (-1, &[0xff]),
            (-128, &[0xff, 0x80]),
            (-129, &[0xff, 0x7f]),
            (-256, &[0xff, 0x00]),
        ];
        for (value, expected) in cases {
            let (buf, len) = int_bytes(value);
            assert_eq!(&buf[17 - len..], expected, "value {value}");
        }
        let (buf, len) = int_bytes(i128::MIN);
        assert_eq!(len, 17);
        assert_eq!(buf[0], 0xff);
        assert_eq!(buf[1], 0x80);
        let (_, len) = int_bytes(i128::MAX);
        assert_eq!(len, 16);
    }

    #[test]
    fn derive_layout() {
        let mut materials = Materials::default();
        materials.begin_row();
        materials.push_str("run-1".as_bytes());
        materials.push_str("charge".as_bytes());
        materials.push_int(3);
        materials.end_row();
        let mut expected = Vec::new();
        expected.extend_from_slice(&3u32.to_be_bytes());
        for (tag, data) in [(1u8, &b"run-1"[..]), (1, b"charge"), (3, &[3u8])] {
            expected.push(tag);
            expected.extend_from_slice(&(data.len() as u64).to_be_bytes());
            expected.extend_from_slice(data);
        }
        assert_eq!(materials.row(0), &expected[..]);
        let key = key_of(materials.row(0), KeyFormat::derive("idem_", 32));
        // replaycore.reference.keys.derive_key("run-1", "charge", 3)
        assert_eq!(key, "idem_4bc43e5384d2ea36bcb9d8867f1f1c22");
        let mut full = DERIVE_HEADER.to_vec();
        full.extend_from_slice(&expected);
        assert_eq!(&key[5..], &hex(&sha256(&full))[..32]);
    }

    #[test]
    fn discarded_rows_leave_no_trace() {
        let mut materials = Materials::default();
        materials.begin_row();
        materials.push_bytes(b"abc");
        materials.discard_row();
        materials.begin_row();
        materials.push_bytes(b"x");
        materials.end_row();
        assert_eq!(materials.len(), 1);
        assert_eq!(
            materials.row(0),
            &[0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 1, b'x']
        );
        assert_eq!(materials.row(5), b"");
    }

    #[test]
    fn parse_key_accepts_and_rejects() {
        assert!(is_legacy_key(b"idem_0123456789abcdef"));
        assert!(is_legacy_key(b"idem_0123456789ABCDEF"));
        for bad in [
            &b"IDEM_0123456789abcdef"[..],
            b"idem_0123456789abcde",
            b"idem_0123456789abcdef0",
            b"idem_0123456789abcdeg",
            b"idem-0123456789abcdef",
            b"",
            "idem_0123456789abcde\u{0660}".as_bytes(),
        ] {
            assert!(!is_legacy_key(bad), "{bad:?}");
        }
        let err = parse_key(b"nope", "text", "'nope'").unwrap_err();
        assert_eq!(err.argument(), Some("text"));
        assert!(matches!(err, Error::KeyFormat { .. }));
    }

    #[test]
    fn hex_len_range() {
        assert_eq!(check_hex_len(16), Ok(16));
        assert_eq!(check_hex_len(64), Ok(64));
        for bad in [15, 65, -1, i64::MIN, i64::MAX] {
            assert_eq!(check_hex_len(bad).unwrap_err().argument(), Some("hex_len"));
        }
    }

    #[test]
    fn batch_matches_single_keys_across_threads() {
        let rows = PARALLEL_THRESHOLD * 3 + 17;
        let mut materials = Materials::with_capacity(rows);
        for i in 0..rows {
            materials.push_legacy(format!("run-{i}").as_bytes(), "é".as_bytes(), i as u32);
        }
        let block = hash_batch(&materials, KeyFormat::LEGACY).unwrap();
        assert_eq!(block.len(), rows);
        for (i, key) in block.iter().enumerate() {
            assert_eq!(
                key,
                legacy_key(format!("run-{i}").as_bytes(), "é".as_bytes(), i as u32)
            );
        }

        let mut derived = Materials::default();
        for i in 0..rows {
            derived.begin_row();
            derived.push_int(-(i as i128));
            derived.end_row();
        }
        let format = KeyFormat::derive("ключ:", 17);
        let block = hash_batch(&derived, format).unwrap();
        for (i, key) in block.iter().enumerate() {
            assert_eq!(key, key_of(derived.row(i), format));
            assert_eq!(key.chars().count(), 5 + 17);
        }
    }

    #[test]
    fn empty_batch() {
        let block = hash_batch(&Materials::default(), KeyFormat::LEGACY).unwrap();
        assert!(block.is_empty());
        assert_eq!(block.get(0), None);
    }
}
