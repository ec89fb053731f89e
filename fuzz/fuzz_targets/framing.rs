//! Stream framing (RFC 6587 newline and octet counting) fed in arbitrary pieces.
//!
//! Input: 3 bytes of set-up (framing and oversize policy; maximum message size 1..=1024), then
//! the stream. The stream is fed in pieces whose sizes come from a generator seeded by the
//! set-up, as a connection's reads would split it. Checked: every frame is at most the maximum
//! and not empty; the decoder makes progress once the caller holds `needed_buffer` bytes; and
//! the frames and counters are the same as when the whole stream arrives in one read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logtail::source::framing::{Decoder, Framing, FramingCounters, OversizePolicy};

fuzz_target!(|data: &[u8]| {
    let Some((setup, stream)) = data.split_first_chunk::<3>() else {
        return;
    };
    let framing = match setup[0] % 3 {
        0 => Framing::Auto,
        1 => Framing::Newline,
        _ => Framing::OctetCounting,
    };
    let oversize = if setup[0] & 0x80 == 0 {
        OversizePolicy::Truncate
    } else {
        OversizePolicy::Drop
    };
    let max = 1 + usize::from(u16::from_le_bytes([setup[1], setup[2]]) % 1024);
    let whole = run(framing, max, oversize, stream, &mut |_| stream.len());
    let mut state = u32::from(setup[0]) << 16 | u32::from(setup[1]) << 8 | u32::from(setup[2]);
    let split = run(framing, max, oversize, stream, &mut |left| {
        // xorshift: piece sizes 1..=64, sometimes larger, as reads return.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let piece = if state % 8 == 0 {
            state as usize % 4096
        } else {
            state as usize % 64
        };
        (piece + 1).min(left)
    });
    assert_eq!(whole, split, "frames depend on how the stream was split");
});

type Frames = (Vec<(Vec<u8>, bool)>, FramingCounters);

/// Feeds `stream` to a decoder in pieces of `piece(bytes left)` bytes, the buffer kept as a
/// connection keeps it (unconsumed bytes stay at its start).
fn run(
    framing: Framing,
    max: usize,
    oversize: OversizePolicy,
    stream: &[u8],
    piece: &mut dyn FnMut(usize) -> usize,
) -> Frames {
    let mut decoder = Decoder::new(framing, max, oversize);
    let mut frames = Vec::new();
    let mut counters = FramingCounters::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut at = 0;
    loop {
        let eof = at == stream.len();
        if !eof {
            let n = piece(stream.len() - at).max(1);
            buf.extend_from_slice(&stream[at..at + n]);
            at += n;
        }
        let held = buf.len();
        let used = decoder.decode(&buf, eof, |frame| {
            assert!(!frame.message.is_empty(), "empty frame emitted");
            assert!(
                frame.message.len() <= max,
                "frame of {} > {max}",
                frame.message.len()
            );
            frames.push((frame.message.to_vec(), frame.truncated));
        });
        assert!(used <= held);
        if eof {
            assert_eq!(used, held, "eof must consume everything");
            break;
        }
        if held >= decoder.needed_buffer() {
            assert!(used > 0, "no progress with {held} bytes buffered");
        }
        buf.drain(..used);
        let c = decoder.take_counters();
        counters.truncated += c.truncated;
        counters.dropped_oversize += c.dropped_oversize;
        counters.discarded_bytes += c.discarded_bytes;
        counters.bad_octet_counts += c.bad_octet_counts;
    }
    let c = decoder.take_counters();
    counters.truncated += c.truncated;
    counters.dropped_oversize += c.dropped_oversize;
    counters.discarded_bytes += c.discarded_bytes;
    counters.bad_octet_counts += c.bad_octet_counts;
    (frames, counters)
}
