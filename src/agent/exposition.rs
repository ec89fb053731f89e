//! The agent's own metrics: the `[metrics]` section of its config, and their Prometheus text
//! exposition at `http://ADDRESS/metrics`, served by [`crate::http`] with the gateway's limits.
//!
//! Exposed metrics (all prefixed `logtail_agent_`):
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `files_tailed` | gauge | | files tracked now |
//! | `entries` | gauge | | collect entries in force |
//! | `read_bytes_total`, `read_lines_total` | counter | | bytes of files consumed; lines (or multiline events) read into batches |
//! | `acked_lines_total` | counter | | lines in acknowledged batches |
//! | `lines_cut_total` | counter | | lines or events cut to `max_line_bytes` |
//! | `multiline_events_total` | counter | | multiline events emitted |
//! | `file_lag_bytes` | gauge | entry, path | a file's size minus its checkpoint: written, not yet acknowledged (sampled at each scan) |
//! | `batches_sent_total`, `batches_acked_total` | counter | | batches handed to the shipper; acknowledged |
//! | `batches_in_flight` | gauge | | sent and not yet acknowledged (at most `max_unacked_batches`) |
//! | `ack_latency_seconds` | summary | shipper, quantile | batch handed to the shipper → acknowledged |
//! | `reconnects_total` | counter | | connection attempts to the destination after the first |
//! | `checkpoint_age_seconds` | gauge | | since the checkpoint file was last written (absent before the first write) |
//! | `files_opened_total`, `files_released_total` | counter | | files opened for reading; released after rotation or deletion |
//! | `copytruncates_followed_total`, `truncations_without_copy_total` | counter | | truncations read from their copy; truncations that lost lines |
//! | `config_applied_total`, `config_rejected_total` | counter | | configurations put in force; rejected |
//! | `etcd_state` | gauge | state | 1 for the current one of `off`, `connecting`, `watching` |
//! | `etcd_revision` | gauge | | the revision of the etcd value last read |
//! | `uptime_seconds` | gauge | | since the agent started |

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Instant;

use serde::{Deserialize, Deserializer};

use super::{AgentMetrics, EtcdState};
use crate::metrics::{Counter, escape_label, header, single};
use crate::setting::Refusal;

/// `[metrics]`: the agent's Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentMetricsConfig {
    /// Serve metrics at all. Default: true.
    pub enabled: bool,
    /// `IP:PORT` of the endpoint. Default: `127.0.0.1:9101` (the gateway's is 9100, so both
    /// run on one host). When it cannot be bound (a port taken by another program), the agent
    /// logs it and collects without metrics: an endpoint must never stop a host's logs.
    #[serde(deserialize_with = "socket_addr")]
    pub address: SocketAddr,
}

impl Default for AgentMetricsConfig {
    fn default() -> Self {
        AgentMetricsConfig {
            enabled: true,
            address: SocketAddr::from(([127, 0, 0, 1], 9101)),
        }
    }
}

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(Refusal(format!(
            "{text:?} is not IP:PORT, e.g. \"127.0.0.1:9101\""
        )))
    })
}

/// The agent's metrics in the Prometheus text format, version 0.0.4 (see the module doc).
/// `shipper` labels the latency summary (`gateway`, `kafka`, ...).
pub fn render(metrics: &AgentMetrics, started: Instant, shipper: &str) -> String {
    let mut out = String::with_capacity(4096);
    let gauges = [
        (
            "agent_files_tailed",
            "Files tracked now.",
            metrics.files_open.get(),
        ),
        (
            "agent_entries",
            "Collect entries in force.",
            metrics.entries.get(),
        ),
    ];
    for (name, help, value) in gauges {
        single(&mut out, name, "gauge", help, value);
    }
    let counters: [(&str, &str, &Counter); 14] = [
        (
            "agent_read_bytes_total",
            "Bytes of files consumed.",
            &metrics.bytes_read,
        ),
        (
            "agent_read_lines_total",
            "Lines (or multiline events) read into batches.",
            &metrics.lines_read,
        ),
        (
            "agent_acked_lines_total",
            "Lines in acknowledged batches.",
            &metrics.lines_acked,
        ),
        (
            "agent_lines_cut_total",
            "Lines or events cut to max_line_bytes.",
            &metrics.lines_truncated,
        ),
        (
            "agent_multiline_events_total",
            "Multiline events emitted.",
            &metrics.multiline_events,
        ),
        (
            "agent_batches_sent_total",
            "Batches handed to the shipper.",
            &metrics.batches_sent,
        ),
        (
            "agent_batches_acked_total",
            "Batches acknowledged.",
            &metrics.batches_acked,
        ),
        (
            "agent_reconnects_total",
            "Connection attempts to the destination after the first.",
            &metrics.reconnects,
        ),
        (
            "agent_files_opened_total",
            "Files opened for reading (new, resumed, or after a truncation).",
            &metrics.files_opened,
        ),
        (
            "agent_files_released_total",
            "Files released after rotation or deletion, read to their end.",
            &metrics.files_released,
        ),
        (
            "agent_copytruncates_followed_total",
            "Truncations whose content was found in a copy and read there.",
            &metrics.copytruncates_followed,
        ),
        (
            "agent_truncations_without_copy_total",
            "Truncations without a copy: lines between the last read and the truncation lost.",
            &metrics.truncations_without_copy,
        ),
        (
            "agent_config_applied_total",
            "Configurations put in force (file or etcd).",
            &metrics.config_applied,
        ),
        (
            "agent_config_rejected_total",
            "Configurations rejected (the last good one stayed).",
            &metrics.config_rejected,
        ),
    ];
    for (name, help, counter) in counters {
        single(&mut out, name, "counter", help, counter.get());
    }
    let in_flight = metrics
        .batches_sent
        .get()
        .saturating_sub(metrics.batches_acked.get());
    single(
        &mut out,
        "agent_batches_in_flight",
        "gauge",
        "Batches sent and not yet acknowledged.",
        in_flight,
    );
    header(
        &mut out,
        "agent_file_lag_bytes",
        "gauge",
        "A file's size minus its checkpoint: bytes written and not yet acknowledged.",
    );
    if let Ok(lags) = metrics.file_lag.lock() {
        for lag in lags.iter() {
            let _ = writeln!(
                out,
                "logtail_agent_file_lag_bytes{{entry=\"{}\",path=\"{}\"}} {}",
                escape_label(&lag.entry),
                escape_label(&lag.path),
                lag.bytes
            );
        }
    }
    metrics.ack_latency.render(
        &mut out,
        "agent_ack_latency_seconds",
        "From a batch handed to the shipper to its acknowledgement.",
        &format!("shipper=\"{}\"", escape_label(shipper)),
    );
    header(
        &mut out,
        "agent_checkpoint_age_seconds",
        "gauge",
        "Seconds since the checkpoint file was last written.",
    );
    let written = metrics.checkpoint_written_at_us.get();
    if written > 0 {
        let age_us = crate::time::now_unix_micros()
            .saturating_sub(written)
            .max(0);
        let _ = writeln!(
            out,
            "logtail_agent_checkpoint_age_seconds {:.3}",
            age_us as f64 / 1e6
        );
    }
    header(
        &mut out,
        "agent_etcd_state",
        "gauge",
        "1 for the etcd watch's current state: off (no endpoints), connecting, watching.",
    );
    for state in EtcdState::ALL {
        let _ = writeln!(
            out,
            "logtail_agent_etcd_state{{state=\"{}\"}} {}",
            state.as_str(),
            i64::from(metrics.etcd_state.get() == state as i64)
        );
    }
    single(
        &mut out,
        "agent_etcd_revision",
        "gauge",
        "The revision of the etcd value last read.",
        metrics.etcd_revision.get(),
    );
    single(
        &mut out,
        "agent_uptime_seconds",
        "gauge",
        "Seconds since the agent started.",
        format_args!("{:.3}", started.elapsed().as_secs_f64()),
    );
    out
}
