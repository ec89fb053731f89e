//! Stream listeners (TCP, Unix stream, and the agent listener): accepting connections, and
//! reading framed syslog messages (agent connections are served by [`super::acked`]).
//!
//! Each connection is a task on the shard that accepted it. A connection reads into its own
//! buffer and hands every complete frame to the shard without copying it; the partial frame at
//! the end stays in the buffer for the next read. Buffers start small ([`INITIAL_READ`]) so
//! thousands of idle connections cost little, and double (up to [`MAX_READ`]) while reads keep
//! filling them, so a busy connection makes few large reads.
//!
//! A slow or stalled client only stalls its own task. A connection is closed when its peer
//! closes (a partial last line is kept), after `idle_timeout_secs` of silence if set, on a read
//! error, or at shutdown, after taking what keeps arriving within [`DRAIN_QUIET`], for at most
//! [`DRAIN_LIMIT`] (a sender that never pauses, or a shard blocked by a failing sink, cannot
//! hold a shutdown up).

use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::framing::Decoder;
use super::intake::{Connections, Intake, Receive, Sender};
use super::tls::PeerIdentity;
use super::{ListenerContext, Shutdown, StreamProtocol};
use crate::metrics::PeerRefusal;

/// First read size of a connection, in bytes.
pub const INITIAL_READ: usize = 16 * 1024;
/// Largest read size a busy connection grows to, in bytes.
pub const MAX_READ: usize = 256 * 1024;
/// At shutdown, a connection keeps reading while data keeps arriving within this time...
const DRAIN_QUIET: Duration = Duration::from_millis(50);
/// ...but for no longer than this.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Something that accepts connections: a TCP or Unix stream listener, or TLS over TCP
/// ([`super::tls`]).
///
/// Accepting is split in two so that no peer can hold up the accept loop: [`Acceptor::accept`]
/// takes the next connection at once, and its [`Acceptor::Establish`] future (a TLS
/// handshake, with its own deadline) runs in the connection's task.
pub trait Acceptor {
    type Stream: AsyncRead + AsyncWrite + Unpin + 'static;
    /// Completes a connection in its own task: its stream and verified peer, or why it was
    /// refused.
    type Establish: std::future::Future<Output = Result<Established<Self::Stream>, Refused>>
        + 'static;
    /// Accepts one connection and describes its peer for the `source` field.
    fn accept(
        &self,
    ) -> impl std::future::Future<Output = std::io::Result<(Self::Establish, String)>>;
}

/// A connection ready to read.
pub struct Established<S> {
    pub stream: S,
    /// The peer's verified certificate, on TLS listeners that asked for one.
    pub peer: Option<PeerIdentity>,
}

/// A plain stream, established as soon as it is accepted.
pub type Ready<S> = std::future::Ready<Result<Established<S>, Refused>>;

fn ready<S>(stream: S) -> Ready<S> {
    std::future::ready(Ok(Established { stream, peer: None }))
}

/// Why a connection was closed before it was read: counted by `reason` and logged with
/// `detail`, or, without a reason, closed by the peer before it sent anything.
#[derive(Debug)]
pub struct Refused {
    pub reason: Option<PeerRefusal>,
    pub detail: String,
}

impl Refused {
    pub fn new(reason: PeerRefusal, detail: String) -> Self {
        Refused {
            reason: Some(reason),
            detail,
        }
    }

    /// The peer closed (or reset) the connection before sending anything: not counted.
    pub fn closed() -> Self {
        Refused {
            reason: None,
            detail: String::new(),
        }
    }
}

impl Acceptor for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    type Establish = Ready<Self::Stream>;
    async fn accept(&self) -> std::io::Result<(Self::Establish, String)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        Ok((ready(stream), peer.to_string()))
    }
}

/// A Unix stream listener and the socket path it reports as the source.
pub struct UnixAcceptor {
    pub listener: tokio::net::UnixListener,
    pub path: String,
}

impl Acceptor for UnixAcceptor {
    type Stream = tokio::net::UnixStream;
    type Establish = Ready<Self::Stream>;
    async fn accept(&self) -> std::io::Result<(Self::Establish, String)> {
        let (stream, _) = self.listener.accept().await?;
        Ok((ready(stream), self.path.clone()))
    }
}

/// Accepts connections until `shutdown`, each served by its own task on this shard.
pub async fn run_acceptor<I: Intake + 'static, A: Acceptor>(
    shard: Rc<I>,
    connections: Rc<Connections>,
    listener: Rc<ListenerContext>,
    acceptor: A,
    shutdown: Shutdown,
) {
    let stop = shutdown.clone().wait();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            accepted = acceptor.accept() => accepted,
        };
        if !admit::<I, A>(&shard, &connections, &listener, accepted, &shutdown) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Connections the kernel completed before the shutdown may already hold data the senders
    // consider delivered: accept them too, and let them drain like the others.
    while let Ok(accepted) = tokio::time::timeout(Duration::ZERO, acceptor.accept()).await {
        if !admit::<I, A>(&shard, &connections, &listener, accepted, &shutdown) {
            break;
        }
    }
}

/// Starts serving an accepted connection, or refuses it when the listener is at its limit.
/// Returns false on an accept error (out of descriptors or memory), so the caller pauses
/// instead of spinning on it.
fn admit<I: Intake + 'static, A: Acceptor>(
    shard: &Rc<I>,
    connections: &Rc<Connections>,
    listener: &Rc<ListenerContext>,
    accepted: std::io::Result<(A::Establish, String)>,
    shutdown: &Shutdown,
) -> bool {
    let metrics = &listener.metrics;
    match accepted {
        Ok((establish, source)) => {
            if metrics.connections_open.get() >= listener.max_connections as i64 {
                metrics.connections_rejected.add(1);
                listener.warning.warn(|| {
                    format!(
                        "listener {}: {} connections open, refusing {source} (max_connections)",
                        listener.name, listener.max_connections
                    )
                });
                return true;
            }
            let counted = connections.opened(metrics);
            let (shard, listener, shutdown) = (shard.clone(), listener.clone(), shutdown.clone());
            tokio::task::spawn_local(async move {
                // A handshake still in progress at shutdown gets DRAIN_LIMIT to finish, so a
                // client that connected just before can still deliver what it sends.
                tokio::pin!(establish);
                let established = tokio::select! {
                    established = &mut establish => established,
                    _ = shutdown.clone().wait() => {
                        match tokio::time::timeout(DRAIN_LIMIT, &mut establish).await {
                            Ok(established) => established,
                            Err(_) => return,
                        }
                    }
                };
                let Established { stream, peer } = match established {
                    Ok(established) => established,
                    Err(refused) => {
                        if let Some(reason) = refused.reason {
                            listener.metrics.refused(reason);
                            listener.warning.warn(|| {
                                format!(
                                    "listener {}: refused {source} ({}): {}",
                                    listener.name,
                                    reason.as_str(),
                                    refused.detail
                                )
                            });
                        }
                        return;
                    }
                };
                match listener.protocol {
                    StreamProtocol::Syslog => {
                        let sender = Sender {
                            source: &source,
                            tls_peer: peer.as_ref().map(|p| p.name.as_str()),
                            agent_host: None,
                            host_if_missing: listener.host_if_missing.as_deref(),
                        };
                        serve_connection(&*shard, &listener, stream, sender, shutdown.wait()).await;
                    }
                    StreamProtocol::Agent { .. } => {
                        super::acked::serve_agent(
                            &*shard,
                            &listener,
                            stream,
                            source,
                            peer,
                            shutdown.wait(),
                        )
                        .await;
                    }
                }
                drop(counted);
            });
            true
        }
        Err(e) => {
            listener
                .warning
                .warn(|| format!("listener {}: accept failed: {e}", listener.name));
            false
        }
    }
}

/// Reads one connection until it ends, handing its frames to the shard.
pub async fn serve_connection<I: Intake, R: AsyncRead + Unpin>(
    shard: &I,
    listener: &ListenerContext,
    mut stream: R,
    sender: Sender<'_>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let source = sender.source;
    let metrics = &*listener.metrics;
    let mut decoder = Decoder::new(
        listener.framing,
        listener.max_message_bytes,
        listener.oversize,
    );
    let mut buf = BytesMut::with_capacity(INITIAL_READ);
    let mut read_size = INITIAL_READ;
    tokio::pin!(shutdown);
    let mut draining_since = None;
    loop {
        // Draining ends at DRAIN_LIMIT even if the sender keeps sending or the shard stays
        // blocked (a failing sink): a shutdown must not wait on a client.
        let drain_over = draining_since.map(|since| since + DRAIN_LIMIT);
        let drained = tokio::select! {
            _ = &mut shutdown, if draining_since.is_none() => {
                draining_since = Some(tokio::time::Instant::now());
                continue;
            }
            _ = shard.until_unblocked() => {
                drain_over.is_some_and(|over| tokio::time::Instant::now() >= over)
            }
            _ = sleep_until_some(drain_over) => true,
        };
        // A partial frame may need up to a whole message of room.
        let want = if buf.is_empty() {
            read_size
        } else {
            read_size.max(decoder.needed_buffer())
        };
        buf.reserve(want);
        let spare = buf.capacity() - buf.len();
        let read = async {
            match (draining_since, listener.idle_timeout) {
                _ if drained => None,
                (Some(since), _) => {
                    let left = DRAIN_LIMIT.saturating_sub(since.elapsed()).min(DRAIN_QUIET);
                    tokio::time::timeout(left, stream.read_buf(&mut buf))
                        .await
                        .ok()
                }
                (None, Some(idle)) => tokio::time::timeout(idle, stream.read_buf(&mut buf))
                    .await
                    .ok(),
                (None, None) => Some(stream.read_buf(&mut buf).await),
            }
        };
        let read = tokio::select! {
            read = read => read,
            _ = &mut shutdown, if draining_since.is_none() => {
                draining_since = Some(tokio::time::Instant::now());
                continue;
            }
        };
        let (eof, n) = match read {
            Some(Ok(0)) | None => (true, 0),
            Some(Ok(n)) => (false, n),
            Some(Err(e)) => {
                listener
                    .warning
                    .warn(|| format!("listener {}: read from {source} failed: {e}", listener.name));
                (true, 0)
            }
        };
        let used = shard.receive(metrics, |receive| {
            decoder.decode(&buf, eof, |frame| {
                receive.message(frame.message, listener.format, &sender)
            })
        });
        buf.advance(used);
        let counters = decoder.take_counters();
        metrics.truncated.add(counters.truncated);
        metrics.dropped_oversize.add(counters.dropped_oversize);
        metrics.framing_errors.add(counters.bad_octet_counts);
        if counters.bad_octet_counts > 0 {
            listener.warning.warn(|| {
                format!(
                    "listener {}: {source} sent an octet count larger than {} × max_message_bytes; read as a line instead",
                    listener.name,
                    super::framing::COUNT_TRUST_FACTOR
                )
            });
        }
        if eof {
            return;
        }
        if n == spare && read_size < MAX_READ {
            read_size *= 2;
        }
    }
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
