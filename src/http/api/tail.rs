//! `GET /api/v1/tail?q=`: matching records as the sink writes them, as Server-Sent Events.
//!
//! # Stream
//! ```text
//! : logtail live tail                 a comment, sent at once: the subscription is live
//!
//! data: {"message":"...",...}         one record per event (the default event type, `message`)
//!
//! event: dropped                      records this client missed since the last such event,
//! data: {"dropped":1234}              sent once it reads again
//!
//! : keepalive                         every KEEPALIVE of silence
//! ```
//! A record's data is the stored JSON object (one line: JSON escapes line breaks); text that
//! is not JSON (`encoding = "raw"`) is sent as several `data:` lines, one per line of it.
//!
//! # Never slowing the gateway
//! Each tail is a task of its own ([`follow`]) between the hub ([`LiveTail`]) and the client:
//! it takes every batch the sink offers, keeps the matches, and queues their events for the
//! client, at most [`MAX_OUTBOX_BYTES`]. Matches that do not fit (a client reading slower
//! than matches arrive) are counted, as are batches the hub could not queue for this task;
//! the count goes to the client as a `dropped` event once there is room. The sink thread only
//! ever offers a batch and moves on.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::params::Params;
use super::{ApiContext, ApiError, MAX_TAILS};
use crate::query::{JsonRecord, Matcher};
use crate::sink::live_tail::TailSubscription;

/// The most bytes of events waiting for one client; matches past it are dropped and counted.
pub const MAX_OUTBOX_BYTES: usize = 1 << 20;
/// A comment is sent after this long without an event, so that a dead client is noticed and
/// proxies keep the stream open.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// `GET /api/v1/tail?q=`.
pub(super) async fn tail(
    State(context): State<Arc<ApiContext>>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let params = Params::parse(uri.query(), &["q"])?;
    let matcher = params.query()?;
    // Subscribed before the answer's head is sent: what is written after the client sees it
    // is in the stream.
    let subscription = context.tail.subscribe().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_TAILS} live tails are open already; close one"),
        )
    })?;
    let (sender, receiver) = mpsc::unbounded_channel();
    let outbox = Arc::new(AtomicUsize::new(0));
    let first = Bytes::from_static(b": logtail live tail\n\n");
    outbox.fetch_add(first.len(), Ordering::Relaxed);
    let _ = sender.send(first);
    tokio::spawn(follow(
        subscription,
        matcher,
        Outbox {
            sender,
            bytes: outbox.clone(),
        },
        context.stopping.subscribe(),
    ));
    let body = Body::from_stream(EventStream {
        receiver,
        bytes: outbox,
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response())
}

/// The events waiting for one client, bounded in bytes.
struct Outbox {
    sender: mpsc::UnboundedSender<Bytes>,
    bytes: Arc<AtomicUsize>,
}

/// Why an event was not queued.
enum NotQueued {
    /// No room: the client is behind.
    Full,
    /// The client is gone.
    Closed,
}

impl Outbox {
    /// Queues `events` unless the outbox is full (an empty outbox takes anything).
    fn offer(&self, events: Vec<u8>) -> Result<(), NotQueued> {
        let waiting = self.bytes.load(Ordering::Relaxed);
        if waiting > 0 && waiting + events.len() > MAX_OUTBOX_BYTES {
            return Err(NotQueued::Full);
        }
        self.bytes.fetch_add(events.len(), Ordering::Relaxed);
        self.sender
            .send(Bytes::from(events))
            .map_err(|_| NotQueued::Closed)
    }
}

/// Appends one event: `event: NAME` when named, then `data` as `data:` lines.
fn push_event(out: &mut Vec<u8>, name: Option<&str>, data: &[u8]) {
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    // `\r`, `\n` and `\r\n` all end a line in the SSE format.
    for line in data.split(|&b| b == b'\n' || b == b'\r') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Moves matching records from `subscription` to `outbox` until the client goes away or the
/// server stops.
async fn follow(
    mut subscription: TailSubscription,
    matcher: Matcher,
    outbox: Outbox,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let mut dropped: u64 = 0;
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    keepalive.reset();
    let mut events = Vec::new();
    loop {
        tokio::select! {
            batch = subscription.next() => {
                let Some(batch) = batch else { return };
                dropped += subscription.take_dropped();
                // A query with a word to find skips a batch without it in one search (the
                // values stand back to back, so a hit across two of them only costs a look).
                if !matcher.may_match_stored(batch.bytes()) {
                    continue;
                }
                events.clear();
                let mut matched = 0u64;
                for record in batch.records() {
                    if matcher.is_match(&JsonRecord::new(record)) {
                        push_event(&mut events, None, record);
                        matched += 1;
                    }
                }
                if matched == 0 {
                    continue;
                }
                // The count goes right before the records that follow the gap, in one piece:
                // queued together or not at all.
                let chunk = if dropped > 0 {
                    let mut chunk = dropped_event(dropped);
                    chunk.extend_from_slice(&events);
                    chunk
                } else {
                    std::mem::take(&mut events)
                };
                match outbox.offer(chunk) {
                    Ok(()) => {
                        dropped = 0;
                        keepalive.reset();
                    }
                    Err(NotQueued::Closed) => return,
                    Err(NotQueued::Full) => dropped += matched,
                }
            }
            _ = keepalive.tick() => {
                dropped += subscription.take_dropped();
                let event = if dropped > 0 { dropped_event(dropped) } else { b": keepalive\n\n".to_vec() };
                match outbox.offer(event) {
                    Ok(()) => dropped = 0,
                    Err(NotQueued::Closed) => return,
                    Err(NotQueued::Full) => {}
                }
            }
            () = outbox.sender.closed() => return,
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

fn dropped_event(dropped: u64) -> Vec<u8> {
    let mut event = Vec::with_capacity(48);
    push_event(
        &mut event,
        Some("dropped"),
        format!("{{\"dropped\":{dropped}}}").as_bytes(),
    );
    event
}

/// The response body: the outbox's events as they come.
struct EventStream {
    receiver: mpsc::UnboundedReceiver<Bytes>,
    bytes: Arc<AtomicUsize>,
}

impl futures_core::Stream for EventStream {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx).map(|events| {
            events.map(|events| {
                self.bytes.fetch_sub(events.len(), Ordering::Relaxed);
                Ok(events)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::live_tail::{LiveTail, TailBatch};

    #[test]
    fn events_split_lines_and_name_their_type() {
        let mut out = Vec::new();
        push_event(&mut out, None, br#"{"message":"a\nb"}"#);
        push_event(&mut out, Some("dropped"), b"{\"dropped\":3}");
        push_event(&mut out, None, b"raw\r\nlines\nhere");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "data: {\"message\":\"a\\nb\"}\n\nevent: dropped\ndata: {\"dropped\":3}\n\n\
             data: raw\ndata: \ndata: lines\ndata: here\n\n"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_client_that_does_not_read_gets_a_dropped_count_once_it_reads_again() {
        let hub = LiveTail::new(1);
        let subscription = hub.subscribe().unwrap();
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let bytes = Arc::new(AtomicUsize::new(0));
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(follow(
            subscription,
            Matcher::compile("keep").unwrap(),
            Outbox {
                sender,
                bytes: bytes.clone(),
            },
            stopping,
        ));
        let record = format!(r#"{{"message":"keep {}"}}"#, "x".repeat(1000));
        let skip = br#"{"message":"skip"}"#;
        // 3000 matches of ~1 KB: about 3 MB for an outbox of 1 MiB.
        for _ in 0..300 {
            let batch: Vec<&[u8]> = (0..10).flat_map(|_| [record.as_bytes(), skip]).collect();
            hub.offer(Arc::new(TailBatch::from_records(batch)));
            tokio::task::yield_now().await;
        }
        // The follower takes every batch offered; the client reads nothing meanwhile.
        for _ in 0..1000 {
            tokio::task::yield_now().await;
        }
        let mut delivered = 0;
        let mut received = Vec::new();
        while let Ok(chunk) = receiver.try_recv() {
            bytes.fetch_sub(chunk.len(), Ordering::Relaxed);
            received.extend_from_slice(&chunk);
        }
        delivered += received.windows(10).filter(|w| w == b"data: {\"me").count();
        assert!(delivered < 3000, "{delivered}");
        // The client reads again: the next batch is preceded by the count of what it missed.
        hub.offer(Arc::new(TailBatch::from_records([record.as_bytes()])));
        let next = tokio::time::timeout(Duration::from_secs(1), receiver.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&next),
            format!(
                "event: dropped\ndata: {{\"dropped\":{}}}\n\ndata: {record}\n\n",
                3000 - delivered
            )
        );
        drop(receiver);
        hub.offer(Arc::new(TailBatch::from_records([record.as_bytes()])));
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .unwrap()
            .unwrap();
        assert!(!hub.is_followed(), "the subscription ends with its client");
    }
}
