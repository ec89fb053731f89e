//! `logtail agent` to an authenticated agent listener: over TLS with a valid, a missing, a
//! wrong (another CA), an expired certificate, and one for another host; and with tokens.
//! Exact counts: what is refused is counted by reason and nothing of it is stored. And a
//! forged `[logtail@32473 topic=...]` element steers no route: only an authenticated agent's does.

use test_fixtures as common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::agent::{AgentDir, append, numbered, write_numbered};
use common::pki::{CertFiles, Pki};
use common::{Gateway, messages};
use logtail::config::{ListenerConfig, ListenerKind};
use logtail::metrics::PeerRefusal;
use logtail::source::tls::{ClientAuth, TlsConfig, TlsVersion};

const LISTENER: &str = "agent-auth";

/// A gateway with an agent listener named [`LISTENER`]: TLS requiring certificates of `pki`
/// when `pki` is given, and `tokens_file` when given.
fn gateway(pki: Option<&Pki>, tokens_file: Option<PathBuf>) -> Gateway {
    let tls = pki.map(|pki| {
        let server = pki.server("gateway");
        TlsConfig {
            cert_file: server.cert,
            key_file: server.key,
            ca_file: Some(pki.ca_file()),
            client_auth: ClientAuth::Required,
            allowed_peers: Vec::new(),
            min_version: TlsVersion::Tls13,
            handshake_timeout: Duration::from_secs(10),
        }
    });
    Gateway::start_with(|config| {
        let mut listener =
            ListenerConfig::inet(ListenerKind::Agent, SocketAddr::from(([127, 0, 0, 1], 0)));
        listener.name = Some(LISTENER.into());
        listener.tls = tls;
        listener.tokens_file = tokens_file;
        config.listen.push(listener);
    })
}

/// An agent in its own directory, sending as `host` `lines` numbered lines, with `ship_extra`
/// appended to its `[ship]` section. It tries once in the test's time (30 s backoff).
fn agent(gw: &Gateway, host: &str, ship_extra: &str, lines: usize) -> AgentDir {
    let t = AgentDir::new();
    let address = gw.server().socket_addr(LISTENER).unwrap();
    t.write_config_shipping(
        &format!(
            "type = \"gateway\"\naddress = \"{address}\"\nreconnect_min_ms = 30000\n\
             reconnect_max_ms = 30000\n{ship_extra}"
        ),
        &format!("host = \"{host}\"\n{}", t.collect("app", &["app.log"])),
    );
    let mut file = append(&t.logs("app.log"));
    write_numbered(&mut file, 0..lines, 1_000_000, 1_000_000, |_, _| {});
    t
}

fn tls_section(pki: &Pki, client: Option<&CertFiles>) -> String {
    let mut section = format!("[ship.tls]\nca_file = {:?}\n", pki.ca_file());
    if let Some(client) = client {
        section.push_str(&format!(
            "cert_file = {:?}\nkey_file = {:?}\n",
            client.cert, client.key
        ));
    }
    section
}

/// Waits until [`LISTENER`] refused one connection for `reason`, then checks it stays one.
fn wait_for_one_refusal(gw: &Gateway, reason: PeerRefusal, agent_log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while gw.listener_count(LISTENER, |m| m.refused_count(reason)) == 0 {
        assert!(
            Instant::now() < deadline,
            "no {reason:?} refusal; agent log:\n{}",
            agent_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(gw.listener_count(LISTENER, |m| m.refused_count(reason)), 1);
}

fn refused_total(gw: &Gateway) -> u64 {
    PeerRefusal::ALL
        .iter()
        .map(|&r| gw.listener_count(LISTENER, |m| m.refused_count(r)))
        .sum()
}

#[test]
fn an_agent_with_its_certificate_is_stored_with_its_authenticated_host() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let mut gw = gateway(Some(&pki), None);
    let web1 = pki.client("web1", false);
    let t = agent(&gw, "web1", &tls_section(&pki, Some(&web1)), 2_000);
    let agent = t.start(&[]);
    gw.wait_for_records(2_000);
    agent.sigterm_and_wait();
    let records = gw.stop_and_read();
    assert_eq!(records.len(), 2_000);
    let expected: Vec<String> = (0..2_000).map(numbered).collect();
    assert_eq!(messages(&records), expected);
    for record in &records {
        assert_eq!(record["host"], "web1");
        assert_eq!(record["agent_host"], "web1");
        assert_eq!(record["tls_peer"], "web1");
    }
    // Every batch was acknowledged over TLS: the checkpoint is at the end of the file.
    let size = std::fs::metadata(t.logs("app.log")).unwrap().len();
    assert!(
        t.checkpoints().contains(&format!(" {size} ")),
        "{}",
        t.checkpoints()
    );
}

#[test]
fn agents_with_a_missing_wrong_expired_or_other_hosts_certificate_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let other = Pki::new(dir.path(), "other");
    let mut gw = gateway(Some(&pki), None);
    let cases = [
        ("web1", None, PeerRefusal::NoCertificate),
        (
            "web1",
            Some(other.client("web1", false)),
            PeerRefusal::CertificateInvalid,
        ),
        (
            "web1",
            Some(pki.client("web1", true)),
            PeerRefusal::CertificateExpired,
        ),
        // A web1 certificate sending as db1.
        (
            "db1",
            Some(pki.client("web1", false)),
            PeerRefusal::HostNotAllowed,
        ),
    ];
    for (host, client, reason) in &cases {
        let t = agent(&gw, host, &tls_section(&pki, client.as_ref()), 100);
        let agent = t.start(&[]);
        wait_for_one_refusal(&gw, *reason, || t.agent_log());
        agent.sigterm_and_wait();
    }
    assert_eq!(refused_total(&gw), 4);
    assert_eq!(gw.server().metrics().sink.records.get(), 0);
    let records = gw.stop_and_read();
    assert!(records.is_empty(), "{records:?}");
}

fn write_tokens(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let tokens = dir.join("tokens");
    std::fs::write(
        &tokens,
        "# host token\nweb1 web1-token-0123456789abcdef\ndb1 db1-token-0123456789abcdef\n",
    )
    .unwrap();
    let web1 = dir.join("web1.token");
    std::fs::write(&web1, "web1-token-0123456789abcdef\n").unwrap();
    let unknown = dir.join("unknown.token");
    std::fs::write(&unknown, "guessed-token-0123456789abcdef\n").unwrap();
    (tokens, web1, unknown)
}

#[test]
fn without_tls_a_token_binds_the_agent_to_its_host() {
    let dir = tempfile::tempdir().unwrap();
    let (tokens, web1_token, unknown_token) = write_tokens(dir.path());
    let mut gw = gateway(None, Some(tokens));
    let good = agent(&gw, "web1", &format!("token_file = {web1_token:?}\n"), 500);
    let running = good.start(&[]);
    gw.wait_for_records(500);
    running.sigterm_and_wait();

    let cases = [
        ("db1", Some(&web1_token), PeerRefusal::HostNotAllowed),
        ("web1", Some(&unknown_token), PeerRefusal::BadToken),
    ];
    for (host, token, reason) in cases {
        let extra = token
            .map(|t| format!("token_file = {t:?}\n"))
            .unwrap_or_default();
        let t = agent(&gw, host, &extra, 100);
        let agent = t.start(&[]);
        wait_for_one_refusal(&gw, reason, || t.agent_log());
        agent.sigterm_and_wait();
    }
    // No token at all.
    let t = agent(&gw, "web1", "", 100);
    let agent = t.start(&[]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while gw.listener_count(LISTENER, |m| m.refused_count(PeerRefusal::BadToken)) < 2 {
        assert!(Instant::now() < deadline, "{}", t.agent_log());
        std::thread::sleep(Duration::from_millis(20));
    }
    agent.sigterm_and_wait();
    assert_eq!(refused_total(&gw), 3);
    let records = gw.stop_and_read();
    assert_eq!(records.len(), 500);
    assert!(records.iter().all(|r| r["agent_host"] == "web1"));
    assert!(records.iter().all(|r| r.get("tls_peer").is_none()));
}

#[test]
fn only_an_authenticated_agent_routes_by_its_topic() {
    use common::kafka::{TOPIC, cluster, use_kafka, wait_until};
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let cluster = cluster(1);
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("security", 1, 1).expect("topic");
    let dir = tempfile::tempdir().unwrap();
    let (tokens, web1_token, _) = write_tokens(dir.path());
    let mut gw = Gateway::start_with(|config| {
        use_kafka(config, &bootstrap);
        config.sink.kafka.topic_template = "{topic}".parse().unwrap();
        let mut listener =
            ListenerConfig::inet(ListenerKind::Agent, SocketAddr::from(([127, 0, 0, 1], 0)));
        listener.name = Some(LISTENER.into());
        listener.tokens_file = Some(tokens);
        config.listen.push(listener);
    });
    // Anyone can write the agent's element into a syslog message.
    let mut plain = std::net::TcpStream::connect(gw.tcp()).unwrap();
    std::io::Write::write_all(
        &mut plain,
        b"<13>1 2026-11-30T10:00:00Z web1 app - - [logtail@32473 topic=\"security\"] forged\n",
    )
    .unwrap();
    drop(plain);
    // An agent authenticated by its token, whose entry's topic is "security".
    let t = AgentDir::new();
    let address = gw.server().socket_addr(LISTENER).unwrap();
    t.write_config_shipping(
        &format!("type = \"gateway\"\naddress = \"{address}\"\ntoken_file = {web1_token:?}\n"),
        &format!(
            "host = \"web1\"\n{}topic = \"security\"\n",
            t.collect("app", &["app.log"])
        ),
    );
    let mut file = append(&t.logs("app.log"));
    write_numbered(&mut file, 0..10, 1_000_000, 1_000_000, |_, _| {});
    let agent = t.start(&[]);
    wait_until(Duration::from_secs(30), "11 deliveries", || {
        gw.kafka().delivered_records.get() == 11
    });
    agent.sigterm_and_wait();
    gw.stop();

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "trust")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["security", TOPIC]).expect("subscribe");
    let mut by_topic = std::collections::BTreeMap::<String, Vec<String>>::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while by_topic.values().map(Vec::len).sum::<usize>() < 11 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let record: serde_json::Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
            by_topic
                .entry(m.topic().to_string())
                .or_default()
                .push(record["message"].as_str().unwrap_or_default().to_string());
        }
    }
    let expected: Vec<String> = (0..10).map(numbered).collect();
    assert_eq!(by_topic["security"], expected);
    assert_eq!(by_topic[TOPIC], ["forged"]);
}
