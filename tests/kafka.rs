//! The Kafka sink against librdkafka's mock cluster: real Kafka protocol over localhost, with
//! the broker taken down, slowed, and the gateway killed. Every test counts exactly what
//! arrived, per sender and in order.

use test_fixtures as common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::Gateway;
use common::kafka::{TOPIC, cluster, consume_all, line, send, use_kafka, wait_until};
use logtail::wal;
use logtail::wal::FullPolicy;

const LONG: Duration = Duration::from_secs(90);

fn wait_for_brokers_down(gw: &Gateway) {
    wait_until(LONG, "librdkafka to report the broker down", || {
        gw.kafka().brokers_down.get() == 1
    });
}

#[test]
fn healthy_broker_gets_records_directly_keyed_by_host_on_template_topics() {
    let cluster = cluster(3);
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("logs.app", 3, 1).expect("topic");
    let mut gw = Gateway::start_with(|c| {
        use_kafka(c, &bootstrap);
        c.sink.kafka.topic_template = "logs.{app}".parse().unwrap();
    });
    let mut conn = TcpStream::connect(gw.tcp()).expect("connect");
    for seq in 0..100u64 {
        let host = format!("host{}", seq % 4);
        conn.write_all(line(&host, &host, seq / 4).as_bytes())
            .expect("send");
    }
    // No APP-NAME: the fallback topic.
    conn.write_all(b"<134>1 2026-11-21T10:00:00Z web1 - - - - nobody 0 x\n")
        .expect("send");
    drop(conn);
    wait_until(LONG, "101 deliveries", || {
        gw.kafka().delivered_records.get() == 101
    });
    let kafka = gw.kafka();
    assert_eq!(
        kafka.spilled_records.get(),
        0,
        "a healthy broker needs no WAL"
    );
    assert_eq!(kafka.produced_records.get(), 101);
    gw.stop();

    // Lines with APP-NAME "app" went to logs.app; read both topics back.
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "template")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    use rdkafka::Message;
    use rdkafka::consumer::Consumer;
    consumer.subscribe(&["logs.app", TOPIC]).expect("subscribe");
    let mut by_topic = std::collections::BTreeMap::<String, Vec<(Vec<u8>, i32)>>::new();
    let deadline = Instant::now() + LONG;
    while by_topic.values().map(Vec::len).sum::<usize>() < 101 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            by_topic
                .entry(m.topic().to_string())
                .or_default()
                .push((m.key().unwrap_or_default().to_vec(), m.partition()));
        }
    }
    assert_eq!(by_topic["logs.app"].len(), 100);
    assert_eq!(
        by_topic[TOPIC],
        vec![(b"web1".to_vec(), by_topic[TOPIC][0].1)]
    );
    // Keyed by host: each host's records all in one partition.
    for host in 0..4 {
        let key = format!("host{host}").into_bytes();
        let partitions: std::collections::BTreeSet<i32> = by_topic["logs.app"]
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|&(_, p)| p)
            .collect();
        assert_eq!(partitions.len(), 1, "host{host} spread over {partitions:?}");
    }
}

#[test]
fn broker_down_at_start_then_up_delivers_all_200k_lines_in_order_per_host() {
    let cluster = cluster(3);
    let bootstrap = cluster.bootstrap_servers();
    cluster.broker_down(1).expect("broker down");
    let gw = Gateway::start_with(|c| use_kafka(c, &bootstrap));
    wait_for_brokers_down(&gw);

    const HOSTS: u64 = 4;
    const PER_HOST: u64 = 50_000;
    let senders: Vec<_> = (0..HOSTS)
        .map(|h| send(gw.tcp(), &format!("host{h}"), PER_HOST, None))
        .collect();
    for s in senders {
        s.join().expect("sender");
    }
    wait_until(LONG, "every line in the WAL", || {
        gw.kafka().spilled_records.get() == HOSTS * PER_HOST
    });
    assert_eq!(gw.kafka().delivered_records.get(), 0);
    assert_eq!(gw.kafka().state.get(), 1, "spilling");

    cluster.broker_up(1).expect("broker up");
    wait_until(LONG, "the backlog delivered", || {
        gw.kafka().delivered_records.get() == HOSTS * PER_HOST
    });
    wait_until(LONG, "the WAL emptied and back to direct", || {
        gw.kafka().wal_pending_records.get() == 0 && gw.kafka().state.get() == 0
    });
    let (consumed, tally) = consume_all(&bootstrap, PER_HOST, HOSTS * PER_HOST, LONG);
    assert_eq!(tally.distinct, HOSTS * PER_HOST);
    assert_eq!(tally.reordered, 0, "each host's lines in order");
    // The producer is idempotent and nothing crashed: no duplicate either.
    assert_eq!(tally.duplicates, 0);
    assert_eq!(consumed.len() as u64, HOSTS * PER_HOST);
    for m in &consumed {
        assert_eq!(
            m.key.as_deref(),
            m.value["host"].as_str().map(str::as_bytes)
        );
    }
}

#[test]
fn slow_broker_raises_spill_and_the_backlog_drains_once_latency_is_back() {
    let cluster = cluster(1);
    let bootstrap = cluster.bootstrap_servers();
    let gw = Gateway::start_with(|c| {
        use_kafka(c, &bootstrap);
        c.sink.kafka.spill.max_delivery_latency_ms = 300;
    });
    // Warm up: metadata and the producer id, at full speed.
    send(gw.tcp(), "warmup", 1, None).join().expect("sender");
    wait_until(LONG, "warm-up delivery", || {
        gw.kafka().delivered_records.get() == 1
    });

    cluster
        .broker_round_trip_time(1, Duration::from_millis(2000))
        .expect("rtt");
    const LINES: u64 = 20_000;
    let sender = send(gw.tcp(), "h", LINES, Some((500, Duration::from_millis(50))));
    wait_until(LONG, "spill", || gw.kafka().spilled_records.get() > 0);
    sender.join().expect("sender");
    cluster
        .broker_round_trip_time(1, Duration::ZERO)
        .expect("rtt");
    wait_until(LONG, "the backlog delivered", || {
        gw.kafka().delivered_records.get() == LINES + 1
    });
    wait_until(LONG, "the WAL emptied and back to direct", || {
        gw.kafka().wal_pending_records.get() == 0 && gw.kafka().state.get() == 0
    });
    let kafka = gw.kafka();
    let spilled = kafka.spilled_records.get();
    assert!(spilled > 0 && spilled <= LINES);
    assert_eq!(kafka.replayed_records.get(), spilled);
    let (_, tally) = consume_all(&bootstrap, LINES, LINES, LONG);
    // The "warmup" sender's one line counts as seq 0 of its own.
    assert_eq!(tally.distinct, LINES + 1);
    assert_eq!(tally.missing("h"), Vec::<u64>::new());
    assert_eq!(tally.reordered, 0);
    assert_eq!(tally.duplicates, 0);
}

/// Where the second record of a WAL segment starts: after the first one's 40-byte header and
/// its stored payload (`stored_len`, little-endian at bytes 24..28).
fn second_record_offset(segment: &[u8]) -> usize {
    let stored_len = u32::from_le_bytes(segment[24..28].try_into().expect("4 bytes"));
    40 + stored_len as usize
}

#[test]
fn flipped_bytes_in_the_wal_lose_exactly_the_corrupt_batch() {
    let cluster = cluster(1);
    let bootstrap = cluster.bootstrap_servers();
    cluster.broker_down(1).expect("broker down");
    let mut gw = Gateway::start_with(|c| {
        use_kafka(c, &bootstrap);
        c.pipeline.batch_max_records = 1000;
    });
    wait_for_brokers_down(&gw);
    const LINES: u64 = 20_000;
    send(gw.tcp(), "h", LINES, None).join().expect("sender");
    wait_until(LONG, "every line in the WAL", || {
        gw.kafka().spilled_records.get() == LINES
    });
    gw.stop();
    let wal_dir = gw.config.wal_dir();
    let stats = wal::stats_of(&wal_dir).expect("wal stats");
    assert_eq!(
        stats.pending_records, LINES,
        "a clean stop keeps the backlog"
    );

    // Flip 16 bytes inside the payload of the second batch.
    let segment = std::fs::read_dir(&wal_dir)
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).expect("segment");
    let at = second_record_offset(&bytes) + 40 + 100;
    for b in &mut bytes[at..at + 16] {
        *b ^= 0xA5;
    }
    std::fs::write(&segment, &bytes).expect("write back");

    cluster.broker_up(1).expect("broker up");
    gw.restart();
    let corrupt = gw.kafka().wal_corrupt_records.get() as u64;
    assert!(corrupt > 0, "the corrupt batch is reported");
    wait_until(LONG, "everything else delivered", || {
        gw.kafka().delivered_records.get() == LINES - corrupt
    });
    let (_, tally) = consume_all(&bootstrap, LINES, LINES - corrupt, LONG);
    assert_eq!(tally.distinct, LINES - corrupt);
    let missing = tally.missing("h");
    assert_eq!(missing.len() as u64, corrupt);
    // One batch from one connection: a contiguous run of lines.
    assert_eq!(missing.last().unwrap() - missing[0] + 1, corrupt);
    assert_eq!(tally.reordered, 0);
}

/// A gateway with a [`small_wal`] under `policy` producing to a one-broker cluster whose broker
/// is down (and seen down); the cluster and its bootstrap servers come with it.
fn small_wal_and_broker_down(
    policy: FullPolicy,
) -> (
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    String,
    Gateway,
) {
    let cluster = cluster(1);
    let bootstrap = cluster.bootstrap_servers();
    cluster.broker_down(1).expect("broker down");
    let gw = Gateway::start_with(|c| {
        use_kafka(c, &bootstrap);
        small_wal(c, policy);
    });
    wait_for_brokers_down(&gw);
    (cluster, bootstrap, gw)
}

fn small_wal(c: &mut logtail::config::Config, policy: FullPolicy) {
    c.sink.kafka.wal.max_segment_bytes = 64 * 1024;
    c.sink.kafka.wal.max_total_bytes = 256 * 1024;
    c.sink.kafka.wal.full_policy = policy;
    c.pipeline.ring_batches = 2;
    c.pipeline.batch_max_records = 500;
    // Small socket buffers, so that a held-back sender is seen to be held back (TCP autotuning
    // may otherwise give the connection tens of MiB and take every line in).
    for listener in &mut c.listen {
        listener.receive_buffer_bytes = Some(64 * 1024);
    }
}

#[test]
fn full_wal_with_block_slows_the_sender_and_loses_nothing_once_kafka_returns() {
    let (cluster, bootstrap, gw) = small_wal_and_broker_down(FullPolicy::Block);
    // Enough to overflow the WAL, the gateway's batches and both sockets' buffers (~4 MiB).
    const LINES: u64 = 200_000;
    let sender = send(gw.tcp(), "h", LINES, None);
    wait_until(LONG, "the WAL to fill", || gw.kafka().wal_full.get() > 0);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !sender.is_finished(),
        "the sender is held back; the gateway took {} lines, spilled {}",
        gw.listener_count("tcp", |l| l.received_lines.get()),
        gw.kafka().spilled_records.get()
    );
    assert!(gw.kafka().wal_disk_bytes.get() <= 256 * 1024);

    cluster.broker_up(1).expect("broker up");
    sender
        .join()
        .expect("the sender was slowed, never disconnected");
    wait_until(LONG, "everything delivered", || {
        gw.kafka().delivered_records.get() == LINES
    });
    let (_, tally) = consume_all(&bootstrap, LINES, LINES, LONG);
    assert_eq!(tally.distinct, LINES);
    assert_eq!(tally.reordered, 0);
    assert_eq!(gw.kafka().wal_dropped_records.get(), 0);
}

#[test]
fn full_wal_with_drop_oldest_counts_exactly_what_is_missing() {
    let (cluster, bootstrap, gw) = small_wal_and_broker_down(FullPolicy::DropOldest);
    const LINES: u64 = 100_000;
    send(gw.tcp(), "h", LINES, None)
        .join()
        .expect("never held back");
    wait_until(LONG, "every line spilled or dropped", || {
        gw.kafka().spilled_records.get() == LINES
    });
    cluster.broker_up(1).expect("broker up");
    wait_until(LONG, "the WAL emptied", || {
        let k = gw.kafka();
        k.wal_pending_records.get() == 0 && k.in_flight_records.get() == 0
    });
    let dropped = gw.kafka().wal_dropped_records.get() as u64;
    assert!(dropped > 0);
    assert_eq!(gw.kafka().delivered_records.get(), LINES - dropped);
    let (_, tally) = consume_all(&bootstrap, LINES, LINES - dropped, LONG);
    assert_eq!(
        tally.distinct,
        LINES - dropped,
        "the drop counter equals what is missing"
    );
    assert_eq!(tally.reordered, 0);
}

/// The config of a `logtail serve` child producing to `bootstrap`.
fn child_config(dir: &Path, bootstrap: &str) -> std::path::PathBuf {
    common::process::write_config(
        dir,
        &format!(
            "[sink]\ntype = \"kafka\"\n\
             [sink.kafka]\nbootstrap_servers = \"{bootstrap}\"\ntopic = \"{TOPIC}\"\nlinger_ms = 2\n\
             [sink.kafka.spill]\nmax_in_flight_records = 2000\n\
             [sink.kafka.wal]\nfsync = \"every_batch\"\n\
             [sink.kafka.librdkafka]\n\"reconnect.backoff.max.ms\" = \"200\"\n"
        ),
    )
}

#[test]
fn kill_9_while_replaying_then_restart_delivers_every_line() {
    let cluster = cluster(1);
    let bootstrap = cluster.bootstrap_servers();
    cluster.broker_down(1).expect("broker down");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = child_config(dir.path(), &bootstrap);
    let gateway = common::process::serve(&config);
    let metric = |g: &common::process::Served, name: &str| g.metric(name).unwrap_or(-1.0) as i64;
    wait_until(LONG, "the broker reported down", || {
        metric(&gateway, "logtail_kafka_brokers_down") == 1
    });
    const LINES: u64 = 60_000;
    let tcp: SocketAddr = gateway.tcp.as_deref().expect("tcp").parse().expect("addr");
    send(tcp, "h", LINES, None).join().expect("sender");
    wait_until(LONG, "every line in the WAL", || {
        metric(&gateway, "logtail_wal_spilled_records_total") == LINES as i64
    });

    // Slow replay down, so that the kill lands in the middle of it.
    cluster
        .broker_round_trip_time(1, Duration::from_millis(100))
        .expect("rtt");
    cluster.broker_up(1).expect("broker up");
    wait_until(LONG, "replay under way", || {
        metric(&gateway, "logtail_kafka_delivered_records_total") >= LINES as i64 / 5
    });
    let delivered_before = metric(&gateway, "logtail_kafka_delivered_records_total");
    gateway.kill_9();
    assert!(delivered_before < LINES as i64, "killed mid-replay");

    cluster
        .broker_round_trip_time(1, Duration::ZERO)
        .expect("rtt");
    let gateway = common::process::serve(&config);
    let (_, tally) = consume_all(&bootstrap, LINES, LINES, LONG);
    assert_eq!(tally.distinct, LINES, "every line arrives");
    assert_eq!(tally.missing("h"), Vec::<u64>::new());
    eprintln!(
        "kill -9 mid-replay: {} duplicates (delivered before the kill, acknowledged too late \
         for the ledger)",
        tally.duplicates
    );
    gateway.sigterm_and_wait();
}

#[test]
fn a_fatal_producer_error_restarts_the_producer_and_loses_nothing() {
    use rdkafka::types::RDKafkaRespErr;
    use rdkafka_sys::types::RDKafkaApiKey;
    let cluster = cluster(1);
    let bootstrap = cluster.bootstrap_servers();
    let gw = Gateway::start_with(|c| use_kafka(c, &bootstrap));
    send(gw.tcp(), "a", 1000, None).join().expect("sender");
    wait_until(LONG, "first deliveries", || {
        gw.kafka().delivered_records.get() == 1000
    });
    // For an idempotent producer, an out-of-order sequence reply means the broker lost
    // acknowledged records: librdkafka raises a fatal error.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    send(gw.tcp(), "b", 5000, None).join().expect("sender");
    wait_until(LONG, "everything delivered by a new producer", || {
        gw.kafka().producer_restarts.get() == 1
            && gw.kafka().wal_pending_records.get() == 0
            && gw.kafka().delivered_records.get() >= 6000
    });
    let (_, tally) = consume_all(&bootstrap, 5000, 6000, LONG);
    assert_eq!(tally.distinct, 6000);
    assert_eq!(tally.missing("b"), Vec::<u64>::new());
}
