//! This host's collect entries from etcd: read the key, then watch it.
//!
//! The key (default `/logtail/agents/<hostname>/config`) holds JSON: `{"collect": [ENTRY, ...]}`,
//! each ENTRY with the keys of a `[[collect]]` table of the TOML file, e.g.
//!
//! ```json
//! {"collect": [{"name": "nginx", "paths": ["/var/log/nginx/*.log"], "topic": "web"}]}
//! ```
//!
//! [`watch`] reads the key, then watches it from the next revision, and reports every value as
//! an [`EtcdUpdate`]; a value that does not parse or validate is reported as rejected (with the
//! key, the revision and the field at fault) and the caller keeps what it had. A missing or
//! deleted key means no entries from etcd. When the connection or the watch breaks, it
//! reconnects with backoff and jitter and reads the key again, so no change is missed; a watch
//! whose revision was compacted away is started again the same way.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, WatchOptions};
use tokio::sync::mpsc::UnboundedSender;

use super::config::{CollectEntry, ConfigOrigin, entries_from_json};
use super::ship::Backoff;
use super::{AgentMetrics, EtcdState};

/// What the etcd key says now.
#[derive(Debug)]
pub enum EtcdUpdate {
    /// A valid value (no key: no entries). `raw` is the value as stored, for the cache.
    Entries {
        entries: Vec<CollectEntry>,
        origin: ConfigOrigin,
        raw: Option<String>,
    },
    /// A value that was rejected; the message names the key, revision and field.
    Rejected(String),
}

/// Where and how to reach etcd.
#[derive(Debug, Clone)]
pub struct EtcdSource {
    pub endpoints: Vec<String>,
    pub key: String,
    pub connect_timeout: Duration,
}

/// Reports the key's value, then every change, through `updates`, until `updates` is closed.
/// Never returns an error: etcd being away is logged and retried.
pub async fn watch(
    source: EtcdSource,
    updates: UnboundedSender<EtcdUpdate>,
    metrics: Arc<AgentMetrics>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut last_revision = None;
    loop {
        metrics.etcd_state.set(EtcdState::Connecting as i64);
        let watched = watch_once(
            &source,
            &updates,
            &mut last_revision,
            &mut backoff,
            &metrics,
        );
        match watched.await {
            Ok(()) => return,
            Err(e) => tracing::warn!(
                "etcd {} (key {}): {e}; retrying (the last good configuration stays in force)",
                source.endpoints.join(","),
                source.key
            ),
        }
        if updates.is_closed() {
            return;
        }
        tokio::time::sleep(backoff.next_wait()).await;
    }
}

/// One connection: read, then watch until it breaks. `Ok` only when `updates` is closed.
async fn watch_once(
    source: &EtcdSource,
    updates: &UnboundedSender<EtcdUpdate>,
    last_revision: &mut Option<i64>,
    backoff: &mut Backoff,
    metrics: &AgentMetrics,
) -> Result<(), etcd_client::Error> {
    let options = ConnectOptions::new()
        .with_connect_timeout(source.connect_timeout)
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
    let mut client = Client::connect(&source.endpoints, Some(options)).await?;
    let response = client.get(source.key.as_str(), None).await?;
    let revision = response.header().map_or(0, |h| h.revision());
    let value = response.kvs().first();
    let value_revision = value.map_or(revision, |kv| kv.mod_revision());
    // Report unless this very value was reported before (a reconnect with nothing new).
    metrics.etcd_revision.set(value_revision);
    if *last_revision != Some(value_revision) {
        *last_revision = Some(value_revision);
        let update = parse(&source.key, value.map(|kv| kv.value()), value_revision);
        if updates.send(update).is_err() {
            return Ok(());
        }
    }
    let mut stream = client
        .watch(
            source.key.as_str(),
            Some(WatchOptions::new().with_start_revision(revision + 1)),
        )
        .await?;
    backoff.reset();
    metrics.etcd_state.set(EtcdState::Watching as i64);
    tracing::info!(
        "watching etcd key {} from revision {}",
        source.key,
        revision + 1
    );
    while let Some(response) = stream.message().await? {
        if response.canceled() {
            return Err(etcd_client::Error::WatchError(format!(
                "watch canceled ({}; compacted at revision {})",
                response.cancel_reason(),
                response.compact_revision()
            )));
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let revision = kv.mod_revision();
            *last_revision = Some(revision);
            metrics.etcd_revision.set(revision);
            let value = match event.event_type() {
                EventType::Put => Some(kv.value()),
                EventType::Delete => None,
            };
            if updates.send(parse(&source.key, value, revision)).is_err() {
                return Ok(());
            }
        }
    }
    Err(etcd_client::Error::WatchError(
        "the watch stream ended".into(),
    ))
}

/// The update a value (or its absence) of `key` at `revision` makes.
pub fn parse(key: &str, value: Option<&[u8]>, revision: i64) -> EtcdUpdate {
    let origin = ConfigOrigin::Etcd {
        key: key.to_string(),
        revision,
    };
    let Some(value) = value else {
        return EtcdUpdate::Entries {
            entries: Vec::new(),
            origin,
            raw: None,
        };
    };
    let text = match std::str::from_utf8(value) {
        Ok(text) => text,
        Err(e) => {
            return EtcdUpdate::Rejected(format!("{origin}: the value is not UTF-8 text: {e}"));
        }
    };
    match entries_from_json(text, &origin) {
        Ok(entries) => EtcdUpdate::Entries {
            entries,
            origin,
            raw: Some(text.to_string()),
        },
        Err(e) => EtcdUpdate::Rejected(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_entries_or_a_rejection_naming_the_revision() {
        let EtcdUpdate::Entries { entries, raw, .. } = parse(
            "/k",
            Some(br#"{"collect": [{"name": "a", "paths": ["/x"]}]}"#),
            3,
        ) else {
            panic!("valid value rejected");
        };
        assert_eq!(entries[0].name, "a");
        assert!(raw.is_some());
        let EtcdUpdate::Entries { entries, raw, .. } = parse("/k", None, 4) else {
            panic!("a missing key is no entries");
        };
        assert!(entries.is_empty() && raw.is_none());
        let EtcdUpdate::Rejected(message) = parse("/k", Some(b"{nope"), 5) else {
            panic!("garbage accepted");
        };
        assert!(
            message.starts_with("etcd key /k (revision 5): "),
            "{message}"
        );
        let EtcdUpdate::Rejected(message) = parse("/k", Some(b"\xff"), 6) else {
            panic!("non-UTF-8 accepted");
        };
        assert!(message.contains("not UTF-8"), "{message}");
    }
}
