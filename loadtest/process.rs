//! Child processes of a run (the gateway, rsyslog, tansu): started with their output in a log
//! file, waited for until ready, stopped with a signal, and measured on the way out.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::cost;

/// A running child process.
pub struct Service {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

/// How a service ended.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    pub status: ExitStatus,
    /// Its CPU seconds, read after it exited and before it was reaped.
    pub cpu_seconds: Option<f64>,
}

impl Service {
    /// Starts `command`, its stdout and stderr appended to `log`.
    ///
    /// # Errors
    /// When the log cannot be created or the program cannot be started.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Service> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("creating {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
        Ok(Service {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far (lossy UTF-8).
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` lines of the log, for error messages.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Waits until `ready()` holds, failing if the process exits first or `timeout` passes.
    ///
    /// # Errors
    /// The process exited, or did not get ready in time; the error quotes its log.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut(&Service) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if ready(self) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "{} exited ({status}) before it was ready; its log ({}) ends:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail(15)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} was not ready after {timeout:?}; its log ({}) ends:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail(15)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`, `libc::SIGKILL`), waits up to `timeout` for the
    /// exit, reads the CPU seconds of the exited process, then reaps it. After the timeout it
    /// is killed.
    pub fn stop(mut self, signal: i32, timeout: Duration) -> Ended {
        let pid = self.pid();
        // SAFETY: signalling our own child, which has not been reaped (we hold its Child).
        unsafe { libc::kill(pid as i32, signal) };
        let deadline = Instant::now() + timeout;
        let mut killed = false;
        loop {
            if exited_unreaped(pid) {
                break;
            }
            if Instant::now() >= deadline && !killed {
                eprintln!("{} did not stop within {timeout:?}: SIGKILL", self.name);
                let _ = self.child.kill();
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let cpu_seconds = cost::cpu_seconds(pid);
        let status = self.child.wait().unwrap_or_else(|_| exit_status_unknown());
        Ended {
            status,
            cpu_seconds,
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// True when child `pid` has exited and is waiting to be reaped (it is not reaped here).
fn exited_unreaped(pid: u32) -> bool {
    // SAFETY: waitid writes into the zeroed siginfo we own; WNOWAIT leaves the child unreaped.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
        );
        r == 0 && info.si_pid() != 0
    }
}

fn exit_status_unknown() -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus::from_raw(-1)
}

/// A TCP port nothing listens on right now.
///
/// # Errors
/// When no port can be bound on the loopback interface.
pub fn free_port() -> anyhow::Result<u16> {
    test_support::net::free_port().context("finding a free loopback port")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reads_the_cpu_of_the_exited_child_before_reaping_it() {
        let dir = std::env::temp_dir().join(format!("loadtest-process-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 30",
        ]);
        let mut service = Service::spawn("busy", command, &dir.join("busy.log")).unwrap();
        service
            .wait_ready(Duration::from_secs(30), |s| {
                cost::cpu_seconds(s.pid()).unwrap_or(0.0) > 0.05
            })
            .unwrap();
        let ended = service.stop(libc::SIGTERM, Duration::from_secs(5));
        assert!(!ended.status.success());
        assert!(ended.cpu_seconds.unwrap() > 0.05, "{:?}", ended.cpu_seconds);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
