//! Telling files apart: device and inode for the file, a fingerprint of its first bytes for its
//! content.
//!
//! A name says nothing across rotation (`app.log` is a new file after every rotation) and an
//! inode alone says too little (a deleted file's inode is reused; copytruncate moves the content
//! to a new inode). So a file is known by both:
//!
//! - **(device, inode)** while it is open: the agent keeps every file it reads open, so its inode
//!   cannot be reused under it, and a rename (rotation) does not matter.
//! - **the fingerprint**, a 64-bit FNV-1a hash of its first `len` bytes, where `len` is
//!   `fingerprint_bytes` (default 1024), or the file's whole size while it is shorter than that.
//!   A file of fewer than `fingerprint_bytes` has a *short* fingerprint; it is identified by
//!   (device, inode) plus that prefix, and its fingerprint is computed again, longer, as it grows,
//!   until it is full. Only a full fingerprint is trusted to recognize content under another
//!   inode (a copytruncate copy, a file moved across filesystems while the agent was stopped):
//!   short prefixes, and above all the empty one, are shared by too many files.
//!
//! A fingerprint `(len, hash)` matches a file when the hash of the file's first `len` bytes is
//! `hash`, so a checkpoint taken while a file was short still recognizes it once it has grown.
//!
//! Two files whose first `fingerprint_bytes` are identical (a long common header) have the same
//! content identity: while both are live, the second is taken for a copy of the first and not
//! read. Raise `fingerprint_bytes` past such headers.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// A file's content identity: the hash of its first `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// How many bytes were hashed: `fingerprint_bytes`, or less while the file is shorter.
    pub len: u32,
    /// FNV-1a (64 bit) of those bytes.
    pub hash: u64,
}

impl Fingerprint {
    /// The fingerprint of `head`, the first bytes of a file (all of them when it is shorter than
    /// the fingerprint length).
    pub fn of(head: &[u8]) -> Fingerprint {
        Fingerprint {
            len: head.len() as u32,
            hash: fnv1a(head),
        }
    }

    /// Reads up to `max_len` bytes from the start of `file` into `scratch` and fingerprints them.
    ///
    /// # Errors
    /// A read error of `file`.
    pub fn read(file: &File, max_len: usize, scratch: &mut Vec<u8>) -> io::Result<Fingerprint> {
        read_head(file, max_len, scratch)?;
        Ok(Fingerprint::of(scratch))
    }

    /// True when this fingerprint covers `full_len` bytes, the configured length.
    pub fn is_full(&self, full_len: usize) -> bool {
        self.len as usize >= full_len
    }

    /// True when `head` (a file's first bytes, at least as many as it has up to `self.len`)
    /// starts with the bytes this fingerprint was taken from.
    pub fn matches_head(&self, head: &[u8]) -> bool {
        let len = self.len as usize;
        head.len() >= len && fnv1a(&head[..len]) == self.hash
    }
}

/// Reads up to `max_len` bytes from the start of `file` into `out` (cleared first); fewer only
/// at the end of the file.
pub fn read_head(file: &File, max_len: usize, out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    out.resize(max_len, 0);
    let mut filled = 0;
    while filled < max_len {
        match file.read_at(&mut out[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.truncate(filled);
    Ok(())
}

/// FNV-1a, 64 bit: stable across builds and platforms (the fingerprint is persisted), and fast
/// enough for the once-per-file 1 KiB it hashes.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn fnv1a_known_values() {
        // Reference values of FNV-1a 64.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_short_fingerprint_still_matches_the_grown_file() {
        let short = Fingerprint::of(b"first line\n");
        assert_eq!(short.len, 11);
        assert!(!short.is_full(1024));
        assert!(short.matches_head(b"first line\nsecond line\n"));
        assert!(!short.matches_head(b"first linE\nsecond line\n"));
        assert!(!short.matches_head(b"first"), "a shorter head cannot match");
        let empty = Fingerprint::of(b"");
        assert!(empty.matches_head(b"anything"));
    }

    #[test]
    fn read_takes_at_most_max_len_bytes() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[7u8; 3000]).unwrap();
        let mut scratch = Vec::new();
        let fp = Fingerprint::read(&file, 1024, &mut scratch).unwrap();
        assert_eq!(fp, Fingerprint::of(&[7u8; 1024]));
        assert!(fp.is_full(1024));
        let small = tempfile::tempfile().unwrap();
        let fp = Fingerprint::read(&small, 1024, &mut scratch).unwrap();
        assert_eq!(
            fp,
            Fingerprint {
                len: 0,
                hash: fnv1a(b"")
            }
        );
    }
}
