//! The local store's reader and the writer's recovery on a segment of arbitrary bytes.
//!
//! The input is written as the only segment of a store directory. Checked: reading never
//! panics and never allocates past its limits; recovery (`StoreWriter::open`, which cuts a torn
//! tail) keeps every record a reader saw; a record appended after recovery reads back after
//! them.
#![no_main]

use std::sync::atomic::AtomicBool;

use libfuzzer_sys::fuzz_target;
use logtail::store::{ReadOptions, StoreBatch, StoreOptions, StoreWriter, read};

struct One(&'static [u8]);

impl StoreBatch for One {
    fn shard(&self) -> u16 {
        0
    }
    fn records(&self) -> impl Iterator<Item = (i64, &[u8])> {
        std::iter::once((1_795_229_627_000_000, self.0))
    }
}

fn read_all(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    read(
        dir,
        &ReadOptions::default(),
        &mut out,
        &AtomicBool::new(false),
    )
    .expect("read");
    out
}

fuzz_target!(|data: &[u8]| {
    let dir = logtail_fuzz::scratch_dir("store");
    std::fs::write(dir.join("00000000000000000001.seg"), data).expect("write segment");
    let before = read_all(&dir);
    let opts = StoreOptions {
        dir: dir.clone(),
        max_segment_bytes: 1 << 20,
        max_total_bytes: 1 << 30,
        max_age: None,
    };
    let mut writer = StoreWriter::open(opts).expect("recovery failed");
    let after = read_all(&dir);
    assert_eq!(before, after, "recovery changed what a reader sees");
    writer
        .append(&One(b"appended after recovery"))
        .expect("append");
    drop(writer);
    let mut expected = before;
    expected.extend_from_slice(b"appended after recovery\n");
    assert_eq!(read_all(&dir), expected);
});
