//! TLS on stream listeners: syslog over TLS (RFC 5425) on `type = "tcp"`, and the agent
//! protocol on `type = "agent"`, configured by a listener's `[listen.tls]` table
//! ([`TlsConfig`]).
//!
//! # Where the handshake runs
//! [`TlsAcceptor::accept`] only accepts the TCP connection; the handshake is the
//! [`Acceptor::Establish`] future, awaited by the connection's own task (see
//! [`super::stream`]), within `handshake_timeout_secs`. A peer that never finishes its
//! handshake holds its own task and slot until then, never the accept loop or another
//! connection.
//!
//! # What is refused, and counted
//! Every connection that does not become an authenticated TLS session is closed and counted in
//! `logtail_peers_refused_total{reason}` ([`PeerRefusal`]); nothing it sent is stored:
//! - `plaintext`: its first byte is not a TLS handshake record (0x16), e.g. a syslog line sent
//!   to a TLS port;
//! - `handshake_timeout`, `handshake_failed` (a protocol or version mismatch, an unknown CA);
//! - `no_certificate` (`client_auth = "required"`), `certificate_expired`,
//!   `certificate_invalid` (not signed by `ca_file`, not yet valid, wrong usage);
//! - `peer_not_allowed`: a verified certificate none of `allowed_peers` matches.
//!
//! A client that connects and closes before sending a byte (a port probe) is not counted.
//!
//! # The peer's identity
//! A verified client certificate names its peer ([`PeerIdentity`]): its subject's common name,
//! else its first DNS subject alternative name, else `sha256:` and its fingerprint. That name
//! is stored in each record as `tls_peer`; its names (CN and every DNS SAN) are what an agent
//! may claim as its host.
//!
//! # Reloading
//! Each shard's acceptor looks at the modification time and size of `cert_file`, `key_file`
//! and `ca_file` at most once every [`RELOAD_CHECK`], when a connection arrives, and loads them
//! anew when one changed. New connections use the new certificates; open connections keep the
//! session they have. Files that do not load (a key written before its certificate) are
//! reported and the previous certificates stay in use until the files load.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Deserializer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use super::stream::{Acceptor, Established, Refused};
use crate::log_limit::RateLimitedWarning;
use crate::metrics::PeerRefusal;
use crate::pem::{read_certificates, read_private_key, unusable_key};
use crate::setting::{InvalidSetting, Refusal};

/// How often, at most, an acceptor looks whether the certificate files changed.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// `[listen.tls]`: TLS on a `tcp` or `agent` listener.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The listener's certificate chain, PEM, leaf first. Required.
    pub cert_file: PathBuf,
    /// The private key of `cert_file`, PEM (PKCS#8, PKCS#1 or SEC1). Required.
    pub key_file: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to; required when
    /// `client_auth` is not `none`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `none` (no client certificate asked), `optional` (verified when presented) or
    /// `required`. Default: `none`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Client certificates accepted, once verified: names (`web1.example.com`, or
    /// `*.example.com` for any name ending in `.example.com`) matched against the common name
    /// and DNS alternative names, or SHA-256 fingerprints (`sha256:` and 64 hex digits, colons
    /// allowed). Empty: any certificate `ca_file` verifies.
    #[serde(default)]
    pub allowed_peers: Vec<PeerPattern>,
    /// Oldest TLS version accepted: `"1.2"` or `"1.3"`. Default: `"1.2"`.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Time a client has to complete its handshake after connecting, in seconds. Default: 10.
    #[serde(
        default = "default_handshake_timeout",
        rename = "handshake_timeout_secs",
        deserialize_with = "seconds",
        serialize_with = "crate::setting::as_seconds"
    )]
    pub handshake_timeout: Duration,
}

fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}

fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let seconds = u64::deserialize(deserializer)?;
    if seconds == 0 {
        return Err(serde::de::Error::custom(Refusal(
            "0: allowed 1 or more seconds".into(),
        )));
    }
    Ok(Duration::from_secs(seconds))
}

/// Whether, and how, clients present certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A client certificate is verified when presented; clients without one are accepted.
    Optional,
    /// Every client presents a certificate `ca_file` verifies.
    Required,
}

/// The oldest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = TlsVersion;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"1.2\" or \"1.3\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<TlsVersion, E> {
                match text {
                    "1.2" => Ok(TlsVersion::Tls12),
                    "1.3" => Ok(TlsVersion::Tls13),
                    _ => Err(E::custom(Refusal(format!(
                        "{text:?}: allowed \"1.2\" or \"1.3\""
                    )))),
                }
            }
            fn visit_f64<E: serde::de::Error>(self, number: f64) -> Result<TlsVersion, E> {
                self.visit_str(&number.to_string())
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// One entry of `allowed_peers`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum PeerPattern {
    /// The SHA-256 of the certificate's DER.
    Fingerprint([u8; 32]),
    /// A name, lowercase; `*.example.com` is kept as `.example.com` and matches by suffix.
    Name { name: String, suffix: bool },
}

impl std::fmt::Display for PeerPattern {
    /// The form it is read from: `sha256:` and hex, a name, or `*.` and a suffix.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerPattern::Fingerprint(bytes) => {
                f.write_str("sha256:")?;
                bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            PeerPattern::Name { name, suffix: true } => write!(f, "*{name}"),
            PeerPattern::Name {
                name,
                suffix: false,
            } => f.write_str(name),
        }
    }
}

impl std::fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        })
    }
}

crate::setting::serialize_as_text!(PeerPattern, TlsVersion);

impl TryFrom<String> for PeerPattern {
    type Error = Refusal;
    fn try_from(text: String) -> Result<Self, Refusal> {
        if let Some(hex) = text.strip_prefix("sha256:") {
            let digits: String = hex.chars().filter(|c| *c != ':').collect();
            let mut fingerprint = [0u8; 32];
            let valid = digits.len() == 64
                && digits.is_ascii()
                && fingerprint.iter_mut().enumerate().all(|(i, byte)| {
                    match u8::from_str_radix(&digits[2 * i..2 * i + 2], 16) {
                        Ok(b) => {
                            *byte = b;
                            true
                        }
                        Err(_) => false,
                    }
                });
            if !valid {
                return Err(Refusal(format!(
                    "{text:?} is not a SHA-256 fingerprint: give sha256: and 64 hex digits, e.g. \
                     the output of `openssl x509 -noout -fingerprint -sha256 -in CERT`"
                )));
            }
            return Ok(PeerPattern::Fingerprint(fingerprint));
        }
        let lower = text.to_ascii_lowercase();
        let (name, suffix) = match lower.strip_prefix('*') {
            Some(rest) if rest.starts_with('.') && rest.len() > 1 => (rest.to_string(), true),
            _ => (lower, false),
        };
        if name.is_empty() || name.contains('*') || name.contains(char::is_whitespace) {
            return Err(Refusal(format!(
                "{text:?} is not a peer name: give a name (web1.example.com), *.example.com, \
                 or sha256:FINGERPRINT"
            )));
        }
        Ok(PeerPattern::Name { name, suffix })
    }
}

impl PeerPattern {
    /// True when this pattern accepts the peer.
    pub fn matches(&self, peer: &PeerIdentity) -> bool {
        match self {
            PeerPattern::Fingerprint(fingerprint) => *fingerprint == peer.fingerprint,
            PeerPattern::Name { name, suffix } => peer.names.iter().any(|candidate| {
                let candidate = candidate.to_ascii_lowercase();
                if *suffix {
                    candidate.ends_with(name.as_str())
                } else {
                    candidate == *name
                }
            }),
        }
    }
}

impl TlsConfig {
    /// Checks the keys against each other and loads the files, so that a listener that would
    /// not start is reported with the configuration.
    ///
    /// # Errors
    /// The key at fault (`cert_file`, `ca_file`, ...), naming the file and what is wrong.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        self.load().map(drop)
    }

    /// Reads the files into a rustls server configuration.
    ///
    /// # Errors
    /// As [`TlsConfig::check`].
    pub fn load(&self) -> Result<Arc<ServerConfig>, InvalidSetting> {
        match (self.client_auth, &self.ca_file) {
            (ClientAuth::None, Some(_)) => {
                return Err(InvalidSetting::new(
                    "ca_file",
                    "only verifies client certificates: set client_auth = \"optional\" or \
                     \"required\", or remove ca_file",
                ));
            }
            (ClientAuth::Optional | ClientAuth::Required, None) => {
                return Err(InvalidSetting::new(
                    "ca_file",
                    "required when client_auth is not \"none\": the CA certificates (PEM) that \
                     sign the clients' certificates",
                ));
            }
            _ => {}
        }
        if self.client_auth == ClientAuth::None && !self.allowed_peers.is_empty() {
            return Err(InvalidSetting::new(
                "allowed_peers",
                "needs client certificates: set client_auth = \"required\" (and ca_file)",
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = match self.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| InvalidSetting::new("min_version", e.to_string()))?;
        let builder = match &self.ca_file {
            None => builder.with_no_client_auth(),
            Some(ca_file) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certificates("ca_file", ca_file)? {
                    roots.add(cert).map_err(|e| {
                        InvalidSetting::new(
                            "ca_file",
                            format!("{}: not a usable CA certificate: {e}", ca_file.display()),
                        )
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = match self.client_auth {
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                    _ => verifier,
                };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| {
                    InvalidSetting::new("ca_file", format!("{}: {e}", ca_file.display()))
                })?)
            }
        };
        let chain = read_certificates("cert_file", &self.cert_file)?;
        let key = read_private_key("key_file", &self.key_file)?;
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| unusable_key(&self.key_file, &self.cert_file, &e))?;
        // No TLS 1.3 session tickets: they are the only bytes a syslog server sends, and a
        // sender that never reads (loggen, many devices) then closes with them unread in its
        // socket, which makes its kernel reset the connection and ours discard what it had
        // not yet read. Seen with loggen --use-ssl: 987 of 5,000 lines stored with tickets,
        // all without.
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }

    fn files(&self) -> impl Iterator<Item = &Path> {
        [
            Some(&self.cert_file),
            Some(&self.key_file),
            self.ca_file.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
    }
}

/// Who a verified client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// What records store as `tls_peer`: the CN, else the first DNS SAN, else `sha256:HEX`.
    pub name: String,
    /// The CN and every DNS SAN, as written in the certificate.
    pub names: Vec<String>,
    /// SHA-256 of the certificate's DER.
    pub fingerprint: [u8; 32],
}

impl PeerIdentity {
    /// Reads the names of a certificate rustls has verified.
    pub fn of(cert: &CertificateDer<'_>) -> PeerIdentity {
        let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(digest.as_ref());
        let mut names = Vec::new();
        if let Ok(parsed) = webpki::EndEntityCert::try_from(cert) {
            names.extend(common_name(parsed.subject()));
            names.extend(parsed.valid_dns_names().map(str::to_string));
        }
        let name = match names.first() {
            Some(name) => name.clone(),
            None => {
                let mut hex = String::from("sha256:");
                for byte in fingerprint {
                    let _ = write!(hex, "{byte:02x}");
                }
                hex
            }
        };
        PeerIdentity {
            name,
            names,
            fingerprint,
        }
    }

    /// True when the certificate names `host` (case-insensitively).
    pub fn names_host(&self, host: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(host))
    }
}

/// The common name (OID 2.5.4.3) of an X.501 Name, given as the contents of its SEQUENCE (a
/// series of SETs of SEQUENCE { OID, value }), when it is a UTF-8, printable or IA5 string.
fn common_name(mut name: &[u8]) -> Option<String> {
    const CN_OID: &[u8] = &[0x55, 0x04, 0x03];
    // Some versions hand the Name with its SEQUENCE header.
    if name.first() == Some(&0x30) {
        name = der_take(name)?.1;
    }
    while !name.is_empty() {
        let (tag, mut set) = der_take(name)?;
        name = &name[der_len(name)?..];
        if tag != 0x31 {
            return None;
        }
        while !set.is_empty() {
            let (_, attribute) = der_take(set)?;
            set = &set[der_len(set)?..];
            let (oid_tag, oid) = der_take(attribute)?;
            let value = &attribute[der_len(attribute)?..];
            let (value_tag, value) = der_take(value)?;
            // UTF8String, PrintableString, IA5String.
            if oid_tag == 0x06 && oid == CN_OID && matches!(value_tag, 0x0c | 0x13 | 0x16) {
                return std::str::from_utf8(value).ok().map(str::to_string);
            }
        }
    }
    None
}

/// The tag and contents of the DER element at the start of `input`.
fn der_take(input: &[u8]) -> Option<(u8, &[u8])> {
    let total = der_len(input)?;
    let header = total - der_content_len(input)?;
    Some((input[0], &input[header..total]))
}

/// The length of the DER element (header and contents) at the start of `input`.
fn der_len(input: &[u8]) -> Option<usize> {
    let content = der_content_len(input)?;
    let first = *input.get(1)?;
    let header = if first < 0x80 {
        2
    } else {
        2 + usize::from(first & 0x7f)
    };
    let total = header.checked_add(content)?;
    (total <= input.len()).then_some(total)
}

fn der_content_len(input: &[u8]) -> Option<usize> {
    let first = *input.get(1)?;
    if first < 0x80 {
        return Some(usize::from(first));
    }
    let count = usize::from(first & 0x7f);
    if count == 0 || count > 4 {
        return None;
    }
    let bytes = input.get(2..2 + count)?;
    Some(bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b)))
}

/// What a shard's TLS listener shares with its connections: the settings and the current
/// certificates.
pub struct TlsAcceptor {
    listener: TcpListener,
    config: Arc<TlsConfig>,
    loaded: RefCell<Loaded>,
    warning: Arc<RateLimitedWarning>,
    name: String,
}

/// The certificates in use and what their files looked like when read.
struct Loaded {
    server: Arc<ServerConfig>,
    stamps: Vec<Option<(SystemTime, u64)>>,
    checked: Instant,
}

fn stamps(config: &TlsConfig) -> Vec<Option<(SystemTime, u64)>> {
    config
        .files()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

impl TlsAcceptor {
    /// An acceptor for `listener`, named `name` in logs.
    ///
    /// # Errors
    /// When the files no longer load (they were checked with the configuration).
    pub fn new(
        listener: TcpListener,
        config: Arc<TlsConfig>,
        warning: Arc<RateLimitedWarning>,
        name: String,
    ) -> Result<Self, InvalidSetting> {
        let stamps = stamps(&config);
        let server = config.load()?;
        Ok(TlsAcceptor {
            listener,
            config,
            loaded: RefCell::new(Loaded {
                server,
                stamps,
                checked: Instant::now(),
            }),
            warning,
            name,
        })
    }

    /// The certificates to use for a new connection, reloaded first when their files changed.
    fn current(&self) -> Arc<ServerConfig> {
        let mut loaded = self.loaded.borrow_mut();
        if loaded.checked.elapsed() >= RELOAD_CHECK {
            loaded.checked = Instant::now();
            let now = stamps(&self.config);
            if now != loaded.stamps {
                match self.config.load() {
                    Ok(server) => {
                        tracing::info!(listener = %self.name, "TLS certificates reloaded");
                        loaded.server = server;
                        loaded.stamps = now;
                    }
                    Err(e) => self.warning.warn(|| {
                        format!(
                            "listener {}: TLS files changed but do not load, keeping the \
                             previous ones: tls.{e}",
                            self.name
                        )
                    }),
                }
            }
        }
        loaded.server.clone()
    }
}

/// The handshake of one connection, run by its task.
pub type TlsHandshake =
    Pin<Box<dyn Future<Output = Result<Established<TlsStream<TcpStream>>, Refused>>>>;

impl Acceptor for TlsAcceptor {
    type Stream = TlsStream<TcpStream>;
    type Establish = TlsHandshake;

    async fn accept(&self) -> std::io::Result<(TlsHandshake, String)> {
        let (tcp, peer) = self.listener.accept().await?;
        let server = self.current();
        let config = self.config.clone();
        Ok((Box::pin(handshake(tcp, server, config)), peer.to_string()))
    }
}

/// The TLS record type of a handshake message: what a TLS client sends first.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

async fn handshake(
    tcp: TcpStream,
    server: Arc<ServerConfig>,
    config: Arc<TlsConfig>,
) -> Result<Established<TlsStream<TcpStream>>, Refused> {
    let deadline = config.handshake_timeout;
    let handshake = async {
        let mut first = [0u8; 1];
        match tcp.peek(&mut first).await {
            Ok(0) | Err(_) => return Err(Refused::closed()),
            Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => {
                return Err(Refused::new(
                    PeerRefusal::Plaintext,
                    "sent plaintext to a TLS listener; configure the sender for TLS".into(),
                ));
            }
            Ok(_) => {}
        }
        let stream = tokio_rustls::TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(classify)?;
        let peer = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(PeerIdentity::of);
        if let Some(peer) = &peer
            && !config.allowed_peers.is_empty()
            && !config.allowed_peers.iter().any(|p| p.matches(peer))
        {
            return Err(Refused::new(
                PeerRefusal::PeerNotAllowed,
                format!(
                    "certificate of {} is not in allowed_peers; add one of its names ({}) to \
                     tls.allowed_peers",
                    peer.name,
                    peer.names.join(", ")
                ),
            ));
        }
        Ok(Established { stream, peer })
    };
    match tokio::time::timeout(deadline, handshake).await {
        Ok(result) => result,
        Err(_) => Err(Refused::new(
            PeerRefusal::HandshakeTimeout,
            format!("no TLS handshake within {deadline:?}"),
        )),
    }
}

/// Sorts a failed handshake by what the operator should fix.
fn classify(error: std::io::Error) -> Refused {
    use rustls::{CertificateError, Error};
    let reason = match error.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
        Some(Error::NoCertificatesPresented) => PeerRefusal::NoCertificate,
        Some(Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => PeerRefusal::CertificateExpired,
        Some(Error::InvalidCertificate(_)) => PeerRefusal::CertificateInvalid,
        _ => PeerRefusal::HandshakeFailed,
    };
    Refused::new(reason, format!("TLS handshake failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `name` and its key, as PEM files in `dir`.
    fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_file, key_file) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }

    fn config(cert_file: PathBuf, key_file: PathBuf) -> TlsConfig {
        TlsConfig {
            cert_file,
            key_file,
            ca_file: None,
            client_auth: ClientAuth::None,
            allowed_peers: Vec::new(),
            min_version: TlsVersion::Tls12,
            handshake_timeout: default_handshake_timeout(),
        }
    }

    #[test]
    fn files_are_checked_at_load_and_errors_name_the_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path(), "a");
        let (_, other_key) = self_signed(dir.path(), "b");
        assert_eq!(config(cert.clone(), key.clone()).check(), Ok(()));

        let missing = dir.path().join("missing.pem");
        let e = config(missing.clone(), key.clone()).check().unwrap_err();
        assert_eq!(e.key, "cert_file");
        assert!(e.message.contains(&missing.display().to_string()), "{e}");

        let e = config(key.clone(), key.clone()).check().unwrap_err();
        assert_eq!(e.key, "cert_file");
        assert!(e.message.contains("no certificate"), "{e}");

        let e = config(cert.clone(), cert.clone()).check().unwrap_err();
        assert_eq!(e.key, "key_file");
        assert!(e.message.contains("no private key"), "{e}");

        let e = config(cert.clone(), other_key).check().unwrap_err();
        assert_eq!(e.key, "key_file");
        assert!(e.message.contains("is not the private key of"), "{e}");

        let mut required = config(cert.clone(), key.clone());
        required.client_auth = ClientAuth::Required;
        assert_eq!(required.check().unwrap_err().key, "ca_file");
        required.ca_file = Some(cert.clone());
        assert_eq!(required.check(), Ok(()));

        let mut no_auth = config(cert.clone(), key);
        no_auth.allowed_peers = vec![PeerPattern::try_from("web1".to_string()).unwrap()];
        assert_eq!(no_auth.check().unwrap_err().key, "allowed_peers");
        no_auth.allowed_peers.clear();
        no_auth.ca_file = Some(cert);
        assert_eq!(no_auth.check().unwrap_err().key, "ca_file");
    }

    #[test]
    fn min_version_reads_strings_and_numbers() {
        #[derive(Deserialize)]
        struct Section {
            min_version: TlsVersion,
        }
        let read = |text: &str| crate::setting::from_toml::<Section>(text).map(|s| s.min_version);
        assert_eq!(read("min_version = \"1.3\"").ok(), Some(TlsVersion::Tls13));
        assert_eq!(read("min_version = 1.2").ok(), Some(TlsVersion::Tls12));
        assert!(read("min_version = \"1.1\"").is_err());
    }

    #[test]
    fn peer_patterns_parse_names_wildcards_and_fingerprints() {
        let hex = "ab".repeat(32);
        assert_eq!(
            PeerPattern::try_from(format!("sha256:{hex}")),
            Ok(PeerPattern::Fingerprint([0xab; 32]))
        );
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(
            PeerPattern::try_from(format!("sha256:{colons}")),
            Ok(PeerPattern::Fingerprint([0xab; 32]))
        );
        assert!(PeerPattern::try_from("sha256:abc".to_string()).is_err());
        assert_eq!(
            PeerPattern::try_from("*.Example.com".to_string()),
            Ok(PeerPattern::Name {
                name: ".example.com".into(),
                suffix: true
            })
        );
        assert!(PeerPattern::try_from("a*.example.com".to_string()).is_err());
        assert!(PeerPattern::try_from(String::new()).is_err());
    }

    #[test]
    fn name_patterns_match_any_name_of_the_peer() {
        let peer = PeerIdentity {
            name: "web1".into(),
            names: vec!["web1".into(), "web1.Example.com".into()],
            fingerprint: [7; 32],
        };
        let pattern = |s: &str| PeerPattern::try_from(s.to_string()).unwrap();
        assert!(pattern("web1.example.com").matches(&peer));
        assert!(pattern("*.example.com").matches(&peer));
        assert!(!pattern("*.other.com").matches(&peer));
        assert!(!pattern("web2").matches(&peer));
        assert!(PeerPattern::Fingerprint([7; 32]).matches(&peer));
        assert!(peer.names_host("WEB1"));
        assert!(!peer.names_host("db1"));
    }

    #[test]
    fn common_name_is_read_from_a_der_name() {
        // SEQUENCE { SET { SEQUENCE { OID 2.5.4.10, UTF8 "org" } },
        //            SET { SEQUENCE { OID 2.5.4.3, UTF8 "web1" } } }
        let name = [
            0x30, 0x1c, 0x31, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x0c, 0x03, b'o',
            b'r', b'g', 0x31, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x03, b'w',
            b'e', b'b',
        ];
        // The outer length says 0x1c; the inner CN value is "web".
        assert_eq!(common_name(&name).as_deref(), Some("web"));
        assert_eq!(common_name(&name[2..]).as_deref(), Some("web"));
        assert_eq!(common_name(&[0x31, 0x05, 0x30]), None);
    }
}
