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
//! A connection ends when the agent closes it, after `idle_timeout_secs` of silence if set, on a
//! protocol error (an ERROR frame saying what, counted in `framing_errors`), when one of its
//! batches could not be made durable (an ERROR frame, so the agent resends), and at shutdown.
//! Batches not yet acknowledged when it ends are resent by the agent on its next connection.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::intake::{Intake, Receive, Sender};
use super::tls::PeerIdentity;
use super::{ListenerContext, StreamProtocol};
use crate::ack::Acknowledgements;
use crate::agent_protocol::{self as protocol, Kind, ProtocolError};
use crate::metrics::PeerRefusal;

/// How long an agent has to send its HELLO after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Buffers that grew past this for a large batch are given back after it, so thousands of
/// mostly idle agents cost little memory.
const KEEP_BUFFER_BYTES: usize = 4 << 20;

/// Why a connection ended.
enum Ended {
    /// The agent closed it, or it failed at the socket level (logged by the caller).
    Closed(Option<std::io::Error>),
    /// It sent something against the protocol.
    Protocol(ProtocolError),
    /// A batch of it could not be made durable.
    Broken,
    /// Silent for too long: no HELLO in time, or nothing for `idle_timeout_secs`. Says which.
    Idle(String),
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
    tokio::pin!(shutdown);
    let ended = tokio::select! {
        _ = &mut shutdown => Ended::Shutdown,
        ended = async {
            match handshake(&mut reader, &mut writer, listener, peer.as_ref()).await {
                Ok(host) => agent_host = host,
                Err(ended) => return ended,
            }
            let sender = Sender {
                source: &source,
                tls_peer: peer.as_ref().map(|p| p.name.as_str()),
                agent_host: agent_host.as_deref(),
                host_if_missing: None,
            };
            tokio::select! {
                ended = read_batches(shard, listener, &mut reader, sender, &acks, max_batch_bytes) => ended,
                ended = write_acks(&acks, &mut writer) => ended,
            }
        } => ended,
    };
    let reason = match ended {
        Ended::Closed(None) | Ended::Shutdown => None,
        Ended::Closed(Some(e)) => {
            listener
                .warning
                .warn(|| format!("listener {}: agent {source}: {e}", listener.name));
            None
        }
        Ended::Idle(what) => Some(what),
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
        Ended::Protocol(e) => {
            listener.metrics.framing_errors.add(1);
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

/// Reads the agent's HELLO and answers it. Returns the host the agent is authenticated as
/// ([`super::agent_auth`]).
async fn handshake<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut R,
    writer: &mut W,
    listener: &ListenerContext,
    peer: Option<&PeerIdentity>,
) -> Result<Option<String>, Ended> {
    let mut body = Vec::new();
    let kind =
        match tokio::time::timeout(HELLO_TIMEOUT, read_frame(reader, &mut body, 1 << 16)).await {
            Err(_) => {
                return Err(Ended::Idle(format!(
                    "no HELLO within {HELLO_TIMEOUT:?} of connecting"
                )));
            }
            Ok(read) => read?,
        };
    if kind != Kind::Hello {
        return Err(Ended::Protocol(ProtocolError::Unexpected {
            expected: Kind::Hello,
            got: kind,
        }));
    }
    let rest = protocol::parse_hello(&body).map_err(Ended::Protocol)?;
    let (host, token) = protocol::parse_agent_hello(rest).map_err(Ended::Protocol)?;
    let authenticated = super::agent_auth::authenticate(
        &host,
        peer,
        token.as_deref(),
        listener.agent_tokens.as_deref(),
    )
    .map_err(|(reason, what)| Ended::Refused(reason, what))?;
    let mut hello = Vec::new();
    protocol::gateway_hello(&mut hello);
    writer
        .write_all(&hello)
        .await
        .map_err(|e| Ended::Closed(Some(e)))?;
    Ok(authenticated)
}

/// Reads one frame whose body is at most `max_body` bytes.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    body: &mut Vec<u8>,
    max_body: usize,
) -> Result<Kind, Ended> {
    let mut header = [0; protocol::FRAME_HEADER_LEN];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(Ended::Closed(None)),
        Err(e) => return Err(Ended::Closed(Some(e))),
    }
    let (kind, len) = protocol::parse_header(header).map_err(Ended::Protocol)?;
    if len > max_body {
        return Err(Ended::Protocol(ProtocolError::FrameLength(len as u64 + 1)));
    }
    body.clear();
    body.resize(len, 0);
    reader
        .read_exact(body)
        .await
        .map_err(|e| Ended::Closed(Some(e)))?;
    Ok(kind)
}

/// Takes BATCH frames into the shard until the connection ends.
async fn read_batches<I: Intake, R: AsyncRead + Unpin>(
    shard: &I,
    listener: &ListenerContext,
    reader: &mut R,
    sender: Sender<'_>,
    acks: &std::sync::Arc<Acknowledgements>,
    max_batch_bytes: usize,
) -> Ended {
    let metrics = &*listener.metrics;
    // The largest body a batch of `max_batch_bytes` can have: its header and lz4's worst case.
    let max_body =
        protocol::BATCH_HEADER_LEN + lz4_flex::block::get_maximum_output_size(max_batch_bytes);
    let (mut body, mut raw) = (Vec::new(), Vec::new());
    let mut previous_seq = None;
    loop {
        shard.until_unblocked().await;
        let read = read_frame(reader, &mut body, max_body);
        let kind = match listener.idle_timeout {
            Some(idle) => match tokio::time::timeout(idle, read).await {
                Ok(read) => read,
                Err(_) => {
                    return Ended::Idle("idle_timeout_secs passed without a frame".into());
                }
            },
            None => read.await,
        };
        let kind = match kind {
            Ok(kind) => kind,
            Err(ended) => return ended,
        };
        if kind != Kind::Batch {
            return Ended::Protocol(ProtocolError::Unexpected {
                expected: Kind::Batch,
                got: kind,
            });
        }
        let header = match protocol::decode_batch(&body, max_batch_bytes, &mut raw) {
            Ok(header) => header,
            Err(e) => return Ended::Protocol(e),
        };
        if let Some(previous) = previous_seq.filter(|&p| header.seq <= p) {
            return Ended::Protocol(ProtocolError::SeqOrder {
                seq: header.seq,
                previous,
            });
        }
        previous_seq = Some(header.seq);
        let (mut truncated, mut dropped) = (0, 0);
        shard.receive(metrics, |receive| {
            // `decode_batch` checked every length, so every item is a message.
            for message in protocol::messages(&raw).flatten() {
                let message = if message.len() <= listener.max_message_bytes {
                    message
                } else if listener.oversize == super::framing::OversizePolicy::Truncate {
                    truncated += 1;
                    &message[..listener.max_message_bytes]
                } else {
                    dropped += 1;
                    continue;
                };
                receive.message(message, listener.format, &sender);
            }
            receive.acknowledge_when_durable(acks.token(header.seq));
        });
        metrics.truncated.add(truncated);
        metrics.dropped_oversize.add(dropped);
        for buffer in [&mut body, &mut raw] {
            if buffer.capacity() > KEEP_BUFFER_BYTES {
                *buffer = Vec::new();
            }
        }
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
