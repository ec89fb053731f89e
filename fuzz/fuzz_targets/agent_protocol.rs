//! The gateway's side of the agent protocol on an arbitrary byte stream: frame headers, HELLO
//! (host and token), BATCH bodies (header limits, lz4, CRC, message lengths), ACK.
//!
//! Checked: nothing panics; a decoded batch never exceeds the limits (`raw_len`, message
//! count, expansion ratio) and its messages are exactly `message_count`, each then parsed as
//! the gateway parses it.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use logtail::agent_protocol::{self as protocol, BatchLimits, Kind};
use logtail::parse::{Format, LegacyZone, ParseContext, parse};

/// Small limits, so the fuzzer reaches them with small inputs.
const LIMITS: BatchLimits = BatchLimits {
    max_raw_bytes: 64 << 10,
    max_records: 1000,
    max_expansion_ratio: 64,
};

fuzz_target!(|data: &[u8]| {
    let mut reader = Cursor::new(data);
    let mut body = Vec::new();
    let mut raw = Vec::new();
    let mut ctx = ParseContext::new(1_795_229_627_000_000, LegacyZone::Fixed(0));
    while let Ok(kind) = protocol::read_frame(&mut reader, &mut body) {
        match kind {
            Kind::Hello => {
                if let Ok(rest) = protocol::parse_hello(&body) {
                    let _ = protocol::parse_agent_hello(rest);
                }
            }
            Kind::Batch => {
                let checked = protocol::check_batch(&body, &LIMITS);
                let Ok(header) = protocol::decode_batch(&body, &LIMITS, &mut raw) else {
                    continue;
                };
                let (checked, raw_len) = checked.expect("decode_batch passed, check_batch failed");
                assert_eq!(checked, header);
                assert_eq!(raw.len(), raw_len);
                assert!(raw.len() <= LIMITS.max_raw_bytes);
                assert!(raw.len() <= (body.len() - protocol::BATCH_HEADER_LEN) * 64);
                assert!(header.message_count <= LIMITS.max_records);
                let mut count = 0;
                for message in protocol::messages(&raw) {
                    let message = message.expect("decode_batch passed a bad message length");
                    let _ = parse(message, Format::Auto, &mut ctx);
                    count += 1;
                }
                assert_eq!(count, header.message_count);
            }
            Kind::Ack => {
                let _ = protocol::parse_ack(&body);
            }
            Kind::Error => {}
        }
    }
});
