//! osmem-server, an in-memory OpenSearch-compatible server from PyPI that `tests/run.sh`
//! installs into `~/.local/osmem-venv` (or `OSMEM_SERVER_BIN`): started on a free port, read
//! back with `_count` and `_search`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use test_support::net::free_port;

use super::kafka::wait_until;

pub use test_support::osmem::binary as osmem_binary;

/// A running osmem-server, killed on drop.
pub struct Osmem {
    child: Child,
    port: u16,
}

impl Osmem {
    pub fn start(test: &str) -> Option<Osmem> {
        let binary = test_support::ci::or_skip(
            osmem_binary(),
            test,
            "no osmem-server (tests/run.sh installs it: pip install osmem-server)",
        )?;
        let port = free_port().expect("a free port");
        let child = Command::new(binary)
            .args(["--addr", &format!("127.0.0.1:{port}"), "--no-stdin-watch"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("osmem-server starts");
        let osmem = Osmem { child, port };
        wait_until(Duration::from_secs(10), "osmem-server listening", || {
            request(osmem.addr(), "GET", "/", None).is_some_and(|(status, _)| status == 200)
        });
        Some(osmem)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn count(&self, index: &str) -> u64 {
        let (status, body) =
            request(self.addr(), "GET", &format!("/{index}/_count"), None).expect("_count");
        if status == 404 {
            return 0;
        }
        assert_eq!(status, 200, "{body}");
        json(&body)["count"].as_u64().expect("a count")
    }

    /// Every document of `index` from `host` (`_id`, `_source`): one `_search` of up to
    /// 10000 hits (the server's result window), a term query on the keyword field `host`.
    pub fn documents_of(&self, index: &str, host: &str) -> Vec<(String, Value)> {
        let query = serde_json::json!({
            "size": 10000,
            "query": { "term": { "host": host } },
        });
        let (status, body) = request(
            self.addr(),
            "POST",
            &format!("/{index}/_search"),
            Some(&query.to_string()),
        )
        .expect("_search");
        assert_eq!(status, 200, "{body}");
        let hits = json(&body)["hits"]["hits"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            hits.len() < 10000,
            "more than one page: use fewer lines per host"
        );
        hits.into_iter()
            .map(|hit| {
                (
                    hit["_id"].as_str().expect("an _id").to_string(),
                    hit["_source"].clone(),
                )
            })
            .collect()
    }

    /// The documents of `hosts` (each `host{h}`).
    pub fn documents(&self, index: &str, hosts: u64) -> Vec<(String, Value)> {
        (0..hosts)
            .flat_map(|h| self.documents_of(index, &format!("host{h}")))
            .collect()
    }
}

impl Drop for Osmem {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// One request ([`test_support::osmem::request`]) with a text body and answer; `None` when
/// the server cannot be reached.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let (status, answer) =
        test_support::osmem::request(addr, method, path, body.map(str::as_bytes)).ok()?;
    Some((status, String::from_utf8_lossy(&answer).into_owned()))
}

/// The messages of `documents`, checking each appears once.
pub fn distinct_messages(documents: &[(String, Value)]) -> HashSet<String> {
    let mut messages = HashSet::new();
    for (id, source) in documents {
        let message = source["message"].as_str().expect("a message").to_string();
        assert!(
            messages.insert(message.clone()),
            "{message:?} twice (_id {id})"
        );
    }
    messages
}
