//! The HTTP/1.1 client of Elasticsearch: [`ElasticsearchClient`], which the sink drives from
//! one thread (`es-http`, [`HttpWorker`]) with a current-thread tokio runtime that runs each
//! request as a task, so the sink thread never blocks on the network (requests arrive as
//! [`HttpJob`]s and their [`HttpAnswer`]s go back on a channel the sink thread drains), and
//! which the search backend ([`crate::search::elasticsearch`]) calls directly from the HTTP
//! API's tasks. It is `Send + Sync`: the pool is behind a mutex held only to take or return a
//! connection, never across an `.await`.
//!
//! - Connections are kept alive and reused (an idle pool per endpoint); a request that fails on
//!   a reused connection (the server closed it while idle) is tried once more on a new one.
//! - `endpoints` are tried in turn: a request goes to the endpoint that answered last, and on a
//!   connection error to the next, each at most once per request.
//! - Bodies are gzipped (level 1: logs compress ~8:1 at that level already; the CPU goes to this
//!   thread, not the sink's) unless `compression = "none"`.
//! - hyper's own client connection (`hyper::client::conn::http1`), with rustls for `https`: two
//!   crates already in the build for the HTTP server and the TLS listeners, rather than reqwest
//!   and its pool, proxy and redirect machinery.

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::config::{Auth, BodyCompression, ElasticsearchSinkConfig, Endpoint};
use crate::setting::InvalidSetting;

/// One request for the HTTP thread.
#[derive(Debug)]
pub struct HttpJob {
    /// Tells its answer apart.
    pub id: u64,
    pub method: Method,
    /// Below the endpoint's path prefix, with a leading `/`.
    pub path: String,
    pub body: Bytes,
    /// `application/x-ndjson` (a bulk body) rather than `application/json`.
    pub ndjson: bool,
}

/// The answer to [`HttpJob`] `id`.
#[derive(Debug)]
pub struct HttpAnswer {
    pub id: u64,
    pub result: Result<HttpReply, RequestError>,
    /// From the job's start to its answer.
    pub elapsed: Duration,
}

#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub body: Bytes,
}

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No endpoint could be connected to, or each dropped the connection.
    #[error("no endpoint reachable: {0}")]
    Unreachable(String),
    /// No full answer within `request_timeout_ms`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl RequestError {
    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            RequestError::Unreachable(_) => "connection",
            RequestError::Timeout(_) => "timeout",
        }
    }
}

/// The HTTP thread, seen from the sink thread.
pub struct HttpWorker {
    jobs: Option<tokio::sync::mpsc::UnboundedSender<HttpJob>>,
    answers: std::sync::mpsc::Receiver<HttpAnswer>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpWorker {
    /// Starts the thread.
    ///
    /// # Errors
    /// When the CA file cannot be used (under its key) or the thread cannot start.
    pub fn start(config: &ElasticsearchSinkConfig) -> anyhow::Result<HttpWorker> {
        let client = ElasticsearchClient::new(
            &config.endpoints,
            &config.auth,
            config.ca_file.as_deref(),
            config.compression,
            config.request_timeout,
        )?;
        let (jobs, mut incoming) = tokio::sync::mpsc::unbounded_channel::<HttpJob>();
        let (answer, answers) = std::sync::mpsc::channel();
        let thread = crate::runtime::spawn("es-http".into(), move || async move {
            let client = Arc::new(client);
            while let Some(job) = incoming.recv().await {
                let client = client.clone();
                let answer = answer.clone();
                tokio::task::spawn_local(async move {
                    let started = Instant::now();
                    let result = client.send(&job).await;
                    let _ = answer.send(HttpAnswer {
                        id: job.id,
                        result,
                        elapsed: started.elapsed(),
                    });
                });
            }
        })?;
        Ok(HttpWorker {
            jobs: Some(jobs),
            answers,
            thread: Some(thread),
        })
    }

    /// Hands `job` to the thread.
    pub fn send(&self, job: HttpJob) {
        if let Some(jobs) = &self.jobs {
            // The thread only ends once `jobs` is dropped, in `Drop`.
            let _ = jobs.send(job);
        }
    }

    /// An answer, if one arrived.
    pub fn try_answer(&self) -> Option<HttpAnswer> {
        self.answers.try_recv().ok()
    }

    /// An answer, waiting up to `wait` for one.
    pub fn answer_within(&self, wait: Duration) -> Option<HttpAnswer> {
        self.answers.recv_timeout(wait).ok()
    }
}

impl Drop for HttpWorker {
    /// Requests still in flight are abandoned: their documents are in the sink's hands still.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl ElasticsearchClient {
    /// A client of `endpoints` (tried in turn), authenticating with `auth`, trusting the CAs of
    /// `ca_file` for `https` endpoints; a request without a full answer after `timeout` fails.
    ///
    /// # Errors
    /// A CA file that cannot be used, or an auth value that is not a valid header (under the
    /// key at fault).
    pub fn new(
        endpoints: &[Endpoint],
        auth: &Auth,
        ca_file: Option<&std::path::Path>,
        compression: BodyCompression,
        timeout: Duration,
    ) -> Result<ElasticsearchClient, InvalidSetting> {
        let tls = match ca_file {
            Some(ca) if endpoints.iter().any(|e| e.tls) => Some(connector(ca)?),
            _ => None,
        };
        Ok(ElasticsearchClient {
            endpoints: endpoints.to_vec(),
            current: AtomicUsize::new(0),
            idle: Mutex::new(endpoints.iter().map(|_| Vec::new()).collect()),
            tls,
            auth: auth
                .header()
                .map(|h| HeaderValue::from_str(&h))
                .transpose()
                .map_err(|_| InvalidSetting::new("auth", "not a valid HTTP header value"))?,
            gzip: compression == BodyCompression::Gzip,
            timeout,
        })
    }
}

fn connector(ca: &std::path::Path) -> Result<tokio_rustls::TlsConnector, InvalidSetting> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in crate::pem::read_certificates("ca_file", ca)? {
        roots.add(cert).map_err(|e| {
            InvalidSetting::new(
                "ca_file",
                format!("{}: not a usable CA certificate: {e}", ca.display()),
            )
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| InvalidSetting::new("ca_file", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

type Sender = SendRequest<Full<Bytes>>;

/// Endpoints, their idle connections, TLS and auth: what every request needs.
pub struct ElasticsearchClient {
    endpoints: Vec<Endpoint>,
    /// The endpoint that answered last.
    current: AtomicUsize,
    /// Idle kept-alive connections, per endpoint.
    idle: Mutex<Vec<Vec<Sender>>>,
    tls: Option<tokio_rustls::TlsConnector>,
    auth: Option<HeaderValue>,
    gzip: bool,
    timeout: Duration,
}

/// One try on one connection failed before an answer.
enum TryError {
    /// On a connection that was idle in the pool: it may have been closed by the server.
    Stale(String),
    /// Connecting, or a new connection, failed.
    Endpoint(String),
}

impl std::fmt::Debug for ElasticsearchClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticsearchClient")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl ElasticsearchClient {
    /// Sends `job` (to the endpoint that answered last, then to the others in turn) and reads
    /// the whole answer.
    ///
    /// # Errors
    /// No endpoint reachable, or no full answer within the timeout.
    pub async fn send(&self, job: &HttpJob) -> Result<HttpReply, RequestError> {
        let body = if self.gzip {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(job.body.len() / 4),
                flate2::Compression::fast(),
            );
            // Writing to a Vec cannot fail.
            let _ = encoder.write_all(&job.body);
            Bytes::from(encoder.finish().unwrap_or_default())
        } else {
            job.body.clone()
        };
        let attempt = async {
            let mut errors = Vec::new();
            let mut stale_retried = false;
            let mut tried = 0;
            while tried < self.endpoints.len() {
                let at = self.current.load(Ordering::Relaxed) % self.endpoints.len();
                match self.try_endpoint(at, job, &body, !stale_retried).await {
                    Ok(reply) => return Ok(reply),
                    Err(TryError::Stale(e)) if !stale_retried => {
                        stale_retried = true;
                        errors.push(e);
                    }
                    Err(TryError::Stale(e) | TryError::Endpoint(e)) => {
                        errors.push(format!("{}: {e}", self.endpoints[at]));
                        self.current
                            .store((at + 1) % self.endpoints.len(), Ordering::Relaxed);
                        tried += 1;
                    }
                }
            }
            Err(RequestError::Unreachable(errors.join("; ")))
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or(Err(RequestError::Timeout(self.timeout)))
    }

    async fn try_endpoint(
        &self,
        at: usize,
        job: &HttpJob,
        body: &Bytes,
        reuse: bool,
    ) -> Result<HttpReply, TryError> {
        let pooled = if reuse { self.idle_sender(at) } else { None };
        let reused = pooled.is_some();
        let mut sender = match pooled {
            Some(sender) => sender,
            None => self.connect(at).await.map_err(TryError::Endpoint)?,
        };
        let failed = |e: String| {
            if reused {
                TryError::Stale(e)
            } else {
                TryError::Endpoint(e)
            }
        };
        sender.ready().await.map_err(|e| failed(e.to_string()))?;
        let endpoint = &self.endpoints[at];
        let mut request = Request::builder()
            .method(job.method.clone())
            .uri(format!("{}{}", endpoint.path_prefix, job.path))
            .header(HOST, endpoint.authority())
            .header(
                CONTENT_TYPE,
                if job.ndjson {
                    "application/x-ndjson"
                } else {
                    "application/json"
                },
            );
        if self.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let request = request
            .body(Full::new(body.clone()))
            .map_err(|e| TryError::Endpoint(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| TryError::Endpoint(e.to_string()))?
            .to_bytes();
        if !sender.is_closed()
            && let Ok(mut idle) = self.idle.lock()
        {
            idle[at].push(sender);
        }
        Ok(HttpReply { status, body })
    }

    fn idle_sender(&self, at: usize) -> Option<Sender> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(sender) = idle[at].pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    async fn connect(&self, at: usize) -> Result<Sender, String> {
        let endpoint = &self.endpoints[at];
        let tcp = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match (&self.tls, endpoint.tls) {
            (Some(tls), true) => {
                let name = rustls_pki_types::ServerName::try_from(endpoint.host.clone())
                    .map_err(|e| format!("{}: not a TLS server name: {e}", endpoint.host))?;
                Box::new(
                    tls.connect(name, tcp)
                        .await
                        .map_err(|e| format!("TLS handshake: {e}"))?,
                )
            }
            (None, true) => return Err("https without a CA file".into()),
            (_, false) => Box::new(tcp),
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(async move {
            // Ends when the server closes the connection or the sender is dropped.
            let _ = connection.await;
        });
        Ok(sender)
    }
}
