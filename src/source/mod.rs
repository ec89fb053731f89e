//! Sources: the sockets logs arrive on, and cutting what arrives into messages.
//!
//! A source reads its sockets and hands each receive to an [`intake::Intake`] (in the gateway,
//! the shard it runs on, [`crate::pipeline::shard`]); it neither parses nor batches. Today's
//! sources: syslog over UDP ([`datagram`]), TCP and Unix sockets ([`stream`], cut into messages
//! by [`framing`]), TLS on TCP and agent listeners ([`tls`]: RFC 5425), and agents' acknowledged
//! batches ([`acked`]), whose claimed host [`agent_auth`] checks against their certificate or
//! token. Each listener's config section is [`config::ListenerConfig`]; what hostile clients can
//! make them hold (one memory budget, deadlines, admission per peer) is [`limits`],
//! `[ingest.limits]`.
//!
//! Every listener is bound once at startup, on the calling thread, so a bad address or a busy
//! port is reported before anything runs. Each shard then gets its own share of every listener:
//! - UDP and TCP: one socket per shard bound to the same address with `SO_REUSEPORT`, so the
//!   kernel spreads datagrams and connections over the shards (by flow hash).
//! - Unix stream: one socket, shared by all shards through duplicated descriptors; whichever
//!   shard is free takes the next connection.
//! - Unix datagram: one socket, read by one shard (listener `i` by shard `i % shards`). A Unix
//!   datagram carries no flow the kernel could hash on, so spreading one socket over shards
//!   would reorder a local program's lines; one shard with `recvmmsg` takes hundreds of
//!   thousands of datagrams a second, more than local programs send.
//!
//! A connection belongs to the shard that accepted it for its whole life, so one sender's lines
//! stay in order: they go through one shard, one ring, and the sink drains each ring in order.

pub mod acked;
pub mod agent_auth;
pub mod config;
pub mod datagram;
pub mod framing;
pub mod intake;
pub mod kafka;
pub mod limits;
pub mod stream;
pub mod tls;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::log_limit::RateLimitedWarning;
use crate::metrics::ListenerMetrics;
pub use config::{ListenerConfig, ListenerKind};
use framing::{Framing, OversizePolicy};
use intake::{Connections, Intake};
use limits::{Admission, MAX_RATE_PEERS, MemoryBudget, PeerRates, PeerTable, SourceLimits};
use stream::Acceptor;

/// Which syslog format a listener expects its senders to speak; the parser
/// ([`crate::parse::parse`]) reads each message accordingly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Decide per message (see [`crate::parse`]).
    #[default]
    Auto,
    /// RFC 5424 only, with its character sets and length limits.
    Rfc5424,
    /// RFC 3164 (BSD) and the variants real senders use.
    Rfc3164,
}

/// The error of [`Format::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown syslog format {0:?}: expected \"auto\", \"rfc5424\" or \"rfc3164\"")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Format::Auto),
            "rfc5424" => Ok(Format::Rfc5424),
            "rfc3164" => Ok(Format::Rfc3164),
            _ => Err(UnknownFormat(s.to_owned())),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Auto => "auto",
            Format::Rfc5424 => "rfc5424",
            Format::Rfc3164 => "rfc3164",
        })
    }
}

/// What every listener takes from `[ingest]` unless it sets its own.
#[derive(Debug, Clone)]
pub struct ListenerDefaults {
    pub format: Format,
    pub max_message_bytes: usize,
    pub oversize: OversizePolicy,
    /// `[ingest.limits]`.
    pub limits: SourceLimits,
    /// The one memory budget all listeners share.
    pub budget: Arc<MemoryBudget>,
}

/// A listener as its shard tasks see it.
#[derive(Debug, Clone)]
pub struct ListenerContext {
    pub name: String,
    pub metrics: Arc<ListenerMetrics>,
    pub format: Format,
    pub framing: Framing,
    pub max_message_bytes: usize,
    pub oversize: OversizePolicy,
    pub max_connections: usize,
    pub idle_timeout: Option<Duration>,
    /// The `source` of messages with no peer address: the socket path of Unix listeners.
    pub source: String,
    /// The `host` of messages that name none: the gateway's host name on Unix listeners,
    /// whose local senders (`logger -u`) leave it out by design, as rsyslog and syslog-ng
    /// fill it in for `/dev/log`; `None` on network listeners.
    pub host_if_missing: Option<Box<[u8]>>,
    /// Logs bad input at most once a second for this listener.
    pub warning: Arc<RateLimitedWarning>,
    /// What its connections speak.
    pub protocol: StreamProtocol,
    /// TLS settings of a `tcp` or `agent` listener with `[listen.tls]`.
    pub tls: Option<Arc<tls::TlsConfig>>,
    /// The tokens agents must present (without a client certificate), from `tokens_file`.
    pub agent_tokens: Option<Arc<agent_auth::AgentTokens>>,
    /// `[ingest.limits]`: deadlines and decompression limits.
    pub limits: SourceLimits,
    /// The memory budget shared by every listener.
    pub budget: Arc<MemoryBudget>,
    /// Connections open per peer, shared by this listener's shards.
    pub peers: Arc<PeerTable>,
    /// `max_connections`, `max_connections_per_ip`, `reserved_connections`.
    pub admission: Admission,
    /// `max_lines_per_sec_per_ip`, `max_bytes_per_sec_per_ip`: the buckets of each peer
    /// address, shared by this listener's shards; `None` without limits.
    pub peer_rates: Option<Arc<PeerRates>>,
}

/// What a stream listener's connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamProtocol {
    /// Syslog messages, framed per `framing` ([`stream`]).
    Syslog,
    /// The acknowledged agent protocol ([`acked`]), with batches up to this many bytes.
    Agent { max_batch_bytes: usize },
}

/// An error binding a listener, naming it.
#[derive(Debug, thiserror::Error)]
#[error("listener {name} ({kind} {address}): {source}")]
pub struct BindError {
    pub name: String,
    pub kind: &'static str,
    pub address: String,
    pub source: io::Error,
}

enum Sockets {
    /// One per shard, all bound to the same address.
    Udp(Vec<Socket>),
    /// One per shard, all bound to the same address.
    Tcp(Vec<Socket>),
    /// One shared socket.
    UnixDatagram(Socket),
    /// One shared socket.
    UnixStream(Socket),
    /// No socket: a Kafka consumer, run by one shard.
    Kafka(Arc<kafka::KafkaSourceConfig>),
}

/// A bound listener, ready to be handed to the shards.
pub struct BoundListener {
    pub context: ListenerContext,
    pub kind: ListenerKind,
    /// The bound address (with the real port when 0 was asked) or socket path.
    pub local: String,
    /// The socket file to remove at shutdown.
    pub unix_path: Option<PathBuf>,
    sockets: Sockets,
    /// The shard that reads a socket only one shard may read (Unix datagram), or runs the
    /// Kafka consumer.
    home_shard: usize,
    /// A Kafka source's own metrics.
    pub kafka_metrics: Option<Arc<crate::metrics::KafkaSourceMetrics>>,
}

/// A shard's share of a listener.
pub enum ShardSocket {
    Datagram(OwnedFd),
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
    Kafka(
        Arc<kafka::KafkaSourceConfig>,
        Arc<crate::metrics::KafkaSourceMetrics>,
    ),
}

impl BoundListener {
    /// Binds `listener`, named `name`, for `shards` shards; it is listener number `index`
    /// (which spreads the sockets only one shard may read over the shards).
    ///
    /// # Errors
    /// A [`BindError`] naming the listener when a socket cannot be created or bound.
    pub fn bind(
        listener: &ListenerConfig,
        name: String,
        defaults: &ListenerDefaults,
        index: usize,
        shards: usize,
    ) -> Result<BoundListener, BindError> {
        let described = listener
            .address
            .map(|a| a.to_string())
            .or_else(|| listener.path.as_ref().map(|p| p.display().to_string()))
            .unwrap_or_default();
        let error = |source: io::Error| BindError {
            name: name.clone(),
            kind: listener.kind.as_str(),
            address: described.clone(),
            source,
        };
        let (sockets, local, unix_path) = match listener.kind {
            ListenerKind::Udp | ListenerKind::Tcp | ListenerKind::Agent => {
                let addr = listener.address.ok_or_else(|| {
                    error(io::Error::new(io::ErrorKind::InvalidInput, "no address"))
                })?;
                let is_udp = listener.kind == ListenerKind::Udp;
                let first = inet_socket(addr, is_udp, listener.receive_buffer()).map_err(&error)?;
                // With port 0 the first bind picks the port; the other shards join that one.
                let bound = first
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .unwrap_or(addr);
                let mut all = vec![first];
                for _ in 1..shards {
                    all.push(
                        inet_socket(bound, is_udp, listener.receive_buffer()).map_err(&error)?,
                    );
                }
                let sockets = if is_udp {
                    Sockets::Udp(all)
                } else {
                    Sockets::Tcp(all)
                };
                (sockets, bound.to_string(), None)
            }
            ListenerKind::UnixDatagram | ListenerKind::UnixStream => {
                let path = listener.path.clone().unwrap_or_default();
                let datagram = listener.kind == ListenerKind::UnixDatagram;
                let socket = unix_socket(
                    &path,
                    datagram,
                    listener.socket_mode.0,
                    listener.receive_buffer(),
                )
                .map_err(&error)?;
                let sockets = if datagram {
                    Sockets::UnixDatagram(socket)
                } else {
                    Sockets::UnixStream(socket)
                };
                (sockets, path.display().to_string(), Some(path))
            }
            ListenerKind::Kafka => {
                let kafka = listener.kafka.clone().ok_or_else(|| {
                    error(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "no [listen.kafka]",
                    ))
                })?;
                let local = format!("{} {}", kafka.bootstrap_servers, kafka.topics.join(","));
                (Sockets::Kafka(Arc::new(kafka)), local, None)
            }
        };
        let context = ListenerContext {
            name: name.clone(),
            metrics: Arc::new(
                ListenerMetrics::new(&name, listener.kind.as_str()).with_store_quota(
                    listener.store_quota_bytes,
                    listener.kind == ListenerKind::Agent,
                ),
            ),
            format: listener.format.unwrap_or(defaults.format),
            framing: listener.framing,
            max_message_bytes: defaults.max_message_bytes,
            oversize: defaults.oversize,
            max_connections: listener.max_connections,
            idle_timeout: listener.idle_timeout,
            source: if listener.kind.is_unix() {
                local.clone()
            } else {
                String::new()
            },
            host_if_missing: listener
                .kind
                .is_unix()
                .then(|| crate::runtime::machine_host_name().into_bytes().into()),
            warning: Arc::new(RateLimitedWarning::new(Duration::from_secs(1))),
            protocol: match listener.kind {
                ListenerKind::Agent => StreamProtocol::Agent {
                    max_batch_bytes: listener.max_batch_bytes,
                },
                _ => StreamProtocol::Syslog,
            },
            tls: listener.tls.clone().map(Arc::new),
            agent_tokens: match &listener.tokens_file {
                None => None,
                Some(path) => Some(Arc::new(agent_auth::AgentTokens::load(path).map_err(
                    |e| error(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
                )?)),
            },
            limits: defaults.limits,
            budget: defaults.budget.clone(),
            peers: Arc::new(PeerTable::default()),
            admission: listener.admission(),
            peer_rates: listener
                .peer_rate_limit()
                .is_set()
                .then(|| Arc::new(PeerRates::new(listener.peer_rate_limit(), MAX_RATE_PEERS))),
        };
        Ok(BoundListener {
            context,
            kind: listener.kind,
            local,
            unix_path,
            kafka_metrics: matches!(sockets, Sockets::Kafka(_))
                .then(|| Arc::new(crate::metrics::KafkaSourceMetrics::new(&name))),
            sockets,
            home_shard: index % shards.max(1),
        })
    }

    /// Shard `shard`'s share of this listener, if it has one.
    ///
    /// # Errors
    /// When duplicating a shared socket fails (out of descriptors).
    pub fn for_shard(&self, shard: usize) -> io::Result<Option<ShardSocket>> {
        Ok(Some(match &self.sockets {
            Sockets::Udp(all) => ShardSocket::Datagram(all[shard].try_clone()?.into()),
            Sockets::Tcp(all) => ShardSocket::Tcp(all[shard].try_clone()?.into()),
            Sockets::UnixDatagram(socket) if shard == self.home_shard => {
                ShardSocket::Datagram(socket.try_clone()?.into())
            }
            Sockets::UnixDatagram(_) => return Ok(None),
            Sockets::UnixStream(socket) => ShardSocket::Unix(socket.try_clone()?.into()),
            Sockets::Kafka(config) if shard == self.home_shard => match &self.kafka_metrics {
                Some(metrics) => ShardSocket::Kafka(config.clone(), metrics.clone()),
                None => return Ok(None),
            },
            Sockets::Kafka(_) => return Ok(None),
        }))
    }
}

/// A non-blocking UDP or TCP socket bound to `addr` with `SO_REUSEPORT`, with `receive_buffer`
/// as its `SO_RCVBUF` when given.
fn inet_socket(addr: SocketAddr, udp: bool, receive_buffer: Option<usize>) -> io::Result<Socket> {
    let (kind, protocol) = if udp {
        (Type::DGRAM, Protocol::UDP)
    } else {
        (Type::STREAM, Protocol::TCP)
    };
    let socket = Socket::new(Domain::for_address(addr), kind.cloexec(), Some(protocol))?;
    socket.set_reuse_port(true)?;
    if !udp {
        socket.set_reuse_address(true)?;
    }
    if addr.is_ipv6() {
        // `[::]:PORT` takes IPv4 too, as users expect of a dual-stack listener.
        let _ = socket.set_only_v6(false);
    }
    // Set before `listen`: accepted connections inherit it (and their window scaling is
    // chosen from it).
    if let Some(bytes) = receive_buffer {
        set_receive_buffer(&socket, bytes);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if !udp {
        socket.listen(4096)?;
    }
    Ok(socket)
}

/// A non-blocking Unix socket at `path`, replacing a stale socket file left by an earlier run.
fn unix_socket(
    path: &Path,
    datagram: bool,
    mode: u32,
    receive_buffer: Option<usize>,
) -> io::Result<Socket> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way; remove it or choose another path",
            ));
        }
        Err(_) => {}
    }
    let kind = if datagram { Type::DGRAM } else { Type::STREAM };
    let socket = Socket::new(Domain::UNIX, kind.cloexec(), None)?;
    if let Some(bytes) = receive_buffer {
        set_receive_buffer(&socket, bytes);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    if !datagram {
        socket.listen(4096)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(socket)
}

/// Sets `SO_RCVBUF`, forcing past `net.core.rmem_max` when allowed (as root), and says so when
/// the kernel gave less than asked.
fn set_receive_buffer(socket: &Socket, bytes: usize) {
    let wanted = bytes.min(i32::MAX as usize / 2) as libc::c_int;
    let fd = std::os::fd::AsRawFd::as_raw_fd(socket);
    // SAFETY: setsockopt with a valid descriptor and a pointer to a c_int of the given size.
    let forced = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&wanted as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        let _ = SockRef::from(socket).set_recv_buffer_size(bytes);
    }
    // Linux reports twice the usable size.
    if let Ok(got) = socket.recv_buffer_size()
        && got / 2 < bytes
    {
        tracing::info!(
            "receive buffer is {} bytes, not the {bytes} asked for: raise net.core.rmem_max to absorb larger bursts",
            got / 2
        );
    }
}

/// A signal all shard tasks watch; fires once at shutdown.
#[derive(Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    /// A shutdown signal and the sender that fires it.
    pub fn new() -> (tokio::sync::watch::Sender<bool>, Shutdown) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// Resolves once shutdown has been asked for (or its sender is gone).
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Starts a task on the current thread's `LocalSet` for each of a shard's sockets, handing
/// what they receive to `intake` until `shutdown`. A socket that cannot be registered with the
/// runtime is logged and skipped.
pub fn spawn_readers<I: Intake + 'static>(
    intake: &Rc<I>,
    connections: &Rc<Connections>,
    sockets: Vec<(ListenerContext, ShardSocket)>,
    shutdown: &Shutdown,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut readers = Vec::new();
    for (context, socket) in sockets {
        let (intake, context, stop) = (intake.clone(), Rc::new(context), shutdown.clone());
        let reader = match socket {
            ShardSocket::Datagram(fd) => Some(tokio::task::spawn_local(async move {
                datagram::run(&*intake, &context, fd, stop.wait()).await;
            })),
            ShardSocket::Tcp(listener) => match context.tls.clone() {
                None => spawn_acceptor(
                    tokio::net::TcpListener::from_std(listener),
                    intake,
                    connections,
                    context,
                    stop,
                ),
                Some(tls) => {
                    let acceptor = tokio::net::TcpListener::from_std(listener).and_then(|l| {
                        tls::TlsAcceptor::new(l, tls, context.warning.clone(), context.name.clone())
                            .map_err(|e| io::Error::other(format!("tls.{e}")))
                    });
                    spawn_acceptor(acceptor, intake, connections, context, stop)
                }
            },
            ShardSocket::Kafka(config, metrics) => Some(tokio::task::spawn_local(async move {
                kafka::run(&*intake, &context, &config, metrics, stop.wait()).await;
            })),
            ShardSocket::Unix(listener) => {
                let path = context.source.clone();
                let acceptor = tokio::net::UnixListener::from_std(listener)
                    .map(|listener| stream::UnixAcceptor { listener, path });
                spawn_acceptor(acceptor, intake, connections, context, stop)
            }
        };
        readers.extend(reader);
    }
    readers
}

fn spawn_acceptor<I: Intake + 'static, A: Acceptor + 'static>(
    registered: io::Result<A>,
    intake: Rc<I>,
    connections: &Rc<Connections>,
    context: Rc<ListenerContext>,
    stop: Shutdown,
) -> Option<tokio::task::JoinHandle<()>> {
    match registered {
        Ok(acceptor) => Some(tokio::task::spawn_local(stream::run_acceptor(
            intake,
            connections.clone(),
            context,
            acceptor,
            stop,
        ))),
        Err(e) => {
            tracing::error!(listener = %context.name, "cannot register listener: {e}");
            None
        }
    }
}
