//! A real Kafka-compatible broker for end-to-end tests: tansu (see `test_support::tansu`),
//! started by the test on a free loopback port, in a directory of its own.
//!
//! `tests/run.sh` installs it. Where it is missing, the tests that need it say they are skipped,
//! except under `CI=true`, where a missing broker is a failure.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

pub use test_support::tansu::binary;

/// The tansu binary, or `None` after saying the test is skipped. Panics under `CI=true`.
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    test_support::ci::or_skip(
        binary(),
        test,
        "tansu is not installed (tests/run.sh installs it)",
    )
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
    /// instead when given (a [`test_support::proxy::Proxy`] in front of it).
    pub fn start_advertising(binary: &Path, dir: &Path, advertised_port: Option<u16>) -> Tansu {
        let port = free_port();
        let log = std::fs::File::create(dir.join("tansu.log")).expect("tansu log");
        let child = test_support::tansu::broker_command(
            binary,
            dir,
            port,
            advertised_port,
            "memory://tansu/",
        )
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
        let status =
            test_support::tansu::create_topic_command(binary, self.port, topic, partitions)
                .status()
                .expect("tansu topic create runs");
        assert!(status.success(), "tansu topic create {topic}");
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    test_support::net::free_port().expect("a free port")
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
