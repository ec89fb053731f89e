//! The HTTP API (`/api/v1/`) of a running `logtail serve`, over real HTTP: each endpoint, its
//! errors, the bearer token, the refusal of an open API, and the live tail (a line sent over
//! TCP after the tail opened arrives within a second; a client that does not read gets a
//! `dropped` count).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::process::{self, Served};
use serde_json::{Value, json};

/// Starts `logtail serve` with a TCP listener and the HTTP server on ephemeral ports, with the
/// tables in `extra`; returns it, its TCP address and the API's `IP:PORT`.
fn serve(dir: &Path, extra: &str) -> (Served, SocketAddr, String) {
    let (served, tcp) = process::serve_tcp_in(dir, extra);
    let api = served.api.clone().expect("the API is served");
    (served, tcp.parse().unwrap(), api)
}

fn serve_default(dir: &Path) -> (Served, SocketAddr, String) {
    serve(dir, "")
}

/// A response: status, head (lowercase) and body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// `METHOD target` with `headers`; the server closes after one response.
fn request(api: &str, method: &str, target: &str, headers: &str) -> Answer {
    let mut conn = TcpStream::connect(api).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        conn,
        "{method} {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    Answer {
        status: head[9..12].parse().unwrap(),
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn get(api: &str, target: &str) -> Answer {
    request(api, "GET", target, "")
}

/// An RFC 5424 line for `host` at second `second` of 2026-11-30T10:00 (with the microsecond
/// `n`, so each line has its own time), severity `severity`.
fn line(host: &str, minute: u32, n: u32, severity: u32, message: &str) -> String {
    format!(
        "<{pri}>1 2026-11-30T10:{minute:02}:{:02}.{n:06}Z {host} app 1 - - {message}\n",
        n % 60,
        pri = 8 + severity,
    )
}

fn send(tcp: SocketAddr, lines: &str) {
    let mut conn = TcpStream::connect(tcp).unwrap();
    conn.write_all(lines.as_bytes()).unwrap();
}

/// Waits until `search?limit=1000` over everything finds `count` records.
fn wait_for_stored(api: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = get(api, "/api/v1/fields?field=host&top=100").json();
        let stored: u64 = found["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["count"].as_u64().unwrap())
            .sum::<u64>()
            + found["missing"].as_u64().unwrap();
        if stored as usize >= count {
            assert_eq!(stored as usize, count);
            return;
        }
        assert!(Instant::now() < deadline, "only {stored} of {count} stored");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn messages(answer: &Value) -> Vec<String> {
    answer["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn search_pages_newest_first_without_duplicates_and_histogram_fields_status_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (served, tcp, api) = serve_default(dir.path());
    // 30 lines of web-01 (minutes 0..2), 10 of db-01 (minute 5), severities 3 and 6; two
    // lines share one timestamp to the microsecond (a cursor must still tell them apart).
    let mut lines = String::new();
    for n in 0..30 {
        lines += &line(
            "web-01",
            n / 15,
            n,
            if n % 3 == 0 { 3 } else { 6 },
            &format!("web {n}"),
        );
    }
    for n in 0..10 {
        lines += &line("db-01", 5, n, 6, &format!("db {n}"));
    }
    lines += &line("db-01", 5, 9, 6, "db 9 twin");
    send(tcp, &lines);
    wait_for_stored(&api, 41);

    // Newest first by event time, 4 at a time, following `next` until the end.
    let mut seen = Vec::new();
    let mut target = "/api/v1/search?q=host:web-01&limit=4".to_string();
    let mut pages = 0;
    loop {
        let answer = get(&api, &target);
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.head.contains("content-type: application/json"));
        let page = answer.json();
        seen.extend(messages(&page));
        pages += 1;
        assert!(page["scanned_blocks"].as_u64().unwrap() >= 1);
        assert!(page["skipped_blocks"].is_u64());
        assert!(page["took_ms"].is_u64());
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(page["truncated"], json!(true));
                assert_eq!(page["records"].as_array().unwrap().len(), 4);
                target = format!("/api/v1/search?q=host:web-01&limit=4&cursor={next}");
            }
            None => {
                assert_eq!(page["truncated"], json!(false));
                break;
            }
        }
    }
    assert_eq!(pages, 8);
    let expected: Vec<String> = (0..30).rev().map(|n| format!("web {n}")).collect();
    assert_eq!(seen, expected);

    // The twins share their time to the microsecond: pages of one still return both, once.
    let mut twins = Vec::new();
    let mut target = "/api/v1/search?q=host:db-01&limit=1&order=oldest".to_string();
    loop {
        let page = get(&api, &target).json();
        twins.extend(messages(&page));
        let Some(next) = page["next"].as_str() else {
            break;
        };
        target = format!("/api/v1/search?q=host:db-01&limit=1&order=oldest&cursor={next}");
    }
    assert_eq!(twins.len(), 11, "{twins:?}");
    assert_eq!(
        twins[..9],
        (0..9).map(|n| format!("db {n}")).collect::<Vec<_>>()[..]
    );
    let mut last_two = twins[9..].to_vec();
    last_two.sort();
    assert_eq!(last_two, ["db 9", "db 9 twin"]);

    // A record is the JSON object `logtail read` prints.
    let one = get(&api, "/api/v1/search?q=%22web+29%22&limit=1").json();
    let record = &one["records"][0];
    assert_eq!(record["host"], "web-01");
    assert_eq!(record["severity"], 6);
    assert_eq!(record["timestamp"], "2026-11-30T10:01:29.000029Z");
    assert!(record["received_at"].is_string());

    // Time range and severity: web-01's err lines of minute 0.
    let errs = get(
        &api,
        "/api/v1/search?q=host:web-01+severity:err&from=2026-11-30T10:00:00Z&to=2026-11-30T10:01:00Z&order=oldest",
    )
    .json();
    assert_eq!(
        messages(&errs),
        ["web 0", "web 3", "web 6", "web 9", "web 12"]
    );

    // Histogram over 10:00-10:10 in at most 10 buckets: one-minute buckets.
    let histogram = get(
        &api,
        "/api/v1/histogram?from=2026-11-30T10:00:00Z&to=2026-11-30T10:10:00Z&buckets=10",
    );
    assert_eq!(histogram.status, 200, "{}", histogram.body);
    let histogram = histogram.json();
    assert_eq!(histogram["width_ms"], 60_000);
    assert_eq!(histogram["total"], 41);
    let counts: Vec<u64> = histogram["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [15, 15, 0, 0, 0, 11, 0, 0, 0, 0]);
    assert_eq!(
        histogram["buckets"][5]["start"],
        "2026-11-30T10:05:00.000000Z"
    );
    assert_eq!(
        histogram["buckets"][5]["start_ms"],
        1_796_032_800_000i64 + 300_000
    );

    // Facets.
    let hosts = get(&api, "/api/v1/fields?field=host").json();
    assert_eq!(
        hosts["values"],
        json!([{"value": "web-01", "count": 30}, {"value": "db-01", "count": 11}])
    );
    assert_eq!(hosts["missing"], 0);
    assert_eq!(hosts["other"], 0);
    assert_eq!(hosts["distinct"], 2);
    let severities = get(&api, "/api/v1/fields?q=host:web-01&field=severity").json();
    assert_eq!(
        severities["values"],
        json!([{"value": "6", "count": 20}, {"value": "3", "count": 10}])
    );

    // Status.
    let status = get(&api, "/api/v1/status");
    assert_eq!(status.status, 200, "{}", status.body);
    let status = status.json();
    let listener = &status["listeners"][0];
    assert_eq!(listener["name"], "tcp");
    assert_eq!(listener["transport"], "tcp");
    assert_eq!(listener["address"], tcp.to_string());
    assert_eq!(listener["received_lines"], 41);
    assert_eq!(listener["errors"]["parse"], 0);
    assert_eq!(status["sink"]["type"], "store");
    assert_eq!(status["sink"]["records"], 41);
    assert_eq!(status["sink"]["kafka"], Value::Null);
    assert!(status["store"]["bytes"].as_u64().unwrap() > 0);
    assert_eq!(status["store"]["segments"], 1);
    assert_eq!(status["store"]["max_total_bytes"], 1_073_741_824u64);
    assert_eq!(status["store"]["max_age_secs"], Value::Null);
    assert_eq!(status["agents"], json!([]));
    assert_eq!(status["tail_subscribers"], 0);
    assert_eq!(status["history"]["interval_secs"], 10);
    assert!(status["history"]["samples"].is_array());
    assert!(status["version"].is_string());
    served.sigterm_and_wait();
}

#[test]
fn every_bad_parameter_is_a_json_400_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let (served, _, api) = serve_default(dir.path());
    let cases: [(&str, u16, Value); 9] = [
        (
            "/api/v1/search?q=timeout+AND+(disk+OR+)",
            400,
            json!({"error": "unexpected ')' at column 22", "parameter": "q", "column": 22, "query": "timeout AND (disk OR )"}),
        ),
        (
            "/api/v1/search?limit=5000",
            400,
            json!({"error": "limit=\"5000\": allowed a whole number from 1 to 1000", "parameter": "limit"}),
        ),
        (
            "/api/v1/search?order=up",
            400,
            json!({"error": "order=\"up\": allowed \"newest\" or \"oldest\"", "parameter": "order"}),
        ),
        (
            "/api/v1/search?cursor=abc",
            400,
            json!({"error": "cursor=\"abc\" is not a cursor: pass the 'next' of a previous page", "parameter": "cursor"}),
        ),
        (
            "/api/v1/search?lmit=5",
            400,
            json!({"error": "unknown parameter \"lmit\": this endpoint takes q, from, to, limit, order, cursor", "parameter": "lmit"}),
        ),
        (
            "/api/v1/histogram?from=2026-11-30&to=2026-11-29",
            400,
            json!({"error": "the range is empty: 'to' must be after 'from'", "parameter": "to"}),
        ),
        (
            "/api/v1/fields",
            400,
            json!({"error": "missing 'field': which field to count, e.g. field=host", "parameter": "field"}),
        ),
        (
            "/api/v1/nothing",
            404,
            json!({"error": "no such endpoint: the API has search, histogram, fields, tail and status under /api/v1/"}),
        ),
        (
            "/api/v1/tail?q=severity:warm",
            400,
            json!({"error": "unknown severity 'warm' at column 10: use emerg, alert, crit, err, warning, notice, info, debug or 0-7", "parameter": "q", "column": 10, "query": "severity:warm"}),
        ),
    ];
    for (target, status, body) in cases {
        let answer = get(&api, target);
        assert_eq!((answer.status, answer.json()), (status, body), "{target}");
        assert!(
            answer.head.contains("content-type: application/json"),
            "{target}"
        );
    }
    let bad_time = get(&api, "/api/v1/search?from=yesterday").json();
    assert_eq!(bad_time["parameter"], "from");
    let post = request(&api, "POST", "/api/v1/search", "Content-Length: 0\r\n");
    assert_eq!(
        (post.status, post.json()),
        (405, json!({"error": "only GET"}))
    );
    served.sigterm_and_wait();
}

#[test]
fn with_a_token_file_the_api_needs_the_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let token = "0123456789abcdef0123456789abcdef";
    std::fs::write(dir.path().join("api.token"), format!("{token}\n")).unwrap();
    let (served, _, api) = serve(
        dir.path(),
        &format!(
            "[api]\ntoken_file = \"{}\"\n",
            dir.path().join("api.token").display()
        ),
    );
    let without = get(&api, "/api/v1/status");
    assert_eq!(without.status, 401);
    assert!(
        without.head.contains("www-authenticate: bearer"),
        "{}",
        without.head
    );
    assert_eq!(
        without.json()["error"],
        "this API needs a bearer token: send Authorization: Bearer TOKEN (the token is in the file [api] token_file names)"
    );
    let wrong = request(
        &api,
        "GET",
        "/api/v1/status",
        "Authorization: Bearer 0123456789abcdef0123456789abcdee\r\n",
    );
    assert_eq!(
        (wrong.status, wrong.json()),
        (401, json!({"error": "wrong bearer token"}))
    );
    let with = request(
        &api,
        "GET",
        "/api/v1/status",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(with.status, 200, "{}", with.body);
    assert_eq!(with.json()["sink"]["type"], "store");
    let in_query = get(&api, &format!("/api/v1/search?q=x&access_token={token}"));
    assert_eq!(in_query.status, 200, "{}", in_query.body);
    assert_eq!(
        get(&api, "/api/v1/nothing").status,
        401,
        "unknown paths too"
    );
    // /metrics is for Prometheus, as before.
    assert_eq!(get(&api, "/metrics").status, 200);
    served.sigterm_and_wait();
}

#[test]
fn an_api_on_a_non_loopback_address_without_a_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("logtail.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[[listen]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n\
             [api]\naddress = \"0.0.0.0:0\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = process::logtail()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "api.token_file: the API would serve every stored log to anyone who can reach \
             0.0.0.0:0: set [api] token_file"
        ),
        "{stderr}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "refused before anything started"
    );
}

/// Opens `GET /api/v1/tail?q=QUERY` and reads up to the end of its head and first comment.
fn open_tail(api: &str, query: &str, stream: TcpStream) -> BufReader<TcpStream> {
    let mut stream = stream;
    write!(
        stream,
        "GET /api/v1/tail?q={query} HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "head: {head}");
        head += &line;
        if line.contains(": logtail live tail") {
            break;
        }
    }
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head} ({api})");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    reader
}

#[test]
fn a_tail_receives_a_matching_line_sent_over_tcp_after_it_opened_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let (served, tcp, api) = serve_default(dir.path());
    let mut tail = open_tail(&api, "host:tail-host", TcpStream::connect(&api).unwrap());
    let sent = Instant::now();
    send(
        tcp,
        &(line("other-host", 0, 1, 6, "not for the tail")
            + &line("tail-host", 0, 2, 3, "for the tail \"quoted\"")),
    );
    let mut data = None;
    while data.is_none() {
        let mut line = String::new();
        assert!(tail.read_line(&mut line).unwrap() > 0);
        assert!(!line.contains("not for the tail"), "{line}");
        data = line.strip_prefix("data: ").map(str::to_string);
    }
    let arrived = sent.elapsed();
    assert!(arrived < Duration::from_secs(1), "{arrived:?}");
    let record: Value = serde_json::from_str(data.unwrap().trim_end()).unwrap();
    assert_eq!(record["host"], "tail-host");
    assert_eq!(record["message"], "for the tail \"quoted\"");
    assert_eq!(record["severity"], 3);
    let status = get(&api, "/api/v1/status").json();
    assert_eq!(status["tail_subscribers"], 1);
    drop(tail);
    served.sigterm_and_wait();
}

#[test]
fn a_tail_client_that_does_not_read_is_sent_a_dropped_count_and_ingest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (served, tcp, api) = serve_default(dir.path());
    // A client with a 4 KiB receive buffer that reads nothing while 60,000 lines (~13 MB of
    // events) are written: far more than its buffer, the server's socket buffer and the
    // tail's 1 MiB outbox together.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let api_addr: SocketAddr = api.parse().unwrap();
    socket.connect(&api_addr.into()).unwrap();
    let mut tail = open_tail(&api, "", socket.into());
    let total = 60_000;
    let padding = "x".repeat(120);
    let mut lines = String::new();
    for n in 0..total {
        lines += &line("flood", 0, n, 6, &format!("flood {n} {padding}"));
    }
    send(tcp, &lines);
    // Every line is stored: the slow client did not hold the gateway back.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = get(&api, "/api/v1/status").json();
        if status["sink"]["records"] == total {
            break;
        }
        assert!(Instant::now() < deadline, "{}", status["sink"]);
        std::thread::sleep(Duration::from_millis(50));
    }
    // The client reads again: first what was queued for it, until the stream is quiet...
    let (mut delivered, mut dropped) = (0u64, 0u64);
    let mut event = String::new();
    let mut text = String::new();
    let mut marker_sent = false;
    tail.get_ref()
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    loop {
        match tail.read_line(&mut text) {
            Ok(0) => panic!("the tail ended"),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && !marker_sent => {
                // ...then one more record: what it missed is counted right before it.
                send(tcp, &line("flood", 1, 0, 6, "after the flood"));
                marker_sent = true;
                tail.get_ref()
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                continue;
            }
            Err(e) => panic!("{e}"),
        }
        let got = std::mem::take(&mut text);
        if got == "event: dropped\n" {
            event = got;
            continue;
        }
        if let Some(data) = got.strip_prefix("data: ") {
            if event == "event: dropped\n" {
                let count: Value = serde_json::from_str(data.trim_end()).unwrap();
                dropped += count["dropped"].as_u64().unwrap();
                event.clear();
            } else if data.contains("after the flood") {
                break;
            } else if data.contains("\"flood ") {
                delivered += 1;
            }
        }
    }
    assert!(dropped > 0, "a dropped event");
    assert_eq!(
        delivered + dropped,
        total as u64,
        "every record delivered or counted"
    );
    served.sigterm_and_wait();
}

#[test]
fn status_lists_a_connected_agent_with_its_lines_and_keeps_it_after_it_leaves() {
    use logtail::agent_protocol::{self as protocol, BatchEncoder, Kind};
    let dir = tempfile::tempdir().unwrap();
    let port = test_support::net::free_port().unwrap();
    let (served, _, api) = serve(
        dir.path(),
        &format!("[[listen]]\ntype = \"agent\"\naddress = \"127.0.0.1:{port}\"\n"),
    );
    let mut agent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    agent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut frame = Vec::new();
    protocol::agent_hello("api-agent", &mut frame);
    let mut encoder = BatchEncoder::default();
    for n in 0..5 {
        encoder.message(|out| {
            out.extend_from_slice(
                format!("<14>1 2026-11-30T10:00:0{n}Z api-agent app - - - line {n}").as_bytes(),
            )
        });
    }
    encoder.finish(1, &mut frame);
    agent.write_all(&frame).unwrap();
    let mut body = Vec::new();
    assert_eq!(
        protocol::read_frame(&mut agent, &mut body).unwrap(),
        Kind::Hello
    );
    assert_eq!(
        protocol::read_frame(&mut agent, &mut body).unwrap(),
        Kind::Ack
    );
    let address = agent.local_addr().unwrap().to_string();

    let status = get(&api, "/api/v1/status").json();
    let agents = status["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{agents:?}");
    let seen = &agents[0];
    assert_eq!(
        (
            &seen["listener"],
            &seen["host"],
            &seen["address"],
            &seen["connected"],
            &seen["lines"]
        ),
        (
            &json!("agent"),
            &json!("api-agent"),
            &json!(address),
            &json!(true),
            &json!(5)
        )
    );
    assert!(seen["connected_at"].as_str().unwrap() <= seen["last_seen"].as_str().unwrap());
    assert_eq!(status["listeners"][1]["received_lines"], 5);

    drop(agent);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = get(&api, "/api/v1/status").json();
        let seen = &status["agents"][0];
        if seen["connected"] == json!(false) {
            assert_eq!(
                (&seen["host"], &seen["lines"]),
                (&json!("api-agent"), &json!(5))
            );
            break;
        }
        assert!(Instant::now() < deadline, "{seen}");
        std::thread::sleep(Duration::from_millis(50));
    }
    served.sigterm_and_wait();
}
