//! Shippers: where batches of lines go, and the acknowledgements that come back.
//!
//! A [`Shipper`] takes whole [`LineBatch`]es, in sequence order, on the agent's shipping thread,
//! and reports through its [`AckSender`] when they are durable at the destination. An
//! acknowledgement of `seq` covers every batch up to `seq` (they are cumulative), and only
//! acknowledged lines move the checkpoints: what the destination never confirmed is read and
//! sent again after a restart. A shipper may acknowledge late and from any thread (a protocol
//! with acknowledgements reads them from its connection); the tailer stops reading while
//! `max_unacked_batches` batches wait for theirs, so memory stays bounded whatever the
//! destination does.
//!
//! The shippers:
//!
//! - [`gateway`]: the gateway's agent listener over the acknowledged
//!   [`agent_protocol`](crate::agent_protocol): a batch is acknowledged once the gateway made it
//!   durable (store, Kafka or WAL), and resent after a reconnect until it is. End to end.
//! - [`kafka`]: straight to Kafka with librdkafka, acknowledged by Kafka's delivery reports.
//!   End to end.
//! - [`file`](mod@file): appends to a file or standard output, acknowledging after the write. For tests
//!   and debugging.
//! - [`syslog_tcp`]: the gateway's existing TCP syslog listener, RFC 5424 messages with RFC 6587
//!   octet counting, acknowledging once the kernel accepted the bytes. That is **not** an
//!   end-to-end acknowledgement: what sits in the socket buffers when the connection breaks, or
//!   in the gateway's memory when it crashes, is lost. For senders that cannot use the agent
//!   protocol's listener (an older gateway, or another syslog server).

pub mod file;
pub mod gateway;
pub mod kafka;
pub mod rfc5424;
pub mod syslog_tcp;
pub mod tls;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::AgentMetrics;
use super::batch::LineBatch;
use super::config::{ShipConfig, ShipKind};

/// [`Shipper::send`] gave up because the agent is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// Sends batches somewhere. See the [module docs](self).
pub trait Shipper: Send {
    /// What and where, for logs: `syslog-tcp 127.0.0.1:5514`.
    fn describe(&self) -> String;

    /// Hands `batch` over, retrying (with backoff) whatever fails, until it succeeds or `stop`
    /// is set. Batches come in sequence order and are never empty; an acknowledgement for `batch.seq()` goes
    /// through the shipper's [`AckSender`] when the batch is durable, now or later.
    ///
    /// # Errors
    /// [`Stopped`] when `stop` was set before the batch was handed over.
    fn send(&mut self, batch: &LineBatch, stop: &AtomicBool) -> Result<(), Stopped>;
}

/// Where a shipper reports acknowledgements: `acknowledge(seq)` says every batch up to `seq` is
/// durable at the destination.
#[derive(Debug, Clone)]
pub struct AckSender(Sender<u64>);

impl AckSender {
    pub fn acknowledge(&self, seq: u64) {
        // The tailer is gone only when the agent stops; a late acknowledgement then changes
        // nothing (the checkpoint is already final).
        let _ = self.0.send(seq);
    }
}

/// A channel for acknowledgements: the sender for the shipper, the receiver for the tailer.
pub fn ack_channel() -> (AckSender, Receiver<u64>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    (AckSender(tx), rx)
}

/// The shipper `config` asks for.
///
/// # Errors
/// When its output cannot be opened (the `file` shipper's file), its thread cannot start, or
/// librdkafka refuses the `kafka` shipper's configuration.
pub fn build(
    config: &ShipConfig,
    host: &str,
    acks: AckSender,
    metrics: &Arc<AgentMetrics>,
) -> io::Result<Box<dyn Shipper>> {
    let backoff = || {
        Backoff::new(
            Duration::from_millis(config.reconnect_min_ms),
            Duration::from_millis(config.reconnect_max_ms),
        )
        .counting(metrics.clone())
    };
    Ok(match config.kind {
        ShipKind::Gateway => Box::new(gateway::GatewayShipper::start(
            config.address.clone(),
            host.to_string(),
            gateway::GatewayAuth::load(config)?,
            backoff(),
            acks,
        )?),
        ShipKind::Kafka => Box::new(
            kafka::KafkaShipper::new(&config.kafka, host.to_string(), acks)
                .map_err(|e| io::Error::other(e.to_string()))?,
        ),
        ShipKind::File => Box::new(file::FileShipper::open(&config.path, config.format, acks)?),
        ShipKind::SyslogTcp => Box::new(syslog_tcp::SyslogTcpShipper::new(
            config.address.clone(),
            host.to_string(),
            backoff(),
            acks,
        )),
    })
}

/// Starts the shipping thread: every batch from `batches` goes through `shipper`, then back to
/// the tailer through `recycle` to be filled again. The thread ends when `batches` is closed and
/// empty, or when a send gives up because `stop` was set.
///
/// # Errors
/// When the thread cannot be spawned.
pub fn spawn_shipping_thread(
    mut shipper: Box<dyn Shipper>,
    batches: Receiver<LineBatch>,
    recycle: Sender<LineBatch>,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("agent-ship".into())
        .spawn(move || {
            for batch in batches.iter() {
                if stop.load(Ordering::Relaxed) || shipper.send(&batch, &stop).is_err() {
                    tracing::info!(
                        "stopping with batch {} and those after it not handed to {}: they are \
                         read again at the next start",
                        batch.seq(),
                        shipper.describe()
                    );
                    return;
                }
                let _ = recycle.try_send(batch);
            }
        })
}

/// A TCP connection to `address` (`HOST:PORT`), trying each address it resolves to.
///
/// # Errors
/// The last address's error, or `NotFound` when it resolves to none.
pub fn connect(address: &str) -> io::Result<std::net::TcpStream> {
    let mut last_error = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{address} resolves to no address"),
    );
    for resolved in std::net::ToSocketAddrs::to_socket_addrs(address)? {
        match std::net::TcpStream::connect_timeout(&resolved, Duration::from_secs(5)) {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

/// Exponential backoff with jitter: each wait is drawn from the upper half of the current
/// bound, which doubles from `min` up to `max` and goes back to `min` after a success. The
/// jitter keeps a fleet of agents that lost the same gateway from reconnecting in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    bound: Duration,
    seed: u64,
    /// Counts each wait before a new attempt (`logtail_agent_reconnects_total`).
    attempts: Option<Arc<AgentMetrics>>,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        Backoff {
            min,
            max: max.max(min),
            bound: min,
            seed: seed | 1,
            attempts: None,
        }
    }

    /// The same backoff, counting each wait in `metrics.reconnects`.
    #[must_use]
    pub fn counting(mut self, metrics: Arc<AgentMetrics>) -> Self {
        self.attempts = Some(metrics);
        self
    }

    /// The next wait; the bound doubles.
    pub fn next_wait(&mut self) -> Duration {
        // xorshift64: jitter needs no cryptographic quality.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let half = self.bound / 2;
        let jitter = half.mul_f64((self.seed >> 11) as f64 / (1u64 << 53) as f64);
        let wait = half + jitter;
        self.bound = (self.bound * 2).min(self.max);
        wait
    }

    /// Back to the shortest wait, after a success.
    pub fn reset(&mut self) {
        self.bound = self.min;
    }

    /// Sleeps for the next wait, in short steps so that `stop` is seen promptly.
    ///
    /// # Errors
    /// [`Stopped`] when `stop` is set.
    pub fn sleep(&mut self, stop: &AtomicBool) -> Result<(), Stopped> {
        if let Some(metrics) = &self.attempts {
            metrics.reconnects.add(1);
        }
        let until = Instant::now() + self.next_wait();
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err(Stopped);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_max_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let waits: Vec<_> = (0..6).map(|_| backoff.next_wait()).collect();
        for (wait, bound) in waits.iter().zip([100, 200, 400, 800, 1000, 1000]) {
            let bound = Duration::from_millis(bound);
            assert!(
                *wait >= bound / 2 && *wait <= bound,
                "{wait:?} not in [{:?}, {bound:?}]",
                bound / 2
            );
        }
        backoff.reset();
        assert!(backoff.next_wait() <= Duration::from_millis(100));
    }
}
