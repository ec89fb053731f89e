//! The agents' collect entries in etcd, read and written for the console's Agents page.
//!
//! A host's entries live at `PREFIX<host>/config` (`[console] etcd_prefix`, default
//! `/logtail/agents/`), in the agent's own format (see [`crate::agent::etcd`]):
//! `{"collect": [ENTRY, ...]}`. The agents watch their key, so a write here is live on the host
//! within a second.
//!
//! # Endpoints
//! - `GET /api/v1/agents` → `{"configured": bool, "prefix", "hosts": [{"host", "key",
//!   "revision", "entries", "error"}]}`: every key under the prefix that ends in `/config`,
//!   `entries` the number of collect entries, `error` why the stored value is invalid (or null).
//! - `GET /api/v1/agents/{host}` → `{"host", "key", "revision", "collect": [...] | null,
//!   "raw": text | null, "error": text | null}`; a missing key is revision 0 and no entries.
//! - `PUT /api/v1/agents/{host}` with `{"revision": N, "collect": [...]}` → `{"revision": M}`.
//!   The value is first checked by the agent's own parser and validation
//!   ([`entries_from_json`]): a refusal is 400 with `{"error", "field", "message"}`, `field`
//!   the path of the value at fault (`collect[1].paths[0]`) or null. The write is a
//!   compare-and-swap on the key's revision N (0: the key must not exist): if someone else
//!   wrote in between, nothing is written and the answer is 409 with the current `revision`.
//!
//! Every error is JSON `{"error": message}`: 404 when `[console] etcd` is not set or the host
//! name cannot be a key, 403 for a write without [`WRITE_HEADER`] or from another origin, 502
//! when etcd cannot be reached (the message names the endpoints).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::HttpState;
use super::super::api::ApiContext;
use crate::agent::config::{AgentConfigError, ConfigOrigin, entries_from_json};

/// The header every write must carry (any value). A browser sends a custom header across
/// origins only after a CORS preflight, which this server never grants.
pub const WRITE_HEADER: &str = "x-logtail-console";

/// How long a request waits for etcd.
const ETCD_TIMEOUT: Duration = Duration::from_secs(3);

/// The most keys the host list reads: the list is for people, not an export.
const MAX_HOSTS: i64 = 10_000;

/// The endpoints; behind the API's bearer token when `api` has one.
pub fn routes(api: Option<Arc<ApiContext>>) -> Router<HttpState> {
    let router = Router::new()
        .route("/api/v1/agents", get(list))
        .route("/api/v1/agents/{host}", get(read).put(write));
    match api {
        Some(context) => router.route_layer(axum::middleware::from_fn_with_state(
            context,
            crate::http::api::require_token,
        )),
        None => router,
    }
}

/// An answer other than 200: a status and its JSON body.
#[derive(Debug)]
struct Refused(StatusCode, Value);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        json_response(self.0, &self.1)
    }
}

/// A JSON error answer.
fn error(status: StatusCode, message: impl Into<String>) -> Refused {
    Refused(status, json!({ "error": message.into() }))
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// The etcd endpoints, or the 404 that says they are not configured.
fn endpoints(state: &HttpState) -> Result<&[String], Refused> {
    if state.console.etcd.is_empty() {
        return Err(error(
            StatusCode::NOT_FOUND,
            "agent configuration needs etcd: set [console] etcd = [\"http://HOST:2379\"]",
        ));
    }
    Ok(&state.console.etcd)
}

async fn connect(endpoints: &[String]) -> Result<Client, Refused> {
    let options = ConnectOptions::new()
        .with_connect_timeout(ETCD_TIMEOUT)
        .with_timeout(ETCD_TIMEOUT);
    Client::connect(endpoints, Some(options))
        .await
        .map_err(|e| unreachable(endpoints, &e))
}

fn unreachable(endpoints: &[String], e: &etcd_client::Error) -> Refused {
    error(
        StatusCode::BAD_GATEWAY,
        format!("etcd {}: {e}", endpoints.join(",")),
    )
}

/// A host name that can be a key segment: what the agent accepts as a syslog HOSTNAME
/// (printable ASCII, no spaces), less `/`.
fn valid_host(host: &str) -> bool {
    (1..=255).contains(&host.len()) && host.bytes().all(|b| (33..=126).contains(&b) && b != b'/')
}

fn key_of(state: &HttpState, host: &str) -> Result<String, Refused> {
    if !valid_host(host) {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("{host:?} is not a host name: 1 to 255 printable characters, no / or space"),
        ));
    }
    Ok(format!("{}{host}/config", state.console.etcd_prefix))
}

/// What a stored value says: its entries' count, or why the agent refuses it.
fn check_value(key: &str, value: &[u8], revision: i64) -> Result<usize, String> {
    let text = std::str::from_utf8(value).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let origin = ConfigOrigin::Etcd {
        key: key.to_string(),
        revision,
    };
    entries_from_json(text, &origin)
        .map(|entries| entries.len())
        .map_err(|e| e.to_string())
}

async fn list(State(state): State<HttpState>) -> Result<Response, Refused> {
    if state.console.etcd.is_empty() {
        return Ok(json_response(
            StatusCode::OK,
            &json!({"configured": false, "prefix": state.console.etcd_prefix, "hosts": []}),
        ));
    }
    let endpoints = &state.console.etcd;
    let prefix = state.console.etcd_prefix.as_str();
    let response = connect(endpoints)
        .await?
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_limit(MAX_HOSTS)),
        )
        .await
        .map_err(|e| unreachable(endpoints, &e))?;
    let hosts: Vec<Value> = response
        .kvs()
        .iter()
        .filter_map(|kv| {
            let key = kv.key_str().ok()?;
            let host = key.strip_prefix(prefix)?.strip_suffix("/config")?;
            if !valid_host(host) {
                return None;
            }
            let checked = check_value(key, kv.value(), kv.mod_revision());
            Some(json!({
                "host": host,
                "key": key,
                "revision": kv.mod_revision(),
                "entries": checked.as_ref().ok(),
                "error": checked.err(),
            }))
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"configured": true, "prefix": prefix, "hosts": hosts}),
    ))
}

async fn read(
    State(state): State<HttpState>,
    Path(host): Path<String>,
) -> Result<Response, Refused> {
    let endpoints = endpoints(&state)?;
    let key = key_of(&state, &host)?;
    let response = connect(endpoints)
        .await?
        .get(key.as_str(), None)
        .await
        .map_err(|e| unreachable(endpoints, &e))?;
    let Some(kv) = response.kvs().first() else {
        return Ok(json_response(
            StatusCode::OK,
            &json!({"host": host, "key": key, "revision": 0, "collect": [], "raw": null, "error": null}),
        ));
    };
    let revision = kv.mod_revision();
    let raw = String::from_utf8_lossy(kv.value()).into_owned();
    let error = check_value(&key, kv.value(), revision).err();
    // The entries as stored, for the form, even when the agent would refuse them (the form
    // shows the error, and saving a fixed version is how it is repaired).
    let collect = serde_json::from_str::<Value>(&raw)
        .ok()
        .and_then(|v| v.get("collect").filter(|c| c.is_array()).cloned());
    Ok(json_response(
        StatusCode::OK,
        &json!({"host": host, "key": key, "revision": revision, "collect": collect,
                "raw": raw, "error": error}),
    ))
}

/// What a write sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteRequest {
    /// The revision the editor loaded (0: the key did not exist).
    revision: i64,
    /// The new entries, in the agent's JSON form.
    collect: Value,
}

/// Refuses a write that a cross-site page could have sent (see the module doc of
/// [`super`]).
fn check_write_origin(headers: &HeaderMap) -> Result<(), Refused> {
    if !headers.contains_key(WRITE_HEADER) {
        return Err(error(
            StatusCode::FORBIDDEN,
            format!("a write needs the {WRITE_HEADER} header (the console sends it)"),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let same = match (origin.to_str().ok(), host) {
            (Some(origin), Some(host)) => origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|o| o == host),
            _ => false,
        };
        if !same {
            return Err(error(
                StatusCode::FORBIDDEN,
                "a write from another origin is refused",
            ));
        }
    }
    Ok(())
}

async fn write(
    State(state): State<HttpState>,
    Path(host): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refused> {
    check_write_origin(&headers)?;
    let endpoints = endpoints(&state)?;
    let key = key_of(&state, &host)?;
    let request: WriteRequest = serde_json::from_slice(&body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"revision\": N, \"collect\": [...]}}: {e}"),
        )
    })?;
    let value = json!({ "collect": request.collect }).to_string();
    let origin = ConfigOrigin::Etcd {
        key: key.clone(),
        revision: request.revision,
    };
    if let Err(e) = entries_from_json(&value, &origin) {
        let (field, message) = match &e {
            AgentConfigError::Invalid { key, message, .. } => (Some(key.clone()), message.clone()),
            AgentConfigError::Syntax { message, .. } => (None, message.clone()),
            AgentConfigError::Read { .. } => (None, e.to_string()),
        };
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            json!({"error": e.to_string(), "field": field, "message": message}),
        ));
    }
    let txn = Txn::new()
        .when([Compare::mod_revision(
            key.as_str(),
            CompareOp::Equal,
            request.revision,
        )])
        .and_then([TxnOp::put(key.as_str(), value, None)])
        .or_else([TxnOp::get(key.as_str(), None)]);
    let response = connect(endpoints)
        .await?
        .txn(txn)
        .await
        .map_err(|e| unreachable(endpoints, &e))?;
    if !response.succeeded() {
        let current = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                etcd_client::TxnOpResponse::Get(get) => {
                    Some(get.kvs().first().map_or(0, |kv| kv.mod_revision()))
                }
                _ => None,
            })
            .unwrap_or(0);
        return Err(Refused(
            StatusCode::CONFLICT,
            json!({
                "error": format!(
                    "{key} was changed by someone else (revision {current}, you loaded {}): \
                     reload it, then apply your change again",
                    request.revision
                ),
                "revision": current,
            }),
        ));
    }
    let revision = response.header().map_or(0, |h| h.revision());
    tracing::info!("console: wrote {key} (revision {revision})");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "revision": revision }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_that_cannot_be_one_key_segment_are_refused() {
        assert!(valid_host("web-1.example"));
        assert!(!valid_host(""));
        assert!(!valid_host("a/b"));
        assert!(!valid_host("a b"));
        assert!(!valid_host(&"x".repeat(256)));
    }

    #[test]
    fn a_write_needs_the_header_and_the_same_origin() {
        let mut headers = HeaderMap::new();
        assert!(check_write_origin(&headers).is_err());
        headers.insert(WRITE_HEADER, "1".parse().unwrap());
        assert!(
            check_write_origin(&headers).is_ok(),
            "no Origin: not a browser"
        );
        headers.insert(header::HOST, "127.0.0.1:9100".parse().unwrap());
        headers.insert(header::ORIGIN, "http://127.0.0.1:9100".parse().unwrap());
        assert!(check_write_origin(&headers).is_ok());
        headers.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert_eq!(
            check_write_origin(&headers).unwrap_err().0,
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn a_stored_value_is_checked_by_the_agents_own_validation() {
        assert_eq!(
            check_value("/k", br#"{"collect": [{"name": "a", "paths": ["/x"]}]}"#, 2),
            Ok(1)
        );
        let e =
            check_value("/k", br#"{"collect": [{"name": "a", "paths": ["[x"]}]}"#, 3).unwrap_err();
        assert!(
            e.starts_with("etcd key /k (revision 3): collect[0].paths[0]: "),
            "{e}"
        );
    }
}
