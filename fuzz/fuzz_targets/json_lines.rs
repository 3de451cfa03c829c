//! Any bytes as a JSON-lines journal, every line event fed to a reducer as a
//! replay in audit mode does. A record line's canonical bytes must decode
//! back as a record, and `convert` must write the record as a frame of those
//! bytes and as a JSON line that parses back to them: that is checked, not
//! assumed.
#![no_main]

use _core::convert::encode_record;
use _core::journal::Format;
use _core::jsonl::{parse_line, walk_json_lines, LineEvent};
use _core::records::decode_msgpack;
use _core::replay::{Mode, Options, Reducer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut reducer = Reducer::new(Options::new(Mode::Audit));
    // A small line limit, so that over-long lines are reached.
    let _ = walk_json_lines(data, 1 << 12, |event| -> Result<(), ()> {
        match event {
            LineEvent::Record { record, canonical } => {
                assert!(
                    decode_msgpack(canonical).is_ok(),
                    "a JSON line's canonical encoding does not decode"
                );
                let frame = encode_record(&record, Format::Rcj).expect("a JSON record converts");
                assert_eq!(frame.get(12..), Some(canonical), "its frame holds its canonical bytes");
                let line = encode_record(&record, Format::Jsonl).expect("and back to JSON");
                let again = parse_line(line.strip_suffix(b"\n").unwrap_or(&line))
                    .and_then(|parsed| parsed.into_canonical(&mut Vec::new()));
                assert_eq!(again.as_deref(), Some(canonical), "its JSON line parses back");
                let _ = reducer.apply(&record, canonical);
            }
            LineEvent::Blank => reducer.skipped_line(),
            LineEvent::Corrupt { start, end, reason } => reducer.corruption(start, end, &reason),
            LineEvent::Torn { bytes } => reducer.torn_tail(bytes),
            LineEvent::Unencodable { .. } => {}
        }
        Ok(())
    });
    let _ = reducer.finish();
});
