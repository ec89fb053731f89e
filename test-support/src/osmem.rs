//! osmem-server, the in-memory OpenSearch-compatible server (PyPI `osmem-server`) that
//! `tests/run.sh` installs into `~/.local/osmem-venv`: where its binary is, and one plain HTTP
//! request to it. The tests' fixture (`test-fixtures`) and the load-test harness start it.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

/// How tests/run.sh installs it, for messages.
pub const INSTALL: &str = "python3 -m venv ~/.local/osmem-venv && \
                           ~/.local/osmem-venv/bin/pip install osmem-server==0.1.6";

/// The osmem-server binary: `OSMEM_SERVER_BIN`, else the one in the wheel installed into
/// `~/.local/osmem-venv`.
pub fn binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("OSMEM_SERVER_BIN") {
        return Some(PathBuf::from(bin));
    }
    let lib = PathBuf::from(std::env::var_os("HOME")?).join(".local/osmem-venv/lib");
    std::fs::read_dir(lib)
        .ok()?
        .flatten()
        .map(|python| {
            python
                .path()
                .join("site-packages/osmem_server/bin/osmem-server")
        })
        .find(|bin| bin.is_file())
}

/// One request (`Connection: close`, a JSON body if any): the status and the body of the
/// answer.
///
/// # Errors
/// When the server cannot be reached within 2 s, does not answer within 30 s, or answers
/// without a status line.
pub fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{method} {path}: no HTTP answer"),
        )
    };
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let status = std::str::from_utf8(&answer[..end])
        .ok()
        .and_then(|head| head.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, answer[end + 4..].to_vec()))
}
