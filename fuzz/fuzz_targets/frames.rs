//! Any bytes as a framed journal (`RCJ1` + frames) replayed in audit and in
//! resume mode, and as one record body, also converted into a frame and a
//! JSON line: errors (and declines) are fine, panics are not.
#![no_main]

use _core::convert::encode_record;
use _core::journal::Format;
use _core::records::decode_msgpack;
use _core::replay::{reduce_framed, Mode, Options, Reducer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // One record body, as ReplayReducer.apply(bytes) takes it.
    if let Ok(record) = decode_msgpack(data) {
        for format in [Format::Rcj, Format::Jsonl] {
            let _ = encode_record(&record, format);
        }
    }
    for mode in [Mode::Audit, Mode::Resume] {
        let mut options = Options::new(mode);
        // A small frame limit, so that the declared-length check is reached.
        options.max_frame = 1 << 16;
        let mut reducer = Reducer::new(options);
        if reduce_framed(&mut reducer, data).is_ok() {
            let _ = reducer.finish();
        }
    }
});
