//! The indexing half: syslog → gateway → Kafka (tansu) → indexer (a `logtail serve` with a
//! `kafka` listener and the Elasticsearch sink) → osmem-server. Exact counts by `_id`.

use test_fixtures as common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::Gateway;
use common::kafka::{TOPIC, send, use_kafka, wait_until};
use common::osmem::{Osmem, distinct_messages};
use common::process::{Served, serve};
use common::tansu::{Tansu, binary_or_skip};

const LONG: Duration = Duration::from_secs(180);

/// Writes the indexer's config in `dir` and starts it: one `kafka` listener in group `group`,
/// the Elasticsearch sink to `es`.
fn start_indexer(dir: &Path, bootstrap: SocketAddr, es: SocketAddr, records: &str) -> Served {
    let config = dir.join("indexer.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{data}\"\n[ingest]\nshards = 1\n\
             [[listen]]\ntype = \"kafka\"\n\
             [listen.kafka]\nbootstrap_servers = \"{bootstrap}\"\ntopics = [\"{TOPIC}\"]\n\
             group_id = \"indexers\"\nrecords = \"{records}\"\n\
             [listen.kafka.librdkafka]\n\"session.timeout.ms\" = \"6000\"\n\
             \"heartbeat.interval.ms\" = \"1000\"\n\
             [sink]\ntype = \"elasticsearch\"\n\
             [sink.elasticsearch]\nendpoints = [\"http://{es}\"]\nbulk_max_age_ms = 20\n\
             [metrics]\naddress = \"127.0.0.1:0\"\n",
            data = dir.join("indexer-data").display(),
        ),
    )
    .expect("indexer config");
    serve(&config)
}

fn indexed(indexer: &Served) -> u64 {
    indexer
        .metric("logtail_elasticsearch_indexed_docs_total")
        .unwrap_or(0.0) as u64
}

#[test]
fn indexer_killed_mid_stream_and_restarted_loses_nothing_and_duplicates_nothing() {
    let test = "indexer_killed_mid_stream_and_restarted_loses_nothing_and_duplicates_nothing";
    let Some(binary) = binary_or_skip(test) else {
        return;
    };
    let Some(osmem) = Osmem::start(test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let tansu = Tansu::start(&binary, dir.path());
    tansu.create_topic(&binary, TOPIC, 3);
    let bootstrap = tansu.address();
    let gateway = Gateway::start_with(|c| use_kafka(c, &bootstrap.to_string()));

    const HOSTS: u64 = 3;
    const PER_HOST: u64 = 6000;
    let total = HOSTS * PER_HOST;
    // About 3000 lines a second in all, so the indexer is killed mid-stream.
    let senders: Vec<_> = (0..HOSTS)
        .map(|h| {
            send(
                gateway.tcp(),
                &format!("host{h}"),
                PER_HOST,
                Some((100, Duration::from_millis(100))),
            )
        })
        .collect();

    let indexer = start_indexer(dir.path(), bootstrap, osmem.addr(), "json");
    wait_until(LONG, "the indexer indexing", || indexed(&indexer) >= 2000);
    let before_kill = indexed(&indexer);
    indexer.kill_9();
    std::thread::sleep(Duration::from_secs(1));
    let indexer = start_indexer(dir.path(), bootstrap, osmem.addr(), "json");
    for s in senders {
        s.join().expect("sender");
    }
    wait_until(LONG, "every line delivered to Kafka", || {
        gateway.kafka().delivered_records.get() == total
    });
    let mut polls = 0u64;
    wait_until(LONG, "every line indexed", || {
        polls += 1;
        let count = osmem.count("logs-*");
        if polls.is_multiple_of(500) {
            eprintln!(
                "indexed {count} of {total}; indexer: consumed {:?} committed {:?} indexed {} state {:?} {:?}",
                indexer.metric("logtail_kafka_source_consumed_records_total{listener=\"kafka\"}"),
                indexer.metric("logtail_kafka_source_committed_records_total{listener=\"kafka\"}"),
                indexed(&indexer),
                indexer.metric("logtail_elasticsearch_unreachable"),
                indexer.metric("logtail_elasticsearch_in_flight_docs"),
            );
        }
        count == total
    });
    // A few more seconds: nothing more arrives (no duplicates under other _ids).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(osmem.count("logs-*"), total);
    let documents = osmem.documents("logs-*", HOSTS);
    assert_eq!(documents.len() as u64, total);
    let messages = distinct_messages(&documents);
    for h in 0..HOSTS {
        for seq in 0..PER_HOST {
            let expected = format!("host{h} {seq} lorem ipsum dolor sit amet");
            assert!(messages.contains(&expected), "{expected:?} missing");
        }
    }
    assert!(before_kill < total, "the kill came mid-stream");
    // Offsets are committed as records are indexed: the restarted indexer read only from the
    // last commit, and what was read twice collapsed onto the same _id (a 409 on create).
    let committed = indexer
        .metric("logtail_kafka_source_committed_records_total{listener=\"kafka\"}")
        .unwrap_or(0.0) as u64;
    assert!(committed > 0, "offsets committed");
    wait_until(Duration::from_secs(10), "the lag drained", || {
        indexer
            .metric("logtail_kafka_consumer_lag{listener=\"kafka\",topic=\"logs\",partition=\"0\"}")
            == Some(0.0)
    });
    indexer.sigterm_and_wait();
}

#[test]
fn syslog_values_from_kafka_are_parsed_and_indexed_once_each_with_their_offset() {
    let test = "syslog_values_from_kafka_are_parsed_and_indexed_once_each_with_their_offset";
    let Some(binary) = binary_or_skip(test) else {
        return;
    };
    let Some(osmem) = Osmem::start(test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let tansu = Tansu::start(&binary, dir.path());
    tansu.create_topic(&binary, TOPIC, 2);
    let bootstrap = tansu.address();
    // A gateway writing the lines as received (raw), as another producer would.
    let gateway = Gateway::start_with(|c| {
        use_kafka(c, &bootstrap.to_string());
        c.sink.encoding = logtail::encode::Encoding::Raw;
    });
    const LINES: u64 = 2000;
    // Every line twice: equal values at different offsets stay two documents.
    send(gateway.tcp(), "host0", LINES, None)
        .join()
        .expect("sender");
    send(gateway.tcp(), "host0", LINES, None)
        .join()
        .expect("sender");
    wait_until(LONG, "every line delivered to Kafka", || {
        gateway.kafka().delivered_records.get() == 2 * LINES
    });
    let indexer = start_indexer(dir.path(), bootstrap, osmem.addr(), "syslog");
    wait_until(LONG, "every line indexed", || {
        osmem.count("logs-*") == 2 * LINES
    });
    let documents = osmem.documents_of("logs-*", "host0");
    assert_eq!(documents.len() as u64, 2 * LINES);
    let mut sources = std::collections::HashSet::new();
    for (_, document) in &documents {
        // Parsed: the host and app of the line, the message without its header.
        assert_eq!(document["app"], "app");
        let source = document["source"].as_str().expect("a source");
        assert!(source.starts_with("kafka:logs/"), "{source}");
        assert!(sources.insert(source.to_string()), "{source} twice");
    }
    let message = |seq: u64| format!("host0 {seq} lorem ipsum dolor sit amet");
    for seq in [0, LINES / 2, LINES - 1] {
        let copies = documents
            .iter()
            .filter(|(_, d)| d["message"] == message(seq).as_str())
            .count();
        assert_eq!(copies, 2, "{seq}");
    }
    indexer.sigterm_and_wait();
}
