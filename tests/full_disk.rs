//! A full disk under the local store: the gateway neither crashes nor drops what it accepted.
//! The failing writes are retried, the rings fill, and TCP senders are slowed, not disconnected;
//! once space returns, everything is written. A shutdown while the disk stays full ends in
//! bounded time and counts exactly what it had to give up.
//!
//! Needs root, to mount a small tmpfs; elsewhere the tests say they are skipped.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Gateway, connect_with_small_send_buffer, messages, read_store};

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

const LINES: usize = 100_000;

/// A gateway storing into `store` (on the small disk), with small rings and a small socket
/// buffer, so that a held-back sender is seen to be held back (TCP autotuning may otherwise
/// give the connection up to 32 MiB and take every line in).
fn gateway_on(store: &Path) -> Gateway {
    let store = store.to_path_buf();
    Gateway::start_with(move |c| {
        c.sink.store.dir = Some(store);
        c.pipeline.ring_batches = 4;
        c.pipeline.batch_max_records = 1000;
        for listener in &mut c.listen {
            listener.receive_buffer_bytes = Some(64 * 1024);
        }
    })
}

/// Sends [`LINES`] lines `"{i} {noise}"` over one connection; the result says whether the
/// gateway kept the connection to the end.
fn send_lines(addr: SocketAddr) -> JoinHandle<std::io::Result<()>> {
    std::thread::spawn(move || {
        let mut conn = connect_with_small_send_buffer(addr);
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
            conn.write_all(format!("<13>Nov 21 10:00:00 h app: {i} {noise}\n").as_bytes())?;
        }
        Ok(())
    })
}

/// Waits until the store's writes fail, then a little longer for the sender to be held back.
fn wait_for_the_full_disk(gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while gw.server().metrics().sink.errors.get() == 0 {
        assert!(
            Instant::now() < deadline,
            "the store never hit the full disk"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
}

/// Asserts the stored records are lines `0..n` in order, and returns `n`.
fn stored_prefix(store: &Path) -> usize {
    let records = read_store(store);
    for (i, message) in messages(&records).iter().enumerate() {
        assert!(
            message.starts_with(&format!("{i} ")),
            "line {i} out of place: {message:.20}"
        );
    }
    records.len()
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
    let mut gw = gateway_on(&store);
    let sender = send_lines(gw.tcp());

    // The disk fills: writes fail and are retried, the sender is held back.
    wait_for_the_full_disk(&gw);
    assert!(
        !sender.is_finished(),
        "the sender is slowed by backpressure; the gateway took {} lines",
        gw.listener_count("tcp", |m| m.received_lines.get())
    );
    assert_eq!(
        gw.listener_count("tcp", |m| m.connections_open.get() as u64),
        1
    );
    let written_while_full = gw.server().metrics().sink.records.get();
    assert!(written_while_full < LINES as u64);

    // Space returns: everything goes through.
    remount(disk.path(), "64m");
    sender
        .join()
        .unwrap()
        .expect("the gateway never disconnects a sender for a full disk");
    gw.wait_for_records(LINES as u64);
    gw.stop();
    assert_eq!(stored_prefix(&store), LINES);
}

#[test]
fn shutdown_on_a_disk_that_stays_full_ends_in_bounded_time_and_counts_what_it_gave_up() {
    let disk = tempfile::tempdir().unwrap();
    if !mount_tmpfs(disk.path(), "2m") {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    }
    let _unmount = Unmount(disk.path());
    let store = disk.path().join("store");
    let mut gw = gateway_on(&store);
    let sender = send_lines(gw.tcp());
    wait_for_the_full_disk(&gw);

    // The sender keeps sending and the sink keeps failing: neither holds the shutdown up
    // (before, each batch had its own 5 s of retries and the draining connection kept
    // reading, which took minutes).
    let metrics = gw.server().metrics().clone();
    let server = gw.server.take().expect("running");
    let started = Instant::now();
    let _ = server.shutdown();
    let took = started.elapsed();
    assert!(
        took < logtail::sink::GIVE_UP_AFTER * 3,
        "the shutdown took {took:?}"
    );
    assert!(
        sender.join().unwrap().is_err(),
        "the sender sees its connection closed"
    );

    // Every line taken in is either stored or counted as lost.
    let received = metrics.listener("tcp").expect("tcp").received_lines.get();
    let written = metrics.sink.records.get();
    let lost = metrics.sink.lost_records.get();
    assert!(lost > 0, "the full disk made the shutdown give batches up");
    assert_eq!(written + lost, received);
    // What was written is in order; the batches given up leave gaps (a later, smaller batch
    // may still fit in the space a failed write left).
    let records = read_store(&store);
    assert_eq!(records.len() as u64, written);
    let numbers: Vec<u64> = messages(&records)
        .iter()
        .map(|m| {
            m.split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a line number")
        })
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "stored out of order"
    );
}
