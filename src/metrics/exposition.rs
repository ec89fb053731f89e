//! The Prometheus text exposition format (version 0.0.4) of a gateway's [`Metrics`].
//!
//! Every family is written with one `# HELP` and one `# TYPE` line, then its samples; names
//! are prefixed `logtail_`. The names, labels and help texts are an interface (dashboards,
//! alerts and `loadtest/` read them): change them only on purpose. Rendering takes each
//! counter once, with relaxed loads, so a scrape never holds up a shard.

use std::fmt::Write as _;

use super::{
    Counter, Gauge, KafkaMetrics, LatencySummary, ListenerMetrics, Metrics, PeerRefusal,
    RingMetrics,
};

impl LatencySummary {
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

impl KafkaMetrics {
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
        for (value, state) in super::KAFKA_STATES {
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

impl Metrics {
    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        type Get = fn(&ListenerMetrics) -> i64;
        let listener_series: [(&str, &str, &str, Option<&str>, Get); 12] = [
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
            ("dropped_total", "counter", "", Some("empty"), |l| {
                l.dropped_empty.get() as i64
            }),
            ("dropped_total", "counter", "", Some("kernel"), |l| {
                l.dropped_kernel.get() as i64
            }),
            (
                "framing_errors_total",
                "counter",
                "Untrusted or malformed octet counts.",
                None,
                |l| l.framing_errors.get() as i64,
            ),
            (
                "throttled_total",
                "counter",
                "Pauses of stream connections sending faster than max_bytes_per_sec_per_connection.",
                None,
                |l| l.throttled.get() as i64,
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
        type Reasons = [(&'static str, fn(&ListenerMetrics) -> u64)];
        let by_reason: [(&str, &str, &Reasons); 2] = [
            (
                "connections_rejected_total",
                "Connections closed at once, by reason: max_connections, per_ip, reserved.",
                &[
                    ("max_connections", |l| l.connections_rejected.get()),
                    ("per_ip", |l| l.connections_rejected_per_ip.get()),
                    ("reserved", |l| l.connections_rejected_reserved.get()),
                ],
            ),
            (
                "connections_closed_total",
                "Connections the gateway closed, by reason.",
                &[
                    ("hello_timeout", |l| l.closed_hello_timeout.get()),
                    ("idle", |l| l.closed_idle.get()),
                    ("slow", |l| l.closed_slow.get()),
                    ("protocol", |l| l.closed_protocol.get()),
                    ("memory", |l| l.closed_memory.get()),
                ],
            ),
        ];
        for (name, help, reasons) in by_reason {
            header(&mut out, name, "counter", help);
            for l in &self.listeners {
                for (reason, get) in reasons {
                    let _ = writeln!(
                        out,
                        "logtail_{name}{{listener=\"{}\",transport=\"{}\",reason=\"{reason}\"}} {}",
                        escape_label(&l.name),
                        l.transport,
                        get(l)
                    );
                }
            }
        }
        if let Some(budget) = &self.memory_budget {
            let series: [(&str, &str, &str, i64); 4] = [
                (
                    "source_memory_bytes",
                    "gauge",
                    "Bytes all connections hold in partial frames and undecoded batches.",
                    budget.held_bytes.get(),
                ),
                (
                    "source_memory_limit_bytes",
                    "gauge",
                    "The sources' memory budget (memory_budget_bytes).",
                    budget.limit_bytes.get(),
                ),
                (
                    "source_memory_refusals_total",
                    "counter",
                    "Frames refused (their connection closed) because the memory budget stayed spent.",
                    budget.refusals.get() as i64,
                ),
                (
                    "source_memory_waits_total",
                    "counter",
                    "Stream reads that waited for room in the memory budget.",
                    budget.waits.get() as i64,
                ),
            ];
            for (name, kind, help, value) in series {
                header(&mut out, name, kind, help);
                let _ = writeln!(out, "logtail_{name} {value}");
            }
        }

        header(
            &mut out,
            "peers_refused_total",
            "counter",
            "Connections closed before any of their data was taken, by reason.",
        );
        for l in &self.listeners {
            for reason in PeerRefusal::ALL {
                let _ = writeln!(
                    out,
                    "logtail_peers_refused_total{{listener=\"{}\",transport=\"{}\",reason=\"{}\"}} {}",
                    escape_label(&l.name),
                    l.transport,
                    reason.as_str(),
                    l.refused_count(reason)
                );
            }
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
        header(
            &mut out,
            "sink_disk_full",
            "gauge",
            "1 while the sink's writes fail because the disk is full.",
        );
        let _ = writeln!(
            out,
            "logtail_sink_disk_full{{sink=\"{}\"}} {}",
            s.name,
            s.disk_full.get()
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crate::metrics::{MemoryBudgetMetrics, SinkMetrics};

    #[test]
    fn render_shows_every_listener_ring_and_sink_series() {
        let tcp = Arc::new(ListenerMetrics::new("tcp", "tcp"));
        tcp.received_lines.add(42);
        tcp.dropped_ring_full.add(3);
        tcp.connections_open.add(2);
        tcp.refused(PeerRefusal::CertificateExpired);
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
            "logtail_peers_refused_total{listener=\"tcp\",transport=\"tcp\",reason=\"certificate_expired\"} 1",
            "logtail_peers_refused_total{listener=\"tcp\",transport=\"tcp\",reason=\"plaintext\"} 0",
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
    fn hostile_client_counters_are_shown_by_reason_with_the_budget() {
        let tcp = Arc::new(ListenerMetrics::new("tcp", "tcp"));
        tcp.connections_rejected_reserved.add(6);
        tcp.closed_slow.add(54);
        tcp.dropped_empty.add(50);
        tcp.dropped_kernel.add(7);
        tcp.throttled.add(3);
        let budget = Arc::new(MemoryBudgetMetrics::default());
        budget.held_bytes.set(8 << 20);
        budget.limit_bytes.set(8 << 20);
        budget.refusals.add(72);
        let sink = Arc::new(SinkMetrics::new("store"));
        sink.disk_full.set(1);
        let text = Metrics::new(vec![tcp], vec![], sink, None)
            .with_memory_budget(budget)
            .render();
        for line in [
            "logtail_connections_rejected_total{listener=\"tcp\",transport=\"tcp\",reason=\"max_connections\"} 0",
            "logtail_connections_rejected_total{listener=\"tcp\",transport=\"tcp\",reason=\"reserved\"} 6",
            "logtail_connections_closed_total{listener=\"tcp\",transport=\"tcp\",reason=\"slow\"} 54",
            "logtail_dropped_total{listener=\"tcp\",transport=\"tcp\",reason=\"empty\"} 50",
            "logtail_dropped_total{listener=\"tcp\",transport=\"tcp\",reason=\"kernel\"} 7",
            "logtail_throttled_total{listener=\"tcp\",transport=\"tcp\"} 3",
            "logtail_source_memory_bytes 8388608",
            "logtail_source_memory_limit_bytes 8388608",
            "logtail_source_memory_refusals_total 72",
            "logtail_sink_disk_full{sink=\"store\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(
            text.matches("# TYPE logtail_connections_closed_total ")
                .count(),
            1
        );
    }
}
