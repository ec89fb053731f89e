//! The acknowledged protocol between `logtail agent` and the gateway: batches of syslog
//! messages on a long-lived TCP connection, each acknowledged once the gateway made it durable.
//!
//! # Wire format
//!
//! Both directions are a sequence of frames. Every integer is big-endian (network order):
//!
//! ```text
//! struct Frame {
//!     length: u32,          // bytes after this field (kind + body); 1 ..= MAX_FRAME_BYTES
//!     kind:   u8,
//!     body:   [u8; length - 1],
//! }
//!
//! // agent → gateway
//! HELLO (kind 1) { magic: "LTAG", version: u8 = 1, host_len: u16, host: [u8; host_len],
//!                  [token_len: u16, token: [u8; token_len]] }   // the token is optional
//! BATCH (kind 2) { seq: u64, message_count: u32, raw_len: u32, raw_crc32c: u32, lz4: [u8] }
//!     // lz4: one LZ4 block (no frame header) that decompresses to exactly raw_len bytes whose
//!     // CRC-32C is raw_crc32c: message_count × { len: u32, message: [u8; len] }, nothing
//!     // after the last
//!
//! // gateway → agent
//! HELLO (kind 1) { magic: "LTAG", version: u8 = 1 }     // the agent's HELLO is accepted
//! ACK   (kind 3) { seq: u64 }                           // see below
//! ERROR (kind 4) { reason: [u8] }                       // UTF-8; the gateway then closes
//! ```
//!
//! A connection starts with the agent's HELLO and the gateway's answer (HELLO, or ERROR for a
//! version it does not speak). The agent then sends BATCH frames whose `seq` strictly increase;
//! each carries at least one message, an RFC 5424 message as the `syslog-tcp` shipper writes it
//! ([`crate::agent::ship::syslog_tcp`]), so the gateway parses, routes and stores it like any
//! other syslog message. `raw_len` is at most the gateway's `max_batch_bytes`.
//!
//! `ACK seq` means: every BATCH received on this connection with a sequence number up to `seq`
//! is durable at the gateway (written to its store, or delivered to Kafka, or in its WAL), i.e.
//! survives a crash of the gateway process; against a crash of its machine, as far as the
//! store's `fsync_interval_ms` or the WAL's `fsync` policy go. Acknowledgements are cumulative
//! and only ever increase; the gateway sends one whenever the durable prefix moved.
//!
//! # Errors and resending
//!
//! A frame that breaks these rules (unknown kind, a length over the limit, a bad magic, lz4 that
//! does not decompress to `raw_len`, a CRC that does not match, message lengths that do not fill it exactly, a `seq` that
//! does not increase) gets an ERROR naming what was wrong, and the connection is closed; nothing
//! of a bad BATCH is taken in. The gateway also closes a connection (after an ERROR) when a batch
//! of it could not be made durable. Either way, the agent reconnects (exponential backoff with
//! jitter) and sends every batch not yet acknowledged again, in order, on the new connection.
//! So nothing acknowledged is ever missing; what was durable but not yet acknowledged when a
//! connection broke arrives twice.

use std::io::{self, Read};

/// The SD-ID of the structured data the agent attaches to every line (entry, file, topic,
/// tags): `32473` is the private enterprise number RFC 5612 reserves for documentation, so the
/// ID is ours and not registered.
pub const AGENT_SD_ID: &str = "logtail@32473";
/// The first bytes of a HELLO body.
pub const MAGIC: &[u8; 4] = b"LTAG";
/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// `length` and `kind`.
pub const FRAME_HEADER_LEN: usize = 5;
/// The largest `length` either side accepts: a BATCH's lz4 block is at most slightly larger
/// than its `raw_len`, which a gateway bounds well below this.
pub const MAX_FRAME_BYTES: usize = 256 << 20;
/// A BATCH body before its lz4 block: `seq`, `message_count`, `raw_len`, `raw_crc32c`.
pub const BATCH_HEADER_LEN: usize = 20;
/// The length prefix of each message in a batch.
const MESSAGE_LEN_BYTES: usize = 4;

/// A frame's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Hello = 1,
    Batch = 2,
    Ack = 3,
    Error = 4,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Hello,
            2 => Kind::Batch,
            3 => Kind::Ack,
            4 => Kind::Error,
            _ => return None,
        })
    }
}

/// What is wrong with bytes received: the text goes back to the peer in an ERROR frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame length {0} is out of range (1 ..= {MAX_FRAME_BYTES})")]
    FrameLength(u64),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("expected a {expected:?} frame, got {got:?}")]
    Unexpected { expected: Kind, got: Kind },
    #[error("{kind:?} frame body of {len} bytes is malformed: {what}")]
    Malformed {
        kind: Kind,
        len: usize,
        what: &'static str,
    },
    #[error("HELLO does not start with \"LTAG\"")]
    BadMagic,
    #[error("protocol version {0} is not supported; this build speaks {VERSION}")]
    Version(u8),
    #[error("batch raw_len {raw_len} exceeds the limit of {limit} bytes")]
    BatchTooLarge { raw_len: usize, limit: usize },
    #[error("batch raw_len {raw_len} is more than {ratio} times its lz4 block of {lz4_len} bytes")]
    Expansion {
        raw_len: usize,
        lz4_len: usize,
        ratio: u32,
    },
    #[error("batch of {count} messages exceeds the limit of {limit}")]
    TooManyMessages { count: u32, limit: u32 },
    #[error("batch lz4 block does not decompress to its raw_len of {0} bytes")]
    Decompress(usize),
    #[error("batch CRC-32C mismatch: the bytes were damaged on the way")]
    Checksum,
    #[error("batch messages do not fill its {raw_len} bytes exactly: {what}")]
    Messages { raw_len: usize, what: &'static str },
    #[error("batch seq {seq} does not follow {previous}")]
    SeqOrder { seq: u64, previous: u64 },
}

/// The header of a frame: its kind and body length.
///
/// # Errors
/// A length out of range or an unknown kind.
pub fn parse_header(header: [u8; FRAME_HEADER_LEN]) -> Result<(Kind, usize), ProtocolError> {
    let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if length == 0 || length > MAX_FRAME_BYTES {
        return Err(ProtocolError::FrameLength(length as u64));
    }
    let kind = Kind::from_byte(header[4]).ok_or(ProtocolError::UnknownKind(header[4]))?;
    Ok((kind, length - 1))
}

/// Appends a frame of `kind` whose body `body` writes.
pub fn write_frame(out: &mut Vec<u8>, kind: Kind, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    out[start + 4] = kind as u8;
    body(out);
    let length = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&length.to_be_bytes());
}

/// The agent's HELLO.
pub fn agent_hello(host: &str, out: &mut Vec<u8>) {
    agent_hello_with_token(host, None, out);
}

/// An agent's HELLO carrying `token`, the secret a gateway without client certificates knows
/// this host by.
pub fn agent_hello_with_token(host: &str, token: Option<&str>, out: &mut Vec<u8>) {
    let host = &host.as_bytes()[..host.len().min(u16::MAX as usize)];
    write_frame(out, Kind::Hello, |body| {
        body.extend_from_slice(MAGIC);
        body.push(VERSION);
        body.extend_from_slice(&(host.len() as u16).to_be_bytes());
        body.extend_from_slice(host);
        if let Some(token) = token {
            let token = &token.as_bytes()[..token.len().min(u16::MAX as usize)];
            body.extend_from_slice(&(token.len() as u16).to_be_bytes());
            body.extend_from_slice(token);
        }
    });
}

/// The gateway's HELLO.
pub fn gateway_hello(out: &mut Vec<u8>) {
    write_frame(out, Kind::Hello, |body| {
        body.extend_from_slice(MAGIC);
        body.push(VERSION);
    });
}

/// Checks the magic and version of a HELLO body (either side's); returns what follows them.
///
/// # Errors
/// A short body, a bad magic, or another version.
pub fn parse_hello(body: &[u8]) -> Result<&[u8], ProtocolError> {
    if body.len() < MAGIC.len() + 1 {
        return Err(malformed(
            Kind::Hello,
            body,
            "shorter than magic and version",
        ));
    }
    if &body[..MAGIC.len()] != MAGIC {
        return Err(ProtocolError::BadMagic);
    }
    match body[MAGIC.len()] {
        VERSION => Ok(&body[MAGIC.len() + 1..]),
        other => Err(ProtocolError::Version(other)),
    }
}

/// The host name in the rest of an agent's HELLO (after [`parse_hello`]).
///
/// # Errors
/// When `host_len` does not match the bytes there.
pub fn parse_agent_host(rest: &[u8]) -> Result<String, ProtocolError> {
    parse_agent_hello(rest).map(|(host, _)| host)
}

/// The host name and the token, if any, in the rest of an agent's HELLO.
///
/// # Errors
/// When `host_len` or `token_len` does not match the bytes there.
pub fn parse_agent_hello(rest: &[u8]) -> Result<(String, Option<Vec<u8>>), ProtocolError> {
    let (len, after) = rest
        .split_first_chunk::<2>()
        .ok_or_else(|| malformed(Kind::Hello, rest, "no host_len"))?;
    let len = usize::from(u16::from_be_bytes(*len));
    if len > after.len() {
        return Err(malformed(Kind::Hello, rest, "host_len does not match"));
    }
    let (host, after) = after.split_at(len);
    let token = match after.split_first_chunk::<2>() {
        None if after.is_empty() => None,
        Some((len, token)) if usize::from(u16::from_be_bytes(*len)) == token.len() => {
            Some(token.to_vec())
        }
        _ => return Err(malformed(Kind::Hello, rest, "host_len does not match")),
    };
    Ok((String::from_utf8_lossy(host).into_owned(), token))
}

/// An ACK frame.
pub fn ack(seq: u64, out: &mut Vec<u8>) {
    write_frame(out, Kind::Ack, |body| {
        body.extend_from_slice(&seq.to_be_bytes())
    });
}

/// The sequence number of an ACK body.
///
/// # Errors
/// A body that is not 8 bytes.
pub fn parse_ack(body: &[u8]) -> Result<u64, ProtocolError> {
    let seq: [u8; 8] = body
        .try_into()
        .map_err(|_| malformed(Kind::Ack, body, "not 8 bytes"))?;
    Ok(u64::from_be_bytes(seq))
}

/// An ERROR frame.
pub fn error(reason: &str, out: &mut Vec<u8>) {
    write_frame(out, Kind::Error, |body| {
        body.extend_from_slice(reason.as_bytes());
    });
}

/// Builds the messages of a BATCH, then the frame.
#[derive(Debug, Default)]
pub struct BatchEncoder {
    raw: Vec<u8>,
    count: u32,
}

impl BatchEncoder {
    /// Starts a new batch (keeping the buffer).
    pub fn clear(&mut self) {
        self.raw.clear();
        self.count = 0;
    }

    /// Adds a message that `write` appends to the buffer it is given.
    pub fn message(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.raw.len();
        self.raw.extend_from_slice(&[0; MESSAGE_LEN_BYTES]);
        write(&mut self.raw);
        let len = (self.raw.len() - start - MESSAGE_LEN_BYTES) as u32;
        self.raw[start..start + MESSAGE_LEN_BYTES].copy_from_slice(&len.to_be_bytes());
        self.count += 1;
    }

    /// Messages added since the last [`BatchEncoder::clear`].
    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends the BATCH frame `seq` holding the messages added, lz4-compressed.
    pub fn finish(&self, seq: u64, out: &mut Vec<u8>) {
        write_frame(out, Kind::Batch, |body| {
            body.extend_from_slice(&seq.to_be_bytes());
            body.extend_from_slice(&self.count.to_be_bytes());
            body.extend_from_slice(&(self.raw.len() as u32).to_be_bytes());
            body.extend_from_slice(&crc32c::crc32c(&self.raw).to_be_bytes());
            let start = body.len();
            body.resize(
                start + lz4_flex::block::get_maximum_output_size(self.raw.len()),
                0,
            );
            // The buffer was sized for the worst case, so compression cannot run out of room.
            let written =
                lz4_flex::block::compress_into(&self.raw, &mut body[start..]).unwrap_or_default();
            body.truncate(start + written);
        });
    }
}

/// A BATCH body, checked and decompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub seq: u64,
    pub message_count: u32,
}

/// What a gateway lets one BATCH make it allocate, checked against the batch header before
/// anything is allocated or decompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most bytes of messages (`raw_len`).
    pub max_raw_bytes: usize,
    /// Most messages (`message_count`).
    pub max_records: u32,
    /// Most bytes `raw_len` may be per byte of the lz4 block (lz4 itself cannot exceed 255).
    pub max_expansion_ratio: u32,
}

/// The header fields of a BATCH body, checked against `limits`: a `raw_len` over the limit or
/// beyond what the lz4 block can expand to, a `message_count` over the limit or more than
/// `raw_len` can hold. Returns the header and `raw_len`, the bytes decoding will allocate.
///
/// # Errors
/// The first breach, before anything is allocated.
pub fn check_batch(
    body: &[u8],
    limits: &BatchLimits,
) -> Result<(BatchHeader, usize), ProtocolError> {
    let Some((header, lz4)) = body.split_first_chunk::<BATCH_HEADER_LEN>() else {
        return Err(malformed(Kind::Batch, body, "shorter than its header"));
    };
    let field = |at: usize| [header[at], header[at + 1], header[at + 2], header[at + 3]];
    let seq = u64::from_be_bytes([
        header[0], header[1], header[2], header[3], header[4], header[5], header[6], header[7],
    ]);
    let message_count = u32::from_be_bytes(field(8));
    let raw_len = u32::from_be_bytes(field(12)) as usize;
    if raw_len > limits.max_raw_bytes {
        return Err(ProtocolError::BatchTooLarge {
            raw_len,
            limit: limits.max_raw_bytes,
        });
    }
    let most = lz4
        .len()
        .saturating_mul(limits.max_expansion_ratio as usize);
    if raw_len > most {
        return Err(ProtocolError::Expansion {
            raw_len,
            lz4_len: lz4.len(),
            ratio: limits.max_expansion_ratio,
        });
    }
    if message_count == 0 {
        return Err(malformed(Kind::Batch, body, "no messages"));
    }
    if message_count > limits.max_records {
        return Err(ProtocolError::TooManyMessages {
            count: message_count,
            limit: limits.max_records,
        });
    }
    if message_count as usize > raw_len / MESSAGE_LEN_BYTES {
        return Err(ProtocolError::Messages {
            raw_len,
            what: "message_count is more than raw_len can hold",
        });
    }
    Ok((BatchHeader { seq, message_count }, raw_len))
}

/// Decompresses the BATCH `body` into `raw` (replacing its contents) and checks that its
/// messages fill it exactly. [`check_batch`] runs first, so `limits` bound what a peer can
/// make us allocate.
///
/// # Errors
/// Any breach of the format or of `limits`, before anything of the batch is used.
pub fn decode_batch(
    body: &[u8],
    limits: &BatchLimits,
    raw: &mut Vec<u8>,
) -> Result<BatchHeader, ProtocolError> {
    let (header, raw_len) = check_batch(body, limits)?;
    let lz4 = &body[BATCH_HEADER_LEN..];
    let raw_crc = u32::from_be_bytes([body[16], body[17], body[18], body[19]]);
    raw.clear();
    raw.resize(raw_len, 0);
    match lz4_flex::block::decompress_into(lz4, raw) {
        Ok(n) if n == raw_len => {}
        _ => return Err(ProtocolError::Decompress(raw_len)),
    }
    if crc32c::crc32c(raw) != raw_crc {
        return Err(ProtocolError::Checksum);
    }
    let mut counted = 0u32;
    for message in messages(raw) {
        message?;
        counted = counted.saturating_add(1);
    }
    if counted != header.message_count {
        return Err(ProtocolError::Messages {
            raw_len,
            what: "message_count does not match the messages there",
        });
    }
    Ok(header)
}

/// The messages of a decompressed batch, in order; an error where a length overruns the end.
pub fn messages(raw: &[u8]) -> impl Iterator<Item = Result<&[u8], ProtocolError>> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let error = ProtocolError::Messages {
            raw_len: raw.len(),
            what: "a message length runs past the end",
        };
        let Some((len, after)) = rest.split_first_chunk::<MESSAGE_LEN_BYTES>() else {
            rest = &[];
            return Some(Err(error));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len > after.len() {
            rest = &[];
            return Some(Err(error));
        }
        let (message, next) = after.split_at(len);
        rest = next;
        Some(Ok(message))
    })
}

/// Reads one frame from a blocking `reader` into `body` (replacing its contents); returns its
/// kind.
///
/// # Errors
/// I/O errors, and [`ProtocolError`]s as `InvalidData`.
pub fn read_frame(reader: &mut impl Read, body: &mut Vec<u8>) -> io::Result<Kind> {
    let mut header = [0; FRAME_HEADER_LEN];
    reader.read_exact(&mut header)?;
    let (kind, len) =
        parse_header(header).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    body.clear();
    // Grows with the bytes that arrive, not with what the header announces.
    let got = reader.take(len as u64).read_to_end(body)?;
    if got < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed inside a frame",
        ));
    }
    Ok(kind)
}

fn malformed(kind: Kind, body: &[u8], what: &'static str) -> ProtocolError {
    ProtocolError::Malformed {
        kind,
        len: body.len(),
        what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Limits that only the tests' own batches' sizes matter to.
    const LOOSE: BatchLimits = BatchLimits {
        max_raw_bytes: 1 << 20,
        max_records: 1 << 20,
        max_expansion_ratio: 255,
    };

    fn batch_frame(seq: u64, messages: &[&[u8]]) -> Vec<u8> {
        let mut encoder = BatchEncoder::default();
        for message in messages {
            encoder.message(|out| out.extend_from_slice(message));
        }
        let mut frame = Vec::new();
        encoder.finish(seq, &mut frame);
        frame
    }

    fn split(frame: &[u8]) -> (Kind, &[u8]) {
        let (kind, len) = parse_header(frame[..FRAME_HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - FRAME_HEADER_LEN);
        (kind, &frame[FRAME_HEADER_LEN..])
    }

    #[test]
    fn a_batch_round_trips_with_its_messages_in_order() {
        let frame = batch_frame(42, &[b"<14>1 - a - - - - one", b"", b"three\nlines\n"]);
        let (kind, body) = split(&frame);
        assert_eq!(kind, Kind::Batch);
        let mut raw = Vec::new();
        let header = decode_batch(body, &LOOSE, &mut raw).unwrap();
        assert_eq!(
            header,
            BatchHeader {
                seq: 42,
                message_count: 3
            }
        );
        let got: Vec<&[u8]> = messages(&raw).map(Result::unwrap).collect();
        assert_eq!(got, [&b"<14>1 - a - - - - one"[..], b"", b"three\nlines\n"]);
    }

    #[test]
    fn a_hello_carries_an_optional_token() {
        for token in [None, Some("s3cret-token-0123")] {
            let mut out = Vec::new();
            agent_hello_with_token("web1", token, &mut out);
            let body = &out[FRAME_HEADER_LEN..];
            let (host, got) = parse_agent_hello(parse_hello(body).unwrap()).unwrap();
            assert_eq!(host, "web1");
            assert_eq!(got.as_deref(), token.map(str::as_bytes));
        }
        // A token whose length does not match is malformed.
        assert!(parse_agent_hello(b"\x00\x01w\x00\x05abc").is_err());
        assert!(parse_agent_hello(b"\x00\x01w\x00").is_err());
    }

    #[test]
    fn hello_and_ack_round_trip() {
        let mut out = Vec::new();
        agent_hello("web1", &mut out);
        let (kind, body) = split(&out);
        assert_eq!(kind, Kind::Hello);
        assert_eq!(
            parse_agent_host(parse_hello(body).unwrap()).unwrap(),
            "web1"
        );
        out.clear();
        ack(u64::MAX - 1, &mut out);
        let (kind, body) = split(&out);
        assert_eq!((kind, parse_ack(body).unwrap()), (Kind::Ack, u64::MAX - 1));
        out.clear();
        gateway_hello(&mut out);
        assert_eq!(parse_hello(split(&out).1).unwrap(), b"");
    }

    #[test]
    fn bad_headers_and_hellos_are_refused() {
        assert_eq!(
            parse_header([0, 0, 0, 0, 2]),
            Err(ProtocolError::FrameLength(0))
        );
        assert_eq!(
            parse_header([0xff, 0xff, 0xff, 0xff, 2]),
            Err(ProtocolError::FrameLength(u32::MAX as u64))
        );
        assert_eq!(
            parse_header([0, 0, 0, 1, 9]),
            Err(ProtocolError::UnknownKind(9))
        );
        assert_eq!(parse_hello(b"LTAX\x01"), Err(ProtocolError::BadMagic));
        assert_eq!(parse_hello(b"LTAG\x02"), Err(ProtocolError::Version(2)));
        assert!(parse_agent_host(b"\x00\x05web").is_err());
        assert!(parse_ack(b"1234567").is_err());
    }

    #[test]
    fn bad_batches_are_refused_before_any_message_is_used() {
        let frame = batch_frame(1, &[b"hello", b"world"]);
        let body = &frame[FRAME_HEADER_LEN..];
        let mut raw = Vec::new();
        assert!(matches!(
            decode_batch(
                body,
                &BatchLimits {
                    max_raw_bytes: 8,
                    ..LOOSE
                },
                &mut raw
            ),
            Err(ProtocolError::BatchTooLarge {
                raw_len: 18,
                limit: 8
            })
        ));
        // A lying message_count.
        let mut lying = body.to_vec();
        lying[11] = 3;
        assert!(matches!(
            decode_batch(&lying, &LOOSE, &mut raw),
            Err(ProtocolError::Messages { .. })
        ));
        // Damaged bytes that still decompress: a literal of the first message.
        let mut damaged = body.to_vec();
        let at = damaged.len() - 3;
        damaged[at] ^= 0x01;
        assert_eq!(
            decode_batch(&damaged, &LOOSE, &mut raw),
            Err(ProtocolError::Checksum)
        );
        // A lying raw_len.
        let mut lying = body.to_vec();
        lying[15] += 1;
        assert_eq!(
            decode_batch(&lying, &LOOSE, &mut raw),
            Err(ProtocolError::Decompress(19))
        );
        // Garbage instead of lz4.
        let mut garbage = body[..BATCH_HEADER_LEN].to_vec();
        garbage.extend_from_slice(&[0xff; 40]);
        assert!(decode_batch(&garbage, &LOOSE, &mut raw).is_err());
        // A message length past the end, inside well-formed lz4 with a right CRC.
        let mut encoder = BatchEncoder::default();
        encoder.message(|out| out.extend_from_slice(b"abc"));
        encoder.raw[3] = 200;
        let mut frame = Vec::new();
        encoder.finish(1, &mut frame);
        assert!(matches!(
            decode_batch(&frame[FRAME_HEADER_LEN..], &LOOSE, &mut raw),
            Err(ProtocolError::Messages { .. })
        ));
        assert!(decode_batch(&[0; 15], &LOOSE, &mut raw).is_err());
    }

    #[test]
    fn a_garbage_block_announcing_16_mib_is_refused_before_anything_is_allocated() {
        let mut body = Vec::new();
        body.extend_from_slice(&1u64.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&(16u32 << 20).to_be_bytes());
        body.extend_from_slice(&0u32.to_be_bytes());
        body.extend_from_slice(&[0xff; 40]);
        let limits = BatchLimits {
            max_raw_bytes: 16 << 20,
            max_records: 65_536,
            max_expansion_ratio: 64,
        };
        let mut raw = Vec::new();
        assert_eq!(
            decode_batch(&body, &limits, &mut raw),
            Err(ProtocolError::Expansion {
                raw_len: 16 << 20,
                lz4_len: 40,
                ratio: 64
            })
        );
        assert_eq!(raw.capacity(), 0);
    }

    #[test]
    fn a_64_kib_batch_of_empty_messages_is_refused_by_count_and_by_expansion() {
        // The issue's amplification: 4,194,304 empty messages (16 MiB of zero lengths)
        // compress to about 64 KiB of lz4.
        let mut encoder = BatchEncoder::default();
        for _ in 0..4_194_304 {
            encoder.message(|_| {});
        }
        let mut frame = Vec::new();
        encoder.finish(1, &mut frame);
        let body = &frame[FRAME_HEADER_LEN..];
        assert_eq!(body.len(), BATCH_HEADER_LEN + 65_804);
        let mut raw = Vec::new();
        let count_only = BatchLimits {
            max_raw_bytes: 16 << 20,
            max_records: 65_536,
            max_expansion_ratio: 255,
        };
        assert_eq!(
            decode_batch(body, &count_only, &mut raw),
            Err(ProtocolError::TooManyMessages {
                count: 4_194_304,
                limit: 65_536
            })
        );
        let ratio_only = BatchLimits {
            max_records: u32::MAX,
            max_expansion_ratio: 64,
            ..count_only
        };
        assert_eq!(
            decode_batch(body, &ratio_only, &mut raw),
            Err(ProtocolError::Expansion {
                raw_len: 16 << 20,
                lz4_len: 65_804,
                ratio: 64
            })
        );
        assert_eq!(raw.capacity(), 0);
    }

    #[test]
    fn a_batch_of_identical_lines_compresses_near_lz4s_most_and_passes_its_limit() {
        // An agent's burst of one repeated line: a batch refused for its ratio would be resent
        // forever, so the default limit (255) must take it.
        let line = b"<11>1 2026-11-30T10:00:00.000000Z web1 app - - - the same error again";
        let mut encoder = BatchEncoder::default();
        for _ in 0..4096 {
            encoder.message(|out| out.extend_from_slice(line));
        }
        let mut frame = Vec::new();
        encoder.finish(1, &mut frame);
        let body = &frame[FRAME_HEADER_LEN..];
        let ratio = (4096 * (line.len() + 4)) as f64 / (body.len() - BATCH_HEADER_LEN) as f64;
        assert!(ratio > 200.0, "{ratio}");
        let limits = BatchLimits {
            max_raw_bytes: 16 << 20,
            max_records: 65_536,
            max_expansion_ratio: 255,
        };
        assert!(decode_batch(body, &limits, &mut Vec::new()).is_ok());
    }

    #[test]
    fn a_blocking_read_of_a_frame_grows_with_what_arrived() {
        // A header announcing 200 MiB, then 3 bytes and the end of the stream.
        let mut bytes = ((200u32 << 20) + 1).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[Kind::Ack as u8, 1, 2, 3]);
        let mut body = Vec::new();
        let err = read_frame(&mut &bytes[..], &mut body).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(body.capacity() < 1 << 20, "{}", body.capacity());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_as_a_batch_body_give_an_error_or_a_consistent_batch(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..300)
        ) {
            let mut raw = Vec::new();
            if let Ok(header) = decode_batch(&body, &BatchLimits { max_raw_bytes: 1 << 16, ..LOOSE }, &mut raw) {
                proptest::prop_assert_eq!(messages(&raw).count(), header.message_count as usize);
            }
        }
    }
}
