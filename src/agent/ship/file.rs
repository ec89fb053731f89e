//! The `file` shipper: lines appended to a file or standard output, acknowledged once written.
//!
//! For tests and debugging, not durability: a batch is acknowledged after `write(2)` returned,
//! without fsync, so a crash of the machine (not of the agent) can lose what was acknowledged.
//! A batch is one write, so a `kill -9` of the agent leaves at most one batch torn at the end of
//! the file; the next start finishes that torn line with an LF before appending, so a torn line
//! stands alone, and the whole batch is sent again (it was not acknowledged).
//!
//! Formats: `raw` writes each line and an LF (a multiline event is its lines joined by LF, so it
//! reads as several lines); `json` writes one object per line:
//! `{"entry":"nginx","file":"/var/log/nginx/access.log","offset":4213,"topic":"web","app":"nginx","tags":["edge"],"line":"..."}`
//! (`topic` absent when unset, `"truncated":true` only for cut lines), the line escaped as the
//! gateway escapes messages (bytes that are not UTF-8 as `\xNN`).

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::{AckSender, Backoff, Shipper, Stopped};
use crate::agent::batch::{LineBatch, Source};
use crate::agent::config::FileFormat;
use crate::encode::json::write_string;
use crate::log_limit::RateLimitedWarning;

/// See the [module docs](self).
pub struct FileShipper {
    out: Box<dyn Write + Send>,
    path: PathBuf,
    format: FileFormat,
    acks: AckSender,
    buf: Vec<u8>,
    /// Per source of the current batch: its JSON fields up to `"offset":`.
    prefixes: Vec<Vec<u8>>,
}

impl FileShipper {
    /// Opens `path` for appending (creating it), or standard output for `-`.
    ///
    /// # Errors
    /// When the file cannot be opened, or its torn last line cannot be finished.
    pub fn open(path: &Path, format: FileFormat, acks: AckSender) -> io::Result<FileShipper> {
        let out: Box<dyn Write + Send> = if path == Path::new("-") {
            Box::new(io::stdout())
        } else {
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(path)?;
            let len = file.metadata()?.len();
            if len > 0 {
                let mut last = [0u8; 1];
                file.seek(SeekFrom::Start(len - 1))?;
                file.read_exact(&mut last)?;
                if last[0] != b'\n' {
                    file.write_all(b"\n")?;
                }
            }
            Box::new(file)
        };
        Ok(FileShipper {
            out,
            path: path.to_path_buf(),
            format,
            acks,
            buf: Vec::with_capacity(1 << 20),
            prefixes: Vec::new(),
        })
    }

    fn format_batch(&mut self, batch: &LineBatch) {
        self.buf.clear();
        match self.format {
            FileFormat::Raw => {
                for line in batch.lines() {
                    self.buf.extend_from_slice(line.bytes);
                    self.buf.push(b'\n');
                }
            }
            FileFormat::Json => {
                self.prefixes.resize_with(batch.sources().len(), Vec::new);
                for (prefix, source) in self.prefixes.iter_mut().zip(batch.sources()) {
                    json_prefix(source, prefix);
                }
                for line in batch.lines() {
                    self.buf
                        .extend_from_slice(&self.prefixes[line.source_index]);
                    self.buf
                        .extend_from_slice(line.offset_end.to_string().as_bytes());
                    if line.truncated {
                        self.buf.extend_from_slice(b",\"truncated\":true");
                    }
                    self.buf.extend_from_slice(b",\"line\":");
                    write_string(&mut self.buf, line.bytes);
                    self.buf.extend_from_slice(b"}\n");
                }
            }
        }
    }
}

fn json_prefix(source: &Source, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"{\"entry\":");
    write_string(out, source.entry.as_bytes());
    out.extend_from_slice(b",\"file\":");
    write_string(out, source.path.as_os_str().as_encoded_bytes());
    if let Some(topic) = &source.topic {
        out.extend_from_slice(b",\"topic\":");
        write_string(out, topic.as_bytes());
    }
    out.extend_from_slice(b",\"app\":");
    write_string(out, source.app.as_bytes());
    out.extend_from_slice(b",\"tags\":[");
    for (i, tag) in source.tags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, tag.as_bytes());
    }
    out.extend_from_slice(b"],\"offset\":");
}

impl Shipper for FileShipper {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn send(&mut self, batch: &LineBatch, stop: &AtomicBool) -> Result<(), Stopped> {
        static WARNING: RateLimitedWarning = RateLimitedWarning::new(Duration::from_secs(10));
        self.format_batch(batch);
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            match self
                .out
                .write_all(&self.buf)
                .and_then(|()| self.out.flush())
            {
                Ok(()) => break,
                Err(e) => {
                    // Part of the batch may be written; all of it is written again.
                    WARNING
                        .warn(|| format!("cannot write to {}: {e}; retrying", self.path.display()));
                    backoff.sleep(stop)?;
                }
            }
        }
        self.acks.acknowledge(batch.seq());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::ship::ack_channel;
    use std::sync::Arc;

    fn batch() -> LineBatch {
        let source = Arc::new(Source {
            entry: "web".into(),
            path: PathBuf::from("/var/log/a \"b\".log"),
            topic: Some("logs".into()),
            app: "nginx".into(),
            tags: vec!["edge".into(), "eu".into()],
        });
        let mut batch = LineBatch::with_capacity(64, 2);
        batch.reset(3);
        batch.push(&source, b"GET /", 6, false, || 0);
        batch.push(&source, b"bad \xff", 12, true, || 0);
        batch
    }

    #[test]
    fn raw_and_json_lines_are_written_then_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        for (format, expected) in [
            (FileFormat::Raw, "GET /\nbad \u{fffd}\n"),
            (
                FileFormat::Json,
                "{\"entry\":\"web\",\"file\":\"/var/log/a \\\"b\\\".log\",\"topic\":\"logs\",\
                 \"app\":\"nginx\",\"tags\":[\"edge\",\"eu\"],\"offset\":6,\"line\":\"GET /\"}\n\
                 {\"entry\":\"web\",\"file\":\"/var/log/a \\\"b\\\".log\",\"topic\":\"logs\",\
                 \"app\":\"nginx\",\"tags\":[\"edge\",\"eu\"],\"offset\":12,\"truncated\":true,\
                 \"line\":\"bad \\\\xff\"}\n",
            ),
        ] {
            let path = dir.path().join(format!("{format:?}"));
            let (acks, acked) = ack_channel();
            let mut shipper = FileShipper::open(&path, format, acks).unwrap();
            shipper.send(&batch(), &AtomicBool::new(false)).unwrap();
            assert_eq!(acked.try_recv(), Ok(3));
            let written = std::fs::read(&path).unwrap();
            assert_eq!(String::from_utf8_lossy(&written), expected);
        }
    }

    #[test]
    fn a_torn_last_line_is_finished_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, b"whole\ntor").unwrap();
        let (acks, _acked) = ack_channel();
        let mut shipper = FileShipper::open(&path, FileFormat::Raw, acks).unwrap();
        shipper.send(&batch(), &AtomicBool::new(false)).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"whole\ntor\nGET /\nbad \xff\n"
        );
    }
}
