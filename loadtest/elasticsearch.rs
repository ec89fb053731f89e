//! The Elasticsearch side of a run (`--sink elasticsearch` and `--sink elasticsearch-direct`,
//! issue 15): the search server ([`SearchServer`], osmem-server), the indexer between Kafka and
//! it ([`Indexer`], a second `logtail serve`), and the verifier's reader of what is searchable
//! ([`follow_index`]).
//!
//! ```text
//! elasticsearch:         gateway ─► Kafka (tansu) ─► indexer ─► osmem-server ◄─ follow_index
//! elasticsearch-direct:  gateway (logtail's ES sink, or rsyslog's omelasticsearch) ─► osmem-server
//! ```
//!
//! # Every run writes one index, [`INDEX`]
//! A fixed name, not the sink's default daily `logs-%Y.%m.%d`, so that a run crossing midnight
//! is still one index, and rsyslog's `searchIndex` names the same one.
//!
//! # Reading back what is searchable
//! [`follow_index`] asks `_search` every `--search-poll` (default 100 ms, as often as the store
//! and file readers poll, so latencies compare with theirs) for the documents after the last one it
//! saw, in index order (`"sort": ["_doc"]` with `search_after`), only their `message` (which
//! holds the marker) and `_id`, up to [`PAGE`] at a time (again at once while pages come back
//! full). A line is *searchable* at the time the request that returned it was sent: the figure
//! includes 0–100 ms of polling, as the store and file readers' do. Each search costs the
//! server a walk of the whole index in osmem-server (about 12 ms of CPU at 20 000 documents for
//! an empty page, 45 ms for a page of 5000), so its cost grows with the run; but indexing costs
//! it far more (0.2–1 ms of CPU a document): measured on 10 000 lines, osmem-server used 6–9
//! CPU-seconds with 100 ms polling and with 1 s polling alike, within the noise of the shared
//! machine. Its CPU, searches included, is reported apart from the gateway's.
//!
//! `_doc` order is insertion order in osmem-server (one in-memory index), so the walk sees every
//! document once. In a real Elasticsearch it is per shard and segment merges may reorder it;
//! that is why each step ends with a cross-check: the index's `_count` must equal the documents
//! the walk read (a failed check says the walk missed some, not that the pipeline lost them).
//!
//! Duplicates are counted two ways: by marker (the verifier's tally: the same line in two
//! documents, e.g. rsyslog's retries under new auto-generated `_id`s) and by `_id` (two
//! documents with the same `_id`, which one index cannot hold; counted from a hash of each
//! `_id` seen, for the record).

use std::collections::HashSet;
use std::hash::{BuildHasher as _, BuildHasherDefault, DefaultHasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::cost::CostMeter;
use crate::generate::now_us;
use crate::process::{Service, free_port};
use crate::verify::{SharedVerifier, UNORDERED};
use test_support::prometheus_text::scrape;

/// The index every run writes and reads.
pub const INDEX: &str = "loadtest";

/// Documents per `_search` page (osmem-server's and Elasticsearch's default result window is
/// 10 000).
pub const PAGE: usize = 5000;

/// The Kafka consumer group of the indexer.
const GROUP: &str = "loadtest-indexers";

/// The osmem-server binary, or how to install it.
fn osmem_binary() -> anyhow::Result<PathBuf> {
    test_support::osmem::binary().with_context(|| {
        format!(
            "osmem-server is not installed (tests/run.sh does it: {}), or set OSMEM_SERVER_BIN",
            test_support::osmem::INSTALL
        )
    })
}

/// The `[sink] ... [sink.elasticsearch]` tables of a logtail config writing to `url`'s
/// [`INDEX`], with the sink's defaults otherwise (bulks of 1000 documents or 200 ms, 4 in
/// flight, gzip): the gateway with `elasticsearch-direct` and the indexer use the same.
pub fn logtail_sink_tables(url: &str) -> String {
    format!(
        "[sink]\ntype = \"elasticsearch\"\n[sink.elasticsearch]\nendpoints = [\"{url}\"]\n\
         index = \"{INDEX}\"\n"
    )
}

/// A running osmem-server (an in-memory OpenSearch-compatible server; see RESULTS.md for what
/// that means for the figures).
pub struct SearchServer {
    service: Option<Service>,
    pub address: SocketAddr,
    pub cost: CostMeter,
}

impl SearchServer {
    /// Starts osmem-server on a free port, its log in `dir`, and waits until it answers.
    ///
    /// # Errors
    /// When it is not installed or does not answer within 30 s.
    pub fn start(dir: &Path) -> anyhow::Result<SearchServer> {
        let binary = osmem_binary()?;
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut command = Command::new(binary);
        command.args(["--addr", &address.to_string(), "--no-stdin-watch"]);
        let mut service = Service::spawn("osmem-server", command, &dir.join("osmem.log"))?;
        service.wait_ready(Duration::from_secs(30), |_| {
            request(address, "GET", "/", None).is_ok_and(|(status, _)| status == 200)
        })?;
        let mut cost = CostMeter::default();
        cost.start(service.pid());
        Ok(SearchServer {
            service: Some(service),
            address,
            cost,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Documents in [`INDEX`] now (0 before it exists).
    ///
    /// # Errors
    /// When the server does not answer, or answers something else than a count.
    pub fn count(&self) -> anyhow::Result<u64> {
        let (status, body) = request(self.address, "GET", &format!("/{INDEX}/_count"), None)?;
        if status == 404 {
            return Ok(0);
        }
        #[derive(Deserialize)]
        struct Count {
            count: u64,
        }
        let count: Count = serde_json::from_slice(&body).with_context(|| {
            format!(
                "_count answered {status}: {}",
                String::from_utf8_lossy(&body)
            )
        })?;
        Ok(count.count)
    }

    pub fn sample(&mut self) {
        self.cost.sample();
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.service.take() {
            let ended = s.stop(libc::SIGTERM, Duration::from_secs(10));
            self.cost.ended(ended.cpu_seconds);
        }
    }
}

/// The indexer of `--sink elasticsearch`: `logtail serve` with a `kafka` listener (group
/// [`GROUP`], logtail's JSON records) and the Elasticsearch sink, as README "Scaling out" runs
/// it.
pub struct Indexer {
    metrics: String,
    service: Option<Service>,
    pub cost: CostMeter,
}

impl Indexer {
    /// Writes the indexer's config into `dir` (reading `topic` at `bootstrap`, writing to
    /// `es_url`; `shards` 0 = the default), starts it and waits until it runs.
    ///
    /// # Errors
    /// When the config cannot be written or the indexer does not start.
    pub fn start(
        dir: &Path,
        binary: &Path,
        bootstrap: &str,
        topic: &str,
        es_url: &str,
        shards: usize,
    ) -> anyhow::Result<Indexer> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let metrics = format!("127.0.0.1:{}", free_port()?);
        let config = dir.join("indexer.toml");
        let text = indexer_config(
            &dir.join("data"),
            bootstrap,
            topic,
            es_url,
            shards,
            &metrics,
        );
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let mut command = Command::new(binary);
        command.args(["serve", "--config"]).arg(&config);
        let mut service = Service::spawn("indexer", command, &dir.join("indexer.log"))?;
        service.wait_ready(Duration::from_secs(30), |s| {
            s.log_text().contains("gateway running")
        })?;
        let mut cost = CostMeter::default();
        cost.start(service.pid());
        Ok(Indexer {
            metrics,
            service: Some(service),
            cost,
        })
    }

    /// The indexer's Prometheus text.
    pub fn scrape(&self) -> Option<String> {
        scrape(&self.metrics)
    }

    pub fn sample(&mut self) {
        self.cost.sample();
    }

    /// Stops it cleanly (SIGTERM, up to 60 s).
    pub fn stop(&mut self) {
        if let Some(s) = self.service.take() {
            let ended = s.stop(libc::SIGTERM, Duration::from_secs(60));
            self.cost.ended(ended.cpu_seconds);
        }
    }
}

fn indexer_config(
    data: &Path,
    bootstrap: &str,
    topic: &str,
    es_url: &str,
    shards: usize,
    metrics: &str,
) -> String {
    format!(
        "# Generated by logtail-loadtest: the indexer of --sink elasticsearch.\n\
         data_dir = {data:?}\n[ingest]\nshards = {shards}\n\
         [[listen]]\ntype = \"kafka\"\n[listen.kafka]\nbootstrap_servers = \"{bootstrap}\"\n\
         topics = [\"{topic}\"]\ngroup_id = \"{GROUP}\"\nrecords = \"json\"\n\
         {sink}[metrics]\naddress = \"{metrics}\"\n",
        sink = logtail_sink_tables(es_url),
    )
}

/// One request to osmem-server ([`test_support::osmem::request`]).
pub fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> anyhow::Result<(u16, Vec<u8>)> {
    test_support::osmem::request(address, method, path, body)
        .with_context(|| format!("{method} {path} to {address}"))
}

/// What the reader has done so far, over the whole run (the verifier's tally is per step).
#[derive(Debug, Default)]
pub struct IndexTail {
    /// Documents read (every hit once).
    pub documents: AtomicU64,
    /// Documents whose `_id` an earlier document had.
    pub duplicate_ids: AtomicU64,
    /// `_search` requests, and the microseconds they took in all.
    pub searches: AtomicU64,
    pub search_micros: AtomicU64,
}

/// `_search`'s answer, as far as the reader needs it.
#[derive(Deserialize)]
struct SearchAnswer {
    hits: HitList,
}

#[derive(Deserialize)]
struct HitList {
    hits: Vec<Hit>,
}

#[derive(Deserialize)]
struct Hit {
    #[serde(rename = "_id")]
    id: String,
    #[serde(rename = "_source", default)]
    source: Option<MessageOnly>,
    #[serde(default)]
    sort: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct MessageOnly {
    #[serde(default)]
    message: Option<String>,
}

/// The body of the next page's `_search`: documents after `after` (a hit's `sort` values), in
/// index order, only their `message`.
fn page_query(after: Option<&[serde_json::Value]>) -> Vec<u8> {
    let mut query = serde_json::json!({
        "size": PAGE,
        "sort": ["_doc"],
        "_source": ["message"],
        "track_total_hits": false,
    });
    if let Some(after) = after {
        query["search_after"] = serde_json::Value::from(after.to_vec());
    }
    query.to_string().into_bytes()
}

/// Walks [`INDEX`] at `address` in index order into `verifier` until `stop` is set (see the
/// module doc). A missing index (nothing written yet) is waited for.
///
/// # Errors
/// When the server stops answering for 30 s, or answers a search with an error.
pub fn follow_index(
    address: SocketAddr,
    poll: Duration,
    tail: &IndexTail,
    verifier: &SharedVerifier,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let path = format!("/{INDEX}/_search");
    let mut after: Option<Vec<serde_json::Value>> = None;
    // Hashes of the `_id`s seen: 8 bytes a document (fixed keys: the same `_id` hashes alike).
    let mut ids: HashSet<u64> = HashSet::new();
    let hasher = BuildHasherDefault::<DefaultHasher>::default();
    let mut unreachable_since: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let asked_us = now_us();
        let started = Instant::now();
        let answer = request(address, "POST", &path, Some(&page_query(after.as_deref())));
        tail.searches.fetch_add(1, Ordering::Relaxed);
        tail.search_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let (status, body) = match answer {
            Ok(a) => {
                unreachable_since = None;
                a
            }
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(30) {
                    return Err(e.context("the search server has not answered for 30 s"));
                }
                std::thread::sleep(poll);
                continue;
            }
        };
        verifier.lock().expect("verifier lock").reader_ready = true;
        if status == 404 {
            std::thread::sleep(poll);
            continue;
        }
        if status != 200 {
            bail!(
                "_search answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let answer: SearchAnswer = serde_json::from_slice(&body).with_context(|| {
            format!(
                "_search answered 200 with an unexpected body: {}",
                String::from_utf8_lossy(&body[..body.len().min(500)])
            )
        })?;
        let hits = answer.hits.hits;
        let full = hits.len() >= PAGE;
        if let Some(last) = hits.last() {
            after = Some(last.sort.clone());
        }
        tail.documents
            .fetch_add(hits.len() as u64, Ordering::Relaxed);
        let mut duplicate_ids = 0;
        {
            let mut v = verifier.lock().expect("verifier lock");
            for hit in &hits {
                if !ids.insert(hasher.hash_one(&hit.id)) {
                    duplicate_ids += 1;
                }
                let message = hit
                    .source
                    .as_ref()
                    .and_then(|s| s.message.as_deref())
                    .unwrap_or_default();
                v.add(message.as_bytes(), UNORDERED, asked_us);
            }
        }
        tail.duplicate_ids
            .fetch_add(duplicate_ids, Ordering::Relaxed);
        if !full {
            std::thread::sleep(poll);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marker::Marker;
    use crate::verify::Verifier;
    use std::sync::{Arc, Mutex};

    #[test]
    fn follow_index_reads_each_document_once_and_counts_duplicates_by_marker_and_id() {
        let test = "follow_index_reads_each_document_once_and_counts_duplicates_by_marker_and_id";
        if test_support::ci::or_skip(osmem_binary().ok(), test, "no osmem-server").is_none() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("loadtest-es-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = SearchServer::start(&dir).unwrap();
        let run = 0xfeed;
        let mut bulk = Vec::new();
        // seq 0 and 1, seq 1 again under another _id (a resend), and a document of no run.
        for (id, seq) in [("a", Some(0)), ("b", Some(1)), ("c", Some(1)), ("d", None)] {
            bulk.extend_from_slice(
                format!("{{\"create\":{{\"_index\":\"{INDEX}\",\"_id\":\"{id}\"}}}}\n").as_bytes(),
            );
            let mut message = b"x ".to_vec();
            if let Some(seq) = seq {
                let sent_us = now_us();
                Marker {
                    run,
                    sender: 0,
                    seq,
                    sent_us,
                }
                .write(&mut message);
            }
            let document = serde_json::json!({ "message": String::from_utf8(message).unwrap() });
            bulk.extend_from_slice(format!("{document}\n").as_bytes());
        }
        let (status, body) = request(server.address, "POST", "/_bulk", Some(&bulk)).unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let verifier = Arc::new(Mutex::new(Verifier::new(run, now_us())));
        let tail = Arc::new(IndexTail::default());
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (verifier, tail, stop, address) =
                (verifier.clone(), tail.clone(), stop.clone(), server.address);
            std::thread::spawn(move || {
                follow_index(address, Duration::from_millis(20), &tail, &verifier, &stop)
            })
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tail.documents.load(Ordering::Relaxed) < 4 {
            assert!(
                Instant::now() < deadline,
                "the reader did not read 4 documents"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // A few more polls: nothing is read twice.
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap().unwrap();
        assert_eq!(tail.documents.load(Ordering::Relaxed), 4);
        assert_eq!(tail.duplicate_ids.load(Ordering::Relaxed), 0);
        assert!(tail.searches.load(Ordering::Relaxed) > 1);
        assert_eq!(server.count().unwrap(), 4);
        let v = verifier.lock().unwrap();
        assert_eq!(
            (v.tally.distinct, v.tally.duplicates, v.tally.reordered),
            (2, 1, 0)
        );
        assert_eq!(v.foreign, 1);
        assert_eq!(v.latencies.all.len(), 2);
        drop(v);
        server.stop();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn generated_indexer_config_is_valid_and_reads_kafka_into_the_index() {
        let text = indexer_config(
            Path::new("/tmp/x/data"),
            "127.0.0.1:9092",
            "logs",
            "http://127.0.0.1:9200",
            2,
            "127.0.0.1:9000",
        );
        let config = logtail::config::Config::from_toml(&text, Path::new("indexer.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.listen.len(), 1);
        assert_eq!(
            config.sink.kind,
            logtail::config::SinkKind::Elasticsearch,
            "{text}"
        );
        assert!(text.contains("index = \"loadtest\""), "{text}");
        assert!(text.contains("group_id = \"loadtest-indexers\""), "{text}");
    }

    #[test]
    fn page_query_asks_for_the_next_page_in_index_order() {
        let first: serde_json::Value = serde_json::from_slice(&page_query(None)).unwrap();
        assert_eq!(first["sort"], serde_json::json!(["_doc"]));
        assert_eq!(first["size"], PAGE);
        assert_eq!(first["_source"], serde_json::json!(["message"]));
        assert!(first.get("search_after").is_none());
        let next: serde_json::Value =
            serde_json::from_slice(&page_query(Some(&[serde_json::json!(41)]))).unwrap();
        assert_eq!(next["search_after"], serde_json::json!([41]));
    }

    #[test]
    fn search_answers_parse_with_and_without_a_message() {
        let body = br#"{"took":0,"hits":{"hits":[
            {"_id":"a1","_index":"loadtest","_source":{"message":"x ltm:1"},"sort":[0]},
            {"_id":"a2","_index":"loadtest","_source":{},"sort":[1]},
            {"_id":"a3","_index":"loadtest","sort":[2]}]}}"#;
        let answer: SearchAnswer = serde_json::from_slice(body).unwrap();
        let hits = answer.hits.hits;
        assert_eq!(hits.len(), 3);
        assert_eq!(hits[0].id, "a1");
        assert_eq!(
            hits[0].source.as_ref().and_then(|s| s.message.as_deref()),
            Some("x ltm:1")
        );
        assert_eq!(
            hits[1].source.as_ref().map(|s| s.message.is_none()),
            Some(true)
        );
        assert!(hits[2].source.is_none());
        assert_eq!(hits[2].sort, vec![serde_json::json!(2)]);
    }
}
