//! Journal files (SPEC 6.2), in pure Rust: the format chosen by extension,
//! streaming walks of a file, the decode-only inspection, the read batching
//! of `read_journal` ([`BatchReader`]), and `JournalWriter` without Python:
//! the file side ([`Writer`]: open, lock, repair the tail, append, sync), the
//! seq rule of appends ([`Numbering`]) and the commit rule of a writer shared
//! between threads ([`SharedWriter`]).
//!
//! The formats themselves live in [`crate::frames`] (`.rcj`) and
//! [`crate::jsonl`] (`.jsonl`).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Choice, Error};
use crate::frames::{self, Event, FrameReader, ScanEnd, ScanError, WalkError};
use crate::jsonl::{self, LineEvent, LineReader};
use crate::sync::lock;

/// The two journal formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Framed msgpack (`.rcj`, and any name not ending in `.jsonl`).
    Rcj,
    /// JSON lines (`.jsonl`).
    Jsonl,
}

impl Format {
    /// `Jsonl` for a name ending in `.jsonl`, else `Rcj` (as the reference's
    /// `journal_format`, on the path as given).
    pub fn of(path: &Path) -> Format {
        if path.as_os_str().as_encoded_bytes().ends_with(b".jsonl") {
            Format::Jsonl
        } else {
            Format::Rcj
        }
    }

    /// `"rcj"` or `"jsonl"`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Rcj => "rcj",
            Format::Jsonl => "jsonl",
        }
    }
}

/// A failure to open a journal file, naming the file (Python's `OSError`
/// carries the file name for these).
#[derive(Debug)]
pub struct OpenFailed {
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for OpenFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.path.display())
    }
}

impl std::error::Error for OpenFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn open_failed(path: &Path, source: io::Error) -> io::Error {
    io::Error::new(
        source.kind(),
        OpenFailed {
            path: path.to_owned(),
            source,
        },
    )
}

/// Whether `path` itself (not what it points to) is a symbolic link.
fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink())
}

/// Open a journal for reading; a failure is an [`OpenFailed`] inside the
/// returned `io::Error`.
pub fn open_read(path: &Path) -> io::Result<File> {
    File::open(path).map_err(|err| open_failed(path, err))
}

/// One step of walking a journal file of either format.
#[derive(Debug)]
pub enum FileEvent<'a> {
    Frame(Event<'a>),
    Line(LineEvent<'a>),
}

/// Walk the journal at `path`, streaming it, in the format its name says.
///
/// Framed files give [`FileEvent::Frame`] events ([`frames::walk_reader`]:
/// records, skipped damage when not `strict`, a torn tail); JSON-lines files
/// give one [`FileEvent::Line`] per line ([`jsonl::walk_json_lines_reader`],
/// lines over `max_line` bytes never held; the visitor decides what
/// `strict` makes of a corrupt line). Failing to open the file is an `Io`
/// error holding an [`OpenFailed`].
pub fn walk_path<E>(
    path: &Path,
    strict: bool,
    max_frame: u64,
    max_line: u64,
    mut visit: impl FnMut(FileEvent<'_>) -> Result<(), E>,
) -> Result<(), WalkError<E>> {
    let file = open_read(path)?;
    match Format::of(path) {
        Format::Rcj => frames::walk_reader(file, strict, max_frame, |e| visit(FileEvent::Frame(e))),
        Format::Jsonl => {
            jsonl::walk_json_lines_reader(file, max_line, |e| visit(FileEvent::Line(e)))
        }
    }
}

/// What [`inspect_path`] found: a decode-only pass, nothing reduced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    pub format: Option<Format>,
    /// Records decoded.
    pub records: u64,
    /// Records per kind.
    pub kinds: BTreeMap<&'static str, u64>,
    /// `journal_seq` of the first and last record in file order (0 without records).
    pub first_journal_seq: i64,
    pub last_journal_seq: i64,
    /// Framed: bytes of the torn tail.
    pub torn_tail_bytes: u64,
    /// JSON lines: blank and corrupt lines.
    pub skipped_lines: u64,
    /// Damaged ranges skipped, `(start, end, reason)`: frames, or JSON lines
    /// (their bytes without the newline).
    pub corrupt_ranges: Vec<(u64, u64, String)>,
    /// Size of the file (bytes read).
    pub bytes: u64,
}

impl Inspection {
    fn record(&mut self, kind: &'static str, seq: i64) {
        if self.records == 0 {
            self.first_journal_seq = seq;
        }
        self.records += 1;
        self.last_journal_seq = seq;
        *self.kinds.entry(kind).or_insert(0) += 1;
    }
}

/// Counts the bytes a reader hands out.
struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: io::Read> io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Decode every record of the journal at `path` (streaming) and count what
/// was found. Damage is skipped and listed (never raised), except a missing
/// magic; a JSON line counts as a record when
/// `msgspec.json.Decoder(JournalRecord)` decodes it (and it is within
/// `max_line` bytes), a corrupt line is listed and counted in
/// `skipped_lines` with the blank ones, a torn last line in `torn_tail_bytes`.
pub fn inspect_path(
    path: &Path,
    max_frame: u64,
    max_line: u64,
) -> Result<Inspection, WalkError<std::convert::Infallible>> {
    let format = Format::of(path);
    let mut reader = Counted {
        inner: open_read(path)?,
        count: 0,
    };
    let mut found = Inspection {
        format: Some(format),
        ..Inspection::default()
    };
    match format {
        Format::Rcj => frames::walk_reader(&mut reader, false, max_frame, |event| {
            match event {
                Event::Record { record, .. } => {
                    found.record(record.payload.kind(), record.journal_seq);
                }
                Event::Corrupt { start, end, reason } => {
                    found.corrupt_ranges.push((start, end, reason));
                }
                Event::Torn { bytes } => found.torn_tail_bytes += bytes,
            }
            Ok(())
        })?,
        Format::Jsonl => jsonl::walk_json_lines_reader(&mut reader, max_line, |event| {
            match event {
                LineEvent::Record { record, .. } => {
                    found.record(record.payload.kind(), record.journal_seq);
                }
                LineEvent::Unencodable { line } => {
                    if let Some(parsed) = jsonl::parse_line(line) {
                        found.record(parsed.kind(), parsed.journal_seq());
                    }
                }
                LineEvent::Blank => found.skipped_lines += 1,
                LineEvent::Corrupt { start, end, reason } => {
                    found.skipped_lines += 1;
                    found.corrupt_ranges.push((start, end, reason));
                }
                LineEvent::Torn { bytes } => found.torn_tail_bytes += bytes,
            }
            Ok(())
        })?,
    }
    found.bytes = reader.count;
    Ok(found)
}

/// When a writer syncs to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fsync {
    /// After every append: a returned append is on disk. The default.
    #[default]
    Always,
    /// On `flush` and `close`.
    Batch,
    /// Never: left to the OS.
    Never,
}

impl Fsync {
    /// The mode's name.
    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Batch => "batch",
            Fsync::Never => "never",
        }
    }
}

impl Choice for Fsync {
    const ARGUMENT: &'static str = "fsync";
    const ALL: &'static [Self] = &[Fsync::Always, Fsync::Batch, Fsync::Never];

    fn name(self) -> &'static str {
        Fsync::name(self)
    }

    fn refused(shown: &str) -> Error {
        let message = format!("fsync must be 'always', 'batch' or 'never', got {shown}");
        Error::value_error(Self::ARGUMENT, message)
    }
}

/// Why a journal cannot be opened for appending.
#[derive(Debug)]
pub enum OpenError {
    /// Another writer (any process) holds the file's lock.
    Locked,
    /// The path's last component is a symbolic link (SPEC 6.2 "Links").
    Link,
    /// The file is damaged where appending would need it whole.
    Corruption {
        offset: u64,
        reason: String,
    },
    Io(io::Error),
}

impl From<io::Error> for OpenError {
    fn from(err: io::Error) -> Self {
        OpenError::Io(err)
    }
}

impl OpenError {
    /// The error to report, naming the journal as `shown_path` (how the
    /// caller spells the path) when another writer holds it.
    pub fn into_error(self, shown_path: &str) -> Error {
        match self {
            OpenError::Locked => Error::Locked {
                message: format!("{shown_path} is open in another JournalWriter"),
            },
            OpenError::Link => Error::value_error(
                "path",
                format!(
                    "{shown_path} is a symbolic link: a JournalWriter never appends into a file \
                     it did not create"
                ),
            ),
            OpenError::Corruption { offset, reason } => Error::Corruption { offset, reason },
            OpenError::Io(err) => Error::from(err),
        }
    }
}

impl From<ScanError> for OpenError {
    fn from(err: ScanError) -> Self {
        match err {
            ScanError::Corruption { offset, reason } => OpenError::Corruption { offset, reason },
            ScanError::Io(err) => OpenError::Io(err),
        }
    }
}

/// The file side of a journal writer: an open, exclusively locked journal
/// positioned at its end. Not thread-safe by itself (the binding locks it).
#[derive(Debug)]
pub struct Writer {
    file: File,
    fsync: Fsync,
    last_seq: i64,
    /// Where the file ends: appends know it without asking the OS (an
    /// `lseek` per append cost as much as encoding a record).
    end: u64,
}

impl Writer {
    /// Open (creating it, mode 0644) and lock the journal at `path`, cut a
    /// torn tail, and find the last `journal_seq`, as the reference's
    /// `JournalWriter.__init__` and `_prepare` do.
    ///
    /// The lock is an exclusive, non-blocking `flock`, compatible with the
    /// reference's `fcntl.flock` (so a Rust and a Python writer exclude each
    /// other too); it goes with the file when the writer is dropped.
    ///
    /// A path whose last component is a symbolic link is refused
    /// ([`OpenError::Link`]) and nothing is created or written: the file is
    /// opened with `O_NOFOLLOW`, so a dangling link is not created through
    /// either. Directories above it may be links.
    pub fn open(path: &Path, fsync: Fsync, max_frame: u64) -> Result<Writer, OpenError> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o644).custom_flags(libc::O_NOFOLLOW);
        }
        let file = match options.open(path) {
            Ok(file) => file,
            Err(_) if is_link(path) => return Err(OpenError::Link),
            Err(err) => return Err(OpenError::Io(open_failed(path, err))),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(OpenError::Locked),
            Err(std::fs::TryLockError::Error(err)) => return Err(OpenError::Io(err)),
        }
        let mut writer = Writer {
            file,
            fsync,
            last_seq: 0,
            end: 0,
        };
        writer.last_seq = writer.prepare(Format::of(path), max_frame)?;
        Ok(writer)
    }

    fn prepare(&mut self, format: Format, max_frame: u64) -> Result<i64, OpenError> {
        let size = self.file.metadata()?.len();
        let (end, last) = match format {
            Format::Rcj => match frames::scan_end(&self.file, size, max_frame)? {
                ScanEnd::NeedsMagic => {
                    // Empty, or a crash while writing the magic.
                    if size > 0 {
                        self.file.set_len(0)?;
                    }
                    self.file.seek(SeekFrom::Start(0))?;
                    self.file.write_all(frames::MAGIC)?;
                    self.sync()?;
                    self.end = frames::MAGIC.len() as u64;
                    return Ok(0);
                }
                ScanEnd::End { end, last_seq } => (end, last_seq),
            },
            Format::Jsonl => {
                let found = jsonl::scan_end(&self.file, size)?;
                let mut end = found.end;
                if found.terminate {
                    // A complete last record that lost only its newline.
                    self.file.seek(SeekFrom::Start(size))?;
                    self.file.write_all(b"\n")?;
                    end = size + 1;
                }
                (end, found.last_seq)
            }
        };
        if end < self.file.metadata()?.len() {
            self.file.set_len(end)?;
            self.sync()?;
        }
        self.end = self.file.seek(SeekFrom::End(0))?;
        Ok(last)
    }

    /// `journal_seq` of the file's last record (0 when empty).
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// Write `bytes` (encoded records) with one write at the end of the file,
    /// sync when the mode is `always`, and record `last_seq`. On failure the
    /// file is cut back to where it ended, so a later append cannot land after
    /// half a record.
    pub fn append(&mut self, bytes: &[u8], last_seq: i64) -> io::Result<()> {
        let before = self.end;
        let written = self.file.write_all(bytes).and_then(|()| {
            if self.fsync == Fsync::Always {
                self.file.sync_all()
            } else {
                Ok(())
            }
        });
        if let Err(err) = written {
            // Best effort: the original error is the one to report.
            let _ = self
                .file
                .set_len(before)
                .and_then(|()| self.file.seek(SeekFrom::Start(before)));
            return Err(err);
        }
        self.end = before + bytes.len() as u64;
        self.last_seq = last_seq;
        Ok(())
    }

    /// Sync the file to disk, unless the mode is `never`.
    pub fn sync(&self) -> io::Result<()> {
        if self.fsync == Fsync::Never {
            Ok(())
        } else {
            self.file.sync_all()
        }
    }

    /// Sync (unless `never`) and close the file, releasing its lock.
    pub fn close(self) -> io::Result<()> {
        self.sync()
    }
}

// -- appending from several threads ------------------------------------------

/// A record's `journal_seq` as the caller of an append gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GivenSeq {
    /// An integer that fits `i64`; 0 asks for the next number.
    Int(i64),
    /// An integer beyond `i64`, as its decimal digits (with its sign).
    Beyond(String),
}

/// The seq rule of appends: a record given `journal_seq == 0` is numbered
/// after the last one written, any other must be above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbering {
    last: i64,
}

impl Numbering {
    /// Numbering after `last_seq`, the last `journal_seq` written.
    pub fn after(last_seq: i64) -> Self {
        Numbering { last: last_seq }
    }

    /// The last `journal_seq` numbered or accepted so far.
    pub fn last(&self) -> i64 {
        self.last
    }

    /// Check the `journal_seq` of `records[index]`: `Ok(Some(seq))` when the
    /// record is to be written with `seq` instead of its 0, `Ok(None)` when it
    /// keeps its own; an error about `records[index].journal_seq` (nothing
    /// counted) when it is at or below the last, or beyond `i64`.
    pub fn number(&mut self, index: usize, given: &GivenSeq) -> Result<Option<i64>, Error> {
        let last = self.last;
        let argument = || format!("records[{index}].journal_seq");
        match given {
            GivenSeq::Int(0) => {
                let next = last.checked_add(1).ok_or_else(|| {
                    let argument = argument();
                    let message = format!("{argument} cannot follow journal_seq {last}");
                    Error::value_error(argument, message)
                })?;
                self.last = next;
                Ok(Some(next))
            }
            GivenSeq::Int(seq) if *seq > last => {
                self.last = *seq;
                Ok(None)
            }
            // Above i64: msgpack would carry it, the schema cannot.
            GivenSeq::Beyond(digits) if !digits.starts_with('-') => Err(Error::out_of_range(
                argument(),
                i128::from(last) + 1,
                i128::from(i64::MAX),
                digits,
            )),
            GivenSeq::Int(seq) => Err(not_above(argument(), last, seq)),
            GivenSeq::Beyond(digits) => Err(not_above(argument(), last, digits)),
        }
    }
}

fn not_above(argument: String, last: i64, shown: impl fmt::Display) -> Error {
    let message = format!("{argument} must be above the last written ({last}), got {shown}");
    Error::value_error(argument, message)
}

/// Append `records[index]`, already encoded (its canonical msgpack for a
/// framed journal, its JSON for JSON lines), to `out` as the file holds it:
/// a frame, or a line.
pub fn push_record(
    format: Format,
    index: usize,
    encoded: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    match format {
        Format::Rcj => frames::encode_frame(encoded, out).ok_or_else(|| {
            let argument = format!("records[{index}]");
            let message = format!(
                "{argument} encodes to {} bytes, more than a frame can hold",
                encoded.len()
            );
            Error::value_error(argument, message)
        }),
        Format::Jsonl => {
            out.reserve(encoded.len() + 1);
            out.extend_from_slice(encoded);
            out.push(b'\n');
            Ok(())
        }
    }
}

/// The error of using a closed writer.
pub fn closed() -> Error {
    Error::value_error("self", "the journal writer is closed")
}

struct WriterState {
    /// None once closed.
    file: Option<Writer>,
    /// Bumped by every append and by closing, so an append prepared against
    /// an older state is prepared again.
    generation: u64,
}

/// What an append is prepared against: the last `journal_seq` written and
/// the writer's state at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub last_seq: i64,
    generation: u64,
}

/// What became of [`SharedWriter::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Written.
    Done,
    /// Another append came first: nothing written, prepare again.
    Stale,
}

/// A journal writer shared between threads (the state behind
/// `JournalWriter`). An append is prepared (numbered, encoded) without the
/// lock against a [`Snapshot`], then committed only if no other append or
/// close came in between, so records are never numbered against a stale
/// last `journal_seq`.
pub struct SharedWriter {
    state: Mutex<WriterState>,
}

impl SharedWriter {
    /// Open (creating it) and lock the journal at `path` ([`Writer::open`]).
    pub fn open(path: &Path, fsync: Fsync, max_frame: u64) -> Result<Self, OpenError> {
        Ok(SharedWriter {
            state: Mutex::new(WriterState {
                file: Some(Writer::open(path, fsync, max_frame)?),
                generation: 0,
            }),
        })
    }

    /// What to prepare an append against; [`closed`] once closed.
    pub fn snapshot(&self) -> Result<Snapshot, Error> {
        let state = lock(&self.state);
        match &state.file {
            Some(file) => Ok(Snapshot {
                last_seq: file.last_seq(),
                generation: state.generation,
            }),
            None => Err(closed()),
        }
    }

    /// Write `bytes` (records numbered up to `last_seq`) if the writer is
    /// still as in `prepared`: `Commit::Stale` (nothing written) when another
    /// append came first, [`closed`] when the writer was closed, the I/O
    /// error when writing failed (the file is cut back; nothing counted).
    pub fn commit(&self, bytes: &[u8], prepared: Snapshot, last_seq: i64) -> Result<Commit, Error> {
        let mut state = lock(&self.state);
        let generation = state.generation;
        let Some(file) = state.file.as_mut() else {
            return Err(closed());
        };
        if generation != prepared.generation {
            return Ok(Commit::Stale);
        }
        file.append(bytes, last_seq)?;
        state.generation += 1;
        Ok(Commit::Done)
    }

    /// The `journal_seq` of the file's last record (0 when empty or closed).
    pub fn last_seq(&self) -> i64 {
        lock(&self.state).file.as_ref().map_or(0, Writer::last_seq)
    }

    /// Sync every appended record unless the mode is `never` (nothing to do
    /// once closed).
    pub fn flush(&self) -> Result<(), Error> {
        match &lock(&self.state).file {
            Some(file) => Ok(file.sync()?),
            None => Ok(()),
        }
    }

    /// Sync and close the file, releasing its lock; closing twice is harmless.
    pub fn close(&self) -> Result<(), Error> {
        let mut state = lock(&self.state);
        if let Some(file) = &state.file {
            file.sync()?;
        }
        match state.file.take() {
            Some(file) => {
                state.generation += 1;
                drop(state);
                Ok(file.close()?)
            }
            None => Ok(()),
        }
    }
}

// -- reading in batches -------------------------------------------------------

/// How `read_journal` reads a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Whether damage in a framed file stops the read (else it is skipped).
    pub strict: bool,
    /// The largest frame body a framed file may declare.
    pub max_frame: u64,
    /// The longest line a JSON-lines file may hold.
    pub max_line: u64,
}

impl Default for ReadOptions {
    /// Strict, with the default frame and line limits.
    fn default() -> Self {
        ReadOptions {
            strict: true,
            max_frame: frames::DEFAULT_MAX_FRAME,
            max_line: jsonl::DEFAULT_MAX_LINE,
        }
    }
}

/// Items (record bodies or lines) gathered end to end in one buffer.
#[derive(Debug, Default)]
pub struct Batch {
    data: Vec<u8>,
    /// Ranges of `data`, in file order.
    items: VecDeque<(usize, usize)>,
}

impl Batch {
    /// A batch is full at this many items...
    pub const MAX_ITEMS: usize = 1024;
    /// ... or this many bytes.
    pub const MAX_BYTES: usize = 4 << 20;

    /// Add a copy of `bytes` as the last item.
    pub fn push(&mut self, bytes: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        self.items.push_back((start, self.data.len()));
    }

    /// Whether gathering should stop.
    pub fn full(&self) -> bool {
        self.items.len() >= Self::MAX_ITEMS || self.data.len() >= Self::MAX_BYTES
    }

    /// Items not yet popped.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether every item was popped.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The first item not yet popped.
    pub fn pop(&mut self) -> Option<&[u8]> {
        let (start, end) = self.items.pop_front()?;
        self.data.get(start..end)
    }

    /// Forget every item, keeping the buffer's memory.
    pub fn reset(&mut self) {
        self.data.clear();
        self.items.clear();
    }
}

enum Source<R> {
    Framed(FrameReader<R>),
    Lines(LineReader<R>),
}

/// A corrupt JSON line met by a [`BatchReader`]: the error that stops the
/// read when `strict`, else a line skipped.
fn corrupt_line(
    strict: bool,
    offset: u64,
    reason: String,
) -> Result<bool, WalkError<std::convert::Infallible>> {
    if strict {
        Err(WalkError::Corruption { offset, reason })
    } else {
        Ok(true)
    }
}

/// Where a [`BatchReader`] stopped.
enum End {
    /// More may follow.
    Open,
    /// Reading stopped: the end of the file, or an error, not yet reported.
    At(Result<(), Error>),
    /// The end was reported.
    Reported,
}

/// The records of a journal read a batch at a time: record bodies of a
/// framed file (torn tails ignored; damage stops the read when strict, else
/// skipped), or the record lines of a JSON-lines file (checked to decode,
/// left undecoded; blank lines and a torn last line ignored, a corrupt line
/// stops the read when strict, else skipped).
///
/// [`BatchReader::refill`] does the file work (a caller can release its
/// interpreter lock around it), [`BatchReader::pop`] hands out the items.
/// A read that stops on an error reports it once the items before it were
/// popped.
pub struct BatchReader<R = File> {
    format: Format,
    strict: bool,
    max_line: u64,
    source: Source<R>,
    batch: Batch,
    end: End,
}

impl BatchReader<File> {
    /// Open the journal at `path`, in the format its name says.
    pub fn open(path: &Path, options: ReadOptions) -> Result<Self, Error> {
        let file = open_read(path)?;
        Ok(BatchReader::new(file, Format::of(path), options))
    }
}

impl<R: Read> BatchReader<R> {
    /// Read a journal of `format` from `reader` (from its start).
    pub fn new(reader: R, format: Format, options: ReadOptions) -> Self {
        let source = match format {
            Format::Rcj => {
                Source::Framed(FrameReader::new(reader, options.strict, options.max_frame))
            }
            Format::Jsonl => Source::Lines(LineReader::new(reader, options.max_line)),
        };
        BatchReader {
            format,
            strict: options.strict,
            max_line: options.max_line,
            source,
            batch: Batch::default(),
            end: End::Open,
        }
    }

    /// The journal's format: items are msgpack bodies or JSON lines.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The next item of the current batch, None once it is used up.
    pub fn pop(&mut self) -> Option<&[u8]> {
        self.batch.pop()
    }

    /// Gather the next batch, once [`BatchReader::pop`] gave None (items not
    /// yet popped are dropped): Ok(true) when there may be more items (the
    /// batch may still be empty: pop, then refill again), Ok(false) at the
    /// end, or the error where reading stopped (then Ok(false) ever after).
    pub fn refill(&mut self) -> Result<bool, Error> {
        match std::mem::replace(&mut self.end, End::Reported) {
            End::Reported => return Ok(false),
            End::At(end) => return end.map(|()| false),
            End::Open => self.end = End::Open,
        }
        self.batch.reset();
        let batch = &mut self.batch;
        while !batch.full() {
            let step = match &mut self.source {
                Source::Framed(frames) => frames.next_event(|event| {
                    if let Event::Record { body, .. } = event {
                        batch.push(body);
                    }
                    Ok::<(), std::convert::Infallible>(())
                }),
                Source::Lines(lines) => match lines.next_line() {
                    Ok(Some(raw)) => {
                        let strict = self.strict;
                        match jsonl::classify(&raw, self.max_line) {
                            None => {
                                let line = raw.bytes.unwrap_or(&[]);
                                if jsonl::parse_line(line).is_some() {
                                    batch.push(line);
                                    Ok(true)
                                } else if raw.terminated {
                                    corrupt_line(
                                        strict,
                                        raw.offset,
                                        jsonl::line_does_not_decode(raw.number),
                                    )
                                } else {
                                    Ok(true)
                                }
                            }
                            Some(LineEvent::Corrupt { start, reason, .. }) => {
                                corrupt_line(strict, start, reason)
                            }
                            Some(_) => Ok(true),
                        }
                    }
                    Ok(None) => Ok(false),
                    Err(err) => Err(WalkError::Io(err)),
                },
            };
            match step {
                Ok(true) => {}
                Ok(false) => {
                    self.end = End::At(Ok(()));
                    break;
                }
                Err(err) => {
                    self.end = End::At(Err(err.into()));
                    break;
                }
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack::Writer as Msgpack;

    fn body(id: &str, seq: i64, kind: &str) -> Vec<u8> {
        let mut w = Msgpack::new();
        w.map(9);
        for (key, value) in [("schema", 1), ("journal_seq", seq), ("at_ms", 0)] {
            w.str(key);
            w.int(value);
        }
        for (key, value) in [("record_id", id), ("run_id", "run")] {
            w.str(key);
            w.str(value);
        }
        w.str("idempotency_key");
        w.nil();
        w.str("dedupe_key");
        w.nil();
        w.str("content_refs");
        w.array(0);
        w.str("payload");
        if kind == "custom" {
            w.map(3);
            w.str("kind");
            w.str("custom");
            w.str("name");
            w.str("x");
            w.str("data");
            w.nil();
        } else {
            w.map(2);
            w.str("kind");
            w.str("run_lifecycle");
            w.str("status");
            w.str("running");
        }
        w.out
    }

    use crate::test_support::framed;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("replaycore-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn format_by_extension() {
        assert_eq!(Format::of(Path::new("a/run.jsonl")), Format::Jsonl);
        assert_eq!(Format::of(Path::new("a/run.rcj")), Format::Rcj);
        assert_eq!(Format::of(Path::new("run.jsonl.bak")), Format::Rcj);
        assert_eq!(Format::of(Path::new("run")), Format::Rcj);
    }

    #[test]
    fn writer_appends_reopens_and_cuts_a_torn_tail() {
        let path = tmp("w.rcj");
        let _ = std::fs::remove_file(&path);
        let mut w = Writer::open(&path, Fsync::Never, frames::DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(w.last_seq(), 0);
        assert!(matches!(
            Writer::open(&path, Fsync::Never, frames::DEFAULT_MAX_FRAME),
            Err(OpenError::Locked)
        ));
        let mut bytes = Vec::new();
        frames::encode_frame(&body("a", 1, "custom"), &mut bytes).unwrap();
        frames::encode_frame(&body("b", 2, "run"), &mut bytes).unwrap();
        w.append(&bytes, 2).unwrap();
        w.close().unwrap();
        let clean = std::fs::read(&path).unwrap();
        assert_eq!(
            clean,
            framed(&[body("a", 1, "custom"), body("b", 2, "run")])
        );
        // torn tail: half a frame
        let mut torn = clean.clone();
        torn.extend_from_slice(&bytes[..7]);
        std::fs::write(&path, &torn).unwrap();
        let w = Writer::open(&path, Fsync::Always, frames::DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(w.last_seq(), 2);
        assert_eq!(std::fs::read(&path).unwrap(), clean);
        drop(w);
        let found =
            inspect_path(&path, frames::DEFAULT_MAX_FRAME, jsonl::DEFAULT_MAX_LINE).unwrap();
        assert_eq!(found.records, 2);
        assert_eq!(found.kinds.get("custom"), Some(&1));
        assert_eq!((found.first_journal_seq, found.last_journal_seq), (1, 2));
        assert_eq!(found.bytes, clean.len() as u64);
        // a prefix of the magic is restarted
        std::fs::write(&path, b"RC").unwrap();
        drop(Writer::open(&path, Fsync::Never, frames::DEFAULT_MAX_FRAME).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), frames::MAGIC);
        // no magic: corruption, nothing truncated
        std::fs::write(&path, b"JUNKJUNK").unwrap();
        assert!(matches!(
            Writer::open(&path, Fsync::Never, frames::DEFAULT_MAX_FRAME),
            Err(OpenError::Corruption { offset: 0, .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"JUNKJUNK");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn jsonl_writer_terminates_a_complete_last_line() {
        let path = tmp("w.jsonl");
        let line = "{\"record_id\":\"r\",\"journal_seq\":4,\"run_id\":\"x\",\"payload\":{\"kind\":\"custom\",\"name\":\"n\"}}";
        std::fs::write(&path, line).unwrap();
        let w = Writer::open(&path, Fsync::Never, frames::DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(w.last_seq(), 4);
        drop(w);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            format!("{line}\n").as_bytes()
        );
        std::fs::write(&path, format!("{line}\n\ngarbage\n{{\"rec")).unwrap();
        let w = Writer::open(&path, Fsync::Never, frames::DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(w.last_seq(), 4);
        drop(w);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            format!("{line}\n\ngarbage\n").as_bytes()
        );
        let found =
            inspect_path(&path, frames::DEFAULT_MAX_FRAME, jsonl::DEFAULT_MAX_LINE).unwrap();
        assert_eq!((found.records, found.skipped_lines), (1, 2));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn walk_path_reports_open_failures_with_the_name() {
        let path = tmp("absent.rcj");
        let err = walk_path(&path, true, 10, 10, |_| Ok::<(), ()>(())).unwrap_err();
        let WalkError::Io(err) = err else {
            panic!("{err:?}")
        };
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let open = err.get_ref().and_then(|e| e.downcast_ref::<OpenFailed>());
        assert_eq!(open.map(|o| o.path.clone()), Some(path));
    }

    #[test]
    fn fsync_parses_its_names_defaults_to_always_and_refuses_others() {
        assert_eq!(Fsync::default(), Fsync::Always);
        for fsync in Fsync::ALL {
            assert_eq!(<Fsync as Choice>::parse(fsync.name()), Some(*fsync));
        }
        assert_eq!(<Fsync as Choice>::parse("sometimes"), None);
        let err = Fsync::refused("'sometimes'");
        assert_eq!(err.argument(), Some("fsync"));
        assert_eq!(
            err.message(),
            "fsync must be 'always', 'batch' or 'never', got 'sometimes'"
        );
    }

    #[test]
    fn numbering_numbers_zeros_and_refuses_seqs_not_above_the_last() {
        let mut numbering = Numbering::after(5);
        assert_eq!(numbering.number(0, &GivenSeq::Int(0)), Ok(Some(6)));
        assert_eq!(numbering.number(1, &GivenSeq::Int(9)), Ok(None));
        assert_eq!(numbering.number(2, &GivenSeq::Int(0)), Ok(Some(10)));
        assert_eq!(numbering.last(), 10);
        let err = numbering.number(3, &GivenSeq::Int(10)).unwrap_err();
        assert_eq!(err.argument(), Some("records[3].journal_seq"));
        assert_eq!(
            err.message(),
            "records[3].journal_seq must be above the last written (10), got 10"
        );
        let err = numbering.number(4, &GivenSeq::Int(-3)).unwrap_err();
        assert_eq!(
            err.message(),
            "records[4].journal_seq must be above the last written (10), got -3"
        );
        let huge = GivenSeq::Beyond("99999999999999999999".to_owned());
        let err = numbering.number(5, &huge).unwrap_err();
        assert_eq!(
            err.message(),
            "records[5].journal_seq must be in 11..=9223372036854775807, got 99999999999999999999"
        );
        let tiny = GivenSeq::Beyond("-99999999999999999999".to_owned());
        let err = numbering.number(6, &tiny).unwrap_err();
        assert_eq!(
            err.message(),
            "records[6].journal_seq must be above the last written (10), got -99999999999999999999"
        );
        // Refused records count nothing.
        assert_eq!(numbering.last(), 10);
        let mut full = Numbering::after(i64::MAX);
        let err = full.number(0, &GivenSeq::Int(0)).unwrap_err();
        assert_eq!(
            err,
            Error::value_error(
                "records[0].journal_seq",
                "records[0].journal_seq cannot follow journal_seq 9223372036854775807"
            )
        );
    }

    #[test]
    fn push_record_frames_a_body_or_ends_a_line() {
        let mut out = Vec::new();
        push_record(Format::Rcj, 0, b"body", &mut out).unwrap();
        let mut expected = Vec::new();
        frames::encode_frame(b"body", &mut expected).unwrap();
        assert_eq!(out, expected);
        assert_eq!(out.len(), frames::HEADER_LEN + 4);
        let mut lines = b"{}\n".to_vec();
        push_record(Format::Jsonl, 1, b"{\"a\":1}", &mut lines).unwrap();
        assert_eq!(lines, b"{}\n{\"a\":1}\n");
    }

    #[test]
    fn a_shared_writer_commits_only_against_its_current_state() {
        let path = tmp("shared.rcj");
        let _ = std::fs::remove_file(&path);
        let writer = SharedWriter::open(&path, Fsync::Never, frames::DEFAULT_MAX_FRAME).unwrap();
        let locked = SharedWriter::open(&path, Fsync::Never, frames::DEFAULT_MAX_FRAME)
            .err()
            .map(|err| err.into_error("shared.rcj"));
        assert_eq!(
            locked,
            Some(Error::Locked {
                message: "shared.rcj is open in another JournalWriter".to_owned()
            })
        );
        let first = writer.snapshot().unwrap();
        let second = writer.snapshot().unwrap();
        assert_eq!((first.last_seq, first), (0, second));
        let mut a = Vec::new();
        frames::encode_frame(&body("a", 1, "custom"), &mut a).unwrap();
        let mut b = Vec::new();
        frames::encode_frame(&body("b", 1, "custom"), &mut b).unwrap();
        assert_eq!(writer.commit(&a, first, 1), Ok(Commit::Done));
        // Prepared before `a` was written: numbered against a stale seq.
        assert_eq!(writer.commit(&b, second, 1), Ok(Commit::Stale));
        assert_eq!(writer.last_seq(), 1);
        let third = writer.snapshot().unwrap();
        assert_eq!(third.last_seq, 1);
        assert_ne!(third, first);
        writer.flush().unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            framed(&[body("a", 1, "custom")])
        );
        writer.close().unwrap();
        assert_eq!(writer.snapshot(), Err(closed()));
        assert_eq!(writer.commit(&b, third, 2), Err(closed()));
        assert_eq!(closed().message(), "the journal writer is closed");
        assert_eq!(closed().argument(), Some("self"));
        assert_eq!(writer.last_seq(), 0);
        writer.flush().unwrap();
        writer.close().unwrap(); // closing twice is harmless
                                 // The lock went with the file.
        let reopened = SharedWriter::open(&path, Fsync::Never, frames::DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(reopened.last_seq(), 1);
        drop(reopened);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_batch_is_full_at_its_item_or_byte_limit() {
        let mut batch = Batch::default();
        assert!(batch.is_empty() && !batch.full());
        for i in 0..Batch::MAX_ITEMS {
            assert!(!batch.full(), "{i}");
            batch.push(&[i as u8, 1]);
        }
        assert!(batch.full());
        assert_eq!(batch.len(), 1024);
        assert_eq!(batch.pop(), Some(&[0, 1][..]));
        assert_eq!(batch.pop(), Some(&[1, 1][..]));
        batch.reset();
        assert!(batch.is_empty() && batch.pop().is_none());
        batch.push(&vec![7; Batch::MAX_BYTES - 1]);
        assert!(!batch.full());
        batch.push(b"x");
        assert!(batch.full());
        assert_eq!(batch.pop().map(<[u8]>::len), Some(4 * 1024 * 1024 - 1));
        assert_eq!(batch.pop(), Some(&b"x"[..]));
        assert!(ReadOptions::default().strict);
        assert_eq!(ReadOptions::default().max_frame, 64 * 1024 * 1024);
    }

    /// Every item of `reader` and the size of each batch, refilling as
    /// `read_journal` does; the error where it stopped, if any.
    fn drain<R: Read>(
        reader: &mut BatchReader<R>,
    ) -> (Vec<Vec<u8>>, Vec<usize>, Result<(), Error>) {
        let (mut items, mut batches) = (Vec::new(), Vec::new());
        loop {
            let mut count = 0;
            while let Some(item) = reader.pop() {
                items.push(item.to_vec());
                count += 1;
            }
            batches.push(count);
            match reader.refill() {
                Ok(true) => {}
                Ok(false) => return (items, batches, Ok(())),
                Err(err) => return (items, batches, Err(err)),
            }
        }
    }

    #[test]
    fn a_batch_reader_hands_out_bodies_a_batch_at_a_time() {
        let bodies: Vec<Vec<u8>> = (1..=2500)
            .map(|i| body(&format!("r{i}"), i, "custom"))
            .collect();
        let mut data = framed(&bodies);
        data.extend_from_slice(&[9; 7]); // a torn tail: ignored
        let mut reader = BatchReader::new(&data[..], Format::Rcj, ReadOptions::default());
        assert_eq!(reader.format(), Format::Rcj);
        let (items, batches, end) = drain(&mut reader);
        assert_eq!(end, Ok(()));
        assert_eq!(items, bodies);
        // Nothing before the first refill; full batches, then the rest.
        assert_eq!(batches, vec![0, 1024, 1024, 452]);
        // The end is reported once, then the reader stays at the end.
        assert_eq!(reader.refill(), Ok(false));
        assert!(reader.pop().is_none());
    }

    #[test]
    fn a_batch_reader_reports_damage_after_the_records_before_it() {
        let bodies: Vec<Vec<u8>> = (1..=5).map(|i| body(&format!("r{i}"), i, "run")).collect();
        let mut data = framed(&bodies);
        let third = 4 + 2 * (frames::HEADER_LEN + bodies[0].len());
        data[third + frames::HEADER_LEN] ^= 0x01;
        let mut strict = BatchReader::new(&data[..], Format::Rcj, ReadOptions::default());
        let (items, _, end) = drain(&mut strict);
        assert_eq!(items, bodies[..2]);
        assert_eq!(
            end,
            Err(Error::Corruption {
                offset: third as u64,
                reason: frames::BODY_CRC_MISMATCH.to_owned(),
            })
        );
        assert_eq!(strict.refill(), Ok(false));
        let lenient = ReadOptions {
            strict: false,
            ..ReadOptions::default()
        };
        let (items, _, end) = drain(&mut BatchReader::new(&data[..], Format::Rcj, lenient));
        assert_eq!(end, Ok(()));
        let expected: Vec<Vec<u8>> = [0, 1, 3, 4].iter().map(|&i| bodies[i].clone()).collect();
        assert_eq!(items, expected);
        // No magic: corruption at 0 even when not strict.
        let (items, _, end) = drain(&mut BatchReader::new(&b"JUNK"[..], Format::Rcj, lenient));
        assert!(items.is_empty());
        assert!(
            matches!(end, Err(Error::Corruption { offset: 0, .. })),
            "{end:?}"
        );
    }

    #[test]
    fn a_batch_reader_hands_out_the_record_lines() {
        let a = b"{\"record_id\":\"a\",\"journal_seq\":1,\"run_id\":\"r\",\"payload\":{\"kind\":\"run_lifecycle\",\"status\":\"x\"}}";
        let mut text = a.to_vec();
        text.extend_from_slice(b"\n\n \t\r\nnot json\n");
        text.extend_from_slice(a);
        text.extend_from_slice(b"\n{\"torn");
        let mut reader = BatchReader::new(&text[..], Format::Jsonl, ReadOptions::default());
        assert_eq!(reader.format(), Format::Jsonl);
        let (items, _, end) = drain(&mut reader);
        assert_eq!(items, vec![a.to_vec()]);
        let offset = a.len() as u64 + 6;
        assert_eq!(
            end,
            Err(Error::Corruption {
                offset,
                reason: "line 4 does not decode to a record".to_owned()
            })
        );
        let lenient = ReadOptions {
            strict: false,
            ..ReadOptions::default()
        };
        let (items, _, end) = drain(&mut BatchReader::new(&text[..], Format::Jsonl, lenient));
        assert_eq!(end, Ok(()));
        assert_eq!(items, vec![a.to_vec(), a.to_vec()]);
    }
}
