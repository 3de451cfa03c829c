//! Journal files (SPEC 6.2), in pure Rust: the format chosen by extension,
//! streaming walks of a file, the decode-only inspection, and the file side of
//! `JournalWriter` (open, lock, repair the tail, append, sync).
//!
//! The formats themselves live in [`crate::frames`] (`.rcj`) and
//! [`crate::jsonl`] (`.jsonl`).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::frames::{self, Event, ScanEnd, ScanError, WalkError};
use crate::jsonl::{self, LineEvent};

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
/// give one [`FileEvent::Line`] per line. Failing to open the file is an
/// `Io` error holding an [`OpenFailed`].
pub fn walk_path<E>(
    path: &Path,
    strict: bool,
    max_frame: u64,
    mut visit: impl FnMut(FileEvent<'_>) -> Result<(), E>,
) -> Result<(), WalkError<E>> {
    let file = open_read(path)?;
    match Format::of(path) {
        Format::Rcj => frames::walk_reader(file, strict, max_frame, |e| visit(FileEvent::Frame(e))),
        Format::Jsonl => jsonl::walk_json_lines_reader(file, |e| visit(FileEvent::Line(e))),
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
    /// JSON lines: blank or undecodable lines.
    pub skipped_lines: u64,
    /// Framed: damaged ranges skipped, `(start, end, reason)`.
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
/// was found. Framed damage is skipped and listed (never raised), except a
/// missing magic; a JSON line counts as a record when
/// `msgspec.json.Decoder(JournalRecord)` decodes it.
pub fn inspect_path(
    path: &Path,
    max_frame: u64,
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
        Format::Jsonl => jsonl::for_each_line(&mut reader, |line| {
            match jsonl::parse_line(line) {
                Some(parsed) if !jsonl::is_blank(line) => {
                    found.record(parsed.kind(), parsed.journal_seq());
                }
                _ => found.skipped_lines += 1,
            }
            Ok(())
        })?,
    }
    found.bytes = reader.count;
    Ok(found)
}

/// When a writer syncs to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every append: a returned append is on disk.
    Always,
    /// On `flush` and `close`.
    Batch,
    /// Never: left to the OS.
    Never,
}

impl Fsync {
    /// Parse a mode name.
    pub fn parse(name: &str) -> Option<Fsync> {
        match name {
            "always" => Some(Fsync::Always),
            "batch" => Some(Fsync::Batch),
            "never" => Some(Fsync::Never),
            _ => None,
        }
    }

    /// The mode's name.
    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Batch => "batch",
            Fsync::Never => "never",
        }
    }
}

/// Why a journal cannot be opened for appending.
#[derive(Debug)]
pub enum OpenError {
    /// Another writer (any process) holds the file's lock.
    Locked,
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
}

impl Writer {
    /// Open (creating it, mode 0644) and lock the journal at `path`, cut a
    /// torn tail, and find the last `journal_seq`, as the reference's
    /// `JournalWriter.__init__` and `_prepare` do.
    ///
    /// The lock is an exclusive, non-blocking `flock`, compatible with the
    /// reference's `fcntl.flock` (so a Rust and a Python writer exclude each
    /// other too); it goes with the file when the writer is dropped.
    pub fn open(path: &Path, fsync: Fsync, max_frame: u64) -> Result<Writer, OpenError> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o644);
        let file = options.open(path).map_err(|err| open_failed(path, err))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(OpenError::Locked),
            Err(std::fs::TryLockError::Error(err)) => return Err(OpenError::Io(err)),
        }
        let mut writer = Writer {
            file,
            fsync,
            last_seq: 0,
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
        self.file.seek(SeekFrom::End(0))?;
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
        let before = self.file.stream_position()?;
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

    fn framed(bodies: &[Vec<u8>]) -> Vec<u8> {
        let mut out = frames::MAGIC.to_vec();
        for b in bodies {
            frames::encode_frame(b, &mut out).unwrap();
        }
        out
    }

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
        let found = inspect_path(&path, frames::DEFAULT_MAX_FRAME).unwrap();
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
        let found = inspect_path(&path, frames::DEFAULT_MAX_FRAME).unwrap();
        assert_eq!((found.records, found.skipped_lines), (1, 2));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn walk_path_reports_open_failures_with_the_name() {
        let path = tmp("absent.rcj");
        let err = walk_path(&path, true, 10, |_| Ok::<(), ()>(())).unwrap_err();
        let WalkError::Io(err) = err else {
            panic!("{err:?}")
        };
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let open = err.get_ref().and_then(|e| e.downcast_ref::<OpenFailed>());
        assert_eq!(open.map(|o| o.path.clone()), Some(path));
    }
}
