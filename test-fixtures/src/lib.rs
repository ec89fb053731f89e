//! Shared by the gateway's integration tests (each uses it as `use test_fixtures as common;`):
//! a gateway on ephemeral ports over a temporary directory, and reading back what it stored;
//! the `logtail` binary as a child process ([`process`]), agents, etcd, Kafka and certificates.

pub mod agent;
pub mod etcd;
pub mod kafka;
pub mod osmem;
pub mod pki;
pub mod process;
pub mod tansu;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use logtail::config::{Config, ListenerConfig, ListenerKind};
use logtail::server::Server;
use logtail::store::{self, ReadOptions};
use serde_json::Value;

/// A gateway running in this process, with its data in a temporary directory.
pub struct Gateway {
    pub server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub config: Config,
}

/// A configuration listening on 127.0.0.1 with ephemeral ports for UDP, TCP and agents, and Unix
/// sockets in `dir`; 2 shards; the HTTP server (metrics and API) on an ephemeral port.
pub fn test_config(dir: &Path) -> Config {
    let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = Config {
        data_dir: dir.join("data"),
        listen: vec![
            ListenerConfig::inet(ListenerKind::Udp, any_port),
            ListenerConfig::inet(ListenerKind::Tcp, any_port),
            ListenerConfig::unix(ListenerKind::UnixDatagram, &dir.join("log.sock")),
            ListenerConfig::unix(ListenerKind::UnixStream, &dir.join("log-stream.sock")),
            ListenerConfig::inet(ListenerKind::Agent, any_port),
        ],
        ..Config::default()
    };
    config.ingest.shards = 2;
    config.api.address = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config
}

impl Gateway {
    /// Starts a gateway with [`test_config`].
    pub fn start() -> Gateway {
        Gateway::start_with(|_| {})
    }

    /// Starts a gateway with [`test_config`] changed by `adjust`.
    pub fn start_with(adjust: impl FnOnce(&mut Config)) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        adjust(&mut config);
        config
            .validate(Path::new("test"))
            .expect("valid test config");
        let server = Server::start(&config).expect("gateway starts");
        Gateway {
            server: Some(server),
            dir,
            config,
        }
    }

    /// Starts the gateway again on the same configuration (and so the same data), after
    /// [`Gateway::stop`].
    pub fn restart(&mut self) {
        assert!(self.server.is_none(), "stop it first");
        self.server = Some(Server::start(&self.config).expect("gateway restarts"));
    }

    /// The Kafka sink's metrics.
    pub fn kafka(&self) -> &logtail::metrics::KafkaMetrics {
        self.server()
            .metrics()
            .kafka
            .as_deref()
            .expect("the sink is Kafka")
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    pub fn udp(&self) -> std::net::SocketAddr {
        self.server().socket_addr("udp").expect("udp listener")
    }

    pub fn tcp(&self) -> std::net::SocketAddr {
        self.server().socket_addr("tcp").expect("tcp listener")
    }

    pub fn agent(&self) -> std::net::SocketAddr {
        self.server().socket_addr("agent").expect("agent listener")
    }

    pub fn unix_datagram(&self) -> PathBuf {
        self.dir.path().join("log.sock")
    }

    pub fn unix_stream(&self) -> PathBuf {
        self.dir.path().join("log-stream.sock")
    }

    /// The value of listener `name`'s counter `get`.
    pub fn listener_count(
        &self,
        name: &str,
        get: impl Fn(&logtail::metrics::ListenerMetrics) -> u64,
    ) -> u64 {
        get(&self.server().metrics().listener(name).expect("listener"))
    }

    /// Waits until the sink wrote `records` records (or panics after 20 s).
    pub fn wait_for_records(&self, records: u64) {
        let sink = &self.server().metrics().sink;
        let deadline = Instant::now() + Duration::from_secs(20);
        while sink.records.get() < records {
            assert!(
                Instant::now() < deadline,
                "only {} of {records} records written",
                sink.records.get()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the gateway cleanly.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().expect("clean shutdown");
        }
    }

    /// Stops the gateway and returns every stored record, oldest first.
    pub fn stop_and_read(&mut self) -> Vec<Value> {
        self.stop();
        read_store(&self.config.store_dir())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown();
        }
    }
}

/// A TCP connection to `addr` with a fixed 64 KiB send buffer. Tests that check a sender is
/// held back use it (often with a small `receive_buffer_bytes` on the listener): Linux
/// autotunes an unset send buffer up to `net.ipv4.tcp_wmem`, which could take the whole test
/// traffic in and let the sender finish.
pub fn connect_with_small_send_buffer(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .expect("socket");
    socket.set_send_buffer_size(64 * 1024).expect("SO_SNDBUF");
    socket.connect(&addr.into()).expect("connect");
    socket.into()
}

/// Every record in the store at `dir`, parsed as JSON.
pub fn read_store(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let options = ReadOptions {
        since_us: None,
        grep: None,
        follow: false,
    };
    store::read(dir, &options, &mut out, &AtomicBool::new(false)).expect("store readable");
    out.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).expect("stored records are JSON"))
        .collect()
}

/// The `message` field of each record.
pub fn messages(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["message"].as_str().expect("message is text").to_string())
        .collect()
}

/// `lines` of the benches' realistic syslog corpus (`test_support::corpus::realistic_mix`),
/// parsed and JSON-encoded as the gateway stores them, all received at
/// `test_support::corpus::CORPUS_RECEIVED_AT_US` from one address.
pub fn stored_corpus(lines: usize) -> Vec<Vec<u8>> {
    stored_corpus_with_fields(lines)
        .into_iter()
        .map(|(value, _)| value)
        .collect()
}

/// [`stored_corpus`] with what the encoder said about each record's indexed members, as the
/// gateway's shards hand them to the store.
pub fn stored_corpus_with_fields(
    lines: usize,
) -> Vec<(Vec<u8>, Option<logtail::encode::json::IndexedFields>)> {
    stored_with_fields(&test_support::corpus::realistic_mix(lines, 0x5EED))
}

/// Syslog `lines` as the gateway stores them, received at the corpus' receive time, each with
/// what its encoder said about where its indexed members are (as [`stored_corpus_with_fields`]).
pub fn stored_with_fields(
    lines: &[Vec<u8>],
) -> Vec<(Vec<u8>, Option<logtail::encode::json::IndexedFields>)> {
    use logtail::encode::{Encoding, Envelope, encode, format_rfc3339_micros};
    use logtail::parse::{Format, LegacyZone, ParseContext, parse};
    let received_us = test_support::corpus::CORPUS_RECEIVED_AT_US;
    let mut received_at = Vec::new();
    format_rfc3339_micros(received_us, &mut received_at);
    let envelope = Envelope::new(&received_at, "10.1.2.3:40000");
    let mut ctx = ParseContext::new(received_us, LegacyZone::Fixed(0));
    lines
        .iter()
        .map(|line| {
            let record = parse(line, Format::Auto, &mut ctx);
            let mut out = Vec::with_capacity(512);
            let fields = encode(Encoding::Json, line, &record, &envelope, &mut out);
            (out, fields)
        })
        .collect()
}
