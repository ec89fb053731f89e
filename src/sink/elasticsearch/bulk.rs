//! `_bulk` requests: their NDJSON bodies, and what the response says of each item. Pure: no
//! I/O, so every outcome is unit-tested here.
//!
//! # Body
//! Two lines per document, each ending in `\n`:
//! `{"create":{"_index":"logs-2026.11.30","_id":"<32 hex>"}}` and the record's JSON as the
//! pipeline encoded it. Index names and ids need no JSON escaping ([`super::index`] keeps them
//! to characters that do not).
//!
//! # Outcomes, per item ([`classify`]), following Elasticsearch 8's and OpenSearch 2's bulk API
//! - 2xx: indexed.
//! - 409 on `create`: a document with this `_id` exists, so this one was delivered before (a
//!   retry, a replay): delivered.
//! - 429 (a full write queue) and 5xx: retried, only these items, after a backoff.
//! - any other status (400 mapping errors, 409 on `index`, 404 ...): refused for good, to the
//!   dead-letter file with the reason.
//!
//! A whole request that fails (connection refused or reset, a timeout, a non-2xx status, a
//! body that is not a bulk response or answers for another number of items) retries every item:
//! the `_id`s make a document indexed by a request whose answer was lost a 409 next time.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use super::config::BulkAction;

/// One document of a [`Bulk`]: the batch it came from (a [`super::tickets::Tickets`] slot), the
/// two lines it takes in the body, and when the gateway received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkItem {
    pub ticket: usize,
    /// Offset of its action line in the body.
    pub start: u32,
    /// Offset of its document line in the body.
    pub doc: u32,
    /// Offset one past its document's `\n`.
    pub end: u32,
    pub received_at_us: i64,
}

impl BulkItem {
    /// Bytes of its document (without the `\n`).
    pub fn doc_bytes(&self) -> u64 {
        u64::from(self.end - self.doc - 1)
    }
}

/// A `_bulk` request being filled, waiting or in flight.
#[derive(Debug, Default)]
pub struct Bulk {
    body: Vec<u8>,
    /// The body once frozen for sending (cheap to clone into the request).
    frozen: Bytes,
    pub items: Vec<BulkItem>,
    /// How many times these documents were sent before (0 for a first send).
    pub attempt: u32,
}

impl Bulk {
    /// An empty bulk for documents sent `attempt` times before.
    pub fn retry(attempt: u32) -> Bulk {
        Bulk {
            attempt,
            ..Bulk::default()
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes of the body.
    pub fn bytes(&self) -> usize {
        self.body.len().max(self.frozen.len())
    }

    /// Appends one document. `index` and `id` need no escaping (see the module doc).
    pub fn push(
        &mut self,
        ticket: usize,
        action: BulkAction,
        index: &str,
        id: &[u8],
        doc: &[u8],
        received_at_us: i64,
    ) {
        let start = self.body.len() as u32;
        self.body.extend_from_slice(b"{\"");
        self.body.extend_from_slice(action.as_str().as_bytes());
        self.body.extend_from_slice(b"\":{\"_index\":\"");
        self.body.extend_from_slice(index.as_bytes());
        self.body.extend_from_slice(b"\",\"_id\":\"");
        self.body.extend_from_slice(id);
        self.body.extend_from_slice(b"\"}}\n");
        let doc_at = self.body.len() as u32;
        self.body.extend_from_slice(doc);
        self.body.push(b'\n');
        self.items.push(BulkItem {
            ticket,
            start,
            doc: doc_at,
            end: self.body.len() as u32,
            received_at_us,
        });
    }

    /// Appends `item` of `from` (its two lines as they were), for a retry.
    pub fn push_from(&mut self, from: &Bulk, item: &BulkItem) {
        let source = from.body_bytes();
        let start = self.body.len() as u32;
        self.body
            .extend_from_slice(&source[item.start as usize..item.end as usize]);
        self.items.push(BulkItem {
            start,
            doc: start + (item.doc - item.start),
            end: self.body.len() as u32,
            ..*item
        });
    }

    /// The document line of `item` (without its `\n`).
    pub fn doc(&self, item: &BulkItem) -> &[u8] {
        &self.body_bytes()[item.doc as usize..item.end as usize - 1]
    }

    /// The `_index` and `_id` of `item`, as its action line has them.
    pub fn action_line(&self, item: &BulkItem) -> &[u8] {
        &self.body_bytes()[item.start as usize..item.doc as usize - 1]
    }

    /// The body, for a request; the bulk keeps it for retries and the dead-letter file.
    pub fn freeze(&mut self) -> Bytes {
        if !self.body.is_empty() {
            self.frozen = Bytes::from(std::mem::take(&mut self.body));
        }
        self.frozen.clone()
    }

    fn body_bytes(&self) -> &[u8] {
        if self.body.is_empty() {
            &self.frozen
        } else {
            &self.body
        }
    }
}

/// What became of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Indexed (2xx).
    Indexed,
    /// `create` found the `_id` there already (409): delivered before.
    AlreadyIndexed,
    /// To be sent again: 429, 5xx, or the whole request failed. The reason is a metrics label.
    Retry(String),
    /// Refused for good: to the dead-letter file. The label, and the server's words.
    Refused { label: String, reason: String },
}

/// The item's outcome from its status and error (see the module doc).
pub fn classify(action: BulkAction, status: u16, error: Option<&ItemError>) -> ItemOutcome {
    let label = || match error {
        Some(e) if !e.kind.is_empty() => e.kind.clone(),
        _ => format!("http_{status}"),
    };
    match status {
        200..=299 => ItemOutcome::Indexed,
        409 if action == BulkAction::Create => ItemOutcome::AlreadyIndexed,
        429 | 500..=599 => ItemOutcome::Retry(label()),
        _ => ItemOutcome::Refused {
            label: label(),
            reason: error.map_or_else(
                || format!("status {status}"),
                |e| match &e.caused_by {
                    Some(cause) => format!(
                        "{}: {} (caused by {}: {})",
                        e.kind, e.reason, cause.kind, cause.reason
                    ),
                    None => format!("{}: {}", e.kind, e.reason),
                },
            ),
        },
    }
}

/// The part of a bulk response logtail reads.
#[derive(Debug, Deserialize)]
pub struct BulkResponse {
    pub items: Vec<ItemResponse>,
}

/// One item of a bulk response: `{"create": {...}}` or `{"index": {...}}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemResponse {
    Create(ItemResult),
    Index(ItemResult),
    Update(ItemResult),
    Delete(ItemResult),
}

impl ItemResponse {
    pub fn result(&self) -> &ItemResult {
        match self {
            ItemResponse::Create(r)
            | ItemResponse::Index(r)
            | ItemResponse::Update(r)
            | ItemResponse::Delete(r) => r,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ItemResult {
    pub status: u16,
    #[serde(default)]
    pub error: Option<ItemError>,
}

#[derive(Debug, Deserialize)]
pub struct ItemError {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub caused_by: Option<Box<ItemError>>,
}

/// Reads a bulk response for `expected` items.
///
/// # Errors
/// When the body is not a bulk response, or answers for another number of items.
pub fn parse_response(body: &[u8], expected: usize) -> Result<BulkResponse, String> {
    let response: BulkResponse = serde_json::from_slice(body).map_err(|e| {
        let head = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        format!("not a bulk response ({e}): {head}")
    })?;
    if response.items.len() != expected {
        return Err(format!(
            "the bulk response has {} items for {expected} documents",
            response.items.len()
        ));
    }
    Ok(response)
}

/// The wait before attempt `attempt` (1 for the first retry): `initial` doubled per attempt up to
/// `max`, then "equal jitter" (a uniform draw between half of it and all of it, from `random`),
/// so that gateways that failed together do not retry together.
pub fn backoff(attempt: u32, initial: Duration, max: Duration, random: u64) -> Duration {
    let doubled = initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let ceiling = doubled.min(max);
    let half = ceiling / 2;
    let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_micros(random % spread)
}

/// A xorshift step: the jitter needs no more than that.
pub fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_two_lines_per_document_and_retries_copy_them() {
        let mut bulk = Bulk::default();
        bulk.push(
            3,
            BulkAction::Create,
            "logs-x",
            b"00ff",
            b"{\"message\":\"a\"}",
            7,
        );
        bulk.push(
            4,
            BulkAction::Index,
            "logs-y",
            b"11ee",
            b"{\"message\":\"b\"}",
            8,
        );
        let body = bulk.freeze();
        assert_eq!(
            &body[..],
            b"{\"create\":{\"_index\":\"logs-x\",\"_id\":\"00ff\"}}\n{\"message\":\"a\"}\n\
              {\"index\":{\"_index\":\"logs-y\",\"_id\":\"11ee\"}}\n{\"message\":\"b\"}\n"
        );
        let mut retry = Bulk::retry(1);
        let second = bulk.items[1];
        retry.push_from(&bulk, &second);
        assert_eq!(retry.doc(&retry.items[0]), b"{\"message\":\"b\"}");
        assert_eq!(retry.items[0].ticket, 4);
        assert_eq!(retry.items[0].doc_bytes(), 15);
        assert_eq!(
            retry.action_line(&retry.items[0]),
            b"{\"index\":{\"_index\":\"logs-y\",\"_id\":\"11ee\"}}"
        );
        assert_eq!(&retry.freeze()[..], &body[second.start as usize..]);
    }

    #[test]
    fn statuses_map_to_delivered_retried_or_refused() {
        let error = |kind: &str| ItemError {
            kind: kind.into(),
            reason: "why".into(),
            caused_by: None,
        };
        use BulkAction::{Create, Index};
        assert_eq!(classify(Create, 201, None), ItemOutcome::Indexed);
        assert_eq!(classify(Index, 200, None), ItemOutcome::Indexed);
        let conflict = error("version_conflict_engine_exception");
        assert_eq!(
            classify(Create, 409, Some(&conflict)),
            ItemOutcome::AlreadyIndexed
        );
        assert!(matches!(
            classify(Index, 409, Some(&conflict)),
            ItemOutcome::Refused { .. }
        ));
        assert_eq!(
            classify(Create, 429, Some(&error("es_rejected_execution_exception"))),
            ItemOutcome::Retry("es_rejected_execution_exception".into())
        );
        assert_eq!(
            classify(Create, 503, None),
            ItemOutcome::Retry("http_503".into())
        );
        assert_eq!(
            classify(Create, 400, Some(&error("mapper_parsing_exception"))),
            ItemOutcome::Refused {
                label: "mapper_parsing_exception".into(),
                reason: "mapper_parsing_exception: why".into()
            }
        );
        assert!(matches!(
            classify(Create, 404, None),
            ItemOutcome::Refused { .. }
        ));
    }

    #[test]
    fn responses_are_read_item_by_item_and_checked_for_count() {
        let body = br#"{"took":1,"errors":true,"items":[
            {"create":{"_id":"a","status":201,"result":"created"}},
            {"create":{"_id":"b","status":400,"error":{"type":"mapper_parsing_exception",
              "reason":"failed to parse field [severity]",
              "caused_by":{"type":"number_format_exception","reason":"For input string"}}}}]}"#;
        let response = parse_response(body, 2).unwrap();
        assert_eq!(response.items[0].result().status, 201);
        let second = response.items[1].result();
        assert_eq!(
            classify(BulkAction::Create, second.status, second.error.as_ref()),
            ItemOutcome::Refused {
                label: "mapper_parsing_exception".into(),
                reason: "mapper_parsing_exception: failed to parse field [severity] (caused by \
                         number_format_exception: For input string)"
                    .into()
            }
        );
        assert!(
            parse_response(body, 3)
                .unwrap_err()
                .contains("2 items for 3")
        );
        assert!(
            parse_response(b"<html>", 1)
                .unwrap_err()
                .starts_with("not a bulk response")
        );
    }

    #[test]
    fn backoff_doubles_to_its_ceiling_with_jitter_in_the_upper_half() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        assert_eq!(backoff(1, initial, max, 0), Duration::from_millis(50));
        assert_eq!(backoff(3, initial, max, 0), Duration::from_millis(200));
        assert_eq!(backoff(30, initial, max, 0), Duration::from_secs(5));
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for attempt in 1..40 {
            let wait = backoff(attempt, initial, max, next_random(&mut state));
            let ceiling = (initial * (1 << (attempt - 1).min(20))).min(max);
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "{attempt}: {wait:?}"
            );
        }
    }
}
