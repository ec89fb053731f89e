//! The web console in a real browser: Debian's `chromium` driven through `chromedriver`
//! (WebDriver), against `logtail serve` with lines sent over TCP, a real etcd and a real agent.
//!
//! Each test saves a screenshot of its page under `target/console-screenshots/`. `tests/run.sh`
//! installs the browser (`apt-get install chromium chromium-driver`); where it is missing the
//! tests say they are skipped, except under `CI=true`, where that is a failure.

use test_fixtures as common;
#[path = "console/webdriver.rs"]
mod webdriver;

use std::path::PathBuf;
use std::time::Duration;

use common::agent::{AgentDir, append, numbered};
use common::etcd::{Etcd, binary_or_skip};
use common::process::{Served, serve_tcp_in};
use webdriver::Browser;

const WAIT: Duration = Duration::from_secs(30);

/// A browser at 1280×800, or `None` after saying the test is skipped (a failure under CI).
fn browser_or_skip(test: &str) -> Option<Browser> {
    let (driver, chromium) = test_support::ci::or_skip(
        webdriver::binaries(),
        test,
        "chromium and chromedriver are not installed \
         (tests/run.sh installs them: apt-get install chromium chromium-driver)",
    )?;
    Some(Browser::start(&driver, &chromium, 1280, 800))
}

fn screenshot(browser: &Browser, name: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/console-screenshots")
        .join(format!("{name}.png"));
    browser.screenshot(&path);
}

/// `logtail serve` in `dir` with one TCP listener, the HTTP server on an ephemeral port and the
/// sections `more` in its configuration; returns it and its console's base URL.
fn gateway(dir: &std::path::Path, more: &str) -> (Served, String) {
    let (served, _tcp) = serve_tcp_in(dir, more);
    let base = format!(
        "http://{}",
        served.metrics.clone().expect("the HTTP server's address")
    );
    (served, base)
}

const HOST_KEY: &str = "/logtail/agents/testhost/config";

#[test]
fn agents_form_edits_the_etcd_key_refuses_a_bad_glob_by_field_and_the_agent_follows() {
    let test = "agents_form_edits_the_etcd_key";
    let Some(etcd_binary) = binary_or_skip(test) else {
        return;
    };
    let Some(browser) = browser_or_skip(test) else {
        return;
    };
    let t = AgentDir::new();
    let etcd = Etcd::start(&etcd_binary, t.dir.path());
    let entry = |name: &str, file: &str| {
        format!(
            r#"{{"name": "{name}", "paths": [{:?}], "start_at": "beginning"}}"#,
            t.logs(file)
        )
    };
    etcd.put(
        HOST_KEY,
        &format!(r#"{{"collect": [{}]}}"#, entry("a", "a.log")),
    );
    let (gateway, base) = gateway(
        t.dir.path(),
        &format!("[console]\netcd = [{:?}]\n", etcd.endpoint),
    );
    t.write_config("");
    let agent = t.start(&["--etcd", &etcd.endpoint, "--host", "testhost"]);
    let (mut a, mut b) = (append(&t.logs("a.log")), append(&t.logs("b.log")));
    std::io::Write::write_all(&mut a, format!("{}\n", numbered(1)).as_bytes()).unwrap();
    t.wait_for_line(&numbered(1), WAIT);

    browser.open(&format!("{base}/agents"));
    browser.click("#agent-hosts li[data-host=testhost]");
    browser.wait_until(
        "the entry form",
        "return document.querySelector('#agent-entries .entry [name=name]')?.value === 'a'",
    );
    let (_, loaded_revision) = etcd.get(HOST_KEY).expect("the key");
    assert!(
        browser
            .text("#agent-revision")
            .ends_with(&format!("revision {loaded_revision}")),
        "{}",
        browser.text("#agent-revision")
    );

    // An invalid glob: refused by the agent's validation, named next to its field, not written.
    browser.type_into(
        "#agent-entries .entry [name=paths]",
        &format!("{}/[unclosed", t.logs("").display()),
    );
    browser.click("#agent-save");
    let error = browser.wait_until(
        "the field error",
        "return document.querySelector('.field-error[data-field=\"collect[0].paths[0]\"]')?.textContent",
    );
    assert!(error.as_str().unwrap().contains("is not a glob"), "{error}");
    assert!(
        browser
            .text("#agent-message")
            .starts_with("Not saved: collect[0].paths[0]: ")
    );
    assert_eq!(etcd.get(HOST_KEY).unwrap().1, loaded_revision);
    screenshot(&browser, "agents-invalid");

    // A valid edit: entry a now collects b.log; the key changes and the agent follows.
    browser.type_into(
        "#agent-entries .entry [name=paths]",
        &t.logs("b.log").display().to_string(),
    );
    browser.type_into("#agent-entries .entry [name=tags]", "web, edited");
    browser.click("#agent-save");
    browser.wait_until(
        "the save",
        "return document.querySelector('#agent-message .ok')?.textContent",
    );
    let (value, revision) = etcd.get(HOST_KEY).expect("the key");
    assert!(revision > loaded_revision);
    let stored: serde_json::Value = serde_json::from_str(&value).unwrap();
    assert_eq!(
        stored,
        serde_json::json!({"collect": [{
            "name": "a",
            "paths": [t.logs("b.log")],
            "start_at": "beginning",
            "tags": ["web", "edited"],
        }]})
    );
    std::io::Write::write_all(&mut b, format!("{}\n", numbered(2)).as_bytes()).unwrap();
    t.wait_for_line(&numbered(2), WAIT);
    screenshot(&browser, "agents");

    // Someone else writes the key: saving the stale form is refused (compare-and-swap).
    etcd.put(
        HOST_KEY,
        &format!(r#"{{"collect": [{}]}}"#, entry("a", "a.log")),
    );
    browser.type_into("#agent-entries .entry [name=app]", "stale");
    browser.click("#agent-save");
    let conflict = browser.wait_until(
        "the conflict",
        "return document.querySelector('#agent-message .error')?.textContent",
    );
    assert!(
        conflict
            .as_str()
            .unwrap()
            .contains("was changed by someone else"),
        "{conflict}"
    );
    assert!(!etcd.get(HOST_KEY).unwrap().0.contains("stale"));

    agent.sigterm_and_wait();
    gateway.sigterm_and_wait();
}

/// Sends `lines` to the gateway's TCP listener, one per LF, and closes the connection.
fn send_tcp(address: &str, lines: &[String]) {
    let mut stream = std::net::TcpStream::connect(address).expect("the TCP listener");
    for line in lines {
        std::io::Write::write_all(&mut stream, format!("{line}\n").as_bytes()).unwrap();
    }
}

/// An RFC 5424 line with priority `pri`, timestamped now, and later than every line made before
/// (two lines made within a microsecond would have no order newest-first).
fn line(pri: u8, host: &str, app: &str, message: &str) -> String {
    use std::sync::atomic::{AtomicI64, Ordering::SeqCst};
    static LAST_US: AtomicI64 = AtomicI64::new(0);
    let now = chrono::Utc::now().timestamp_micros();
    let mut last = LAST_US.load(SeqCst);
    let us = loop {
        let us = now.max(last + 1);
        match LAST_US.compare_exchange(last, us, SeqCst, SeqCst) {
            Ok(_) => break us,
            Err(seen) => last = seen,
        }
    };
    let time = chrono::DateTime::from_timestamp_micros(us)
        .expect("a time")
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    format!("<{pri}>1 {time} {host} {app} - - - {message}")
}

/// `GET base/path` over one connection; the body.
fn http_get(base: &str, path: &str) -> String {
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("the HTTP server");
    std::io::Write::write_all(
        &mut stream,
        format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// Waits until a search for everything finds `count` records.
fn wait_until_searchable(base: &str, count: usize) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let body = http_get(base, "/api/v1/search?limit=1000");
        let found = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["records"].as_array().map(Vec::len));
        if found == Some(count) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the store did not show {count} records: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The messages of the search results table, top to bottom.
fn result_messages(browser: &Browser) -> Vec<String> {
    let value = browser.script(
        "return [...document.querySelectorAll('#results tbody tr.record td.message')]\
         .map((td) => td.textContent)",
        vec![],
    );
    serde_json::from_value(value).unwrap()
}

/// Runs `query` from the search box (typed, then Enter) and waits for its answer.
fn run_query(browser: &Browser, query: &str) {
    browser.type_into("#q", &format!("{query}\u{E007}"));
    wait_for_search(browser);
}

fn wait_for_search(browser: &Browser) {
    browser.wait_until(
        "the search to answer",
        "const s = document.getElementById('results-summary').textContent; \
         return !document.getElementById('query-error').hidden || (s !== '' && s !== 'searching…' \
         && document.getElementById('histogram-total').textContent !== '' \
         && document.querySelector('#facets ul[data-field=host]').children.length > 0) \
         || !document.getElementById('results-empty').hidden",
    );
}

const XSS_IMG: &str = "<img src=x onerror=alert(1)>";
const XSS_SCRIPT: &str = "<script>alert(2)</script>";

#[test]
fn search_finds_by_word_host_and_severity_facets_narrow_and_html_in_lines_stays_text() {
    let Some(browser) = browser_or_skip("search_finds_by_word_host_and_severity") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (gateway, base) = gateway(dir.path(), "");
    let lines = [
        line(11, "web-1", "nginx", "upstream timeout talking to db"),
        line(14, "web-2", "nginx", "request served in 3 ms"),
        line(12, "db-1", "postgres", "checkpoint timeout reached"),
        line(10, "db-1", "postgres", "disk failure on /dev/sda"),
        line(14, "web-1", "evil", XSS_IMG),
        line(14, "web-1", "evil", XSS_SCRIPT),
    ];
    send_tcp(gateway.tcp.as_deref().expect("a TCP listener"), &lines);
    wait_until_searchable(&base, lines.len());

    // Everything in the last hour, newest first; facets count every host.
    browser.open(&format!("{base}/"));
    wait_for_search(&browser);
    let timing = browser.script(
        "const n = performance.getEntriesByType('navigation')[0]; \
         const r = performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/v1/search')); \
         return {load_ms: n.loadEventEnd, dom_ms: n.domContentLoadedEventEnd, \
                 search_answered_ms: r.length ? r[0].responseEnd : null}",
        vec![],
    );
    eprintln!("console page timing (ms from navigation start): {timing}");
    assert_eq!(
        result_messages(&browser),
        [
            XSS_SCRIPT,
            XSS_IMG,
            "disk failure on /dev/sda",
            "checkpoint timeout reached",
            "request served in 3 ms",
            "upstream timeout talking to db"
        ]
    );
    let facet: serde_json::Value = browser.script(
        "return [...document.querySelectorAll('#facets ul[data-field=host] li')]\
         .map((li) => li.textContent)",
        vec![],
    );
    assert_eq!(facet, serde_json::json!(["web-13", "db-12", "web-21"]));

    // HTML and script in lines are shown as their characters and run nothing.
    let injected = browser.script(
        "return document.querySelectorAll('#results img, #results script').length",
        vec![],
    );
    assert_eq!(injected, 0);
    assert_eq!(browser.alert_text(), None, "an alert() ran");
    screenshot(&browser, "search");

    // `/` focuses the query box; Enter runs it. A word:
    browser.script("document.activeElement.blur()", vec![]);
    browser.keys("/");
    assert_eq!(
        browser.script("return document.activeElement.id", vec![]),
        "q"
    );
    browser.keys("timeout\u{E007}");
    wait_for_search(&browser);
    assert_eq!(
        result_messages(&browser),
        [
            "checkpoint timeout reached",
            "upstream timeout talking to db"
        ]
    );
    assert_eq!(browser.text("#histogram-total"), "2 matches");
    assert!(
        browser
            .script("return location.search", vec![])
            .as_str()
            .unwrap()
            .contains("q=timeout"),
        "the query is in the URL"
    );

    // A host and a severity comparison.
    run_query(&browser, "host:db-1");
    assert_eq!(
        result_messages(&browser),
        ["disk failure on /dev/sda", "checkpoint timeout reached"]
    );
    run_query(&browser, "severity:<=err");
    assert_eq!(
        result_messages(&browser),
        ["disk failure on /dev/sda", "upstream timeout talking to db"]
    );
    assert_eq!(browser.text("#histogram-total"), "2 matches");

    // A facet click narrows: `nginx` added to the query.
    run_query(&browser, "");
    browser.click("#facets ul[data-field=app] li[title*=nginx]");
    browser.wait_until(
        "the facet's query",
        "return document.getElementById('q').value === 'app:nginx'",
    );
    wait_for_search(&browser);
    assert_eq!(
        result_messages(&browser),
        ["request served in 3 ms", "upstream timeout talking to db"]
    );

    // A row expands to every field and the raw record.
    browser.click("#results tbody tr.record");
    let raw = browser.text("#results tr.detail pre.raw");
    assert!(raw.contains("\"app\": \"nginx\""), "{raw}");
    // ...and shows the same host's lines around it, the hit marked.
    browser.click("#results tr.detail .show-context");
    let context = browser.wait_until(
        "the context",
        "return [...document.querySelectorAll('#results .context tr')]\
         .map((tr) => (tr.classList.contains('hit') ? '*' : '') + tr.lastChild.textContent).join('|')",
    );
    assert_eq!(context, "*request served in 3 ms");

    // A click on the histogram zooms into its bucket: an absolute range, in the URL.
    browser.click("#histogram");
    browser.wait_until(
        "the zoomed range",
        "return document.getElementById('range').value === 'abs' && location.search.includes('from=')",
    );
    wait_for_search(&browser);

    // A bad query is an error that points at its column.
    run_query(&browser, "(timeout");
    let message = browser.text("#query-error-message");
    assert!(message.contains("column 1"), "{message}");
    assert_eq!(
        browser.script(
            "return document.getElementById('query-error-where').textContent",
            vec![]
        ),
        "(timeout\n^"
    );
    screenshot(&browser, "search-error");

    browser.resize(390, 844);
    run_query(&browser, "");
    screenshot(&browser, "search-phone");
    gateway.sigterm_and_wait();
}

#[test]
fn live_tail_shows_a_new_line_within_a_second_and_pause_stops_it() {
    let Some(browser) = browser_or_skip("live_tail_shows_a_new_line_within_a_second") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (gateway, base) = gateway(dir.path(), "");
    let tcp = gateway.tcp.clone().expect("a TCP listener");
    browser.open(&format!("{base}/tail"));
    browser.wait_until(
        "the tail to connect",
        "return document.getElementById('tail-state').textContent === 'live'",
    );
    let tail_messages = "return [...document.querySelectorAll('#tail-rows tbody td.message')]\
                         .map((td) => td.textContent).join('|')";

    let sent = std::time::Instant::now();
    send_tcp(&tcp, &[line(14, "web-1", "app", "first tailprobe")]);
    browser.wait_until_for(
        "the line in the tail",
        &format!("{tail_messages}.includes('first tailprobe')"),
        Duration::from_secs(5),
    );
    let took = sent.elapsed();
    eprintln!("TCP send -> row in the live tail: {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");

    browser.click("#tail-pause");
    send_tcp(&tcp, &[line(14, "web-1", "app", "second tailprobe")]);
    browser.wait_until(
        "the paused tail to count the line",
        "return document.getElementById('tail-state').textContent === 'paused: 1 lines not shown'",
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(browser.script(tail_messages, vec![]), "first tailprobe");

    browser.click("#tail-pause");
    send_tcp(&tcp, &[line(11, "web-1", "app", "third tailprobe")]);
    browser.wait_until(
        "the resumed tail",
        &format!("{tail_messages}.includes('third tailprobe')"),
    );
    assert_eq!(
        browser.script(tail_messages, vec![]),
        "third tailprobe|first tailprobe"
    );
    screenshot(&browser, "tail");

    // A burst: the page shows a sample, says so, and keeps at most 2000 rows.
    let burst: Vec<String> = (0..6000)
        .map(|i| line(14, "web-1", "app", &format!("burst {i}")))
        .collect();
    send_tcp(&tcp, &burst);
    let notice = browser.wait_until(
        "the sample notice",
        "const n = document.getElementById('tail-notice'); return !n.hidden && n.textContent",
    );
    assert!(
        notice
            .as_str()
            .unwrap()
            .starts_with("High rate: showing a sample"),
        "{notice}"
    );
    browser.wait_until(
        "the last line of the burst",
        &format!("return document.getElementById('tail-rate').textContent !== '0 lines/s' && {}.includes('burst')", tail_messages.trim_start_matches("return ")),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let rows = browser.script(
        "return document.querySelectorAll('#tail-rows tbody tr').length",
        vec![],
    );
    let rows = rows.as_u64().unwrap();
    assert!((50..=2000).contains(&rows), "{rows} rows kept");
    gateway.sigterm_and_wait();
}

#[test]
fn status_page_counts_what_the_listener_received() {
    let Some(browser) = browser_or_skip("status_page_counts_what_the_listener_received") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (gateway, base) = gateway(dir.path(), "");
    let lines: Vec<String> = (0..25)
        .map(|i| line(14, "web-1", "app", &format!("status line {i}")))
        .collect();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    send_tcp(gateway.tcp.as_deref().expect("a TCP listener"), &lines);
    browser.open(&format!("{base}/status"));
    browser.wait_until_for(
        "the listener's count",
        "return document.querySelector('#status-listeners td[data-col=received_lines]')\
         ?.textContent === '25'",
        WAIT,
    );
    assert_eq!(
        browser.text("#status-listeners td[data-col=received_bytes]"),
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    );
    screenshot(&browser, "status");
    gateway.sigterm_and_wait();
}

#[test]
fn with_a_token_file_the_console_asks_for_the_token_once() {
    let Some(browser) = browser_or_skip("with_a_token_file_the_console_asks_for_the_token_once")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token = "console-test-token-0123456789";
    std::fs::write(dir.path().join("api.token"), format!("{token}\n")).unwrap();
    let (gateway, base) = gateway(
        dir.path(),
        &format!(
            "[api]\ntoken_file = {:?}\n",
            dir.path().join("api.token").display().to_string()
        ),
    );
    send_tcp(
        gateway.tcp.as_deref().expect("a TCP listener"),
        &[line(14, "web-1", "app", "behind a token")],
    );
    assert!(
        http_get(&base, "/api/v1/agents").contains("needs a bearer token"),
        "the agent endpoints need the token too"
    );

    browser.open(&format!("{base}/"));
    browser.wait_until(
        "the token dialog",
        "return document.getElementById('token-dialog').open",
    );
    screenshot(&browser, "token");
    browser.type_into("#token-input", &format!("{token}\u{E007}"));
    browser.wait_until_for(
        "the search behind the token",
        "return [...document.querySelectorAll('#results td.message')]\
         .some((td) => td.textContent === 'behind a token')",
        WAIT,
    );

    // Opened again: the token is remembered, nothing is asked.
    browser.open(&format!("{base}/?q=token"));
    wait_for_search(&browser);
    assert_eq!(result_messages(&browser), ["behind a token"]);
    assert_eq!(
        browser.script(
            "return document.getElementById('token-dialog').open",
            vec![]
        ),
        false
    );
    gateway.sigterm_and_wait();
}
