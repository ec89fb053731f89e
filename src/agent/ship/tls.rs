//! `[ship.tls]`: the agent's side of TLS to the gateway's agent listener, and the connection
//! the `gateway` shipper's two threads share.
//!
//! The shipper writes frames from its connection thread and reads ACKs on a reader thread.
//! A TLS session is one state machine, so the two share it behind a mutex ([`Link`]): the
//! writer encrypts under the lock and writes the records to the socket after releasing it
//! (only the writer writes, so records go out in order); the reader reads the socket without
//! the lock and decrypts under it. Neither holds the lock during socket I/O, so a writer
//! blocked on a full send buffer never keeps ACKs from being read.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use serde::Deserialize;

use crate::pem::{read_certificates, read_private_key, unusable_key};
use crate::setting::InvalidSetting;

/// `[ship.tls]`: TLS to the gateway (`type = "gateway"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShipTlsConfig {
    /// CA certificates (PEM) the gateway's certificate must chain to. Required.
    pub ca_file: PathBuf,
    /// This agent's certificate (PEM), whose CN or DNS name is its `host`; with `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file` (PEM).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The name the gateway's certificate must carry. Default: the host part of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// What a connection needs: the rustls configuration and the name to verify.
#[derive(Debug, Clone)]
pub struct ShipTls {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl ShipTlsConfig {
    /// Reads the files, for a gateway at `address`.
    ///
    /// # Errors
    /// The key at fault, relative to `[ship.tls]`, naming the file and what is wrong.
    pub fn load(&self, address: &str) -> Result<ShipTls, InvalidSetting> {
        let mut roots = RootCertStore::empty();
        for cert in read_certificates("ca_file", &self.ca_file)? {
            roots.add(cert).map_err(|e| {
                InvalidSetting::new(
                    "ca_file",
                    format!(
                        "{}: not a usable CA certificate: {e}",
                        self.ca_file.display()
                    ),
                )
            })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| InvalidSetting::new("", e.to_string()))?
            .with_root_certificates(roots);
        let config = match (&self.cert_file, &self.key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert_file), Some(key_file)) => {
                let chain = read_certificates("cert_file", cert_file)?;
                let key = read_private_key("key_file", key_file)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| unusable_key(key_file, cert_file, &e))?
            }
            (Some(_), None) => {
                return Err(InvalidSetting::new(
                    "key_file",
                    "required with cert_file: the agent's private key (PEM)",
                ));
            }
            (None, Some(_)) => {
                return Err(InvalidSetting::new(
                    "cert_file",
                    "required with key_file: the agent's certificate (PEM)",
                ));
            }
        };
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => host_of(address).to_string(),
        };
        let server_name = ServerName::try_from(name.clone()).map_err(|_| {
            InvalidSetting::new(
                "server_name",
                format!("{name:?} is not a DNS name or IP address"),
            )
        })?;
        Ok(ShipTls {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// `HOST` of `HOST:PORT` or `[V6]:PORT`.
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A connection to the gateway, plain or TLS, shared by a writer and a reader thread.
#[derive(Clone)]
pub enum Link {
    Plain(Arc<TcpStream>),
    Tls(Arc<TlsLink>),
}

/// A TLS session and its socket.
pub struct TlsLink {
    session: Mutex<ClientConnection>,
    socket: TcpStream,
}

impl TlsLink {
    fn session(&self) -> MutexGuard<'_, ClientConnection> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Link {
    /// A plain connection.
    pub fn plain(socket: TcpStream) -> Link {
        Link::Plain(Arc::new(socket))
    }

    /// Completes a TLS handshake on `socket` (within its read timeout, if set).
    ///
    /// # Errors
    /// The handshake's error: an unknown CA, a name mismatch, a refused certificate.
    pub fn tls(socket: TcpStream, tls: &ShipTls) -> io::Result<Link> {
        let mut session = ClientConnection::new(tls.config.clone(), tls.server_name.clone())
            .map_err(io::Error::other)?;
        // A frame is written whole and encrypted at once; the writer drains it right after.
        session.set_buffer_limit(None);
        while session.is_handshaking() {
            session.complete_io(&mut &socket)?;
        }
        Ok(Link::Tls(Arc::new(TlsLink {
            session: Mutex::new(session),
            socket,
        })))
    }

    /// The socket, for options and shutdown.
    pub fn socket(&self) -> &TcpStream {
        match self {
            Link::Plain(socket) => socket,
            Link::Tls(link) => &link.socket,
        }
    }

    /// Writes all of `bytes`. Only one thread writes.
    ///
    /// # Errors
    /// The socket's.
    pub fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Link::Plain(socket) => (&**socket).write_all(bytes),
            Link::Tls(link) => {
                let mut records = Vec::with_capacity(bytes.len() + 1024);
                {
                    let mut session = link.session();
                    session.writer().write_all(bytes)?;
                    while session.wants_write() {
                        session.write_tls(&mut records)?;
                    }
                }
                (&link.socket).write_all(&records)
            }
        }
    }

    /// A reader of what the gateway sends.
    ///
    /// # Errors
    /// When the socket cannot be duplicated.
    pub fn reader(&self) -> io::Result<LinkReader> {
        Ok(match self {
            Link::Plain(socket) => LinkReader::Plain(socket.try_clone()?),
            Link::Tls(link) => LinkReader::Tls {
                link: link.clone(),
                socket: link.socket.try_clone()?,
                raw: Vec::new(),
                used: 0,
            },
        })
    }

    /// Shuts the socket down both ways, waking a blocked reader.
    pub fn shutdown(&self) {
        let _ = self.socket().shutdown(Shutdown::Both);
    }
}

/// Reads the plaintext the gateway sends.
pub enum LinkReader {
    Plain(TcpStream),
    Tls {
        link: Arc<TlsLink>,
        socket: TcpStream,
        /// Bytes read from the socket, `used` of them given to the session.
        raw: Vec<u8>,
        used: usize,
    },
}

impl Read for LinkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let (link, socket, raw, used) = match self {
            LinkReader::Plain(socket) => return socket.read(out),
            LinkReader::Tls {
                link,
                socket,
                raw,
                used,
            } => (link, socket, raw, used),
        };
        loop {
            {
                let mut session = link.session();
                match session.reader().read(out) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if *used < raw.len() {
                    let mut rest = &raw[*used..];
                    *used += session.read_tls(&mut rest)?;
                    session
                        .process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    continue;
                }
            }
            raw.resize(16 * 1024, 0);
            let n = socket.read(raw)?;
            raw.truncate(n);
            *used = 0;
            if n == 0 {
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_of_an_address() {
        assert_eq!(host_of("gw.example.com:5515"), "gw.example.com");
        assert_eq!(host_of("10.0.0.1:5515"), "10.0.0.1");
        assert_eq!(host_of("[::1]:5515"), "::1");
    }
}
