//! Counters, gauges and the latency histogram, and their Prometheus text exposition.
//!
//! Hot-path counters are plain relaxed atomics owned by one listener or one ring. A shard adds
//! to them once per read or per datagram batch, not once per line, so sharing a listener's
//! counters between shards costs one uncontended-in-practice atomic add per syscall. The one
//! histogram (in-gateway latency) is recorded by the sink thread once per batch.
//!
//! Exposed metrics (all prefixed `logtail_`):
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `received_lines_total` | counter | listener, transport | messages received |
//! | `received_bytes_total` | counter | listener, transport | message bytes received (after framing) |
//! | `parse_errors_total` | counter | listener, transport | messages kept raw because they did not parse |
//! | `truncated_total` | counter | listener, transport | messages cut to `max_message_bytes` |
//! | `dropped_total` | counter | listener, transport, reason | messages not kept: `oversize`, `ring_full` |
//! | `framing_errors_total` | counter | listener, transport | untrusted or malformed octet counts |
//! | `connections_open` | gauge | listener, transport | open stream connections |
//! | `connections_total` | counter | listener, transport | stream connections accepted |
//! | `connections_rejected_total` | counter | listener, transport | connections closed at once for `max_connections` |
//! | `ring_records` / `ring_batches` | gauge | shard | what waits in each shard's ring |
//! | `ring_capacity_batches` | gauge | shard | the ring's capacity |
//! | `sink_records_total`, `sink_batches_total`, `sink_bytes_total` | counter | sink | written by the sink |
//! | `sink_errors_total` | counter | sink | failed writes (retried) |
//! | `sink_lost_records_total` | counter | sink | records given up on at shutdown after the sink kept failing |
//! | `batch_latency_seconds` | summary | sink, quantile | receive of a batch's first record → written by the sink |
//! | `kafka_produced_records_total`, `kafka_delivered_records_total` | counter | | handed to the producer; acknowledged by Kafka |
//! | `kafka_rejected_records_total` | counter | | rejected by Kafka for good (e.g. too large): lost, and logged |
//! | `kafka_retried_records_total` | counter | | failed delivery, sent back to the WAL |
//! | `kafka_lost_records_total` | counter | | given up on at shutdown: not acknowledged, and the WAL refused them |
//! | `kafka_producer_restarts_total` | counter | | new producers after a fatal error of the previous one |
//! | `kafka_delivery_errors_total` | counter | error | delivery errors reported by librdkafka |
//! | `kafka_state` | gauge | state | 1 for the current one of `direct`, `spilling`, `replaying` |
//! | `kafka_brokers_down` | gauge | | 1 while librdkafka reports every broker down |
//! | `kafka_in_flight_records`, `kafka_in_flight_bytes` | gauge | | handed to the producer, not yet acknowledged |
//! | `kafka_delivery_latency_seconds` | summary | sink, quantile | receive of a batch's first record → Kafka acknowledged its last |
//! | `wal_spilled_records_total`, `wal_spilled_batches_total` | counter | | written to the WAL instead of the producer |
//! | `wal_replayed_records_total` | counter | | replayed from the WAL (its rate is the replay rate) |
//! | `wal_full_total` | counter | | batches refused by a full WAL under `block` (retried) |
//! | `wal_pending_records`, `wal_pending_batches`, `wal_disk_bytes` | gauge | | what the WAL holds |
//! | `wal_dropped_records`, `wal_corrupt_records` | gauge | | lost to `drop_oldest`/`drop_newest`, and to corruption, since start |

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        if n > 0 {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds `n` (which may be negative).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the value.
    pub fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What one listener counts.
#[derive(Debug)]
pub struct ListenerMetrics {
    /// The listener's configured name.
    pub name: String,
    /// `udp`, `tcp`, `unix-datagram` or `unix-stream`.
    pub transport: &'static str,
    pub received_lines: Counter,
    pub received_bytes: Counter,
    pub parse_errors: Counter,
    pub truncated: Counter,
    pub dropped_oversize: Counter,
    pub dropped_ring_full: Counter,
    pub framing_errors: Counter,
    pub connections_open: Gauge,
    pub connections: Counter,
    pub connections_rejected: Counter,
}

impl ListenerMetrics {
    /// Zeroed counters for a listener.
    pub fn new(name: &str, transport: &'static str) -> Self {
        ListenerMetrics {
            name: name.to_string(),
            transport,
            received_lines: Counter::default(),
            received_bytes: Counter::default(),
            parse_errors: Counter::default(),
            truncated: Counter::default(),
            dropped_oversize: Counter::default(),
            dropped_ring_full: Counter::default(),
            framing_errors: Counter::default(),
            connections_open: Gauge::default(),
            connections: Counter::default(),
            connections_rejected: Counter::default(),
        }
    }
}

/// What waits in one shard's ring.
#[derive(Debug)]
pub struct RingMetrics {
    pub shard: u16,
    pub capacity_batches: usize,
    pub records: Gauge,
    pub batches: Gauge,
}

/// What the sink did.
#[derive(Debug)]
pub struct SinkMetrics {
    /// `store`, `stdout` or `blackhole`.
    pub name: &'static str,
    pub records: Counter,
    pub batches: Counter,
    pub bytes: Counter,
    pub errors: Counter,
    pub lost_records: Counter,
    /// From a batch's first receive to its write, one sample per batch.
    latency: LatencySummary,
}

impl SinkMetrics {
    /// Zeroed metrics for the sink `name`.
    pub fn new(name: &'static str) -> Self {
        SinkMetrics {
            name,
            records: Counter::default(),
            batches: Counter::default(),
            bytes: Counter::default(),
            errors: Counter::default(),
            lost_records: Counter::default(),
            latency: LatencySummary::default(),
        }
    }

    /// Records a written batch whose first record arrived at `opened_at`.
    pub fn record_batch(&self, records: usize, bytes: usize, opened_at: Option<Instant>) {
        self.records.add(records as u64);
        self.batches.add(1);
        self.bytes.add(bytes as u64);
        if let Some(opened) = opened_at {
            self.latency.record(opened.elapsed());
        }
    }
}

/// A latency histogram (hdrhistogram: 3 significant digits, 1 µs to an hour), exported as a
/// Prometheus summary with the quantiles 0.5, 0.9, 0.99 and 0.999.
#[derive(Debug)]
pub struct LatencySummary(Mutex<Histogram<u64>>);

impl Default for LatencySummary {
    fn default() -> Self {
        LatencySummary(Mutex::new(
            Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"),
        ))
    }
}

impl LatencySummary {
    /// Records one sample.
    pub fn record(&self, latency: Duration) {
        let us = latency.as_micros().clamp(1, 3_600_000_000) as u64;
        if let Ok(mut h) = self.0.lock() {
            let _ = h.record(us);
        }
    }

    /// The latency at quantile `q` (0..=1), and the number of samples.
    pub fn quantile(&self, q: f64) -> (Duration, u64) {
        self.0.lock().map_or((Duration::ZERO, 0), |h| {
            (Duration::from_micros(h.value_at_quantile(q)), h.len())
        })
    }

    /// Writes the summary `logtail_NAME` with `labels` (`key="value"` pairs, comma-separated).
    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        header(out, name, "summary", help);
        let Ok(h) = self.0.lock() else { return };
        for q in [0.5, 0.9, 0.99, 0.999] {
            let _ = writeln!(
                out,
                "logtail_{name}{{{labels},quantile=\"{q}\"}} {:.6}",
                h.value_at_quantile(q) as f64 / 1e6
            );
        }
        let _ = writeln!(out, "logtail_{name}_count{{{labels}}} {}", h.len());
    }
}

/// What the Kafka sink and its WAL did. Counters are added by the sink thread; the gauges are
/// refreshed by it every few milliseconds.
#[derive(Debug, Default)]
pub struct KafkaMetrics {
    /// Records handed to the producer (straight from the rings or replayed from the WAL).
    pub produced_records: Counter,
    /// Records Kafka acknowledged.
    pub delivered_records: Counter,
    /// Records rejected by Kafka for good (e.g. too large for the broker): lost, and logged.
    pub rejected_records: Counter,
    /// Records whose delivery failed and that went back to the WAL to be retried.
    pub retried_records: Counter,
    /// Records written to the WAL instead of the producer, and their batches.
    pub spilled_records: Counter,
    pub spilled_batches: Counter,
    /// Records read back from the WAL and handed to the producer.
    pub replayed_records: Counter,
    /// Batches refused by a full WAL under `full_policy = "block"` (each is retried).
    pub wal_full: Counter,
    /// Records given up on at shutdown: not acknowledged by Kafka, and refused by the WAL.
    pub lost_records: Counter,
    /// New producers started after a fatal error of the previous one.
    pub producer_restarts: Counter,
    /// Delivery errors reported by librdkafka, by error name.
    delivery_errors: Mutex<std::collections::BTreeMap<String, u64>>,
    /// The sink's state, as `sink::kafka::State::metric_value` numbers it.
    pub state: Gauge,
    /// 1 while librdkafka reports every broker down.
    pub brokers_down: Gauge,
    pub in_flight_records: Gauge,
    pub in_flight_bytes: Gauge,
    pub wal_pending_records: Gauge,
    pub wal_pending_batches: Gauge,
    pub wal_disk_bytes: Gauge,
    pub wal_dropped_records: Gauge,
    pub wal_corrupt_records: Gauge,
    /// From a batch's first receive to Kafka's acknowledgement of its last record.
    pub delivery_latency: LatencySummary,
}

impl KafkaMetrics {
    /// Counts `n` delivery errors of kind `error`.
    pub fn delivery_error(&self, error: &str, n: u64) {
        if let Ok(mut map) = self.delivery_errors.lock() {
            *map.entry(error.to_string()).or_default() += n;
        }
    }

    /// The delivery errors counted for `error`.
    pub fn delivery_errors(&self, error: &str) -> u64 {
        self.delivery_errors
            .lock()
            .map_or(0, |map| map.get(error).copied().unwrap_or(0))
    }

    fn render(&self, out: &mut String) {
        let counters: [(&str, &str, &Counter); 10] = [
            (
                "kafka_produced_records_total",
                "Records handed to the Kafka producer.",
                &self.produced_records,
            ),
            (
                "kafka_delivered_records_total",
                "Records acknowledged by Kafka.",
                &self.delivered_records,
            ),
            (
                "kafka_rejected_records_total",
                "Records Kafka rejected for good (lost, and logged).",
                &self.rejected_records,
            ),
            (
                "kafka_retried_records_total",
                "Records whose delivery failed and that went back to the WAL.",
                &self.retried_records,
            ),
            (
                "kafka_lost_records_total",
                "Records given up on at shutdown: not acknowledged, and the WAL refused them.",
                &self.lost_records,
            ),
            (
                "kafka_producer_restarts_total",
                "New producers started after a fatal error of the previous one.",
                &self.producer_restarts,
            ),
            (
                "wal_spilled_records_total",
                "Records written to the WAL because Kafka lagged or had a backlog.",
                &self.spilled_records,
            ),
            (
                "wal_spilled_batches_total",
                "Batches written to the WAL.",
                &self.spilled_batches,
            ),
            (
                "wal_replayed_records_total",
                "Records replayed from the WAL to Kafka.",
                &self.replayed_records,
            ),
            (
                "wal_full_total",
                "Batches refused by a full WAL (full_policy = block; retried).",
                &self.wal_full,
            ),
        ];
        for (name, help, counter) in counters {
            header(out, name, "counter", help);
            let _ = writeln!(out, "logtail_{name} {}", counter.get());
        }
        header(
            out,
            "kafka_delivery_errors_total",
            "counter",
            "Delivery errors reported by librdkafka, by error.",
        );
        if let Ok(map) = self.delivery_errors.lock() {
            for (error, n) in map.iter() {
                let _ = writeln!(
                    out,
                    "logtail_kafka_delivery_errors_total{{error=\"{}\"}} {n}",
                    escape_label(error)
                );
            }
        }
        header(
            out,
            "kafka_state",
            "gauge",
            "1 for the sink's current state: direct (straight to Kafka), spilling (to the WAL), \
             replaying (the WAL to Kafka, new batches behind it).",
        );
        for (value, state) in [(0, "direct"), (1, "spilling"), (2, "replaying")] {
            let _ = writeln!(
                out,
                "logtail_kafka_state{{state=\"{state}\"}} {}",
                i64::from(self.state.get() == value)
            );
        }
        let gauges: [(&str, &str, &Gauge); 8] = [
            (
                "kafka_brokers_down",
                "1 while librdkafka reports every broker down.",
                &self.brokers_down,
            ),
            (
                "kafka_in_flight_records",
                "Records handed to the producer and not yet acknowledged.",
                &self.in_flight_records,
            ),
            (
                "kafka_in_flight_bytes",
                "Value bytes handed to the producer and not yet acknowledged.",
                &self.in_flight_bytes,
            ),
            (
                "wal_pending_records",
                "Records in the WAL not yet acknowledged by Kafka.",
                &self.wal_pending_records,
            ),
            (
                "wal_pending_batches",
                "Batches in the WAL not yet acknowledged by Kafka.",
                &self.wal_pending_batches,
            ),
            (
                "wal_disk_bytes",
                "Bytes of WAL segments on disk.",
                &self.wal_disk_bytes,
            ),
            (
                "wal_dropped_records",
                "Records the WAL dropped since start (full_policy drop_oldest or drop_newest).",
                &self.wal_dropped_records,
            ),
            (
                "wal_corrupt_records",
                "Records lost to corruption found in the WAL since start.",
                &self.wal_corrupt_records,
            ),
        ];
        for (name, help, gauge) in gauges {
            header(out, name, "gauge", help);
            let _ = writeln!(out, "logtail_{name} {}", gauge.get());
        }
        self.delivery_latency.render(
            out,
            "kafka_delivery_latency_seconds",
            "Time from the receipt of a batch's first record to Kafka's acknowledgement of its \
             last.",
            "sink=\"kafka\"",
        );
    }
}

/// Every metric of a running gateway.
#[derive(Debug)]
pub struct Metrics {
    pub listeners: Vec<std::sync::Arc<ListenerMetrics>>,
    pub rings: Vec<std::sync::Arc<RingMetrics>>,
    pub sink: std::sync::Arc<SinkMetrics>,
    /// Set when the sink is Kafka.
    pub kafka: Option<std::sync::Arc<KafkaMetrics>>,
    started: Instant,
}

impl Metrics {
    /// Groups the metrics of a gateway's parts.
    pub fn new(
        listeners: Vec<std::sync::Arc<ListenerMetrics>>,
        rings: Vec<std::sync::Arc<RingMetrics>>,
        sink: std::sync::Arc<SinkMetrics>,
        kafka: Option<std::sync::Arc<KafkaMetrics>>,
    ) -> Self {
        Metrics {
            listeners,
            rings,
            sink,
            kafka,
            started: Instant::now(),
        }
    }

    /// The listener metrics named `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerMetrics> {
        self.listeners.iter().map(|l| &**l).find(|l| l.name == name)
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        type Get = fn(&ListenerMetrics) -> i64;
        let listener_series: [(&str, &str, &str, Option<&str>, Get); 9] = [
            (
                "received_lines_total",
                "counter",
                "Messages received.",
                None,
                |l| l.received_lines.get() as i64,
            ),
            (
                "received_bytes_total",
                "counter",
                "Message bytes received, after framing.",
                None,
                |l| l.received_bytes.get() as i64,
            ),
            (
                "parse_errors_total",
                "counter",
                "Messages kept raw because they did not parse.",
                None,
                |l| l.parse_errors.get() as i64,
            ),
            (
                "truncated_total",
                "counter",
                "Messages cut to max_message_bytes.",
                None,
                |l| l.truncated.get() as i64,
            ),
            (
                "dropped_total",
                "counter",
                "Messages not kept, by reason.",
                Some("oversize"),
                |l| l.dropped_oversize.get() as i64,
            ),
            ("dropped_total", "counter", "", Some("ring_full"), |l| {
                l.dropped_ring_full.get() as i64
            }),
            (
                "framing_errors_total",
                "counter",
                "Untrusted or malformed octet counts.",
                None,
                |l| l.framing_errors.get() as i64,
            ),
            (
                "connections_open",
                "gauge",
                "Open stream connections.",
                None,
                |l| l.connections_open.get(),
            ),
            (
                "connections_total",
                "counter",
                "Stream connections accepted.",
                None,
                |l| l.connections.get() as i64,
            ),
        ];
        for (name, kind, help, reason, get) in listener_series {
            if !help.is_empty() {
                header(&mut out, name, kind, help);
            }
            for l in &self.listeners {
                let reason = reason
                    .map(|r| format!(",reason=\"{r}\""))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "logtail_{name}{{listener=\"{}\",transport=\"{}\"{reason}}} {}",
                    escape_label(&l.name),
                    l.transport,
                    get(l)
                );
            }
        }
        header(
            &mut out,
            "connections_rejected_total",
            "counter",
            "Connections closed at once because the listener was at max_connections.",
        );
        for l in &self.listeners {
            let _ = writeln!(
                out,
                "logtail_connections_rejected_total{{listener=\"{}\",transport=\"{}\"}} {}",
                escape_label(&l.name),
                l.transport,
                l.connections_rejected.get()
            );
        }

        type RingGet = fn(&RingMetrics) -> i64;
        let ring_series: [(&str, &str, RingGet); 3] = [
            (
                "ring_records",
                "Records waiting in the shard's ring.",
                |r| r.records.get(),
            ),
            (
                "ring_batches",
                "Batches waiting in the shard's ring.",
                |r| r.batches.get(),
            ),
            (
                "ring_capacity_batches",
                "Capacity of the shard's ring, in batches.",
                |r| r.capacity_batches as i64,
            ),
        ];
        for (name, help, get) in ring_series {
            header(&mut out, name, "gauge", help);
            for r in &self.rings {
                let _ = writeln!(out, "logtail_{name}{{shard=\"{}\"}} {}", r.shard, get(r));
            }
        }

        let s = &self.sink;
        let sink_series: [(&str, &str, u64); 5] = [
            (
                "sink_records_total",
                "Records written by the sink.",
                s.records.get(),
            ),
            (
                "sink_batches_total",
                "Batches written by the sink.",
                s.batches.get(),
            ),
            (
                "sink_bytes_total",
                "Encoded record bytes written by the sink.",
                s.bytes.get(),
            ),
            (
                "sink_errors_total",
                "Failed sink writes (each is retried).",
                s.errors.get(),
            ),
            (
                "sink_lost_records_total",
                "Records given up on at shutdown because the sink kept failing.",
                s.lost_records.get(),
            ),
        ];
        for (name, help, value) in sink_series {
            header(&mut out, name, "counter", help);
            let _ = writeln!(out, "logtail_{name}{{sink=\"{}\"}} {value}", s.name);
        }
        s.latency.render(
            &mut out,
            "batch_latency_seconds",
            "Time from the receipt of a batch's first record to its write by the sink.",
            &format!("sink=\"{}\"", s.name),
        );
        if let Some(kafka) = &self.kafka {
            kafka.render(&mut out);
        }
        header(
            &mut out,
            "uptime_seconds",
            "gauge",
            "Seconds since the gateway started.",
        );
        let _ = writeln!(
            out,
            "logtail_uptime_seconds {:.3}",
            self.started.elapsed().as_secs_f64()
        );
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP logtail_{name} {help}");
    let _ = writeln!(out, "# TYPE logtail_{name} {kind}");
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
///
/// A deliberately small HTTP/1.1 responder: one request per connection, a 5 s limit to send the
/// request head, and no body parsing — enough for Prometheus and `curl`, with nothing a client
/// can hold open.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: std::sync::Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(_) => continue,
            },
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream, &metrics)).await;
        });
    }
}

async fn answer(mut stream: tokio::net::TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (status, content_type, body) = match (method, target) {
        (b"GET", b"/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        (b"GET", b"/") => (
            "200 OK",
            "text/plain",
            "logtail gateway: metrics at /metrics\n".to_string(),
        ),
        (b"GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// A warning that is logged at most once per interval, with the count of the ones held back.
/// Bad input from the network is logged through these, so a flood of garbage cannot flood the
/// log.
#[derive(Debug)]
pub struct RateLimitedWarning {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimitedWarning {
    /// A warning logged at most once per `interval`.
    pub const fn new(interval: Duration) -> Self {
        RateLimitedWarning {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// Logs `message()` now unless one was logged within the interval; then only counts it.
    pub fn warn(&self, message: impl FnOnce() -> String) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        let due = state
            .0
            .is_none_or(|last| now.duration_since(last) >= self.interval);
        if due {
            let held_back = std::mem::take(&mut state.1);
            state.0 = Some(now);
            drop(state);
            let text = message();
            if held_back > 0 {
                tracing::warn!("{text} ({held_back} similar warnings held back)");
            } else {
                tracing::warn!("{text}");
            }
        } else {
            state.1 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn render_shows_every_listener_ring_and_sink_series() {
        let tcp = Arc::new(ListenerMetrics::new("tcp", "tcp"));
        tcp.received_lines.add(42);
        tcp.dropped_ring_full.add(3);
        tcp.connections_open.add(2);
        let ring = Arc::new(RingMetrics {
            shard: 1,
            capacity_batches: 64,
            records: Gauge::default(),
            batches: Gauge::default(),
        });
        ring.records.set(100);
        let sink = Arc::new(SinkMetrics::new("store"));
        sink.record_batch(10, 1000, Some(Instant::now()));
        let kafka = Arc::new(KafkaMetrics::default());
        kafka.delivered_records.add(7);
        kafka.state.set(2);
        kafka.delivery_error("MessageTimedOut", 2);
        kafka.delivery_latency.record(Duration::from_millis(3));
        let text = Metrics::new(vec![tcp], vec![ring], sink, Some(kafka)).render();
        for line in [
            "logtail_received_lines_total{listener=\"tcp\",transport=\"tcp\"} 42",
            "logtail_dropped_total{listener=\"tcp\",transport=\"tcp\",reason=\"ring_full\"} 3",
            "logtail_dropped_total{listener=\"tcp\",transport=\"tcp\",reason=\"oversize\"} 0",
            "logtail_connections_open{listener=\"tcp\",transport=\"tcp\"} 2",
            "logtail_ring_records{shard=\"1\"} 100",
            "logtail_ring_capacity_batches{shard=\"1\"} 64",
            "logtail_sink_records_total{sink=\"store\"} 10",
            "logtail_sink_bytes_total{sink=\"store\"} 1000",
            "logtail_batch_latency_seconds_count{sink=\"store\"} 1",
            "logtail_kafka_delivered_records_total 7",
            "logtail_kafka_state{state=\"replaying\"} 1",
            "logtail_kafka_state{state=\"direct\"} 0",
            "logtail_kafka_delivery_errors_total{error=\"MessageTimedOut\"} 2",
            "logtail_kafka_delivery_latency_seconds_count{sink=\"kafka\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Each metric family has exactly one TYPE line.
        assert_eq!(text.matches("# TYPE logtail_dropped_total ").count(), 1);
    }

    #[test]
    fn rate_limited_warning_counts_what_it_holds_back() {
        let w = RateLimitedWarning::new(Duration::from_secs(3600));
        let mut calls = 0;
        for _ in 0..5 {
            w.warn(|| {
                calls += 1;
                "bad input".to_string()
            });
        }
        assert_eq!(calls, 1);
        assert_eq!(w.state.lock().unwrap().1, 4);
    }
}
