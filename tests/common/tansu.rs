//! A real Kafka-compatible broker for end-to-end tests: tansu (`cargo install tansu --features
//! dynostore,libsql`), started by the test on a free loopback port, in a directory of its own.
//!
//! `tests/run.sh` installs it. Where it is missing, the tests that need it say they are skipped,
//! except under `CI=true`, where a missing broker is a failure.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tansu binary: `$TANSU`, else `tansu` on the PATH, else `~/.cargo/bin/tansu`.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TANSU") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("tansu"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("HOME")?;
        let path = Path::new(&home).join(".cargo/bin/tansu");
        path.is_file().then_some(path)
    })
}

/// The tansu binary, or `None` after saying the test is skipped. Panics under `CI=true`.
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    let found = binary();
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "tansu is not installed; tests/run.sh installs it"
        );
        eprintln!("{test}: skipped, tansu is not installed (tests/run.sh installs it)");
    }
    found
}

/// A running tansu broker.
pub struct Tansu {
    binary: PathBuf,
    dir: PathBuf,
    storage: String,
    pub port: u16,
    child: Option<Child>,
}

impl Tansu {
    /// Starts tansu in `dir` on a free port. `durable` keeps topics in a SQLite file in `dir`
    /// (so they survive a restart), else in memory.
    pub fn start(binary: PathBuf, dir: &Path, durable: bool) -> Tansu {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let storage = if durable {
            "sqlite://tansu.db".to_string()
        } else {
            "memory://tansu/".to_string()
        };
        let mut tansu = Tansu {
            binary,
            dir: dir.to_path_buf(),
            storage,
            port,
            child: None,
        };
        tansu.resume();
        tansu
    }

    /// `HOST:PORT` to bootstrap from.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker again after [`Tansu::stop`], on the same port and storage.
    pub fn resume(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.join("tansu.log")).expect("tansu log");
        let child = Command::new(&self.binary)
            .current_dir(&self.dir)
            .args(["broker", "--storage-engine", &self.storage])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tansu starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the broker (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Creates `topic` with `partitions` partitions, with tansu's own client.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let status = Command::new(&self.binary)
            .args([
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .status()
            .expect("tansu topic create runs");
        assert!(status.success(), "tansu topic create {topic}");
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
