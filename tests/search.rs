//! `logtail search` end to end: a gateway stores lines sent over TCP, then the binary searches
//! the store with each query form, time ranges, --count, --histogram, --follow, and bad queries.

use test_fixtures as common;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::process::{self, Follower, Served, logtail};

/// Starts `logtail serve` with one TCP listener and the store under `dir/data`.
fn serve(dir: &Path) -> (Served, String) {
    process::serve_tcp_in(dir, "")
}

/// What the store holds, in the order sent (one connection: one shard, so stored in order).
const LINES: &[&str] = &[
    r#"<11>1 2026-11-21T10:00:00Z web-01 nginx 4242 REQ [origin ip="10.0.0.1"][logtail@32473 entry="web" file="/var/log/nginx/error.log" tags="prod,eu"] upstream timed out (110: Connection timed out) status=504"#,
    "<134>1 2026-11-21T10:01:30Z db-1 postgres 77 - - connection reset by peer",
    "<12>Nov 21 10:02:10 web-02 sshd[99]: Failed password for root",
    "<14>1 2026-11-21T10:03:00.5+00:00 web-01 app - - - disk full on /var",
];

/// The message of each line, by index into [`LINES`].
const MESSAGES: &[&str] = &[
    "upstream timed out (110: Connection timed out) status=504",
    "connection reset by peer",
    "Failed password for root",
    "disk full on /var",
];

/// A stopped gateway's store holding [`LINES`].
fn stored() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, tcp) = serve(dir.path());
    let mut conn = TcpStream::connect(&tcp).unwrap();
    for line in LINES {
        conn.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
    drop(conn);
    std::thread::sleep(Duration::from_millis(300));
    gateway.sigterm_and_wait();
    let store = dir.path().join("data/store");
    (dir, store)
}

fn run(store: &Path, args: &[&str]) -> Output {
    logtail()
        .arg("search")
        .arg("--dir")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

fn stdout_lines(store: &Path, args: &[&str]) -> Vec<String> {
    let out = run(store, args);
    assert!(
        out.status.success(),
        "search {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The messages of the records `search ARGS` prints, as indexes into [`MESSAGES`].
fn found(store: &Path, args: &[&str]) -> Vec<usize> {
    stdout_lines(store, args)
        .iter()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            let message = record["message"].as_str().unwrap();
            MESSAGES
                .iter()
                .position(|m| *m == message)
                .unwrap_or_else(|| panic!("unexpected record {line}"))
        })
        .collect()
}

#[test]
fn each_query_form_finds_its_records_newest_first() {
    let (_dir, store) = stored();
    for (query, expected) in [
        ("", &[3, 2, 1, 0][..]),
        ("timed", &[0]),
        ("TIMED", &[0]),
        ("time*", &[0]),
        ("time", &[]),
        (r#""CONNECTION RESET""#, &[1]),
        (r"/Fail(ed)? \w+/", &[2]),
        ("host:web-*", &[3, 2, 0]),
        ("host:WEB-01", &[3, 0]),
        ("app:\"postgres\"", &[1]),
        ("severity:err", &[0]),
        ("severity:<=warning", &[2, 0]),
        ("severity:4", &[2]),
        ("facility:local0", &[1]),
        ("sd.origin.ip:10.0.0.1", &[0]),
        ("entry:web", &[0]),
        ("file:/var/log/nginx/*", &[0]),
        ("tags:eu", &[0]),
        ("msgid:req", &[0]),
        ("_exists_:procid", &[2, 1, 0]),
        ("-host:web-01", &[2, 1]),
        ("NOT host:web-01", &[2, 1]),
        ("app:sshd OR app:postgres", &[2, 1]),
        ("host:(db-1 OR web-02)", &[2, 1]),
        ("severity:(err OR info) host:web-01", &[3, 0]),
        ("host:web-* (disk OR timed)", &[3, 0]),
        ("connection -reset", &[0]),
    ] {
        assert_eq!(found(&store, &[query]), expected, "query {query:?}");
    }
}

#[test]
fn order_limit_and_time_range() {
    let (_dir, store) = stored();
    assert_eq!(found(&store, &["--oldest-first"]), [0, 1, 2, 3]);
    assert_eq!(found(&store, &["--limit", "2"]), [3, 2]);
    assert_eq!(found(&store, &["--oldest-first", "-n", "2"]), [0, 1]);
    assert_eq!(
        found(&store, &["--oldest-first", "--limit", "0"]),
        [0, 1, 2, 3]
    );
    // The time is the event timestamp (2026-11-21), not when the gateway received it (now).
    let range = [
        "--from",
        "2026-11-21T10:01:00Z",
        "--to",
        "2026-11-21T10:03:00.5Z",
    ];
    assert_eq!(found(&store, &[&range[..], &["-app:sshd"]].concat()), [1]);
    let range = [
        "--from",
        "2026-11-21 10:00",
        "--to",
        "2026-11-21T11:01:00+01:00",
    ];
    assert_eq!(found(&store, &[&range[..], &["-app:sshd"]].concat()), [0]);
    assert_eq!(found(&store, &["--since", "1h"]), Vec::<usize>::new());
    assert_eq!(
        found(&store, &["--from", "2026-11-21", "-app:sshd"]),
        [3, 1, 0]
    );
}

#[test]
fn json_lines_are_exactly_what_read_prints() {
    let (_dir, store) = stored();
    let read = logtail()
        .arg("read")
        .arg("--dir")
        .arg(&store)
        .output()
        .unwrap();
    assert!(read.status.success());
    let searched = run(&store, &["--oldest-first"]);
    assert!(searched.status.success());
    assert_eq!(
        String::from_utf8_lossy(&searched.stdout),
        String::from_utf8_lossy(&read.stdout)
    );
}

#[test]
fn text_format_is_one_readable_line() {
    let (_dir, store) = stored();
    assert_eq!(
        stdout_lines(&store, &["--format", "text", "timed OR disk"]),
        [
            "2026-11-21T10:03:00.5+00:00 web-01 app info: disk full on /var",
            "2026-11-21T10:00:00Z web-01 nginx[4242] err: upstream timed out (110: Connection timed out) status=504",
        ]
    );
}

#[test]
fn count_and_histogram() {
    let (_dir, store) = stored();
    assert_eq!(stdout_lines(&store, &["--count", "host:web-*"]), ["3"]);
    assert_eq!(
        stdout_lines(&store, &["--count", "nothing-like-this"]),
        ["0"]
    );
    let range = [
        "--from",
        "2026-11-21T10:00:00Z",
        "--to",
        "2026-11-21T10:04:00Z",
    ];
    assert_eq!(
        stdout_lines(
            &store,
            &[
                &range[..],
                &["--histogram", "1m", "--format", "text", "-app:sshd"]
            ]
            .concat()
        ),
        [
            "2026-11-21T10:00:00.000000Z 1",
            "2026-11-21T10:01:00.000000Z 1",
            "2026-11-21T10:02:00.000000Z 0",
            "2026-11-21T10:03:00.000000Z 1",
        ]
    );
    // Without a range: from the first to the last match; JSON by default.
    assert_eq!(
        stdout_lines(&store, &["--histogram", "2m", "host:web-01"]),
        [
            r#"{"time":"2026-11-21T10:00:00.000000Z","count":1}"#,
            r#"{"time":"2026-11-21T10:02:00.000000Z","count":1}"#,
        ]
    );
    let out = run(
        &store,
        &[
            "--histogram",
            "1s",
            "--from",
            "2000-01-01",
            "--to",
            "2026-01-01",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("too many"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_queries_exit_2_with_the_column() {
    let (_dir, store) = stored();
    for (query, message) in [
        ("timed AND (disk OR )", "unexpected ')' at column 20"),
        ("severity:warm", "unknown severity 'warm' at column 10"),
        ("host:", "missing value after 'host:' at column 6"),
        ("\"open", "unterminated quoted text at column 1"),
        ("/(/", "invalid regex"),
    ] {
        let out = run(&store, &[query]);
        assert_eq!(out.status.code(), Some(2), "{query:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{query:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{query:?}");
    }
    // The caret points at the column.
    let out = run(&store, &["a )"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: unexpected ')' at column 3\n  a )\n    ^\n"
    );
}

#[test]
fn no_store_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&dir.path().join("nope"), &["x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no store at"));
}

#[test]
fn follow_prints_stored_matches_then_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, tcp) = serve(dir.path());
    let mut conn = TcpStream::connect(&tcp).unwrap();
    conn.write_all(
        b"<13>Nov 21 10:00:00 h app: alpha match\n<13>Nov 21 10:00:00 h app: beta other\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut follower = Follower::spawn(
        logtail()
            .args(["search", "--follow", "--format", "text", "--dir"])
            .arg(dir.path().join("data/store"))
            .arg("match"),
    );
    let line = follower.next_line();
    assert!(line.ends_with(": alpha match\n"), "{line}");
    conn.write_all(
        b"<13>Nov 21 10:00:01 h app: gamma nomatch\n<13>Nov 21 10:00:02 h app: delta match\n",
    )
    .unwrap();
    let line = follower.next_line();
    assert!(line.ends_with(": delta match\n"), "{line}");
    drop(follower);
    drop(conn);
    gateway.sigterm_and_wait();
}
