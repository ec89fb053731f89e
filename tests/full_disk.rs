//! A full disk under the local store: the gateway neither crashes nor drops what it accepted.
//! The failing writes are retried, the rings fill, and TCP senders are slowed, not disconnected;
//! once space returns, everything is written.
//!
//! Needs root, to mount a small tmpfs; elsewhere the test says it is skipped.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Gateway, messages, read_store};

fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

fn remount(dir: &Path, size: &str) {
    let ok = Command::new("mount")
        .args(["-o", &format!("remount,size={size}")])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "remount {} to {size}", dir.display());
}

struct Unmount<'a>(&'a Path);
impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

#[test]
fn full_disk_slows_senders_and_loses_nothing_once_space_returns() {
    let disk = tempfile::tempdir().unwrap();
    if !mount_tmpfs(disk.path(), "2m") {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    }
    let _unmount = Unmount(disk.path());
    let store = disk.path().join("store");
    let mut gw = Gateway::start_with(|c| {
        c.sink.store.dir = Some(store.clone());
        c.pipeline.ring_batches = 4;
        c.pipeline.batch_max_records = 1000;
    });
    const LINES: usize = 100_000;
    let addr = gw.tcp();
    let sender = std::thread::spawn(move || {
        let mut conn = TcpStream::connect(addr).unwrap();
        // Each line carries hard-to-compress text so 100k lines need ~20 MB on disk.
        let mut x = 0x9E3779B97F4A7C15u64;
        for i in 0..LINES {
            let mut noise = String::with_capacity(160);
            for _ in 0..10 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                noise.push_str(&format!("{x:016x}"));
            }
            conn.write_all(format!("<13>Nov 21 10:00:00 h app: {i} {noise}\n").as_bytes())
                .expect("the gateway never disconnects a sender for a full disk");
        }
    });

    // The disk fills: writes fail and are retried, the sender is held back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while gw.server().metrics().sink.errors.get() == 0 {
        assert!(
            Instant::now() < deadline,
            "the store never hit the full disk"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !sender.is_finished(),
        "the sender is slowed by backpressure"
    );
    assert_eq!(
        gw.listener_count("tcp", |m| m.connections_open.get() as u64),
        1
    );
    let written_while_full = gw.server().metrics().sink.records.get();
    assert!(written_while_full < LINES as u64);

    // Space returns: everything goes through.
    remount(disk.path(), "64m");
    sender.join().unwrap();
    gw.wait_for_records(LINES as u64);
    gw.stop();
    let records = read_store(&store);
    assert_eq!(records.len(), LINES);
    for (i, message) in messages(&records).iter().enumerate() {
        assert!(
            message.starts_with(&format!("{i} ")),
            "line {i} out of place: {message:.20}"
        );
    }
}
