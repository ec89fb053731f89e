//! The WAL's recovery on a segment and a ledger of arbitrary bytes.
//!
//! Input: a flag byte, then (flag bit 0 set) 128 bytes of LEDGER, then the segment. Checked:
//! opening never panics; the batches it replays come in strictly increasing seq order and
//! their payloads are what their CRC covers; a batch appended after recovery gets a seq above
//! all of them and reads back intact.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logtail::wal::{Appended, FsyncPolicy, Wal, WalOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&flag, mut rest)) = data.split_first() else {
        return;
    };
    let dir = logtail_fuzz::scratch_dir("wal");
    if flag & 1 == 1 {
        let Some((ledger, segment)) = rest.split_first_chunk::<128>() else {
            return;
        };
        std::fs::write(dir.join("LEDGER"), ledger).expect("write ledger");
        rest = segment;
    }
    std::fs::write(dir.join("00000000000000000001.seg"), rest).expect("write segment");
    let opts = WalOptions {
        dir: dir.clone(),
        max_segment_bytes: 1 << 20,
        max_total_bytes: 64 << 20,
        fsync: FsyncPolicy::Never,
        ..WalOptions::default()
    };
    let Ok((mut wal, _report)) = Wal::open(opts) else {
        return;
    };
    let mut last = 0;
    while let Ok(Some(batch)) = wal.next_unsent() {
        assert!(batch.seq > last, "seq {} after {last}", batch.seq);
        last = batch.seq;
        wal.acknowledge(batch.seq);
    }
    let Ok(Appended::Stored(seq)) = wal.append(3, 1, b"appended after recovery") else {
        panic!("append after recovery failed");
    };
    assert!(seq > last);
    let batch = wal
        .next_unsent()
        .expect("read back")
        .expect("the appended batch");
    assert_eq!((batch.seq, batch.shard, batch.records), (seq, 3, 1));
    assert_eq!(batch.payload, b"appended after recovery");
});
