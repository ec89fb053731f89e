//! `[[listen]]`: the config section of one listener, owned by the sources that serve it.
//!
//! Values are typed when the file is read: the address is a [`SocketAddr`], the socket file's
//! mode a [`SocketMode`], the idle timeout a [`Duration`]. A value that does not parse is
//! refused by serde with the key and line; what depends on the listener's `type` (an address
//! for `tcp`, a path for `unix-stream`, no framing for datagrams) is checked by
//! [`ListenerConfig::check`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::Format;
use super::agent_auth::AgentTokens;
use super::framing::Framing;
use super::kafka::KafkaSourceConfig;
use super::limits::{Admission, PeerRateLimit};
use super::tls::TlsConfig;
use crate::agent_protocol::MAX_FRAME_BYTES;
use crate::setting::{InvalidSetting, Refusal};

/// The kind of socket a listener opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListenerKind {
    /// UDP datagrams, one message each (RFC 5426).
    Udp,
    /// TCP streams, newline or octet-counted (RFC 6587).
    Tcp,
    /// A Unix datagram socket, like `/dev/log`.
    UnixDatagram,
    /// A Unix stream socket.
    UnixStream,
    /// TCP, speaking the acknowledged protocol of `logtail agent` ([`crate::agent_protocol`]).
    Agent,
    /// A Kafka consumer group member (`[listen.kafka]`, [`super::kafka`]).
    Kafka,
}

impl ListenerKind {
    /// The name used in config files and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Udp => "udp",
            ListenerKind::Tcp => "tcp",
            ListenerKind::UnixDatagram => "unix-datagram",
            ListenerKind::UnixStream => "unix-stream",
            ListenerKind::Agent => "agent",
            ListenerKind::Kafka => "kafka",
        }
    }

    /// True for sockets of syslog streams, which need framing.
    pub fn is_stream(self) -> bool {
        matches!(self, ListenerKind::Tcp | ListenerKind::UnixStream)
    }

    /// True for Unix-domain sockets, which take a `path` instead of an `address`.
    pub fn is_unix(self) -> bool {
        matches!(self, ListenerKind::UnixDatagram | ListenerKind::UnixStream)
    }
}

/// Permissions of a Unix socket file, read from octal text (`"0666"`, `"0o660"`), at most
/// `0777`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketMode(pub u32);

impl Default for SocketMode {
    /// `0666`: any local program can log, as with `/dev/log`.
    fn default() -> Self {
        SocketMode(0o666)
    }
}

impl std::fmt::Display for SocketMode {
    /// Octal, as it is written: `0666`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

crate::setting::serialize_as_text!(SocketMode);

impl<'de> Deserialize<'de> for SocketMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match u32::from_str_radix(text.trim_start_matches("0o"), 8) {
            Ok(mode) if mode <= 0o777 => Ok(SocketMode(mode)),
            _ => Err(serde::de::Error::custom(Refusal(format!(
                "{text:?} is not an octal mode like \"0666\""
            )))),
        }
    }
}

/// One socket to receive on.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Name used in metrics labels and logs. Default: the `type`, numbered when repeated.
    #[serde(default)]
    pub name: Option<String>,
    /// `udp`, `tcp`, `unix-datagram`, `unix-stream` or `agent`. Required.
    #[serde(rename = "type")]
    pub kind: ListenerKind,
    /// `IP:PORT` to bind (`udp`, `tcp` and `agent`). Port 0 picks a free port.
    #[serde(default, deserialize_with = "socket_addr")]
    pub address: Option<SocketAddr>,
    /// Socket file to create (`unix-datagram` and `unix-stream`); a stale socket file left by a
    /// previous run is replaced, any other file is an error.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Permissions of the socket file, in octal. Default: `"0666"`, so that any local program
    /// can log, as with `/dev/log`.
    #[serde(default)]
    pub socket_mode: SocketMode,
    /// Stream framing: `auto` (per frame: octet counting when it starts with a digit),
    /// `newline` or `octet-counting`. Default: `auto`.
    #[serde(default)]
    pub framing: Framing,
    /// Message format for this listener; default: `[ingest] format`.
    #[serde(default)]
    pub format: Option<Format>,
    /// Most simultaneous connections (stream listeners); a connection over the limit is closed
    /// at once and counted. Default: 10000.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most simultaneous connections from one IP address (stream listeners); 0: no limit.
    /// Default: 0 (senders behind one NAT or relay share an address).
    #[serde(default)]
    pub max_connections_per_ip: usize,
    /// The last slots of `max_connections` that only go to peers with no connection open, so
    /// that one peer holding every slot cannot lock others out. Default: a tenth of
    /// `max_connections`.
    #[serde(default)]
    pub reserved_connections: Option<usize>,
    /// Most bytes per second one stream connection may send (after a one-second burst); a
    /// faster sender is slowed by TCP backpressure, nothing is dropped. So one flooding sender
    /// cannot cycle the store's size retention through everyone's logs. 0: no limit (default).
    #[serde(default)]
    pub max_bytes_per_sec_per_connection: u64,
    /// Close a stream connection that sent nothing for this many seconds (its partial last
    /// line is kept). Default: 0, never.
    #[serde(
        default,
        rename = "idle_timeout_secs",
        deserialize_with = "optional_seconds",
        serialize_with = "crate::setting::as_optional_seconds"
    )]
    pub idle_timeout: Option<Duration>,
    /// Kernel receive buffer (`SO_RCVBUF`), in bytes. Datagram sockets: what absorbs bursts
    /// while a shard is off the CPU; default 33554432 (32 MiB; the kernel caps it at
    /// `net.core.rmem_max` unless running as root). Measured: at 300k datagrams/s of 200 bytes
    /// with both shards on one core, 8 MiB lost 1–2% to `RcvbufErrors`, 32 MiB none. Stream
    /// listeners: unset by default, so Linux sizes each connection's buffer itself (up to the
    /// maximum of `net.ipv4.tcp_rmem`, often 32 MiB); set, it caps the buffer of every accepted
    /// connection, so that a sender the gateway holds back feels it sooner. See
    /// [`ListenerConfig::receive_buffer`].
    #[serde(default)]
    pub receive_buffer_bytes: Option<usize>,
    /// The largest batch an agent may send (`agent` only), in bytes of messages before
    /// compression; a larger one is a protocol error. Default: 16777216 (16 MiB), well above
    /// the agent's default batch of 1 MiB of lines.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// `[listen.tls]`: TLS on a `tcp` (syslog over TLS, RFC 5425) or `agent` listener
    /// ([`TlsConfig`]). Default: none, plaintext.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// `agent` only: a file of `HOST TOKEN` lines ([`super::agent_auth`]); agents without a
    /// client certificate must then send their host's token. Default: none.
    #[serde(default)]
    pub tokens_file: Option<PathBuf>,
    /// The most bytes of the local store this listener's records may take (as stored,
    /// compressed), so that a flood on one listener cannot make size retention delete
    /// everyone's logs. Past it, the listener's new messages are dropped and counted
    /// (`dropped_total{reason="store_quota"}`) until retention has deleted enough of its old
    /// ones; on an `agent` listener nothing is dropped: its agents wait before their next
    /// batch (counted in `throttled_total`), keeping their lines in their files, since a
    /// batch they were told is stored must be. Needs `[sink] type = "store"`, and must be below `[sink.store] max_total_bytes`.
    /// Default: none, no quota.
    #[serde(default)]
    pub store_quota_bytes: Option<u64>,
    /// Most messages per second from one IP address (`udp`, `tcp`, `agent`), after a
    /// one-second burst: datagrams over it are dropped and counted
    /// (`dropped_total{reason="rate_limit"}`); stream connections over it wait before their
    /// next read, all connections of the address together (TCP backpressure, nothing dropped,
    /// counted in `throttled_total`). 0: no limit (default).
    #[serde(default)]
    pub max_lines_per_sec_per_ip: u64,
    /// Most message bytes per second from one IP address, as `max_lines_per_sec_per_ip`.
    /// 0: no limit (default).
    #[serde(default)]
    pub max_bytes_per_sec_per_ip: u64,
    /// `[listen.kafka]`: the consumer of a `kafka` listener ([`KafkaSourceConfig`]).
    #[serde(default)]
    pub kafka: Option<KafkaSourceConfig>,
}

fn default_max_connections() -> usize {
    10_000
}
/// `receive_buffer_bytes` of datagram sockets when not set.
const DEFAULT_DATAGRAM_RECEIVE_BUFFER: usize = 32 * 1024 * 1024;
fn default_max_batch_bytes() -> usize {
    16 * 1024 * 1024
}

fn socket_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(Refusal(format!(
            "{text:?} is not IP:PORT, e.g. \"0.0.0.0:5514\" or \"[::]:5514\""
        )))
    })
}

/// Whole seconds, 0 meaning none.
fn optional_seconds<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let seconds = u64::deserialize(deserializer)?;
    Ok((seconds > 0).then(|| Duration::from_secs(seconds)))
}

impl ListenerConfig {
    fn new(kind: ListenerKind, address: Option<SocketAddr>, path: Option<PathBuf>) -> Self {
        ListenerConfig {
            name: None,
            kind,
            address,
            path,
            socket_mode: SocketMode::default(),
            framing: Framing::Auto,
            format: None,
            max_connections: default_max_connections(),
            max_connections_per_ip: 0,
            reserved_connections: None,
            max_bytes_per_sec_per_connection: 0,
            idle_timeout: None,
            receive_buffer_bytes: None,
            max_batch_bytes: default_max_batch_bytes(),
            tls: None,
            tokens_file: None,
            store_quota_bytes: None,
            max_lines_per_sec_per_ip: 0,
            max_bytes_per_sec_per_ip: 0,
            kafka: None,
        }
    }

    /// The listeners used when the configuration names none: UDP and TCP on port 5514, a Unix
    /// datagram and a Unix stream socket under `run/`, and agents on TCP port 5515.
    pub fn defaults() -> Vec<ListenerConfig> {
        let any = |port| SocketAddr::from(([0, 0, 0, 0], port));
        vec![
            ListenerConfig::inet(ListenerKind::Udp, any(5514)),
            ListenerConfig::inet(ListenerKind::Tcp, any(5514)),
            ListenerConfig::unix(ListenerKind::UnixDatagram, Path::new("run/log.sock")),
            ListenerConfig::unix(ListenerKind::UnixStream, Path::new("run/log-stream.sock")),
            ListenerConfig::inet(ListenerKind::Agent, any(5515)),
        ]
    }

    /// A listener of `kind` on `address` (UDP, TCP, agent) with every other setting at its
    /// default.
    pub fn inet(kind: ListenerKind, address: SocketAddr) -> Self {
        ListenerConfig::new(kind, Some(address), None)
    }

    /// A listener of `kind` at `path` (Unix sockets) with every other setting at its default.
    pub fn unix(kind: ListenerKind, path: &Path) -> Self {
        ListenerConfig::new(kind, None, Some(path.to_path_buf()))
    }

    /// A `kafka` listener takes `[listen.kafka]` and neither an address nor a path; no other
    /// type takes `[listen.kafka]`.
    fn check_kafka(&self) -> Result<(), InvalidSetting> {
        let kind = self.kind.as_str();
        let Some(kafka) = &self
            .kafka
            .as_ref()
            .filter(|_| self.kind == ListenerKind::Kafka)
        else {
            return Err(if self.kind == ListenerKind::Kafka {
                InvalidSetting::new(
                    "kafka",
                    "required for type = \"kafka\": [listen.kafka] with bootstrap_servers, topics \
                     and group_id",
                )
            } else {
                InvalidSetting::new("kafka", format!("not used by type = \"{kind}\""))
            });
        };
        for (key, given) in [
            ("address", self.address.is_some()),
            ("path", self.path.is_some()),
            ("tls", self.tls.is_some()),
            ("tokens_file", self.tokens_file.is_some()),
        ] {
            if given {
                return Err(InvalidSetting::new(
                    key,
                    "not used by type = \"kafka\": the brokers are [listen.kafka] bootstrap_servers",
                ));
            }
        }
        kafka.check().map_err(|e| e.within("kafka"))
    }

    /// Who may connect: `max_connections`, `max_connections_per_ip` and the reserved slots.
    pub fn admission(&self) -> Admission {
        Admission {
            max_bytes_per_sec: self.max_bytes_per_sec_per_connection,
            max_connections: self.max_connections,
            max_per_ip: self.max_connections_per_ip,
            reserved: self
                .reserved_connections
                .unwrap_or(self.max_connections / 10),
        }
    }

    /// `max_lines_per_sec_per_ip` and `max_bytes_per_sec_per_ip`.
    pub fn peer_rate_limit(&self) -> PeerRateLimit {
        PeerRateLimit {
            lines_per_sec: self.max_lines_per_sec_per_ip,
            bytes_per_sec: self.max_bytes_per_sec_per_ip,
        }
    }

    /// The `SO_RCVBUF` to give this listener's sockets: `receive_buffer_bytes`, or for
    /// datagram sockets 32 MiB when it is not set; `None` leaves the kernel's default.
    pub fn receive_buffer(&self) -> Option<usize> {
        match self.kind {
            ListenerKind::Udp | ListenerKind::UnixDatagram => Some(
                self.receive_buffer_bytes
                    .unwrap_or(DEFAULT_DATAGRAM_RECEIVE_BUFFER),
            ),
            _ => self.receive_buffer_bytes,
        }
    }

    /// Checks what depends on the listener's `type`: an address or a path (not both), framing
    /// only on streams, the agent's batch limit.
    ///
    /// # Errors
    /// The first key at fault, relative to this `[[listen]]` table.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        let kind = self.kind.as_str();
        if self.kind == ListenerKind::Kafka || self.kafka.is_some() {
            return self.check_kafka();
        }
        // Unix sockets take a path, the others an address; never both.
        let (needed, has_needed, unused, has_unused, example) = if self.kind.is_unix() {
            let example = "path = \"run/log.sock\"";
            (
                "path",
                self.path.is_some(),
                "address",
                self.address.is_some(),
                example,
            )
        } else {
            let example = "address = \"0.0.0.0:5514\"";
            (
                "address",
                self.address.is_some(),
                "path",
                self.path.is_some(),
                example,
            )
        };
        if !has_needed {
            return Err(InvalidSetting::new(
                needed,
                format!("required for type = \"{kind}\", e.g. {example}"),
            ));
        }
        if has_unused {
            return Err(InvalidSetting::new(
                unused,
                format!("not used by type = \"{kind}\"; give `{needed}` instead"),
            ));
        }
        if !self.kind.is_stream() && self.framing != Framing::Auto {
            return Err(InvalidSetting::new(
                "framing",
                format!("not used by type = \"{kind}\": a datagram is one message"),
            ));
        }
        if self.kind == ListenerKind::Agent {
            InvalidSetting::check_range(
                "max_batch_bytes",
                self.max_batch_bytes,
                1024,
                MAX_FRAME_BYTES / 2,
                "bytes",
            )?;
        }
        if let Some(tls) = &self.tls {
            if !matches!(self.kind, ListenerKind::Tcp | ListenerKind::Agent) {
                return Err(InvalidSetting::new(
                    "tls",
                    format!("not used by type = \"{kind}\": only \"tcp\" and \"agent\" take TLS"),
                ));
            }
            tls.check().map_err(|e| e.within("tls"))?;
        }
        if let Some(path) = &self.tokens_file {
            if self.kind != ListenerKind::Agent {
                return Err(InvalidSetting::new(
                    "tokens_file",
                    format!("not used by type = \"{kind}\": only agents send tokens"),
                ));
            }
            AgentTokens::load(path)?;
        }
        if self.max_connections == 0 {
            return Err(InvalidSetting::new("max_connections", "must be at least 1"));
        }
        if self.kind.is_unix() && self.peer_rate_limit().is_set() {
            let key = if self.max_lines_per_sec_per_ip > 0 {
                "max_lines_per_sec_per_ip"
            } else {
                "max_bytes_per_sec_per_ip"
            };
            return Err(InvalidSetting::new(
                key,
                format!("not used by type = \"{kind}\": a Unix socket's peers have no IP address"),
            ));
        }
        if self.store_quota_bytes == Some(0) {
            return Err(InvalidSetting::new(
                "store_quota_bytes",
                "0 would drop every message: give a number of bytes, or leave it out for no quota",
            ));
        }
        if let Some(reserved) = self.reserved_connections
            && reserved >= self.max_connections
        {
            return Err(InvalidSetting::new(
                "reserved_connections",
                format!(
                    "{reserved} leaves no slot of max_connections = {} for anyone: allowed 0 to {}",
                    self.max_connections,
                    self.max_connections - 1
                ),
            ));
        }
        Ok(())
    }
}
