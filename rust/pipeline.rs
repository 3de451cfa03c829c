//! Replaying a framed journal on two threads.
//!
//! One thread reads the file, checks every frame (CRCs, decodability) and
//! copies the bodies into batches; the calling thread decodes each body again
//! and reduces it. Both halves cost about the same, so on two cores a replay
//! takes little more than the longer of the two. The events reach the reducer
//! in file order, so the result — and which error comes first — is exactly
//! that of a sequential walk.

use std::io::Read;
use std::sync::mpsc;

use crate::frames::{self, Event, WalkError, BODY_DOES_NOT_DECODE};
use crate::records::decode_msgpack;
use crate::replay::{Reducer, Violation};

/// Body bytes gathered before a batch is handed over.
const BATCH_BYTES: usize = 1 << 20;
/// Batches in flight between the two threads (bounds the extra memory).
const IN_FLIGHT: usize = 4;

enum Item {
    Frame {
        offset: u64,
        start: usize,
        end: usize,
    },
    Corrupt {
        start: u64,
        end: u64,
        reason: String,
    },
    Torn(u64),
}

#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    items: Vec<Item>,
}

/// Why a pipelined replay stopped.
pub enum Stopped {
    /// A strict replay met a record that breaks an invariant.
    Violation(Violation),
    /// Damage (strict) or an I/O error while reading.
    Walk(WalkError<()>),
}

/// Replay the framed journal read from `reader` into `reducer`, reading and
/// checking frames on a second thread.
pub fn replay_framed<R: Read + Send>(
    reader: R,
    reducer: &mut Reducer,
    max_frame: u64,
) -> Result<(), Stopped> {
    let strict = reducer.options().strict;
    let (tx, rx) = mpsc::sync_channel::<Result<Batch, WalkError<()>>>(IN_FLIGHT);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut batch = Batch::default();
            let walked = frames::walk_reader(reader, strict, max_frame, |event| {
                match event {
                    Event::Record { offset, body, .. } => {
                        let start = batch.data.len();
                        batch.data.extend_from_slice(body);
                        let end = batch.data.len();
                        batch.items.push(Item::Frame { offset, start, end });
                    }
                    Event::Corrupt { start, end, reason } => {
                        batch.items.push(Item::Corrupt { start, end, reason });
                    }
                    Event::Torn { bytes } => batch.items.push(Item::Torn(bytes)),
                }
                if batch.data.len() >= BATCH_BYTES {
                    // A send fails only when the reducer stopped: stop too.
                    tx.send(Ok(std::mem::take(&mut batch))).map_err(|_| ())?;
                }
                Ok(())
            });
            match walked {
                Ok(()) => {
                    let _ = tx.send(Ok(batch));
                }
                Err(WalkError::Stop(())) => {}
                Err(err) => {
                    if tx.send(Ok(batch)).is_ok() {
                        let _ = tx.send(Err(err));
                    }
                }
            }
        });
        for message in rx {
            let batch = message.map_err(Stopped::Walk)?;
            reduce_batch(reducer, &batch)?;
        }
        Ok(())
    })
}

fn reduce_batch(reducer: &mut Reducer, batch: &Batch) -> Result<(), Stopped> {
    for item in &batch.items {
        match item {
            Item::Frame { offset, start, end } => {
                let body = batch.data.get(*start..*end).unwrap_or(&[]);
                // The reading thread decoded this body already; failing now
                // would mean the bytes changed in memory.
                let record = decode_msgpack(body).map_err(|_| {
                    Stopped::Walk(WalkError::Corruption {
                        offset: *offset,
                        reason: BODY_DOES_NOT_DECODE.to_owned(),
                    })
                })?;
                reducer.apply(&record, body).map_err(Stopped::Violation)?;
            }
            Item::Corrupt { start, end, reason } => reducer.corruption(*start, *end, reason),
            Item::Torn(bytes) => reducer.torn_tail(*bytes),
        }
    }
    Ok(())
}
