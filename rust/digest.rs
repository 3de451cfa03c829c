//! SHA-256 and lowercase hex helpers shared by keys and the store.
//!
//! `sha2` picks the x86 SHA extensions (or ARMv8 crypto) at run time, so the
//! same binary is fast on every machine that has them.

use sha2::{Digest, Sha256};

/// Prefix of every content digest.
pub const DIGEST_PREFIX: &str = "sha256:";

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The two lowercase hex digits of every byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let mut table = [[0u8; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = [HEX[byte >> 4], HEX[byte & 0x0f]];
        byte += 1;
    }
    table
};

/// Fill `out` with the first `out.len()` lowercase hex digits of `bytes`
/// (at most `2 * bytes.len()` are written; any further bytes of `out` are left).
pub fn write_hex(out: &mut [u8], bytes: &[u8]) {
    let odd_byte = bytes.get(out.len() / 2);
    let mut pairs = out.chunks_exact_mut(2);
    for (pair, &byte) in (&mut pairs).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
    let half = pairs.into_remainder();
    if let ([last], Some(&byte)) = (half, odd_byte) {
        *last = HEX[usize::from(byte >> 4)];
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The lowercase hex digits of `bytes`, high nibble first, as an iterator of ASCII bytes.
pub fn hex_digits(bytes: &[u8]) -> impl Iterator<Item = u8> + '_ {
    bytes
        .iter()
        .flat_map(|&b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]])
}

/// Append the first `len` lowercase hex digits of `bytes` to `out` (at most `2 * bytes.len()`).
pub fn push_hex(out: &mut String, bytes: &[u8], len: usize) {
    out.extend(hex_digits(bytes).take(len).map(char::from));
}

/// `"sha256:"` + the 64 lowercase hex digits of SHA-256(`data`).
///
/// ```
/// assert_eq!(
///     _core::digest::content_digest(b"abc"),
///     "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// ```
pub fn content_digest(data: &[u8]) -> String {
    let mut out = String::with_capacity(DIGEST_PREFIX.len() + 64);
    out.push_str(DIGEST_PREFIX);
    push_hex(&mut out, &sha256(data), 64);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_digest() {
        assert_eq!(
            content_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn write_hex_matches_push_hex() {
        let bytes: Vec<u8> = (0..=255).collect();
        for len in [0, 1, 2, 15, 16, 17, 64, 511, 512] {
            let mut out = vec![b'?'; len];
            write_hex(&mut out, &bytes);
            let mut expected = String::new();
            push_hex(&mut expected, &bytes, len);
            assert_eq!(out, expected.as_bytes(), "len {len}");
        }
        let mut long = [b'?'; 5];
        write_hex(&mut long, &[0xab]);
        assert_eq!(&long, b"ab???");
    }

    #[test]
    fn odd_hex_length_takes_the_high_nibble() {
        let mut out = String::new();
        push_hex(&mut out, &[0xab, 0xcd], 3);
        assert_eq!(out, "abc");
        let mut all = String::new();
        push_hex(&mut all, &[0x01, 0xf0], 10);
        assert_eq!(all, "01f0");
    }
}
