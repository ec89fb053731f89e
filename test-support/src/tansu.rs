//! tansu, the Kafka-compatible broker the tests and the load-test harness start for themselves
//! (`cargo install --locked tansu --version 0.6.0 --features dynostore,libsql`; `tests/run.sh`
//! installs it): where to find it and its command lines.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How to install tansu, for messages.
pub const INSTALL: &str =
    "cargo install --locked tansu --version 0.6.0 --features dynostore,libsql";

/// The tansu binary: `$TANSU`, else `tansu` on the PATH, else `~/.cargo/bin/tansu`.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TANSU") {
        return Some(PathBuf::from(path));
    }
    crate::ci::on_path("tansu").or_else(|| {
        let path = Path::new(&std::env::var_os("HOME")?).join(".cargo/bin/tansu");
        path.is_file().then_some(path)
    })
}

/// `tansu broker` listening on `127.0.0.1:port`, telling clients to connect to
/// `advertised_port` (a proxy in front of it) or to itself, with `storage` as its storage
/// engine (`memory://tansu/`, or `sqlite://tansu.db` relative to `dir`, its working directory).
/// Standard input and output are not connected; the caller sends standard error to a log.
pub fn broker_command(
    binary: &Path,
    dir: &Path,
    port: u16,
    advertised_port: Option<u16>,
    storage: &str,
) -> Command {
    let mut command = Command::new(binary);
    command
        .current_dir(dir)
        .args(["broker", "--storage-engine", storage])
        .args(["--listener-url", &format!("tcp://127.0.0.1:{port}")])
        .args([
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{}", advertised_port.unwrap_or(port)),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// `tansu topic create TOPIC --partitions N` against the broker on `127.0.0.1:port`, its
/// output discarded.
pub fn create_topic_command(binary: &Path, port: u16, topic: &str, partitions: u32) -> Command {
    let mut command = Command::new(binary);
    command
        .args([
            "topic",
            "create",
            topic,
            "--partitions",
            &partitions.to_string(),
        ])
        .args(["--broker", &format!("tcp://127.0.0.1:{port}")])
        .stdout(Stdio::null());
    command
}
