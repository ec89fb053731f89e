//! The Elasticsearch sink against a real server speaking the bulk API: `osmem-server`, an
//! in-memory OpenSearch-compatible server from PyPI that `tests/run.sh` installs into
//! `~/.local/osmem-venv` (or `OSMEM_SERVER_BIN`). Exact counts, read back through `_count` and
//! `_search`.

use test_fixtures as common;

use std::collections::HashSet;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::Gateway;
use common::kafka::{send, wait_until};
use common::osmem::{Osmem, distinct_messages, json, request};
use logtail::config::{Config, SinkKind};
use serde_json::Value;
use test_support::net::free_port;
use test_support::proxy::Proxy;

const LONG: Duration = Duration::from_secs(120);

fn use_elasticsearch(config: &mut Config, endpoint: SocketAddr) {
    config.sink.kind = SinkKind::Elasticsearch;
    let es = &mut config.sink.elasticsearch;
    es.endpoints = vec![
        format!("http://{endpoint}")
            .try_into()
            .expect("an endpoint URL"),
    ];
    es.bulk_max_age = Duration::from_millis(20);
    es.retry_max_backoff = Duration::from_millis(1000);
}

#[test]
fn every_tcp_line_is_indexed_exactly_once_by_id() {
    let Some(osmem) = Osmem::start("every_tcp_line_is_indexed_exactly_once_by_id") else {
        return;
    };
    let gw = Gateway::start_with(|c| use_elasticsearch(c, osmem.addr()));
    const HOSTS: u64 = 4;
    const PER_HOST: u64 = 2500;
    let total = HOSTS * PER_HOST;
    let senders: Vec<_> = (0..HOSTS)
        .map(|h| send(gw.tcp(), &format!("host{h}"), PER_HOST, None))
        .collect();
    for s in senders {
        s.join().expect("sender");
    }
    let metrics = gw
        .server()
        .metrics()
        .elasticsearch
        .clone()
        .expect("es metrics");
    wait_until(LONG, "every line indexed", || {
        metrics.indexed_docs.get() >= total
    });
    // The lines carry the date 2026-11-21: one daily index.
    assert_eq!(osmem.count("logs-2026.11.21"), total);
    let documents = osmem.documents("logs-*", HOSTS);
    assert_eq!(documents.len() as u64, total);
    let ids: HashSet<&str> = documents.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len() as u64, total, "one _id per record");
    let messages = distinct_messages(&documents);
    for h in 0..HOSTS {
        for seq in 0..PER_HOST {
            let expected = format!("host{h} {seq} lorem ipsum dolor sit amet");
            assert!(messages.contains(&expected), "{expected:?} missing");
        }
    }
    assert_eq!(metrics.indexed_docs.get(), total);
    assert_eq!(metrics.dead_lettered_docs.get(), 0);
    // The template gave the fields their types.
    let (_, mapping) =
        request(osmem.addr(), "GET", "/logs-2026.11.21/_mapping", None).expect("mapping");
    let mapping = json(&mapping);
    let properties = &mapping["logs-2026.11.21"]["mappings"]["properties"];
    assert_eq!(properties["host"]["type"], "keyword");
    assert_eq!(properties["timestamp"]["type"], "date");
    // The metrics endpoint shows them.
    let text = test_support::prometheus_text::scrape(
        &gw.server().metrics_address().expect("metrics").to_string(),
    )
    .expect("a scrape");
    assert_eq!(
        test_support::prometheus_text::sample(&text, "logtail_elasticsearch_indexed_docs_total"),
        Some(total as f64)
    );
}

#[test]
fn elasticsearch_down_for_10_s_then_back_loses_and_duplicates_nothing() {
    let Some(osmem) =
        Osmem::start("elasticsearch_down_for_10_s_then_back_loses_and_duplicates_nothing")
    else {
        return;
    };
    let proxy_port = free_port().expect("a free port");
    let mut proxy = Proxy::start(proxy_port, osmem.addr()).expect("proxy");
    let gw = Gateway::start_with(|c| {
        use_elasticsearch(c, SocketAddr::from(([127, 0, 0, 1], proxy_port)));
    });
    let metrics = gw
        .server()
        .metrics()
        .elasticsearch
        .clone()
        .expect("es metrics");
    // 2 senders at about 500 lines a second each for 16 s; the server is cut off from 3 s to 13 s.
    const PER_HOST: u64 = 8000;
    let senders: Vec<_> = (0..2)
        .map(|h| {
            send(
                gw.tcp(),
                &format!("host{h}"),
                PER_HOST,
                Some((50, Duration::from_millis(100))),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    proxy.cut();
    let cut_at = Instant::now();
    let indexed_at_cut = metrics.indexed_docs.get();
    std::thread::sleep(Duration::from_secs(10));
    assert!(
        metrics.indexed_docs.get() <= indexed_at_cut + 2000,
        "documents kept being indexed while the server was cut off"
    );
    proxy.restore(None).expect("proxy back");
    let down_for = cut_at.elapsed();
    for s in senders {
        s.join().expect("sender");
    }
    let total = 2 * PER_HOST;
    wait_until(LONG, "every line indexed", || {
        metrics.indexed_docs.get() + metrics.already_indexed_docs.get() >= total
            && metrics.in_flight_docs.get() == 0
    });
    let documents = osmem.documents("logs-*", 2);
    let messages = distinct_messages(&documents);
    assert_eq!(documents.len() as u64, total, "down for {down_for:?}");
    for h in 0..2 {
        for seq in 0..PER_HOST {
            let expected = format!("host{h} {seq} lorem ipsum dolor sit amet");
            assert!(messages.contains(&expected), "{expected:?} missing");
        }
    }
    assert!(
        metrics.spilled_records.get() > 0,
        "the outage went to the WAL"
    );
    assert_eq!(
        metrics.replayed_records.get(),
        metrics.spilled_records.get()
    );
    assert!(metrics.retried_docs.get() > 0);
    assert!(metrics.failed_for("connection") > 0);
    assert_eq!(metrics.dead_lettered_docs.get(), 0);
    assert_eq!(metrics.lost_records.get(), 0);
}

#[test]
fn a_mapping_conflict_goes_to_the_dead_letter_file_with_its_reason() {
    let Some(osmem) =
        Osmem::start("a_mapping_conflict_goes_to_the_dead_letter_file_with_its_reason")
    else {
        return;
    };
    // An index whose `msgid` is a number: a message whose MSGID is text cannot go in.
    let (status, body) = request(
        osmem.addr(),
        "PUT",
        "/conflict",
        Some(r#"{"mappings":{"properties":{"msgid":{"type":"long"}}}}"#),
    )
    .expect("create the index");
    assert_eq!(status, 200, "{body}");
    let dead_letter = tempfile::tempdir().expect("tempdir");
    let dead_letter_file = dead_letter.path().join("dead.ndjson");
    let gw = Gateway::start_with(|c| {
        use_elasticsearch(c, osmem.addr());
        c.sink.elasticsearch.index = "conflict".to_string().try_into().expect("an index");
        c.sink.elasticsearch.install_template = false;
        c.sink.elasticsearch.dead_letter_file = Some(dead_letter_file.clone());
    });
    let metrics = gw
        .server()
        .metrics()
        .elasticsearch
        .clone()
        .expect("es metrics");
    let mut conn = TcpStream::connect(gw.tcp()).expect("connect");
    conn.write_all(
        b"<134>1 2026-11-21T10:00:00Z h app - 42 - fits\n\
          <134>1 2026-11-21T10:00:00Z h app - ID47 - refused\n\
          <134>1 2026-11-21T10:00:00Z h app - 43 - fits too\n",
    )
    .expect("send");
    drop(conn);
    wait_until(LONG, "every line resolved", || {
        metrics.indexed_docs.get() + metrics.dead_lettered_docs.get() == 3
    });
    assert_eq!(metrics.indexed_docs.get(), 2);
    assert_eq!(metrics.dead_lettered_docs.get(), 1);
    assert_eq!(metrics.failed_for("mapper_parsing_exception"), 1);
    assert_eq!(osmem.count("conflict"), 2);
    let text = std::fs::read_to_string(&dead_letter_file).expect("the dead-letter file");
    let lines: Vec<Value> = text.lines().map(json).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["status"], 400);
    assert_eq!(lines[0]["document"]["message"], "refused");
    assert_eq!(lines[0]["document"]["msgid"], "ID47");
    assert_eq!(lines[0]["action"]["create"]["_index"], "conflict");
    let reason = lines[0]["reason"].as_str().expect("a reason");
    assert!(reason.starts_with("mapper_parsing_exception: "), "{reason}");
    assert!(reason.contains("msgid"), "{reason}");
}

#[test]
fn documents_not_indexed_at_shutdown_wait_in_the_wal_and_are_indexed_after_restart() {
    let test = "documents_not_indexed_at_shutdown_wait_in_the_wal_and_are_indexed_after_restart";
    let Some(osmem) = Osmem::start(test) else {
        return;
    };
    let proxy_port = free_port().expect("a free port");
    let mut proxy = Proxy::start(proxy_port, osmem.addr()).expect("proxy");
    let mut gw = Gateway::start_with(|c| {
        use_elasticsearch(c, SocketAddr::from(([127, 0, 0, 1], proxy_port)));
    });
    let metrics = gw
        .server()
        .metrics()
        .elasticsearch
        .clone()
        .expect("es metrics");
    // The template is installed while the server is reachable; then it is cut off.
    wait_until(LONG, "the template installed", || {
        metrics.unreachable.get() == 0
    });
    proxy.cut();
    const LINES: u64 = 3000;
    send(
        gw.tcp(),
        "host0",
        LINES,
        Some((500, Duration::from_millis(50))),
    )
    .join()
    .expect("sender");
    wait_until(LONG, "every line taken by the sink", || {
        gw.server().metrics().sink.records.get() == LINES
    });
    assert_eq!(metrics.indexed_docs.get(), 0);
    gw.stop();
    assert_eq!(metrics.lost_records.get(), 0);
    proxy.restore(None).expect("proxy back");
    gw.restart();
    let metrics = gw
        .server()
        .metrics()
        .elasticsearch
        .clone()
        .expect("es metrics");
    wait_until(LONG, "every line indexed after the restart", || {
        osmem.count("logs-*") == LINES
    });
    let documents = osmem.documents("logs-*", 1);
    let messages = distinct_messages(&documents);
    assert_eq!(messages.len() as u64, LINES);
    assert_eq!(
        metrics.replayed_records.get(),
        LINES,
        "all of them from the WAL"
    );
}
