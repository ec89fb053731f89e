//! The gateway's agent listener over real sockets: acknowledgements only for what is stored,
//! and bad input (garbage, lying lengths, broken batches, out-of-order sequence numbers, slow
//! and numerous clients) that never stalls others or loses good data.

use test_fixtures as common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use logtail::agent_protocol::{self as protocol, BatchEncoder, Kind};

/// A client of the agent listener, written against the documented wire format.
struct Client {
    stream: TcpStream,
}

impl Client {
    /// Connects and exchanges HELLOs.
    fn connect(address: SocketAddr) -> Client {
        let mut client = Client::raw(address);
        let mut hello = Vec::new();
        protocol::agent_hello("testhost", &mut hello);
        client.send(&hello);
        let (kind, body) = client.read();
        assert_eq!(kind, Kind::Hello);
        protocol::parse_hello(&body).expect("a valid HELLO");
        client
    }

    /// Connects without a HELLO.
    fn raw(address: SocketAddr) -> Client {
        let stream = TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        Client { stream }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends BATCH `seq` with `messages`.
    fn batch(&mut self, seq: u64, messages: &[String]) {
        self.send(&batch_frame(seq, messages));
    }

    fn read(&mut self) -> (Kind, Vec<u8>) {
        let mut body = Vec::new();
        let kind = protocol::read_frame(&mut self.stream, &mut body).expect("a frame");
        (kind, body)
    }

    /// Reads ACKs until `seq` is acknowledged; panics on anything else.
    fn wait_for_ack(&mut self, seq: u64) {
        loop {
            let (kind, body) = self.read();
            assert_eq!(
                kind,
                Kind::Ack,
                "got {kind:?}: {}",
                String::from_utf8_lossy(&body)
            );
            let acked = protocol::parse_ack(&body).expect("8 bytes");
            assert!(acked <= seq, "acknowledged {acked}, beyond {seq}");
            if acked == seq {
                return;
            }
        }
    }

    /// Reads the ERROR frame the gateway sends before closing (after ACKs, if any); returns its
    /// reason.
    fn expect_error_and_close(&mut self) -> String {
        let (kind, body) = loop {
            let (kind, body) = self.read();
            if kind != Kind::Ack {
                break (kind, body);
            }
        };
        assert_eq!(kind, Kind::Error);
        let mut rest = Vec::new();
        let n = self.stream.read_to_end(&mut rest).expect("closed");
        assert_eq!(n, 0, "nothing after ERROR");
        String::from_utf8(body).expect("UTF-8 reason")
    }
}

fn batch_frame(seq: u64, messages: &[String]) -> Vec<u8> {
    let mut encoder = BatchEncoder::default();
    for message in messages {
        encoder.message(|out| out.extend_from_slice(message.as_bytes()));
    }
    let mut frame = Vec::new();
    encoder.finish(seq, &mut frame);
    frame
}

/// `count` RFC 5424 messages `<tag>-<n>`, from `first` on.
fn messages(tag: &str, first: usize, count: usize) -> Vec<String> {
    (first..first + count)
        .map(|n| format!("<14>1 2026-11-21T00:00:00Z testhost app - - - {tag}-{n}"))
        .collect()
}

fn framing_errors(gateway: &common::Gateway) -> u64 {
    gateway.listener_count("agent", |m| m.framing_errors.get())
}

#[test]
fn batches_are_stored_in_order_and_acknowledged_once_stored() {
    let mut gateway = common::Gateway::start();
    let mut client = Client::connect(gateway.agent());
    for seq in 1..=5u64 {
        client.batch(seq, &messages("a", (seq as usize - 1) * 1000, 1000));
    }
    client.wait_for_ack(5);
    // Acknowledged means stored: the store already holds all of it (no flush needed).
    let stored = common::read_store(&gateway.config.store_dir());
    assert_eq!(stored.len(), 5000);
    drop(client);
    let records = gateway.stop_and_read();
    let expected: Vec<String> = messages("a", 0, 5000)
        .iter()
        .map(|m| m.rsplit(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(common::messages(&records), expected);
    assert_eq!(records[0]["host"], "testhost");
}

#[test]
fn garbage_instead_of_hello_gets_an_error_and_others_are_not_disturbed() {
    let mut gateway = common::Gateway::start();
    let mut good = Client::connect(gateway.agent());
    let mut garbage = Client::raw(gateway.agent());
    garbage.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let reason = garbage.expect_error_and_close();
    assert!(reason.contains("frame length"), "{reason}");
    good.batch(1, &messages("g", 0, 10));
    good.wait_for_ack(1);
    assert_eq!(framing_errors(&gateway), 1);
    drop(good);
    assert_eq!(gateway.stop_and_read().len(), 10);
}

#[test]
fn broken_batches_are_refused_whole_and_named() {
    let mut gateway = common::Gateway::start();
    let good = batch_frame(1, &messages("b", 0, 100));
    let header = protocol::FRAME_HEADER_LEN;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a lying frame length",
            vec![0xff, 0xff, 0xff, 0xff, 2],
            "frame length",
        ),
        (
            "an unknown kind",
            vec![0, 0, 0, 1, 77],
            "unknown frame kind 77",
        ),
        (
            "an ACK from the agent",
            {
                let mut f = Vec::new();
                protocol::ack(1, &mut f);
                f
            },
            "expected a Batch frame",
        ),
        (
            "a lying raw_len",
            {
                let mut f = good.clone();
                f[header + 15] ^= 0x40;
                f
            },
            "does not decompress",
        ),
        (
            "a lying message count",
            {
                let mut f = good.clone();
                f[header + 11] = 99;
                f
            },
            "message_count",
        ),
        (
            "a damaged byte",
            {
                // The last bytes of an lz4 block are literals: it still decompresses.
                let mut f = good.clone();
                let at = f.len() - 2;
                f[at] ^= 0x20;
                f
            },
            "CRC-32C mismatch",
        ),
        (
            "a batch over max_batch_bytes",
            batch_frame(1, &["x".repeat(17 << 20)]),
            "exceeds the limit",
        ),
    ];
    for (what, frame, expected) in &cases {
        let mut client = Client::connect(gateway.agent());
        client.batch(1, &messages("ok", 0, 3));
        client.wait_for_ack(1);
        client.send(frame);
        let reason = client.expect_error_and_close();
        assert!(reason.contains(expected), "{what}: {reason}");
    }
    assert_eq!(framing_errors(&gateway), cases.len() as u64);
    // Every good batch before the bad frames is there, nothing of the bad ones.
    let records = gateway.stop_and_read();
    assert_eq!(records.len(), 3 * cases.len());
    assert!(
        common::messages(&records)
            .iter()
            .all(|m| m.starts_with("ok-"))
    );
}

#[test]
fn a_sequence_number_that_does_not_increase_is_an_error() {
    let mut gateway = common::Gateway::start();
    let mut client = Client::connect(gateway.agent());
    client.batch(7, &messages("s", 0, 5));
    client.batch(7, &messages("s", 5, 5));
    let reason = client.expect_error_and_close();
    assert_eq!(reason, "batch seq 7 does not follow 7");
    // Batch 7 was taken in (and is stored); the repeated one was not.
    assert_eq!(gateway.stop_and_read().len(), 5);
}

#[test]
fn a_stalled_client_holds_up_no_one() {
    let mut gateway = common::Gateway::start();
    let mut stalled = Client::connect(gateway.agent());
    let frame = batch_frame(1, &messages("stalled", 0, 1000));
    // Half a frame, then nothing.
    stalled.send(&frame[..frame.len() / 2]);
    let mut clients: Vec<Client> = (0..20).map(|_| Client::connect(gateway.agent())).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.batch(1, &messages(&format!("c{i}"), 0, 500));
    }
    for client in &mut clients {
        client.wait_for_ack(1);
    }
    drop(clients);
    drop(stalled);
    let records = gateway.stop_and_read();
    assert_eq!(
        records.len(),
        20 * 500,
        "every complete batch, none of the half one"
    );
}

#[test]
fn two_thousand_agents_at_once_are_each_acknowledged() {
    // Client and server ends of every connection live in this process.
    let limit = logtail::runtime::raise_open_files_limit(5000);
    assert!(
        limit >= 5000,
        "open files limit {limit}: raise the hard limit to 5000"
    );
    let mut gateway = common::Gateway::start();
    const AGENTS: usize = 2000;
    let mut clients: Vec<Client> = (0..AGENTS)
        .map(|_| Client::connect(gateway.agent()))
        .collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.batch(1, &messages(&format!("c{i}"), 0, 5));
    }
    for client in &mut clients {
        client.wait_for_ack(1);
    }
    drop(clients);
    assert_eq!(gateway.stop_and_read().len(), AGENTS * 5);
}

/// Batch `seq` (from 1) of 1000 lines of sender `a`, numbered on from earlier batches.
fn kafka_batch(seq: u64) -> Vec<String> {
    ((seq - 1) * 1000..seq * 1000)
        .map(|n| {
            common::kafka::line("testhost", "a", n)
                .trim_end()
                .to_string()
        })
        .collect()
}

#[test]
fn through_kafka_an_acknowledgement_means_delivered_or_in_the_wal() {
    use common::kafka::{cluster, consume_all, use_kafka, wait_until};
    let cluster = cluster(1);
    let bootstrap = cluster.bootstrap_servers();
    let gateway = common::Gateway::start_with(|c| use_kafka(c, &bootstrap));
    let kafka = || gateway.kafka();
    let mut client = Client::connect(gateway.agent());
    // Healthy broker: acknowledged once Kafka acknowledged every record.
    for seq in 1..=10 {
        client.batch(seq, &kafka_batch(seq));
    }
    client.wait_for_ack(10);
    assert_eq!(kafka().delivered_records.get(), 10_000);
    assert_eq!(kafka().spilled_records.get(), 0);

    // Broker down: acknowledged once in the WAL.
    cluster.broker_down(1).expect("broker down");
    wait_until(Duration::from_secs(60), "the broker reported down", || {
        kafka().brokers_down.get() == 1
    });
    for seq in 11..=20 {
        client.batch(seq, &kafka_batch(seq));
    }
    client.wait_for_ack(20);
    let (delivered, spilled) = (
        kafka().delivered_records.get(),
        kafka().spilled_records.get(),
    );
    assert!(
        delivered + spilled >= 20_000,
        "acknowledged 20k lines with {delivered} delivered and {spilled} in the WAL"
    );
    cluster.broker_up(1).expect("broker up");
    let (_, tally) = consume_all(&bootstrap, 20_000, 20_000, Duration::from_secs(90));
    assert_eq!(tally.missing("a"), Vec::<u64>::new());
    assert_eq!(tally.reordered, 0);
    assert_eq!(tally.duplicates, 0);
}
