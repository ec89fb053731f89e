//! The block index: what a block's records hold, summed up small enough to decide from it,
//! without decompressing the block, that a query cannot match any of them (the idea of
//! ClickHouse's skip indexes: `minmax`, `set` and `tokenbf_v1`). The format is in the module
//! doc of `store`; this module builds an index while a block is filled ([`IndexBuilder`]) and
//! reads one back ([`BlockIndex`]).
//!
//! # What is indexed, and why it is sound
//!
//! A block may be skipped only when *no* record in it can match. The index therefore reads each
//! record exactly as the query's `JsonRecord` reads it, through the same reader
//! ([`super::json_scan`]) — from the JSON ([`IndexBuilder::add`]), or, for a record the
//! gateway's shards encoded, from where the encoder says it wrote each member
//! ([`IndexBuilder::add_indexed`], which must build the same index bytes; `indexed_fields_tests`
//! checks it): the same members (every top-level member of that name, in order),
//! the same values (strings unescaped, numbers as written, each scalar of an array), and a
//! record that is not a JSON object is all message. What it keeps errs on the side of "may
//! match":
//!
//! - **time**: min and max of each record's time as search reads it (the first `timestamp`
//!   value that parses as RFC 3339, else the first such `received_at`), over the records that
//!   have one (a record without a time never matches a time range).
//! - **severity, facility**: a bitmap of the codes seen (0–7, 0–23). A value that reads as a
//!   number but not as one of those codes (`2.5`, `99`) sets the `*_OTHER` flag: any comparison
//!   may match. A value that is not a number cannot match a comparison and is left out.
//! - **host, app**: the set of values seen, as 32-bit hashes of their ASCII-lowercased bytes (the
//!   query compares them ignoring ASCII case), up to [`MAX_KEYS`] each; more than that sets the
//!   `*_MANY` flag and the field cannot rule a block out.
//! - **message words**: a bloom filter of the message's tokens (maximal runs of
//!   [`is_token_byte`] bytes), ASCII-lowercased. A query word is a whole token of the message,
//!   so each token inside it is one of the message's tokens.
//!
//! # The token filters
//!
//! The builder keeps the 64-bit [`token_hash`] of each token (one private function,
//! `TokenHashes::insert`, does it for every entry point), so that each filter is sized from the
//! exact number of distinct tokens it holds. Bit positions come from Kirsch and Mitzenmacher's
//! double hashing of that one hash: `h1 + i·h2`.
//!
//! - **Index version 1** (blocks of format version 2) has one filter for the whole block:
//!   the smallest power of two giving [`BITS_PER_TOKEN`] bits per token, with [`BLOOM_HASHES`]
//!   positions (about 1.2% false positives), positions modulo the size, and never more than
//!   [`MAX_BLOOM_SHARE`] of the compressed payload.
//! - **Index version 2** (blocks of format version 3) has one filter per *granule* (a run of
//!   about `GRANULE_BYTES` of records compressed on its own, see `block`) and none for the
//!   block: a query decompresses only the granules whose filter may hold its words. A granule's
//!   filter is any multiple of 64 bits, [`GRANULE_BITS_PER_TOKEN`] per distinct token
//!   (positions by multiply-shift, `(x·m) >> 32`, instead of a modulo, so that no power of two
//!   rounds the size up, and with the hash salted by the block's seed and the granule's number:
//!   see [`granule_positions`]), with the number of hashes best for the bits it got, and at
//!   most [`MAX_GRANULE_SHARE`] of the granule's compressed bytes. Common words are repeated in
//!   every granule's filter (133 distinct words per 32 KiB granule of the load-test mix, 1.57×
//!   what a block filter holds): the index is 2.55% of the store there, against 1.38% with one
//!   filter per block (`loadtest/RESULTS.md`, "per-granule filters").

use super::json_scan::{for_each_member, visit_value};
use crate::encode::json::{IndexedFields, StringSpan};

/// Version of the index layout of format-2 blocks (one token filter per block), its first byte.
pub(crate) const INDEX_VERSION: u8 = 1;
/// Version of the index layout of format-3 blocks (one token filter per granule).
pub(crate) const GRANULE_INDEX_VERSION: u8 = 2;
/// The fixed part of an index, before the host and app hashes.
pub(crate) const INDEX_FIXED_LEN: usize = 32;
/// Fixed part and checksum: the smallest valid index.
pub(crate) const MIN_INDEX_LEN: usize = INDEX_FIXED_LEN + 4;
/// At most this many distinct hosts (and apps) are listed per block.
pub const MAX_KEYS: usize = 64;
/// log2 of the largest block filter (index version 1), in bits (32 KiB).
const MAX_LOG2: u8 = 18;
/// The smallest block filter written: 64 bits.
const MIN_LOG2: u8 = 6;
/// Bit positions set per token in a block filter.
pub(crate) const BLOOM_HASHES: u8 = 4;
/// Target size of a block filter per distinct token.
const BITS_PER_TOKEN: f64 = 10.0;
/// A token filter takes at most this share of the compressed bytes it covers (the issue's
/// budget is 3% for the whole index; the rest is the fixed part, the host and app lists and
/// the granule table)...
const MAX_BLOOM_SHARE: f64 = 0.025;
/// ...or this many bits (256 bytes) for a block filter, whichever is more: a small block of
/// repetitive records compresses so well that 2.5% of it would be a filter too full to rule
/// anything out.
const FLOOR_LOG2: u8 = 11;
/// The largest valid index of version 1: everything at its maximum.
pub(crate) const MAX_INDEX_LEN: usize = MIN_INDEX_LEN + 2 * 4 * MAX_KEYS + (1 << MAX_LOG2) / 8;

/// Target size of a granule's filter per distinct token. With the best number of hashes
/// (10), about 0.07% false positives: a word in no record of the store still costs a granule in
/// 1,400 to decompress. (12 bits, 0.3%, left the disk share at 2.1% but read 120 to 988 more
/// granules than needed for a word in 1,000 of them; see loadtest/RESULTS.md.)
pub(crate) const GRANULE_BITS_PER_TOKEN: usize = 15;
/// A granule's filter takes at most this share of the granule's compressed bytes (with the
/// granule table, 20 bytes per granule, about 0.2% of a block, the index stays under the
/// issue's 3%).
const MAX_GRANULE_SHARE: f64 = 0.027;
/// Floor of a granule's filter, in bits, whatever its compressed size.
const GRANULE_FLOOR_BITS: usize = 512;
/// Largest filter of a granule, in 64-bit words (8 KiB).
pub(crate) const MAX_GRANULE_WORDS: usize = 1024;
/// Most granules in a block (the table's count is a u16; writers stay far below).
pub const MAX_GRANULES: usize = 256;
/// Bytes of one entry of the granule table.
pub(crate) const GRANULE_ENTRY_LEN: usize = 20;
/// The largest valid index of version 2.
pub(crate) const MAX_GRANULE_INDEX_LEN: usize =
    MIN_INDEX_LEN + 2 * 4 * MAX_KEYS + MAX_GRANULES * (GRANULE_ENTRY_LEN + 8 * MAX_GRANULE_WORDS);
/// Most hash positions per token a filter may ask for.
const MAX_HASHES: u8 = 16;

/// Flag bits of the index.
const HAS_TIME: u8 = 1;
const SEVERITY_OTHER: u8 = 1 << 1;
const FACILITY_OTHER: u8 = 1 << 2;
const HOSTS_MANY: u8 = 1 << 3;
const APPS_MANY: u8 = 1 << 4;
const KNOWN_FLAGS: u8 = HAS_TIME | SEVERITY_OTHER | FACILITY_OTHER | HOSTS_MANY | APPS_MANY;

/// Whether `byte` belongs to a token (a "word" of the message): ASCII letters, digits and `_`,
/// and every byte of a multi-byte UTF-8 character (so `grüße` is one token). The query's word
/// search uses the same definition, which is what makes the token filter sound.
#[inline]
pub const fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte >= 0x80
}

/// Lowercases the ASCII letters of eight bytes at once (the bit trick of `u8::to_ascii_lowercase`
/// done as SWAR: a byte is an uppercase letter when it is ASCII, at least `A` and at most `Z`).
#[inline]
fn lower8(w: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low = w & LOW7;
    let at_least_a = low.wrapping_add(0x0101_0101_0101_0101 * (0x80 - u64::from(b'A')));
    let above_z = low.wrapping_add(0x0101_0101_0101_0101 * (0x7f - u64::from(b'Z')));
    let upper = at_least_a & !above_z & !w & HIGH;
    w | (upper >> 2)
}

/// Up to eight bytes as a little-endian word, zero-padded. Most tokens are shorter than eight
/// bytes: copying them into a zeroed array compiled to a `memcpy` call and a stalled reload,
/// 20% of the tokenizer's samples; two overlapping loads cost neither.
#[inline]
fn load_padded(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    debug_assert!(n <= 8);
    let u32_at = |at: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&bytes[at..at + 4]);
        u64::from(u32::from_le_bytes(w))
    };
    match n {
        8 => {
            let mut w = [0u8; 8];
            w.copy_from_slice(bytes);
            u64::from_le_bytes(w)
        }
        // The two loads overlap on equal bytes: OR-ing them is exact.
        4..=7 => u32_at(0) | (u32_at(n - 4) << (8 * (n - 4))),
        1..=3 => {
            u64::from(bytes[0])
                | (u64::from(bytes[n / 2]) << (8 * (n / 2)))
                | (u64::from(bytes[n - 1]) << (8 * (n - 1)))
        }
        _ => 0,
    }
}

/// The hash of a token or a host or app value, as the index stores it: ASCII case ignored.
/// Part of the format: it must never change for a given index version.
///
/// The bytes are read eight at a time, little-endian (the last chunk zero-padded), lowercased,
/// and mixed into `h = seed ^ len·K1` by `h = rotl((h ^ chunk)·K2, 31)`; the result is
/// finished by SplitMix64's finalizer. (Reading only a prefix of long tokens would be cheaper,
/// but stores written with index version 1 hash every byte: that would need a new version.)
#[inline]
pub fn token_hash(bytes: &[u8]) -> u64 {
    const K1: u64 = 0x9E37_79B9_7F4A_7C15;
    const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    let mut h = 0x243F_6A88_85A3_08D3 ^ (bytes.len() as u64).wrapping_mul(K1);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        h = ((h ^ lower8(u64::from_le_bytes(w))).wrapping_mul(K2)).rotate_left(31);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        h = ((h ^ lower8(load_padded(tail))).wrapping_mul(K2)).rotate_left(31);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

#[cfg(any(test, not(target_arch = "x86_64")))]
/// The token bytes ([`is_token_byte`]) among eight bytes, one bit each (bit `i` for byte `i`
/// of the little-endian word), found at once (SWAR): a byte is one when its high bit is set, or
/// its low seven bits are a digit, a letter once `0x20` is or-ed in, or `_`.
#[inline]
fn token_mask8(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = w & LOW7;
    // High bit of each byte set when x is in lo..=hi (x <= 0x7f: no carry between bytes).
    let in_range = |x: u64, lo: u64, hi: u64| {
        (x.wrapping_add(ONES * (0x80 - lo)) & !x.wrapping_add(ONES * (0x7f - hi))) & HIGH
    };
    let digit = in_range(x, 0x30, 0x39);
    let letter = in_range(x | (ONES * 0x20), 0x61, 0x7a);
    let t = x ^ (ONES * 0x5f);
    let underscore = !(t.wrapping_add(ONES * 0x7f) | t) & HIGH;
    let high_bits = (w & HIGH) | digit | letter | underscore;
    // Gathers bit 7 of byte i into bit 56 + i (no two partial products meet), then down.
    ((high_bits >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// [`is_token_byte`] on a vector of bytes, written once for SSE2 and AVX2 (`$p` names the
/// intrinsics: `_mm` or `_mm256`): each byte becomes all ones when it is a token byte, else its
/// high bit stays clear. `x` in `lo..=hi` is `x + (0x80 - lo) < 0x80 + (hi - lo + 1)` as signed
/// bytes (neither has unsigned byte compares); bytes of 0x80 and above are token bytes by their
/// high bit alone, which is what `movemask` reads.
#[cfg(target_arch = "x86_64")]
macro_rules! token_bytes {
    ($v:expr, $add:ident, $set1:ident, $cmpgt:ident, $cmpeq:ident, $or:ident) => {{
        let v = $v;
        let in_range = |x, lo: u8, hi: u8| {
            let shifted = $add(x, $set1((0x80u8.wrapping_sub(lo)) as i8));
            $cmpgt($set1((0x80u8.wrapping_add(hi - lo + 1)) as i8), shifted)
        };
        let digit = in_range(v, b'0', b'9');
        let letter = in_range($or(v, $set1(0x20)), b'a', b'z');
        let underscore = $cmpeq(v, $set1(b'_' as i8));
        $or($or(digit, letter), $or(underscore, v))
    }};
}

/// The token bytes ([`is_token_byte`]) among 16 bytes, one bit each (bit `i` for byte `i`),
/// with SSE2 (part of every x86-64 CPU): four compares and a `movemask` instead of the eight
/// bytes at a time of [`token_mask8`]; the tokenizer was the index's largest cost at ingest.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn token_mask16(bytes: [u8; 16]) -> u64 {
    use std::arch::x86_64::{
        _mm_add_epi8, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set_epi64x, _mm_set1_epi8,
    };
    let lo = i64::from_le_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ]);
    let hi = i64::from_le_bytes([
        bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
    ]);
    let token = token_bytes!(
        _mm_set_epi64x(hi, lo),
        _mm_add_epi8,
        _mm_set1_epi8,
        _mm_cmpgt_epi8,
        _mm_cmpeq_epi8,
        _mm_or_si128
    );
    u64::from(_mm_movemask_epi8(token) as u16)
}

/// The token bytes among the (up to) 64 bytes of `window`, one bit each, from `classify` of
/// each `N` bytes in turn (the last chunk zero-padded: zero is not a token byte); bits past the
/// window's end are clear.
#[inline(always)]
fn mask_by_chunks<const N: usize>(window: &[u8], classify: impl Fn([u8; N]) -> u64) -> u64 {
    let mut mask = 0;
    let mut chunks = window.chunks_exact(N);
    let mut shift = 0;
    for chunk in &mut chunks {
        let mut bytes = [0u8; N];
        bytes.copy_from_slice(chunk);
        mask |= classify(bytes) << shift;
        shift += N;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut bytes = [0u8; N];
        bytes[..tail.len()].copy_from_slice(tail);
        mask |= classify(bytes) << shift;
    }
    mask
}

/// The token bytes among the (up to) 64 bytes of `window`, one bit each; bits past its end are
/// clear.
#[inline]
fn token_mask64(window: &[u8]) -> u64 {
    // SAFETY: SSE2 is part of every x86-64 CPU (the target's baseline).
    #[cfg(target_arch = "x86_64")]
    let classify = |bytes: [u8; 16]| unsafe { token_mask16(bytes) };
    #[cfg(not(target_arch = "x86_64"))]
    let classify = |bytes: [u8; 8]| token_mask8(u64::from_le_bytes(bytes));
    mask_by_chunks(window, classify)
}

/// Calls `f` with each token of `text` (see [`is_token_byte`]).
///
/// Classifies 64 bytes at a time into a bitmask and finds where tokens start and end with bit
/// operations, instead of a branch per byte: with a byte-at-a-time loop this tokenizer (with
/// the hashing it feeds) was 23% of the gateway's CPU in the loggen end-to-end profile. On CPUs
/// with AVX2 (checked once, then cached by `std`) the bytes are classified 32 at a time.
#[inline]
pub fn for_each_token(text: &[u8], f: impl FnMut(&[u8])) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { for_each_token_avx2(text, f) };
    }
    tokens_by_mask(text, f, token_mask64);
}

/// [`for_each_token`] compiled for AVX2 (with `f` inlined into it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn for_each_token_avx2(text: &[u8], f: impl FnMut(&[u8])) {
    // The closure inherits this function's AVX2.
    tokens_by_mask(text, f, |window| token_mask64_avx2(window));
}

/// The token bytes among the (up to) 64 bytes of `window` with AVX2, 32 bytes at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn token_mask64_avx2(window: &[u8]) -> u64 {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi8, _mm256_cmpeq_epi8, _mm256_cmpgt_epi8, _mm256_loadu_si256,
        _mm256_movemask_epi8, _mm256_or_si256, _mm256_set1_epi8,
    };
    mask_by_chunks(window, |bytes: [u8; 32]| {
        // SAFETY: `bytes` is 32 bytes; the load is unaligned.
        let v: __m256i = unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) };
        let token = token_bytes!(
            v,
            _mm256_add_epi8,
            _mm256_set1_epi8,
            _mm256_cmpgt_epi8,
            _mm256_cmpeq_epi8,
            _mm256_or_si256
        );
        u64::from(_mm256_movemask_epi8(token) as u32)
    })
}

/// The tokenizer's loop, with the window classifier `mask_of` ([`token_mask64`] or its AVX2
/// twin).
#[inline(always)]
fn tokens_by_mask(text: &[u8], mut f: impl FnMut(&[u8]), mask_of: impl Fn(&[u8]) -> u64) {
    // Where the token that runs into the current window started.
    let mut open: Option<usize> = None;
    // One window more when the length is a multiple of 64: empty, it ends a token still open,
    // so that `f` is called from one place (and inlined there).
    for base in (0..=text.len()).step_by(64) {
        let mask = mask_of(&text[base..text.len().min(base + 64)]);
        // The byte before the window, as a bit below bit 0.
        let carry = u64::from(open.is_some());
        let before = (mask << 1) | carry;
        // A token starts at a token byte after a non-token byte, and ends at the first
        // non-token byte after it; starts and ends alternate.
        let mut starts = mask & !before;
        let mut ends = !mask & before;
        loop {
            let start = match open {
                Some(start) => start,
                None if starts == 0 => break,
                None => {
                    let start = base + starts.trailing_zeros() as usize;
                    starts &= starts - 1;
                    start
                }
            };
            if ends == 0 {
                open = Some(start);
                break;
            }
            let end = base + ends.trailing_zeros() as usize;
            ends &= ends - 1;
            f(&text[start..end]);
            open = None;
        }
    }
}

/// The salt of granule `granule` of a block whose seed is `seed`.
fn granule_salt(seed: u16, granule: usize) -> u64 {
    (u64::from(seed) << 16) + granule as u64 + 1
}

/// Bit positions of a token hash in a block filter of `mask + 1` bits (index version 1).
#[inline]
fn bloom_positions(hash: u64, mask: usize, k: u8) -> impl Iterator<Item = usize> {
    let h1 = hash as u32 as usize;
    // Odd, so that the positions differ for every power-of-two size.
    let h2 = ((hash >> 32) as u32 | 1) as usize;
    (0..usize::from(k)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) & mask)
}

/// Bit positions of a token hash in a granule's filter (index version 2) of `bits` bits: the
/// hash is first mixed with the granule's salt (`salt = seed·2^16 + g + 1`, `seed` the block's,
/// `g` the granule's number; `h = m(hash ^ salt·K)`, `m` SplitMix64's finalizer), then the
/// 32-bit `h1 + i·h2` is scaled to the size by a multiply and a shift.
///
/// Why the salt: granules hold mostly the same common words, so with one hash function for all
/// their filters set mostly the same bits, and a word that collides with those bits in one
/// granule collides in thousands. Measured on the 10 M-record store, a word in 1,000 granules
/// of 122,000: with one hash for all, false positives of 120 and 988 granules for two words;
/// salted by the granule's number alone (30-odd functions, repeated in every block), 89 and
/// 612; salted by block and granule, see loadtest/RESULTS.md.
#[inline]
fn granule_positions(hash: u64, salt: u64, bits: usize, k: u8) -> impl Iterator<Item = usize> {
    let mut h = hash ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^= h >> 31;
    let h1 = h as u32;
    let h2 = (h >> 32) as u32 | 1;
    (0..u32::from(k)).map(move |i| {
        let x = h1.wrapping_add(i.wrapping_mul(h2));
        ((u64::from(x) * bits as u64) >> 32) as usize
    })
}

/// The RFC 3339 time of `text` in unix µs, as `chrono::DateTime::parse_from_rfc3339` and then
/// `timestamp_micros` give it. The common form (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`,
/// seconds 0–59) is read directly, about ten times faster; anything else goes to chrono, so the
/// two never disagree.
pub fn rfc3339_micros(text: &[u8]) -> Option<i64> {
    fast_rfc3339_micros(text).or_else(|| {
        let text = std::str::from_utf8(text).ok()?;
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_micros())
    })
}

fn fast_rfc3339_micros(t: &[u8]) -> Option<i64> {
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let mut n = 0i64;
        for &b in t.get(range)? {
            if !b.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i64::from(b - b'0');
        }
        Some(n)
    };
    if t.len() < 20
        || t[4] != b'-'
        || t[7] != b'-'
        || t[10] != b'T'
        || t[13] != b':'
        || t[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut at = 19;
    let mut micros = 0i64;
    if t[at] == b'.' {
        let start = at + 1;
        at = start;
        while t.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let count = at - start;
        if count == 0 || count > 9 {
            return None;
        }
        let fraction = digits(start..start + count.min(6))?;
        micros = fraction * 10i64.pow(6u32.saturating_sub(count as u32));
    }
    let offset_secs = match t.get(at..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (digits(at + 1..at + 3)?, digits(at + 4..at + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    // Month and day were checked above: 1..=12 and 1..=31.
    let days = crate::parse::timestamp::days_from_civil(year, month as u8, day as u8);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(secs * 1_000_000 + micros)
}

/// Calls `f` with the contents of the string at `span` (checked to lie inside `record`, its
/// quotes around it), unescaped as the query reads them when they hold escapes.
#[inline]
fn visit_string_span(record: &[u8], span: &StringSpan, f: &mut dyn FnMut(&[u8])) {
    let (start, end) = (span.start as usize, span.end as usize);
    if span.escaped {
        visit_value(record, (start - 1, end + 1), &mut |text| {
            f(text);
            false
        });
    } else {
        f(&record[start..end]);
    }
}

/// A small set of 32-bit value hashes, or "too many to list".
#[derive(Debug, Default)]
struct KeySet {
    hashes: Vec<u32>,
    many: bool,
    /// The last value added, as written: consecutive records mostly share their host and app,
    /// and comparing the bytes is cheaper than hashing them again (a buffer reused, so no
    /// allocation once it has grown).
    last: Vec<u8>,
}

impl KeySet {
    #[inline]
    fn add(&mut self, value: &[u8]) {
        if self.many || (self.last == value && !self.hashes.is_empty()) {
            return;
        }
        self.last.clear();
        self.last.extend_from_slice(value);
        let hash = token_hash(value) as u32;
        if !self.hashes.contains(&hash) {
            if self.hashes.len() == MAX_KEYS {
                self.many = true;
            } else {
                self.hashes.push(hash);
            }
        }
    }

    fn clear(&mut self) {
        self.hashes.clear();
        self.many = false;
        self.last.clear();
    }
}

/// Which top-level members the index reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Host,
    App,
    Severity,
    Facility,
    Message,
    Timestamp,
    ReceivedAt,
}

impl Key {
    #[inline]
    fn of(name: &[u8]) -> Option<Key> {
        Some(match name {
            b"host" => Key::Host,
            b"app" => Key::App,
            b"severity" => Key::Severity,
            b"facility" => Key::Facility,
            b"message" => Key::Message,
            b"timestamp" => Key::Timestamp,
            b"received_at" => Key::ReceivedAt,
            _ => return None,
        })
    }
}

/// Members remembered per record before the record is known to be a whole object; a record
/// with more is read a second time.
const MAX_MEMBERS: usize = 16;

/// Collects the index of the block being filled, record by record. Its buffers are reused from
/// block to block: adding a record allocates nothing once they have grown.
#[derive(Debug)]
pub(crate) struct IndexBuilder {
    min_time: i64,
    max_time: i64,
    severities: u8,
    facilities: u32,
    flags: u8,
    hosts: KeySet,
    apps: KeySet,
    /// The message tokens of the block (index version 1) or of the granule being filled.
    tokens: TokenHashes,
    /// Granules ended since the last finish (index version 2): their table entries...
    granule_table: Vec<u8>,
    /// ...and their filters, back to back.
    granule_filters: Vec<u8>,
    granule_count: usize,
    /// The salt of this block's granule filters (see [`granule_positions`]): blocks in a row
    /// get different ones.
    seed: u16,
    /// A filter being built, reused.
    scratch: Vec<u64>,
}

/// What the block encoder knows of a granule it has compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GranuleSummary {
    pub compressed_len: u32,
    pub raw_len: u32,
    pub records: u32,
    /// CRC32C of the compressed bytes.
    pub crc: u32,
}

impl Default for IndexBuilder {
    fn default() -> Self {
        IndexBuilder {
            min_time: i64::MAX,
            max_time: i64::MIN,
            severities: 0,
            facilities: 0,
            flags: 0,
            hosts: KeySet::default(),
            apps: KeySet::default(),
            tokens: TokenHashes::default(),
            granule_table: Vec::new(),
            granule_filters: Vec::new(),
            granule_count: 0,
            seed: 0,
            scratch: Vec::new(),
        }
    }
}

impl IndexBuilder {
    /// Adds one stored record (the encoder's JSON object, or any bytes).
    pub fn add(&mut self, record: &[u8]) {
        let mut members = [(Key::Host, (0usize, 0usize)); MAX_MEMBERS];
        let mut count = 0;
        let mut overflow = false;
        let object = record.len() < u32::MAX as usize
            && for_each_member(record, 0, &mut |key, value| {
                if let Some(key) = Key::of(&record[key.0..key.1]) {
                    match members.get_mut(count) {
                        Some(slot) => {
                            *slot = (key, value);
                            count += 1;
                        }
                        None => overflow = true,
                    }
                }
                false
            })
            .is_some();
        if !object {
            // Not an object: the query reads all of it as the message.
            self.add_message(record);
            return;
        }
        if overflow {
            let mut all = Vec::new();
            for_each_member(record, 0, &mut |key, value| {
                if let Some(key) = Key::of(&record[key.0..key.1]) {
                    all.push((key, value));
                }
                false
            });
            self.add_members(record, &all);
        } else {
            self.add_members(record, &members[..count]);
        }
    }

    /// Adds one record of the JSON encoder, from what it said it wrote (`fields`): the same
    /// index as [`Self::add`] builds from the record, without looking for the members in its
    /// JSON (that read was ~16% of the gateway's CPU in the loggen end-to-end profile). Strings
    /// with escapes are unescaped as `add` reads them. A span outside the record, which the
    /// encoder never gives, has the record read as `add` does.
    pub fn add_indexed(&mut self, record: &[u8], fields: &IndexedFields) {
        let fits = |span: &StringSpan| {
            span.start >= 1 && span.start <= span.end && (span.end as usize) < record.len()
        };
        if !fits(&fields.received_at)
            || !fits(&fields.message)
            || !fields.host.as_ref().is_none_or(fits)
            || !fields.app.as_ref().is_none_or(fits)
        {
            return self.add(record);
        }
        // As in `add_members`: the timestamp, else `received_at`, whichever parses first.
        let time = fields.timestamp_us.or_else(|| {
            let mut time = None;
            visit_string_span(record, &fields.received_at, &mut |text| {
                time = rfc3339_micros(text);
            });
            time
        });
        if let Some(time) = time {
            self.flags |= HAS_TIME;
            self.min_time = self.min_time.min(time);
            self.max_time = self.max_time.max(time);
        }
        if let Some(host) = &fields.host {
            let hosts = &mut self.hosts;
            visit_string_span(record, host, &mut |text| hosts.add(text));
        }
        if let Some(app) = &fields.app {
            let apps = &mut self.apps;
            visit_string_span(record, app, &mut |text| apps.add(text));
        }
        // A number as written: `code_of` of its decimal text.
        match fields.severity {
            Some(code) if code <= 7 => self.severities |= 1 << code,
            Some(_) => self.flags |= SEVERITY_OTHER,
            None => {}
        }
        match fields.facility {
            Some(code) if code <= 23 => self.facilities |= 1 << code,
            Some(_) => self.flags |= FACILITY_OTHER,
            None => {}
        }
        let tokens = &mut self.tokens;
        visit_string_span(record, &fields.message, &mut |text| {
            tokens.add_message_tokens(text)
        });
    }

    fn add_members(&mut self, record: &[u8], members: &[(Key, (usize, usize))]) {
        let mut time = None;
        for time_key in [Key::Timestamp, Key::ReceivedAt] {
            for &(key, value) in members {
                if key == time_key && time.is_none() {
                    visit_value(record, value, &mut |text| {
                        time = rfc3339_micros(text);
                        time.is_some()
                    });
                }
            }
        }
        if let Some(time) = time {
            self.flags |= HAS_TIME;
            self.min_time = self.min_time.min(time);
            self.max_time = self.max_time.max(time);
        }
        for &(key, value) in members {
            match key {
                Key::Host => {
                    let hosts = &mut self.hosts;
                    visit_value(record, value, &mut |text| {
                        hosts.add(text);
                        false
                    });
                }
                Key::App => {
                    let apps = &mut self.apps;
                    visit_value(record, value, &mut |text| {
                        apps.add(text);
                        false
                    });
                }
                Key::Severity => {
                    let (codes, flags) = (&mut self.severities, &mut self.flags);
                    visit_value(record, value, &mut |text| {
                        match code_of(text, 7) {
                            Code::Is(code) => *codes |= 1 << code,
                            Code::Other => *flags |= SEVERITY_OTHER,
                            Code::NotANumber => {}
                        }
                        false
                    });
                }
                Key::Facility => {
                    let (codes, flags) = (&mut self.facilities, &mut self.flags);
                    visit_value(record, value, &mut |text| {
                        match code_of(text, 23) {
                            Code::Is(code) => *codes |= 1 << code,
                            Code::Other => *flags |= FACILITY_OTHER,
                            Code::NotANumber => {}
                        }
                        false
                    });
                }
                Key::Message => {
                    let tokens = &mut self.tokens;
                    visit_value(record, value, &mut |text| {
                        tokens.add_message_tokens(text);
                        false
                    });
                }
                Key::Timestamp | Key::ReceivedAt => {}
            }
        }
    }

    fn add_message(&mut self, text: &[u8]) {
        self.tokens.add_message_tokens(text);
    }

    /// Ends a granule (index version 2): the tokens added since the last granule or block are
    /// summed up in the granule's own filter, sized for them and at most [`MAX_GRANULE_SHARE`]
    /// of `granule.compressed_len`.
    pub fn end_granule(&mut self, granule: GranuleSummary) {
        let hashes = self.tokens.distinct();
        let n = hashes.len().max(1);
        let cap = ((f64::from(granule.compressed_len) * MAX_GRANULE_SHARE * 8.0) as usize)
            .max(GRANULE_FLOOR_BITS);
        let words = (n * GRANULE_BITS_PER_TOKEN)
            .min(cap)
            .div_ceil(64)
            .clamp(1, MAX_GRANULE_WORDS);
        let bits = words * 64;
        // The number of hashes that gives the fewest false positives for the bits per token
        // the filter got (m/n · ln 2).
        let k = ((bits as f64 / n as f64) * std::f64::consts::LN_2)
            .round()
            .clamp(1.0, f64::from(MAX_HASHES)) as u8;
        self.scratch.clear();
        self.scratch.resize(words, 0);
        for &hash in hashes {
            for bit in granule_positions(hash, granule_salt(self.seed, self.granule_count), bits, k)
            {
                self.scratch[bit / 64] |= 1 << (bit % 64);
            }
        }
        let t = &mut self.granule_table;
        t.extend_from_slice(&granule.compressed_len.to_le_bytes());
        t.extend_from_slice(&granule.raw_len.to_le_bytes());
        t.extend_from_slice(&granule.records.to_le_bytes());
        t.extend_from_slice(&granule.crc.to_le_bytes());
        t.extend_from_slice(&(words as u16).to_le_bytes());
        t.extend_from_slice(&[k, 0]);
        for w in &self.scratch {
            self.granule_filters.extend_from_slice(&w.to_le_bytes());
        }
        self.granule_count += 1;
        self.tokens.clear();
    }

    /// Granules ended since the last finish.
    pub fn granule_count(&self) -> usize {
        self.granule_count
    }

    /// Appends the index of the granules ended since the last call (index version 2, at least
    /// one) to `out`, checksum included, and starts over.
    pub fn finish_granules_into(&mut self, out: &mut Vec<u8>) {
        debug_assert!(self.granule_count >= 1 && self.granule_count <= MAX_GRANULES);
        let start = out.len();
        let count = (self.granule_count as u16).to_le_bytes();
        let seed = self.seed.to_le_bytes();
        self.write_fixed(
            out,
            GRANULE_INDEX_VERSION,
            0,
            [count[0], count[1], seed[0], seed[1]],
        );
        out.extend_from_slice(&self.granule_table);
        out.extend_from_slice(&self.granule_filters);
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
        self.reset();
        self.seed = self.seed.wrapping_add(1);
    }

    /// Appends the index of the records added since the last call to `out` (index version 1,
    /// one filter for the block; checksum included) and starts over. `compressed_len` is the
    /// size of the block's payload, which bounds the filter's.
    pub fn finish_into(&mut self, compressed_len: usize, out: &mut Vec<u8>) {
        let hashes = self.tokens.distinct();
        let wanted_bits = (hashes.len() as f64 * BITS_PER_TOKEN).max(1.0);
        let budget_bits = (compressed_len as f64 * MAX_BLOOM_SHARE * 8.0).max(1.0);
        let mut log2 = MIN_LOG2;
        while log2 < MAX_LOG2 && f64::from(1u32 << log2) < wanted_bits {
            log2 += 1;
        }
        while log2 > FLOOR_LOG2 && f64::from(1u32 << log2) > budget_bits {
            log2 -= 1;
        }
        let bits = 1usize << log2;
        self.scratch.clear();
        self.scratch.resize(bits / 64, 0);
        for &hash in hashes {
            for bit in bloom_positions(hash, bits - 1, BLOOM_HASHES) {
                self.scratch[bit / 64] |= 1 << (bit % 64);
            }
        }
        let start = out.len();
        self.write_fixed(out, INDEX_VERSION, log2, [BLOOM_HASHES, 0, 0, 0]);
        // Bit p is bit p % 8 of byte p / 8: the words little-endian (log2 >= 6, whole words).
        for w in &self.scratch {
            out.extend_from_slice(&w.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
        self.reset();
    }

    /// The fixed part and the host and app lists: `byte3` and `tail` (bytes 28..32) are what
    /// the two versions lay out differently.
    fn write_fixed(&mut self, out: &mut Vec<u8>, version: u8, byte3: u8, tail: [u8; 4]) {
        if self.hosts.many {
            self.flags |= HOSTS_MANY;
        }
        if self.apps.many {
            self.flags |= APPS_MANY;
        }
        let hosts: &[u32] = if self.hosts.many {
            &[]
        } else {
            &self.hosts.hashes
        };
        let apps: &[u32] = if self.apps.many {
            &[]
        } else {
            &self.apps.hashes
        };
        out.push(version);
        out.push(self.flags);
        out.push(self.severities);
        out.push(byte3);
        out.extend_from_slice(&self.facilities.to_le_bytes());
        out.extend_from_slice(&self.min_time.to_le_bytes());
        out.extend_from_slice(&self.max_time.to_le_bytes());
        out.extend_from_slice(&(hosts.len() as u16).to_le_bytes());
        out.extend_from_slice(&(apps.len() as u16).to_le_bytes());
        out.extend_from_slice(&tail);
        for h in hosts.iter().chain(apps) {
            out.extend_from_slice(&h.to_le_bytes());
        }
    }

    fn reset(&mut self) {
        self.min_time = i64::MAX;
        self.max_time = i64::MIN;
        self.severities = 0;
        self.facilities = 0;
        self.flags = 0;
        self.hosts.clear();
        self.apps.clear();
        self.tokens.clear();
        self.granule_table.clear();
        self.granule_filters.clear();
        self.granule_count = 0;
    }
}

/// log2 of the slots of [`TokenHashes::seen`] (2 KiB, cleared at every granule; a collision
/// only costs a hash and a probe of the exact set).
const SEEN_LOG2: u32 = 8;
const SEEN_SLOTS: usize = 1 << SEEN_LOG2;
/// Slots of [`TokenHashes::long_seen`], and the longest token they hold (8 KiB in all).
const LONG_SEEN_LOG2: u32 = 6;
const LONG_SEEN_SLOTS: usize = 1 << LONG_SEEN_LOG2;
const LONG_SEEN_MAX: usize = 128;
/// Changed parts of a message up to this length are split byte by byte.
const SHORT_CHANGE: usize = 24;
/// Slots of [`TokenHashes::set`] at first (it doubles when half full).
const SET_MIN_SLOTS: usize = 1 << 10;

/// The distinct hashes of the message tokens added since the last clear: a filter is built
/// from them once their number is known.
#[derive(Debug)]
struct TokenHashes {
    /// Each distinct hash once, in the order first added.
    hashes: Vec<u64>,
    /// Open addressing over the nonzero `hashes` (linear probing, 0 is an empty slot), at most
    /// half full. Cleared slot by slot from `hashes`, so a clear costs the tokens added, not
    /// the table. An exact set: the sort and dedup it replaced were ~1.5% of the gateway's CPU.
    set: Vec<u64>,
    /// Whether `hashes` holds 0 (which `set` cannot).
    has_zero: bool,
    /// Tokens of at most eight bytes added since the last clear, direct-mapped by their bytes
    /// (zero-padded, little-endian; 0 is an empty slot, as no token holds a zero byte). Log
    /// messages repeat their words ("GET", "HTTP", a host name...): a token found here needs
    /// neither its hash nor a probe of `set` again.
    seen: Box<[u64; SEEN_SLOTS]>,
    /// Longer tokens (up to [`LONG_SEEN_MAX`] bytes) added since the last clear, direct-mapped
    /// by their length and first and last eight bytes, compared whole: comparing bytes is
    /// cheaper than hashing them (a multiply chain eight bytes at a time), and messages repeat
    /// long tokens too (loggen's ~110-byte padding, paths, ids). `long_lens[i]` is 0 for an
    /// empty slot.
    long_seen: Box<[[u8; LONG_SEEN_MAX]; LONG_SEEN_SLOTS]>,
    long_lens: [u8; LONG_SEEN_SLOTS],
    /// The last message added since the last clear (see [`Self::add_message_tokens`]).
    previous: Vec<u8>,
}

impl Default for TokenHashes {
    fn default() -> Self {
        TokenHashes {
            hashes: Vec::new(),
            set: vec![0; SET_MIN_SLOTS],
            has_zero: false,
            seen: Box::new([0; SEEN_SLOTS]),
            long_seen: Box::new([[0; LONG_SEEN_MAX]; LONG_SEEN_SLOTS]),
            long_lens: [0; LONG_SEEN_SLOTS],
            previous: Vec::new(),
        }
    }
}

/// Whether `a` and `b`, of the same length from 9 to [`LONG_SEEN_MAX`], are equal: eight bytes
/// at a time inline (a `memcmp` call per repeated long token was ~1.7% of the gateway's CPU).
#[inline(always)]
fn same_long_token(a: &[u8], b: &[u8]) -> bool {
    debug_assert!(a.len() == b.len() && a.len() >= 8);
    let len = a.len();
    let mut differ = word_at(a, len - 8) ^ word_at(b, len - 8);
    let mut at = 0;
    while at + 8 < len {
        differ |= word_at(a, at) ^ word_at(b, at);
        at += 8;
    }
    differ == 0
}

/// How many bytes `a` and `b` have in common at their start.
#[inline]
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut at = 0;
    while at + 8 <= n {
        let differ = word_at(a, at) ^ word_at(b, at);
        if differ != 0 {
            return at + differ.trailing_zeros() as usize / 8;
        }
        at += 8;
    }
    at + a[at..n]
        .iter()
        .zip(&b[at..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// How many bytes `a` and `b` have in common at their end.
#[inline]
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut k = 0;
    while k + 8 <= n {
        // The last byte of each window is the word's most significant.
        let differ = word_at(a, a.len() - k - 8) ^ word_at(b, b.len() - k - 8);
        if differ != 0 {
            return k + differ.leading_zeros() as usize / 8;
        }
        k += 8;
    }
    let (a, b) = (&a[..a.len() - k], &b[..b.len() - k]);
    k + a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(n - k)
        .take_while(|(x, y)| x == y)
        .count()
}

#[inline(always)]
fn word_at(s: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[at..at + 8]);
    u64::from_le_bytes(w)
}

impl TokenHashes {
    /// Adds the tokens of one message. Only the part that differs from the previous message of
    /// the granule is tokenized: a token lying wholly in the bytes both messages start with (or
    /// end with), with a separator or the edge on both sides, is one of the previous message's
    /// tokens, so it is in the set already. Messages of one program often share most of their
    /// words in place (loggen's differ in a sequence number; access logs share their tails);
    /// when they do not, the two comparisons stop within the first bytes.
    #[inline]
    fn add_message_tokens(&mut self, text: &[u8]) {
        let previous = std::mem::take(&mut self.previous);
        let prefix = common_prefix(text, &previous);
        if prefix == text.len() && prefix == previous.len() {
            self.previous = previous;
            return;
        }
        let suffix = common_suffix(text, &previous).min(text.len().min(previous.len()) - prefix);
        // Back to the start of the token the first difference is in (or right after).
        let mut start = prefix;
        while start > 0 && is_token_byte(text[start - 1]) {
            start -= 1;
        }
        // On to the end of the token the last difference is in (or right before).
        let mut end = text.len() - suffix;
        while end < text.len() && is_token_byte(text[end]) {
            end += 1;
        }
        let changed = &text[start..end];
        if changed.len() <= SHORT_CHANGE {
            // Typically one token (a counter, an id): a byte loop costs less than setting up
            // the vector classifier's windows.
            for token in changed.split(|&b| !is_token_byte(b)) {
                if !token.is_empty() {
                    self.insert(token);
                }
            }
        } else {
            for_each_token(changed, |token| self.insert(token));
        }
        self.previous = previous;
        self.previous.clear();
        self.previous.extend_from_slice(text);
    }

    /// The one place a token enters the index (whatever feeds the builder).
    #[inline(always)]
    fn insert(&mut self, token: &[u8]) {
        let len = token.len();
        if len <= 8 {
            let word = load_padded(token);
            // Fibonacci hashing: the top bits of the product mix every byte of the word.
            let slot = (word.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SEEN_LOG2)) as usize;
            if self.seen[slot] == word {
                return;
            }
            self.seen[slot] = word;
        } else if len <= LONG_SEEN_MAX {
            let key = load_padded(&token[..8])
                ^ load_padded(&token[len - 8..]).rotate_left(29)
                ^ len as u64;
            let slot = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - LONG_SEEN_LOG2)) as usize;
            let cached = &mut self.long_seen[slot];
            if usize::from(self.long_lens[slot]) == len && same_long_token(&cached[..len], token) {
                return;
            }
            cached[..len].copy_from_slice(token);
            self.long_lens[slot] = len as u8;
        }
        self.add_hash(token_hash(token));
    }

    /// Adds `hash` unless the set holds it already.
    #[inline]
    fn add_hash(&mut self, hash: u64) {
        if hash == 0 {
            if !self.has_zero {
                self.has_zero = true;
                self.hashes.push(0);
            }
            return;
        }
        let mask = self.set.len() - 1;
        // The hash is already well mixed: its low bits are the home slot.
        let mut slot = hash as usize & mask;
        loop {
            match self.set[slot] {
                0 => break,
                k if k == hash => return,
                _ => slot = (slot + 1) & mask,
            }
        }
        self.set[slot] = hash;
        self.hashes.push(hash);
        if 2 * self.hashes.len() > self.set.len() {
            self.grow();
        }
    }

    /// Doubles the set and places every hash again.
    fn grow(&mut self) {
        let slots = 2 * self.set.len();
        self.set.clear();
        self.set.resize(slots, 0);
        let mask = slots - 1;
        for &hash in self.hashes.iter().filter(|&&h| h != 0) {
            let mut slot = hash as usize & mask;
            while self.set[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            self.set[slot] = hash;
        }
    }

    /// The distinct hashes added since the last clear.
    fn distinct(&self) -> &[u64] {
        &self.hashes
    }

    fn clear(&mut self) {
        if self.set.len() > SET_MIN_SLOTS {
            // A granule of a huge record: give the memory back.
            self.set = vec![0; SET_MIN_SLOTS];
        } else {
            let mask = self.set.len() - 1;
            for &hash in self.hashes.iter().filter(|&&h| h != 0) {
                let mut slot = hash as usize & mask;
                // Slots emptied before this one do not end the probe: `hash` is still here.
                while self.set[slot] != hash {
                    slot = (slot + 1) & mask;
                }
                self.set[slot] = 0;
            }
        }
        self.has_zero = false;
        self.hashes.clear();
        self.previous.clear();
        self.seen.fill(0);
        self.long_lens.fill(0);
    }
}

/// A severity or facility value as the query's comparisons read it.
enum Code {
    /// A whole number from 0 to the field's largest code.
    Is(u8),
    /// A number, but not one of the codes.
    Other,
    /// Not a number: no comparison holds for it.
    NotANumber,
}

/// Reads `text` as the query does (`trim`, then `f64`).
#[inline]
fn code_of(text: &[u8], max: u8) -> Code {
    if let [digit @ b'0'..=b'9'] = text {
        let code = digit - b'0';
        return if code <= max {
            Code::Is(code)
        } else {
            Code::Other
        };
    }
    match std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.trim().parse::<f64>().ok())
    {
        None => Code::NotANumber,
        Some(n) if n >= 0.0 && n <= f64::from(max) && n.fract() == 0.0 => Code::Is(n as u8),
        Some(_) => Code::Other,
    }
}

/// A block's index, read back and checked (see [`BlockIndex::parse`]), or the view of one
/// granule of it ([`BlockIndex::granules`]): the block's time range, codes, hosts and apps, and
/// the granule's own token filter. Either way, its answers hold for every record it covers.
#[derive(Debug, Clone, Copy)]
pub struct BlockIndex<'a> {
    flags: u8,
    severities: u8,
    facilities: u32,
    min_time: i64,
    max_time: i64,
    hosts: &'a [u8],
    apps: &'a [u8],
    tokens: TokenFilter<'a>,
    /// Index version 2: the granule table...
    granule_table: &'a [u8],
    /// ...and the granules' filters, back to back.
    granule_filters: &'a [u8],
    /// The block's salt of its granule filters, little-endian (index version 2).
    seed: [u8; 2],
}

/// The token filter of what a [`BlockIndex`] covers.
#[derive(Debug, Clone, Copy)]
enum TokenFilter<'a> {
    /// None at this level (a block of granules, whose filters are in the granules): any token
    /// may be there.
    Any,
    /// Index version 1: `2^n` bits, positions modulo the size ([`bloom_positions`]).
    PowerOfTwo { bits: &'a [u8], hashes: u8 },
    /// Granule `granule`'s: whole 64-bit words, positions by multiply-shift
    /// ([`granule_positions`]).
    Sized {
        bits: &'a [u8],
        hashes: u8,
        /// See [`granule_positions`].
        salt: u64,
    },
}

/// One entry of a block's granule table (index version 2), with where the granule starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GranuleEntry {
    /// Offset of the compressed granule from the start of the block's payload.
    pub offset: u32,
    pub summary: GranuleSummary,
}

/// Why an index does not check out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IndexCorruption {
    #[error("block index checksum mismatch")]
    Checksum,
    #[error("block index field out of range: {0}")]
    Field(&'static str),
}

fn le_u32(b: &[u8]) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[..4]);
    u32::from_le_bytes(v)
}

fn le_i64(b: &[u8]) -> i64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[..8]);
    i64::from_le_bytes(v)
}

impl<'a> BlockIndex<'a> {
    /// Checks the checksum and every length of an encoded index (all of it, checksum included).
    ///
    /// # Errors
    /// What does not check out.
    pub fn parse(b: &'a [u8]) -> Result<BlockIndex<'a>, IndexCorruption> {
        if b.len() < MIN_INDEX_LEN || b.len() > MAX_GRANULE_INDEX_LEN {
            return Err(IndexCorruption::Field("length"));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32c::crc32c(body) != le_u32(crc) {
            return Err(IndexCorruption::Checksum);
        }
        let version = body[0];
        if version != INDEX_VERSION && version != GRANULE_INDEX_VERSION {
            return Err(IndexCorruption::Field("version"));
        }
        if version == INDEX_VERSION && b.len() > MAX_INDEX_LEN {
            return Err(IndexCorruption::Field("length"));
        }
        let flags = body[1];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(IndexCorruption::Field("flags"));
        }
        let facilities = le_u32(&body[4..]);
        if facilities >> 24 != 0 {
            return Err(IndexCorruption::Field("facility bitmap"));
        }
        let (min_time, max_time) = (le_i64(&body[8..]), le_i64(&body[16..]));
        let hosts = usize::from(u16::from_le_bytes([body[24], body[25]]));
        let apps = usize::from(u16::from_le_bytes([body[26], body[27]]));
        if hosts > MAX_KEYS || apps > MAX_KEYS {
            return Err(IndexCorruption::Field("key count"));
        }
        if flags & HAS_TIME != 0 && min_time > max_time {
            return Err(IndexCorruption::Field("time range"));
        }
        let keys_end = INDEX_FIXED_LEN + 4 * (hosts + apps);
        if body.len() < keys_end {
            return Err(IndexCorruption::Field("length"));
        }
        let mut index = BlockIndex {
            flags,
            severities: body[2],
            facilities,
            min_time,
            max_time,
            hosts: &body[INDEX_FIXED_LEN..INDEX_FIXED_LEN + 4 * hosts],
            apps: &body[INDEX_FIXED_LEN + 4 * hosts..keys_end],
            tokens: TokenFilter::Any,
            granule_table: &[],
            granule_filters: &[],
            seed: [body[30], body[31]],
        };
        let rest = &body[keys_end..];
        if version == INDEX_VERSION {
            let log2 = body[3];
            if !(MIN_LOG2..=MAX_LOG2).contains(&log2) {
                return Err(IndexCorruption::Field("bloom size"));
            }
            let hashes = body[28];
            if !(1..=MAX_HASHES).contains(&hashes) {
                return Err(IndexCorruption::Field("bloom hashes"));
            }
            if rest.len() != (1usize << log2) / 8 {
                return Err(IndexCorruption::Field("length"));
            }
            index.tokens = TokenFilter::PowerOfTwo { bits: rest, hashes };
            return Ok(index);
        }
        if body[3] != 0 {
            return Err(IndexCorruption::Field("reserved"));
        }
        let count = usize::from(u16::from_le_bytes([body[28], body[29]]));
        if !(1..=MAX_GRANULES).contains(&count) {
            return Err(IndexCorruption::Field("granule count"));
        }
        let table_len = count * GRANULE_ENTRY_LEN;
        if rest.len() < table_len {
            return Err(IndexCorruption::Field("length"));
        }
        let (table, filters) = rest.split_at(table_len);
        let mut filter_bytes = 0usize;
        for entry in table.chunks_exact(GRANULE_ENTRY_LEN) {
            let summary = granule_summary(entry);
            if summary.compressed_len == 0 || summary.records == 0 {
                return Err(IndexCorruption::Field("empty granule"));
            }
            if u64::from(summary.records) * 12 > u64::from(summary.raw_len) {
                return Err(IndexCorruption::Field("granule record count"));
            }
            let words = usize::from(u16::from_le_bytes([entry[16], entry[17]]));
            if !(1..=MAX_GRANULE_WORDS).contains(&words) {
                return Err(IndexCorruption::Field("granule filter size"));
            }
            if !(1..=MAX_HASHES).contains(&entry[18]) || entry[19] != 0 {
                return Err(IndexCorruption::Field("granule filter hashes"));
            }
            filter_bytes += 8 * words;
        }
        if filters.len() != filter_bytes {
            return Err(IndexCorruption::Field("length"));
        }
        index.granule_table = table;
        index.granule_filters = filters;
        Ok(index)
    }

    /// The number of granules of a block of format version 3 (0 for version 2: the block is one
    /// piece, and the index its filter).
    pub fn granule_count(&self) -> usize {
        self.granule_table.len() / GRANULE_ENTRY_LEN
    }

    /// The view of each granule, in order: the block's index with the granule's token filter.
    pub fn granules(&self) -> impl Iterator<Item = BlockIndex<'a>> + use<'a> {
        let block = *self;
        let seed = u16::from_le_bytes([self.seed[0], self.seed[1]]);
        let mut filters = self.granule_filters;
        self.granule_table
            .chunks_exact(GRANULE_ENTRY_LEN)
            .enumerate()
            .map(move |(granule, entry)| {
                let words = usize::from(u16::from_le_bytes([entry[16], entry[17]]));
                // `parse` checked that the filters add up to exactly what is there.
                let (bits, rest) = filters.split_at((8 * words).min(filters.len()));
                filters = rest;
                BlockIndex {
                    tokens: TokenFilter::Sized {
                        bits,
                        hashes: entry[18],
                        salt: granule_salt(seed, granule),
                    },
                    granule_table: &[],
                    granule_filters: &[],
                    ..block
                }
            })
    }

    /// Where each granule is and what it holds, in order.
    pub(crate) fn granule_entries(&self) -> impl Iterator<Item = GranuleEntry> + use<'a> {
        let mut offset = 0u32;
        self.granule_table
            .chunks_exact(GRANULE_ENTRY_LEN)
            .map(move |entry| {
                let summary = granule_summary(entry);
                let at = offset;
                offset = offset.saturating_add(summary.compressed_len);
                GranuleEntry {
                    offset: at,
                    summary,
                }
            })
    }

    /// The smallest and largest record time (see the module doc), if some record has one.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        (self.flags & HAS_TIME != 0).then_some((self.min_time, self.max_time))
    }

    /// Whether some record may have a severity among `codes` (bit `c` for code `c`).
    pub fn may_have_severity(&self, codes: u8) -> bool {
        self.flags & SEVERITY_OTHER != 0 || self.severities & codes != 0
    }

    /// Whether some record may have a facility among `codes` (bit `c` for code `c`).
    pub fn may_have_facility(&self, codes: u32) -> bool {
        self.flags & FACILITY_OTHER != 0 || self.facilities & codes != 0
    }

    /// Whether some record may have a host whose [`token_hash`] is `hash`.
    pub fn may_have_host(&self, hash: u64) -> bool {
        self.flags & HOSTS_MANY != 0 || contains_key(self.hosts, hash)
    }

    /// Whether some record may have an app whose [`token_hash`] is `hash`.
    pub fn may_have_app(&self, hash: u64) -> bool {
        self.flags & APPS_MANY != 0 || contains_key(self.apps, hash)
    }

    /// Whether some record's message may have a token whose [`token_hash`] is `hash`.
    #[inline]
    pub fn may_have_token(&self, hash: u64) -> bool {
        let has = |bits: &[u8], bit: usize| bits[bit / 8] & (1 << (bit % 8)) != 0;
        match self.tokens {
            TokenFilter::Any => true,
            TokenFilter::PowerOfTwo { bits, hashes } => {
                bloom_positions(hash, bits.len() * 8 - 1, hashes).all(|bit| has(bits, bit))
            }
            TokenFilter::Sized { bits, hashes, salt } => {
                granule_positions(hash, salt, bits.len() * 8, hashes).all(|bit| has(bits, bit))
            }
        }
    }

    /// Size of the token filter in bytes (0 for a block of granules: see [`Self::granules`]).
    pub fn bloom_bytes(&self) -> usize {
        match self.tokens {
            TokenFilter::Any => 0,
            TokenFilter::PowerOfTwo { bits, .. } | TokenFilter::Sized { bits, .. } => bits.len(),
        }
    }
}

/// The fields of a granule table entry (its length checked by the caller).
fn granule_summary(entry: &[u8]) -> GranuleSummary {
    GranuleSummary {
        compressed_len: le_u32(entry),
        raw_len: le_u32(&entry[4..]),
        records: le_u32(&entry[8..]),
        crc: le_u32(&entry[12..]),
    }
}

fn contains_key(list: &[u8], hash: u64) -> bool {
    let want = (hash as u32).to_le_bytes();
    list.chunks_exact(4).any(|h| h == want)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn index_of(records: &[&str], compressed_len: usize) -> Vec<u8> {
        let mut builder = IndexBuilder::default();
        for r in records {
            builder.add(r.as_bytes());
        }
        let mut out = Vec::new();
        builder.finish_into(compressed_len, &mut out);
        out
    }

    #[test]
    fn lower8_lowercases_exactly_the_ascii_capitals() {
        for b in 0..=255u8 {
            let w = u64::from_le_bytes([b, b'A', b'z', b'@', b'[', b'Z', 0xC3, b'0']);
            let want = u64::from_le_bytes([
                b.to_ascii_lowercase(),
                b'a',
                b'z',
                b'@',
                b'[',
                b'z',
                0xC3,
                b'0',
            ]);
            assert_eq!(lower8(w), want, "byte {b:#x}");
        }
    }

    /// `token_hash(b"timeout")` as index version 1 defines it.
    const PINNED_TIMEOUT_HASH: u64 = 6_325_917_736_831_256_738;

    #[test]
    fn token_mask8_agrees_with_is_token_byte() {
        for b in 0..=255u8 {
            for other in [b'a', b'Z', b'0', b'_', 0xC3, b' ', b'-'] {
                let bytes = [other, b, other, other, b'x', other, b, b'@'];
                let want = bytes
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| is_token_byte(**b))
                    .fold(0u64, |m, (i, _)| m | 1 << i);
                assert_eq!(token_mask8(u64::from_le_bytes(bytes)), want, "{bytes:?}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn token_mask16_agrees_with_is_token_byte() {
        for b in 0..=255u8 {
            for at in 0..16 {
                for other in [b'a', b'Z', b'0', b'_', 0xC3, b' ', b'-', b'@', b'`', b'{'] {
                    let mut bytes = [other; 16];
                    bytes[at] = b;
                    bytes[(at + 7) % 16] = b'x';
                    let want = bytes
                        .iter()
                        .enumerate()
                        .filter(|(_, b)| is_token_byte(**b))
                        .fold(0u64, |m, (i, _)| m | 1 << i);
                    // SAFETY: SSE2 is in the x86-64 baseline.
                    assert_eq!(unsafe { super::token_mask16(bytes) }, want, "{bytes:?}");
                }
            }
        }
    }

    /// The byte-by-byte definition the tokenizer must agree with.
    fn tokens_one_byte_at_a_time(text: &[u8]) -> Vec<Vec<u8>> {
        text.split(|&b| !is_token_byte(b))
            .filter(|t| !t.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    #[test]
    fn tokens_longer_than_a_window_are_whole() {
        for len in [63, 64, 65, 127, 128, 200] {
            for offset in 0..3 {
                let mut text = vec![b' '; offset];
                text.extend(std::iter::repeat_n(b'x', len));
                text.extend_from_slice(b" y");
                let mut tokens = Vec::new();
                for_each_token(&text, |t| tokens.push(t.to_vec()));
                assert_eq!(
                    tokens,
                    tokens_one_byte_at_a_time(&text),
                    "{len} at {offset}"
                );
                assert_eq!(tokens.len(), 2);
            }
        }
    }

    /// `token_hash` as index version 1 first wrote it: each chunk copied into a zeroed array.
    fn token_hash_reference(bytes: &[u8]) -> u64 {
        const K1: u64 = 0x9E37_79B9_7F4A_7C15;
        const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;
        let mut h = 0x243F_6A88_85A3_08D3 ^ (bytes.len() as u64).wrapping_mul(K1);
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            h = ((h ^ lower8(u64::from_le_bytes(w))).wrapping_mul(K2)).rotate_left(31);
        }
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^ (h >> 31)
    }

    #[test]
    fn token_hash_agrees_with_the_reference_at_every_length() {
        let bytes: Vec<u8> = (0..40u8).map(|i| b'A' + i).collect();
        for len in 0..=bytes.len() {
            assert_eq!(
                token_hash(&bytes[..len]),
                token_hash_reference(&bytes[..len]),
                "length {len}"
            );
        }
    }

    proptest! {
        #[test]
        fn tokenizer_agrees_with_one_byte_at_a_time(
            text in proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'Z'), Just(b'_'), Just(b'7'), Just(b' '),
                    Just(b'-'), Just(b'"'), Just(0xC3u8), Just(0x9Fu8), any::<u8>()],
                0..300,
            ),
        ) {
            let mut tokens = Vec::new();
            for_each_token(&text, |t| tokens.push(t.to_vec()));
            prop_assert_eq!(&tokens, &tokens_one_byte_at_a_time(&text));
            // The classifier that CPUs without AVX2 use, whatever this one has.
            let mut portable = Vec::new();
            tokens_by_mask(&text, |t| portable.push(t.to_vec()), token_mask64);
            prop_assert_eq!(portable, tokens);
        }

        #[test]
        fn messages_tokenized_by_difference_give_every_token(
            template in proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'7'), Just(b' '), Just(b'-'), Just(0xC3u8)],
                0..40,
            ),
            edits in proptest::collection::vec(
                (any::<prop::sample::Index>(), 0..4usize, proptest::collection::vec(
                    prop_oneof![Just(b'b'), Just(b'7'), Just(b' '), Just(b'_')], 0..4)),
                1..12,
            ),
        ) {
            // Messages that share most of their bytes with the one before, in place or
            // shifted: each is the last with a few bytes replaced, removed or inserted.
            let mut messages = vec![template.clone()];
            for (at, remove, insert) in edits {
                let mut m = messages.last().unwrap().clone();
                let at = if m.is_empty() { 0 } else { at.index(m.len() + 1) };
                let remove = remove.min(m.len() - at);
                m.splice(at..at + remove, insert);
                messages.push(m);
            }
            let mut t = TokenHashes::default();
            let mut want = std::collections::BTreeSet::new();
            for m in &messages {
                t.add_message_tokens(m);
                for token in tokens_one_byte_at_a_time(m) {
                    want.insert(token_hash(&token));
                }
            }
            let got: std::collections::BTreeSet<u64> = t.distinct().iter().copied().collect();
            prop_assert_eq!(got.len(), t.distinct().len());
            prop_assert_eq!(got, want);
        }

        #[test]
        fn token_hash_agrees_with_the_reference(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(token_hash(&bytes), token_hash_reference(&bytes));
        }
    }

    #[test]
    fn token_hash_ignores_ascii_case_only() {
        assert_eq!(token_hash(b"TimeOut"), token_hash(b"timeout"));
        assert_eq!(
            token_hash(b"A_LONGER_TOKEN_THAN_8"),
            token_hash(b"a_longer_token_than_8")
        );
        assert_ne!(token_hash(b"timeout"), token_hash(b"timeouts"));
        assert_ne!(
            token_hash("GRÜSSE".as_bytes()),
            token_hash("grüsse".as_bytes())
        );
        // Zero padding of the last chunk does not make a token equal to a longer one.
        assert_ne!(token_hash(b"ab"), token_hash(b"ab\0"));
        // Every byte counts, however long the token (the format of index version 1).
        let long = [b'x'; 40];
        let mut other = long;
        other[39] = b'y';
        assert_ne!(token_hash(&long), token_hash(&other));
        // Pinned: stores on disk hold these hashes.
        assert_eq!(token_hash(b"timeout"), PINNED_TIMEOUT_HASH);
    }

    #[test]
    fn tokens_are_runs_of_token_bytes() {
        let mut tokens = Vec::new();
        for_each_token(
            "GET /api/v1?id=42 grüße issue#7_x ABCDEFGHIJ_0123456789xyz.".as_bytes(),
            |t| {
                tokens.push(String::from_utf8_lossy(t).into_owned());
            },
        );
        assert_eq!(
            tokens,
            [
                "GET",
                "api",
                "v1",
                "id",
                "42",
                "grüße",
                "issue",
                "7_x",
                "ABCDEFGHIJ_0123456789xyz"
            ]
        );
    }

    #[test]
    fn the_index_holds_what_the_records_have() {
        let encoded = index_of(
            &[
                r#"{"facility":16,"severity":3,"timestamp":"2026-11-21T10:00:00Z","host":"Web-01","app":"nginx","message":"upstream Timed out\nretry","received_at":"2026-11-21T10:00:05Z"}"#,
                r#"{"severity":"2.5","host":["db-1","db-2"],"message":"x","received_at":"2026-11-21T09:00:00Z"}"#,
                "not json at all: kernel panic",
            ],
            100_000,
        );
        let index = BlockIndex::parse(&encoded).unwrap();
        assert_eq!(
            index.time_range(),
            Some((1_795_251_600_000_000, 1_795_255_200_000_000))
        );
        assert!(index.may_have_severity(1 << 3));
        // 2.5 is a number but no code: every comparison may match.
        assert!(index.may_have_severity(1 << 7));
        assert!(index.may_have_facility(1 << 16));
        assert!(!index.may_have_facility(1 << 17));
        for host in ["web-01", "db-1", "db-2"] {
            assert!(index.may_have_host(token_hash(host.as_bytes())), "{host}");
        }
        assert!(!index.may_have_host(token_hash(b"web-02")));
        assert!(index.may_have_app(token_hash(b"NGINX")));
        assert!(!index.may_have_app(token_hash(b"sshd")));
        for word in [
            "upstream", "timed", "out", "retry", "kernel", "panic", "json", "x",
        ] {
            assert!(index.may_have_token(token_hash(word.as_bytes())), "{word}");
        }
        // `\n` is an escape: "nretry" is not a token of the message.
        let absent = [
            "nretry", "host", "message", "severity", "db", "timeouts", "web",
        ];
        assert_eq!(
            absent
                .iter()
                .filter(|w| index.may_have_token(token_hash(w.as_bytes())))
                .count(),
            0
        );
    }

    #[test]
    fn a_word_of_the_last_block_is_indexed_again_in_the_next() {
        let mut builder = IndexBuilder::default();
        let mut indexes = Vec::new();
        for _ in 0..2 {
            builder.add(br#"{"message":"alpha alpha beta_long_token_here"}"#);
            let mut out = Vec::new();
            builder.finish_into(100_000, &mut out);
            indexes.push(out);
        }
        for encoded in &indexes {
            let index = BlockIndex::parse(encoded).unwrap();
            assert!(index.may_have_token(token_hash(b"alpha")));
            assert!(index.may_have_token(token_hash(b"beta_long_token_here")));
        }
        assert_eq!(indexes[0], indexes[1]);
    }

    #[test]
    fn long_tokens_that_share_a_cache_slot_are_each_indexed() {
        // Same length, same first and last eight bytes: the same slot of the long-token cache,
        // which must not take one for the other.
        let tokens: Vec<String> = (b'a'..=b'z')
            .map(|c| format!("prefix00{}suffix00", c as char))
            .chain(["x".repeat(LONG_SEEN_MAX), "y".repeat(LONG_SEEN_MAX + 1)])
            .collect();
        let records: Vec<String> = tokens
            .iter()
            .map(|t| format!(r#"{{"message":"{t} {t}"}}"#))
            .collect();
        let refs: Vec<&str> = records.iter().map(String::as_str).collect();
        let encoded = index_of(&refs, 10_000_000);
        let index = BlockIndex::parse(&encoded).unwrap();
        for token in &tokens {
            assert!(
                index.may_have_token(token_hash(token.as_bytes())),
                "{token}"
            );
        }
    }

    #[test]
    fn many_hosts_cannot_rule_out_a_host() {
        let records: Vec<String> = (0..=MAX_KEYS)
            .map(|i| format!(r#"{{"host":"h{i}","message":"m"}}"#))
            .collect();
        let refs: Vec<&str> = records.iter().map(String::as_str).collect();
        let encoded = index_of(&refs, 100_000);
        let index = BlockIndex::parse(&encoded).unwrap();
        assert!(index.may_have_host(token_hash(b"never-seen")));
        assert!(!index.may_have_app(token_hash(b"never-seen")));
        assert_eq!(index.time_range(), None);
    }

    #[test]
    fn bloom_is_sized_per_token_and_keeps_false_positives_low() {
        // 3,000 distinct tokens in a block whose payload is large enough not to cap the filter.
        let records: Vec<String> = (0..1000)
            .map(|i| format!(r#"{{"message":"alpha{i} beta{i} gamma{i}"}}"#))
            .collect();
        let refs: Vec<&str> = records.iter().map(String::as_str).collect();
        let encoded = index_of(&refs, 10_000_000);
        let index = BlockIndex::parse(&encoded).unwrap();
        // 3,000 × 10 bits → the next power of two, 32768 bits.
        assert_eq!(index.bloom_bytes(), 4096);
        for i in 0..1000 {
            assert!(index.may_have_token(token_hash(format!("beta{i}").as_bytes())));
        }
        let false_positives = (0..100_000)
            .filter(|i| index.may_have_token(token_hash(format!("delta{i}").as_bytes())))
            .count();
        // Expected about 0.3% at 10.9 bits per token with four hashes.
        assert!(false_positives < 1_000, "{false_positives} of 100000");

        // The same records in a payload of 40 KB: capped at 2.5% of it (1 KB, 8192 bits).
        let capped = index_of(&refs, 40_000);
        assert_eq!(BlockIndex::parse(&capped).unwrap().bloom_bytes(), 512);
        // A tiny block gets at least 256 bytes, and a filter never larger than it needs.
        let tiny = index_of(&[r#"{"message":"a b c"}"#], 100);
        assert_eq!(BlockIndex::parse(&tiny).unwrap().bloom_bytes(), 8);
        assert_eq!(tiny.len(), MIN_INDEX_LEN + 8);
    }

    /// An index of version 2 with one granule per slice of `granules`.
    fn granular_index_of(granules: &[Vec<String>], compressed_len: u32) -> Vec<u8> {
        let mut builder = IndexBuilder::default();
        for records in granules {
            for r in records {
                builder.add(r.as_bytes());
            }
            builder.end_granule(GranuleSummary {
                compressed_len,
                raw_len: compressed_len * 3,
                records: records.len() as u32,
                crc: 7,
            });
        }
        let mut out = Vec::new();
        builder.finish_granules_into(&mut out);
        out
    }

    #[test]
    fn common_prefix_and_suffix_count_equal_bytes() {
        for (a, b, prefix, suffix) in [
            ("", "", 0, 0),
            ("abc", "abd", 2, 0),
            (
                "seq: 0000000001, thread: 0000 PADDPADD",
                "seq: 0000000002, thread: 0000 PADDPADD",
                14,
                23,
            ),
            ("x123456789012345678", "y123456789012345678", 0, 18),
            (
                "same bytes of more than eight",
                "same bytes of more than eight",
                29,
                29,
            ),
            ("short", "shorter", 5, 0),
            ("ends", "friends", 0, 4),
        ] {
            assert_eq!(
                common_prefix(a.as_bytes(), b.as_bytes()),
                prefix,
                "{a:?} {b:?}"
            );
            assert_eq!(
                common_suffix(a.as_bytes(), b.as_bytes()),
                suffix,
                "{a:?} {b:?}"
            );
        }
    }

    #[test]
    fn token_hashes_hold_each_hash_once_through_growth_and_clears() {
        let mut t = TokenHashes::default();
        // 0 and 1 (0 cannot be a slot's key), and hashes sharing home slots (multiples of the
        // table size), past the size at which the set doubles.
        let wanted: Vec<u64> = [0, 1]
            .into_iter()
            .chain((1..3_000u64).map(|i| i * SET_MIN_SLOTS as u64))
            .collect();
        for round in 0..3 {
            for _ in 0..2 {
                for &h in wanted.iter().rev() {
                    t.add_hash(h);
                }
            }
            let mut got = t.distinct().to_vec();
            got.sort_unstable();
            assert_eq!(got, wanted, "round {round}");
            t.clear();
            assert!(t.distinct().is_empty());
            assert!(t.set.iter().all(|&k| k == 0), "round {round}");
            // The small case: cleared slot by slot.
            for &h in &wanted[..100] {
                t.add_hash(h);
            }
            assert_eq!(t.distinct().len(), 100);
            t.clear();
            assert!(t.set.iter().all(|&k| k == 0), "round {round}");
        }
    }

    #[test]
    fn granule_filters_are_sized_per_distinct_token_and_answer_per_granule() {
        // Granule g holds alpha{g}_{i} and the common words of every granule.
        let granules: Vec<Vec<String>> = (0..3)
            .map(|g| {
                (0..100)
                    .map(|i| format!(r#"{{"message":"GET common alpha{g}_{i} Alpha{g}_{i}"}}"#))
                    .collect()
            })
            .collect();
        let encoded = granular_index_of(&granules, 100_000);
        let index = BlockIndex::parse(&encoded).unwrap();
        assert_eq!(index.granule_count(), 3);
        // The block's own view rules no word out; each granule's, exactly its words.
        assert!(index.may_have_token(token_hash(b"nowhere")));
        assert_eq!(index.bloom_bytes(), 0);
        let views: Vec<_> = index.granules().collect();
        for (g, view) in views.iter().enumerate() {
            // 102 distinct tokens × 15 bits = 1530 bits → 24 words.
            assert_eq!(view.bloom_bytes(), 24 * 8, "granule {g}");
            for i in 0..100 {
                assert!(view.may_have_token(token_hash(format!("alpha{g}_{i}").as_bytes())));
            }
            assert!(view.may_have_token(token_hash(b"common")));
            assert!(view.may_have_token(token_hash(b"get")));
        }
        let entries: Vec<_> = index.granule_entries().collect();
        assert_eq!(
            entries.iter().map(|e| e.offset).collect::<Vec<_>>(),
            [0, 100_000, 200_000]
        );
        assert_eq!(entries[1].summary.records, 100);
        // Words of another granule, and absent words: rarely a false positive (~0.1% at 15
        // bits per token; 30,000 tests, some 30 expected).
        let mut false_positives = 0;
        for (g, view) in views.iter().enumerate() {
            for i in 0..10_000 {
                let other = (g + 1) % 3;
                false_positives += usize::from(
                    view.may_have_token(token_hash(format!("alpha{other}_{i}").as_bytes()))
                        && i >= 100,
                );
                false_positives +=
                    usize::from(view.may_have_token(token_hash(format!("zeta{i}").as_bytes())));
            }
        }
        assert!(false_positives < 120, "{false_positives} of 60000");
        for i in 0..100 {
            let other = token_hash(format!("alpha1_{i}").as_bytes());
            assert!(
                views[0].may_have_token(other) as usize + views[2].may_have_token(other) as usize
                    <= 1
            );
        }

        // A granule that compresses very well: its filter is capped at 2.7% of its compressed
        // bytes (here 2,000 × 0.027 × 8 = 432 bits), then at least 512 bits (8 words).
        let capped = granular_index_of(&granules[..1], 2_000);
        let view = BlockIndex::parse(&capped)
            .unwrap()
            .granules()
            .next()
            .unwrap();
        assert_eq!(view.bloom_bytes(), 64);
        // Still every word of it.
        for i in 0..100 {
            assert!(view.may_have_token(token_hash(format!("alpha0_{i}").as_bytes())));
        }
    }

    #[test]
    fn a_damaged_granule_index_is_refused() {
        let granules = vec![
            vec![r#"{"host":"a","message":"m n"}"#.to_string()],
            vec!["raw words".to_string()],
        ];
        let encoded = granular_index_of(&granules, 1000);
        assert!(BlockIndex::parse(&encoded).is_ok());
        for at in 0..encoded.len() {
            let mut bad = encoded.clone();
            bad[at] ^= 0x10;
            assert!(BlockIndex::parse(&bad).is_err(), "flip at {at}");
        }
        assert!(BlockIndex::parse(&encoded[..encoded.len() - 1]).is_err());
        // A table that lies, with a checksum made to match: refused by its lengths.
        let mut lying = encoded.clone();
        let table = INDEX_FIXED_LEN + 4; // one host
        lying[table + 16] = 99; // granule 0's filter words
        let body = lying.len() - 4;
        let crc = crc32c::crc32c(&lying[..body]);
        lying[body..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            BlockIndex::parse(&lying).err(),
            Some(IndexCorruption::Field("length"))
        );
    }

    #[test]
    fn a_damaged_index_is_refused() {
        let encoded = index_of(&[r#"{"host":"a","message":"m"}"#], 1000);
        assert!(BlockIndex::parse(&encoded).is_ok());
        for at in 0..encoded.len() {
            let mut bad = encoded.clone();
            bad[at] ^= 0x10;
            assert!(BlockIndex::parse(&bad).is_err(), "flip at {at}");
        }
        assert_eq!(
            BlockIndex::parse(&encoded[..encoded.len() - 1]).err(),
            Some(IndexCorruption::Checksum)
        );
        assert!(BlockIndex::parse(&[]).is_err());
    }

    fn chrono_micros(text: &str) -> Option<i64> {
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_micros())
    }

    #[test]
    fn rfc3339_agrees_with_chrono() {
        for text in [
            "2026-11-21T10:00:00Z",
            "2026-11-21T10:00:00.5Z",
            "2026-11-21T10:00:00.123456789Z",
            "2026-11-21T10:00:00.1234567891Z",
            "2026-11-21T11:20:00+01:00",
            "2026-11-21T01:20:00-09:30",
            "1969-12-31T23:59:59.999999Z",
            "0001-01-01T00:00:00Z",
            "2024-02-29T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2026-11-21T10:00:60Z",
            "2026-11-21t10:00:00z",
            "2026-11-21 10:00:00Z",
            "2026-11-21T10:00:00",
            "2026-11-21T10:00:00.Z",
            "2026-11-21T24:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-21T10:00:00+24:00",
            "yesterday",
            "",
        ] {
            assert_eq!(
                rfc3339_micros(text.as_bytes()),
                chrono_micros(text),
                "{text}"
            );
        }
    }

    proptest! {
        #[test]
        fn rfc3339_agrees_with_chrono_on_random_times(
            year in 0u32..10000, month in 0u32..14, day in 0u32..33, hour in 0u32..25,
            minute in 0u32..61, second in 0u32..61, fraction in "(\\.[0-9]{0,11})?",
            zone in "(Z|z|[+-][0-2][0-9]:[0-6][0-9])",
        ) {
            let text = format!(
                "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}{zone}"
            );
            prop_assert_eq!(rfc3339_micros(text.as_bytes()), chrono_micros(&text), "{}", text);
        }
    }
}
