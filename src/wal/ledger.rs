//! The ledger: the acknowledgement watermark and the next sequence number, in two alternating
//! checksummed slots of one small file (see the module doc of `wal`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: [u8; 4] = [0xF7, b'L', b'T', b'L'];
const VERSION: u8 = 1;
pub(crate) const SLOT_LEN: usize = 64;
const CRC_AT: usize = SLOT_LEN - 4;

/// What a ledger holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LedgerState {
    /// Incremented on every write; the slot with the higher one is current.
    pub generation: u64,
    /// Every sequence number up to and including this one is acknowledged (0: none).
    pub acked_through: u64,
    /// The next sequence number to hand out (>= 1).
    pub next_seq: u64,
}

/// What reading a ledger file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loaded {
    /// No ledger file (a new WAL).
    Missing,
    /// A file without a valid slot.
    Unreadable,
    /// The newest valid slot.
    Found(LedgerState),
}

fn encode(state: &LedgerState) -> [u8; SLOT_LEN] {
    let mut b = [0u8; SLOT_LEN];
    b[0..4].copy_from_slice(&MAGIC);
    b[4] = VERSION;
    b[8..16].copy_from_slice(&state.generation.to_le_bytes());
    b[16..24].copy_from_slice(&state.acked_through.to_le_bytes());
    b[24..32].copy_from_slice(&state.next_seq.to_le_bytes());
    let crc = crc32c::crc32c(&b[..CRC_AT]);
    b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> Option<LedgerState> {
    let b = b.get(..SLOT_LEN)?;
    let u64_at = |at: usize| {
        let mut v = [0u8; 8];
        v.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(v)
    };
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&b[CRC_AT..]);
    if b[0..4] != MAGIC
        || b[4] != VERSION
        || crc32c::crc32c(&b[..CRC_AT]) != u32::from_le_bytes(crc)
    {
        return None;
    }
    let state = LedgerState {
        generation: u64_at(8),
        acked_through: u64_at(16),
        next_seq: u64_at(24),
    };
    (state.next_seq > state.acked_through).then_some(state)
}

/// The state in `bytes` (a whole ledger file): the valid slot with the highest generation.
pub(crate) fn parse(bytes: &[u8]) -> Loaded {
    let a = bytes.get(..SLOT_LEN).and_then(decode);
    let b = bytes.get(SLOT_LEN..).and_then(decode);
    match (a, b) {
        (Some(a), Some(b)) => Loaded::Found(if a.generation >= b.generation { a } else { b }),
        (Some(s), None) | (None, Some(s)) => Loaded::Found(s),
        (None, None) => Loaded::Unreadable,
    }
}

/// Reads the ledger at `path` without changing anything.
pub(crate) fn read(path: &Path) -> io::Result<Loaded> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(parse(&bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Loaded::Missing),
        Err(e) => Err(e),
    }
}

/// The ledger file of an open WAL.
#[derive(Debug)]
pub(crate) struct Ledger {
    pub path: PathBuf,
    file: File,
    /// What the file holds now (its newest slot), as last written or read.
    pub state: LedgerState,
    /// Written since the last [`Ledger::sync`].
    unsynced: bool,
}

impl Ledger {
    /// Opens (creating) the ledger at `path`, whose current content is `loaded`.
    pub fn open(path: PathBuf, loaded: Loaded) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let state = match loaded {
            Loaded::Found(s) => s,
            Loaded::Missing | Loaded::Unreadable => LedgerState {
                generation: 0,
                acked_through: 0,
                next_seq: 1,
            },
        };
        Ok(Ledger {
            path,
            file,
            state,
            unsynced: false,
        })
    }

    /// Writes `acked_through` and `next_seq` into the older slot, unless they are what the file
    /// already holds. A torn write spoils only that slot; the other one still holds the state
    /// before. Not durable until [`Ledger::sync`].
    pub fn store(&mut self, acked_through: u64, next_seq: u64) -> io::Result<()> {
        if self.state.generation > 0
            && self.state.acked_through == acked_through
            && self.state.next_seq == next_seq
        {
            return Ok(());
        }
        let state = LedgerState {
            generation: self.state.generation + 1,
            acked_through,
            next_seq,
        };
        let slot = state.generation % 2;
        self.file
            .write_all_at(&encode(&state), slot * SLOT_LEN as u64)?;
        self.state = state;
        self.unsynced = true;
        Ok(())
    }

    /// Makes the last [`Ledger::store`] durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }
}
