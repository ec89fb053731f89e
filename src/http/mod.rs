//! The gateway's one HTTP server: Prometheus metrics at `/metrics`, the search API under
//! `/api/v1/` ([`api`], issue 12), and the web console at `/` ([`console`], issue 13).
//!
//! # Shape
//! - [`router`] assembles the routes from parts, each part a module that returns a
//!   `Router<HttpState>` for its own paths (`prometheus` for `/metrics`, [`api`] for
//!   `/api/v1/...`); a new part is one `.merge(part::routes())` line. What the handlers need
//!   (the metrics, the store, the live tail) travels in [`HttpState`], passed in by the
//!   composition root ([`crate::server`]): handlers never reach for globals.
//! - [`spawn`] runs the router on a bound listener with [`crate::http_serve`] (which also
//!   serves the agent's `/metrics`) until the gateway's shutdown signal, then stops accepting and
//!   gives in-flight requests [`crate::http_serve::SHUTDOWN_GRACE`] to finish (a live tail ends
//!   at once: it watches the same signal).
//! - [`ApiConfig`] is the `[api]` section of the config file: the server's address, whether the
//!   API is served, and its bearer token. [`MetricsConfig`] is `[metrics]`: whether `/metrics`
//!   is served. One server serves both; [`check`] reconciles the two sections (an older
//!   `[metrics] address` still sets the address) and refuses an API reachable from other hosts
//!   without a token.
//!
//! # Limits
//! Those of [`crate::http_serve`] (one request per connection, a deadline for the request
//! head); a live tail is held open by its client on purpose, and bounded in number. Only `GET`
//! (and so `HEAD`) is served, and `PUT` of the console's agent configs; other methods get 405,
//! unknown paths 404.

pub mod api;
pub mod console;
mod prometheus;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use serde::Deserialize;

use crate::metrics::Metrics;
use crate::setting::InvalidSetting;

/// The server's address when neither `[api]` nor `[metrics]` names one.
pub const DEFAULT_ADDRESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9100);

/// `[api]`: the HTTP server (the search API at `http://ADDRESS/api/v1/`, and `/metrics`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Serve the API at all. Default: true.
    pub enabled: bool,
    /// `IP:PORT` of the server. Default: `127.0.0.1:9100`. Any other address than a loopback
    /// one needs `token_file`.
    #[serde(deserialize_with = "socket_addr")]
    pub address: SocketAddr,
    /// A file holding the bearer token API clients must send (`Authorization: Bearer TOKEN`):
    /// its first line, at least 16 characters. Default: none (no token asked, loopback only).
    pub token_file: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            address: DEFAULT_ADDRESS,
            token_file: None,
        }
    }
}

/// `[metrics]`: Prometheus metrics at `http://ADDRESS/metrics`, on the `[api]` server.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve metrics at all. Default: true.
    pub enabled: bool,
    /// Older configurations' server address; `[api] address` replaces it. When given, it is
    /// the server's address, and `[api] address` must be left out or equal. Default: none.
    #[serde(deserialize_with = "optional_socket_addr")]
    pub address: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            address: None,
        }
    }
}

/// Where the one HTTP server listens and what it serves, from `[api]` and `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPlan {
    pub address: SocketAddr,
    pub api: bool,
    pub metrics: bool,
    pub token_file: Option<PathBuf>,
}

/// Reconciles `[api]` and `[metrics]`: `None` when neither is served.
///
/// # Errors
/// Two different addresses, or an API reachable from other hosts (not a loopback address)
/// without `token_file`: logs are what attackers look for.
pub fn check(
    api: &ApiConfig,
    metrics: &MetricsConfig,
) -> Result<Option<ServerPlan>, InvalidSetting> {
    let address = match metrics.address {
        None => api.address,
        Some(legacy) if api.address == DEFAULT_ADDRESS || api.address == legacy => legacy,
        Some(legacy) => {
            return Err(InvalidSetting::new(
                "metrics.address",
                format!(
                    "{legacy} differs from [api] address {}: one HTTP server serves the API and \
                     /metrics; keep only [api] address",
                    api.address
                ),
            ));
        }
    };
    if api.enabled && api.token_file.is_none() && !address.ip().is_loopback() {
        return Err(InvalidSetting::new(
            "api.token_file",
            format!(
                "the API would serve every stored log to anyone who can reach {address}: set \
                 [api] token_file (clients then send Authorization: Bearer TOKEN), or listen on \
                 a loopback address such as 127.0.0.1:{port}, or set [api] enabled = false to \
                 serve only /metrics",
                port = address.port()
            ),
        ));
    }
    Ok((api.enabled || metrics.enabled).then(|| ServerPlan {
        address,
        api: api.enabled,
        metrics: metrics.enabled,
        token_file: api.token_file.clone(),
    }))
}

/// `IP:PORT`, refused with the value and an example (serde adds the line and the key).
fn socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!("{text:?} is not IP:PORT, e.g. \"127.0.0.1:9100\""))
    })
}

/// `IP:PORT` or nothing, as [`socket_addr`].
fn optional_socket_addr<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    socket_addr(d).map(Some)
}

/// What every handler can read; cloned (cheaply: `Arc`s) into each request.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The running gateway's metrics.
    pub metrics: Arc<Metrics>,
    /// The API's view of the gateway; `None` when `[api] enabled = false`.
    pub api: Option<Arc<api::ApiContext>>,
    /// Whether `/metrics` is served.
    pub serve_metrics: bool,
    /// `[console]`: where the agents' collect entries are.
    pub console: Arc<console::ConsoleConfig>,
}

/// Every route of the server, over `state`.
pub fn router(state: HttpState) -> Router {
    let mut router = Router::new();
    if state.serve_metrics {
        router = router.merge(prometheus::routes());
    }
    if let Some(context) = &state.api {
        router = router.merge(api::routes(context.clone()));
    }
    router
        .merge(console::routes(state.api.clone()))
        .fallback(crate::http_serve::not_found)
        .with_state(state)
}

/// Binds the server's address. The socket is bound here, before any thread starts, so that a
/// taken port fails the gateway's start.
///
/// # Errors
/// When the address cannot be bound; the message names it.
pub fn bind(address: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address).with_context(|| {
        format!("HTTP server (API and metrics): cannot listen on {address} (set [api] address)")
    })?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves [`router`] over `state` on `listener` from a thread of its own (thread `http`),
/// until the returned sender is used or dropped. The API's background work (the throughput
/// history) runs on the same thread.
///
/// # Errors
/// When the thread cannot be started.
pub fn spawn(
    listener: std::net::TcpListener,
    state: HttpState,
) -> anyhow::Result<crate::http_serve::Endpoint> {
    let api = state.api.clone();
    let sampling = api.clone().map(|api| api.sample_forever());
    crate::http_serve::spawn(
        listener,
        router(state),
        async move {
            if let Some(sampling) = sampling {
                sampling.await;
            }
        },
        move || {
            if let Some(api) = api {
                api.stop();
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;
    use std::thread::JoinHandle;
    use std::time::Duration;

    use super::*;
    use crate::http_serve::{HEAD_TIMEOUT, SHUTDOWN_GRACE};
    use crate::metrics::{Metrics, SinkMetrics};

    /// Serves on an ephemeral port from a thread of its own; the sender stops it.
    fn start() -> (SocketAddr, JoinHandle<()>, tokio::sync::oneshot::Sender<()>) {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new(
            vec![],
            vec![],
            Arc::new(SinkMetrics::new("blackhole")),
            None,
        ));
        let state = HttpState {
            metrics,
            api: None,
            serve_metrics: true,
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
        assert_eq!(
            section.address,
            Some(SocketAddr::from(([0, 0, 0, 0], 9200)))
        );
        let default: ApiConfig = toml::from_str("").unwrap();
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
    fn one_server_from_api_and_metrics_and_no_open_api_without_a_token() {
        #[derive(Deserialize)]
        struct Sections {
            #[serde(default)]
            api: ApiConfig,
            #[serde(default)]
            metrics: MetricsConfig,
        }
        let plan = |text: &str| {
            let config: Sections = toml::from_str(text).unwrap();
            check(&config.api, &config.metrics)
                .map(|plan| plan.map(|p| (p.address.to_string(), p.api, p.metrics)))
                .map_err(|e| format!("{}: {}", e.key, e.message))
        };
        assert_eq!(plan(""), Ok(Some(("127.0.0.1:9100".into(), true, true))));
        // An older configuration's [metrics] address still sets the server's.
        assert_eq!(
            plan("[metrics]\naddress = \"127.0.0.1:9200\"\n"),
            Ok(Some(("127.0.0.1:9200".into(), true, true)))
        );
        assert_eq!(
            plan("[metrics]\naddress = \"127.0.0.1:9200\"\n[api]\naddress = \"127.0.0.1:9300\"\n")
                .unwrap_err(),
            "metrics.address: 127.0.0.1:9200 differs from [api] address 127.0.0.1:9300: one HTTP \
             server serves the API and /metrics; keep only [api] address"
        );
        assert_eq!(
            plan("[api]\naddress = \"0.0.0.0:9100\"\n").unwrap_err(),
            "api.token_file: the API would serve every stored log to anyone who can reach \
             0.0.0.0:9100: set [api] token_file (clients then send Authorization: Bearer TOKEN), \
             or listen on a loopback address such as 127.0.0.1:9100, or set [api] enabled = \
             false to serve only /metrics"
        );
        // Metrics alone may be served to other hosts, as before.
        assert_eq!(
            plan("[metrics]\naddress = \"0.0.0.0:9100\"\n[api]\nenabled = false\n"),
            Ok(Some(("0.0.0.0:9100".into(), false, true)))
        );
        assert_eq!(
            plan("[api]\naddress = \"[::]:9100\"\ntoken_file = \"/etc/logtail/api.token\"\n"),
            Ok(Some(("[::]:9100".into(), true, true)))
        );
        assert_eq!(
            plan("[metrics]\nenabled = false\n[api]\nenabled = false\n"),
            Ok(None)
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
