//! Any bytes as a framed journal (`RCJ1` + frames) replayed in audit and in
//! resume mode, and as one record body: errors are fine, panics are not.
#![no_main]

use _core::records::decode_msgpack;
use _core::replay::{reduce_framed, Mode, Options, Reducer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // One record body, as ReplayReducer.apply(bytes) takes it.
    let _ = decode_msgpack(data);
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
