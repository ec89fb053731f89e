//! What a source hands its messages to, and the connections it keeps open.
//!
//! A source reads sockets and cuts what arrives into messages; it does not parse, encode or
//! batch them. It hands each receive (one read of a stream, one `recvmmsg` of datagrams, one
//! agent batch) to an [`Intake`]: in the gateway, the shard it runs on
//! ([`crate::pipeline::shard::Shard`]), which parses every message into its current batch.
//! The trait is what keeps the dependency pointing with the data: sources know nothing of the
//! pipeline after them, and a source's tests can collect messages without one.
//!
//! Contract, which the pipeline's shard keeps and sources rely on:
//! - Everything given to one [`Intake::receive`] call lands in one batch, so an
//!   acknowledgement attached during it ([`Receive::acknowledge_when_durable`]) covers exactly
//!   that receive's messages.
//! - While [`Receive::is_blocked`] is true the intake cannot take more without growing past
//!   its bound: stream sources stop reading (TCP flow control slows the sender) and datagram
//!   sources drop and count. [`Intake::until_unblocked`] resolves when that is over.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::Notify;

use super::Format;
use crate::ack::AckToken;
use crate::metrics::ListenerMetrics;

/// Takes the messages a source receives (see the [module docs](self)).
pub trait Intake {
    /// One receive in progress.
    type Receive<'a>: Receive
    where
        Self: 'a;

    /// Runs `f` for one receive, stamped with the time once, then adds its counts to `metrics`.
    fn receive<R>(
        &self,
        metrics: &ListenerMetrics,
        f: impl FnOnce(&mut Self::Receive<'_>) -> R,
    ) -> R {
        self.receive_at(metrics, std::time::SystemTime::now(), f)
    }

    /// [`Intake::receive`], stamped with `at` instead of now: for a source that knows when its
    /// messages were received first (a Kafka record's timestamp), so that reading one again
    /// gives the same record.
    fn receive_at<R>(
        &self,
        metrics: &ListenerMetrics,
        at: std::time::SystemTime,
        f: impl FnOnce(&mut Self::Receive<'_>) -> R,
    ) -> R;

    /// Resolves once the intake can take more (at once if it can).
    fn until_unblocked(&self) -> impl Future<Output = ()>;
}

/// One receive: the messages given to it go into one batch.
pub trait Receive {
    /// Takes one message, received from `sender`, to be read as `format`.
    fn message(&mut self, message: &[u8], format: Format, sender: &Sender<'_>);

    /// Takes one record already encoded (logtail's JSON, as its Kafka sink wrote it), as is:
    /// not parsed, not routed by the Kafka sink's key and topic templates.
    fn encoded(&mut self, value: &[u8]);

    /// True when the intake cannot take more until the sink catches up.
    fn is_blocked(&self) -> bool;

    /// Has `token` released once this receive's messages are durable in the sink (at once if
    /// the receive took none).
    fn acknowledge_when_durable(&mut self, token: AckToken);
}

/// Who sent a message, as far as the listener knows: stored with every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender<'a> {
    /// The peer address or socket path (the record's `source`).
    pub source: &'a str,
    /// The name of the peer's verified TLS client certificate (`tls_peer`).
    pub tls_peer: Option<&'a str>,
    /// The host an authenticated agent sent as (`agent_host`): only set when its certificate
    /// or token covers that host. Its `logtail@32473` elements are trusted only then.
    pub agent_host: Option<&'a str>,
    /// The host of a message that names none: the gateway's own name on local sockets, as
    /// rsyslog and syslog-ng do for `/dev/log` (see [`super::ListenerContext::host_if_missing`]).
    pub host_if_missing: Option<&'a [u8]>,
}

impl<'a> Sender<'a> {
    /// A sender known only by its address or socket path.
    pub fn at(source: &'a str) -> Self {
        Sender {
            source,
            tls_peer: None,
            agent_host: None,
            host_if_missing: None,
        }
    }

    /// The same sender, its messages without a hostname given `host`.
    #[must_use]
    pub fn with_host_if_missing(self, host: Option<&'a [u8]>) -> Self {
        Sender {
            host_if_missing: host,
            ..self
        }
    }
}

/// The connections open on one shard, so that a shutdown can wait for every connection task,
/// including those accepted but not yet run.
#[derive(Debug, Default)]
pub struct Connections {
    open: Cell<usize>,
    /// Woken when a connection ends.
    closed: Notify,
}

impl Connections {
    /// Counts a new connection until the returned guard is dropped. Taken before the
    /// connection's task is spawned.
    pub fn opened(self: &Rc<Self>, metrics: &Arc<ListenerMetrics>) -> ConnectionGuard {
        self.open.set(self.open.get() + 1);
        metrics.connections_open.add(1);
        metrics.connections.add(1);
        ConnectionGuard {
            connections: self.clone(),
            metrics: metrics.clone(),
        }
    }

    /// Resolves when no connection is left.
    pub async fn until_all_closed(&self) {
        loop {
            let notified = self.closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open.get() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Keeps a connection counted while it lives.
pub struct ConnectionGuard {
    connections: Rc<Connections>,
    metrics: Arc<ListenerMetrics>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let open = &self.connections.open;
        open.set(open.get() - 1);
        self.metrics.connections_open.add(-1);
        self.connections.closed.notify_waiters();
    }
}
