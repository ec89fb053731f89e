//! Checkpoints: for every file, where reading resumes after a restart.
//!
//! # Invariants
//!
//! - **Only acknowledged data moves a checkpoint.** A file's offset is the end of the last line
//!   the shipper acknowledged (every batch up to it durable at the destination), never of a line
//!   only read or sent. A restart, clean or after `kill -9`, resumes there: no line is lost, and
//!   the lines sent but not yet acknowledged (at most `max_unacked_batches` batches), plus those
//!   acknowledged while the last checkpoint write was under way, are sent again.
//! - **Atomic replacement.** The file is written whole to `checkpoints.tmp`, fsync'ed, renamed
//!   over `checkpoints`, and the directory fsync'ed: a crash of the process or of the machine
//!   leaves the previous or the new file, never a mix. Writes happen on their own thread, so
//!   their fsyncs never stall reading; while one is under way, newer states replace each other
//!   and only the latest is written next.
//! - **Identity, not names.** An entry holds the file's device, inode and fingerprint
//!   ([`super::fingerprint`]); its path is only a hint for finding a file renamed while the
//!   agent was stopped, and for people reading the file.
//! - **Kept until released.** An entry stays while its file is tracked, or its collect entry
//!   was removed or changed (so that adding it back resumes); it goes once the file was released
//!   (rotated away or deleted, and read to its end) and everything read from it acknowledged,
//!   and at start when no file has its device and inode any more.
//! - **A damaged file stops the agent** with a message naming the file and line, rather than
//!   starting from guesses: a wrong guess either loses lines or sends whole files again.
//!
//! # File format
//!
//! `DATA_DIR/checkpoints`, text (so that `cat` shows where the agent is), LF line ends:
//!
//! ```text
//! logtail-agent-checkpoints 1                 header: format name and version
//! DEV INODE FP_LEN FP_HASH OFFSET PATH        one line per file, fields separated by one space:
//!                                             DEV, INODE, FP_LEN (bytes hashed) and OFFSET
//!                                             (bytes of the file acknowledged) in decimal,
//!                                             FP_HASH (FNV-1a 64) as 16 lowercase hex digits,
//!                                             PATH with every byte outside 0x21..=0x7e and
//!                                             every % written as %XX (uppercase hex)
//! end COUNT CRC                               trailer: the number of file lines, and the
//!                                             CRC32C of every byte before `end`, 8 hex digits
//! ```
//!
//! For example:
//!
//! ```text
//! logtail-agent-checkpoints 1
//! 2049 1835017 1024 9f2c71e0d54a8b13 48213 /var/log/nginx/access.log
//! 2049 1835022 311 0b1d5e7a31c2f904 311 /var/log/my%20app/app.log
//! end 2 5d1a0c77
//! ```

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::AgentMetrics;
use super::fingerprint::Fingerprint;
use crate::log_limit::RateLimitedWarning;

/// The checkpoint file's name in the data directory.
pub const CHECKPOINT_FILE: &str = "checkpoints";
const TEMP_FILE: &str = "checkpoints.tmp";
const HEADER: &str = "logtail-agent-checkpoints 1";

/// Where one file's reading resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointEntry {
    pub dev: u64,
    pub ino: u64,
    pub fingerprint: Fingerprint,
    /// Bytes of the file acknowledged: reading resumes here.
    pub offset: u64,
    /// The path it was last seen at.
    pub path: PathBuf,
}

/// Why a checkpoint file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "checkpoint file {path}: line {line}: {reason}; restore it, or delete it to start over \
         (files are then read again as `start_at` says)"
    )]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Appends the checkpoint file's bytes for `entries` to `out`.
pub fn encode<'a>(entries: impl IntoIterator<Item = &'a CheckpointEntry>, out: &mut Vec<u8>) {
    let start = out.len();
    let mut text = String::with_capacity(128);
    text.push_str(HEADER);
    text.push('\n');
    let mut count = 0;
    for e in entries {
        let _ = write!(
            text,
            "{} {} {} {:016x} {} ",
            e.dev, e.ino, e.fingerprint.len, e.fingerprint.hash, e.offset
        );
        escape_path(e.path.as_os_str().as_bytes(), &mut text);
        text.push('\n');
        count += 1;
    }
    out.extend_from_slice(text.as_bytes());
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(format!("end {count} {crc:08x}\n").as_bytes());
}

fn escape_path(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn unescape_path(text: &[u8]) -> Option<PathBuf> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if b == b'%' {
            let hex = std::str::from_utf8(text.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if (0x21..=0x7e).contains(&b) {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    Some(PathBuf::from(OsString::from_vec(out)))
}

/// Parses a checkpoint file's bytes; `path` is only used in errors.
///
/// # Errors
/// [`CheckpointError::Corrupt`] naming the line, for anything but the exact format.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Vec<CheckpointEntry>, CheckpointError> {
    let corrupt = |line: usize, reason: &str| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        line,
        reason: reason.to_string(),
    };
    let text_end = bytes
        .strip_suffix(b"\n")
        .ok_or_else(|| corrupt(1, "does not end with a line end (cut short?)"))?;
    let trailer_start = text_end
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let body = &bytes[..trailer_start];
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    // `body` ends with LF, so the split's last piece is empty.
    let lines = &lines[..lines.len().saturating_sub(1)];
    let trailer_line = lines.len() + 1;
    if lines.first() != Some(&HEADER.as_bytes()) {
        return Err(corrupt(1, &format!("not {HEADER:?}")));
    }
    let trailer = std::str::from_utf8(&text_end[trailer_start..])
        .map_err(|_| corrupt(trailer_line, "trailer is not text"))?;
    let mut fields = trailer.split(' ');
    let (Some("end"), Some(count), Some(crc), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(corrupt(
            trailer_line,
            "no `end COUNT CRC` trailer (cut short?)",
        ));
    };
    let crc = u32::from_str_radix(crc, 16).map_err(|_| corrupt(trailer_line, "bad CRC field"))?;
    if crc32c::crc32c(body) != crc {
        return Err(corrupt(trailer_line, "CRC mismatch: the file is damaged"));
    }
    let count: usize = count
        .parse()
        .map_err(|_| corrupt(trailer_line, "bad COUNT field"))?;
    if count != lines.len() - 1 {
        return Err(corrupt(
            trailer_line,
            &format!(
                "trailer says {count} entries, the file has {}",
                lines.len() - 1
            ),
        ));
    }
    let mut entries = Vec::with_capacity(count);
    for (i, line) in lines.iter().enumerate().skip(1) {
        let bad = |what: &str| corrupt(i + 1, what);
        let mut fields = line.splitn(6, |&b| b == b' ');
        let mut number = |name: &str, radix: u32| -> Result<u64, CheckpointError> {
            let field = fields.next().ok_or_else(|| bad(&format!("no {name}")))?;
            std::str::from_utf8(field)
                .ok()
                .and_then(|f| u64::from_str_radix(f, radix).ok())
                .ok_or_else(|| bad(&format!("bad {name}")))
        };
        let dev = number("DEV", 10)?;
        let ino = number("INODE", 10)?;
        let len = number("FP_LEN", 10)?;
        let hash = number("FP_HASH", 16)?;
        let offset = number("OFFSET", 10)?;
        let len = u32::try_from(len).map_err(|_| bad("bad FP_LEN"))?;
        let path = fields
            .next()
            .and_then(unescape_path)
            .ok_or_else(|| bad("bad PATH"))?;
        entries.push(CheckpointEntry {
            dev,
            ino,
            fingerprint: Fingerprint { len, hash },
            offset,
            path,
        });
    }
    Ok(entries)
}

/// Reads `DIR/checkpoints`; no file means no checkpoints yet.
///
/// # Errors
/// See [`decode`]; a read error other than "not found".
pub fn load(dir: &Path) -> Result<Vec<CheckpointEntry>, CheckpointError> {
    let path = dir.join(CHECKPOINT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => decode(&bytes, &path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(CheckpointError::Read { path, source }),
    }
}

/// Writes `bytes` as `DIR/checkpoints`: temp file, fsync, rename, fsync of the directory.
///
/// # Errors
/// Any I/O error; the previous checkpoint file is then still in place.
pub fn write_atomically(dir: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_file(dir, CHECKPOINT_FILE, TEMP_FILE, bytes)
}

/// Replaces `DIR/NAME` with `bytes` so that a crash leaves the old or the new file whole:
/// writes `DIR/TEMP`, fsyncs it, renames it over `NAME`, fsyncs the directory. Also used for
/// the agent's cached etcd configuration.
///
/// # Errors
/// Any I/O error; the previous file is then still in place.
pub fn replace_file(dir: &Path, name: &str, temp: &str, bytes: &[u8]) -> io::Result<()> {
    let temp = dir.join(temp);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

#[derive(Default)]
struct Slot {
    pending: Option<Vec<u8>>,
    closing: bool,
}

/// The checkpoint writer thread: takes encoded checkpoint files and writes the latest one.
pub struct CheckpointWriter {
    shared: Arc<(Mutex<Slot>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    /// Successful writes.
    pub writes: Arc<AtomicU64>,
    /// Failed writes (each is retried with the next state, or after a second).
    pub errors: Arc<AtomicU64>,
}

impl CheckpointWriter {
    /// Starts the writer thread for `dir`.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(dir: PathBuf, metrics: Arc<AgentMetrics>) -> io::Result<CheckpointWriter> {
        let shared = Arc::new((Mutex::new(Slot::default()), Condvar::new()));
        let writes = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let thread = {
            let (shared, writes, errors) = (shared.clone(), writes.clone(), errors.clone());
            std::thread::Builder::new()
                .name("agent-checkpoint".into())
                .spawn(move || write_loop(&dir, &shared, &writes, &errors, &metrics))?
        };
        Ok(CheckpointWriter {
            shared,
            thread: Some(thread),
            writes,
            errors,
        })
    }

    /// Hands over a new state (an encoded file); it replaces one not yet written.
    pub fn submit(&self, bytes: Vec<u8>) {
        let (lock, wake) = &*self.shared;
        if let Ok(mut slot) = lock.lock() {
            slot.pending = Some(bytes);
            wake.notify_one();
        }
    }

    /// Writes what is pending, then stops the thread.
    pub fn finish(mut self) {
        self.close();
    }

    fn close(&mut self) {
        let (lock, wake) = &*self.shared;
        if let Ok(mut slot) = lock.lock() {
            slot.closing = true;
            wake.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for CheckpointWriter {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(
    dir: &Path,
    shared: &(Mutex<Slot>, Condvar),
    writes: &AtomicU64,
    errors: &AtomicU64,
    metrics: &AgentMetrics,
) {
    static WARNING: RateLimitedWarning = RateLimitedWarning::new(Duration::from_secs(10));
    let (lock, wake) = shared;
    loop {
        let (bytes, closing) = {
            let Ok(mut slot) = lock.lock() else { return };
            while slot.pending.is_none() && !slot.closing {
                slot = match wake.wait(slot) {
                    Ok(slot) => slot,
                    Err(_) => return,
                };
            }
            (slot.pending.take(), slot.closing)
        };
        let Some(bytes) = bytes else { return };
        match write_atomically(dir, &bytes) {
            Ok(()) => {
                writes.fetch_add(1, Ordering::Relaxed);
                metrics
                    .checkpoint_written_at_us
                    .set(crate::time::now_unix_micros());
            }
            Err(e) => {
                errors.fetch_add(1, Ordering::Relaxed);
                WARNING.warn(|| {
                    format!(
                        "cannot write the checkpoint file in {}: {e}; retrying (a restart now \
                         would send lines again, not lose them)",
                        dir.display()
                    )
                });
                if closing {
                    return;
                }
                // Put it back unless a newer state came meanwhile, and retry in a second.
                if let Ok(mut slot) = lock.lock() {
                    if slot.pending.is_none() {
                        slot.pending = Some(bytes);
                    }
                    let _ = wake.wait_timeout(slot, Duration::from_secs(1));
                }
            }
        }
        if closing {
            let Ok(mut slot) = lock.lock() else { return };
            if let Some(last) = slot.pending.take() {
                drop(slot);
                if write_atomically(dir, &last).is_ok() {
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(path: &[u8], offset: u64) -> CheckpointEntry {
        CheckpointEntry {
            dev: 2049,
            ino: 1_835_017,
            fingerprint: Fingerprint {
                len: 1024,
                hash: 0x9f2c_71e0_d54a_8b13,
            },
            offset,
            path: PathBuf::from(OsString::from_vec(path.to_vec())),
        }
    }

    #[test]
    fn encodes_the_documented_text() {
        let mut out = Vec::new();
        encode(&[entry(b"/var/log/my app/100%.log", 48213)], &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        let body = "logtail-agent-checkpoints 1\n\
                    2049 1835017 1024 9f2c71e0d54a8b13 48213 /var/log/my%20app/100%25.log\n";
        assert_eq!(
            text,
            format!("{body}end 1 {:08x}\n", crc32c::crc32c(body.as_bytes()))
        );
        assert_eq!(
            decode(&out, Path::new("c")).unwrap(),
            vec![entry(b"/var/log/my app/100%.log", 48213)]
        );
    }

    #[test]
    fn an_empty_table_round_trips() {
        let mut out = Vec::new();
        encode(&[], &mut out);
        assert_eq!(decode(&out, Path::new("c")).unwrap(), vec![]);
    }

    #[test]
    fn damage_is_reported_with_its_line() {
        let mut out = Vec::new();
        encode(&[entry(b"/a", 1), entry(b"/b", 2)], &mut out);
        let err = |bytes: &[u8]| decode(bytes, Path::new("ck")).unwrap_err().to_string();
        assert!(err(&out[..out.len() - 1]).contains("line 1: does not end with a line end"));
        let cut = &out[..out.len() - "end 2 01234567\n".len()];
        assert!(
            err(cut).contains("no `end COUNT CRC` trailer"),
            "{}",
            err(cut)
        );
        let mut flipped = out.clone();
        flipped[40] ^= 1;
        assert!(
            err(&flipped).starts_with("checkpoint file ck: line 4: CRC mismatch"),
            "{}",
            err(&flipped)
        );
        assert!(err(b"hello\n").contains("line 1: not \"logtail-agent-checkpoints 1\""));
        assert!(err(b"").contains("line 1"));
    }

    #[test]
    fn write_atomically_replaces_the_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        encode(&[entry(b"/a", 5)], &mut out);
        write_atomically(dir.path(), &out).unwrap();
        out.clear();
        encode(&[entry(b"/a", 9)], &mut out);
        write_atomically(dir.path(), &out).unwrap();
        assert_eq!(load(dir.path()).unwrap(), vec![entry(b"/a", 9)]);
        assert!(!dir.path().join(TEMP_FILE).exists());
        assert_eq!(load(&dir.path().join("none")).unwrap(), vec![]);
    }

    #[test]
    fn the_writer_thread_writes_the_latest_state_before_it_stops() {
        let dir = tempfile::tempdir().unwrap();
        let writer = CheckpointWriter::start(dir.path().to_path_buf(), Arc::default()).unwrap();
        for offset in 0..100 {
            let mut out = Vec::new();
            encode(&[entry(b"/a", offset)], &mut out);
            writer.submit(out);
        }
        let writes = writer.writes.clone();
        writer.finish();
        assert_eq!(load(dir.path()).unwrap(), vec![entry(b"/a", 99)]);
        assert!((1..=100).contains(&writes.load(Ordering::Relaxed)));
    }

    proptest! {
        #[test]
        fn any_entries_round_trip(
            files in proptest::collection::vec(
                (any::<u64>(), any::<u64>(), any::<u32>(), any::<u64>(), any::<u64>(),
                 proptest::collection::vec(1u8..=255, 1..40)),
                0..20),
        ) {
            let entries: Vec<_> = files
                .into_iter()
                .map(|(dev, ino, len, hash, offset, path)| CheckpointEntry {
                    dev,
                    ino,
                    fingerprint: Fingerprint { len, hash },
                    offset,
                    path: PathBuf::from(OsString::from_vec(path)),
                })
                .collect();
            let mut out = Vec::new();
            encode(&entries, &mut out);
            prop_assert_eq!(decode(&out, Path::new("c")).unwrap(), entries);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes, Path::new("c"));
        }
    }
}
