//! Lines as RFC 5424 messages: what the `syslog-tcp` and `gateway` shippers send, and what the
//! gateway parses like any other syslog message. Each line becomes
//!
//! ```text
//! <14>1 TIMESTAMP HOST APP - - [logtail@32473 entry="E" file="PATH" topic="T" tags="A,B"] LINE
//! ```
//!
//! PRI 14 is user.info; TIMESTAMP is when the agent read the batch (RFC 3339, µs, UTC); HOST
//! the agent's host name; APP the entry's `app`; `topic` and `tags` appear only when set.
//! The SD-ID is [`AGENT_SD_ID`]. Everything before LINE is the same for every line of a file, so it is
//! built once per source and batch, and formatting a line is three copies.

use crate::agent::batch::{BatchLine, LineBatch, Source};
use crate::agent_protocol::AGENT_SD_ID;
use crate::encode::format_rfc3339_micros;

/// `<PRI>VERSION SP`: user.info, RFC 5424.
const PRI_VERSION: &[u8] = b"<14>1 ";

/// Formats the lines of one batch at a time. See the [module docs](self).
#[derive(Debug)]
pub struct MessageFormatter {
    host: String,
    timestamp: Vec<u8>,
    /// Per source of the current batch: everything between TIMESTAMP and the line.
    prefixes: Vec<Vec<u8>>,
}

impl MessageFormatter {
    pub fn new(host: String) -> Self {
        MessageFormatter {
            host,
            timestamp: Vec::with_capacity(32),
            prefixes: Vec::new(),
        }
    }

    /// Prepares for the lines of `batch`.
    pub fn start_batch(&mut self, batch: &LineBatch) {
        self.timestamp.clear();
        format_rfc3339_micros(batch.read_at_us(), &mut self.timestamp);
        self.prefixes.resize_with(batch.sources().len(), Vec::new);
        for (prefix, source) in self.prefixes.iter_mut().zip(batch.sources()) {
            message_prefix(&self.host, source, prefix);
        }
    }

    /// The length of `line`'s message.
    pub fn message_len(&self, line: &BatchLine<'_>) -> usize {
        PRI_VERSION.len()
            + self.timestamp.len()
            + self.prefixes[line.source_index].len()
            + line.bytes.len()
    }

    /// Appends `line`'s message to `out`.
    pub fn write(&self, line: &BatchLine<'_>, out: &mut Vec<u8>) {
        self.write_for_source(line.source_index, line.bytes, out);
    }

    /// Appends the message of the line `bytes` of source `source_index` (of the current batch).
    pub fn write_for_source(&self, source_index: usize, bytes: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(PRI_VERSION);
        out.extend_from_slice(&self.timestamp);
        out.extend_from_slice(&self.prefixes[source_index]);
        out.extend_from_slice(bytes);
    }
}

/// ` HOST APP - - [SD] `: what follows the timestamp, for every line of `source`.
fn message_prefix(host: &str, source: &Source, out: &mut Vec<u8>) {
    out.clear();
    out.push(b' ');
    out.extend_from_slice(host.as_bytes());
    out.push(b' ');
    out.extend_from_slice(source.app.as_bytes());
    out.extend_from_slice(b" - - [");
    out.extend_from_slice(AGENT_SD_ID.as_bytes());
    sd_param(out, "entry", source.entry.as_bytes());
    sd_param(out, "file", source.path.as_os_str().as_encoded_bytes());
    if let Some(topic) = &source.topic {
        sd_param(out, "topic", topic.as_bytes());
    }
    if !source.tags.is_empty() {
        sd_param(out, "tags", source.tags.join(",").as_bytes());
    }
    out.extend_from_slice(b"] ");
}

/// ` NAME="VALUE"`, with `"`, `\` and `]` escaped as RFC 5424 §6.3.3 requires.
fn sd_param(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"=\"");
    for &b in value {
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}
