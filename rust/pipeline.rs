//! Replaying a framed journal on two threads.
//!
//! A reading thread walks the file (CRCs, torn tail, resynchronization),
//! copies each frame body into a batch, decodes it there and computes its
//! digest; the calling thread reduces the decoded records. Decoding and reducing cost about the
//! same, so on two cores a replay takes little more than the longer half.
//! Events reach the reducer in file order, so the result — and which error
//! comes first — is exactly that of a sequential walk.
//!
//! Also here: the sources of `replay` and `replay_many` made ready to run
//! without the GIL ([`Job`]), when a single replay reads on a second thread
//! (the pipelining policy), and the worker pool of `replay_many`
//! ([`run_jobs`]).

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Mutex;

use crate::error::Error;
use crate::frames::{self, Event, FrameSink, WalkError};
use crate::journal::{self, Format};
use crate::records::{decode_msgpack, Record};
use crate::replay::{self, Digester, Options, Outcome, Reducer, Violation};
use crate::sync::lock;

/// Body bytes gathered before a batch is handed over.
const BATCH_BYTES: usize = 1 << 20;
/// Batches in flight between the two threads (bounds the extra memory).
const IN_FLIGHT: usize = 4;

// Most items are frames: boxing them would cost an allocation per record.
#[allow(clippy::large_enum_variant)]
enum Item {
    Frame {
        record: Record<'static>,
        digest: u64,
    },
    Corrupt {
        start: u64,
        end: u64,
        reason: String,
    },
    Torn(u64),
}

/// Decoded records and the bytes they borrow from, moved between threads as
/// one unit.
///
/// The records' strings point into `data`'s heap buffer. That buffer never
/// moves: a batch gets its capacity when it is created and [`Batch::push`]
/// only copies a body in when it fits, so `data` never reallocates; it is
/// freed only with the batch. The records are only reached through
/// `&Batch` (in [`reduce_batch`]), which ties their use to the batch's life.
struct Batch {
    items: Vec<Item>,
    data: Vec<u8>,
}

impl Batch {
    fn with_capacity(bytes: usize) -> Self {
        Batch {
            items: Vec::new(),
            data: Vec::with_capacity(bytes),
        }
    }

    fn fits(&self, len: usize) -> bool {
        self.data.capacity() - self.data.len() >= len
    }

    /// Copy `body` in (it must fit) and decode it there; false, keeping
    /// nothing, when it does not decode.
    fn push(&mut self, body: &[u8], digester: Digester) -> bool {
        if !self.fits(body.len()) {
            // Never taken (the producer flushes first); copying anyway would
            // reallocate `data` under the records already decoded.
            return false;
        }
        let start = self.data.len();
        self.data.extend_from_slice(body);
        let Some(copy) = self.data.get(start..) else {
            return false;
        };
        match decode_msgpack(copy) {
            Ok(record) => {
                // SAFETY: `record` borrows from `data`'s heap buffer, which
                // never reallocates (every push fits the capacity fixed at
                // creation) and lives as long as the batch; the record is
                // only used through a borrow of the batch (see `Batch`).
                let record = unsafe { std::mem::transmute::<Record<'_>, Record<'static>>(record) };
                let digest = digester.digest(copy);
                self.items.push(Item::Frame { record, digest });
                true
            }
            Err(_) => {
                self.data.truncate(start);
                false
            }
        }
    }
}

/// The reading thread's end: fills batches and sends them on.
struct Producer<'t> {
    batch: Batch,
    digester: Digester,
    tx: &'t SyncSender<Result<Batch, WalkError<()>>>,
}

impl Producer<'_> {
    /// Send the current batch and start one that holds at least `need` bytes.
    fn flush(&mut self, need: usize) -> Result<(), ()> {
        let full = std::mem::replace(&mut self.batch, Batch::with_capacity(need.max(BATCH_BYTES)));
        // A send fails only when the reducer stopped: stop reading too.
        self.tx.send(Ok(full)).map_err(|_| ())
    }
}

impl FrameSink<()> for Producer<'_> {
    fn frame(&mut self, _offset: u64, body: &[u8]) -> Result<bool, ()> {
        if !self.batch.fits(body.len()) {
            self.flush(body.len())?;
        }
        Ok(self.batch.push(body, self.digester))
    }

    fn other(&mut self, event: Event<'_>) -> Result<(), ()> {
        let item = match event {
            Event::Corrupt { start, end, reason } => Item::Corrupt { start, end, reason },
            Event::Torn { bytes } => Item::Torn(bytes),
            // Frames arrive through `frame`, never as events here.
            Event::Record { .. } => return Ok(()),
        };
        self.batch.items.push(item);
        Ok(())
    }
}

/// Why a pipelined replay stopped.
#[derive(Debug)]
pub enum Stopped {
    /// A strict replay met a record that breaks an invariant.
    Violation(Violation),
    /// Damage (strict) or an I/O error while reading.
    Walk(WalkError<()>),
}

impl From<Stopped> for Error {
    fn from(stopped: Stopped) -> Self {
        match stopped {
            Stopped::Violation(v) => Error::Violation(v),
            Stopped::Walk(WalkError::Corruption { offset, reason }) => {
                Error::Corruption { offset, reason }
            }
            Stopped::Walk(WalkError::Io(err)) => Error::from(err),
            // The reading thread stops by itself only when the reducer has.
            Stopped::Walk(WalkError::Stop(())) => Error::internal("the reading thread stopped"),
        }
    }
}

/// Replay the framed journal read from `reader` into `reducer`, reading,
/// checking and decoding frames on a second thread.
pub fn replay_framed<R: Read + Send>(
    reader: R,
    reducer: &mut Reducer,
    max_frame: u64,
) -> Result<(), Stopped> {
    let strict = reducer.options().strict;
    let digester = reducer.digester();
    let (tx, rx) = mpsc::sync_channel::<Result<Batch, WalkError<()>>>(IN_FLIGHT);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut producer = Producer {
                batch: Batch::with_capacity(BATCH_BYTES),
                digester,
                tx: &tx,
            };
            let walked = frames::walk_reader_with(reader, strict, max_frame, &mut producer);
            let last = std::mem::replace(&mut producer.batch, Batch::with_capacity(0));
            match walked {
                Ok(()) => {
                    let _ = tx.send(Ok(last));
                }
                Err(WalkError::Stop(())) => {}
                Err(err) => {
                    if tx.send(Ok(last)).is_ok() {
                        let _ = tx.send(Err(err));
                    }
                }
            }
        });
        for message in rx {
            let batch = message.map_err(Stopped::Walk)?;
            reduce_batch(reducer, &batch).map_err(Stopped::Violation)?;
        }
        Ok(())
    })
}

fn reduce_batch(reducer: &mut Reducer, batch: &Batch) -> Result<(), Violation> {
    for item in &batch.items {
        match item {
            Item::Frame { record, digest } => reducer.apply_digested(record, *digest)?,
            Item::Corrupt { start, end, reason } => reducer.corruption(*start, *end, reason),
            Item::Torn(bytes) => reducer.torn_tail(*bytes),
        }
    }
    Ok(())
}

// -- jobs, the pipelining policy and the pool of replay_many -------------------

/// Buffers smaller than this are replayed on one thread.
pub const PIPELINE_MIN_BYTES: usize = 4 << 20;

/// The cores this process may use (1 when unknown).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether a single replay reads on a second thread on a machine with `cpus`
/// cores (it needs a core to spare).
pub fn pipeline_pays(cpus: usize) -> bool {
    cpus >= 2
}

/// A journal source made ready to replay without the GIL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// A journal file, `.jsonl` for JSON lines, anything else framed.
    Path(PathBuf),
    /// A framed journal held in memory.
    Buffer(Vec<u8>),
}

impl Job {
    /// Whether this job is read on a second thread when that is `allowed`:
    /// a framed file, or a framed buffer of at least [`PIPELINE_MIN_BYTES`]
    /// (JSON lines and small buffers are not worth a thread).
    pub fn pipelined(&self, allowed: bool) -> bool {
        allowed
            && match self {
                Job::Path(path) => Format::of(path) == Format::Rcj,
                Job::Buffer(data) => data.len() >= PIPELINE_MIN_BYTES,
            }
    }

    /// Replay the source with `options`; reading and checking frames runs on
    /// a second thread when [`Job::pipelined`] says so (worth it for one big
    /// journal, not when jobs already fill every core).
    pub fn run(&self, options: &Options, allow_pipeline: bool) -> Result<Outcome, Error> {
        let mut reducer = Reducer::new(options.clone());
        let pipelined = self.pipelined(allow_pipeline);
        match self {
            Job::Path(path) if pipelined => {
                let file = journal::open_read(path)?;
                replay_framed(file, &mut reducer, options.max_frame)?;
            }
            Job::Buffer(data) if pipelined => {
                replay_framed(data.as_slice(), &mut reducer, options.max_frame)?;
            }
            Job::Path(path) => replay::reduce_path(&mut reducer, path)?,
            Job::Buffer(data) => replay::reduce_framed(&mut reducer, data)?,
        }
        Ok(reducer.finish())
    }

    /// Replay this job alone, as `replay` does: pipelined when the machine
    /// has a core to spare.
    pub fn replay(&self, options: &Options) -> Result<Outcome, Error> {
        self.run(options, pipeline_pays(cpus()))
    }
}

/// The worker threads of `replay_many` for `jobs` sources: `requested`
/// (default `cpus`), never more than there are sources, at least one.
pub fn workers(requested: Option<usize>, cpus: usize, jobs: usize) -> usize {
    requested.unwrap_or(cpus).min(jobs).max(1)
}

/// Run `run` on every job on `workers` threads (on the calling thread alone
/// when `workers <= 1`); the results in job order, `None` where there is no
/// job. Threads take the next job as they finish one, so a long job does not
/// hold up the others.
pub fn run_jobs<T: Sync, R: Send>(
    jobs: &[Option<T>],
    workers: usize,
    run: impl Fn(&T) -> R + Sync,
) -> Vec<Option<R>> {
    if workers <= 1 {
        return jobs.iter().map(|job| job.as_ref().map(&run)).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(index) else {
                    break;
                };
                if let (Some(job), Some(slot)) = (job, slots.get(index)) {
                    let result = run(job);
                    *lock(slot) = Some(result);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|slot| slot.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

/// Replay every job with `options` on `workers` threads, none pipelined (the
/// jobs already fill the cores), as `replay_many` does; results in job order.
pub fn replay_jobs(
    jobs: &[Option<Job>],
    options: &Options,
    workers: usize,
) -> Vec<Option<Result<Outcome, Error>>> {
    run_jobs(jobs, workers, |job| job.run(options, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{encode_canonical, Payload, StrList};
    use crate::replay::{Mode, Options};

    fn journal(n: i64) -> Vec<u8> {
        let mut out = frames::MAGIC.to_vec();
        for seq in 1..=n {
            let id = format!("r{seq}");
            let effect = format!("e{}", seq / 2);
            let payload = if seq % 2 == 1 {
                Payload::EffectIntent {
                    effect_id: &effect,
                    effect_kind: "tool",
                    idempotency_key: Some("k"),
                    dedupe_key: None,
                }
            } else {
                Payload::EffectResult {
                    effect_id: &effect,
                    status: "ok",
                    output_ref: None,
                }
            };
            let record = Record {
                schema: 1,
                record_id: &id,
                journal_seq: seq,
                run_id: "run",
                at_ms: 0,
                idempotency_key: None,
                dedupe_key: None,
                content_refs: StrList::default(),
                payload,
            };
            frames::encode_frame(&encode_canonical(&record), &mut out).expect("frame fits");
        }
        out
    }

    fn sequential(data: &[u8], mode: Mode) -> Result<crate::replay::Outcome, String> {
        let mut reducer = Reducer::new(Options::new(mode));
        frames::walk_slice(
            data,
            reducer.options().strict,
            1 << 20,
            |event| match event {
                Event::Record { body, record, .. } => reducer.apply(&record, body),
                Event::Corrupt { start, end, reason } => {
                    reducer.corruption(start, end, &reason);
                    Ok(())
                }
                Event::Torn { bytes } => {
                    reducer.torn_tail(bytes);
                    Ok(())
                }
            },
        )
        .map_err(|e| format!("{e:?}"))?;
        Ok(reducer.finish())
    }

    fn pipelined(data: &[u8], mode: Mode) -> Result<crate::replay::Outcome, String> {
        let mut reducer = Reducer::new(Options::new(mode));
        replay_framed(data, &mut reducer, 1 << 20).map_err(|e| match e {
            Stopped::Violation(v) => format!("{:?}", WalkError::<Violation>::Stop(v)),
            Stopped::Walk(WalkError::Corruption { offset, reason }) => {
                format!(
                    "{:?}",
                    WalkError::<Violation>::Corruption { offset, reason }
                )
            }
            Stopped::Walk(other) => format!("{other:?}"),
        })?;
        Ok(reducer.finish())
    }

    #[test]
    fn same_outcome_as_a_sequential_walk() {
        let clean = journal(20_000);
        let mut flipped = clean.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x10;
        let torn = &clean[..clean.len() - 5];
        for data in [&clean[..], &flipped[..], torn] {
            for mode in [Mode::Audit, Mode::Resume] {
                assert_eq!(pipelined(data, mode), sequential(data, mode));
            }
        }
        assert_eq!(
            pipelined(&clean, Mode::Resume).unwrap().records_applied,
            20_000
        );
        assert!(pipelined(&flipped, Mode::Resume).is_err());
    }

    // -- jobs, the pipelining policy and the pool --------------------------

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("replaycore-pipeline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn only_framed_sources_are_pipelined_and_only_when_allowed() {
        let rcj = Job::Path("run.rcj".into());
        let other = Job::Path("run.log".into());
        let jsonl = Job::Path("run.jsonl".into());
        let small = Job::Buffer(vec![0; PIPELINE_MIN_BYTES - 1]);
        let big = Job::Buffer(vec![0; PIPELINE_MIN_BYTES]);
        assert_eq!(PIPELINE_MIN_BYTES, 4 * 1024 * 1024);
        assert!(rcj.pipelined(true) && other.pipelined(true) && big.pipelined(true));
        assert!(!jsonl.pipelined(true) && !small.pipelined(true));
        for job in [&rcj, &other, &jsonl, &small, &big] {
            assert!(!job.pipelined(false), "{job:?}");
        }
        assert!(!pipeline_pays(1));
        assert!(pipeline_pays(2) && pipeline_pays(64));
        assert!(cpus() >= 1);
    }

    #[test]
    fn a_job_replays_the_same_pipelined_or_not() {
        let data = journal(3_000);
        let path = tmp("same.rcj");
        std::fs::write(&path, &data).unwrap();
        let mut big = data.clone();
        // Zeros up to past the threshold: damage after the last record (a
        // strict replay stops there, an audit skips it), met the same way
        // read ahead or not.
        big.resize(PIPELINE_MIN_BYTES + 100, 0);
        for mode in [Mode::Audit, Mode::Resume] {
            let options = Options::new(mode);
            let from_file = Job::Path(path.clone());
            let expected = from_file.run(&options, false).unwrap();
            assert_eq!(expected.records_applied, 3_000);
            assert_eq!(from_file.run(&options, true).unwrap(), expected);
            assert_eq!(from_file.replay(&options).unwrap(), expected);
            let buffer = Job::Buffer(big.clone());
            assert!(buffer.pipelined(true));
            let sequential = buffer.run(&options, false);
            let pipelined = buffer.run(&options, true);
            assert_eq!(pipelined, sequential);
            match (mode, sequential) {
                (Mode::Audit, Ok(outcome)) => {
                    assert_eq!(outcome.records_applied, 3_000);
                    let damaged: Vec<_> = outcome
                        .repair_needed
                        .iter()
                        .filter(|r| r.kind == "journal_corruption")
                        .collect();
                    assert_eq!(damaged.len(), 1);
                    let end = big.len();
                    assert_eq!(
                        damaged[0].reason,
                        format!("header check failed; skipped bytes {}..{end}", data.len())
                    );
                }
                (Mode::Resume, Err(err)) => assert_eq!(
                    err,
                    Error::Corruption {
                        offset: data.len() as u64,
                        reason: frames::HEADER_CHECK_FAILED.to_owned(),
                    }
                ),
                other => panic!("{other:?}"),
            }
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn workers_are_those_requested_or_one_per_cpu_never_more_than_jobs() {
        assert_eq!(workers(None, 8, 3), 3);
        assert_eq!(workers(None, 2, 10), 2);
        assert_eq!(workers(Some(4), 2, 10), 4);
        assert_eq!(workers(Some(16), 2, 5), 5);
        assert_eq!(workers(Some(1), 8, 5), 1);
        assert_eq!(workers(None, 8, 0), 1);
        assert_eq!(workers(None, 0, 3), 1);
    }

    #[test]
    fn run_jobs_keeps_job_order_and_leaves_gaps_where_there_is_no_job() {
        let jobs: Vec<Option<u64>> = (0..50)
            .map(|i| if i % 7 == 3 { None } else { Some(i) })
            .collect();
        let expected: Vec<Option<u64>> = jobs.iter().map(|job| job.map(|i| i * 10)).collect();
        for workers in [0, 1, 2, 3, 8, 64] {
            let got = run_jobs(&jobs, workers, |&i| {
                // Later jobs finish first: order must not come from timing.
                std::thread::sleep(std::time::Duration::from_micros(50 * (50 - i)));
                i * 10
            });
            assert_eq!(got, expected, "{workers} workers");
        }
        assert_eq!(run_jobs(&[] as &[Option<u64>], 4, |&i| i), vec![]);
    }

    #[test]
    fn one_worker_runs_every_job_on_the_calling_thread() {
        let caller = std::thread::current().id();
        let jobs = vec![Some(1), Some(2), None, Some(3)];
        let threads = run_jobs(&jobs, 1, |_| std::thread::current().id());
        assert_eq!(
            threads,
            vec![Some(caller), Some(caller), None, Some(caller)]
        );
    }

    #[test]
    fn n_workers_run_n_jobs_at_once_on_other_threads() {
        use std::sync::Condvar;
        use std::time::Duration;
        for workers in [2, 4] {
            // Each of the first `workers` jobs waits (at most 10 s) until that
            // many jobs run at once: only a pool of `workers` threads gets there.
            let running = Mutex::new(0usize);
            let all_in = Condvar::new();
            let jobs: Vec<Option<usize>> = (0..workers * 3).map(Some).collect();
            let caller = std::thread::current().id();
            let results = run_jobs(&jobs, workers, |&i| {
                let met = if i < workers {
                    let mut count = lock(&running);
                    *count += 1;
                    all_in.notify_all();
                    let (count, timeout) = all_in
                        .wait_timeout_while(count, Duration::from_secs(10), |n| *n < workers)
                        .unwrap();
                    drop(count);
                    !timeout.timed_out()
                } else {
                    true
                };
                (met, std::thread::current().id())
            });
            let mut threads: Vec<_> = results.iter().flatten().map(|(_, t)| *t).collect();
            assert!(
                results.iter().flatten().all(|(met, _)| *met),
                "{workers} workers"
            );
            assert!(!threads.contains(&caller));
            threads.sort_by_key(|t| format!("{t:?}"));
            threads.dedup();
            assert_eq!(threads.len(), workers);
        }
    }

    #[test]
    fn replay_jobs_gives_each_job_its_own_outcome_or_error() {
        let good = journal(10);
        let mut no_magic = good.clone();
        no_magic[0] = b'X';
        // Records 1..=10 then record 5 again: strictly, out of order.
        let mut out_of_order = good.clone();
        let again = journal(5);
        let fifth = {
            let mut offset = 4;
            for _ in 0..4 {
                let len = frames::Header::parse(&again[offset..]).unwrap().length as usize;
                offset += 12 + len;
            }
            again[offset..].to_vec()
        };
        out_of_order.extend_from_slice(&fifth);
        let jobs = vec![
            Some(Job::Buffer(good.clone())),
            Some(Job::Buffer(no_magic)),
            None,
            Some(Job::Path(tmp("absent.rcj"))),
            Some(Job::Buffer(out_of_order)),
        ];
        let options = Options::new(Mode::Resume);
        for workers in [1, 2, 5] {
            let got = replay_jobs(&jobs, &options, workers);
            assert_eq!(got.len(), 5);
            let Some(Ok(outcome)) = &got[0] else {
                panic!("{:?}", got[0])
            };
            assert_eq!(outcome.records_applied, 10);
            assert_eq!(
                got[1].as_ref().unwrap().as_ref().unwrap_err(),
                &Error::Corruption {
                    offset: 0,
                    reason: frames::MISSING_MAGIC.to_owned()
                }
            );
            assert!(got[2].is_none());
            let Some(Err(Error::Io(err))) = &got[3] else {
                panic!("{:?}", got[3])
            };
            assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
            let Some(Err(Error::Violation(v))) = &got[4] else {
                panic!("{:?}", got[4])
            };
            assert_eq!((v.record_id.as_str(), v.journal_seq), ("r5", 5));
            assert_eq!(v.kind, "invalid_state_transition");
        }
    }

    #[test]
    fn a_reading_thread_that_stops_by_itself_is_an_internal_error() {
        let err = Error::from(Stopped::Walk(WalkError::Stop(())));
        assert_eq!(err, Error::internal("the reading thread stopped"));
        let err = Error::from(Stopped::Walk(WalkError::Io(std::io::Error::from(
            std::io::ErrorKind::PermissionDenied,
        ))));
        assert!(matches!(err, Error::Io(_)), "{err:?}");
    }
}
