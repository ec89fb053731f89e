//! A batch of lines: what the tailer hands to a shipper, and the unit an acknowledgement covers.
//!
//! The lines of a batch stand back to back in one buffer, with per line where it ends, which
//! file it came from and the file offset just past it; the files' fields (entry, path, topic,
//! app, tags) are shared [`Source`]s, listed once per batch. Filling a batch costs one copy of
//! each line and 24 bytes of metadata; no allocation per line once the buffers have grown, and
//! the shipper thread hands emptied batches back to the tailer to be filled again.
//!
//! Batches carry a sequence number, from 1 up, in the order they are handed to the shipper. An
//! acknowledgement of `seq` means every batch up to `seq` is durable at the destination.

use std::path::PathBuf;
use std::sync::Arc;

/// Where a line comes from, and what to attach to it: one per open file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The collect entry's name.
    pub entry: String,
    /// The path the file had when it was first seen.
    pub path: PathBuf,
    /// The entry's `topic`, if any.
    pub topic: Option<String>,
    /// The entry's `app`, else its name.
    pub app: String,
    /// The entry's `tags`.
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct LineMeta {
    /// One past the line's last byte in `LineBatch::data`.
    end: u32,
    /// Index into `LineBatch::sources`.
    source: u32,
    /// File offset just past the line (and its LF).
    offset_end: u64,
    truncated: bool,
}

/// One line of a batch, as shippers see it.
#[derive(Debug, Clone, Copy)]
pub struct BatchLine<'a> {
    /// The line without its LF (a multiline event: lines joined by LF).
    pub bytes: &'a [u8],
    /// Index of its source in [`LineBatch::sources`], for per-source caches.
    pub source_index: usize,
    pub source: &'a Source,
    /// File offset just past the line: where reading resumes once it is acknowledged.
    pub offset_end: u64,
    /// True when the line was cut to `max_line_bytes`.
    pub truncated: bool,
}

/// A batch of lines. See the [module docs](self).
#[derive(Debug, Default)]
pub struct LineBatch {
    seq: u64,
    read_at_us: i64,
    data: Vec<u8>,
    lines: Vec<LineMeta>,
    sources: Vec<Arc<Source>>,
}

impl LineBatch {
    /// An empty batch with room for `bytes` of lines.
    pub fn with_capacity(bytes: usize, lines: usize) -> Self {
        LineBatch {
            data: Vec::with_capacity(bytes),
            lines: Vec::with_capacity(lines),
            ..LineBatch::default()
        }
    }

    /// Its sequence number (from 1, in the order batches are sent).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// When its first line was read, in microseconds since the Unix epoch.
    pub fn read_at_us(&self) -> i64 {
        self.read_at_us
    }

    /// The number of lines.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Bytes of line data.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// The sources of its lines, each once.
    pub fn sources(&self) -> &[Arc<Source>] {
        &self.sources
    }

    /// Its lines, in the order they were read (per file, the order of the file).
    pub fn lines(&self) -> impl ExactSizeIterator<Item = BatchLine<'_>> {
        let mut start = 0;
        self.lines.iter().map(move |meta| {
            let end = meta.end as usize;
            let bytes = &self.data[start..end];
            start = end;
            BatchLine {
                bytes,
                source_index: meta.source as usize,
                source: &self.sources[meta.source as usize],
                offset_end: meta.offset_end,
                truncated: meta.truncated,
            }
        })
    }

    /// Appends a line of `source`. `now_us` stamps the batch when it is its first line.
    pub fn push(
        &mut self,
        source: &Arc<Source>,
        line: &[u8],
        offset_end: u64,
        truncated: bool,
        now_us: impl FnOnce() -> i64,
    ) {
        if self.lines.is_empty() {
            self.read_at_us = now_us();
        }
        let index = match self.sources.iter().rposition(|s| Arc::ptr_eq(s, source)) {
            Some(i) => i,
            None => {
                self.sources.push(Arc::clone(source));
                self.sources.len() - 1
            }
        };
        self.data.extend_from_slice(line);
        self.lines.push(LineMeta {
            end: self.data.len() as u32,
            source: index as u32,
            offset_end,
            truncated,
        });
    }

    /// Empties the batch (keeping its buffers) and gives it sequence number `seq`.
    pub fn reset(&mut self, seq: u64) {
        self.seq = seq;
        self.read_at_us = 0;
        self.data.clear();
        self.lines.clear();
        self.sources.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str) -> Arc<Source> {
        Arc::new(Source {
            entry: "e".into(),
            path: PathBuf::from(path),
            topic: None,
            app: "e".into(),
            tags: vec![],
        })
    }

    #[test]
    fn lines_come_back_with_their_sources_and_offsets() {
        let (a, b) = (source("/a"), source("/b"));
        let mut batch = LineBatch::with_capacity(64, 4);
        batch.reset(7);
        batch.push(&a, b"one", 4, false, || 42);
        batch.push(&b, b"two", 10, true, || unreachable!());
        batch.push(&a, b"three", 10, false, || unreachable!());
        assert_eq!((batch.seq(), batch.len(), batch.bytes()), (7, 3, 11));
        assert_eq!(batch.read_at_us(), 42);
        assert_eq!(batch.sources().len(), 2);
        let lines: Vec<_> = batch
            .lines()
            .map(|l| {
                (
                    l.bytes.to_vec(),
                    l.source.path.clone(),
                    l.offset_end,
                    l.truncated,
                )
            })
            .collect();
        assert_eq!(
            lines,
            vec![
                (b"one".to_vec(), PathBuf::from("/a"), 4, false),
                (b"two".to_vec(), PathBuf::from("/b"), 10, true),
                (b"three".to_vec(), PathBuf::from("/a"), 10, false),
            ]
        );
        batch.reset(8);
        assert!(batch.is_empty() && batch.sources().is_empty());
    }
}
