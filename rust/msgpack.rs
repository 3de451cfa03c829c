//! A small, strict MessagePack reader over a byte slice.
//!
//! Journal bodies are decoded straight from the bytes read from disk: strings
//! borrow from the buffer, nothing is allocated per field, and every failure is
//! a [`Malformed`] error carrying the byte offset (relative to the slice). No
//! input can make it panic; values are skipped by a recursion bounded by
//! [`MAX_DEPTH`] (a deeper value is an error, as SPEC 6.1 requires).

use std::fmt;

/// Bytes that are not the MessagePack the schema expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Offset of the offending byte within the decoded slice.
    pub offset: usize,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

impl std::error::Error for Malformed {}

/// The result type of the reader.
pub type Result<T> = std::result::Result<T, Malformed>;

/// Whether `bytes` is valid UTF-8.
#[inline]
pub fn is_utf8(bytes: &[u8]) -> bool {
    // Journal strings are short and mostly ASCII: an OR over 8-byte words
    // beats `is_ascii`'s alignment handling at these lengths, and both beat
    // a call to `from_utf8`. The tail is read as one word overlapping the
    // last full one (or two overlapping half words), not byte by byte.
    let word = |at| u64::from_ne_bytes(load::<8>(bytes, at));
    let half = |at| u64::from(u32::from_ne_bytes(load::<4>(bytes, at)));
    let n = bytes.len();
    let acc = match n {
        8.. => bytes.chunks_exact(8).fold(word(n - 8), |acc, w| {
            acc | u64::from_ne_bytes(load::<8>(w, 0))
        }),
        4..=7 => half(0) | half(n - 4),
        _ => bytes.iter().fold(0u64, |acc, &b| acc | u64::from(b)),
    };
    acc & 0x8080_8080_8080_8080 == 0 || std::str::from_utf8(bytes).is_ok()
}

/// `bytes` as a `str`, or the error of invalid UTF-8 at `offset`.
#[inline]
fn utf8(bytes: &[u8], offset: usize) -> Result<&str> {
    if is_utf8(bytes) {
        // SAFETY: `is_utf8` just checked it.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    Err(Malformed {
        offset,
        message: "invalid UTF-8 in str".to_owned(),
    })
}

/// A cursor over one MessagePack buffer.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn type_name(marker: u8) -> &'static str {
    match marker {
        0x00..=0x7f | 0xe0..=0xff | 0xcc..=0xd3 => "int",
        0x80..=0x8f | 0xde | 0xdf => "map",
        0x90..=0x9f | 0xdc | 0xdd => "array",
        0xa0..=0xbf | 0xd9..=0xdb => "str",
        0xc0 => "nil",
        0xc2 | 0xc3 => "bool",
        0xc4..=0xc6 => "bin",
        0xca | 0xcb => "float",
        0xc7..=0xc9 | 0xd4..=0xd8 => "ext",
        _ => "reserved marker",
    }
}

/// `a == b` for slices of the same length, by at most two overlapping
/// word loads when they hold 4 to 16 bytes (map keys mostly do): a byte loop
/// cost about five instructions a byte of every key of every record, and a
/// `memcmp` call more than that.
#[inline]
fn same_short(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        8..=16 => load::<8>(a, 0) == load::<8>(b, 0) && load::<8>(a, n - 8) == load::<8>(b, n - 8),
        4..=7 => load::<4>(a, 0) == load::<4>(b, 0) && load::<4>(a, n - 4) == load::<4>(b, n - 4),
        _ => a == b,
    }
}

/// The `N` bytes of `s` at `at` (which the caller keeps in bounds), as an
/// array the compiler loads as one word.
#[inline]
fn load<const N: usize>(s: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&s[at..at + N]);
    out
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// A reader at offset `pos` of `buf` (clamped to its end).
    pub fn at(buf: &'a [u8], pos: usize) -> Self {
        Reader {
            buf,
            pos: pos.min(buf.len()),
        }
    }

    /// The current offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// True when every byte was consumed.
    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The bytes between two offsets of this buffer (empty when out of range).
    pub fn slice(&self, start: usize, end: usize) -> &'a [u8] {
        self.buf.get(start..end).unwrap_or(&[])
    }

    /// An error at the current offset.
    pub fn error(&self, message: impl Into<String>) -> Malformed {
        Malformed {
            offset: self.pos,
            message: message.into(),
        }
    }

    #[cold]
    #[inline(never)]
    fn eof(&self) -> Malformed {
        self.error("unexpected end of data")
    }

    #[inline]
    fn peek(&self) -> Result<u8> {
        self.buf.get(self.pos).copied().ok_or_else(|| self.eof())
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.saturating_add(n);
        let out = self.buf.get(self.pos..end).ok_or_else(|| self.eof())?;
        self.pos = end;
        Ok(out)
    }

    #[inline]
    fn be(&mut self, n: usize) -> Result<u64> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn mismatch<T>(&self, expected: &str, marker: u8) -> Result<T> {
        Err(self.error(format!("expected {expected}, got {}", type_name(marker))))
    }

    /// True when the next value is nil (without consuming it).
    pub fn next_is_nil(&self) -> bool {
        self.buf.get(self.pos) == Some(&0xc0)
    }

    /// Read a container header: a fix form (`fix` with the length in the
    /// low bits under `fix_mask`) or the 16- and 32-bit forms `m16`, `m32`.
    fn read_len(&mut self, fix: u8, fix_mask: u8, m16: u8, m32: u8, what: &str) -> Result<usize> {
        let marker = self.peek()?;
        let len = if marker & !fix_mask == fix {
            self.pos += 1;
            u64::from(marker & fix_mask)
        } else if marker == m16 {
            self.pos += 1;
            self.be(2)?
        } else if marker == m32 {
            self.pos += 1;
            self.be(4)?
        } else {
            return self.mismatch(what, marker);
        };
        Ok(len as usize)
    }

    /// Read the header of a map and return its number of entries.
    pub fn read_map_len(&mut self) -> Result<usize> {
        self.read_len(0x80, 0x0f, 0xde, 0xdf, "map")
    }

    /// Read the header of an array and return its number of items.
    pub fn read_array_len(&mut self) -> Result<usize> {
        self.read_len(0x90, 0x0f, 0xdc, 0xdd, "array")
    }

    /// The whole buffer this reader walks.
    pub fn buf(&self) -> &'a [u8] {
        self.buf
    }

    /// Consume `encoded` (the exact bytes of an expected value, such as a
    /// map key with its header) when the buffer continues with it.
    #[inline]
    pub fn eat(&mut self, encoded: &[u8]) -> bool {
        let end = self.pos + encoded.len();
        match self.buf.get(self.pos..end) {
            Some(window) if same_short(window, encoded) => {
                self.pos = end;
                true
            }
            _ => false,
        }
    }

    /// Read a map key: the raw bytes of a string, not checked for UTF-8
    /// (keys are only compared with known ASCII field names).
    #[inline]
    pub fn read_key(&mut self) -> Result<&'a [u8]> {
        let marker = self.peek()?;
        if let 0xa0..=0xbf = marker {
            self.pos += 1;
            return self.take(usize::from(marker & 0x1f));
        }
        let len = match marker {
            0xd9 => {
                self.pos += 1;
                self.be(1)?
            }
            0xda => {
                self.pos += 1;
                self.be(2)?
            }
            0xdb => {
                self.pos += 1;
                self.be(4)?
            }
            _ => return self.mismatch("str", marker),
        };
        self.take(len as usize)
    }

    /// Read a UTF-8 string, borrowed from the buffer.
    #[inline]
    pub fn read_str(&mut self) -> Result<&'a str> {
        // fixstr and str8 (every string up to 255 bytes) inline; longer ones
        // through the general header path.
        let (len, header) = match self.buf.get(self.pos) {
            Some(&marker @ 0xa0..=0xbf) => (usize::from(marker & 0x1f), 1),
            Some(&0xd9) => match self.buf.get(self.pos + 1) {
                Some(&len) => (usize::from(len), 2),
                None => return Err(self.eof()),
            },
            _ => return self.read_long_str(),
        };
        let start = self.pos + header;
        let bytes = self.buf.get(start..start + len).ok_or_else(|| self.eof())?;
        self.pos = start + len;
        utf8(bytes, start)
    }

    fn read_long_str(&mut self) -> Result<&'a str> {
        let marker = self.peek()?;
        let len = match marker {
            0xda => {
                self.pos += 1;
                self.be(2)?
            }
            0xdb => {
                self.pos += 1;
                self.be(4)?
            }
            _ => return self.mismatch("str", marker),
        };
        let start = self.pos;
        let bytes = self.take(len as usize)?;
        utf8(bytes, start)
    }

    /// Read a string or nil.
    pub fn read_opt_str(&mut self) -> Result<Option<&'a str>> {
        if self.next_is_nil() {
            self.pos += 1;
            Ok(None)
        } else {
            self.read_str().map(Some)
        }
    }

    /// Read an integer that fits in an `i64`.
    pub fn read_int(&mut self) -> Result<i64> {
        let marker = self.peek()?;
        let start = self.pos;
        self.pos += 1;
        let value: i128 = match marker {
            0x00..=0x7f => i128::from(marker),
            0xe0..=0xff => i128::from(marker as i8),
            0xcc => i128::from(self.be(1)?),
            0xcd => i128::from(self.be(2)?),
            0xce => i128::from(self.be(4)?),
            0xcf => i128::from(self.be(8)?),
            0xd0 => i128::from(self.be(1)? as u8 as i8),
            0xd1 => i128::from(self.be(2)? as u16 as i16),
            0xd2 => i128::from(self.be(4)? as u32 as i32),
            0xd3 => i128::from(self.be(8)? as i64),
            _ => {
                self.pos = start;
                return self.mismatch("int", marker);
            }
        };
        i64::try_from(value).map_err(|_| Malformed {
            offset: start,
            message: format!("int {value} out of range"),
        })
    }

    /// Read a boolean.
    pub fn read_bool(&mut self) -> Result<bool> {
        match self.peek()? {
            0xc2 => {
                self.pos += 1;
                Ok(false)
            }
            0xc3 => {
                self.pos += 1;
                Ok(true)
            }
            marker => self.mismatch("bool", marker),
        }
    }

    /// Skip one value of a field msgspec does not decode (an unknown field):
    /// only its syntax and its nesting are checked, as msgspec checks them.
    /// `depth` is the depth the value has when it is a container (the
    /// record's own map is depth 1); deeper than [`MAX_DEPTH`] is an error.
    #[inline]
    pub fn skip(&mut self, depth: usize) -> Result<()> {
        self.walk(depth, Walk::Unknown)
    }

    /// Check and skip one value of type `Any` (`Custom.data`), validating
    /// what msgspec validates when it decodes it: UTF-8 of every string (map
    /// keys included), keys it can hash (no map, no extension other than a
    /// timestamp, arrays only of such keys), timestamp extensions, nesting.
    #[inline]
    pub fn skip_any(&mut self, depth: usize) -> Result<()> {
        self.walk(depth, Walk::Any)
    }

    #[cold]
    #[inline(never)]
    fn error_at(&self, offset: usize, message: &str) -> Malformed {
        Malformed {
            offset,
            message: message.to_owned(),
        }
    }

    /// The length of a str, bin or ext body after its marker, read from
    /// `n` big-endian bytes.
    #[inline]
    fn len_be(&mut self, n: usize) -> Result<usize> {
        Ok(usize::try_from(self.be(n)?).unwrap_or(usize::MAX))
    }

    /// One value of any type; recursion is bounded by [`MAX_DEPTH`].
    fn walk(&mut self, depth: usize, walk: Walk) -> Result<()> {
        let at = self.pos;
        let marker = self.peek()?;
        self.pos += 1;
        let (items, map) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => return Ok(()),
            0xcc | 0xd0 => return self.take(1).map(drop),
            0xcd | 0xd1 => return self.take(2).map(drop),
            0xce | 0xd2 | 0xca => return self.take(4).map(drop),
            0xcf | 0xd3 | 0xcb => return self.take(8).map(drop),
            0xc4..=0xc6 => {
                let n = self.len_be(1 << (marker - 0xc4))?;
                return self.take(n).map(drop);
            }
            0xa0..=0xbf => return self.walk_str(usize::from(marker & 0x1f), walk),
            0xd9..=0xdb => {
                let n = self.len_be(1 << (marker - 0xd9))?;
                return self.walk_str(n, walk);
            }
            0xd4..=0xd8 => return self.walk_ext(at, 1 << (marker - 0xd4), walk),
            0xc7..=0xc9 => {
                let n = self.len_be(1 << (marker - 0xc7))?;
                return self.walk_ext(at, n, walk);
            }
            0x90..=0x9f => (u64::from(marker & 0x0f), false),
            0xdc => (self.be(2)?, false),
            0xdd => (self.be(4)?, false),
            0x80..=0x8f => (u64::from(marker & 0x0f), true),
            0xde => (self.be(2)?, true),
            0xdf => (self.be(4)?, true),
            _ => {
                self.pos = at;
                return Err(self.error(format!("reserved marker 0x{marker:02x}")));
            }
        };
        if depth > MAX_DEPTH {
            return Err(self.error_at(at, TOO_DEEP));
        }
        if map && walk == Walk::Key {
            return Err(self.error_at(at, UNHASHABLE_KEY));
        }
        let key = if walk == Walk::Unknown {
            Walk::Unknown
        } else {
            Walk::Key
        };
        for _ in 0..items {
            if map {
                self.walk_item(depth + 1, key)?;
            }
            self.walk_item(depth + 1, walk)?;
        }
        Ok(())
    }

    /// [`Reader::walk`] of one item of a container, the scalars most items
    /// are (small ints, nil, bools, short strings) without a call: the call
    /// cost more than checking them.
    #[inline(always)]
    fn walk_item(&mut self, depth: usize, walk: Walk) -> Result<()> {
        match self.peek()? {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => {
                self.pos += 1;
                Ok(())
            }
            marker @ 0xa0..=0xbf => {
                self.pos += 1;
                self.walk_str(usize::from(marker & 0x1f), walk)
            }
            _ => self.walk(depth, walk),
        }
    }

    #[inline]
    fn walk_str(&mut self, len: usize, walk: Walk) -> Result<()> {
        let start = self.pos;
        let bytes = self.take(len)?;
        if walk != Walk::Unknown && !is_utf8(bytes) {
            return Err(self.error_at(start, "invalid UTF-8 in str"));
        }
        Ok(())
    }

    /// An extension of `len` data bytes (after its type byte): a timestamp
    /// (type -1) must be one msgspec decodes; any other type cannot be a key.
    fn walk_ext(&mut self, at: usize, len: usize, walk: Walk) -> Result<()> {
        let ty = self.take(1)?.first().copied();
        let data = self.take(len)?;
        if walk == Walk::Unknown {
            return Ok(());
        }
        if ty == Some(0xff) {
            return if valid_timestamp(data) {
                Ok(())
            } else {
                Err(self.error_at(at, "invalid timestamp extension"))
            };
        }
        if walk == Walk::Key {
            return Err(self.error_at(at, UNHASHABLE_KEY));
        }
        Ok(())
    }
}

/// Deepest nesting of containers a record may hold, its own map counting as
/// depth 1 (SPEC 6.1), in both backends and on every path.
pub const MAX_DEPTH: usize = 256;

/// Message of a value nested deeper than [`MAX_DEPTH`].
pub const TOO_DEEP: &str = "nested more than 256 containers deep";
/// Message of a map key msgspec cannot hash.
pub const UNHASHABLE_KEY: &str = "map keys must be hashable";

/// How [`Reader::walk`] checks a value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// A field msgspec skips: syntax and nesting only.
    Unknown,
    /// A value msgspec decodes as `Any`.
    Any,
    /// A map key msgspec decodes as `Any` and must hash.
    Key,
}

/// Seconds of `0001-01-01T00:00:00Z` and `9999-12-31T23:59:59Z`, the range
/// of a Python `datetime`.
const TIMESTAMP_MIN: i64 = -62_135_596_800;
const TIMESTAMP_MAX: i64 = 253_402_300_799;

/// Whether msgspec decodes the data of a timestamp extension: 4, 8 or 12
/// bytes, nanoseconds below one second, and a time that rounded to
/// microseconds (half up, as msgspec rounds) fits a `datetime`.
fn valid_timestamp(data: &[u8]) -> bool {
    let be = |bytes: &[u8]| bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let (nanos, seconds) = match data.len() {
        4 => return true,
        8 => {
            let v = be(data);
            // At most 2**34 - 1 seconds: always inside the range.
            return (v >> 34) < 1_000_000_000;
        }
        12 => {
            let (nanos, seconds) = data.split_at(4);
            (be(nanos), be(seconds) as i64)
        }
        _ => return false,
    };
    if nanos >= 1_000_000_000 || !(TIMESTAMP_MIN..=TIMESTAMP_MAX).contains(&seconds) {
        return false;
    }
    // Nanoseconds that round up to a whole second carry into the seconds.
    !(nanos >= 999_999_500 && seconds == TIMESTAMP_MAX)
}

/// Appends canonical MessagePack to a buffer, as msgspec encodes it: the
/// smallest integer and length formats, `str8` for strings of 32..=255 bytes,
/// floats always as float64.
#[derive(Debug, Default)]
pub struct Writer {
    /// The bytes written so far.
    pub out: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer::default()
    }

    fn header(&mut self, len: usize, fix: u8, m16: u8, m32: u8) {
        match container_header_len(len as u64) {
            1 => self.out.push(fix | len as u8),
            3 => {
                self.out.push(m16);
                self.out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.out.push(m32);
                self.out.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
    }

    /// A map header.
    pub fn map(&mut self, len: usize) {
        self.header(len, 0x80, 0xde, 0xdf);
    }

    /// An array header.
    pub fn array(&mut self, len: usize) {
        self.header(len, 0x90, 0xdc, 0xdd);
    }

    /// A string.
    pub fn str(&mut self, s: &str) {
        let len = s.len();
        match str_header_len(len) {
            1 => self.out.push(0xa0 | len as u8),
            2 => self.out.extend_from_slice(&[0xd9, len as u8]),
            3 => {
                self.out.push(0xda);
                self.out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.out.push(0xdb);
                self.out.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
        self.out.extend_from_slice(s.as_bytes());
    }

    /// A string or nil.
    pub fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.nil(),
        }
    }

    /// Nil.
    pub fn nil(&mut self) {
        self.out.push(0xc0);
    }

    /// A boolean.
    pub fn bool(&mut self, b: bool) {
        self.out.push(if b { 0xc3 } else { 0xc2 });
    }

    /// A float, always as float64.
    pub fn float(&mut self, f: f64) {
        self.out.push(0xcb);
        self.out.extend_from_slice(&f.to_be_bytes());
    }

    /// A non-negative integer in its smallest format.
    pub fn uint(&mut self, v: u64) {
        match uint_marker(v) {
            0xcc => self.out.extend_from_slice(&[0xcc, v as u8]),
            0xcd => {
                self.out.push(0xcd);
                self.out.extend_from_slice(&(v as u16).to_be_bytes());
            }
            0xce => {
                self.out.push(0xce);
                self.out.extend_from_slice(&(v as u32).to_be_bytes());
            }
            0xcf => {
                self.out.push(0xcf);
                self.out.extend_from_slice(&v.to_be_bytes());
            }
            fixint => self.out.push(fixint),
        }
    }

    /// An integer in its smallest format.
    pub fn int(&mut self, v: i64) {
        if v >= 0 {
            return self.uint(v as u64);
        }
        match int_marker(v) {
            0xd0 => self.out.extend_from_slice(&[0xd0, v as i8 as u8]),
            0xd1 => {
                self.out.push(0xd1);
                self.out.extend_from_slice(&(v as i16).to_be_bytes());
            }
            0xd2 => {
                self.out.push(0xd2);
                self.out.extend_from_slice(&(v as i32).to_be_bytes());
            }
            0xd3 => {
                self.out.push(0xd3);
                self.out.extend_from_slice(&v.to_be_bytes());
            }
            fixint => self.out.push(fixint),
        }
    }
}

// The shortest forms msgspec encodes with, which [`Writer`] writes and the
// converter (`crate::convert`) checks a foreign encoding against.

/// The marker of the non-negative integer `v` in its shortest form (the
/// byte `v` itself below 128).
pub fn uint_marker(v: u64) -> u8 {
    match v {
        0..=0x7f => v as u8,
        0x80..=0xff => 0xcc,
        0x100..=0xffff => 0xcd,
        0x1_0000..=0xffff_ffff => 0xce,
        _ => 0xcf,
    }
}

/// The marker of the integer `v` in its shortest form: unsigned when `v >= 0`.
pub fn int_marker(v: i64) -> u8 {
    match v {
        0.. => uint_marker(v as u64),
        -32..=-1 => v as i8 as u8,
        -128..=-33 => 0xd0,
        -32_768..=-129 => 0xd1,
        -2_147_483_648..=-32_769 => 0xd2,
        _ => 0xd3,
    }
}

/// Bytes the shortest header of a string of `len` bytes takes (`str8` from 32).
pub fn str_header_len(len: usize) -> usize {
    match len {
        0..=31 => 1,
        32..=255 => 2,
        256..=65_535 => 3,
        _ => 5,
    }
}

/// Bytes the shortest header of an array or map of `len` items takes.
pub fn container_header_len(len: u64) -> usize {
    match len {
        0..=15 => 1,
        16..=65_535 => 3,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortest_forms_change_at_the_format_boundaries() {
        let unsigned = [
            (0, 0x00),
            (127, 0x7f),
            (128, 0xcc),
            (255, 0xcc),
            (256, 0xcd),
        ];
        let wider = [
            (65_535, 0xcd),
            (65_536, 0xce),
            (4_294_967_295, 0xce),
            (1 << 32, 0xcf),
        ];
        for (v, marker) in unsigned.into_iter().chain(wider) {
            assert_eq!(uint_marker(v), marker, "{v}");
            assert_eq!(int_marker(v as i64), marker, "{v}");
        }
        let negative = [
            (-1, 0xff),
            (-32, 0xe0),
            (-33, 0xd0),
            (-128, 0xd0),
            (-129, 0xd1),
        ];
        let wider = [
            (-32_768, 0xd1),
            (-32_769, 0xd2),
            (i64::from(i32::MIN), 0xd2),
        ];
        for (v, marker) in negative.into_iter().chain(wider).chain([(i64::MIN, 0xd3)]) {
            assert_eq!(int_marker(v), marker, "{v}");
        }
        let strings = [
            (0, 1),
            (31, 1),
            (32, 2),
            (255, 2),
            (256, 3),
            (65_535, 3),
            (65_536, 5),
        ];
        for (len, header) in strings {
            assert_eq!(str_header_len(len), header, "{len}");
        }
        for (len, header) in [(0, 1), (15, 1), (16, 3), (65_535, 3), (65_536, 5)] {
            assert_eq!(container_header_len(len), header, "{len}");
        }
        let mut w = Writer::new();
        w.int(-129);
        w.uint(65_536);
        w.str(&"x".repeat(32));
        w.array(16);
        let mut expected = vec![0xd1, 0xff, 0x7f, 0xce, 0, 1, 0, 0, 0xd9, 32];
        expected.extend_from_slice(&[b'x'; 32]);
        expected.extend_from_slice(&[0xdc, 0, 16]);
        assert_eq!(w.out, expected);
    }

    #[test]
    fn utf8_finds_a_bad_byte_at_any_position_of_any_length() {
        for n in 0..=24 {
            let ascii = vec![b'a'; n];
            assert!(utf8(&ascii, 0).is_ok());
            for at in 0..n {
                let mut bad = ascii.clone();
                bad[at] = 0xff;
                assert!(utf8(&bad, 0).is_err(), "length {n}, 0xff at {at}");
                if at + 2 <= n {
                    let mut good = ascii.clone();
                    good[at..at + 2].copy_from_slice("é".as_bytes());
                    assert_eq!(utf8(&good, 0).ok(), std::str::from_utf8(&good).ok());
                }
            }
        }
    }

    #[test]
    fn same_short_is_slice_equality() {
        let base: Vec<u8> = (0u8..24).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        for n in 0..=base.len() {
            let a = &base[..n];
            assert!(same_short(a, a));
            for at in 0..n {
                let mut b = a.to_vec();
                b[at] ^= 1;
                assert!(!same_short(a, &b), "length {n}, differing at {at}");
            }
            if n > 0 {
                assert!(!same_short(a, &base[..n - 1]));
            }
        }
    }

    #[test]
    fn ints_round_trip_in_smallest_form() {
        for v in [
            0i64,
            1,
            127,
            128,
            255,
            256,
            65535,
            65536,
            -1,
            -32,
            -33,
            -128,
            -129,
            i64::MIN,
            i64::MAX,
        ] {
            let mut w = Writer::new();
            w.int(v);
            let mut r = Reader::new(&w.out);
            assert_eq!(r.read_int().unwrap(), v);
            assert!(r.at_end());
        }
        let mut w = Writer::new();
        w.int(128);
        assert_eq!(w.out, [0xcc, 0x80]);
    }

    #[test]
    fn uint64_above_i64_is_out_of_range() {
        let bytes = [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        let err = Reader::new(&bytes).read_int().unwrap_err();
        assert_eq!(err.offset, 0);
    }

    #[test]
    fn strings_borrow_and_validate_utf8() {
        let mut w = Writer::new();
        w.str(&"x".repeat(40));
        assert_eq!(w.out[0], 0xd9);
        assert_eq!(Reader::new(&w.out).read_str().unwrap().len(), 40);
        assert!(Reader::new(&[0xa1, 0xff]).read_str().is_err());
    }

    #[test]
    fn truncated_and_huge_lengths_are_errors_not_panics() {
        assert!(Reader::new(&[0xdb, 0xff, 0xff, 0xff, 0xff])
            .read_str()
            .is_err());
        assert!(Reader::new(&[0xdd, 0xff, 0xff, 0xff, 0xff])
            .skip(1)
            .is_err());
        assert!(Reader::new(&[]).read_map_len().is_err());
        assert!(Reader::new(&[0xc1]).skip(1).is_err());
    }

    fn nested(levels: usize) -> Vec<u8> {
        let mut bytes = vec![0x91; levels];
        bytes.push(0xc0);
        bytes
    }

    #[test]
    fn nesting_is_limited_on_both_walks() {
        for any in [false, true] {
            let skip = |r: &mut Reader<'_>, depth| {
                if any {
                    r.skip_any(depth)
                } else {
                    r.skip(depth)
                }
            };
            let deepest = nested(MAX_DEPTH);
            let mut r = Reader::new(&deepest);
            skip(&mut r, 1).unwrap();
            assert!(r.at_end());
            let err = skip(&mut Reader::new(&nested(MAX_DEPTH + 1)), 1).unwrap_err();
            assert_eq!((err.offset, err.message.as_str()), (MAX_DEPTH, TOO_DEEP));
            assert!(skip(&mut Reader::new(&nested(MAX_DEPTH)), 2).is_err());
            assert!(skip(&mut Reader::new(&nested(1_000_000)), 1).is_err());
            // an empty container counts too
            let mut empty = vec![0x91; MAX_DEPTH];
            empty.push(0x90);
            assert!(skip(&mut Reader::new(&empty), 1).is_err());
        }
    }

    #[test]
    fn strings_inside_containers_are_checked_as_utf8_where_they_sit() {
        // {"k": [s]} with `s` as a fixstr and as a str8, then as a key: the
        // items walked without a call must report what the call reports.
        let mut bad = vec![0xe2, 0x82]; // a truncated euro sign
        let mut good = "café €".as_bytes().to_vec();
        for (len, header) in [(2usize, vec![0xa2u8]), (40, vec![0xd9, 40])] {
            bad.resize(len, b'a');
            good.resize(len, b'a');
            for (text, ok) in [(&good, true), (&bad, false)] {
                let mut value = vec![0x81, 0xa1, b'k', 0x91];
                value.extend_from_slice(&header);
                value.extend_from_slice(text);
                let mut key = vec![0x81];
                key.extend_from_slice(&header);
                key.extend_from_slice(text);
                key.push(0xc0);
                for (bytes, at) in [(&value, 4 + header.len()), (&key, 1 + header.len())] {
                    let mut r = Reader::new(bytes);
                    match r.skip_any(1) {
                        Ok(()) => assert!(ok && r.at_end()),
                        Err(err) => {
                            assert!(!ok);
                            assert_eq!(
                                (err.offset, err.message.as_str()),
                                (at, "invalid UTF-8 in str")
                            );
                        }
                    }
                    // an unknown field's strings are only parsed
                    let mut r = Reader::new(bytes);
                    r.skip(1).unwrap();
                    assert!(r.at_end());
                }
            }
        }
    }

    #[test]
    fn any_values_are_validated_unknown_ones_only_parsed() {
        let ts12 = |nanos: u32, secs: i64| {
            let mut v = vec![0xc7, 12, 0xff];
            v.extend_from_slice(&nanos.to_be_bytes());
            v.extend_from_slice(&secs.to_be_bytes());
            v
        };
        let bad: Vec<Vec<u8>> = vec![
            vec![0xa1, 0xff],                   // invalid UTF-8
            vec![0x81, 0xa1, 0xff, 0x01],       // ... in a key
            vec![0x81, 0x80, 0x01],             // a map as a key
            vec![0x81, 0x91, 0x80, 0x01],       // a map inside an array key
            vec![0x81, 0xd4, 0x05, 0x61, 0x01], // an extension as a key
            vec![0xc7, 5, 0xff, 0, 0, 0, 0, 0], // a timestamp of 5 bytes
            vec![0xd4, 0xff, 0x00],             // ... of 1 byte
            {
                let mut v = vec![0xd7, 0xff];
                v.extend_from_slice(&(1_000_000_000u64 << 34).to_be_bytes());
                v
            },
            ts12(1_000_000_000, 0),
            ts12(0, TIMESTAMP_MAX + 1),
            ts12(0, TIMESTAMP_MIN - 1),
            ts12(999_999_500, TIMESTAMP_MAX),
        ];
        for value in &bad {
            assert!(Reader::new(value).skip_any(3).is_err(), "{value:02x?}");
            let mut r = Reader::new(value);
            r.skip(3).unwrap();
            assert!(r.at_end());
        }
        let good: Vec<Vec<u8>> = vec![
            vec![0x81, 0x91, 0x91, 0x01, 0x01],       // nested array keys
            vec![0x81, 0xc4, 0x01, 0x61, 0x01],       // bytes as a key
            vec![0x81, 0xd6, 0xff, 0, 0, 0, 1, 0x01], // a timestamp as a key
            vec![0xd5, 0x07, 0x61, 0x62],             // another extension
            vec![0xd9, 0x01, 0x61],                   // str8 for a short str
            ts12(999_999_499, TIMESTAMP_MAX),
            ts12(0, TIMESTAMP_MIN),
        ];
        for value in &good {
            let mut r = Reader::new(value);
            r.skip_any(3).unwrap();
            assert!(r.at_end(), "{value:02x?}");
        }
    }
}
