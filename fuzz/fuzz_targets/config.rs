//! The gateway's and the agent's config loaders on arbitrary text.
//!
//! Checked: loading never panics, whatever the TOML (keys, types, sizes, durations, paths);
//! errors are values.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use logtail::agent::config::AgentConfig;
use logtail::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    if let Ok(config) = Config::from_toml(text, path) {
        // What the server derives from a loaded config at start.
        let _ = config.shard_count();
        let _ = config.kafka_route();
        for index in 0..config.listen.len() {
            let _ = config.listener_name(index);
        }
    }
    let _ = AgentConfig::from_toml(text, path);
});
