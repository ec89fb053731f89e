//! The `logtail` binary end to end: serve, SIGTERM, read; config errors; parse.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::process::{self, Served, logtail};

/// Starts `logtail serve` with a TCP listener and a Unix datagram socket in `dir`; returns the
/// gateway and the TCP address it printed.
fn serve(dir: &Path) -> (Served, String) {
    let sock = dir.join("log.sock");
    process::serve_tcp_in(
        dir,
        &format!(
            "[[listen]]\ntype = \"unix-datagram\"\npath = \"{}\"\n",
            sock.display()
        ),
    )
}

/// Runs `command`, asserts that it succeeds (showing its stderr when not), and returns its
/// stdout.
fn stdout_of_success(command: &mut std::process::Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn read_store(dir: &Path, args: &[&str]) -> Vec<String> {
    stdout_of_success(
        logtail()
            .args(["read", "--dir"])
            .arg(dir.join("data/store"))
            .args(args),
    )
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn serve_then_sigterm_then_read_returns_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let (child, tcp) = serve(dir.path());
    let mut conn = TcpStream::connect(&tcp).unwrap();
    let mut buf = String::new();
    for i in 0..10_000 {
        buf.push_str(&format!(
            "<14>Nov 21 10:00:00 web01 nginx[7]: request {i}\n"
        ));
    }
    conn.write_all(buf.as_bytes()).unwrap();
    drop(conn);
    std::thread::sleep(Duration::from_millis(300));
    child.sigterm_and_wait();

    let all = read_store(dir.path(), &[]);
    assert_eq!(all.len(), 10_000);
    for (i, line) in all.iter().enumerate() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["message"], format!("request {i}"));
        assert_eq!(r["host"], "web01");
        assert_eq!(r["app"], "nginx");
    }
    let grepped = read_store(dir.path(), &["--grep", "request 999"]);
    assert_eq!(grepped.len(), 11, "request 999 and 9990–9999");
    assert_eq!(read_store(dir.path(), &["--since", "1h"]).len(), 10_000);
    assert_eq!(read_store(dir.path(), &["--since", "0s"]).len(), 0);
}

#[test]
fn read_follow_prints_records_as_they_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let (child, tcp) = serve(dir.path());
    let mut conn = TcpStream::connect(&tcp).unwrap();
    conn.write_all(b"<13>Nov 21 10:00:00 h app: before\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut follower = logtail()
        .args(["read", "--follow", "--dir"])
        .arg(dir.path().join("data/store"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(follower.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("\"message\":\"before\""), "{line}");
    conn.write_all(b"<13>Nov 21 10:00:00 h app: after\n")
        .unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("\"message\":\"after\""), "{line}");
    follower.kill().unwrap();
    let _ = follower.wait();
    drop(conn);
    child.sigterm_and_wait();
}

/// Runs `logtail serve --config CONFIG`, asserts that it refuses to start with exit code 2, and
/// returns what it printed on stderr.
fn serve_refused(config: &Path) -> String {
    let out = logtail()
        .args(["serve", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn config_errors_name_the_file_and_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[ingest]\noversize = \"chop\"\n").unwrap();
    let stderr = serve_refused(&config);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(
        stderr.contains("`truncate`, `drop`") || stderr.contains("`truncate` or `drop`"),
        "{stderr}"
    );

    std::fs::write(&config, "[[listen]]\ntype = \"tcp\"\n").unwrap();
    let stderr = serve_refused(&config);
    assert!(stderr.contains("listen[0].address: required"), "{stderr}");

    let stderr = serve_refused(&dir.path().join("missing.toml"));
    assert!(stderr.contains("missing.toml"), "{stderr}");
}

#[test]
fn busy_port_is_reported_with_the_listener_name() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[[listen]]\nname = \"edge\"\ntype = \"tcp\"\naddress = \"{}\"\n[metrics]\nenabled = false\n[api]\nenabled = false\n",
            dir.path().join("data").display(),
            taken.local_addr().unwrap()
        ),
    )
    .unwrap();
    let stderr = serve_refused(&config);
    assert!(stderr.contains("listener edge (tcp "), "{stderr}");
}

#[test]
fn parse_prints_one_json_object_per_input_line() {
    let mut child = logtail()
        .args(["parse", "--legacy-timezone", "utc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - 'su root' failed for lonvick on /dev/pts/8\r\n\
              <189>123: *Nov 21 02:53:47.123: %LINK-3-UPDOWN: Interface Gi0/1, changed state to up\n\
              \n\
              not syslog at all\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["app"], "su");
    assert_eq!(
        lines[0]["message"],
        "'su root' failed for lonvick on /dev/pts/8"
    );
    assert_eq!(lines[0]["source"], "stdin");
    assert_eq!(lines[1]["app"], "LINK-3-UPDOWN");
    assert_eq!(lines[1]["msgid"], "123");
    assert_eq!(lines[1]["message"], "Interface Gi0/1, changed state to up");
    assert_eq!(lines[2]["message"], "not syslog at all");
}

#[test]
fn wal_stats_and_dump_show_pending_batches() {
    use logtail::wal::{Appended, Wal, WalOptions};
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    {
        let (mut wal, _) = Wal::open(WalOptions {
            dir: wal_dir.clone(),
            ..WalOptions::default()
        })
        .unwrap();
        for i in 0..3u32 {
            let appended = wal.append(1, 2, format!("batch {i}").as_bytes()).unwrap();
            assert!(matches!(appended, Appended::Stored(_)));
        }
        // What the Kafka sink writes: a batch in its wire format.
        let mut batch = logtail::pipeline::batch::Batch::with_capacity(0, 64, 2);
        batch.push_routed(
            1,
            |k| k.extend_from_slice(b"web1"),
            |t| t.extend_from_slice(b"logs.nginx"),
            |v| v.extend_from_slice(b"{\"message\":\"hi\"}"),
        );
        batch.push(2, b"second");
        let mut payload = Vec::new();
        batch.encode_wal(&mut payload);
        wal.append(0, 2, &payload).unwrap();
        wal.acknowledge(1);
        wal.flush().unwrap();
    }
    let stats = stdout_of_success(logtail().arg("wal").arg("stats").arg(&wal_dir));
    assert!(
        stats.contains("pending          3 batches, 6 records"),
        "{stats}"
    );
    assert!(stats.contains("acked through    seq 1"), "{stats}");
    assert!(stats.contains("last seq         4"), "{stats}");

    let dump = stdout_of_success(logtail().args(["wal", "dump", "--from", "2"]).arg(&wal_dir));
    let batches: Vec<&str> = dump.lines().filter(|l| l.starts_with("seq=")).collect();
    assert_eq!(batches.len(), 3, "{dump}");
    assert!(
        batches[0].starts_with("seq=2 ") && batches[0].contains("\"batch 1\""),
        "{dump}"
    );
    assert!(
        batches[1].starts_with("seq=3 ") && batches[1].contains("\"batch 2\""),
        "{dump}"
    );
    let lines: Vec<&str> = dump
        .lines()
        .skip_while(|l| !l.starts_with("seq=4 "))
        .collect();
    assert_eq!(
        lines,
        [
            "seq=4 shard=0 records=2 bytes=81 acked=false batch of 2 record(s):",
            r#"  key="web1" topic="logs.nginx" value="{\"message\":\"hi\"}""#,
            r#"  key="" topic="" value="second""#,
        ],
        "{dump}"
    );

    let out = logtail()
        .args(["wal", "stats"])
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no WAL at"));
}
