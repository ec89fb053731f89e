//! `GET /api/v1/status`: the gateway at a glance, from its metrics registry ([`Metrics`]) and
//! components: listeners, the sink (and Kafka with its WAL), the store, connected agents, live
//! tails, and the throughput of the last [`HISTORY_SAMPLES`] × [`SAMPLE_INTERVAL`] (15 minutes).
//!
//! Rates are per second over the last sample interval: the sampler ([`ApiContext::sample_forever`],
//! on the HTTP thread) reads the counters every [`SAMPLE_INTERVAL`] and keeps the differences in
//! a ring of [`HISTORY_SAMPLES`]. Until the first interval has passed, rates are 0.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde::Serialize;

use super::params::Params;
use super::{ApiContext, ApiError, json_response, rfc3339};
use crate::metrics::{LatencySummary, ListenerMetrics, Metrics};

/// How often the counters are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);
/// Samples kept: 15 minutes.
pub const HISTORY_SAMPLES: usize = 90;

/// Totals read at one sample.
#[derive(Debug, Clone, Default)]
struct Totals {
    received_lines: u64,
    received_bytes: u64,
    stored_records: u64,
    errors: u64,
    /// Per listener, by name (a reload adds and removes listeners).
    listener_lines: HashMap<String, u64>,
    /// Per agent connection (`listener/host/address/connected_at`).
    agent_lines: HashMap<String, u64>,
}

/// One point of the throughput history, per second over the interval before `time`.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputSample {
    time: String,
    received_lines_per_sec: f64,
    received_bytes_per_sec: f64,
    stored_records_per_sec: f64,
    errors_per_sec: f64,
}

/// The ring of samples, and the rates of the last interval.
#[derive(Debug, Default)]
pub struct ThroughputHistory {
    last: Option<(Instant, Totals)>,
    samples: VecDeque<ThroughputSample>,
    listener_rates: HashMap<String, f64>,
    agent_rates: HashMap<String, f64>,
}

/// Errors a listener counts: messages kept raw, broken framing, messages not kept, refused and
/// closed connections.
fn listener_errors(l: &ListenerMetrics) -> u64 {
    l.parse_errors.get()
        + l.framing_errors.get()
        + l.dropped_oversize.get()
        + l.dropped_ring_full.get()
        + l.dropped_kernel.get()
        + l.connections_rejected.get()
        + l.connections_rejected_per_ip.get()
        + l.connections_rejected_reserved.get()
}

fn agent_key(listener: &str, agent: &crate::metrics::AgentSeen) -> String {
    format!(
        "{listener}/{}/{}/{}",
        agent.host, agent.address, agent.connected_at_us
    )
}

fn totals(metrics: &Metrics) -> Totals {
    let mut totals = Totals {
        stored_records: metrics.sink.records.get(),
        errors: metrics.sink.errors.get(),
        ..Totals::default()
    };
    for l in &metrics.listeners() {
        let lines = l.received_lines.get();
        totals.received_lines += lines;
        totals.received_bytes += l.received_bytes.get();
        totals.errors += listener_errors(l);
        totals.listener_lines.insert(l.name.clone(), lines);
        for agent in l.agents.snapshot() {
            totals
                .agent_lines
                .insert(agent_key(&l.name, &agent), agent.lines);
        }
    }
    totals
}

impl ThroughputHistory {
    /// Reads the counters now; after the first call, adds a sample.
    fn sample(&mut self, metrics: &Metrics) {
        let now = Instant::now();
        let current = totals(metrics);
        if let Some((at, last)) = &self.last {
            let secs = now.duration_since(*at).as_secs_f64().max(1e-3);
            let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs;
            self.samples.push_back(ThroughputSample {
                time: rfc3339_now(),
                received_lines_per_sec: rate(current.received_lines, last.received_lines),
                received_bytes_per_sec: rate(current.received_bytes, last.received_bytes),
                stored_records_per_sec: rate(current.stored_records, last.stored_records),
                errors_per_sec: rate(current.errors, last.errors),
            });
            if self.samples.len() > HISTORY_SAMPLES {
                self.samples.pop_front();
            }
            self.listener_rates = current
                .listener_lines
                .iter()
                .map(|(name, &n)| {
                    (
                        name.clone(),
                        rate(n, last.listener_lines.get(name).copied().unwrap_or(0)),
                    )
                })
                .collect();
            self.agent_rates = current
                .agent_lines
                .iter()
                .map(|(key, &n)| {
                    (
                        key.clone(),
                        rate(n, last.agent_lines.get(key).copied().unwrap_or(0)),
                    )
                })
                .collect();
        }
        self.last = Some((now, current));
    }
}

fn rfc3339_now() -> String {
    rfc3339(crate::time::now_unix_micros())
}

impl ApiContext {
    /// Samples the counters every [`SAMPLE_INTERVAL`], forever (the server aborts it).
    pub async fn sample_forever(self: Arc<Self>) {
        let mut every = tokio::time::interval(SAMPLE_INTERVAL);
        loop {
            every.tick().await;
            if let Ok(mut history) = self.history.lock() {
                history.sample(&self.metrics);
            }
        }
    }
}

#[derive(Serialize)]
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    samples: u64,
}

impl Latency {
    fn of(summary: &LatencySummary) -> Latency {
        let (p50, samples) = summary.quantile(0.5);
        let (p99, _) = summary.quantile(0.99);
        Latency {
            p50_ms: p50.as_secs_f64() * 1e3,
            p99_ms: p99.as_secs_f64() * 1e3,
            samples,
        }
    }
}

#[derive(Serialize)]
struct ListenerErrors {
    parse: u64,
    framing: u64,
    dropped: u64,
    truncated: u64,
    connections_rejected: u64,
    peers_refused: u64,
}

#[derive(Serialize)]
struct ListenerStatus {
    name: String,
    transport: &'static str,
    address: Option<String>,
    received_lines: u64,
    received_bytes: u64,
    lines_per_sec: f64,
    connections_open: i64,
    connections_total: u64,
    errors: ListenerErrors,
}

#[derive(Serialize)]
struct KafkaStatus {
    state: &'static str,
    brokers_down: bool,
    produced_records: u64,
    delivered_records: u64,
    in_flight_records: i64,
    wal_pending_records: i64,
    wal_pending_batches: i64,
    wal_disk_bytes: i64,
    delivery_latency: Latency,
}

#[derive(Serialize)]
struct SinkStatus {
    #[serde(rename = "type")]
    kind: &'static str,
    records: u64,
    bytes: u64,
    errors: u64,
    lost_records: u64,
    disk_full: bool,
    latency: Latency,
    kafka: Option<KafkaStatus>,
}

#[derive(Serialize)]
struct StoreStatus {
    dir: String,
    bytes: u64,
    segments: usize,
    max_total_bytes: u64,
    max_age_secs: Option<u64>,
}

#[derive(Serialize)]
struct AgentStatus {
    listener: String,
    host: String,
    address: String,
    connected: bool,
    connected_at: String,
    last_seen: String,
    lines: u64,
    lines_per_sec: f64,
}

#[derive(Serialize)]
struct HistoryStatus {
    interval_secs: u64,
    samples: Vec<ThroughputSample>,
}

#[derive(Serialize)]
struct StatusAnswer {
    version: &'static str,
    time: String,
    uptime_secs: u64,
    listeners: Vec<ListenerStatus>,
    sink: SinkStatus,
    store: Option<StoreStatus>,
    agents: Vec<AgentStatus>,
    tail_subscribers: usize,
    history: HistoryStatus,
    config: ConfigStatus,
}

/// The configuration in force and its live reloads.
#[derive(Serialize)]
struct ConfigStatus {
    /// SHA-256 (hex) of the file in force.
    sha256: String,
    reloads: u64,
    reload_failures: u64,
    /// Keys changed in the file that take effect only at the next restart.
    needs_restart: Vec<String>,
}

/// The store's size on disk and number of segments.
fn store_size(dir: &std::path::Path) -> (u64, usize) {
    let segments = crate::segments::list_segments(dir).unwrap_or_default();
    let bytes = segments
        .iter()
        .filter_map(|&seq| std::fs::metadata(crate::segments::segment_path(dir, seq)).ok())
        .map(|m| m.len())
        .sum();
    (bytes, segments.len())
}

/// `GET /api/v1/status`.
pub(super) async fn status(
    State(context): State<Arc<ApiContext>>,
    uri: Uri,
) -> Result<Response, ApiError> {
    Params::parse(uri.query(), &[])?;
    let metrics = &context.metrics;
    let (listener_rates, agent_rates, samples) = match context.history.lock() {
        Ok(history) => (
            history.listener_rates.clone(),
            history.agent_rates.clone(),
            history.samples.iter().cloned().collect(),
        ),
        Err(_) => Default::default(),
    };
    let open = metrics.listeners();
    let addresses = context.listeners();
    let listeners = open
        .iter()
        .map(|l| ListenerStatus {
            name: l.name.clone(),
            transport: l.transport,
            address: addresses
                .iter()
                .find(|a| a.name == l.name)
                .map(|a| a.address.clone()),
            received_lines: l.received_lines.get(),
            received_bytes: l.received_bytes.get(),
            lines_per_sec: listener_rates.get(&l.name).copied().unwrap_or(0.0),
            connections_open: l.connections_open.get(),
            connections_total: l.connections.get(),
            errors: ListenerErrors {
                parse: l.parse_errors.get(),
                framing: l.framing_errors.get(),
                dropped: l.dropped_oversize.get()
                    + l.dropped_ring_full.get()
                    + l.dropped_kernel.get()
                    + l.dropped_empty.get(),
                truncated: l.truncated.get(),
                connections_rejected: l.connections_rejected.get()
                    + l.connections_rejected_per_ip.get()
                    + l.connections_rejected_reserved.get(),
                peers_refused: l.peers_refused.iter().map(|c| c.get()).sum(),
            },
        })
        .collect();
    let agents = open
        .iter()
        .flat_map(|l| {
            l.agents.snapshot().into_iter().map(|agent| AgentStatus {
                lines_per_sec: agent_rates
                    .get(&agent_key(&l.name, &agent))
                    .copied()
                    .unwrap_or(0.0),
                listener: l.name.clone(),
                connected_at: rfc3339(agent.connected_at_us),
                last_seen: rfc3339(agent.last_seen_us),
                host: agent.host,
                address: agent.address,
                connected: agent.connected,
                lines: agent.lines,
            })
        })
        .collect();
    let sink = &metrics.sink;
    let kafka = metrics.kafka.as_ref().map(|k| KafkaStatus {
        state: k.state_name(),
        brokers_down: k.brokers_down.get() != 0,
        produced_records: k.produced_records.get(),
        delivered_records: k.delivered_records.get(),
        in_flight_records: k.in_flight_records.get(),
        wal_pending_records: k.wal_pending_records.get(),
        wal_pending_batches: k.wal_pending_batches.get(),
        wal_disk_bytes: k.wal_disk_bytes.get(),
        delivery_latency: Latency::of(&k.delivery_latency),
    });
    let store = context.store.as_ref().map(|store| {
        let (bytes, segments) = store_size(&store.dir);
        StoreStatus {
            dir: store.dir.display().to_string(),
            bytes,
            segments,
            max_total_bytes: store.retention.current().max_total_bytes,
            max_age_secs: store.retention.current().max_age.map(|age| age.as_secs()),
        }
    });
    let answer = StatusAnswer {
        version: env!("CARGO_PKG_VERSION"),
        time: rfc3339_now(),
        uptime_secs: metrics.uptime().as_secs(),
        listeners,
        sink: SinkStatus {
            kind: context.sink,
            records: sink.records.get(),
            bytes: sink.bytes.get(),
            errors: sink.errors.get(),
            lost_records: sink.lost_records.get(),
            disk_full: sink.disk_full.get() != 0,
            latency: Latency::of(sink.latency()),
            kafka,
        },
        store,
        agents,
        tail_subscribers: context.tail.subscribers(),
        history: HistoryStatus {
            interval_secs: SAMPLE_INTERVAL.as_secs(),
            samples,
        },
        config: ConfigStatus {
            sha256: metrics.reload.config_sha256(),
            reloads: metrics.reload.reloads.get(),
            reload_failures: metrics.reload.failures.get(),
            needs_restart: metrics.reload.needs_restart(),
        },
    };
    Ok(json_response(StatusCode::OK, &answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::SinkMetrics;

    #[test]
    fn the_history_keeps_fifteen_minutes_of_rates() {
        let listener = Arc::new(ListenerMetrics::new("tcp", "tcp"));
        let metrics = Metrics::new(
            vec![listener.clone()],
            vec![],
            Arc::new(SinkMetrics::new("store")),
            None,
        );
        let mut history = ThroughputHistory::default();
        history.sample(&metrics);
        assert!(history.samples.is_empty(), "the first read is the baseline");
        let agent = listener.agents.connect("web-01", "10.0.0.1");
        for _ in 0..HISTORY_SAMPLES + 5 {
            listener.received_lines.add(1000);
            agent.batch(10);
            std::thread::sleep(Duration::from_millis(1));
            history.sample(&metrics);
        }
        assert_eq!(history.samples.len(), HISTORY_SAMPLES);
        let last = history.samples.back().unwrap();
        assert!(last.received_lines_per_sec > 0.0);
        assert_eq!(history.listener_rates.len(), 1);
        assert!(history.listener_rates[&listener.name] > 0.0);
        assert_eq!(history.agent_rates.len(), 1);
        assert!(history.agent_rates.values().all(|&r| r > 0.0));
    }
}
