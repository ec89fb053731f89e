//! Reading a gateway's `/metrics`: one scrape over plain HTTP, and samples picked out of the
//! Prometheus text format.

/// The response (head and Prometheus text) of `GET http://ADDRESS/metrics`, if it answers
/// within a second.
pub fn scrape(address: &str) -> Option<String> {
    crate::net::http_get(address, "/metrics")
}

/// The value of the sample `series` (the name and its labels exactly as written, e.g.
/// `logtail_kafka_state{state="direct"}`).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The sum of every sample of metric `name` (any labels) in Prometheus text `text`.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.as_bytes().first() {
                Some(b' ') => rest,
                Some(b'{') => &rest[rest.find('}')? + 1..],
                _ => return None,
            };
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// The value of the sample of `name` whose labels include `label` (e.g. `quantile="0.99"`).
pub fn metric_with_label(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix('{')?;
        let (labels, value) = rest.split_once('}')?;
        labels
            .split(',')
            .any(|l| l == label)
            .then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_with_label_picks_one_sample() {
        let text = "logtail_batch_latency_seconds{sink=\"kafka\",quantile=\"0.5\"} 0.002\n\
                    logtail_batch_latency_seconds{sink=\"kafka\",quantile=\"0.99\"} 0.031\n";
        assert_eq!(
            metric_with_label(text, "logtail_batch_latency_seconds", "quantile=\"0.99\""),
            Some(0.031)
        );
        assert_eq!(
            metric_with_label(text, "logtail_batch_latency_seconds", "quantile=\"0.9\""),
            None
        );
    }

    #[test]
    fn metric_sum_adds_every_label_set_of_exactly_that_name() {
        let text = "# HELP logtail_dropped_total x\n\
                    logtail_dropped_total{listener=\"udp\",reason=\"ring_full\"} 3\n\
                    logtail_dropped_total{listener=\"tcp\",reason=\"oversize\"} 4\n\
                    logtail_dropped_total_other 100\n\
                    logtail_uptime_seconds 7.5\n";
        assert_eq!(metric_sum(text, "logtail_dropped_total"), 7.0);
        assert_eq!(metric_sum(text, "logtail_uptime_seconds"), 7.5);
        assert_eq!(metric_sum(text, "logtail_missing"), 0.0);
    }

    #[test]
    fn sample_matches_the_whole_series() {
        let text = "logtail_kafka_state{state=\"direct\"} 1\nlogtail_kafka_brokers_down 0\n";
        assert_eq!(
            sample(text, "logtail_kafka_state{state=\"direct\"}"),
            Some(1.0)
        );
        assert_eq!(sample(text, "logtail_kafka_brokers_down"), Some(0.0));
        assert_eq!(sample(text, "logtail_kafka_brokers"), None);
    }
}
