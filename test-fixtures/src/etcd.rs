//! A real etcd for end-to-end tests: Debian's `etcd` (package `etcd-server`), started by the
//! test on free loopback ports, with its data in a directory of its own.
//!
//! `tests/run.sh` installs it. Where it is missing, the tests that need it say they are skipped,
//! except under `CI=true`, where a missing etcd is a failure.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tansu::free_port;

/// The etcd binary: `$ETCD`, else `etcd` on the PATH.
pub fn binary() -> Option<PathBuf> {
    match std::env::var_os("ETCD") {
        Some(path) => Some(PathBuf::from(path)),
        None => test_support::ci::on_path("etcd"),
    }
}

/// The etcd binary, or `None` after saying the test is skipped. Panics under `CI=true`.
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    test_support::ci::or_skip(
        binary(),
        test,
        "etcd is not installed (tests/run.sh installs it: apt-get install etcd-server)",
    )
}

/// A running single-member etcd.
pub struct Etcd {
    /// `http://127.0.0.1:PORT`, for clients.
    pub endpoint: String,
    child: Child,
}

impl Etcd {
    /// Starts etcd with its data in `dir/etcd`, its log in `dir/etcd.log`.
    pub fn start(binary: &Path, dir: &Path) -> Etcd {
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.join("etcd.log")).expect("etcd log");
        let child = Command::new(binary)
            .args(["--name", "test", "--data-dir"])
            .arg(dir.join("etcd"))
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("test={peer_url}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        let etcd = Etcd { endpoint, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", client)).is_err() || etcd.try_get("/").is_err() {
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        etcd
    }

    fn run<T>(
        &self,
        f: impl AsyncFnOnce(&mut etcd_client::Client) -> T,
    ) -> Result<T, etcd_client::Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let options = etcd_client::ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(2))
                .with_timeout(Duration::from_secs(5));
            let mut client = etcd_client::Client::connect([&self.endpoint], Some(options)).await?;
            Ok(f(&mut client).await)
        })
    }

    fn try_get(&self, key: &str) -> Result<(), etcd_client::Error> {
        self.run(async |c| c.get(key, None).await.map(|_| ()))?
    }

    /// Puts `value` at `key`; returns the revision it got.
    pub fn put(&self, key: &str, value: &str) -> i64 {
        self.run(async |c| c.put(key, value, None).await)
            .and_then(|r| r)
            .expect("etcd put")
            .header()
            .map_or(0, |h| h.revision())
    }

    /// The value of `key` and its mod revision, `None` when it does not exist.
    pub fn get(&self, key: &str) -> Option<(String, i64)> {
        let response = self
            .run(async |c| c.get(key, None).await)
            .and_then(|r| r)
            .expect("etcd get");
        response.kvs().first().map(|kv| {
            (
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.mod_revision(),
            )
        })
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) {
        self.run(async |c| c.delete(key, None).await)
            .and_then(|r| r)
            .expect("etcd delete");
    }

    /// Stops etcd (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
