//! The agent's own metrics, scraped over real HTTP from `logtail agent`: exact counts of what it
//! read, cut, joined and had acknowledged, each file's lag, reconnects to an absent gateway, and
//! a taken port that leaves the agent collecting.

use test_fixtures as common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::agent::AgentDir;

/// `GET /metrics` on `address`: asserts 200 and the Prometheus content type; returns the body.
fn scrape(address: &str) -> String {
    let mut conn = TcpStream::connect(address).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_string()
}

/// The value of the sample `series` (name with labels, as exposed).
fn sample(body: &str, series: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_string)
}

/// Where the agent says its metrics are.
fn metrics_address(t: &AgentDir) -> String {
    t.wait_for_log("metrics at http://", Duration::from_secs(20));
    let log = t.agent_log();
    let rest = log.split("metrics at http://").nth(1).unwrap();
    rest.split("/metrics").next().unwrap().to_string()
}

/// Scrapes until `done` holds for the body; panics with the last body after 20 s.
fn scrape_until(address: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = scrape(address);
        if done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "never reached; last scrape:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn agent_metrics_count_reads_cuts_events_acks_and_lag_exactly() {
    let t = AgentDir::new();
    // 2 + 2 + 101 bytes; the 100-byte line is cut to 64.
    std::fs::write(t.logs("plain.log"), format!("a\nb\n{}\n", "x".repeat(100))).unwrap();
    // 8 + 7 + 8 + 7 + 7 bytes: two events.
    std::fs::write(
        t.logs("multi.log"),
        "START 1\n  cont\nSTART 2\n  cont\n  cont\n",
    )
    .unwrap();
    let rest = format!(
        "[metrics]\naddress = \"127.0.0.1:0\"\n\
         [[collect]]\nname = \"plain\"\npaths = [{plain:?}]\nstart_at = \"beginning\"\n\
         max_line_bytes = 64\n\
         [[collect]]\nname = \"multi\"\npaths = [{multi:?}]\nstart_at = \"beginning\"\n\
         [collect.multiline]\nstart_pattern = \"^START\"\nflush_timeout_ms = 100\n",
        plain = t.logs("plain.log"),
        multi = t.logs("multi.log"),
    );
    t.write_config(&rest);
    let agent = t.start(&[]);
    let address = metrics_address(&t);
    // 3 lines and 2 events, the events with their continuation lines: 8 lines in out.txt.
    t.wait_for_lines(8, Duration::from_secs(20));
    let plain = t.logs("plain.log").display().to_string();
    let multi = t.logs("multi.log").display().to_string();
    let lag_plain = format!("logtail_agent_file_lag_bytes{{entry=\"plain\",path=\"{plain}\"}}");
    let lag_multi = format!("logtail_agent_file_lag_bytes{{entry=\"multi\",path=\"{multi}\"}}");
    let body = scrape_until(&address, |b| {
        sample(b, "logtail_agent_acked_lines_total").as_deref() == Some("5")
            && sample(b, &lag_plain).as_deref() == Some("0")
            && sample(b, &lag_multi).as_deref() == Some("0")
            && sample(b, "logtail_agent_checkpoint_age_seconds").is_some()
    });
    for (series, value) in [
        ("logtail_agent_files_tailed", "2"),
        ("logtail_agent_entries", "2"),
        ("logtail_agent_read_bytes_total", "142"),
        ("logtail_agent_read_lines_total", "5"),
        ("logtail_agent_lines_cut_total", "1"),
        ("logtail_agent_multiline_events_total", "2"),
        ("logtail_agent_batches_in_flight", "0"),
        ("logtail_agent_reconnects_total", "0"),
        ("logtail_agent_etcd_state{state=\"off\"}", "1"),
        ("logtail_agent_etcd_state{state=\"watching\"}", "0"),
        ("logtail_agent_etcd_revision", "0"),
        ("logtail_agent_config_rejected_total", "0"),
    ] {
        assert_eq!(
            sample(&body, series).as_deref(),
            Some(value),
            "{series}\n{body}"
        );
    }
    let sent = sample(&body, "logtail_agent_batches_sent_total").unwrap();
    assert_eq!(
        sample(&body, "logtail_agent_batches_acked_total"),
        Some(sent.clone())
    );
    assert_eq!(
        sample(
            &body,
            "logtail_agent_ack_latency_seconds_count{shipper=\"file\"}"
        ),
        Some(sent),
        "one latency per acknowledged batch\n{body}"
    );
    assert!(
        body.contains("# TYPE logtail_agent_ack_latency_seconds summary\n"),
        "{body}"
    );
    let age: f64 = sample(&body, "logtail_agent_checkpoint_age_seconds")
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.0..20.0).contains(&age), "{age}");
    agent.sigterm_and_wait();
}

#[test]
fn an_absent_gateway_shows_as_reconnects_a_batch_in_flight_and_the_whole_file_as_lag() {
    let t = AgentDir::new();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    std::fs::write(t.logs("app.log"), "one\ntwo\nthree\n").unwrap();
    let rest = format!(
        "[metrics]\naddress = \"127.0.0.1:0\"\n{}",
        t.collect("app", &["app.log"])
    );
    t.write_config_shipping(
        &format!(
            "type = \"gateway\"\naddress = \"{closed}\"\nreconnect_min_ms = 10\n\
             reconnect_max_ms = 20\nshutdown_timeout_ms = 100\n"
        ),
        &rest,
    );
    let agent = t.start(&[]);
    let address = metrics_address(&t);
    let lag = format!(
        "logtail_agent_file_lag_bytes{{entry=\"app\",path=\"{}\"}}",
        t.logs("app.log").display()
    );
    let body = scrape_until(&address, |b| {
        sample(b, "logtail_agent_reconnects_total")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 3)
            && sample(b, &lag).is_some()
    });
    assert_eq!(sample(&body, &lag).as_deref(), Some("14"), "{body}");
    assert_eq!(
        sample(&body, "logtail_agent_read_lines_total").as_deref(),
        Some("3")
    );
    assert_eq!(
        sample(&body, "logtail_agent_batches_in_flight").as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(&body, "logtail_agent_acked_lines_total").as_deref(),
        Some("0")
    );
    agent.sigterm_and_wait();
}

#[test]
fn a_taken_metrics_port_is_logged_and_the_agent_still_collects() {
    let t = AgentDir::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    std::fs::write(t.logs("app.log"), "kept\n").unwrap();
    t.write_config(&format!(
        "[metrics]\naddress = \"{address}\"\n{}",
        t.collect("app", &["app.log"])
    ));
    let agent = t.start(&[]);
    t.wait_for_log(
        &format!("metrics endpoint: cannot listen on {address}"),
        Duration::from_secs(20),
    );
    assert_eq!(t.wait_for_lines(1, Duration::from_secs(20)), ["kept"]);
    agent.sigterm_and_wait();
}
