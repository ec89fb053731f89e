//! `GET /metrics`: the gateway's metrics in the Prometheus text exposition format, version
//! 0.0.4 (see [`crate::metrics`] for every name).

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::HttpState;
use crate::http_serve::method_not_allowed;

/// The routes of this part.
pub(super) fn routes() -> Router<HttpState> {
    Router::new().route("/metrics", get(metrics).fallback(method_not_allowed))
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
