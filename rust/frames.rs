//! The framed journal format (`.rcj`, SPEC 6.2), in pure Rust.
//!
//! A journal is the magic `RCJ1` followed by frames. A frame is a 12-byte
//! header -- `u32` body length, `u32` CRC-32 of the body, `u32` CRC-32 of
//! those first 8 header bytes, all little-endian, zlib's CRC-32 -- and the
//! body, one msgpack-encoded record.
//!
//! One algorithm walks both a whole buffer ([`walk_slice`]) and a stream
//! ([`walk_reader`]): it runs over a [`Source`] that hands out the bytes at an
//! offset, so both produce identical events. The stream source keeps a
//! bounded, reused buffer (about the largest frame plus one read chunk), never
//! the whole file, and never allocates a declared length over the limit.
//!
//! The frame at offset `pos` is classified exactly as the reference's
//! `_check_frame` (`python/replaycore/reference/journal.py`), in this order:
//! fewer than 12 bytes left is a torn tail; a failed header check is
//! corruption; a declared length over the limit is corruption (before the torn
//! rule); a body running past the end is a torn tail; a failed body CRC is
//! corruption; a body that does not decode to a record is corruption.
//! Strictly, corruption stops the walk with its offset; otherwise the walk
//! reports the skipped range and resumes at the next offset where a complete
//! frame (header check, length, body inside the data, body CRC -- decodability
//! is not required) starts, or at the end of the data.

use std::fmt;
use std::io::{self, Read};

use crate::error::{internal_io, Error};
use crate::records::{decode_msgpack, Record};

/// The four bytes every framed journal starts with.
pub const MAGIC: &[u8; 4] = b"RCJ1";
/// Size of a frame header.
pub const HEADER_LEN: usize = 12;
/// Default limit on a declared body length (64 MiB).
pub const DEFAULT_MAX_FRAME: u64 = 64 * 1024 * 1024;
/// The largest limit `max_frame_bytes` accepts: a body length is a `u32`.
pub const MAX_FRAME_LIMIT: u64 = u32::MAX as u64;

/// The `max_frame_bytes` argument: [`DEFAULT_MAX_FRAME`] when it is left out
/// (`None`), else a limit in `1..=MAX_FRAME_LIMIT`.
pub fn max_frame_bytes(given: Option<i64>) -> Result<u64, Error> {
    let Some(limit) = given else {
        return Ok(DEFAULT_MAX_FRAME);
    };
    u64::try_from(limit)
        .ok()
        .filter(|limit| (1..=MAX_FRAME_LIMIT).contains(limit))
        .ok_or_else(|| max_frame_out_of_range(limit))
}

/// The error of a `max_frame_bytes` outside `1..=MAX_FRAME_LIMIT`, shown as
/// `shown` (also for integers beyond `i64`, which only the bindings meet).
pub fn max_frame_out_of_range(shown: impl fmt::Display) -> Error {
    Error::out_of_range("max_frame_bytes", 1, i128::from(MAX_FRAME_LIMIT), shown)
}

/// Reason: the data does not start with [`MAGIC`].
pub const MISSING_MAGIC: &str = "missing RCJ1 magic";
/// Reason: the header's own CRC does not match.
pub const HEADER_CHECK_FAILED: &str = "header check failed";
/// Reason: the body's CRC does not match the header.
pub const BODY_CRC_MISMATCH: &str = "body CRC mismatch";
/// Reason: the body passes its CRC but is not a record.
pub const BODY_DOES_NOT_DECODE: &str = "body does not decode to a record";

/// Reason: a declared body length over the limit.
pub fn too_long(length: u64, limit: u64) -> String {
    format!("declared body length {length} exceeds the limit of {limit} bytes")
}

/// One step of walking a framed journal.
// Events live for one visitor call on the stack; boxing the record would
// cost an allocation per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event<'a> {
    /// A frame whose body decoded to `record`; `offset` is the frame's start.
    Record {
        offset: u64,
        body: &'a [u8],
        record: Record<'a>,
    },
    /// Damaged bytes `start..end` (end exclusive) skipped while not strict.
    Corrupt {
        start: u64,
        end: u64,
        reason: String,
    },
    /// The torn tail a crash mid-write leaves: the last `bytes` bytes.
    Torn { bytes: u64 },
}

/// Why a walk stopped early.
#[derive(Debug)]
pub enum WalkError<E> {
    /// Damage met while strict, or a missing magic (in every mode).
    Corruption { offset: u64, reason: String },
    /// Reading failed.
    Io(io::Error),
    /// The visitor returned an error.
    Stop(E),
}

impl<E> From<io::Error> for WalkError<E> {
    fn from(err: io::Error) -> Self {
        WalkError::Io(err)
    }
}

impl<E: fmt::Display> fmt::Display for WalkError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkError::Corruption { offset, reason } => {
                write!(f, "journal corruption at byte {offset}: {reason}")
            }
            WalkError::Io(err) => err.fmt(f),
            WalkError::Stop(err) => err.fmt(f),
        }
    }
}

/// The CRC-32 (zlib polynomial) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_le_bytes(word)
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub length: u32,
    pub body_crc: u32,
    /// True when the header's own CRC matches.
    pub valid: bool,
}

impl Header {
    /// Decode the first 12 bytes of `bytes` (None when there are fewer).
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        let head = bytes.get(..HEADER_LEN)?;
        let (first, _) = head.split_at(8);
        Some(Header {
            length: le32(head, 0),
            body_crc: le32(head, 4),
            valid: crc32(first) == le32(head, 8),
        })
    }
}

/// Append the frame of `body` (header and body) to `out`; None when the body
/// is longer than a `u32` length can say.
pub fn encode_frame(body: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let length = u32::try_from(body.len()).ok()?;
    out.reserve(HEADER_LEN + body.len());
    out.extend_from_slice(&header(length, crc32(body)));
    out.extend_from_slice(body);
    Some(())
}

/// The header of a frame whose body is `length` bytes with CRC `body_crc`.
pub fn header(length: u32, body_crc: u32) -> [u8; HEADER_LEN] {
    let mut head = [0u8; HEADER_LEN];
    head[..4].copy_from_slice(&length.to_le_bytes());
    head[4..8].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32(&head[..8]);
    head[8..].copy_from_slice(&header_crc.to_le_bytes());
    head
}

/// Random access to the bytes being walked, moving forward only.
trait Source {
    /// The bytes `pos..pos + n`, or every byte from `pos` to the end of the
    /// data when fewer remain. `pos` never decreases between calls.
    fn get(&mut self, pos: u64, n: usize) -> io::Result<&[u8]>;
}

struct SliceSource<'a>(&'a [u8]);

impl Source for SliceSource<'_> {
    fn get(&mut self, pos: u64, n: usize) -> io::Result<&[u8]> {
        let data = self.0;
        let start = usize::try_from(pos).map_or(data.len(), |p| p.min(data.len()));
        let end = start.saturating_add(n).min(data.len());
        Ok(data.get(start..end).unwrap_or(&[]))
    }
}

/// Bytes read per refill of a stream.
const CHUNK: usize = 256 * 1024;

/// A stream with a reused window: `buf` holds the bytes at `base..`.
struct ReaderSource<R> {
    reader: R,
    buf: Vec<u8>,
    base: u64,
    eof: bool,
}

impl<R: Read> ReaderSource<R> {
    fn new(reader: R) -> Self {
        ReaderSource {
            reader,
            buf: Vec::new(),
            base: 0,
            eof: false,
        }
    }

    /// Read until `buf` holds `want` bytes or the stream ends.
    fn fill_to(&mut self, want: usize) -> io::Result<()> {
        if self.buf.len() >= want || self.eof {
            return Ok(());
        }
        let target = want.max(self.buf.len().saturating_add(CHUNK));
        let missing = target - self.buf.len();
        self.buf.reserve_exact(missing);
        // Read straight into the spare capacity: resizing with zeroes first
        // cost as much as the copy the read itself does.
        // (`read_to_end` retries interrupted reads, and on an error keeps
        // what it read before.) Short only at the end of the stream.
        let read = (&mut self.reader)
            .take(missing as u64)
            .read_to_end(&mut self.buf)?;
        if read < missing {
            self.eof = true;
        }
        Ok(())
    }
}

fn backwards() -> io::Error {
    internal_io("the frame walker moved backwards")
}

impl<R: Read> Source for ReaderSource<R> {
    fn get(&mut self, pos: u64, n: usize) -> io::Result<&[u8]> {
        let skip = pos.checked_sub(self.base).ok_or_else(backwards)?;
        let held = self.buf.len() as u64;
        if skip > held {
            // Never happens while walking (each offset is reached through the
            // window), but stay correct: consume the gap from the stream.
            let gap = skip - held;
            let copied = io::copy(&mut (&mut self.reader).take(gap), &mut io::sink())?;
            self.buf.clear();
            self.base = pos;
            if copied < gap {
                self.eof = true;
                self.base = pos - (gap - copied);
            }
        } else if skip > 0 && (skip == held || skip.saturating_add(n as u64) > held) {
            // Drop what the walk has passed before reading more: only the
            // unread rest of the window moves (part of one frame, usually),
            // so each byte of the stream is moved at most once and mostly
            // never.
            self.buf.drain(..skip as usize);
            self.base = pos;
        }
        let start = usize::try_from(pos - self.base).map_err(|_| backwards())?;
        self.fill_to(start.saturating_add(n))?;
        let end = start.saturating_add(n).min(self.buf.len());
        Ok(self.buf.get(start.min(end)..end).unwrap_or(&[]))
    }
}

/// Why a frame fails its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    HeaderCheck,
    TooLong(u32),
    BodyCrc,
    Undecodable,
}

impl Damage {
    fn reason(self, limit: u64) -> String {
        match self {
            Damage::HeaderCheck => HEADER_CHECK_FAILED.to_owned(),
            Damage::TooLong(length) => too_long(u64::from(length), limit),
            Damage::BodyCrc => BODY_CRC_MISMATCH.to_owned(),
            Damage::Undecodable => BODY_DOES_NOT_DECODE.to_owned(),
        }
    }
}

/// The classification of the bytes at one offset.
enum Check {
    /// No byte left.
    End,
    /// Fewer than 12 bytes left (how many).
    TornHeader(u64),
    /// A valid header whose body runs past the end (bytes left).
    TornBody(u64),
    Damaged(Damage),
    /// A complete frame ending at this offset (exclusive).
    Complete(u64),
}

fn frame_len(length: u32) -> io::Result<usize> {
    usize::try_from(length)
        .ok()
        .and_then(|n| n.checked_add(HEADER_LEN))
        .ok_or_else(|| internal_io("a frame of this length does not fit this platform's memory"))
}

fn check<S: Source>(src: &mut S, pos: u64, limit: u64) -> io::Result<Check> {
    let head = src.get(pos, HEADER_LEN)?;
    if head.is_empty() {
        return Ok(Check::End);
    }
    let Some(header) = Header::parse(head) else {
        return Ok(Check::TornHeader(head.len() as u64));
    };
    if !header.valid {
        return Ok(Check::Damaged(Damage::HeaderCheck));
    }
    if u64::from(header.length) > limit {
        return Ok(Check::Damaged(Damage::TooLong(header.length)));
    }
    let total = frame_len(header.length)?;
    let frame = src.get(pos, total)?;
    if frame.len() < total {
        return Ok(Check::TornBody(frame.len() as u64));
    }
    if crc32(frame.get(HEADER_LEN..).unwrap_or(&[])) != header.body_crc {
        return Ok(Check::Damaged(Damage::BodyCrc));
    }
    Ok(Check::Complete(pos + total as u64))
}

/// The first offset from `from` where a complete frame starts, or the end.
fn resync<S: Source>(src: &mut S, from: u64, limit: u64) -> io::Result<u64> {
    let mut q = from;
    loop {
        match check(src, q, limit)? {
            Check::Complete(_) | Check::End => return Ok(q),
            Check::TornHeader(left) => return Ok(q + left),
            Check::TornBody(_) | Check::Damaged(_) => q += 1,
        }
    }
}

/// The walk, one event at a time.
struct Walker<S> {
    src: S,
    pos: u64,
    strict: bool,
    limit: u64,
    started: bool,
    done: bool,
}

impl<S: Source> Walker<S> {
    fn new(src: S, strict: bool, limit: u64) -> Self {
        Walker {
            src,
            pos: 0,
            strict,
            limit,
            started: false,
            done: false,
        }
    }

    /// Deliver the next event to `visit`: Ok(true) when one was delivered,
    /// Ok(false) at the end (no event).
    fn step<E>(
        &mut self,
        visit: impl FnOnce(Event<'_>) -> Result<(), E>,
    ) -> Result<bool, WalkError<E>> {
        let mut sink = Decoding(Some(visit));
        self.step_with(&mut sink)
    }

    /// [`Walker::step`] with the frames handed to `sink` undecoded.
    fn step_with<E, K: FrameSink<E>>(&mut self, sink: &mut K) -> Result<bool, WalkError<E>> {
        if self.done {
            return Ok(false);
        }
        if !self.started {
            if self.src.get(0, MAGIC.len())? != MAGIC {
                self.done = true;
                return Err(WalkError::Corruption {
                    offset: 0,
                    reason: MISSING_MAGIC.to_owned(),
                });
            }
            self.started = true;
            self.pos = MAGIC.len() as u64;
        }
        let pos = self.pos;
        let damage = match check(&mut self.src, pos, self.limit)? {
            Check::End => {
                self.done = true;
                return Ok(false);
            }
            Check::TornHeader(bytes) | Check::TornBody(bytes) => {
                self.done = true;
                sink.other(Event::Torn { bytes }).map_err(WalkError::Stop)?;
                return Ok(true);
            }
            Check::Damaged(damage) => damage,
            Check::Complete(end) => {
                let frame = self.src.get(pos, (end - pos) as usize)?;
                let body = frame.get(HEADER_LEN..).unwrap_or(&[]);
                if sink.frame(pos, body).map_err(WalkError::Stop)? {
                    self.pos = end;
                    return Ok(true);
                }
                Damage::Undecodable
            }
        };
        let reason = damage.reason(self.limit);
        if self.strict {
            self.done = true;
            return Err(WalkError::Corruption {
                offset: pos,
                reason,
            });
        }
        let next = resync(&mut self.src, pos + 1, self.limit)?;
        self.pos = next;
        sink.other(Event::Corrupt {
            start: pos,
            end: next,
            reason,
        })
        .map_err(WalkError::Stop)?;
        Ok(true)
    }

    fn run<E>(
        mut self,
        mut visit: impl FnMut(Event<'_>) -> Result<(), E>,
    ) -> Result<(), WalkError<E>> {
        while self.step(&mut visit)? {}
        Ok(())
    }
}

/// Where a walk delivers its frames: [`FrameSink::frame`] gets each complete
/// frame whose CRCs pass and says whether its body decodes (a body that does
/// not is corruption, handled by the walk); [`FrameSink::other`] gets the
/// torn tail and, when not strict, the damaged ranges.
pub trait FrameSink<E> {
    /// A complete frame at `offset`: Ok(true) when its body decoded.
    fn frame(&mut self, offset: u64, body: &[u8]) -> Result<bool, E>;
    /// A torn tail or a skipped damaged range.
    fn other(&mut self, event: Event<'_>) -> Result<(), E>;
}

/// The sink of the event walks: decodes each body and hands over the record.
struct Decoding<F>(Option<F>);

impl<E, F: FnOnce(Event<'_>) -> Result<(), E>> FrameSink<E> for Decoding<F> {
    fn frame(&mut self, offset: u64, body: &[u8]) -> Result<bool, E> {
        let Ok(record) = decode_msgpack(body) else {
            return Ok(false);
        };
        match self.0.take() {
            Some(visit) => visit(Event::Record {
                offset,
                body,
                record,
            })
            .map(|()| true),
            None => Ok(true),
        }
    }

    fn other(&mut self, event: Event<'_>) -> Result<(), E> {
        match self.0.take() {
            Some(visit) => visit(event),
            None => Ok(()),
        }
    }
}

/// [`walk_reader`] with every complete frame handed to `sink` undecoded, for
/// callers that decode bodies themselves (see `pipeline`).
pub fn walk_reader_with<R: Read, E, S: FrameSink<E>>(
    reader: R,
    strict: bool,
    max_frame: u64,
    sink: &mut S,
) -> Result<(), WalkError<E>> {
    let mut walker = Walker::new(ReaderSource::new(reader), strict, max_frame);
    while walker.step_with(sink)? {}
    Ok(())
}

/// Walk a framed journal held in memory (starting with [`MAGIC`]).
///
/// Calls `visit` with a [`Event::Record`] per decoded frame, then at most one
/// [`Event::Torn`]. Damage stops the walk with [`WalkError::Corruption`] when
/// `strict`; otherwise `visit` gets an [`Event::Corrupt`] for the skipped
/// range and the walk resumes at the next complete frame. A missing magic is
/// corruption at offset 0 in every mode. `max_frame` is the largest body
/// length accepted.
pub fn walk_slice<E>(
    buf: &[u8],
    strict: bool,
    max_frame: u64,
    visit: impl FnMut(Event<'_>) -> Result<(), E>,
) -> Result<(), WalkError<E>> {
    Walker::new(SliceSource(buf), strict, max_frame).run(visit)
}

/// [`walk_slice`] over a stream, reading it once, front to back.
///
/// Memory stays about one read chunk plus the largest frame met (bounded by
/// `max_frame`), whatever the stream's length.
pub fn walk_reader<R: Read, E>(
    reader: R,
    strict: bool,
    max_frame: u64,
    visit: impl FnMut(Event<'_>) -> Result<(), E>,
) -> Result<(), WalkError<E>> {
    Walker::new(ReaderSource::new(reader), strict, max_frame).run(visit)
}

/// A framed journal read from a stream one event at a time (the pull form
/// of [`walk_reader`], for callers that stop and resume, like a Python
/// iterator).
pub struct FrameReader<R> {
    walker: Walker<ReaderSource<R>>,
}

impl<R: Read> FrameReader<R> {
    /// A reader at the start of `reader`, which must begin with [`MAGIC`].
    pub fn new(reader: R, strict: bool, max_frame: u64) -> Self {
        FrameReader {
            walker: Walker::new(ReaderSource::new(reader), strict, max_frame),
        }
    }

    /// Give the next event to `visit`: Ok(true) when there was one, Ok(false)
    /// at the end. After an error the reader is spent unless it was `Io`.
    pub fn next_event<E>(
        &mut self,
        visit: impl FnOnce(Event<'_>) -> Result<(), E>,
    ) -> Result<bool, WalkError<E>> {
        self.walker.step(visit)
    }
}

/// Positioned reads (`pread`), without moving a file offset.
pub trait ReadAt {
    /// Read up to `buf.len()` bytes at `offset`; fewer only at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Fill as much of `buf` as the data allows; returns how much was read.
    fn read_full_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(done)
    }
}

#[cfg(unix)]
impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

#[cfg(windows)]
impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::windows::fs::FileExt::seek_read(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset).map_or(self.len(), |o| o.min(self.len()));
        let src = self.get(start..).unwrap_or(&[]);
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }
}

/// Header reads through a small window, so walking many small frames costs
/// one `pread` per window instead of one per frame.
#[derive(Default)]
struct ReadAhead {
    buf: Vec<u8>,
    start: u64,
}

impl ReadAhead {
    const WINDOW: usize = 64 * 1024;

    /// The header at `pos`, or None when fewer than 12 bytes are left.
    fn header<F: ReadAt + ?Sized>(&mut self, file: &F, pos: u64) -> io::Result<Option<Header>> {
        let cached = pos
            .checked_sub(self.start)
            .and_then(|skip| usize::try_from(skip).ok())
            .and_then(|skip| self.buf.get(skip..skip.checked_add(HEADER_LEN)?));
        if let Some(head) = cached {
            return Ok(Header::parse(head));
        }
        self.buf.resize(Self::WINDOW, 0);
        let got = file.read_full_at(&mut self.buf, pos)?;
        self.buf.truncate(got);
        self.start = pos;
        Ok(Header::parse(&self.buf))
    }
}

/// Where a writer reopening a framed journal continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanEnd {
    /// The file is empty or holds a prefix of the magic (a crash while
    /// writing it): truncate it to 0 and write the magic.
    NeedsMagic,
    /// Append at `end` (the end of the last complete frame; anything after it
    /// is a torn tail to truncate); `last_seq` is that frame's `journal_seq`
    /// (0 without frames).
    End { end: u64, last_seq: i64 },
}

/// Why a framed journal cannot be appended to.
#[derive(Debug)]
pub enum ScanError {
    Corruption { offset: u64, reason: String },
    Io(io::Error),
}

impl From<io::Error> for ScanError {
    fn from(err: io::Error) -> Self {
        ScanError::Io(err)
    }
}

fn scan_corruption(offset: u64, reason: impl Into<String>) -> ScanError {
    ScanError::Corruption {
        offset,
        reason: reason.into(),
    }
}

/// Find where to append to a framed journal of `size` bytes.
///
/// Walks the frame headers only (12 bytes read per frame; bodies are skipped
/// by their length), checking each header's CRC and the length limit, and
/// stops at a body that runs past the end (a torn tail). Only the last
/// complete frame's body is read, CRC-checked and decoded, for its
/// `journal_seq`. Mirrors the reference's `_scan_rcj_end` and the magic
/// handling of `JournalWriter._prepare`.
pub fn scan_end<F: ReadAt + ?Sized>(file: &F, size: u64, limit: u64) -> Result<ScanEnd, ScanError> {
    let mut magic = [0u8; 4];
    let got = file.read_full_at(&mut magic, 0)?;
    if size < MAGIC.len() as u64 {
        let prefix = magic.get(..got.min(size as usize)).unwrap_or(&[]);
        return if MAGIC.starts_with(prefix) {
            Ok(ScanEnd::NeedsMagic)
        } else {
            Err(scan_corruption(0, MISSING_MAGIC))
        };
    }
    if got < MAGIC.len() || &magic != MAGIC {
        return Err(scan_corruption(0, MISSING_MAGIC));
    }
    let mut pos = MAGIC.len() as u64;
    let mut last: Option<(u64, Header)> = None;
    let mut ahead = ReadAhead::default();
    while size - pos >= HEADER_LEN as u64 {
        let Some(header) = ahead.header(file, pos)? else {
            break; // the file shrank under us: treat as a torn tail
        };
        if !header.valid {
            return Err(scan_corruption(pos, HEADER_CHECK_FAILED));
        }
        if u64::from(header.length) > limit {
            return Err(scan_corruption(
                pos,
                too_long(u64::from(header.length), limit),
            ));
        }
        let next = pos + HEADER_LEN as u64 + u64::from(header.length);
        if next > size {
            break;
        }
        last = Some((pos, header));
        pos = next;
    }
    let Some((start, header)) = last else {
        return Ok(ScanEnd::End {
            end: pos,
            last_seq: 0,
        });
    };
    let length = frame_len(header.length)? - HEADER_LEN;
    let mut body = vec![0u8; length];
    let got = file.read_full_at(&mut body, start + HEADER_LEN as u64)?;
    if got < length || crc32(&body) != header.body_crc {
        return Err(scan_corruption(start, BODY_CRC_MISMATCH));
    }
    match decode_msgpack(&body) {
        Ok(record) => Ok(ScanEnd::End {
            end: pos,
            last_seq: record.journal_seq,
        }),
        Err(_) => Err(scan_corruption(start, BODY_DOES_NOT_DECODE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A canonical record body, as msgspec writes it.
    fn body(id: &str, seq: i64) -> Vec<u8> {
        crate::test_support::custom_body(id, seq, "step", &[0xc0])
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(body, &mut out).unwrap();
        out
    }

    fn journal(n: i64) -> (Vec<u8>, Vec<u64>) {
        let mut data = MAGIC.to_vec();
        let mut offsets = Vec::new();
        for seq in 1..=n {
            offsets.push(data.len() as u64);
            data.extend(frame(&body(&format!("r{seq}"), seq)));
        }
        (data, offsets)
    }

    /// Events as comparable strings.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Rec(u64, i64),
        Corrupt(u64, u64, String),
        Torn(u64),
    }

    type Walked = Result<Vec<Ev>, (u64, String)>;

    fn own(event: Event<'_>) -> Ev {
        match event {
            Event::Record { offset, record, .. } => Ev::Rec(offset, record.journal_seq),
            Event::Corrupt { start, end, reason } => Ev::Corrupt(start, end, reason),
            Event::Torn { bytes } => Ev::Torn(bytes),
        }
    }

    fn settle(result: Result<(), WalkError<()>>, out: Vec<Ev>) -> Walked {
        match result {
            Ok(()) => Ok(out),
            Err(WalkError::Corruption { offset, reason }) => Err((offset, reason)),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    /// Both walkers, checked to agree (the reader with a tiny read size too).
    fn walked(data: &[u8], strict: bool, limit: u64) -> Walked {
        let mut a = Vec::new();
        let ra = walk_slice(data, strict, limit, |e| {
            a.push(own(e));
            Ok::<(), ()>(())
        });
        let a = settle(ra, a);
        let mut b = Vec::new();
        let rb = walk_reader(data, strict, limit, |e| {
            b.push(own(e));
            Ok::<(), ()>(())
        });
        assert_eq!(a, settle(rb, b));
        let mut c = Vec::new();
        let rc = walk_reader(Trickle(data), strict, limit, |e| {
            c.push(own(e));
            Ok::<(), ()>(())
        });
        assert_eq!(a, settle(rc, c));
        a
    }

    /// A reader returning at most 3 bytes per read.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(3).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn frames_round_trip() {
        let (data, offsets) = journal(3);
        let expected: Vec<Ev> = offsets
            .iter()
            .zip(1..)
            .map(|(&o, s)| Ev::Rec(o, s))
            .collect();
        for strict in [true, false] {
            assert_eq!(
                walked(&data, strict, DEFAULT_MAX_FRAME),
                Ok(expected.clone())
            );
        }
        assert_eq!(walked(MAGIC, true, DEFAULT_MAX_FRAME), Ok(vec![]));
    }

    #[test]
    fn header_layout() {
        let b = body("r1", 1);
        let f = frame(&b);
        assert_eq!(le32(&f, 0) as usize, b.len());
        assert_eq!(le32(&f, 4), crc32(&b));
        assert_eq!(le32(&f, 8), crc32(&f[..8]));
        // zlib.crc32(b"123456789") == 0xCBF43926
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn torn_tail_at_every_cut() {
        let (data, offsets) = journal(3);
        let ends: Vec<u64> = offsets
            .iter()
            .skip(1)
            .copied()
            .chain([data.len() as u64])
            .collect();
        for cut in MAGIC.len()..data.len() {
            let cut64 = cut as u64;
            let mut expected: Vec<Ev> = (0..3)
                .filter(|&i| ends[i] <= cut64)
                .map(|i| Ev::Rec(offsets[i], i as i64 + 1))
                .collect();
            let tail_start = (0..3)
                .filter(|&i| ends[i] <= cut64)
                .map(|i| ends[i])
                .max()
                .unwrap_or(MAGIC.len() as u64);
            if cut64 > tail_start {
                expected.push(Ev::Torn(cut64 - tail_start));
            }
            for strict in [true, false] {
                assert_eq!(
                    walked(&data[..cut], strict, DEFAULT_MAX_FRAME),
                    Ok(expected.clone()),
                    "cut {cut}"
                );
            }
        }
    }

    #[test]
    fn missing_magic_in_every_mode() {
        for data in [&b""[..], b"RC", b"RCJ", b"XCJ1", b"RCJ2abcdefghijklmnop"] {
            for strict in [true, false] {
                assert_eq!(
                    walked(data, strict, DEFAULT_MAX_FRAME),
                    Err((0, MISSING_MAGIC.to_owned()))
                );
            }
        }
    }

    #[test]
    fn each_corruption_reason_and_resync() {
        let (data, offsets) = journal(3);
        let (a, b, c) = (offsets[0], offsets[1], offsets[2]);
        let end = data.len() as u64;
        // header check: flip a length bit of frame 2
        let mut bad = data.clone();
        bad[b as usize] ^= 1;
        assert_eq!(
            walked(&bad, true, DEFAULT_MAX_FRAME),
            Err((b, HEADER_CHECK_FAILED.to_owned()))
        );
        assert_eq!(
            walked(&bad, false, DEFAULT_MAX_FRAME),
            Ok(vec![
                Ev::Rec(a, 1),
                Ev::Corrupt(b, c, HEADER_CHECK_FAILED.to_owned()),
                Ev::Rec(c, 3)
            ])
        );
        // body CRC: flip a body byte of frame 1
        let mut bad = data.clone();
        bad[a as usize + HEADER_LEN + 3] ^= 0x40;
        assert_eq!(
            walked(&bad, false, DEFAULT_MAX_FRAME),
            Ok(vec![
                Ev::Corrupt(a, b, BODY_CRC_MISMATCH.to_owned()),
                Ev::Rec(b, 2),
                Ev::Rec(c, 3)
            ])
        );
        // undecodable body with a valid CRC, last frame: resync to the end
        let mut bad = data[..c as usize].to_vec();
        bad.extend(frame(b"\x93\x01\x02\x03"));
        let bad_end = bad.len() as u64;
        assert_eq!(
            walked(&bad, true, DEFAULT_MAX_FRAME),
            Err((c, BODY_DOES_NOT_DECODE.to_owned()))
        );
        assert_eq!(
            walked(&bad, false, DEFAULT_MAX_FRAME),
            Ok(vec![
                Ev::Rec(a, 1),
                Ev::Rec(b, 2),
                Ev::Corrupt(c, bad_end, BODY_DOES_NOT_DECODE.to_owned())
            ])
        );
        // over the limit (checked before the torn rule)
        let limit = (b - a) - HEADER_LEN as u64 - 1;
        let reason = too_long(limit + 1, limit);
        assert_eq!(walked(&data, true, limit), Err((a, reason.clone())));
        assert_eq!(
            walked(&data[..(a as usize + HEADER_LEN)], true, limit),
            Err((a, reason.clone()))
        );
        // every frame has the same length: all are too long, resync to the end
        assert_eq!(
            walked(&data, false, limit),
            Ok(vec![Ev::Corrupt(a, end, reason)])
        );
        // the limit is inclusive
        assert!(walked(&data, true, limit + 1).is_ok());
    }

    #[test]
    fn resync_finds_an_empty_frame_at_the_very_end() {
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(b"garbage!");
        data.extend(frame(b""));
        // an empty body is CRC-valid but does not decode
        assert_eq!(
            walked(&data, false, DEFAULT_MAX_FRAME),
            Ok(vec![
                Ev::Corrupt(4, 12, HEADER_CHECK_FAILED.to_owned()),
                Ev::Corrupt(12, 24, BODY_DOES_NOT_DECODE.to_owned()),
            ])
        );
    }

    #[test]
    fn four_gib_declared_length_is_corruption_not_an_allocation() {
        let mut head = Vec::new();
        head.extend_from_slice(&u32::MAX.to_le_bytes());
        head.extend_from_slice(&0u32.to_le_bytes());
        let crc = crc32(&head);
        head.extend_from_slice(&crc.to_le_bytes());
        let mut data = MAGIC.to_vec();
        data.extend(&head);
        data.extend_from_slice(b"short");
        let reason = too_long(u64::from(u32::MAX), DEFAULT_MAX_FRAME);
        assert_eq!(
            walked(&data, true, DEFAULT_MAX_FRAME),
            Err((4, reason.clone()))
        );
        let len = data.len() as u64;
        assert_eq!(
            walked(&data, false, DEFAULT_MAX_FRAME),
            Ok(vec![Ev::Corrupt(4, len, reason)])
        );
        // with a limit of 2**32 - 1 it is merely a torn tail
        assert_eq!(
            walked(&data, true, u64::from(u32::MAX)),
            Ok(vec![Ev::Torn(17)])
        );
    }

    #[test]
    fn garbage_between_frames_and_large_garbage() {
        let (data, offsets) = journal(2);
        let mut bad = data[..offsets[1] as usize].to_vec();
        bad.extend(std::iter::repeat_n(0xAB, 300_000));
        let resume = bad.len() as u64;
        bad.extend_from_slice(&data[offsets[1] as usize..]);
        assert_eq!(
            walked(&bad, false, DEFAULT_MAX_FRAME),
            Ok(vec![
                Ev::Rec(offsets[0], 1),
                Ev::Corrupt(offsets[1], resume, HEADER_CHECK_FAILED.to_owned()),
                Ev::Rec(resume, 2)
            ])
        );
    }

    #[test]
    fn visitor_can_stop() {
        let (data, _) = journal(3);
        let mut seen = 0;
        let result = walk_slice(&data, true, DEFAULT_MAX_FRAME, |_| {
            seen += 1;
            if seen == 2 {
                Err("enough")
            } else {
                Ok(())
            }
        });
        assert!(matches!(result, Err(WalkError::Stop("enough"))));
        assert_eq!(seen, 2);
    }

    #[test]
    fn scan_end_of_clean_torn_and_damaged_files() {
        let (data, offsets) = journal(3);
        let end = data.len() as u64;
        let scan = |d: &[u8], limit| scan_end(d, d.len() as u64, limit);
        assert_eq!(
            scan(&data, DEFAULT_MAX_FRAME).unwrap(),
            ScanEnd::End { end, last_seq: 3 }
        );
        for cut in offsets[2] as usize..data.len() {
            assert_eq!(
                scan(&data[..cut], DEFAULT_MAX_FRAME).unwrap(),
                ScanEnd::End {
                    end: offsets[2],
                    last_seq: 2
                },
                "cut {cut}"
            );
        }
        assert_eq!(
            scan(MAGIC, DEFAULT_MAX_FRAME).unwrap(),
            ScanEnd::End {
                end: 4,
                last_seq: 0
            }
        );
        assert_eq!(
            scan(&data[..10], DEFAULT_MAX_FRAME).unwrap(),
            ScanEnd::End {
                end: 4,
                last_seq: 0
            }
        );
        for prefix in [&b""[..], b"R", b"RC", b"RCJ"] {
            assert_eq!(
                scan(prefix, DEFAULT_MAX_FRAME).unwrap(),
                ScanEnd::NeedsMagic
            );
        }
        for bad in [&b"X"[..], b"RCX", b"RCJ2", b"RCX1xxxxxxxx"] {
            assert!(matches!(
                scan(bad, DEFAULT_MAX_FRAME),
                Err(ScanError::Corruption { offset: 0, .. })
            ));
        }
        let mut bad = data.clone();
        bad[offsets[1] as usize + 9] ^= 1;
        assert!(matches!(
            scan(&bad, DEFAULT_MAX_FRAME),
            Err(ScanError::Corruption { offset, ref reason }) if offset == offsets[1] && reason == HEADER_CHECK_FAILED
        ));
        let mut bad = data.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            scan(&bad, DEFAULT_MAX_FRAME),
            Err(ScanError::Corruption { offset, ref reason }) if offset == offsets[2] && reason == BODY_CRC_MISMATCH
        ));
        // a damaged body before the last frame is not read
        let mut bad = data.clone();
        bad[offsets[0] as usize + 20] ^= 1;
        assert_eq!(
            scan(&bad, DEFAULT_MAX_FRAME).unwrap(),
            ScanEnd::End { end, last_seq: 3 }
        );
        let mut bad = data[..offsets[2] as usize].to_vec();
        bad.extend(frame(b"\xc0"));
        assert!(matches!(
            scan(&bad, DEFAULT_MAX_FRAME),
            Err(ScanError::Corruption { offset, ref reason }) if offset == offsets[2] && reason == BODY_DOES_NOT_DECODE
        ));
        assert!(matches!(
            scan(&data, 10),
            Err(ScanError::Corruption { offset: 4, .. })
        ));
    }

    #[test]
    fn max_frame_bytes_has_one_default_and_one_range() {
        assert_eq!(max_frame_bytes(None).unwrap(), 64 * 1024 * 1024);
        assert_eq!(max_frame_bytes(None).unwrap(), DEFAULT_MAX_FRAME);
        assert_eq!(max_frame_bytes(Some(1)).unwrap(), 1);
        assert_eq!(max_frame_bytes(Some(4_294_967_295)).unwrap(), 4_294_967_295);
        for bad in [0, -1, 4_294_967_296, i64::MIN, i64::MAX] {
            let err = max_frame_bytes(Some(bad)).unwrap_err();
            assert_eq!(err.argument(), Some("max_frame_bytes"));
            assert_eq!(
                err.message(),
                format!("max_frame_bytes must be in 1..=4294967295, got {bad}")
            );
        }
        let huge = max_frame_out_of_range("99999999999999999999");
        assert_eq!(
            huge.message(),
            "max_frame_bytes must be in 1..=4294967295, got 99999999999999999999"
        );
    }

    #[test]
    fn a_walker_moving_backwards_is_an_internal_error() {
        let mut src = ReaderSource::new(&b"RCJ1abcdefgh"[..]);
        assert_eq!(src.get(0, 8).unwrap(), b"RCJ1abcd");
        // The window has moved past offset 4: asking for it again is a bug.
        src.buf.drain(..8);
        src.base = 8;
        assert_eq!(src.get(8, 4).unwrap(), b"efgh");
        let err = Error::from(src.get(4, 4).unwrap_err());
        assert!(matches!(err, Error::Internal { .. }), "{err:?}");
    }
}
