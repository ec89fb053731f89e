//! What each Kafka source did (see the table in [`super`]): counters added by its task, the
//! lag per partition set from librdkafka's statistics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use super::Counter;
use super::exposition::{escape_label, header};

#[derive(Debug)]
pub struct KafkaSourceMetrics {
    pub listener: String,
    pub consumed_records: Counter,
    pub committed_records: Counter,
    /// `(topic, partition)` → records behind the partition's end.
    lag: Mutex<BTreeMap<(String, i32), i64>>,
}

impl KafkaSourceMetrics {
    pub fn new(listener: &str) -> Self {
        KafkaSourceMetrics {
            listener: listener.to_string(),
            consumed_records: Counter::default(),
            committed_records: Counter::default(),
            lag: Mutex::default(),
        }
    }

    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        if let Ok(mut map) = self.lag.lock() {
            map.insert((topic.to_string(), partition), lag);
        }
    }

    /// A partition no longer assigned here has no lag of ours.
    pub fn forget_lag(&self, topic: &str, partition: i32) {
        if let Ok(mut map) = self.lag.lock() {
            map.remove(&(topic.to_string(), partition));
        }
    }

    /// The sum of the lags of the partitions assigned here.
    pub fn total_lag(&self) -> i64 {
        self.lag.lock().map_or(0, |map| map.values().sum())
    }
}

pub(super) fn render(sources: &[Arc<KafkaSourceMetrics>], out: &mut String) {
    if sources.is_empty() {
        return;
    }
    header(
        out,
        "kafka_consumer_lag",
        "gauge",
        "Records a Kafka source is behind the end of each partition assigned to it.",
    );
    for source in sources {
        let listener = escape_label(&source.listener);
        if let Ok(map) = source.lag.lock() {
            for ((topic, partition), lag) in map.iter() {
                let _ = writeln!(
                    out,
                    "logtail_kafka_consumer_lag{{listener=\"{listener}\",topic=\"{}\",partition=\"{partition}\"}} {lag}",
                    escape_label(topic)
                );
            }
        }
    }
    for (name, help, counter) in [
        (
            "kafka_source_consumed_records_total",
            "Records a Kafka source took.",
            (|s: &KafkaSourceMetrics| s.consumed_records.get()) as fn(&KafkaSourceMetrics) -> u64,
        ),
        (
            "kafka_source_committed_records_total",
            "Records whose offsets a Kafka source committed, once durable.",
            |s: &KafkaSourceMetrics| s.committed_records.get(),
        ),
    ] {
        header(out, name, "counter", help);
        for source in sources {
            let _ = writeln!(
                out,
                "logtail_{name}{{listener=\"{}\"}} {}",
                escape_label(&source.listener),
                counter(source)
            );
        }
    }
}
