//! A real Kafka-compatible broker for end-to-end tests: tansu (`cargo install tansu --features
//! dynostore,libsql`), started by the test on a free loopback port, in a directory of its own.
//!
//! `tests/run.sh` installs it. Where it is missing, the tests that need it say they are skipped,
//! except under `CI=true`, where a missing broker is a failure.

use std::net::{SocketAddr, TcpStream};
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

/// A running tansu broker, in memory.
pub struct Tansu {
    pub port: u16,
    child: Child,
}

impl Tansu {
    /// Starts tansu in `dir` on a free port, telling clients to connect to itself.
    pub fn start(binary: &Path, dir: &Path) -> Tansu {
        Tansu::start_advertising(binary, dir, None)
    }

    /// Starts tansu in `dir` on a free port, telling clients to connect to `advertised_port`
    /// instead when given (a [`super::proxy::Proxy`] in front of it).
    pub fn start_advertising(binary: &Path, dir: &Path, advertised_port: Option<u16>) -> Tansu {
        let port = free_port();
        let listen = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{}", advertised_port.unwrap_or(port));
        let log = std::fs::File::create(dir.join("tansu.log")).expect("tansu log");
        let child = Command::new(binary)
            .current_dir(dir)
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .args([
                "--listener-url",
                &listen,
                "--advertised-listener-url",
                &advertised,
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tansu starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Tansu { port, child }
    }

    /// `HOST:PORT` of the broker itself.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Creates `topic` with `partitions` partitions, with tansu's own client.
    pub fn create_topic(&self, binary: &Path, topic: &str, partitions: u32) {
        let status = Command::new(binary)
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

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
