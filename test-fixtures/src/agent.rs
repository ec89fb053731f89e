//! `logtail agent` as a child process over a temporary directory, log writers, and reading back
//! what its `file` shipper wrote.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::process::logtail;

/// A temporary directory with `logs/` for the files to tail, `state/` for the agent's data,
/// `out.txt` for what it ships, `agent.log` for its stderr, and `agent.toml`.
pub struct AgentDir {
    pub dir: tempfile::TempDir,
}

impl Default for AgentDir {
    fn default() -> AgentDir {
        AgentDir::new()
    }
}

impl AgentDir {
    pub fn new() -> AgentDir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("logs")).expect("logs dir");
        AgentDir { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn logs(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(name)
    }

    /// Writes `agent.toml`: the `file` shipper (raw) to `out.txt`, state in `state/`, scans
    /// every 100 ms, rotated files released 300 ms after they stop growing, then `rest`.
    pub fn write_config(&self, rest: &str) -> PathBuf {
        self.write_config_scanning_every(100, rest)
    }

    /// [`AgentDir::write_config`] with the glob scan every `scan_interval_ms` (100 there).
    pub fn write_config_scanning_every(&self, scan_interval_ms: u64, rest: &str) -> PathBuf {
        let ship = format!("type = \"file\"\npath = {:?}\n", self.path("out.txt"));
        self.write_agent_toml(&ship, rest, scan_interval_ms)
    }

    /// [`AgentDir::write_config`] with `ship` (the keys of `[ship]`) instead of the file shipper.
    pub fn write_config_shipping(&self, ship: &str, rest: &str) -> PathBuf {
        self.write_agent_toml(ship, rest, 100)
    }

    fn write_agent_toml(&self, ship: &str, rest: &str, scan_interval_ms: u64) -> PathBuf {
        let path = self.path("agent.toml");
        let text = format!(
            "data_dir = {:?}\n{rest}\n[tail]\nscan_interval_ms = {scan_interval_ms}\n\
             rotate_wait_ms = 300\nmax_poll_interval_ms = 50\n[ship]\n{ship}",
            self.path("state"),
        );
        std::fs::write(&path, text).expect("write agent.toml");
        path
    }

    /// A `[[collect]]` table for `paths` (in `logs/`), read from the beginning.
    pub fn collect(&self, name: &str, files: &[&str]) -> String {
        let paths: Vec<String> = files
            .iter()
            .map(|f| format!("{:?}", self.logs(f)))
            .collect();
        format!(
            "[[collect]]\nname = \"{name}\"\npaths = [{}]\nstart_at = \"beginning\"\n",
            paths.join(", ")
        )
    }

    /// Starts `logtail agent --config agent.toml ARGS`.
    pub fn start(&self, args: &[&str]) -> AgentProcess {
        AgentProcess::start(&self.path("agent.toml"), args, &self.path("agent.log"))
    }

    /// The lines the agent shipped so far.
    pub fn shipped(&self) -> Vec<String> {
        read_lines(&self.path("out.txt"))
    }

    /// Waits until `out.txt` holds at least `count` lines; panics after `timeout`.
    pub fn wait_for_lines(&self, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.shipped();
            if lines.len() >= count {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} lines shipped after {timeout:?}; agent log:\n{}",
                lines.len(),
                self.agent_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until a shipped line equals `line`; returns how long that took.
    pub fn wait_for_line(&self, line: &str, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.shipped().iter().any(|l| l == line) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "{line:?} not shipped after {timeout:?}; agent log:\n{}",
                self.agent_log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until the agent's log contains `text`; panics after `timeout`.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.agent_log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "{text:?} not logged after {timeout:?}; agent log:\n{}",
                self.agent_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.path("agent.log")).unwrap_or_default()
    }

    pub fn checkpoints(&self) -> String {
        std::fs::read_to_string(self.path("state/checkpoints")).unwrap_or_default()
    }
}

/// A running `logtail agent`.
pub struct AgentProcess {
    pub child: Child,
}

impl AgentProcess {
    /// Starts `logtail agent --config CONFIG ARGS`, its stderr appended to `log`.
    pub fn start(config: &Path, args: &[&str], log: &Path) -> AgentProcess {
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("agent log");
        let child = logtail()
            .args(["agent", "--config"])
            .arg(config)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("logtail agent starts");
        AgentProcess { child }
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// SIGTERM, then asserts a clean exit within 20 s.
    pub fn sigterm_and_wait(mut self) {
        super::process::sigterm_and_wait(&mut self.child);
    }

    /// SIGKILL: no shutdown at all.
    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Resident memory, in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every line of `path` (lossy UTF-8), without line ends; nothing when it does not exist.
pub fn read_lines(path: &Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Line `n` of the writers: 100 bytes with its LF, the number first.
pub fn numbered(n: usize) -> String {
    format!("{n:08} {}", "x".repeat(90))
}

/// The numbers of the shipped lines that are whole [`numbered`] lines, and how many were not
/// (torn by a `kill -9` of the agent mid-write).
pub fn numbers(lines: &[String]) -> (Vec<usize>, usize) {
    let mut torn = 0;
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        match line.split_once(' ') {
            Some((n, rest)) if line.len() == 99 && rest.bytes().all(|b| b == b'x') => {
                match n.parse() {
                    Ok(n) => out.push(n),
                    Err(_) => torn += 1,
                }
            }
            _ => torn += 1,
        }
    }
    (out, torn)
}

/// Appends [`numbered`] lines `from..to` to `file` at about `per_second`, calling `every(n)`
/// after each multiple of `every_lines`.
pub fn write_numbered(
    file: &mut File,
    range: std::ops::Range<usize>,
    per_second: usize,
    every_lines: usize,
    mut every: impl FnMut(usize, &mut File),
) {
    let start = Instant::now();
    let first = range.start;
    for n in range {
        writeln!(file, "{}", numbered(n)).expect("write log line");
        let written = n + 1 - first;
        if written.is_multiple_of(1000) {
            let due = Duration::from_secs_f64(written as f64 / per_second as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if (n + 1).is_multiple_of(every_lines) {
            every(n + 1, file);
        }
    }
}

/// Opens `path` for appending, creating it.
pub fn append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log for appending")
}
