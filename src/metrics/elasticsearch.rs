//! What the Elasticsearch sink did (see the table in [`super`]). Counters are added by the sink
//! thread; gauges are refreshed by it every few milliseconds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use super::exposition::{escape_label, header};
use super::{Counter, Gauge, LatencySummary};

#[derive(Debug, Default)]
pub struct ElasticsearchMetrics {
    pub indexed_docs: Counter,
    pub already_indexed_docs: Counter,
    pub retried_docs: Counter,
    pub dead_lettered_docs: Counter,
    pub bulk_requests: Counter,
    pub spilled_records: Counter,
    pub replayed_records: Counter,
    pub lost_records: Counter,
    /// Failed items by reason.
    failed: Mutex<BTreeMap<String, u64>>,
    /// As `sink::kafka::State::metric_value` numbers it (the same spill state machine).
    pub state: Gauge,
    pub unreachable: Gauge,
    pub in_flight_docs: Gauge,
    pub requests_in_flight: Gauge,
    pub wal_pending_records: Gauge,
    pub bulk_latency: LatencySummary,
    pub indexed_latency: LatencySummary,
}

impl ElasticsearchMetrics {
    /// Counts `n` failed items for `reason`.
    pub fn failed(&self, reason: &str, n: u64) {
        if let Ok(mut map) = self.failed.lock() {
            *map.entry(reason.to_string()).or_default() += n;
        }
    }

    /// The failed items counted for `reason`.
    pub fn failed_for(&self, reason: &str) -> u64 {
        self.failed
            .lock()
            .map_or(0, |map| map.get(reason).copied().unwrap_or(0))
    }

    pub(super) fn render(&self, out: &mut String) {
        let counters: [(&str, &str, &Counter); 8] = [
            (
                "elasticsearch_indexed_docs_total",
                "Documents indexed.",
                &self.indexed_docs,
            ),
            (
                "elasticsearch_already_indexed_docs_total",
                "Documents whose create found their _id indexed already (409): delivered before.",
                &self.already_indexed_docs,
            ),
            (
                "elasticsearch_retried_docs_total",
                "Documents sent again after a 429, a 5xx or a failed request.",
                &self.retried_docs,
            ),
            (
                "elasticsearch_dead_lettered_docs_total",
                "Documents refused for good, written to the dead-letter file.",
                &self.dead_lettered_docs,
            ),
            (
                "elasticsearch_bulk_requests_total",
                "Bulk requests answered or failed.",
                &self.bulk_requests,
            ),
            (
                "elasticsearch_spilled_records_total",
                "Records written to the WAL instead of sent.",
                &self.spilled_records,
            ),
            (
                "elasticsearch_replayed_records_total",
                "Records read back from the WAL and sent.",
                &self.replayed_records,
            ),
            (
                "elasticsearch_lost_records_total",
                "Records given up on at shutdown: not indexed, and the WAL refused them.",
                &self.lost_records,
            ),
        ];
        for (name, help, counter) in counters {
            header(out, name, "counter", help);
            let _ = writeln!(out, "logtail_{name} {}", counter.get());
        }
        header(
            out,
            "elasticsearch_failed_docs_total",
            "counter",
            "Failed items, by reason (retried or dead-lettered).",
        );
        if let Ok(map) = self.failed.lock() {
            for (reason, n) in map.iter() {
                let _ = writeln!(
                    out,
                    "logtail_elasticsearch_failed_docs_total{{reason=\"{}\"}} {n}",
                    escape_label(reason)
                );
            }
        }
        header(
            out,
            "elasticsearch_state",
            "gauge",
            "1 for the sink's current state: direct, spilling (to the WAL), replaying.",
        );
        for (value, state) in [(0, "direct"), (1, "spilling"), (2, "replaying")] {
            let _ = writeln!(
                out,
                "logtail_elasticsearch_state{{state=\"{state}\"}} {}",
                i64::from(self.state.get() == value)
            );
        }
        let gauges: [(&str, &str, &Gauge); 4] = [
            (
                "elasticsearch_unreachable",
                "1 while no endpoint answers or the index template is not installed yet.",
                &self.unreachable,
            ),
            (
                "elasticsearch_in_flight_docs",
                "Documents taken and not yet indexed or dead-lettered.",
                &self.in_flight_docs,
            ),
            (
                "elasticsearch_requests_in_flight",
                "Requests sent and not yet answered.",
                &self.requests_in_flight,
            ),
            (
                "elasticsearch_wal_pending_records",
                "Records in the WAL not yet indexed.",
                &self.wal_pending_records,
            ),
        ];
        for (name, help, gauge) in gauges {
            header(out, name, "gauge", help);
            let _ = writeln!(out, "logtail_{name} {}", gauge.get());
        }
        self.bulk_latency.render(
            out,
            "elasticsearch_bulk_latency_seconds",
            "A bulk request's round trip.",
            "sink=\"elasticsearch\"",
        );
        self.indexed_latency.render(
            out,
            "elasticsearch_indexed_latency_seconds",
            "Time from a record's receipt to its indexing by Elasticsearch.",
            "sink=\"elasticsearch\"",
        );
    }
}
