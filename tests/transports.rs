//! Every transport end to end with real sockets: what is sent is what is stored, exactly.

use test_fixtures as common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Duration;

use common::{Gateway, messages};

/// A realistic line of sender `sender`, number `seq`: RFC 5424 with structured data for even
/// senders, RFC 3164 for odd ones.
fn line(sender: usize, seq: usize) -> String {
    if sender.is_multiple_of(2) {
        format!(
            "<165>1 2026-11-21T10:00:00.123456+01:00 host{sender} app{sender} 42 ID7 [meta seq=\"{seq}\" sender=\"{sender}\"] s{sender} n{seq} payload"
        )
    } else {
        format!("<38>Nov 21 10:00:00 host{sender} app{sender}[42]: s{sender} n{seq} payload")
    }
}

/// The records whose `host` is `host`, in store order.
fn from_host(records: &[serde_json::Value], host: &str) -> Vec<serde_json::Value> {
    records
        .iter()
        .filter(|r| r["host"] == host)
        .cloned()
        .collect()
}

/// Checks that `records` hold `per_sender` lines of each of `senders` senders, each sender's in
/// order, none twice.
fn assert_all_in_order(records: &[serde_json::Value], senders: usize, per_sender: usize) {
    assert_eq!(records.len(), senders * per_sender, "record count");
    let mut next: HashMap<usize, usize> = HashMap::new();
    for message in messages(records) {
        let mut words = message.split(' ');
        let sender: usize = words.next().unwrap()[1..].parse().unwrap();
        let seq: usize = words.next().unwrap()[1..].parse().unwrap();
        let expected = next.entry(sender).or_insert(0);
        assert_eq!(seq, *expected, "sender {sender} out of order");
        *expected += 1;
    }
    assert_eq!(next.len(), senders);
    assert!(next.values().all(|&n| n == per_sender));
}

#[test]
fn tcp_lines_from_many_connections_are_all_stored_in_order() {
    let mut gw = Gateway::start();
    let addr = gw.tcp();
    let senders: Vec<_> = (0..8)
        .map(|sender| {
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(addr).unwrap();
                let mut buf = String::new();
                for seq in 0..5_000 {
                    let l = line(sender, seq);
                    // Senders 0–3 use octet counting, 4–7 newlines.
                    if sender < 4 {
                        buf.push_str(&format!("{} {l}", l.len()));
                    } else {
                        buf.push_str(&l);
                        buf.push('\n');
                    }
                }
                conn.write_all(buf.as_bytes()).unwrap();
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    gw.wait_for_records(40_000);
    let records = gw.stop_and_read();
    assert_all_in_order(&records, 8, 5_000);
    assert_eq!(gw_count(&records, "parse_error"), 0);
}

fn gw_count(records: &[serde_json::Value], key: &str) -> usize {
    records.iter().filter(|r| r.get(key).is_some()).count()
}

#[test]
fn rfc5424_fields_are_stored_exactly() {
    let mut gw = Gateway::start();
    let mut conn = TcpStream::connect(gw.tcp()).unwrap();
    conn.write_all(
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"] \xEF\xBB\xBFAn application event log entry...\n",
    )
    .unwrap();
    drop(conn);
    gw.wait_for_records(1);
    let records = gw.stop_and_read();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["facility"], 20);
    assert_eq!(r["severity"], 5);
    assert_eq!(r["version"], 1);
    assert_eq!(r["timestamp"], "2003-10-11T22:14:15.003Z");
    assert_eq!(r["host"], "mymachine.example.com");
    assert_eq!(r["app"], "evntslog");
    assert!(r.get("procid").is_none());
    assert_eq!(r["msgid"], "ID47");
    assert_eq!(
        r["structured_data"],
        serde_json::json!({
            "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
            "examplePriority@32473": {"class": "high"}
        })
    );
    assert_eq!(r["message"], "An application event log entry...");
    assert!(r["source"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(r["received_at"].as_str().unwrap().ends_with('Z'));
    assert!(r.get("parse_error").is_none());
}

#[test]
fn udp_datagrams_are_stored_one_record_each() {
    let mut gw = Gateway::start();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let source = socket.local_addr().unwrap().to_string();
    for seq in 0..2_000 {
        // Trailing newlines, as many senders add, are stripped.
        socket
            .send_to(format!("{}\n", line(1, seq)).as_bytes(), gw.udp())
            .unwrap();
        if seq % 200 == 199 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    gw.wait_for_records(2_000);
    let records = gw.stop_and_read();
    assert_all_in_order(&records, 1, 2_000);
    assert!(records.iter().all(|r| r["source"] == source.as_str()));
    assert_eq!(records[0]["host"], "host1");
    assert_eq!(records[0]["app"], "app1");
    assert_eq!(records[0]["procid"], "42");
    assert_eq!(records[0]["severity"], 6);
    assert_eq!(records[0]["facility"], 4);
}

#[test]
fn unix_datagram_and_stream_sockets_store_with_the_socket_path_as_source() {
    let mut gw = Gateway::start();
    let datagram = UnixDatagram::unbound().unwrap();
    for seq in 0..500 {
        datagram
            .send_to(line(1, seq).as_bytes(), gw.unix_datagram())
            .unwrap();
    }
    let mut stream = UnixStream::connect(gw.unix_stream()).unwrap();
    for seq in 0..500 {
        stream
            .write_all(format!("{}\n", line(3, seq)).as_bytes())
            .unwrap();
    }
    drop(stream);
    gw.wait_for_records(1_000);
    let datagram_path = gw.unix_datagram().display().to_string();
    let stream_path = gw.unix_stream().display().to_string();
    let records = gw.stop_and_read();
    assert_all_in_order(&records, 2, 500);
    let from = |path: &str| records.iter().filter(|r| r["source"] == path).count();
    assert_eq!(from(&datagram_path), 500);
    assert_eq!(from(&stream_path), 500);
}

#[test]
fn raw_encoding_stores_the_bytes_as_received() {
    let mut gw = Gateway::start_with(|c| c.sink.encoding = logtail::encode::Encoding::Raw);
    let mut conn = TcpStream::connect(gw.tcp()).unwrap();
    conn.write_all(b"<13>Nov 21 10:00:00 h a: caf\xc3\xa9 \xff\n")
        .unwrap();
    drop(conn);
    gw.wait_for_records(1);
    gw.stop();
    let mut out = Vec::new();
    let options = logtail::store::ReadOptions {
        since_us: None,
        grep: None,
        follow: false,
    };
    logtail::store::read(
        &gw.config.store_dir(),
        &options,
        &mut out,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(out, b"<13>Nov 21 10:00:00 h a: caf\xc3\xa9 \xff\n");
}

#[test]
fn clean_shutdown_keeps_every_line_already_sent() {
    let mut gw = Gateway::start_with(|c| c.pipeline.batch_max_age = Duration::from_secs(10));
    let mut conn = TcpStream::connect(gw.tcp()).unwrap();
    let mut buf = String::new();
    for seq in 0..20_000 {
        buf.push_str(&line(5, seq));
        buf.push('\n');
    }
    // The last line has no newline: a partial line at the end of a connection is kept too.
    buf.push_str(&line(5, 20_000));
    conn.write_all(buf.as_bytes()).unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for seq in 0..100 {
        udp.send_to(line(7, seq).as_bytes(), gw.udp()).unwrap();
    }
    // No waiting for the sink: the batch age is 10 s, so all of this is still in the shards.
    std::thread::sleep(Duration::from_millis(200));
    let records = gw.stop_and_read();
    drop(conn);
    assert_eq!(records.len(), 20_101);
    assert_all_in_order(&from_host(&records, "host5"), 1, 20_001);
}

#[test]
fn metrics_endpoint_serves_the_counts() {
    let gw = Gateway::start();
    let mut conn = TcpStream::connect(gw.tcp()).unwrap();
    conn.write_all(b"<13>one\n<13>two\nbad\xff\n").unwrap();
    drop(conn);
    gw.wait_for_records(3);
    let addr = gw.server().metrics_address().unwrap();
    let mut http = TcpStream::connect(addr).unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    std::io::Read::read_to_string(&mut http, &mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    for line in [
        "logtail_received_lines_total{listener=\"tcp\",transport=\"tcp\"} 3",
        "logtail_received_lines_total{listener=\"udp\",transport=\"udp\"} 0",
        "logtail_sink_records_total{sink=\"store\"} 3",
        "logtail_connections_total{listener=\"tcp\",transport=\"tcp\"} 1",
    ] {
        assert!(
            response.lines().any(|l| l == line),
            "missing {line:?} in\n{response}"
        );
    }
}

#[test]
fn tiny_ring_backpressure_loses_no_tcp_line_and_counts_every_udp_drop() {
    let mut gw = Gateway::start_with(|c| {
        c.pipeline.ring_batches = 1;
        c.pipeline.batch_max_records = 1;
        c.sink.store.fsync_interval = Duration::ZERO; // a slow sink: one fsync per record
    });
    let tcp = gw.tcp();
    let udp_addr = gw.udp();
    let sender = std::thread::spawn(move || {
        let mut conn = TcpStream::connect(tcp).unwrap();
        for seq in 0..2_000 {
            conn.write_all(format!("{}\n", line(2, seq)).as_bytes())
                .unwrap();
        }
    });
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for seq in 0..2_000 {
        udp.send_to(line(3, seq).as_bytes(), udp_addr).unwrap();
    }
    sender.join().unwrap();
    gw.wait_for_records(2_000);
    let udp_received = gw.listener_count("udp", |m| m.received_lines.get());
    let udp_dropped = gw.listener_count("udp", |m| m.dropped_ring_full.get());
    let records = gw.stop_and_read();
    assert_all_in_order(&from_host(&records, "host2"), 1, 2_000);
    let udp_stored = from_host(&records, "host3").len() as u64;
    // Every datagram the gateway read is either stored or counted as dropped.
    assert_eq!(udp_stored + udp_dropped, udp_received);
}
