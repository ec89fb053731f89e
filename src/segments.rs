//! A segment directory: what the local store ([`crate::store`]) and the write-ahead log
//! ([`crate::wal`]) share about the directory they keep their files in. What a segment holds,
//! and what its number means, is each format's own business (see their module docs).
//!
//! # Layout
//!
//! ```text
//! <dir>/LOCK                          flock(LOCK_EX) held by the directory's one writer;
//!                                     holds its pid, as text (informational only)
//! <dir>/00000000000000000001.seg      segments: a 20-digit zero-padded number and ".seg",
//! <dir>/00000000000000000734.seg      so the lexical order of names is the numeric order
//! ...                                 (other files in the directory are not segments)
//! ```
//!
//! # Invariants
//!
//! - One writer per directory: [`lock_dir`] takes a non-blocking exclusive `flock` on `LOCK`,
//!   held for as long as the returned file is open, so a second writer, in this process or
//!   another, is refused instead of interleaving appends. Readers take no lock.
//! - A file is a segment exactly when its name is 20 ASCII digits followed by `.seg`;
//!   [`list_segments`] ignores every other name, so that an editor's backup or a stray file
//!   never reads as a segment.
//! - A full disk is recognised by [`is_no_space`] (`ENOSPC`, `EDQUOT`), for the formats that
//!   treat it as being full rather than as an I/O failure.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::setting::InvalidSetting;

/// Name of the lock file in a segment directory.
pub const LOCK_FILE: &str = "LOCK";

/// The smallest `max_segment_bytes` the store's and the WAL's config sections accept: below a
/// page, nearly every write would start a new segment.
pub const MIN_SEGMENT_BYTES: u64 = 4096;

const SEGMENT_SUFFIX: &str = ".seg";
const SEGMENT_DIGITS: usize = 20;

/// An I/O error on a file or directory, naming it, and the byte offset where there is one:
/// `PATH: ERROR` or `PATH at byte N: ERROR`.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {source}", path.display(), ByteOffset(*offset))]
pub struct FileError {
    /// The file or directory.
    pub path: PathBuf,
    /// Where in the file, when the error is about a position in it.
    pub offset: Option<u64>,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

impl FileError {
    /// An error on `path` as a whole.
    pub fn new(path: &Path, source: io::Error) -> Self {
        FileError {
            path: path.to_path_buf(),
            offset: None,
            source,
        }
    }

    /// An error at byte `offset` of `path`.
    pub fn at(path: &Path, offset: u64, source: io::Error) -> Self {
        FileError {
            path: path.to_path_buf(),
            offset: Some(offset),
            source,
        }
    }
}

/// Displays ` at byte N`, or nothing.
struct ByteOffset(Option<u64>);

impl std::fmt::Display for ByteOffset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(offset) => write!(f, " at byte {offset}"),
            None => Ok(()),
        }
    }
}

/// The file name of segment `seq` in `dir`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!(
        "{seq:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_DIGITS
    ))
}

/// The number in a segment file name, or `None` for any other file.
fn parse_segment_name(name: &OsStr) -> Option<u64> {
    let name = name.to_str()?;
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Numbers of the segments in `dir` (files named `<20 digits>.seg`), ascending.
///
/// # Errors
/// When the directory cannot be read (the error names it).
pub fn list_segments(dir: &Path) -> Result<Vec<u64>, FileError> {
    let list = || -> io::Result<Vec<u64>> {
        let mut seqs = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(seq) = parse_segment_name(&entry?.file_name()) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        Ok(seqs)
    };
    list().map_err(|e| FileError::new(dir, e))
}

/// Another process (or another writer in this one) holds the lock of a directory.
#[derive(Debug, thiserror::Error)]
#[error(
    "{kind} directory {} is already in use by another writer{holder} (lock {} is held); \
     is another gateway running on the same directory?",
    dir.display(),
    lock.display()
)]
pub struct DirLocked {
    /// What the directory is for (`store`, `WAL`), as the message names it.
    pub kind: &'static str,
    /// The directory.
    pub dir: PathBuf,
    /// Its lock file.
    pub lock: PathBuf,
    /// `" (pid N)"` when the lock file names its holder, else empty.
    pub holder: String,
}

/// Why [`lock_dir`] did not get the lock.
#[derive(Debug)]
pub enum LockFailure {
    /// Someone else holds it.
    Held(DirLocked),
    /// Opening, locking or writing the lock file failed.
    Io(FileError),
}

impl LockFailure {
    /// The failure as the error type of a format whose errors include both cases.
    pub fn into_error<E: From<DirLocked> + From<FileError>>(self) -> E {
        match self {
            LockFailure::Held(locked) => locked.into(),
            LockFailure::Io(e) => e.into(),
        }
    }
}

/// Opens (creating) `<dir>/LOCK`, takes an exclusive, non-blocking flock on it and writes our
/// pid into it. The lock lasts as long as the returned file is open. `kind` names the
/// directory in the error when someone else holds the lock.
///
/// # Errors
/// [`LockFailure::Held`] when another open file holds the lock, [`LockFailure::Io`] when the
/// lock file cannot be opened, locked or written.
pub fn lock_dir(dir: &Path, kind: &'static str) -> Result<File, LockFailure> {
    let path = dir.join(LOCK_FILE);
    let io = |e| LockFailure::Io(FileError::new(&path, e));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let holder = match file.read_to_string(&mut text) {
                Ok(_) => text
                    .trim()
                    .parse::<u32>()
                    .map(|pid| format!(" (pid {pid})"))
                    .unwrap_or_default(),
                Err(_) => String::new(),
            };
            return Err(LockFailure::Held(DirLocked {
                kind,
                dir: dir.to_path_buf(),
                lock: path,
                holder,
            }));
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    // Informational only: name the holder for whoever fails to get the lock next.
    let pid = format!("{}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.write_all_at(pid.as_bytes(), 0))
        .map_err(io)?;
    Ok(file)
}

/// Fsyncs directory `dir`, so that the files created in it or deleted from it stay so after a
/// crash of the machine.
///
/// # Errors
/// The error of opening or syncing the directory.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Checks a config section's `max_segment_bytes` against [`MIN_SEGMENT_BYTES`].
///
/// # Errors
/// `max_segment_bytes: must be at least 4096` when it is smaller.
pub fn check_max_segment_bytes(value: u64) -> Result<(), InvalidSetting> {
    if value < MIN_SEGMENT_BYTES {
        return Err(InvalidSetting::new(
            "max_segment_bytes",
            format!("must be at least {MIN_SEGMENT_BYTES}"),
        ));
    }
    Ok(())
}

/// True for the errors of a full disk or an exhausted quota.
pub fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || matches!(
            e.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_in_write_order() {
        let dir = Path::new("d");
        assert_eq!(
            segment_path(dir, 12),
            Path::new("d/00000000000000000012.seg")
        );
        assert_eq!(
            parse_segment_name(OsStr::new("00000000000000000012.seg")),
            Some(12)
        );
        assert_eq!(parse_segment_name(OsStr::new("12.seg")), None);
        assert_eq!(parse_segment_name(OsStr::new("LOCK")), None);
        assert_eq!(
            parse_segment_name(OsStr::new("0000000000000000001x.seg")),
            None
        );
    }

    #[test]
    fn listing_is_numeric_order_and_ignores_other_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        for seq in [10, 2, 1, u64::MAX] {
            std::fs::write(segment_path(dir.path(), seq), b"").expect("write");
        }
        for other in [LOCK_FILE, "1.seg", "00000000000000000003.tmp"] {
            std::fs::write(dir.path().join(other), b"").expect("write");
        }
        assert_eq!(
            list_segments(dir.path()).expect("list"),
            vec![1, 2, 10, u64::MAX]
        );
    }

    #[test]
    fn a_second_lock_names_the_holder_and_the_first_is_released_on_close() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = lock_dir(dir.path(), "test").expect("lock");
        match lock_dir(dir.path(), "test") {
            Err(LockFailure::Held(locked)) => {
                assert_eq!(locked.lock, dir.path().join(LOCK_FILE));
                assert_eq!(locked.holder, format!(" (pid {})", std::process::id()));
                assert_eq!(
                    locked.to_string(),
                    format!(
                        "test directory {} is already in use by another writer (pid {}) \
                         (lock {} is held); is another gateway running on the same directory?",
                        dir.path().display(),
                        std::process::id(),
                        locked.lock.display()
                    )
                );
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        lock_dir(dir.path(), "test").expect("lock after close");
    }

    #[test]
    fn file_errors_name_the_file_and_the_offset() {
        let e = FileError::new(Path::new("/d/x"), io::Error::other("boom"));
        assert_eq!(e.to_string(), "/d/x: boom");
        let e = FileError::at(Path::new("/d/x"), 42, io::Error::other("boom"));
        assert_eq!(e.to_string(), "/d/x at byte 42: boom");
    }

    #[test]
    fn segments_under_a_page_are_refused() {
        assert_eq!(check_max_segment_bytes(MIN_SEGMENT_BYTES), Ok(()));
        assert_eq!(
            check_max_segment_bytes(MIN_SEGMENT_BYTES - 1)
                .expect_err("too small")
                .to_string(),
            "max_segment_bytes: must be at least 4096"
        );
    }

    #[test]
    fn no_space_is_enospc_or_edquot() {
        assert!(is_no_space(&io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(is_no_space(&io::Error::from_raw_os_error(libc::EDQUOT)));
        assert!(!is_no_space(&io::Error::from_raw_os_error(libc::EIO)));
    }
}
