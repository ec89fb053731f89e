//! Real senders: util-linux `logger` over UDP, TCP (newline and octet counting), and both Unix
//! sockets, in RFC 3164 and RFC 5424. Each test checks the exact fields stored.

use test_fixtures as common;

use std::process::Command;

use common::Gateway;
use serde_json::Value;

/// Runs `logger` with `args` and `message` from stdin (one line per message), asserting success.
fn logger(args: &[&str], lines: &[String]) {
    let mut child = Command::new("logger")
        .args(args)
        .args(["-t", "lt-test", "-i"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux logger is installed (Debian package bsdutils)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for line in lines {
            writeln!(stdin, "{line}").unwrap();
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "logger {args:?} failed");
}

fn lines(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag} line {i}")).collect()
}

/// Checks the records are exactly `expected` messages from `logger`, with its tag and a pid.
fn assert_logger_records(records: &[Value], expected: &[String], rfc5424: bool) {
    let got: Vec<&str> = records
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert_eq!(got, expected.iter().map(String::as_str).collect::<Vec<_>>());
    for r in records {
        assert_eq!(r["app"], "lt-test", "{r}");
        assert!(r["procid"].as_str().unwrap().parse::<u32>().is_ok(), "{r}");
        assert_eq!(r["facility"], 1, "{r}");
        assert_eq!(r["severity"], 5, "{r}");
        assert!(r["timestamp"].is_string(), "{r}");
        assert!(r.get("parse_error").is_none(), "{r}");
        if rfc5424 {
            assert_eq!(r["version"], 1, "{r}");
        } else {
            assert!(r.get("version").is_none(), "{r}");
        }
    }
}

#[test]
fn logger_over_udp_rfc5424_and_rfc3164() {
    let mut gw = Gateway::start();
    let port = gw.udp().port().to_string();
    let a = lines("udp5424", 50);
    logger(
        &[
            "-n",
            "127.0.0.1",
            "-P",
            &port,
            "-d",
            "--rfc5424",
            "--msgid",
            "M1",
        ],
        &a,
    );
    gw.wait_for_records(50);
    let b = lines("udp3164", 50);
    logger(&["-n", "127.0.0.1", "-P", &port, "-d", "--rfc3164"], &b);
    gw.wait_for_records(100);
    let records = gw.stop_and_read();
    assert_logger_records(&records[..50], &a, true);
    assert!(records[..50].iter().all(|r| r["msgid"] == "M1"));
    assert_logger_records(&records[50..], &b, false);
    let host = records[0]["host"].as_str().unwrap();
    assert!(!host.is_empty());
    assert!(records.iter().all(|r| r["host"] == host));
}

#[test]
fn logger_over_tcp_with_newlines_and_octet_counting() {
    let mut gw = Gateway::start();
    let port = gw.tcp().port().to_string();
    let a = lines("tcp-newline", 200);
    logger(&["-n", "127.0.0.1", "-P", &port, "-T", "--rfc5424"], &a);
    gw.wait_for_records(200);
    let b = lines("tcp-octet", 200);
    logger(
        &[
            "-n",
            "127.0.0.1",
            "-P",
            &port,
            "-T",
            "--octet-count",
            "--rfc5424",
            "--sd-id",
            "origin@32473",
            "--sd-param",
            "app=\"x\\\"y\"",
        ],
        &b,
    );
    gw.wait_for_records(400);
    let records = gw.stop_and_read();
    assert_logger_records(&records[..200], &a, true);
    assert_logger_records(&records[200..], &b, true);
    assert_eq!(
        records[200]["structured_data"]["origin@32473"]["app"],
        "x\"y"
    );
}

#[test]
fn logger_over_unix_sockets_like_dev_log() {
    let mut gw = Gateway::start();
    let datagram = gw.unix_datagram().display().to_string();
    let stream = gw.unix_stream().display().to_string();
    let a = lines("unix-dgram", 100);
    logger(&["-u", &datagram, "-d"], &a);
    gw.wait_for_records(100);
    let b = lines("unix-stream", 100);
    logger(&["-u", &stream, "-T"], &b);
    gw.wait_for_records(200);
    // A local sender that does name a host keeps it.
    {
        use std::io::Write;
        let mut sender = std::os::unix::net::UnixStream::connect(&stream).unwrap();
        sender
            .write_all(b"<13>Nov 21 02:53:47 other-host app: named\n")
            .unwrap();
    }
    gw.wait_for_records(201);
    let records = gw.stop_and_read();
    // Local logger writes RFC 3164 without a hostname: the gateway's host name fills it in
    // (issue 14), as rsyslog and syslog-ng do for /dev/log.
    assert_logger_records(&records[..100], &a, false);
    assert_logger_records(&records[100..200], &b, false);
    let gateway_host = logtail::runtime::machine_host_name();
    assert!(
        records[..200]
            .iter()
            .all(|r| r["host"] == gateway_host.as_str()),
        "{}",
        records[0]
    );
    assert_eq!(
        (&records[200]["host"], &records[200]["message"]),
        (&Value::from("other-host"), &Value::from("named"))
    );
    let records = &records[..200];
    assert!(
        records[..100]
            .iter()
            .all(|r| r["source"] == datagram.as_str())
    );
    assert!(
        records[100..]
            .iter()
            .all(|r| r["source"] == stream.as_str())
    );
}
