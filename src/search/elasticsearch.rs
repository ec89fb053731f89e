//! Searching an Elasticsearch/OpenSearch cluster instead of the local store
//! (`[search] backend = "elasticsearch"`): the same questions as [`crate::search`] asks the
//! store — a page of records, a count, a histogram, a field's top values — answered with one
//! `_search` (or `_count`) request each, through the sink's HTTP client
//! ([`ElasticsearchClient`]).
//!
//! - The query: [`crate::query::elasticsearch_query`], and the time range `from <= time < to`
//!   where a record's time is its `timestamp`, else its `received_at` (a `bool` with both
//!   cases, exact to the millisecond: the sink's template maps both as `date`).
//! - Records are the documents' `_source`, byte for byte as Elasticsearch keeps it: the JSON
//!   the sink sent, which is the record `logtail read` prints.
//! - Order: `timestamp`, then `received_at` (milliseconds), newest first by default; documents
//!   without a `timestamp` come after all others newest first (before them oldest first).
//! - Paging ([`ElasticsearchCursor`]): `search_after` the last record's sort values, without a
//!   unique tie-breaker (Elasticsearch 8 refuses to sort on `_id`): the cursor also counts the
//!   records of the page that share the last one's sort values, and the next page asks for
//!   those values again and leaves out that many. Ties are in the order of the index, which
//!   holds while no document with exactly those values is added between the two pages.
//! - Histograms: `date_histogram` on `timestamp`, plus one on `received_at` of the documents
//!   without a `timestamp`, added up; facets: `terms`, `missing` and `cardinality`.
//! - A failure is an [`ElasticsearchSearchError`]: the query's (400), or the cluster's
//!   (unreachable, timeout, an error answer), never a hang: every request has the client's
//!   timeout.

use std::collections::BTreeMap;

use bytes::Bytes;
use hyper::Method;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::config::ElasticsearchSearchConfig;
use super::{BucketGrid, FieldCounts, Histogram, MAX_BUCKETS, Order, SearchOptions, SearchStats};
use crate::query::{QueryError, elasticsearch_aggregatable_field, elasticsearch_query};
use crate::setting::InvalidSetting;
use crate::sink::elasticsearch::client::{ElasticsearchClient, HttpJob, RequestError};
use crate::sink::elasticsearch::config::BodyCompression;

/// Elasticsearch's default `index.max_result_window`: one request returns at most this many
/// hits, which bounds the records sharing one sort key a cursor can step over.
pub const MAX_HITS_PER_REQUEST: usize = 10_000;

/// The cluster, as the search API and `logtail search` ask it.
#[derive(Debug)]
pub struct ElasticsearchSearch {
    client: ElasticsearchClient,
    /// The index pattern, as it goes in the path.
    index: String,
}

/// Why a search of the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum ElasticsearchSearchError {
    /// The query cannot be translated (the API's 400, with the column).
    #[error(transparent)]
    Query(#[from] QueryError),
    /// No answer: no endpoint reachable, or none within the timeout.
    #[error("elasticsearch: {0}")]
    Unreachable(RequestError),
    /// Elasticsearch refused the request as bad (4xx but 401, 403, 404): a regex Lucene does
    /// not read, too many buckets, a field that cannot be aggregated.
    #[error("elasticsearch refused the search ({status}): {reason}")]
    Refused { status: u16, reason: String },
    /// Any other error answer (5xx, auth, a missing index), or one that does not read.
    #[error("elasticsearch failed ({status}): {reason}")]
    Failed { status: u16, reason: String },
    /// More records share one sort key than one request may return.
    #[error(
        "more than {MAX_HITS_PER_REQUEST} records share one time to the millisecond: narrow the query or the range"
    )]
    TooManyTies,
    #[error(
        "{buckets} buckets of the histogram is too many (at most {MAX_BUCKETS}): use wider buckets or a shorter range"
    )]
    TooManyBuckets { buckets: u64 },
    #[error("the histogram's bucket width must be a whole number of milliseconds")]
    SubMillisecondBuckets,
}

impl From<RequestError> for ElasticsearchSearchError {
    fn from(e: RequestError) -> Self {
        // Not a `source`: the message says it all, once.
        ElasticsearchSearchError::Unreachable(e)
    }
}

/// Where the next page starts: the sort values (`timestamp`, `received_at` in ms, as
/// Elasticsearch returned them) of the last record of the previous page, and how many records
/// with exactly those values that page and those before it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElasticsearchCursor {
    pub time_ms: i64,
    pub received_ms: i64,
    pub skip: u64,
}

impl ElasticsearchCursor {
    /// `es.TIME.RECEIVED.SKIP`: apart from the store's cursors, which have no `es.`.
    pub fn to_cursor(&self) -> String {
        format!("es.{}.{}.{}", self.time_ms, self.received_ms, self.skip)
    }

    /// Reads [`ElasticsearchCursor::to_cursor`]'s text back; `None` for anything else.
    pub fn from_cursor(text: &str) -> Option<ElasticsearchCursor> {
        let mut parts = text.strip_prefix("es.")?.split('.');
        let cursor = ElasticsearchCursor {
            time_ms: parts.next()?.parse().ok()?,
            received_ms: parts.next()?.parse().ok()?,
            skip: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(cursor)
    }
}

/// One page of records from the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElasticsearchPage {
    /// The documents' `_source`, in page order.
    pub records: Vec<Vec<u8>>,
    /// When more records match: the next page's cursor.
    pub next: Option<ElasticsearchCursor>,
}

#[derive(Deserialize)]
struct SearchAnswer {
    hits: Hits,
    #[serde(default)]
    aggregations: Option<Value>,
}

#[derive(Deserialize)]
struct Hits {
    hits: Vec<Hit>,
}

#[derive(Deserialize)]
struct Hit {
    #[serde(rename = "_source")]
    source: Box<RawValue>,
    #[serde(default)]
    sort: Vec<Value>,
}

impl Hit {
    fn key(&self) -> (i64, i64) {
        let at = |i: usize| self.sort.get(i).and_then(Value::as_i64).unwrap_or(i64::MIN);
        (at(0), at(1))
    }
}

impl ElasticsearchSearch {
    /// # Errors
    /// A CA file or auth value that cannot be used (under its key).
    pub fn new(config: &ElasticsearchSearchConfig) -> Result<ElasticsearchSearch, InvalidSetting> {
        Ok(ElasticsearchSearch {
            // Search bodies are a few hundred bytes: not worth gzip.
            client: ElasticsearchClient::new(
                &config.endpoints,
                &config.auth,
                config.ca_file.as_deref(),
                BodyCompression::None,
                config.request_timeout,
            )?,
            index: config.index.as_str().to_string(),
        })
    }

    /// Sends `body` to `/{index}/{endpoint}` and reads a 200 answer's JSON.
    async fn request<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &Value,
    ) -> Result<T, ElasticsearchSearchError> {
        let job = HttpJob {
            id: 0,
            method: Method::POST,
            path: format!("/{}/{endpoint}", self.index),
            body: Bytes::from(body.to_string()),
            ndjson: false,
        };
        let reply = self.client.send(&job).await?;
        if reply.status != 200 {
            let reason = error_reason(&reply.body);
            return Err(match reply.status {
                400..=499 if !matches!(reply.status, 401 | 403 | 404) => {
                    ElasticsearchSearchError::Refused {
                        status: reply.status,
                        reason,
                    }
                }
                status => ElasticsearchSearchError::Failed { status, reason },
            });
        }
        serde_json::from_slice(&reply.body).map_err(|e| ElasticsearchSearchError::Failed {
            status: reply.status,
            reason: format!("an answer that does not read: {e}"),
        })
    }

    /// The first `opts.limit` (default 100) matches after `after`, in `opts.order`, cut short
    /// (with a `next`) once they pass `max_bytes` (at least one record).
    ///
    /// # Errors
    /// See [`ElasticsearchSearchError`].
    pub async fn page(
        &self,
        query: &str,
        opts: &SearchOptions,
        after: Option<ElasticsearchCursor>,
        max_bytes: usize,
    ) -> Result<ElasticsearchPage, ElasticsearchSearchError> {
        let limit = opts.limit.unwrap_or(100).max(1);
        let skip = after.map_or(0, |a| usize::try_from(a.skip).unwrap_or(usize::MAX));
        // One more than the page, to tell whether more follow.
        let size = limit.saturating_add(skip).saturating_add(1);
        if size > MAX_HITS_PER_REQUEST {
            return Err(ElasticsearchSearchError::TooManyTies);
        }
        let newest_first = opts.order == Order::NewestFirst;
        let body = page_body(&filtered(query, opts)?, newest_first, size, after);
        let answer: SearchAnswer = self.request("_search", &body).await?;
        let mut hits = answer.hits.hits.into_iter().peekable();
        // Leave out the records of the cursor's key that earlier pages returned.
        let mut left_out = 0;
        while left_out < skip
            && let Some(hit) = hits.peek()
            && after.is_some_and(|a| hit.key() == (a.time_ms, a.received_ms))
        {
            hits.next();
            left_out += 1;
        }
        let mut page: Vec<Hit> = hits.collect();
        let mut more = page.len() > limit;
        page.truncate(limit);
        let mut bytes = 0;
        if let Some(cut) = page.iter().position(|hit| {
            bytes += hit.source.get().len();
            bytes > max_bytes
        }) {
            let keep = cut.max(1);
            more |= page.len() > keep;
            page.truncate(keep);
        }
        let next = match page.last() {
            Some(last) if more => {
                let key = last.key();
                let mut skip = page.iter().rev().take_while(|h| h.key() == key).count() as u64;
                if page.iter().all(|h| h.key() == key)
                    && let Some(after) = after.filter(|a| (a.time_ms, a.received_ms) == key)
                {
                    skip += after.skip;
                }
                Some(ElasticsearchCursor {
                    time_ms: key.0,
                    received_ms: key.1,
                    skip,
                })
            }
            _ => None,
        };
        Ok(ElasticsearchPage {
            records: page
                .into_iter()
                .map(|hit| String::from(Box::<str>::from(hit.source)).into_bytes())
                .collect(),
            next,
        })
    }

    /// The number of matches.
    ///
    /// # Errors
    /// See [`ElasticsearchSearchError`].
    pub async fn count(
        &self,
        query: &str,
        opts: &SearchOptions,
    ) -> Result<u64, ElasticsearchSearchError> {
        #[derive(Deserialize)]
        struct CountAnswer {
            count: u64,
        }
        let body = json!({ "query": filtered(query, opts)? });
        let answer: CountAnswer = self.request("_count", &body).await?;
        Ok(answer.count)
    }

    /// Matches per `width_us` (a whole number of milliseconds) of time, aligned to multiples
    /// of the width since the epoch, as [`super::histogram`] counts them.
    ///
    /// # Errors
    /// See [`ElasticsearchSearchError`].
    pub async fn histogram(
        &self,
        query: &str,
        opts: &SearchOptions,
        width_us: i64,
    ) -> Result<Histogram, ElasticsearchSearchError> {
        if width_us < 1000 || width_us % 1000 != 0 {
            return Err(ElasticsearchSearchError::SubMillisecondBuckets);
        }
        let too_many = |buckets| ElasticsearchSearchError::TooManyBuckets { buckets };
        let grid = BucketGrid::new(opts, width_us).map_err(too_many)?;
        let body = histogram_body(&filtered(query, opts)?, width_us / 1000);
        let answer: SearchAnswer = self.request("_search", &body).await?;
        let aggregations = answer.aggregations.unwrap_or(Value::Null);
        let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
        for buckets in [
            &aggregations["timed"]["buckets"],
            &aggregations["untimed"]["by_received"]["buckets"],
        ] {
            for bucket in buckets.as_array().into_iter().flatten() {
                let (Some(key_ms), Some(count)) =
                    (bucket["key"].as_i64(), bucket["doc_count"].as_u64())
                else {
                    continue;
                };
                *counts
                    .entry(grid.bucket_of(key_ms.saturating_mul(1000)))
                    .or_default() += count;
            }
        }
        Ok(Histogram {
            width_us,
            buckets: grid.fill(opts, &counts).map_err(too_many)?,
            stats: SearchStats::default(),
        })
    }

    /// The `top` most frequent values of the field a query names `name` over the matches.
    ///
    /// # Errors
    /// See [`ElasticsearchSearchError`]; `message` cannot be counted (analyzed text).
    pub async fn fields(
        &self,
        query: &str,
        opts: &SearchOptions,
        name: &str,
        top: usize,
    ) -> Result<FieldCounts, ElasticsearchSearchError> {
        let field = elasticsearch_aggregatable_field(name)?;
        let body = json!({
            "size": 0,
            "query": filtered(query, opts)?,
            "aggs": {
                "values": { "terms": { "field": field, "size": top } },
                "missing": { "missing": { "field": field } },
                "distinct": { "cardinality": { "field": field } },
            },
        });
        let answer: SearchAnswer = self.request("_search", &body).await?;
        let aggregations = answer.aggregations.unwrap_or(Value::Null);
        let values = aggregations["values"]["buckets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|bucket| {
                let value = match &bucket["key"] {
                    Value::String(text) => text.clone(),
                    // A number field's key; an integer stays one ("3", not "3.0").
                    Value::Number(n) => n.as_i64().map_or_else(|| n.to_string(), |i| i.to_string()),
                    _ => return None,
                };
                Some((value.into_bytes(), bucket["doc_count"].as_u64()?))
            })
            .collect();
        let count = |value: &Value| value.as_u64().unwrap_or(0);
        Ok(FieldCounts {
            values,
            missing: count(&aggregations["missing"]["doc_count"]),
            uncounted: count(&aggregations["values"]["sum_other_doc_count"]),
            distinct: usize::try_from(count(&aggregations["distinct"]["value"]))
                .unwrap_or(usize::MAX),
            stats: SearchStats::default(),
        })
    }
}

/// The query with the time range of `opts`.
fn filtered(query: &str, opts: &SearchOptions) -> Result<Value, QueryError> {
    let query = elasticsearch_query(query)?;
    Ok(match time_filter(opts.from_us, opts.to_us) {
        Some(range) => json!({ "bool": { "filter": [query, range] } }),
        None => query,
    })
}

/// `from <= time < to`, a record's time being its `timestamp`, else its `received_at`.
fn time_filter(from_us: Option<i64>, to_us: Option<i64>) -> Option<Value> {
    if from_us.is_none() && to_us.is_none() {
        return None;
    }
    let mut bounds = serde_json::Map::new();
    for (op, bound) in [("gte", from_us), ("lt", to_us)] {
        if let Some(us) = bound {
            let mut text = Vec::with_capacity(32);
            crate::encode::format_rfc3339_micros(us, &mut text);
            bounds.insert(
                op.into(),
                Value::String(String::from_utf8_lossy(&text).into_owned()),
            );
        }
    }
    Some(json!({ "bool": {
        "should": [
            { "range": { "timestamp": bounds } },
            { "bool": {
                "must_not": [{ "exists": { "field": "timestamp" } }],
                "filter": [{ "range": { "received_at": bounds } }],
            } },
        ],
        "minimum_should_match": 1,
    } }))
}

/// The `_search` body of a page: sorted by `timestamp` then `received_at`; after a cursor,
/// from the cursor's key itself (its records the caller leaves out).
fn page_body(
    query: &Value,
    newest_first: bool,
    size: usize,
    after: Option<ElasticsearchCursor>,
) -> Value {
    let (order, missing) = if newest_first {
        ("desc", "_last")
    } else {
        ("asc", "_first")
    };
    let mut body = json!({
        "size": size,
        "query": query,
        "sort": [
            { "timestamp": { "order": order, "missing": missing } },
            { "received_at": { "order": order, "missing": missing } },
        ],
        "track_total_hits": false,
    });
    if let Some(after) = after {
        // `search_after` is exclusive: one millisecond before the key, in the order, so the
        // key's own records come first.
        let received = if newest_first {
            after.received_ms.saturating_add(1)
        } else {
            after.received_ms.saturating_sub(1)
        };
        body["search_after"] = json!([after.time_ms, received]);
    }
    body
}

fn histogram_body(query: &Value, width_ms: i64) -> Value {
    let interval = format!("{width_ms}ms");
    json!({
        "size": 0,
        "query": query,
        "aggs": {
            "timed": { "date_histogram": {
                "field": "timestamp", "fixed_interval": interval, "min_doc_count": 1,
            } },
            "untimed": {
                "filter": { "bool": { "must_not": [{ "exists": { "field": "timestamp" } }] } },
                "aggs": { "by_received": { "date_histogram": {
                    "field": "received_at", "fixed_interval": interval, "min_doc_count": 1,
                } } },
            },
        },
    })
}

/// What an error answer says: `error.type: error.reason`, with the deepest `caused_by`'s
/// reason (where Elasticsearch puts "invalid regex" and the like), or the body's first 300
/// bytes when it is not Elasticsearch's error object.
fn error_reason(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return if text.is_empty() {
            "no body".into()
        } else {
            text
        };
    };
    let error = &value["error"];
    if let Some(text) = error.as_str() {
        return text.to_string();
    }
    let mut reason = format!(
        "{}: {}",
        error["type"].as_str().unwrap_or("error"),
        error["reason"].as_str().unwrap_or("no reason given")
    );
    let mut cause = &error["caused_by"];
    let mut deepest = None;
    while let Some(text) = cause["reason"].as_str() {
        deepest = Some(text);
        cause = &cause["caused_by"];
    }
    if let Some(deepest) = deepest.filter(|d| !reason.contains(*d)) {
        reason.push_str(&format!(" ({deepest})"));
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(from_us: Option<i64>, to_us: Option<i64>) -> SearchOptions {
        SearchOptions {
            from_us,
            to_us,
            limit: Some(10),
            order: Order::NewestFirst,
            follow: false,
            threads: 1,
        }
    }

    #[test]
    fn the_time_range_falls_back_to_received_at() {
        assert_eq!(
            filtered("host:a", &opts(None, None)).unwrap(),
            elasticsearch_query("host:a").unwrap()
        );
        assert_eq!(
            filtered(
                "",
                &opts(Some(1_795_229_640_000_000), Some(1_795_229_700_000_001))
            )
            .unwrap()
            .to_string(),
            r#"{"bool":{"filter":[{"match_all":{}},{"bool":{"minimum_should_match":1,"should":[{"range":{"timestamp":{"gte":"2026-11-21T02:54:00.000000Z","lt":"2026-11-21T02:55:00.000001Z"}}},{"bool":{"filter":[{"range":{"received_at":{"gte":"2026-11-21T02:54:00.000000Z","lt":"2026-11-21T02:55:00.000001Z"}}}],"must_not":[{"exists":{"field":"timestamp"}}]}}]}}]}}"#
        );
    }

    #[test]
    fn pages_sort_by_time_and_start_at_the_cursors_key() {
        let query = json!({ "match_all": {} });
        assert_eq!(
            page_body(&query, true, 11, None).to_string(),
            r#"{"query":{"match_all":{}},"size":11,"sort":[{"timestamp":{"missing":"_last","order":"desc"}},{"received_at":{"missing":"_last","order":"desc"}}],"track_total_hits":false}"#
        );
        let after = ElasticsearchCursor {
            time_ms: 1000,
            received_ms: 2000,
            skip: 3,
        };
        assert_eq!(
            page_body(&query, true, 14, Some(after))["search_after"],
            json!([1000, 2001])
        );
        assert_eq!(
            page_body(&query, false, 14, Some(after))["search_after"],
            json!([1000, 1999])
        );
        assert_eq!(
            page_body(&query, false, 14, Some(after))["sort"][0],
            json!({ "timestamp": { "order": "asc", "missing": "_first" } })
        );
    }

    #[test]
    fn histograms_count_timed_and_untimed_records() {
        assert_eq!(
            histogram_body(&json!({ "match_all": {} }), 60_000).to_string(),
            r#"{"aggs":{"timed":{"date_histogram":{"field":"timestamp","fixed_interval":"60000ms","min_doc_count":1}},"untimed":{"aggs":{"by_received":{"date_histogram":{"field":"received_at","fixed_interval":"60000ms","min_doc_count":1}}},"filter":{"bool":{"must_not":[{"exists":{"field":"timestamp"}}]}}}},"query":{"match_all":{}},"size":0}"#
        );
    }

    #[test]
    fn cursors_read_back_and_refuse_the_stores() {
        let cursor = ElasticsearchCursor {
            time_ms: i64::MIN,
            received_ms: 1_795_229_628_000,
            skip: 2,
        };
        assert_eq!(
            cursor.to_cursor(),
            "es.-9223372036854775808.1795229628000.2"
        );
        assert_eq!(
            ElasticsearchCursor::from_cursor(&cursor.to_cursor()),
            Some(cursor)
        );
        for bad in ["", "1.2.3", "es.1.2", "es.1.2.3.4", "es.a.2.3"] {
            assert_eq!(ElasticsearchCursor::from_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn error_answers_say_what_elasticsearch_said() {
        let body = br#"{"error":{"root_cause":[],"type":"search_phase_execution_exception","reason":"all shards failed","caused_by":{"type":"x","reason":"outer","caused_by":{"type":"illegal_argument_exception","reason":"invalid regex"}}},"status":400}"#;
        assert_eq!(
            error_reason(body),
            "search_phase_execution_exception: all shards failed (invalid regex)"
        );
        assert_eq!(
            error_reason(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(error_reason(b""), "no body");
    }
}
