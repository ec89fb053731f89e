//! A stream connection's read path (`source::stream::serve_connection`): reads from a
//! connection into its buffer, framing, and handing each message to the intake, with a
//! counting intake instead of a shard (so parsing and encoding, measured by `pipeline`, are
//! not). The input is the realistic mix as one newline-framed stream, read as a socket with
//! everything already queued returns it: as much as the buffer has room for.
//!
//! Run: `cargo bench --bench stream`.

#[path = "common/mod.rs"]
mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logtail::ack::AckToken;
use logtail::log_limit::RateLimitedWarning;
use logtail::metrics::ListenerMetrics;
use logtail::source::framing::{Framing, OversizePolicy};
use logtail::source::intake::{Intake, Receive, Sender};
use logtail::source::limits::{MemoryBudget, PeerTable, SourceLimits};
use logtail::source::{Format, ListenerConfig, ListenerContext, ListenerKind, StreamProtocol};

use test_support::corpus;

const LINES: usize = 10_000;

/// Counts messages and their bytes.
#[derive(Default)]
struct Counting {
    messages: std::cell::Cell<usize>,
    bytes: std::cell::Cell<usize>,
}

struct CountingReceive<'a>(&'a Counting);

impl Receive for CountingReceive<'_> {
    fn message(&mut self, message: &[u8], _: Format, _: &Sender<'_>) {
        self.0.messages.set(self.0.messages.get() + 1);
        self.0.bytes.set(self.0.bytes.get() + message.len());
    }
    fn encoded(&mut self, value: &[u8]) {
        self.0.messages.set(self.0.messages.get() + 1);
        self.0.bytes.set(self.0.bytes.get() + value.len());
    }
    fn is_blocked(&self) -> bool {
        false
    }
    fn acknowledge_when_durable(&mut self, token: AckToken) {
        drop(token);
    }
}

impl Intake for Counting {
    type Receive<'a> = CountingReceive<'a>;
    fn receive_at<R>(
        &self,
        _: &ListenerMetrics,
        _: std::time::SystemTime,
        f: impl FnOnce(&mut Self::Receive<'_>) -> R,
    ) -> R {
        f(&mut CountingReceive(self))
    }
    fn until_unblocked(&self) -> impl Future<Output = ()> {
        std::future::ready(())
    }
}

fn listener() -> ListenerContext {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let config = ListenerConfig::inet(ListenerKind::Tcp, address);
    ListenerContext {
        name: "tcp".into(),
        metrics: Arc::new(ListenerMetrics::new("tcp", "tcp")),
        format: Format::Auto,
        framing: Framing::Auto,
        max_message_bytes: 64 * 1024,
        oversize: OversizePolicy::Truncate,
        max_connections: 10_000,
        idle_timeout: None,
        source: String::new(),
        warning: Arc::new(RateLimitedWarning::new(Duration::from_secs(1))),
        protocol: StreamProtocol::Syslog,
        tls: None,
        agent_tokens: None,
        host_if_missing: None,
        limits: SourceLimits::default(),
        budget: MemoryBudget::unshared(1 << 30),
        peers: Arc::new(PeerTable::default()),
        admission: config.admission(),
        peer_rates: None,
    }
}

fn read_path(c: &mut Criterion) {
    let mut input = Vec::new();
    for line in corpus::realistic_mix(LINES, 7) {
        input.extend_from_slice(&line);
        input.push(b'\n');
    }
    let listener = listener();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("stream_read");
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("serve_connection", |b| {
        b.iter(|| {
            let intake = Counting::default();
            runtime.block_on(logtail::source::stream::serve_connection(
                &intake,
                &listener,
                &input[..],
                Sender::at("127.0.0.1:1"),
                std::future::pending::<()>(),
            ));
            assert_eq!(intake.messages.get(), LINES);
            intake.bytes.get()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = read_path
}
criterion_main!(benches);
