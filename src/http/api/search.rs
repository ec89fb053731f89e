//! `search`, `histogram` and `fields`: the endpoints that scan the store, each a call into
//! [`crate::search`] on a blocking thread ([`ApiContext::scan`]); or, with `[search] backend =
//! "elasticsearch"`, a request to the cluster ([`crate::search::elasticsearch`],
//! [`ApiContext::remote`]) answered in the same shape (`scanned_blocks` and `skipped_blocks`
//! are 0 then, and cursors are the cluster's).
//!
//! Records are sent as the JSON objects `logtail read` prints, embedded as they are stored (a
//! record that is not JSON, from a store written with `encoding = "raw"`, is sent as
//! `{"raw": "TEXT"}`).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde::Serialize;
use serde_json::value::RawValue;

use super::params::Params;
use super::{ApiContext, ApiError, MAX_LIMIT, MAX_PAGE_BYTES, json_response, rfc3339};
use crate::search::elasticsearch::ElasticsearchCursor;
use crate::search::{self as engine, SearchOptions, SearchStats};

/// `GET /api/v1/search` answers this.
#[derive(Serialize)]
struct SearchAnswer {
    records: Vec<Box<RawValue>>,
    /// The cursor of the next page, when more records match.
    next: Option<String>,
    truncated: bool,
    scanned_blocks: u64,
    skipped_blocks: u64,
    took_ms: u64,
}

/// Blocks decompressed and blocks ruled out by their index.
/// Blocks searched record by record, and blocks the store's skip index ruled out whole.
fn block_counts(stats: &SearchStats) -> (u64, u64) {
    (stats.scanned_blocks, stats.skipped_blocks)
}

fn millis_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// `GET /api/v1/search?q=&from=&to=&limit=&order=&cursor=`.
pub(super) async fn search(
    State(context): State<Arc<ApiContext>>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let params = Params::parse(
        uri.query(),
        &["q", "from", "to", "limit", "order", "cursor"],
    )?;
    let matcher = params.query()?;
    let (from_us, to_us) = params.range()?;
    let limit = params.number("limit", 100, 1, MAX_LIMIT)?;
    let order = params.order()?;
    let opts = SearchOptions {
        from_us,
        to_us,
        limit: Some(limit),
        order,
        follow: false,
        threads: engine::search_threads(),
    };
    let started = Instant::now();
    if let Some(cluster) = context.elasticsearch() {
        let after = params.cursor_of(ElasticsearchCursor::from_cursor)?;
        let page = context
            .remote(cluster.page(params.query_text(), &opts, after, MAX_PAGE_BYTES))
            .await?;
        let next = page.next.map(|cursor| cursor.to_cursor());
        return search_answer(page.records, next, &SearchStats::default(), started);
    }
    let after = params.cursor()?;
    let dir = context.store()?.dir.clone();
    let page = context
        .scan(move |stop| engine::page(&dir, &matcher, &opts, after, MAX_PAGE_BYTES, stop))
        .await?;
    let next = page.next.map(|key| key.to_cursor());
    search_answer(page.records, next, &page.stats, started)
}

/// The answer of `search`: `records` as JSON, `next` the cursor of the next page.
fn search_answer(
    records: Vec<Vec<u8>>,
    next: Option<String>,
    stats: &SearchStats,
    started: Instant,
) -> Result<Response, ApiError> {
    let (scanned_blocks, skipped_blocks) = block_counts(stats);
    let answer = SearchAnswer {
        truncated: next.is_some(),
        next,
        records: records
            .into_iter()
            .map(raw_or_wrapped)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("encoding a record: {e}"),
                )
            })?,
        scanned_blocks,
        skipped_blocks,
        took_ms: millis_since(started),
    };
    Ok(json_response(StatusCode::OK, &answer))
}

/// A stored record as JSON: itself, or `{"raw": TEXT}` when it is not JSON.
fn raw_or_wrapped(record: Vec<u8>) -> serde_json::Result<Box<RawValue>> {
    match String::from_utf8(record) {
        Ok(text) if serde_json::from_str::<&RawValue>(&text).is_ok() => RawValue::from_string(text),
        Ok(text) => serde_json::value::to_raw_value(&serde_json::json!({ "raw": text })),
        Err(e) => serde_json::value::to_raw_value(
            &serde_json::json!({ "raw": String::from_utf8_lossy(e.as_bytes()) }),
        ),
    }
}

/// One bucket of `GET /api/v1/histogram`.
#[derive(Serialize)]
struct BucketCount {
    /// The bucket's start, RFC 3339 UTC.
    start: String,
    /// The same, in unix milliseconds (for charts).
    start_ms: i64,
    count: u64,
}

#[derive(Serialize)]
struct HistogramAnswer {
    from: String,
    to: String,
    width_ms: i64,
    buckets: Vec<BucketCount>,
    total: u64,
    scanned_blocks: u64,
    skipped_blocks: u64,
    took_ms: u64,
}

/// Bucket widths a histogram rounds up to, in seconds: whole units a chart's axis can label.
const NICE_WIDTHS_SECS: [i64; 18] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
];

/// The narrowest nice width that covers `span_us` in at most `buckets` buckets.
fn bucket_width_us(span_us: i64, buckets: usize) -> i64 {
    let ceil_div = |a: i64, b: i64| (a + b - 1) / b;
    // To the millisecond: `from=10m` and `to` (now) read the clock a microsecond apart.
    let span_us = ((span_us + 500) / 1000 * 1000).max(1);
    let wanted = ceil_div(span_us, buckets as i64).max(1);
    NICE_WIDTHS_SECS
        .iter()
        .map(|secs| secs * 1_000_000)
        .find(|&width| width >= wanted)
        .unwrap_or_else(|| ceil_div(wanted, 86_400_000_000) * 86_400_000_000)
}

/// `GET /api/v1/histogram?q=&from=&to=&buckets=`: `to` defaults to now, `from` to an hour
/// before `to`; the width is the narrowest of 1s, 2s, 5s, 10s, 15s, 30s, 1m, 2m, 5m, 10m, 15m,
/// 30m, 1h, 2h, 3h, 6h, 12h, 1d (then whole days) that covers the range in `buckets` (default
/// 60, at most 1000) widths; buckets are aligned to multiples of the width, so a range that
/// does not start on one has one bucket more.
pub(super) async fn histogram(
    State(context): State<Arc<ApiContext>>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let params = Params::parse(uri.query(), &["q", "from", "to", "buckets"])?;
    let matcher = params.query()?;
    let (from_us, to_us) = params.range()?;
    let buckets = params.number("buckets", 60, 1, 1000)?;
    let to_us = to_us.unwrap_or_else(crate::time::now_unix_micros);
    let from_us = from_us.unwrap_or(to_us - 3_600_000_000);
    if from_us >= to_us {
        return Err(ApiError::bad_parameter(
            "from",
            "the range is empty: 'from' must be before 'to' (which defaults to now)",
        ));
    }
    let width_us = bucket_width_us(to_us - from_us, buckets);
    let opts = SearchOptions {
        from_us: Some(from_us),
        to_us: Some(to_us),
        limit: None,
        order: engine::Order::OldestFirst,
        follow: false,
        threads: engine::search_threads(),
    };
    let started = Instant::now();
    let histogram = match context.elasticsearch() {
        Some(cluster) => {
            context
                .remote(cluster.histogram(params.query_text(), &opts, width_us))
                .await?
        }
        None => {
            let dir = context.store()?.dir.clone();
            context
                .scan(move |stop| engine::histogram(&dir, &matcher, &opts, width_us, stop))
                .await?
        }
    };
    let (scanned_blocks, skipped_blocks) = block_counts(&histogram.stats);
    let answer = HistogramAnswer {
        from: rfc3339(from_us),
        to: rfc3339(to_us),
        width_ms: width_us / 1000,
        total: histogram.buckets.iter().map(|(_, count)| count).sum(),
        buckets: histogram
            .buckets
            .iter()
            .map(|&(start, count)| BucketCount {
                start: rfc3339(start),
                start_ms: start.div_euclid(1000),
                count,
            })
            .collect(),
        scanned_blocks,
        skipped_blocks,
        took_ms: millis_since(started),
    };
    Ok(json_response(StatusCode::OK, &answer))
}

#[derive(Serialize)]
struct ValueCount {
    value: String,
    count: u64,
}

#[derive(Serialize)]
struct FieldsAnswer {
    field: String,
    values: Vec<ValueCount>,
    /// Matching records without the field.
    missing: u64,
    /// Values not counted one by one (past the distinct-value bound).
    other: u64,
    distinct: usize,
    scanned_blocks: u64,
    skipped_blocks: u64,
    took_ms: u64,
}

/// `GET /api/v1/fields?q=&from=&to=&field=&top=`: the `top` (default 10, at most 100) most
/// frequent values of `field` over the matches.
pub(super) async fn fields(
    State(context): State<Arc<ApiContext>>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let params = Params::parse(uri.query(), &["q", "from", "to", "field", "top"])?;
    let matcher = params.query()?;
    let (from_us, to_us) = params.range()?;
    let (name, field, list) = params.field()?;
    let top = params.number("top", 10, 1, 100)?;
    let opts = SearchOptions {
        from_us,
        to_us,
        limit: None,
        order: engine::Order::OldestFirst,
        follow: false,
        threads: engine::search_threads(),
    };
    let started = Instant::now();
    let counts = match context.elasticsearch() {
        Some(cluster) => {
            context
                .remote(cluster.fields(params.query_text(), &opts, &name, top))
                .await?
        }
        None => {
            let dir = context.store()?.dir.clone();
            context
                .scan(move |stop| engine::fields(&dir, &matcher, &opts, (&field, list), top, stop))
                .await?
        }
    };
    let (scanned_blocks, skipped_blocks) = block_counts(&counts.stats);
    let answer = FieldsAnswer {
        field: name,
        values: counts
            .values
            .into_iter()
            .map(|(value, count)| ValueCount {
                value: String::from_utf8_lossy(&value).into_owned(),
                count,
            })
            .collect(),
        missing: counts.missing,
        other: counts.uncounted,
        distinct: counts.distinct,
        scanned_blocks,
        skipped_blocks,
        took_ms: millis_since(started),
    };
    Ok(json_response(StatusCode::OK, &answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_widths_are_nice_and_cover_the_range() {
        let hour = 3_600_000_000;
        assert_eq!(bucket_width_us(hour, 60), 60_000_000);
        assert_eq!(bucket_width_us(hour, 100), 60_000_000);
        assert_eq!(bucket_width_us(hour, 1000), 5_000_000);
        assert_eq!(bucket_width_us(24 * hour, 60), 1_800_000_000);
        assert_eq!(bucket_width_us(10, 60), 1_000_000);
        assert_eq!(bucket_width_us(hour / 6 + 1, 60), 10_000_000);
        assert_eq!(bucket_width_us(1000 * 24 * hour, 10), 100 * 24 * hour);
    }

    #[test]
    fn records_are_embedded_as_stored_or_wrapped_when_not_json() {
        let json = raw_or_wrapped(br#"{"message":"a\nb","severity":3}"#.to_vec()).unwrap();
        assert_eq!(json.get(), r#"{"message":"a\nb","severity":3}"#);
        let raw = raw_or_wrapped(b"<13>plain \"text\"".to_vec()).unwrap();
        assert_eq!(raw.get(), r#"{"raw":"<13>plain \"text\""}"#);
    }
}
