//! A full disk under the local store: the gateway neither crashes nor drops what it accepted.
//! The failing writes are retried, the rings fill, and TCP senders are slowed, not disconnected;
//! once space returns, everything is written. A shutdown while the disk stays full ends in
//! bounded time and counts exactly what it had to give up.
//!
//! Needs root, to mount a small tmpfs; elsewhere the tests say they are skipped, except under
//! `CI=true`, where they fail (see `test_support::ci`).

use test_fixtures as common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Gateway, connect_with_small_send_buffer, messages, read_store};

/// A 2 MiB tmpfs in a temporary directory, unmounted when dropped.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    /// None (and says `test` is skipped) when this process may not mount (needs root).
    ///
    /// # Panics
    /// When it cannot mount under `CI=true`.
    fn mount(test: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        test_support::ci::or_skip(
            mounted.then(|| SmallDisk(dir)),
            test,
            "cannot mount a tmpfs here (needs root)",
        )
    }

    fn store(&self) -> PathBuf {
        self.0.path().join("store")
    }

    fn grow(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.0.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {} to {size}", self.0.path().display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
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

/// Starts a gateway storing on `disk` and a sender, and waits until the store's writes fail,
/// then a little longer for the sender to be held back.
fn fill(disk: &SmallDisk) -> (Gateway, JoinHandle<std::io::Result<()>>) {
    let gw = gateway_on(&disk.store());
    let sender = send_lines(gw.tcp());
    let deadline = Instant::now() + Duration::from_secs(30);
    while gw.server().metrics().sink.errors.get() == 0 {
        assert!(
            Instant::now() < deadline,
            "the store never hit the full disk"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    // A full disk is a metric at once, not only at shutdown.
    assert_eq!(gw.server().metrics().sink.disk_full.get(), 1);
    (gw, sender)
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
    let Some(disk) =
        SmallDisk::mount("full_disk_slows_senders_and_loses_nothing_once_space_returns")
    else {
        return;
    };
    let (mut gw, sender) = fill(&disk);

    // The disk is full: writes fail and are retried, the sender is held back.
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
    disk.grow("64m");
    sender
        .join()
        .unwrap()
        .expect("the gateway never disconnects a sender for a full disk");
    gw.wait_for_records(LINES as u64);
    gw.stop();
    assert_eq!(stored_prefix(&disk.store()), LINES);
}

#[test]
fn shutdown_on_a_disk_that_stays_full_ends_in_bounded_time_and_counts_what_it_gave_up() {
    let Some(disk) = SmallDisk::mount(
        "shutdown_on_a_disk_that_stays_full_ends_in_bounded_time_and_counts_what_it_gave_up",
    ) else {
        return;
    };
    let (mut gw, sender) = fill(&disk);

    // The sender keeps sending and the sink keeps failing: neither holds the shutdown up
    // (before, each batch had its own 5 s of retries and the draining connection kept
    // reading, which took minutes).
    let metrics = gw.server().metrics().clone();
    let server = gw.server.take().expect("running");
    let started = Instant::now();
    let stopped = server.shutdown();
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
    // ...and the shutdown says so, so that `logtail serve` exits non-zero.
    let gave_up = stopped.expect_err("records were given up");
    assert_eq!(
        gave_up.downcast_ref::<logtail::server::GaveUp>(),
        Some(&logtail::server::GaveUp { records: lost })
    );
    assert_eq!(written + lost, received);
    // What was written is in order; the batches given up leave gaps (a later, smaller batch
    // may still fit in the space a failed write left).
    let records = read_store(&disk.store());
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
