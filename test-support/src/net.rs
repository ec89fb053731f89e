//! Loopback ports for the processes a test or a load-test run starts, and one plain HTTP GET
//! to ask them how they are.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A TCP port nothing listens on right now (the kernel's pick, released at once).
///
/// # Errors
/// When no port can be bound on the loopback interface.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// True when something accepts TCP connections on `127.0.0.1:port` (within 200 ms).
pub fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// The whole response (head and body) of `GET http://ADDRESS/PATH` over HTTP/1.1, if it answers
/// within a second.
pub fn http_get(address: &str, path: &str) -> Option<String> {
    let addr = address.parse().ok()?;
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut text = String::new();
    conn.read_to_string(&mut text).ok()?;
    Some(text)
}
