//! The Elasticsearch/OpenSearch sink: records become documents sent with `_bulk` requests,
//! and batches go to the write-ahead log ([`crate::wal`]) while Elasticsearch is down, slow or
//! has a backlog to catch up on, exactly as the Kafka sink does: the same state machine
//! ([`crate::sink::kafka::state`]: direct, spilling, replaying), fed with this sink's
//! observations, and the same WAL and `[spill]` limits.
//!
//! # Delivery
//! - Each record (it must be JSON: `[sink] encoding = "json"`) becomes one document in the index
//!   [`index::IndexTemplate`] names, with a stable `_id` ([`index::document_id`]). Sending a
//!   record twice (a retry whose answer was lost, a WAL replay after a crash) therefore
//!   overwrites it (`action = "index"`) or conflicts (`create`, a 409 that counts as
//!   delivered): at-least-once delivery, one document per record.
//! - Documents are cut into bulks by count, bytes and age; at most `max_requests_in_flight`
//!   are sent at once; the rest wait, counted as in flight, so the spill limits hold memory.
//! - The answer is read item by item ([`bulk`]): items that failed with 429 or 5xx, or every
//!   item of a request that failed, are sent again after an exponential backoff with jitter
//!   (only those items); items refused for good go to the dead-letter file with the reason
//!   ([`dead_letter`]), synced before they count as resolved.
//! - A batch from the rings releases its senders' acknowledgements once each of its documents
//!   is indexed, found indexed or dead-lettered; a batch from the WAL is then acknowledged to
//!   the WAL. A batch that went to the WAL releases them at once, like the Kafka sink.
//! - Until the index template is installed (at start, unless `install_template = false`) no
//!   bulk is sent and new batches spill: no index is created with guessed mappings.
//!
//! # What is lost when
//! - A clean shutdown waits up to [`super::GIVE_UP_AFTER`] for what is in flight, then writes
//!   the documents of batches from the rings that are not indexed to the WAL; batches from the
//!   WAL stay in it, unacknowledged, for the next start. Nothing is lost.
//! - `kill -9`: batches from the rings not yet indexed are lost (their senders that wait for
//!   acknowledgements resend); those in the WAL are replayed.
//!
//! # Layout
//! - [`config`]: the `[sink.elasticsearch]` section.
//! - [`index`]: index names and `_id`s.
//! - [`bulk`]: request bodies, response items and their outcomes, backoff (pure).
//! - [`tickets`]: the batches not fully resolved, and their acknowledgements.
//! - [`client`]: the HTTP/1.1 client (keep-alive, gzip, TLS, endpoints in turn) and its thread;
//!   the search backend uses the client too.
//! - [`dead_letter`]: the file of refused documents.
//! - this file: the sink, which observes, asks the state machine, and does the I/O.

mod bulk;
pub mod client;
pub mod config;
pub mod dead_letter;
pub mod index;
mod tickets;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hyper::Method;

use super::kafka::State;
use super::kafka::state::{Observation, SpillLimits, WriteTo};
use super::spill::{self, Spilled, Unsent};
use super::{GIVE_UP_AFTER, Sink};
use crate::ack::{self, AckToken};
use crate::log_limit::RateLimitedWarning;
use crate::metrics::ElasticsearchMetrics;
use crate::pipeline::batch::Batch;
use crate::wal::Wal;
use bulk::{Bulk, BulkItem, ItemOutcome, backoff, classify, next_random, parse_response};
use client::{HttpAnswer, HttpJob, HttpWorker, RequestError};
use config::BulkAction;
pub use config::ElasticsearchSinkConfig;
use dead_letter::DeadLetterFile;
use index::IndexTemplate;
use tickets::{Origin, Ticket, Tickets};

/// How often the sink thread reads answers, retries and replays when no batch arrives.
const SERVICE_INTERVAL: Duration = Duration::from_millis(5);
/// How often the WAL's ledger (its acknowledgements) is written.
const LEDGER_INTERVAL: Duration = Duration::from_millis(100);

/// The Elasticsearch sink. See the module doc.
pub struct ElasticsearchSink {
    action: BulkAction,
    index: IndexTemplate,
    max_docs: usize,
    max_bytes: usize,
    max_age: Duration,
    max_requests: usize,
    initial_backoff: Duration,
    max_backoff: Duration,
    http: HttpWorker,
    next_job: u64,
    /// The bulk being filled, and when its first document went in.
    building: Bulk,
    building_since: Option<Instant>,
    /// Bulks cut and waiting for a request slot.
    ready: VecDeque<Bulk>,
    /// Documents that failed, waiting out their backoff.
    retries: Vec<(Instant, Bulk)>,
    /// Bulks sent, by job id: the sink keeps every document until it is resolved.
    in_flight: HashMap<u64, Bulk>,
    template: TemplateState,
    template_body: bytes::Bytes,
    template_path: String,
    tickets: Tickets,
    wal: Wal,
    limits: SpillLimits,
    /// The WAL holds batches not yet taken.
    backlog: bool,
    stopping: bool,
    /// No replay, and new batches spill, until then: documents failed a moment ago.
    failing_until: Option<Instant>,
    /// The last request reached no endpoint, and none has answered since.
    unreachable: bool,
    dead_letters: DeadLetterFile,
    last_write: LastWrite,
    reported_state: State,
    metrics: Arc<ElasticsearchMetrics>,
    warning: RateLimitedWarning,
    wal_payload: Vec<u8>,
    index_name: String,
    last_ledger_write: Instant,
    random: u64,
}

/// Whether the index template is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TemplateState {
    Installed,
    /// To be (re)tried at that time, after `attempt` failures.
    Due {
        at: Instant,
        attempt: u32,
    },
    /// The request is in flight (job id).
    Requested {
        job: u64,
        attempt: u32,
    },
}

/// Where [`Sink::write`] put the last batch.
#[derive(Debug, Clone, Copy)]
enum LastWrite {
    /// Taken, under this ticket.
    Ticket(usize),
    /// Appended to the WAL.
    Wal,
    /// Dropped by the WAL's `full_policy`.
    Dropped,
}

impl ElasticsearchSink {
    /// Opens the WAL in `wal_dir` (recovering it) and starts the HTTP client thread; the index
    /// template is installed in the background.
    ///
    /// # Errors
    /// When the WAL cannot be opened or the CA file cannot be used.
    pub fn open(
        config: &ElasticsearchSinkConfig,
        wal_dir: PathBuf,
        dead_letter_file: PathBuf,
        metrics: Arc<ElasticsearchMetrics>,
    ) -> anyhow::Result<ElasticsearchSink> {
        let (wal, report) = Wal::open(config.wal.options(wal_dir.clone()))
            .with_context(|| format!("cannot open the WAL in {}", wal_dir.display()))?;
        if report.pending_batches > 0 {
            tracing::info!(
                "elasticsearch: the WAL holds {} record(s) in {} batch(es) from before; sending them first",
                report.pending_records,
                report.pending_batches
            );
        }
        let http = HttpWorker::start(config)?;
        let now = Instant::now();
        let template = if config.install_template {
            TemplateState::Due {
                at: now,
                attempt: 0,
            }
        } else {
            TemplateState::Installed
        };
        let mut sink = ElasticsearchSink {
            action: config.action,
            index: config.index.clone(),
            max_docs: config.bulk_max_docs,
            max_bytes: config.bulk_max_bytes,
            max_age: config.bulk_max_age,
            max_requests: config.max_requests_in_flight,
            initial_backoff: config.retry_initial_backoff,
            max_backoff: config.retry_max_backoff,
            http,
            next_job: 0,
            building: Bulk::default(),
            building_since: None,
            ready: VecDeque::new(),
            retries: Vec::new(),
            in_flight: HashMap::new(),
            template,
            template_body: index_template_body(&config.index).into(),
            template_path: format!("/_index_template/{}", config.template_name),
            tickets: Tickets::default(),
            wal,
            limits: config.spill.limits(),
            backlog: report.pending_batches > 0,
            stopping: false,
            failing_until: None,
            unreachable: false,
            dead_letters: DeadLetterFile::new(dead_letter_file),
            last_write: LastWrite::Dropped,
            reported_state: State::Direct,
            metrics,
            warning: RateLimitedWarning::new(Duration::from_secs(1)),
            wal_payload: Vec::new(),
            index_name: String::new(),
            last_ledger_write: now,
            random: seed(),
        };
        sink.refresh_gauges();
        Ok(sink)
    }

    /// Reads answers, sends due retries, cuts old bulks, sends what it may, replays the WAL,
    /// and writes the WAL's ledger when due.
    fn service(&mut self) -> anyhow::Result<()> {
        while let Some(answer) = self.http.try_answer() {
            self.on_answer(answer);
        }
        self.pump();
        self.replay()?;
        if self.last_ledger_write.elapsed() >= LEDGER_INTERVAL {
            self.last_ledger_write = Instant::now();
            self.wal.flush().context("cannot write the WAL's ledger")?;
        }
        self.refresh_gauges();
        Ok(())
    }

    /// Moves due retries and an old bulk to the queue, installs the template when due, and
    /// sends what the request limit allows.
    fn pump(&mut self) {
        let now = Instant::now();
        let mut index = 0;
        while index < self.retries.len() {
            if self.retries[index].0 <= now {
                let (_, bulk) = self.retries.swap_remove(index);
                self.ready.push_front(bulk);
            } else {
                index += 1;
            }
        }
        if self
            .building_since
            .is_some_and(|t| t.elapsed() >= self.max_age)
        {
            self.cut();
        }
        if let TemplateState::Due { at, attempt } = self.template
            && at <= now
        {
            let job = self.job_id();
            self.http.send(HttpJob {
                id: job,
                method: Method::PUT,
                path: self.template_path.clone(),
                body: self.template_body.clone(),
                ndjson: false,
            });
            self.template = TemplateState::Requested { job, attempt };
        }
        if self.template != TemplateState::Installed {
            return;
        }
        while self.in_flight.len() < self.max_requests {
            let Some(mut bulk) = self.ready.pop_front() else {
                break;
            };
            let id = self.job_id();
            self.http.send(HttpJob {
                id,
                method: Method::POST,
                path: "/_bulk".into(),
                body: bulk.freeze(),
                ndjson: true,
            });
            self.in_flight.insert(id, bulk);
        }
    }

    fn job_id(&mut self) -> u64 {
        self.next_job += 1;
        self.next_job
    }

    /// Queues the bulk being filled.
    fn cut(&mut self) {
        self.building_since = None;
        if !self.building.is_empty() {
            self.ready.push_back(std::mem::take(&mut self.building));
        }
    }

    /// Makes documents of `batch`'s records, under a new ticket.
    fn take(&mut self, batch: &Batch, origin: Origin) -> usize {
        let slot = self.tickets.open(
            origin,
            u32::try_from(batch.len()).unwrap_or(u32::MAX),
            batch.value_bytes() as u64,
        );
        for record in batch.iter() {
            self.index_name.clear();
            if let Err(e) =
                self.index
                    .render(record.value, record.received_at_us, &mut self.index_name)
            {
                self.metrics.failed("not_json", 1);
                self.refuse_unsendable(record.value, &e.to_string());
                self.resolve(slot, record.value.len() as u64 + 1);
                continue;
            }
            let id = index::document_id(record.value);
            self.building.push(
                slot,
                self.action,
                &self.index_name,
                &id,
                record.value,
                record.received_at_us,
            );
            self.building_since.get_or_insert_with(Instant::now);
            if self.building.len() >= self.max_docs || self.building.bytes() >= self.max_bytes {
                self.cut();
            }
        }
        slot
    }

    /// A record that cannot be a document goes to the dead-letter file at once.
    fn refuse_unsendable(&mut self, doc: &[u8], reason: &str) {
        let written = self
            .dead_letters
            .append(0, reason, b"null", doc)
            .and_then(|()| self.dead_letters.sync());
        match written {
            Ok(()) => self.metrics.dead_lettered_docs.add(1),
            Err(e) => {
                self.metrics.lost_records.add(1);
                tracing::error!(
                    "elasticsearch: a record that is not a document ({reason}) could not be \
                     written to the dead-letter file {}, and is lost: {e}",
                    self.dead_letters.path().display()
                );
            }
        }
    }

    fn on_answer(&mut self, answer: HttpAnswer) {
        if let TemplateState::Requested { job, attempt } = self.template
            && job == answer.id
        {
            self.on_template_answer(answer, attempt);
            return;
        }
        let Some(bulk) = self.in_flight.remove(&answer.id) else {
            return;
        };
        self.metrics.bulk_requests.add(1);
        self.metrics.bulk_latency.record(answer.elapsed);
        match answer.result {
            Err(e) => {
                self.unreachable = matches!(e, RequestError::Unreachable(_));
                self.warning
                    .warn(|| format!("elasticsearch: a bulk request failed, retrying: {e}"));
                self.retry_all(bulk, e.label());
            }
            Ok(reply) if (200..300).contains(&reply.status) => {
                self.unreachable = false;
                match parse_response(&reply.body, bulk.len()) {
                    Ok(response) => self.on_items(bulk, &response),
                    Err(e) => {
                        self.warning
                            .warn(|| format!("elasticsearch: {e}; retrying the bulk"));
                        self.retry_all(bulk, "bad_response");
                    }
                }
            }
            Ok(reply) => {
                self.unreachable = false;
                let label = format!("http_{}", reply.status);
                self.warning.warn(|| {
                    format!(
                        "elasticsearch: a bulk request was refused with status {}, retrying: {}",
                        reply.status,
                        String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)])
                    )
                });
                self.retry_all(bulk, &label);
            }
        }
    }

    fn on_template_answer(&mut self, answer: HttpAnswer, attempt: u32) {
        let failure = match &answer.result {
            Ok(reply) if (200..300).contains(&reply.status) => None,
            Ok(reply) => Some(format!(
                "status {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)])
            )),
            Err(e) => Some(e.to_string()),
        };
        match failure {
            None => {
                tracing::info!(
                    "elasticsearch: index template {} installed",
                    self.template_path
                );
                self.template = TemplateState::Installed;
                self.unreachable = false;
            }
            Some(why) => {
                self.unreachable = true;
                let attempt = attempt + 1;
                let wait = self.backoff(attempt);
                self.warning.warn(|| {
                    format!(
                        "elasticsearch: cannot install the index template ({why}); documents \
                         wait in the WAL; trying again in {wait:?}"
                    )
                });
                self.template = TemplateState::Due {
                    at: Instant::now() + wait,
                    attempt,
                };
            }
        }
    }

    fn on_items(&mut self, bulk: Bulk, response: &bulk::BulkResponse) {
        let now_us = crate::time::now_unix_micros();
        let mut retry = Bulk::retry(bulk.attempt + 1);
        let mut refused: Vec<BulkItem> = Vec::new();
        for (item, answer) in bulk.items.iter().zip(&response.items) {
            let result = answer.result();
            match classify(self.action, result.status, result.error.as_ref()) {
                ItemOutcome::Indexed => {
                    self.metrics.indexed_docs.add(1);
                    self.metrics.indexed_latency.record(Duration::from_micros(
                        now_us.saturating_sub(item.received_at_us).max(0) as u64,
                    ));
                    self.resolve(item.ticket, item.doc_bytes());
                }
                ItemOutcome::AlreadyIndexed => {
                    self.metrics.already_indexed_docs.add(1);
                    self.resolve(item.ticket, item.doc_bytes());
                }
                ItemOutcome::Retry(label) => {
                    self.metrics.failed(&label, 1);
                    retry.push_from(&bulk, item);
                }
                ItemOutcome::Refused { label, reason } => {
                    self.metrics.failed(&label, 1);
                    match self.dead_letters.append(
                        result.status,
                        &reason,
                        bulk.action_line(item),
                        bulk.doc(item),
                    ) {
                        Ok(()) => refused.push(*item),
                        Err(e) => {
                            self.warning.warn(|| {
                                format!(
                                    "elasticsearch: cannot write the dead-letter file {}; the \
                                     refused document is sent again: {e}",
                                    self.dead_letters.path().display()
                                )
                            });
                            retry.push_from(&bulk, item);
                        }
                    }
                }
            }
        }
        if !refused.is_empty() {
            match self.dead_letters.sync() {
                Ok(()) => {
                    self.metrics.dead_lettered_docs.add(refused.len() as u64);
                    for item in &refused {
                        self.resolve(item.ticket, item.doc_bytes());
                    }
                }
                Err(e) => {
                    self.warning
                        .warn(|| format!("elasticsearch: cannot sync the dead-letter file: {e}"));
                    for item in &refused {
                        retry.push_from(&bulk, item);
                    }
                }
            }
        }
        if !retry.is_empty() {
            self.schedule_retry(retry);
        }
    }

    /// Every document of `bulk` failed with `label`: sent again after a backoff.
    fn retry_all(&mut self, mut bulk: Bulk, label: &str) {
        self.metrics.failed(label, bulk.len() as u64);
        bulk.attempt += 1;
        self.schedule_retry(bulk);
    }

    fn schedule_retry(&mut self, bulk: Bulk) {
        self.metrics.retried_docs.add(bulk.len() as u64);
        let wait = self.backoff(bulk.attempt);
        let at = Instant::now() + wait;
        self.failing_until = Some(self.failing_until.map_or(at, |t| t.max(at)));
        self.retries.push((at, bulk));
    }

    fn backoff(&mut self, attempt: u32) -> Duration {
        let random = next_random(&mut self.random);
        backoff(attempt, self.initial_backoff, self.max_backoff, random)
    }

    /// One document of ticket `slot` is resolved.
    fn resolve(&mut self, slot: usize, bytes: u64) {
        if let Some(ticket) = self.tickets.resolve(slot, bytes) {
            self.complete(ticket);
        }
    }

    fn complete(&mut self, ticket: Ticket) {
        match ticket.origin {
            Origin::Direct => ack::release_all(ticket.acks),
            Origin::Wal(seq) => self.wal.acknowledge(seq),
        }
    }

    /// What the state machine decides on, now.
    fn observe(&self) -> Observation {
        Observation {
            now: Instant::now(),
            failing_until: self.failing_until,
            brokers_down: self.unreachable || self.template != TemplateState::Installed,
            in_flight_records: self.tickets.docs,
            in_flight_bytes: self.tickets.bytes,
            oldest_in_flight: self.tickets.oldest(),
            wal_backlog: self.backlog,
            retry_waiting: false,
            stopping: self.stopping,
        }
    }

    /// Takes WAL batches while Elasticsearch keeps up.
    fn replay(&mut self) -> anyhow::Result<()> {
        while self.limits.may_replay(&self.observe()) {
            match spill::next_unsent(&mut self.wal, "elasticsearch")? {
                Unsent::Batch(seq, batch) if batch.is_empty() => self.wal.acknowledge(seq),
                Unsent::Batch(seq, batch) => {
                    self.metrics.replayed_records.add(batch.len() as u64);
                    self.take(&batch, Origin::Wal(seq));
                    self.pump();
                }
                Unsent::Undecodable(records) => {
                    self.metrics.lost_records.add(u64::from(records));
                }
                Unsent::None => {
                    self.backlog = false;
                    break;
                }
            }
        }
        Ok(())
    }

    /// Appends `batch` to the WAL: `Ok(true)` once stored, `Ok(false)` when the WAL was full
    /// and dropped it (`drop_newest`), `Err` when it is full and the policy is `block`.
    fn spill(&mut self, batch: &Batch) -> anyhow::Result<bool> {
        match spill::append(
            &mut self.wal,
            &mut self.wal_payload,
            batch,
            "elasticsearch",
            &self.warning,
        )? {
            Spilled::Stored => {
                self.backlog = true;
                self.metrics.spilled_records.add(batch.len() as u64);
                Ok(true)
            }
            Spilled::Dropped => Ok(false),
            Spilled::Full => {
                anyhow::bail!("the WAL is full and Elasticsearch is not taking its backlog")
            }
        }
    }

    fn refresh_gauges(&mut self) {
        let (state, lag) = self.limits.state(&self.observe());
        if state != self.reported_state {
            self.reported_state = state;
            match lag {
                Some(lag) => self
                    .warning
                    .warn(|| format!("elasticsearch: spilling to the WAL: {}", lag.describe())),
                None if state == State::Replaying => {
                    tracing::debug!("elasticsearch: replaying the WAL");
                }
                None => tracing::debug!("elasticsearch: caught up; sending directly"),
            }
        }
        let m = &self.metrics;
        m.state.set(state.metric_value());
        m.unreachable.set(i64::from(
            self.unreachable || self.template != TemplateState::Installed,
        ));
        m.in_flight_docs.set(self.tickets.docs as i64);
        m.requests_in_flight.set(self.in_flight.len() as i64);
        m.wal_pending_records
            .set(self.wal.stats().pending_records as i64);
    }

    /// At shutdown, after the wait: the documents of batches from the rings that are not
    /// resolved go to the WAL (their senders' acknowledgements are then released); batches
    /// from the WAL stay in it unacknowledged.
    fn keep_unresolved(&mut self) -> anyhow::Result<()> {
        self.cut();
        let mut bulks: Vec<Bulk> = self.ready.drain(..).collect();
        bulks.extend(self.retries.drain(..).map(|(_, bulk)| bulk));
        bulks.extend(self.in_flight.drain().map(|(_, bulk)| bulk));
        let mut keep = Batch::with_capacity(0, 64 * 1024, 64);
        let mut from_wal = 0u64;
        for bulk in &bulks {
            for item in &bulk.items {
                match self.tickets.origin(item.ticket) {
                    Some(Origin::Direct) => keep.push(item.received_at_us, bulk.doc(item)),
                    _ => from_wal += 1,
                }
            }
        }
        tracing::warn!(
            "elasticsearch: {} document(s) not indexed after {GIVE_UP_AFTER:?}: {} from the WAL \
             stay in it, {} go to it",
            keep.len() as u64 + from_wal,
            from_wal,
            keep.len()
        );
        let mut result = Ok(());
        let mut stored = keep.is_empty();
        let give_up = Instant::now() + GIVE_UP_AFTER;
        while !stored {
            match self.spill(&keep) {
                Ok(kept) => {
                    stored = kept;
                    if !kept {
                        self.metrics.lost_records.add(keep.len() as u64);
                        break;
                    }
                }
                Err(e) if Instant::now() >= give_up => {
                    self.metrics.lost_records.add(keep.len() as u64);
                    result = Err(e.context(format!(
                        "{} documents not indexed could not be written to the WAL",
                        keep.len()
                    )));
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        for (_, ticket) in self.tickets.drain() {
            if ticket.origin == Origin::Direct && stored {
                ack::release_all(ticket.acks);
            }
        }
        result
    }
}

impl Sink for ElasticsearchSink {
    fn name(&self) -> &'static str {
        "elasticsearch"
    }

    fn write(&mut self, batch: &Batch) -> anyhow::Result<()> {
        self.service()?;
        self.last_write = match self.limits.write_to(&self.observe()) {
            WriteTo::Wal if self.spill(batch)? => LastWrite::Wal,
            WriteTo::Wal => LastWrite::Dropped,
            WriteTo::Producer => {
                let slot = self.take(batch, Origin::Direct);
                self.pump();
                LastWrite::Ticket(slot)
            }
        };
        Ok(())
    }

    fn hold_acks(&mut self, acks: Vec<AckToken>) {
        match self.last_write {
            LastWrite::Ticket(slot) => {
                if let Some(ticket) = self.tickets.hold_acks(slot, acks) {
                    self.complete(ticket);
                }
            }
            LastWrite::Wal => ack::release_all(acks),
            LastWrite::Dropped => drop(acks),
        }
    }

    fn tick(&mut self) -> anyhow::Result<()> {
        self.service()
    }

    fn tick_interval(&self) -> Duration {
        SERVICE_INTERVAL
    }

    fn close(&mut self) -> anyhow::Result<()> {
        self.stopping = true;
        self.cut();
        let deadline = Instant::now() + GIVE_UP_AFTER;
        while !self.tickets.is_empty() && Instant::now() < deadline {
            self.pump();
            if let Some(answer) = self.http.answer_within(Duration::from_millis(10)) {
                self.on_answer(answer);
            }
        }
        let result = if self.tickets.is_empty() {
            Ok(())
        } else {
            self.keep_unresolved()
        };
        self.wal.flush().context("cannot write the WAL's ledger")?;
        self.refresh_gauges();
        result
    }
}

/// The composable index template for the indices `index` names: keyword fields for what is
/// matched exactly, dates for the timestamps, text for the message. The search backend's
/// query translation ([`crate::query::elasticsearch_query`]) reads the fields as this maps them.
pub fn index_template_body(index: &IndexTemplate) -> Vec<u8> {
    let keyword = serde_json::json!({ "type": "keyword", "ignore_above": 1024 });
    let body = serde_json::json!({
        "index_patterns": [index.pattern()],
        // Above Elasticsearch 8's built-in `logs-*-*` template (100), which a pattern such as
        // `logs-*` overlaps.
        "priority": 200,
        "template": {
            "mappings": {
                "properties": {
                    "facility": { "type": "short" },
                    "severity": { "type": "short" },
                    "version": { "type": "short" },
                    "timestamp": { "type": "date" },
                    "received_at": { "type": "date" },
                    "host": keyword,
                    "app": keyword,
                    "procid": keyword,
                    "msgid": keyword,
                    "source": keyword,
                    "tls_peer": keyword,
                    "agent_host": keyword,
                    "parse_error": keyword,
                    "parse_warning": keyword,
                    "message": { "type": "text" },
                    "structured_data": { "type": "object" }
                }
            }
        }
    });
    body.to_string().into_bytes()
}

/// A jitter seed that differs between gateways and starts.
fn seed() -> u64 {
    let now = crate::time::now_unix_micros() as u64;
    (now ^ u64::from(std::process::id()).rotate_left(32)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_covers_the_index_pattern_with_typed_fields() {
        let body = index_template_body(&IndexTemplate::default());
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["index_patterns"], serde_json::json!(["logs-*"]));
        let properties = &value["template"]["mappings"]["properties"];
        assert_eq!(properties["host"]["type"], "keyword");
        assert_eq!(properties["timestamp"]["type"], "date");
        assert_eq!(properties["message"]["type"], "text");
    }
}
