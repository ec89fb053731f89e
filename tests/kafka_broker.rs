//! End to end against a real Kafka-compatible broker (tansu, see `common::tansu`): real
//! senders in, an rdkafka consumer reading back what arrived, exact counts.

use test_fixtures as common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Gateway;
use common::kafka::{TOPIC, consume_all, send, use_kafka, wait_until};
use common::tansu::{Tansu, binary_or_skip, free_port};
use test_support::proxy::Proxy;

const LONG: Duration = Duration::from_secs(120);

#[test]
fn tcp_and_logger_lines_all_reach_tansu_in_order_per_host() {
    let Some(binary) = binary_or_skip("tcp_and_logger_lines_all_reach_tansu") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let tansu = Tansu::start(&binary, dir.path());
    tansu.create_topic(&binary, TOPIC, 3);
    let bootstrap = tansu.address().to_string();
    let gw = Gateway::start_with(|c| use_kafka(c, &bootstrap));

    const HOSTS: u64 = 4;
    const PER_HOST: u64 = 25_000;
    let addr = gw.tcp();
    let senders: Vec<_> = (0..HOSTS)
        .map(|h| send(addr, &format!("host{h}"), PER_HOST, None))
        .collect();
    // util-linux logger, one message per stdin line, RFC 5425 octet counting over TCP.
    const LOGGER_LINES: u64 = 1000;
    let mut logger = Command::new("logger")
        .args([
            "-n",
            "127.0.0.1",
            "-P",
            &addr.port().to_string(),
            "-T",
            "--octet-count",
        ])
        .args(["--rfc5424", "-t", "app"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("logger runs (util-linux)");
    {
        let mut stdin = logger.stdin.take().expect("stdin");
        for i in 0..LOGGER_LINES {
            writeln!(stdin, "logger {i}").expect("logger stdin");
        }
    }
    assert!(logger.wait().expect("logger exits").success());
    for s in senders {
        s.join().expect("sender");
    }

    let total = HOSTS * PER_HOST + LOGGER_LINES;
    wait_until(LONG, "every line delivered", || {
        gw.kafka().delivered_records.get() == total
    });
    let (consumed, tally) = consume_all(&bootstrap, PER_HOST, total, LONG);
    assert_eq!(tally.distinct, total);
    assert_eq!(tally.duplicates, 0);
    assert_eq!(tally.reordered, 0, "each sender's lines in order");
    assert_eq!(consumed.len() as u64, total);
    let from_logger = consumed
        .iter()
        .filter(|m| m.message().starts_with("logger "))
        .count();
    assert_eq!(from_logger as u64, LOGGER_LINES);
}

#[test]
fn network_outage_to_tansu_mid_stream_loses_nothing() {
    let Some(binary) = binary_or_skip("network_outage_to_tansu_mid_stream_loses_nothing") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // Clients reach the broker only through the proxy (it is the advertised address).
    let proxy_port = free_port();
    let tansu = Tansu::start_advertising(&binary, dir.path(), Some(proxy_port));
    tansu.create_topic(&binary, TOPIC, 2);
    let mut proxy = Proxy::start(proxy_port, tansu.address()).expect("proxy port");
    let bootstrap = format!("127.0.0.1:{proxy_port}");
    let gw = Gateway::start_with(|c| use_kafka(c, &bootstrap));

    const LINES: u64 = 60_000;
    let addr = gw.tcp();
    let sender = send(addr, "h", LINES, Some((1000, Duration::from_millis(20))));
    wait_until(LONG, "some deliveries", || {
        gw.kafka().delivered_records.get() >= 10_000
    });
    proxy.cut();
    wait_until(LONG, "spill while the broker is unreachable", || {
        gw.kafka().spilled_records.get() > 0
    });
    std::thread::sleep(Duration::from_secs(2));
    proxy.restore(None).expect("proxy port again");
    sender.join().expect("sender");
    wait_until(LONG, "every line delivered", || {
        gw.kafka().delivered_records.get() >= LINES && gw.kafka().wal_pending_records.get() == 0
    });
    let (_, tally) = consume_all(&bootstrap, LINES, LINES, LONG);
    assert_eq!(tally.distinct, LINES);
    assert_eq!(tally.missing("h"), Vec::<u64>::new());
    assert_eq!(tally.reordered, 0, "order holds through the outage");
    eprintln!(
        "network outage: {} duplicates, {} spilled",
        tally.duplicates,
        gw.kafka().spilled_records.get()
    );
}
