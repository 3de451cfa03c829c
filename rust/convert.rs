//! Converting a journal file into a new journal file, streaming, without
//! building the records as Python objects (SPEC 6.2 "Memory").
//!
//! `replaycore convert` reads a journal with `read_journal` and appends its
//! records to a new `JournalWriter`. That path holds each record as Python
//! objects: a `Custom.data` list of 100 million small integers costs 8 bytes
//! a pointer in the list, 4-8 times its bytes on disk. [`convert_path`]
//! writes the same bytes from the encoded record instead: the frame body of a
//! `.rcj` target is the record's canonical msgpack, and a `.jsonl` line is
//! transcoded from that msgpack exactly as
//! `msgspec.json.Encoder(order="deterministic")` encodes the decoded record
//! (floats as msgspec's shortest round-trip form, non-finite ones as `null`,
//! its string escapes, `Custom.data` maps with their keys sorted).
//!
//! It takes only what it can write byte for byte as that path would, and
//! declines ([`Declined`]) everything else, so that the caller runs the
//! general path, which gives the same file or the same error as before: a
//! damaged source (strict reading raises), a record whose `journal_seq` is
//! not above the one before it (the writer numbers a 0 and refuses the
//! rest), a JSON line whose `Custom.data` msgpack cannot hold, and a
//! `Custom.data` holding binary, extensions (timestamps included), float32,
//! an encoding that is not canonical (which the general path would re-encode)
//! or a map whose keys are not unique strings in sorted order. On a decline
//! the target file is removed.
//!
//! Memory: the reader's buffer (the largest record, plus a read chunk), the
//! record's fields before `Custom.data` (re-encoded; `Custom.data` is never
//! copied) and an output buffer of [`CHUNK`] bytes, flushed as it fills.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::frames::{self, Event, WalkError};
use crate::journal::{self, FileEvent, Format};
use crate::jsonl::LineEvent;
use crate::msgpack::{container_header_len, int_marker, str_header_len, uint_marker, MAX_DEPTH};
use crate::records::{encode_canonical, Payload, Record};

/// Bytes of output gathered before they are written.
pub const CHUNK: usize = 256 * 1024;

/// Why [`convert_path`] left a conversion to the general path.
#[derive(Debug)]
pub enum Declined {
    /// The source is damaged where a strict read stops (a corrupt frame or
    /// line, a missing magic).
    Damaged,
    /// A record's `journal_seq` is not above the one before it.
    Seq,
    /// A record this converter does not write byte for byte (see the module
    /// documentation), or one the target cannot hold.
    Data,
    /// Reading the source or writing the target failed.
    Io(io::Error),
    /// The caller's `go_on` said stop.
    Stopped,
}

impl From<io::Error> for Declined {
    fn from(err: io::Error) -> Self {
        Declined::Io(err)
    }
}

/// Convert the journal at `src` into a new file at `dst` (which must not
/// exist; its extension picks its format), reading `src` strictly with the
/// limits `max_frame` and `max_line`. Returns the number of records written,
/// synced to disk; on [`Declined`], `dst` is removed. `go_on` is asked each
/// time a chunk of output is written (so a caller can see to its signals);
/// false stops the conversion.
pub fn convert_path(
    src: &Path,
    dst: &Path,
    max_frame: u64,
    max_line: u64,
    go_on: &mut dyn FnMut() -> bool,
) -> Result<u64, Declined> {
    let file = OpenOptions::new().write(true).create_new(true).open(dst)?;
    let converted = convert_into(file, Format::of(dst), src, max_frame, max_line, go_on);
    if converted.is_err() {
        // Best effort: the decline is what the caller acts on.
        let _ = std::fs::remove_file(dst);
    }
    converted
}

fn convert_into(
    file: File,
    format: Format,
    src: &Path,
    max_frame: u64,
    max_line: u64,
    go_on: &mut dyn FnMut() -> bool,
) -> Result<u64, Declined> {
    let mut out = Output {
        format,
        sink: file,
        go_on,
        buf: Vec::with_capacity(CHUNK + 64),
        last_seq: 0,
        count: 0,
    };
    if format == Format::Rcj {
        out.buf.extend_from_slice(frames::MAGIC);
    }
    let walked = journal::walk_path(src, true, max_frame, max_line, |event| match event {
        FileEvent::Frame(Event::Record { record, .. }) => out.record(&record),
        FileEvent::Line(LineEvent::Record { record, .. }) => out.record(&record),
        FileEvent::Frame(Event::Torn { .. })
        | FileEvent::Line(LineEvent::Torn { .. } | LineEvent::Blank) => Ok(()),
        FileEvent::Frame(Event::Corrupt { .. }) | FileEvent::Line(LineEvent::Corrupt { .. }) => {
            Err(Declined::Damaged)
        }
        FileEvent::Line(LineEvent::Unencodable { .. }) => Err(Declined::Data),
    });
    match walked {
        Ok(()) => {}
        Err(WalkError::Stop(declined)) => return Err(declined),
        Err(WalkError::Io(err)) => return Err(Declined::Io(err)),
        Err(WalkError::Corruption { .. }) => return Err(Declined::Damaged),
    }
    out.flush()?;
    out.sink.sync_all()?;
    Ok(out.count)
}

/// The bytes `record` takes in a journal of `format` as [`convert_path`]
/// writes them (its frame, or its JSON line with the newline), or why it
/// would decline the record. `journal_seq` is not checked.
pub fn encode_record(record: &Record<'_>, format: Format) -> Result<Vec<u8>, Declined> {
    let mut go_on = || true;
    let mut out = Output {
        format,
        sink: Vec::new(),
        go_on: &mut go_on,
        buf: Vec::new(),
        last_seq: i64::MIN,
        count: 0,
    };
    out.record(record)?;
    out.flush()?;
    Ok(out.sink)
}

/// The target (a file) and what has been written to it.
struct Output<'g, W: Write> {
    format: Format,
    sink: W,
    go_on: &'g mut dyn FnMut() -> bool,
    /// Bytes not yet written.
    buf: Vec<u8>,
    last_seq: i64,
    count: u64,
}

impl<W: Write> Output<'_, W> {
    fn flush(&mut self) -> Result<(), Declined> {
        self.sink.write_all(&self.buf)?;
        self.buf.clear();
        if (self.go_on)() {
            Ok(())
        } else {
            Err(Declined::Stopped)
        }
    }

    fn flush_when_full(&mut self) -> Result<(), Declined> {
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    /// Write `bytes`, straight to the file when they are big.
    fn write(&mut self, bytes: &[u8]) -> Result<(), Declined> {
        if bytes.len() >= CHUNK {
            self.flush()?;
            self.sink.write_all(bytes)?;
            Ok(())
        } else {
            self.buf.extend_from_slice(bytes);
            self.flush_when_full()
        }
    }

    fn record(&mut self, record: &Record<'_>) -> Result<(), Declined> {
        if record.journal_seq <= self.last_seq {
            return Err(Declined::Seq);
        }
        let (envelope, data) = split_data(record);
        match self.format {
            Format::Rcj => {
                let (prefix, data) = match data {
                    Some(data) => {
                        let mut cursor = Cursor::new(data);
                        Transcoder::<W, false> { out: self }.walk(&mut cursor, 3, true, None)?;
                        if !cursor.at_end() {
                            return Err(Declined::Data);
                        }
                        // The envelope ends with the nil written in place of the data.
                        (
                            envelope
                                .get(..envelope.len().saturating_sub(1))
                                .unwrap_or(&[]),
                            data,
                        )
                    }
                    None => (&envelope[..], &[][..]),
                };
                self.frame(prefix, data)?;
            }
            Format::Jsonl => {
                let mut json = Transcoder::<W, true> { out: self };
                let mut cursor = Cursor::new(&envelope);
                json.walk(&mut cursor, 1, false, data)?;
                if !cursor.at_end() {
                    return Err(Declined::Data);
                }
                self.buf.push(b'\n');
                self.flush_when_full()?;
            }
        }
        self.last_seq = record.journal_seq;
        self.count += 1;
        Ok(())
    }

    /// Write the frame of the body `prefix` + `data`.
    fn frame(&mut self, prefix: &[u8], data: &[u8]) -> Result<(), Declined> {
        let length = u32::try_from(prefix.len() + data.len()).map_err(|_| Declined::Data)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(prefix);
        crc.update(data);
        self.buf
            .extend_from_slice(&frames::header(length, crc.finalize()));
        self.write(prefix)?;
        self.write(data)?;
        Ok(())
    }
}

/// The canonical encoding of `record` with a nil for its `Custom.data`, and
/// that data (its encoded bytes as read), when the record has some.
fn split_data<'a>(record: &Record<'a>) -> (Vec<u8>, Option<&'a [u8]>) {
    match record.payload {
        Payload::Custom { name, data } if !data.is_empty() => {
            let mut without = record.clone();
            without.payload = Payload::Custom { name, data: &[] };
            (encode_canonical(&without), Some(data))
        }
        _ => (encode_canonical(record), None),
    }
}

/// A position in encoded msgpack; running out of bytes is a decline.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Declined> {
        let end = self.pos.checked_add(n).ok_or(Declined::Data)?;
        let bytes = self.buf.get(self.pos..end).ok_or(Declined::Data)?;
        self.pos = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, Declined> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }

    /// An `n`-byte big-endian unsigned integer.
    fn be(&mut self, n: usize) -> Result<u64, Declined> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }
}

/// Walks one encoded value, checking that it is canonical and of a type
/// this converter carries, and with `JSON` writes it as msgspec's JSON
/// encoder would.
struct Transcoder<'o, 'g, W: Write, const JSON: bool> {
    out: &'o mut Output<'g, W>,
}

impl<W: Write, const JSON: bool> Transcoder<'_, '_, W, JSON> {
    fn emit(&mut self, bytes: &[u8]) {
        if JSON {
            self.out.buf.extend_from_slice(bytes);
        }
    }

    /// One value at container depth `depth`: of `Custom.data` when
    /// `in_data` (maps must have sorted unique string keys), else of the
    /// record's envelope, whose `data` key (a nil in place) takes `data`.
    fn walk(
        &mut self,
        c: &mut Cursor<'_>,
        depth: usize,
        in_data: bool,
        data: Option<&[u8]>,
    ) -> Result<(), Declined> {
        let start = c.pos;
        let marker = c.byte()?;
        match marker {
            0x00..=0x7f => self.uint(u64::from(marker)),
            0xe0..=0xff => self.int(i64::from(marker as i8)),
            0xc0 => self.emit(b"null"),
            0xc2 => self.emit(b"false"),
            0xc3 => self.emit(b"true"),
            0xcc..=0xcf => {
                let v = c.be(1 << (marker - 0xcc))?;
                if uint_marker(v) != marker {
                    return Err(Declined::Data);
                }
                self.uint(v);
            }
            0xd0..=0xd3 => {
                let bits = 8u32 << (marker - 0xd0);
                let raw = c.be(1 << (marker - 0xd0))?;
                let shift = 64 - bits;
                let v = ((raw << shift) as i64) >> shift;
                if int_marker(v) != marker {
                    return Err(Declined::Data);
                }
                self.int(v);
            }
            0xcb => {
                let v = f64::from_bits(c.be(8)?);
                if JSON {
                    if v.is_finite() {
                        let mut b = ryu::Buffer::new();
                        self.out
                            .buf
                            .extend_from_slice(b.format_finite(v).as_bytes());
                    } else {
                        self.out.buf.extend_from_slice(b"null");
                    }
                }
            }
            0xa0..=0xbf | 0xd9..=0xdb => {
                let s = self.str_after(marker, c)?;
                self.string(s)?;
            }
            0x90..=0x9f | 0xdc | 0xdd => {
                let n = self.container_len(marker, 0x90, 0xdc, c, start)?;
                if depth > MAX_DEPTH {
                    return Err(Declined::Data);
                }
                self.emit(b"[");
                for i in 0..n {
                    if i > 0 {
                        self.emit(b",");
                    }
                    self.walk(c, depth + 1, in_data, None)?;
                    if JSON {
                        self.out.flush_when_full()?;
                    }
                }
                self.emit(b"]");
            }
            0x80..=0x8f | 0xde | 0xdf => {
                let n = self.container_len(marker, 0x80, 0xde, c, start)?;
                if depth > MAX_DEPTH {
                    return Err(Declined::Data);
                }
                self.emit(b"{");
                let mut previous: Option<&[u8]> = None;
                for i in 0..n {
                    if i > 0 {
                        self.emit(b",");
                    }
                    let key_marker = c.byte()?;
                    if !matches!(key_marker, 0xa0..=0xbf | 0xd9..=0xdb) {
                        return Err(Declined::Data);
                    }
                    let key = self.str_after(key_marker, c)?;
                    // msgspec's deterministic order: keys sorted, unique.
                    if in_data && previous.is_some_and(|p| p >= key) {
                        return Err(Declined::Data);
                    }
                    previous = Some(key);
                    self.string(key)?;
                    self.emit(b":");
                    match data {
                        Some(bytes) if !in_data && key == b"data" => {
                            if c.byte()? != 0xc0 {
                                return Err(Declined::Data);
                            }
                            let mut inner = Cursor::new(bytes);
                            self.walk(&mut inner, depth + 1, true, None)?;
                            if !inner.at_end() {
                                return Err(Declined::Data);
                            }
                        }
                        _ => self.walk(c, depth + 1, in_data, data)?,
                    }
                    if JSON {
                        self.out.flush_when_full()?;
                    }
                }
                self.emit(b"}");
            }
            // Binary, extensions, float32 and reserved markers.
            _ => return Err(Declined::Data),
        }
        Ok(())
    }

    /// The bytes of a string whose marker was `marker`, checked for a
    /// canonical header and for UTF-8.
    fn str_after<'a>(&self, marker: u8, c: &mut Cursor<'a>) -> Result<&'a [u8], Declined> {
        let (len, header) = match marker {
            0xa0..=0xbf => (usize::from(marker & 0x1f), 1),
            _ => {
                let n = 1usize << (marker - 0xd9);
                (
                    usize::try_from(c.be(n)?).map_err(|_| Declined::Data)?,
                    1 + n,
                )
            }
        };
        if header != str_header_len(len) {
            return Err(Declined::Data);
        }
        let bytes = c.take(len)?;
        if !crate::msgpack::is_utf8(bytes) {
            return Err(Declined::Data);
        }
        Ok(bytes)
    }

    /// The item count of an array or map whose marker was `marker` (`fix` its
    /// fixed-size base, `m16` its 16-bit marker), checked for a canonical header.
    fn container_len(
        &self,
        marker: u8,
        fix: u8,
        m16: u8,
        c: &mut Cursor<'_>,
        start: usize,
    ) -> Result<u64, Declined> {
        let n = if marker == m16 {
            c.be(2)?
        } else if marker == m16 + 1 {
            c.be(4)?
        } else {
            u64::from(marker - fix)
        };
        if c.pos - start != container_header_len(n) {
            return Err(Declined::Data);
        }
        Ok(n)
    }

    fn uint(&mut self, v: u64) {
        if JSON {
            push_u64(&mut self.out.buf, v);
        }
    }

    fn int(&mut self, v: i64) {
        if JSON {
            if v < 0 {
                self.out.buf.push(b'-');
            }
            push_u64(&mut self.out.buf, v.unsigned_abs());
        }
    }

    /// A JSON string as msgspec writes it: `"` and `\` escaped, control
    /// characters as `\b \t \n \f \r` or `\u00xx`, everything else as is.
    fn string(&mut self, s: &[u8]) -> Result<(), Declined> {
        if !JSON {
            return Ok(());
        }
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let out = &mut *self.out;
        out.buf.push(b'"');
        let mut rest = s;
        while let Some(at) = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        {
            let (plain, tail) = rest.split_at(at);
            out.write(plain)?;
            let b = tail.first().copied().unwrap_or(b' ');
            match b {
                b'"' => out.buf.extend_from_slice(b"\\\""),
                b'\\' => out.buf.extend_from_slice(b"\\\\"),
                0x08 => out.buf.extend_from_slice(b"\\b"),
                b'\t' => out.buf.extend_from_slice(b"\\t"),
                b'\n' => out.buf.extend_from_slice(b"\\n"),
                0x0c => out.buf.extend_from_slice(b"\\f"),
                b'\r' => out.buf.extend_from_slice(b"\\r"),
                _ => out.buf.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]),
            }
            rest = tail.get(1..).unwrap_or(&[]);
        }
        out.write(rest)?;
        out.buf.push(b'"');
        Ok(())
    }
}

/// Append the decimal digits of `v`.
fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || at == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(at..).unwrap_or(&[]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{custom_body, framed as journal};

    /// The canonical body of a custom record `seq` whose data is `data`.
    fn custom(seq: i64, data: &[u8]) -> Vec<u8> {
        custom_body(&format!("r{seq}"), seq, "n\"\u{1}", data)
    }

    /// A fresh directory for one test.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("replaycore-convert-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn convert(dir: &Path, src: &[u8], target: &str) -> (Result<u64, Declined>, Option<Vec<u8>>) {
        let source = dir.join("source.rcj");
        std::fs::write(&source, src).unwrap();
        let dst = dir.join(target);
        let _ = std::fs::remove_file(&dst);
        let result = convert_path(&source, &dst, 1 << 20, 1 << 20, &mut || true);
        (result, std::fs::read(&dst).ok())
    }

    #[test]
    fn frames_become_lines_as_msgspec_writes_them_and_come_back_unchanged() {
        let dir = scratch("lines");
        // {"a": [1, -33, 255, 1.5, "x\n"], "b": null}
        let data = b"\x82\xa1a\x95\x01\xd0\xdf\xcc\xff\xcb\x3f\xf8\0\0\0\0\0\0\xa2x\n\xa1b\xc0";
        let src = journal(&[custom(1, data), custom(2, b"\xc0")]);
        let (result, out) = convert(&dir, &src, "out.jsonl");
        assert_eq!(result.unwrap(), 2);
        let line = |seq: i64, data: &str| {
            format!(
                "{{\"schema\":1,\"record_id\":\"r{seq}\",\"journal_seq\":{seq},\"run_id\":\"run\",\
                 \"at_ms\":0,\"idempotency_key\":null,\"dedupe_key\":null,\"content_refs\":[],\
                 \"payload\":{{\"kind\":\"custom\",\"name\":\"n\\\"\\u0001\",\"data\":{data}}}}}\n"
            )
        };
        let expected = line(1, r#"{"a":[1,-33,255,1.5,"x\n"],"b":null}"#) + &line(2, "null");
        assert_eq!(String::from_utf8(out.unwrap()).unwrap(), expected);
        let back = dir.join("back.rcj");
        let result = convert_path(&dir.join("out.jsonl"), &back, 1 << 20, 1 << 20, &mut || {
            true
        });
        assert_eq!(result.unwrap(), 2);
        assert_eq!(std::fs::read(&back).unwrap(), src);
    }

    #[test]
    fn what_it_does_not_copy_exactly_is_declined_and_nothing_is_left() {
        let dir = scratch("declined");
        let cases: [(&str, Vec<u8>); 5] = [
            ("float32", journal(&[custom(1, b"\xca\x3f\xc0\0\0")])),
            (
                "keys out of order",
                journal(&[custom(1, b"\x82\xa1b\x01\xa1a\x02")]),
            ),
            ("long int form", journal(&[custom(1, b"\xcd\x00\x05")])),
            ("seq 0", journal(&[custom(0, b"\xc0")])),
            (
                "repeated seq",
                journal(&[custom(1, b"\xc0"), custom(1, b"\xc0")]),
            ),
        ];
        for (name, src) in cases {
            for target in ["out.rcj", "out.jsonl"] {
                let (result, out) = convert(&dir, &src, target);
                assert!(result.is_err(), "{name} -> {target}");
                assert!(out.is_none(), "{name} -> {target} left a file");
            }
        }
        let mut corrupt = journal(&[custom(1, b"\xc0")]);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(matches!(
            convert(&dir, &corrupt, "out.jsonl").0,
            Err(Declined::Damaged)
        ));
    }

    #[test]
    fn go_on_false_stops_at_the_next_chunk() {
        let dir = scratch("stop");
        let mut data = vec![0xdd];
        data.extend_from_slice(&(3 * CHUNK as u32).to_be_bytes());
        data.extend(std::iter::repeat_n(1u8, 3 * CHUNK));
        let source = dir.join("source.rcj");
        std::fs::write(&source, journal(&[custom(1, &data)])).unwrap();
        let dst = dir.join("out.jsonl");
        let mut asked = 0;
        let result = convert_path(&source, &dst, 1 << 24, 1 << 24, &mut || {
            asked += 1;
            false
        });
        assert!(matches!(result, Err(Declined::Stopped)));
        assert_eq!(asked, 1);
        assert!(!dst.exists());
    }

    #[test]
    fn a_record_encodes_as_its_frame_and_as_a_line_that_parses_back() {
        let data = b"\x83\xa1a\xcb\x3f\xb9\x99\x99\x99\x99\x99\x9a\xa1b\x92\xc2\xd0\x80\xa1c\xa3\xc3\xa9\x0a";
        let body = custom(7, data);
        let record = crate::records::decode_msgpack(&body).unwrap();
        let frame = encode_record(&record, Format::Rcj).unwrap();
        assert_eq!(frame.get(12..), Some(&body[..]));
        let line = encode_record(&record, Format::Jsonl).unwrap();
        assert!(
            line.ends_with(b"\"data\":{\"a\":0.1,\"b\":[false,-128],\"c\":\"\xc3\xa9\\n\"}}}\n")
        );
        let parsed = crate::jsonl::parse_line(&line[..line.len() - 1]).unwrap();
        assert_eq!(parsed.into_canonical(&mut Vec::new()).unwrap(), body);
    }

    #[test]
    fn integers_are_written_in_full() {
        for v in [0u64, 9, 10, 99, 100, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(out, v.to_string().into_bytes());
        }
    }
}
