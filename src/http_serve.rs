//! Serving HTTP on a thread of its own: the mechanics both programs share — the gateway's one
//! server ([`crate::http`]: API, console, metrics) and the agent's `/metrics`.
//!
//! # Limits
//! HTTP/1.1 only, one request per connection (`Connection: close`), and [`HEAD_TIMEOUT`] to send
//! the request head: enough for Prometheus, `curl` and a browser, with nothing a client can hold
//! open unless a handler chooses to (a live tail). On stop, the server stops accepting and gives
//! the requests in flight [`SHUTDOWN_GRACE`] to finish.

use std::future::Future;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// How long a client has to send its request head before the connection is closed (the
/// slowloris guard).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long in-flight requests may take to finish once the server stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running server: its thread, and the sender that stops it (used or dropped).
pub type Endpoint = (JoinHandle<()>, tokio::sync::oneshot::Sender<()>);

/// 404 for `GET`/`HEAD` of an unknown path, 405 for any other method.
pub async fn not_found(method: Method) -> Response {
    if method == Method::GET || method == Method::HEAD {
        text(StatusCode::NOT_FOUND, "not found: try /metrics\n")
    } else {
        method_not_allowed().await
    }
}

/// 405: the path exists, but not for this method.
pub async fn method_not_allowed() -> Response {
    text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n")
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// Serves only `GET /metrics`, the text `exposition` returns at each scrape: the agent's
/// endpoint, which has no API and no console.
///
/// # Errors
/// When the thread cannot be started.
pub fn spawn_exposition(
    listener: std::net::TcpListener,
    exposition: impl Fn() -> String + Clone + Send + Sync + 'static,
) -> anyhow::Result<Endpoint> {
    let metrics = move || {
        let exposition = exposition.clone();
        async move {
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                exposition(),
            )
        }
    };
    let router = Router::new()
        .route("/metrics", get(metrics).fallback(method_not_allowed))
        .fallback(not_found);
    spawn(listener, router, async {}, || ())
}

/// Serves `router` on `listener` from thread `http` until the returned sender is used or
/// dropped. `background` runs on the same thread meanwhile (and is dropped at the end);
/// `on_stop` is called once the server is told to stop, before the grace period.
///
/// # Errors
/// When the thread cannot be started.
pub fn spawn(
    listener: std::net::TcpListener,
    router: Router,
    background: impl Future<Output = ()> + Send + 'static,
    on_stop: impl FnOnce() + Send + 'static,
) -> anyhow::Result<Endpoint> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = crate::runtime::spawn("http".into(), move || async move {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => {
                let background = tokio::spawn(background);
                serve(listener, router, async move {
                    let _ = stopped.await;
                    on_stop();
                })
                .await;
                background.abort();
            }
            Err(e) => tracing::error!("HTTP server: {e}"),
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
