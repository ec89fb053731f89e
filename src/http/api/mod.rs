//! The search API, under `/api/v1/`: what the web console and scripts read. README's *HTTP API*
//! section is the reference of every endpoint (request, response, errors); this is how it is
//! built.
//!
//! | endpoint | module | what |
//! |---|---|---|
//! | `GET search?q=&from=&to=&limit=&order=&cursor=` | [`search`] | a page of matching records |
//! | `GET histogram?q=&from=&to=&buckets=` | [`search`] | matches per bucket of time |
//! | `GET fields?q=&from=&to=&field=&top=` | [`search`] | a field's most frequent values |
//! | `GET tail?q=` | [`tail`] | Server-Sent Events: matching records as they are written |
//! | `GET status` | [`status`] | listeners, sink, store, agents, throughput history |
//!
//! # Invariants
//! - Every parameter is validated ([`params`]): an unknown or repeated one, or a bad value, is a
//!   400 whose JSON body names the `parameter` (and the `column` of a bad query), before any
//!   work starts. Every error is JSON: `{"error": "...", ...}` ([`ApiError`]).
//! - Memory is bounded whatever the store size: a search holds one page (at most
//!   [`MAX_LIMIT`] records and [`MAX_PAGE_BYTES`]), a histogram its buckets, facets at most
//!   [`crate::search::MAX_FIELD_VALUES`] values; a tail at most [`tail::MAX_OUTBOX_BYTES`] of
//!   events waiting for its client. At most [`MAX_CONCURRENT_SCANS`] scans run at once (on
//!   blocking threads, so the server keeps answering); more wait up to [`SCAN_QUEUE_WAIT`],
//!   then get 503. A scan whose client goes away is stopped.
//! - With `[search] backend = "elasticsearch"`, search, histogram and fields ask the cluster
//!   instead ([`crate::search::elasticsearch`], [`ApiContext::remote`]), with the same turns;
//!   memory is the cluster's answer (one page, or aggregations). The cluster unreachable,
//!   silent past its `request_timeout_ms`, or answering with an error is a 502; a query it
//!   refuses is a 400 with its reason. Live tail stays on the gateway's own pipeline.
//! - With `[api] token_file`, every `/api/` request needs `Authorization: Bearer TOKEN` (or the
//!   `access_token` parameter, for browsers' `EventSource`, which cannot send headers); else
//!   401. The token is compared in constant time.

mod params;
mod search;
mod status;
pub mod tail;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::Metrics;
use crate::search::SearchError;
use crate::search::elasticsearch::{ElasticsearchSearch, ElasticsearchSearchError};
use crate::sink::live_tail::LiveTail;

use status::ThroughputHistory;

/// The most records one search page returns.
pub const MAX_LIMIT: usize = 1000;
/// A search page stops growing past this many bytes of records (and says so with `next`).
pub const MAX_PAGE_BYTES: usize = 16 << 20;
/// Scans of the store (search, histogram, fields) running at once; the machine's other cores
/// stay with ingest.
pub const MAX_CONCURRENT_SCANS: usize = 2;
/// How long a scan waits for its turn before the request gets 503.
pub const SCAN_QUEUE_WAIT: Duration = Duration::from_secs(10);
/// Live tails followed at once.
pub const MAX_TAILS: usize = 16;

/// The local store, as the API reads it.
#[derive(Debug, Clone)]
pub struct StoreView {
    pub dir: PathBuf,
    /// `[sink.store]` retention, as a reload leaves it.
    pub retention: Arc<crate::sink::LiveStoreSettings>,
}

/// A listener's name, kind and bound address, for `status`.
#[derive(Debug, Clone)]
pub struct ListenerAddress {
    pub name: String,
    pub kind: &'static str,
    pub address: String,
}

/// What the API reads of the running gateway.
#[derive(Debug)]
pub struct ApiContext {
    metrics: Arc<Metrics>,
    /// `None` when the sink is not the local store: searching answers 409 then (unless
    /// `elasticsearch`).
    store: Option<StoreView>,
    /// `[search] backend = "elasticsearch"`: search, histogram and fields ask the cluster.
    elasticsearch: Option<Arc<ElasticsearchSearch>>,
    sink: &'static str,
    /// The listeners open now (the composition root sets them at start and after a reload).
    listeners: std::sync::RwLock<Vec<ListenerAddress>>,
    tail: Arc<LiveTail>,
    token: Option<ApiToken>,
    scans: tokio::sync::Semaphore,
    history: std::sync::Mutex<ThroughputHistory>,
    /// Set when the server stops: live tails end.
    stopping: tokio::sync::watch::Sender<bool>,
}

/// What [`ApiContext::new`] takes from the composition root.
#[derive(Debug)]
pub struct ApiParts {
    pub metrics: Arc<Metrics>,
    pub store: Option<StoreView>,
    /// `[search] backend = "elasticsearch"`: the cluster searched instead of the store.
    pub elasticsearch: Option<Arc<ElasticsearchSearch>>,
    /// The sink's name (`store`, `kafka`, ...).
    pub sink: &'static str,
    pub tail: Arc<LiveTail>,
    /// `[api] token_file`.
    pub token_file: Option<PathBuf>,
}

impl ApiContext {
    /// The listeners `status` reports: those open now.
    pub fn set_listeners(&self, listeners: Vec<ListenerAddress>) {
        if let Ok(mut open) = self.listeners.write() {
            *open = listeners;
        }
    }

    /// The listeners open now.
    pub fn listeners(&self) -> Vec<ListenerAddress> {
        self.listeners.read().map(|l| l.clone()).unwrap_or_default()
    }

    /// Reads the token file, if any.
    ///
    /// # Errors
    /// A token file that cannot be read, or whose token is shorter than 16 characters; the
    /// message names the file.
    pub fn new(parts: ApiParts) -> anyhow::Result<Arc<ApiContext>> {
        let token = parts
            .token_file
            .as_deref()
            .map(ApiToken::load)
            .transpose()?;
        Ok(Arc::new(ApiContext {
            metrics: parts.metrics,
            store: parts.store,
            elasticsearch: parts.elasticsearch,
            sink: parts.sink,
            listeners: std::sync::RwLock::new(Vec::new()),
            tail: parts.tail,
            token,
            scans: tokio::sync::Semaphore::new(MAX_CONCURRENT_SCANS),
            history: std::sync::Mutex::new(ThroughputHistory::default()),
            stopping: tokio::sync::watch::Sender::new(false),
        }))
    }

    /// Ends the live tails (the server is stopping).
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// The store to search, or 409 when the sink is another.
    fn store(&self) -> Result<&StoreView, ApiError> {
        self.store.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "searching needs the local store, and this gateway's sink is {}",
                    self.sink
                ),
            )
        })
    }

    /// Runs `scan` on a blocking thread once one of the [`MAX_CONCURRENT_SCANS`] is free; stops
    /// it when the request goes away.
    async fn scan<T: Send + 'static>(
        self: &Arc<Self>,
        scan: impl FnOnce(&AtomicBool) -> Result<T, SearchError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _turn = self.turn().await?;
        let stop = Arc::new(AtomicBool::new(false));
        let _stop_when_dropped = StopWhenDropped(stop.clone());
        let work = tokio::task::spawn_blocking(move || scan(&stop));
        match work.await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => Err(ApiError::from(e)),
            Err(e) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the search failed: {e}"),
            )),
        }
    }
}

impl ApiContext {
    /// One of the [`MAX_CONCURRENT_SCANS`] turns, or 503 after [`SCAN_QUEUE_WAIT`].
    async fn turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        tokio::time::timeout(SCAN_QUEUE_WAIT, self.scans.acquire())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "busy: {MAX_CONCURRENT_SCANS} searches are running; retry, or narrow \
                         the time range"
                    ),
                )
            })
    }

    /// The Elasticsearch backend, when `[search] backend = "elasticsearch"`.
    fn elasticsearch(&self) -> Option<Arc<ElasticsearchSearch>> {
        self.elasticsearch.clone()
    }

    /// Runs a search of the cluster once one of the [`MAX_CONCURRENT_SCANS`] turns is free
    /// (the turns bound what the API asks of the cluster too). A request whose client goes
    /// away drops the future, and with it the request to the cluster.
    async fn remote<T>(
        &self,
        search: impl std::future::Future<Output = Result<T, ElasticsearchSearchError>>,
    ) -> Result<T, ApiError> {
        let _turn = self.turn().await?;
        search.await.map_err(ApiError::from)
    }
}

/// Sets the flag when the request's future is dropped (its client went away) or done.
struct StopWhenDropped(Arc<AtomicBool>);

impl Drop for StopWhenDropped {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The bearer token API clients must send.
struct ApiToken(Box<[u8]>);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(..)")
    }
}

impl ApiToken {
    /// The first line of `path`, without surrounding whitespace; at least 16 characters.
    fn load(path: &std::path::Path) -> anyhow::Result<ApiToken> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("[api] token_file {}: cannot read it", path.display()))?;
        let token = text.lines().next().unwrap_or("").trim();
        if token.chars().count() < 16 {
            anyhow::bail!(
                "[api] token_file {}: the token (its first line) has {} characters; use at least \
                 16, e.g. the output of `openssl rand -hex 32`",
                path.display(),
                token.chars().count()
            );
        }
        Ok(ApiToken(token.as_bytes().into()))
    }

    /// Whether `given` is the token, in time that does not depend on where they differ.
    fn is(&self, given: &[u8]) -> bool {
        given.len() == self.0.len()
            && given
                .iter()
                .zip(self.0.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// The routes under `/api/v1/`, over `context`.
pub fn routes<S: Clone + Send + Sync + 'static>(context: Arc<ApiContext>) -> Router<S> {
    Router::new()
        .route(
            "/api/v1/search",
            get(search::search).fallback(method_not_allowed),
        )
        .route(
            "/api/v1/histogram",
            get(search::histogram).fallback(method_not_allowed),
        )
        .route(
            "/api/v1/fields",
            get(search::fields).fallback(method_not_allowed),
        )
        .route("/api/v1/tail", get(tail::tail).fallback(method_not_allowed))
        .route(
            "/api/v1/status",
            get(status::status).fallback(method_not_allowed),
        )
        .route("/api/v1/{*rest}", axum::routing::any(unknown_endpoint))
        .route("/api/v1", axum::routing::any(unknown_endpoint))
        .route("/api/v1/", axum::routing::any(unknown_endpoint))
        .route_layer(middleware::from_fn_with_state(
            context.clone(),
            require_token,
        ))
        .with_state(context)
}

/// Refuses requests without the token, when there is one (also the console's agent endpoints).
pub(crate) async fn require_token(
    State(context): State<Arc<ApiContext>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &context.token else {
        return next.run(request).await;
    };
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .map(<[u8]>::to_vec);
    let from_query = || {
        params::raw_pairs(request.uri().query().unwrap_or(""))
            .find(|(name, _)| name == "access_token")
            .map(|(_, value)| value.into_bytes())
    };
    match from_header.or_else(from_query) {
        Some(given) if token.is(&given) => next.run(request).await,
        given => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                if given.is_some() {
                    "wrong bearer token"
                } else {
                    "this API needs a bearer token: send Authorization: Bearer TOKEN (the token \
                     is in the file [api] token_file names)"
                },
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

async fn unknown_endpoint(method: axum::http::Method) -> Response {
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        return method_not_allowed().await;
    }
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint: the API has search, histogram, fields, tail and status under /api/v1/",
    )
    .into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "only GET").into_response()
}

/// An error answer: `{"error": MESSAGE, ...details}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    /// An error with `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), message.into().into());
        ApiError { status, body }
    }

    /// A 400 for the parameter `name`.
    pub fn bad_parameter(name: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message).with("parameter", name)
    }

    /// The same error with one more detail.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> ApiError {
        self.body.insert(key.into(), value.into());
        self
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> ApiError {
        match e {
            SearchError::TooManyBuckets { .. } => ApiError::bad_parameter("buckets", e.to_string()),
            SearchError::UnboundedNewestFirst | SearchError::Store(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("searching the store: {e}"),
            ),
        }
    }
}

impl From<ElasticsearchSearchError> for ApiError {
    fn from(e: ElasticsearchSearchError) -> ApiError {
        let message = e.to_string();
        match e {
            ElasticsearchSearchError::Query(query) => {
                ApiError::bad_parameter("q", message).with("column", query.column)
            }
            ElasticsearchSearchError::Refused { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, message)
            }
            ElasticsearchSearchError::TooManyBuckets { .. }
            | ElasticsearchSearchError::SubMillisecondBuckets => {
                ApiError::bad_parameter("buckets", message)
            }
            ElasticsearchSearchError::TooManyTies => ApiError::bad_parameter("cursor", message),
            ElasticsearchSearchError::Unreachable(_) | ElasticsearchSearchError::Failed { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &serde_json::Value::Object(self.body))
    }
}

/// `value` as a JSON response with `status`.
fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "application/json")],
            format!(
                "{{\"error\":\"encoding the answer: {}\"}}",
                e.to_string().replace('"', "'")
            ),
        )
            .into_response(),
    }
}

/// Unix µs as RFC 3339 UTC with microseconds, as records write `received_at`.
fn rfc3339(us: i64) -> String {
    let mut text = Vec::with_capacity(32);
    crate::encode::format_rfc3339_micros(us, &mut text);
    String::from_utf8_lossy(&text).into_owned()
}
