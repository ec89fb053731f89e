//! Syslog over TLS (RFC 5425) with real senders: `openssl s_client`, syslog-ng's `loggen
//! --use-ssl`, rsyslog's `omfwd` with the OpenSSL stream driver; client certificates valid,
//! missing, from another CA, expired, not allowed; a plaintext client on the TLS port; a
//! handshake that never completes; certificates replaced while a connection is open.
//! Certificates are made at test time ([`common::pki`]).

use test_fixtures as common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pki::{CertFiles, Pki};
use common::{Gateway, messages};
use logtail::config::{ListenerConfig, ListenerKind};
use logtail::metrics::PeerRefusal;
use logtail::source::tls::{ClientAuth, PeerPattern, TlsConfig, TlsVersion};

/// The TLS configuration of a listener using `server`, verifying clients with `pki` when
/// `client_auth` asks for it.
fn tls_config(pki: &Pki, server: &CertFiles, client_auth: ClientAuth) -> TlsConfig {
    TlsConfig {
        cert_file: server.cert.clone(),
        key_file: server.key.clone(),
        ca_file: (client_auth != ClientAuth::None).then(|| pki.ca_file()),
        client_auth,
        allowed_peers: Vec::new(),
        min_version: TlsVersion::Tls12,
        handshake_timeout: Duration::from_secs(10),
    }
}

/// A gateway with a `tcp` listener named `tls` using `tls`.
fn gateway_with_tls(tls: TlsConfig) -> Gateway {
    Gateway::start_with(|config| {
        let mut listener =
            ListenerConfig::inet(ListenerKind::Tcp, SocketAddr::from(([127, 0, 0, 1], 0)));
        listener.name = Some("tls".into());
        listener.tls = Some(tls);
        config.listen.push(listener);
    })
}

fn openssl_available(test: &str) -> bool {
    test_support::ci::or_skip(
        test_support::ci::on_path("openssl"),
        test,
        "no openssl (apt-get install openssl)",
    )
    .is_some()
}

/// Sends `input` with `openssl s_client`, presenting `client` if given, and waits for it to
/// end. Returns what it printed (its stdout and stderr).
fn s_client(addr: SocketAddr, ca: &Path, client: Option<&CertFiles>, input: &str) -> String {
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
        .arg(ca)
        .args(["-verify_return_error", "-quiet", "-no_ign_eof"]);
    if let Some(client) = client {
        command.arg("-cert").arg(&client.cert);
        command.arg("-key").arg(&client.key);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(input.as_bytes())
        .expect("write to s_client");
    // Give the server time to answer a refused certificate (TLS 1.3 sends it after the
    // client's Finished) before the client closes.
    std::thread::sleep(Duration::from_millis(300));
    drop(stdin);
    let output = child.wait_with_output().expect("s_client ends");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Waits (up to 10 s) until `listener` has refused `count` connections for `reason`.
fn wait_for_refused(gw: &Gateway, reason: PeerRefusal, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let refused = gw.listener_count("tls", |m| m.refused_count(reason));
        if refused >= count {
            assert_eq!(refused, count, "{reason:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} {reason:?} refusals, expected {count}",
            refused
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn refused_total(gw: &Gateway) -> u64 {
    PeerRefusal::ALL
        .iter()
        .map(|&r| gw.listener_count("tls", |m| m.refused_count(r)))
        .sum()
}

#[test]
fn s_client_lines_are_stored_with_the_verified_peer_name() {
    if !openssl_available("s_client_lines_are_stored_with_the_verified_peer_name") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let server = pki.server("gateway");
    let web1 = pki.client("web1", false);
    let mut gw = gateway_with_tls(tls_config(&pki, &server, ClientAuth::Required));
    let input = "<13>1 2026-11-30T10:00:00Z web1 app - - - first\n\
                 <13>1 2026-11-30T10:00:01Z web1 app - - - second\n\
                 <13>1 2026-11-30T10:00:02Z db1 app - - - claims db1\n";
    s_client(
        gw.server().socket_addr("tls").unwrap(),
        &pki.ca_file(),
        Some(&web1),
        input,
    );
    gw.wait_for_records(3);
    let records = gw.stop_and_read();
    assert_eq!(
        messages(&records),
        ["first", "second", "claims db1"],
        "{records:?}"
    );
    for record in &records {
        assert_eq!(record["tls_peer"], "web1", "{record}");
        assert_eq!(record.get("agent_host"), None);
    }
    // `host` is what the message says; `tls_peer` is who sent it.
    assert_eq!(records[2]["host"], "db1");
}

#[test]
fn without_client_auth_records_have_no_tls_peer() {
    if !openssl_available("without_client_auth_records_have_no_tls_peer") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let server = pki.server("gateway");
    let mut gw = gateway_with_tls(tls_config(&pki, &server, ClientAuth::None));
    s_client(
        gw.server().socket_addr("tls").unwrap(),
        &pki.ca_file(),
        None,
        "<13>anonymous\n",
    );
    gw.wait_for_records(1);
    let records = gw.stop_and_read();
    assert_eq!(messages(&records), ["anonymous"]);
    assert_eq!(records[0].get("tls_peer"), None);
}

#[test]
fn with_optional_client_auth_anonymous_and_certified_clients_are_both_stored() {
    if !openssl_available(
        "with_optional_client_auth_anonymous_and_certified_clients_are_both_stored",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let server = pki.server("gateway");
    let mut gw = gateway_with_tls(tls_config(&pki, &server, ClientAuth::Optional));
    let addr = gw.server().socket_addr("tls").unwrap();
    s_client(addr, &pki.ca_file(), None, "<13>anonymous\n");
    gw.wait_for_records(1);
    s_client(
        addr,
        &pki.ca_file(),
        Some(&pki.client("web1", false)),
        "<13>certified\n",
    );
    gw.wait_for_records(2);
    // A certificate that is presented must still verify.
    s_client(
        addr,
        &pki.ca_file(),
        Some(&pki.client("web1", true)),
        "<13>expired\n",
    );
    wait_for_refused(&gw, PeerRefusal::CertificateExpired, 1);
    assert_eq!(refused_total(&gw), 1);
    let records = gw.stop_and_read();
    assert_eq!(messages(&records), ["anonymous", "certified"]);
    assert_eq!(records[0].get("tls_peer"), None);
    assert_eq!(records[1]["tls_peer"], "web1");
}

#[test]
fn bad_client_certificates_are_refused_by_reason_and_nothing_is_stored() {
    if !openssl_available("bad_client_certificates_are_refused_by_reason_and_nothing_is_stored") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let other = Pki::new(dir.path(), "other");
    let server = pki.server("gateway");
    let mut tls = tls_config(&pki, &server, ClientAuth::Required);
    tls.allowed_peers = vec![
        PeerPattern::try_from("*.web.example".to_string()).unwrap(),
        PeerPattern::try_from("web1".to_string()).unwrap(),
    ];
    let mut gw = gateway_with_tls(tls);
    let addr = gw.server().socket_addr("tls").unwrap();
    let ca = pki.ca_file();
    let line = "<13>must not be stored\n";

    s_client(addr, &ca, None, line);
    wait_for_refused(&gw, PeerRefusal::NoCertificate, 1);
    s_client(addr, &ca, Some(&other.client("web1", false)), line);
    wait_for_refused(&gw, PeerRefusal::CertificateInvalid, 1);
    s_client(addr, &ca, Some(&pki.client("web1", true)), line);
    wait_for_refused(&gw, PeerRefusal::CertificateExpired, 1);
    s_client(addr, &ca, Some(&pki.client("db1", false)), line);
    wait_for_refused(&gw, PeerRefusal::PeerNotAllowed, 1);
    assert_eq!(refused_total(&gw), 4);

    // Allowed: by exact name and by wildcard.
    s_client(
        addr,
        &ca,
        Some(&pki.client("web1", false)),
        "<13>from web1\n",
    );
    s_client(
        addr,
        &ca,
        Some(&pki.client("a.web.example", false)),
        "<13>from a\n",
    );
    gw.wait_for_records(2);
    let records = gw.stop_and_read();
    let mut stored: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["message"].as_str().unwrap().to_string(),
                r["tls_peer"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    stored.sort();
    assert_eq!(
        stored,
        [
            ("from a".to_string(), "a.web.example".to_string()),
            ("from web1".to_string(), "web1".to_string())
        ]
    );
}

#[test]
fn plaintext_client_on_a_tls_port_is_counted_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let server = pki.server("gateway");
    let mut gw = gateway_with_tls(tls_config(&pki, &server, ClientAuth::None));
    let addr = gw.server().socket_addr("tls").unwrap();
    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .write_all(b"<13>Nov 30 10:00:00 host app: plaintext line\n")
        .unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    // The gateway closes the connection without answering.
    assert_eq!(plain.read_to_end(&mut rest).unwrap_or(0), 0);
    wait_for_refused(&gw, PeerRefusal::Plaintext, 1);
    // A probe that connects and closes at once is not a refusal.
    drop(TcpStream::connect(addr).unwrap());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(refused_total(&gw), 1);
    let records = gw.stop_and_read();
    assert!(records.is_empty(), "{records:?}");
}

#[test]
fn a_stalled_handshake_times_out_without_holding_up_other_clients() {
    if !openssl_available("a_stalled_handshake_times_out_without_holding_up_other_clients") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let server = pki.server("gateway");
    let mut tls = tls_config(&pki, &server, ClientAuth::None);
    tls.handshake_timeout = Duration::from_secs(2);
    let mut gw = gateway_with_tls(tls);
    let addr = gw.server().socket_addr("tls").unwrap();
    // Ten clients that start a TLS record and never finish it.
    let stalled: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&[0x16, 0x03, 0x01]).unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    s_client(addr, &pki.ca_file(), None, "<13>not held up\n");
    gw.wait_for_records(1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a good client waited {:?}",
        started.elapsed()
    );
    wait_for_refused(&gw, PeerRefusal::HandshakeTimeout, 10);
    drop(stalled);
    let records = gw.stop_and_read();
    assert_eq!(messages(&records), ["not held up"]);
}

#[test]
fn replaced_certificates_are_used_for_new_connections_and_open_ones_go_on() {
    if !openssl_available("replaced_certificates_are_used_for_new_connections_and_open_ones_go_on")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let first = pki.server("gateway-first");
    let in_use = CertFiles {
        cert: dir.path().join("in-use.pem"),
        key: dir.path().join("in-use.key"),
    };
    std::fs::copy(&first.cert, &in_use.cert).unwrap();
    std::fs::copy(&first.key, &in_use.key).unwrap();
    let mut gw = gateway_with_tls(tls_config(&pki, &in_use, ClientAuth::None));
    let addr = gw.server().socket_addr("tls").unwrap();

    // A connection opened with the first certificate, kept open across the reload.
    let mut open = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
        .arg(pki.ca_file())
        .args(["-verify_return_error", "-quiet", "-no_ign_eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut open_stdin = open.stdin.take().unwrap();
    open_stdin.write_all(b"<13>before reload\n").unwrap();
    gw.wait_for_records(1);

    let second = pki.server("gateway-second");
    std::fs::copy(&second.cert, &in_use.cert).unwrap();
    std::fs::copy(&second.key, &in_use.key).unwrap();
    std::thread::sleep(logtail::source::tls::RELOAD_CHECK + Duration::from_millis(200));
    // The first connection after the reload check may still be the one that notices.
    let mut seen = String::new();
    for attempt in 0..2 {
        let out = Command::new("openssl")
            .args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
            .arg(pki.ca_file())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        seen = String::from_utf8_lossy(&out.stdout).into_owned();
        if seen.contains("CN = gateway-second") || attempt == 1 {
            break;
        }
    }
    assert!(seen.contains("CN = gateway-second"), "{seen}");
    open_stdin.write_all(b"<13>after reload\n").unwrap();
    drop(open_stdin);
    let _ = open.wait();
    gw.wait_for_records(2);
    let records = gw.stop_and_read();
    assert_eq!(messages(&records), ["before reload", "after reload"]);
}

#[test]
fn loggen_over_tls_is_stored_whole() {
    let Some(loggen) = test_support::ci::or_skip(
        [
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/loggen/loggen")),
            test_support::ci::on_path("loggen"),
        ]
        .into_iter()
        .flatten()
        .find(|p| p.is_file()),
        "loggen_over_tls_is_stored_whole",
        "no loggen (shared/tools/install-loggen.sh)",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let server = pki.server("gateway");
    let mut gw = gateway_with_tls(tls_config(&pki, &server, ClientAuth::None));
    let addr = gw.server().socket_addr("tls").unwrap();
    let status = Command::new(loggen)
        .args(["--use-ssl", "-P", "-n", "5000", "-s", "200", "-r", "100000"])
        .arg("127.0.0.1")
        .arg(addr.port().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    gw.wait_for_records(5000);
    let records = gw.stop_and_read();
    assert_eq!(records.len(), 5000);
    assert!(records.iter().all(|r| r.get("parse_error").is_none()));
}

#[test]
fn rsyslog_forwards_over_tls_with_its_client_certificate() {
    let Some(rsyslogd) = test_support::ci::or_skip(
        test_support::ci::on_path("rsyslogd")
            .or_else(|| Some(Path::new("/usr/sbin/rsyslogd").to_path_buf()))
            .filter(|p| p.is_file())
            .filter(|_| Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so").is_file()),
        "rsyslog_forwards_over_tls_with_its_client_certificate",
        "no rsyslogd with its OpenSSL driver (apt-get install rsyslog rsyslog-openssl)",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let server = pki.server("gateway");
    let client = pki.client("rsyslog-client", false);
    let mut tls = tls_config(&pki, &server, ClientAuth::Required);
    tls.allowed_peers = vec![PeerPattern::try_from("rsyslog-client".to_string()).unwrap()];
    let mut gw = gateway_with_tls(tls);
    let port = gw.server().socket_addr("tls").unwrap().port();
    let input = dir.path().join("in.log");
    let lines: Vec<String> = (0..1000).map(|n| format!("rsyslog line {n}")).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    std::fs::create_dir(dir.path().join("work")).unwrap();
    let conf = dir.path().join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{work}"
  DefaultNetstreamDriverCAFile="{ca}"
  DefaultNetstreamDriverCertFile="{cert}"
  DefaultNetstreamDriverKeyFile="{key}")
module(load="imfile")
input(type="imfile" File="{input}" Tag="app" Facility="local0" Severity="info")
action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp"
  StreamDriver="ossl" StreamDriverMode="1" StreamDriverAuthMode="x509/name"
  StreamDriverPermittedPeers="localhost"
  template="RSYSLOG_SyslogProtocol23Format" TCP_Framing="octet-counted")
"#,
            work = dir.path().join("work").display(),
            ca = pki.ca_file().display(),
            cert = client.cert.display(),
            key = client.key.display(),
            input = input.display(),
        ),
    )
    .unwrap();
    let mut rsyslog = Command::new(rsyslogd)
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(dir.path().join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rsyslogd starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.server().metrics().sink.records.get() < 1000 {
        if Instant::now() > deadline || rsyslog.try_wait().unwrap().is_some() {
            let _ = rsyslog.kill();
            let out = rsyslog.wait_with_output().unwrap();
            panic!(
                "{} of 1000 lines from rsyslog; refused: {}; rsyslogd said:\n{}",
                gw.server().metrics().sink.records.get(),
                refused_total(&gw),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on the child we started, to let it stop cleanly.
    unsafe { libc::kill(rsyslog.id() as i32, libc::SIGTERM) };
    let _ = rsyslog.wait();
    assert_eq!(refused_total(&gw), 0);
    let records = gw.stop_and_read();
    assert_eq!(records.len(), 1000);
    // rsyslog's RFC 5424 template ends in a newline, and with octet counting (RFC 5425's
    // framing) it counts it as part of the message: the gateway keeps what was counted.
    let stored: Vec<String> = messages(&records)
        .into_iter()
        .map(|m| m.strip_suffix('\n').map(str::to_string).unwrap_or(m))
        .collect();
    assert!(stored == lines, "first records: {:?}", &records[..3]);
    assert!(
        records
            .iter()
            .all(|r| r["tls_peer"] == "rsyslog-client" && r["app"] == "app" && r["facility"] == 16)
    );
}
