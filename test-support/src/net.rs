//! Loopback ports for the processes a test or a load-test run starts.

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
