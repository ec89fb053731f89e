//! The dead-letter file: documents Elasticsearch refused for good, one JSON object a line,
//! appended and synced before they count as resolved:
//!
//! ```text
//! {"time":"2026-11-30T19:00:00.000000Z","status":400,"reason":"mapper_parsing_exception: ...","action":{"create":{"_index":"logs-2026.11.30","_id":"..."}},"document":{...}}
//! ```
//!
//! `document` is the record as it was sent when it is JSON, else a string of it.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::encode::format_rfc3339_micros;
use crate::encode::json::write_string;

pub struct DeadLetterFile {
    path: PathBuf,
    file: Option<File>,
    line: Vec<u8>,
}

impl DeadLetterFile {
    pub fn new(path: PathBuf) -> Self {
        DeadLetterFile {
            path,
            file: None,
            line: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one refused document (`action` is its bulk action line, `doc` its source).
    ///
    /// # Errors
    /// When the file cannot be opened or written.
    pub fn append(
        &mut self,
        status: u16,
        reason: &str,
        action: &[u8],
        doc: &[u8],
    ) -> std::io::Result<()> {
        self.line.clear();
        self.line.extend_from_slice(b"{\"time\":\"");
        format_rfc3339_micros(crate::time::now_unix_micros(), &mut self.line);
        self.line.extend_from_slice(b"\",\"status\":");
        self.line.extend_from_slice(status.to_string().as_bytes());
        self.line.extend_from_slice(b",\"reason\":");
        write_string(&mut self.line, reason.as_bytes());
        self.line.extend_from_slice(b",\"action\":");
        self.line.extend_from_slice(action);
        self.line.extend_from_slice(b",\"document\":");
        if serde_json::from_slice::<serde::de::IgnoredAny>(doc).is_ok() {
            self.line.extend_from_slice(doc);
        } else {
            write_string(&mut self.line, doc);
        }
        self.line.extend_from_slice(b"}\n");
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            ),
        };
        file.write_all(&self.line)
    }

    /// Makes what was appended durable.
    ///
    /// # Errors
    /// When the sync fails.
    pub fn sync(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(file) => file.sync_data(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refused_document_is_one_json_line_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = DeadLetterFile::new(dir.path().join("dead.ndjson"));
        file.append(400, "mapper \"x\"", b"{\"create\":{}}", b"{\"a\":1}")
            .unwrap();
        file.append(404, "gone", b"{\"index\":{}}", b"not json\n")
            .unwrap();
        file.sync().unwrap();
        let text = std::fs::read_to_string(file.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["reason"], "mapper \"x\"");
        assert_eq!(lines[0]["status"], 400);
        assert_eq!(lines[0]["document"]["a"], 1);
        assert_eq!(lines[1]["document"], "not json\n");
        assert_eq!(lines[1]["action"]["index"], serde_json::json!({}));
    }
}
