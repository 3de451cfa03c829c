//! Builders shared by the unit tests: journal bytes written out here, with
//! the msgpack writer, the way msgspec writes them.

use crate::frames;
use crate::msgpack::Writer;

/// Write the canonical fields of a record of run `run` up to and including
/// the `payload` key (declaration order), with `content_refs` `refs`; the
/// payload's map comes next.
pub fn envelope(w: &mut Writer, id: &str, seq: i64, refs: &[&str]) {
    w.map(9);
    w.str("schema");
    w.int(1);
    w.str("record_id");
    w.str(id);
    w.str("journal_seq");
    w.int(seq);
    w.str("run_id");
    w.str("run");
    w.str("at_ms");
    w.int(0);
    w.str("idempotency_key");
    w.nil();
    w.str("dedupe_key");
    w.nil();
    w.str("content_refs");
    w.array(refs.len());
    for r in refs {
        w.str(r);
    }
    w.str("payload");
}

/// The canonical body of a custom record of run `run` (the payload's `kind`
/// first) whose `Custom.data` is the encoded value `data`.
pub fn custom_body(id: &str, seq: i64, name: &str, data: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    envelope(&mut w, id, seq, &[]);
    w.map(3);
    w.str("kind");
    w.str("custom");
    w.str("name");
    w.str(name);
    w.str("data");
    w.out.extend_from_slice(data);
    w.out
}

/// A whole `.rcj` journal: the magic and one frame per body.
pub fn framed(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut out = frames::MAGIC.to_vec();
    for body in bodies {
        frames::encode_frame(body, &mut out).expect("a test body fits a frame");
    }
    out
}
