//! Ingest: the sockets, the shard threads that read them, and framing.
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
pub mod datagram;
pub mod framing;
pub mod shard;
pub mod stream;

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::config::{Config, ListenerKind};
use crate::metrics::{ListenerMetrics, RateLimitedWarning};
use crate::parse::Format;
use crate::pipeline::ring::RingProducer;
use framing::{Framing, OversizePolicy};
use shard::{Shard, ShardSettings};

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
    /// The shard that reads a socket only one shard may read (Unix datagram).
    home_shard: usize,
}

/// A shard's share of a listener.
pub enum ShardSocket {
    Datagram(OwnedFd),
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl BoundListener {
    /// Binds listener `index` of `config` for `shards` shards.
    ///
    /// # Errors
    /// A [`BindError`] naming the listener when a socket cannot be created or bound.
    pub fn bind(config: &Config, index: usize, shards: usize) -> Result<BoundListener, BindError> {
        let listener = &config.listen[index];
        let name = config.listener_name(index);
        let described = listener
            .address
            .clone()
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
                let addr = listener.socket_addr().ok_or_else(|| {
                    error(io::Error::new(io::ErrorKind::InvalidInput, "not IP:PORT"))
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
                let socket =
                    unix_socket(&path, datagram, listener.mode(), listener.receive_buffer())
                        .map_err(&error)?;
                let sockets = if datagram {
                    Sockets::UnixDatagram(socket)
                } else {
                    Sockets::UnixStream(socket)
                };
                (sockets, path.display().to_string(), Some(path))
            }
        };
        let context = ListenerContext {
            name: name.clone(),
            metrics: Arc::new(ListenerMetrics::new(&name, listener.kind.as_str())),
            format: listener.format.unwrap_or(config.ingest.format),
            framing: listener.framing,
            max_message_bytes: config.ingest.max_message_bytes,
            oversize: config.ingest.oversize,
            max_connections: listener.max_connections,
            idle_timeout: listener.idle_timeout(),
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
        };
        Ok(BoundListener {
            context,
            kind: listener.kind,
            local,
            unix_path,
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

/// Starts shard `settings.id` on its own thread, reading `sockets` until `shutdown`.
///
/// At shutdown the shard stops accepting, takes what its sockets already received, hands every
/// record to its ring (waiting for the sink as needed) and closes the ring by dropping
/// `producer`.
///
/// # Errors
/// When the thread cannot be spawned.
pub fn spawn_shard(
    settings: ShardSettings,
    producer: RingProducer,
    sockets: Vec<(ListenerContext, ShardSocket)>,
    shutdown: Shutdown,
) -> io::Result<std::thread::JoinHandle<()>> {
    crate::runtime::spawn(format!("shard-{}", settings.id), move || {
        run_shard(settings, producer, sockets, shutdown)
    })
}

async fn run_shard(
    settings: ShardSettings,
    producer: RingProducer,
    sockets: Vec<(ListenerContext, ShardSocket)>,
    shutdown: Shutdown,
) {
    let shard = Rc::new(Shard::new(settings, producer));
    let mut readers = Vec::new();
    for (context, socket) in sockets {
        let (shard, context, stop) = (shard.clone(), Rc::new(context), shutdown.clone());
        let task = match socket {
            ShardSocket::Datagram(fd) => tokio::task::spawn_local(async move {
                datagram::run(&shard, &context, fd, stop.wait()).await;
            }),
            ShardSocket::Tcp(listener) => match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    tokio::task::spawn_local(stream::run_acceptor(shard, context, listener, stop))
                }
                Err(e) => {
                    tracing::error!(listener = %context.name, "cannot register listener: {e}");
                    continue;
                }
            },
            ShardSocket::Unix(listener) => match tokio::net::UnixListener::from_std(listener) {
                Ok(listener) => {
                    let acceptor = stream::UnixAcceptor {
                        listener,
                        path: context.source.clone(),
                    };
                    tokio::task::spawn_local(stream::run_acceptor(shard, context, acceptor, stop))
                }
                Err(e) => {
                    tracing::error!(listener = %context.name, "cannot register listener: {e}");
                    continue;
                }
            },
        };
        readers.push(task);
    }
    let (stop_ticker, ticker_stopped) = tokio::sync::oneshot::channel::<()>();
    let ticker = {
        let shard = shard.clone();
        tokio::task::spawn_local(async move {
            shard
                .run_ticker(async move {
                    let _ = ticker_stopped.await;
                })
                .await;
        })
    };
    shutdown.wait().await;
    for reader in readers {
        let _ = reader.await;
    }
    shard.until_connections_closed().await;
    shard.drain().await;
    let _ = stop_ticker.send(());
    let _ = ticker.await;
}
