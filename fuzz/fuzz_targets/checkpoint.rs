//! The agent's checkpoint file from arbitrary bytes.
//!
//! Checked: decoding never panics; whatever decodes encodes back to a file that decodes to the
//! same entries.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use logtail::agent::checkpoint;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("checkpoints");
    let Ok(entries) = checkpoint::decode(data, path) else {
        return;
    };
    let mut again = Vec::new();
    checkpoint::encode(&entries, &mut again);
    let decoded = checkpoint::decode(&again, path).expect("re-encoded checkpoints do not decode");
    assert_eq!(decoded, entries);
});
