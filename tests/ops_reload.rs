//! Live reload of the gateway: under load (a TCP sender at about 50k lines/s and an agent), ten
//! reloads that add and remove a listener lose and duplicate nothing; SIGHUP and a change of the
//! file reload `logtail serve`, a bad file is rejected and the old configuration keeps running,
//! and a change that needs a restart is reported.

use test_fixtures as common;

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::agent::AgentDir;
use common::{Gateway, messages};
use logtail::config::{Config, ListenerConfig, ListenerKind};

const TCP_LINES: usize = 150_000;
const AGENT_LINES: usize = 30_000;
const EXTRA_LINES: usize = 200;

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn named(mut listener: ListenerConfig, name: &str) -> ListenerConfig {
    listener.name = Some(name.to_string());
    listener
}

/// The gateway's listeners: `main` (TCP) and `agents`, plus `extra` (TCP) when asked.
fn listeners(extra: bool) -> Vec<ListenerConfig> {
    let mut listen = vec![
        named(ListenerConfig::inet(ListenerKind::Tcp, any_port()), "main"),
        named(
            ListenerConfig::inet(ListenerKind::Agent, any_port()),
            "agents",
        ),
    ];
    if extra {
        listen.push(named(
            ListenerConfig::inet(ListenerKind::Tcp, any_port()),
            "extra",
        ));
    }
    listen
}

/// Sends `TCP_LINES` numbered lines on one connection, paced to about 50k lines/s (500 lines
/// every 10 ms); panics if the connection fails (a reload must not touch it).
fn send_paced(addr: SocketAddr, running: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut conn = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        let mut buf = Vec::with_capacity(64 * 1024);
        for chunk in 0..TCP_LINES / 500 {
            buf.clear();
            for i in chunk * 500..(chunk + 1) * 500 {
                writeln!(buf, "<14>Nov 21 10:00:00 web01 app: tcp-{i}").unwrap();
            }
            conn.write_all(&buf)
                .expect("the main connection stays open");
            let due = started + Duration::from_millis(10 * (chunk as u64 + 1));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        conn.shutdown(Shutdown::Write).unwrap();
        running.store(false, Ordering::Relaxed);
    })
}

#[test]
fn ten_reloads_under_load_lose_and_duplicate_nothing() {
    let mut g = Gateway::start_with(|c| c.listen = listeners(false));
    let agent_addr = g.server().socket_addr("agents").unwrap();
    let t = AgentDir::new();
    let agent_lines: String = (0..AGENT_LINES).map(|i| format!("agent-{i}\n")).collect();
    std::fs::write(t.logs("app.log"), agent_lines).unwrap();
    t.write_config_shipping(
        &format!("type = \"gateway\"\naddress = \"{agent_addr}\"\n"),
        &format!(
            "[metrics]\nenabled = false\n{}",
            t.collect("app", &["app.log"])
        ),
    );
    let agent = t.start(&[]);

    let running = Arc::new(AtomicBool::new(true));
    let sender = send_paced(g.server().socket_addr("main").unwrap(), running.clone());
    let mut extra_sent = 0;
    for reload in 0..10 {
        std::thread::sleep(Duration::from_millis(200));
        let with_extra = reload % 2 == 0;
        let mut config: Config = g.config.clone();
        config.listen = listeners(with_extra);
        config.validate(Path::new("reload")).unwrap();
        let server = g.server.as_mut().unwrap();
        let needs_restart = server
            .reload(&config, format!("reload-{reload}"))
            .expect("the reload is applied");
        assert_eq!(needs_restart, Vec::<String>::new());
        if with_extra {
            // Lines sent to a listener just before the reload that removes it are kept.
            let extra = server.socket_addr("extra").expect("extra is open");
            let mut conn = TcpStream::connect(extra).unwrap();
            let lines: String = (0..EXTRA_LINES)
                .map(|i| format!("<14>Nov 21 10:00:00 web01 app: extra-{reload}-{i}\n"))
                .collect();
            conn.write_all(lines.as_bytes()).unwrap();
            conn.shutdown(Shutdown::Write).unwrap();
            extra_sent += EXTRA_LINES;
        } else {
            assert!(server.socket_addr("extra").is_none(), "extra is closed");
        }
    }
    assert!(
        running.load(Ordering::Relaxed),
        "the ten reloads happened while the sender was still sending"
    );
    sender.join().expect("the sender never lost its connection");
    let total = (TCP_LINES + AGENT_LINES + extra_sent) as u64;
    g.wait_for_records(total);
    let reload = &g.server().metrics().reload;
    assert_eq!((reload.reloads.get(), reload.failures.get()), (10, 0));
    agent.sigterm_and_wait();
    let records = g.stop_and_read();

    let mut seen: HashMap<String, usize> = HashMap::new();
    for message in messages(&records) {
        *seen.entry(message).or_default() += 1;
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(duplicated.is_empty(), "written twice: {duplicated:?}");
    assert_eq!(records.len() as u64, total);
    let missing = |prefix: &str, count: usize| -> Vec<String> {
        (0..count)
            .map(|i| format!("{prefix}{i}"))
            .filter(|m| !seen.contains_key(m))
            .take(5)
            .collect()
    };
    assert_eq!(missing("tcp-", TCP_LINES), Vec::<String>::new());
    assert_eq!(missing("agent-", AGENT_LINES), Vec::<String>::new());
    for reload in (0..10).step_by(2) {
        assert_eq!(
            missing(&format!("extra-{reload}-"), EXTRA_LINES),
            Vec::<String>::new()
        );
    }
}

#[test]
fn a_reload_whose_listener_cannot_be_bound_changes_nothing() {
    let mut g = Gateway::start_with(|c| c.listen = listeners(false));
    let mut config = g.config.clone();
    config.listen = listeners(false);
    // A UDP listener on a port another program holds cannot be bound (no SO_REUSEPORT there).
    let blocker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    config.listen.push(named(
        ListenerConfig::inet(ListenerKind::Udp, blocker.local_addr().unwrap()),
        "blocked",
    ));
    config.listen[0].max_connections = 5;
    let main_before = g.server().socket_addr("main").unwrap();
    let server = g.server.as_mut().unwrap();
    let err = server
        .reload(&config, "bad".into())
        .expect_err("a taken port rejects the reload")
        .to_string();
    assert!(err.contains("listener blocked (udp"), "{err}");
    assert_eq!(server.socket_addr("main"), Some(main_before));
    assert!(server.socket_addr("blocked").is_none());
    let reload = &server.metrics().reload;
    assert_eq!((reload.reloads.get(), reload.failures.get()), (0, 1));
}

#[test]
fn pipeline_batch_limits_apply_live_and_larger_batches_need_a_restart() {
    let mut g = Gateway::start_with(|c| {
        c.listen = listeners(false);
        c.pipeline.batch_max_age = Duration::from_secs(60);
    });
    let mut conn = TcpStream::connect(g.server().socket_addr("main").unwrap()).unwrap();
    let lines: String = (0..10)
        .map(|i| format!("<14>Nov 21 10:00:00 web01 app: waiting-{i}\n"))
        .collect();
    conn.write_all(lines.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        g.server().metrics().sink.records.get(),
        0,
        "a batch waits for its 60 s"
    );
    let mut config = g.config.clone();
    config.pipeline.batch_max_age = Duration::from_millis(5);
    config.pipeline.batch_max_records = 8192;
    let server = g.server.as_mut().unwrap();
    let needs_restart = server.reload(&config, "shorter".into()).unwrap();
    assert_eq!(needs_restart, ["pipeline.batch_max_records"]);
    assert_eq!(
        server.metrics().reload.needs_restart(),
        ["pipeline.batch_max_records"]
    );
    // The waiting batch is cut by the new age at once, not after its 60 s.
    let started = Instant::now();
    g.wait_for_records(10);
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(conn);
    let records = g.stop_and_read();
    assert_eq!(messages(&records).len(), 10);
}

#[test]
fn a_changed_listener_reopens_on_its_address_and_the_others_are_untouched() {
    let mut g = Gateway::start_with(|c| c.listen = listeners(false));
    let main = g.server().socket_addr("main").unwrap();
    let agents = g.server().socket_addr("agents").unwrap();
    let mut before = TcpStream::connect(main).unwrap();
    before
        .write_all(b"<14>Nov 21 10:00:00 web01 app: before the change\n")
        .unwrap();
    g.wait_for_records(1);
    let mut config = g.config.clone();
    config.listen = listeners(false);
    // Same name, same address, other settings: the listener is replaced.
    config.listen[0].address = Some(main);
    config.listen[0].max_connections = 50;
    let server = g.server.as_mut().unwrap();
    server.reload(&config, "changed".into()).unwrap();
    assert_eq!(server.socket_addr("main"), Some(main));
    assert_eq!(server.socket_addr("agents"), Some(agents), "untouched");
    let mut after = TcpStream::connect(main).expect("the address never refuses");
    after
        .write_all(b"<14>Nov 21 10:00:00 web01 app: after the change\n")
        .unwrap();
    // The old listener's connection is closed once it is quiet; the sender reconnects.
    before
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let closed = std::io::Read::read_to_end(&mut before, &mut rest);
    assert!(closed.is_ok(), "the old connection is closed: {closed:?}");
    drop(after);
    g.wait_for_records(2);
    let records = g.stop_and_read();
    let mut got = messages(&records);
    got.sort();
    assert_eq!(got, ["after the change", "before the change"]);
}

/// Writes `text` as the config file, atomically (a new inode, as editors do).
fn write_config(path: &Path, text: &str) {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

fn wait_for_metric(served: &common::process::Served, series: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = served.metric(series);
        if now == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {now:?}, never {value}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn sighup_and_a_changed_file_reload_serve_and_a_bad_file_keeps_the_old_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("logtail.toml");
    let base = format!(
        "data_dir = \"{}\"\n[ingest]\nshards = 2\n[metrics]\naddress = \"127.0.0.1:0\"\n\
         [[listen]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n",
        dir.path().join("data").display()
    );
    write_config(&config, &base);
    let served = common::process::serve(&config);
    wait_for_metric(&served, "logtail_config_reloads_total", 0.0);

    // A changed file is seen within a second or two, without a signal.
    let port = free_port();
    let second = format!(
        "{base}[[listen]]\nname = \"second\"\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n"
    );
    write_config(&config, &second);
    wait_for_metric(&served, "logtail_config_reloads_total", 1.0);
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("second is open");
    conn.write_all(b"<14>Nov 21 10:00:00 web01 app: via second\n")
        .unwrap();
    drop(conn);
    wait_for_metric(
        &served,
        "logtail_received_lines_total{listener=\"second\",transport=\"tcp\"}",
        1.0,
    );

    // SIGHUP; a sink change is reported as needing a restart.
    let with_sink = format!("{second}[sink.store]\nmax_segment_bytes = 8388608\n");
    std::fs::write(&config, &with_sink).unwrap();
    unsafe { libc::kill(served.child.id() as i32, libc::SIGHUP) };
    wait_for_metric(&served, "logtail_config_reloads_total", 2.0);
    wait_for_metric(&served, "logtail_config_needs_restart{key=\"sink\"}", 1.0);
    let sha = ring_sha256(with_sink.as_bytes());
    wait_for_metric(
        &served,
        &format!("logtail_config_info{{sha256=\"{sha}\"}}"),
        1.0,
    );
    let status = served.status().expect("the API answers /api/v1/status");
    assert_eq!(
        status["config"],
        serde_json::json!({
            "sha256": sha,
            "reloads": 2,
            "reload_failures": 0,
            "needs_restart": ["sink"],
        })
    );
    let names: Vec<&str> = status["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .map(|l| l["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(
        names,
        ["tcp", "second"],
        "the listeners open after the reloads"
    );
    assert_eq!(
        status["listeners"][1]["address"],
        format!("127.0.0.1:{port}"),
        "status knows the address of a listener opened by a reload"
    );

    // A bad file: rejected, counted, and the old listeners keep working.
    write_config(
        &config,
        &format!("{with_sink}[ingest]\nmax_mesage_bytes = 1\n"),
    );
    wait_for_metric(&served, "logtail_config_reload_failures_total", 1.0);
    assert_eq!(served.metric("logtail_config_reloads_total"), Some(2.0));
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("second still open");
    conn.write_all(b"<14>Nov 21 10:00:00 web01 app: after the bad file\n")
        .unwrap();
    drop(conn);
    wait_for_metric(
        &served,
        "logtail_received_lines_total{listener=\"second\",transport=\"tcp\"}",
        2.0,
    );
    served.sigterm_and_wait();
}

fn ring_sha256(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut hex = String::new();
    for b in digest.as_ref() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Bytes of the store's segment files in `dir`.
fn store_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn the_stores_retention_applies_live_and_its_segment_size_and_the_console_need_a_restart() {
    let mut g = Gateway::start_with(|c| {
        c.listen = listeners(false);
        c.sink.store.max_segment_bytes = 128 << 10;
        c.sink.store.max_total_bytes = 64 << 20;
    });
    let dir = g.config.store_dir();
    // 20,000 lines of 64 pseudo-random hex digits: about 2 MiB stored.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let lines: String = (0..20_000)
        .map(|i| {
            let digits: String = (0..4)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    format!("{state:016x}")
                })
                .collect();
            format!("<14>Nov 21 10:00:00 web01 app: line-{i} {digits}\n")
        })
        .collect();
    let mut conn = TcpStream::connect(g.server().socket_addr("main").unwrap()).unwrap();
    conn.write_all(lines.as_bytes()).unwrap();
    g.wait_for_records(20_000);
    let before = store_bytes(&dir);
    assert!(before > 1 << 20, "{before} bytes stored");

    let mut config = g.config.clone();
    config.sink.store.max_total_bytes = 512 << 10;
    config.sink.store.max_age = Some(Duration::from_secs(86_400));
    let server = g.server.as_mut().unwrap();
    assert!(server.reload(&config, "smaller".into()).unwrap().is_empty());
    // The sink's next tick deletes the oldest segments, with nothing more written.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store_bytes(&dir) > (512 + 128) << 10 {
        assert!(
            Instant::now() < deadline,
            "{} bytes stored",
            store_bytes(&dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let address = g.server().metrics_address().unwrap().to_string();
    let answer = test_support::net::http_get(&address, "/api/v1/status").expect("status");
    let body = answer.split_once("\r\n\r\n").expect("a body").1;
    let status: serde_json::Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(status["store"]["max_total_bytes"], 512 << 10);
    assert_eq!(status["store"]["max_age_secs"], 86_400);

    config.sink.store.max_segment_bytes = 1 << 20;
    config.console.etcd_prefix = "/elsewhere/".into();
    let server = g.server.as_mut().unwrap();
    assert_eq!(
        server.reload(&config, "segments".into()).unwrap(),
        ["sink", "console"]
    );
    assert_eq!(server.metrics().reload.needs_restart(), ["sink", "console"]);
    drop(conn);
    g.stop();
}
