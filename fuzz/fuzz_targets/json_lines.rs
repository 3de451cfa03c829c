//! Any bytes as a JSON-lines journal, every line event fed to a reducer as a
//! replay in audit mode does. A record line's canonical bytes must decode
//! back as a record: that is checked, not assumed.
#![no_main]

use _core::jsonl::{walk_json_lines, LineEvent};
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
