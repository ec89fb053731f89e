//! Agent listeners: connections speaking the acknowledged [`agent_protocol`], each a task on
//! the shard that accepted it (accepting is shared with the syslog stream listeners, see
//! [`super::stream`]).
//!
//! A connection answers the agent's HELLO, then reads BATCH frames one at a time. A batch is
//! checked whole (frame length, lz4, message lengths, sequence order) before any of it is taken
//! in, then all its messages go into the shard's batch in one receive, with an
//! [`AckToken`](crate::ack::AckToken) for its `seq`. A second half of the task writes
//! an ACK whenever the connection's durable prefix moves ([`Acknowledgements`]).
//!
//! Backpressure is the agent's own: while the shard is blocked no frame is read, so the agent's
//! writes stall, its unacknowledged batches reach its limit, and it stops reading its files.
//!
//! Memory follows arrival: a frame's body grows as its bytes arrive, each growth granted by the
//! sources' [`MemoryBudget`](super::limits::MemoryBudget) first, and a batch's `raw_len` and
//! `message_count` are checked ([`protocol::check_batch`]) and granted before it is
//! decompressed. Empty messages are counted (`dropped_total{reason="empty"}`), never stored.
//!
//! A connection ends when the agent closes it; after `hello_timeout_secs` without a HELLO;
//! after `idle_timeout_secs` (or `agent_idle_timeout_secs`) of silence; when a frame in progress
//! misses its deadline (`frame_timeout_secs`, `min_bytes_per_sec`); when the memory budget has
//! no room for its frame; on a protocol error (an ERROR frame saying what, counted in
//! `framing_errors`); when one of its batches could not be made durable (an ERROR frame, so the
//! agent resends); and at shutdown. Each closure is counted by reason
//! (`connections_closed_total`).
//! Batches not yet acknowledged when it ends are resent by the agent on its next connection.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::intake::{Intake, Receive, Sender};
use super::limits::BudgetShare;
use super::tls::PeerIdentity;
use super::{ListenerContext, StreamProtocol};
use crate::ack::Acknowledgements;
use crate::agent_protocol::{self as protocol, BatchLimits, Kind, ProtocolError};
use crate::log_limit::RateLimitedWarning;
use crate::metrics::{AgentConnection, ListenerMetrics, PeerRefusal};

/// Buffers that grew past this for a large batch are given back after it, so thousands of
/// mostly idle agents hold little of the memory budget. The agent's default batch is 1 MiB of
/// lines before compression.
const KEEP_BUFFER_BYTES: usize = 1 << 20;
/// A frame's body grows by at least this much at a time as its bytes arrive.
const BODY_STEP: usize = 64 * 1024;
/// The largest HELLO body read (magic, version and a host name of at most 64 KiB).
const MAX_HELLO_BODY: usize = 1 << 16;
/// How often a connection held back by its listener's spent store quota looks again.
const QUOTA_POLL: Duration = Duration::from_millis(50);
/// Said when agents wait for their listener's store quota.
static AGENTS_HELD_BACK: RateLimitedWarning = RateLimitedWarning::new(Duration::from_secs(10));

/// Why a connection ended.
enum Ended {
    /// The agent closed it, or it failed at the socket level (logged by the caller).
    Closed(Option<std::io::Error>),
    /// It sent something against the protocol.
    Protocol(ProtocolError),
    /// A batch of it could not be made durable.
    Broken,
    /// No HELLO within `hello_timeout_secs`.
    HelloTimeout,
    /// Nothing for the idle timeout.
    Idle,
    /// A frame did not complete within its deadline (`frame_timeout_secs` and
    /// `min_bytes_per_sec`).
    Slow,
    /// The memory budget had no room for a frame.
    Memory,
    /// The gateway is stopping.
    Shutdown,
    /// Its identity does not cover the host it claims.
    Refused(PeerRefusal, String),
}

/// Serves one agent connection until it ends.
pub async fn serve_agent<I: Intake, S: AsyncRead + AsyncWrite + Unpin>(
    shard: &I,
    listener: &ListenerContext,
    stream: S,
    source: String,
    peer: Option<PeerIdentity>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let StreamProtocol::Agent { max_batch_bytes } = listener.protocol else {
        return;
    };
    let mut agent_host = None;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let acks = Acknowledgements::new();
    let mut frames = FrameReader {
        body: Vec::new(),
        raw: Vec::new(),
        share: BudgetShare::new(&listener.budget),
    };
    tokio::pin!(shutdown);
    let ended = tokio::select! {
        _ = &mut shutdown => Ended::Shutdown,
        ended = async {
            let seen = match handshake(listener, &mut frames, &mut reader, &mut writer, peer.as_ref()).await {
                Ok((claimed, host)) => {
                    agent_host = host;
                    listener.metrics.agents.connect(&claimed, &source)
                }
                Err(ended) => return ended,
            };
            let sender = Sender {
                source: &source,
                tls_peer: peer.as_ref().map(|p| p.name.as_str()),
                agent_host: agent_host.as_deref(),
                host_if_missing: None,
            };
            tokio::select! {
                ended = read_batches(shard, listener, &mut frames, &mut reader, sender, &acks, max_batch_bytes, &seen) => ended,
                ended = write_acks(&acks, &mut writer) => ended,
            }
        } => ended,
    };
    drop(frames);
    let metrics = &listener.metrics;
    let reason = match ended {
        Ended::Closed(None) | Ended::Shutdown => None,
        Ended::Closed(Some(e)) => {
            listener
                .warning
                .warn(|| format!("listener {}: agent {source}: {e}", listener.name));
            None
        }
        Ended::Refused(reason, what) => {
            listener.metrics.refused(reason);
            listener.warning.warn(|| {
                format!(
                    "listener {}: refused agent {source} ({}): {what}",
                    listener.name,
                    reason.as_str()
                )
            });
            Some(what)
        }
        Ended::HelloTimeout => {
            metrics.closed_hello_timeout.add(1);
            Some(format!(
                "no HELLO within {:?} of connecting",
                listener.limits.hello_timeout
            ))
        }
        Ended::Idle => {
            metrics.closed_idle.add(1);
            Some("idle: no frame within the idle timeout".to_string())
        }
        Ended::Slow => {
            metrics.closed_slow.add(1);
            listener.warning.warn(|| {
                format!(
                    "listener {}: agent {source} sent a frame too slowly, closing",
                    listener.name
                )
            });
            Some("a frame did not arrive within frame_timeout_secs at min_bytes_per_sec".into())
        }
        Ended::Memory => {
            metrics.closed_memory.add(1);
            listener.budget.metrics().refusals.add(1);
            listener.warning.warn(|| {
                format!(
                    "listener {}: memory budget spent ({} bytes held), refusing a frame of agent {source}",
                    listener.name,
                    listener.budget.held()
                )
            });
            Some("the gateway's memory budget is spent; resend later".into())
        }
        Ended::Protocol(e) => {
            listener.metrics.framing_errors.add(1);
            metrics.closed_protocol.add(1);
            listener.warning.warn(|| {
                format!(
                    "listener {}: agent {source} broke the protocol, closing: {e}",
                    listener.name
                )
            });
            Some(e.to_string())
        }
        Ended::Broken => {
            listener.warning.warn(|| {
                format!(
                    "listener {}: a batch from agent {source} could not be stored; closing \
                     so that it resends",
                    listener.name
                )
            });
            Some("a batch could not be stored; resend what is not acknowledged".to_string())
        }
    };
    if let Some(reason) = reason {
        let mut frame = Vec::new();
        protocol::error(&reason, &mut frame);
        let _ = tokio::time::timeout(Duration::from_secs(1), writer.write_all(&frame)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.shutdown()).await;
}

/// Reads the agent's HELLO and answers it. Returns the host the agent claims, and the host it
/// is authenticated as ([`super::agent_auth`]).
async fn handshake<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    listener: &ListenerContext,
    frames: &mut FrameReader,
    reader: &mut R,
    writer: &mut W,
    peer: Option<&PeerIdentity>,
) -> Result<(String, Option<String>), Ended> {
    // The whole HELLO, header and body, within the timeout.
    let read = async {
        let kind = frames.read_header(reader, MAX_HELLO_BODY).await?;
        frames.read_body(reader, kind.1, listener).await?;
        Ok::<Kind, Ended>(kind.0)
    };
    let kind = tokio::time::timeout(listener.limits.hello_timeout, read)
        .await
        .map_err(|_| Ended::HelloTimeout)??;
    if kind != Kind::Hello {
        return Err(Ended::Protocol(ProtocolError::Unexpected {
            expected: Kind::Hello,
            got: kind,
        }));
    }
    let rest = protocol::parse_hello(&frames.body).map_err(Ended::Protocol)?;
    let (host, token) = protocol::parse_agent_hello(rest).map_err(Ended::Protocol)?;
    let authenticated = super::agent_auth::authenticate(
        &host,
        peer,
        token.as_deref(),
        listener.agent_tokens.as_deref(),
    )
    .map_err(|(reason, what)| Ended::Refused(reason, what))?;
    // A HELLO comes once: nothing of it is worth keeping (an idle agent then holds nothing).
    frames.body = Vec::new();
    frames.done_with_frame();
    let mut hello = Vec::new();
    protocol::gateway_hello(&mut hello);
    writer
        .write_all(&hello)
        .await
        .map_err(|e| Ended::Closed(Some(e)))?;
    Ok((host, authenticated))
}

/// One connection's frame buffers and the share of the memory budget they hold.
///
/// Invariant: `share` holds at least `body.capacity() + raw.capacity()` beyond what was given
/// back, so a connection never holds memory the budget has not granted. A body grows with the
/// bytes that arrive (at least [`BODY_STEP`], at most doubling), never with its header's length.
struct FrameReader {
    body: Vec<u8>,
    raw: Vec<u8>,
    share: BudgetShare,
}

impl FrameReader {
    /// Reads a frame header; returns its kind and body length (at most `max_body`).
    async fn read_header<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        max_body: usize,
    ) -> Result<(Kind, usize), Ended> {
        let mut header = [0; protocol::FRAME_HEADER_LEN];
        match reader.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(Ended::Closed(None));
            }
            Err(e) => return Err(Ended::Closed(Some(e))),
        }
        let (kind, len) = protocol::parse_header(header).map_err(Ended::Protocol)?;
        if len > max_body {
            return Err(Ended::Protocol(ProtocolError::FrameLength(len as u64 + 1)));
        }
        Ok((kind, len))
    }

    /// Reads a body of `len` bytes into `body`, growing it as the bytes arrive, each growth
    /// granted by the memory budget first; all of it within the frame's deadline.
    async fn read_body<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        len: usize,
        listener: &ListenerContext,
    ) -> Result<(), Ended> {
        self.body.clear();
        let deadline = listener.limits.frame_deadline(len);
        let read = async {
            while self.body.len() < len {
                if self.body.capacity() == self.body.len() {
                    let step = self.body.len().clamp(BODY_STEP, 16 * BODY_STEP);
                    let grow = step.min(len - self.body.len());
                    let wanted = self.body.len() + grow + self.raw.capacity();
                    if !self.share.try_resize(wanted.max(self.share.bytes())) {
                        return Err(Ended::Memory);
                    }
                    self.body.reserve_exact(grow);
                }
                let room = (self.body.capacity() - self.body.len()).min(len - self.body.len());
                match reader.take(room as u64).read_buf(&mut self.body).await {
                    Ok(0) => return Err(Ended::Closed(None)),
                    Ok(_) => {}
                    Err(e) => return Err(Ended::Closed(Some(e))),
                }
            }
            Ok(())
        };
        tokio::time::timeout(deadline, read)
            .await
            .map_err(|_| Ended::Slow)?
    }

    /// Decodes the BATCH in `body` into `raw`, `raw_len` granted by the budget first.
    fn decode(&mut self, limits: &BatchLimits) -> Result<protocol::BatchHeader, Ended> {
        let (_, raw_len) = protocol::check_batch(&self.body, limits).map_err(Ended::Protocol)?;
        let wanted = self.body.capacity() + self.raw.capacity().max(raw_len);
        if !self.share.try_resize(wanted.max(self.share.bytes())) {
            return Err(Ended::Memory);
        }
        // Exactly what was granted: `resize` in the decoder then never doubles past it.
        self.raw.clear();
        self.raw.reserve_exact(raw_len);
        protocol::decode_batch(&self.body, limits, &mut self.raw).map_err(Ended::Protocol)
    }

    /// Gives back buffers that grew large, and the budget they held.
    fn done_with_frame(&mut self) {
        for buffer in [&mut self.body, &mut self.raw] {
            if buffer.capacity() > KEEP_BUFFER_BYTES {
                *buffer = Vec::new();
            }
        }
        self.share
            .try_resize(self.body.capacity() + self.raw.capacity());
    }
}

/// Takes BATCH frames into the shard until the connection ends; counts each in `seen`.
#[allow(clippy::too_many_arguments)]
async fn read_batches<I: Intake, R: AsyncRead + Unpin>(
    shard: &I,
    listener: &ListenerContext,
    frames: &mut FrameReader,
    reader: &mut R,
    sender: Sender<'_>,
    acks: &std::sync::Arc<Acknowledgements>,
    max_batch_bytes: usize,
    seen: &AgentConnection,
) -> Ended {
    let metrics = &*listener.metrics;
    // The largest body a batch of `max_batch_bytes` can have: its header and lz4's worst case.
    let max_body =
        protocol::BATCH_HEADER_LEN + lz4_flex::block::get_maximum_output_size(max_batch_bytes);
    let limits = BatchLimits {
        max_raw_bytes: max_batch_bytes,
        max_records: listener.limits.max_batch_records,
        max_expansion_ratio: listener.limits.max_expansion_ratio,
    };
    let idle = listener.idle_timeout.or(listener.limits.agent_idle());
    let peer_ip = sender
        .source
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.ip());
    let mut previous_seq = None;
    loop {
        shard.until_unblocked().await;
        if let Some(quota) = &metrics.store_quota {
            wait_for_store_quota(quota, metrics).await;
        }
        let header = frames.read_header(reader, max_body);
        let header = match idle {
            Some(idle) => match tokio::time::timeout(idle, header).await {
                Ok(header) => header,
                Err(_) => return Ended::Idle,
            },
            None => header.await,
        };
        let (kind, len) = match header {
            Ok(header) => header,
            Err(ended) => return ended,
        };
        if kind != Kind::Batch {
            return Ended::Protocol(ProtocolError::Unexpected {
                expected: Kind::Batch,
                got: kind,
            });
        }
        if let Err(ended) = frames.read_body(reader, len, listener).await {
            return ended;
        }
        let header = match frames.decode(&limits) {
            Ok(header) => header,
            Err(ended) => return ended,
        };
        if let Some(previous) = previous_seq.filter(|&p| header.seq <= p) {
            return Ended::Protocol(ProtocolError::SeqOrder {
                seq: header.seq,
                previous,
            });
        }
        previous_seq = Some(header.seq);
        let (mut truncated, mut dropped, mut empty, mut taken) = (0, 0, 0, 0);
        let raw = &frames.raw;
        shard.receive(metrics, |receive| {
            // `decode_batch` checked every length, so every item is a message.
            for message in protocol::messages(raw).flatten() {
                let message = if message.is_empty() {
                    empty += 1;
                    continue;
                } else if message.len() <= listener.max_message_bytes {
                    message
                } else if listener.oversize == super::framing::OversizePolicy::Truncate {
                    truncated += 1;
                    &message[..listener.max_message_bytes]
                } else {
                    dropped += 1;
                    continue;
                };
                receive.message(message, listener.format, &sender);
                taken += 1;
            }
            receive.acknowledge_when_durable(acks.token(header.seq));
        });
        metrics.truncated.add(truncated);
        metrics.dropped_oversize.add(dropped);
        metrics.dropped_empty.add(empty);
        seen.batch(taken);
        let raw_len = frames.raw.len();
        frames.done_with_frame();
        // The address's rates: the batch is taken, the next waits (the agent's unacknowledged
        // batches reach its limit and it stops reading its files; nothing is dropped).
        if let (Some(rates), Some(ip)) = (&listener.peer_rates, peer_ip) {
            let lines = header.message_count as usize;
            let wait = rates.gate(std::time::Instant::now(), |g| g.pace(ip, lines, raw_len));
            if !wait.is_zero() {
                metrics.throttled.add(1);
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Waits while the listener's store quota is spent, before the next batch is read: the agent
/// keeps its unacknowledged batches and stops reading its files, as for a rate limit, instead
/// of having batches dropped and acknowledged. Retention deleting the listener's old segments
/// frees the quota.
async fn wait_for_store_quota(quota: &crate::metrics::StoreQuota, metrics: &ListenerMetrics) {
    if !quota.is_spent() {
        return;
    }
    metrics.throttled.add(1);
    AGENTS_HELD_BACK.warn(|| {
        format!(
            "listener {}: its records take {} bytes of the store, its whole store_quota_bytes = \
             {}: agents wait until retention frees room",
            metrics.name,
            quota.held_bytes.get(),
            quota.limit_bytes
        )
    });
    while quota.is_spent() {
        tokio::time::sleep(QUOTA_POLL).await;
    }
}

/// Writes an ACK each time the durable prefix moves, until a batch is lost or writing fails.
async fn write_acks<W: AsyncWrite + Unpin>(acks: &Acknowledgements, writer: &mut W) -> Ended {
    let mut sent = 0;
    let mut frame = Vec::new();
    loop {
        acks.changed().await;
        let status = acks.status();
        if status.acknowledged > sent {
            sent = status.acknowledged;
            frame.clear();
            protocol::ack(sent, &mut frame);
            if let Err(e) = writer.write_all(&frame).await {
                return Ended::Closed(Some(e));
            }
        }
        if status.broken {
            return Ended::Broken;
        }
    }
}
