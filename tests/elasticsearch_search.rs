//! `[search] backend = "elasticsearch"` against a real server, `osmem-server` (an in-memory
//! OpenSearch-compatible server that `tests/run.sh` installs): the same lines go to a gateway
//! that keeps them in its local store and to one that indexes them into osmem through the
//! Elasticsearch sink and searches osmem; the search API of both must return the same records
//! for every query form, and the same histograms and facets. Also: paging with cursors over
//! records that share their time (through the API, and through the library on documents
//! that share their sort values exactly), a bad query, Elasticsearch down or silent, and
//! `logtail search --config` on the cluster.

use test_fixtures as common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::osmem::Osmem;
use common::process::{self, Served};
use serde_json::Value;

/// An answer of the API: status and JSON body.
fn get(api: &str, target: &str) -> (u16, Value) {
    let mut conn = TcpStream::connect(api).expect("the API answers");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(conn, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let status = head[9..12].parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {raw}"));
    (status, body)
}

fn ok(api: &str, target: &str) -> Value {
    let (status, body) = get(api, target);
    assert_eq!(status, 200, "{target}: {body}");
    body
}

/// `q` percent-encoded for a query string.
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The config of a gateway that indexes into `osmem` and searches it.
fn indexer_config(osmem: &str, search_endpoint: &str, timeout_ms: u64) -> String {
    format!(
        "[sink]\ntype = \"elasticsearch\"\nencoding = \"json\"\n\
         [sink.elasticsearch]\nendpoints = [\"http://{osmem}\"]\nbulk_max_age_ms = 20\n\
         [search]\nbackend = \"elasticsearch\"\n\
         [search.elasticsearch]\nendpoints = [\"http://{search_endpoint}\"]\nindex = \"logs-*\"\n\
         request_timeout_ms = {timeout_ms}\n"
    )
}

const HOSTS: [&str; 4] = ["web-01", "web-02", "db-01", "DB-02"];
const APPS: [&str; 3] = ["nginx", "sshd", "postgres"];
const MESSAGES: [&str; 6] = [
    "read timeout after 30s",
    "Connection reset by peer",
    "error 500 on /api/orders",
    "login refused for alice",
    "disk usage at 91 percent",
    "terrible ERR state reached",
];
/// Lines with their own time each, and lines sharing one.
const SPREAD: usize = 72;
const TIED: usize = 9;

/// RFC 5424 lines: every field varies; each line's time is its own to the millisecond
/// (10:00:00 + 5 s × n), except the last [`TIED`], which share 10:03:30.500; every message is
/// unique (`#n`).
fn lines() -> String {
    let mut out = String::new();
    for n in 0..SPREAD + TIED {
        let (second, milli) = if n < SPREAD { (n * 5, n) } else { (210, 500) };
        let severity = n % 8;
        let facility = if n % 2 == 0 { 16 } else { 1 };
        let mut sd = String::new();
        if n % 3 == 0 {
            sd += &format!("[origin ip=\"10.0.0.{}\"]", n % 4);
        }
        if n % 4 == 0 {
            sd += if n % 8 == 0 {
                "[logtail@32473 entry=\"web\" tags=\"prod,eu\"]"
            } else {
                "[logtail@32473 entry=\"db\" tags=\"staging\"]"
            };
        }
        if sd.is_empty() {
            sd.push('-');
        }
        out += &format!(
            "<{pri}>1 2026-11-30T10:{:02}:{:02}.{milli:03}000Z {host} {app} {procid} {msgid} {sd} {message} #{n}\n",
            second / 60,
            second % 60,
            pri = facility * 8 + severity,
            host = HOSTS[n % 4],
            app = APPS[n % 3],
            procid = if n % 2 == 0 {
                "42".to_string()
            } else {
                "-".to_string()
            },
            msgid = if n % 5 == 0 { "REQ" } else { "-" },
            message = MESSAGES[n % 6],
        );
    }
    out
}

/// The records of a search answer, without what differs between the two gateways (when and
/// from where each received the line), sorted by time (newest first), then message: the two
/// backends order records of the same time differently.
fn comparable(answer: &Value) -> Vec<Value> {
    let mut records: Vec<Value> = answer["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|record| {
            let mut record = record.clone();
            let object = record.as_object_mut().expect("a JSON object");
            object.remove("received_at");
            object.remove("source");
            record
        })
        .collect();
    records.sort_by(|a, b| {
        let key = |r: &Value| {
            (
                r["timestamp"].as_str().unwrap_or("").to_string(),
                r["message"].as_str().unwrap_or("").to_string(),
            )
        };
        key(b).0.cmp(&key(a).0).then(key(a).1.cmp(&key(b).1))
    });
    records
}

/// The records' times, in answer order.
fn times(answer: &Value) -> Vec<String> {
    answer["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["timestamp"].as_str().unwrap_or("").to_string())
        .collect()
}

fn wait_for_count(api: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, found) = get(api, "/api/v1/search?limit=1000");
        let stored = if status == 200 {
            found["records"].as_array().map_or(0, Vec::len)
        } else {
            0
        };
        if stored >= count {
            assert_eq!(stored, count);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {stored} of {count} searchable ({status} {found})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn send(tcp: &str, text: &str) {
    let mut conn = TcpStream::connect(tcp).expect("the gateway listens");
    conn.write_all(text.as_bytes()).unwrap();
}

/// Every query form of the grammar: each gives the same records from both backends.
const QUERIES: &[&str] = &[
    "",
    "*",
    "timeout",
    "TIMEOUT",
    "\"connection reset\"",
    "message:refused",
    "time*",
    "/err(or)?/",
    "host:web-01",
    "host:WEB-0*",
    "host:db-0?",
    "host:DB-02",
    "host:/^web-0[12]$/",
    "app:\"postgres\"",
    "procid:42",
    "msgid:req",
    "-procid:42",
    "NOT app:nginx",
    "_exists_:msgid",
    "procid:*",
    "severity:err",
    "severity:3",
    "severity:<=warning",
    "severity:>notice",
    "facility:local0",
    "facility:<local0",
    "sd.origin.ip:10.0.0.1",
    "sd.origin.ip:10.0.0.*",
    "_exists_:sd.origin.ip",
    "entry:web",
    "tags:eu",
    "tags:staging",
    "tags:prod host:web-01",
    "host:(web-01 OR db-*)",
    "timeout OR refused",
    "(app:sshd OR app:nginx) -severity:<=err",
    "error 500",
    "\"#17\"",
];

#[test]
fn the_cluster_answers_as_the_local_store_does() {
    let Some(osmem) = Osmem::start("the_cluster_answers_as_the_local_store_does") else {
        return;
    };
    let osmem_addr = osmem.addr().to_string();
    let store_dir = tempfile::tempdir().unwrap();
    let (store, store_tcp) = process::serve_tcp_in(store_dir.path(), "");
    let store_api = store.api.clone().expect("the API is served");
    let es_dir = tempfile::tempdir().unwrap();
    let (indexer, es_tcp) = process::serve_tcp_in(
        es_dir.path(),
        &indexer_config(&osmem_addr, &osmem_addr, 5000),
    );
    let es_api = indexer.api.clone().expect("the API is served");

    let text = lines();
    send(&store_tcp, &text);
    send(&es_tcp, &text);
    let total = SPREAD + TIED;
    wait_for_count(&store_api, total);
    wait_for_count(&es_api, total);

    let mut took = Vec::new();
    for query in QUERIES {
        let target = format!("/api/v1/search?limit=1000&q={}", encode(query));
        let from_store = ok(&store_api, &target);
        let from_cluster = ok(&es_api, &target);
        took.push(from_cluster["took_ms"].as_u64().unwrap());
        let expected = comparable(&from_store);
        assert!(!expected.is_empty(), "{query}");
        assert_eq!(comparable(&from_cluster), expected, "{query}");
        // Newest first by time, as the store orders them.
        let mut newest_first = times(&from_cluster);
        newest_first.sort_by(|a, b| b.cmp(a));
        assert_eq!(times(&from_cluster), newest_first, "{query}");
        assert_eq!(from_cluster["truncated"], Value::Bool(false));
        assert_eq!(from_cluster["next"], Value::Null);
        // With a time range too: minutes 1 to 3.
        let ranged = format!("{target}&from=2026-11-30T10:01:00Z&to=2026-11-30T10:03:30.500Z");
        assert_eq!(
            comparable(&ok(&es_api, &ranged)),
            comparable(&ok(&store_api, &ranged)),
            "{query} in a range"
        );
    }
    took.sort_unstable();
    eprintln!(
        "{} queries on osmem: median took_ms {}, max {}",
        took.len(),
        took[took.len() / 2],
        took[took.len() - 1]
    );

    // Histograms and facets answer the same counts.
    for query in ["", "severity:<=warning", "host:web-*"] {
        let q = encode(query);
        let histogram = format!(
            "/api/v1/histogram?q={q}&from=2026-11-30T10:00:00Z&to=2026-11-30T10:06:00Z&buckets=12"
        );
        let (a, b) = (ok(&store_api, &histogram), ok(&es_api, &histogram));
        assert_eq!(a["buckets"], b["buckets"], "{query}");
        assert_eq!(a["width_ms"], 30_000);
        assert_eq!(b["total"], a["total"]);
        assert!(a["total"].as_u64().unwrap() > 0, "{query}");
        for field in [
            "host",
            "severity",
            "facility",
            "app",
            "sd.origin.ip",
            "entry",
        ] {
            let facets = format!("/api/v1/fields?q={q}&field={field}&top=20");
            let (a, b) = (ok(&store_api, &facets), ok(&es_api, &facets));
            assert_eq!(a["values"], b["values"], "{query} {field}");
            assert_eq!(a["missing"], b["missing"], "{query} {field}");
            assert_eq!(a["distinct"], b["distinct"], "{query} {field}");
        }
    }
    let all = ok(
        &es_api,
        "/api/v1/histogram?from=2026-11-30T10:00:00Z&to=2026-11-30T10:06:00Z",
    );
    assert_eq!(all["total"], total);
    assert_eq!(all["buckets"].as_array().unwrap().len(), 36);

    // Pages of 4 (newest first) and of 3 (oldest first) through the records that share their
    // time: each record once, in the order of one big page.
    for (order, limit) in [("newest", 4), ("oldest", 3)] {
        let whole = ok(&es_api, &format!("/api/v1/search?limit=1000&order={order}"));
        let whole: Vec<Value> = whole["records"].as_array().unwrap().clone();
        assert_eq!(whole.len(), total);
        let mut paged = Vec::new();
        let mut target = format!("/api/v1/search?limit={limit}&order={order}");
        let mut pages = 0;
        loop {
            let page = ok(&es_api, &target);
            pages += 1;
            let records = page["records"].as_array().unwrap();
            paged.extend(records.iter().cloned());
            match page["next"].as_str() {
                Some(next) => {
                    assert_eq!(records.len(), limit);
                    assert_eq!(page["truncated"], Value::Bool(true));
                    target = format!("/api/v1/search?limit={limit}&order={order}&cursor={next}");
                }
                None => break,
            }
        }
        assert_eq!(pages, total.div_ceil(limit), "{order}");
        assert_eq!(paged, whole, "{order}");
    }

    // A bad query is a 400 naming the column, before the cluster is asked; so is a cursor of
    // the store, and counting the analyzed message.
    let (status, error) = get(&es_api, "/api/v1/search?q=timeout+AND+(disk+OR+)");
    assert_eq!(status, 400);
    assert_eq!(error["error"], "unexpected ')' at column 22");
    assert_eq!(error["column"], 22);
    let (status, error) = get(&es_api, "/api/v1/search?cursor=1.2.0000000a");
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["parameter"], "cursor");
    let (status, error) = get(&es_api, "/api/v1/fields?field=message");
    assert_eq!(status, 400, "{error}");
    assert_eq!(
        error["error"],
        "counting the values of the message (an analyzed text field) cannot be searched on \
         Elasticsearch at column 1"
    );

    // `logtail search --config` asks the cluster too.
    let config = es_dir.path().join("logtail.toml");
    let search = |args: &[&str]| {
        let out = process::logtail()
            .args(["search", "--config"])
            .arg(&config)
            .args(args)
            .output()
            .expect("logtail search runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let expected = ok(&es_api, "/api/v1/search?q=host:web-01&limit=1000");
    let printed: Vec<Value> = search(&["--limit", "0", "host:web-01"])
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(&printed, expected["records"].as_array().unwrap());
    assert_eq!(search(&["--count", "severity:<=warning"]), {
        let n = ok(
            &store_api,
            "/api/v1/search?limit=1000&q=severity:%3C%3Dwarning",
        )["records"]
            .as_array()
            .unwrap()
            .len();
        format!("{n}\n")
    });
    assert_eq!(
        search(&[
            "--histogram",
            "5m",
            "--from",
            "2026-11-30T10:00:00Z",
            "--to",
            "2026-11-30T10:10:00Z",
            "--format",
            "text"
        ]),
        "2026-11-30T10:00:00.000000Z 69\n2026-11-30T10:05:00.000000Z 12\n"
    );
    let out = process::logtail()
        .args(["search", "--follow", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("live tail"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop((store, indexer));
}

/// Elasticsearch refusing connections, and one that accepts but never answers: a 502 with a
/// JSON message, within the configured timeout, never a hang.
#[test]
fn a_cluster_down_or_silent_is_a_502_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let refused = TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_addr = refused.local_addr().unwrap().to_string();
    drop(refused);
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    // Accepts connections and holds them without a word, for as long as the test runs.
    silent.set_nonblocking(true).unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let held = std::thread::spawn({
        let done = done.clone();
        move || {
            let mut open = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                match silent.accept() {
                    Ok(conn) => open.push(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    });
    let check = |search_endpoint: &str, expect: &str| {
        let dir = dir.path().join(search_endpoint.replace(':', "_"));
        std::fs::create_dir_all(&dir).unwrap();
        let served: Served = process::serve(&process::write_config(
            &dir,
            &indexer_config(&refused_addr, search_endpoint, 800),
        ));
        let api = served.api.clone().expect("the API is served");
        for target in [
            "/api/v1/search?q=timeout",
            "/api/v1/histogram?q=timeout",
            "/api/v1/fields?field=host",
        ] {
            let started = Instant::now();
            let (status, body) = get(&api, target);
            let elapsed = started.elapsed();
            assert_eq!(status, 502, "{target}: {body}");
            let message = body["error"].as_str().unwrap();
            assert!(message.starts_with("elasticsearch: "), "{message}");
            assert!(message.contains(expect), "{message}");
            assert!(elapsed < Duration::from_secs(5), "{target}: {elapsed:?}");
        }
        served.sigterm_and_wait();
    };
    check(&refused_addr, "no endpoint reachable");
    check(&silent_addr, "no answer within 800ms");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    held.join().unwrap();
}

/// Documents that share their sort values (the same `timestamp` and `received_at` to the
/// millisecond), and documents without a `timestamp`, paged a few at a time through the
/// library: every document once, in the order of one big page, whatever the page size; the
/// documents without a `timestamp` last newest first, first oldest first.
#[test]
fn pages_step_over_documents_sharing_their_sort_values() {
    use logtail::search::config::ElasticsearchSearchConfig;
    use logtail::search::elasticsearch::ElasticsearchSearch;
    use logtail::search::{Order, SearchOptions};

    let Some(osmem) = Osmem::start("pages_step_over_documents_sharing_their_sort_values") else {
        return;
    };
    let template = logtail::sink::elasticsearch::index_template_body(&Default::default());
    let (status, body) = common::osmem::request(
        osmem.addr(),
        "PUT",
        "/_index_template/logtail",
        Some(std::str::from_utf8(&template).unwrap()),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let mut bulk = String::new();
    for n in 0..30 {
        let document = match n {
            // Twelve with the same time and receipt, to the microsecond.
            0..12 => format!(
                r#"{{"timestamp":"2026-11-30T10:00:05.000100Z","message":"tie {n}","received_at":"2026-11-30T10:00:06.000200Z"}}"#
            ),
            // Four without a timestamp.
            12..16 => format!(
                r#"{{"message":"untimed {n}","received_at":"2026-11-30T10:00:{n:02}.000000Z"}}"#
            ),
            _ => format!(
                r#"{{"timestamp":"2026-11-30T10:00:{n:02}.000000Z","message":"spread {n}","received_at":"2026-11-30T10:01:00.000000Z"}}"#
            ),
        };
        bulk += &format!(
            "{{\"create\":{{\"_index\":\"logs-2026.11.30\",\"_id\":\"{n}\"}}}}\n{document}\n"
        );
    }
    let (status, body) =
        common::osmem::request(osmem.addr(), "POST", "/_bulk?refresh=true", Some(&bulk)).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("\"errors\":true"), "{body}");

    let config = ElasticsearchSearchConfig {
        endpoints: vec![format!("http://{}", osmem.addr()).try_into().unwrap()],
        ..ElasticsearchSearchConfig::default()
    };
    let cluster = ElasticsearchSearch::new(&config).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let messages = |records: &[Vec<u8>]| -> Vec<String> {
        records
            .iter()
            .map(|r| {
                serde_json::from_slice::<Value>(r).unwrap()["message"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    for order in [Order::NewestFirst, Order::OldestFirst] {
        let opts = |limit| SearchOptions {
            from_us: None,
            to_us: None,
            limit: Some(limit),
            order,
            follow: false,
            threads: 1,
        };
        let whole = runtime
            .block_on(cluster.page("", &opts(1000), None, usize::MAX))
            .unwrap();
        assert_eq!(whole.next, None);
        let whole = messages(&whole.records);
        assert_eq!(whole.len(), 30);
        let untimed: Vec<&String> = whole.iter().filter(|m| m.starts_with("untimed")).collect();
        let at = whole.iter().position(|m| m.starts_with("untimed")).unwrap();
        assert_eq!(
            at,
            if order == Order::NewestFirst { 26 } else { 0 },
            "{whole:?}"
        );
        assert_eq!(untimed.len(), 4);
        // A byte cap of 1 cuts every page to one record, like a limit of 1.
        for (limit, max_bytes) in [
            (1, usize::MAX),
            (3, usize::MAX),
            (5, usize::MAX),
            (7, usize::MAX),
            (12, usize::MAX),
            (13, usize::MAX),
            (10, 1),
        ] {
            let (mut paged, mut after, mut skips) = (Vec::new(), None, Vec::new());
            loop {
                let page = runtime
                    .block_on(cluster.page("", &opts(limit), after, max_bytes))
                    .unwrap();
                let most = if max_bytes == 1 { 1 } else { limit };
                assert!(page.records.len() <= most);
                paged.extend(messages(&page.records));
                match page.next {
                    Some(next) => {
                        skips.push(next.skip);
                        after = Some(next);
                    }
                    None => break,
                }
            }
            assert_eq!(
                paged, whole,
                "{order:?}, pages of {limit}, {max_bytes} bytes"
            );
            if limit < 12 || max_bytes == 1 {
                assert!(skips.iter().any(|&skip| skip > 1), "{skips:?}");
            }
        }
    }
}
