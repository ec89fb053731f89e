//! A TCP proxy in front of a Kafka broker that can be cut: a network outage between the
//! gateway and a real broker, and a broker that comes back on another port.
//!
//! Why a proxy: tansu binds without `SO_REUSEADDR`, so it cannot listen on the same port again
//! for about a minute after it stopped. Clients are told (advertised listener) to use the
//! proxy's port, which never changes; the broker behind it can be cut off or replaced.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Forwards connections from `127.0.0.1:port` to an upstream address while up.
pub struct Proxy {
    pub port: u16,
    upstream: SocketAddr,
    /// Rewrite the broker's first ApiVersions response (see [`fix_api_versions`]).
    fix_api_versions: bool,
    connections: Arc<Mutex<Vec<TcpStream>>>,
    accepting: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Proxy {
    /// A proxy on `port` to `upstream`, up; every byte is copied as it is.
    ///
    /// # Errors
    /// When `port` cannot be bound.
    pub fn start(port: u16, upstream: SocketAddr) -> std::io::Result<Proxy> {
        Proxy::start_with(port, upstream, false)
    }

    /// A proxy like [`Proxy::start`] that also strips the top-level tagged fields of the
    /// broker's ApiVersions v3 response, which librdkafka 2.0.2 (rsyslog's) cannot read.
    ///
    /// # Errors
    /// When `port` cannot be bound.
    pub fn start_fixing_api_versions(port: u16, upstream: SocketAddr) -> std::io::Result<Proxy> {
        Proxy::start_with(port, upstream, true)
    }

    fn start_with(port: u16, upstream: SocketAddr, fix: bool) -> std::io::Result<Proxy> {
        let mut proxy = Proxy {
            port,
            upstream,
            fix_api_versions: fix,
            connections: Arc::default(),
            accepting: None,
        };
        proxy.restore(None)?;
        Ok(proxy)
    }

    /// Closes every connection and refuses new ones (the port is closed).
    pub fn cut(&mut self) {
        if let Some((stop, thread)) = self.accepting.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
        if let Ok(mut list) = self.connections.lock() {
            for conn in list.drain(..) {
                let _ = conn.shutdown(Shutdown::Both);
            }
        }
    }

    /// Accepts and forwards connections again, to `upstream` when given.
    ///
    /// # Errors
    /// When the port cannot be bound again.
    pub fn restore(&mut self, upstream: Option<SocketAddr>) -> std::io::Result<()> {
        self.cut();
        if let Some(u) = upstream {
            self.upstream = u;
        }
        // std sets SO_REUSEADDR, so the port can be bound again at once.
        let listener = TcpListener::bind(("127.0.0.1", self.port))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (upstream, fix, connections, stopping) = (
            self.upstream,
            self.fix_api_versions,
            self.connections.clone(),
            stop.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("broker-proxy".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let _ = client.set_nonblocking(false);
                    let Ok(server) = TcpStream::connect(upstream) else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    forward(&client, &server, fix, &connections);
                }
            })?;
        self.accepting = Some((stop, thread));
        Ok(())
    }
}

fn forward(client: &TcpStream, server: &TcpStream, fix: bool, connections: &Mutex<Vec<TcpStream>>) {
    if fix && fix_api_versions(client, server).is_err() {
        return;
    }
    let pipe = |from: &TcpStream, to: &TcpStream| {
        let (mut from, mut to) = (from.try_clone()?, to.try_clone()?);
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
        std::io::Result::Ok(())
    };
    if pipe(client, server)
        .and_then(|()| pipe(server, client))
        .is_err()
    {
        return;
    }
    if let Ok(mut list) = connections.lock() {
        list.extend(
            [client, server]
                .into_iter()
                .filter_map(|s| s.try_clone().ok()),
        );
    }
}

/// Forwards the client's first request; when it is ApiVersions v3 or later, forwards the
/// broker's response without its top-level tagged fields.
///
/// Why: librdkafka 2.0.2 (Debian 12's, which rsyslog's omkafka links) fails to parse tansu
/// 0.6's ApiVersions v3 response, whose top-level tagged fields carry SupportedFeatures,
/// FinalizedFeaturesEpoch, FinalizedFeatures and ZkMigrationReady ("Protocol read buffer
/// underflow ... probably due to broker version < 0.10"), and `api.version.request=false` does
/// not stop it from asking. The fields are optional; without them every client reads the
/// response. Only this first exchange is touched; everything else is copied byte for byte.
fn fix_api_versions(client: &TcpStream, server: &TcpStream) -> std::io::Result<()> {
    let (mut client, mut server) = (client, server);
    let request = read_frame(&mut client)?;
    server.write_all(&request)?;
    let is_api_versions_v3 = request.len() >= 8
        && i16::from_be_bytes([request[4], request[5]]) == 18
        && i16::from_be_bytes([request[6], request[7]]) >= 3;
    if is_api_versions_v3 {
        let response = read_frame(&mut server)?;
        let fixed = strip_api_versions_tags(&response[4..]).map_or(response, |body| {
            let mut framed = (body.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&body);
            framed
        });
        client.write_all(&fixed)?;
    }
    Ok(())
}

/// One Kafka frame: the 4-byte length and what it counts.
fn read_frame(from: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    from.read_exact(&mut len)?;
    let n = u32::from_be_bytes(len) as usize;
    if n > 64 << 20 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "Kafka frame over 64 MiB",
        ));
    }
    let mut frame = len.to_vec();
    frame.resize(4 + n, 0);
    from.read_exact(&mut frame[4..])?;
    Ok(frame)
}

/// An ApiVersions v3 response (header v0 and body, no length) with its top-level tagged fields
/// removed; `None` when it does not parse as one.
fn strip_api_versions_tags(response: &[u8]) -> Option<Vec<u8>> {
    fn uvarint(bytes: &[u8], at: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *bytes.get(*at)?;
            *at += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    fn skip_tags(bytes: &[u8], at: &mut usize) -> Option<()> {
        for _ in 0..uvarint(bytes, at)? {
            uvarint(bytes, at)?;
            let size = uvarint(bytes, at)? as usize;
            *at = at.checked_add(size).filter(|&end| end <= bytes.len())?;
        }
        Some(())
    }
    // correlation id, error code
    let mut at = 4 + 2;
    let keys = uvarint(response, &mut at)?.checked_sub(1)?;
    for _ in 0..keys {
        at += 6; // api key, min version, max version
        skip_tags(response, &mut at)?;
    }
    at += 4; // throttle time
    let tags_at = at;
    skip_tags(response, &mut at)?;
    if at != response.len() {
        return None;
    }
    let mut fixed = response[..tags_at].to_vec();
    fixed.push(0);
    Some(fixed)
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tansu 0.6's ApiVersions v3 response (after the length), as captured: 35 API keys, then
    /// four top-level tagged fields.
    const TANSU_API_VERSIONS: &str = "000000010000240011000000010000000000000b0000140000000600004b0000000000001300000007000045000000000000470000000000001600000005000020000000040000120000000400002c000000010000240000000200001e0000000300000d0000000500003c0000000100000c0000000400000b00000009000015000000020000100000000500000200000009000032000000000000180000000500000f00000005000033000000000000010000001100001c0000000400002a0000000200001d000000030000190000000400000a000000060000030000000c00002e0000000000000e0000000500000800000009000009000000090000000000040001010108ffffffffffffffff020101030100";

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn api_versions_response_loses_only_its_top_level_tags() {
        let response = unhex(TANSU_API_VERSIONS);
        let fixed = strip_api_versions_tags(&response).unwrap();
        // 4 + 2 + 1 + 35 × 7 + 4 bytes up to the tags, then an empty tag section.
        assert_eq!(fixed.len(), 4 + 2 + 1 + 35 * 7 + 4 + 1);
        assert_eq!(fixed[..fixed.len() - 1], response[..fixed.len() - 1]);
        assert_eq!(fixed.last(), Some(&0));
        // Stripping again changes nothing; garbage does not parse.
        assert_eq!(strip_api_versions_tags(&fixed), Some(fixed.clone()));
        assert_eq!(strip_api_versions_tags(&response[..100]), None);
        assert_eq!(strip_api_versions_tags(b"\x00\x00"), None);
    }
}
