//! Stream listeners (TCP, Unix stream, and the agent listener): accepting connections, and
//! reading framed syslog messages (agent connections are served by [`super::acked`]).
//!
//! Each connection is a task on the shard that accepted it. A connection reads into its own
//! buffer and hands every complete frame to the shard without copying it; the partial frame at
//! the end stays in the buffer for the next read. Buffers start small ([`INITIAL_READ`]) so
//! thousands of idle connections cost little, and double (up to [`MAX_READ`]) while reads keep
//! filling them, so a busy connection makes few large reads.
//!
//! Memory follows arrival: a partial frame's buffer grows by what its frame still needs (at
//! most the rest of one message), not by doubling, and every byte beyond [`INITIAL_READ`] is
//! granted by the sources' [`MemoryBudget`](super::limits::MemoryBudget) first; when it is
//! spent the connection stops reading (its sender feels TCP backpressure) until there is room.
//! Accepting follows the listener's [`Admission`](super::limits::Admission) (`max_connections`,
//! `max_connections_per_ip`, `reserved_connections`), each refusal counted by reason.
//!
//! A slow or stalled client only stalls its own task. A connection is closed when its peer
//! closes (a partial last line is kept), after `idle_timeout_secs` of silence if set, when its
//! frame in progress misses its deadline (`frame_timeout_secs` plus its bytes at
//! `min_bytes_per_sec`: a slowloris client cannot keep a slot; its partial line is kept), when
//! the budget stays spent past that deadline, on a read error, or at shutdown, after taking what keeps arriving within [`DRAIN_QUIET`], for at most
//! [`DRAIN_LIMIT`] (a sender that never pauses, or a shard blocked by a failing sink, cannot
//! hold a shutdown up).

use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::framing::Decoder;
use super::intake::{Connections, Intake, Receive, Sender};
use super::limits::{BudgetShare, IngestPacer, NotAdmitted};
use super::tls::PeerIdentity;
use super::{ListenerContext, Shutdown, StreamProtocol};
use crate::metrics::PeerRefusal;

/// First read size of a connection, in bytes.
pub const INITIAL_READ: usize = 16 * 1024;
/// Largest read size a busy connection grows to, in bytes.
pub const MAX_READ: usize = 256 * 1024;
/// A partial frame's buffer grows by at least this much. (The read path with the budget and
/// deadlines measured 236 µs per 10,000 lines against 232 µs before them, `benches/stream.rs`:
/// within noise.)
const MIN_GROWTH: usize = 4 * 1024;
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
            let peer = source.parse::<std::net::SocketAddr>().ok().map(|a| a.ip());
            let slot = match listener.peers.admit(peer, listener.admission) {
                Ok(slot) => slot,
                Err(refused) => {
                    let (counter, why) = match refused {
                        NotAdmitted::Full => (&metrics.connections_rejected, "max_connections"),
                        NotAdmitted::PerIp => (
                            &metrics.connections_rejected_per_ip,
                            "max_connections_per_ip",
                        ),
                        NotAdmitted::Reserved => (
                            &metrics.connections_rejected_reserved,
                            "only reserved_connections are left, for peers without one",
                        ),
                    };
                    counter.add(1);
                    listener
                        .warning
                        .warn(|| format!("listener {}: refusing {source} ({why})", listener.name));
                    return true;
                }
            };
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
                drop(slot);
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
    // What `buf` was allocated with, and the budget it holds beyond INITIAL_READ.
    let mut allocated = INITIAL_READ;
    let mut share = BudgetShare::new(&listener.budget);
    // When the partial frame at the start of `buf` began to arrive.
    let mut partial_since: Option<tokio::time::Instant> = None;
    let mut read_size = INITIAL_READ;
    // `max_bytes_per_sec_per_connection`, and the pause it asks for before the next read.
    let mut pacer = (listener.admission.max_bytes_per_sec > 0)
        .then(|| IngestPacer::new(listener.admission.max_bytes_per_sec));
    let mut pause = Duration::ZERO;
    // `max_lines_per_sec_per_ip`, `max_bytes_per_sec_per_ip`: shared with the address's other
    // connections.
    let peer_ip = source.parse::<std::net::SocketAddr>().ok().map(|a| a.ip());
    tokio::pin!(shutdown);
    let mut draining_since = None;
    loop {
        // Draining ends at DRAIN_LIMIT even if the sender keeps sending or the shard stays
        // blocked (a failing sink): a shutdown must not wait on a client.
        let drain_over = draining_since.map(|since| since + DRAIN_LIMIT);
        let blocked_from = tokio::time::Instant::now();
        if !pause.is_zero() && draining_since.is_none() {
            metrics.throttled.add(1);
            tokio::select! {
                _ = tokio::time::sleep(std::mem::take(&mut pause)) => {}
                _ = &mut shutdown => draining_since = Some(tokio::time::Instant::now()),
            }
        }
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
        // Time the shard held us back is not the sender's: its frame's clock stops meanwhile.
        if let Some(since) = partial_since.as_mut() {
            *since += blocked_from.elapsed();
        }
        // The frame in progress must complete by this time (a minimum data rate).
        let frame_deadline =
            partial_since.map(|since| since + listener.limits.frame_deadline(buf.len()));
        // Grow with what arrived: a partial frame needs at most the rest of a whole message,
        // so the buffer of a 64 KiB partial line is about 64 KiB, not twice that.
        let mut want = if buf.is_empty() {
            read_size
        } else {
            read_size
                .min(decoder.needed_buffer().saturating_sub(buf.len()))
                .max(MIN_GROWTH)
        };
        let mut has_room = buf.capacity() - buf.len() >= want || buf.try_reclaim(want);
        if !has_room && !share.try_resize(budgeted(buf.len() + want).max(share.bytes())) {
            // No room in the budget for a larger read: a busy sender reads on in the
            // INITIAL_READ every connection has, which needs none; only a partial frame
            // longer than that waits for room.
            read_size = INITIAL_READ;
            want = MIN_GROWTH.max(INITIAL_READ.saturating_sub(buf.len()));
            has_room = buf.capacity() - buf.len() >= want || buf.try_reclaim(want);
            if !has_room && !share.try_resize(budgeted(buf.len() + want).max(share.bytes())) {
                // Stop reading (the sender feels TCP backpressure) until there is room, the
                // frame's deadline passes, or the gateway stops.
                let granted = tokio::select! {
                    granted = share.resize(budgeted(buf.len() + want).max(share.bytes())) => granted,
                    _ = sleep_until_some(frame_deadline) => false,
                    _ = &mut shutdown, if draining_since.is_none() => {
                        draining_since = Some(tokio::time::Instant::now());
                        continue;
                    }
                };
                if !granted {
                    metrics.closed_memory.add(1);
                    listener.budget.metrics().refusals.add(1);
                    listener.warning.warn(|| {
                        format!(
                            "listener {}: no room in the memory budget for {source}'s partial frame of {} bytes; closing",
                            listener.name,
                            buf.len()
                        )
                    });
                    return;
                }
            }
        }
        if !has_room {
            // Exactly the size granted: BytesMut's own growth would double it.
            let size = buf.len() + want;
            let mut bigger = BytesMut::with_capacity(size);
            bigger.extend_from_slice(&buf);
            buf = bigger;
            allocated = size;
        }
        let spare = buf.capacity() - buf.len();
        let read = async {
            match (draining_since, listener.idle_timeout) {
                _ if drained => Read::Stop,
                (Some(since), _) => {
                    let left = DRAIN_LIMIT.saturating_sub(since.elapsed()).min(DRAIN_QUIET);
                    match tokio::time::timeout(left, stream.read_buf(&mut buf)).await {
                        Ok(read) => Read::Done(read),
                        Err(_) => Read::Stop,
                    }
                }
                (None, idle) => {
                    let idle_over = idle.map(|idle| tokio::time::Instant::now() + idle);
                    tokio::select! {
                        read = stream.read_buf(&mut buf) => Read::Done(read),
                        _ = sleep_until_some(idle_over) => Read::Idle,
                        _ = sleep_until_some(frame_deadline) => Read::Slow,
                    }
                }
            }
        };
        let read = tokio::select! {
            read = read => read,
            _ = &mut shutdown, if draining_since.is_none() => {
                draining_since = Some(tokio::time::Instant::now());
                continue;
            }
        };
        let read = match read {
            Read::Idle => {
                metrics.closed_idle.add(1);
                None
            }
            Read::Slow => {
                metrics.closed_slow.add(1);
                listener.warning.warn(|| {
                    format!(
                        "listener {}: {source} sent a frame slower than min_bytes_per_sec allows; closing",
                        listener.name
                    )
                });
                None
            }
            Read::Stop => None,
            Read::Done(read) => Some(read),
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
        let mut lines = 0;
        let used = shard.receive(metrics, |receive| {
            decoder.decode(&buf, eof, |frame| {
                lines += 1;
                receive.message(frame.message, listener.format, &sender)
            })
        });
        buf.advance(used);
        partial_since = match (buf.is_empty(), used) {
            (true, _) => None,
            (false, 0) => partial_since.or(Some(tokio::time::Instant::now())),
            (false, _) => Some(tokio::time::Instant::now()),
        };
        // A buffer that grew for one long line goes back to the read size once it is done.
        if buf.is_empty() && allocated > read_size.max(INITIAL_READ) {
            buf = BytesMut::with_capacity(read_size);
            allocated = read_size;
            share.try_resize(budgeted(allocated));
        }
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
        if let Some(pacer) = pacer.as_mut() {
            pause = pacer.took(n, std::time::Instant::now());
        }
        if let (Some(rates), Some(ip)) = (&listener.peer_rates, peer_ip) {
            let wait = rates.gate(std::time::Instant::now(), |gate| gate.pace(ip, lines, n));
            pause = pause.max(wait);
        }
        // A paced connection reads at most an eighth of a second's worth at once, so that the
        // bytes a read takes before its pause stay small next to the rate.
        let mut most = match listener.admission.max_bytes_per_sec {
            0 => MAX_READ,
            rate => MAX_READ.min(INITIAL_READ.max((rate / 8) as usize)),
        };
        // Likewise under the address's rates: a read's lines are taken before the pause they
        // cost, so what one read can overshoot the rate by is kept to the first read's size.
        if let (Some(rates), Some(_)) = (&listener.peer_rates, peer_ip) {
            let rate = rates.limit().bytes_per_sec;
            most = most.min(if rate > 0 {
                INITIAL_READ.max((rate / 8) as usize)
            } else {
                INITIAL_READ
            });
        }
        if n == spare && read_size < most {
            read_size *= 2;
        }
    }
}

/// The bytes of a connection buffer of `size` that the memory budget must grant: all beyond
/// the [`INITIAL_READ`] every connection has.
fn budgeted(size: usize) -> usize {
    size.saturating_sub(INITIAL_READ)
}

/// What a read of a connection came to.
enum Read {
    Done(std::io::Result<usize>),
    /// Nothing for `idle_timeout_secs`.
    Idle,
    /// The frame in progress missed its deadline.
    Slow,
    /// Draining for the shutdown is over.
    Stop,
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
