//! Bad input from the network: it is counted and survived, and never costs good data or other
//! connections.

use test_fixtures as common;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{Gateway, messages};
use proptest::prelude::*;

fn send_lines(addr: std::net::SocketAddr, prefix: &str, count: usize) {
    let mut conn = TcpStream::connect(addr).unwrap();
    let mut buf = String::new();
    for i in 0..count {
        buf.push_str(&format!("<13>Nov 21 10:00:00 good app: {prefix} {i}\n"));
    }
    conn.write_all(buf.as_bytes()).unwrap();
}

#[test]
fn garbage_connection_does_not_cost_good_lines() {
    let mut gw = Gateway::start();
    let addr = gw.tcp();
    let garbage = std::thread::spawn(move || {
        let mut conn = TcpStream::connect(addr).unwrap();
        let mut rng = 0x2545F4914F6CDD1Du64;
        let mut bytes = vec![0u8; 1 << 20];
        for b in bytes.iter_mut() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            *b = rng as u8;
        }
        conn.write_all(&bytes).unwrap();
    });
    send_lines(addr, "good", 10_000);
    garbage.join().unwrap();
    let records = gw.stop_and_read();
    let good = messages(&records)
        .into_iter()
        .filter(|m| m.starts_with("good "))
        .collect::<Vec<_>>();
    assert_eq!(good.len(), 10_000);
    for (i, m) in good.iter().enumerate() {
        assert_eq!(m, &format!("good {i}"));
    }
    // Every garbage byte is in some record: nothing is silently dropped (framing bytes aside).
    assert!(records.len() > 10_000);
}

#[test]
fn one_mib_line_is_truncated_and_the_connection_goes_on() {
    let mut gw = Gateway::start();
    let mut conn = TcpStream::connect(gw.tcp()).unwrap();
    let mut huge = b"<13>Nov 21 10:00:00 host app: ".to_vec();
    huge.resize(1 << 20, b'x');
    huge.push(b'\n');
    conn.write_all(&huge).unwrap();
    conn.write_all(b"<13>Nov 21 10:00:00 host app: after\n")
        .unwrap();
    drop(conn);
    gw.wait_for_records(2);
    assert_eq!(gw.listener_count("tcp", |m| m.truncated.get()), 1);
    let records = gw.stop_and_read();
    assert_eq!(records.len(), 2);
    let first = records[0]["message"].as_str().unwrap();
    assert_eq!(first.len(), 65536 - "<13>Nov 21 10:00:00 host app: ".len());
    assert!(first.bytes().all(|b| b == b'x'));
    assert_eq!(records[1]["message"], "after");
}

#[test]
fn oversize_drop_policy_drops_and_counts() {
    let mut gw = Gateway::start_with(|c| {
        c.ingest.oversize = logtail::source::framing::OversizePolicy::Drop;
        c.ingest.max_message_bytes = 1024;
    });
    let mut conn = TcpStream::connect(gw.tcp()).unwrap();
    conn.write_all(&[b'y'; 5000]).unwrap();
    conn.write_all(b"\n<13>kept\n").unwrap();
    drop(conn);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(&[b'z'; 2000], gw.udp()).unwrap();
    udp.send_to(b"<13>kept too", gw.udp()).unwrap();
    gw.wait_for_records(2);
    assert_eq!(gw.listener_count("tcp", |m| m.dropped_oversize.get()), 1);
    assert_eq!(gw.listener_count("udp", |m| m.dropped_oversize.get()), 1);
    let records = gw.stop_and_read();
    let mut got = messages(&records);
    got.sort();
    assert_eq!(got, ["kept", "kept too"]);
}

#[test]
fn lying_octet_counts_cost_at_most_their_own_frame() {
    let mut gw = Gateway::start();
    let mut conn = TcpStream::connect(gw.tcp()).unwrap();
    // Far beyond what we trust: read as a line instead.
    conn.write_all(b"99999999999 <13>liar\n").unwrap();
    // Too short: the rest of the message becomes a record of its own, nothing is lost.
    conn.write_all(b"5 <13>short\n").unwrap();
    conn.write_all(b"10 <13>honest").unwrap();
    drop(conn);
    gw.wait_for_records(4);
    assert_eq!(gw.listener_count("tcp", |m| m.framing_errors.get()), 1);
    let records = gw.stop_and_read();
    assert_eq!(
        records
            .iter()
            .map(|r| r["message"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["99999999999 <13>liar", "s", "hort", "honest"]
    );
}

#[test]
fn a_thousand_concurrent_connections_are_all_served() {
    let mut gw = Gateway::start();
    let addr = gw.tcp();
    let mut conns: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.write_all(format!("<13>Nov 21 10:00:00 h app: conn {i}\n").as_bytes())
            .unwrap();
    }
    gw.wait_for_records(1000);
    assert_eq!(gw.listener_count("tcp", |m| m.connections.get()), 1000);
    drop(conns);
    let records = gw.stop_and_read();
    let mut got: Vec<usize> = messages(&records)
        .iter()
        .map(|m| m.strip_prefix("conn ").unwrap().parse().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
}

#[test]
fn stalled_half_line_does_not_stall_others_and_is_kept_at_shutdown() {
    let mut gw = Gateway::start();
    let mut stalled = TcpStream::connect(gw.tcp()).unwrap();
    stalled
        .write_all(b"<13>Nov 21 10:00:00 h app: half a li")
        .unwrap();
    let started = Instant::now();
    send_lines(gw.tcp(), "busy", 5_000);
    gw.wait_for_records(5_000);
    assert!(started.elapsed() < Duration::from_secs(10));
    let records = gw.stop_and_read();
    drop(stalled);
    assert_eq!(records.len(), 5_001);
    assert_eq!(
        records
            .iter()
            .filter(|r| r["message"] == "half a li")
            .count(),
        1
    );
}

#[test]
fn connections_over_the_limit_are_refused_and_counted() {
    let mut gw = Gateway::start_with(|c| c.listen[1].max_connections = 3);
    let open: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(gw.tcp()).unwrap())
        .collect();
    // Let the gateway accept those three before the fourth arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.listener_count("tcp", |m| m.connections.get()) < 3 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut extra = TcpStream::connect(gw.tcp()).unwrap();
    let _ = extra.write_all(b"<13>refused\n");
    let mut buf = [0u8; 1];
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The gateway closes it: EOF (or a reset).
    assert!(matches!(
        std::io::Read::read(&mut extra, &mut buf),
        Ok(0) | Err(_)
    ));
    assert_eq!(
        gw.listener_count("tcp", |m| m.connections_rejected.get()),
        1
    );
    drop(open);
    let records = gw.stop_and_read();
    assert!(records.is_empty());
}

#[test]
fn idle_connections_are_closed_after_the_timeout_keeping_their_partial_line() {
    let mut gw = Gateway::start_with(|c| c.listen[1].idle_timeout = Some(Duration::from_secs(1)));
    let mut conn = TcpStream::connect(gw.tcp()).unwrap();
    conn.write_all(b"<13>Nov 21 10:00:00 h app: partial")
        .unwrap();
    gw.wait_for_records(1);
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert!(matches!(std::io::Read::read(&mut conn, &mut buf), Ok(0)));
    let records = gw.stop_and_read();
    assert_eq!(messages(&records), ["partial"]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_take_down_the_gateway(garbage in proptest::collection::vec(any::<u8>(), 0..20_000)) {
        let mut gw = Gateway::start();
        let metrics = gw.server().metrics().clone();
        let mut conn = TcpStream::connect(gw.tcp()).unwrap();
        conn.write_all(&garbage).unwrap();
        drop(conn);
        UdpSocket::bind("127.0.0.1:0").unwrap().send_to(&garbage[..garbage.len().min(60_000)], gw.udp()).unwrap();
        send_lines(gw.tcp(), "after", 10);
        let records = gw.stop_and_read();
        let after = messages(&records).into_iter().filter(|m| m.starts_with("after ")).count();
        // Where the lines went, should they be missing: accepted? received? written?
        let tcp = metrics.listener("tcp").unwrap();
        prop_assert_eq!(
            after,
            10,
            "tcp: {} connections, {} lines received; sink: {} records written; store: {} read",
            tcp.connections.get(),
            tcp.received_lines.get(),
            metrics.sink.records.get(),
            records.len()
        );
    }
}
