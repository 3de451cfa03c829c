//! JSON-lines journals (`.jsonl`, SPEC 6.2), in pure Rust.
//!
//! One JSON record per line (SPEC 6.2). A blank line is skipped and counted;
//! a last line without its newline that does not decode is a torn tail (what
//! a crash mid-write leaves, cut by a writer reopening the file); any other
//! line that does not decode to a record (an unknown kind, too deep, longer
//! than the reader's limit included) is corruption, reported with its byte
//! offset and 1-based line number ([`LineEvent::Corrupt`]). The newline
//! ending the last line does not make an extra line. A line over the limit
//! is counted while it is read and never held whole; it is corruption even
//! when the whitespace it holds would make it blank, and a torn tail when it
//! is the unterminated last line.
//!
//! "Decodes to a record" means exactly what `msgspec.json.Decoder(JournalRecord)`
//! accepts, so this module parses JSON the way msgspec does, directed by the
//! schema of `python/replaycore/records.py` (a general JSON parser would
//! disagree with msgspec at the edges):
//!
//! * strict JSON grammar; whitespace is space, tab, CR and LF only;
//! * escapes are checked everywhere (`\uD800` must be followed by `\uDC00`..;
//!   a lone surrogate is an error), raw control characters are refused;
//! * UTF-8 is validated only in strings that are decoded: values of unknown
//!   fields and unknown keys are skipped unchecked, as msgspec does;
//! * numbers: an integer field takes an integer literal in the `i64` range
//!   (`1.0`, `1e2` and `true` are refused, `-0` is 0); in `Custom.data` an
//!   integer literal is an int of any size and anything else a float64 (an
//!   infinite one is refused); numbers skipped in unknown fields are only
//!   checked for syntax;
//! * duplicate keys: the last one wins; every `kind` key of a payload must
//!   repeat the tag found first;
//! * nesting deeper than [`MAX_DEPTH`] (256 levels, the record object
//!   included) is refused, as the reference refuses it before msgspec would
//!   raise `RecursionError` (around 1000 levels, depending on the stack).
//!
//! A parsed line is then encoded canonically -- what
//! `records.encode_canonical(msgspec.json.decode(line, type=JournalRecord))`
//! gives: fields in declaration order with their defaults, payload `kind`
//! first, `Custom.data` maps with keys sorted, ints in their smallest form,
//! floats as float64 -- and decoded with [`records::decode_msgpack`], which
//! yields the [`Record`] the reducer applies. An int in `Custom.data` outside
//! `-2**63..2**64` decodes in msgspec but has no msgpack encoding (the
//! reference's `encode_canonical` raises): such a line is reported apart
//! ([`LineEvent::Unencodable`]).
//!
//! [`records::decode_msgpack`]: crate::records::decode_msgpack

use std::borrow::Cow;
use std::io::{self, Read};

use std::fmt;

use crate::error::Error;
use crate::frames::{ReadAt, WalkError};
use crate::msgpack::Writer;
pub use crate::msgpack::MAX_DEPTH;
use crate::records::{decode_msgpack, Record};

/// Default limit on the length of a line (64 MiB), its newline excluded.
pub const DEFAULT_MAX_LINE: u64 = 64 * 1024 * 1024;
/// The largest limit `max_line_bytes` accepts (`2**63 - 1`, as the
/// reference's other size limits held in a Python `int`).
pub const MAX_LINE_LIMIT: u64 = i64::MAX as u64;

/// The `max_line_bytes` argument: [`DEFAULT_MAX_LINE`] when it is left out
/// (`None`), else a limit in `1..=MAX_LINE_LIMIT`.
pub fn max_line_bytes(given: Option<i64>) -> Result<u64, Error> {
    let Some(limit) = given else {
        return Ok(DEFAULT_MAX_LINE);
    };
    u64::try_from(limit)
        .ok()
        .filter(|limit| (1..=MAX_LINE_LIMIT).contains(limit))
        .ok_or_else(|| max_line_out_of_range(limit))
}

/// The error of a `max_line_bytes` outside `1..=MAX_LINE_LIMIT`, shown as
/// `shown` (also for integers beyond `i64`, which only the bindings meet).
pub fn max_line_out_of_range(shown: impl fmt::Display) -> Error {
    Error::out_of_range("max_line_bytes", 1, i128::from(MAX_LINE_LIMIT), shown)
}

/// Reason: line `number` (1-based) does not decode to a record.
pub fn line_does_not_decode(number: u64) -> String {
    format!("line {number} does not decode to a record")
}

/// Reason: line `number` is longer than `limit` bytes.
pub fn line_too_long(number: u64, limit: u64) -> String {
    format!("line {number} is longer than the limit of {limit} bytes")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Int,
    Str,
    OptStr,
    StrList,
    Bool,
    Pending,
    Any,
    Payload,
}

#[derive(Clone, Copy, Debug)]
enum Dflt {
    Required,
    Int(i64),
    Nil,
    Empty,
}

/// One field of a Struct of `records.py`, in declaration order.
#[derive(Debug)]
struct Field {
    name: &'static str,
    ty: Ty,
    default: Dflt,
}

const fn field(name: &'static str, ty: Ty, default: Dflt) -> Field {
    Field { name, ty, default }
}

const fn req(name: &'static str, ty: Ty) -> Field {
    field(name, ty, Dflt::Required)
}

const fn opt(name: &'static str) -> Field {
    field(name, Ty::OptStr, Dflt::Nil)
}

const RECORD: &[Field] = &[
    field("schema", Ty::Int, Dflt::Int(1)),
    req("record_id", Ty::Str),
    req("journal_seq", Ty::Int),
    req("run_id", Ty::Str),
    field("at_ms", Ty::Int, Dflt::Int(0)),
    opt("idempotency_key"),
    opt("dedupe_key"),
    field("content_refs", Ty::StrList, Dflt::Empty),
    req("payload", Ty::Payload),
];
const JOURNAL_SEQ: usize = 2;
const PAYLOAD: usize = 8;

const PENDING: &[Field] = &[
    req("effect_id", Ty::Str),
    req("intent_record_id", Ty::Str),
    opt("idempotency_key"),
    opt("dedupe_key"),
    req("reason", Ty::Str),
];

const KINDS: &[(&str, &[Field])] = &[
    (
        "checkpoint",
        &[
            req("checkpoint_seq", Ty::Int),
            req("covers_journal_seq", Ty::Int),
            req("loop_state", Ty::Str),
            req("created_at_ms", Ty::Int),
            field("content_ref_manifest", Ty::StrList, Dflt::Empty),
        ],
    ),
    (
        "recovery",
        &[field("unsafe_pending", Ty::Pending, Dflt::Empty)],
    ),
    (
        "effect_intent",
        &[
            req("effect_id", Ty::Str),
            req("effect_kind", Ty::Str),
            opt("idempotency_key"),
            opt("dedupe_key"),
        ],
    ),
    (
        "effect_result",
        &[
            req("effect_id", Ty::Str),
            req("status", Ty::Str),
            opt("output_ref"),
        ],
    ),
    (
        "output_intent",
        &[
            req("delivery_id", Ty::Str),
            req("sink_ref", Ty::Str),
            req("dedupe_key", Ty::Str),
            opt("idempotency_key"),
        ],
    ),
    (
        "output_result",
        &[
            req("delivery_id", Ty::Str),
            req("status", Ty::Str),
            opt("external_operation_id"),
        ],
    ),
    (
        "output_dedupe",
        &[
            req("dedupe_key", Ty::Str),
            opt("prior_external_operation_id"),
            req("prior_terminal_status", Ty::Str),
        ],
    ),
    (
        "output_reconciliation",
        &[
            req("delivery_id", Ty::Str),
            req("intent_record_id", Ty::Str),
            req("dedupe_key", Ty::Str),
            opt("idempotency_key"),
            opt("external_operation_id"),
            req("terminal_status", Ty::Str),
            req("reason", Ty::Str),
            req("decision", Ty::Str),
            req("resend_allowed", Ty::Bool),
        ],
    ),
    (
        "output_event",
        &[req("delivery_id", Ty::Str), req("event", Ty::Str)],
    ),
    ("run_lifecycle", &[req("status", Ty::Str)]),
    (
        "terminal_result",
        &[req("effect_id", Ty::Str), req("terminal_status", Ty::Str)],
    ),
    (
        "custom",
        &[req("name", Ty::Str), field("data", Ty::Any, Dflt::Nil)],
    ),
];

/// A decoded JSON value, shaped by the schema.
#[derive(Debug)]
enum Value<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Str(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    /// A Struct: its tag (payloads) and its fields' values in declaration order.
    Struct(Option<&'static str>, &'static [Field], Vec<Value<'a>>),
    /// `Custom.data`: already transcoded to canonical msgpack, in the
    /// parser's `data` buffer (it is the last field of the canonical
    /// encoding, so it never needs moving but once, behind the rest).
    Data,
}

/// What msgspec refuses (the detail does not matter: the line is skipped).
#[derive(Debug)]
struct Refused;

type Parsed<T> = Result<T, Refused>;

/// A number literal.
enum Number<'a> {
    /// An integer literal; None when outside `-2**63..2**64`.
    Int(Option<i128>),
    /// A literal with a fraction or an exponent.
    Float(&'a str),
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    /// The canonical msgpack of the last `Custom.data` read.
    data: Writer,
    /// That data holds an int msgpack cannot carry, or a container of more
    /// than `u32::MAX` items (the reference's `encode_canonical` raises).
    unencodable: bool,
}

/// A container of `Custom.data` being transcoded (see [`Parser::any`]).
struct Open {
    /// Offset in the output of its header, written as a 5-byte placeholder.
    header: usize,
    /// Items (array) or entries (map) so far.
    count: u64,
    map: bool,
    /// Map: where the bytes of the key of the entry being read lie.
    key: (usize, usize),
    /// Map: `(start, end)` of every entry, once a key was found out of
    /// order (only then: a map written in order costs nothing per entry).
    entries: Option<Vec<(usize, usize)>>,
    /// Map: offset of the entry being read.
    entry: usize,
}

/// The placeholder header of a container: as long as the longest form.
const PLACEHOLDER: usize = 5;

/// The bytes of the msgpack str at `at` (a key the transcoder wrote).
fn key_at(out: &[u8], at: usize) -> &[u8] {
    crate::msgpack::Reader::at(out, at)
        .read_key()
        .unwrap_or(&[])
}

fn hex4(bytes: &[u8]) -> Option<u32> {
    if bytes.len() != 4 {
        return None;
    }
    bytes.iter().try_fold(0u32, |acc, &b| {
        let digit = (b as char).to_digit(16)?;
        Some(acc * 16 + digit)
    })
}

impl<'a> Parser<'a> {
    fn new(s: &'a [u8], data: Vec<u8>) -> Self {
        Parser {
            s,
            pos: 0,
            data: Writer { out: data },
            unencodable: false,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Parsed<()> {
        self.ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Refused)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Parsed<()> {
        let end = self.pos + word.len();
        if self.s.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(())
        } else {
            Err(Refused)
        }
    }

    /// Read `\uXXXX` (the backslash and `u` included) at the cursor.
    fn u_escape(&mut self) -> Parsed<u32> {
        if self.s.get(self.pos..self.pos + 2) != Some(b"\\u") {
            return Err(Refused);
        }
        let code = self
            .s
            .get(self.pos + 2..self.pos + 6)
            .and_then(hex4)
            .ok_or(Refused)?;
        self.pos += 6;
        Ok(code)
    }

    /// One escape sequence (cursor on the backslash), appended to `out` when given.
    fn escape(&mut self, out: Option<&mut Vec<u8>>) -> Parsed<()> {
        let kind = self.s.get(self.pos + 1).copied().ok_or(Refused)?;
        let byte = match kind {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let high = self.u_escape()?;
                let code = match high {
                    0xD800..=0xDBFF => {
                        let low = self.u_escape()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(Refused);
                        }
                        0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(Refused),
                    code => code,
                };
                if let Some(out) = out {
                    let ch = char::from_u32(code).ok_or(Refused)?;
                    let mut utf8 = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
                }
                return Ok(());
            }
            _ => return Err(Refused),
        };
        self.pos += 2;
        if let Some(out) = out {
            out.push(byte);
        }
        Ok(())
    }

    /// A string's contents with escapes resolved; UTF-8 is not checked.
    fn string_bytes(&mut self) -> Parsed<Cow<'a, [u8]>> {
        self.expect(b'"')?;
        let start = self.pos;
        let mut owned: Option<Vec<u8>> = None;
        let mut run = start;
        loop {
            match self.peek().ok_or(Refused)? {
                b'"' => {
                    let tail = &self.s[run..self.pos];
                    self.pos += 1;
                    return Ok(match owned {
                        None => Cow::Borrowed(tail),
                        Some(mut out) => {
                            out.extend_from_slice(tail);
                            Cow::Owned(out)
                        }
                    });
                }
                b'\\' => {
                    let out = owned.get_or_insert_with(Vec::new);
                    out.extend_from_slice(&self.s[run..self.pos]);
                    self.escape(Some(out))?;
                    run = self.pos;
                }
                0x00..=0x1f => return Err(Refused),
                _ => self.pos += 1,
            }
        }
    }

    /// Check a string's syntax without decoding it.
    fn skip_string(&mut self) -> Parsed<()> {
        self.expect(b'"')?;
        loop {
            match self.peek().ok_or(Refused)? {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => self.escape(None)?,
                0x00..=0x1f => return Err(Refused),
                _ => self.pos += 1,
            }
        }
    }

    /// A string decoded to text (UTF-8 checked).
    fn string(&mut self) -> Parsed<Cow<'a, str>> {
        match self.string_bytes()? {
            Cow::Borrowed(bytes) => std::str::from_utf8(bytes)
                .map(Cow::Borrowed)
                .map_err(|_| Refused),
            Cow::Owned(bytes) => String::from_utf8(bytes)
                .map(Cow::Owned)
                .map_err(|_| Refused),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Parsed<Number<'a>> {
        self.ws();
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(Refused);
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Refused),
        }
        let int_end = self.pos;
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(Refused);
            }
            float = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(Refused);
            }
            float = true;
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| Refused)?;
        if float {
            return Ok(Number::Float(text));
        }
        // At most 20 significant digits fit; more is a big int either way.
        let digits = &self.s[int_start..int_end];
        let magnitude = if digits.len() > 20 {
            None
        } else {
            digits
                .iter()
                .try_fold(0i128, |acc, &d| Some(acc * 10 + i128::from(d - b'0')))
        };
        let value = magnitude.map(|m| if negative { -m } else { m });
        let value = value.filter(|v| (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(v));
        Ok(Number::Int(value))
    }

    /// Skip one value of any type, checking its syntax only. Iterative, so
    /// deep nesting costs heap, not stack.
    fn skip(&mut self, depth: usize) -> Parsed<()> {
        let mut closers: Vec<u8> = Vec::new();
        loop {
            self.ws();
            match self.peek().ok_or(Refused)? {
                open @ (b'{' | b'[') => {
                    self.enter(depth + closers.len())?;
                    self.pos += 1;
                    self.ws();
                    let closer = if open == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(closer) {
                        self.pos += 1;
                    } else {
                        if closer == b'}' {
                            self.skip_string()?;
                            self.expect(b':')?;
                        }
                        closers.push(closer);
                        continue;
                    }
                }
                b'"' => self.skip_string()?,
                b'-' | b'0'..=b'9' => {
                    self.number()?;
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => return Err(Refused),
            }
            // A value is complete: close the containers it completes.
            loop {
                let Some(&closer) = closers.last() else {
                    return Ok(());
                };
                if self.close(closer)? {
                    closers.pop();
                    continue;
                }
                if closer == b'}' {
                    self.skip_string()?;
                    self.expect(b':')?;
                }
                break;
            }
        }
    }

    fn enter(&self, depth: usize) -> Parsed<()> {
        if depth >= MAX_DEPTH {
            Err(Refused)
        } else {
            Ok(())
        }
    }

    /// After an item of a container: true at its closing byte, false at a comma.
    fn close(&mut self, closing: u8) -> Parsed<bool> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(false)
            }
            Some(b) if b == closing => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(Refused),
        }
    }

    /// The items of an array, each read by `item`.
    fn array<T>(
        &mut self,
        depth: usize,
        mut item: impl FnMut(&mut Self) -> Parsed<T>,
    ) -> Parsed<Vec<T>> {
        self.expect(b'[')?;
        self.enter(depth)?;
        let mut out = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(out);
        }
        loop {
            out.push(item(self)?);
            if self.close(b']')? {
                return Ok(out);
            }
        }
    }

    fn typed(&mut self, ty: Ty, depth: usize) -> Parsed<Value<'a>> {
        self.ws();
        Ok(match ty {
            Ty::Int => match self.number()? {
                Number::Int(Some(v)) => Value::Int(i64::try_from(v).map_err(|_| Refused)?),
                _ => return Err(Refused),
            },
            Ty::Str => Value::Str(self.string()?),
            Ty::OptStr => {
                if self.peek() == Some(b'n') {
                    self.literal(b"null")?;
                    Value::Nil
                } else {
                    Value::Str(self.string()?)
                }
            }
            Ty::StrList => Value::Array(self.array(depth, |p| p.string().map(Value::Str))?),
            Ty::Bool => match self.peek() {
                Some(b't') => self.literal(b"true").map(|_| Value::Bool(true))?,
                Some(b'f') => self.literal(b"false").map(|_| Value::Bool(false))?,
                _ => return Err(Refused),
            },
            Ty::Pending => Value::Array(self.array(depth, |p| {
                let values = p.fields(PENDING, None, depth + 1)?;
                Ok(Value::Struct(None, PENDING, values))
            })?),
            Ty::Any => self.any(depth)?,
            Ty::Payload => self.payload(depth)?,
        })
    }

    /// A value of type `Any` (`Custom.data`), validated as msgspec decodes
    /// it and transcoded as it is read into its canonical msgpack (in
    /// `self.data`): no value tree, so the line's bytes plus that encoding
    /// are all it holds (SPEC 6.2 Memory). Iterative, so deep nesting costs
    /// heap, not stack.
    ///
    /// A container's item count is known only at its end: its header is a
    /// 5-byte placeholder, replaced by the shortest form once it is closed
    /// (the contents move back by at most 4 bytes). A map's keys must come
    /// out sorted and unique (msgspec's deterministic order, the last of
    /// equal keys kept, as a dict does): one written in order stays where
    /// it is; one found out of order is reordered when it is closed.
    fn any(&mut self, depth: usize) -> Parsed<Value<'a>> {
        self.data.out.clear();
        self.unencodable = false;
        let mut stack: Vec<Open> = Vec::new();
        loop {
            self.ws();
            match self.peek().ok_or(Refused)? {
                open @ (b'{' | b'[') => {
                    self.enter(depth + stack.len())?;
                    self.pos += 1;
                    self.ws();
                    let map = open == b'{';
                    let closer = if map { b'}' } else { b']' };
                    if self.peek() == Some(closer) {
                        self.pos += 1;
                        self.data.out.push(if map { 0x80 } else { 0x90 });
                    } else {
                        let header = self.data.out.len();
                        self.data.out.extend_from_slice(&[0; PLACEHOLDER]);
                        let mut container = Open {
                            header,
                            count: 0,
                            map,
                            key: (0, 0),
                            entries: None,
                            entry: header + PLACEHOLDER,
                        };
                        if map {
                            self.data_key(&mut container, true)?;
                        }
                        stack.push(container);
                        continue;
                    }
                }
                b'"' => {
                    let text = self.string()?;
                    self.data.str(&text);
                }
                b'-' | b'0'..=b'9' => match self.number()? {
                    Number::Int(Some(v)) => match i64::try_from(v) {
                        Ok(v) => self.data.int(v),
                        Err(_) => self.data.uint(u64::try_from(v).map_err(|_| Refused)?),
                    },
                    Number::Int(None) => {
                        self.unencodable = true;
                        self.data.nil();
                    }
                    Number::Float(text) => {
                        let v: f64 = text.parse().map_err(|_| Refused)?;
                        if !v.is_finite() {
                            return Err(Refused); // msgspec: "Number out of range"
                        }
                        self.data.float(v);
                    }
                },
                b't' => self.literal(b"true").map(|_| self.data.bool(true))?,
                b'f' => self.literal(b"false").map(|_| self.data.bool(false))?,
                b'n' => self.literal(b"null").map(|_| self.data.nil())?,
                _ => return Err(Refused),
            }
            // A value is complete: count it, closing the containers it completes.
            loop {
                let Some(top) = stack.last_mut() else {
                    return Ok(Value::Data);
                };
                top.count += 1;
                let end = self.data.out.len();
                if let Some(entries) = &mut top.entries {
                    entries.push((top.entry, end));
                }
                if !self.close(if top.map { b'}' } else { b']' })? {
                    if top.map {
                        top.entry = end;
                        self.data_key(top, false)?;
                    }
                    break;
                }
                if let Some(done) = stack.pop() {
                    self.close_container(done);
                }
            }
        }
    }

    /// Read a key of a `Custom.data` map (a string, UTF-8 checked), its `:`
    /// included, and write it; note when it is not after the previous key.
    fn data_key(&mut self, map: &mut Open, first: bool) -> Parsed<()> {
        let key = self.string()?;
        self.data.str(&key);
        let end = self.data.out.len();
        let key = (end - key.len(), end);
        if !first && map.entries.is_none() {
            let out = &self.data.out;
            if out.get(map.key.0..map.key.1) >= out.get(key.0..key.1) {
                map.entries = Some(self.entries_so_far(map));
            }
        }
        map.key = key;
        self.expect(b':')
    }

    /// `(start, end)` of the entries of `map` before the one being read.
    fn entries_so_far(&self, map: &Open) -> Vec<(usize, usize)> {
        let out = &self.data.out;
        let mut reader = crate::msgpack::Reader::at(out, map.header + PLACEHOLDER);
        let mut entries = Vec::new();
        while reader.pos() < map.entry {
            let start = reader.pos();
            if reader.read_key().is_err() || reader.skip_any(0).is_err() {
                break; // cannot happen: the transcoder wrote these bytes
            }
            entries.push((start, reader.pos()));
        }
        entries
    }

    /// Write the real header of a closed container in place of its
    /// placeholder, after sorting a map whose keys came out of order.
    fn close_container(&mut self, open: Open) {
        let out = &mut self.data.out;
        let contents = open.header + PLACEHOLDER;
        let mut count = open.count;
        if let Some(mut entries) = open.entries {
            // A stable sort keeps equal keys in line order: keep the last.
            entries.sort_by(|a, b| key_at(out, a.0).cmp(key_at(out, b.0)));
            let mut sorted = Vec::with_capacity(out.len() - contents);
            count = 0;
            for (i, &(start, end)) in entries.iter().enumerate() {
                let next = entries.get(i + 1).map(|next| key_at(out, next.0));
                if next != Some(key_at(out, start)) {
                    sorted.extend_from_slice(out.get(start..end).unwrap_or(&[]));
                    count += 1;
                }
            }
            out.truncate(contents);
            out.extend_from_slice(&sorted);
        }
        let Ok(count) = u32::try_from(count) else {
            self.unencodable = true;
            return;
        };
        let mut header = Writer {
            out: Vec::with_capacity(PLACEHOLDER),
        };
        if open.map {
            header.map(count as usize);
        } else {
            header.array(count as usize);
        }
        let len = header.out.len();
        out[open.header..open.header + len].copy_from_slice(&header.out);
        if len < PLACEHOLDER {
            out.copy_within(contents.., open.header + len);
            out.truncate(out.len() - (PLACEHOLDER - len));
        }
    }

    /// The fields of a Struct object; `tag` is the payload kind every `kind`
    /// key must repeat (None for untagged Structs, where `kind` is unknown).
    fn fields(
        &mut self,
        fields: &'static [Field],
        tag: Option<&'static str>,
        depth: usize,
    ) -> Parsed<Vec<Value<'a>>> {
        self.expect(b'{')?;
        self.enter(depth)?;
        let mut found: Vec<Option<Value<'a>>> = fields.iter().map(|_| None).collect();
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                let key = self.string_bytes()?;
                self.expect(b':')?;
                if tag.is_some() && &*key == b"kind" {
                    let value = self.string_bytes()?;
                    if Some(&*value) != tag.map(str::as_bytes) {
                        return Err(Refused);
                    }
                } else if let Some(i) = fields.iter().position(|f| f.name.as_bytes() == &*key) {
                    let value = self.typed(fields[i].ty, depth + 1)?;
                    if let Some(slot) = found.get_mut(i) {
                        *slot = Some(value);
                    }
                } else {
                    self.skip(depth + 1)?;
                }
                if self.close(b'}')? {
                    break;
                }
            }
        }
        fields
            .iter()
            .zip(found)
            .map(|(f, value)| match (value, f.default) {
                (Some(value), _) => Ok(value),
                (None, Dflt::Required) => Err(Refused),
                (None, Dflt::Int(v)) => Ok(Value::Int(v)),
                (None, Dflt::Nil) => Ok(Value::Nil),
                (None, Dflt::Empty) => Ok(Value::Array(Vec::new())),
            })
            .collect()
    }

    /// A payload: like msgspec, find the first `kind` key (skipping the
    /// values before it), then decode the object as that kind's Struct.
    fn payload(&mut self, depth: usize) -> Parsed<Value<'a>> {
        self.ws();
        let start = self.pos;
        let kind = self.find_tag(depth)?;
        self.pos = start;
        let (tag, fields) = KINDS
            .iter()
            .find(|(name, _)| *name == kind)
            .copied()
            .ok_or(Refused)?;
        let values = self.fields(fields, Some(tag), depth)?;
        Ok(Value::Struct(Some(tag), fields, values))
    }

    fn find_tag(&mut self, depth: usize) -> Parsed<&'static str> {
        self.expect(b'{')?;
        self.enter(depth)?;
        loop {
            let key = self.string_bytes()?;
            self.expect(b':')?;
            if &*key == b"kind" {
                let value = self.string_bytes()?;
                return KINDS
                    .iter()
                    .map(|(name, _)| *name)
                    .find(|name| name.as_bytes() == &*value)
                    .ok_or(Refused);
            }
            self.skip(depth + 1)?;
            if self.close(b'}')? {
                return Err(Refused); // no tag
            }
        }
    }
}

/// Write `value` canonically, `Custom.data` (`Value::Data`) excepted:
/// the caller appends it, and learns it is there from `data`.
fn write_value(w: &mut Writer, value: &Value<'_>, data: &mut bool) {
    match value {
        Value::Nil => w.nil(),
        Value::Bool(b) => w.bool(*b),
        Value::Int(v) => w.int(*v),
        Value::Str(s) => w.str(s),
        Value::Array(items) => {
            w.array(items.len());
            for item in items {
                write_value(w, item, data);
            }
        }
        Value::Struct(tag, fields, values) => write_struct(w, *tag, fields, values, data),
        Value::Data => *data = true,
    }
}

/// A Struct as msgspec encodes it: a map of every field in declaration
/// order, a payload's `kind` tag first.
fn write_struct(
    w: &mut Writer,
    tag: Option<&str>,
    fields: &[Field],
    values: &[Value<'_>],
    data: &mut bool,
) {
    w.map(fields.len() + usize::from(tag.is_some()));
    if let Some(tag) = tag {
        w.str("kind");
        w.str(tag);
    }
    for (f, value) in fields.iter().zip(values) {
        w.str(f.name);
        write_value(w, value, data);
    }
}

/// A line that `msgspec.json.Decoder(JournalRecord)` decodes.
#[derive(Debug)]
pub struct JsonRecord<'a> {
    values: Vec<Value<'a>>,
    /// The canonical msgpack of the last `Custom.data` read (used when
    /// `values` holds `Value::Data`).
    data: Vec<u8>,
    unencodable: bool,
}

impl JsonRecord<'_> {
    /// The record's `journal_seq`.
    pub fn journal_seq(&self) -> i64 {
        match self.values.get(JOURNAL_SEQ) {
            Some(Value::Int(v)) => *v,
            _ => 0,
        }
    }

    /// The record's kind (its payload's tag).
    pub fn kind(&self) -> &'static str {
        match self.values.get(PAYLOAD) {
            Some(Value::Struct(Some(tag), _, _)) => tag,
            _ => "",
        }
    }

    /// The canonical msgpack encoding of the record, or None when
    /// `Custom.data` holds an int outside `-2**63..2**64` (or a container of
    /// more than `2**32 - 1` items), which msgpack cannot carry. `prefix` is
    /// scratch space; `Custom.data`, the last field, is not copied: the rest
    /// is put in front of it.
    pub fn into_canonical(self, prefix: &mut Vec<u8>) -> Option<Vec<u8>> {
        let mut w = Writer {
            out: std::mem::take(prefix),
        };
        w.out.clear();
        let mut has_data = false;
        write_struct(&mut w, None, RECORD, &self.values, &mut has_data);
        if has_data && self.unencodable {
            *prefix = w.out;
            return None;
        }
        if !has_data {
            // The buffer of a Custom.data left behind (a repeated payload)
            // is reused for the next line.
            *prefix = self.data;
            return Some(w.out);
        }
        let mut canonical = self.data;
        canonical.splice(0..0, w.out.iter().copied());
        *prefix = w.out;
        Some(canonical)
    }
}

/// Parse one line as `msgspec.json.Decoder(JournalRecord).decode` would:
/// Some when msgspec returns a record, None when it raises.
pub fn parse_line(line: &[u8]) -> Option<JsonRecord<'_>> {
    parse_line_with(line, Vec::new())
}

/// [`parse_line`], transcoding `Custom.data` into `buffer` (its allocation
/// reused; dropped when the line does not decode).
pub fn parse_line_with(line: &[u8], buffer: Vec<u8>) -> Option<JsonRecord<'_>> {
    let mut p = Parser::new(line, buffer);
    let values = p.fields(RECORD, None, 0).ok()?;
    p.ws();
    if p.pos != line.len() {
        return None; // trailing characters
    }
    Some(JsonRecord {
        values,
        data: p.data.out,
        unencodable: p.unencodable,
    })
}

/// True for a line Python's `bytes.strip()` empties.
pub fn is_blank(line: &[u8]) -> bool {
    line.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
}

/// One line of a JSON-lines journal.
// Events live for one visitor call on the stack; boxing the record would
// cost an allocation per line.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum LineEvent<'a> {
    /// A record line: the decoded record, borrowing `canonical`, its
    /// canonical msgpack encoding.
    Record {
        record: Record<'a>,
        canonical: &'a [u8],
    },
    /// A blank line (empty or whitespace only).
    Blank,
    /// A complete line that is not a record: bytes `start..end` of the file
    /// (its newline excluded), `reason` naming its line number.
    Corrupt {
        start: u64,
        end: u64,
        reason: String,
    },
    /// The unterminated last line, which does not decode: its `bytes`.
    Torn { bytes: u64 },
    /// A line msgspec decodes to a record that has no canonical encoding (an
    /// int in `Custom.data` outside `-2**63..2**64`); the reference's
    /// `encode_canonical` raises `InvalidArgument` for it.
    Unencodable { line: &'a [u8] },
}

/// One line as [`LineReader`] hands it out.
#[derive(Debug, Clone, Copy)]
pub struct RawLine<'a> {
    /// Offset of its first byte in the stream.
    pub offset: u64,
    /// Its 1-based line number.
    pub number: u64,
    /// Its length, newline excluded.
    pub len: u64,
    /// Whether a newline ends it (only the last line may lack one).
    pub terminated: bool,
    /// Its bytes, None when it is longer than the reader's limit.
    pub bytes: Option<&'a [u8]>,
}

impl RawLine<'_> {
    /// The bytes `offset..offset + len` of the line.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }

    /// The event of a line that is not a record: a torn tail when it is
    /// the unterminated last line, else corruption for `reason`.
    fn damaged<'e>(&self, reason: impl FnOnce() -> String) -> LineEvent<'e> {
        if self.terminated {
            LineEvent::Corrupt {
                start: self.offset,
                end: self.end(),
                reason: reason(),
            }
        } else {
            LineEvent::Torn { bytes: self.len }
        }
    }
}

/// What kind of line `raw` is, before decoding it: None when it has to be
/// decoded (its bytes are there and not blank), else its event.
pub fn classify<'e>(raw: &RawLine<'_>, limit: u64) -> Option<LineEvent<'e>> {
    match raw.bytes {
        None => Some(raw.damaged(|| line_too_long(raw.number, limit))),
        Some(line) if is_blank(line) => Some(LineEvent::Blank),
        Some(_) => None,
    }
}

/// Buffers reused from line to line.
#[derive(Default)]
struct Scratch {
    /// The canonical encoding of the last record line.
    canonical: Vec<u8>,
    /// Room for the fields before `Custom.data`.
    prefix: Vec<u8>,
}

/// Classify one line, reusing `scratch`.
fn visit_line<E>(
    raw: RawLine<'_>,
    limit: u64,
    scratch: &mut Scratch,
    visit: &mut impl FnMut(LineEvent<'_>) -> Result<(), E>,
) -> Result<(), E> {
    if let Some(event) = classify(&raw, limit) {
        return visit(event);
    }
    let line = raw.bytes.unwrap_or(&[]);
    let Some(parsed) = parse_line_with(line, std::mem::take(&mut scratch.canonical)) else {
        return visit(raw.damaged(|| line_does_not_decode(raw.number)));
    };
    let Some(canonical) = parsed.into_canonical(&mut scratch.prefix) else {
        return visit(LineEvent::Unencodable { line });
    };
    let visited = match decode_msgpack(&canonical) {
        Ok(record) => visit(LineEvent::Record {
            record,
            canonical: &canonical,
        }),
        Err(_) => visit(raw.damaged(|| line_does_not_decode(raw.number))),
    };
    scratch.canonical = canonical;
    visited
}

/// Walk the lines of a JSON-lines journal read from a stream, once, in
/// chunks: one [`LineEvent`] per line, in order, lines longer than `limit`
/// bytes never held. Memory stays about one chunk plus the longest line
/// within the limit.
pub fn walk_json_lines_reader<R: Read, E>(
    reader: R,
    limit: u64,
    mut visit: impl FnMut(LineEvent<'_>) -> Result<(), E>,
) -> Result<(), WalkError<E>> {
    let mut scratch = Scratch::default();
    let mut lines = LineReader::new(reader, limit);
    while let Some(raw) = lines.next_line()? {
        visit_line(raw, limit, &mut scratch, &mut visit).map_err(WalkError::Stop)?;
    }
    Ok(())
}

/// [`walk_json_lines_reader`] over a journal held in memory.
pub fn walk_json_lines<E>(
    data: &[u8],
    limit: u64,
    visit: impl FnMut(LineEvent<'_>) -> Result<(), E>,
) -> Result<(), WalkError<E>> {
    walk_json_lines_reader(data, limit, visit)
}

/// The lines of a stream, one at a time (without their newline); a final
/// newline does not make an extra line. A line longer than the limit is
/// counted and dropped as it is read (its [`RawLine::bytes`] is None).
pub struct LineReader<R> {
    reader: R,
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Start of the next line in `buf`.
    start: usize,
    /// `buf[start..searched]` holds no newline.
    searched: usize,
    eof: bool,
    limit: u64,
    /// Lines handed out so far.
    number: u64,
}

impl<R: Read> LineReader<R> {
    const CHUNK: usize = 256 * 1024;

    /// Lines of `reader`, those over `limit` bytes not held.
    pub fn new(reader: R, limit: u64) -> Self {
        LineReader {
            reader,
            buf: Vec::new(),
            base: 0,
            start: 0,
            searched: 0,
            eof: false,
            limit,
            number: 0,
        }
    }

    /// The next line, or None at the end.
    pub fn next_line(&mut self) -> io::Result<Option<RawLine<'_>>> {
        let offset = self.base + self.start as u64;
        // Bytes of an over-long line already dropped.
        let mut dropped: u64 = 0;
        let (end, terminated) = loop {
            let unsearched = self.buf.get(self.searched..).unwrap_or(&[]);
            if let Some(at) = unsearched.iter().position(|&b| b == b'\n') {
                break (self.searched + at, true);
            }
            self.searched = self.buf.len();
            let held = (self.buf.len() - self.start) as u64;
            if dropped + held > self.limit {
                // Too long: count what is held and let it go.
                dropped += held;
                self.base += self.buf.len() as u64;
                self.buf.clear();
                self.start = 0;
                self.searched = 0;
            }
            if self.eof {
                if dropped == 0 && self.start >= self.buf.len() {
                    return Ok(None);
                }
                break (self.buf.len(), false);
            }
            if self.start > 0 {
                // Keep only the partial line (once per read).
                self.buf.drain(..self.start);
                self.base += self.start as u64;
                self.searched -= self.start;
                self.start = 0;
            }
            // Up to a chunk appended to what is held, without zeroing the
            // buffer first (a reader handing out a few bytes at a time, such
            // as a pipe, would otherwise cost a chunk-sized memset per read);
            // read_to_end retries interrupted reads and stops at the chunk or
            // at the end of the input.
            let filled = self.buf.len();
            let got = match (&mut self.reader)
                .take(Self::CHUNK as u64)
                .read_to_end(&mut self.buf)
            {
                Ok(n) => n,
                Err(err) => {
                    self.buf.truncate(filled);
                    return Err(err);
                }
            };
            self.eof = got < Self::CHUNK;
        };
        let start = self.start;
        let len = dropped + (end - start) as u64;
        self.start = if terminated { end + 1 } else { end };
        self.searched = self.start;
        self.number += 1;
        let bytes = if len > self.limit {
            None
        } else {
            self.buf.get(start..end)
        };
        Ok(Some(RawLine {
            offset,
            number: self.number,
            len,
            terminated,
            bytes,
        }))
    }
}

/// The `journal_seq` of a line msgspec decodes to a record.
pub fn line_journal_seq(line: &[u8]) -> Option<i64> {
    parse_line(line).map(|record| record.journal_seq())
}

/// Where a writer reopening a JSON-lines journal continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonlEnd {
    /// Offset to append at (anything after it is a torn last line to cut).
    pub end: u64,
    /// `journal_seq` of the last line that decodes (0 when none does).
    pub last_seq: i64,
    /// The file ends with a record line that lost only its newline: write
    /// `\n` at `end` before appending.
    pub terminate: bool,
}

/// Reads the lines of a file backwards, a block at a time.
struct Backward<'f, F: ?Sized> {
    file: &'f F,
    /// File bytes `buf_start..buf_start + buf.len()`.
    buf: Vec<u8>,
    buf_start: u64,
}

impl<F: ReadAt + ?Sized> Backward<'_, F> {
    const BLOCK: u64 = 64 * 1024;

    /// Offset just after the last `\n` before `before` (0 when there is none),
    /// with `buf` extended back to cover it.
    fn line_start(&mut self, before: u64) -> io::Result<u64> {
        let mut searched_to = before;
        loop {
            let from = searched_to.saturating_sub(self.buf_start) as usize;
            let upto = before.saturating_sub(self.buf_start) as usize;
            let window = self.buf.get(..upto.min(from)).unwrap_or(&[]);
            if let Some(at) = window.iter().rposition(|&b| b == b'\n') {
                return Ok(self.buf_start + at as u64 + 1);
            }
            if self.buf_start == 0 {
                return Ok(0);
            }
            searched_to = self.buf_start;
            // Double the block as a line grows, so a long line costs linear time.
            let grow = Self::BLOCK.max(self.buf.len() as u64).min(self.buf_start);
            let new_start = self.buf_start - grow;
            let mut fresh = vec![0u8; grow as usize];
            let got = self.file.read_full_at(&mut fresh, new_start)?;
            fresh.truncate(got);
            if got < grow as usize {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the journal shrank while being scanned",
                ));
            }
            fresh.extend_from_slice(&self.buf);
            self.buf = fresh;
            self.buf_start = new_start;
        }
    }

    fn bytes(&self, start: u64, end: u64) -> &[u8] {
        let from = start.saturating_sub(self.buf_start) as usize;
        let to = end.saturating_sub(self.buf_start) as usize;
        self.buf.get(from..to).unwrap_or(&[])
    }
}

/// Find where to append to a JSON-lines journal of `size` bytes, reading
/// backwards from the end until a line that decodes is found.
///
/// A last line without its newline that decodes is kept (and needs its
/// newline); one that does not decode is a torn write and is cut. Mirrors the
/// reference's `_scan_jsonl_end`.
pub fn scan_end<F: ReadAt + ?Sized>(file: &F, size: u64) -> io::Result<JsonlEnd> {
    let mut lines = Backward {
        file,
        buf: Vec::new(),
        buf_start: size,
    };
    let mut end = size;
    let last_start = lines.line_start(size)?;
    if last_start < size {
        if let Some(last_seq) = line_journal_seq(lines.bytes(last_start, size)) {
            return Ok(JsonlEnd {
                end: size,
                last_seq,
                terminate: true,
            });
        }
        end = last_start;
    }
    // `cursor` is the start of the line just looked at; the one before ends
    // with the newline at `cursor - 1`.
    let mut cursor = last_start;
    while cursor > 0 {
        let line_end = cursor - 1;
        let start = lines.line_start(line_end)?;
        let line = lines.bytes(start, line_end);
        if !is_blank(line) {
            if let Some(last_seq) = line_journal_seq(line) {
                return Ok(JsonlEnd {
                    end,
                    last_seq,
                    terminate: false,
                });
            }
        }
        // Lines after this one are no longer needed.
        lines
            .buf
            .truncate(start.saturating_sub(lines.buf_start) as usize);
        cursor = start;
    }
    Ok(JsonlEnd {
        end,
        last_seq: 0,
        terminate: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The canonical bytes of a line, or "SKIP" / "UNENC".
    fn transcode(line: &[u8]) -> String {
        let mut got = Vec::new();
        walk_json_lines(line, DEFAULT_MAX_LINE, |event| {
            got.push(match event {
                LineEvent::Record { canonical, .. } => hex(canonical),
                LineEvent::Unencodable { .. } => "UNENC".to_owned(),
                _ => "SKIP".to_owned(),
            });
            Ok::<(), ()>(())
        })
        .unwrap();
        got.pop().unwrap_or_else(|| "SKIP".to_owned())
    }

    // Expected bytes produced with Python:
    //   records.encode_canonical(msgspec.json.Decoder(JournalRecord).decode(line)).hex()
    // (msgspec 0.22; see /tmp/fuzz/gen.py in the change's notes).
    const MSGSPEC: &[(&[u8], &str)] = &[
        (
            // keys out of order, a duplicated data key, an escape in a
            // value, an unknown field holding an unparsed 1e999 and bytes
            // that are not UTF-8 (msgspec skips them unchecked)
            b"{\"payload\":{\"data\":{\"b\":[1,-0,1.5,true,null],\"a\":{\"\\u00e9\":\"x\",\"z\":18446744073709551615},\"b\":{}},\"name\":\"step\",\"kind\":\"custom\"},\"run_id\":\"run\",\"journal_seq\":7,\"record_id\":\"r\\u0031\",\"unknown\":[1e999,{\"x\":\"\xff\"}]}",
            "89a6736368656d6101a97265636f72645f6964a27231ab6a6f75726e616c5f73657107a672756e5f6964a372756ea561745f6d7300af6964656d706f74656e63795f6b6579c0aa6465647570655f6b6579c0ac636f6e74656e745f7265667390a77061796c6f616483a46b696e64a6637573746f6da46e616d65a473746570a46461746182a16182a17acfffffffffffffffffa2c3a9a178a16280",
        ),
        (
            b" {\"record_id\":\"r2\",\"journal_seq\":2,\"run_id\":\"run\",\"schema\":1,\"at_ms\":-1,\"dedupe_key\":\"d\",\"content_refs\":[\"a\",\"b\"],\"payload\":{\"kind\":\"recovery\",\"unsafe_pending\":[{\"reason\":\"why\",\"intent_record_id\":\"i\",\"effect_id\":\"e\",\"kind\":5}]}}\r",
            "89a6736368656d6101a97265636f72645f6964a27232ab6a6f75726e616c5f73657102a672756e5f6964a372756ea561745f6d73ffaf6964656d706f74656e63795f6b6579c0aa6465647570655f6b6579a164ac636f6e74656e745f7265667392a161a162a77061796c6f616482a46b696e64a87265636f76657279ae756e736166655f70656e64696e679185a96566666563745f6964a165b0696e74656e745f7265636f72645f6964a169af6964656d706f74656e63795f6b6579c0aa6465647570655f6b6579c0a6726561736f6ea3776879",
        ),
        (
            b"{\"record_id\":\"r3\",\"journal_seq\":3,\"run_id\":\"run\",\"payload\":{\"kind\":\"output_reconciliation\",\"delivery_id\":\"d\",\"intent_record_id\":\"i\",\"dedupe_key\":\"k\",\"terminal_status\":\"t\",\"reason\":\"r\",\"decision\":\"x\",\"resend_allowed\":false}}",
            "89a6736368656d6101a97265636f72645f6964a27233ab6a6f75726e616c5f73657103a672756e5f6964a372756ea561745f6d7300af6964656d706f74656e63795f6b6579c0aa6465647570655f6b6579c0ac636f6e74656e745f7265667390a77061796c6f61648aa46b696e64b56f75747075745f7265636f6e63696c696174696f6eab64656c69766572795f6964a164b0696e74656e745f7265636f72645f6964a169aa6465647570655f6b6579a16baf6964656d706f74656e63795f6b6579c0b565787465726e616c5f6f7065726174696f6e5f6964c0af7465726d696e616c5f737461747573a174a6726561736f6ea172a86465636973696f6ea178ae726573656e645f616c6c6f776564c2",
        ),
        (
            // Custom.data maps out of order at several depths, a repeated
            // key whose value is a map, an array of 17 items (array16)
            b"{\"record_id\":\"r\",\"journal_seq\":1,\"run_id\":\"x\",\"payload\":{\"kind\":\"custom\",\"name\":\"n\",\"data\":{\"z\":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16],\"b\":{\"y\":2,\"x\":3,\"y\":4,\"\\u00e9\":[]},\"a\":1,\"b\":{\"q\":{\"d\":1,\"c\":2},\"p\":\"s\",\"q\":[{}]},\"m\":[{\"k\":1,\"j\":2,\"k\":3}]}}}",
            "89a6736368656d6101a97265636f72645f6964a172ab6a6f75726e616c5f73657101a672756e5f6964a178a561745f6d7300af6964656d706f74656e63795f6b6579c0aa6465647570655f6b6579c0ac636f6e74656e745f7265667390a77061796c6f616483a46b696e64a6637573746f6da46e616d65a16ea46461746184a16101a16282a170a173a1719180a16d9182a16a02a16b03a17adc0011000102030405060708090a0b0c0d0e0f10",
        ),
        (
            // a repeated payload: the first one's data is dropped
            b"{\"record_id\":\"r\",\"journal_seq\":1,\"run_id\":\"x\",\"payload\":{\"kind\":\"custom\",\"name\":\"n\",\"data\":[{\"0\":0,\"a\":0},{\"1\":1,\"a\":0}]},\"payload\":{\"kind\":\"custom\",\"name\":\"n2\",\"data\":{\"b\":1,\"a\":2,\"c\":3,\"a\":4}}}",
            "89a6736368656d6101a97265636f72645f6964a172ab6a6f75726e616c5f73657101a672756e5f6964a178a561745f6d7300af6964656d706f74656e63795f6b6579c0aa6465647570655f6b6579c0ac636f6e74656e745f7265667390a77061796c6f616483a46b696e64a6637573746f6da46e616d65a26e32a46461746183a16104a16201a16303",
        ),
    ];

    #[test]
    fn max_line_bytes_has_one_default_and_one_range() {
        assert_eq!(max_line_bytes(None).unwrap(), 64 * 1024 * 1024);
        assert_eq!(max_line_bytes(Some(1)).unwrap(), 1);
        assert_eq!(max_line_bytes(Some(i64::MAX)).unwrap(), MAX_LINE_LIMIT);
        for bad in [0, -1, i64::MIN] {
            let err = max_line_bytes(Some(bad)).unwrap_err();
            assert_eq!(err.argument(), Some("max_line_bytes"));
            assert_eq!(
                err.to_string(),
                format!("max_line_bytes must be in 1..=9223372036854775807, got {bad}")
            );
        }
    }

    #[test]
    fn big_containers_take_the_long_headers() {
        for (items, header) in [
            (15usize, "9f"),
            (16, "dc0010"),
            (65_535, "dcffff"),
            (65_536, "dd00010000"),
        ] {
            let ints = vec!["7"; items].join(",");
            let got = transcode(with_data(&format!("[{ints}]")).as_bytes());
            assert!(
                got.ends_with(&format!("{header}{}", "07".repeat(items))),
                "{items}"
            );
            let pairs: Vec<String> = (0..items).map(|i| format!("\"{i:06}\":null")).collect();
            let sorted = transcode(with_data(&format!("{{{}}}", pairs.join(","))).as_bytes());
            let header = header
                .replace("9f", "8f")
                .replace("dc", "de")
                .replace("dd", "df");
            assert!(sorted.contains(&format!("a464617461{header}a6303030303030c0")));
            let mut reversed = pairs.clone();
            reversed.reverse();
            let unsorted = transcode(with_data(&format!("{{{}}}", reversed.join(","))).as_bytes());
            assert_eq!(unsorted, sorted, "{items}");
        }
    }

    #[test]
    fn transcoding_equals_msgspec() {
        for (line, expected) in MSGSPEC {
            assert_eq!(transcode(line), *expected);
        }
    }

    fn with_data(data: &str) -> String {
        format!("{{\"record_id\":\"r\",\"journal_seq\":1,\"run_id\":\"x\",\"payload\":{{\"kind\":\"custom\",\"name\":\"n\",\"data\":{data}}}}}")
    }

    fn with_unknown(value: &str) -> String {
        format!("{{\"zz\":{value},\"record_id\":\"r\",\"journal_seq\":1,\"run_id\":\"x\",\"payload\":{{\"kind\":\"custom\",\"name\":\"n\"}}}}")
    }

    fn with_seq(seq: &str) -> String {
        format!("{{\"record_id\":\"r\",\"journal_seq\":{seq},\"run_id\":\"x\",\"payload\":{{\"kind\":\"custom\",\"name\":\"n\"}}}}")
    }

    fn decodes(line: &str) -> bool {
        parse_line(line.as_bytes()).is_some()
    }

    /// Each case was checked against msgspec 0.22.
    #[test]
    fn accepts_what_msgspec_accepts() {
        for ok in [
            "-0",
            "1.0",
            "1E5",
            "1e-400",
            "-0.0",
            "18446744073709551615",
            "\"\\ud83d\\ude00\"",
            "\"\\u0000\"",
            "\"\x7f\"",
            "{\"b\":1,\"a\":2,\"b\":3}",
            "{}",
            "[]",
            "1.7976931348623158e308",
        ] {
            assert!(decodes(&with_data(ok)), "{ok}");
        }
        for bad in [
            "1e400",
            "-1e400",
            "1.7976931348623159e308",
            "01",
            "1.",
            ".5",
            "+1",
            "NaN",
            "Infinity",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"a\x01b\"",
            "[1,2,]",
            "tru",
            "\"\\x\"",
            "{1:2}",
            "{\"a\":1,}",
        ] {
            assert!(!decodes(&with_data(bad)), "{bad}");
        }
        // unknown fields: syntax only, no UTF-8 or range checks
        for ok in ["1e999", "\"\u{e9}\"", "[[[]]]", "{\"a\":[1,{}]}"] {
            assert!(decodes(&with_unknown(ok)), "{ok}");
        }
        assert!(parse_line(with_unknown("\"a\u{ff}\"").replace('\u{ff}', "").as_bytes()).is_some());
        for bad in [
            "01",
            "\"\\ud800\"",
            "\"\x01\"",
            "\"\\x\"",
            "-",
            "1e",
            "NaN",
            "{1:2}",
            "truex",
        ] {
            assert!(!decodes(&with_unknown(bad)), "{bad}");
        }
        // int fields
        assert_eq!(
            parse_line(with_seq("-0").as_bytes()).unwrap().journal_seq(),
            0
        );
        for bad in [
            "1.0",
            "1e2",
            "true",
            "null",
            "\"1\"",
            "9223372036854775808",
            "-9223372036854775809",
        ] {
            assert!(!decodes(&with_seq(bad)), "{bad}");
        }
        assert!(decodes(&with_seq("-9223372036854775808")));
        // kind: found anywhere, escapes resolved, repeated consistently
        let base = "{\"record_id\":\"r\",\"journal_seq\":1,\"run_id\":\"x\",\"payload\":";
        for (payload, ok) in [
            ("{\"name\":\"n\",\"kind\":\"custom\"}", true),
            ("{\"kind\":\"cust\\u006fm\",\"name\":\"n\"}", true),
            ("{\"ki\\u006ed\":\"custom\",\"name\":\"n\"}", true),
            (
                "{\"kind\":\"custom\",\"name\":\"n\",\"kind\":\"custom\"}",
                true,
            ),
            (
                "{\"kind\":\"custom\",\"name\":\"n\",\"kind\":\"checkpoint\"}",
                false,
            ),
            ("{\"kind\":1,\"kind\":\"custom\",\"name\":\"n\"}", false),
            ("{\"kind\":\"telemetry\",\"name\":\"n\"}", false),
            ("{\"name\":\"n\"}", false),
            ("[\"custom\"]", false),
        ] {
            assert_eq!(decodes(&format!("{base}{payload}}}")), ok, "{payload}");
        }
        // invalid UTF-8 in a decoded string or an Any key (msgspec raises
        // UnicodeDecodeError), but not in an unknown key
        let mut line = with_seq("1").into_bytes();
        line.splice(17..17, [0xff]);
        assert!(parse_line(&line).is_none());
        let line = b"{\"z\xff\":1,\"record_id\":\"r\",\"journal_seq\":1,\"run_id\":\"x\",\"payload\":{\"kind\":\"custom\",\"name\":\"n\"}}";
        assert!(parse_line(line).is_some());
        // whitespace is JSON's only; trailing characters are refused
        assert!(decodes(&format!(" \t\r{} \r", with_seq("1"))));
        assert!(!decodes(&format!("\x0b{}", with_seq("1"))));
        assert!(!decodes(&format!("{} x", with_seq("1"))));
        assert!(!decodes("{}"));
        assert!(!decodes("[1]"));
        assert!(!decodes(""));
    }

    #[test]
    fn big_ints_decode_but_do_not_encode() {
        for big in [
            "18446744073709551616",
            "-9223372036854775809",
            "123456789012345678901234567890",
        ] {
            let line = with_data(&format!("[{big}]"));
            assert!(decodes(&line));
            assert_eq!(transcode(line.as_bytes()), "UNENC");
        }
    }

    #[test]
    fn nesting_is_limited_not_recursive_without_bound() {
        let nest = |n: usize| with_data(&format!("{}{}", "[".repeat(n), "]".repeat(n)));
        assert!(decodes(&nest(MAX_DEPTH - 2)));
        assert_ne!(transcode(nest(MAX_DEPTH - 2).as_bytes()), "SKIP");
        let maps = with_data(&format!(
            "{}1{}",
            "{\"k\":".repeat(MAX_DEPTH - 2),
            "}".repeat(MAX_DEPTH - 2)
        ));
        assert_ne!(transcode(maps.as_bytes()), "SKIP");
        assert!(!decodes(&nest(MAX_DEPTH - 1)));
        assert!(!decodes(&nest(100_000)));
        let skip = |n: usize| with_unknown(&format!("{}{}", "[".repeat(n), "]".repeat(n)));
        assert!(decodes(&skip(MAX_DEPTH - 1)));
        assert!(!decodes(&skip(100_000)));
    }

    fn event_name(e: LineEvent<'_>) -> String {
        match e {
            LineEvent::Record { record, .. } => format!("rec {}", record.journal_seq),
            LineEvent::Blank => "blank".to_owned(),
            LineEvent::Corrupt { start, end, reason } => format!("corrupt {start}..{end} {reason}"),
            LineEvent::Torn { bytes } => format!("torn {bytes}"),
            LineEvent::Unencodable { line } => format!("unenc {}", line.len()),
        }
    }

    /// A reader handing out a few bytes at a time.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(3);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn events_limited(data: &[u8], limit: u64) -> Vec<String> {
        let mut a = Vec::new();
        walk_json_lines(data, limit, |e| {
            a.push(event_name(e));
            Ok::<(), ()>(())
        })
        .unwrap();
        let mut b = Vec::new();
        walk_json_lines_reader(Trickle(data), limit, |e| {
            b.push(event_name(e));
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(a, b);
        a
    }

    fn events(data: &[u8]) -> Vec<String> {
        events_limited(data, DEFAULT_MAX_LINE)
    }

    #[test]
    fn lines_and_final_newline() {
        let r1 = with_seq("1");
        let r2 = with_seq("2");
        let body = format!("\n{r1}\n   \t\n{{not json\n[1, 2]\n{r2}\n");
        let at = |n: usize| body.match_indices('\n').nth(n).map(|(i, _)| i).unwrap();
        let expected = [
            "blank".to_owned(),
            "rec 1".to_owned(),
            "blank".to_owned(),
            format!(
                "corrupt {}..{} line 4 does not decode to a record",
                at(2) + 1,
                at(3)
            ),
            format!(
                "corrupt {}..{} line 5 does not decode to a record",
                at(3) + 1,
                at(4)
            ),
            "rec 2".to_owned(),
        ];
        assert_eq!(events(body.as_bytes()), expected);
        assert_eq!(events(body.trim_end_matches('\n').as_bytes()), expected);
        assert_eq!(events(format!("{body}\n").as_bytes()).len(), 7);
        assert!(events(b"").is_empty());
        assert_eq!(events(b"\n"), ["blank"]);
        // an unterminated last line that does not decode is a torn tail
        assert_eq!(
            events(format!("{r1}\n{}", &r2[..10]).as_bytes()),
            ["rec 1", "torn 10"]
        );
        // long lines across read chunks
        let long = with_data(&format!("\"{}\"", "x".repeat(600_000)));
        assert_eq!(
            events(format!("{long}\n{r1}\n{long}").as_bytes()),
            ["rec 1", "rec 1", "rec 1"]
        );
    }

    #[test]
    fn lines_over_the_limit_are_corrupt_or_torn() {
        let r1 = with_seq("1");
        let limit = r1.len() as u64;
        let long = with_data(&format!("\"{}\"", "x".repeat(70)));
        let blank = " ".repeat(r1.len() + 1);
        let data = format!("{r1}\n{long}\n{r1}\n{blank}\n{long}");
        let start = r1.len() as u64 + 1;
        let blank_start = 2 * start + long.len() as u64 + 1;
        assert_eq!(
            events_limited(data.as_bytes(), limit),
            [
                "rec 1".to_owned(),
                format!(
                    "corrupt {start}..{} line 2 is longer than the limit of {limit} bytes",
                    start + long.len() as u64
                ),
                "rec 1".to_owned(),
                format!(
                    "corrupt {blank_start}..{} line 4 is longer than the limit of {limit} bytes",
                    blank_start + limit + 1
                ),
                format!("torn {}", long.len()),
            ]
        );
        // a line of exactly the limit is read
        assert_eq!(events_limited(r1.as_bytes(), limit), ["rec 1"]);
    }

    fn scan(data: &[u8]) -> JsonlEnd {
        scan_end(data, data.len() as u64).unwrap()
    }

    #[test]
    fn scan_end_mirrors_the_reference() {
        let r1 = with_seq("1");
        let r2 = with_seq("2");
        let clean = format!("{r1}\n{r2}\n");
        let size = clean.len() as u64;
        assert_eq!(
            scan(clean.as_bytes()),
            JsonlEnd {
                end: size,
                last_seq: 2,
                terminate: false
            }
        );
        // a complete last record that lost only its newline
        assert_eq!(
            scan(&clean.as_bytes()[..clean.len() - 1]),
            JsonlEnd {
                end: size - 1,
                last_seq: 2,
                terminate: true
            }
        );
        // torn last lines are cut, whatever their length
        for cut in r1.len() + 1..clean.len() - 1 {
            assert_eq!(
                scan(&clean.as_bytes()[..cut]),
                JsonlEnd {
                    end: r1.len() as u64 + 1,
                    last_seq: 1,
                    terminate: false
                },
                "cut {cut}"
            );
        }
        for cut in 0..r1.len() {
            assert_eq!(
                scan(&clean.as_bytes()[..cut]),
                JsonlEnd {
                    end: 0,
                    last_seq: 0,
                    terminate: false
                }
            );
        }
        // blank and undecodable complete lines are kept, only looked past
        let messy = format!("{r1}\n\n  \ngarbage\n{{\"record_id\":1}}\n");
        assert_eq!(
            scan(messy.as_bytes()),
            JsonlEnd {
                end: messy.len() as u64,
                last_seq: 1,
                terminate: false
            }
        );
        let unterminated_blank = format!("{r2}\n   ");
        assert_eq!(
            scan(unterminated_blank.as_bytes()),
            JsonlEnd {
                end: r2.len() as u64 + 1,
                last_seq: 2,
                terminate: false
            }
        );
        // lines longer than a read block, and a last line longer still
        let long = with_data(&format!("\"{}\"", "y".repeat(200_000)));
        let data = format!("{long}\n{}\n{}", "z".repeat(150_000), "q".repeat(300_000));
        assert_eq!(
            scan(data.as_bytes()),
            JsonlEnd {
                end: (long.len() + 150_002) as u64,
                last_seq: 1,
                terminate: false
            }
        );
        assert_eq!(
            scan(b""),
            JsonlEnd {
                end: 0,
                last_seq: 0,
                terminate: false
            }
        );
        assert_eq!(
            scan(b"\n\n"),
            JsonlEnd {
                end: 2,
                last_seq: 0,
                terminate: false
            }
        );
    }
}
