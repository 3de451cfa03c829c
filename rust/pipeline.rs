//! Replaying a framed journal on two threads.
//!
//! A reading thread walks the file (CRCs, torn tail, resynchronization),
//! copies each frame body into a batch, decodes it there and computes its
//! digest; the calling thread reduces the decoded records. Decoding and reducing cost about the
//! same, so on two cores a replay takes little more than the longer half.
//! Events reach the reducer in file order, so the result — and which error
//! comes first — is exactly that of a sequential walk.

use std::io::Read;
use std::sync::mpsc::{self, SyncSender};

use crate::frames::{self, Event, FrameSink, WalkError};
use crate::records::{decode_msgpack, Record};
use crate::replay::{Digester, Reducer, Violation};

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
pub enum Stopped {
    /// A strict replay met a record that breaks an invariant.
    Violation(Violation),
    /// Damage (strict) or an I/O error while reading.
    Walk(WalkError<()>),
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
}
