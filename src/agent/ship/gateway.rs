//! The `gateway` shipper: batches to the gateway's agent listener over the acknowledged
//! [`agent_protocol`](crate::agent_protocol), acknowledged end to end.
//!
//! Each [`LineBatch`] becomes one BATCH frame (its lines as RFC 5424 messages,
//! [`super::rfc5424`], lz4-compressed) carrying the batch's own sequence number, and is kept
//! until the gateway acknowledges it: the gateway sends `ACK seq` once every batch up to `seq`
//! is in its store, delivered to Kafka or in its WAL, and only then does the tailer's checkpoint
//! move past those lines.
//!
//! [`Shipper::send`] only queues the frame; a connection thread does the network work:
//!
//! ```text
//! connect ─► HELLO ⇄ HELLO ─► send every queued frame, in order ─► wait for more ─┐
//!    ▲                          (a reader thread takes ACKs: drops the frames     │
//!    │                           they cover, tells the tailer)                     │
//!    └──── backoff with jitter ◄── connection lost, ERROR from the gateway ◄──────┘
//! ```
//!
//! After a reconnect every frame not yet acknowledged is sent again, in order: nothing the
//! gateway did not make durable is lost, and a batch it made durable but whose ACK the broken
//! connection swallowed arrives twice. Memory is bounded by the tailer, which stops reading
//! while `max_unacked_batches` batches wait here. A dead peer that never closes is detected by
//! TCP keepalive.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

use super::rfc5424::MessageFormatter;
use super::tls::{Link, LinkReader, ShipTls};
use super::{AckSender, Backoff, Shipper, Stopped, connect};
use crate::agent::batch::LineBatch;
use crate::agent::config::ShipConfig;
use crate::agent_protocol::{self as protocol, BatchEncoder, Kind};
use crate::log_limit::RateLimitedWarning;

/// How long the gateway has to answer HELLO.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How the shipper proves who it is: TLS (with its certificate, if any) and a token.
#[derive(Debug, Clone, Default)]
pub struct GatewayAuth {
    pub tls: Option<ShipTls>,
    pub token: Option<String>,
}

impl GatewayAuth {
    /// Reads `[ship.tls]` and `token_file`.
    ///
    /// # Errors
    /// What the configuration check reports, as an I/O error.
    pub fn load(config: &ShipConfig) -> io::Result<GatewayAuth> {
        let tls = match &config.tls {
            None => None,
            Some(tls) => Some(tls.load(&config.address).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("ship.tls.{e}"))
            })?),
        };
        let token = match &config.token_file {
            None => None,
            Some(path) => Some(read_token(path).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("ship.token_file: {e}"))
            })?),
        };
        Ok(GatewayAuth { tls, token })
    }
}

/// The token in `path`: its first line, without surrounding whitespace.
///
/// # Errors
/// What is wrong with the file, for the user.
pub fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(format!(
            "{} is empty: put this host's token (from the gateway's tokens_file) on its first line",
            path.display()
        ));
    }
    Ok(token.to_string())
}

/// See the [module docs](self).
pub struct GatewayShipper {
    address: String,
    formatter: MessageFormatter,
    encoder: BatchEncoder,
    /// Scratch space the frame is compressed into.
    frame: Vec<u8>,
    shared: Arc<ConnectionShared>,
    connection_thread: Option<JoinHandle<()>>,
}

/// What the shipper, the connection thread and the reader thread share.
struct ConnectionShared {
    state: Mutex<ConnectionState>,
    /// Signalled when a frame is queued, the connection breaks, or the shipper stops.
    wake: Condvar,
    stop: AtomicBool,
}

#[derive(Default)]
struct ConnectionState {
    /// Frames not yet acknowledged, in sequence order.
    unacked: VecDeque<(u64, Arc<Vec<u8>>)>,
    /// Index in `unacked` of the next frame to write on the current connection.
    next_to_write: usize,
    /// The current connection failed (read side): reconnect.
    broken: bool,
    /// The current connection, to shut it down when the shipper stops.
    connection: Option<TcpStream>,
}

impl ConnectionShared {
    fn lock(&self) -> MutexGuard<'_, ConnectionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl GatewayShipper {
    /// A shipper to `address` (`HOST:PORT`), introducing itself as `host`, reconnecting with
    /// `backoff`. Its connection thread starts at once.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(
        address: String,
        host: String,
        auth: GatewayAuth,
        backoff: Backoff,
        acks: AckSender,
    ) -> io::Result<GatewayShipper> {
        let shared = Arc::new(ConnectionShared {
            state: Mutex::new(ConnectionState::default()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let connection = Connection {
            address: address.clone(),
            host: host.clone(),
            auth,
            backoff,
            acks,
            shared: Arc::clone(&shared),
        };
        let connection_thread = std::thread::Builder::new()
            .name("agent-gateway".into())
            .spawn(move || connection.run())?;
        Ok(GatewayShipper {
            address,
            formatter: MessageFormatter::new(host),
            encoder: BatchEncoder::default(),
            frame: Vec::new(),
            shared,
            connection_thread: Some(connection_thread),
        })
    }
}

impl Shipper for GatewayShipper {
    fn describe(&self) -> String {
        format!("gateway {} (acknowledged)", self.address)
    }

    fn send(&mut self, batch: &LineBatch, _stop: &AtomicBool) -> Result<(), Stopped> {
        self.formatter.start_batch(batch);
        self.encoder.clear();
        for line in batch.lines() {
            self.encoder.message(|out| self.formatter.write(&line, out));
        }
        self.frame.clear();
        self.encoder.finish(batch.seq(), &mut self.frame);
        // An exact copy: the scratch buffer is sized for lz4's worst case, and up to
        // `max_unacked_batches` frames wait here.
        let frame = self.frame.clone();
        self.shared
            .lock()
            .unacked
            .push_back((batch.seq(), Arc::new(frame)));
        self.shared.wake.notify_all();
        Ok(())
    }
}

impl Drop for GatewayShipper {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(connection) = &self.shared.lock().connection {
            let _ = connection.shutdown(Shutdown::Both);
        }
        self.shared.wake.notify_all();
        if let Some(thread) = self.connection_thread.take() {
            let _ = thread.join();
        }
    }
}

/// The connection thread's side.
struct Connection {
    address: String,
    host: String,
    auth: GatewayAuth,
    backoff: Backoff,
    acks: AckSender,
    shared: Arc<ConnectionShared>,
}

static WARNING: RateLimitedWarning = RateLimitedWarning::new(Duration::from_secs(10));

impl Connection {
    fn run(mut self) {
        while !self.shared.stop.load(Ordering::Relaxed) {
            match self.open() {
                Ok((link, reader)) => {
                    self.backoff.reset();
                    self.serve(link, reader);
                }
                Err(_) if self.shared.stop.load(Ordering::Relaxed) => return,
                Err(e) => WARNING.warn(|| {
                    format!(
                        "cannot reach the gateway at {}: {e}; reconnecting with backoff (files \
                         are not read meanwhile)",
                        self.address
                    )
                }),
            }
            if self.backoff.sleep(&self.shared.stop).is_err() {
                return;
            }
        }
    }

    /// Connects and exchanges HELLOs. The connection is registered at once, so that stopping
    /// the shipper does not wait for a gateway that never answers.
    fn open(&self) -> io::Result<(Link, LinkReader)> {
        let stream = connect(&self.address)?;
        self.shared.lock().connection = stream.try_clone().ok();
        if self.shared.stop.load(Ordering::Relaxed) {
            return Err(io::Error::other("stopping"));
        }
        stream.set_nodelay(true)?;
        let keepalive = TcpKeepalive::new()
            .with_time(Duration::from_secs(10))
            .with_interval(Duration::from_secs(5))
            .with_retries(3);
        SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
        stream.set_read_timeout(Some(HELLO_TIMEOUT))?;
        let link = match &self.auth.tls {
            None => Link::plain(stream),
            Some(tls) => Link::tls(stream, tls).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("TLS handshake with the gateway failed: {e}"),
                )
            })?,
        };
        let mut hello = Vec::new();
        protocol::agent_hello_with_token(&self.host, self.auth.token.as_deref(), &mut hello);
        link.write_all(&hello)?;
        let mut reader = link.reader()?;
        let mut body = Vec::new();
        let kind = protocol::read_frame(&mut reader, &mut body).map_err(|e| {
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                io::Error::new(
                    e.kind(),
                    format!(
                        "no answer to HELLO within {HELLO_TIMEOUT:?}: is this the gateway's agent \
                         listener ([[listen]] type = \"agent\")?"
                    ),
                )
            } else {
                e
            }
        })?;
        match kind {
            Kind::Hello => {
                protocol::parse_hello(&body)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            }
            Kind::Error => {
                return Err(io::Error::other(format!(
                    "the gateway refused: {}",
                    String::from_utf8_lossy(&body)
                )));
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the gateway answered HELLO with {other:?}"),
                ));
            }
        }
        link.socket().set_read_timeout(None)?;
        Ok((link, reader))
    }

    /// Sends every queued frame, then new ones as they come, until the connection breaks or
    /// the shipper stops.
    fn serve(&mut self, link: Link, reader: LinkReader) {
        // Reset before the reader starts: a break it sees at once must not be overwritten.
        {
            let mut state = self.shared.lock();
            state.next_to_write = 0;
            state.broken = false;
        }
        let (shared, acks) = (Arc::clone(&self.shared), self.acks.clone());
        let address = self.address.clone();
        let spawned = std::thread::Builder::new()
            .name("agent-gateway-acks".into())
            .spawn(move || read_acks(reader, &shared, &acks, &address));
        let reader = match spawned {
            Ok(reader) => reader,
            Err(e) => {
                WARNING.warn(|| format!("cannot start reading from the gateway: {e}"));
                return;
            }
        };
        loop {
            let frame = {
                let mut state = self.shared.lock();
                loop {
                    if self.shared.stop.load(Ordering::Relaxed) || state.broken {
                        break None;
                    }
                    if state.next_to_write < state.unacked.len() {
                        let frame = Arc::clone(&state.unacked[state.next_to_write].1);
                        state.next_to_write += 1;
                        break Some(frame);
                    }
                    state = self
                        .shared
                        .wake
                        .wait(state)
                        .unwrap_or_else(|e| e.into_inner());
                }
            };
            let Some(frame) = frame else { break };
            if let Err(e) = link.write_all(&frame) {
                if !self.shared.stop.load(Ordering::Relaxed) {
                    // Whichever of the writer and the ack reader sees the break first says it
                    // (one warning per 10 s): both say what happens next.
                    WARNING.warn(|| {
                        format!(
                            "lost the gateway at {}: {e}; reconnecting, unacknowledged batches \
                             are resent",
                            self.address
                        )
                    });
                }
                break;
            }
        }
        link.shutdown();
        let _ = reader.join();
        self.shared.lock().connection = None;
    }
}

/// Reads ACKs (and a final ERROR) until the connection ends; then marks it broken.
fn read_acks(mut stream: LinkReader, shared: &ConnectionShared, acks: &AckSender, address: &str) {
    let mut body = Vec::new();
    loop {
        let problem = match protocol::read_frame(&mut stream, &mut body) {
            Ok(Kind::Ack) => match protocol::parse_ack(&body) {
                Ok(seq) => {
                    let mut state = shared.lock();
                    while state.unacked.front().is_some_and(|&(s, _)| s <= seq) {
                        state.unacked.pop_front();
                        state.next_to_write = state.next_to_write.saturating_sub(1);
                    }
                    drop(state);
                    acks.acknowledge(seq);
                    continue;
                }
                Err(e) => e.to_string(),
            },
            Ok(Kind::Error) => format!("the gateway closed: {}", String::from_utf8_lossy(&body)),
            Ok(other) => format!("unexpected {other:?} frame from the gateway"),
            Err(e) => format!("lost the gateway: {e}"),
        };
        if !shared.stop.load(Ordering::Relaxed) {
            WARNING.warn(|| {
                format!("{address}: {problem}; reconnecting, unacknowledged batches are resent")
            });
        }
        shared.lock().broken = true;
        shared.wake.notify_all();
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::batch::Source;
    use crate::agent::ship::ack_channel;
    use std::io::Write;
    use std::net::TcpListener;
    use std::path::PathBuf;

    fn batch(seq: u64, line: &[u8]) -> LineBatch {
        let source = Arc::new(Source {
            entry: "e".into(),
            path: PathBuf::from("/x.log"),
            topic: None,
            app: "e".into(),
            tags: vec![],
        });
        let mut batch = LineBatch::with_capacity(64, 1);
        batch.reset(seq);
        batch.push(&source, line, 10, false, || 1);
        batch
    }

    /// Accepts one connection, answers its HELLO, and returns it with the host it named.
    fn accept(listener: &TcpListener) -> (TcpStream, String) {
        let (mut stream, _) = listener.accept().unwrap();
        let mut body = Vec::new();
        assert_eq!(
            protocol::read_frame(&mut stream, &mut body).unwrap(),
            Kind::Hello
        );
        let host = protocol::parse_agent_host(protocol::parse_hello(&body).unwrap()).unwrap();
        let mut hello = Vec::new();
        protocol::gateway_hello(&mut hello);
        stream.write_all(&hello).unwrap();
        (stream, host)
    }

    /// Reads one BATCH; returns its seq and messages.
    fn read_batch(stream: &mut TcpStream) -> (u64, Vec<String>) {
        let mut body = Vec::new();
        assert_eq!(
            protocol::read_frame(stream, &mut body).unwrap(),
            Kind::Batch
        );
        let mut raw = Vec::new();
        let header = protocol::decode_batch(
            &body,
            &protocol::BatchLimits {
                max_raw_bytes: 1 << 20,
                max_records: 1 << 20,
                max_expansion_ratio: 255,
            },
            &mut raw,
        )
        .unwrap();
        let messages = protocol::messages(&raw)
            .map(|m| String::from_utf8(m.unwrap().to_vec()).unwrap())
            .collect();
        (header.seq, messages)
    }

    /// A listener standing in for the gateway, a shipper (host `web1`) to it, and where the
    /// shipper's acknowledgements arrive.
    fn fake_gateway_and_shipper() -> (
        TcpListener,
        GatewayShipper,
        crossbeam_channel::Receiver<u64>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (acks, acked) = ack_channel();
        let backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(10));
        let shipper = GatewayShipper::start(
            address,
            "web1".into(),
            GatewayAuth::default(),
            backoff,
            acks,
        )
        .unwrap();
        (listener, shipper, acked)
    }

    #[test]
    fn unacknowledged_batches_are_resent_in_order_after_the_connection_breaks() {
        let (listener, mut shipper, acked) = fake_gateway_and_shipper();
        let stop = AtomicBool::new(false);
        for seq in 1..=3 {
            shipper
                .send(&batch(seq, format!("line {seq}").as_bytes()), &stop)
                .unwrap();
        }
        let (mut first, host) = accept(&listener);
        assert_eq!(host, "web1");
        let (seq, messages) = read_batch(&mut first);
        assert_eq!(seq, 1);
        assert_eq!(
            messages,
            [
                "<14>1 1970-01-01T00:00:00.000001Z web1 e - - [logtail@32473 entry=\"e\" \
              file=\"/x.log\"] line 1"
            ]
        );
        assert_eq!(read_batch(&mut first).0, 2);
        assert_eq!(read_batch(&mut first).0, 3);
        let mut ack = Vec::new();
        protocol::ack(1, &mut ack);
        first.write_all(&ack).unwrap();
        assert_eq!(acked.recv_timeout(Duration::from_secs(5)), Ok(1));
        // The gateway goes away with 2 and 3 unacknowledged: both come again, in order.
        drop(first);
        let (mut second, _) = accept(&listener);
        assert_eq!(read_batch(&mut second).0, 2);
        assert_eq!(read_batch(&mut second).0, 3);
        shipper.send(&batch(4, b"line 4"), &stop).unwrap();
        assert_eq!(read_batch(&mut second).0, 4);
        ack.clear();
        protocol::ack(4, &mut ack);
        second.write_all(&ack).unwrap();
        assert_eq!(acked.recv_timeout(Duration::from_secs(5)), Ok(4));
        assert!(shipper.shared.lock().unacked.is_empty());
        drop(shipper);
    }

    #[test]
    fn an_error_from_the_gateway_makes_it_reconnect_and_resend() {
        let (listener, mut shipper, acked) = fake_gateway_and_shipper();
        shipper
            .send(&batch(1, b"one"), &AtomicBool::new(false))
            .unwrap();
        let (mut first, _) = accept(&listener);
        assert_eq!(read_batch(&mut first).0, 1);
        let mut error = Vec::new();
        protocol::error("a batch could not be stored", &mut error);
        first.write_all(&error).unwrap();
        let (mut second, _) = accept(&listener);
        assert_eq!(read_batch(&mut second).0, 1);
        assert!(acked.try_recv().is_err(), "nothing acknowledged");
    }
}
