//! The gateway's one HTTP server: Prometheus metrics at `/metrics`, the web console at `/`
//! ([`console`]); the search API (`/api/v1/...`, issue 12) joins the same router.
//!
//! # Shape
//! - [`router`] assembles the routes from parts, each part a module that returns a
//!   `Router<HttpState>` for its own paths (`prometheus` for `/metrics`); a new part is one
//!   `.merge(part::routes())` line. What the handlers need (the metrics today, the store and
//!   the query engine next) travels in [`HttpState`], passed in by the composition root
//!   ([`crate::server`]): handlers never reach for globals.
//! - [`serve`] runs the router on a bound listener until the gateway's shutdown signal, then
//!   stops accepting and gives in-flight requests [`SHUTDOWN_GRACE`] to finish.
//! - [`MetricsConfig`] is the `[metrics]` section of the config file: whether to serve at all,
//!   and the address.
//!
//! # Limits
//! HTTP/1.1 only, one request per connection (`Connection: close`), and [`HEAD_TIMEOUT`] to send
//! the request head: enough for Prometheus, `curl` and a browser, with nothing a client can hold
//! open. Only `GET` (and so `HEAD`) is served, and `PUT` of the console's agent configs; other
//! methods get 405, unknown paths 404.

pub mod console;
mod prometheus;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::metrics::Metrics;

/// How long a client has to send its request head before the connection is closed (the
/// slowloris guard).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long in-flight requests may take to finish once the gateway stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// `[metrics]`: the HTTP endpoint, serving Prometheus metrics at `http://ADDRESS/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve metrics at all. Default: true.
    pub enabled: bool,
    /// `IP:PORT` of the endpoint. Default: `127.0.0.1:9100`.
    #[serde(deserialize_with = "socket_addr")]
    pub address: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            address: SocketAddr::from(([127, 0, 0, 1], 9100)),
        }
    }
}

/// `IP:PORT`, refused with the value and an example (serde adds the line and the key).
fn socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!("{text:?} is not IP:PORT, e.g. \"127.0.0.1:9100\""))
    })
}

/// What every handler can read; cloned (cheaply: `Arc`s) into each request.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The running gateway's metrics.
    pub metrics: Arc<Metrics>,
    /// `[console]`: where the agents' collect entries are.
    pub console: Arc<console::ConsoleConfig>,
}

/// Every route of the server, over `state`.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .merge(prometheus::routes())
        .merge(console::routes())
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(method: Method) -> Response {
    if method == Method::GET || method == Method::HEAD {
        text(StatusCode::NOT_FOUND, "not found: try /metrics\n")
    } else {
        method_not_allowed().await
    }
}

async fn method_not_allowed() -> Response {
    text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n")
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// Binds the endpoint `config` asks for; `None` when it is disabled. The socket is bound here,
/// before any thread starts, so that a taken port fails the gateway's start.
///
/// # Errors
/// When the address cannot be bound; the message names it.
pub fn bind(config: &MetricsConfig) -> anyhow::Result<Option<std::net::TcpListener>> {
    if !config.enabled {
        return Ok(None);
    }
    let listener = std::net::TcpListener::bind(config.address)
        .with_context(|| format!("metrics endpoint: cannot listen on {}", config.address))?;
    listener.set_nonblocking(true)?;
    Ok(Some(listener))
}

/// Serves [`router`] over `state` on `listener` from a thread of its own (thread `metrics`),
/// until the returned sender is used or dropped.
///
/// # Errors
/// When the thread cannot be started.
pub fn spawn(
    listener: std::net::TcpListener,
    state: HttpState,
) -> anyhow::Result<(JoinHandle<()>, tokio::sync::oneshot::Sender<()>)> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = crate::runtime::spawn("metrics".into(), move || async move {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => {
                serve(listener, router(state), async move {
                    let _ = stopped.await;
                })
                .await;
            }
            Err(e) => tracing::error!("metrics endpoint: {e}"),
        }
    })?;
    Ok((thread, stop))
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits at most
/// [`SHUTDOWN_GRACE`] for the requests in flight.
///
/// The connections are served by hyper directly rather than `axum::serve`, for the two limits
/// `axum::serve` cannot set: the request-head timeout and one request per connection.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .keep_alive(false);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // A full descriptor table or a connection reset before accept: the next
                // accept may succeed.
                Err(_) => continue,
            },
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away or sends garbage only ends its own connection.
            let _ = connection.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;

    use super::*;
    use crate::metrics::{Metrics, SinkMetrics};

    /// Serves on an ephemeral port from a thread of its own; the sender stops it.
    fn start() -> (SocketAddr, JoinHandle<()>, tokio::sync::oneshot::Sender<()>) {
        let listener = bind(&MetricsConfig {
            enabled: true,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
        })
        .unwrap()
        .unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new(
            vec![],
            vec![],
            Arc::new(SinkMetrics::new("blackhole")),
            None,
        ));
        let state = HttpState {
            metrics,
            console: Arc::new(console::ConsoleConfig::default()),
        };
        let (thread, stop) = spawn(listener, state).unwrap();
        (addr, thread, stop)
    }

    /// Sends `request` and reads the whole response: the server closes after one.
    fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).unwrap();
        response
    }

    #[test]
    fn metrics_section_parses_the_address_once_and_names_a_bad_one() {
        let section: MetricsConfig = toml::from_str("address = \"0.0.0.0:9200\"\n").unwrap();
        assert!(section.enabled);
        assert_eq!(section.address, SocketAddr::from(([0, 0, 0, 0], 9200)));
        let default: MetricsConfig = toml::from_str("").unwrap();
        assert_eq!(default.address.to_string(), "127.0.0.1:9100");
        let e = toml::from_str::<MetricsConfig>("enabled = true\naddress = \"localhost\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(
            e.contains("\"localhost\" is not IP:PORT, e.g. \"127.0.0.1:9100\""),
            "{e}"
        );
    }

    #[test]
    fn serves_metrics_index_and_refuses_the_rest_one_request_per_connection() {
        let (addr, thread, stop) = start();
        let metrics = exchange(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.contains("content-type: text/plain; version=0.0.4\r\n"));
        assert!(metrics.contains("connection: close\r\n"), "{metrics}");
        assert!(metrics.contains("\r\n\r\n# HELP logtail_received_lines_total "));
        assert!(metrics.contains("\nlogtail_uptime_seconds "), "{metrics}");

        let index = exchange(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(index.starts_with("HTTP/1.1 200 OK\r\n"), "{index}");
        assert!(index.contains("\r\n\r\n<!doctype html>"), "{index}");
        assert!(index.contains("<title>logtail</title>"), "{index}");
        assert!(
            index.contains(&format!(
                "content-security-policy: {}\r\n",
                console::CONTENT_SECURITY_POLICY
            )),
            "{index}"
        );
        assert!(index.contains("x-content-type-options: nosniff\r\n"));

        let missing = exchange(addr, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{missing}"
        );
        assert!(missing.ends_with("\r\n\r\nnot found: try /metrics\n"));

        for target in ["/metrics", "/", "/nope"] {
            let post = exchange(addr, &format!("POST {target} HTTP/1.1\r\nHost: x\r\n\r\n"));
            assert!(
                post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
                "{post}"
            );
            assert!(post.ends_with("\r\n\r\nonly GET\n"), "{post}");
        }
        drop(stop);
        thread.join().unwrap();
    }

    #[test]
    fn a_client_that_never_sends_its_request_neither_stays_nor_holds_up_shutdown() {
        let (addr, thread, stop) = start();
        let mut idle = TcpStream::connect(addr).unwrap();
        idle.write_all(b"GET /metr").unwrap();
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        // The server closes the connection once the head timeout passes.
        let _ = idle.read_to_end(&mut rest);
        let waited = started.elapsed();
        assert!(
            waited >= HEAD_TIMEOUT - Duration::from_millis(100),
            "{waited:?}"
        );
        assert!(waited < HEAD_TIMEOUT + Duration::from_secs(3), "{waited:?}");

        let _held = TcpStream::connect(addr).unwrap();
        let stopping = std::time::Instant::now();
        stop.send(()).unwrap();
        thread.join().unwrap();
        assert!(stopping.elapsed() <= SHUTDOWN_GRACE + Duration::from_secs(1));
    }
}
