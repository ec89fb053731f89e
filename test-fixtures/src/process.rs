//! The `logtail` binary as a child process: started on a config file, its addresses read from
//! what it prints, stopped with SIGTERM or killed with SIGKILL.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// A command running the `logtail` binary that cargo built with the test.
pub fn logtail() -> Command {
    Command::new(logtail_binary())
}

/// Where cargo put the `logtail` binary: beside the `deps/` directory of the test binary that is
/// running (`target/<profile>/deps/<test>-<hash>` → `target/<profile>/logtail`). Cargo builds
/// a package's binaries before its integration tests; `env!("CARGO_BIN_EXE_logtail")` would
/// say the same, but cargo sets it only when compiling the package's own test targets, not
/// this crate.
pub fn logtail_binary() -> PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let profile_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("the test binary runs from target/<profile>/deps");
    let binary = profile_dir.join("logtail");
    assert!(
        binary.is_file(),
        "{} is missing: run the tests with `cargo test`, which builds it",
        binary.display()
    );
    binary
}

/// A running `logtail serve`.
pub struct Served {
    pub child: Child,
    /// The address of the first TCP listener, when there is one.
    pub tcp: Option<String>,
    /// The metrics endpoint, when enabled.
    pub metrics: Option<String>,
    /// The HTTP server's address when the API is served (`IP:PORT`).
    pub api: Option<String>,
}

/// Writes `dir/logtail.toml`: data under `dir/data`, 2 shards, one TCP listener on an ephemeral
/// port, metrics on an ephemeral port, then `more` verbatim (more `[[listen]]` tables, a
/// `[sink]`); returns its path.
pub fn write_config(dir: &Path, more: &str) -> PathBuf {
    let config = dir.join("logtail.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{data}\"\n[ingest]\nshards = 2\n\
             [[listen]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n\
             [metrics]\naddress = \"127.0.0.1:0\"\n\
             {more}",
            data = dir.join("data").display(),
        ),
    )
    .expect("config written");
    config
}

/// Starts `logtail serve` on [`write_config`]`(dir, more_listeners)`; returns the gateway and
/// its TCP address.
pub fn serve_tcp_in(dir: &Path, more_listeners: &str) -> (Served, String) {
    let served = serve(&write_config(dir, more_listeners));
    let tcp = served
        .tcp
        .clone()
        .expect("the gateway printed its TCP address");
    (served, tcp)
}

/// Starts `logtail serve --config CONFIG` and waits until it is running (it prints "gateway
/// running" once every listener is bound).
pub fn serve(config: &Path) -> Served {
    let mut child = logtail()
        .args(["serve", "--config"])
        .arg(config)
        .stderr(Stdio::piped())
        .spawn()
        .expect("logtail starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr piped"));
    let (mut tcp, mut metrics, mut api) = (None, None, None);
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some(rest) = line.split("listening on tcp ").nth(1) {
            tcp = rest.split_whitespace().next().map(str::to_string);
        }
        if let Some(rest) = line.split("metrics at http://").nth(1) {
            metrics = rest
                .split_whitespace()
                .next()
                .map(|a| a.trim_end_matches("/metrics").to_string());
        }
        if let Some(rest) = line.split("API at http://").nth(1) {
            api = rest
                .split_whitespace()
                .next()
                .map(|a| a.trim_end_matches("/api/v1/").to_string());
        }
        if line.contains("gateway running") {
            break;
        }
        line.clear();
    }
    // Keep draining stderr so the gateway never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    Served {
        child,
        tcp,
        metrics,
        api,
    }
}

impl Served {
    /// Sends SIGTERM and asserts a clean exit within 20 s.
    pub fn sigterm_and_wait(mut self) {
        sigterm_and_wait(&mut self.child);
    }

    /// SIGKILL: no shutdown at all.
    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The value of the metric line starting with `series` (name and labels), if present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = test_support::prometheus_text::scrape(self.metrics.as_deref()?)?;
        test_support::prometheus_text::sample(&text, series)
    }

    /// What `GET /api/v1/status` answers, if the API is served and answers.
    pub fn status(&self) -> Option<serde_json::Value> {
        let text = test_support::net::http_get(self.api.as_deref()?, "/api/v1/status")?;
        serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to `child` and asserts a clean exit within 20 s.
pub fn sigterm_and_wait(child: &mut Child) {
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "clean exit after SIGTERM, got {status}");
            return;
        }
        assert!(Instant::now() < deadline, "logtail did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `logtail` child that keeps printing (`read --follow`, `search --follow`), read a line at a
/// time; killed when dropped.
pub struct Follower {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Follower {
    /// Starts `command` with its standard output piped.
    pub fn spawn(command: &mut Command) -> Follower {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("logtail starts");
        let out = BufReader::new(child.stdout.take().expect("stdout piped"));
        Follower { child, out }
    }

    /// The next line it prints, with its newline (blocks until there is one).
    pub fn next_line(&mut self) -> String {
        let mut line = String::new();
        self.out
            .read_line(&mut line)
            .expect("read the follower's output");
        line
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
