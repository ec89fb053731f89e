//! `logtail agent` end to end: the binary tails real files through rotation, restarts and
//! configuration changes, and ships through the `file` shipper (exact lines, exact order) or to
//! a real gateway over TCP.

use test_fixtures as common;

use std::fs::File;
use std::time::{Duration, Instant};

use common::agent::{AgentDir, append, numbered, numbers, write_numbered};

const WAIT: Duration = Duration::from_secs(60);

/// How long a test waits, once the lines it expects are shipped, for any extra (duplicate) line.
const SETTLE: Duration = Duration::from_millis(500);

/// The numbers of the lines shipped once `count` are and [`SETTLE`] has passed; no line torn.
fn settled_numbers(t: &AgentDir, count: usize) -> Vec<usize> {
    t.wait_for_lines(count, WAIT);
    std::thread::sleep(SETTLE);
    let (got, torn) = numbers(&t.shipped());
    assert_eq!(torn, 0, "torn lines");
    got
}

/// Asserts `got` is exactly `0..count`.
fn assert_exactly_in_order(got: &[usize], count: usize) {
    assert_eq!(got.len(), count, "line count");
    if let Some(i) = got.iter().enumerate().position(|(i, &n)| i != n) {
        panic!(
            "line {i} is {} (around: {:?})",
            got[i],
            &got[i.saturating_sub(3)..(i + 3).min(got.len())]
        );
    }
}

#[test]
fn rename_rotation_under_load_keeps_every_line_in_order() {
    let t = AgentDir::new();
    t.write_config(&t.collect("app", &["app.log"]));
    let agent = t.start(&[]);
    let log = t.logs("app.log");
    let mut file = append(&log);
    let mut rotations = 0;
    // 100k lines at 25k lines/s, renamed away every 10k lines and a new file started, as
    // logrotate's `create` does.
    write_numbered(&mut file, 0..100_000, 25_000, 10_000, |n, file| {
        rotations += 1;
        std::fs::rename(&log, t.logs(&format!("app.log.{}", n / 10_000))).unwrap();
        *file = append(&log);
    });
    assert_eq!(rotations, 10);
    let got = settled_numbers(&t, 100_000);
    assert_exactly_in_order(&got, 100_000);
    // Every rotated file was read to its end and released; its checkpoint went with it.
    t.wait_for_log("app.log.10 (written as", WAIT);
    assert_eq!(t.agent_log().matches(": released").count(), 10);
    agent.sigterm_and_wait();
    let checkpoints = t.checkpoints();
    assert_eq!(
        checkpoints.lines().count(),
        3,
        "one file left:\n{checkpoints}"
    );
    assert!(
        checkpoints.contains(" 0 ") && checkpoints.contains("app.log\n"),
        "{checkpoints}"
    );
}

/// Issue 14: with a glob that names only the live file and a scan every second, ten files
/// each created and renamed away within 100 ms are all read, whole: the directory is watched
/// with inotify, so each is opened as it appears (or found under its new name if it was
/// renamed before it was opened), not at the next scan.
#[test]
fn narrow_glob_reads_every_file_rotated_faster_than_the_scan() {
    let t = AgentDir::new();
    t.write_config_scanning_every(1000, &t.collect("app", &["app.log"]));
    let log = t.logs("app.log");
    let mut file = append(&log);
    let agent = t.start(&[]);
    // The first scan has run (and placed the directory watch) once the empty file is found.
    t.wait_for_log("app.log: new file", WAIT);
    let mut rotations = 0;
    // 20k lines at 20k lines/s, renamed away every 2k lines (100 ms) and a new file started.
    write_numbered(&mut file, 0..20_000, 20_000, 2_000, |n, file| {
        rotations += 1;
        std::fs::rename(&log, t.logs(&format!("app.log.{}", n / 2_000))).unwrap();
        *file = append(&log);
    });
    assert_eq!(rotations, 10);
    let mut got = settled_numbers(&t, 20_000);
    got.sort_unstable();
    assert_exactly_in_order(&got, 20_000);
    agent.sigterm_and_wait();
}

/// Issue 14: a file written whole and renamed away at once (before the agent could open it
/// under the name its glob matches) is found under its new name and read from its start.
#[test]
fn a_file_renamed_away_before_it_was_opened_is_read_under_its_new_name() {
    use std::io::Write;
    let t = AgentDir::new();
    t.write_config_scanning_every(60000, &t.collect("app", &["app.log"]));
    let log = t.logs("app.log");
    drop(append(&log));
    let agent = t.start(&[]);
    t.wait_for_log("app.log: new file", WAIT);
    std::fs::remove_file(&log).unwrap();
    // Ten files, each created, written and renamed within microseconds; the scan (every
    // minute here) never sees one, only the directory events can. Some are renamed before
    // the tailer gets to them and are found under their new name (logged "... before it
    // was opened": 3 to 9 of the 10 in trial runs); one the tailer opened first is read as a
    // rotated file. The counts are the same either way, and they are what is asserted.
    for generation in 0..10 {
        let mut file = File::create(&log).unwrap();
        let lines: String = (generation * 100..(generation + 1) * 100)
            .map(|n| numbered(n) + "\n")
            .collect();
        file.write_all(lines.as_bytes()).unwrap();
        std::fs::rename(&log, t.logs(&format!("app.log.{generation}"))).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut got = settled_numbers(&t, 1_000);
    got.sort_unstable();
    assert_exactly_in_order(&got, 1_000);
    agent.sigterm_and_wait();
}

#[test]
fn copytruncate_rotation_under_load_keeps_every_line_in_order() {
    let t = AgentDir::new();
    t.write_config(&t.collect("app", &["app.log"]));
    let agent = t.start(&[]);
    let log = t.logs("app.log");
    let mut file = append(&log);
    // logrotate's `copytruncate`: copy the file aside, then truncate it in place; the writer
    // keeps its descriptor (O_APPEND) and goes on at the new end.
    write_numbered(&mut file, 0..100_000, 25_000, 10_000, |n, file| {
        std::fs::copy(&log, t.logs(&format!("app.log.{}", n / 10_000))).unwrap();
        file.set_len(0).unwrap();
    });
    let got = settled_numbers(&t, 100_000);
    assert_exactly_in_order(&got, 100_000);
    let log_text = t.agent_log();
    assert_eq!(
        log_text
            .matches("was truncated (copytruncate): reading the rest of it from its copy")
            .count(),
        10,
        "{log_text}"
    );
    assert!(!log_text.contains("no copy of its first"), "{log_text}");
    agent.sigterm_and_wait();
}

#[test]
fn kill_9_mid_stream_then_restart_loses_nothing() {
    let t = AgentDir::new();
    t.write_config(&t.collect("app", &["app.log"]));
    let mut agent = Some(t.start(&[]));
    let mut file = append(&t.logs("app.log"));
    let started = Instant::now();
    write_numbered(&mut file, 0..100_000, 25_000, 5_000, |n, _| {
        // At 40k lines: kill -9, and start again at 50k (the 10k between wait in the file).
        if n == 40_000 {
            agent.take().unwrap().kill_9();
        }
        if n == 50_000 {
            agent = Some(t.start(&[]));
        }
    });
    t.wait_for_lines(100_000, WAIT);
    std::thread::sleep(Duration::from_millis(500));
    let (got, torn) = numbers(&t.shipped());
    // The shipped lines are one run from the first start, then one from the checkpoint on.
    let restart = got.windows(2).position(|w| w[1] != w[0] + 1).map(|i| i + 1);
    let duplicates = got.len() - 100_000;
    eprintln!(
        "kill -9 after {:?}: {} lines shipped, {duplicates} sent twice, {torn} torn",
        started.elapsed(),
        got.len()
    );
    let mut seen = vec![0u32; 100_000];
    for &n in &got {
        seen[n] += 1;
    }
    let missing: Vec<usize> = (0..100_000).filter(|&n| seen[n] == 0).collect();
    assert!(
        missing.is_empty(),
        "lost {} lines, first {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    if let Some(restart) = restart {
        assert_exactly_in_order(&got[..restart], restart);
        let resumed_at = got[restart];
        assert!(
            resumed_at < restart,
            "resumed at {resumed_at}, after line {restart}"
        );
        let tail: Vec<usize> = got[restart..].iter().map(|n| n - resumed_at).collect();
        assert_exactly_in_order(&tail, 100_000 - resumed_at);
    }
    // At most what can be unacknowledged: 8 batches of 4096 lines.
    assert!(duplicates <= 8 * 4096, "{duplicates} duplicates");
    assert!(torn <= 1, "{torn} torn lines");
    agent.take().unwrap().sigterm_and_wait();
}

#[test]
fn clean_restart_resumes_exactly_without_duplicates() {
    let t = AgentDir::new();
    t.write_config(&t.collect("app", &["app.log"]));
    let agent = t.start(&[]);
    let mut file = append(&t.logs("app.log"));
    write_numbered(&mut file, 0..10_000, 100_000, 1_000_000, |_, _| {});
    t.wait_for_lines(10_000, WAIT);
    agent.sigterm_and_wait();
    // Written while the agent is stopped, with a partial line at the end.
    write_numbered(&mut file, 10_000..20_000, 100_000, 1_000_000, |_, _| {});
    std::io::Write::write_all(&mut file, b"partial").unwrap();
    let agent = t.start(&[]);
    // The partial last line waits for its end: not shipped, and not torn.
    let got = settled_numbers(&t, 20_000);
    assert_exactly_in_order(&got, 20_000);
    std::io::Write::write_all(&mut file, b" line\n").unwrap();
    t.wait_for_line("partial line", WAIT);
    agent.sigterm_and_wait();
}

#[test]
fn start_at_end_skips_what_was_there_and_new_files_are_read_whole() {
    let t = AgentDir::new();
    let mut file = append(&t.logs("old.log"));
    write_numbered(&mut file, 0..1000, 1_000_000, 1_000_000, |_, _| {});
    t.write_config(&format!(
        "[[collect]]\nname = \"app\"\npaths = [{:?}]\n",
        t.logs("*.log")
    ));
    let agent = t.start(&[]);
    t.wait_for_log("old.log: new file, reading from offset 100000", WAIT);
    write_numbered(&mut file, 1000..1010, 1_000_000, 1_000_000, |_, _| {});
    // A file that appears while the agent runs is read from its beginning.
    let mut new = append(&t.logs("new.log"));
    write_numbered(&mut new, 5000..5005, 1_000_000, 1_000_000, |_, _| {});
    let lines = t.wait_for_lines(15, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    let (mut got, _) = numbers(&t.shipped());
    got.sort_unstable();
    assert_eq!(lines.len(), 15);
    let expected: Vec<usize> = (1000..1010).chain(5000..5005).collect();
    assert_eq!(got, expected);
    agent.sigterm_and_wait();
}

#[test]
fn a_deleted_file_is_read_to_its_end_released_and_forgotten() {
    let t = AgentDir::new();
    t.write_config(&t.collect("app", &["*.log"]));
    let agent = t.start(&[]);
    let mut keep = append(&t.logs("keep.log"));
    writeln_line(&mut keep, 1);
    let path = t.logs("gone.log");
    let mut gone = append(&path);
    writeln_line(&mut gone, 2);
    t.wait_for_lines(2, WAIT);
    std::fs::remove_file(&path).unwrap();
    // Still written through the open descriptor after the delete: read too, before release.
    writeln_line(&mut gone, 3);
    t.wait_for_log("(deleted) (written as", WAIT);
    let (mut got, _) = numbers(&t.shipped());
    got.sort_unstable();
    assert_eq!(got, vec![1, 2, 3]);
    agent.sigterm_and_wait();
    let checkpoints = t.checkpoints();
    assert!(!checkpoints.contains("gone.log"), "{checkpoints}");
    assert!(checkpoints.contains("keep.log"), "{checkpoints}");
}

#[test]
fn an_idle_file_is_read_when_it_changes_not_at_its_next_poll() {
    let t = AgentDir::new();
    let config = t.write_config(&t.collect("app", &["app.log"]));
    // The polls of an idle file back off to a minute: only the inotify wake-up reads in time.
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("max_poll_interval_ms = 50\n"));
    std::fs::write(
        &config,
        text.replace(
            "max_poll_interval_ms = 50\n",
            "max_poll_interval_ms = 60000\n",
        ),
    )
    .unwrap();
    let agent = t.start(&[]);
    let mut file = append(&t.logs("app.log"));
    writeln_line(&mut file, 1);
    t.wait_for_lines(1, WAIT);
    // Idle for 6 s, the file's polls are 5.1 s and then 10.2 s after its last read.
    std::thread::sleep(Duration::from_secs(6));
    writeln_line(&mut file, 2);
    let took = t.wait_for_line(&numbered(2), WAIT);
    assert!(
        took < Duration::from_secs(2),
        "read {took:?} after the append: at a poll, not woken; agent log:\n{}",
        t.agent_log()
    );
    agent.sigterm_and_wait();
    let (got, torn) = numbers(&t.shipped());
    assert_eq!((got, torn), (vec![1, 2], 0));
}

fn writeln_line(file: &mut File, n: usize) {
    std::io::Write::write_all(file, format!("{}\n", numbered(n)).as_bytes()).unwrap();
}

#[test]
fn config_file_changes_apply_live_and_a_bad_file_keeps_the_last_good_one() {
    let t = AgentDir::new();
    let config = t.write_config(&t.collect("a", &["a.log"]));
    let agent = t.start(&[]);
    let (mut a, mut b) = (append(&t.logs("a.log")), append(&t.logs("b.log")));
    writeln_line(&mut a, 1);
    writeln_line(&mut b, 2);
    t.wait_for_line(&numbered(1), WAIT);
    // Add entry b: picked up at the next check of the file (every second).
    t.write_config(&format!(
        "{}{}",
        t.collect("a", &["a.log"]),
        t.collect("b", &["b.log"])
    ));
    t.wait_for_line(&numbered(2), Duration::from_secs(5));
    // A broken file: rejected with its key named, both entries keep running.
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        good.replace("start_at = \"beginning\"", "start_at = \"middle\""),
    )
    .unwrap();
    agent.signal(libc::SIGHUP);
    t.wait_for_log(
        "keeping the last good configuration",
        Duration::from_secs(5),
    );
    let log = t.agent_log();
    assert!(
        log.contains(&format!("config file {}", config.display())),
        "{log}"
    );
    assert!(log.contains("unknown variant `middle`"), "{log}");
    writeln_line(&mut a, 3);
    writeln_line(&mut b, 4);
    t.wait_for_line(&numbered(3), WAIT);
    t.wait_for_line(&numbered(4), WAIT);
    // Remove entry a (SIGHUP applies at once): a stops, b goes on, a's checkpoint stays.
    t.write_config(&t.collect("b", &["b.log"]));
    agent.signal(libc::SIGHUP);
    t.wait_for_log("collect entry a: removed", Duration::from_secs(5));
    writeln_line(&mut a, 5);
    writeln_line(&mut b, 6);
    t.wait_for_line(&numbered(6), WAIT);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!t.shipped().contains(&numbered(5)));
    // Change entry b: it restarts where it was, nothing read twice.
    t.write_config(&format!(
        "{}max_line_bytes = 1000\n",
        t.collect("b", &["b.log"])
    ));
    agent.signal(libc::SIGHUP);
    t.wait_for_log(
        "collect entry b: changed, restarting",
        Duration::from_secs(5),
    );
    writeln_line(&mut b, 7);
    t.wait_for_line(&numbered(7), WAIT);
    std::thread::sleep(Duration::from_millis(300));
    let (mut got, _) = numbers(&t.shipped());
    got.sort_unstable();
    assert_eq!(got, vec![1, 2, 3, 4, 6, 7]);
    agent.sigterm_and_wait();
    assert!(t.checkpoints().contains("a.log"), "{}", t.checkpoints());
}

#[test]
fn lines_reach_a_real_gateway_with_their_entry_fields_over_both_protocols() {
    for ship in ["gateway", "syslog-tcp"] {
        let mut gateway = common::Gateway::start();
        let address = match ship {
            "gateway" => gateway.agent(),
            _ => gateway.tcp(),
        };
        let t = AgentDir::new();
        std::fs::write(
            t.path("agent.toml"),
            format!(
                "data_dir = {:?}\nhost = \"agenthost\"\n[ship]\ntype = \"{ship}\"\naddress = \"{address}\"\n\
                 [[collect]]\nname = \"app\"\npaths = [{:?}]\nstart_at = \"beginning\"\n\
                 topic = \"logs.app\"\napp = \"myapp\"\ntags = [\"eu\", \"prod\"]\n\
                 multiline = {{ start_pattern = '^\\d{{8}} ' }}\n",
                t.path("state"),
                t.logs("app.log")
            ),
        )
        .unwrap();
        let mut file = append(&t.logs("app.log"));
        write_numbered(&mut file, 0..20_000, 1_000_000, 1_000_000, |_, _| {});
        std::io::Write::write_all(&mut file, b"  at stack.trace(line)\n").unwrap();
        write_numbered(&mut file, 20_000..20_001, 1_000_000, 1_000_000, |_, _| {});
        let agent = t.start(&[]);
        // The last event is shipped by its flush timeout (1 s), as no line starts another.
        gateway.wait_for_records(20_001);
        agent.sigterm_and_wait();
        let records = gateway.stop_and_read();
        assert_eq!(records.len(), 20_001, "{ship}");
        let messages = common::messages(&records);
        for (n, message) in messages.iter().enumerate() {
            let expected = match n {
                19_999 => format!("{}\n  at stack.trace(line)", numbered(n)),
                _ => numbered(n),
            };
            assert_eq!(message, &expected, "{ship}");
        }
        let first = &records[0];
        assert_eq!(first["host"], "agenthost");
        assert_eq!(first["app"], "myapp");
        let sd = &first["structured_data"]["logtail@32473"];
        assert_eq!(sd["entry"], "app");
        assert_eq!(sd["topic"], "logs.app");
        assert_eq!(sd["tags"], "eu,prod");
        assert_eq!(sd["file"], t.logs("app.log").to_str().unwrap());
        if ship == "gateway" {
            // Every batch was acknowledged: the checkpoint is at the end of the file.
            let size = std::fs::metadata(t.logs("app.log")).unwrap().len();
            assert!(
                t.checkpoints().contains(&format!(" {size} ")),
                "checkpoint at {size}:\n{}",
                t.checkpoints()
            );
        }
    }
}

/// The numbers of the records in `records`, and how many are not numbered lines.
fn stored_numbers(records: &[serde_json::Value]) -> (Vec<usize>, usize) {
    numbers(&common::messages(records))
}

/// Asserts that `got` holds every number below `count`, each run of consecutive sends in order,
/// and returns how many arrived twice.
fn assert_complete(got: &[usize], count: usize) -> usize {
    let mut seen = vec![0u32; count];
    for &n in got {
        seen[n] += 1;
    }
    let missing: Vec<usize> = (0..count).filter(|&n| seen[n] == 0).collect();
    assert!(
        missing.is_empty(),
        "lost {} lines, first {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    got.len() - count
}

#[test]
fn gateway_down_then_up_loses_nothing_and_memory_stays_bounded() {
    let port = common::tansu::free_port();
    let t = AgentDir::new();
    t.write_config_shipping(
        &format!("type = \"gateway\"\naddress = \"127.0.0.1:{port}\"\nreconnect_max_ms = 200\n"),
        &t.collect("app", &["app.log"]),
    );
    // 50 MB waiting in the file while nothing listens.
    const LINES: usize = 500_000;
    let mut file = append(&t.logs("app.log"));
    write_numbered(&mut file, 0..LINES, 10_000_000, 1_000_000, |_, _| {});
    let agent = t.start(&[]);
    t.wait_for_log("cannot reach the gateway", WAIT);
    // Until the window is full (8 batches read and compressed, slower on a busy machine):
    // memory stops growing within half a second, or after 10 s at most.
    let settled = Instant::now() + Duration::from_secs(10);
    let mut rss_before = agent.rss_kib() / 1024;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = agent.rss_kib() / 1024;
        let grew = now > rss_before;
        rss_before = rss_before.max(now);
        if !grew || Instant::now() > settled {
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = agent.rss_kib() / 1024;
    eprintln!(
        "agent RSS with the gateway away and 50 MB to send: {rss_before} MiB, 2 s later {rss_after} MiB"
    );
    // Reading stopped at the window (8 batches of 1 MiB, and their compressed frames): memory
    // does not follow the backlog. About 21 MiB is the idle agent; the bound leaves room for
    // the allocator's retention on a busy CI machine.
    assert!(
        rss_after < 80 && rss_after <= rss_before + 2,
        "RSS {rss_before} -> {rss_after} MiB"
    );
    assert!(
        t.checkpoints().contains(" 0 "),
        "nothing acknowledged yet:\n{}",
        t.checkpoints()
    );
    let mut gateway = common::Gateway::start_with(|c| {
        c.listen = vec![logtail::config::ListenerConfig::inet(
            logtail::config::ListenerKind::Agent,
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )];
    });
    let sink = &gateway.server().metrics().sink;
    let deadline = Instant::now() + WAIT;
    while sink.records.get() < LINES as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    agent.sigterm_and_wait();
    let (got, other) = stored_numbers(&gateway.stop_and_read());
    assert_eq!(other, 0);
    // Nothing reached the gateway before it started: no duplicates, and one run in order.
    assert_exactly_in_order(&got, LINES);
}

#[test]
fn gateway_killed_mid_stream_then_restarted_loses_nothing() {
    let port = common::tansu::free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[[listen]]\ntype = \"agent\"\naddress = \"127.0.0.1:{port}\"\n\
             [metrics]\nenabled = false\n[api]\nenabled = false\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let t = AgentDir::new();
    t.write_config_shipping(
        &format!("type = \"gateway\"\naddress = \"127.0.0.1:{port}\"\nreconnect_max_ms = 200\n"),
        &t.collect("app", &["app.log"]),
    );
    const LINES: usize = 200_000;
    let mut gateway = Some(common::process::serve(&config));
    let agent = t.start(&[]);
    let mut file = append(&t.logs("app.log"));
    write_numbered(&mut file, 0..LINES, 40_000, 5_000, |n, _| {
        // kill -9 at 60k lines, while batches are in flight; start again at 100k.
        if n == 60_000 {
            gateway.take().unwrap().kill_9();
        }
        if n == 100_000 {
            gateway = Some(common::process::serve(&config));
        }
    });
    let store = dir.path().join("data").join("store");
    let deadline = Instant::now() + WAIT;
    loop {
        let (got, _) = stored_numbers(&common::read_store(&store));
        let mut distinct = got.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() == LINES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {LINES} lines stored",
            distinct.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    agent.sigterm_and_wait();
    gateway.take().unwrap().sigterm_and_wait();
    assert!(
        t.agent_log()
            .contains("reconnecting, unacknowledged batches are resent"),
        "the agent saw the gateway go:\n{}",
        t.agent_log()
    );
    let (got, other) = stored_numbers(&common::read_store(&store));
    assert_eq!(other, 0);
    let duplicates = assert_complete(&got, LINES);
    eprintln!("gateway kill -9 mid-stream: {LINES} lines, all stored, {duplicates} twice");
    // Only what was stored and not yet acknowledged comes twice: at most the agent's window of
    // 8 batches of 4096 lines.
    assert!(duplicates <= 8 * 4096, "{duplicates} duplicates");
}

#[test]
fn start_up_errors_exit_2_and_say_what_to_do() {
    let t = AgentDir::new();
    let run = |args: &[&str]| {
        let out = common::process::logtail()
            .arg("agent")
            .args(args)
            .output()
            .expect("logtail runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let config = t.write_config("[[collect]]\nname = \"a\"\npaths = []\n");
    let (code, err) = run(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains(&format!(
            "config file {}: collect[0].paths: empty",
            config.display()
        )),
        "{err}"
    );
    let config = t.write_config(&t.collect("a", &["a.log"]));
    let (code, err) = run(&[
        "--config",
        config.to_str().unwrap(),
        "--etcd",
        "127.0.0.1:2379",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("command line: etcd.endpoints[0]"), "{err}");

    // One agent per data directory.
    writeln_line(&mut append(&t.logs("a.log")), 1);
    let agent = t.start(&[]);
    t.wait_for_log("agent running", WAIT);
    let (code, err) = run(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is in use by another agent (pid"), "{err}");
    agent.sigterm_and_wait();

    // A damaged checkpoint file stops the agent instead of guessing.
    let checkpoints = t.path("state/checkpoints");
    let mut text = std::fs::read(&checkpoints).unwrap();
    // A digit of the first entry's DEV: still a digit, so only the CRC can tell.
    assert!(text[28].is_ascii_digit());
    text[28] ^= 0x01;
    std::fs::write(&checkpoints, text).unwrap();
    let (code, err) = run(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("CRC mismatch") && err.contains("delete it to start over"),
        "{err}"
    );
}

#[test]
fn rotation_while_the_agent_is_stopped_is_followed_in_order() {
    let t = AgentDir::new();
    t.write_config(&t.collect("app", &["app.log"]));
    let log = t.logs("app.log");
    let mut file = append(&log);
    write_numbered(&mut file, 0..1000, 1_000_000, 1_000_000, |_, _| {});
    let agent = t.start(&[]);
    t.wait_for_lines(1000, WAIT);
    agent.sigterm_and_wait();
    // While stopped: more lines, a rename rotation, more lines in the new file.
    write_numbered(&mut file, 1000..2000, 1_000_000, 1_000_000, |_, _| {});
    std::fs::rename(&log, t.logs("app.log.1")).unwrap();
    let mut file = append(&log);
    write_numbered(&mut file, 2000..3000, 1_000_000, 1_000_000, |_, _| {});
    let agent = t.start(&[]);
    t.wait_for_lines(3000, WAIT);
    agent.sigterm_and_wait();
    // While stopped: more lines, a copytruncate, more lines in the truncated file.
    write_numbered(&mut file, 3000..4000, 1_000_000, 1_000_000, |_, _| {});
    std::fs::copy(&log, t.logs("app.log.2")).unwrap();
    file.set_len(0).unwrap();
    write_numbered(&mut file, 4000..5000, 1_000_000, 1_000_000, |_, _| {});
    let agent = t.start(&[]);
    let got = settled_numbers(&t, 5000);
    assert_exactly_in_order(&got, 5000);
    let log_text = t.agent_log();
    for copy in ["app.log.1", "app.log.2"] {
        assert!(
            log_text.contains(&format!("moved to {}", t.logs(copy).display())),
            "{log_text}"
        );
    }
    agent.sigterm_and_wait();
}

#[test]
fn kafka_shipper_delivers_every_line_through_an_outage_and_a_kill_9() {
    let cluster = common::kafka::cluster(1);
    let bootstrap = cluster.bootstrap_servers();
    let t = AgentDir::new();
    t.write_config_shipping(
        &format!(
            "type = \"kafka\"\n[ship.kafka]\nbootstrap_servers = \"{bootstrap}\"\n\
             topic = \"{}\"\nlinger_ms = 2\n\
             [ship.kafka.librdkafka]\n\"reconnect.backoff.max.ms\" = \"200\"\n",
            common::kafka::TOPIC
        ),
        &format!("host = \"kafkahost\"\n{}", t.collect("app", &["app.log"])),
    );
    const LINES: usize = 100_000;
    let mut agent = Some(t.start(&[]));
    let mut file = append(&t.logs("app.log"));
    write_numbered(&mut file, 0..LINES, 25_000, 5_000, |n, _| match n {
        // The broker goes away at 20k lines; the agent is killed during the outage and started
        // again; the broker comes back at 60k.
        20_000 => cluster.broker_down(1).expect("broker down"),
        35_000 => agent.take().expect("running").kill_9(),
        45_000 => agent = Some(t.start(&[])),
        60_000 => cluster.broker_up(1).expect("broker up"),
        _ => {}
    });
    let consumed = common::kafka::consume_count(&bootstrap, LINES, Duration::from_secs(90));
    agent.take().expect("running").sigterm_and_wait();
    let texts: Vec<String> = consumed.iter().map(|m| m.message().to_string()).collect();
    let (got, torn) = numbers(&texts);
    assert_eq!(torn, 0);
    let duplicates = assert_complete(&got, LINES);
    eprintln!("kafka shipper, outage and kill -9: {LINES} lines, {duplicates} twice");
    assert!(duplicates <= 8 * 4096, "{duplicates} duplicates");
    let first = &consumed[0];
    assert_eq!(first.key.as_deref(), Some(&b"kafkahost"[..]));
    assert_eq!(first.value["host"], "kafkahost");
    assert_eq!(
        first.value["structured_data"]["logtail@32473"]["entry"],
        "app"
    );
}
