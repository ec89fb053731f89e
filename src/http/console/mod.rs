//! The web console at `/`: search, live tail, status and the agents' collect entries, in the
//! browser, over the JSON API of [`crate::http`] and the agent-config endpoints of [`agents`].
//!
//! # The page
//! One hand-written HTML page, one CSS file and one JS module (`console/` at the repository
//! root), embedded in the binary by [`assets`]. The page's views are paths (`/`, `/tail`,
//! `/status`, `/agents`), all served the same HTML; the script shows the view its path names and
//! keeps a search's query and range in the URL's query string, so a search can be bookmarked.
//!
//! # Security
//! Log lines are attacker-controlled, so the script renders every field with `textContent`
//! and never builds HTML from data. Every response of this module carries
//! [`CONTENT_SECURITY_POLICY`] (scripts and styles only from this origin: no inline script, no
//! `eval`, no inline style attribute), `X-Content-Type-Options: nosniff`, `X-Frame-Options:
//! DENY` and `Referrer-Policy: no-referrer`. Writes ([`agents`]) also need the custom header
//! [`agents::WRITE_HEADER`] and, when the browser sends `Origin`, one equal to the `Host`: a
//! cross-site page can neither send the header without a CORS preflight (which is never
//! granted) nor fake `Origin`.

pub mod agents;
mod assets;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::HttpState;
use super::api::ApiContext;
use crate::setting::InvalidSetting;

/// The policy every console response carries: nothing but this origin's own script, style and
/// API; `img-src data:` is for nothing the page needs and is left out on purpose.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// `[console]`: the web console served at `/` of the HTTP endpoint (`[metrics] address`).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// etcd endpoints holding the agents' collect entries (the keys `logtail agent --etcd`
    /// watches), e.g. `["http://10.0.0.1:2379"]`. Default: none, and the Agents page says so.
    pub etcd: Vec<String>,
    /// The prefix of the agents' keys: a host's entries are at `PREFIX<host>/config`, the
    /// agent's default key. Starts and ends with `/`. Default: `/logtail/agents/`.
    pub etcd_prefix: String,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            etcd: Vec::new(),
            etcd_prefix: "/logtail/agents/".into(),
        }
    }
}

impl ConsoleConfig {
    /// # Errors
    /// An endpoint that is not an `http://` or `https://` URL; a prefix not between slashes.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        for (i, endpoint) in self.etcd.iter().enumerate() {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(InvalidSetting::new(
                    format!("etcd[{i}]"),
                    format!("{endpoint:?} is not a URL like \"http://127.0.0.1:2379\""),
                ));
            }
        }
        let p = &self.etcd_prefix;
        if !(p.len() >= 2 && p.starts_with('/') && p.ends_with('/')) {
            return Err(InvalidSetting::new(
                "etcd_prefix",
                format!("{p:?} must start and end with /, e.g. \"/logtail/agents/\""),
            ));
        }
        Ok(())
    }
}

/// The console's routes: the page under each view's path, its two assets, and the agent
/// endpoints, which need the API's token like the rest of `/api/` (when `api` is served and
/// has one).
pub fn routes(api: Option<Arc<ApiContext>>) -> Router<HttpState> {
    let page = || {
        get(|headers: HeaderMap| async move { assets::INDEX_HTML.respond(&headers) })
            .fallback(crate::http_serve::method_not_allowed)
    };
    Router::new()
        .route("/", page())
        .route("/tail", page())
        .route("/status", page())
        .route("/agents", page())
        .route(
            "/assets/app.js",
            get(|headers: HeaderMap| async move { assets::APP_JS.respond(&headers) }),
        )
        .route(
            "/assets/app.css",
            get(|headers: HeaderMap| async move { assets::APP_CSS.respond(&headers) }),
        )
        .merge(agents::routes(api))
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ] {
        headers.insert(name, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_section_defaults_and_refuses_a_bad_endpoint_or_prefix() {
        let default: ConsoleConfig = toml::from_str("").unwrap();
        assert_eq!(default, ConsoleConfig::default());
        assert_eq!(default.check(), Ok(()));
        let bad: ConsoleConfig = toml::from_str("etcd = [\"10.0.0.1:2379\"]\n").unwrap();
        assert_eq!(
            bad.check().unwrap_err().to_string(),
            "etcd[0]: \"10.0.0.1:2379\" is not a URL like \"http://127.0.0.1:2379\""
        );
        let bad: ConsoleConfig = toml::from_str("etcd_prefix = \"/x\"\n").unwrap();
        assert_eq!(bad.check().unwrap_err().key, "etcd_prefix");
        assert!(toml::from_str::<ConsoleConfig>("etc = []\n").is_err());
    }
}
