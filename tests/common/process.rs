//! The `logtail` binary as a child process: started on a config file, its addresses read from
//! what it prints, stopped with SIGTERM or killed with SIGKILL.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn logtail() -> Command {
    Command::new(env!("CARGO_BIN_EXE_logtail"))
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

/// Starts `logtail serve` with the store under `dir/data`, 2 shards, one TCP listener on an
/// ephemeral port, metrics on an ephemeral port, and the `[[listen]]` tables in
/// `more_listeners`; returns the gateway and its TCP address.
pub fn serve_tcp_in(dir: &Path, more_listeners: &str) -> (Served, String) {
    let config = dir.join("logtail.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{data}\"\n[ingest]\nshards = 2\n\
             [[listen]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n\
             {more_listeners}\
             [metrics]\naddress = \"127.0.0.1:0\"\n",
            data = dir.join("data").display(),
        ),
    )
    .unwrap();
    let served = serve(&config);
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
